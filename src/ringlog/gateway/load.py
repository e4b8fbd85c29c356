"""``ringlog load``: an open-loop load generator for the gateway (the wrk2 model).

::

    schedule (start + i / rate, per connection) ──► AsyncClient.send_many (due messages, one
    write) ──TCP──► gateway ──► engine ──► first report of seq i ──► latency = now - intended[i]

Each connection sends on a fixed schedule whatever the server does; a message's latency runs
from the time it *should* have been sent, so a stall shows up in every message scheduled
during it (coordinated omission corrected). The first report that answers a message (or a
Halted / Error) completes it. Percentiles are HdrHistogram's (``ringlog.bench.latency``);
the result is one JSON document.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Literal

import msgspec
import numpy as np

from ..bench.latency import intended_times, percentiles
from ..engine.records import Side, Tif
from .protocol import Cancel, Error, Halted, NewOrder, OpenOrdersEnd, OrderInfo, Report

__all__ = ["LoadConfig", "measure", "run_load"]

_ANSWER = (Report, Halted, Error, OrderInfo, OpenOrdersEnd)


class LoadConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What to offer: ``rate`` messages/s in total over ``connections`` sessions (one token
    each) for ``duration`` seconds; the first ``warmup`` seconds are not measured.

    Patterns: ``ioc`` (immediate-or-cancel orders that never rest: accepted + cancelled),
    ``rest_cancel`` (a resting order, then its cancel: the book stays small).
    """

    host: str = "127.0.0.1"
    port: int = 7878
    tokens: list[str]
    rate: float = 10_000.0
    connections: int = 1
    duration: float = 5.0
    warmup: float = 1.0
    pattern: Literal["ioc", "rest_cancel"] = "ioc"
    symbol: int = 1
    loop: Literal["uvloop", "asyncio"] = "uvloop"
    codec: Literal["msgpack", "json"] = "msgpack"
    drain_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.connections < 1:
            raise ValueError(f"connections must be >= 1, got {self.connections}")
        if len(self.tokens) < self.connections:
            raise ValueError(f"{self.connections} connections need as many tokens (one session "
                             f"each), got {len(self.tokens)}")
        if self.rate <= 0 or self.duration <= 0 or not 0 <= self.warmup < self.duration:
            raise ValueError("rate and duration must be > 0 and 0 <= warmup < duration")


class _Conn:
    """One connection's schedule and completion times (ns, numpy, no object per message)."""

    def __init__(self, cfg: LoadConfig, token: str, n: int, start_ns: int, rate: float) -> None:
        from ..client import AsyncClient

        self.client = AsyncClient(cfg.host, cfg.port, token, codec=cfg.codec,
                                  keep_answers=False, on_message=self._on_message)
        self.intended = intended_times(start_ns, rate, n)
        self.done = np.zeros(n, dtype=np.int64)
        self.base = 0  # the seq of message 0
        self.answered = 0
        self.halted = 0
        self.errors = 0
        self.cfg = cfg
        self.complete = asyncio.get_running_loop().create_future()

    def _on_message(self, msg: Any) -> None:
        if type(msg) not in _ANSWER or not msg.seq:
            return
        i = msg.seq - self.base
        if 0 <= i < len(self.done) and not self.done[i]:
            self.done[i] = time.monotonic_ns()
            self.answered += 1
            if type(msg) is Halted:
                self.halted += 1
            elif type(msg) is Error:
                self.errors += 1
            if self.answered == len(self.done) and not self.complete.done():
                self.complete.set_result(None)

    def message(self, i: int) -> tuple[type[msgspec.Struct], tuple[Any, ...]]:
        sym = self.cfg.symbol
        if self.cfg.pattern == "ioc":  # a buy far below any ask: accepted, then cancelled
            return NewOrder, (i % 0xFFFF_FFFE + 1, sym, Side.BUY, 1, 1, 0, Tif.IOC)
        oid = (i // 2) % 0xFFFF_FFFE + 1
        if i % 2:
            return Cancel, (oid,)
        return NewOrder, (oid, sym, Side.BUY, 1, 1 + i % 10, 0, Tif.GTC)

    async def run(self) -> None:
        c = self.client
        self.base = c.next_seq
        intended = self.intended
        n = len(intended)
        i = 0
        while i < n:
            now = time.monotonic_ns()
            j = int(np.searchsorted(intended, now, side="right"))
            if j > i:  # everything due goes out in one write
                c.send_many([self.message(k) for k in range(i, j)])
                i = j
            if i < n:
                await asyncio.sleep(max(0.0, (int(intended[i]) - time.monotonic_ns()) / 1e9))


async def _load(cfg: LoadConfig) -> tuple[dict[str, Any], np.ndarray]:
    n = max(1, int(cfg.rate / cfg.connections * cfg.duration))
    per_conn_rate = cfg.rate / cfg.connections
    start = time.monotonic_ns() + 200_000_000  # time to connect and log on first
    conns = [_Conn(cfg, cfg.tokens[k], n, start + int(k * 1e9 / cfg.rate), per_conn_rate)
             for k in range(cfg.connections)]
    for c in conns:
        await c.client.logon()
    behind = max(0, time.monotonic_ns() - start)
    if behind:  # logons took longer than planned: shift the schedule, never compress it
        for c in conns:
            c.intended += behind
    await asyncio.gather(*(c.run() for c in conns))
    with contextlib.suppress(TimeoutError):  # what is still unanswered is reported missing
        await asyncio.wait_for(asyncio.gather(*(c.complete for c in conns)),
                               cfg.drain_timeout)
    for c in conns:
        await c.client.close_and_wait()
    intended = np.concatenate([c.intended for c in conns])
    done = np.concatenate([c.done for c in conns])
    first = int(intended.min())
    measured = (intended >= first + int(cfg.warmup * 1e9)) & (done > 0)
    answered = int((done > 0).sum())
    last = int(done.max()) if answered else first
    lat = done[measured] - intended[measured]
    doc = {
        "offered_rate": cfg.rate, "connections": cfg.connections, "duration_s": cfg.duration,
        "warmup_s": cfg.warmup, "pattern": cfg.pattern, "loop": cfg.loop, "codec": cfg.codec,
        "sent": len(intended), "answered": answered,
        "missing": len(intended) - answered,
        "halted": sum(c.halted for c in conns), "errors": sum(c.errors for c in conns),
        "achieved_rate": answered / max((last - first) / 1e9, 1e-9),
        "latency_ns": percentiles(lat) if lat.size else None,
    }
    return doc, lat


def run_load(cfg: LoadConfig) -> dict[str, Any]:
    """Runs the load on a new event loop of ``cfg.loop``; returns the result document."""
    return measure(cfg)[0]


def measure(cfg: LoadConfig) -> tuple[dict[str, Any], np.ndarray]:
    """Runs the load; returns the result document and the measured latencies (ns, raw)."""
    from .server import new_event_loop

    loop = new_event_loop(cfg.loop)
    try:
        return loop.run_until_complete(_load(cfg))
    finally:
        loop.close()
