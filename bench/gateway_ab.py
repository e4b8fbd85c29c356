"""Interleaved A/B of two gateways on this machine: ``ringlog serve`` from this checkout and
from another source tree (e.g. an older commit's ``src``, given as ``--base-src``; default
this checkout too), each with its own extra serve options (``--base-args``,
``--this-args``, e.g. ``"--topology inline"``), same load generator and config
(bench_gateway.gateway_config), alternating peers per run.

    python bench/gateway_ab.py [--base-src /path/to/old/src] [--base-args "..."]
        [--this-args "..."] [--connections 8] [--rate 200000] [--duration 10] [--pairs 3]
        [--release durable|immediate] [--ticks BASE_US,THIS_US]

Prints each run and the medians: answered orders/s, server CPU per answered order (all
threads), the gateway's loop thread's share of it and the round trip's p50 and p99 (ms,
corrected for coordinated omission); then per server thread the median CPU ns per answered
order and context switches per 1,000 answered orders. ``--ticks`` gives each side the load
generator's send tick (default: make bench's, bench_gateway.sender_tick_us);
each run also prints the generator's own CPU per order.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_gateway as bg

from ringlog.loadgen import measure


def _one(kind: str, base_src: str | None, conns: int, rate: float, duration: float,
         release: str, extra: list[str], tick_us: int) -> tuple:
    saved = os.environ.get("PYTHONPATH")
    with tempfile.TemporaryDirectory(prefix="gwab-") as d:
        if kind == "base" and base_src:
            os.environ["PYTHONPATH"] = base_src
        try:
            peer = bg._gateway(d, release, conns, extra=extra)
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
        try:
            doc, _ = measure(bg.bench_load(peer.port, peer.pid, conns, rate, duration,
                                           min(2.0, duration / 4), tick_us, 15.0))
        finally:
            peer.stop()
    main = (doc["server_threads"] or {}).get("main", {}).get("cpu_ns_per_order", 0.0)
    lat = doc["latency_ns"] or {"p50": 0, "p99": 0}
    return (doc["achieved_rate"], doc["server_cpu_ns_per_order"], main, lat["p50"] / 1e6,
            lat["p99"] / 1e6, 100.0 * doc["answered"] / doc["sent"], os.getloadavg()[0],
            doc["server_threads"] or {}, doc["client_cpu_ns_per_order"])


def _thread_median(rows: list[tuple], thread: str, key: str) -> float:
    return statistics.median(x[7].get(thread, {}).get(key, 0.0) for x in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-src", help="the base's source tree (default: this checkout)")
    ap.add_argument("--base-args", default="", help="extra `ringlog serve` options (base)")
    ap.add_argument("--this-args", default="", help="extra `ringlog serve` options (this)")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--rate", type=float, default=200_000.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--release", choices=("durable", "immediate"), default="durable")
    ap.add_argument("--ticks", help="the generator's send tick in us, base and this: A,B")
    a = ap.parse_args()
    tick = bg.sender_tick_us(a.connections)
    ticks = {"base": tick, "this": tick}
    if a.ticks:
        try:
            ticks["base"], ticks["this"] = (int(x) for x in a.ticks.split(","))
        except ValueError:
            ap.error(f"--ticks: two whole numbers of microseconds, as 500,1000; got {a.ticks!r}")
        if min(ticks.values()) < 1:
            ap.error(f"--ticks: each at least 1 us; got {a.ticks!r}")
    got: dict[str, list[tuple]] = {"base": [], "this": []}
    for r in range(a.pairs):
        for kind in ("base", "this") if r % 2 == 0 else ("this", "base"):
            extra = shlex.split(a.base_args if kind == "base" else a.this_args)
            row = _one(kind, a.base_src, a.connections, a.rate, a.duration, a.release, extra,
                       ticks[kind])
            got[kind].append(row)
            print(f"{kind}: {row[0]:,.0f} orders/s, {row[1]:,.0f} ns/order (loop thread "
                  f"{row[2]:,.0f}), p50 {row[3]:.2f} ms, p99 {row[4]:.2f} ms, "
                  f"{row[5]:.1f}% answered, load {row[6]:.1f}, generator {row[8]:,.0f} "
                  f"ns/order", flush=True)
    for kind, rows in got.items():
        med = [statistics.median(x[i] for x in rows) for i in range(5)]
        lo = [min(x[i] for x in rows) for i in range(5)]
        hi = [max(x[i] for x in rows) for i in range(5)]
        print(f"{kind}: median {med[0]:,.0f} orders/s [{lo[0]:,.0f} - {hi[0]:,.0f}], "
              f"{med[1]:,.0f} ns/order [{lo[1]:,.0f} - {hi[1]:,.0f}], loop thread "
              f"{med[2]:,.0f} ns/order, p50 {med[3]:.2f} ms [{lo[3]:.2f} - {hi[3]:.2f}], "
              f"p99 {med[4]:.2f} ms [{lo[4]:.2f} - {hi[4]:.2f}], generator "
              f"{statistics.median(x[8] for x in rows):,.0f} ns/order "
              f"[{min(x[8] for x in rows):,.0f} - {max(x[8] for x in rows):,.0f}] "
              f"(tick {ticks[kind]} us)")
        threads = sorted({t for x in rows for t in x[7]})
        print(f"{kind} by thread (ns/order, switches/1k orders): " + ", ".join(
            f"{t} {_thread_median(rows, t, 'cpu_ns_per_order'):,.0f} / "
            f"{_thread_median(rows, t, 'switches_per_1k_orders'):,.0f}" for t in threads
            if _thread_median(rows, t, "cpu_ns_per_order") >= 50))


if __name__ == "__main__":
    main()
