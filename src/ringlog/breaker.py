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
from .errors import RingLogError

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


class BreakerConfigError(RingLogError, ValueError):
    """A breaker configuration that cannot work; says which limit and why."""


class Limit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """At most ``max_count`` outputs per ``window_ns`` of event time."""

    max_count: int
    window_ns: int
    per: Literal["key", "type"] | None = None
    tier: Literal["trip", "throttle"] = "trip"
    name: str = ""


class RatioLimit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """At most ``max_ratio`` outputs per input over ``window_ns``, once ``min_inputs`` came."""

    max_ratio: float
    window_ns: int
    min_inputs: int = 1
    name: str = "ratio"


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
        if not self.limits and self.ratio is None:
            raise BreakerConfigError("a breaker needs at least one limit (limits= or ratio=)")
        names = set()
        for i, lim in enumerate(self.limits):
            label = lim.name or f"limits[{i}]"
            if lim.max_count < 1:
                raise BreakerConfigError(f"{label}: max_count must be >= 1, got {lim.max_count}")
            if lim.max_count > 10_000_000:
                raise BreakerConfigError(f"{label}: max_count {lim.max_count} is over 10M; "
                                         "use a shorter window")
            if lim.window_ns <= 0:
                raise BreakerConfigError(f"{label}: window_ns must be > 0, got {lim.window_ns}")
            if len(lim.name) > 32:
                raise BreakerConfigError(f"{label}: a limit name is at most 32 characters")
            if lim.name and lim.name in names:
                raise BreakerConfigError(f"two limits are named {lim.name!r}")
            names.add(lim.name)
        for t in self.limits:
            for h in self.limits:
                if (t.tier, h.tier) == ("throttle", "trip") and t.per == h.per \
                        and t.window_ns == h.window_ns and t.max_count >= h.max_count:
                    raise BreakerConfigError(
                        f"throttle limit {t.name or t.max_count} is not below the trip limit "
                        f"{h.name or h.max_count} over the same window: it could never act")
        r = self.ratio
        if r is not None and (r.window_ns <= 0 or r.max_ratio <= 0 or r.min_inputs < 1):
            raise BreakerConfigError("ratio: window_ns and max_ratio must be > 0 and "
                                     f"min_inputs >= 1, got {r}")
        if self.half_open_after_ns is not None and self.half_open_after_ns <= 0:
            raise BreakerConfigError(f"half_open_after_ns must be > 0 or None, got "
                                     f"{self.half_open_after_ns}")
        if self.max_keys < 1:
            raise BreakerConfigError(f"max_keys must be >= 1, got {self.max_keys}")


def _validated(config: Any) -> BreakerConfig:
    if isinstance(config, BreakerConfig):
        return config
    try:
        return msgspec.convert(config, BreakerConfig)
    except msgspec.ValidationError as e:
        raise BreakerConfigError(f"invalid breaker configuration: {e}") from e


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
