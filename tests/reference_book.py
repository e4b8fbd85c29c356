"""A small, obviously-correct pure-Python matching engine with the Engine's semantics.

It is the oracle of the differential tests: the same commands in, the same reports out (as
the dicts ``ringlog.engine.decode`` returns) and the same books. Every book is a plain list
of live order dicts; priority is recomputed by sorting on (price, arrival) whenever it is
needed, so nothing here can drift out of order. Slow on purpose: it favours being evidently
right over speed (it is also the "reference book" peer of bench/bench_engine.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ringlog.engine.records import COMMAND_DTYPE, FLAG_POST_ONLY, Report

BUY, SELL = 1, 2
GTC, IOC, FOK = 0, 1, 2
NONE, NEWEST, OLDEST, BOTH = 1, 2, 3, 4
MAX_QTY = 1 << 40


class RefEngine:
    """The reference: ``apply(type_id, payload) -> [report dicts]``; ``book(symbol)`` dumps
    a book in the Engine's ``book()`` format."""

    def __init__(self, config: Any) -> None:
        self.cfg = config
        self.specs = {s.symbol: s for s in config.symbols}
        self.orders: dict[int, dict[str, Any]] = {}
        self.books: dict[int, list[dict[str, Any]]] = {s.symbol: [] for s in config.symbols}
        self.last = {s.symbol: 0 for s in config.symbols}
        self.arrival = 0
        self.depth = config.l2_depth if config.market_data else 0
        self.sent: dict[int, Any] = {s.symbol: ((0, 0, 0, 0), ([], [])) for s in config.symbols}
        self.out: list[dict[str, Any]] = []

    # -- helpers ------------------------------------------------------------------------------
    def side_orders(self, symbol: int, side: int) -> list[dict[str, Any]]:
        """Live orders of one side in priority order."""
        mine = [o for o in self.books[symbol] if o["side"] == side]
        return sorted(mine, key=lambda o: (-o["price"] if side == BUY else o["price"],
                                           o["arrival"]))

    def levels(self, symbol: int, side: int) -> list[tuple[int, int, list[dict[str, Any]]]]:
        out: list[tuple[int, int, list[dict[str, Any]]]] = []
        for o in self.side_orders(symbol, side):
            if out and out[-1][0] == o["price"]:
                out[-1][2].append(o)
            else:
                out.append((o["price"], 0, [o]))
        return [(p, sum(o["leaves"] for o in os), os) for p, _, os in out]

    def report(self, t: Report, order_id: int, account: int, symbol: int, price: int, qty: int,
               leaves: int, side: int, reason: int, command: int) -> None:
        self.out.append({"type": t, "order_id": order_id, "account": account, "symbol": symbol,
                         "price": price, "qty": qty, "leaves": leaves, "side": side,
                         "reason": reason, "command": command})

    def report_order(self, t: Report, o: dict[str, Any], qty: int, reason: int,
                     command: int) -> None:
        self.report(t, o["order_id"], o["account"], o["symbol"], o["price"], qty, o["leaves"],
                    o["side"], reason, command)

    def reject(self, c: dict[str, int], reason: int, command: int) -> None:
        self.report(Report.REJECTED, c["order_id"], c["account"], c["symbol"], c["price"],
                    c["qty"], 0, c["side"], reason, command)

    def limits(self, account: int) -> Any:
        return self.cfg.account_limits.get(account, self.cfg.limits)

    def check_price(self, symbol: int, price: int) -> int:
        s = self.specs[symbol]
        if not s.min_price <= price <= s.max_price:
            return 3  # INVALID_PRICE
        ref = self.last[symbol] or s.reference_price
        if ref:
            d = abs(price - ref)
            if s.band_ticks and d > s.band_ticks:
                return 10
            if s.band_ppm and d * 1_000_000 > ref * s.band_ppm:
                return 10
        return 0

    def remove(self, o: dict[str, Any]) -> None:
        self.books[o["symbol"]].remove(o)
        del self.orders[o["order_id"]]

    def crosses(self, t: dict[str, Any], price: int) -> bool:
        return price <= t["price"] if t["side"] == BUY else price >= t["price"]

    def makers(self, t: dict[str, Any]) -> list[dict[str, Any]]:
        opp = SELL if t["side"] == BUY else BUY
        return [o for o in self.side_orders(t["symbol"], opp) if self.crosses(t, o["price"])]

    def fillable(self, t: dict[str, Any]) -> int:
        got = 0
        for o in self.makers(t):
            if o["account"] == t["account"] and t["mode"] != NONE:
                if t["mode"] != OLDEST:
                    return got
                continue
            got += o["leaves"]
        return got

    def match(self, t: dict[str, Any]) -> bool:
        """Trades the taker; True if self-trade prevention cancels its remainder."""
        while t["leaves"] > 0:
            makers = self.makers(t)
            if not makers:
                return False
            m = makers[0]
            if m["account"] == t["account"] and t["mode"] != NONE:
                if t["mode"] == NEWEST:
                    return True
                q = m["leaves"]
                m["leaves"] = 0
                self.report_order(Report.CANCELLED, m, q, 3, t["command"])
                self.remove(m)
                if t["mode"] == BOTH:
                    return True
                continue
            q = min(m["leaves"], t["leaves"])
            m["leaves"] -= q
            t["leaves"] -= q
            self.last[t["symbol"]] = m["price"]
            self.out.append({"type": Report.TRADE, "taker_id": t["order_id"],
                             "maker_id": m["order_id"], "taker_account": t["account"],
                             "maker_account": m["account"], "symbol": t["symbol"],
                             "taker_side": t["side"], "price": m["price"], "qty": q,
                             "taker_leaves": t["leaves"], "maker_leaves": m["leaves"]})
            if m["leaves"] == 0:
                self.remove(m)
        return False

    def execute(self, t: dict[str, Any], gtc: bool, price: int) -> None:
        stp = self.match(t)
        if t["leaves"] > 0:
            if stp:
                self.taker(Report.CANCELLED, t, price, t["leaves"], 3)
            elif gtc:
                self.arrival += 1
                o = {**t, "arrival": self.arrival}
                self.orders[o["order_id"]] = o
                self.books[o["symbol"]].append(o)
                self.taker(Report.RESTED, t, price, t["qty"], 0)
            else:
                self.taker(Report.CANCELLED, t, price, t["leaves"], 1)

    def taker(self, typ: Report, t: dict[str, Any], price: int, qty: int, reason: int) -> None:
        self.report(typ, t["order_id"], t["account"], t["symbol"], price, qty,
                    0 if typ == Report.CANCELLED else t["leaves"], t["side"], reason,
                    t["command"])

    def market_data(self, symbol: int) -> None:
        if not self.cfg.market_data:
            return
        bids, asks = self.levels(symbol, BUY), self.levels(symbol, SELL)
        l1 = (bids[0][0] if bids else 0, bids[0][1] if bids else 0,
              asks[0][0] if asks else 0, asks[0][1] if asks else 0)
        l2 = ([(p, q) for p, q, _ in bids[: self.depth]],
              [(p, q) for p, q, _ in asks[: self.depth]])
        sent_l1, sent_l2 = self.sent[symbol]
        if l1 != sent_l1:
            self.out.append({"type": Report.L1, "symbol": symbol, "bid_price": l1[0],
                             "bid_qty": l1[1], "ask_price": l1[2], "ask_qty": l1[3]})
        if self.depth and l2 != sent_l2:
            self.out.append({"type": Report.L2, "symbol": symbol, "bids": l2[0],
                             "asks": l2[1]})
        self.sent[symbol] = (l1, l2 if self.depth else sent_l2)

    # -- commands -----------------------------------------------------------------------------
    def apply(self, type_id: int, payload: bytes) -> list[dict[str, Any]]:
        """Runs one command; returns its reports in order."""
        self.out = []
        raw = bytes(payload)[:48].ljust(48, b"\0")
        rec = np.frombuffer(raw, COMMAND_DTYPE, count=1)[0]
        c = {n: int(rec[n]) for n in COMMAND_DTYPE.names if not n.startswith("_")}
        kind = type_id - 100 if 100 < type_id < 356 else 0
        if not 101 <= type_id <= 106:
            self.reject(c, 14, kind)
        elif len(payload) != 48:
            self.reject(c, 15, kind)
        else:
            getattr(self, ("new", "cancel", "modify", "mass_cancel", "status",
                           "open_orders")[type_id - 101])(c)
        return self.out

    def new(self, c: dict[str, int]) -> None:
        sym = c["symbol"]
        if sym not in self.specs:
            return self.reject(c, 1, 1)
        if c["side"] not in (BUY, SELL):
            return self.reject(c, 4, 1)
        market = c["order_type"] == 1
        post = c["flags"] & FLAG_POST_ONLY
        if (c["order_type"] > 1 or c["tif"] > 2 or c["stp"] > 4 or c["flags"] & ~FLAG_POST_ONLY
                or (market and c["tif"] == GTC) or (post and (market or c["tif"] != GTC))):
            return self.reject(c, 5, 1)
        if not 0 < c["qty"] <= MAX_QTY:
            return self.reject(c, 2, 1)
        if market and c["price"] != 0:
            return self.reject(c, 3, 1)
        if not market and (r := self.check_price(sym, c["price"])):
            return self.reject(c, r, 1)
        lim = self.limits(c["account"])
        if lim.max_order_qty and c["qty"] > lim.max_order_qty:
            return self.reject(c, 11, 1)
        if c["order_id"] in self.orders:
            return self.reject(c, 6, 1)
        gtc = c["tif"] == GTC
        if gtc:
            mine = sum(o["account"] == c["account"] for o in self.orders.values())
            if lim.max_open_orders and mine >= lim.max_open_orders:
                return self.reject(c, 12, 1)
            if len(self.orders) >= self.cfg.max_orders:
                return self.reject(c, 13, 1)
        spec = self.specs[sym]
        limit = c["price"] if not market else (spec.max_price if c["side"] == BUY
                                               else spec.min_price)
        t = {"order_id": c["order_id"], "account": c["account"], "symbol": sym,
             "side": c["side"], "price": limit, "qty": c["qty"], "leaves": c["qty"],
             "flags": c["flags"], "stp": c["stp"], "mode": c["stp"] or int(self.cfg.stp),
             "command": 1}
        if post and self.makers(t):
            return self.reject(c, 9, 1)
        self.taker(Report.ACCEPTED, t, c["price"], c["qty"], 0)
        if c["tif"] == FOK and self.fillable(t) < t["qty"]:
            self.taker(Report.CANCELLED, t, c["price"], c["qty"], 2)
        else:
            self.execute(t, gtc, c["price"])
        self.market_data(sym)
        return None

    def owned(self, c: dict[str, int], command: int) -> dict[str, Any] | None:
        o = self.orders.get(c["order_id"])
        if o is None:
            self.reject(c, 7, command)
        elif o["account"] != c["account"]:
            self.reject(c, 8, command)
        else:
            return o
        return None

    def cancel(self, c: dict[str, int]) -> None:
        o = self.owned(c, 2)
        if o is not None:
            q = o["leaves"]
            o["leaves"] = 0
            self.report_order(Report.CANCELLED, o, q, 0, 2)
            self.remove(o)
            self.market_data(o["symbol"])

    def modify(self, c: dict[str, int]) -> None:
        o = self.owned(c, 3)
        if o is None:
            return
        if not 0 < c["qty"] <= MAX_QTY:
            return self.reject(c, 2, 3)
        if c["price"] != o["price"] and (r := self.check_price(o["symbol"], c["price"])):
            return self.reject(c, r, 3)
        lim = self.limits(c["account"])
        if lim.max_order_qty and c["qty"] > lim.max_order_qty:
            return self.reject(c, 11, 3)
        if c["price"] == o["price"] and c["qty"] <= o["leaves"]:
            o["qty"] -= o["leaves"] - c["qty"]
            o["leaves"] = c["qty"]
            self.report_order(Report.MODIFIED, o, o["qty"], 0, 3)
        else:
            t = {**o, "price": c["price"], "qty": o["qty"] - o["leaves"] + c["qty"],
                 "leaves": c["qty"], "mode": o["stp"] or int(self.cfg.stp), "command": 3}
            if t["flags"] & FLAG_POST_ONLY and self.makers(t):
                return self.reject(c, 9, 3)
            self.remove(o)
            self.taker(Report.MODIFIED, t, t["price"], t["qty"], 0)
            self.execute(t, True, t["price"])
        self.market_data(o["symbol"])
        return None

    def scope(self, c: dict[str, int], command: int) -> list[int] | None:
        if c["symbol"] == 0:
            return [s.symbol for s in self.cfg.symbols]
        if c["symbol"] not in self.specs:
            self.reject(c, 1, command)
            return None
        return [c["symbol"]]

    def mass_cancel(self, c: dict[str, int]) -> None:
        for sym in self.scope(c, 4) or ():
            for side in (BUY, SELL):
                for o in self.side_orders(sym, side):
                    if o["account"] == c["account"]:
                        q = o["leaves"]
                        o["leaves"] = 0
                        self.report_order(Report.CANCELLED, o, q, 4, 4)
                        self.remove(o)
            self.market_data(sym)

    def status(self, c: dict[str, int]) -> None:
        o = self.owned(c, 5)
        if o is not None:
            self.report_order(Report.ORDER_INFO, o, o["qty"], 0, 5)

    def open_orders(self, c: dict[str, int]) -> None:
        syms = self.scope(c, 6)
        if syms is None:
            return
        n = 0
        for sym in syms:
            for side in (BUY, SELL):
                for o in self.side_orders(sym, side):
                    if o["account"] == c["account"]:
                        self.report_order(Report.ORDER_INFO, o, o["qty"], 0, 6)
                        n += 1
        self.report(Report.OPEN_ORDERS_END, n, c["account"], c["symbol"], 0, 0, 0, 0, 0, 6)

    # -- state --------------------------------------------------------------------------------
    def book(self, symbol: int) -> dict[str, Any]:
        """The book in the Engine's ``book()`` format."""
        def side(s: int) -> list[dict[str, Any]]:
            return [{"price": p, "qty": q, "orders": [
                {"order_id": o["order_id"], "account": o["account"], "symbol": symbol,
                 "side": o["side"], "price": o["price"], "qty": o["qty"], "leaves": o["leaves"],
                 "post_only": bool(o["flags"] & FLAG_POST_ONLY), "stp": o["stp"]}
                for o in os]} for p, q, os in self.levels(symbol, s)]
        return {"symbol": symbol, "last_price": self.last[symbol],
                "orders": len(self.books[symbol]), "bids": side(BUY), "asks": side(SELL)}
