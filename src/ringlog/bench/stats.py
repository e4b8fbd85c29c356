"""Summaries of repeated runs (a median with its min, max and runs), the significance test of
``bench compare`` and the one formatter of a figure with its unit.

    summarize(runs)          -> {"median", "min", "max", "runs"}
    t_test(old, new)         -> Welch's t, degrees of freedom, significant at 95% (two-sided)
    fmt_value(1.2e-5 s ...)  -> "12.3 µs", "4.56 M events/s", "64 KiB"
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["TTest", "fmt_value", "rate", "summarize", "t_test", "timed_runs"]


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


# two-sided 95% critical values of Student's t for 1..30 degrees of freedom (then the normal's)
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


class TTest(NamedTuple):
    """Welch's two-sample t-test of two sets of runs: ``significant`` when the means differ at
    the 95% level (pyperf decides "significant" the same way, with Student's t)."""

    t: float
    df: float
    significant: bool


def t_test(a: list[float], b: list[float]) -> TTest | None:
    """Welch's t-test of runs ``a`` against runs ``b``; None with fewer than 2 runs on a side
    (no variance, no test)."""
    if len(a) < 2 or len(b) < 2:
        return None
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:  # identical runs on both sides: any difference is real
        return TTest(math.inf if ma != mb else 0.0, len(a) + len(b) - 2.0, ma != mb)
    t = (mb - ma) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    crit = _T95[min(max(int(df), 1), len(_T95)) - 1] if df < 31 else 1.960
    return TTest(t, df, abs(t) > crit)


_TIME = ((1e9, "s"), (1e6, "ms"), (1e3, "µs"), (1.0, "ns"))
_BYTES = ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))


def fmt_value(value: float | None, unit: str) -> str:
    """A figure with its unit, scaled for people: nanoseconds as ns, µs, ms or s; rates with
    k, M, G; bytes in KiB, MiB, GiB. ``-`` for a figure that was not measured."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    a = abs(value)
    if unit == "ns":
        div, name = next(((d, n) for d, n in _TIME if a >= d), (1.0, "ns"))
        return f"{value / div:.3g} {name}" if div > 1 else f"{value:.0f} ns"
    if unit == "bytes":
        div, name = next(((d, n) for d, n in _BYTES if a >= d), (1, "bytes"))
        return f"{value / div:.3g} {name}"
    if unit.endswith("/s"):
        for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if a >= div:
                return f"{value / div:.3g} {suffix} {unit}"
    return f"{value:.3g} {unit}".rstrip()
