"""The matching engine's binary records: commands in, reports and market data out.

These layouts are the contract between the engine (ext/ringlog/engine/), the gateway
(ringlog.gateway) and the tools (journal dump, replay). Each is a fixed little-endian record
carried as the payload of one event; the event's ``type_id`` says which record it is. A C
struct in ext/ringlog/engine/records.h mirrors each dtype (a test checks sizes and offsets).
Enums only ever gain members: journals written with older values stay readable.

The gateway sets, on every command event: ``producer_id`` = its session's id and
``producer_seq`` = the client's message sequence (the processor's dedup key, so a resent
message is journaled but never applied twice) and ``correlation_id`` = a routing tag it
chooses; every output caused by that command carries the same ``correlation_id``.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

__all__ = [
    "COMMAND_DTYPE",
    "L1_DTYPE",
    "L2_HEAD_DTYPE",
    "L2_LEVEL_DTYPE",
    "REPORT_DTYPE",
    "TRADE_DTYPE",
    "CancelReason",
    "Command",
    "OrderType",
    "RejectReason",
    "Report",
    "Side",
    "Stp",
    "Tif",
    "l2_dtype",
]


class Command(IntEnum):
    """Input event type ids of engine commands (all carry a COMMAND_DTYPE payload)."""

    NEW = 101          # order_id, account, symbol, side, order_type, tif, price, qty, flags, stp
    CANCEL = 102       # order_id, account
    MODIFY = 103       # order_id, account, price (new), qty (new open quantity)
    MASS_CANCEL = 104  # account, symbol (0 = every symbol)
    ORDER_STATUS = 105  # order_id, account -> one ORDER_INFO (or REJECTED unknown order)
    OPEN_ORDERS = 106  # account, symbol (0 = all) -> ORDER_INFO each, then OPEN_ORDERS_END


class Report(IntEnum):
    """Output event type ids of engine reports."""

    ACCEPTED = 201        # REPORT_DTYPE
    REJECTED = 202        # REPORT_DTYPE, reason = RejectReason
    TRADE = 203           # TRADE_DTYPE
    CANCELLED = 204       # REPORT_DTYPE, reason = CancelReason, qty = quantity cancelled
    MODIFIED = 205        # REPORT_DTYPE: the order's new price and open quantity
    RESTED = 206          # REPORT_DTYPE: the order rests in the book with `leaves` open
    ORDER_INFO = 207      # REPORT_DTYPE: answer to ORDER_STATUS / OPEN_ORDERS
    OPEN_ORDERS_END = 208  # REPORT_DTYPE: order_id = number of ORDER_INFO sent before it
    L1 = 210              # L1_DTYPE: best bid/ask changed
    L2 = 211              # L2 record (see docs/matching.md): depth-N snapshot of one book


class Side(IntEnum):
    """Order side."""

    BUY = 1
    SELL = 2


class OrderType(IntEnum):
    """Order type."""

    LIMIT = 0
    MARKET = 1


class Tif(IntEnum):
    """Time in force."""

    GTC = 0
    IOC = 1
    FOK = 2


class Stp(IntEnum):
    """Self-trade prevention mode; ENGINE_DEFAULT takes the engine's configured mode."""

    ENGINE_DEFAULT = 0
    NONE = 1
    CANCEL_NEWEST = 2
    CANCEL_OLDEST = 3
    CANCEL_BOTH = 4


class RejectReason(IntEnum):
    """Why a command was rejected (REJECTED.reason)."""

    NONE = 0
    UNKNOWN_SYMBOL = 1
    INVALID_QTY = 2
    INVALID_PRICE = 3
    INVALID_SIDE = 4
    INVALID_TYPE = 5          # bad order_type/tif combination (e.g. market GTC)
    DUPLICATE_ORDER_ID = 6    # the id belongs to a live order
    UNKNOWN_ORDER = 7
    NOT_OWNER = 8             # cancel/modify of another account's order
    POST_ONLY_WOULD_CROSS = 9
    PRICE_BAND = 10
    MAX_ORDER_QTY = 11
    MAX_OPEN_ORDERS = 12
    ORDER_POOL_FULL = 13
    UNKNOWN_COMMAND = 14
    MALFORMED = 15            # payload of the wrong length
    ACCOUNT_DISABLED = 16     # the kill switch ran for this account: re-enabled by an operator


class CancelReason(IntEnum):
    """Why an order left the book without trading (CANCELLED.reason)."""

    USER = 0
    UNFILLED = 1        # IOC/market remainder
    FOK_UNFILLABLE = 2
    SELF_TRADE = 3
    MASS_CANCEL = 4
    KILL = 5            # breaker kill switch / operator


FLAG_POST_ONLY = 0x1

COMMAND_DTYPE = np.dtype([
    ("order_id", "<u8"),
    ("price", "<i8"),       # ticks; 0 for market orders
    ("qty", "<i8"),         # lots
    ("account", "<u4"),
    ("symbol", "<u4"),
    ("side", "u1"),
    ("order_type", "u1"),
    ("tif", "u1"),
    ("flags", "u1"),        # FLAG_POST_ONLY
    ("stp", "u1"),
    ("_pad", "V3"),
    ("client_tag", "<u8"),  # free for the sender (the gateway keeps its own tag here)
])
assert COMMAND_DTYPE.itemsize == 48

REPORT_DTYPE = np.dtype([
    ("order_id", "<u8"),
    ("account", "<u4"),
    ("symbol", "<u4"),
    ("price", "<i8"),
    ("qty", "<i8"),         # order quantity (ACCEPTED), quantity cancelled (CANCELLED)
    ("leaves", "<i8"),      # open quantity after this report
    ("side", "u1"),
    ("reason", "u1"),       # RejectReason or CancelReason
    ("command", "u1"),      # the Command kind that caused it (Command - 100)
    ("_pad", "V5"),
])
assert REPORT_DTYPE.itemsize == 48

TRADE_DTYPE = np.dtype([
    ("taker_id", "<u8"),
    ("maker_id", "<u8"),
    ("taker_account", "<u4"),
    ("maker_account", "<u4"),
    ("symbol", "<u4"),
    ("taker_side", "u1"),
    ("_pad", "V3"),
    ("price", "<i8"),       # the maker's price
    ("qty", "<i8"),
    ("taker_leaves", "<i8"),
    ("maker_leaves", "<i8"),
])
assert TRADE_DTYPE.itemsize == 64

L1_DTYPE = np.dtype([
    ("symbol", "<u4"),
    ("_pad", "V4"),
    ("bid_price", "<i8"),   # 0 with bid_qty 0: no bid
    ("bid_qty", "<i8"),
    ("ask_price", "<i8"),
    ("ask_qty", "<i8"),
])
assert L1_DTYPE.itemsize == 40

L2_HEAD_DTYPE = np.dtype([
    ("symbol", "<u4"),
    ("depth", "<u2"),       # levels per side in the record
    ("bids", "<u2"),        # bid levels present (<= depth)
    ("asks", "<u2"),        # ask levels present (<= depth)
    ("_pad", "V6"),
])
assert L2_HEAD_DTYPE.itemsize == 16

L2_LEVEL_DTYPE = np.dtype([("price", "<i8"), ("qty", "<i8")])


def l2_dtype(depth: int) -> np.dtype:
    """The L2 record of ``depth`` levels per side: the head, then ``depth`` bid levels (best
    first) and ``depth`` ask levels; levels past ``bids``/``asks`` are zero."""
    return np.dtype([
        ("symbol", "<u4"), ("depth", "<u2"), ("bids", "<u2"), ("asks", "<u2"), ("_pad", "V6"),
        ("bid", L2_LEVEL_DTYPE, (depth,)), ("ask", L2_LEVEL_DTYPE, (depth,)),
    ])
