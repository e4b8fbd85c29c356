"""The machine's limits, measured beside ringlog in the same benchmark run.

    python -m ringlog.bench.peers.limits [DIR]

prints one figure a line (``NAME VALUE  # note`` or ``NAME k=v k=v``):

    memcpy_gb_per_s                 numpy copy of 64 MiB, best of 5
    mmap_write_64b_gb_per_s         64-byte records into a fresh mapped file (page faults in)
    mmap_write_msync_gb_per_s       the same plus one msync at the end
    mmap_write_prefaulted_gb_per_s  the same into pages touched before (a prepared segment)
    fdatasync_small_append_us       p50/p99 of write(64 B) + fdatasync in DIR
    python_call_ns                  one Python method call from a Python loop

A journal cannot append faster than mmap writes nor commit faster than fdatasync; a Python
handler cannot run more often than Python calls: the benchmarks print ratios to these.
"""

from __future__ import annotations

import mmap
import os
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

MIB = 1 << 20


def _best_seconds(fn: Callable[[], None], runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def memcpy_gb_per_s(size: int = 64 * MIB) -> float:
    """Bytes per second of a large numpy copy (a memcpy)."""
    src = np.ones(size, np.uint8)
    dst = np.empty_like(src)
    return size / _best_seconds(lambda: np.copyto(dst, src)) / 1e9


def mmap_write_gb_per_s(directory: str, msync: bool = False, prefault: bool = False,
                        size: int = 32 * MIB) -> float:
    """Bytes per second of 64-byte records written through a shared mapping of a new file."""
    record = np.arange(64, dtype=np.uint8)

    def once() -> float:
        fd, path = tempfile.mkstemp(dir=directory, prefix="ringlog-limits-")
        try:
            os.ftruncate(fd, size)
            with mmap.mmap(fd, size) as m:
                view = np.frombuffer(m, np.uint8).reshape(-1, 64)
                if prefault:
                    view[:, 0] = 0  # one store a cache line: every page is mapped in
                t = time.perf_counter()
                view[:] = record  # row by row: 64-byte stores through the page cache
                if msync:
                    m.flush()
                dt = time.perf_counter() - t
                del view
            return dt
        finally:
            os.close(fd)
            os.unlink(path)

    return size / min(once() for _ in range(3)) / 1e9


def fdatasync_us(directory: str, calls: int = 200) -> tuple[float, float]:
    """p50 and p99 microseconds of one small append made durable with fdatasync."""
    out = []
    fd, path = tempfile.mkstemp(dir=directory, prefix="ringlog-limits-")
    try:
        for _ in range(calls):
            t = time.perf_counter_ns()
            os.write(fd, b"x" * 64)
            os.fdatasync(fd)
            out.append((time.perf_counter_ns() - t) / 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    p50, p99 = np.percentile(out, [50, 99])
    return float(p50), float(p99)


class _Handler:
    def on_event(self, x: int) -> int:
        return x


def python_call_ns(calls: int = 1_000_000) -> float:
    """Nanoseconds of one bound-method call in a Python for loop, the loop's own cost out."""
    call = _Handler().on_event
    rng = range(calls)

    def calling() -> None:
        for i in rng:
            call(i)

    def looping() -> None:
        for _ in rng:
            pass

    return max(_best_seconds(calling) - _best_seconds(looping), 0.0) / calls * 1e9


def main(argv: list[str]) -> int:
    """Prints every figure; DIR (default the temp folder) is where files are written."""
    directory = argv[0] if argv else tempfile.gettempdir()
    print(f"memcpy_gb_per_s {memcpy_gb_per_s():.2f}")
    print(f"mmap_write_64b_gb_per_s {mmap_write_gb_per_s(directory):.2f}  # fresh file")
    print(f"mmap_write_msync_gb_per_s {mmap_write_gb_per_s(directory, msync=True):.2f}"
          "  # one msync at the end")
    print(f"mmap_write_prefaulted_gb_per_s "
          f"{mmap_write_gb_per_s(directory, prefault=True):.2f}  # pages touched first")
    p50, p99 = fdatasync_us(directory)
    print(f"fdatasync_small_append_us p50={p50:.0f} p99={p99:.0f}")
    print(f"python_call_ns {python_call_ns():.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
