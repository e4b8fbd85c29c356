"""How to get records into a journal segment without a page fault per 4 KiB (issue #14).

::

    appender thread                                   sync thread
    batch of records (64 or 400 bytes each)           every ~1,000 records: fdatasync(fd)
        │ one of the methods below                        (writes the dirty pages back and
        ▼                                                  write-protects them in every map)
    SEGMENT FILE (posix_fallocate'd, MAP_SHARED map, the page cache)

    mmap          memcpy into the shared map, the segment read-prefaulted (what runs today)
    mmap_cold     memcpy into the shared map, nothing prefaulted
    pwrite        memcpy into a private buffer, pwrite() of the batch except its first length
                  word, then pwrite() of that word (the commit a reader waits for)
    populate      MADV_POPULATE_WRITE of the batch's pages by the appender, then memcpy
    populate_sync the sync thread, after each fdatasync, MADV_POPULATE_WRITEs the pages the
                  appender will fill before the next one, then the appender memcpys
    nothing       the same loop writing nothing: the Python overhead in every figure

    python bench/journal_write_ab.py [records of 64 bytes] [rounds]
    python bench/journal_write_ab.py costs
        one thread, no fdatasync: CPU per pwrite() call by size into a fresh posix_fallocate'd
        file, with its pages first read into the page cache (pread, fadvise, a read map) or
        not; a 1-byte pwrite() into a dirty page; a bare syscall (getppid)

Per method and record size, interleaved round by round: per thread, minor faults per 1,000
records and CPU ns per record (thread CPU clock; the system share from getrusage
RUSAGE_THREAD), and the medians over
the rounds. The batch is built once: the per-record CRC and header work is the same for
every method and left out; what differs is how the bytes reach the page cache.
"""

from __future__ import annotations

import mmap
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time

import numpy as np

MADV_POPULATE_WRITE = 23  # Linux 5.14
PAGE = 4096
BATCH = 256        # records per append call (the loop's batches are up to 1,024)
SYNC_EVERY = 1000  # records between fdatasyncs
METHODS = ("mmap", "mmap_cold", "pwrite", "populate", "populate_sync", "nothing")


def _usage() -> tuple[int, int, int]:
    """This thread's (CPU ns, system ns, minor faults). The CPU total is exact (the
    scheduler's runtime); the user/system split is the kernel's tick-sampled estimate."""
    r = resource.getrusage(resource.RUSAGE_THREAD)
    return time.thread_time_ns(), int(r.ru_stime * 1e9), r.ru_minflt


def _delta(a: tuple[int, int, int], b: tuple[int, int, int]) -> tuple[int, int, int]:
    return b[0] - a[0], b[1] - a[1], b[2] - a[2]


class Syncer(threading.Thread):
    """fdatasyncs the file whenever the appender has added ``SYNC_EVERY`` records; with
    ``populate`` it then MADV_POPULATE_WRITEs the pages the appender fills next."""

    def __init__(self, fd: int, mm: mmap.mmap | None, ahead: int) -> None:
        super().__init__(name="syncer")
        self.fd, self.mm, self.ahead = fd, mm, ahead
        self.cond = threading.Condition()
        self.appended = self.synced = 0
        self.pos = 0
        self.done = False
        self.usage = (0, 0, 0)
        self.syncs = 0

    def note(self, records: int, pos: int) -> None:
        """The appender added records up to ``records`` (byte ``pos``); it waits (sleeping)
        while two sync intervals are unsynced, so every run syncs every ~1,000 records as
        group commit does, whatever share of the CPUs each thread gets."""
        with self.cond:
            self.appended, self.pos = records, pos
            if records - self.synced >= SYNC_EVERY:
                self.cond.notify_all()
            while records - self.synced >= 2 * SYNC_EVERY:
                self.cond.wait()

    def run(self) -> None:
        u0 = _usage()
        while True:
            with self.cond:
                while self.appended - self.synced < SYNC_EVERY and not self.done:
                    self.cond.wait()
                if self.done:
                    break
                target, pos = self.appended, self.pos
            os.fdatasync(self.fd)
            self.syncs += 1
            if self.mm is not None:  # the pages to be written before the next fdatasync
                lo = pos & ~(PAGE - 1)
                hi = min(len(self.mm), (pos + self.ahead + PAGE - 1) & ~(PAGE - 1))
                if hi > lo:
                    self.mm.madvise(MADV_POPULATE_WRITE, lo, hi - lo)
            with self.cond:
                self.synced = target
                self.cond.notify_all()
        self.usage = _delta(u0, _usage())


def once(method: str, rec_size: int, n: int, workdir: str) -> dict[str, float]:
    """One run: ``n`` records of ``rec_size`` bytes appended by ``method``."""
    batch = np.frombuffer(os.urandom(rec_size * BATCH), np.uint8).copy()
    batch[::rec_size] |= 1  # every length word non-zero
    size = (n * rec_size + PAGE - 1) & ~(PAGE - 1)
    path = os.path.join(workdir, f"{method}.seg")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.posix_fallocate(fd, 0, size)
        mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        view = np.frombuffer(mm, np.uint8)
        if method != "mmap_cold":  # read-prefault: what Segment.prefault(write=False) does
            int(view[::PAGE].sum())
        buf = np.empty(len(batch), np.uint8)
        bufv = memoryview(buf)
        syncer = Syncer(fd, mm if method == "populate_sync" else None,
                        SYNC_EVERY * rec_size * 2)
        syncer.start()
        nb = len(batch)
        u0 = _usage()
        pos = done = 0
        while done + BATCH <= n:
            if method == "pwrite":
                buf[:] = batch  # the records are built in the private buffer
                os.pwrite(fd, bufv[4:], pos + 4)
                os.pwrite(fd, bufv[:4], pos)  # the commit: the first length word last
            elif method != "nothing":
                if method == "populate":
                    lo = pos & ~(PAGE - 1)
                    mm.madvise(MADV_POPULATE_WRITE, lo, ((pos + nb + PAGE - 1) & ~(PAGE - 1)) - lo)
                view[pos:pos + nb] = batch
            pos += nb
            done += BATCH
            syncer.note(done, pos)
        cpu, system, faults = _delta(u0, _usage())
        with syncer.cond:
            syncer.done = True
            syncer.cond.notify()
        syncer.join()
        del view
        mm.close()
    finally:
        os.close(fd)
        os.unlink(path)
    su, ss, sf = syncer.usage
    return {"faults": faults * 1000 / done, "cpu": cpu / done, "sys": system / done,
            "sync_faults": sf * 1000 / done, "sync_cpu": su / done, "sync_sys": ss / done,
            "syncs": syncer.syncs}


def costs(total: int = 64 << 20) -> None:
    """What a pwrite() costs: a fixed part per call and a part per page."""
    path = os.path.join(tempfile.mkdtemp(prefix="ringlog-wab-", dir="."), "costs.seg")
    try:
        for pre in ("none", "pread", "fadvise", "mmap_read"):
            for size in (512, 4096, 16384, 65536, 262144):
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
                os.posix_fallocate(fd, 0, total)
                mm = None
                if pre == "pread":
                    for off in range(0, total, 1 << 20):
                        os.pread(fd, 1 << 20, off)
                elif pre == "fadvise":
                    os.posix_fadvise(fd, 0, total, os.POSIX_FADV_WILLNEED)
                elif pre == "mmap_read":
                    mm = mmap.mmap(fd, total, mmap.MAP_SHARED, mmap.PROT_READ)
                    int(np.frombuffer(mm, np.uint8)[::PAGE].sum())
                buf = os.urandom(size)
                t0, pos, calls = time.thread_time_ns(), 0, 0
                while pos + size <= total:
                    os.pwrite(fd, buf, pos)
                    pos += size
                    calls += 1
                dt = time.thread_time_ns() - t0
                if mm is not None:
                    mm.close()
                os.close(fd)
                print(f"pages first {pre:9s} pwrite of {size:6d} B: {dt / calls / 1000:6.2f} us "
                      f"per call, {dt / (pos / PAGE) / 1000:5.2f} us per 4 KiB", flush=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.posix_fallocate(fd, 0, 16 << 20)
        os.pwrite(fd, bytes(16 << 20), 0)  # every page dirty in the page cache
        n = 100_000
        t0 = time.thread_time_ns()
        for i in range(n):
            os.pwrite(fd, b"\x01", (i * 64) % (16 << 20))
        t1 = time.thread_time_ns()
        for _ in range(n):
            os.getppid()
        t2 = time.thread_time_ns()
        os.close(fd)
        print(f"1-byte pwrite into a dirty page: {(t1 - t0) / n / 1000:.2f} us per call; a bare "
              f"syscall (getppid, with Python's call): {(t2 - t1) / n / 1000:.2f} us")
    finally:
        shutil.rmtree(os.path.dirname(path))


def main(n64: int = 1_000_000, rounds: int = 5) -> None:
    workdir = tempfile.mkdtemp(prefix="ringlog-wab-", dir=".")
    try:
        for rec_size, n in ((64, n64), (400, n64 // 4)):
            res: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
            for r in range(rounds):
                for m in METHODS:
                    res[m].append(once(m, rec_size, n, workdir))
                    x = res[m][-1]
                    print(f"{rec_size:3d} B round {r} {m:14s} appender {x['faults']:6.1f} "
                          f"faults/1k, CPU {x['cpu']:5.0f} (sys {x['sys']:5.0f}) ns/rec | "
                          f"sync thread {x['sync_faults']:5.1f} faults/1k, CPU "
                          f"{x['sync_cpu']:4.0f} (sys {x['sync_sys']:5.0f} ) ns/rec, "
                          f"{x['syncs']} syncs", flush=True)
            print(f"-- {rec_size}-byte records, {n:,} per run, medians (range) of {rounds} "
                  "rounds:")
            for m, xs in res.items():
                def med(k: str, xs: list[dict[str, float]] = xs) -> str:
                    v = [x[k] for x in xs]
                    return f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})"
                print(f"   {m:14s} appender faults/1k {med('faults')}, CPU {med('cpu')} "
                      f"(sys {med('sys')}) ns/rec; sync thread CPU {med('sync_cpu')} ns/rec")
            base = res["mmap"]
            for m in METHODS[1:]:
                tot = [x["cpu"] / b["cpu"]
                       for x, b in zip(res[m], base, strict=True)]
                print(f"   appender CPU {m}/mmap: median {statistics.median(tot):.2f} "
                      f"(range {min(tot):.2f}-{max(tot):.2f})")
    finally:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    if sys.argv[1:2] == ["costs"]:
        costs()
    else:
        main(*(int(a) for a in sys.argv[1:]))
