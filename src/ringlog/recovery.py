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

A segment's header is synced before the segment gets its final name (and the directory is
fsynced before a record goes into it), so a segment with a damaged header is never a crash's
doing: corruption. Every decision is returned as a ``RecoveryDecision`` and logged by the
caller.
"""

from __future__ import annotations

import logging

import msgspec

from ._journal import HEADER_SIZE, Segment
from .errors import JournalCorruptError

__all__ = ["RecoveryDecision", "TailVerdict", "durable_mark", "judge_tail", "rebuild_index"]

log = logging.getLogger("ringlog.journal")

_SCAN_END = 1
_WHY = {2: "impossible length", 3: "checksum mismatch", 4: "sequence out of order",
        5: "non-zero padding", 6: "no length word"}


class RecoveryDecision(msgspec.Struct, frozen=True):
    """One thing recovery did to a journal directory and why (also logged).

    ``action``: ``truncate_torn_tail``, ``remove_temp_file``, ``rebuild_index`` or
    ``rewrite_durable_mark``."""

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
    if status == _SCAN_END and end <= off:
        if durable >= nxt:
            return TailVerdict(
                "corrupt", path, off, nxt, off, durable, durable, "durable records missing",
                f"{path}: the records end at byte offset {off} (after sequence {nxt - 1}) but "
                f"the durable mark says {durable}: durable records {nxt}..{durable} are missing "
                "(lost writes or zeroed pages); refusing to truncate or append over them")
        return TailVerdict("clean", path, off, nxt, off, durable, -1, "", "")
    reason = _WHY.get(status, "data after the last record's missing length word"
                      if status == _SCAN_END else f"status {status}")
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
