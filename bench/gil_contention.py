"""A trivial Cython handler behind the default processor while the application's own Python
threads are busy: with the GIL (the loop takes it once per batch) and without it
(``nogil_events``), interleaved.

::

    C producer thread ──► INPUT RING ──► loop thread: journal ──► CountingHandler(nogil=?)
    BUSY Python threads: pure-Python loops (the application's work) holding the GIL in turn

    python bench/gil_contention.py [events] [rounds] [--busy N]
        each round runs, in a child process each, the handler with and without
        ``nogil_events`` (order reversed every other round), ``events`` events from the
        bench's C producer (bench_processor._throughput) while ``N`` (default 1) Python
        threads spin; per run the rate (M events/s), the loop thread's CPU ns per event and
        ``logic.gil_wait_ns`` per event; then the medians and the nogil/GIL ratio per round.

A loop that needs the GIL per batch waits for a Python thread that holds it up to the switch
interval (5 ms); one that does not, runs beside it (the two CPUs still shared).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent


def one(nogil: bool, events: int, busy: int) -> dict[str, float]:
    """One run in this process: the rate, the loop's CPU per event, its GIL wait per event."""
    sys.path.insert(0, str(HERE))
    import bench_processor as bp

    from ringlog._benchhandlers import CountingHandler
    from ringlog._counters import CountersReader

    stop = False

    def spin() -> None:  # the application's Python work: never waits, never releases early
        x = 0
        while not stop:
            x += 1

    threads = [threading.Thread(target=spin, daemon=True) for _ in range(busy)]
    for t in threads:
        t.start()
    gil = [0]

    def counters(p) -> None:  # after the run, before the processor stops
        gil[0] = CountersReader(Path(p.directory) / "counters").values()["logic.gil_wait_ns"]

    try:
        rate, cpu = bp._throughput(events, CountingHandler(16, nogil=nogil), False,
                                   after=counters)
    finally:
        stop = True
    loop = cpu["threads"].get("rl-loop", {}).get("cpu_ns", float("nan"))
    return {"rate": rate / 1e6, "loop_ns": loop, "gil_wait_ns": gil[0] / events}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("events", nargs="?", type=int, default=2_000_000)
    ap.add_argument("rounds", nargs="?", type=int, default=5)
    ap.add_argument("--busy", type=int, default=1)
    ap.add_argument("--one", choices=["gil", "nogil"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.events < 1000 or a.rounds < 1 or a.busy < 0:
        ap.error("events must be >= 1000, rounds >= 1 and --busy >= 0")
    if a.one:
        print(json.dumps(one(a.one == "nogil", a.events, a.busy)))
        return 0
    got: dict[str, list[dict[str, float]]] = {"gil": [], "nogil": []}
    for r in range(a.rounds):
        for kind in ("gil", "nogil")[::-1 if r % 2 else 1]:
            done = subprocess.run([sys.executable, __file__, str(a.events), "1", "--busy",
                                   str(a.busy), "--one", kind], capture_output=True, text=True)
            lines = done.stdout.strip().splitlines()
            if done.returncode or not lines:
                raise SystemExit(f"{kind}: the run failed: {done.stderr.strip()[-400:]}")
            got[kind].append(json.loads(lines[-1]))
            d = got[kind][-1]
            print(f"round {r + 1} {kind}: {d['rate']:.2f}M events/s, loop {d['loop_ns']:.0f} "
                  f"ns/event, GIL wait {d['gil_wait_ns']:.0f} ns/event", flush=True)
    for k in ("rate", "loop_ns", "gil_wait_ns"):
        old = [d[k] for d in got["gil"]]
        new = [d[k] for d in got["nogil"]]
        ratios = [n / o for n, o in zip(new, old, strict=True) if o]
        line = (f"{k:12s} gil median {statistics.median(old):9.3f}, "
                f"nogil {statistics.median(new):9.3f}")
        if ratios:
            line += (f"; nogil/gil median {statistics.median(ratios):.2f} "
                     f"({min(ratios):.2f}-{max(ratios):.2f}, {len(ratios)} rounds)")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
