"""Journal benchmarks against the machine's limits and what a Python user would use instead.

    append_<size>_<policy>:  ring batch ──memcpy+crc32c──► mapped segment (Cython batch path)
    python_append_64b:       Journal.append() per event from Python
    verify_64b:              scan + checksum of every record (no GIL)
    replay_scan_64b:         the replay walk: length and sequence of every record (no GIL)
    peer_file_write_64b:     f.write() of 64-byte records to a buffered file
    peer_sqlite_wal_64b:     sqlite3 WAL executemany inserts of 64-byte blobs
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from typing import Any

from ringlog import Journal, JournalReader, Ring
from ringlog._journal import HEADER_SIZE
from ringlog.bench.stats import summarize


def _batch(size: int, n: int = 4096) -> Any:
    ring = Ring(8192, max(64, (size + 7) & ~7))
    c = ring.consumer()
    ring.publish_many([b"x" * (size - 48)] * n)
    return ring, c, c.poll(max_batch=n)


def _append(size: int, policy: str, total: int, d: str) -> float:
    _ring, _c, batch = _batch(size)
    path = tempfile.mkdtemp(dir=d)
    with Journal(path, durability=policy, segment_size=64 << 20) as j:
        time.sleep(0.2)  # the background thread prepares and pre-faults the next segment
        n = 0
        t0 = time.perf_counter()
        while n < total:
            j.append_batch(batch)
            n += len(batch)
        j.sync()
        dt = time.perf_counter() - t0
    shutil.rmtree(path)
    return n / dt


def _python_append(total: int, d: str) -> float:
    path = tempfile.mkdtemp(dir=d)
    with Journal(path, durability="none") as j:
        app = j.append
        t0 = time.perf_counter()
        for _ in range(total):
            app(b"12345678")
        dt = time.perf_counter() - t0
    shutil.rmtree(path)
    return total / dt


def _verify(total: int, d: str, check: bool = True) -> float:
    """Records/s of a GIL-free scan of every segment: with ``check`` every CRC32C and the
    sequence density (verify), without it the walk a replay does (length, sequence)."""
    _ring, _c, batch = _batch(64)
    path = tempfile.mkdtemp(dir=d)
    with Journal(path, durability="none", segment_size=64 << 20) as j:
        while j.next_sequence < total:
            j.append_batch(batch)
    rd = JournalReader(path)
    t0 = time.perf_counter()
    if check:
        n, _ = rd.verify_all()
    else:
        n = sum(rd.segment(first, p).scan(HEADER_SIZE, first, False)[3]
                for first, p in rd.segments())
    dt = time.perf_counter() - t0
    shutil.rmtree(path)
    return n / dt


def _file_write(total: int, d: str) -> float:
    rec = b"r" * 64
    path = os.path.join(d, "plain.log")
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        w = f.write
        for _ in range(total):
            w(rec)
    dt = time.perf_counter() - t0
    os.unlink(path)
    return total / dt


def _sqlite(total: int, d: str) -> float:
    path = os.path.join(d, "peer.db")
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE e (seq INTEGER PRIMARY KEY, body BLOB)")
    rows = [(i, b"r" * 48) for i in range(total)]
    t0 = time.perf_counter()
    for k in range(0, total, 10_000):
        db.executemany("INSERT INTO e VALUES (?, ?)", rows[k:k + 10_000])
        db.commit()
    dt = time.perf_counter() - t0
    db.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    return total / dt


def run(runs: int = 3, smoke: bool = False, peers: dict | None = None) -> list[dict]:
    """Append, verify and peer figures: medians of ``runs`` runs."""
    peers = peers or {}
    lim = peers.get("limits", {}) if isinstance(peers.get("limits"), dict) else {}
    d = tempfile.mkdtemp(prefix="ringlog-bench-", dir=".")
    total = 100_000 if smoke else 4_000_000
    rows: list[dict] = []
    try:
        sqlite_rate = summarize([_sqlite(total // 20, d) for _ in range(runs)])
        rows.append({"target": "journal", "name": "peer_sqlite_wal_64b", "unit": "events/s",
                     **sqlite_rate})
        write_rate = summarize([_file_write(total // 4, d) for _ in range(runs)])
        rows.append({"target": "journal", "name": "peer_file_write_64b", "unit": "events/s",
                     **write_rate})
        for size in (64, 256):
            for policy in ("none", "group", "sync"):
                n = total if policy != "sync" else total // 20
                vals = [_append(size, policy, n, d) for _ in range(runs)]
                row = {"target": "journal", "name": f"append_{size}b_{policy}",
                       "unit": "events/s", **summarize(vals)}
                gbs = row["median"] * size / 1e9
                row["note"] = f"{gbs:.2f} GB/s"
                row["ratios"] = {"sqlite3 WAL": row["median"] / sqlite_rate["median"]}
                if size == 64 and lim.get("mmap_write_64b_gb_per_s"):
                    row["ratios"]["mmap write (fresh)"] = gbs / lim["mmap_write_64b_gb_per_s"]
                    row["ratios"]["mmap write (pre-faulted)"] = (
                        gbs / lim["mmap_write_prefaulted_gb_per_s"])
                rows.append(row)
        rows.append({"target": "journal", "name": "python_append_64b", "unit": "events/s",
                     **summarize([_python_append(total // 8, d) for _ in range(runs)])})
        rows.append({"target": "journal", "name": "verify_64b", "unit": "events/s",
                     **summarize([_verify(total, d) for _ in range(runs)])})
        rows.append({"target": "journal", "name": "replay_scan_64b", "unit": "events/s",
                     **summarize([_verify(total, d, False) for _ in range(runs)])})
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(runs=1, smoke="--smoke" in sys.argv), indent=1))

GOALS = [
    {"goal": "append 64 B, policy none, >= 50% of mmap write bandwidth (fresh pages)",
     "row": "append_64b_none", "ratio": "mmap write (fresh)", "min": 0.5,
     "why": "per record: one pass that copies the 64-byte body and folds it into CRC32C "
            "(8 dependent crc32 instructions), the index check and the length-last commit: "
            "~139 instructions per record (callgrind), where mmap write only stores"},
    {"goal": "append 64 B, policy group, >= 50% of mmap write bandwidth",
     "row": "append_64b_group", "ratio": "mmap write (fresh)", "min": 0.5,
     "why": ("group commit: the sync thread fdatasyncs every 1000 events or 2 ms at the "
            "virtual disk's speed; each append batch is a pwrite() (~1.3-3.4 us per call plus "
            "~0.9 us per 4 KiB, bench/journal_write_ab.py costs)")},
    {"goal": ">= 10x sqlite3 (WAL) for appends", "row": "append_64b_group",
     "ratio": "sqlite3 WAL", "min": 10.0,
     "why": "the peer runs WAL with synchronous=NORMAL, which syncs only at checkpoints (the "
            "durability of our `none`, see append_64b_none against the same peer); `group` "
            "fdatasyncs every 1000 events or 2 ms and is disk-bound on this VM"},
    {"goal": "verify >= 20M events/s (64-byte records)", "row": "verify_64b", "min": 2e7,
     "why": ""},
    {"goal": "replay >= 20M events/s (64-byte records, Cython scan)", "row": "replay_scan_64b",
     "min": 2e7, "why": ""},
]
