"""One build, several configurations of the engine flow, interleaved round by round: what a
breaker window or a thread placement costs the loop thread (docs/processor.md, step 20).

::

    python bench/flow_variants_ab.py VARIANT[,VARIANT...] [rounds] [commands]
        (an unknown variant or a count below 1: one line and exit 2)
        window_1s, window_1ms: the flow's per-account breaker limit (10**6 outputs) over a
            window of 1 s (the bench's) or 1 ms of event time; no_breaker: none
        placed: loop_cpus={0}, background_cpus={1}; placed_producer: the same, and the
            producing thread moved to CPU 1 after start(); placed_with_loop: the same with
            the producing thread on CPU 0, beside the loop (the ring's slots written by the
            loop's own core)
        batch_N: ProcessorConfig.max_batch=N (the default is 1024)
        lazy_N: ProcessorConfig.lazy_sync_ms=N (the default is 1; lazy_0: the input's group
            commits back to back whether or not anything waits for them)
        output_untouched: the output journal's next segments prepared (created,
            preallocated, header template) but their pages not pre-faulted: the writer
            thread's pwrite() allocates them
        output_buffered, output_direct: ProcessorConfig.output_io (the output journal's
            writer by pwrite() into the page cache, or O_DIRECT; the library's default is
            buffered, `ringlog serve`'s auto: direct where the file system takes it)
        default: the flow as pipeline_ab.py runs it

Each round runs every variant once (a child process each, the order reversed every other
round) over ``commands`` commands of ``pipeline_ab._flow_engine``; per run the rate (M
commands/s) and ``pipeline_ab.per_command`` (the loop thread's and all threads' on-CPU ns per
command, the loop's user and system time and faults, each thread's); then the medians per
variant and, for each variant after the first, the per-round ratios to the first (median and
range).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import pipeline_ab as ab  # noqa: E402

WINDOWS = {"window_1s": 10**9, "window_1ms": 10**6, "no_breaker": None}
PLACED = {"placed": None, "placed_producer": 1, "placed_with_loop": 0}  # the producer's CPU
OUTPUT_IO = {"output_buffered": "buffered", "output_direct": "direct"}
NAMED = {"default", "output_untouched", *WINDOWS, *PLACED, *OUTPUT_IO}
MAIN = ("rate", "loop_cpu", "all_cpu")


def known(variant: str) -> bool:
    """Is ``variant`` one this script runs?"""
    return variant in NAMED or re.fullmatch(r"batch_[1-9][0-9]*|lazy_[0-9]+", variant) \
        is not None


def _fields(variant: str) -> dict[str, Any]:
    """The ProcessorConfig fields ``variant`` sets by value (placement aside)."""
    if variant in OUTPUT_IO:
        return {"output_io": OUTPUT_IO[variant]}
    if variant.startswith("batch_"):
        return {"max_batch": int(variant[len("batch_"):])}
    if variant.startswith("lazy_"):
        return {"lazy_sync_ms": float(variant[len("lazy_"):])}
    return {}


def _child(variant: str, n: int) -> None:
    """One run of the flow under ``variant``: its figures as JSON."""
    kw: dict[str, Any] = {"window_ns": WINDOWS.get(variant, 10**9)}
    config: dict[str, Any] = {}
    if variant in PLACED:
        config.update(loop_cpus=frozenset({0}), background_cpus=frozenset({1}))
        cpu = PLACED[variant]
        if cpu is not None:  # this (the producing) thread only, once the processor runs
            kw["after_start"] = lambda _p: os.sched_setaffinity(0, {cpu})
    config.update(_fields(variant))
    if variant == "output_untouched":
        from ringlog.journal import Journal

        paced = Journal._prefault_paced

        def prefault_paced(j: Journal, seg: Any) -> None:
            if j.path.name != "output":
                paced(j, seg)

        Journal._prefault_paced = prefault_paced  # type: ignore[method-assign]
    d = tempfile.mkdtemp(prefix="ringlog-variants-", dir=".")
    seen: dict[str, float] = {}
    try:
        before, after = ab._flow_engine(d + "/engine", n, seen=seen, config=config, **kw)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print(json.dumps({"rate": seen["rate"] / 1e6, **ab.per_command(n, before, after)}))


def _run(variant: str, n: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--child", variant, str(n)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], int(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", help="VARIANT[,VARIANT...] (see the module docstring)")
    ap.add_argument("rounds", nargs="?", type=int, default=4)
    ap.add_argument("commands", nargs="?", type=int, default=2_000_000)
    a = ap.parse_args()
    variants = a.variants.split(",")
    bad = [v for v in variants if not known(v)]
    if bad or a.rounds < 1 or a.commands < 1:
        ap.error(f"unknown variant {bad[0]!r} (see --help)" if bad
                 else "rounds and commands must be >= 1")
    from ringlog import ProcessorConfig
    from ringlog.errors import RingLogError

    for v in variants:  # a value ProcessorConfig refuses: one line here, not a child's trace
        try:
            ProcessorConfig(**_fields(v))
        except RingLogError as e:
            ap.error(f"variant {v!r}: {e}")
    res = ab.interleaved(variants, a.rounds, lambda v: _run(v, a.commands), "{:.2f}")
    for v in variants:
        keys = sorted({k for d in res[v] for k in d}, key=lambda k: (k not in MAIN, k))
        print(f"{v:16s} " + ", ".join(
            f"{k} {statistics.median(d.get(k, 0.0) for d in res[v]):.2f}" for k in keys))
    base = res[variants[0]]
    for v in variants[1:]:  # per-round ratios to the first variant: same round, same moment
        print(f"{v} / {variants[0]}: " + ", ".join(
            f"{k} {ab.ratio_summary([d[k] for d in res[v]], [d[k] for d in base])}"
            for k in MAIN))


if __name__ == "__main__":
    main()
