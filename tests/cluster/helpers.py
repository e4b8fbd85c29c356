"""Shared steps of the cluster tests: a shard with replicas in child processes, a steady
load of engine commands, and the final check that the output stream holds every output of
every command exactly once (against the engine run here, in this process)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import nats

from ringlog.cluster import ClusterConfig
from ringlog.cluster.natsserver import NatsCluster
from ringlog.cluster.replica import wait_for_jetstream
from ringlog.cluster.stream import InputBatch, InputPublisher, ensure_shard
from ringlog.cluster.trial import ReplicaProcess, ShardWatch, engine_commands, stop_all
from ringlog.engine.flow import demo_engine
from ringlog.errors import RingLogError

HERE = Path(__file__).parent


class Shard:
    """A shard under test: a NATS connection, its replicas and a watcher."""

    def __init__(self, cfg: Any, tmp: Path, configs: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.tmp = tmp
        self.configs = configs or {}  # a replica's own ClusterConfig (its own servers)
        self.replicas: dict[str, ReplicaProcess] = {}

    async def __aenter__(self) -> Shard:
        self.errors: list[BaseException] = []

        async def note(e: BaseException) -> None:
            self.errors.append(e)
            print("NATSERR", repr(e), flush=True)
        self._note = note
        self.old: list[Any] = []
        self.nc = await nats.connect(self.cfg.servers, max_reconnect_attempts=-1,
                                     reconnect_time_wait=0.1, error_cb=note)
        self.js = self.nc.jetstream(timeout=5)
        await wait_for_jetstream(self.js)
        await ensure_shard(self.js, self.cfg, 0)
        self.watch = ShardWatch(self.js, self.cfg)
        self.watch.reconnect = self.reconnect
        return self

    async def reconnect(self) -> Any:
        """A new connection after nats-py closed the old one for good (it does on a server
        -ERR while reconnecting); the watcher moves to it too."""
        self.old.append(self.nc)
        self.nc = await nats.connect(self.cfg.servers, max_reconnect_attempts=-1,
                                     reconnect_time_wait=0.1, error_cb=self._note)
        self.js = self.watch.js = self.nc.jetstream(timeout=5)
        return self.js

    async def __aexit__(self, *exc: Any) -> None:
        if exc[0] is not None:  # a failed test: what each replica said about itself
            await self._report()
        stop_all(list(self.replicas.values()))
        for nc in [*self.old, self.nc]:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _report(self) -> None:
        with contextlib.suppress(Exception):
            print("input stream last", await asyncio.wait_for(self.watch.last_input_seq(), 5),
                  "output stream last", await asyncio.wait_for(self.watch.last_output_seq(), 5),
                  "lease", await asyncio.wait_for(self.watch.leader(), 5))
        for rid, r in self.replicas.items():
            with contextlib.suppress(Exception):
                print(rid, "alive" if r.alive() else "dead",
                      await asyncio.wait_for(self.watch.status(rid), 5))
            # its last words (pytest's temp dirs may be gone before anyone reads the logs)
            lines = [ln for ln in r.output().splitlines() if "remove_temp_file" not in ln]
            for ln in lines[-25:]:
                print(f"  {rid}: {ln[:3000]}")

    def start(self, rid: str, handler: str = "ringlog.engine.flow:demo_engine",
              fresh_dir: bool = False, gateway_config: Path | None = None,
              env: dict[str, str] | None = None) -> ReplicaProcess:
        """Starts (or restarts, same directory) replica ``rid`` (with a gateway config: a
        ``ringlog serve --cluster`` node; ``env``: variables of its own)."""
        d = self.tmp / (f"{rid}-{time.monotonic_ns()}" if fresh_dir else rid)
        old = self.replicas.get(rid)
        if old is not None and not fresh_dir:
            d = old.directory
        r = ReplicaProcess(self.configs.get(rid, self.cfg), rid, d, handler=handler,
                           gateway_config=gateway_config, env=env).start()
        self.replicas[rid] = r
        return r

    async def leader(self, not_: str | None = None, since: float = 0.0,
                     timeout: float = 60.0) -> str:
        """The replica that leads (another than ``not_``, leading since ``since``)."""
        async def led() -> str | None:
            holder = await self.watch.leader()
            if holder is None or holder == not_:
                return None
            st = await self.watch.status(holder)
            return holder if st and st.role == "leader" and st.leader_since >= since else None
        return str(await self.watch.wait(led, "a leader", timeout))

    async def caught_up(self, rid: str, seq: int, timeout: float = 30.0) -> Any:
        """Waits until ``rid`` applied ``seq`` and hashed its state there."""
        async def done() -> Any:
            st = await self.watch.status(rid)
            return st if st and st.hash_seq >= seq else None
        return await self.watch.wait(done, f"replica {rid} at input {seq}", timeout)

    async def published(self, rid: str, seq: int, timeout: float = 60.0) -> Any:
        """Waits until ``rid`` published output batch ``seq`` (as its status says)."""
        async def done() -> Any:
            st = await self.watch.status(rid)
            return st if st and st.published_seq >= seq else None
        return await self.watch.wait(done, f"replica {rid} publishing batch {seq}", timeout)

    async def all_outputs(self, last: int, timeout: float = 30.0,
                          stream: str | None = None) -> list[Any]:
        """Every batch of the output stream (or ``stream``) once it holds input ``last``'s
        outputs whole."""
        async def done() -> bool:
            return await self.watch.output_through(stream) >= last
        try:
            await self.watch.wait(done, f"output stream at {last}", timeout)
        except RingLogError as e:  # say where each replica stood
            states = {rid: await self.watch.status(rid) for rid in self.replicas}
            logs = {rid: r.output()[-2000:] for rid, r in self.replicas.items()}
            raise RingLogError(f"{e}; replicas: {states}; logs: {logs}") from e
        return await self.watch.outputs(stream=stream)

    async def market_data(self, last: int, timeout: float = 30.0) -> list[Any]:
        """Every batch of the market data stream once it holds input ``last``'s."""
        return await self.all_outputs(last, timeout, self.watch.names.market_data_stream)


class Load:
    """Publishes engine commands at about ``rate`` per second until stopped."""

    def __init__(self, shard: Shard, rate: float = 2000, n: int = 200_000) -> None:
        self.pub = InputPublisher(shard.js, shard.cfg, 0, reconnect=shard.reconnect)
        self.commands = engine_commands(n)
        self.rate = rate
        self.sent = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Load:
        self._task = asyncio.ensure_future(self._run())
        return self

    async def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set() and self.sent < len(self.commands):
            due = int((time.monotonic() - t0) * self.rate) + 1
            while self.sent < min(due, len(self.commands)):
                ty, pl = self.commands[self.sent]
                await self.pub.publish(ty, pl)
                self.sent += 1
            await asyncio.sleep(0.005)

    async def stop(self) -> int:
        """Stops, flushes; returns the input stream's last sequence."""
        self._stop.set()
        assert self._task is not None
        await self._task
        last = await self.pub.flush()
        await self.pub.close()
        return last


# the output types of the market data stream (the tests' clusters keep the default)
MARKET_DATA = set(ClusterConfig(servers=["nats://127.0.0.1:4222"]).market_data_types)


def check_outputs(batches: list[Any], commands: list[tuple[int, bytes]], last: int,
                  market_data: bool | None = False) -> str:
    """Asserts the output stream (``market_data``: the market data stream; None: an output
    stream with every output, no market data stream) holds, exactly once and in order, its
    share of the outputs the engine gives for ``commands``; returns the engine's state hash
    after them."""
    assert [seq for seq, _, _ in batches] == list(range(1, len(batches) + 1))
    expect_first, expect = 0, (1, 0)  # (input seq, part) of the next batch
    got: list[tuple[int, bytes]] = []
    for seq, batch, headers in batches:
        assert (batch.input_seq, batch.part) == expect, f"output stream message {seq} is " \
            f"part {batch.part} of input {batch.input_seq}, expected {expect}"
        assert headers["Nats-Msg-Id"] == f"{batch.input_seq}.{batch.part}"
        assert batch.first_output == expect_first, f"output batch {seq} starts at " \
            f"{batch.first_output}, the one before ended at {expect_first}"
        expect_first += len(batch.outputs)
        last_part = batch.part == batch.parts - 1
        expect = (batch.input_seq + 1, 0) if last_part else (batch.input_seq, batch.part + 1)
        got += [(o.type_id, o.payload) for o in batch.outputs]
    assert expect == (last + 1, 0), f"the output stream ends before input {last}'s end"
    engine = demo_engine()
    want = [out for ty, pl in commands for out in engine.apply(ty, pl)
            if market_data is None or (out[0] in MARKET_DATA) == market_data]
    assert len(got) == len(want)
    assert got == want
    return str(engine.state_hash())


async def stream_commands(shard: Shard, last: int) -> list[tuple[int, int, int, bytes]]:
    """Every command of the input stream up to ``last``: (producer, seq, type, payload)."""
    dec = msgspec.msgpack.Decoder(InputBatch)
    out = []
    for seq in range(1, last + 1):
        msg = await shard.js.get_msg(shard.watch.names.input_stream, seq, direct=True)
        out += [(c.producer_id, c.producer_seq, c.type_id, c.payload)
                for c in dec.decode(msg.data).commands]
    return out


def apply_once(engine: Any, commands: list[tuple[int, int, int, bytes]]
               ) -> tuple[list[tuple[int, bytes]], set[tuple[int, int]]]:
    """Applies stream commands to ``engine`` as every replica does (a command whose
    (producer, seq) came before is a resend: skipped); returns the outputs and the keys."""
    seen: set[tuple[int, int]] = set()
    outs: list[tuple[int, bytes]] = []
    for producer, seq, ty, payload in commands:
        if producer:
            if (producer, seq) in seen:
                continue
            seen.add((producer, seq))
        outs += engine.apply(ty, payload)
    return outs, seen


@contextlib.contextmanager
def running_nats(nodes: int, prefix: str, **kw: Any) -> Iterator[NatsCluster]:
    """``nodes`` nats-server processes with JetStream (``kw`` to NatsCluster), ready to take
    streams; stopped and their files removed on exit. (Their files live outside pytest's
    numbered temp dirs, which a concurrent pytest run may clean up.)"""
    store = tempfile.mkdtemp(prefix=prefix)
    cluster = NatsCluster(nodes, store, **kw).start()

    async def ready() -> None:
        nc = await nats.connect(cluster.urls)
        try:
            await wait_for_jetstream(nc.jetstream(timeout=2), timeout=60)
        finally:
            await nc.close()

    try:
        asyncio.run(ready())
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(store, ignore_errors=True)
