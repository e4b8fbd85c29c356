"""``ringlog journal repair``: a plan (what a power loss or a crash left past the durable end),
then its application under the appender lock, the cut bytes kept in a side directory."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

from .. import durable, journal
from .._journal import HEADER_SIZE, Segment
from ..errors import JournalCorruptError, JournalError
from ..journal import _read_index, _write_index
from ..recovery import rebuild_index
from .info import lock_holder
from .verify import Problem, check


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
    segs = journal.list_segments(Path(path))
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


