"""The rules for the end of a journal: one verdict that open, verify and repair all follow.

A crash (kill -9 or a power loss) can only damage what was written after the last durable
point; anything else is corruption. The evidence of the durable point is the durable-mark
hint in the segment header (published after fdatasync returned, so never ahead of the disk)::

    last segment: [hdr][ valid records ... ][ invalid range ... maybe valid records ][ zeros ]
                                            ^ off, sequence nxt                     ^ written end
    D = durable mark (the newest of the last two segments' hints)

    nothing written after off, nxt >  D  -> clean end
    nothing written after off, nxt <= D  -> corruption: durable records nxt..D are missing
    something invalid at/after off:
        nxt >  D                         -> torn tail: zero off..written end (a crash tore it)
        nxt <= D                         -> corruption: durable records from nxt are damaged
    D unreadable (a damaged hint)        -> torn tail only if no valid record follows

A roll names the new segment before its header, the directory entry and the previous
segment's tail are synced (the background thread syncs them, and only then lets the durable
mark pass the roll). So a power loss may leave a newest segment that holds nothing durable
and cannot continue the journal: its header did not reach the disk, or the previous
segment's records end before it starts. ``judge_roll`` calls that a torn roll (the segment
is set aside, the previous one is the last and is judged as above)::

    [ ... P: records ... torn? ][ L: header? records ... ]      F = L's first sequence
    D = max(P's mark, L's mark if its page is readable)
    D >= F                                  -> L must be whole: the rules above
    D <  F, L's header bad or P ends < F-1  -> torn roll: set L aside, P is the last
    D <  F, L's header good, P ends at F-1  -> L is the last (the rules above)

Any other segment with a damaged header is never a crash's doing: corruption. Every decision
is returned as a ``RecoveryDecision`` and logged by the caller.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import msgspec

from ._journal import HEADER_SIZE, ScanStatus, Segment
from .errors import JournalCorruptError

__all__ = ["RecoveryDecision", "TailVerdict", "TornRoll", "durable_mark", "judge_roll",
           "judge_tail", "rebuild_index"]

log = logging.getLogger("ringlog.journal")

_WHY: dict[int, str] = {ScanStatus.SCAN_BAD_LENGTH: "impossible length",
                        ScanStatus.SCAN_BAD_CRC: "checksum mismatch",
                        ScanStatus.SCAN_BAD_SEQUENCE: "sequence out of order",
                        ScanStatus.SCAN_BAD_PADDING: "non-zero padding",
                        ScanStatus.SCAN_UNTERMINATED: "no length word"}


class RecoveryDecision(msgspec.Struct, frozen=True):
    """One thing recovery did to a journal directory and why (also logged).

    ``action``: ``truncate_torn_tail``, ``set_aside_torn_roll``, ``remove_temp_file``,
    ``rebuild_index``, ``rewrite_durable_mark`` or ``cut_after`` (a processor's outputs of
    inputs a crash lost)."""

    action: str
    path: str
    offset: int = 0
    sequence: int = -1
    bytes: int = 0
    reason: str = ""


class TailVerdict(msgspec.Struct, frozen=True):
    """What the end of the last segment is: ``clean``, ``torn_tail`` (zero ``offset..end``)
    or ``corrupt`` (durable records ``sequence..lost_last`` missing or damaged)."""

    kind: str
    path: str
    offset: int
    sequence: int
    end: int
    durable: int  # the durable mark judged by; -2 when the hint is damaged
    lost_last: int
    reason: str
    message: str

    def error(self) -> JournalCorruptError:
        """The JournalCorruptError of a ``corrupt`` verdict."""
        return JournalCorruptError(self.message, self.path, self.offset, self.sequence)


def durable_mark(*segs: Segment) -> int:
    """The highest durable-mark hint of ``segs``; -2 if the newest one's hint is damaged."""
    best = -1
    for i, seg in enumerate(segs):
        try:
            best = max(best, seg.durable_sequence)
        except JournalCorruptError:
            if i == len(segs) - 1:
                return -2
    return best


def judge_tail(seg: Segment, off: int, nxt: int, status: int, durable: int) -> TailVerdict:
    """The verdict on the last segment whose verifying scan stopped at ``off`` (sequence
    ``nxt``) with ``status``; ``durable`` from ``durable_mark``."""
    path = str(seg.path)
    end = seg.last_nonzero(off, seg.size)
    if status == ScanStatus.SCAN_END and end <= off:
        if durable >= nxt:
            return TailVerdict(
                "corrupt", path, off, nxt, off, durable, durable, "durable records missing",
                f"{path}: the records end at byte offset {off} (after sequence {nxt - 1}) but "
                f"the durable mark says {durable}: durable records {nxt}..{durable} are missing "
                "(lost writes or zeroed pages); refusing to truncate or append over them")
        return TailVerdict("clean", path, off, nxt, off, durable, -1, "", "")
    reason = _WHY.get(status, "data after the last record's missing length word"
                      if status == ScanStatus.SCAN_END else f"status {status}")
    found_off, found_seq = seg.find_record(off + 8, seg.size, nxt + 1)
    if durable >= nxt or (durable == -2 and found_off >= 0):
        last = max(durable, found_seq)
        why = (f"the durable mark says {durable}" if durable >= nxt else
               "the durable mark is damaged and a valid record follows")
        after = (f"; a valid record (sequence {found_seq}) follows at byte offset {found_off}"
                 if found_off >= 0 else "")
        return TailVerdict(
            "corrupt", path, off, nxt, end, durable, last, reason,
            f"{path}: {reason} at byte offset {off} (sequence {nxt}) and {why}: durable "
            f"records {nxt}..{last} are damaged or missing{after}; refusing to truncate or "
            "append over them")
    end = max(end, min(seg.size, off + 8))
    return TailVerdict(
        "torn_tail", path, off, nxt, end, durable, -1, reason,
        f"{path}: torn tail at byte offset {off} (sequence {nxt}, {reason}, {end - off} "
        f"bytes written after the durable mark {durable}): a crash tore what was not yet "
        "durable")


class TornRoll(msgspec.Struct, frozen=True):
    """The newest segment ``path`` (first sequence ``sequence``) holds nothing durable and
    cannot continue the journal (``reason``): a power loss during a roll. ``durable`` is the
    mark judged by (below ``sequence``); the previous segment is then the last one."""

    path: str
    sequence: int
    durable: int
    reason: str
    message: str


_MARK = struct.Struct("<qq")  # ~durable, durable at header offset 4080


def _raw_mark(path: Path) -> int | None:
    """The durable mark in the header page of a segment whose header may be invalid: -1 if
    never written (zeros, or the file too short), None if the pair is inconsistent."""
    try:
        with open(path, "rb") as f:
            f.seek(HEADER_SIZE - _MARK.size)
            raw = f.read(_MARK.size)
    except OSError:
        return None
    if len(raw) < _MARK.size:
        return -1
    check, value = _MARK.unpack(raw)
    if check == 0 and value == 0:
        return -1
    return value if check == ~value else None


def _unfinished_header(path: Path) -> str | None:
    """Why the header of ``path`` is one a power loss during a roll can leave (the file's
    size not on disk; its header page not on disk; only the template the background thread
    wrote before the roll on disk); None for any other damage, which is corruption."""
    try:
        with open(path, "rb") as f:
            page = f.read(HEADER_SIZE)
    except OSError:
        return None
    if not page:
        return "the file is empty (its size did not reach the disk)"
    if len(page) < HEADER_SIZE:
        return None
    if not any(page):
        return "its header page is zeros (it did not reach the disk)"
    first, created, crc = struct.unpack_from("<qq", page, 16) + struct.unpack_from("<I", page, 44)
    if page[:8] == b"RLJRNL01" and first == 0 and created == 0 and crc == 0:
        return "its header is the template written before the roll (the rest did not reach " \
               "the disk)"
    return None


def judge_roll(segs: list[tuple[int, Path]]) -> TornRoll | None:
    """Whether the newest of ``segs`` ((first sequence, path), ordered) is a torn roll: the
    durable mark is below its first sequence (nothing in it was durable) and its header is
    one a power loss leaves unfinished, or the previous segment's records end before it
    starts. None otherwise (the segment is judged by the other rules: any other damaged
    header is corruption; a damaged mark is never a reason to set aside)."""
    if len(segs) < 2:
        return None
    (prev_first, prev_path), (first, path) = segs[-2], segs[-1]
    try:
        prev = Segment.open(prev_path)
    except JournalCorruptError:
        return None  # the previous segment's own damage: corruption, judged elsewhere
    mark, own = durable_mark(prev), _raw_mark(path)
    if mark == -2 or own is None:
        return None
    d = max(mark, own)
    if d >= first:
        return None
    try:
        if Segment.open(path).first_sequence != first:
            return None  # a header that disagrees with its name: corruption
    except JournalCorruptError:
        reason = _unfinished_header(path)
        if reason is None:
            return None
    else:
        status, _, nxt, _ = prev.scan(HEADER_SIZE, prev_first, True)
        if status == ScanStatus.SCAN_END and nxt == first:
            return None  # the newest segment continues the journal: judged as the last
        reason = (f"the previous segment's records stop at sequence {nxt} "
                  f"({_WHY.get(status, 'nothing written')}), not at {first}")
    return TornRoll(str(path), first, d, reason,
                    f"{path}: a roll torn by a crash: {reason}; the durable mark {d} is below "
                    f"its first sequence {first}, so none of its records was durable")


def rebuild_index(seg: Segment, first: int, every: int = 1024
                  ) -> tuple[int, int, int, list[tuple[int, int, int]]]:
    """(last sequence, end offset, max timestamp, entries) of a sealed segment by a scan: what
    its ``.idx`` holds, for rewriting a missing or damaged one."""
    off, expect, max_ts = HEADER_SIZE, first, 0
    entries: list[tuple[int, int, int]] = []
    while True:
        status, nxt_off, nxt, n = seg.scan(off, expect, False, expect)
        if n == 0:
            break
        ts = seg.record(off).timestamp_ns
        max_ts = max(max_ts, ts)
        if (expect - first) % every == 0:
            entries.append((expect, off, max_ts))
        off, expect = nxt_off, nxt
        if status != 0:
            break
    return expect - 1, off, max_ts, entries
