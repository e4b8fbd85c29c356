"""Summaries of repeated runs: every figure is a median with its min, max and run count."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

__all__ = ["rate", "summarize", "timed_runs"]


def summarize(values: list[float]) -> dict[str, Any]:
    """``{"median", "min", "max", "runs"}`` of a list of per-run figures (at least one)."""
    if not values:
        raise ValueError("summarize() needs at least one run")
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": list(values)}


def timed_runs(fn: Callable[[], float | None], runs: int, warmup: int = 1) -> list[float]:
    """Calls ``fn`` ``warmup + runs`` times; returns what it returns (or its wall seconds)."""
    out: list[float] = []
    for i in range(warmup + runs):
        t = time.perf_counter()
        r = fn()
        value = r if r is not None else time.perf_counter() - t
        if i >= warmup:
            out.append(float(value))
    return out


def rate(count: int, seconds: float) -> float:
    """Events per second, guarding a zero interval."""
    return count / seconds if seconds > 0 else float("inf")
