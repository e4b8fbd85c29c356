"""Retention: keep the last K snapshots and only the journal a replay from the oldest needs.

A processor directory grows by a segment every ``segment_size`` bytes and a snapshot every
``snapshot_every`` events; with ``ProcessorConfig(retention=Retention(keep_snapshots=K))``
the processor prunes after each snapshot it writes, and ``ringlog journal prune DIR`` does
the same offline::

    snapshots/  s1  s2  s3  s4  s5          keep the K newest that read back and verify
                            └── oldest kept (sequence S, P outputs published)
    input/      [seg][seg][seg|S+1 ...][seg]   drop (or archive) segments wholly before
                                               min(S + 1, breaker halt point, min_input)
    output/     [seg][seg|P ...][seg]          drop segments wholly before min(P, min_output)

Never past a snapshot that was not read back and verified, never past the first input the
breaker holds back (``pending_from``), never past the floors the caller promises (the
gateway's report history: ``min_input`` / ``min_output``). The newest segment of a journal
is never removed. Each removal is an unlink (or a move to ``archive_dir``) made durable by
an fsync of the directory, oldest first, so a crash mid-prune leaves a prefix of it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from . import durable
from .config import check_fields, config_error
from .errors import JournalError, SnapshotError
from .journal import list_segments
from .snapshot import SnapshotStore

__all__ = ["PrunePlan", "Retention", "apply_prune", "plan_prune", "prune_processor"]

log = logging.getLogger("ringlog.retention")


class Retention(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How much of a processor directory to keep.

    ``keep_snapshots``: the K newest valid snapshots stay, older ones go. ``archive_dir``:
    segments no longer needed are moved there (one subdirectory per journal: input, output)
    instead of deleted, for audit trails. Floors a component promises (the report history a
    gateway replays) are set on the processor: ``processor.retention_floors = lambda:
    (min_input, min_output)`` (-1: none).
    """

    keep_snapshots: int = 3
    archive_dir: str | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        if self.keep_snapshots < 1:
            raise config_error(self, "keep_snapshots", f"must be >= 1, got "
                               f"{self.keep_snapshots}")


class PrunePlan(msgspec.Struct):
    """What a prune removes and why it stops where it does."""

    directory: str
    keep_input_from: int  # -1: nothing of the input journal goes
    keep_output_from: int
    snapshots: list[str]  # snapshot files to remove
    segments: list[str]  # journal segment files to remove or archive (with their .idx)
    bytes: int
    reasons: list[str]  # what set each floor
    archive_dir: str | None = None

    def describe(self) -> str:
        """Lines for ``ringlog journal prune``."""
        lines = [f"{self.directory}: keep input from sequence {self.keep_input_from}, "
                 f"output from {self.keep_output_from}", *(f"  ({r})" for r in self.reasons)]
        verb = f"archive to {self.archive_dir}" if self.archive_dir else "remove"
        lines += [f"{verb} {p}" for p in self.segments]
        lines += [f"remove snapshot {p}" for p in self.snapshots]
        lines.append(f"frees {self.bytes} bytes" if self.segments or self.snapshots
                     else "nothing to prune")
        return "\n".join(lines)


def _loop_state(data: bytes) -> Any:
    from .processor import _Snapshot

    return msgspec.msgpack.decode(data, type=_Snapshot).loop


def plan_prune(directory: str | Path, retention: Retention, *, pending_from: int = -1,
               min_input: int = -1, min_output: int = -1,
               active: dict[str, str] | None = None) -> PrunePlan:
    """The prune of a processor directory (``input/``, ``output/``, ``snapshots/``).
    ``pending_from``: the live loop's first held-back input (-1 none); ``min_input`` /
    ``min_output``: the lowest sequences a caller needs kept (-1 none); ``active``: journal
    name -> the segment being appended to (never removed)."""
    d = Path(directory)
    store = SnapshotStore(d / "snapshots")
    kept: list[Any] = []
    for seq in reversed(store.sequences()):
        if len(kept) == retention.keep_snapshots:
            break
        try:
            kept.append(store.load(seq))  # read back and checksum-verified
        except SnapshotError as e:
            log.warning("retention: not counting damaged snapshot: %s", e)
    plan = PrunePlan(str(d), -1, -1, [], [], 0, [], retention.archive_dir)
    if len(kept) < retention.keep_snapshots:
        plan.reasons.append(f"only {len(kept)} valid snapshot(s), {retention.keep_snapshots} "
                            "kept: nothing goes")
        return plan
    oldest = kept[-1]
    state = _loop_state(oldest.data)
    floors_in = [(oldest.sequence + 1, f"oldest kept snapshot {oldest.sequence}")]
    floors_out = [(state.published, f"its published outputs {state.published}")]
    for snap in kept:
        held = _loop_state(snap.data).pending_from
        if held >= 0:
            floors_in.append((held, f"breaker holds inputs from {held}"))
    if pending_from >= 0:
        floors_in.append((pending_from, f"breaker holds inputs from {pending_from} (live)"))
    if min_input >= 0:
        floors_in.append((min_input, f"min_input {min_input}"))
    if min_output >= 0:
        floors_out.append((min_output, f"min_output {min_output}"))
    plan.keep_input_from, why_in = min(floors_in)
    plan.keep_output_from, why_out = min(floors_out)
    plan.reasons += [f"input floor: {why_in}", f"output floor: {why_out}"]
    for name, floor in (("input", plan.keep_input_from), ("output", plan.keep_output_from)):
        segs = list_segments(d / name) if (d / name).is_dir() else []
        current = (active or {}).get(name)
        for (_, path), (nxt, _) in itertools.pairwise(segs):
            if nxt <= floor and str(path) != current:
                plan.segments.append(str(path))
                plan.bytes += path.stat().st_size
    for seq in store.sequences():
        if seq < oldest.sequence:
            p = d / "snapshots" / f"{seq:020d}.snap"
            plan.snapshots.append(str(p))
            plan.bytes += p.stat().st_size
    return plan


def apply_prune(plan: PrunePlan) -> None:
    """Removes (or archives) what ``plan`` lists, oldest first, each directory fsynced."""
    dirs: set[Path] = set()
    for p in map(Path, plan.segments):
        for f in (p, p.with_suffix(".idx")):
            if not f.exists():
                continue
            if plan.archive_dir is not None:
                dest = Path(plan.archive_dir) / p.parent.name
                _archive(f, dest)
                dirs.add(dest)
            else:
                durable.unlink(f)
        dirs.add(p.parent)
    for p in map(Path, plan.snapshots):
        durable.unlink(p, SnapshotError, missing_ok=True)
        dirs.add(p.parent)
    for dpath in sorted(dirs):
        durable.fsync_dir(dpath)
    if plan.segments or plan.snapshots:
        log.info("retention: %s: removed %d segment(s) and %d snapshot(s), %d bytes",
                 plan.directory, len(plan.segments), len(plan.snapshots), plan.bytes)


def _archive(f: Path, dest: Path) -> None:
    """Moves ``f`` into ``dest`` durably (a copy + fsync first across file systems)."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise JournalError(f"cannot create archive directory {dest}: {e.strerror}",
                           errno=e.errno, path=str(dest)) from e
    target = dest / f.name
    try:
        durable.rename(f, target)
        return
    except JournalError as e:
        if e.errno != 18:  # EXDEV: another file system
            raise
    tmp = target.with_suffix(target.suffix + ".part")
    try:
        shutil.copyfile(f, tmp)
    except OSError as e:
        raise JournalError(f"cannot archive {f} to {dest}: {e.strerror}", errno=e.errno,
                           path=str(dest)) from e
    with open(tmp, "rb") as fh:
        durable.fsync(fh.fileno(), tmp)
    durable.rename(tmp, target)
    durable.fsync_dir(dest)
    durable.unlink(f)


def prune_processor(processor: Any, retention: Retention) -> PrunePlan:
    """Prunes a running processor's directory after a snapshot (called on its loop thread)."""
    active = {"input": str(processor.input.appender.segment.path),
              "output": str(processor.output.appender.segment.path)}
    held = processor._loop.state.pending_from
    floors: Callable[[], tuple[int, int]] | None = getattr(processor, "retention_floors", None)
    min_in, min_out = floors() if floors is not None else (-1, -1)
    plan = plan_prune(processor.directory, retention, pending_from=held, min_input=min_in,
                      min_output=min_out, active=active)
    with contextlib.suppress(FileNotFoundError):
        apply_prune(plan)
    return plan


# -- `ringlog journal prune DIR` --------------------------------------------------------------
def add_prune_parser(jsub: Any) -> None:
    """Registers ``journal prune`` on the ``journal`` subcommand's subparsers."""
    from .cli.common import _parser

    p = _parser(jsub, "prune", "drop snapshots and segments older than the retention keeps",
                "  ringlog journal prune ./proc --dry-run\n"
                "  ringlog journal prune ./proc --keep 3 --archive /backup/proc\n"
                "keeps the K newest valid snapshots and the segments a replay from the "
                "oldest needs (never past the breaker's held inputs); the retention of "
                "processor.json unless --keep is given. exit codes: 0 done or nothing to "
                "do, 1 the processor is running, 2 usage error")
    p.add_argument("dir", metavar="DIR", help="a processor directory")
    p.add_argument("--keep", type=int, metavar="K", help="snapshots to keep (>= 1)")
    p.add_argument("--archive", metavar="PATH", help="move old segments there instead of "
                   "deleting them")
    p.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")


def cmd_journal_prune(args: Any) -> int:
    """``ringlog journal prune``: plan (and apply) a prune of a stopped processor."""
    import sys

    from .cli.common import EXIT_FAILED, EXIT_OK, UsageError
    from .journaltool.repair import _appender_lock
    from .processor import read_manifest

    d = Path(args.dir)
    if not (d / "snapshots").is_dir() or not (d / "input").is_dir():
        raise UsageError(f"{d}: not a processor directory (no snapshots/ and input/)")
    if args.keep is not None and args.keep < 1:
        raise UsageError(f"--keep must be >= 1, got {args.keep}")
    manifest = read_manifest(d)
    configured = manifest.config.retention if manifest is not None else None
    if args.keep is None and configured is None:
        raise UsageError(f"{d}: no retention in processor.json; give --keep K")
    base = configured or Retention()
    retention = Retention(keep_snapshots=args.keep or base.keep_snapshots,
                          archive_dir=args.archive or base.archive_dir)
    try:
        with contextlib.ExitStack() as locks:
            for name in ("input", "output"):
                if (d / name).is_dir():
                    locks.enter_context(_appender_lock(d / name))
            plan = plan_prune(d, retention)
            print(plan.describe())
            if not args.dry_run:
                apply_prune(plan)
    except JournalError as e:
        print(f"refusing: {e}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
