"""A tiny stand-in for the matching engine, speaking ringlog.engine.records (a test double).

Kept for the one session-layer test the real engine cannot serve: a handler that blocks on a
gate (test_gateway_server.GatedEngine) so the input ring fills. Every other gateway test runs
the real ``ringlog.engine.Engine``.

It answers the way the engine's contract says so the gateway's session layer can be tested
alone: NEW -> ACCEPTED, TRADE with the first crossing resting order(s), then RESTED (GTC) or
CANCELLED (IOC remainder); CANCEL -> CANCELLED | REJECTED; ORDER_STATUS / OPEN_ORDERS ->
ORDER_INFO ... OPEN_ORDERS_END; an L1 update per book change. No priority, no bands: the real
engine's semantics are tested with the engine.
"""

from __future__ import annotations

from typing import Any

from ringlog import EventHandler
from ringlog.engine.records import CancelReason, Command, RejectReason, Report, Side, Tif
from ringlog.gateway.session import COMMAND, L1, REPORT, TRADE


class StandInEngine(EventHandler):
    """Orders in a dict: eid -> [account, symbol, side, price, leaves]."""

    def __init__(self) -> None:
        self.orders: dict[int, list[int]] = {}

    def _report(self, kind: int, eid: int, account: int, symbol: int, price: int, qty: int,
                leaves: int, side: int, reason: int = 0, cmd: int = 0) -> None:
        self.emit(REPORT.pack(eid, account, symbol, price, qty, leaves, side, reason, cmd), kind,
                  account)

    def _l1(self, symbol: int) -> None:
        bids = [o for o in self.orders.values() if o[1] == symbol and o[2] == Side.BUY]
        asks = [o for o in self.orders.values() if o[1] == symbol and o[2] == Side.SELL]
        bb = max(bids, key=lambda o: o[3]) if bids else None
        ba = min(asks, key=lambda o: o[3]) if asks else None
        self.emit(L1.pack(symbol, bb[3] if bb else 0, bb[4] if bb else 0, ba[3] if ba else 0,
                          ba[4] if ba else 0), Report.L1, symbol)

    def on_event(self, event: Any, sequence: int, end_of_batch: bool) -> None:
        (eid, price, qty, account, symbol, side, _otype, tif, _flags, _stp,
         _tag) = COMMAND.unpack(bytes(event.payload))
        t = event.type_id
        cmd = t - 100
        o = self.orders.get(eid)
        if t == Command.NEW:
            if qty <= 0 or eid in self.orders:
                reason = RejectReason.INVALID_QTY if qty <= 0 else RejectReason.DUPLICATE_ORDER_ID
                self._report(Report.REJECTED, eid, account, symbol, price, qty, 0, side, reason,
                             cmd)
                return
            self._report(Report.ACCEPTED, eid, account, symbol, price, qty, qty, side, 0, cmd)
            leaves = qty
            for mid, m in list(self.orders.items()):
                crosses = price >= m[3] if side == Side.BUY else price <= m[3]
                if m[1] != symbol or m[2] == side or not crosses:
                    continue
                q = min(leaves, m[4])
                leaves -= q
                m[4] -= q
                self.emit(TRADE.pack(eid, mid, account, m[0], symbol, side, m[3], q, leaves,
                                     m[4]), Report.TRADE, account)
                if not m[4]:
                    del self.orders[mid]
                if not leaves:
                    break
            if leaves and tif == Tif.GTC:
                self.orders[eid] = [account, symbol, side, price, leaves]
                self._report(Report.RESTED, eid, account, symbol, price, qty, leaves, side, 0,
                             cmd)
            elif leaves:
                self._report(Report.CANCELLED, eid, account, symbol, price, leaves, 0, side,
                             CancelReason.UNFILLED, cmd)
            self._l1(symbol)
        elif t in (Command.CANCEL, Command.MODIFY, Command.ORDER_STATUS):
            if o is None or o[0] != account:
                reason = RejectReason.UNKNOWN_ORDER if o is None else RejectReason.NOT_OWNER
                self._report(Report.REJECTED, eid, account, 0, 0, 0, 0, 0, reason, cmd)
            elif t == Command.CANCEL:
                del self.orders[eid]
                self._report(Report.CANCELLED, eid, account, o[1], o[3], o[4], 0, o[2],
                             CancelReason.USER, cmd)
                self._l1(o[1])
            elif t == Command.MODIFY:
                o[3], o[4] = price, qty
                self._report(Report.MODIFIED, eid, account, o[1], price, qty, qty, o[2], 0, cmd)
                self._l1(o[1])
            else:
                self._report(Report.ORDER_INFO, eid, account, o[1], o[3], o[4], o[4], o[2], 0,
                             cmd)
        elif t == Command.MASS_CANCEL:
            for mid, m in list(self.orders.items()):
                if m[0] == account and (not symbol or m[1] == symbol):
                    del self.orders[mid]
                    self._report(Report.CANCELLED, mid, account, m[1], m[3], m[4], 0, m[2],
                                 CancelReason.MASS_CANCEL, cmd)
        elif t == Command.OPEN_ORDERS:
            n = 0
            for mid, m in self.orders.items():
                if m[0] == account and (not symbol or m[1] == symbol):
                    self._report(Report.ORDER_INFO, mid, account, m[1], m[3], m[4], m[4], m[2],
                                 0, cmd)
                    n += 1
            self._report(Report.OPEN_ORDERS_END, n, account, symbol, 0, 0, 0, 0, 0, cmd)
