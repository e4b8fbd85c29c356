"""The gateway's per-report path alone, on a synthetic block of output ring slots: 8 sessions
with connections; per order an accepted, a rested, a third of a trade (two accounts) and an
unwatched L1 record. Prints CPU ns per order; run under ``valgrind --tool=callgrind`` with 1
and 3 passes for instructions per order (the difference / 2 passes / 4,000 orders), with
``PYTHONHASHSEED=0`` (dict and set probing then repeat exactly). Ten untimed passes first fill
the resend stores (their arenas grow to size once), so the passes measure the steady state.

    python bench/gateway_route_micro.py [passes]
    PYTHONPATH=<checkout of 2f5e4fc>/src python bench/gateway_route_micro.py [passes]
        (the Python route of that commit: OutputSlots + SessionTable.route + Session.record +
        msgspec encode, as its Gateway._drain_outputs did)
"""

from __future__ import annotations

import struct
import sys
import time
from typing import Any

from ringlog._wire import OutputSlots

try:
    from ringlog._gateway import Outbox
except ImportError:  # a checkout before the router wrote through Outbox
    Outbox = None
from ringlog.engine.records import Report as R
from ringlog.engine.records import Side
from ringlog.gateway.protocol import FrameEncoder, MarketData
from ringlog.gateway.session import (
    REPORT,
    TRADE,
    GatewayConfig,
    SessionEntry,
    SessionTable,
    correlation,
)

SLOT = 128
ORDERS = 4000
HEADER = struct.Struct("<qqqqIIII")


class _Transport:
    def is_closing(self) -> bool:
        return False


class _Conn:
    """What the drain reads of a connection."""

    def __init__(self, dirty: set[Any]) -> None:
        self.transport = _Transport()
        self.outbox = Outbox(self) if Outbox is not None else None
        self.out = bytearray()
        self.raw_frames = True
        self.paused: set[str] = set()
        self.encoder = FrameEncoder("msgpack")
        self.dirty = dirty

    def send(self, msg: Any) -> None:  # the old path's Connection.send
        if not self.out:
            self.dirty.add(self)
        self.encoder.append(self.out, msg)


def _slot(type_id: int, payload: bytes, corr: int, cause: int) -> bytes:
    b = HEADER.pack(0, 0, corr, cause, type_id, 0, len(payload), 0) + payload
    return b + bytes(SLOT - len(b))


def block() -> bytes:
    """The synthetic output block (3.33 records per order)."""
    parts = []
    seq = dict.fromkeys(range(1, 9), 0)
    for k in range(ORDERS):
        sid = k % 8 + 1
        seq[sid] += 1
        q, acct, other = seq[sid], sid, sid % 8 + 1
        corr = correlation(sid, q)
        parts.append(_slot(R.ACCEPTED, REPORT.pack(acct << 32 | q, acct, 1, 100, 5, 5, Side.BUY,
                                                   0, 1), corr, k))
        if k % 3 == 0:
            parts.append(_slot(R.TRADE, TRADE.pack(acct << 32 | q, other << 32 | 1, acct, other,
                                                   1, Side.BUY, 100, 2, 3, 0), corr, k))
        parts.append(_slot(R.RESTED, REPORT.pack(acct << 32 | q, acct, 1, 100, 5, 3, Side.BUY,
                                                 0, 1), corr, k))
        parts.append(_slot(R.L1, struct.pack("<I4xqqqq", 1, 1, 1, 1, 1), 0, k))
    return b"".join(parts)


def main(passes: int) -> None:
    t = SessionTable(GatewayConfig(port=0, sessions=[
        SessionEntry(i, f"token-{i:04d}", i) for i in range(1, 9)]))
    dirty: set[Any] = set()
    for s in t.by_id.values():
        s.conn = _Conn(dirty)
    data = block()
    compiled = hasattr(t, "router")

    def old_drain() -> None:
        for i, type_id, payload, corr, cause in OutputSlots(data, SLOT, t.subscribers):
            for s, seq, msg in t.route(type_id, payload, corr, cause, 1 + 2 * i):
                if seq:
                    s.record(seq, msg)
                c = s.conn
                if c.paused and type(msg) is MarketData:
                    continue
                c.send(msg)
                if seq:
                    dirty.add(c)

    def one_pass() -> None:
        for s in t.by_id.values():
            s.conn.out = bytearray()
            if s.conn.outbox is not None:
                s.conn.outbox.out = bytearray()
                s.conn.outbox.queued = False
            s.inflight.clear()
        if compiled:
            t.router.drain(data, SLOT, 1, dirty)
        else:
            old_drain()

    for _ in range(10):  # untimed: the resend stores fill their window (4,096 seqs)
        one_pass()
    t0 = time.process_time_ns()
    for _ in range(passes):
        one_pass()
    dt = time.process_time_ns() - t0
    print(f"{'Router.drain (C)' if compiled else 'Python route'}: "
          f"{dt / (passes * ORDERS):.0f} ns CPU per order")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
