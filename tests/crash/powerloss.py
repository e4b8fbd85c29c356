"""A power-loss model in the manner of SQLite's crash-test VFS and CrashMonkey.

Installed as ringlog's sync hook, it records each durability step of each file and
directory under its roots and builds, at chosen crash points, the image a power loss could
leave:

    file content  = its image at its last fdatasync/fsync
                    + a random subset of the 4 KiB pages written since, in any order
                    (a file never synced: empty, or its size with such a subset)
    directory     = its entries at its last fsync
                    + a random prefix of the creates/renames/unlinks done since
                    (metadata reaches the disk in order, as ext4's journal commits it)

Each crash image records what the writer had acknowledged as durable at that moment, so
a check can demand every acknowledged record and snapshot back, and never accept
corruption for a state the model produced.

    workload ── append / roll / snapshot / prune ──► ringlog ──► durable_sync / durable.*
                                                                    │ hook(op, path, target)
                                                      PowerLossModel ◄┘ sync points, names
                                                            │ crash(phase)
                                                            ▼
                                                      CrashImage {path: bytes}, acked
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ringlog import _journal

PAGE = 4096


@dataclass
class CrashImage:
    """The files a power loss left (relative path -> bytes) and what was acknowledged."""

    files: dict[str, bytes]
    acked: int  # the last sequence acknowledged as durable
    snapshots: list[int]  # snapshots whose write returned and that were not pruned
    phase: str
    op: str

    def write(self, root: Path) -> None:
        for rel, data in self.files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)


@dataclass
class _Dir:
    durable: dict[str, int]  # name -> inode at the last fsync of the directory
    ops: list[tuple[str, str, str | None, int]] = field(default_factory=list)


class PowerLossModel:
    """The sync hook's recorder. ``roots``: directories watched (created before install)."""

    def __init__(self, roots: list[Path], rnd: random.Random, crash_rate: float = 0.0) -> None:
        self.roots = [r.resolve() for r in roots]
        self.rnd = rnd
        self.crash_rate = crash_rate  # probability of a crash image at each hook call
        self.synced: dict[int, bytes] = {}  # inode -> content at its last sync
        self.gone: dict[int, bytes] = {}  # inode -> content when its last name went
        self.dirs = {str(r): _Dir(self._listing(r)) for r in self.roots}
        self.pending: list[tuple[str, str]] = []  # creates whose inode is not known yet
        self.images: list[CrashImage] = []
        self.counts: Counter[str] = Counter()
        self.phase = "append"
        self.acked = -1  # set by the workload (and read from `journal` at each crash)
        self.journal = None
        self.snapshots: list[int] = []
        self.limit = 10**9
        self._lock = threading.RLock()

    # -- the hook -----------------------------------------------------------------------
    def install(self) -> None:
        _journal.set_sync_hook(self.hook)

    def remove(self) -> None:
        _journal.set_sync_hook(None)

    def hook(self, op: str, path: str, target: str | None) -> None:
        p = Path(path)
        d = str(p.parent) if op != "fsync_dir" else str(p)
        if d not in self.dirs:
            return
        with self._lock:
            self._resolve_pending()
            phase = self._phase_of(op, p)
            # rolls, snapshots and prunes are rare steps: crash in them more often
            if self.rnd.random() < self.crash_rate * (1 if phase == "append" else 6):
                self.crash(phase, op)
            if op in ("fdatasync", "fsync"):
                st = os.stat(p)
                self.synced[st.st_ino] = p.read_bytes()
            elif op == "fsync_dir":
                self.dirs[d] = _Dir(self._listing(p))
            elif op == "create":
                self.pending.append((d, p.name))
            elif op == "rename":
                ino = os.stat(p).st_ino
                dst = Path(target)  # type: ignore[arg-type]
                if dst.exists():
                    self.gone[os.stat(dst).st_ino] = dst.read_bytes()
                self.dirs[d].ops.append(("rename", p.name, dst.name, ino))
            elif op == "unlink" and p.exists():
                ino = os.stat(p).st_ino
                self.gone[ino] = p.read_bytes()
                self.dirs[d].ops.append(("unlink", p.name, None, ino))

    def _resolve_pending(self) -> None:
        still = []
        for d, name in self.pending:
            p = Path(d) / name
            if p.exists():
                ino = os.stat(p).st_ino
                # a new file: what an earlier file with this (reused) inode synced is not its
                self.synced.pop(ino, None)
                self.dirs[d].ops.append(("create", name, None, ino))
            else:
                still.append((d, name))
        self.pending = still

    def _phase_of(self, op: str, p: Path) -> str:
        if self.phase != "append":
            return self.phase
        if op in ("create", "fallocate", "rename", "fsync_dir") or p.suffix in (".tmp", ".idx"):
            return "roll"
        return "append"

    @staticmethod
    def _listing(d: Path) -> dict[str, int]:
        return {e.name: e.inode() for e in os.scandir(d) if e.is_file()}

    # -- crash images ---------------------------------------------------------------------
    def crash(self, phase: str, op: str = "-") -> None:
        """Records the image a power loss now would leave."""
        if len(self.images) >= self.limit:
            return
        with self._lock:
            self._resolve_pending()
            acked = self.acked
            if self.journal is not None:
                acked = max(acked, self.journal.durable_sequence)
            files: dict[str, bytes] = {}
            for d, state in self.dirs.items():
                names = dict(state.durable)
                k = self.rnd.randint(0, len(state.ops))
                for kind, name, dst, ino in state.ops[:k]:
                    if kind == "create":
                        names[name] = ino
                    elif kind == "rename":
                        names.pop(name, None)
                        names[dst] = ino  # type: ignore[index]
                    else:
                        names.pop(name, None)
                now = {ino: name for name, ino in self._listing(Path(d)).items()}
                rel = os.path.relpath(d, self.roots[0].parent)
                for name, ino in names.items():
                    files[f"{rel}/{name}"] = self._content(Path(d), now, ino)
            self.images.append(CrashImage(files, acked, list(self.snapshots), phase, op))
            self.counts[phase] += 1

    def _content(self, d: Path, now: dict[int, str], ino: int) -> bytes:
        if ino in now:
            try:
                current = (d / now[ino]).read_bytes()
            except FileNotFoundError:
                current = self.gone.get(ino, b"")
        else:
            current = self.gone.get(ino, b"")
        base = self.synced.get(ino)
        if base is None:  # never synced: its size did not reach the disk, or did
            if self.rnd.random() < 0.5:
                return b""
            base = bytes(len(current))
        out = bytearray(base)
        if len(current) > len(out) and self.rnd.random() < 0.5:
            out.extend(bytes(len(current) - len(out)))
        for off in range(0, min(len(out), len(current)), PAGE):
            page = current[off:off + PAGE]
            if page != out[off:off + PAGE] and self.rnd.random() < 0.5:
                out[off:off + len(page)] = page
        return bytes(out)


@contextlib.contextmanager
def processor_under(model: PowerLossModel, make: Callable[[], Any],
                    hook: Callable[[str, str, str | None], None] | None = None
                    ) -> Iterator[Any]:
    """A processor made by ``make()`` (before its start: add listeners there) and started
    while ``model`` records every durability step (``hook``: the model's hook wrapped,
    default the hook itself); what it acknowledges is its input journal's durable sequence.
    Stopped, and the hook removed, on the way out."""
    _journal.set_sync_hook(hook or model.hook)
    try:
        p = make()
        model.journal = p.input
        try:
            p.start()
            yield p
        finally:
            model.journal = None
            p.stop()
    finally:
        model.remove()


def crash_runs(tmp_path: Path, crashes: int, per_run: int,
               run: Callable[[Path, int, int], PowerLossModel],
               verify: Callable[[PowerLossModel], Iterable[tuple[CrashImage, str | None]]],
               first_failure: bool = False) -> tuple[int, list[str], dict[str, int]]:
    """Runs workloads until ``crashes`` images are verified (or, with ``first_failure``, one
    fails): ``run(work_dir, run_index, images_wanted)`` makes a model with its crash images,
    ``verify(model)`` yields ``(image, failure or None)``. Returns (images verified, failures,
    crash points by phase)."""
    failures: list[str] = []
    counts: dict[str, int] = {}
    done = index = 0
    while done < crashes and not (first_failure and failures):
        work = tmp_path / f"w{index}"
        model = run(work, index, min(per_run, crashes - done))
        for img, why in verify(model):
            if why is not None:
                failures.append(f"[{img.phase}/{img.op}] {why}")
        for k, v in model.counts.items():
            counts[k] = counts.get(k, 0) + v
        done += len(model.images)
        shutil.rmtree(work)
        index += 1
    return done, failures, counts


def crash_count(config: object, default: int) -> int:
    """1,000 simulated crashes under ``-m stress`` (``make stress``), ``default`` otherwise."""
    return 1000 if "stress" in (config.getoption("-m") or "") else default  # type: ignore[attr-defined]
