"""Instructions per event on the processor's loop thread, by part, counted by callgrind.

::

    C producer thread ──► INPUT RING ──► loop thread: journal the batch (memcpy + CRC) ──►
        LogicCore (control? dedup? breaker open?) ──► handler ──emit──► breaker ──►
        output journal (inline topology, no listener)
                      ^ this thread's instructions, per event, grouped by part

    python bench/loop_callgrind.py [cython|cython_breaker|python|python_breaker|python_event|
                                    python_direct|engine|engine_alone|replay] [N]
        runs itself under ``valgrind --tool=callgrind --separate-threads=yes``, finds the
        thread that ran ``LogicCore.run`` and prints its instructions per event by part
        ``--map``: the journals store records into their maps (``Journal(buffered=False)``)
        instead of the default pwrite() from a buffer under group commit
        ``--outputs loop|thread``: ``ProcessorConfig.output_journaller`` (default: loop)
        ``--config FIELD=INT,...``: other ProcessorConfig fields (e.g. ring_capacity=2048)
        ``--cache``: simulate the caches too (``--cache-sim=yes``): per part, L1 data and
        "LL" misses per event beside the instructions. The simulated hierarchy is set to
        this EPYC's per-core caches, L1d 32 KiB 8-way and, as "LL", the 1 MiB L2 (what
        valgrind detects from the VM's cpuid is a 256 MiB direct-mapped L3); valgrind runs
        the threads one at a time on that one hierarchy, so every thread's footprint counts
    python bench/loop_callgrind.py compare OLD.json NEW.json
        the same breakdowns side by side (``--json FILE`` writes one; ``--keep FILE`` keeps
        the loop thread's callgrind file for ``callgrind_annotate``)

Instruction counts repeat to a fraction of a percent from run to run, so they tell a change
of a few instructions per event from noise on a machine where wall time swings 2-3x. They
miss the kernel (page faults on the journal maps, futex calls) and cache misses: read them
beside the CPU ns per event of ``bench/pipeline_ab.py``. The build needs symbols
(``RINGLOG_SYMBOLS=1``: the release flags, not stripped), else every part reads "other".

Handlers: ``cython`` is CountingHandler(16) (one output per 16 events), ``cython_breaker``
the same behind a breaker limit that never trips, ``python`` the bench's Python Counter
(``on_event(event, sequence, end_of_batch)``), ``python_breaker`` the same behind the
``cython_breaker`` limit, ``python_event`` the same declaring only ``on_event(event)``,
``engine_alone`` the engine's ``process_commands`` over the same flow on a thread of its own
(no processor: what the ``engine`` run's handler part is compared with),
``python_direct`` the Counter called from a plain Python loop on a thread of its own
(``bench_processor._direct_python``: the ceiling the processor's Python path is held to),
``engine`` the matching engine on the mixed flow (2.6 outputs per command) with a
per-account breaker fed by the bulk producer. All run the default ProcessorConfig.
``replay`` journals N events of the ``cython`` run, then measures the thread that runs
``Processor.recover()`` over them (64-byte records; its count includes recover's setup).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Parts, matched in order against callgrind_annotate's "file:function" (inlined code is
# attributed to the header it comes from, so the CRC is its own part).
PARTS: list[tuple[str, str]] = [
    ("journal: memcpy + CRC", r"crc32c\.h|memcpy|memmove"),
    ("journal: append bookkeeping", r"_journal"),
    ("ring: wait, claim, publish", r"_ring\b|_ring\.|ringwait\.h|ringlayout\.h|atomics\.h|futex"),
    ("breaker", r"_breaker"),
    ("handler", r"_benchhandlers|engine[/.]|_book|_engine"),
    ("counters", r"_counters|counterslayout\.h"),
    ("loop logic (LogicCore)", r"_loop"),
    ("Python interpreter", r"python|Py[A-Z_]|_Py|libpython|ceval|Objects/|Python/"),
]
OTHER = "other (libc, numpy, msgspec)"
KINDS = ("cython", "cython_breaker", "python", "python_breaker", "python_event",
         "python_direct", "engine", "engine_alone", "replay")


def _child(kind: str, n: int) -> None:
    """The measured run: a processor with the default config over ``n`` events."""
    from ringlog import Processor, ProcessorConfig

    if os.environ.get("RINGLOG_CG_WRITES") == "map":  # --map: the processor's journals
        import functools

        import ringlog.journal

        ringlog.journal.Journal = functools.partial(  # type: ignore[misc]
            ringlog.journal.Journal, buffered=False)
    pc: dict[str, Any] = {}  # ProcessorConfig fields from the command line
    for item in filter(None, os.environ.get("RINGLOG_CG_CONFIG", "").split(",")):
        field, _, value = item.partition("=")
        pc[field] = int(value)
    pc["output_journaller"] = os.environ.get("RINGLOG_CG_OUTPUTS", "loop")
    d = tempfile.mkdtemp(prefix="ringlog-cg-", dir=".")
    try:
        if kind in ("engine", "engine_alone"):
            import numpy as np

            from ringlog.engine import Engine
            from ringlog.engine.flow import demo_config, mixed_flow

            cmds, types = mixed_flow(n, seed=21)
            if kind == "engine_alone":  # the same flow, no processor, on a thread of its own
                t = threading.Thread(target=Engine(demo_config(max_orders=1 << 21))
                                     .process_commands, args=(cmds, types), name="alone")
                t.start()
                t.join()
                return
            sys.path.insert(0, str(Path(__file__).parent))
            from pipeline_ab import engine_processor  # the engine flow's, as everywhere

            p = engine_processor(d, pc.pop("durability", "group"), config=pc)
            p.start()
            p.publish_records(cmds, types.astype(np.uint32),
                              timestamp_ns=np.arange(n, dtype=np.int64) * 1000)
        elif kind == "python_direct":  # no processor: the plain loop on its own thread
            sys.path.insert(0, str(Path(__file__).parent))
            import bench_processor as bp

            t = threading.Thread(target=bp._direct_python, args=(n,), name="direct")
            t.start()
            t.join()
            return
        else:
            from ringlog._benchhandlers import CountingHandler
            from ringlog._ringbench import produce

            sys.path.insert(0, str(Path(__file__).parent))
            import bench_processor as bp

            handler = (bp.Counter() if kind in ("python", "python_breaker") else
                       bp.EventCounter() if kind == "python_event" else
                       CountingHandler(16))  # cython, cython_breaker, replay
            br = bp._breaker() if kind.endswith("_breaker") else None
            p = Processor(handler, d, ProcessorConfig(**pc), breaker=br)
            p.start()
            t = threading.Thread(target=produce, args=(p.input_ring, n, 64), name="producer")
            t.start()
            t.join()
        p.drain(timeout=3600)
        p.stop()
        if kind == "replay":  # recover() of what the live run journaled, on its own thread
            p = Processor(CountingHandler(16), d, ProcessorConfig())
            t = threading.Thread(target=p.recover, name="replay")
            t.start()
            t.join()
            p.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


# with --cache: callgrind's events, and how they are summed into the misses shown
CACHE_EVENTS = "Ir,D1mr,D1mw,DLmr,DLmw"
CACHE_SIM = ["--cache-sim=yes", "--D1=32768,8,64", "--LL=1048576,8,64"]  # bytes, ways, line
MISSES = {"L1d misses": ("D1mr", "D1mw"), "LL misses": ("DLmr", "DLmw")}


def _annotate(path: Path, events: str = "Ir") -> tuple[list[int], list[tuple[list[int], str]]]:
    """(totals, [(counts, "file:function"), ...]) of one callgrind output file: one count per
    event of ``events`` (comma-separated), the first of them ``Ir``."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no",
                          f"--show={events}", str(path)],
                         capture_output=True, text=True, check=True).stdout
    k = len(events.split(","))
    num = r"([\d,.]+)\s+(?:\([^)]*\)\s+)?"
    total = [0] * k
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*" + num * k + r"(PROGRAM TOTALS|\S.*)$", line)
        if not m:
            continue
        counts = [int(float(g.replace(",", ""))) if g != "." else 0 for g in m.groups()[:k]]
        if m.group(k + 1) == "PROGRAM TOTALS":
            total = counts
        elif ":" in m.group(k + 1):
            rows.append((counts, m.group(k + 1).strip()))
    return total, rows


def _part(name: str) -> str:
    for part, pat in PARTS:
        if re.search(pat, name):
            return part
    return OTHER


def measure(kind: str, n: int, keep: Path | None = None, writes: str = "default",
            outputs: str = "loop", cache: bool = False, config: str = "") -> dict[str, Any]:
    """Runs the child under callgrind; the loop thread's instructions per event by part
    (with ``cache``, also its simulated cache misses per event by part)."""
    d = Path(tempfile.mkdtemp(prefix="ringlog-cg-out-"))
    events = CACHE_EVENTS if cache else "Ir"
    try:
        env = dict(os.environ)
        env.pop("PYTHONMALLOC", None)  # pymalloc, as users run it
        env["RINGLOG_CG_WRITES"] = writes
        env["RINGLOG_CG_OUTPUTS"] = outputs
        env["RINGLOG_CG_CONFIG"] = config
        subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                        *(CACHE_SIM if cache else []),
                        f"--callgrind-out-file={d}/cg.out", sys.executable, __file__,
                        "--child", kind, str(n)], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        loop, most = None, 0
        marker = "LogicCore_" if kind != "replay" else "replay_"  # recover: replay_segment
        for f in sorted(d.glob("cg.out-*")):  # one file per thread
            totals, crows = _annotate(f, events)
            total, rows = totals[0], [(c[0], name) for c, name in crows]
            in_loop = sum(ir for ir, name in rows if marker in name)
            if kind == "python_direct" and not f.name.endswith("-01"):
                in_loop = total  # the plain loop's thread: the busiest after the main one
            elif kind == "engine_alone" and not f.name.endswith("-01"):
                # the thread that ran the engine most (on short runs numpy's BLAS threads
                # spin longer than the engine runs)
                in_loop = sum(ir for ir, name in rows if re.search(r"_engine|_book", name))
            if in_loop > most:  # the loop thread: the one that ran LogicCore most
                loop, most = (f, total, rows, totals, crows), in_loop
        if loop is None:
            raise SystemExit("no thread ran LogicCore.run: is the build stripped? "
                             "(rebuild with RINGLOG_SYMBOLS=1)")
        f, total, rows, totals, crows = loop
        if keep is not None:
            shutil.copy(f, keep)
        parts: dict[str, float] = {}
        top: list[tuple[float, str]] = []
        for ir, name in rows:
            parts[_part(name)] = parts.get(_part(name), 0.0) + ir / n
            top.append((ir / n, name))
        top.sort(reverse=True)
        res = {"kind": kind, "events": n, "instructions_per_event": total / n,
               "parts": dict(sorted(parts.items(), key=lambda kv: -kv[1])),
               "functions": [(round(v, 1), name) for v, name in top[:25]]}
        if cache:
            col = {e: i for i, e in enumerate(events.split(","))}
            misses: dict[str, dict[str, float]] = {}
            for what, evs in MISSES.items():
                by_part: dict[str, float] = {"total": sum(totals[col[e]] for e in evs) / n}
                for c, name in crows:
                    by_part[_part(name)] = (by_part.get(_part(name), 0.0)
                                            + sum(c[col[e]] for e in evs) / n)
                misses[what] = by_part
            res["misses_per_event"] = misses
        return res
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _show(res: dict[str, Any]) -> None:
    print(f"{res['kind']}: {res['instructions_per_event']:.0f} instructions per event on the "
          f"loop thread ({res['events']:,} events, callgrind)")
    for part, v in res["parts"].items():
        print(f"  {v:8.1f}  {part}")
    print("  top functions (self):")
    for v, name in res["functions"][:15]:
        print(f"  {v:8.1f}  {name[-110:]}")
    for what, by_part in res.get("misses_per_event", {}).items():
        print(f"  {what} per event (simulated): {by_part['total']:.2f}")
        for part, v in sorted(by_part.items(), key=lambda kv: -kv[1]):
            if part != "total" and v >= 0.01:
                print(f"  {v:8.2f}  {part}")


def _compare(a: dict[str, Any], b: dict[str, Any]) -> None:
    print(f"{'part':32s} {'old':>9s} {'new':>9s} {'new/old':>8s}")
    for part in dict.fromkeys([*a["parts"], *b["parts"]]):
        x, y = a["parts"].get(part, 0.0), b["parts"].get(part, 0.0)
        print(f"{part:32s} {x:9.1f} {y:9.1f} {y / x if x else float('nan'):8.2f}")
    x, y = a["instructions_per_event"], b["instructions_per_event"]
    print(f"{'total':32s} {x:9.1f} {y:9.1f} {y / x:8.2f}")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        _child(argv[1], int(argv[2]))
        return
    if argv[:1] == ["compare"]:
        _compare(*(json.loads(Path(p).read_text()) for p in argv[1:3]))
        return
    out = keep = None
    writes, outputs, cache, config = "default", "loop", False, ""
    if "--config" in argv:
        i = argv.index("--config")
        config = argv[i + 1]
        del argv[i:i + 2]
        if not re.fullmatch(r"(\w+=\d+)(,\w+=\d+)*", config):
            print(f"--config takes FIELD=INT,..., got {config!r}", file=sys.stderr)
            raise SystemExit(2)
    if "--cache" in argv:
        cache = True
        argv.remove("--cache")
    if "--outputs" in argv:
        i = argv.index("--outputs")
        outputs = argv[i + 1]
        del argv[i:i + 2]
        if outputs not in ("loop", "thread"):
            print(f"--outputs takes loop or thread, got {outputs!r}", file=sys.stderr)
            raise SystemExit(2)
    if "--map" in argv:
        writes = "map"
        argv.remove("--map")
    if "--json" in argv:
        i = argv.index("--json")
        out = Path(argv[i + 1])
        del argv[i:i + 2]
    if "--keep" in argv:  # the loop thread's callgrind file, for callgrind_annotate
        i = argv.index("--keep")
        keep = Path(argv[i + 1])
        del argv[i:i + 2]
    kind = argv[0] if argv else "cython"
    if kind not in KINDS:
        print(f"unknown handler {kind!r}: {', '.join(KINDS)}", file=sys.stderr)
        raise SystemExit(2)
    n = int(argv[1]) if len(argv) > 1 else (100_000 if kind == "engine" else 300_000)
    t0 = time.time()
    res = measure(kind, n, keep, writes, outputs, cache, config)
    _show(res)
    print(f"  ({time.time() - t0:.0f} s under valgrind)")
    if out is not None:
        out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
