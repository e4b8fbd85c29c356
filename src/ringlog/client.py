"""Clients of the ringlog gateway (docs/protocol.md): ``AsyncClient`` and the blocking ``Client``.

::

    c = await AsyncClient.connect("127.0.0.1", 7878, token="...")
    seq = c.new_order(order_id=1, symbol=1, side=Side.BUY, qty=10, price=100)
    answers = await c.answers(seq)          # the reports of seq, once the server acked it
    await c.reconnect()                     # logs on again and resends what was not acked

The client numbers its messages (``seq`` 1, 2, 3 ...), keeps every message until the server
acknowledges it, and after a reconnect resends the unacknowledged ones in order: the server
answers a resend again and never applies it twice. Answers carrying a seq are collected per
seq; unsolicited messages (a maker's fills, market data) go to ``events``.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import msgspec

from .errors import RingLogError
from .gateway.protocol import (
    Ack,
    Cancel,
    Codec,
    Error,
    ErrorCode,
    FrameDecoder,
    FrameEncoder,
    Halted,
    Heartbeat,
    Logon,
    LogonAck,
    LogonReject,
    Logout,
    MassCancel,
    Modify,
    NewOrder,
    OpenOrders,
    OpenOrdersEnd,
    OrderInfo,
    OrderStatus,
    Report,
    ServerMessage,
    Subscribe,
)

__all__ = ["AsyncClient", "Client", "GatewayError", "GatewayTimeout", "LogonRejected"]

_ANSWERS = (Report, Error, Halted, OrderInfo, OpenOrdersEnd)


class GatewayError(RingLogError, ConnectionError):
    """The gateway closed the connection, or answered what the protocol does not allow."""


class GatewayTimeout(GatewayError, TimeoutError):
    """The gateway did not answer in time."""


class LogonRejected(GatewayError, PermissionError):
    """The gateway refused the logon (the reason says why: an unknown token, or the session
    already logged on elsewhere)."""


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.decoder = FrameDecoder(ServerMessage, max_frame=1 << 24)
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drain: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream connection's transport is a Transport (uvloop's too, though no subclass)
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        on = self.client._on_message
        for msg in self.decoder.feed(data):
            on(msg)

    def pause_writing(self) -> None:
        self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self.resume_writing()
        self.client._on_lost(self)


class AsyncClient:
    """An asyncio client of one gateway session. Not thread-safe (one event loop).

    ``send(msg_type, **fields)`` numbers and sends a message and returns its seq (the
    shortcuts ``new_order``, ``cancel``... do the same); ``await answers(seq)`` returns what
    the server answered to it once it acknowledged ``seq``. ``on_message``, if given, sees
    every server message first (the load generator uses it).
    """

    def __init__(self, host: str, port: int, token: str, *, codec: Codec = "msgpack",
                 heartbeat_ms: int = 0, keep_answers: bool = True,
                 on_message: Callable[[Any], None] | None = None, reports_after: int = -1,
                 resume_reports: bool = True, drop_copy: bool = False,
                 cancel_on_disconnect_ms: int = -1) -> None:
        self.host, self.port, self.token = host, port, token
        # the execution-report stream: the highest report seq seen; a reconnect asks for
        # every report after it (resume_reports), so fills made while away arrive once
        self.last_report = reports_after
        self.resume_reports = resume_reports
        self.drop_copy = drop_copy
        self.cancel_on_disconnect_ms = cancel_on_disconnect_ms
        self.codec: Codec = codec
        self.heartbeat_ms = heartbeat_ms
        self.keep_answers = keep_answers
        self.on_message = on_message
        self.account = 0
        self.next_seq = 1
        self.acked = 0  # highest seq the server acknowledged
        self.server_seq = 0  # LogonAck.session_seq of the last logon
        self.unacked: dict[int, msgspec.Struct] = {}  # seq -> message, in send order
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self._answers: dict[int, list[Any]] = {}
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._logon: asyncio.Future[Any] | None = None
        self._proto: _ClientProtocol | None = None
        self._enc = FrameEncoder(codec)
        self._logon_seq = 0
        self._gap_expected = False

    @classmethod
    async def connect(cls, host: str, port: int, token: str, *, timeout: float = 10.0,
                      **kw: Any) -> AsyncClient:
        """Connects and logs on; raises LogonRejected if the server refuses."""
        c = cls(host, port, token, **kw)
        await c.logon(timeout)
        return c

    # -- connection -----------------------------------------------------------------------
    async def logon(self, timeout: float = 10.0) -> LogonAck:
        """Opens the connection, logs on and resends every unacknowledged message in order."""
        loop = asyncio.get_running_loop()
        self._logon = loop.create_future()
        where = f"{self.host}:{self.port}"
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _ClientProtocol(self), self.host, self.port),
                timeout)
        except TimeoutError:
            raise GatewayTimeout(f"no connection to {where} within {timeout}s") from None
        except OSError as e:  # refused, unreachable, unknown host: one kind for the caller
            raise GatewayError(f"cannot connect to {where}: {e.strerror or e}") from e
        self._proto = proto
        self._logon_seq = self.acked
        after = self.last_report if self.resume_reports else -1
        self._write(Logon(self.acked, self.token, self.heartbeat_ms, after, self.drop_copy,
                          self.cancel_on_disconnect_ms))
        try:
            ack = await asyncio.wait_for(self._logon, timeout)
        except TimeoutError:
            raise GatewayTimeout(f"{where} did not answer the logon within {timeout}s") \
                from None
        finally:
            self._logon = None
        if isinstance(ack, LogonReject):
            self.close()
            raise LogonRejected(f"logon refused: {ack.reason}")
        self.account = ack.account
        self.server_seq = ack.session_seq
        if after < 0:  # no replay asked: the stream starts here for us
            self.last_report = max(self.last_report, ack.report_seq)
        if self.acked > ack.session_seq:
            # the server is behind what we saw acked: a restart forgot the seqs it answered
            # without the engine (docs/protocol.md). It expects session_seq + 1 next, and
            # everything we have not seen acked was never taken: renumber it from there.
            self._renumber(self.acked - ack.session_seq)
        if not self.unacked and self.next_seq <= ack.session_seq:
            # a client without the session's history (a new process): continue after the
            # server's seq instead of sending seqs it would take for resends
            self.next_seq = ack.session_seq + 1
            self.acked = ack.session_seq
        # resend even what the server already processed (seq <= session_seq): it answers a
        # resend again, so answers lost with the old connection arrive (collected afresh
        # from the LogonAck on: see _on_message)
        for msg in list(self.unacked.values()):
            self._write(msg)
        return ack

    def _renumber(self, shift: int) -> None:
        self.acked -= shift
        self.next_seq -= shift
        self.unacked = {seq - shift: msgspec.structs.replace(m, seq=seq - shift)  # type: ignore[type-var]
                        for seq, m in self.unacked.items()}
        self._answers = {seq - shift: a for seq, a in self._answers.items() if seq > shift}
        self._waiters = deque((seq - shift, f) for seq, f in self._waiters)

    async def reconnect(self, timeout: float = 10.0, *, host: str | None = None,
                        port: int | None = None) -> LogonAck:
        """Closes the connection (if open) and logs on again (to another address if given:
        a restarted or failed-over server); unacked messages are resent."""
        await self.close_and_wait()
        self.host = host or self.host
        self.port = port or self.port
        return await self.logon(timeout)

    def close(self) -> None:
        """Closes the connection (the session and its unacked messages stay for a logon)."""
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()

    async def close_and_wait(self, timeout: float = 5.0) -> None:
        """Closes the connection and waits until it is gone. A close flushes what is still
        unsent first; a server that stopped reading (it is waiting for us to read, and a
        closing transport reads no more) would hold it open for ever: after ``timeout`` the
        connection is aborted instead."""
        p = self._proto
        self.close()
        if p is not None and not p.lost.done() \
                and p.lost.get_loop() is asyncio.get_running_loop():  # else gone with its loop
            try:
                await asyncio.wait_for(asyncio.shield(p.lost), timeout)
            except TimeoutError:
                if p.transport is not None:
                    p.transport.abort()
                await p.lost

    async def logout(self, timeout: float = 10.0) -> None:
        """Sends Logout and waits until the server has answered everything and closed."""
        self.send(Logout)
        p = self._proto
        if p is not None:
            try:
                await asyncio.wait_for(p.lost, timeout)
            except TimeoutError:
                raise GatewayTimeout(f"the gateway did not close the session within "
                                     f"{timeout}s of the logout") from None

    @property
    def connected(self) -> bool:
        """True while the connection is open."""
        return self._proto is not None and not self._proto.lost.done()

    # -- sending --------------------------------------------------------------------------
    def send(self, msg_type: type[msgspec.Struct], *args: Any, **fields: Any) -> int:
        """Numbers a message (``msg_type(seq, *args, **fields)``), sends it, returns its seq."""
        seq = self.next_seq
        self.next_seq += 1
        msg = msg_type(seq, *args, **fields)
        self.unacked[seq] = msg
        if self.connected:
            self._write(msg)
        return seq

    def send_many(self, msgs: list[tuple[type[msgspec.Struct], tuple[Any, ...]]]) -> int:
        """Numbers and sends ``(msg_type, args)`` messages in one write; returns the first
        seq (the others follow it)."""
        first = self.next_seq
        buf = bytearray()
        enc = self._enc.append
        unacked = self.unacked
        seq = first
        for msg_type, args in msgs:
            msg = msg_type(seq, *args)
            unacked[seq] = msg
            enc(buf, msg)
            seq += 1
        self.next_seq = seq
        p = self._proto
        if buf and p is not None and p.transport is not None and not p.transport.is_closing():
            p.transport.write(buf)
        return first

    def send_raw(self, data: bytes) -> None:
        """Writes raw bytes (tests of malformed input)."""
        assert self._proto is not None and self._proto.transport is not None
        self._proto.transport.write(data)

    def _write(self, msg: msgspec.Struct) -> None:
        p = self._proto
        if p is None or p.transport is None or p.transport.is_closing():
            return
        buf = bytearray()  # the transport may keep it (never reuse a written buffer)
        self._enc.append(buf, msg)
        p.transport.write(buf)

    async def drain(self) -> None:
        """Waits while the connection's write buffer is above its high-water mark."""
        p = self._proto
        if p is not None and p._drain is not None:
            await p._drain

    def new_order(self, order_id: int, symbol: int, side: int, qty: int, price: int = 0,
                  **kw: Any) -> int:
        """Sends a NewOrder; returns its seq."""
        return self.send(NewOrder, order_id, symbol, side, qty, price, **kw)

    def cancel(self, order_id: int) -> int:
        """Sends a Cancel; returns its seq."""
        return self.send(Cancel, order_id)

    def modify(self, order_id: int, new_price: int, new_qty: int) -> int:
        """Sends a Modify; returns its seq."""
        return self.send(Modify, order_id, new_price, new_qty)

    def mass_cancel(self, symbol: int = 0) -> int:
        """Sends a MassCancel; returns its seq."""
        return self.send(MassCancel, symbol)

    def order_status(self, order_id: int) -> int:
        """Sends an OrderStatus query; returns its seq."""
        return self.send(OrderStatus, order_id)

    def open_orders(self, symbol: int = 0) -> int:
        """Sends an OpenOrders query; returns its seq."""
        return self.send(OpenOrders, symbol)

    def subscribe(self, symbol: int, depth: int = 1) -> int:
        """Subscribes to a symbol's market data (depth 0 unsubscribes); returns its seq."""
        return self.send(Subscribe, symbol, depth)

    def heartbeat(self) -> int:
        """Sends a Heartbeat; returns its seq."""
        return self.send(Heartbeat)

    # -- answers --------------------------------------------------------------------------
    async def answers(self, seq: int, timeout: float = 10.0) -> list[Any]:
        """What the server answered to ``seq``, once it acknowledged it (then forgotten)."""
        if seq > self.acked:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append((seq, fut))
            try:
                await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                raise GatewayTimeout(f"seq {seq} not acknowledged within {timeout}s (acked "
                                     f"{self.acked})") from None
        return self._answers.pop(seq, [])

    async def request(self, msg_type: type[msgspec.Struct], *args: Any,
                      timeout: float = 10.0, **fields: Any) -> list[Any]:
        """Sends a message and returns its answers."""
        return await self.answers(self.send(msg_type, *args, **fields), timeout)

    async def next_event(self, timeout: float = 10.0) -> Any:
        """The next unsolicited message (a maker's fill, market data, an Error without seq)."""
        try:
            return await asyncio.wait_for(self.events.get(), timeout)
        except TimeoutError:
            raise GatewayTimeout(f"no unsolicited message within {timeout}s") from None

    def _on_message(self, msg: Any) -> None:
        if self.on_message is not None:
            self.on_message(msg)
        t = type(msg)
        if t is Report and msg.rseq > self.last_report:
            self.last_report = msg.rseq
        if t is Ack:
            self._on_ack(msg.seq)
        elif t in _ANSWERS and msg.seq:
            if self.keep_answers and msg.seq > self.acked:
                self._answers.setdefault(msg.seq, []).append(msg)
        elif t is LogonAck or t is LogonReject:
            if self._logon is not None and not self._logon.done():
                if t is LogonAck:
                    # answers of unacked seqs are collected afresh from here: the server
                    # repeats those it gave before this logon, and answers routed after it
                    # may follow in this very read, before logon() resumes
                    for seq in self.unacked:
                        self._answers.pop(seq, None)
                self._logon.set_result(msg)
                # a logon ahead of the server is followed by a sequence_gap error naming the
                # expected seq: logon() renumbers, so that error is expected, not an event
                self._gap_expected = t is LogonAck and msg.session_seq < self._logon_seq
        elif t is Error and self._gap_expected and msg.code == ErrorCode.SEQUENCE_GAP:
            self._gap_expected = False
        else:
            self.events.put_nowait(msg)

    def _on_ack(self, seq: int) -> None:
        if seq <= self.acked:
            return
        self.acked = seq
        un = self.unacked
        while un:
            first = next(iter(un))
            if first > seq:
                break
            del un[first]
        w = self._waiters
        # waiters are mostly in seq order; keep the ones still waiting
        for _ in range(len(w)):
            s, fut = w.popleft()
            if s <= seq:
                if not fut.done():
                    fut.set_result(None)
            else:
                w.append((s, fut))

    def _on_lost(self, proto: _ClientProtocol) -> None:
        if self._logon is not None and not self._logon.done():
            self._logon.set_exception(GatewayError("the gateway closed the connection"))


class Client:
    """A blocking client: an AsyncClient on its own event loop thread.

    Every method of AsyncClient is available; coroutines are run to completion (their
    ``timeout`` arguments bound the wait). Not thread-safe: one caller thread at a time.
    """

    def __init__(self, host: str, port: int, token: str, *, timeout: float = 10.0,
                 **kw: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ringlog-client",
                                        daemon=True)
        self._thread.start()
        self._timeout = timeout
        try:
            self._client: AsyncClient = self._run(AsyncClient.connect(host, port, token,
                                                                      timeout=timeout, **kw))
        except BaseException:
            self._shutdown()
            raise

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._timeout + 5)

    def _call(self, fn: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        async def go() -> Any:
            return fn(*a, **kw)

        return self._run(go())

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        if asyncio.iscoroutinefunction(attr):
            return lambda *a, **kw: self._run(attr(*a, **kw))
        return lambda *a, **kw: self._call(attr, *a, **kw)

    def request(self, msg_type: type[msgspec.Struct], *args: Any, timeout: float = 10.0,
                **fields: Any) -> list[Any]:
        """Sends a message and returns its answers."""
        return self._run(self._client.request(msg_type, *args, timeout=timeout, **fields))

    def close(self) -> None:
        """Closes the connection and stops the client's loop thread."""
        try:
            self._run(self._client.close_and_wait())
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
