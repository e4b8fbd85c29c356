"""Latency measured the open-loop way (wrk2): from each event's intended send time.

A closed-loop sender that waits while the system stalls sends nothing during the stall and so
never records it (coordinated omission). An open-loop schedule fixes the send times in advance
(``start + i / rate``); latency is ``completion - intended``, so a stall shows up in every event
scheduled during it. Raw nanoseconds are kept off the hot path in a preallocated numpy array and
summarised afterwards.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["PERCENTILES", "intended_times", "percentiles", "to_hdr_log"]

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


def to_hdr_log(latencies_ns: np.ndarray, path: str, tag: str = "") -> None:
    """Writes the latencies as an HdrHistogram interval log (the standard text format)."""
    from hdrh.histogram import HdrHistogram
    from hdrh.log import HistogramLogWriter

    lat = np.asarray(latencies_ns, dtype=np.int64)
    hist = HdrHistogram(1, max(int(lat.max()) if lat.size else 1, 2) * 2, 3)
    for v in np.maximum(lat, 1).tolist():
        hist.record_value(v)
    with open(path, "w") as f:
        writer = HistogramLogWriter(f)
        writer.output_comment(f"ringlog latency {tag} (ns)")
        writer.output_log_format_version()
        writer.output_legend()
        writer.output_interval_histogram(hist)
