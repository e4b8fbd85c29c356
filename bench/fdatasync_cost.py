"""What one small durable append costs this machine's thread: CPU and wall per fdatasync.

::

    python bench/fdatasync_cost.py [rounds] [--syncs N] [--record BYTES] [--variants V,...]

    each variant: a fresh file, then N times: pwrite a record (400 bytes; --record) at the
    end ──► make it durable
      falloc       posix_fallocate'd file (as Segment.prepare makes segments), fdatasync
      falloc_dsync the same, pwritev(RWF_DSYNC) instead of pwrite + fdatasync
      zeros        a file written with zeros and synced first (no unwritten extents: what
                   Journal(prefault="zero") prepares; with --record 4096 every sync reaches
                   a new block, whose first write-back makes falloc's fdatasync write the
                   inode too, docs/journal-format.md "Preparing segments")
      zeros_dsync  the same with RWF_DSYNC
      mark         falloc, and after each sync a 16-byte pwrite() into the first page (the
                   journal's durable mark in its segment header)
      mark_16      the same, the mark written after every 16th sync
      direct_dsync zeros, opened O_DIRECT: the 4 KiB blocks holding the new record
                   rewritten from an aligned buffer with RWF_DSYNC (a database WAL's way)
      direct_sync  the same blocks written O_DIRECT, then fdatasync

Per variant the thread's CPU (``time.thread_time_ns``) and the wall time per sync, median
over the rounds (the variants interleaved, the order reversed every other round). The files
go in the current directory (the file system the journals use).
"""

from __future__ import annotations

import argparse
import mmap
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pipeline_ab as ab

SIZE = 16 << 20
VARIANTS = ("falloc", "falloc_dsync", "zeros", "zeros_dsync", "mark", "mark_16",
            "direct_dsync", "direct_sync")
BLOCK = 4096


def one(variant: str, n: int, record: bytes) -> tuple[float, float]:
    """(CPU us, wall us) per durable append of ``variant``."""
    path = f"fdatasync-cost-{variant}-{os.getpid()}.tmp"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if variant.startswith(("zeros", "direct")):
            zeros = bytes(1 << 20)
            for off in range(0, SIZE, 1 << 20):
                os.pwrite(fd, zeros, off)
        else:
            os.posix_fallocate(fd, 0, SIZE)
        os.fsync(fd)
        if variant.startswith("direct"):
            return _direct(path, fd, n, variant == "direct_dsync", record)
        dsync = variant.endswith("dsync")
        every = 16 if variant == "mark_16" else 1 if variant == "mark" else 0
        off = 4096
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        for i in range(n):
            if dsync:
                os.pwritev(fd, [record], off, os.RWF_DSYNC)
            else:
                os.pwrite(fd, record, off)
                os.fdatasync(fd)
            if every and i % every == 0:
                os.pwrite(fd, i.to_bytes(8, "little") * 2, 64)
            off += len(record)
        c1, t1 = time.thread_time_ns(), time.perf_counter_ns()
        return (c1 - c0) / n / 1e3, (t1 - t0) / n / 1e3
    finally:
        os.close(fd)
        os.unlink(path)


def _direct(path: str, fd: int, n: int, dsync: bool, record: bytes) -> tuple[float, float]:
    # The appender's bytes live in an aligned buffer (an anonymous map); each sync writes the
    # blocks from the last synced one to the end, so the tail block is rewritten until full.
    dfd = os.open(path, os.O_RDWR | os.O_DIRECT)
    buf = mmap.mmap(-1, SIZE)
    view = memoryview(buf)
    try:
        end = BLOCK
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        for _ in range(n):
            buf[end:end + len(record)] = record
            first = end // BLOCK * BLOCK
            end += len(record)
            last = -(-end // BLOCK) * BLOCK
            if dsync:
                os.pwritev(dfd, [view[first:last]], first, os.RWF_DSYNC)
            else:
                os.pwritev(dfd, [view[first:last]], first)
                os.fdatasync(dfd)
        c1, t1 = time.thread_time_ns(), time.perf_counter_ns()
        return (c1 - c0) / n / 1e3, (t1 - t0) / n / 1e3
    finally:
        view.release()
        buf.close()
        os.close(dfd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rounds", nargs="?", type=int, default=4)
    ap.add_argument("--syncs", type=int, default=3000)
    ap.add_argument("--record", type=int, default=400, help="bytes per durable append")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    a = ap.parse_args()
    variants = a.variants.split(",")
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        ap.error(f"unknown variant {bad[0]!r}: one of {', '.join(VARIANTS)}")
    if a.rounds < 1 or a.syncs < 1 or a.record < 1:
        ap.error("rounds, --syncs and --record must be >= 1")
    most = (SIZE - 2 * BLOCK) // a.record
    if a.syncs > most:
        ap.error(f"--syncs at most {most} with --record {a.record} (each variant's file is "
                 f"{SIZE >> 20} MiB, prepared before the syncs)")
    record = b"x" * a.record

    def run(v: str) -> dict[str, float]:
        cpu, wall = one(v, a.syncs, record)
        return {"cpu_us": cpu, "wall_us": wall}

    res = ab.interleaved(variants, a.rounds, run, "{:.1f}")
    for v, runs in res.items():
        cpu, wall = [r["cpu_us"] for r in runs], [r["wall_us"] for r in runs]
        print(f"{v:13s} CPU {statistics.median(cpu):6.1f} us per sync "
              f"({min(cpu):.1f}-{max(cpu):.1f}), wall {statistics.median(wall):6.1f} us")


if __name__ == "__main__":
    main()
