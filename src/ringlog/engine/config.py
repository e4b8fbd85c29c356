"""The matching engine's configuration: symbols with tick bands and price bands, account limits,
pool sizes, the default self-trade prevention mode and market data.

    EngineConfig(symbols=[SymbolSpec(symbol=1, min_price=1, max_price=20_000,
                                     reference_price=10_000, band_pct=5.0)],
                 limits=AccountLimits(max_order_qty=10_000, max_open_orders=1_000),
                 max_orders=1 << 20, stp=Stp.CANCEL_NEWEST, l2_depth=5)

Everything is checked at construction (and when decoded with ``msgspec.convert``); a bad
value raises EngineConfigError naming the field and what would work.
"""

from __future__ import annotations

import msgspec

from ..errors import ConfigError
from .records import Stp

__all__ = ["AccountLimits", "EngineConfig", "EngineConfigError", "SymbolSpec"]

MAX_TICKS = 1 << 24           # per book: the level array costs 16 bytes a tick
MAX_PRICE = 1 << 40           # keeps price band arithmetic exact in 64 bits
MAX_ORDERS = (1 << 31) - 1    # pool indices are int32
MAX_L2_DEPTH = 64


class EngineConfigError(ConfigError):
    """An engine configuration that cannot work; ``field`` names it (``SymbolSpec.max_price``,
    ``EngineConfig.symbols[1]``) and the message says why and what would work."""


def _int(owner: str, name: str, value: object, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise EngineConfigError(f"{owner}.{name}", f"must be an integer in {lo}..{hi}, "
                                f"got {value!r}", value)


class SymbolSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One book: its id, the tick band of valid prices and the price band around the last trade.

    Limit prices outside ``min_price..max_price`` are rejected INVALID_PRICE. With a band
    (``band_ticks`` and/or ``band_pct`` > 0) a limit price further than that from the last trade
    price (before the first trade: ``reference_price``; 0 = no band until a trade) is rejected
    PRICE_BAND.
    """

    symbol: int
    max_price: int
    min_price: int = 1
    reference_price: int = 0
    band_ticks: int = 0
    band_pct: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        me = "SymbolSpec"
        _int(me, "symbol", self.symbol, 1, (1 << 32) - 1)
        _int(me, "min_price", self.min_price, 1, MAX_PRICE)
        _int(me, "max_price", self.max_price, self.min_price, MAX_PRICE)
        ticks = self.max_price - self.min_price + 1
        if ticks > MAX_TICKS:
            raise EngineConfigError(f"{me}.max_price", f"the tick band min_price..max_price of "
                                    f"symbol {self.symbol} spans {ticks} ticks, at most "
                                    f"{MAX_TICKS} (16 bytes per tick)", self.max_price)
        if self.reference_price:
            _int(me, "reference_price", self.reference_price, self.min_price, self.max_price)
        _int(me, "band_ticks", self.band_ticks, 0, MAX_PRICE)
        if not isinstance(self.band_pct, (int, float)) or not 0 <= self.band_pct <= 100:
            raise EngineConfigError(f"{me}.band_pct", "must be a percentage in 0..100, got "
                                    f"{self.band_pct!r}", self.band_pct)

    @property
    def band_ppm(self) -> int:
        """The percentage band in millionths of the reference (integer arithmetic in C)."""
        return round(self.band_pct * 10_000)


class AccountLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-account limits; 0 = no limit."""

    max_order_qty: int = 0
    max_open_orders: int = 0

    def __post_init__(self) -> None:
        _int("AccountLimits", "max_order_qty", self.max_order_qty, 0, (1 << 62))
        _int("AccountLimits", "max_open_orders", self.max_open_orders, 0, MAX_ORDERS)


class EngineConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How an Engine is built. ``limits`` apply to every account without an entry in
    ``account_limits``; ``max_orders`` sizes the order pool (live orders across all books);
    ``stp`` is the self-trade prevention mode of orders that send ENGINE_DEFAULT;
    ``market_data`` turns L1/L2 records on; ``l2_depth`` levels per side (0 = L1 only: L2 is
    opt-in because its records need ring slots of ``min_slot_size`` bytes, more than the
    processor's default 128)."""

    symbols: list[SymbolSpec]
    limits: AccountLimits = AccountLimits()
    account_limits: dict[int, AccountLimits] = {}
    max_orders: int = 1 << 20
    stp: Stp = Stp.NONE
    market_data: bool = True
    l2_depth: int = 0

    def __post_init__(self) -> None:
        if not self.symbols:
            raise EngineConfigError("EngineConfig.symbols", "needs at least one SymbolSpec "
                                    "(it is empty)", self.symbols)
        seen: set[int] = set()
        for i, s in enumerate(self.symbols):
            if not isinstance(s, SymbolSpec):
                raise EngineConfigError(f"EngineConfig.symbols[{i}]", f"holds {s!r}, not a "
                                        "SymbolSpec", s)
            if s.symbol in seen:
                raise EngineConfigError(f"EngineConfig.symbols[{i}]", f"symbol {s.symbol} is "
                                        "configured twice", s)
            seen.add(s.symbol)
        if not isinstance(self.limits, AccountLimits):
            raise EngineConfigError("EngineConfig.limits", "must be AccountLimits, got "
                                    f"{self.limits!r}", self.limits)
        for acct, lim in self.account_limits.items():
            _int("EngineConfig", "account_limits key", acct, 0, (1 << 32) - 1)
            if not isinstance(lim, AccountLimits):
                raise EngineConfigError(f"EngineConfig.account_limits[{acct}]", "must be "
                                        f"AccountLimits, got {lim!r}", lim)
        _int("EngineConfig", "max_orders", self.max_orders, 1, MAX_ORDERS)
        if self.stp not in tuple(Stp) or self.stp == Stp.ENGINE_DEFAULT:
            raise EngineConfigError("EngineConfig.stp", "must be one of NONE, CANCEL_NEWEST, "
                                    f"CANCEL_OLDEST, CANCEL_BOTH, got {self.stp!r}", self.stp)
        _int("EngineConfig", "l2_depth", self.l2_depth, 0, MAX_L2_DEPTH)

    @property
    def l2_size(self) -> int:
        """Bytes of one L2 record (16-byte head + 2 x depth x 16-byte levels)."""
        return 16 + 32 * self.l2_depth

    @property
    def min_slot_size(self) -> int:
        """The smallest ring slot (ProcessorConfig.slot_size) that carries every record."""
        need = 48 + max(64, self.l2_size if self.market_data and self.l2_depth else 0)
        size = 64
        while size < need:
            size <<= 1
        return size
