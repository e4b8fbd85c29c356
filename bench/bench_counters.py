"""What the shared-memory counters cost the loop thread, per command.

::

    bulk producer ──► INPUT RING ──► loop thread (journals the batch, runs the engine,
                                     journals the outputs; at each batch end ~20 release
                                     stores into DIR/counters)          ◄── reader process:
                                                                           CountersReader
                                                                           every 100 ms
    with:    ProcessorConfig(counters=True) and the reader process sampling the file
    without: ProcessorConfig(counters=False): the same stores go to private spares, no file,
             no reader

The figure is the loop thread's CPU time (schedstat, ringlog.bench.cpu) per engine command
on ringlog.engine.flow.mixed_flow, fed by publish_records; ``--pairs`` interleaved pairs
(the order alternates each pair so drift hits both alike). Reported: the median and range
of the per-pair differences (ns per command and percent). Goal: median < 2% and < 10 ns.
Whole runs on a shared machine swing by tens of percent, so the script also times the
batch-end stores alone (StageCounters.store_cost_ns, into a real counters file) and scales
them by the batches per command the runs made: the cost the counters add, without the noise.

``--callgrind`` counts instead of timing: each run goes under valgrind's callgrind (one
profile per thread, ringlog.bench.callgrind) and the figure is the loop thread's instructions
per command, with and without counters, in interleaved pairs. Instruction counts repeat to a
fraction of a percent where CPU time swings: the measure for a difference of a few percent.
(No reader process in this mode: it does not change the loop's instructions.)

    python bench/bench_counters.py --pairs 7 --n 400000 [--json out.json]
    python bench/bench_counters.py --callgrind --pairs 5 --n 100000 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ringlog import Breaker, BreakerConfig, Limit, Processor, ProcessorConfig
from ringlog._benchhandlers import CountingHandler
from ringlog._counters import CountersManager, StageCounters
from ringlog._ringbench import produce
from ringlog.bench.cpu import CpuMeter
from ringlog.engine import Engine, registry
from ringlog.engine.flow import demo_config, mixed_flow

LOOP_THREAD = "rl-loop"
READER = """
    import sys, time
    from ringlog.stat import open_reader, sample
    while True:
        try:
            r = open_reader(sys.argv[1])
            break
        except FileNotFoundError:
            time.sleep(0.01)
    print("reading", flush=True)
    while True:
        sample(r)
        time.sleep(0.1)
"""


def one_run(n: int, cmds: np.ndarray | None, types: np.ndarray | None,
            counters: bool, reader_process: bool = True, max_batch: int = 1024
            ) -> dict[str, Any]:
    """The loop thread's CPU ns per command (and the whole process's) for one run; with no
    ``cmds``, a trivial Cython handler (CountingHandler) fed by a C producer thread."""
    cfg = demo_config(max_orders=1 << 21)
    d = tempfile.mkdtemp(prefix="ringlog-ctr-", dir=".")
    reader = None
    try:
        breaker = Breaker(BreakerConfig(limits=[Limit(max_count=10**7, window_ns=10**9,
                                                      per="key")]))
        if cmds is not None:
            p = Processor(Engine(cfg), d, ProcessorConfig(slot_size=cfg.min_slot_size,
                                                          counters=counters, admin=False,
                                                          max_batch=max_batch),
                          breaker=breaker, registry=registry(cfg.l2_depth))
        else:
            p = Processor(CountingHandler(16), d, ProcessorConfig(counters=counters,
                                                                  admin=False,
                                                                  max_batch=max_batch),
                          breaker=breaker)
        p.start()
        if counters and reader_process:
            reader = subprocess.Popen([sys.executable, "-c", textwrap.dedent(READER), d],
                                      stdout=subprocess.PIPE, text=True)
            assert reader.stdout is not None and reader.stdout.readline().strip() == "reading"
        time.sleep(0.3)  # the journals prepare their next segment
        with CpuMeter() as m:
            if cmds is not None and types is not None:
                ts = np.arange(n, dtype=np.int64) * 1000
                p.publish_records(cmds, types.astype(np.uint32), timestamp_ns=ts)
            else:
                t = threading.Thread(target=produce, args=(p.input_ring, n, 64))
                t.start()
                t.join()
            p.drain(timeout=900)
        batches = p.counters.counters()["logic.batches"].value if counters else None
        p.stop()
        per = m.per_event(n)
        return {"loop_ns": per["threads"][LOOP_THREAD]["cpu_ns"],
                "total_ns": per["cpu_ns_total"], "cs_per_1k": per["cs_per_1k"],
                "batches_per_1k": None if batches is None else 1000 * batches / n}
    finally:
        if reader is not None:
            reader.kill()
            reader.communicate()
        shutil.rmtree(d, ignore_errors=True)


def store_cost(repeats: int = 7) -> dict[str, float]:
    """The loop's batch-end stores alone into a real counters file: ns per batch end
    (median and range of ``repeats``), free of the run-to-run noise of whole runs."""
    d = tempfile.mkdtemp(prefix="ringlog-ctr-", dir=".")
    try:
        with CountersManager.create(Path(d) / "counters") as mgr:
            stage = StageCounters(mgr, "logic")
            xs = [stage.store_cost_ns(2_000_000) for _ in range(repeats)]
        return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def measure(pairs: int, n: int, handler: str, max_batch: int = 1024) -> dict[str, Any]:
    """``pairs`` interleaved (with, without) runs; differences per pair."""
    cmds, types = mixed_flow(n, seed=41) if handler == "engine" else (None, None)
    one_run(min(n, 50_000), None if cmds is None else cmds[:50_000],
            None if types is None else types[:50_000], True,
            max_batch=max_batch)  # warm caches and imports
    rows = []
    for i in range(pairs):
        order = (True, False) if i % 2 == 0 else (False, True)
        got = {c: one_run(n, cmds, types, c, max_batch=max_batch) for c in order}
        rows.append({"with": got[True], "without": got[False]})
    store = store_cost()
    per_batch = statistics.median(r["with"]["batches_per_1k"] for r in rows) / 1000
    diff = [r["with"]["loop_ns"] - r["without"]["loop_ns"] for r in rows]
    rel = [100 * d / r["without"]["loop_ns"] for d, r in zip(diff, rows, strict=True)]
    return {
        "bench": "counters_cost_loop_thread", "handler": handler, "pairs": pairs,
        "commands_per_run": n,
        "batches_per_1k_commands": statistics.median(r["with"]["batches_per_1k"]
                                                     for r in rows),
        "machine": f"{len(os.sched_getaffinity(0))} CPUs available, shared",
        "loop_ns_with": [round(r["with"]["loop_ns"], 2) for r in rows],
        "loop_ns_without": [round(r["without"]["loop_ns"], 2) for r in rows],
        "diff_ns": {"median": statistics.median(diff), "min": min(diff), "max": max(diff)},
        "diff_pct": {"median": statistics.median(rel), "min": min(rel), "max": max(rel)},
        # signed: the counters may not cost more (a negative median is noise, not a gain)
        "goal": goal(diff, rel, ns=True),
        "batch_end_store_ns": store,
        "store_ns_per_command": round(store["median"] * per_batch, 4),
        "rows": rows,
    }


# one run in a child under callgrind: the loop thread's work for n commands
CALLGRIND_RUN = """
import json, sys
sys.path.insert(0, sys.argv[1])
import bench_counters as b
from ringlog.engine.flow import mixed_flow
n, counters = int(sys.argv[2]), sys.argv[3] == "with"
cmds, types = mixed_flow(n, seed=41) if sys.argv[4] == "engine" else (None, None)
print(json.dumps(b.one_run(n, cmds, types, counters, reader_process=False,
                           max_batch=int(sys.argv[5]))))
"""


def callgrind_run(n: int, handler: str, counters: bool, max_batch: int = 1024
                  ) -> dict[str, Any]:
    """One run under callgrind: the loop thread's instructions per command, and the other
    threads' totals (the loop thread is the busiest one besides the main thread)."""
    from ringlog.bench.callgrind import busiest_thread, run_threads

    totals, out = run_threads(CALLGRIND_RUN, [str(Path(__file__).parent), str(n),
                                              "with" if counters else "without", handler,
                                              str(max_batch)])
    tid, ir = busiest_thread(totals)
    run = json.loads(out.strip().splitlines()[-1])
    return {"loop_ir_per_command": ir / n, "loop_thread": tid, "threads_ir": totals,
            "batches_per_1k": run["batches_per_1k"]}


def measure_callgrind(pairs: int, n: int, handler: str, max_batch: int = 1024
                      ) -> dict[str, Any]:
    """``pairs`` interleaved (with, without) runs under callgrind; differences per pair in
    the loop thread's instructions per command."""
    rows = []
    for i in range(pairs):
        order = (True, False) if i % 2 == 0 else (False, True)
        got = {c: callgrind_run(n, handler, c, max_batch) for c in order}
        rows.append({"with": got[True], "without": got[False]})
    w = [r["with"]["loop_ir_per_command"] for r in rows]
    wo = [r["without"]["loop_ir_per_command"] for r in rows]
    diff = [a - b for a, b in zip(w, wo, strict=True)]
    rel = [100 * d / b for d, b in zip(diff, wo, strict=True)]
    return {
        "bench": "counters_cost_loop_thread_instructions", "handler": handler,
        "pairs": pairs, "commands_per_run": n, "max_batch": max_batch,
        "tool": "valgrind --tool=callgrind",
        "machine": f"{len(os.sched_getaffinity(0))} CPUs available, shared",
        "loop_ir_with": [round(x, 2) for x in w], "loop_ir_without": [round(x, 2) for x in wo],
        "batches_per_1k_with": [r["with"]["batches_per_1k"] for r in rows],
        "diff_ir": {"median": statistics.median(diff), "min": min(diff), "max": max(diff)},
        "diff_pct": {"median": statistics.median(rel), "min": min(rel), "max": max(rel)},
        "goal": goal(diff, rel, ns=False),
        "rows": rows,
    }


def goal(diff: list[float], rel: list[float], ns: bool) -> str:
    """The goal (median < 2%, and < 10 ns for times) judged only where the pairs resolve
    it: a spread over the pairs wider than 2% either way decides nothing."""
    spread = max(abs(min(rel)), abs(max(rel)))
    if spread > 2:
        return f"not resolved: the pairs spread +-{spread:.1f}% (goal < 2%)"
    met = statistics.median(rel) < 2 and (not ns or statistics.median(diff) < 10)
    return "met" if met else "NOT met"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=7)
    ap.add_argument("--n", type=int, default=400_000, help="engine commands per run")
    ap.add_argument("--handler", choices=["engine", "counting"], default="engine",
                    help="the matching engine on the mixed flow, or a trivial Cython handler")
    ap.add_argument("--json", help="write the result here too")
    ap.add_argument("--max-batch", type=int, default=1024,
                    help="ProcessorConfig.max_batch (1: every command ends a batch, the "
                    "counters' worst case)")
    ap.add_argument("--callgrind", action="store_true",
                    help="count the loop thread's instructions under valgrind instead")
    a = ap.parse_args()
    if a.pairs < 5:
        print("bench_counters: --pairs must be >= 5", file=sys.stderr)
        return 2
    if a.callgrind:
        return main_callgrind(a)
    res = measure(a.pairs, a.n, a.handler, a.max_batch)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    d, r = res["diff_ns"], res["diff_pct"]
    print(json.dumps({k: v for k, v in res.items() if k != "rows"}))
    print(f"loop thread CPU per command, with - without counters: median {d['median']:+.2f} ns "
          f"(range {d['min']:+.2f}..{d['max']:+.2f}), {r['median']:+.2f}% "
          f"(range {r['min']:+.2f}..{r['max']:+.2f}) over {res['pairs']} pairs; goal "
          f"{res['goal']}")
    st = res["batch_end_store_ns"]
    print(f"batch-end stores alone: {st['median']:.1f} ns per batch end (range "
          f"{st['min']:.1f}..{st['max']:.1f}) x {res['batches_per_1k_commands']:.2f} batches "
          f"per 1k commands = {res['store_ns_per_command']:.4f} ns per command")
    return 0


def main_callgrind(a: argparse.Namespace) -> int:
    """``--callgrind``: prints (and writes) the instruction-count comparison."""
    from ringlog.bench.callgrind import available

    if not available():
        print("bench_counters: --callgrind needs valgrind (apt-get install valgrind)",
              file=sys.stderr)
        return 2
    res = measure_callgrind(a.pairs, a.n, a.handler, a.max_batch)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "rows"}))
    d, r = res["diff_ir"], res["diff_pct"]
    print(f"loop thread instructions per command, with - without counters: median "
          f"{d['median']:+.2f} (range {d['min']:+.2f}..{d['max']:+.2f}), {r['median']:+.3f}% "
          f"(range {r['min']:+.3f}..{r['max']:+.3f}) over {res['pairs']} pairs of "
          f"{res['commands_per_run']} commands; goal (< 2%) "
          f"{res['goal']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
