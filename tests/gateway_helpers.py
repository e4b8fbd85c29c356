"""Shared pieces of the gateway tests: a running gateway on loopback, raw frame I/O."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

from ringlog import Processor, ProcessorConfig
from ringlog.engine import Engine, EngineConfig, SymbolSpec, registry
from ringlog.gateway.protocol import FrameDecoder, Logon, ServerMessage, encode_frame
from ringlog.gateway.server import GatewayThread
from ringlog.gateway.session import GatewayConfig, Limits, SessionEntry
from ringlog.processor import resolve_topology

TOKENS = {1: ("token-alice", 7), 2: ("token-bob-1", 8), 3: ("token-carol", 9),
          4: ("token-alice-2", 7)}
ALICE, BOB, CAROL, ALICE2 = (TOKENS[i][0] for i in (1, 2, 3, 4))


def run(coro: Any) -> Any:
    """Runs a test's coroutine on a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, 60))


def with_clients(directory: Any, body: Any, *tokens: str, **running_kw: Any) -> None:
    """Runs ``await body(*clients)`` against a gateway ``running`` in ``directory``, one
    logged-on AsyncClient per token; the clients are closed afterwards."""
    from ringlog.client import AsyncClient

    async def main(addr: tuple[str, int]) -> None:
        clients = [await AsyncClient.connect(*addr, t) for t in tokens]
        try:
            await body(*clients)
        finally:
            for c in clients:
                await c.close_and_wait()

    with running(directory, **running_kw) as g:
        run(main(g.gateway.address))


def logon(raw: Raw, token: str, seq: int = 0) -> Any:
    """Logs a raw peer on; returns the server's answer."""
    raw.send(Logon(seq, token))
    (ack,) = raw.read(1)
    return ack


def engine_config(**kw: Any) -> EngineConfig:
    """The real engine's config of the gateway tests: symbols 1 and 2, prices 1..10_000."""
    return EngineConfig(symbols=[SymbolSpec(symbol=1, max_price=10_000),
                                 SymbolSpec(symbol=2, max_price=10_000)], **kw)


def config(limits: Limits | None = None, **kw: Any) -> GatewayConfig:
    """A loopback config on a kernel-chosen port with the TOKENS sessions."""
    return GatewayConfig(port=0, limits=limits or Limits(),
                         sessions=[SessionEntry(i, t, a) for i, (t, a) in TOKENS.items()], **kw)


@contextlib.contextmanager
def running(directory: Any, cfg: GatewayConfig | None = None, *, handler: Any = None,
            breaker: Any = None, loop: str = "uvloop", ring_capacity: int = 1 << 14,
            engine: EngineConfig | None = None, segment_size: int = 1 << 20,
            topology: str = "auto") -> Iterator[GatewayThread]:
    """A gateway over a processor (dedup on) in ``directory`` running the real matching
    engine (``engine`` or ``engine_config()``), or ``handler``; stopped on exit."""
    ec = engine or engine_config()
    proc = Processor(handler or Engine(ec), directory,
                     ProcessorConfig(dedup=True, durability="none", wait="blocking",
                                     ring_capacity=ring_capacity, slot_size=ec.min_slot_size,
                                     segment_size=segment_size,
                                     # what `ringlog serve` runs (auto: driven on few CPUs;
                                     # the output journal direct where O_DIRECT works)
                                     topology=resolve_topology(topology, driver=True),
                                     output_io="auto"),
                     breaker=breaker, registry=registry(ec.l2_depth))
    g = GatewayThread(proc, cfg or config(), loop=loop)
    g.start()
    try:
        yield g
    finally:
        for r in Raw.opened:
            r.close()
        Raw.opened.clear()
        g.stop()


class Raw:
    """A blocking raw-socket peer: sends frames or bytes, reads frames with a deadline."""

    opened: list[Raw] = []  # closed by running() on exit

    def __init__(self, address: tuple[str, int], rcvbuf: int = 0) -> None:
        self.sock = socket.socket()
        Raw.opened.append(self)
        if rcvbuf:  # a small window both ways: a peer that stops reading is felt at once
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, rcvbuf)
        self.sock.connect(address)
        self.dec = FrameDecoder(ServerMessage, max_frame=1 << 24)
        self.pending: list[Any] = []

    def send(self, *msgs: Any, codec: str = "msgpack") -> None:
        """Sends messages as frames."""
        self.sock.sendall(b"".join(encode_frame(m, codec) for m in msgs))  # type: ignore[arg-type]

    def send_bytes(self, data: bytes) -> None:
        """Sends raw bytes."""
        self.sock.sendall(data)

    def read(self, n: int = 1, timeout: float = 5.0) -> list[Any]:
        """The next ``n`` messages; fewer only if the server closed the connection."""
        deadline = time.monotonic() + timeout
        while len(self.pending) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"got {self.pending} of {n} messages")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                break
            self.pending += self.dec.feed(data)
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def read_until(self, pred: Any, timeout: float = 5.0) -> list[Any]:
        """Messages up to and including the first that ``pred`` accepts."""
        got: list[Any] = []
        while True:
            (m,) = self.read(1, timeout) or (None,)
            if m is None:
                raise ConnectionError(f"closed before the expected message; got {got}")
            got.append(m)
            if pred(m):
                return got

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True once the server closes (reads and drops anything before the close)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
        return False

    def close(self) -> None:
        """Closes the socket."""
        self.sock.close()


def frame_of(body: bytes) -> bytes:
    """A frame with a correct length prefix around arbitrary bytes."""
    return struct.pack(">I", len(body)) + body


def pos(ack: Any) -> tuple[int, int]:
    """``(session_seq, account)`` of a LogonAck (its report position depends on history)."""
    return (ack.session_seq, ack.account)
