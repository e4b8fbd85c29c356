"""Replicas as child processes, for the failure tests, the benchmarks and trying a cluster on
one machine: start, kill -9, SIGSTOP/SIGCONT, and read what the shard says about them.

::

    test / bench process ── ReplicaProcess.start() ──► python -m ringlog.cluster …
          │  kill() = SIGKILL, pause() = SIGSTOP, resume() = SIGCONT
          └─ ShardWatch: status bucket, output stream, lease (read-only NATS client)

Not thread-safe: one owner drives the processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ..errors import ClusterTimeoutError
from .config import ClusterConfig
from .replica import ReplicaStatus
from .stream import OutputBatch

__all__ = ["ReplicaProcess", "ShardWatch", "engine_commands", "stop_all"]


class ReplicaProcess:
    """One replica in a child process (``python -m ringlog.cluster``)."""

    def __init__(self, cfg: ClusterConfig, replica_id: str, directory: str | Path, *,
                 shard: int = 0, handler: str = "ringlog.engine.flow:demo_engine",
                 segment_size: int = 1 << 20, extra: list[str] | None = None,
                 gateway_config: str | Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.cfg = cfg
        self.env = env or {}  # variables for the child beside this process's
        self.replica_id = replica_id
        self.directory = Path(directory)
        self.shard = shard
        common = ["--cluster", ",".join(cfg.servers), "--cluster-name", cfg.name,
                  "--shard", str(shard), "--shards", str(cfg.shards),
                  "--replicas", str(cfg.replicas), "--replica-id", replica_id,
                  "--lease-ttl", str(cfg.lease_ttl),
                  "--checkpoint-every", str(cfg.checkpoint_every),
                  "--cluster-snapshot-every", str(cfg.snapshot_every)]
        # options at their defaults left out: a replica of an older build (an A/B) runs too
        default = type(cfg)(servers=cfg.servers)
        if cfg.market_data_types != default.market_data_types:
            common += ["--market-data-types", ",".join(map(str, cfg.market_data_types))]
        if cfg.market_data_replicas != default.market_data_replicas:
            common += ["--market-data-replicas", str(cfg.market_data_replicas)]
        if gateway_config is None:
            self.args = [sys.executable, "-m", "ringlog.cluster", *common,
                         "--dir", str(self.directory), "--handler", handler,
                         "--segment-size", str(segment_size), *(extra or [])]
        else:  # a node with a TCP gateway: ``ringlog serve --cluster`` on a free port
            self.args = [sys.executable, "-m", "ringlog", "serve", str(self.directory),
                         "--config", str(gateway_config), "--port", "0", *common,
                         *(extra or [])]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.directory.with_name(self.directory.name + ".log")

    def start(self) -> ReplicaProcess:
        """Starts the process (its output goes to ``<dir>.log``)."""
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")  # noqa: SIM115 (the child keeps it)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, env=env)
        out.close()
        return self

    @property
    def pid(self) -> int:
        """The child's process id."""
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the process stops wherever it is, holding whatever it held."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def terminate(self) -> None:
        """Asks for a clean stop (SIGCONT first: a paused process could not act on it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (a clean stop), SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def output(self) -> str:
        """What the process printed so far."""
        return self.log.read_text() if self.log.exists() else ""

    def events(self, name: str) -> list[dict[str, Any]]:
        """The JSON-line events called ``name`` the process printed so far."""
        import json

        out = []
        for line in self.output().splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                with contextlib.suppress(ValueError):
                    ev = json.loads(line)
                    if ev.get("event") == name:
                        out.append(ev)
        return out


def stop_all(replicas: list[ReplicaProcess], timeout: float = 15.0) -> None:
    """Stops replicas together: every one is asked first, then each is waited for."""
    for r in replicas:
        r.terminate()
    for r in replicas:
        r.stop(timeout)


class ShardWatch:
    """A read-only view of one shard from the outside: each replica's status, the lease
    holder, the output stream. Use from one event loop."""

    def __init__(self, js: Any, cfg: ClusterConfig, shard: int = 0) -> None:
        self.js = js
        self.cfg = cfg
        self.names = cfg.names(shard)
        self.reconnect: Callable[[], Any] | None = None  # called if nats-py closed ``js``

    async def status(self, replica_id: str) -> ReplicaStatus | None:
        """The replica's last published status, None if it never published one. Read from
        the bucket's stream leader (a key-value get may be served by a follower that lags,
        e.g. a NATS node catching up after a restart)."""
        bucket = self.names.status_bucket
        try:
            msg = await self.js.get_last_msg(f"KV_{bucket}", f"$KV.{bucket}."
                                             f"{self.names.status_key(replica_id)}")
        except Exception:
            return None
        if not msg.data:
            return None
        return msgspec.json.decode(msg.data, type=ReplicaStatus)

    async def leader(self) -> str | None:
        """The lease holder named in the bucket (None: no one)."""
        try:
            kv = await self.js.key_value(self.names.lease_bucket)
            entry = await kv.get(self.names.lease_key)
        except Exception:
            return None
        return entry.value.decode() if entry.value else None

    async def last_output_seq(self) -> int:
        """The output stream's last sequence."""
        info = await self.js.stream_info(self.names.output_stream)
        return int(info.state.last_seq)

    async def output_through(self, stream: str | None = None) -> int:
        """The last input message whose output batches the output stream (or ``stream``,
        e.g. the market data stream) holds whole."""
        from .outputs import output_position

        return (await output_position(self.js, stream or self.names.output_stream)).through

    async def last_input_seq(self) -> int:
        """The input stream's last sequence."""
        info = await self.js.stream_info(self.names.input_stream)
        return int(info.state.last_seq)

    async def outputs(self, first: int = 1, stream: str | None = None
                      ) -> list[tuple[int, OutputBatch, dict[str, str]]]:
        """Every output stream (or ``stream``) message from ``first`` on: (stream seq,
        batch, headers)."""
        stream = stream or self.names.output_stream
        last = int((await self.js.stream_info(stream)).state.last_seq)
        dec = msgspec.msgpack.Decoder(OutputBatch)
        out = []
        for seq in range(first, last + 1):
            msg = await self.js.get_msg(stream, seq, direct=True)
            out.append((seq, dec.decode(msg.data), dict(msg.headers or {})))
        return out

    async def wait(self, predicate: Callable[[], Any], what: str,
                   timeout: float = 30.0) -> Any:
        """Polls the coroutine function ``predicate`` until it returns something true."""
        import nats.errors

        deadline = time.monotonic() + timeout
        while True:
            try:
                got = await predicate()
            except nats.errors.ConnectionClosedError:
                if self.reconnect is None:
                    raise
                await self.reconnect()  # sets self.js
                got = None
            except (nats.errors.Error, TimeoutError):
                got = None  # no stream leader yet, a timeout: NATS is electing; ask again
            if got:
                return got
            if time.monotonic() > deadline:
                raise ClusterTimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            await asyncio.sleep(0.02)


def engine_commands(n: int, seed: int = 1, symbols: int = 4) -> list[tuple[int, bytes]]:
    """``n`` commands of the engine's mixed flow as ``(type_id, payload)``."""
    from ..engine.flow import mixed_flow

    cmds, types = mixed_flow(n, seed=seed, symbols=symbols)
    return [(int(t), cmds[i].tobytes()) for i, t in enumerate(types)]
