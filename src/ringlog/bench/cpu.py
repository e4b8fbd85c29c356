"""CPU time per thread and context switches: figures that hold on a shared machine.

Wall throughput on a machine shared with other work swings 2-3x between runs; the CPU a run
spends per event, per thread, and how often its threads are switched out, move far less, so
a regression can be told from noise.

::

    /proc/self/task/<tid>/schedstat ──► cpu ns (on-CPU time) ┐
    /proc/self/task/<tid>/status    ──► voluntary / involuntary context switches
    /proc/self/task/<tid>/comm      ──► name (or the Python thread's name)   ├─► CpuSample
    getrusage(SELF, CHILDREN)       ──► process and child-process totals     ┘
             CpuMeter: sample at enter, (poll while running), sample at exit ─► CpuReport
             CpuReport.per_event(n): ns per event per thread, switches per 1,000 events

Threads that end inside the measured interval leave /proc; a ``CpuMeter`` with a poll
interval keeps their last figures, and whatever no thread accounts for (of the getrusage
total) is reported as ``(exited)``. Linux only; elsewhere the per-thread table is empty and
the getrusage totals remain.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CpuMeter", "CpuReport", "CpuSample", "ThreadCpu", "name_thread", "sample",
           "summary_line", "thread_cpu"]

_TASKS = "/proc/self/task"
EXITED = "(exited)"


@dataclass(frozen=True)
class ThreadCpu:
    """One thread's counters: on-CPU ns, ns waiting for a CPU, context switches."""

    tid: int
    name: str
    cpu_ns: int
    wait_ns: int
    voluntary: int
    involuntary: int


@dataclass(frozen=True)
class CpuSample:
    """Every thread of this process at one instant, plus the getrusage totals (ns)."""

    wall_ns: int
    threads: dict[int, ThreadCpu]
    self_ns: int
    children_ns: int
    self_voluntary: int
    self_involuntary: int


def _python_names() -> dict[int, str]:
    out = {}
    for t in threading.enumerate():
        if t.native_id is not None:
            out[t.native_id] = t.name
    return out


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:  # the thread ended between listdir and open
        return None


def thread_cpu(tid: int, names: dict[int, str] | None = None) -> ThreadCpu | None:
    """The counters of one thread of this process (None if it has ended)."""
    base = f"{_TASKS}/{tid}"
    sched = _read(base + "/schedstat")
    status = _read(base + "/status")
    if sched is None or status is None:
        return None
    run_ns, wait_ns = (int(x) for x in sched.split()[:2])
    vol = invol = 0
    for line in status.splitlines():
        if line.startswith("voluntary_ctxt_switches"):
            vol = int(line.split()[1])
        elif line.startswith("nonvoluntary_ctxt_switches"):
            invol = int(line.split()[1])
    comm = (_read(base + "/comm") or "").strip()
    # A name set with name_thread() (comm) wins; else the Python thread's name; else comm.
    name = comm
    if names and tid in names and comm in ("", _process_comm()):
        name = names[tid]
    return ThreadCpu(tid, name, run_ns, wait_ns, vol, invol)


_COMM: str | None = None


def _process_comm() -> str:
    global _COMM
    if _COMM is None:
        _COMM = (_read("/proc/self/comm") or "").strip()
    return _COMM


def _tids() -> Iterator[int]:
    try:
        entries = os.listdir(_TASKS)
    except OSError:
        return
    for e in entries:
        if e.isdigit():
            yield int(e)


def sample() -> CpuSample:
    """Counters of every thread of this process now, with getrusage totals."""
    names = _python_names()
    threads = {}
    for tid in _tids():
        t = thread_cpu(tid, names)
        if t is not None:
            threads[tid] = t
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuSample(time.monotonic_ns(), threads,
                     int((me.ru_utime + me.ru_stime) * 1e9),
                     int((ch.ru_utime + ch.ru_stime) * 1e9), me.ru_nvcsw, me.ru_nivcsw)


@dataclass
class ThreadUse:
    """What one named thread (or several of one name, summed) used in an interval."""

    name: str
    cpu_ns: int = 0
    wait_ns: int = 0
    voluntary: int = 0
    involuntary: int = 0
    threads: int = 0


@dataclass
class CpuReport:
    """The difference between two samples: per thread name, process total, children."""

    wall_ns: int
    by_name: dict[str, ThreadUse] = field(default_factory=dict)
    self_ns: int = 0
    children_ns: int = 0
    voluntary: int = 0
    involuntary: int = 0

    @property
    def threads_ns(self) -> int:
        """CPU ns summed over the threads seen (including ``(exited)``)."""
        return sum(u.cpu_ns for u in self.by_name.values())

    @property
    def total_ns(self) -> int:
        """Process and child-process CPU ns (getrusage), the figure every thread adds to."""
        return self.self_ns + self.children_ns

    def per_event(self, events: int) -> dict[str, Any]:
        """JSON-ready figures per event: ``{"threads": {name: {"cpu_ns", "wait_ns",
        "cs_per_1k", "vcs_per_1k", "ics_per_1k"}}, "cpu_ns_total", "cpu_ns_children",
        "cs_per_1k", "cpu_utilisation"}`` (``cpu_utilisation``: CPUs kept busy on average)."""
        n = max(int(events), 1)
        threads = {}
        for name, u in sorted(self.by_name.items(), key=lambda kv: -kv[1].cpu_ns):
            threads[name] = {
                "cpu_ns": u.cpu_ns / n, "wait_ns": u.wait_ns / n,
                "cs_per_1k": (u.voluntary + u.involuntary) * 1000 / n,
                "vcs_per_1k": u.voluntary * 1000 / n, "ics_per_1k": u.involuntary * 1000 / n,
            }
        return {
            "events": int(events),
            "threads": threads,
            "cpu_ns_total": self.total_ns / n,
            "cpu_ns_threads": self.threads_ns / n,
            "cpu_ns_children": self.children_ns / n,
            "cs_per_1k": sum(u.voluntary + u.involuntary for u in self.by_name.values())
            * 1000 / n,
            "cpu_utilisation": self.total_ns / self.wall_ns if self.wall_ns else 0.0,
        }

    def summary(self, events: int) -> str:
        """One line for people: total ns/event, then each busy thread's ns/event."""
        return summary_line(self.per_event(events))


def summary_line(per_event: dict[str, Any]) -> str:
    """``CpuReport.per_event`` figures as one line for a report note: total CPU ns per event
    (each busy thread's share) and context switches per 1,000 events."""
    d = per_event
    parts = [f"{k} {v['cpu_ns']:.0f}" for k, v in d["threads"].items() if v["cpu_ns"] >= 1]
    return (f"CPU {d['cpu_ns_total']:.0f} ns/event ({', '.join(parts)}), "
            f"{d['cs_per_1k']:.1f} context switches/1k events, "
            f"{d['cpu_utilisation']:.2f} CPUs busy")


def diff(a: CpuSample, b: CpuSample, seen: dict[int, ThreadCpu] | None = None) -> CpuReport:
    """What happened between samples ``a`` and ``b``. ``seen``: the last counters of threads
    polled in between (threads absent from ``b`` that ended inside the interval)."""
    rep = CpuReport(wall_ns=b.wall_ns - a.wall_ns, self_ns=b.self_ns - a.self_ns,
                    children_ns=b.children_ns - a.children_ns,
                    voluntary=b.self_voluntary - a.self_voluntary,
                    involuntary=b.self_involuntary - a.self_involuntary)
    last = dict(seen or {})
    known = {tid: t.name for tid, t in a.threads.items()}
    known.update((tid, t.name) for tid, t in last.items())
    last.update(b.threads)
    generic = _process_comm()
    for tid, end in last.items():
        start = a.threads.get(tid)
        if start is not None and end.cpu_ns < start.cpu_ns:
            start = None  # a reused thread id
        # a Python thread that is ending has left threading.enumerate() but not yet /proc:
        # it keeps the name it was seen with
        name = known.get(tid, end.name) if end.name == generic else end.name
        z = start or ThreadCpu(tid, name, 0, 0, 0, 0)
        u = rep.by_name.setdefault(name, ThreadUse(name))
        u.cpu_ns += end.cpu_ns - z.cpu_ns
        u.wait_ns += end.wait_ns - z.wait_ns
        u.voluntary += end.voluntary - z.voluntary
        u.involuntary += end.involuntary - z.involuntary
        u.threads += 1
    rest = rep.self_ns - rep.threads_ns
    # getrusage ticks coarser than schedstat: only a clear gap is a thread we never saw
    if rest > max(rep.self_ns // 50, 2_000_000):
        rep.by_name[EXITED] = ThreadUse(EXITED, cpu_ns=rest)
    return rep


class CpuMeter:
    """Measures the CPU a block of code costs, per thread::

        with CpuMeter() as m:
            run(n)
        print(m.report.per_event(n))   # ns per event per thread, switches per 1k events

    ``poll``: seconds between background samples that remember threads ending inside the
    block (None: no sampler thread; ended threads then show only as ``(exited)``). The
    sampler thread itself is left out of the figures (it is the meter's, not the run's).
    """

    def __init__(self, poll: float | None = 0.05) -> None:
        self.poll = poll
        self.report: CpuReport | None = None
        self._seen: dict[int, ThreadCpu] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start: CpuSample | None = None

    def __enter__(self) -> CpuMeter:
        self._seen = {}
        self._stop.clear()
        if self.poll:
            self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)
            self._thread.start()
        self._start = sample()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            self._seen.update(sample().threads)

    def __exit__(self, *exc: Any) -> None:
        end = sample()
        meter_tid = None
        if self._thread is not None:
            meter_tid = self._thread.native_id
            self._stop.set()
            self._thread.join()
        assert self._start is not None
        seen = self._seen
        rep = diff(self._start, end, seen)
        if meter_tid is not None:
            me = end.threads.get(meter_tid) or seen.get(meter_tid)
            if me is not None and me.name in rep.by_name:
                # the sampler is not part of what was measured: drop it from the figures
                u = rep.by_name[me.name]
                z = self._start.threads.get(meter_tid)
                u.cpu_ns -= me.cpu_ns - (z.cpu_ns if z else 0)
                u.voluntary -= me.voluntary - (z.voluntary if z else 0)
                u.involuntary -= me.involuntary - (z.involuntary if z else 0)
                u.threads -= 1
                if u.threads <= 0:
                    del rep.by_name[me.name]
        self.report = rep

    def per_event(self, events: int) -> dict[str, Any]:
        """``report.per_event(events)`` of the last block measured."""
        if self.report is None:
            raise RuntimeError("CpuMeter.per_event() before the measured block ended")
        return self.report.per_event(events)


_PR_SET_NAME = 15
_libc: Any = None


def name_thread(name: str) -> bool:
    """Names the calling OS thread (``/proc/.../comm``, 15 bytes; what perf, top and this
    module show). Returns False where the platform cannot."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return _libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
