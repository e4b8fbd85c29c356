"""The Python handler row with the journals' first segment at several sizes (MiB), interleaved:
the default (1 MiB, then sized by fill rate) against larger first segments (64: no growth).

::

    python bench/first_segment_ab.py [rounds] [events] [--sizes 1,64]

A run of the row's flow (``bench_processor._throughput``: a fresh journal directory, the
bench's Python Counter, the default ProcessorConfig) fills ~72 MB of input journal per
million events, so a small first segment rolls during the run; a roll the background thread
has not prepared for is made by the loop thread itself (``Journal.fallback_rolls``). Each
round: the plain-loop ceiling once, then each size (order reversed every other round); per
run the goal's ratio (rate / plain loop), the loop thread's CPU ns per event and the input
journal's fallback rolls; per size the medians, and per round each size's ratio over the
first size's. Patches ``ringlog.journal.FIRST_SEGMENT_SIZE`` in this process only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_processor as b

import ringlog.journal as journal


def main(rounds: int, n: int, sizes: list[int]) -> None:
    default = journal.FIRST_SEGMENT_SIZE
    res: dict[int, list[tuple[float, float, int]]] = {m: [] for m in sizes}
    rolls: list[int] = []  # the input journal's fallback rolls, one per run
    for r in range(rounds):
        direct, _ = b._direct_python(n)
        for m in sizes if r % 2 == 0 else sizes[::-1]:
            journal.FIRST_SEGMENT_SIZE = m << 20
            try:
                rate, cpu = b._throughput(n, b.Counter(), False, after=lambda p: rolls.append(
                    p.input.fallback_rolls))
            finally:
                journal.FIRST_SEGMENT_SIZE = default
            res[m].append((rate / direct, cpu["threads"]["rl-loop"]["cpu_ns"], rolls[-1]))
            print(f"round {r} first {m} MiB: ratio {rate / direct:.2f}, loop "
                  f"{res[m][-1][1]:.0f} ns/event, loop's rolls {rolls[-1]}", flush=True)
    for m, v in res.items():
        ratios, loop = [x for x, _, _ in v], [y for _, y, _ in v]
        print(f"first {m:3d} MiB: ratio median {statistics.median(ratios):.2f} (range "
              f"{min(ratios):.2f}-{max(ratios):.2f}), loop CPU median "
              f"{statistics.median(loop):.0f} ns/event, loop's rolls per run "
              f"{sorted(z for _, _, z in v)}")
    for m in sizes[1:]:
        pairs = [a[0] / d[0] for a, d in zip(res[m], res[sizes[0]], strict=True)]
        print(f"{m} MiB / {sizes[0]} MiB ratio per round: median {statistics.median(pairs):.2f} "
              f"(range {min(pairs):.2f}-{max(pairs):.2f}, {rounds} rounds)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rounds", nargs="?", type=int, default=9)
    ap.add_argument("events", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--sizes", default="1,64", help="first segment sizes in MiB, comma list")
    a = ap.parse_args()
    try:
        mib = [int(x) for x in a.sizes.split(",")]
    except ValueError:
        ap.error(f"--sizes: a comma list of MiB counts, got {a.sizes!r}")
    if a.rounds < 1 or a.events < 1 or any(m < 1 for m in mib):
        ap.error("rounds, events and every --sizes entry must be >= 1")
    main(a.rounds, a.events, mib)
