"""Snapshots: state written atomically, tagged with the last journal sequence it includes.

File layout (docs/journal-format.md)::

    0        8        12       16       24          32        36        44        48
    | magic  | version| flags  | seq    | created_ns| metalen | datalen | crc32c  | meta | data

A snapshot is written to a temporary file, fsynced, renamed into place and the directory
fsynced: after a crash it is either whole or absent. ``latest()`` returns the newest snapshot
whose checksum holds and logs every damaged one it skips.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import struct
import time
from pathlib import Path
from typing import Any

import msgspec

from . import durable
from ._journal import crc32c
from .errors import RingLogError, SnapshotError

__all__ = ["Snapshot", "SnapshotStore", "atomic_write"]


def atomic_write(final: Path, *parts: bytes,
                 error: type[RingLogError] = SnapshotError) -> None:
    """Writes ``parts`` to ``final`` atomically: temp file, fsync, rename, fsync of the
    directory (each step through ringlog.durable). After a crash the file is either whole or
    as it was. Raises ``error`` (SnapshotError) with the path and errno."""
    tmp = final.with_suffix(f"{final.suffix}.tmp{os.getpid()}")
    try:
        durable.write_file(tmp, *parts, error=error)
        durable.rename(tmp, final, error)
        durable.fsync_dir(final.parent, error)
    except RingLogError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise

log = logging.getLogger("ringlog.snapshot")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

_MAGIC = b"RLSNAP01"
_HEAD = struct.Struct("<8sIIqqIQI")
_VERSION = 1


class Snapshot(msgspec.Struct, frozen=True):
    """A loaded snapshot: the last sequence it includes, its data and metadata."""

    sequence: int
    data: bytes
    meta: dict[str, Any]
    created_ns: int
    path: str


class SnapshotStore:
    """A directory of snapshots named by sequence. Safe to read while another process writes
    (a snapshot appears only by an atomic rename)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SnapshotError(f"cannot create snapshot directory {self.path}: {e.strerror}",
                                errno=e.errno, path=str(self.path)) from e
        self.skipped: list[str] = []  # damaged snapshots that latest() passed over
        self.removed_temp = self.clean_temp_files()

    def clean_temp_files(self) -> list[str]:
        """Removes ``*.tmp<pid>`` files a crash left mid-write (their writer process is gone);
        returns and logs their paths."""
        gone = []
        for p in self.path.glob("*.tmp*"):
            pid = p.suffix[4:]
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue  # another live process is writing it right now
            durable.unlink(p, SnapshotError, missing_ok=True)
            gone.append(str(p))
            log.warning("removed %s: a snapshot write a crash cut short", p)
        return gone

    def _file(self, sequence: int) -> Path:
        return self.path / f"{sequence:020d}.snap"

    def write(self, sequence: int, data: bytes, meta: dict[str, Any] | None = None) -> Path:
        """Writes a snapshot atomically (temp file, fsync, rename, fsync dir)."""
        if sequence < -1:
            raise SnapshotError(f"snapshot sequence must be >= -1, got {sequence}")
        m = msgspec.msgpack.encode(meta or {})
        body = m + bytes(data)
        head = _HEAD.pack(_MAGIC, _VERSION, 0, sequence, time.time_ns(), len(m), len(data),
                          crc32c(body))
        final = self._file(sequence)
        atomic_write(final, head, body)
        return final

    def sequences(self) -> list[int]:
        """Sequences of the snapshot files present (valid or not), ascending."""
        out = []
        for p in self.path.glob("*.snap"):
            with contextlib.suppress(ValueError):
                out.append(int(p.stem))
        return sorted(out)

    def load(self, sequence: int) -> Snapshot:
        """The snapshot at ``sequence``; SnapshotError if missing or damaged."""
        path = self._file(sequence)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise SnapshotError(f"cannot read snapshot {path}: {e}") from e
        if len(raw) < _HEAD.size:
            raise SnapshotError(f"{path}: {len(raw)} bytes is shorter than a snapshot header")
        magic, version, _, seq, created, mlen, dlen, crc = _HEAD.unpack_from(raw)
        if magic != _MAGIC or version != _VERSION:
            raise SnapshotError(f"{path}: not a ringlog snapshot (magic {magic!r}, "
                                f"version {version})")
        body = raw[_HEAD.size:]
        if len(body) != mlen + dlen:
            raise SnapshotError(f"{path}: body is {len(body)} bytes, header says "
                                f"{mlen + dlen} (truncated)")
        if crc32c(body) != crc:
            raise SnapshotError(f"{path}: checksum mismatch (damaged)")
        if seq != sequence:
            raise SnapshotError(f"{path}: header says sequence {seq}, the name {sequence}")
        return Snapshot(seq, body[mlen:], msgspec.msgpack.decode(body[:mlen]), created,
                        str(path))

    def latest(self, at_or_before: int | None = None) -> Snapshot | None:
        """The newest valid snapshot (at or before a sequence); damaged ones are skipped,
        logged and listed in ``skipped``."""
        for seq in reversed(self.sequences()):
            if at_or_before is not None and seq > at_or_before:
                continue
            try:
                return self.load(seq)
            except SnapshotError as e:
                self.skipped.append(str(e))
                log.warning("skipping damaged snapshot: %s", e)
        return None

    def list(self) -> list[dict[str, Any]]:
        """Every snapshot with its sequence, size, and whether it is valid."""
        out = []
        for seq in self.sequences():
            p = self._file(seq)
            try:
                self.load(seq)
                ok, err = True, ""
            except SnapshotError as e:
                ok, err = False, str(e)
            out.append({"sequence": seq, "path": str(p), "bytes": p.stat().st_size,
                        "valid": ok, "error": err})
        return out

    # builtins.list: in this class body, ``list`` names the method above
    def delete_before(self, sequence: int) -> builtins.list[str]:
        """Deletes snapshots older than ``sequence``; returns their paths."""
        gone = []
        for seq in self.sequences():
            if seq < sequence:
                durable.unlink(self._file(seq), SnapshotError, missing_ok=True)
                gone.append(str(self._file(seq)))
        if gone:
            durable.fsync_dir(self.path, SnapshotError)
        return gone
