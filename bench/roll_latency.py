"""processor_latency_100k: publish-to-handled latency at 100k events/s (open loop), ringlog
builds against the Java Disruptor's in the same run, interleaved rounds; where the stalls fall.

    produce_paced (due = start + i/rate) ──► input ring ──► loop: journal batch, handle
                                                              │   handled[i] = now - due[i]
                                                              ├─► input journal   (rolls at
                                                              └─► output journal   1, 2, 4 .. MiB)

Each round runs every ringlog tree (this one, and any ``--tree NAME=SRC`` given, e.g. a build
of an earlier commit; the order alternates between rounds) in a process of its own, with
CPU ns per event per thread (/proc schedstat, ringlog.bench.cpu), then the Disruptor peer
(src/ringlog/bench/peers/disruptor/run.sh, its "yielding" and "busyspin" latency lines), so
all see the same machine state. Percentiles are over every event (as bench_processor's
latency rows); a stall is a run of events handled more than 1 ms late, reported by the index
of its first event (segment rolls fall at fixed indices: 16,321, 49,025, ... for 64-byte
records), with the journals' rolls (without the GIL / fallback) and the median over the
input journal's rolls of the worst latency of the events due in the 5 ms after each.

    .venv/bin/python bench/roll_latency.py --rounds 3 [--events 500000] [--json out.json]
        [--tree before=/tmp/ringlog-before/src] [--no-peer]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RATE = 100_000


def one(events: int) -> dict:
    """One ringlog run in this process: percentiles, stalls, rolls."""
    import shutil
    import tempfile

    import numpy as np

    sys.path.insert(0, str(HERE))
    import bench_processor as bp

    from ringlog._benchhandlers import LatencyHandler
    from ringlog._ringbench import produce_paced
    from ringlog.bench import cpu
    from ringlog.bench.latency import percentiles
    from ringlog.journal import list_segments
    from ringlog.processor import Processor

    d = tempfile.mkdtemp(prefix="ringlog-lat-", dir=".")
    try:
        handled = np.zeros(events, dtype=np.int64)
        p = Processor(LatencyHandler(handled), d, bp._config(topology="auto"))
        p.start()
        time.sleep(0.5)  # as bench_processor: the journals prepare their next segment
        before = cpu.sample()
        produce_paced(p.input_ring, events, RATE, bp.LATENCY_SPIN_NS)
        p.drain(timeout=120)
        use = cpu.diff(before, cpu.sample()).per_event(events)
        rolls = {name: [getattr(j, "fast_rolls", None), getattr(j, "fallback_rolls", None)]
                 for name, j in (("input", p.input), ("output", p.output))}
        p.stop()
        # where the input journal rolled (journal sequence ~ event index: the window is wide)
        roll_at = [f for f, _ in list_segments(Path(d) / "input")][1:]
    finally:
        shutil.rmtree(d)
    pct = percentiles(handled)
    late = np.flatnonzero(handled > 1_000_000)
    starts = late[np.r_[True, np.diff(late) > 1]] if late.size else late
    # the worst latency of the events due in the 5 ms after each input roll
    peaks = [float(handled[max(0, f - 50):f + 500].max()) for f in roll_at if f < events]
    return {"p50": pct["p50"], "p99": pct["p99"], "p99.9": pct["p99.9"], "max": pct["max"],
            "late_1ms": round(float(late.size) / events, 5), "stalls": int(starts.size),
            "stall_at": [int(s) for s in starts[:12]], "rolls": rolls, "roll_at": roll_at,
            "roll_peak_median": float(np.median(peaks)) if peaks else 0.0,
            "cpu_ns": {k: round(v["cpu_ns"]) for k, v in use["threads"].items()},
            "cpu_ns_total": round(use["cpu_ns_total"])}


def run_tree(src: str | None, events: int) -> dict:
    """``one`` in a child process importing ringlog from ``src`` (None: this tree)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, __file__, "--one", "--events", str(events)],
                         env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_peer() -> dict:
    """The Disruptor peer's latency lines (3 s at 100k/s each, after a warm-up run)."""
    script = ROOT / "src/ringlog/bench/peers/disruptor/run.sh"
    out = subprocess.run(["bash", str(script), "1000", "1"], capture_output=True, text=True,
                         check=True).stdout
    res = {}
    for m in re.finditer(r"disruptor_latency_(\w+?)_100k_per_s_ns (.*)", out):
        res[m.group(1)] = {k: float(v) for k, v in re.findall(r"(p[\d.]+|max)=(\d+)",
                                                              m.group(2))}
    return res


def summary(xs: list[float]) -> str:
    return f"{statistics.median(xs) / 1e3:8.1f} [{min(xs) / 1e3:.1f}..{max(xs) / 1e3:.1f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--events", type=int, default=500_000,
                    help="events per ringlog run (bench_processor: 500,000 at 100k/s)")
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=SRC",
                    help="also run ringlog imported from SRC (a src/ directory with built "
                         "extensions)")
    ap.add_argument("--no-peer", action="store_true", help="skip the Disruptor peer")
    ap.add_argument("--json", metavar="PATH", help="write every run's figures here")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.events)))
        return 0
    if args.rounds < 1 or args.events < 10_000:
        ap.error("--rounds must be >= 1 and --events >= 10000")
    trees: list[tuple[str, str | None]] = [("this", None)]
    for t in args.tree:
        name, sep, src = t.partition("=")
        if not sep or not Path(src).is_dir():
            ap.error(f"--tree {t!r}: expected NAME=SRC with SRC a directory")
        trees.append((name, src))
    runs: dict[str, list[dict]] = {}
    for r in range(args.rounds):
        for name, src in trees[::-1] if r % 2 else trees:  # the order alternates
            res = run_tree(src, args.events)
            runs.setdefault(name, []).append(res)
            print(f"round {r + 1} {name:10} p50 {res['p50'] / 1e3:7.1f} p99 "
                  f"{res['p99'] / 1e3:7.1f} p99.9 {res['p99.9'] / 1e3:7.1f} us, "
                  f"after a roll {res['roll_peak_median'] / 1e3:7.1f} us (median peak), "
                  f"stalls {res['stalls']} at {res['stall_at'][:5]}, rolls {res['rolls']}, "
                  f"CPU ns/event {res['cpu_ns_total']} {res['cpu_ns']}", flush=True)
        if not args.no_peer:
            for wait, res in run_peer().items():
                runs.setdefault(f"disruptor_{wait}", []).append(res)
                print(f"round {r + 1} disruptor_{wait:9} p50 {res['p50'] / 1e3:7.1f} p99 "
                      f"{res['p99'] / 1e3:7.1f} p99.9 {res['p99.9'] / 1e3:7.1f} us",
                      flush=True)
    cols = ("p50", "p99", "p99.9", "roll_peak_median")
    print(f"\n{'run':20} {'p50 us (median [range])':>26} {'p99':>26} {'p99.9':>26} "
          f"{'peak after a roll':>26}")
    for name, rs in runs.items():
        print(f"{name:20} " + " ".join(f"{summary([x[p] for x in rs]) if p in rs[0] else '':>26}"
                                       for p in cols))
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": args.rounds, "events": args.events,
                                               "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
