"""Journal tools: ``ringlog journal info|dump|verify|tail|repair`` over any journal directory.

Everything here reads a journal without the application's code: payloads are decoded by the
schema descriptor each segment carries in its header (docs/journal-format.md), and control
events by their reserved names. Reading never writes; only ``repair`` changes files, and it
takes the journal's appender lock first so it can never race a live appender.

Verification runs the Cython record scanner (``Segment.scan``: CRC32C and sequence density
without the GIL) segment by segment; dumping streams records and unmaps each segment once
read, so memory stays flat on a journal larger than RAM.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import fcntl
import json
import operator
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import msgspec
import numpy as np

from . import durable
from ._journal import FORMAT_VERSION, HEADER_SIZE, Record, Segment, type_counts
from .errors import JournalCorruptError, JournalError
from .events import CONTROL_NAMES, FLAG_CONTROL, FLAG_MSGPACK, is_control
from .journal import (
    JournalReader,
    JournalTailer,
    _read_index,
    _write_index,
    list_segments,
)
from .recovery import TailVerdict, durable_mark, judge_roll, judge_tail, rebuild_index

__all__ = [
    "CheckResult",
    "Filter",
    "PayloadDecoder",
    "Problem",
    "RepairPlan",
    "apply_repair",
    "check",
    "dump",
    "info",
    "last_sequence",
    "lock_holder",
    "parse_time",
    "plan_repair",
    "tail",
]

_SCAN_END, _SCAN_UNTERMINATED = 1, 6
_SCAN_WHAT = {2: "impossible record length", 3: "checksum mismatch",
              4: "sequence out of order", 5: "non-zero padding",
              6: "bytes after the last record with no length word"}
_END_PROBE = 65536  # bytes after the written end that must be zero


# -- time ---------------------------------------------------------------------------------
_ISO_FRACTION = re.compile(r"^(.*?T\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d+))?(.*)$")


def parse_time(text: str) -> int:
    """Nanoseconds since the epoch from an integer (ns) or an ISO-8601 time; a time without
    a zone is UTC. Fractions keep all nine digits (``...T12:00:00.123456789Z``)."""
    t = text.strip()
    if re.fullmatch(r"-?\d+", t):
        return int(t)
    m = _ISO_FRACTION.match(t)
    frac = 0
    if m:
        digits = m.group(2) or ""
        frac = int((digits + "000000000")[:9]) if digits else 0
        t = m.group(1) + m.group(3)
    try:
        d = _dt.datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(f"{text!r} is neither nanoseconds since the epoch nor an ISO-8601 time "
                         "(e.g. 2026-11-24T12:00:00.5Z)") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.UTC)
    whole = d.replace(microsecond=0)
    return int(whole.timestamp()) * 1_000_000_000 + (frac if m else d.microsecond * 1000)


def format_time(ns: int) -> str:
    """ISO-8601 UTC with nanoseconds (``2026-11-24T12:00:00.000000001Z``)."""
    s, frac = divmod(ns, 1_000_000_000)
    try:
        d = _dt.datetime.fromtimestamp(s, _dt.UTC)
    except (OverflowError, OSError, ValueError):
        return str(ns)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


# -- decoding by the journal's own schema -------------------------------------------------
class _TypeDecoder:
    __slots__ = ("dtype", "fields", "kind", "name")

    def __init__(self, desc: dict[str, Any]) -> None:
        self.name: str = desc.get("name") or f"type{desc.get('type_id')}"
        self.kind: str = desc.get("kind", "bytes")
        self.fields: list[str] = [f[0] for f in desc.get("fields", [])]
        self.dtype: np.dtype | None = None
        if self.kind == "record":
            try:
                self.dtype = np.dtype([(str(n), str(t)) for n, t in desc["fields"]])
            except (TypeError, ValueError, KeyError):
                self.kind = "bytes"  # an unreadable descriptor: show the raw bytes

    def decode(self, payload: memoryview) -> Any:
        if self.dtype is not None:
            if len(payload) < self.dtype.itemsize:
                raise ValueError(f"{len(payload)} bytes, the {self.name} record needs "
                                 f"{self.dtype.itemsize}")
            row = np.frombuffer(payload, self.dtype, count=1)[0]
            # fields named _x are layout padding: nothing to show
            return {n: _plain(row[n]) for n in self.fields if not n.startswith("_")}
        if self.kind == "msgpack":
            return _named(msgspec.msgpack.decode(payload), self.fields)
        raise ValueError("no decoder")


def _plain(v: Any) -> Any:
    v = v.item() if hasattr(v, "item") and getattr(v, "shape", ()) == () else v
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _named(value: Any, names: list[str]) -> Any:
    """An array_like Struct decodes to a list: give its items their field names (a tagged
    one carries its tag first)."""
    if isinstance(value, list) and names:
        if len(value) == len(names) + 1 and isinstance(value[0], (int, str)):
            value = value[1:]
        if len(value) <= len(names):
            return dict(zip(names, value, strict=False))
    return value


class PayloadDecoder:
    """Decodes record payloads by the schema descriptor in each record's segment header, so
    a journal whose schema evolved across segments is decoded segment by segment."""

    def __init__(self) -> None:
        self._by_schema: dict[bytes, dict[int, _TypeDecoder]] = {}
        self._by_path: dict[str, dict[int, _TypeDecoder]] = {}
        self._lookup: dict[tuple[str, int], tuple[str, _TypeDecoder | None]] = {}

    def types_of(self, seg: Segment) -> dict[int, _TypeDecoder]:
        """type id -> decoder for one segment (cached by file and by schema bytes: a
        segment's header never changes)."""
        found = self._by_path.get(seg.path)
        if found is not None:
            return found
        raw = seg.schema
        types = self._by_schema.get(raw)
        if types is None:
            try:
                desc = json.loads(raw) if raw else []
            except ValueError:
                desc = []
            types = {int(d["type_id"]): _TypeDecoder(d) for d in desc if "type_id" in d}
            self._by_schema[raw] = types
        if len(self._by_path) > 1024:
            self._by_path.clear()
        self._by_path[seg.path] = types
        return types

    def _type(self, t: int, seg: Segment) -> tuple[str, _TypeDecoder | None]:
        key = (seg.path, t)
        found = self._lookup.get(key)
        if found is None:
            if is_control(t):
                found = (CONTROL_NAMES.get(t, f"control{t - 0xFFFF_FF00}"), None)
            else:
                td = self.types_of(seg).get(t)
                found = (td.name if td is not None else f"type{t}", td)
            if len(self._lookup) > 4096:
                self._lookup.clear()
            self._lookup[key] = found
        return found

    def type_name(self, rec: Record) -> str:
        """The type's name from the schema, a control event's name, or ``type<id>``."""
        return self._type(rec.type_id, rec.segment)[0]

    def name_of(self, t: int, seg: Segment) -> str:
        """The name of type id ``t`` in ``seg``'s schema (control names, else ``type<id>``)."""
        return self._type(t, seg)[0]

    def decode(self, rec: Record, td: _TypeDecoder | None = None) -> tuple[Any, bool]:
        """(decoded payload, True) or (hex string of the raw bytes, False)."""
        payload = rec.payload
        if td is None:
            td = self._type(rec.type_id, rec.segment)[1]
        try:
            if td is not None and td.kind != "bytes":
                return td.decode(payload), True
            if len(payload) and (rec.flags & (FLAG_MSGPACK | FLAG_CONTROL)
                                 or is_control(rec.type_id)):
                return msgspec.msgpack.decode(payload), True
        except (ValueError, msgspec.DecodeError):
            pass
        return bytes(payload).hex(), False

    def as_dict(self, rec: Record) -> dict[str, Any]:
        """One record as a JSON-able dict: header fields, type name, decoded payload."""
        name, td = self._type(rec.type_id, rec.segment)
        value, ok = self.decode(rec, td)
        return {"sequence": rec.sequence, "timestamp_ns": rec.timestamp_ns,
                "type_id": rec.type_id, "flags": rec.flags,
                "correlation_id": rec.correlation_id, "producer_id": rec.producer_id,
                "producer_seq": rec.producer_seq, "type": name, "length": len(rec.payload),
                "payload" if ok else "payload_hex": value}


# -- filters ------------------------------------------------------------------------------
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, "<=": operator.le, "!=": operator.ne, "==": operator.eq,
    ">": operator.gt, "<": operator.lt, "=": operator.eq}
_WHERE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|!=|==|>|<|=)\s*(.*?)\s*$")


def _literal(text: str) -> Any:
    for conv in (int, float):
        with contextlib.suppress(ValueError):
            return conv(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text


class Filter(msgspec.Struct, kw_only=True):
    """What ``dump`` and ``tail`` show: sequence and time bounds, types, a correlation id and
    field predicates (``price>100``, ``account=7``; header fields work too)."""

    from_sequence: int | None = None
    to_sequence: int | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    types: list[str] = []
    correlation_id: int | None = None
    where: list[str] = []
    limit: int | None = None

    def compile(self) -> Callable[[Record, PayloadDecoder], dict[str, Any] | None]:
        """A function returning the record's dict when it passes, else None. Header checks
        run before the payload is decoded."""
        ids = {int(t) for t in self.types if t.isdigit()}
        names = {t.lower() for t in self.types if not t.isdigit()}  # names match any case
        preds = []
        for w in self.where:
            m = _WHERE.match(w)
            if m is None:
                raise ValueError(f"--where {w!r}: expected FIELD OP VALUE with OP one of "
                                 "= == != > >= < <= (e.g. price>100)")
            preds.append((m.group(1), _OPS[m.group(2)], _literal(m.group(3))))
        corr, since, until = self.correlation_id, self.since_ns, self.until_ns

        def accept(rec: Record, dec: PayloadDecoder) -> dict[str, Any] | None:
            if corr is not None and rec.correlation_id != corr:
                return None
            if since is not None and rec.timestamp_ns < since:
                return None
            if until is not None and rec.timestamp_ns > until:
                return None
            if (ids or names) and rec.type_id not in ids \
                    and dec.type_name(rec).lower() not in names:
                return None
            d = dec.as_dict(rec)
            for field, op, value in preds:
                have = _field(d, field)
                try:
                    if have is _MISSING or not op(have, value):
                        return None
                except TypeError:  # comparing a number field with text: no match
                    return None
            return d

        return accept


_MISSING = object()


def _field(d: dict[str, Any], name: str) -> Any:
    if name in d and name != "payload":
        return d[name]
    cur: Any = d.get("payload")
    for part in name.removeprefix("payload.").split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return _MISSING
    return cur


def select(reader: JournalReader, flt: Filter) -> Iterator[dict[str, Any]]:
    """The records passing ``flt`` as dicts, streamed in sequence order."""
    accept = flt.compile()
    dec = PayloadDecoder()
    start = flt.from_sequence
    if flt.since_ns is not None:
        at = reader.locate_time(flt.since_ns)
        if at < 0:
            return
        start = at if start is None else max(start, at)
    stop = flt.to_sequence
    if flt.until_ns is not None:
        # time bounds use the time index: exact for non-decreasing event timestamps
        after = reader.locate_time(flt.until_ns + 1)
        if after >= 0:
            stop = after - 1 if stop is None else min(stop, after - 1)
    if stop is not None and start is not None and stop < start:
        return
    n = 0
    for rec in reader.records(start, to_sequence=stop):
        d = accept(rec, dec)
        if d is not None:
            yield d
            n += 1
            if flt.limit is not None and n >= flt.limit:
                return


_ENC = msgspec.json.Encoder()
_COLS = "{:>12}  {:30}  {:<18} {:>10} {:>5}  {}"


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (bytes, bytearray)):
        return v.rstrip(b"\0").decode("ascii", "replace") or "''"
    return str(v)


def format_row(d: dict[str, Any]) -> str:
    """One record as a line of the human table (aligned columns)."""
    p = d.get("payload", _MISSING)
    if p is _MISSING:
        hexs = d["payload_hex"]
        body = ("0x" + hexs[:64] + ("..." if len(hexs) > 64 else "")) if hexs else ""
    elif isinstance(p, dict):
        body = " ".join(f"{k}={_cell(v)}" for k, v in p.items())
    else:
        body = _cell(p)
    return _COLS.format(d["sequence"], format_time(d["timestamp_ns"]), d["type"][:18],
                        d["correlation_id"], d["length"], body)


TABLE_HEADER = _COLS.format("SEQUENCE", "TIME (UTC)", "TYPE", "CORR", "LEN", "PAYLOAD")


def write_rows(rows: Iterator[dict[str, Any]], out: TextIO, as_json: bool,
               header: bool = True) -> int:
    """Writes rows as JSON lines or the human table, streaming; returns the count."""
    n = 0
    if as_json:
        enc = _ENC.encode
        for d in rows:
            out.write(enc(d).decode() + "\n")
            n += 1
        return n
    for d in rows:
        if header and n == 0:
            out.write(TABLE_HEADER + "\n")
        out.write(format_row(d) + "\n")
        n += 1
    return n


def dump(path: str | Path, flt: Filter, out: TextIO, as_json: bool = False) -> int:
    """``ringlog journal dump``: streams matching records to ``out``; returns the count."""
    reader = JournalReader(path)
    return write_rows(select(reader, flt), out, as_json)


def tail(path: str | Path, out: TextIO, *, lines: int = 10, from_sequence: int | None = None,
         flt: Filter | None = None, as_json: bool = False, count: int | None = None,
         idle_exit: float | None = None) -> int:
    """``ringlog journal tail``: the last ``lines`` records, then follows the journal like
    ``tail -f`` until ``count`` records were shown, ``idle_exit`` seconds pass with nothing
    new, or the process is interrupted. Returns the count shown."""
    reader = JournalReader(path)
    segs = reader.segments()
    if from_sequence is None:
        last = last_sequence(path)
        first = segs[0][0] if segs else 0
        from_sequence = max(first, last + 1 - lines)
    tailer = JournalTailer(path, from_sequence)
    accept = (flt or Filter()).compile()
    dec = PayloadDecoder()
    shown = 0
    idle_since = time.monotonic()
    if not as_json:
        out.write(TABLE_HEADER + "\n")
    while count is None or shown < count:
        batch = tailer.poll(timeout=0.2)
        if not batch:
            if idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                break
            continue
        idle_since = time.monotonic()
        rows = (d for d in (accept(r, dec) for r in batch) if d is not None)
        if count is not None:
            rows = (d for _, d in zip(range(count - shown), rows, strict=False))
        shown += write_rows(rows, out, as_json, header=False)
        out.flush()
        del batch
    return shown


def last_sequence(path: str | Path) -> int:
    """The last committed sequence (first - 1 when empty), by a scan of the last segment."""
    segs = list_segments(Path(path))
    if not segs:
        return -1
    first, p = segs[-1]
    seg = Segment.open(p)
    _, _, nxt, _ = seg.scan(HEADER_SIZE, first, False)
    return nxt - 1


# -- verify -------------------------------------------------------------------------------
class Problem(msgspec.Struct, frozen=True):
    """The first problem found: what, where (file and byte offset), at which sequence.

    ``kind``: ``torn_tail`` (bytes a crash tore after the durable mark, repairable),
    ``torn_roll`` (a newest segment a power loss left without its header or after a torn
    previous segment, none of it durable: repair sets it aside),
    ``corrupt`` (a bad record in a sealed segment, or durable records missing or damaged at
    the end: ``lost_last`` is the last sequence lost), ``header`` (a segment header),
    ``gap`` (a missing or out-of-order segment), ``hint`` (a damaged durable-mark hint) or
    ``index`` (a damaged sparse index or one disagreeing with its segment). ``hint`` and
    ``index`` never cost a record.
    """

    kind: str
    path: str
    offset: int
    sequence: int
    message: str
    segment: int  # position of the segment in the ordered list
    end: int = 0  # torn_tail: the end of the bytes a truncation zeroes
    lost_last: int = -1  # corrupt at the end: the last durable sequence missing


class CheckResult(msgspec.Struct):
    """What ``check`` saw: counts, ranges, bytes, and the first problem (None: clean)."""

    path: str
    segments: int
    records: int
    first_sequence: int
    last_sequence: int
    bytes: int
    seconds: float
    problem: Problem | None = None


def check(path: str | Path, progress: Callable[[int, int], None] | None = None,
          live: bool = True) -> CheckResult:
    """Checks every segment header, record checksum, sequence density, segment order,
    durable mark and sparse index; stops at the first problem. The end of the last segment
    is judged by ringlog.recovery's rule (torn tail or corruption), as open and repair do.
    ``live``: an appender may be running (a record without its length word yet is no
    problem). The scan runs in C without the GIL."""
    directory = Path(path)
    if not directory.is_dir():
        raise JournalError(f"{directory} is not a journal directory")
    t0 = time.perf_counter()
    segs = list_segments(directory)
    res = CheckResult(str(directory), len(segs), 0, segs[0][0] if segs else 0,
                      (segs[0][0] - 1) if segs else -1, 0, 0.0)
    expect = segs[0][0] if segs else 0
    prev: Segment | None = None
    # a torn roll's segment holds nothing durable: the one before it is judged as the last,
    # and the torn roll is the problem if nothing before it is
    torn = judge_roll(segs)
    checked = segs[:-1] if torn is not None else segs
    for i, (first, p) in enumerate(checked):
        problem = _check_segment(i, first, p, expect, i == len(checked) - 1, res, live, prev,
                                 torn.durable if torn is not None else None)
        expect = res.last_sequence + 1
        with contextlib.suppress(JournalError):
            prev = Segment.open(p)
        if progress is not None:
            progress(i + 1, len(segs))
        if problem is not None:
            res.problem = problem
            break
    if res.problem is None and torn is not None:
        res.problem = Problem("torn_roll", torn.path, 0, torn.sequence,
                              f"{torn.message}; `ringlog journal repair` sets it aside",
                              len(segs) - 1)
    res.seconds = time.perf_counter() - t0
    return res


def _check_segment(i: int, first: int, p: Path, expect: int, last: bool,
                   res: CheckResult, live: bool = True,
                   prev: Segment | None = None, floor: int | None = None) -> Problem | None:
    if first != expect:
        return Problem("gap", str(p), 0, expect,
                       f"{p}: first sequence {first}, expected {expect}: a segment is "
                       "missing or out of order", i)
    try:
        seg = Segment.open(p)
    except JournalCorruptError as e:
        return Problem("header", str(p), e.offset or 0, expect, str(e), i)
    if seg.first_sequence != first:
        return Problem("header", str(p), 16, expect,
                       f"{p}: header says first sequence {seg.first_sequence}, the name "
                       f"says {first}", i)
    status, off, nxt, n = seg.scan(HEADER_SIZE, first, True)
    for _ in range(5 if live else 0):
        # after the written end comes nothing: a record there behind a zero length word
        # would be invisible to readers and overwritten by the next append. An appender may
        # be committing a record right now (length is stored last): look again shortly.
        if status != _SCAN_END or seg.is_zero(off, off + _END_PROBE):
            break
        time.sleep(0.01)
        status, off2, nxt2, n2 = seg.scan(off, nxt, True)
        off, nxt, n = off2, nxt2, n + n2
    res.records += n
    res.last_sequence = nxt - 1
    res.bytes += off
    if last:
        mark = durable_mark(*([prev, seg] if prev is not None else [seg]))
        if floor is not None and mark != -2:
            mark = max(mark, floor)  # a torn roll's mark (judge_roll)
        verdict: TailVerdict | None = judge_tail(seg, off, nxt, status, mark)
        if verdict is not None and verdict.kind == "torn_tail" and live and lock_holder(p.parent):
            # a live appender is writing past the durable mark right now (its length word
            # comes last, and it may be rolling): only damage below the mark is a problem
            verdict = None
        if verdict is not None and verdict.kind != "clean":
            kind = "torn_tail" if verdict.kind == "torn_tail" else "corrupt"
            tail = "; `ringlog journal repair` truncates it" if kind == "torn_tail" else ""
            return Problem(kind, str(p), off, nxt, verdict.message + tail, i, verdict.end,
                           verdict.lost_last)
    elif status != _SCAN_END:
        what = _SCAN_WHAT.get(status, f"status {status}")
        return Problem("corrupt", str(p), off, nxt,
                       f"{p}: {what} at byte offset {off} (sequence {nxt}) in a sealed "
                       "segment: corruption in the middle of the journal", i)
    else:
        junk = seg.first_nonzero(off, seg.size)
        if junk >= 0:
            return Problem("corrupt", str(p), off, nxt,
                           f"{p}: the records end at byte offset {off} (sequence {nxt}) but "
                           f"byte {junk} after it is not zero: a damaged length word hides "
                           "what follows", i)
    return _check_hints(i, p, seg, off, nxt, last)


def _check_hints(i: int, p: Path, seg: Segment, end: int, nxt: int, last: bool
                 ) -> Problem | None:
    """Damage to a hint (the durable mark, a .idx): its own kind, never a record's fault."""
    try:
        seg.durable_sequence  # noqa: B018 - raises if the mark is damaged
    except JournalCorruptError as e:
        return Problem("hint", str(p), e.offset or 4080, nxt,
                       f"{e}; the records are intact: `ringlog journal repair` rewrites the "
                       "mark", i)
    ip = p.with_suffix(".idx")
    if last or not ip.exists():
        return None
    idx = _read_index(p)
    if idx is None:
        return Problem("index", str(ip), 0, nxt, f"{ip}: damaged sparse index (bad magic, "
                       "layout or checksum); the records are intact: `ringlog journal "
                       "repair` rebuilds it", i)
    return _check_index(i, p, seg, idx, end, nxt)


def _check_index(i: int, p: Path, seg: Segment, idx: Any, end: int, nxt: int
                 ) -> Problem | None:
    last, idx_end, _, entries = idx
    ip = str(p.with_suffix(".idx"))
    if last != nxt - 1 or idx_end != end:
        return Problem("index", ip, 0, nxt, f"{ip}: says the segment ends at sequence {last} "
                       f"(offset {idx_end}); the records end at {nxt - 1} (offset {end}). "
                       "Delete the .idx (or run repair): readers would seek wrongly", i)
    for s, o, _ in entries:
        _status, _, _, n = seg.scan(o, s, False, s)
        if n != 1:
            return Problem("index", ip, o, s, f"{ip}: entry for sequence {s} points at "
                           f"offset {o}, which does not hold it", i)
    return None


# -- info ---------------------------------------------------------------------------------
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
    for first, p in list_segments(directory):
        seg = Segment.open(p)  # one segment mapped at a time
        status, off, nxt, n = seg.scan(HEADER_SIZE, first, False)
        row: dict[str, Any] = {
            "file": p.name, "first_sequence": first, "last_sequence": nxt - 1, "records": n,
            "bytes_used": off, "bytes": seg.size, "created": format_time(seg.created_ns),
            "indexed": p.with_suffix(".idx").exists()}
        if status != _SCAN_END:
            row["stopped_at"] = {"offset": off, "reason": _SCAN_WHAT.get(status, str(status))}
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
        from .snapshot import SnapshotStore
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


# -- repair -------------------------------------------------------------------------------
class RepairPlan(msgspec.Struct):
    """What ``repair`` would do: zero ``path`` from ``offset`` to ``end``, move later
    segments aside, rebuild a damaged index or durable mark; ``drops`` sequences
    first..last. A damaged hint or index never costs a record."""

    problem: Problem
    truncate_path: str | None
    offset: int
    end: int
    move_segments: list[str]
    drop_index: list[str]
    first_dropped: int
    last_dropped: int  # -1 when only torn (uncommitted) bytes go
    forced: bool
    rebuild_index: list[str] = msgspec.field(default_factory=list)  # segment paths
    rewrite_mark: list[str] = msgspec.field(default_factory=list)  # segment paths

    def describe(self) -> str:
        """Exactly what the repair drops, for the confirmation prompt and the log."""
        lines = [f"problem: {self.problem.message}"]
        if self.truncate_path is not None:
            lines.append(f"zero {self.truncate_path} bytes {self.offset}..{self.end} "
                         f"({self.end - self.offset} bytes)")
        lines += [f"move aside segment {s}" for s in self.move_segments]
        lines += [f"move aside index {s}" for s in self.drop_index]
        lines += [f"rebuild index {Path(s).with_suffix('.idx')} from its segment"
                  for s in self.rebuild_index]
        lines += [f"rewrite the durable mark of {s} from its records"
                  for s in self.rewrite_mark]
        if self.last_dropped >= self.first_dropped:
            lines.append(f"drops sequences {self.first_dropped}..{self.last_dropped} "
                         f"({self.last_dropped - self.first_dropped + 1} committed records)")
        elif self.truncate_path is not None or self.move_segments:
            lines.append("drops no committed record (only bytes written after the durable "
                         "mark)")
        else:
            lines.append("drops no record")
        return "\n".join(lines)


def plan_repair(path: str | Path, force: bool = False, live: bool = True
                ) -> RepairPlan | None:
    """The repair for the first problem ``check`` finds; None when clean. Damage to records
    that were durable raises JournalCorruptError unless ``force`` (which cuts the journal just
    before the damage; what follows is saved aside). Damaged hints and indexes are rebuilt,
    never a reason to drop a record."""
    res = check(path, live=live)
    pr = res.problem
    if pr is None:
        return None
    segs = list_segments(Path(path))
    seg_path = str(Path(pr.path).with_suffix(".seg"))
    if pr.kind == "index":
        return RepairPlan(pr, None, 0, 0, [], [pr.path], 0, -1, False, [seg_path])
    if pr.kind == "hint":
        return RepairPlan(pr, None, 0, 0, [], [], 0, -1, False, [], [pr.path])
    if pr.kind == "torn_tail":
        return RepairPlan(pr, pr.path, pr.offset, pr.end, [], [], pr.sequence, -1, False)
    if pr.kind == "torn_roll":  # the previous segment's index may list torn records
        return RepairPlan(pr, None, 0, 0, [pr.path],
                          _indexes([pr.path, str(segs[pr.segment - 1][1])]), pr.sequence, -1,
                          False)
    if not force:
        raise JournalCorruptError(
            f"{pr.message}.\nrepair refuses to drop committed records; restore the segment "
            "from a replica or backup, or rerun with --force to cut the journal at this point "
            "(what it drops is listed first and saved aside)", pr.path, pr.offset, pr.sequence)
    later = [str(p) for _, p in segs[pr.segment + 1:]]
    last_seq = max(res.last_sequence, _last_of(segs[-1][1], segs[-1][0]) if later else -1,
                   pr.lost_last)
    if pr.kind in ("gap", "header"):
        moved = [str(p) for _, p in segs[pr.segment:]]
        return RepairPlan(pr, None, 0, 0, moved, _indexes(moved), pr.sequence, last_seq, True)
    seg = Segment.open(pr.path)
    end = max(seg.last_nonzero(pr.offset, seg.size), min(seg.size, pr.offset + 8))
    last_here = _last_of(Path(pr.path), seg.first_sequence)
    return RepairPlan(pr, pr.path, pr.offset, end, later, _indexes([pr.path, *later]),
                      pr.sequence, max(last_seq, last_here), True)


def _indexes(seg_paths: list[str]) -> list[str]:
    return [str(Path(p).with_suffix(".idx")) for p in seg_paths
            if Path(p).with_suffix(".idx").exists()]


def _last_of(p: Path, first: int) -> int:
    """Best guess of the last sequence written in a segment: by its index, else a scan."""
    idx = _read_index(p)
    if idx is not None:
        return int(idx[0])
    try:
        seg = Segment.open(p)
    except JournalError:
        return -1
    _, _, nxt, _ = seg.scan(HEADER_SIZE, first, False)
    return nxt - 1


@contextlib.contextmanager
def _appender_lock(path: Path) -> Iterator[None]:
    f = open(path / "LOCK", "a+b")  # noqa: SIM115
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise JournalError(f"{path} is open for appending (pid {lock_holder(path)}): stop "
                               "the process before repairing its journal") from None
        yield
    finally:
        f.close()


def apply_repair(path: str | Path, plan: RepairPlan, side_dir: str | Path | None = None
                 ) -> Path:
    """Carries out ``plan`` under the appender lock: saves every removed byte in
    ``side_dir`` (default ``<journal>/repair-<time>/``) first, then truncates, moves and
    deletes. Re-checks that the journal still has the planned problem. Returns side_dir."""
    directory = Path(path)
    side = Path(side_dir) if side_dir else directory / f"repair-{time.strftime('%Y%m%dT%H%M%S')}"
    with _appender_lock(directory):
        # no appender can run now (we hold its lock): the check is of a still journal
        again = check(directory, live=False).problem
        if again is None or (again.kind, again.path, again.offset) != (
                plan.problem.kind, plan.problem.path, plan.problem.offset):
            raise JournalError(f"{directory} changed since the repair was planned; run it "
                               "again")
        side.mkdir(parents=True, exist_ok=True)
        if plan.truncate_path is not None:
            seg = Segment.open(plan.truncate_path, True)
            name = f"{Path(plan.truncate_path).name}.{plan.offset}-{plan.end}.removed"
            durable.write_file(side / name, _read_range(plan.truncate_path, plan.offset,
                                                         plan.end))
            seg.zero(plan.offset, plan.end)
            seg.sync()
        for p in plan.drop_index:
            shutil.move(p, side / Path(p).name)
        for p in plan.move_segments:
            shutil.move(p, side / Path(p).name)
        for p in plan.rebuild_index:
            seg = Segment.open(p)
            last, end, max_ts, entries = rebuild_index(seg, seg.first_sequence)
            _write_index(Path(p), last, end, max_ts, entries)
        for p in plan.rewrite_mark:
            seg = Segment.open(p, True)
            _, _, nxt, _ = seg.scan(HEADER_SIZE, seg.first_sequence, True)
            seg.sync()  # the records first: the mark never runs ahead of the disk
            seg.write_durable_mark(nxt - 1)
            seg.sync()
        durable.fsync_dir(side)
        durable.fsync_dir(directory)
    return side


def _read_range(p: str, start: int, end: int) -> bytes:
    with open(p, "rb") as f:
        f.seek(start)
        return f.read(end - start)


def to_json(obj: Any) -> str:
    """JSON text of a result (msgspec Structs, bytes as base64)."""
    return _ENC.encode(obj).decode()


def b64(data: bytes) -> str:
    """Base64 text of raw bytes (state without a JSON form)."""
    return base64.b64encode(data).decode()
