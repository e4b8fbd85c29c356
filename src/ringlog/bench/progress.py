"""Progress of long benchmark runs: which step, how far, and an ETA, on one line each.

The ETA comes from the steps done so far (their mean), or from an estimate per step (the
timings a previous results document recorded) before the first finishes. A step that runs
long reports it is still running every ``heartbeat`` seconds, so a quiet terminal means a hang.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Progress", "fmt_seconds"]


def fmt_seconds(s: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = max(0, round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Progress:
    """Counts ``total`` steps and reports each through ``emit`` (not thread-safe: one
    driver thread calls ``step``; the heartbeat thread only reads)."""

    def __init__(self, total: int, emit: Callable[[str], None], prefix: str = "",
                 estimates: list[float | None] | None = None, heartbeat: float = 30.0) -> None:
        self.total = total
        self.done = 0
        self.emit = emit
        self.prefix = f"{prefix}: " if prefix else ""
        self.estimates = list(estimates or [])
        self.heartbeat = heartbeat
        self.elapsed: list[float] = []
        self._t0 = time.monotonic()

    def eta(self) -> float | None:
        """Seconds left: the steps left times the mean step so far, else the estimates."""
        left = self.total - self.done
        known = [e for e in self.estimates[self.done:] if e is not None]
        if known and len(known) == len(self.estimates[self.done:]) and left:
            return sum(known)
        if self.elapsed:
            return left * sum(self.elapsed) / len(self.elapsed)
        return None

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        """Reports ``[k/total] label`` with the ETA, times the step, beats while it runs."""
        eta = self.eta()
        self.emit(f"{self.prefix}[{self.done + 1}/{self.total}] {label}"
                  + (f" (about {fmt_seconds(eta)} left)" if eta is not None else ""))
        t0 = time.monotonic()
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat):
                self.emit(f"{self.prefix}  ... {label}: {fmt_seconds(time.monotonic() - t0)}")

        ticker = threading.Thread(target=beat, daemon=True, name="ringlog-bench-progress")
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()
            self.elapsed.append(time.monotonic() - t0)
            self.done += 1
