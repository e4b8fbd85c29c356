"""What a replica checks at start, and the output bound that makes servers' max_payload
disagreement harmless: a real three-node cluster whose servers have max_payload 8 KiB,
16 KiB and 1 MiB, each replica connected to a different one (before, a replica cut its
output parts under its own server's max_payload, and a new leader on another server halted
on the overlap check); a server below the shard's recorded bound, and an output stream of
the earlier format, stop a replica at start with exit 2 naming what to fix."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

nats = pytest.importorskip("nats", reason="the cluster extra (nats-py) is not installed")

from ringlog.cluster import ClusterConfig  # noqa: E402
from ringlog.cluster.natsserver import NatsCluster  # noqa: E402
from ringlog.cluster.outputs import HEADERS_ROOM  # noqa: E402
from ringlog.cluster.replica import EXIT_SETUP  # noqa: E402
from ringlog.cluster.stream import InputPublisher, ensure_shard  # noqa: E402
from ringlog.cluster.trial import ReplicaProcess, engine_commands  # noqa: E402

from .helpers import Shard, check_outputs, running_nats  # noqa: E402

PAYLOADS = [8 << 10, 16 << 10, 1 << 20]  # max_payload of nodes n0, n1, n2


@pytest.fixture(scope="module")
def mixed_nats() -> Iterator[NatsCluster]:
    """Three clustered nats-servers that disagree on max_payload."""
    with running_nats(3, "ringlog-nats-mixed-", max_payload=PAYLOADS) as cluster:
        yield cluster


def _config(cluster: NatsCluster, servers: list[str] | None = None, name: str = "") -> Any:
    return ClusterConfig(servers=servers or cluster.urls,
                         name=name or "p" + uuid.uuid4().hex[:10],
                         lease_ttl=0.5, checkpoint_every=20, batch_max_commands=50,
                         batch_linger=0.005, market_data_types=[])


def _start(cfg: ClusterConfig, tmp: Path) -> tuple[int, str]:
    """A replica's exit code and output, started in ``tmp/a`` (a child process: one that
    does not stop fails the test after 60 s instead of hanging it)."""
    (tmp / "a").mkdir()
    r = ReplicaProcess(cfg, "a", tmp / "a").start()
    try:
        assert r.proc is not None
        return r.proc.wait(60), r.output()
    finally:
        r.stop()


async def _kv_value(cfg: ClusterConfig, key: str) -> int:
    nc = await nats.connect(cfg.servers)
    try:
        kv = await nc.jetstream().key_value(cfg.names(0).checkpoint_bucket)
        return int((await kv.get(key)).value)
    finally:
        await nc.close()


def test_servers_that_disagree_on_max_payload_cut_the_same_parts(
        mixed_nats: NatsCluster, tmp_path: Path) -> None:
    """Replica a on the 1 MiB server publishes messages of ~12 KB of outputs; replica c, on
    the 8 KiB server, takes over after a kill -9 of a: before, a cut them whole and c in
    two parts, found the stream's last batch different from its own and halted. Each is
    given its server's URL alone (the others it finds in the servers' announcements)."""
    async def scenario() -> None:
        cfg = _config(mixed_nats)
        own = {"a": _config(mixed_nats, [mixed_nats.urls[2]], cfg.name),
               "c": _config(mixed_nats, [mixed_nats.urls[0]], cfg.name)}
        commands = engine_commands(400)
        async with Shard(cfg, tmp_path, own) as shard:
            shard.start("a")
            assert await shard.leader(timeout=60) == "a"
            shard.start("c")
            pub = InputPublisher(shard.js, cfg, 0)
            for ty, pl in commands[:200]:  # four messages of 50 commands
                await pub.publish(ty, pl)
            first = await pub.flush()
            await shard.all_outputs(first, timeout=60)  # all published by a
            await shard.caught_up("c", first, timeout=60)
            shard.replicas["a"].kill()
            assert await shard.leader(not_="a") == "c"  # (before: c halted, no leader)
            shard.start("a")  # back, a standby on the 1 MiB server
            for ty, pl in commands[200:]:
                await pub.publish(ty, pl)
            last = await pub.flush()
            await pub.close()
            batches = await shard.all_outputs(last, timeout=60)
            want = check_outputs(batches, commands, last, None)
            for rid in ("a", "c"):
                assert (await shard.caught_up(rid, last, timeout=60)).state_hash == want
            bound = await _kv_value(cfg, cfg.names(0).output_bound_key)
        assert bound == PAYLOADS[0] - HEADERS_ROOM
        assert {h["Ringlog-Replica"] for _, _, h in batches} == {"a", "c"}
        assert max(b.parts for _, b, _ in batches) >= 2
    asyncio.run(asyncio.wait_for(scenario(), 180))


def test_a_server_below_the_recorded_bound_stops_a_replica_at_start(
        mixed_nats: NatsCluster, tmp_path: Path) -> None:
    """A bound recorded when the 8 KiB server was away (15 KiB): a replica that reaches it
    exits 2 naming it, its max_payload and what it needs."""
    cfg = _config(mixed_nats)

    async def record() -> None:
        nc = await nats.connect(cfg.servers)
        try:
            js = nc.jetstream()
            await ensure_shard(js, cfg, 0)
            kv = await js.key_value(cfg.names(0).checkpoint_bucket)
            await kv.create(cfg.names(0).output_bound_key, str(15 << 10).encode())
        finally:
            await nc.close()
    asyncio.run(record())
    code, err = _start(cfg, tmp_path)
    assert code == EXIT_SETUP == 2, err
    assert f"max_payload of {(15 << 10) + HEADERS_ROOM} on every server" in err, err
    low = err.split(" but ")[1].split(": give")[0]  # the servers below it, and only those
    assert low == f"{mixed_nats.urls[0]} has {PAYLOADS[0]}", err


def test_an_output_stream_of_the_earlier_format_stops_a_replica_at_start(
        cluster_config: Any, tmp_path: Path) -> None:
    """The earlier format's batches ([input_seq, first_output, [outputs]]): exit 2, naming
    the stream and the two fixes; nothing recovered or published."""
    cfg = cluster_config(market_data_types=[])
    names = cfg.names(0)

    async def old_stream() -> None:
        nc = await nats.connect(cfg.servers)
        try:
            js = nc.jetstream()
            await ensure_shard(js, cfg, 0)
            await js.publish(names.output_subject, msgspec.msgpack.encode(
                [1, 0, [[100, b"report", 7, 0, 1_000]]]))
        finally:
            await nc.close()
    asyncio.run(old_stream())
    code, err = _start(cfg, tmp_path)
    assert code == EXIT_SETUP, err
    assert names.output_stream in err and "--cluster-name" in err, err
    assert f"nats stream rm {names.output_stream}" in err, err
    assert not any((tmp_path / "a").iterdir())  # stopped before recovering anything


def test_a_snapshot_is_shipped_through_the_smallest_server_in_chunks_it_takes(
        mixed_nats: NatsCluster) -> None:
    """nats-py ships an object in 128 KiB chunks, which the 8 KiB server refuses: a leader
    connected there ships its snapshots in chunks of the shard's output bound."""
    from ringlog.cluster.snapshot import ShardSnapshot, fetch_snapshot, ship_snapshot

    async def scenario() -> None:
        cfg = _config(mixed_nats, [mixed_nats.urls[0]])
        names = cfg.names(0)
        snap = ShardSnapshot(7, 70, 21, bytes(range(256)) * 1200)  # ~300 KB
        nc = await nats.connect(cfg.servers)
        try:
            js = nc.jetstream()
            await ensure_shard(js, cfg, 0)
            pins = await js.key_value(names.status_bucket)
            await ship_snapshot(js, names, snap, pins, chunk=PAYLOADS[0] - HEADERS_ROOM)
            assert await fetch_snapshot(js, names, "z", pins) == snap
        finally:
            await nc.close()
    asyncio.run(asyncio.wait_for(scenario(), 60))
