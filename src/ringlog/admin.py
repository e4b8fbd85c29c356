"""Operator commands to a running processor, journaled like any input: kill, enable, reset,
release and discard.

::

    ringlog admin kill DIR --account 7          (another process, same machine)
        │ one JSON line over DIR/admin.sock (a Unix socket, mode 0600: the directory's owner)
        ▼
    AdminServer thread ──► Processor.kill(7) ──► input ring ──► journal ──► loop: on_kill(7)
        ◄── {"ok": true, "sequence": <journal sequence of the command>}

The server only publishes control events (the loop acts on them at their journal sequence,
so a replay repeats them); it never touches business state itself. One request per
connection, at most 4 KiB; a malformed request gets ``{"ok": false, "error": ...}``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path
from typing import Any

import msgspec

from .errors import RingLogError

__all__ = ["ADMIN_SOCKET", "OPERATIONS", "AdminError", "AdminRequest", "AdminServer",
           "AdminSocketError", "send_admin"]

ADMIN_SOCKET = "admin.sock"
MAX_REQUEST = 4096
# operation -> (Processor method, takes a key)
OPERATIONS = {"kill": ("kill", True), "enable": ("enable", True),
              "reset": ("reset_breaker", False), "release": ("release_held", False),
              "discard": ("discard_held", False)}


class AdminError(RingLogError, RuntimeError):
    """An operator command the processor refused (it is not running, the key is invalid, the
    handler has no kill switch); says why. One that never reached a processor is an
    AdminSocketError."""


class AdminSocketError(RingLogError, ConnectionError):
    """An operator command that could not be delivered: no processor listens on the admin
    socket (none runs in that directory, or it runs with ``admin=False``), or its answer was
    unreadable; also a processor that cannot listen there."""


class AdminRequest(msgspec.Struct, forbid_unknown_fields=True):
    """One operator command: ``op`` (kill, enable, reset, release, discard) and, for kill and
    enable, the key (an account; None: every account)."""

    op: str
    key: int | None = None


class _Reply(msgspec.Struct, omit_defaults=True):
    ok: bool
    sequence: int = -1
    error: str = ""


def _short(path: Path) -> tuple[str, int | None]:
    """A Unix socket path short enough for sun_path (108 bytes): long ones go through
    /proc/self/fd of an open descriptor of their directory (Linux)."""
    text = os.fspath(path)
    if len(os.fsencode(text)) < 100:
        return text, None
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{path.name}", fd


class AdminServer:
    """Serves operator commands for ``processor`` on ``DIR/admin.sock`` from a thread that
    blocks in accept (no polling). ``close()`` stops it and removes the socket."""

    def __init__(self, processor: Any, directory: str | Path) -> None:
        self.processor = processor
        self.path = Path(directory) / ADMIN_SOCKET
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a processor that died
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        name, fd = _short(self.path)
        try:
            old = os.umask(0o177)  # 0600: only the directory's owner may command it
            try:
                self._sock.bind(name)
            finally:
                os.umask(old)
        except OSError as e:
            self._sock.close()
            raise AdminSocketError(f"cannot listen on {self.path}: {e}") from e
        finally:
            if fd is not None:
                os.close(fd)
        self._sock.listen(8)
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="ringlog-admin", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(5.0)
                with contextlib.suppress(OSError):
                    conn.sendall(msgspec.json.encode(self.handle(_read_line(conn))) + b"\n")

    def handle(self, raw: bytes) -> _Reply:
        """Runs one request; never raises (the reply says what went wrong)."""
        try:
            req = msgspec.json.decode(raw, type=AdminRequest)
        except msgspec.DecodeError as e:
            return _Reply(False, error=f"malformed request: {e}")
        op = OPERATIONS.get(req.op)
        if op is None:
            return _Reply(False, error=f"unknown operation {req.op!r}; known: "
                                       f"{', '.join(OPERATIONS)}")
        method, keyed = op
        p = self.processor
        if p.state != "running":
            return _Reply(False, error=f"the processor is {p.state}")
        try:
            fn = getattr(p, method)
            ring_seq = fn(req.key) if keyed else fn()
            return _Reply(True, sequence=p.journal_sequence_of(ring_seq))
        except RingLogError as e:
            return _Reply(False, error=str(e))

    def close(self) -> None:
        """Stops serving and removes the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept
        self._sock.close()
        self._thread.join(10)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _read_line(conn: socket.socket) -> bytes:
    buf = b""
    while b"\n" not in buf and len(buf) <= MAX_REQUEST:
        chunk = conn.recv(MAX_REQUEST)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n", 1)[0][:MAX_REQUEST + 1]


def send_admin(directory: str | Path, op: str, key: int | None = None,
               timeout: float = 10.0) -> int:
    """Sends one operator command to the processor running in ``directory``; returns the
    journal sequence it was journaled at. AdminSocketError when no processor listens there,
    AdminError when it refused the command."""
    path = Path(directory) / ADMIN_SOCKET
    if not path.exists():
        raise AdminSocketError(f"no running processor at {directory} (no {ADMIN_SOCKET})")
    name, fd = _short(path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect(name)
            except OSError as e:
                raise AdminSocketError(f"no running processor at {directory} ({path}: "
                                 f"{e.strerror or e})") from e
            try:
                s.sendall(msgspec.json.encode(AdminRequest(op, key)) + b"\n")
                raw = _read_line(s)
            except OSError as e:  # a hung processor (timeout) or one that died meanwhile
                why = f"no answer within {timeout:g}s" if isinstance(e, TimeoutError) \
                    else e.strerror or str(e)
                raise AdminSocketError(f"the processor at {directory} did not answer "
                                       f"({path}: {why})") from e
    finally:
        if fd is not None:
            os.close(fd)
    try:
        reply = msgspec.json.decode(raw, type=_Reply)
    except msgspec.DecodeError as e:
        raise AdminSocketError(f"{path}: unreadable reply {raw[:80]!r}") from e
    if not reply.ok:
        raise AdminError(f"{op} refused: {reply.error}")
    return reply.sequence
