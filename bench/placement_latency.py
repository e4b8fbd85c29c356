"""Publish-to-handled latency at 100k events/s by thread placement (issue #14), interleaved.

::

    paced producer (CPU 0 when placed) ──► input ring ──► loop ──► journals
                                                           │ handled[i] = now - due[i]
    modes, each run in a process of its own, the order reversed every other round:
      default  ProcessorConfig as a user gets it: the kernel places every thread
      pinned   loop_cpus = background_cpus = {last CPU}, the producer on the first
               (bench_processor's latency_100k_per_s_handled_pinned rows)
      fifo     pinned, and the loop thread SCHED_FIFO 1 (needs CAP_SYS_NICE)
      split    the loop alone on the last CPU, the group-commit threads with the producer

    .venv/bin/python bench/placement_latency.py [rounds] [--modes default,pinned,fifo,split]

Per run: p50, p99, p99.9 over 300,000 events less the first 10,000, and the share of events
handled more than 1 ms after their due time; the load average when the run ended.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ("default", "pinned", "fifo", "split")


def one(mode: str) -> dict:
    """One run of ``mode`` in this process."""
    sys.path.insert(0, str(HERE))
    import bench_processor as bp

    import ringlog.processor as proc
    from ringlog.bench.latency import percentiles

    if mode == "split":
        cpus = sorted(os.sched_getaffinity(0))
        bp._placement = lambda: ({"loop_cpus": frozenset(cpus[-1:]),
                                  "background_cpus": frozenset(cpus[:1])}, set(cpus[:1]))
    if mode == "fifo":
        place = proc.Processor._place_threads

        def place_fifo(self: proc.Processor, loop: frozenset[int] | None,
                       background: frozenset[int] | None) -> None:
            place(self, loop, background)
            for t in self._threads:
                if t.name == "ringlog-loop" and t.native_id is not None:
                    os.sched_setscheduler(t.native_id, os.SCHED_FIFO, os.sched_param(1))

        proc.Processor._place_threads = place_fifo  # type: ignore[method-assign]
    handled, _ = bp._latency(100_000, 300_000, "auto", pinned=mode != "default")
    h = handled[10_000:]
    pc = percentiles(h)
    return {"mode": mode, "p50": pc["p50"], "p99": pc["p99"], "p99.9": pc["p99.9"],
            "late_1ms": round(float((h > 1_000_000).mean()), 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rounds", nargs="?", type=int, default=3)
    ap.add_argument("--modes", default="default,pinned,fifo")
    ap.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one)))
        return 0
    modes = a.modes.split(",")
    if a.rounds < 1 or not modes or any(m not in MODES for m in modes):
        ap.error(f"rounds must be >= 1 and --modes a comma list of {', '.join(MODES)}")
    if len(os.sched_getaffinity(0)) < 2:
        ap.error("placement needs at least two CPUs this process may use")
    for r in range(a.rounds):
        for mode in modes if r % 2 == 0 else modes[::-1]:
            out = subprocess.run([sys.executable, __file__, "--one", mode],
                                 capture_output=True, text=True)
            line = out.stdout.strip().splitlines()[-1:] or [out.stderr.strip()[-300:]]
            print(line[0], f"load {os.getloadavg()[0]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
