"""What writing a journal's bytes costs the machine: buffered pwrite() against O_DIRECT.

::

    python bench/odirect_cost.py [rounds] [--mb MB] [--chunk-kib K] [--sync-ms MS]

    each variant: a fresh posix_fallocate'd file in the current directory, then MB MiB in
    pwrite()s of K KiB, an fdatasync every MS ms and one at the end (the output journal's
    writer and sync threads, docs/processor.md step 22)
      buffered   into the page cache; fdatasync writes the pages back
      direct     O_DIRECT from a page-aligned buffer (the device's DMA; no page cache)

Per variant, median and range over the rounds (interleaved, the order reversed every other
round): MB/s, this process's CPU per 4 KiB page (getrusage) and the whole machine's (from
/proc/stat: kernel threads' writeback included). A file system that refuses O_DIRECT is
one line and exit 2.
"""

from __future__ import annotations

import argparse
import mmap
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pipeline_ab as ab

VARIANTS = ("buffered", "direct")


def _machine_busy_s() -> float:
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def one(variant: str, total: int, chunk: int, sync_s: float) -> dict[str, float]:
    """MB/s and CPU ns per page (process, machine) of writing ``total`` bytes."""
    path = f"odirect-cost-{variant}-{os.getpid()}.tmp"
    flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | (os.O_DIRECT if variant == "direct" else 0)
    fd = os.open(path, flags, 0o644)
    try:
        os.posix_fallocate(fd, 0, total)
        buf = mmap.mmap(-1, chunk)  # page-aligned, as O_DIRECT needs
        buf.write(b"x" * chunk)
        m0, r0, t0 = _machine_busy_s(), resource.getrusage(resource.RUSAGE_SELF), \
            time.perf_counter()
        last, off = t0, 0
        while off < total:
            os.pwrite(fd, buf, off)
            off += chunk
            if time.perf_counter() - last > sync_s:
                os.fdatasync(fd)
                last = time.perf_counter()
        os.fdatasync(fd)
        t1, r1, m1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF), \
            _machine_busy_s()
    finally:
        os.close(fd)
        os.unlink(path)
    pages = total / 4096
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    return {"mb_s": total / (t1 - t0) / 1e6, "cpu_ns_page": cpu * 1e9 / pages,
            "machine_ns_page": (m1 - m0) * 1e9 / pages}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rounds", nargs="?", type=int, default=3)
    ap.add_argument("--mb", type=int, default=1200)
    ap.add_argument("--chunk-kib", type=int, default=256)
    ap.add_argument("--sync-ms", type=float, default=20.0)
    a = ap.parse_args()
    if a.rounds < 1 or a.mb < 1 or a.chunk_kib < 4 or a.chunk_kib % 4 or a.sync_ms <= 0:
        ap.error("rounds and --mb >= 1, --chunk-kib a multiple of 4, --sync-ms > 0")
    probe = f"odirect-cost-probe-{os.getpid()}.tmp"
    try:
        os.close(os.open(probe, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644))
    except OSError as e:
        ap.error(f"this file system does not take O_DIRECT ({os.strerror(e.errno or 0)})")
    finally:
        if os.path.exists(probe):
            os.unlink(probe)
    res = ab.interleaved(list(VARIANTS), a.rounds, lambda v: one(
        v, a.mb << 20, a.chunk_kib << 10, a.sync_ms / 1e3), "{:.0f}")
    for v, runs in res.items():
        print(f"{v:9s} " + ", ".join(
            f"{k} {statistics.median(r[k] for r in runs):.0f} "
            f"({min(r[k] for r in runs):.0f}-{max(r[k] for r in runs):.0f})" for k in runs[0]))


if __name__ == "__main__":
    main()
