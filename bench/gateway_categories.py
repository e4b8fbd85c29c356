"""Where each server thread's CPU goes, by category: one run of ``ringlog serve`` under the
load generator with ``perf record -e cpu-clock -g`` of every thread of the server (the run
less its first 2 s and last 1 s), then ``perf_categories`` of the samples (the Python
interpreter, ringlog's C modules, the engine, the kernel, pwrite, page faults, ...), with
the run's answered rate, CPU per order by thread and round trips. Needs ``perf``; run with
``PYTHONPATH=<another src>`` to measure another build the same way.

    python bench/gateway_categories.py [durable|immediate] [CONNECTIONS] [RATE] [SECONDS]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_gateway as bg
import gateway_profile
import perf_categories


def main() -> None:
    """Runs once and prints the categories of each busy thread."""
    a = bg.scenario_args(__doc__, 10.0, 3)
    doc, script = gateway_profile.record(a, "-p", ("comm", "ip", "sym", "dso"))
    lat = doc["latency_ns"] or {}
    print(f"{doc['achieved_rate']:.0f} answered/s; server {doc['server_cpu_ns_per_order']:.0f} "
          f"ns per order; p50 {lat.get('p50', 0) / 1e6:.2f} ms, p99 "
          f"{lat.get('p99', 0) / 1e6:.2f} ms")
    for name, t in sorted((doc["server_threads"] or {}).items()):
        if t["cpu_ns_per_order"] >= 50:
            print(f"  {name}: {t['cpu_ns_per_order']:.0f} ns per order, "
                  f"{t['switches_per_1k_orders']:.0f} switches per 1,000 orders")
    for comm, c in sorted(perf_categories.count(script.splitlines()).items(),
                          key=lambda kv: -sum(kv[1].values())):
        total = sum(c.values())
        if total >= 100:
            print(f"{comm} {total} samples: " + ", ".join(
                f"{k} {v * 100 / total:.1f}%" for k, v in c.most_common()))


if __name__ == "__main__":
    main()
