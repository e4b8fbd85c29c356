"""``ringlog journal verify``: every segment scanned (CRC32C, sequence density, the bytes after
the end), its index and hints checked; the first problem named by file, offset and sequence."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from .. import journal
from .._journal import HEADER_SIZE, ScanStatus, Segment
from ..errors import JournalCorruptError, JournalError
from ..journal import _read_index
from ..recovery import TailVerdict, durable_mark, judge_roll, judge_tail
from .decode import SCAN_WHAT
from .info import lock_holder

_END_PROBE = 65536  # bytes after the written end that must be zero


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
    segs = journal.list_segments(directory)
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
        if status != ScanStatus.SCAN_END or seg.is_zero(off, off + _END_PROBE):
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
    elif status != ScanStatus.SCAN_END:
        what = SCAN_WHAT.get(status, f"status {status}")
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


