"""The Python handler row with the journals' first segment at its default size (1 MiB,
doubling per roll) and at the full segment size (64 MiB: no growth rolls), interleaved.

::

    python bench/first_segment_ab.py [rounds] [events]

A run of the row's flow (``bench_processor._throughput``: a fresh journal directory, the
bench's Python Counter, the default ProcessorConfig) fills ~72 MB of input journal per
million events: with the default first segment it rolls 1 -> 2 -> 4 ... -> 64 MiB, and the
early rolls come faster than the background thread finishes the previous roll's syncs, so
the loop thread rolls by itself (``Journal.fallback_rolls``: index, fdatasync, a new
segment's header written and synced, the directory fsynced). Each round: the plain-loop
ceiling once, then both variants (order reversed every other round); per variant the goal's
ratio (rate / plain loop) and the loop thread's CPU ns per event; per round first64 /
default of the ratio. Patches ``ringlog.journal.FIRST_SEGMENT_SIZE`` in this process only.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_processor as b

import ringlog.journal as journal


def main(rounds: int = 9, n: int = 1_000_000) -> None:
    default = journal.FIRST_SEGMENT_SIZE
    res: dict[str, list[tuple[float, float]]] = {"default": [], "first64": []}
    for r in range(rounds):
        direct, _ = b._direct_python(n)
        for k in (["default", "first64"] if r % 2 == 0 else ["first64", "default"]):
            journal.FIRST_SEGMENT_SIZE = default if k == "default" else 64 << 20
            try:
                rate, cpu = b._throughput(n, b.Counter(), False)
            finally:
                journal.FIRST_SEGMENT_SIZE = default
            res[k].append((rate / direct, cpu["threads"]["rl-loop"]["cpu_ns"]))
            print(f"round {r} {k}: ratio {rate / direct:.2f}, loop "
                  f"{res[k][-1][1]:.0f} ns/event", flush=True)
    for k, v in res.items():
        ratios, loop = [x for x, _ in v], [y for _, y in v]
        print(f"{k:8s} ratio median {statistics.median(ratios):.2f} (range {min(ratios):.2f}-"
              f"{max(ratios):.2f}), loop CPU median {statistics.median(loop):.0f} ns/event")
    pairs = [a[0] / d[0] for a, d in zip(res["first64"], res["default"], strict=True)]
    print(f"first64/default ratio per round: median {statistics.median(pairs):.2f} (range "
          f"{min(pairs):.2f}-{max(pairs):.2f}, {rounds} rounds)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
