"""The conformance suite's server: ``ringlog serve`` in its own process on a free loopback
port, with the sessions and limits below, one per test module.

Another server that speaks the protocol runs the same suite: set RINGLOG_CONFORMANCE_SERVER to
its command line, with ``{python}``, ``{directory}`` and ``{config}`` (a TOML gateway config)
placeholders; it must print a JSON line ``{"event": "listening", "port": N, ...}`` on stdout
once it accepts connections, and stop on SIGTERM.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .wire import Peer

DEFAULT_SERVER = ("{python} -m ringlog serve {directory} --config {config} --port 0 "
                  "--durability none")
SESSIONS = 64  # tokens conf-token-1..64; 2k-1 and 2k share account 1000 + k
SYMBOLS = 64  # each test trades on symbols of its own
LIMITS = {"max_frame": 1 << 20, "rate": 1e6, "burst": 1_000_000, "logon_timeout": 1.0,
          "frame_timeout": 1.0, "idle_timeout": 5.0, "max_connections_per_peer": 48,
          "heartbeat_grace": 2.0}


def account_of(i: int) -> int:
    return 1000 + (i + 1) // 2


def write_config(path: Path) -> None:
    lines = ['host = "127.0.0.1"', "port = 0", "", "[limits]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in LIMITS.items()]
    for i in range(1, SESSIONS + 1):
        lines += ["", "[[sessions]]", f"id = {i}", f'token = "conf-token-{i}"',
                  f"account = {account_of(i)}"]
    lines += ["", "[engine]", "max_orders = 65536"]
    for sym in range(1, SYMBOLS + 1):
        lines += ["", "[[engine.symbols]]", f"symbol = {sym}", "min_price = 1",
                  "max_price = 10000"]
    path.write_text("\n".join(lines) + "\n")


class Server:
    """A gateway process: ``address``, fresh ``token()``s and ``symbol()``s, ``restart()``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.config = directory / "gateway.toml"
        write_config(self.config)
        self._tokens = itertools.count(1)
        self._symbols = itertools.count(1)
        self.proc: subprocess.Popen[str] | None = None
        self.address = ("127.0.0.1", 0)
        self.start()

    def start(self) -> None:
        cmd = os.environ.get("RINGLOG_CONFORMANCE_SERVER", DEFAULT_SERVER).format(
            python=shlex.quote(sys.executable), directory=shlex.quote(str(self.directory /
                                                                          "data")),
            config=shlex.quote(str(self.config)))
        self.proc = subprocess.Popen(shlex.split(cmd), stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict) and ev.get("event") == "listening":
                self.address = ("127.0.0.1", int(ev["port"]))
                return
            assert time.monotonic() < deadline
        raise RuntimeError(f"the server exited ({self.proc.wait()}) before listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def token(self) -> str:
        """A session whose account no other test uses."""
        return self.pair()[0]

    def pair(self) -> tuple[str, str, int]:
        """Two sibling sessions of one account no other test uses: (token, token, account)."""
        i = next(self._tokens)
        if i % 2 == 0:
            i = next(self._tokens)
        assert i + 1 <= SESSIONS, "the conformance config needs more sessions"
        next(self._tokens)
        return f"conf-token-{i}", f"conf-token-{i + 1}", account_of(i)

    def symbol(self) -> int:
        s = next(self._symbols)
        assert s <= SYMBOLS
        return s


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("conformance"))
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def _close_peers() -> Iterator[None]:
    yield
    for p in Peer.opened:
        p.close()
    Peer.opened.clear()
