"""The journal: a directory of memory-mapped segments (docs/journal-format.md).

``Journal`` is the one appender of a directory: it validates and repairs the tail on open,
rolls segments (prepared and pre-faulted by a background thread, which also makes each roll
durable), runs group commit, writes the sparse index of sealed segments and drops old
segments when asked. ``JournalReader`` reads any journal (also one being written, from
another thread or process) from a sequence or a time; ``JournalTailer`` follows a live
journal. The hot append path, and the roll without the GIL, is ``ringlog._journal``.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import itertools
import json
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec

from . import durable
from ._journal import (
    HEADER_SIZE,
    LAZY_SYNC_MAX_MS,
    JournalAppender,
    Record,
    ScanStatus,
    Segment,
    corrupt,
    crc32c,
    direct_io_supported,
)
from .errors import ConfigError, JournalCorruptError, JournalError
from .events import EventRegistry
from .recovery import (
    RecoveryDecision,
    durable_mark,
    judge_roll,
    judge_tail,
    rebuild_index,
)

__all__ = ["Journal", "JournalReader", "JournalTailer", "Record", "RecoveryDecision",
           "TornTail"]

log = logging.getLogger("ringlog.journal")

_POLICIES = {"none": 0, "group": 1, "sync": 2}
FIRST_SEGMENT_SIZE = 1 << 20  # the first segment of a journal; each next one doubles
# ... or more: the next holds at least this long of appends at the rate the last one filled,
# so the background thread has that long to prepare the one after it (a journal filling 1, 2,
# 4 MiB in milliseconds outran it, and each such roll was made on the appending thread)
FILL_AHEAD_S = 0.25
SPARE_UNDER_S = 1.0  # a journal filling a segment faster than this has one more prepared
# Preparing the next segment maps its pages a chunk at a time (~75 us of CPU each here),
# pausing between chunks while the current segment is less than half full: one burst for a
# whole segment (2.4 ms for 8 MiB, ~20 ms for 64 MiB on the CI VM) right after a roll takes
# the core from the appending thread when a producer keeps the other one busy
PREFAULT_CHUNK = 256 << 10
PREFAULT_REST = 3.0  # a prepared segment's pre-fault pauses up to 3x its work: 1/4 of a CPU
# prefault "zero" writes a segment twice (zeros, then records): worth it while a group commit
# carries a few blocks (each sync into unwritten blocks writes the inode too), not for a
# journal filling faster than this, whose larger syncs amortise that and whose disk
# bandwidth the zeros would take (docs/journal-format.md, "Preparing segments")
ZERO_FILL_UNDER = 64 << 20  # bytes per second
_zero_fill = Segment.write_zeros  # (a name of its own: a test makes it fail)
_IDX_MAGIC = b"RLJIDX01"
_IDX_HEAD = struct.Struct("<8sIIqqq")  # magic, count, pad, last seq, end offset, max ts


class TornTail(msgspec.Struct, frozen=True):
    """What opening a journal truncated: a record torn by a crash, and what was dropped."""

    path: str
    offset: int
    sequence: int
    bytes_dropped: int
    reason: str


def _seg_name(first: int) -> str:
    return f"{first:020d}.seg"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """(first sequence, path) of every segment file, ordered by first sequence."""
    out = []
    for p in directory.glob("*.seg"):
        try:
            out.append((int(p.stem), p))
        except ValueError:
            raise JournalCorruptError(f"{p}: not a segment name (20 digits expected)",
                                      str(p), 0) from None
    return sorted(out)


def _align8(n: int) -> int:
    return (n + 7) & ~7


def _read_index(seg_path: Path) -> tuple[int, int, int, list[tuple[int, int, int]]] | None:
    """(last sequence, end offset, max timestamp, entries) of a sealed segment's .idx; None
    if absent or damaged."""
    p = seg_path.with_suffix(".idx")
    try:
        data = p.read_bytes()
        magic, count, _, last, end, max_ts = _IDX_HEAD.unpack_from(data)
        body = data[:-4]
        if magic != _IDX_MAGIC or len(body) != _IDX_HEAD.size + 24 * count:
            raise ValueError("bad index layout")
        if struct.unpack_from("<I", data, len(body))[0] != crc32c(body):
            raise ValueError("bad index checksum")
    except (OSError, ValueError, struct.error) as e:
        if p.exists():
            log.warning("ignoring index %s (%s); it will be rebuilt by a scan", p, e)
        return None
    ents = list(struct.iter_unpack("<qqq", body[_IDX_HEAD.size:]))
    return last, end, max_ts, ents


def _write_index(seg_path: Path, last: int, end: int, max_ts: int,
                 entries: list[tuple[int, int, int]]) -> None:
    body = _IDX_HEAD.pack(_IDX_MAGIC, len(entries), 0, last, end, max_ts) + b"".join(
        struct.pack("<qqq", *e) for e in entries)
    tmp = seg_path.with_suffix(".idx.tmp")
    # not fsynced: an index is a hint (a damaged one is reported and rebuilt by a scan)
    durable.write_file(tmp, body, struct.pack("<I", crc32c(body)), sync=False)
    durable.rename(tmp, seg_path.with_suffix(".idx"))



def prefault_pause(took: float, chunks_left: int, filled: int, bytes_left: int,
                   elapsed: float) -> float:
    """Seconds to rest after a pre-fault chunk that took ``took`` seconds, with
    ``chunks_left`` to go (none: no rest): ``PREFAULT_REST`` times its time, shortened (to
    zero if need be) so that the rest ends half-way to the roll, when the appender filled
    ``filled`` bytes of its segment in the ``elapsed`` seconds since the pre-fault began
    and has ``bytes_left`` to go."""
    if not chunks_left:  # the last: the segment is offered at once
        return 0.0
    pause = PREFAULT_REST * took
    if filled > 0:
        to_roll = bytes_left * elapsed / filled
        pause = min(pause, max(0.0, (to_roll / 2 - chunks_left * took) / chunks_left))
    return pause


def cut_after(path: str | Path, sequence: int) -> RecoveryDecision | None:
    """Removes every record after ``sequence`` from a journal no appender has open: a
    processor's recovery cutting the outputs of inputs a crash lost (they were never released;
    a replay does not make them again). Zeroes them in their segment, deletes the segments
    after it and the index of the one cut into, lowers the durable mark to ``sequence``; all
    durable before it returns. None when the journal holds nothing after ``sequence``."""
    directory = Path(path)
    reader = JournalReader(directory, verify=False)
    try:
        found = reader.locate(sequence + 1)
        segs = reader.segments()
    finally:
        reader.close()
    if found is None:
        return None
    i, _, off = found
    if sequence + 1 < segs[0][0]:
        raise JournalError(f"{directory}: cannot keep only the records up to {sequence}: the "
                           f"journal starts at {segs[0][0]}", path=str(directory))
    seg_path = segs[i][1]
    seg = Segment.open(seg_path, True)
    end = seg.last_nonzero(off, seg.size)
    if end <= off and i == len(segs) - 1:
        return None  # (a torn tail only: opening the journal truncates it)
    seg.zero(off, end)
    try:
        mark = seg.durable_sequence
    except JournalCorruptError:  # a torn hint (a sealed segment's is not checked on open)
        mark = sequence + 1
    if mark > sequence:
        seg.write_durable_mark(sequence)
    seg.sync()
    removed = end - off
    for _, p in segs[i + 1:]:
        removed += p.stat().st_size
        durable.unlink(p)
        durable.unlink(p.with_suffix(".idx"), missing_ok=True)
    durable.unlink(seg_path.with_suffix(".idx"), missing_ok=True)  # it may list cut records
    durable.fsync_dir(directory)
    return RecoveryDecision("cut_after", str(seg_path), off, sequence + 1, removed,
                            f"records after {sequence} removed ({len(segs) - i - 1} later "
                            "segments deleted)")


class JournalReader:
    """Reads a journal directory; usable while another thread or process appends to it.

    ``records(from_sequence=..., from_time=...)`` yields zero-copy Record views in sequence
    order, checking every checksum (``verify``) and the density of sequences across segments.
    """

    def __init__(self, path: str | Path, *, verify: bool = True) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise JournalError(f"{self.path} is not a journal directory")
        self.verify = verify
        self._open: dict[int, Segment] = {}

    def segments(self) -> list[tuple[int, Path]]:
        """(first sequence, path) of every segment, in order."""
        return list_segments(self.path)

    def segment(self, first: int, path: Path) -> Segment:
        """The mapped segment with this first sequence (cached)."""
        seg = self._open.get(first)
        if seg is None:
            seg = Segment.open(path)
            if seg.first_sequence != first:
                raise JournalCorruptError(f"{path}: header says first sequence "
                                          f"{seg.first_sequence}, the name says {first}",
                                          str(path), 16)
            self._open[first] = seg
        return seg

    @property
    def schema(self) -> list[dict[str, Any]]:
        """The schema descriptor of the newest segment (type ids, names, fields)."""
        segs = self.segments()
        if not segs:
            return []
        raw = self.segment(*segs[-1]).schema
        return json.loads(raw) if raw else []

    def locate(self, sequence: int) -> tuple[int, Segment, int] | None:
        """(segment index, segment, byte offset) of ``sequence``; None if past the end."""
        segs = self.segments()
        if not segs:
            return None
        i = max(0, bisect.bisect_right([f for f, _ in segs], sequence) - 1)
        first, path = segs[i]
        seg = self.segment(first, path)
        off, expect = HEADER_SIZE, first
        idx = _read_index(path)
        if idx is not None:
            for s, o, _ in reversed(idx[3]):
                if s <= sequence:
                    off, expect = o, s
                    break
        if sequence > expect:
            _, off, expect, _ = seg.scan(off, expect, False, sequence - 1)
            if expect != sequence:
                return None
        return i, seg, off

    def locate_time(self, timestamp_ns: int) -> int:
        """The first sequence whose record (or an earlier one) reaches ``timestamp_ns``;
        timestamps are event times, so this is exact for non-decreasing timestamps."""
        start = None
        for first, path in self.segments():
            idx = _read_index(path)
            if idx is not None and idx[2] < timestamp_ns:
                continue  # the whole sealed segment is earlier
            start = first
            if idx is not None:
                for s, _, ts in idx[3]:
                    if ts >= timestamp_ns:
                        break
                    start = s
            break
        if start is None:
            return -1
        for rec in self.records(start):
            if rec.timestamp_ns >= timestamp_ns:
                return rec.sequence
        return -1

    def records(self, from_sequence: int | None = None, *,
                from_time: int | None = None, to_sequence: int | None = None
                ) -> Iterator[Record]:
        """Yields records from ``from_sequence`` (default: the first) or the first at or
        after ``from_time``, up to ``to_sequence`` inclusive or the written end."""
        if from_time is not None:
            from_sequence = self.locate_time(from_time)
            if from_sequence < 0:
                return
        segs = self.segments()
        if not segs:
            return
        if from_sequence is None or from_sequence < segs[0][0]:
            if from_sequence is not None and from_sequence < segs[0][0]:
                raise JournalError(f"sequence {from_sequence} is before the journal's first "
                                   f"retained sequence {segs[0][0]} (older segments dropped)")
            from_sequence = segs[0][0]
        found = self.locate(from_sequence)
        if found is None:
            return
        i, seg, off = found
        expect = from_sequence
        reread = False
        while True:
            start = expect  # this pass over the segment starts at `off`, sequence `start`
            for _, rec in seg.records(off, expect, self.verify):
                if to_sequence is not None and rec.sequence > to_sequence:
                    return
                yield rec
                expect = rec.sequence + 1
            segs = self.segments()
            if i + 1 >= len(segs):
                return
            first, path = segs[i + 1]
            if first > expect and not reread:
                # a live journal rolled after this segment was read to its then end (the
                # appender rolls only once the segment's last record is in the file): read
                # on from the end of what was read (found once here, not tracked per record)
                reread = True
                if expect > start:
                    _, off, _, _ = seg.scan(off, start, False, expect - 1)
                continue
            if first != expect:
                try:
                    mark = durable_mark(seg, self.segment(first, path))
                except JournalCorruptError:  # its header: the gap is reported below
                    mark = durable_mark(seg)
                if first > expect and 0 <= mark < expect:
                    # records never durable, and the next segment exists: a crash tore this
                    # one's end after the roll (a torn roll, which repair sets aside)
                    return
                raise JournalCorruptError(
                    f"{path}: first sequence {first} but the previous segment ends before "
                    f"{expect} (a missing or out-of-order segment)", str(path), 0, expect)
            reread = False
            # unmap what was read (views handed out keep their own reference): a reader
            # streaming a journal larger than memory keeps one segment mapped, not all
            self._open.pop(segs[i][0], None)
            i, seg, off = i + 1, self.segment(first, path), HEADER_SIZE

    def __iter__(self) -> Iterator[Record]:
        return self.records()

    def walk(self, from_sequence: int,
             read: Callable[[Segment, int, int], tuple[int, int, int, int]]) -> int:
        """Hands every segment from ``from_sequence`` on to ``read(segment, offset, sequence)``,
        a scanner that returns ``Segment.scan``'s (status, offset, next sequence, count), e.g.
        a compiled replay loop; checks that each segment ends cleanly and that the next one
        continues densely. Returns the number of records read."""
        segs = self.segments()
        if not segs:
            return 0
        if from_sequence < segs[0][0]:
            raise JournalError(f"sequence {from_sequence} is before the journal's first "
                               f"retained sequence {segs[0][0]} (older segments dropped)")
        found = self.locate(from_sequence)
        if found is None:
            return 0
        i, seg, off = found
        expect, total = from_sequence, 0
        while True:
            status, off, expect, n = read(seg, off, expect)
            total += n
            if status != ScanStatus.SCAN_END:
                raise corrupt(str(seg.path), off, expect, status)
            segs = self.segments()
            if i + 1 >= len(segs):
                return total
            first, path = segs[i + 1]
            if first != expect:
                raise JournalCorruptError(
                    f"{path}: first sequence {first} but the previous segment ends before "
                    f"{expect} (a missing or out-of-order segment)", str(path), 0, expect)
            i, seg, off = i + 1, self.segment(first, path), HEADER_SIZE

    def verify_all(self) -> tuple[int, int]:
        """Checks every checksum and the sequence density of every segment without the GIL;
        returns (records, last sequence). Raises JournalCorruptError at the first problem,
        except a torn tail of the last segment or a torn roll (recovery.judge_roll), which
        ``Journal``'s open reports and repairs."""
        segs = self.segments()
        torn = judge_roll(segs)
        if torn is not None:  # the previous segment is the last one
            segs = segs[:-1]
        count, expect = 0, segs[0][0] if segs else 0
        for i, (first, path) in enumerate(segs):
            seg = self.segment(first, path)
            if first != expect:
                raise JournalCorruptError(f"{path}: first sequence {first}, expected {expect} "
                                          "(missing or out-of-order segment)", str(path), 0,
                                          expect)
            status, off, expect, n = seg.scan(HEADER_SIZE, first, True)
            count += n
            last = i == len(segs) - 1
            if last:  # the same rule as open and repair: torn tail or corruption
                marks = [self.segment(*s) for s in segs[-2:]]
                mark = durable_mark(*marks)
                if torn is not None and mark != -2:
                    mark = max(mark, torn.durable)
                verdict = judge_tail(seg, off, expect, status, mark)
                if verdict.kind == "corrupt":
                    raise verdict.error()
            elif status != ScanStatus.SCAN_END:
                raise corrupt(str(path), off, expect, status)
            junk = -1 if last else seg.first_nonzero(off, seg.size)
            if junk >= 0:  # a sealed segment is all zeros after its last record
                raise JournalCorruptError(f"{path}: non-zero byte at offset {junk} after the "
                                          f"last record (sequence {expect - 1})", str(path),
                                          junk, expect)
        return count, expect - 1

    @property
    def durable_sequence(self) -> int:
        """The highest sequence the appender (in any process) knows to be on disk, from the
        newest segment's header; -1 if none. Records up to it survive a power loss."""
        # the previous segment too: during a roll the newest may show its sealing-time value
        # while the appender still publishes into the previous one
        return max((self.segment(*s).durable_sequence for s in self.segments()[-2:]),
                   default=-1)

    def close(self) -> None:
        """Drops the mappings (views already handed out keep theirs alive)."""
        self._open.clear()


class JournalTailer:
    """Follows a live journal like ``tail -f``: ``poll()`` returns the records appended since
    the last call. Works across threads and processes (the segments are shared mappings).
    Not thread-safe: one reading thread."""

    def __init__(self, path: str | Path, from_sequence: int = 0, *, verify: bool = True) -> None:
        self.reader = JournalReader(path, verify=verify)
        self.next_sequence = from_sequence
        self._pos: tuple[int, Segment, int] | None = None

    def poll(self, timeout: float = 0.0, max_records: int = 4096) -> list[Record]:
        """Records from ``next_sequence`` on; waits up to ``timeout`` seconds for the first."""
        deadline = time.monotonic() + timeout
        pause = 0.0002
        while True:
            out = self._read(max_records)
            if out or time.monotonic() >= deadline:
                return out
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.01)

    def _read(self, max_records: int) -> list[Record]:
        if self._pos is None:
            self._pos = self.reader.locate(self.next_sequence)
            if self._pos is None:
                return []
        out: list[Record] = []
        i, seg, off = self._pos
        while len(out) < max_records:
            for o, rec in seg.records(off, self.next_sequence, self.reader.verify):
                out.append(rec)
                off = o + 8 + _align8(48 + len(rec.payload))
                self.next_sequence = rec.sequence + 1
                if len(out) >= max_records:
                    break
            else:
                segs = self.reader.segments()
                if i + 1 < len(segs) and segs[i + 1][0] == self.next_sequence:
                    # the appender only rolls after the last record of `seg` is committed
                    status, _, _, _ = seg.scan(off, self.next_sequence, self.reader.verify)
                    if status == ScanStatus.SCAN_END:
                        i, seg, off = i + 1, self.reader.segment(*segs[i + 1]), HEADER_SIZE
                        continue
                break
        self._pos = (i, seg, off)
        return out

    @property
    def durable_sequence(self) -> int:
        """The writer's durable sequence (see JournalReader.durable_sequence)."""
        return self.reader.durable_sequence

    def __iter__(self) -> Iterator[Record]:
        """Yields records forever (until the process stops iterating)."""
        while True:
            yield from self.poll(timeout=0.1)


class Journal:
    """The appender of one journal directory (exclusive: a lock file keeps out a second one).

    ``durability``: ``none`` (page cache), ``group`` (the default: a background thread
    fdatasyncs whatever was appended, starting the next fdatasync as soon as the previous one
    returns while appends keep coming, and sleeping when there is nothing to sync; with
    ``group_events`` > 1 it waits for that many events or ``group_ms`` ms first) or ``sync``
    (an append returns once durable). Not thread-safe for appends: one appending thread.

    ``lazy_sync_ms`` (``group``, back to back): while no thread waits for a sequence to be
    durable (``appender.wait_durable``, a processor's release of outputs held for their
    inputs), the group commit lets appends gather this long after each fdatasync before the
    next; a waiter makes it sync at once and back to back until what it waits for is
    durable. A power loss may then take the appends of up to that long plus one fdatasync
    that nothing waited for. 0 (the default here): back to back always.

    ``prefault``: how the background thread prepares the next segment. ``True`` picks by
    the write path (``buffered``) and the policy: ``"write"`` when records are stored into
    the map (every page touched by a store: no first-touch fault on the hot path);
    ``"zero"`` when they are written with pwrite() under ``group`` or ``sync`` (the file
    written with zeros, paced, its write-back started as it goes: its blocks are then plain
    data, so an fdatasync reaching a new block does not write the inode as well, which a
    preallocated block's first write-back makes it do; the first segment too, when the
    journal is created; a journal filling faster than ``ZERO_FILL_UNDER`` bytes a second is
    pre-faulted by reads instead); ``"read"`` with pwrite() under ``none`` (pages mapped by a
    load: nothing dirtied, so no zero page is written back, and no fdatasync to spare); False: no
    segment prepared ahead (the appending thread creates each one when it rolls; the
    roll's syncs stay the background thread's, docs/journal-format.md).

    Segment sizes: the first is ``first_segment_size`` (1 MiB by default), each next one
    twice the last or more (``FILL_AHEAD_S`` of appends at the rate the last one filled),
    up to ``segment_size``; a journal that fills one in under ``SPARE_UNDER_S`` keeps two
    prepared ahead.

    ``buffered``: how records reach the segment file. True (the default): each batch is
    built in a private buffer and written with ``pwrite()``; False: records are stored
    straight into the shared map, which takes a page fault on the first store into every
    4 KiB page that an fdatasync (or the kernel's background writeback, under ``none``)
    has cleaned: measured slower under every policy (docs/processor.md). Readers map the
    segments either way (the page cache is one).

    ``write_behind`` (buffered, durability ``none`` or ``group``): the appending thread hands
    whole buffers of records (32 KiB or more, or any while others are in flight) to a writer
    thread of the journal's own, which writes them in order and only then publishes them as
    appended (``last_sequence``); the appender builds the next batch meanwhile. A commit
    returns before its records are in the file: readers, ``sync()`` and the group commit see
    them once written; ``appender.flush()`` and ``sync()`` wait for them. A kill -9 loses the
    records still in those buffers (at most 8 of them), which a processor's output journal
    recomputes from the input journal on restart (docs/journal-format.md, "Write-behind").

    ``direct_io`` (with ``write_behind``): the writer stages the records and writes whole
    4 KiB blocks with O_DIRECT, bypassing the page cache: no page allocated, dirtied and
    written back per 4 KiB, no segment pre-fault (docs/journal-format.md, "Direct I/O").
    Records reach the file once 256 KiB are staged, ``linger_ms`` after a commit, or when a
    ``flush()``/``sync()`` asks; a kill -9 loses what is staged (as the write-behind
    buffers). Readers see the records through the disk, not the page cache: suited to a
    journal that is written far more than it is tailed, such as a processor's output
    journal. A file system that refuses O_DIRECT is a ConfigError naming the directory.
    """

    def __init__(self, path: str | Path, *, segment_size: int = 64 << 20,
                 durability: Literal["none", "group", "sync"] = "group",
                 group_events: int = 1, group_ms: float = 2.0,
                 registry: EventRegistry | None = None, first_sequence: int = 0,
                 index_every: int = 1024,
                 prefault: bool | Literal["write", "read", "zero"] = True,
                 first_segment_size: int | None = None,
                 buffered: bool = True, write_behind: bool = False,
                 direct_io: bool = False, linger_ms: float = 5.0,
                 lazy_sync_ms: float = 0.0) -> None:
        if durability not in _POLICIES:
            raise ConfigError("Journal.durability", f"must be one of {sorted(_POLICIES)}, got "
                              f"{durability!r}", durability)
        if segment_size < 2 * HEADER_SIZE or segment_size % 4096:
            raise ConfigError("Journal.segment_size", f"must be a multiple of 4096 and at "
                              f"least {2 * HEADER_SIZE}, got {segment_size}", segment_size)
        if group_ms <= 0 or group_events < 1:
            raise ConfigError("Journal.group_ms" if group_ms <= 0 else "Journal.group_events",
                              "group_ms must be > 0 and group_events >= 1",
                              group_ms if group_ms <= 0 else group_events)
        if buffered not in (True, False):
            raise ConfigError("Journal.buffered", f"must be True or False, got {buffered!r}",
                              buffered)
        if write_behind not in (True, False):
            raise ConfigError("Journal.write_behind", f"must be True or False, got "
                              f"{write_behind!r}", write_behind)
        if write_behind and (not buffered or durability == "sync"):
            raise ConfigError("Journal.write_behind", "needs buffered=True and durability "
                              "'none' or 'group' (under 'sync' an append returns once "
                              f"durable), got buffered={buffered!r}, durability={durability!r}",
                              write_behind)
        if direct_io not in (True, False):
            raise ConfigError("Journal.direct_io", f"must be True or False, got {direct_io!r}",
                              direct_io)
        if direct_io and not write_behind:
            raise ConfigError("Journal.direct_io", "needs write_behind=True (its writer makes "
                              "the device writes)", direct_io)
        if not (isinstance(linger_ms, int | float) and linger_ms > 0):
            raise ConfigError("Journal.linger_ms", f"must be a number > 0, got {linger_ms!r}",
                              linger_ms)
        if not (isinstance(lazy_sync_ms, int | float) and 0 <= lazy_sync_ms <= LAZY_SYNC_MAX_MS):
            raise ConfigError("Journal.lazy_sync_ms", f"must be a number from 0 to "
                              f"{LAZY_SYNC_MAX_MS}, got {lazy_sync_ms!r}", lazy_sync_ms)
        # segments grow: a short-lived journal stays small on disk (docs/journal-format.md)
        if first_segment_size is None:
            first_segment_size = min(segment_size, FIRST_SEGMENT_SIZE)
        if first_segment_size < 2 * HEADER_SIZE or first_segment_size % 4096 \
                or first_segment_size > segment_size:
            raise ConfigError("Journal.first_segment_size", f"must be a multiple of 4096 in "
                              f"{2 * HEADER_SIZE}..segment_size, got {first_segment_size}",
                              first_segment_size)
        self.first_segment_size = first_segment_size
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.path / "LOCK", "a+b")  # noqa: SIM115
        except OSError as e:
            raise JournalError(f"cannot open journal {self.path}: {e.strerror} (errno "
                               f"{e.errno})", errno=e.errno, path=e.filename or str(self.path)
                               ) from e
        if direct_io and not direct_io_supported(self.path):
            self._lock_file.close()
            raise ConfigError("Journal.direct_io", f"the file system of {self.path} does not "
                              "take O_DIRECT writes; use direct_io=False there", str(self.path))
        self.direct_io = direct_io
        self.segment_size = segment_size
        self.durability = durability
        self.group_ms = group_ms
        self.registry = registry
        self._schema = json.dumps(registry.describe() if registry else [],
                                  separators=(",", ":")).encode()
        if prefault not in (True, False, "write", "read", "zero"):
            raise ConfigError("Journal.prefault", "must be True, False, 'write', 'read' or "
                              f"'zero', got {prefault!r}", prefault)
        if prefault is True:  # stores into the map want writable pages; pwrite() does not,
            # and under fdatasyncs it wants written blocks (see the docstring)
            prefault = ("read" if durability == "none" else "zero") if buffered else "write"
        self._prefault = prefault
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise JournalError(f"{self.path} is already open for appending by another "
                               "Journal (one appender per journal)") from None
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # a segment offered, a roll made durable
        self._roll_lock = threading.Lock()  # one thread at a time makes a roll durable
        self._prepare_failing = False
        self.fallback_rolls = 0  # rolls done with the GIL (no prepared segment was ready)
        self._fill_rate = 0.0  # bytes per second the last full segment filled at (0: unknown)
        self._spare: Segment | None = None  # prepared after the offered one (_prepare_next)
        self._offered_size = 0  # of the segment offered last
        self._error: BaseException | None = None
        self._closed = False
        self.recovery: TornTail | None = None
        self.decisions: list[RecoveryDecision] = []  # what opening did and why (logged)
        for stale in self.path.glob("*.tmp"):
            durable.unlink(stale, missing_ok=True)
            self._decide(RecoveryDecision("remove_temp_file", str(stale),
                                          reason="left by a crash"))
        self._appender = JournalAppender(self, _POLICIES[durability], group_events, index_every,
                                         buffered, write_behind, direct_io, linger_ms,
                                         float(lazy_sync_ms))
        try:
            self._open_tail(first_sequence)
        except BaseException:
            self._release_lock()
            raise
        self._thread = threading.Thread(target=self._background,
                                        name=f"rl-sync-{self.path.name}"[:15], daemon=True)
        self._thread.start()
        self._writer: threading.Thread | None = None
        if write_behind:
            self._writer = threading.Thread(target=self._write_behind,
                                            name=f"rl-write-{self.path.name}"[:15], daemon=True)
            self._writer.start()

    @property
    def thread(self) -> threading.Thread:
        """The background thread: group commit, segment preparation, a roll's syncs."""
        return self._thread

    @property
    def threads(self) -> list[threading.Thread]:
        """Every thread of the journal's own: the background thread, and the write-behind
        writer (``write_behind``)."""
        return [self._thread] + ([self._writer] if self._writer is not None else [])

    # -- open -----------------------------------------------------------------------------
    def _open_tail(self, first_sequence: int) -> None:
        segs = list_segments(self.path)
        floor = self._set_aside_torn_roll(segs)
        if floor is not None:
            segs = segs[:-1]
        if not segs:
            seg = self._new_segment(first_sequence, zero=self._prefault == "zero")
            self._appender.attach(seg, HEADER_SIZE, first_sequence)
            return
        expect = segs[0][0]
        for first, path in segs[:-1]:  # sealed segments: cheap checks via their index
            if first != expect:
                raise JournalCorruptError(f"{path}: first sequence {first}, expected {expect}: "
                                          "a segment is missing or out of order", str(path), 0,
                                          expect)
            idx = _read_index(path)
            if idx is None:
                sealed = Segment.open(path)
                status, off, nxt, _ = sealed.scan(HEADER_SIZE, first, True)
                if status != ScanStatus.SCAN_END:
                    raise corrupt(str(path), off, nxt, status)
                expect = nxt
                self._rebuild_index(sealed, first, path)
            else:
                expect = idx[0] + 1
        first, path = segs[-1]
        if first != expect:
            raise JournalCorruptError(f"{path}: first sequence {first}, expected {expect}: a "
                                      "segment is missing or out of order", str(path), 0, expect)
        seg = Segment.open(path, True)
        if seg.first_sequence != first:
            raise JournalCorruptError(f"{path}: header says first sequence "
                                      f"{seg.first_sequence}, the name says {first}",
                                      str(path), 16)
        marks = [Segment.open(segs[-2][1]), seg] if len(segs) > 1 else [seg]
        mark = durable_mark(*marks)
        if mark != -2 and floor is not None:
            mark = max(mark, floor)  # the torn roll's own mark, if it had one
        status, off, nxt, _ = seg.scan(HEADER_SIZE, first, True)
        verdict = judge_tail(seg, off, nxt, status, mark)
        if verdict.kind == "corrupt":
            log.error("journal %s: %s", self.path, verdict.message)
            raise verdict.error()
        if verdict.kind == "torn_tail":
            seg.zero(off, verdict.end)
            seg.sync()
            self.recovery = TornTail(str(path), off, nxt, verdict.end - off, verdict.reason)
            self._decide(RecoveryDecision("truncate_torn_tail", str(path), off, nxt,
                                          verdict.end - off, verdict.message))
        self._appender.attach(seg, off, nxt)
        seg.sync()  # what survived a restart is made durable before the mark says so
        if mark == -2:
            seg.write_durable_mark(nxt - 1)
            self._decide(RecoveryDecision("rewrite_durable_mark", str(path), 4080, nxt - 1,
                                          reason="the durable-mark hint was damaged"))
        self._appender.mark_durable(nxt - 1)
        if seg.schema != self._schema:
            # the header describes the records after it: a changed registry (a new schema
            # version) starts a segment of its own, so old records keep their old versions
            if off == HEADER_SIZE:
                seg.seal_header(first, self._schema, time.time_ns(), nxt - 1)
                seg.sync()
            else:
                self._roll_now(self._appender)

    def _set_aside_torn_roll(self, segs: list[tuple[int, Path]]) -> int | None:
        """Renames a torn roll's segment (recovery.judge_roll) to ``*.seg.torn``, where no
        reader looks, and removes the previous segment's index (a hint that may list records
        a power loss tore). Returns the durable mark judged by; None if nothing was torn."""
        torn = judge_roll(segs)
        if torn is None:
            return None
        path = Path(torn.path)
        durable.rename(path, path.with_name(path.name + ".torn"))
        durable.unlink(path.with_suffix(".idx"), missing_ok=True)
        durable.unlink(segs[-2][1].with_suffix(".idx"), missing_ok=True)
        durable.fsync_dir(self.path)
        self._decide(RecoveryDecision("set_aside_torn_roll", torn.path, 0, torn.sequence,
                                      path.with_name(path.name + ".torn").stat().st_size,
                                      torn.message))
        return torn.durable

    def _rebuild_index(self, seg: Segment, first: int, path: Path) -> None:
        """Writes the missing or damaged ``.idx`` of a sealed segment again from a scan."""
        last, end, max_ts, entries = rebuild_index(seg, first)
        had = path.with_suffix(".idx").exists()
        _write_index(path, last, end, max_ts, entries)
        if had:
            self._decide(RecoveryDecision("rebuild_index", str(path.with_suffix(".idx")),
                                          sequence=first, reason="damaged index"))

    def _decide(self, d: RecoveryDecision) -> None:
        self.decisions.append(d)
        log.warning("journal %s: recovery: %s %s (offset %d, sequence %d, %d bytes): %s",
                    self.path, d.action, d.path, d.offset, d.sequence, d.bytes, d.reason)

    def _next_size(self, need: int = 0, after: int | None = None) -> int:
        """The size of the next segment: the first is ``first_segment_size``, each next one
        twice the current (or the segment of ``after`` bytes it follows), more if the last
        one filled fast (``FILL_AHEAD_S``), up to ``segment_size``, and large enough for a
        record of ``need`` bytes (JournalError if even ``segment_size`` is not)."""
        if HEADER_SIZE + need > self.segment_size:
            raise JournalError(f"a record of {need} bytes cannot fit a segment of "
                               f"{self.segment_size} bytes; use a larger segment_size")
        cur = self._appender.segment
        if after is None and cur is not None:
            after = cur.size
        if after is None:
            size = self.first_segment_size
        else:
            size = max(self.first_segment_size, 2 * after)
            while size < self.segment_size and size < self._fill_rate * FILL_AHEAD_S:
                size *= 2
            size = min(self.segment_size, size)
        return max(size, (HEADER_SIZE + need + 4095) & ~4095)

    def _note_fill(self, seg: Segment, end: int, until_ns: int) -> None:
        """Notes the rate at which ``seg`` filled to byte ``end`` from its creation (its
        header's time) to ``until_ns`` (a segment reopened after a restart reads slow)."""
        took = (until_ns - seg.created_ns) / 1e9
        if took > 0:
            self._fill_rate = (end - HEADER_SIZE) / took

    def _new_segment(self, first: int, size: int | None = None, zero: bool = False
                     ) -> Segment:
        """The next segment (the offered one, else one made here) sealed and named for
        ``first``; ``zero``: a segment made here is zero-filled first (the first one, small,
        when the journal opens: see ``prefault``)."""
        size = self._next_size() if size is None else size
        seg = self._take_prepared()
        if seg is not None and seg.size < size:  # prepared for a smaller record
            durable.unlink(seg.path)
            seg = None
        if seg is None:
            seg = Segment.prepare(self.path / "roll.tmp", size)
            if zero:
                seg.write_zeros(0, seg.size)  # made durable by the sync below
        seg.seal_header(first, self._schema, time.time_ns(), self._appender.durable_sequence)
        # the header is on disk before the name is (whatever the policy): a segment under its
        # final name always has a valid header, so a damaged one is never a crash's doing
        seg.sync()
        seg.move_to(self.path / _seg_name(first))
        if "no_roll_dir_fsync" not in durable.planted:  # a test-only planted bug
            durable.fsync_dir(self.path)
        return seg

    def _take_prepared(self) -> Segment | None:
        return self._appender.take_offer()

    def _roll(self, appender: JournalAppender, need: int = 0) -> None:
        """Called by the appender (with the GIL) when the next record (``need`` bytes) does
        not fit and it could not roll by itself (no prepared segment offered, or too small,
        or the last roll's syncs still running): a roll on this thread, counted. The last
        roll's syncs are made here if still pending (they come first). With no segment
        offered, it makes the next one here (create, preallocate, header template: no
        sync) and rolls into it as the appender would, waking the background thread for
        the syncs; only what that cannot do (a record larger than the offered segment, a
        failed rename) takes every step here (``_roll_now``)."""
        self.fallback_rolls += 1
        if appender.roll_pending:
            self._finish_roll()
        self._note_fill(appender.segment, appender.pos, time.time_ns())  # (after the last's)
        if appender.fast_roll(need):
            appender.wake()
            return
        if not appender.offered:
            seg = Segment.prepare(self.path / f"rolling-{time.monotonic_ns()}.tmp",
                                  self._next_size(need))
            seg.write_template(self._schema)
            # the background thread may have offered one meanwhile (the preallocation ran
            # without the GIL): then that one is taken, and this one deleted
            if not appender.offer(seg, self.path):
                durable.unlink(seg.path)
            if appender.fast_roll(need):
                appender.wake()
                return
        self._roll_now(appender, need)  # takes what is offered if it fits, else deletes it

    def _roll_now(self, appender: JournalAppender, need: int = 0) -> None:
        """Rolls with every step on this thread: index, old segment synced, new segment
        sealed, synced, named and the directory fsynced before a record goes into it."""
        size = self._next_size(need)  # before anything changes: a record too large refuses
        self._finish_roll()  # the previous roll's steps first, in order
        old = appender.segment
        last = appender.next_sequence - 1  # mid-batch, last_sequence is not yet published
        _write_index(Path(old.path), last, appender.pos, appender.max_timestamp,
                     appender.take_index())
        if self.durability != "none":
            # sealed means on disk: a power loss may tear only the last segment's tail
            old.sync()
        new = self._new_segment(last + 1, size)
        appender.attach(new, HEADER_SIZE, last + 1)
        appender.wake()  # the background thread prepares the next one

    def _finish_roll(self) -> None:
        """Makes the appender's last roll without the GIL durable, if one is pending: the
        old segment's index and fdatasync, the new segment's fdatasync (its header) and the
        directory fsync (its name); only then may the durable mark pass the roll. Any thread;
        on a failure the journal fails (appends raise)."""
        a = self._appender
        with self._roll_lock:
            taken = a.take_roll()
            if taken is None:
                return
            old, new, last, end, max_ts, entries = taken
            self._note_fill(old, end, new.created_ns)
            if "roll_mark_before_sync" in durable.planted:  # a test-only planted bug
                a.roll_done(a.last_sequence)
                time.sleep(0.02)  # a window wide enough for the simulator's crashes to fall in
            try:
                _write_index(Path(old.path), last, end, max_ts, entries)
                if self.durability != "none":
                    old.sync()
                upto = a.last_sequence  # what new.sync() below covers
                new.sync()
                if "no_roll_dir_fsync" not in durable.planted:  # a test-only planted bug
                    durable.fsync_dir(self.path)
            except BaseException:
                a.fail()
                a.wake()  # a sync-policy append waiting for this roll raises
                raise
            a.roll_done(upto if self.durability != "none" else -1)
        with self._ready:
            self._ready.notify_all()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Waits until the next roll costs the appending thread microseconds (a prepared
        segment is offered and the last roll is durable); False after ``timeout`` seconds.
        For warm-ups and tests: appends never wait for this."""
        a = self._appender
        with self._ready:
            return self._ready.wait_for(lambda: (a.offered and not a.roll_pending) or
                                        self._closed, timeout) and not self._closed

    @property
    def fast_rolls(self) -> int:
        """Rolls the appender made without the GIL (a prepared segment was ready)."""
        return self._appender.fast_rolls

    # -- background: group commit and segment preparation -------------------------------
    def _background(self) -> None:
        from .bench.cpu import name_thread

        name_thread(threading.current_thread().name)  # per-thread CPU figures, perf, top
        a = self._appender
        group = self.durability == "group"
        while not self._closed:
            # woken by a roll, by appends past the durable mark (group: with group_events 1
            # every such append), by close; the timeout is only a safety net, so an idle
            # journal sleeps, not polls
            timeout = self.group_ms / 1000.0 if group and a.group_events > 1 else 0.05
            try:
                if group:  # syncs and marks without the GIL until Python is needed
                    a.group_commit(timeout, bool(self._prefault) and not self._closed)
                else:
                    a.wait_for_work(timeout, False)
                if self._spare is not None and not a.offered:  # before the roll's syncs:
                    self._offer_spare()  # the next roll may come before they end
                self._finish_roll()  # before the next group sync: the mark passes rolls
                if group:
                    self._group_sync()
                if self._prefault and not self._closed and (
                        not a.offered or (self._spare is None and self._wants_spare())):
                    self._prepare_next()
            except Exception as e:  # surfaces on the next append
                self._error = e
                a.fail()
                a.wake()
                log.error("journal %s: %s failed: %s", self.path,
                          "group commit" if group else "making a roll durable", e)
                return

    def _write_behind(self) -> None:
        from .bench.cpu import name_thread

        name_thread(threading.current_thread().name)
        self._appender.run_writer()  # until close(): every item handed off is written

    def _group_sync(self) -> None:
        a = self._appender
        last = a.last_sequence
        current = a.segment
        if last <= a.durable_sequence:
            return
        # a roll between the two reads above leaves `last` or `current` stale: then the
        # mark is capped (JournalAppender._fast_roll) until _finish_roll, so it never passes
        # what this sync covered
        current.sync()
        a.mark_durable(last)

    def _prepare_next(self) -> None:
        """Offers the next segment (the spare if one is ready, else one made now); then, for
        a journal that fills a segment in under ``SPARE_UNDER_S``, prepares the one after it
        as a spare, so the background thread has two segments' time for each and a busy
        appender never finds none offered (the engine flow's output journal fills 64 MiB in
        about 0.1 s; a prepare beside its group commits took up to 78-146 ms and was late
        for most rolls, which the appending thread then made itself: docs/processor.md
        step 18)."""
        a = self._appender
        if not a.offered and self._spare is not None:
            self._offer_spare()
        elif not a.offered:
            seg = self._prepare_segment(self._next_size())
            if seg is None:
                return
            self._offer(seg)
        while self._spare is None and a.offered and self._wants_spare():
            seg = self._prepare_segment(self._next_size(after=self._offered_size))
            if seg is None:
                return
            self._offer(seg)  # late (the offered one taken): offered at once

    def _offer_spare(self) -> None:
        """Offers the spare segment (there is one, and none is offered)."""
        seg, self._spare = self._spare, None
        assert seg is not None
        self._offer(seg)

    def _wants_spare(self) -> bool:
        """Does this journal fill a segment in under ``SPARE_UNDER_S``?"""
        return not self._closed and self._fill_rate > 0 and \
            self._next_size(after=self._offered_size) < self._fill_rate * SPARE_UNDER_S

    def _prepare_segment(self, size: int) -> Segment | None:
        """A new segment of ``size`` bytes, pre-faulted (paced) and its header template
        written; None if it cannot be made now (logged once, retried)."""
        try:
            # a fresh name each time: the segment taken last may not be renamed yet
            seg = Segment.prepare(self.path / f"prepared-{time.monotonic_ns()}.tmp", size)
        except JournalError as e:
            if not self._prepare_failing:  # once per change of state, not every few ms
                log.warning("journal %s: could not prepare the next segment: %s (retrying; "
                            "a roll fails with this error while it lasts)", self.path, e)
            self._prepare_failing = True
            return None
        if self._prepare_failing:
            log.warning("journal %s: preparing segments works again", self.path)
            self._prepare_failing = False
        if not self.direct_io:  # (direct I/O writes bypass the page cache: nothing to map)
            self._prefault_paced(seg)
        seg.write_template(self._schema)  # the roll only finishes the header
        return seg

    def _offer(self, seg: Segment) -> None:
        """Offers ``seg`` for the next roll; keeps it as the spare if one is offered already
        (none is kept then: see ``_prepare_next``); deletes it once the journal is closed
        (or if its path is too long for a roll without the GIL)."""
        with self._ready:
            if not self._closed and self._appender.offer(seg, self.path):
                self._offered_size = seg.size
            elif not self._closed and self._appender.offered:
                self._spare = seg
            else:
                durable.unlink(seg.path)
            self._ready.notify_all()

    def _prefault_paced(self, seg: Segment) -> None:
        """``seg.prefault`` (prefault "zero": ``Segment.write_zeros``, while the journal
        fills slower than ``ZERO_FILL_UNDER``) in chunks, each followed by a pause of up to
        ``PREFAULT_REST`` times the chunk's own time (at most 1/4 of a CPU), shortened so
        the pre-fault still ends half-way to the roll at the appender's fill rate since it
        began.
        Unpaced, a 64 MiB segment's pages took a whole CPU for ~50-100 ms on a 2-CPU VM
        (each new page-cache page is zeroed, and first touches of guest memory are slow),
        which stalled the threads that answer orders; the kernel's read-around made the
        touches lumpy, so each chunk's pages are asked for exactly (WILLNEED) first. Group
        commits and a pending roll's syncs go on between chunks and during the pauses: this
        thread is theirs too. Late - the appender rolled by itself (with the GIL, on its own
        thread) since this began - it stops at once: offered as it is, the segment spares
        the next roll that, and its untouched pages cost the appender no more than those of
        the segment it made itself."""
        a, write = self._appender, self._prefault == "write"
        zero = self._prefault == "zero" and self._fill_rate < ZERO_FILL_UNDER
        group = self.durability == "group"
        offs = range(0 if zero else HEADER_SIZE, seg.size, PREFAULT_CHUNK)
        cur, pos0, t_start = a.segment, a.pos, time.monotonic()
        cost = 0.0  # a chunk's time without its rest: pre-fault and group-commit cycle
        # a journal syncing in large groups keeps its own pace meanwhile (a sync per chunk
        # would write its tail page back every few ms)
        group_s = self.group_ms / 1000.0 if group and a.group_events > 1 else 0.0
        due = t_start + group_s
        for i, off in enumerate(offs):
            if self._closed or a.segment is not cur:  # closed, or late: see the docstring
                return
            t0 = time.monotonic()
            if zero:  # written blocks, their pages cached and clean (no sync: zeros are
                # what an unwritten block reads as, whichever a crash leaves)
                try:
                    _zero_fill(seg, off, off + PREFAULT_CHUNK)
                except JournalError as e:  # an I/O error: the rest stays preallocated,
                    log.warning("journal %s: zero-filling the next segment failed: %s; it "
                                "is used as preallocated", self.path, e)
                    return  # which is correct, only its syncs cost more
            else:
                if not write:  # the chunk's page-cache pages, exactly (a touch through the
                    # map alone makes the kernel read around it: ms-long lumps of zeroing)
                    os.posix_fadvise(seg.fd, off, PREFAULT_CHUNK, os.POSIX_FADV_WILLNEED)
                seg.prefault(write, off, off + PREFAULT_CHUNK)
            now = time.monotonic()
            filled = a.pos - pos0 if a.segment is cur else 0
            pause = prefault_pause(max(cost, now - t0), len(offs) - i - 1, filled,
                                   cur.size - a.pos, now - t_start)
            until = now + pause
            while True:  # at least one group-commit cycle per chunk, pause or not
                due = a.pace(until, due, group_s, group)  # without the GIL until then
                if a.roll_pending:  # a fast roll just before this pre-fault began: the
                    self._finish_roll()  # group commit waits for its syncs, so do them
                if self._closed or time.monotonic() >= until or a.segment is not cur:
                    break
            spent = time.monotonic() - t0 - pause
            cost = spent if i == 0 else 0.8 * cost + 0.2 * spent

    # -- appends --------------------------------------------------------------------------
    def append(self, payload: Any, type_id: int = 0, *, timestamp_ns: int = 0,
               correlation_id: int = 0, flags: int = 0, producer_id: int = 0,
               producer_seq: int = 0) -> int:
        """Appends one event; returns its sequence. Durable on return under ``sync``."""
        self._check()
        return self._appender.append(payload, type_id, timestamp_ns=timestamp_ns,
                                     correlation_id=correlation_id, flags=flags,
                                     producer_id=producer_id, producer_seq=producer_seq)

    def append_struct(self, event: msgspec.Struct, **kw: Any) -> int:
        """Appends a msgspec Struct registered in the journal's registry."""
        if self.registry is None:
            raise JournalError("append_struct needs a Journal opened with registry=")
        type_id, data = self.registry.encode(event)
        return self.append(data, type_id, flags=kw.pop("flags", 0) | 1, **kw)

    def append_many(self, payloads: Any, type_id: int = 0, **kw: Any) -> int:
        """Appends several payloads; one durability step at the end under ``sync``."""
        self._check()
        return self._appender.append_many(payloads, type_id, **kw)

    def append_batch(self, batch: Any) -> int:
        """Appends a ring Batch (consecutive slots) with one memcpy loop; returns the last
        sequence."""
        self._check()
        return self._appender.append_batch(batch)

    def _check(self) -> None:
        if self._closed:
            raise JournalError(f"append on a closed journal ({self.path})")
        if self._error is not None:
            raise JournalError(f"journal {self.path} failed: {self._error}") from self._error

    def sync(self) -> int:
        """Makes everything appended durable now; returns the durable sequence."""
        self._check()
        self._finish_roll()
        return self._appender.sync()

    # -- inspection -----------------------------------------------------------------------
    @property
    def failed(self) -> bool:
        """True once a write or sync error happened: appends raise until reopened."""
        return self._error is not None or self._appender.failed

    @property
    def last_sequence(self) -> int:
        """The last appended sequence (first_sequence - 1 when empty)."""
        return self._appender.last_sequence

    @property
    def next_sequence(self) -> int:
        """The sequence the next append gets."""
        return self._appender.next_sequence

    @property
    def durable_sequence(self) -> int:
        """The highest sequence known to be on disk."""
        return self._appender.durable_sequence

    def wait_written(self, sequence: int, timeout: float = 5.0) -> int:
        """Waits (any thread) until record ``sequence`` is in the file, where readers find it;
        a direct-I/O journal's writer writes its stage at once for it. Returns the last
        sequence in the file: below ``sequence`` only after ``timeout`` seconds or a failure
        (a record the appending thread has not committed yet is not written by anyone)."""
        return self._appender.wait_written(sequence, timeout)

    @property
    def appender(self) -> JournalAppender:
        """The Cython appender (for cimport-level hot paths)."""
        return self._appender

    def reader(self, from_sequence: int | None = None, *, from_time: int | None = None,
               to_sequence: int | None = None, verify: bool = True) -> Iterator[Record]:
        """Records of this journal from a sequence or a time (see JournalReader.records)."""
        return JournalReader(self.path, verify=verify).records(
            from_sequence, from_time=from_time, to_sequence=to_sequence)

    def drop_segments_before(self, sequence: int) -> list[str]:
        """Deletes the segments whose records all precede ``sequence`` (never the one being
        appended to); returns the deleted paths. Retention only happens when called."""
        self._finish_roll()  # the rolled segment's index and sync are done before it can go
        segs = list_segments(self.path)
        current = self._appender.segment.first_sequence
        dropped = []
        for (first, path), (nxt, _) in itertools.pairwise(segs):
            if nxt <= sequence and first != current:
                durable.unlink(path)
                durable.unlink(path.with_suffix(".idx"), missing_ok=True)
                dropped.append(str(path))
        if dropped:
            durable.fsync_dir(self.path)
        return dropped

    # -- close ----------------------------------------------------------------------------
    def close(self) -> None:
        """Syncs (unless ``none``), stops the background thread, releases the lock."""
        if self._closed:
            return
        try:
            if self._error is None and not self.failed:
                self._finish_roll()  # under none too: the index, the name on disk
                if self.durability != "none":
                    self.sync()
        finally:
            self._closed = True
            self._appender.stop()
            if self._writer is not None:
                self._writer.join()  # it returns once every write handed to it is made
            self._thread.join()
            with self._ready:
                for seg in (self._appender.take_offer(), self._spare):
                    if seg is not None:
                        durable.unlink(seg.path)
                self._spare = None
                self._ready.notify_all()
            self._release_lock()

    def _release_lock(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Journal({str(self.path)!r}, durability={self.durability!r}, "
                f"last_sequence={self.last_sequence}, durable={self.durable_sequence})")

