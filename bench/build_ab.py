"""Two builds of ringlog on the engine flow, interleaved round by round: the loop thread's CPU.

::

    python bench/build_ab.py OLD_SRC NEW_SRC [commands] [rounds]
        OLD_SRC, NEW_SRC: the ``src`` directories of two built trees (e.g. a ``git archive``
        of the base commit built with ``setup.py build_ext --inplace``, and this worktree's
        ``src``). Each round runs the engine flow of ``pipeline_ab.py faults`` (default
        config, per-account breaker, bulk producer, ``commands`` commands) once per build,
        each in a child process with that build first on ``sys.path``, the order of the two
        reversed every other round. Per run: the rate (M commands/s), the journals'
        synchronous rolls (``Journal.fallback_rolls``), the loop thread's on-CPU ns per command
        (schedstat), its user and system ns per command and minor faults per 1,000
        commands (/proc/self/task/*/stat), all threads' on-CPU ns per command, each
        thread's (``pipeline_ab.per_command``; the publishing main thread as ``producer``)
        and the commands per loop batch (the counters file's ``logic.batches``: the loop
        takes the GIL once per batch); then the medians and the NEW/OLD ratios per round
        (median and range).
        ``--python``: the flow of the ``processor_python_handler`` row instead (the bench's
        Python Counter through the default processor, ``commands`` events) and, in the same
        child, the plain-loop ceiling (``_direct_python``): per run the loop thread's CPU
        ns per event, the rate and the rate / plain-loop rate (the goal's ratio).
        ``SRC@BYTES``: that build with journal write buffers of BYTES
        (``ringlog._journal.write_buffer_size``), e.g. ``src@65536 src`` compares two buffer
        sizes of one build.
        ``--engine``: the engine alone instead (``Engine.process_commands`` over the
        ``engine_mixed_throughput`` row's mixed flow of ``commands`` commands, on a fresh
        engine, market data on then off): per run the rate (M commands/s) and the thread's
        CPU ns per command of each.
        ``--replay``: the engine's recovery instead: each child journals the engine flow of
        ``commands`` commands through the default processor (untimed), then times
        ``Processor.recover()`` of it on a fresh engine (snapshot-less replay, outputs
        suppressed): per run the replay rate (M commands/s) and the recovering thread's CPU
        ns per command.
        ``--reader``: ``JournalReader.records`` over a journal of ``commands`` 64-byte
        records (the Python reader behind ``journal dump``, the replay tool, the gateway's
        report replay): per run its rate (M records/s) and CPU ns per record.
        ``--ring``: the ring alone, ``commands`` events from a producing thread to a
        consuming thread (claims of 1, blocking then yielding waits): per run the rates (M
        events/s) and all threads' CPU ns per event of each.

What changes between builds is code; the flow, the machine and the moment are shared by the
pair of a round, so the per-round ratio is what to read on a loaded machine.
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


def _child(n: int) -> None:
    """One run of the engine flow in this process's build: per-thread stats as JSON."""
    sys.path.insert(0, str(HERE))
    import pipeline_ab as ab

    if os.environ.get("BUILD_AB_WBUF"):  # SRC@BYTES (a build that has the setting)
        from ringlog._journal import write_buffer_size

        write_buffer_size(int(os.environ["BUILD_AB_WBUF"]))

    from ringlog._counters import CountersReader

    d = tempfile.mkdtemp(prefix="ringlog-build-ab-", dir=".")
    seen: dict[str, float] = {}
    try:
        before, after = ab._flow_engine(d + "/engine", n, seen=seen)
        batches = CountersReader(d + "/engine/counters").values()["logic.batches"]
    finally:
        shutil.rmtree(d, ignore_errors=True)
    out = {"rate": seen["rate"] / 1e6, "sync_rolls": seen["input_sync"] + seen["output_sync"],
           "per_batch": n / max(batches, 1), **ab.per_command(n, before, after)}
    print(json.dumps(out))


def _child_python(n: int) -> None:
    """One run of the Python handler row's flow and its plain-loop ceiling: JSON."""
    sys.path.insert(0, str(HERE))
    import bench_processor as b

    rate, cpu = b._throughput(n, b.Counter(), False)
    direct, dcpu = b._direct_python(n)
    print(json.dumps({"loop_cpu": cpu["threads"]["rl-loop"]["cpu_ns"],
                      "direct_cpu": dcpu["threads"]["MainThread"]["cpu_ns"],
                      "all_cpu": cpu["cpu_ns_total"], "rate": rate / 1e6,
                      "ratio": rate / direct}))


def _child_engine(n: int) -> None:
    """One run of the engine alone on the mixed flow, market data on and off: JSON."""
    import time

    from ringlog.engine import Engine
    from ringlog.engine.flow import demo_config, mixed_flow

    cmds, types = mixed_flow(n, seed=11)
    out = {}
    for md in (True, False):
        engine = Engine(demo_config(market_data=md, max_orders=1 << 21))
        t0, c0 = time.perf_counter(), time.thread_time_ns()
        engine.process_commands(cmds, types)
        c1, t1 = time.thread_time_ns(), time.perf_counter()
        tag = "md" if md else "no_md"
        out[f"rate_{tag}"] = n / (t1 - t0) / 1e6
        out[f"cpu_{tag}"] = (c1 - c0) / n
    print(json.dumps(out))


def _child_replay(n: int) -> None:
    """One recovery of an engine journal of ``n`` commands: rate and CPU per command, JSON."""
    import time

    sys.path.insert(0, str(HERE))
    import pipeline_ab as ab

    d = tempfile.mkdtemp(prefix="ringlog-build-ab-", dir=".")
    try:
        ab._flow_engine(d, n)
        p = ab.engine_processor(d)  # a fresh engine on the journal just made
        t0, c0 = time.perf_counter(), time.thread_time_ns()
        replayed = p.recover().replayed
        c1, t1 = time.thread_time_ns(), time.perf_counter()
        p.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print(json.dumps({"rate": replayed / (t1 - t0) / 1e6, "cpu": (c1 - c0) / replayed}))


def _child_ring(n: int) -> None:
    """The ring's blocking waits: one_to_one_threads with claims of 1 (a wake-up check per
    publish), producing and consuming threads in C, and a Python publish + iterate per
    event; per run the rates (M events/s) and all threads' CPU ns per event: JSON."""
    from ringlog.bench.cpu import CpuMeter
    from ringlog.bench.loops import one_to_one_threads

    out = {}
    for wait in ("blocking", "yielding"):
        with CpuMeter() as m:
            out[f"rate_{wait}"] = one_to_one_threads(n, 1, wait) / 1e6
        out[f"cpu_{wait}"] = m.per_event(n)["cpu_ns_total"]
    print(json.dumps(out))


def _child_reader(n: int) -> None:
    """``JournalReader.records`` over a journal of ``n`` 64-byte records (written untimed):
    the Python reader's rate (M records/s) and the thread's CPU ns per record, JSON."""
    import time

    from ringlog import Journal, JournalReader

    d = tempfile.mkdtemp(prefix="ringlog-build-ab-", dir=".")
    try:
        with Journal(d, durability="none") as j:
            for _ in range(0, n, 1000):
                j.append_many([bytes(64)] * 1000)
        r = JournalReader(d)
        t0, c0 = time.perf_counter(), time.thread_time_ns()
        count = sum(1 for _ in r.records())
        c1, t1 = time.thread_time_ns(), time.perf_counter()
        r.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print(json.dumps({"rate": count / (t1 - t0) / 1e6, "cpu": (c1 - c0) / count}))


def _run(spec: str, n: int, child: str = "--child") -> dict[str, float]:
    src, _, wbuf = spec.partition("@")
    env = dict(os.environ, PYTHONPATH=src, BUILD_AB_WBUF=wbuf)
    out = subprocess.run([sys.executable, __file__, child, str(n)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


CHILDREN = {"--child": _child, "--child-python": _child_python, "--child-engine": _child_engine,
            "--child-ring": _child_ring, "--child-replay": _child_replay,
            "--child-reader": _child_reader}
MODES = tuple("--" + c[len("--child-"):] for c in CHILDREN if c != "--child")  # --child-X: --X


def main(argv: list[str]) -> None:
    if argv[:1] and argv[0] in CHILDREN:
        CHILDREN[argv[0]](int(argv[1]))
        return
    child = "--child"
    if argv[:1] and argv[0] in MODES:
        child, argv = "--child-" + argv[0][2:], argv[1:]
    if len(argv) < 2 or not all(Path(p.partition("@")[0], "ringlog").is_dir()
                                for p in argv[:2]):
        print("usage: build_ab.py OLD_SRC NEW_SRC [commands] [rounds] (each SRC holds a "
              "built ringlog package)", file=sys.stderr)
        raise SystemExit(2)
    old, new = argv[0], argv[1]
    try:
        n = int(argv[2]) if len(argv) > 2 else 1_000_000
        rounds = int(argv[3]) if len(argv) > 3 else 5
    except ValueError as e:
        print(f"build_ab.py: commands and rounds are counts: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if n < 1 or rounds < 1:
        print("build_ab.py: commands and rounds must be >= 1", file=sys.stderr)
        raise SystemExit(2)
    sys.path.insert(0, str(HERE))
    import pipeline_ab as ab

    res = ab.interleaved(["old", "new"], rounds,
                         lambda name: _run(old if name == "old" else new, n, child))
    for what in res["old"][0]:
        o = [x.get(what, 0.0) for x in res["old"]]  # a thread may be missing in a run
        w = [x.get(what, 0.0) for x in res["new"]]
        print(f"{what:12s} old median {statistics.median(o):7.3g}, "
              f"new {statistics.median(w):7.3g}; new/old median {ab.ratio_summary(w, o)}")

if __name__ == "__main__":
    main(sys.argv[1:])
