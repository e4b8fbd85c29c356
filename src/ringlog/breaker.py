"""The circuit breaker on output volume: configuration, validation and the Breaker.

Limits are in event time (the timestamps of the input events), so a replay trips at the same
sequences. Count limits: at most ``max_count`` outputs per ``window_ns``, in total, per
handler key (an account or symbol the handler passes to ``emit(key=...)``) or per output
type. ``tier="throttle"`` is a soft limit (the output passes, the handler is told THROTTLE);
``tier="trip"`` opens the breaker: outputs are held, input stops being processed until an
operator reset travels through the journal. ``RatioLimit`` bounds outputs per input.

    breaker = Breaker(BreakerConfig(limits=[Limit(max_count=1000, window_ns=1_000_000_000),
                                            Limit(max_count=50, window_ns=10**9, per="key")],
                                    allow_types=[CANCELLED]), alert=page_someone)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec

from ._breaker import (
    CLOSED,
    HALF_OPEN,
    HOLD,
    OPEN,
    PASS,
    THROTTLE,
    TRIPPED,
    BreakerCore,
    KillReport,
    TripReport,
)
from .config import check_fields
from .errors import ConfigError

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "HOLD",
    "OPEN",
    "PASS",
    "THROTTLE",
    "TRIPPED",
    "Breaker",
    "BreakerConfig",
    "BreakerConfigError",
    "KillReport",
    "Limit",
    "RatioLimit",
    "TripReport",
]


class BreakerConfigError(ConfigError):
    """A breaker configuration that cannot work; ``field`` names it the way msgspec does
    (``Limit.per``, ``BreakerConfig.limits[1].max_count``) and the message says why."""


class Limit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """At most ``max_count`` outputs per ``window_ns`` of event time."""

    max_count: int
    window_ns: int
    per: Literal["key", "type"] | None = None
    tier: Literal["trip", "throttle"] = "trip"
    name: str = ""

    def __post_init__(self) -> None:
        check_fields(self, error=BreakerConfigError)  # Limit(per="account") fails here


class RatioLimit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """At most ``max_ratio`` outputs per input over ``window_ns``, once ``min_inputs`` came."""

    max_ratio: float
    window_ns: int
    min_inputs: int = 1
    name: str = "ratio"

    def __post_init__(self) -> None:
        check_fields(self, error=BreakerConfigError)


class BreakerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Limits (several at once), the allow-list of output types that pass while open (e.g.
    cancels), an optional automatic half-open after a cool-down (off by default), the cap
    on distinct keys per keyed limit, and the kill switch.

    ``kill``: on a trip the loop itself, at the tripping sequence, calls the handler's
    ``on_kill(key)`` (cancel the resting orders of ``key``, None = everyone, and refuse new
    ones until ``on_enable``), whose outputs bypass the hold: ``"key"`` on a per-key trip
    kills that key; ``"all"`` on any trip kills everyone; ``"key_or_all"`` the key on a
    per-key trip, everyone on any other; ``"none"`` (default) kills no one."""

    limits: list[Limit] = []
    ratio: RatioLimit | None = None
    allow_types: frozenset[int] = frozenset()
    half_open_after_ns: int | None = None
    max_keys: int = 4096
    kill: Literal["none", "key", "all", "key_or_all"] = "none"

    def __post_init__(self) -> None:
        check_fields(self, error=BreakerConfigError)
        E = BreakerConfigError  # every check below raises it
        if not self.limits and self.ratio is None:
            raise E("BreakerConfig.limits", "a breaker needs at least one limit (limits= or "
                    "ratio=)", self.limits)
        names = set()
        for i, lim in enumerate(self.limits):
            at = f"BreakerConfig.limits[{i}]"
            label = f" ({lim.name})" if lim.name else ""
            if lim.max_count < 1:
                raise E(f"{at}.max_count", f"must be >= 1{label}, got {lim.max_count}",
                        lim.max_count)
            if lim.max_count > 10_000_000:
                raise E(f"{at}.max_count", f"{lim.max_count} is over 10M{label}; use a shorter "
                        "window", lim.max_count)
            if lim.window_ns <= 0:
                raise E(f"{at}.window_ns", f"must be > 0{label}, got {lim.window_ns}",
                        lim.window_ns)
            if len(lim.name) > 32:
                raise E(f"{at}.name", "a limit name is at most 32 characters", lim.name)
            if lim.name and lim.name in names:
                raise E(f"{at}.name", f"two limits are named {lim.name!r}", lim.name)
            names.add(lim.name)
        for i, t in enumerate(self.limits):
            for h in self.limits:
                if (t.tier, h.tier) == ("throttle", "trip") and t.per == h.per \
                        and t.window_ns == h.window_ns and t.max_count >= h.max_count:
                    raise E(f"BreakerConfig.limits[{i}].max_count",
                            f"throttle limit {t.name or t.max_count} is not below the trip "
                            f"limit {h.name or h.max_count} over the same window: it could "
                            "never act", t.max_count)
        r = self.ratio
        if r is not None and (r.window_ns <= 0 or r.max_ratio <= 0 or r.min_inputs < 1):
            raise E("BreakerConfig.ratio", "window_ns and max_ratio must be > 0 and "
                    f"min_inputs >= 1, got {r}", r)
        if self.half_open_after_ns is not None and self.half_open_after_ns <= 0:
            raise E("BreakerConfig.half_open_after_ns", "must be > 0 or None, got "
                    f"{self.half_open_after_ns}", self.half_open_after_ns)
        if self.max_keys < 1:
            raise E("BreakerConfig.max_keys", f"must be >= 1, got {self.max_keys}",
                    self.max_keys)


def _validated(config: Any) -> BreakerConfig:
    if isinstance(config, BreakerConfig):
        return config
    try:
        return msgspec.convert(config, BreakerConfig)
    except msgspec.ValidationError as e:
        # msgspec says "Expected `int`, got `str` - at `$.limits[0].max_count`"
        msg, _, where = str(e).partition(" - at `$")
        raise BreakerConfigError("BreakerConfig" + where.rstrip("`"), msg, config) from e


class Breaker(BreakerCore):
    """The circuit breaker (see the module docstring). Not thread-safe: the processor's loop
    thread is its only caller. ``alert(TripReport)`` is called on each trip, from that
    thread: keep it quick (queue the page, do not send it inline). With a kill switch it is
    called after the kill ran, and ``report.kill`` says what was cancelled."""

    def __init__(self, config: BreakerConfig | dict[str, Any],
                 alert: Callable[[TripReport], None] | None = None) -> None:
        cfg = _validated(config)
        self.config = cfg
        super().__init__(cfg.limits, cfg.ratio, cfg.allow_types, cfg.half_open_after_ns,
                         alert, cfg.max_keys, cfg.kill)
