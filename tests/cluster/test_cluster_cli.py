"""``ringlog serve --cluster``: the engine of a gateway config as a replica of its shard (its
TCP gateway in front: tests/cluster/test_front.py); bad cluster options exit 2 with one line
naming the option, and so does a NATS URL no server answers at."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from ringlog.cli import main
from ringlog.cluster.stream import InputPublisher
from ringlog.engine import Command, Engine, new_order
from ringlog.gateway.session import load_config

from .helpers import MARKET_DATA, Shard, apply_once, stream_commands

CONFIG = ("port = 0\n[[sessions]]\nid = 1\ntoken = \"token-of-one\"\naccount = 101\n[engine]\n" +
          "".join(f"[[engine.symbols]]\nsymbol = {s}\nmax_price = 100000\n" for s in (1, 3)))


@pytest.mark.parametrize(("extra", "needle"), [
    (["--cluster", "http://127.0.0.1:4222", "--replica-id", "a"], "ClusterConfig.servers"),
    (["--cluster", "nats://127.0.0.1:4222"], "--replica-id"),
    (["--cluster", "nats://127.0.0.1:4222", "--replica-id", "a", "--replicas", "2"],
     "ClusterConfig.replicas"),
    (["--cluster", "nats://127.0.0.1:4222", "--replica-id", "a b"], "ReplicaConfig.replica_id"),
    (["--cluster", "nats://127.0.0.1:4222", "--replica-id", "a", "--market-data-types", "L2"],
     "--market-data-types"),
    (["--cluster", "nats://127.0.0.1:4222", "--replica-id", "a", "--replicas", "1",
      "--market-data-replicas", "3"], "ClusterConfig.market_data_replicas"),
])
def test_serve_cluster_with_a_bad_option_exits_2_naming_it(tmp_path: Any, capsys: Any,
                                                           extra: list[str],
                                                           needle: str) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(CONFIG)
    assert main(["serve", str(tmp_path / "d"), "--config", str(cfg), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_serve_cluster_with_an_unreachable_nats_url_exits_2_naming_it(tmp_path: Any,
                                                                    capsys: Any) -> None:
    from ringlog.cluster.natsserver import free_port

    cfg = tmp_path / "gw.toml"
    cfg.write_text(CONFIG)
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["serve", str(tmp_path / "d"), "--config", str(cfg), "--cluster", url,
                 "--replica-id", "a", "--connect-timeout", "0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert url in err and len(err.splitlines()) == 1, err


def test_serve_cluster_runs_the_configured_engine_as_a_replica(cluster_config: Any,
                                                               tmp_path: Any) -> None:
    cfg = cluster_config(replicas=3)
    gw = tmp_path / "gw.toml"
    gw.write_text(CONFIG)
    orders = [new_order(i, account=101, symbol=(1, 3)[i % 2], side=1 + i % 2,
                        price=50 + i % 5, qty=1 + i % 3) for i in range(1, 200)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ringlog", "serve", str(tmp_path / "d"), "--config", str(gw),
         "--cluster", ",".join(cfg.servers), "--replica-id", "s1", "--cluster-name",
         cfg.name, "--lease-ttl", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})

    async def scenario() -> None:
        async with Shard(cfg, tmp_path) as shard:
            assert await shard.leader(timeout=60) == "s1"
            pub = InputPublisher(shard.js, cfg, 0)
            for o in orders:
                await pub.publish(Command.NEW, o)
            last = await pub.flush()
            await pub.close()
            st = await shard.caught_up("s1", last, timeout=60)
            # the stream holds these orders and the gateway's own queries (its open-orders
            # rebuild at start): the engine fed them gives every output the shard published
            cmds = await stream_commands(shard, last)
            assert [pl for _, _, ty, pl in cmds if ty == Command.NEW] == orders
            engine = Engine(load_config(str(gw)).engine)
            want, _ = apply_once(engine, cmds)
            want = [o for o in want if o[0] not in MARKET_DATA]  # (their stream: elsewhere)
            got = [(o.type_id, o.payload) for _, b, _ in await shard.all_outputs(last)
                   for o in b.outputs]
            assert got == want and st.state_hash == engine.state_hash()
    try:
        asyncio.run(asyncio.wait_for(scenario(), 120))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    assert b'"event": "leader"' in out
