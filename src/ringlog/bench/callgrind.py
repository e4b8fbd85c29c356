"""Instruction counts per thread under valgrind's callgrind: a figure that holds on a loaded
machine, where CPU time swings with the neighbours' caches and clock.

::

    valgrind --tool=callgrind --separate-threads=yes  python -c CODE ARGS  (one run)
        ──► cg.out.<pid>-<NN>   one profile per thread (NN = 01 for the main thread, then in
                                order of creation), each with a "totals: <Ir>" line
    thread_totals(profiles)  ──► {NN: instructions}

Callgrind serialises the program's threads and runs it ~50x slower, so timings inside the
run mean nothing while instruction counts repeat to a fraction of a percent. The release
build is stripped: profiles name no ringlog function, so a thread is told by its number or
its share (the loop thread of a processor run does nearly all the work after the main
thread). Needs the ``valgrind`` binary (``apt-get install valgrind``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import RingLogError

__all__ = ["CallgrindError", "available", "busiest_thread", "run_threads", "thread_totals"]

_TOTALS = re.compile(rb"^(?:totals|summary):\s+(\d+)", re.M)
_THREAD = re.compile(r"-(\d+)$")


class CallgrindError(RingLogError, RuntimeError):
    """valgrind is missing, or the measured program failed under it."""


def available() -> bool:
    """Is the valgrind binary on PATH?"""
    return shutil.which("valgrind") is not None


def run_threads(code: str, args: list[str], timeout: float = 3600.0
                ) -> tuple[dict[int, int], str]:
    """Runs ``python -c code *args`` under callgrind, one profile per thread; returns the
    instructions of each thread by number (1: the main thread) and the program's stdout."""
    if not available():
        raise CallgrindError("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="ringlog-cg-") as d:
        r = subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                            f"--callgrind-out-file={d}/cg.out.%p", sys.executable, "-c",
                            code, *args], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise CallgrindError(f"the run under callgrind failed ({r.returncode}): "
                                 f"{r.stderr[-2000:]}")
        return thread_totals({p.name: p.read_bytes() for p in Path(d).glob("cg.out.*")}), \
            r.stdout


def thread_totals(profiles: dict[str, bytes]) -> dict[int, int]:
    """``{thread number: instructions}`` from callgrind's per-thread profiles by file name."""
    out = {}
    for name, data in profiles.items():
        if not data:
            continue  # callgrind leaves an empty file under the bare name beside them
        t, m = _THREAD.search(name), _TOTALS.search(data)
        if t is None or m is None:
            raise CallgrindError(f"{name}: not a per-thread callgrind profile")
        out[int(t.group(1))] = int(m.group(1))
    return out


def busiest_thread(totals: dict[int, int]) -> tuple[int, int]:
    """The thread (other than the main one) that ran the most instructions, and how many."""
    others = {t: n for t, n in totals.items() if t != 1}
    if not others:
        raise CallgrindError("the program ran no thread besides the main one")
    t = max(others, key=others.__getitem__)
    return t, others[t]
