"""One build, several configurations of the engine flow, interleaved round by round: what a
breaker window or a thread placement costs the loop thread (docs/processor.md, step 20).

::

    python bench/flow_variants_ab.py VARIANT[,VARIANT...] [rounds] [commands]
        window_1s, window_1ms: the flow's per-account breaker limit (10**6 outputs) over a
            window of 1 s (the bench's) or 1 ms of event time; no_breaker: none
        placed: loop_cpus={0}, background_cpus={1}; placed_producer: the same, and the
            producing thread moved to CPU 1 after start(); placed_with_loop: the same with
            the producing thread on CPU 0, beside the loop (the ring's slots written by the
            loop's own core)
        batch_N: ProcessorConfig.max_batch=N (the default is 1024)
        output_untouched: the output journal's next segments prepared (created,
            preallocated, header template) but their pages not pre-faulted: the writer
            thread's pwrite() allocates them
        default: the flow as pipeline_ab.py runs it

Each round runs every variant once (a child process each, the order reversed every other
round) over ``commands`` commands of ``pipeline_ab._flow_engine``; per run the rate (M
commands/s) and ``pipeline_ab.per_command`` (the loop thread's and all threads' on-CPU ns per
command, the loop's user and system time and faults, each thread's); then the medians per
variant and, for each variant after the first, the per-round ratios to the first (median and
range).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
WINDOWS = {"window_1s": 10**9, "window_1ms": 10**6}
MAIN = ("rate", "loop_cpu", "all_cpu")


def _child(variant: str, n: int) -> None:
    """One run of the flow under ``variant``: its figures as JSON."""
    sys.path.insert(0, str(HERE))
    import pipeline_ab as ab

    import ringlog

    breaker, config, processor = ringlog.Breaker, ringlog.ProcessorConfig, ringlog.Processor

    def make_breaker(cfg):
        if variant == "no_breaker":
            return None
        lim = cfg.limits[0]
        window = WINDOWS.get(variant, lim.window_ns)
        return breaker(ringlog.BreakerConfig(limits=[ringlog.Limit(
            max_count=lim.max_count, window_ns=window, per=lim.per)]))

    def make_config(**kw):
        if variant.startswith("placed"):
            kw.update(loop_cpus=frozenset({0}), background_cpus=frozenset({1}))
        if variant.startswith("batch_"):
            kw.update(max_batch=int(variant[len("batch_"):]))
        return config(**kw)

    class Placed(processor):
        def start(self):
            super().start()
            # this (the producing) thread only
            os.sched_setaffinity(0, {0} if variant == "placed_with_loop" else {1})

    if variant == "output_untouched":
        from ringlog.journal import Journal

        paced = Journal._prefault_paced

        def prefault_paced(j, seg):
            if j.path.name != "output":
                paced(j, seg)

        Journal._prefault_paced = prefault_paced
    # _flow_engine imports these names from ringlog when it runs
    ringlog.Breaker, ringlog.ProcessorConfig = make_breaker, make_config
    if variant in ("placed_producer", "placed_with_loop"):
        ringlog.Processor = Placed
    d = tempfile.mkdtemp(prefix="ringlog-variants-", dir=".")
    seen: dict[str, float] = {}
    try:
        before, after = ab._flow_engine(d + "/engine", n, seen=seen)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    out = {"rate": seen["rate"] / 1e6, **ab.per_command(n, before, after)}
    print(json.dumps(out))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        _child(argv[1], int(argv[2]))
        return
    if not argv:
        sys.exit(__doc__)
    variants = argv[0].split(",")
    rounds = int(argv[1]) if len(argv) > 1 else 4
    n = int(argv[2]) if len(argv) > 2 else 2_000_000
    res: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for r in range(rounds):
        for v in variants if r % 2 == 0 else variants[::-1]:
            done = subprocess.run([sys.executable, __file__, "--child", v, str(n)],
                                  capture_output=True, text=True, check=True)
            res[v].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {r} {v}: " + ", ".join(f"{k} {x:.2f}" for k, x in
                                                 res[v][-1].items()), flush=True)
    for v in variants:
        keys = sorted({k for d in res[v] for k in d}, key=lambda k: (k not in MAIN, k))
        print(f"{v:16s} " + ", ".join(
            f"{k} {statistics.median(d.get(k, 0.0) for d in res[v]):.2f}" for k in keys))
    base = res[variants[0]]
    for v in variants[1:]:  # per-round ratios to the first variant: same round, same moment
        print(f"{v} / {variants[0]}: " + ", ".join(
            f"{k} {_ratios([d[k] for d in res[v]], [d[k] for d in base])}" for k in MAIN))


def _ratios(new: list[float], old: list[float]) -> str:
    r = [a / b for a, b in zip(new, old, strict=True) if b]
    return f"{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})" if r else "-"


if __name__ == "__main__":
    main(sys.argv[1:])
