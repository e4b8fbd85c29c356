"""The transport's ceiling: a uvloop TCP server that echoes the gateway's frames back.

::

    load generator ══TCP══► EchoProtocol.data_received ─► transport.write(data) ══► generator
                    (Logon answered with a LogonAck, then every byte echoed unchanged)

The load generator counts its own order frames as answers (``_wire.AnswerScanner``), so the
same generator, flow and rate drive this peer and the gateway; the gateway's throughput and
latency as a ratio of this one's is the share of the transport's ceiling it reaches.
``python -m ringlog.bench.echo [--port P]`` serves in the foreground and prints
``{"port": P, "pid": ...}`` once it listens; ``EchoServer`` runs one in a thread (tests).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from typing import Any

__all__ = ["EchoProtocol", "EchoServer", "main"]


class EchoProtocol(asyncio.Protocol):
    """Answers the first frame (a Logon) with a LogonAck, then echoes every byte."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.logged_on = False
        self.head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keeps the transport."""
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """The logon frame is answered; everything after it goes straight back."""
        if self.logged_on:
            self.transport.write(data)
            return
        from ..gateway.protocol import LogonAck, encode_frame

        self.head += data
        if len(self.head) < 4:
            return
        end = 4 + int.from_bytes(self.head[:4], "big")
        if len(self.head) < end:
            return
        self.logged_on = True
        rest, self.head = self.head[end:], b""
        self.transport.write(encode_frame(LogonAck(0, 0)) + rest)


class EchoServer:
    """An echo server on its own uvloop thread (``start()`` returns the port). Not
    thread-safe: start and stop from one thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None

    def start(self, timeout: float = 10.0) -> int:
        """Starts the thread; returns the bound port once it listens."""
        self._thread = threading.Thread(target=self._run, name="ringlog-echo", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the echo server did not start in time")
        return self.port

    def _run(self) -> None:
        from ..gateway.server import new_event_loop

        self._loop = loop = new_event_loop("uvloop")
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop = loop.create_future()
        server = await loop.create_server(EchoProtocol, self.host, self.port)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop
        server.close()
        await server.wait_closed()

    def stop(self, timeout: float = 10.0) -> None:
        """Stops serving and joins the thread. Idempotent."""
        if self._thread is None or self._loop is None:
            return
        stop = self._stop
        if stop is not None:
            self._loop.call_soon_threadsafe(lambda: None if stop.done() else stop.set_result(None))
        self._thread.join(timeout)
        self._thread = None


def main(argv: list[str] | None = None) -> int:
    """Serves in the foreground until SIGTERM / SIGINT (``--port``, default any free)."""
    import argparse
    import os
    import signal

    from ..gateway.server import new_event_loop

    ap = argparse.ArgumentParser(prog="python -m ringlog.bench.echo")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    loop = new_event_loop("uvloop")

    async def serve() -> None:
        stop = loop.create_future()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: None if stop.done() else stop.set_result(None))
        server = await loop.create_server(EchoProtocol, args.host, args.port)
        print(json.dumps({"port": server.sockets[0].getsockname()[1], "pid": os.getpid()}),
              flush=True)
        await stop
        server.close()

    try:
        loop.run_until_complete(serve())
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
