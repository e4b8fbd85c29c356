"""The durability steps done from Python: one place, so tests can watch and fail them.

Every file-system step a journal or snapshot's durability depends on (fsync of a file or a
directory, rename, unlink, creating a file) goes through a function here; the compiled
journal's fdatasync goes through ``ringlog._journal.durable_sync``. Both call the one hook
installed with ``ringlog._journal.set_sync_hook`` (None in production: one attribute check)::

    Journal / SnapshotStore / prune ──► durable.fsync_dir / rename / unlink / fsync / create
    JournalAppender / Segment.sync ───► _journal.durable_sync (nogil, C function pointer)
                                            │
                                            └─► hook(op, path, target)  (tests only:
                                                power-loss simulator, injected ENOSPC)

A failed step raises the caller's error type (JournalError or SnapshotError) carrying the
path and the errno.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import _journal
from .errors import JournalError, RingLogError

__all__ = ["create", "fsync", "fsync_dir", "planted", "rename", "unlink", "write_file"]

# Test-only planted bugs (the power-loss simulator must catch each); empty in production.
planted: set[str] = set()


def _hook(op: str, path: str | Path, target: str | Path | None,
          error: type[RingLogError]) -> None:
    hook = _journal.sync_hook()
    if hook is None:
        return
    try:
        hook(op, os.fspath(path), None if target is None else os.fspath(target))
    except OSError as e:
        raise _error(error, op, path, e) from e


def _error(error: type[RingLogError], op: str, path: str | Path, e: OSError) -> RingLogError:
    return error(f"{op} of {os.fspath(path)} failed: {os.strerror(e.errno or 5)} "
                 f"(errno {e.errno})", errno=e.errno, path=os.fspath(path))  # type: ignore[call-arg]


def fsync(fd: int, path: str | Path, error: type[RingLogError] = JournalError) -> None:
    """fsync of an open file (``path`` names it in errors and for the hook)."""
    _hook("fsync", path, None, error)
    try:
        os.fsync(fd)
    except OSError as e:
        raise _error(error, "fsync", path, e) from e


def fsync_dir(path: str | Path, error: type[RingLogError] = JournalError) -> None:
    """fsync of a directory: a created, renamed or removed entry in it is durable after."""
    _hook("fsync_dir", path, None, error)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise _error(error, "fsync_dir", path, e) from e


def rename(src: str | Path, dst: str | Path, error: type[RingLogError] = JournalError) -> None:
    """Atomic rename (replacing ``dst``); durable after ``fsync_dir`` of the directory."""
    _hook("rename", src, dst, error)
    try:
        os.replace(src, dst)
    except OSError as e:
        raise _error(error, "rename", src, e) from e


def unlink(path: str | Path, error: type[RingLogError] = JournalError, *,
           missing_ok: bool = False) -> None:
    """Removes a file; durable after ``fsync_dir`` of the directory."""
    _hook("unlink", path, None, error)
    try:
        os.unlink(path)
    except FileNotFoundError:
        if not missing_ok:
            raise
    except OSError as e:
        raise _error(error, "unlink", path, e) from e


def create(path: str | Path, error: type[RingLogError] = JournalError) -> None:
    """Tells the hook a file is being created (the power-loss model tracks names)."""
    _hook("create", path, None, error)


def write_file(path: Path, *parts: bytes | memoryview,
               error: type[RingLogError] = JournalError, sync: bool = True) -> None:
    """Creates ``path`` with ``parts`` and fsyncs it (``sync``); errors carry path and errno.
    """
    create(path, error)
    try:
        with open(path, "wb") as f:
            for part in parts:
                f.write(part)
            f.flush()
            if sync:
                fsync(f.fileno(), path, error)
    except OSError as e:
        raise _error(error, "write", path, e) from e
