"""Latency measured the open-loop way (wrk2): from each event's intended send time.

A closed-loop sender that waits while the system stalls sends nothing during the stall and so
never records it (coordinated omission). An open-loop schedule fixes the send times in advance
(``start + i / rate``); latency is ``completion - intended``, so a stall shows up in every event
scheduled during it. Raw nanoseconds are kept off the hot path in a preallocated numpy array and
summarised afterwards.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "PERCENTILES",
    "hdr_histogram",
    "hdr_logs_in",
    "hdr_percentiles",
    "intended_times",
    "latency_rows",
    "open_loop",
    "percentiles",
    "rate_label",
    "read_hdr_log",
    "to_hdr_log",
]

PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)


def intended_times(start_ns: int, rate_per_s: float, count: int) -> np.ndarray:
    """The open-loop schedule: ``count`` send times at ``rate_per_s`` from ``start_ns``."""
    if rate_per_s <= 0:
        raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
    period = 1e9 / rate_per_s
    return start_ns + (np.arange(count, dtype=np.float64) * period).astype(np.int64)


def percentiles(latencies_ns: np.ndarray) -> dict[str, Any]:
    """p50 ... p99.99 and max: the smallest recorded value with at least p% at or below it
    (HdrHistogram's definition), exact from the raw sample."""
    lat = np.sort(np.asarray(latencies_ns, dtype=np.int64))
    if lat.size == 0:
        raise ValueError("no latencies recorded")
    n = lat.size
    # rank ceil(p/100 * n), with a tolerance so that 99.9% of 10000 is rank 9990, not 9991
    ranks = [max(1, math.ceil(p * n / 100.0 - 1e-9)) for p in PERCENTILES]
    out: dict[str, Any] = {f"p{p:g}": float(lat[r - 1]) for p, r in zip(PERCENTILES, ranks,
                                                                         strict=True)}
    out["max"] = float(lat.max())
    out["count"] = int(lat.size)
    return out


def open_loop(send: Callable[[int], None], rate_per_s: float, count: int,
              clock: Callable[[], int] = time.perf_counter_ns,
              sleep: Callable[[float], None] = time.sleep) -> np.ndarray:
    """Calls ``send(i)`` for ``i`` in ``range(count)`` at each event's intended time on the
    open-loop schedule; returns the intended times (``clock`` nanoseconds).

    A late sender does not wait for the schedule to catch up or skip events: it sends at
    once, and the latency measured from the intended time carries the delay. Far ahead of
    the schedule it sleeps; close to it, it yields (``sleep(0)``) so that the threads under
    test keep the GIL and the CPU."""
    intended = intended_times(clock(), rate_per_s, count)
    due = intended.tolist()
    for i in range(count):
        while True:
            ahead = due[i] - clock()
            if ahead <= 0:
                break
            sleep(ahead / 2e9 if ahead > 2_000_000 else 0)
        send(i)
    return intended


def hdr_histogram(latencies_ns: np.ndarray) -> Any:
    """An HdrHistogram (3 significant digits) of the latencies, values below 1 ns as 1."""
    from hdrh.histogram import HdrHistogram

    lat = np.maximum(np.asarray(latencies_ns, dtype=np.int64), 1)
    hist = HdrHistogram(1, max(int(lat.max()) if lat.size else 1, 2) * 2, 3)
    values, counts = np.unique(lat, return_counts=True)  # one call per distinct value
    for v, c in zip(values.tolist(), counts.tolist(), strict=True):
        hist.record_value(v, c)
    return hist


def to_hdr_log(latencies_ns: np.ndarray, path: str | Path, tag: str = "",
               start_ms: float | None = None, seconds: float = 0.0) -> None:
    """Writes the latencies as an HdrHistogram interval log (the standard text format: the
    Java ``HistogramLogProcessor`` and HdrHistogram's online plotter read it), one interval
    of ``seconds`` from ``start_ms`` (milliseconds since the epoch; now if not given)."""
    from hdrh.log import HistogramLogWriter

    hist = hdr_histogram(latencies_ns)
    start = time.time() * 1000.0 if start_ms is None else start_ms
    with open(path, "w") as f:
        writer = HistogramLogWriter(f)
        writer.output_comment(f"ringlog latency {tag} (ns)")
        writer.output_log_format_version()
        # hdrh's own output_start_time is broken (datetime.iso_format); same line by hand
        # formatted as the interval line formats it: a StartTime rounded past the interval's
        # start would make readers skip the interval as before the start
        f.write(f"#[StartTime: {start / 1000.0:f} (seconds since epoch)]\n")
        writer.output_legend()
        writer.output_interval_histogram(hist, start_time_stamp_sec=start / 1000.0,
                                         end_time_stamp_sec=start / 1000.0 + max(seconds, 1e-3))


def read_hdr_log(path: str | Path) -> Any:
    """The sum of every interval histogram in an HdrHistogram log written by ``to_hdr_log``
    (or any tool writing the standard format); a ValueError naming the file if it has none."""
    from hdrh.histogram import HdrHistogram
    from hdrh.log import HistogramLogReader

    total = HdrHistogram(1, 1 << 62, 3)
    reader = HistogramLogReader(str(path), total)
    try:
        n = 0
        while reader.add_next_interval_histogram(total) is not None:
            n += 1
    finally:
        reader.close()
    if not n:
        raise ValueError(f"{path}: no interval histogram in this HdrHistogram log")
    return total


def hdr_percentiles(hist: Any) -> dict[str, Any]:
    """The same summary as ``percentiles`` read back from an HdrHistogram (to its precision)."""
    out: dict[str, Any] = {f"p{p:g}": float(hist.get_value_at_percentile(p))
                           for p in PERCENTILES}
    out["max"] = float(hist.get_max_value())
    out["count"] = int(hist.get_total_count())
    return out


_log_dir: list[Path] = []  # where latency_rows writes HdrHistogram logs (set by the runner)


@contextmanager
def hdr_logs_in(directory: Path | None) -> Iterator[None]:
    """While inside, ``latency_rows`` saves each histogram as an HdrHistogram log in
    ``directory`` (the runner points it at a folder beside the results JSON)."""
    if directory is None:
        yield
        return
    _log_dir.append(directory)
    try:
        yield
    finally:
        _log_dir.pop()


def rate_label(rate: float) -> str:
    """``2e6`` -> ``2M``, ``10000.0`` -> ``10k``, ``500.0`` -> ``500``: rates in row names."""
    if rate >= 1e6:
        return f"{rate / 1e6:g}M"
    return f"{rate / 1000:g}k" if rate >= 1000 else f"{rate:g}"


# a run that sustained less than this share of the offered rate ran past capacity
SUSTAINED = 0.95


def past_capacity(rate: float, achieved: list[float] | None) -> bool:
    """Did any run sustain less than ``SUSTAINED`` of the offered ``rate``? Every row of
    such runs (latency or not) is marked ``past_capacity``: reports and plots say so."""
    return bool(achieved) and min(achieved or [0.0]) < SUSTAINED * rate


def latency_rows(target: str, series: str, rate: float, samples: list[np.ndarray], *,
                 note: str = "", missing: str = "no latency recorded in a run",
                 achieved: list[float] | None = None) -> list[dict[str, Any]]:
    """Result rows of one latency series at one offered rate from the raw nanoseconds of
    each run: one row per percentile (p50 ... p99.99, max; the median over runs with min and
    max), each marked for the percentile plot; all runs' samples saved as one HdrHistogram
    log when ``hdr_logs_in`` names a folder. A run with no sample gives one row with no
    median and ``missing`` as its note. ``achieved`` (the rate each run sustained) below
    ``SUSTAINED`` of ``rate`` marks the rows ``past_capacity``: reports and plots say so."""
    from .stats import summarize

    name = f"{series}_latency_{rate_label(rate)}_per_s"
    if not samples or not all(np.asarray(s).size for s in samples):
        return [{"target": target, "name": name, "unit": "ns", "median": None, "min": None,
                 "max": None, "runs": [], "note": f"not measured: {missing}",
                 **({"past_capacity": True} if past_capacity(rate, achieved) else {})}]
    per_run = [percentiles(s) for s in samples]
    log = None
    if _log_dir:
        folder = _log_dir[-1]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{target}_{series}_{rate_label(rate)}.hlog"
        to_hdr_log(np.concatenate(samples), path, tag=f"{target} {series} at {rate:g}/s")
        log = f"{folder.name}/{path.name}"  # relative to the JSON's folder
    rows = []
    for p in (*[f"p{q:g}" for q in PERCENTILES], "max"):
        row: dict[str, Any] = {
            "target": target, "name": f"{name}_{p}", "unit": "ns",
            **summarize([r[p] for r in per_run]),
            "latency": {"series": series, "rate_per_s": float(rate), "percentile": p}}
        if log is not None:
            row["hdr_log"] = log
        if past_capacity(rate, achieved):
            row["past_capacity"] = True
        rows.append(row)
    if note:
        rows[0]["note"] = note
    return rows
