"""journal_roll_cost: what one segment roll costs the appending thread, the roll without the
GIL (a prepared segment offered) against the synchronous fallback (the offer withdrawn just
before: index write, fdatasync of the old segment, header seal + fdatasync, rename, directory
fsync on the appending thread, as every roll did before), alternating, same journal.

    append x N (fills the segment) ──► the append that rolls: timed (perf_counter_ns)
                                           │ fast:     finish header, rename, switch
                                           └ fallback: .idx, fdatasync old, seal, fdatasync
                                                       new, rename, fsync dir, switch

Wall time on the appending thread, so preemption on a loaded machine shows in the tail; the
median is the figure. Also prints the median of the appends that did not roll.

    .venv/bin/python bench/roll_cost.py [--rolls 40] [--segment-kib 1024] [--policy group]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
import time

from ringlog import durable
from ringlog.journal import Journal

PAYLOAD = b"x" * 16  # a 64-byte ring slot's record: 8 + 48 + 16 bytes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rolls", type=int, default=40, help="rolls, half of each kind")
    ap.add_argument("--segment-kib", type=int, default=1024)
    ap.add_argument("--policy", choices=["none", "group", "sync"], default="group")
    args = ap.parse_args()
    if args.rolls < 2 or args.segment_kib < 8 or args.segment_kib % 4:
        ap.error("--rolls >= 2, --segment-kib >= 8 and a multiple of 4")
    size = args.segment_kib << 10
    need = 8 + ((48 + len(PAYLOAD) + 7) & ~7)
    d = tempfile.mkdtemp(prefix="ringlog-roll-", dir=".")
    cost: dict[str, list[int]] = {"fast": [], "fallback": []}
    plain: list[int] = []
    try:
        with Journal(d, segment_size=size, first_segment_size=size,
                     durability=args.policy) as j:
            a = j.appender
            for i in range(args.rolls):
                kind = "fast" if i % 2 == 0 else "fallback"
                if not j.wait_ready(30):
                    raise SystemExit("no prepared segment offered within 30 s")
                while a.pos + need <= a.segment.size:
                    t0 = time.perf_counter_ns()
                    j.append(PAYLOAD)
                    plain.append(time.perf_counter_ns() - t0)
                rolled = (j.fast_rolls, j.fallback_rolls)
                # the journal's lock keeps the background thread from offering another one
                with j._lock if kind == "fallback" else contextlib.nullcontext():
                    if kind == "fallback":
                        durable.unlink(a.take_offer().path)
                    t0 = time.perf_counter_ns()
                    j.append(PAYLOAD)
                    cost[kind].append(time.perf_counter_ns() - t0)
                assert (j.fast_rolls, j.fallback_rolls) == (
                    (rolled[0] + 1, rolled[1]) if kind == "fast" else (rolled[0], rolled[1] + 1))
    finally:
        shutil.rmtree(d)
    print(f"policy {args.policy}, {args.segment_kib} KiB segments, {args.rolls} rolls "
          "alternating; the append that rolls, on the appending thread (us):")
    for kind, xs in cost.items():
        xs.sort()
        print(f"  {kind:9} median {statistics.median(xs) / 1e3:9.1f}  min {xs[0] / 1e3:8.1f}"
              f"  max {xs[-1] / 1e3:9.1f}  (n={len(xs)})")
    fast, slow = statistics.median(cost["fast"]), statistics.median(cost["fallback"])
    print(f"  fallback / fast: {slow / fast:.0f}x; an append that does not roll: median "
          f"{statistics.median(plain) / 1e3:.2f} us (n={len(plain)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
