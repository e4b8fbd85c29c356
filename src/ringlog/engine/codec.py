"""Building command payloads and decoding reports, for tests, tools, the demo and the gateway.

    payload = new_order(7, account=1, symbol=1, side=Side.BUY, price=100, qty=5)
    processor.publish(payload, Command.NEW)
    ...
    decode(Report.TRADE, record.payload)   # -> dict of the TRADE_DTYPE fields

``registry(l2_depth)`` registers every command and report type with its dtype, so a journal's
schema descriptor lets tools decode engine journals without the application's code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..events import EventRegistry
from .records import (
    COMMAND_DTYPE,
    FLAG_POST_ONLY,
    L1_DTYPE,
    REPORT_DTYPE,
    TRADE_DTYPE,
    CancelReason,
    Command,
    OrderType,
    RejectReason,
    Report,
    Side,
    Stp,
    Tif,
    l2_dtype,
)

__all__ = ["cancel", "command", "decode", "mass_cancel", "modify", "new_order", "open_orders",
           "order_status", "registry", "report_dtype"]


def command(order_id: int = 0, *, account: int = 0, symbol: int = 0, side: int = 0,
            order_type: int = OrderType.LIMIT, tif: int = Tif.GTC, price: int = 0,
            qty: int = 0, flags: int = 0, stp: int = Stp.ENGINE_DEFAULT,
            client_tag: int = 0) -> bytes:
    """One COMMAND_DTYPE record as bytes (any command; fields it does not use stay 0)."""
    rec = np.zeros(1, COMMAND_DTYPE)
    r = rec[0]
    r["order_id"], r["account"], r["symbol"], r["side"] = order_id, account, symbol, side
    r["order_type"], r["tif"], r["price"], r["qty"] = order_type, tif, price, qty
    r["flags"], r["stp"], r["client_tag"] = flags, stp, client_tag
    return rec.tobytes()


def new_order(order_id: int, *, account: int, symbol: int, side: int, qty: int,
              price: int = 0, order_type: int = OrderType.LIMIT, tif: int = Tif.GTC,
              post_only: bool = False, stp: int = Stp.ENGINE_DEFAULT,
              client_tag: int = 0) -> bytes:
    """Payload of Command.NEW (price 0 and order_type MARKET for a market order)."""
    return command(order_id, account=account, symbol=symbol, side=side, order_type=order_type,
                   tif=tif, price=price, qty=qty, flags=FLAG_POST_ONLY if post_only else 0,
                   stp=stp, client_tag=client_tag)


def cancel(order_id: int, *, account: int) -> bytes:
    """Payload of Command.CANCEL."""
    return command(order_id, account=account)


def modify(order_id: int, *, account: int, price: int, qty: int) -> bytes:
    """Payload of Command.MODIFY: the new price and the new open quantity."""
    return command(order_id, account=account, price=price, qty=qty)


def mass_cancel(account: int, symbol: int = 0) -> bytes:
    """Payload of Command.MASS_CANCEL (symbol 0 = every symbol)."""
    return command(account=account, symbol=symbol)


def order_status(order_id: int, *, account: int) -> bytes:
    """Payload of Command.ORDER_STATUS."""
    return command(order_id, account=account)


def open_orders(account: int, symbol: int = 0) -> bytes:
    """Payload of Command.OPEN_ORDERS (symbol 0 = every symbol)."""
    return command(account=account, symbol=symbol)


_REPORT_DTYPES = {Report.TRADE: TRADE_DTYPE, Report.L1: L1_DTYPE}
_ENUMS = {"side": Side, "taker_side": Side}


def report_dtype(type_id: int, l2_depth: int = 0) -> np.dtype:
    """The dtype of a report type's payload."""
    if type_id == Report.L2:
        return l2_dtype(l2_depth)
    return _REPORT_DTYPES.get(Report(type_id), REPORT_DTYPE)


def decode(type_id: int, payload: Any) -> dict[str, Any]:
    """A report payload as a dict: ``type`` (the Report), its fields (padding left out), the
    side and reason as enums; an L2 record's levels as ``bids``/``asks`` lists of
    ``(price, qty)``."""
    t = Report(type_id)
    data = bytes(payload)
    if t == Report.L2:
        depth = int(np.frombuffer(data, "<u2", count=1, offset=4)[0])
        rec = np.frombuffer(data, l2_dtype(depth), count=1)[0]
        return {"type": t, "symbol": int(rec["symbol"]),
                "bids": [(int(p), int(q)) for p, q in rec["bid"][: rec["bids"]]],
                "asks": [(int(p), int(q)) for p, q in rec["ask"][: rec["asks"]]]}
    dt = report_dtype(t)
    rec = np.frombuffer(data, dt, count=1)[0]
    out: dict[str, Any] = {"type": t}
    for name in dt.names or ():
        if not name.startswith("_"):
            v = int(rec[name])
            out[name] = _enum(_ENUMS[name], v) if name in _ENUMS else v
    if t == Report.REJECTED:
        out["reason"] = _enum(RejectReason, out["reason"])
    elif t == Report.CANCELLED:
        out["reason"] = _enum(CancelReason, out["reason"])
    return out


def _enum(cls: Any, v: int) -> Any:
    """The enum member of ``v``, or ``v`` itself (an invalid value echoed by a REJECTED)."""
    try:
        return cls(v)
    except ValueError:
        return v


def registry(l2_depth: int = 0, into: EventRegistry | None = None) -> EventRegistry:
    """An EventRegistry with every engine command and report type and its record dtype."""
    reg = into if into is not None else EventRegistry()
    # short names: the whole descriptor must fit the journal's 4 KiB segment header
    for c in Command:
        reg.register(int(c), name=c.name.lower(), dtype=COMMAND_DTYPE)
    for r in Report:
        reg.register(int(r), name=r.name.lower(), dtype=report_dtype(r, l2_depth))
    return reg
