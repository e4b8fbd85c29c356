"""Stub of ringlog._breaker: the circuit breaker's decisions (see ringlog.breaker)."""

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import msgspec

PASS: int
HOLD: int
THROTTLE: int
TRIPPED: int
CLOSED: int
OPEN: int
HALF_OPEN: int

class KillReport(msgspec.Struct, frozen=True, array_like=True):
    key: int | None
    sequence: int
    cancelled: list[int]

class TripReport(msgspec.Struct, frozen=True, array_like=True):
    limit: str
    count: int
    window_ns: int
    key: int | None
    timestamp_ns: int
    ratio: float | None = None
    kill: KillReport | None = None

class BreakerCore:
    PASS: ClassVar[int]
    HOLD: ClassVar[int]
    THROTTLE: ClassVar[int]
    TRIPPED: ClassVar[int]
    state: int
    last_trip: TripReport | None
    held: list[bytes]
    trips: int
    resets: int
    passed: int
    throttled: int
    checks: int
    released: int
    discarded: int
    alert_errors: int
    inputs: int
    kill: int
    last_trip_per: int
    defer_alert: bool
    def __init__(self, limits: Iterable[Any], ratio: Any = None, allow: Iterable[int] = (),
                 half_open_after_ns: int | None = None,
                 alert: Callable[[TripReport], None] | None = None,
                 max_keys: int = 4096, kill: str = "none") -> None: ...
    def send_alert(self, report: TripReport) -> None: ...
    def kill_scope(self) -> tuple[bool, int | None]: ...
    def on_input(self, timestamp_ns: int) -> None: ...
    def tick(self, timestamp_ns: int) -> bool: ...
    def check(self, timestamp_ns: int, type_id: int = 0, key: int = 0) -> int: ...
    def hold(self, record: bytes) -> None: ...
    def release_held(self) -> list[bytes]: ...
    def discard_held(self) -> int: ...
    def reset(self, timestamp_ns: int) -> None: ...
    @property
    def is_open(self) -> bool: ...
    @property
    def state_name(self) -> str: ...
    @property
    def held_count(self) -> int: ...
    def pass_run(self, timestamp_ns: int, key: int, count: int) -> bool: ...
    def window_bytes(self) -> int: ...
    def counters(self) -> dict[str, Any]: ...
    def snapshot(self) -> bytes: ...
    def restore(self, data: bytes) -> None: ...
