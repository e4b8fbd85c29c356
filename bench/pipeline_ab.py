"""A/B measurements of the pipeline's choices, interleaved round by round on the same machine.

::

    python bench/pipeline_ab.py prefault [appends] [rounds]
        journal-only appends under group commit with the next segment prepared by a store
        per page ("write"), a load per page ("read", the default under group/sync) or not at
        all (False)
    python bench/pipeline_ab.py processor [cython events] [python events] [rounds]
        a trivial Cython handler under the default config and each topology x wait, and a
        trivial Python handler against the same handler in a plain Python loop
    python bench/pipeline_ab.py handlers [python events] [cython events] [rounds] [variants]
        the loop thread's cost per handler kind, interleaved: a trivial Cython handler with
        and without a breaker limit that never trips, the trivial Python handler (``on_event(
        event, sequence, end_of_batch)``) with and without that limit (``py_breaker``) and
        the same declaring only ``on_event(event)``,
        each beside the same handler in a plain Python loop, and ``recover()`` of a journal
        of 64-byte records (CPU ns per event of the recovering thread); ``variants`` a comma
        list of cy,cy_breaker,py,py_breaker,py_event,replay (default: all)
    python bench/pipeline_ab.py engine [commands] [rounds]
        the matching engine behind the processor (default config, breaker, bulk producer)
        against the engine alone on the same flow
    python bench/pipeline_ab.py outputs [commands] [rounds] [variants]
        who journals the outputs (inline topology, no listener), interleaved round by round:
        the engine flow (default config, breaker, bulk producer) with
        ``output_journaller="loop"`` (the loop thread appends them) and ``"thread"`` (the loop
        fills output ring slots, an output thread sleeping on the ring journals them), beside
        the engine alone; then the trivial Cython and Python handlers the same way
        (``variants``: a comma list of engine,cy,py; default all). Per variant the loop
        thread's and all threads' CPU ns per event, and the ratios per round
    python bench/pipeline_ab.py prepare [commands] [rounds]
        the engine flow (default config) with the journals' next segments prepared as they
        are (created, fallocated, then mapped page by page by a load: "read") and prepared
        without that read-prefault ("none": the background thread creates the file only),
        interleaved: all threads' CPU and each sync thread's, ns per command
    python bench/pipeline_ab.py faults [events]
        one run each of the trivial Cython handler and of the engine flow (default config):
        per thread, minor page faults per 1,000 events and user / system CPU ns per event
        (/proc/self/task/*/stat), i.e. how much of a thread's CPU is the kernel's
    python bench/pipeline_ab.py writes [events] [rounds]
        the same two flows with the journals' records written by pwrite() from a private
        buffer (the default under group/sync) and by stores into the shared map, interleaved
        round by round: the loop thread's faults per 1,000 events and CPU ns per event
    python bench/pipeline_ab.py writes_none [events] [rounds]
        the same under durability none
    python bench/pipeline_ab.py rolls [commands] [rounds]
        the engine flow (default config) once per round: the rate and each journal's rolls
        made without the GIL against those with the GIL on the loop thread, each timed, and
        the background thread's pre-faults of prepared segments, timed (run with
        ``PYTHONPATH=<another src>`` to count another build)
    python bench/pipeline_ab.py journal [records] [rounds]
        journal-only appends (batches of 1,024 records of 64 bytes) under durability none
        and group, buffered (pwrite) against direct (stores into the map): the appending
        thread's CPU ns per record and faults per 1,000 records

Each line: events/s, CPU ns per event of each thread and context switches per 1,000 events
(ringlog.bench.cpu); then medians and the range of the per-round ratios. Absolute figures on a
shared machine are noise; the ratios and the CPU per event are what to read.
"""

from __future__ import annotations

import collections
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from ringlog.bench.cpu import CpuMeter, summary_line


def _show(name: str, rate: float, cpu: dict[str, Any]) -> None:
    print(f"{name:18s} {rate / 1e6:6.2f}M/s  {summary_line(cpu)}", flush=True)


def _summary(res: dict[str, list[tuple[float, dict]]], base: str) -> None:
    for k, rs in res.items():
        rates = [r for r, _ in rs]
        cpu = [c["cpu_ns_total"] for _, c in rs]
        print(f"{k:18s} median {statistics.median(rates) / 1e6:.2f}M/s "
              f"(range {min(rates) / 1e6:.2f}-{max(rates) / 1e6:.2f}), "
              f"CPU median {statistics.median(cpu):.0f} ns/event")
    for k, rs in res.items():
        if k != base:
            ratios = [a[0] / b[0] for a, b in zip(rs, res[base], strict=True)]
            print(f"{k}/{base}: median {statistics.median(ratios):.2f} "
                  f"(range {min(ratios):.2f}-{max(ratios):.2f}, {len(ratios)} rounds)")


def prefault(n: int = 1_000_000, rounds: int = 5) -> None:
    from ringlog.journal import Journal

    chunk = [bytes(64)] * 256

    def once(mode: Any) -> tuple[float, dict]:
        d = tempfile.mkdtemp(prefix="ringlog-ab-", dir=".")
        try:
            j = Journal(d, segment_size=8 << 20, durability="group", prefault=mode)
            time.sleep(0.3)  # the first prepared segment is ready
            with CpuMeter() as m:
                t0 = time.perf_counter()
                for _ in range(n // 256):
                    j.append_many(chunk)
                dt = time.perf_counter() - t0
            j.close()
            return n / dt, m.per_event(n)
        finally:
            shutil.rmtree(d)

    res: dict[str, list[tuple[float, dict]]] = {"write": [], "read": [], "none": []}
    for _ in range(rounds):
        for mode, arg in (("write", "write"), ("read", "read"), ("none", False)):
            res[mode].append(once(arg))
            _show(mode, *res[mode][-1])
    _summary(res, "write")


def processor(n_cy: int = 3_000_000, n_py: int = 1_000_000, rounds: int = 5) -> None:
    import bench_processor as b

    from ringlog._benchhandlers import CountingHandler

    v: dict[str, Any] = {"default": lambda: b._throughput(n_cy, CountingHandler(16), False)}
    for topo in ("inline", "staged"):
        for wait in ("blocking", "yielding"):
            v[f"{topo}_{wait}"] = (lambda t=topo, w=wait: b._throughput(
                n_cy, CountingHandler(16), False, topology=t, wait=w))
    res: dict[str, list[tuple[float, dict]]] = {k: [] for k in v}
    for _ in range(rounds):
        for k, fn in v.items():
            res[k].append(fn())
            _show(k, *res[k][-1])
    _summary(res, "default")
    py: dict[str, list[tuple[float, dict]]] = {"py_pipeline": [], "py_direct": []}
    for _ in range(rounds):
        py["py_pipeline"].append(b._throughput(n_py, b.Counter(), False))
        _show("py_pipeline", *py["py_pipeline"][-1])
        py["py_direct"].append(b._direct_python(n_py))
        _show("py_direct", *py["py_direct"][-1])
    _summary(py, "py_direct")


def _direct_event_only(n: int) -> tuple[float, dict]:
    """The plain-loop ceiling of the handler declaring only ``event``: no int per call."""
    from itertools import repeat

    import bench_processor as b

    h = b.EventCounter()
    h.emit = lambda payload, type_id=0, key=0: 0  # type: ignore[method-assign]
    on_event, ev = h.on_event, b._Flyweight()
    with CpuMeter() as m:
        t0 = time.perf_counter()
        for _ in repeat(None, n):
            on_event(ev)
        dt = time.perf_counter() - t0
    return n / dt, m.per_event(n)


def handlers(n_py: int = 1_000_000, n_cy: int = 3_000_000, rounds: int = 5,
             variants: str = "cy,cy_breaker,py,py_breaker,py_event,replay") -> None:
    import bench_processor as b

    from ringlog._benchhandlers import CountingHandler

    every: dict[str, Any] = {
        "cy": lambda: b._throughput(n_cy, CountingHandler(16), False),
        "cy_breaker": lambda: b._throughput(n_cy, CountingHandler(16), True),
        "py": lambda: b._throughput(n_py, b.Counter(), False),
        "py_breaker": lambda: b._throughput(n_py, b.Counter(), True),
        "py_direct": lambda: b._direct_python(n_py),
        "py_event": lambda: b._throughput(n_py, b.EventCounter(), False),
        "py_event_direct": lambda: _direct_event_only(n_py),
        "replay": lambda: b._replay_cpu(n_cy),
    }
    chosen = variants.split(",")
    v = {k: fn for k, fn in every.items() if k in chosen or k.removesuffix("_direct") in chosen}
    res: dict[str, list[tuple[float, dict]]] = {k: [] for k in v}
    for _ in range(rounds):
        for k, fn in v.items():
            res[k].append(fn())
            _show(k, *res[k][-1])
    for k, rs in res.items():
        rates = [r for r, _ in rs]
        # the loop thread's CPU; a plain loop and recover() run on the main thread
        loop = [c["threads"].get("rl-loop", c["threads"].get("MainThread", {})).get("cpu_ns", 0.0)
                for _, c in rs]
        print(f"{k:18s} median {statistics.median(rates) / 1e6:.2f}M/s, loop (or main) "
              f"thread CPU median {statistics.median(loop):.0f} ns/event "
              f"(range {min(loop):.0f}-{max(loop):.0f}, {len(rs)} rounds)")
    for a, base in (("cy_breaker", "cy"), ("py_breaker", "py"), ("py", "py_direct"),
                    ("py_event", "py_event_direct")):
        if a in res and base in res:
            ratios = [x[0] / y[0] for x, y in zip(res[a], res[base], strict=True)]
            print(f"{a}/{base}: median {statistics.median(ratios):.2f} "
                  f"(range {min(ratios):.2f}-{max(ratios):.2f}, {len(ratios)} rounds)")


def engine(n: int = 2_000_000, rounds: int = 5) -> None:
    import bench_engine as b

    for row in b._pipeline_rows(rounds, n):
        print(row["name"], f"median {row['median'] / 1e6:.2f}M/s", row.get("ratios", {}),
              row.get("ratio_runs", {}), row["note"], sep="\n  ")


def _cpu_of(c: dict, thread: str = "rl-loop") -> float:
    return float(c["threads"].get(thread, {}).get("cpu_ns", 0.0))


def outputs(n: int = 2_000_000, rounds: int = 5, variants: str = "engine,cy,py") -> None:
    import bench_engine as be
    import bench_processor as bp

    from ringlog._benchhandlers import CountingHandler

    cmds, types = be.mixed_flow(n, seed=21)
    v: dict[str, Any] = {}
    for who in ("loop", "thread"):
        if "engine" in variants:
            v[f"engine_{who}"] = (lambda w=who: be._pipeline(n, cmds, types,
                                                              output_journaller=w))
        if "cy" in variants:
            v[f"cy_{who}"] = (lambda w=who: bp._throughput(
                n, CountingHandler(16), False, output_journaller=w))
        if "py" in variants:
            v[f"py_{who}"] = (lambda w=who: bp._throughput(
                n // 2, bp.Counter(), False, output_journaller=w))
    if "engine" in variants:
        v["engine_alone"] = lambda: be._engine_alone(cmds, types)
    if "py" in variants:
        v["py_direct"] = lambda: bp._direct_python(n // 2)
    res: dict[str, list[tuple[float, dict]]] = {k: [] for k in v}
    for r in range(rounds):
        # alternate which of a pair runs first: the first of a pair reads ~15% apart here
        for k in (v if r % 2 == 0 else reversed(v)):
            res[k].append(v[k]())
            _show(k, *res[k][-1])
    for k, rs in res.items():
        loop = [_cpu_of(c) or _cpu_of(c, "MainThread") for _, c in rs]
        tot = [c["cpu_ns_total"] for _, c in rs]
        print(f"{k:14s} median {statistics.median(r for r, _ in rs) / 1e6:.2f}M/s (range "
              f"{min(r for r, _ in rs) / 1e6:.2f}-{max(r for r, _ in rs) / 1e6:.2f}); loop "
              f"(or main) thread CPU {statistics.median(loop):.0f} ns/event ({min(loop):.0f}-"
              f"{max(loop):.0f}); all threads {statistics.median(tot):.0f} ({min(tot):.0f}-"
              f"{max(tot):.0f})")

    def ratio(a: str, b: str, what: str, f: Any) -> None:
        if a in res and b in res:
            xs = [f(x) / max(f(y), 1e-9) for x, y in zip(res[a], res[b], strict=True)]
            print(f"{a}/{b} {what}: median {statistics.median(xs):.2f} (range "
                  f"{min(xs):.2f}-{max(xs):.2f}, {len(xs)} rounds)")

    for k in ("engine", "cy", "py"):
        ratio(f"{k}_thread", f"{k}_loop", "rate", lambda x: x[0])
        ratio(f"{k}_thread", f"{k}_loop", "loop CPU", lambda x: _cpu_of(x[1]))
        ratio(f"{k}_thread", f"{k}_loop", "all CPU", lambda x: x[1]["cpu_ns_total"])
    for who in ("loop", "thread"):
        ratio(f"engine_{who}", "engine_alone", "rate", lambda x: x[0])
        ratio(f"engine_{who}", "engine_alone", "loop CPU / engine CPU",
              lambda x: _cpu_of(x[1]) or x[1]["cpu_ns_total"])
        ratio(f"py_{who}", "py_direct", "rate", lambda x: x[0])


def prepare(n: int = 2_000_000, rounds: int = 4) -> None:
    import bench_engine as be

    import ringlog.journal as rj

    as_is = rj.Journal._prepare_next

    def without_prefault(self: Any) -> None:
        # Journal._prepare_next without its seg.prefault(): an experiment, not an option
        try:
            seg = rj.Segment.prepare(self.path / f"prepared-{time.monotonic_ns()}.tmp",
                                     self._next_size())
        except rj.JournalError:
            return
        with self._lock:
            if self._closed:
                rj.durable.unlink(seg.path)
                return
            self._prepared = seg

    cmds, types = be.mixed_flow(n, seed=21)
    variants = {"read": as_is, "none": without_prefault}
    threads = ("rl-loop", "rl-sync-input", "rl-sync-output", "rl-write-output")
    res: dict[str, list[tuple[float, dict]]] = {k: [] for k in variants}
    try:
        for r in range(rounds):
            for k in (variants if r % 2 == 0 else reversed(variants)):
                rj.Journal._prepare_next = variants[k]  # type: ignore[method-assign]
                res[k].append(be._pipeline(n, cmds, types))
                _show(f"prepare_{k}", *res[k][-1])
    finally:
        rj.Journal._prepare_next = as_is  # type: ignore[method-assign]
    for k, rs in res.items():
        parts = ", ".join(f"{t} {statistics.median(_cpu_of(c, t) for _, c in rs):.0f}"
                          for t in threads)
        print(f"{k}: median {statistics.median(r for r, _ in rs) / 1e6:.2f}M/s; CPU ns per "
              f"command: all {statistics.median(c['cpu_ns_total'] for _, c in rs):.0f}, "
              f"{parts}")
    pairs = list(zip(res["none"], res["read"], strict=True))
    figures: list[tuple[str, Any]] = [("rate", lambda x: x[0]),
                                      ("all threads' CPU", lambda x: x[1]["cpu_ns_total"])]
    figures += [(t, lambda x, t=t: _cpu_of(x[1], t)) for t in threads]
    for what, f in figures:
        xs = [f(a) / max(f(b), 1e-9) for a, b in pairs]
        print(f"none/read {what}: median {statistics.median(xs):.2f} (range {min(xs):.2f}-"
              f"{max(xs):.2f}, {len(xs)} rounds)")


def _task_stat() -> dict[str, tuple[int, int, int, int]]:
    """Per thread (name:tid): minor faults, user and system CPU in clock ticks, on-CPU ns
    (schedstat: exact)."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                st = f.read()
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                on_cpu = int(f.read().split()[0])
        except OSError:  # the thread ended
            continue
        fields = st[st.rindex(")") + 2:].split()  # fields after "pid (comm) "
        out[f"{name}:{tid}"] = (int(fields[7]), int(fields[11]), int(fields[12]), on_cpu)
    return out


def _show_faults(what: str, n: int, before: dict, after: dict) -> None:
    ns_per_tick = 1e9 / os.sysconf("SC_CLK_TCK")
    print(f"{what}: per thread, {n:,} events")
    for k, (flt, user, sys_, _) in after.items():
        f0, u0, s0, _ = before.get(k, (0, 0, 0, 0))
        if (flt - f0, user - u0, sys_ - s0) != (0, 0, 0):
            print(f"  {k:28s} {(flt - f0) * 1000 / n:7.1f} faults/1k events  user "
                  f"{(user - u0) * ns_per_tick / n:6.0f} ns/event  system "
                  f"{(sys_ - s0) * ns_per_tick / n:6.0f} ns/event", flush=True)


def _flow_cython(d: str, n: int, durability: str = "group") -> tuple[dict, dict]:
    """The trivial Cython handler over ``n`` 64-byte events: per-thread stats before/after."""
    import threading

    from ringlog import Processor, ProcessorConfig
    from ringlog._benchhandlers import CountingHandler
    from ringlog._ringbench import produce

    p = Processor(CountingHandler(16), d, ProcessorConfig(durability=durability))
    p.start()
    time.sleep(0.3)  # the first prepared segment is ready
    a = _task_stat()
    t = threading.Thread(target=produce, args=(p.input_ring, n, 64), name="producer")
    t.start()
    t.join()
    p.drain(timeout=900)
    b = _task_stat()
    p.stop()
    return a, b


def engine_processor(d: str, durability: str = "group", *, window_ns: int | None = 10**9,
                     config: dict[str, Any] | None = None) -> Any:
    """A processor of the matching engine in ``d`` as the engine flow runs it (the demo's
    symbols, 2M orders, a per-account breaker over ``window_ns``, None: no breaker;
    ``config``: ProcessorConfig fields besides the slot size and durability), not started."""
    from ringlog import Breaker, BreakerConfig, Limit, Processor, ProcessorConfig
    from ringlog.engine import Engine, registry
    from ringlog.engine.flow import demo_config

    cfg = demo_config(max_orders=1 << 21)
    br = None if window_ns is None else Breaker(BreakerConfig(
        limits=[Limit(max_count=10**6, window_ns=window_ns, per="key")]))
    return Processor(Engine(cfg), d, ProcessorConfig(slot_size=cfg.min_slot_size,
                                                     durability=durability, **(config or {})),
                     breaker=br, registry=registry(cfg.l2_depth))


def _flow_engine(d: str, n: int, durability: str = "group",
                 seen: dict[str, float] | None = None, *, window_ns: int | None = 10**9,
                 config: dict[str, Any] | None = None,
                 after_start: Callable[[Any], None] | None = None) -> tuple[dict, dict]:
    """The matching engine's mixed flow (``n`` commands, per-account breaker, bulk
    producer): per-thread stats before/after; ``seen`` gets the rate (commands/s) and each
    journal's fast and synchronous rolls. ``window_ns``: the breaker limit's window (None: no
    breaker); ``config``: ProcessorConfig fields besides the slot size and durability;
    ``after_start(processor)``: runs on the producing thread once the processor started."""
    import numpy as np

    from ringlog.engine.flow import mixed_flow

    cmds, types = mixed_flow(n, seed=21)
    p = engine_processor(d, durability, window_ns=window_ns, config=config)
    p.start()
    if after_start is not None:
        after_start(p)
    time.sleep(0.3)
    a = _task_stat()
    t0 = time.perf_counter()
    p.publish_records(cmds, types.astype(np.uint32),
                      timestamp_ns=np.arange(n, dtype=np.int64) * 1000)
    p.drain(timeout=900)
    elapsed = time.perf_counter() - t0
    b = _task_stat()
    if seen is not None:
        seen["rate"] = n / elapsed
        for name, j in (("input", p.input), ("output", p.output)):
            seen[f"{name}_fast"], seen[f"{name}_sync"] = j.fast_rolls, j.fallback_rolls
    p.stop()
    return a, b


def _timed_rolls() -> dict[str, list[tuple[str, float, bool]]]:
    """Wraps ``Journal._roll`` (a roll with the GIL, on the appending thread) and
    ``Journal._prefault_paced`` (a prepared segment's pre-fault, on the background thread)
    in this process to time each call: per journal name, (what, ms, late) in call order;
    ``late``: a pre-fault the appender rolled past (step 17), a roll that found the previous
    roll's syncs still running."""
    from ringlog.journal import Journal

    log: dict[str, list[tuple[str, float, bool]]] = collections.defaultdict(list)
    roll, prefault = Journal._roll, Journal._prefault_paced

    def timed_roll(j: Journal, appender: Any, need: int = 0) -> None:
        pending, t0 = appender.roll_pending, time.perf_counter()
        roll(j, appender, need)
        log[j.path.name].append(("roll", (time.perf_counter() - t0) * 1e3, pending))

    def timed_prefault(j: Journal, seg: Any) -> None:
        cur, t0 = j.appender.segment, time.perf_counter()
        prefault(j, seg)
        log[j.path.name].append(("prefault", (time.perf_counter() - t0) * 1e3,
                                 j.appender.segment is not cur))

    Journal._roll, Journal._prefault_paced = timed_roll, timed_prefault  # type: ignore
    return log


def rolls(n: int = 4_000_000, rounds: int = 3) -> None:
    """The engine flow's journal rolls: per run the rate and, per journal, the rolls the
    appender made without the GIL (a prepared segment was offered) and those with the GIL
    on the loop thread (``Journal._roll``), each timed, and how long the background thread's
    pre-faults of prepared segments took (how many the appender rolled past). Run it with
    ``PYTHONPATH=<another build's src>`` to count another build the same way."""
    log = _timed_rolls()
    for r in range(rounds):
        log.clear()
        d = tempfile.mkdtemp(prefix="ringlog-ab-", dir=".")
        try:
            seen: dict[str, float] = {}
            _flow_engine(d, n, seen=seen)
        finally:
            shutil.rmtree(d, ignore_errors=True)
        print(f"round {r}: {seen['rate'] / 1e6:.2f} M commands/s", flush=True)
        for name in ("input", "output"):
            ms = [f"{t:.1f}{'p' if late else ''}" for what, t, late in log[name]
                  if what == "roll"]
            pf = [t for what, t, _ in log[name] if what == "prefault"]
            late = sum(1 for what, _, x in log[name] if what == "prefault" and x)
            print(f"  {name}: fast {seen[name + '_fast']:.0f}, with the GIL "
                  f"{seen[name + '_sync']:.0f} (ms each, p: the last roll's syncs were still "
                  f"running: {' '.join(ms) or '-'}); pre-faults {len(pf)}, ms median "
                  f"{statistics.median(pf) if pf else 0:.1f} max {max(pf, default=0):.1f}, "
                  f"{late} rolled past", flush=True)


def faults(n: int = 1_000_000) -> None:
    d = tempfile.mkdtemp(prefix="ringlog-ab-", dir=".")
    try:
        _show_faults("trivial Cython handler", n, *_flow_cython(d + "/cy", n))
        _show_faults("matching engine, mixed flow", n, *_flow_engine(d + "/engine", n))
    finally:
        shutil.rmtree(d)


def journal(n: int = 2_000_000, rounds: int = 5) -> None:
    import resource

    from ringlog.journal import Journal

    chunk = [bytes(56)] * 1024  # 64-byte records (8-byte prefix + 48-byte header + 8)

    def once(policy: str, buffered: bool) -> tuple[float, float]:
        d = tempfile.mkdtemp(prefix="ringlog-ab-", dir=".")
        try:
            j = Journal(d, durability=policy, buffered=buffered)  # type: ignore[arg-type]
            time.sleep(0.3)  # the first prepared segment is ready
            f0, c0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt, time.thread_time_ns()
            for _ in range(n // 1024):
                j.append_many(chunk)
            f1, c1 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt, time.thread_time_ns()
            j.close()
            return (c1 - c0) / n, (f1 - f0) * 1000 / n
        finally:
            shutil.rmtree(d)

    for policy in ("none", "group"):
        res: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for r in range(rounds):
            for buffered in (True, False):
                res[buffered].append(once(policy, buffered))
                cpu, flt = res[buffered][-1]
                print(f"{policy} round {r} {'pwrite' if buffered else 'map':6s} appending "
                      f"thread: CPU {cpu:5.0f} ns/record, {flt:5.1f} faults/1k", flush=True)
        ratios = [a[0] / b[0] for a, b in zip(res[True], res[False], strict=True)]
        for buffered, xs in res.items():
            print(f"{policy} {'pwrite' if buffered else 'map':6s} median CPU "
                  f"{statistics.median(x[0] for x in xs):.0f} ns/record (range "
                  f"{min(x[0] for x in xs):.0f}-{max(x[0] for x in xs):.0f}), faults/1k "
                  f"{statistics.median(x[1] for x in xs):.1f}")
        print(f"{policy}: appending thread CPU pwrite/map median {statistics.median(ratios):.2f} "
              f"(range {min(ratios):.2f}-{max(ratios):.2f}, {rounds} pairs)", flush=True)


def interleaved(names: list[str], rounds: int, run: Callable[[str], dict[str, float]],
                fmt: str = "{:.3g}") -> dict[str, list[dict[str, float]]]:
    """``run(name)`` for each name, round after round, the order reversed every other
    round (the pair of a round shares the machine's moment); each run's figures printed as
    it ends. Returns the runs per name."""
    res: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            got = run(name)
            res[name].append(got)
            print(f"round {r} {name}: " + ", ".join(f"{k} " + fmt.format(v)
                                                   for k, v in got.items()), flush=True)
    return res


def ratio_summary(new: list[float], old: list[float]) -> str:
    """The per-round ratios new/old as "median (min-max, N rounds)" ("-" if none)."""
    r = [b / a for a, b in zip(old, new, strict=True) if a]
    if not r:
        return "-"
    return f"{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f}, {len(r)} rounds)"


def per_command(n: int, before: dict, after: dict) -> dict[str, float]:
    """``_task_stat`` before and after ``n`` commands as ns per command: ``all_cpu`` (every
    thread, schedstat), ``loop_cpu``, ``loop_user``, ``loop_sys`` and ``loop_faults`` (per
    1,000) of the loop thread, and each thread's on-CPU ns by name (the main thread, which
    publishes, as ``producer``)."""
    tick = 1e9 / os.sysconf("SC_CLK_TCK")
    out = {"all_cpu": 0.0}
    for k, (flt, user, sys_, on) in after.items():
        f0, u0, s0, on0 = before.get(k, (0, 0, 0, 0))
        out["all_cpu"] += (on - on0) / n
        name = k.split(":")[0]
        name = "producer" if name.startswith("python") else name
        out[name] = out.get(name, 0.0) + (on - on0) / n
        if name.startswith("rl-loop"):
            out.update(loop_cpu=(on - on0) / n, loop_user=(user - u0) * tick / n,
                       loop_sys=(sys_ - s0) * tick / n, loop_faults=(flt - f0) * 1000 / n)
    return out


def _loop_thread(n: int, before: dict, after: dict) -> tuple[float, float, float, float]:
    """The loop thread's (faults per 1k events, system ns/event, CPU ns/event) and the CPU
    ns/event of every thread of the process together."""
    c = per_command(n, before, after)
    if "loop_cpu" not in c:
        raise RuntimeError("no rl-loop thread")
    return c["loop_faults"], c["loop_sys"], c["loop_cpu"], c["all_cpu"]


def writes(n: int = 1_000_000, rounds: int = 5, durability: str = "group") -> None:
    import functools

    import ringlog.journal
    from ringlog.journal import Journal

    variants = {"pwrite": True, "map": False}
    d = tempfile.mkdtemp(prefix="ringlog-ab-", dir=".")
    try:
        for flow_name, flow in (("cython", _flow_cython), ("engine", _flow_engine)):
            res: dict[str, list[tuple[float, float, float, float]]] = {v: [] for v in variants}
            for r in range(rounds):
                for v, buffered in variants.items():
                    # the processor imports Journal from ringlog.journal when it starts
                    ringlog.journal.Journal = functools.partial(  # type: ignore[misc]
                        Journal, buffered=buffered)
                    try:
                        got = _loop_thread(n, *flow(f"{d}/{flow_name}-{v}-{r}", n, durability))
                    finally:
                        ringlog.journal.Journal = Journal  # type: ignore[misc]
                    shutil.rmtree(f"{d}/{flow_name}-{v}-{r}")
                    res[v].append(got)
                    print(f"{flow_name} round {r} {v:6s} loop thread: {got[0]:6.1f} faults/1k, "
                          f"system {got[1]:5.0f} ns/event, CPU {got[2]:6.0f} ns/event; all "
                          f"threads {got[3]:6.0f} ns/event", flush=True)
            for v, xs in res.items():
                med = [statistics.median(x[i] for x in xs) for i in range(4)]
                print(f"{flow_name} {v:6s} median faults/1k {med[0]:.1f}, system {med[1]:.0f}, "
                      f"CPU {med[2]:.0f} ns/event (range {min(x[2] for x in xs):.0f}-"
                      f"{max(x[2] for x in xs):.0f}); all threads {med[3]:.0f} ns/event")
            ratios = [a[2] / b[2] for a, b in zip(res["pwrite"], res["map"], strict=True)]
            print(f"{flow_name} loop CPU pwrite/map: median {statistics.median(ratios):.2f} "
                  f"(range {min(ratios):.2f}-{max(ratios):.2f}, {rounds} pairs)", flush=True)
            ratios = [a[3] / b[3] for a, b in zip(res["pwrite"], res["map"], strict=True)]
            print(f"{flow_name} all threads' CPU pwrite/map: median "
                  f"{statistics.median(ratios):.2f} (range {min(ratios):.2f}-"
                  f"{max(ratios):.2f}, {rounds} pairs)", flush=True)
    finally:
        shutil.rmtree(d)


if __name__ == "__main__":
    what, *args = sys.argv[1:] or ["processor"]
    fns = {"prefault": prefault, "processor": processor, "handlers": handlers,
           "engine": engine, "outputs": outputs, "prepare": prepare, "faults": faults,
           "writes": writes,
           "journal": journal, "rolls": rolls,
           "writes_none": lambda *a: writes(*a, durability="none")}
    if what not in fns:
        print(f"unknown measurement {what!r}: {', '.join(fns)}", file=sys.stderr)
        raise SystemExit(2)
    fns[what](*(int(a) if a.isdigit() else a for a in args))
