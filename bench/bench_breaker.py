"""Breaker cost per output check: a count limit, a per-key limit, and both.

    check_total:    Breaker.check(ts) with one total limit
    check_keyed:    one per-key limit over 1000 keys
    loop_baseline:  the same Python loop calling a no-op function (the call's own cost)
"""

from __future__ import annotations

import time

from ringlog import Breaker, BreakerConfig, Limit
from ringlog.bench.stats import summarize


def _ns_per_check(limits: list[Limit] | None, n: int) -> float:
    if limits is None:
        def check(ts: int, type_id: int = 0, key: int = 0) -> int:
            return 0
    else:
        check = Breaker(BreakerConfig(limits=limits)).check
    t0 = time.perf_counter()
    for i in range(n):
        check(i * 1000, 0, i % 1000)
    return (time.perf_counter() - t0) / n * 1e9


def run(runs: int = 3, smoke: bool = False, peers: dict | None = None) -> list[dict]:
    """ns per check for each configuration (medians of ``runs``)."""
    n = 50_000 if smoke else 2_000_000
    big = 10_000_000
    cases = {
        "loop_baseline_noop_call": None,
        "check_total": [Limit(max_count=big, window_ns=10**9)],
        "check_keyed_1000_keys": [Limit(max_count=1000, window_ns=10**6, per="key")],
        "check_total_and_keyed": [Limit(max_count=big, window_ns=10**9),
                                  Limit(max_count=1000, window_ns=10**6, per="key")],
    }
    rows = []
    for name, lim in cases.items():
        rows.append({"target": "breaker", "name": name, "unit": "ns",
                     **summarize([_ns_per_check(lim, n) for _ in range(runs)])})
    base = rows[0]["median"]
    for r in rows[1:]:
        r["note"] = f"{r['median'] - base:.0f} ns over the bare call"
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(runs=1, smoke="--smoke" in sys.argv), indent=1))
