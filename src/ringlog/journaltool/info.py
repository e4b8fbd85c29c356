"""``ringlog journal info``: segments, sequences, times, sizes and record counts by type, and
who holds the appender lock."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from .. import journal
from .._journal import FORMAT_VERSION, HEADER_SIZE, ScanStatus, Segment, type_counts
from ..errors import JournalError
from ..journal import JournalReader
from .decode import SCAN_WHAT, PayloadDecoder, format_time


def lock_holder(path: str | Path) -> int | None:
    """The pid holding the journal's appender lock (from /proc/locks), None if nobody or
    unknown. Read without taking the lock, so it never blocks an appender starting."""
    try:
        ino = os.stat(Path(path) / "LOCK").st_ino
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                # "1: FLOCK ADVISORY WRITE 1234 08:01:5678 0 EOF"
                if len(parts) >= 6 and parts[1] == "FLOCK":
                    dev_ino = parts[5].split(":")
                    if len(dev_ino) == 3 and int(dev_ino[2]) == ino:
                        return int(parts[4])
    except (OSError, ValueError):
        return None
    return None


def info(path: str | Path, counts: bool = True) -> dict[str, Any]:
    """``ringlog journal info``: segments, ranges, counts by type, sizes, lock holder,
    snapshots beside the journal, format version and schema descriptor."""
    directory = Path(path)
    if not directory.is_dir():
        raise JournalError(f"{directory} is not a journal directory")
    dec = PayloadDecoder()
    segs_out = []
    by_type: Counter[str] = Counter()
    first_ts = last_ts = None
    total = used = 0
    first_seq, last_seq = None, -1
    schema: Any = []
    for first, p in journal.list_segments(directory):
        seg = Segment.open(p)  # one segment mapped at a time
        status, off, nxt, n = seg.scan(HEADER_SIZE, first, False)
        row: dict[str, Any] = {
            "file": p.name, "first_sequence": first, "last_sequence": nxt - 1, "records": n,
            "bytes_used": off, "bytes": seg.size, "created": format_time(seg.created_ns),
            "indexed": p.with_suffix(".idx").exists()}
        if status != ScanStatus.SCAN_END:
            row["stopped_at"] = {"offset": off, "reason": SCAN_WHAT.get(status, str(status))}
        segs_out.append(row)
        total += seg.size
        used += off
        if first_seq is None:
            first_seq = first
        last_seq = nxt - 1
        if n:
            head = seg.record(HEADER_SIZE)
            first_ts = head.timestamp_ns if first_ts is None else first_ts
        if counts and n:
            _count_types(seg, first, nxt - 1, dec, by_type)
        raw = seg.schema
        schema = json.loads(raw) if raw else []
    if first_seq is not None and last_seq >= first_seq:
        found = JournalReader(directory, verify=False).locate(last_seq)
        if found is not None:
            last_ts = found[1].record(found[2]).timestamp_ns
    holder = lock_holder(directory)
    try:
        durable: int | None = JournalReader(directory, verify=False).durable_sequence
    except JournalError:
        durable = None  # a damaged mark: `verify` names it
    out: dict[str, Any] = {
        "path": str(directory), "format_version": FORMAT_VERSION,
        "segments": segs_out, "first_sequence": first_seq, "last_sequence": last_seq,
        "records": sum(s["records"] for s in segs_out), "bytes_used": used, "bytes": total,
        "first_time": format_time(first_ts) if first_ts is not None else None,
        "last_time": format_time(last_ts) if last_ts is not None else None,
        "appender_pid": holder,
        "durable_sequence": durable,
        "durable_note": ("published by the appender in the segment header: records up to it "
                         "survive a power loss") + ("" if holder is None else
                                                    f"; pid {holder} appends"),
        "counts_by_type": dict(by_type.most_common()) if counts else None,
        "schema": schema,
    }
    snaps = directory.parent / "snapshots"
    if directory.name == "input" and snaps.is_dir():
        from ..snapshot import SnapshotStore
        out["snapshots"] = [{k: v for k, v in s.items() if k != "path"}
                            for s in SnapshotStore(snaps).list()]
    return out


def _count_types(seg: Segment, first: int, last: int, dec: PayloadDecoder,
                 by_type: Counter[str]) -> None:
    """Adds the segment's records by type: a C pass, or a Python one past 4096 type ids."""
    found = type_counts(seg, HEADER_SIZE, first, last)
    if found is not None:
        for t, k in found[0].items():
            by_type[f"{dec.name_of(t, seg)} ({t})"] += k
        return
    for _, rec in seg.records(HEADER_SIZE, first, False):
        by_type[f"{dec.type_name(rec)} ({rec.type_id})"] += 1
        if rec.sequence >= last:
            break


def format_info(d: dict[str, Any]) -> str:
    """``info`` for people: a summary, the segment table, counts, snapshots, schema."""
    lines = [
        f"journal        {d['path']}",
        f"format         version {d['format_version']}",
        f"sequences      {d['first_sequence']} .. {d['last_sequence']}  "
        f"({d['records']:,} records)",
        f"time           {d['first_time']} .. {d['last_time']}",
        f"size           {d['bytes_used']:,} bytes used of {d['bytes']:,} "
        f"in {len(d['segments'])} segment(s)",
        f"appender       {'pid ' + str(d['appender_pid']) if d['appender_pid'] else 'none'}",
        f"durable        {d['durable_sequence'] if d['durable_sequence'] is not None else '?'}"
        f"  ({d['durable_note']})",
        "",
        f"{'SEGMENT':26} {'FIRST':>12} {'LAST':>12} {'RECORDS':>10} {'USED':>12} {'SIZE':>12}"
        "  INDEX",
    ]
    for s in d["segments"]:
        lines.append(f"{s['file']:26} {s['first_sequence']:>12} {s['last_sequence']:>12} "
                     f"{s['records']:>10} {s['bytes_used']:>12,} {s['bytes']:>12,}  "
                     f"{'yes' if s['indexed'] else 'no'}"
                     + (f"  stopped at {s['stopped_at']}" if "stopped_at" in s else ""))
    if d["counts_by_type"] is not None:
        lines += ["", f"{'TYPE':40} {'RECORDS':>12}"]
        lines += [f"{k:40} {v:>12,}" for k, v in d["counts_by_type"].items()]
    if "snapshots" in d:
        lines += ["", f"{'SNAPSHOT':>12} {'BYTES':>12}  VALID"]
        lines += [f"{s['sequence']:>12} {s['bytes']:>12,}  "
                  f"{'yes' if s['valid'] else 'NO: ' + s['error']}" for s in d["snapshots"]]
    lines += ["", "schema descriptor:"]
    lines += [f"  {t.get('type_id'):>10}  {t.get('name')} v{t.get('version')} ({t.get('kind')})"
              f"  {' '.join(f'{n}:{ty}' for n, ty in t.get('fields', []))}"
              for t in d["schema"]] or ["  (empty: payloads are shown as hex)"]
    return "\n".join(lines)


