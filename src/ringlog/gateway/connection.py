"""One TCP connection of the gateway: frames in, answers out, flow control, limits.

::

    socket ──data_received──► Gateway.read (C): a logged-on read of order frames, whole:
                │                 the session rules, one claim into the input ring, done
                └─ the rest ─► FrameDecoder (bytes) ──process─┬─► Gateway.take_orders (C:
                                                              │   the same, kept frames)
                                                              └─► next() ─► Gateway.handle
    socket ◄──one write per batch── flush (+ Ack) ◄── out ◄── send / send_frame / error

A ``Connection`` is an ``asyncio.Protocol`` on the gateway's event loop; it is bound to a
session after logon and keeps nothing once closed (docs/protocol.md, "Heartbeats, timeouts
and connection limits", "Memory"). ``GatewayMetrics`` are the gateway's counters.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import TYPE_CHECKING, cast

import msgspec

from .._gateway import ConnectionCore, Outbox
from .protocol import Error, ErrorCode, FrameDecoder, FrameEncoder
from .session import GatewayConfigError, Session, decode_frames

if TYPE_CHECKING:
    from .server import Gateway

__all__ = ["Connection", "GatewayMetrics", "new_event_loop"]

_log = logging.getLogger("ringlog.gateway")


class GatewayMetrics(msgspec.Struct):
    """Counters of a running gateway (read on the loop thread, or roughly from any)."""

    connections: int = 0
    logons: int = 0
    logon_failures: int = 0
    messages: int = 0
    resends: int = 0
    reports: int = 0
    errors: int = 0
    halted: int = 0
    rate_limited: int = 0
    slow_consumers: int = 0
    closed_for_errors: int = 0
    timeouts: int = 0  # connections closed for no logon, silence or a stalled frame
    refused: int = 0  # connections over max_connections / max_connections_per_peer
    unexpected_exceptions: int = 0  # bugs: an exception escaped a connection's handling
    reports_replayed: int = 0  # execution reports sent from the output journal at logons
    cancel_on_disconnect: int = 0  # mass cancels published for a lost connection
    cancel_on_disconnect_failed: int = 0  # ... refused (breaker open, processor stopped)
    backlog_peak: int = 0
    market_data_dropped: int = 0
    bytes_in: int = 0  # bytes read from every connection (as the sockets gave them)
    bytes_out: int = 0  # bytes handed to the transports (answers, Acks, error frames)


def new_event_loop(kind: str = "uvloop") -> asyncio.AbstractEventLoop:
    """A new event loop: ``uvloop`` (the default) or ``asyncio`` (the standard one)."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if kind == "asyncio":
        return asyncio.new_event_loop()
    raise GatewayConfigError(f"loop must be 'uvloop' or 'asyncio', got {kind!r}")


class Connection(ConnectionCore, asyncio.Protocol):
    """One TCP connection: frames in, answers out; bound to a session after logon.

    Answers are appended to ``out`` and written once per batch (``flush``); ``out``,
    ``raw_frames`` and whether reading is paused live in ``outbox`` (C fields the compiled
    router writes frames through). What the compiled read path (``Gateway.read``) reads and
    writes are C fields of ``ringlog._gateway.ConnectionCore``: ``gw``, ``decoder``,
    ``transport``, ``session``, ``outbox``, ``paused``, ``reading``, ``closing``,
    ``owed_to``, ``resent``, ``logout_seq``, ``heard``, ``partial_since``; ``flush`` (the
    Ack, then one write of what is queued) is compiled there too. Not thread-safe.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        lim = gateway.config.limits
        self.decoder = FrameDecoder(max_frame=lim.max_frame)
        self.encoder = FrameEncoder("msgpack")
        self.outbox = Outbox(self)  # out, raw_frames, paused: what the router writes through
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.paused: set[str] = set()  # why reading is paused: write, backlog, inflight
        self.reading = True
        self.closing = False
        self.errors = 0  # consecutive error frames before logon
        self.heartbeat_s = 0.0
        self.logout_seq = 0
        self.before: dict[int, int] = {}  # in-flight seq -> its answers routed before logon
        # a client with history resends the seqs after its Logon.seq: until it has (or takes
        # a new seq), Acks here stop at the last one it resent, so a cumulative Ack never
        # overtakes the answers a resend is about to repeat
        self.owed_to = 0  # last seq it may resend (0: nothing owed)
        self.resent = 0  # the highest seq it has resent so far
        self.opened = self.heard = time.monotonic()  # heard: the last complete frame
        self.partial_since = 0.0  # when the incomplete frame in the decoder started (0: none)
        self.peer = ""  # counted in gateway.peers under this address ("": not counted)
        self.cod_s = -1.0  # cancel-on-disconnect grace in seconds (-1: off)

    @property
    def out(self) -> bytearray:
        """The answers queued for the next flush (one write)."""
        return self.outbox.out

    @out.setter
    def out(self, buf: bytearray) -> None:
        self.outbox.out = buf

    @property
    def raw_frames(self) -> bool:
        """msgpack: compiled frames go out as they are (a JSON session re-encodes them)."""
        return self.outbox.raw

    @raw_frames.setter
    def raw_frames(self, raw: bool) -> None:
        self.outbox.raw = raw

    @property
    def pending(self) -> range:
        """The frames read and not handled yet (while paused), as a sized range: they wait
        in the decoder as the bytes that were read."""
        return range(self.decoder.waiting())

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Sets the write-buffer limits that drive pause_writing / resume_writing."""
        # a stream connection's transport is a Transport (uvloop's too, though no subclass)
        transport = self.transport = cast("asyncio.Transport", transport)
        lim = self.gw.config.limits
        transport.set_write_buffer_limits(high=lim.high_water, low=lim.low_water)
        sock = transport.get_extra_info("socket")
        if lim.socket_buffer and sock is not None:
            # bounds the kernel's share of unsent output too; only the send side: shrinking
            # SO_RCVBUF of an established connection can stall its window (seen on Linux)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, lim.socket_buffer)
        gw = self.gw
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if len(gw.connections) >= lim.max_connections:
            self._refuse(f"the server has {lim.max_connections} connections (the limit)")
            return
        if gw.peers.get(host, 0) >= lim.max_connections_per_peer:
            self._refuse(f"{host} has {lim.max_connections_per_peer} connections (the limit)")
            return
        self.peer = host
        gw.peers[host] = gw.peers.get(host, 0) + 1
        gw.connections.add(self)
        gw.metrics.connections += 1

    def _refuse(self, why: str) -> None:
        self.gw.metrics.refused += 1
        self.send(Error(ErrorCode.CONNECTION_LIMIT, f"{why}: closing"))
        self.closing = True
        self.flush()

    def data_received(self, data: bytes) -> None:
        """Decodes every complete frame and handles them; then one write of the answers.
        The common read (a logged-on session's order frames, all taken) is done in one
        compiled call (``Gateway.read``); the rest of a read goes through the decoder and
        the per-message path. The protocol layer turns every bad frame into an answer
        without a catch-all; an exception escaping it anyway is a bug: counted
        (``unexpected_exceptions``), logged once per connection with its traceback, and that
        connection is aborted, so a bug is seen and never takes the event loop or another
        session with it."""
        try:
            took = self.gw.read(self, data)  # -1: the read is done (or dropped: closing)
            if took >= 0:
                self._received(data, took)
        except Exception:
            self.gw.metrics.unexpected_exceptions += 1
            _log.exception("gateway: unexpected error handling a connection's input; "
                           "aborting that connection")
            self.closing = True
            if self.transport is not None:
                self.transport.abort()

    def _received(self, data: bytes, took: int) -> None:
        # the bytes after the ``took`` that Gateway.read took (and counted)
        dec = self.decoder
        dec.keep(memoryview(data)[took:] if took else data)
        fresh = took > 0 or dec.complete()  # a frame completed: heard, a partial one is new
        if fresh:
            self.heard = time.monotonic()
        self.process()
        if dec.buffered and (not self.partial_since or fresh):
            self.partial_since = time.monotonic()  # a new frame started

    def process(self) -> None:
        """Handles the frames kept by the decoder until none is left or the connection is
        paused: the compiled fast path takes leading order frames (``Gateway.take_orders``),
        anything else is decoded and handled one message at a time. Frames read before a
        pause wait as bytes, and reading stays off until they are handled (at most one
        read's worth waits per connection)."""
        gw = self.gw
        dec = self.decoder
        while not self.paused and not self.closing:
            if self.session is not None and dec.complete():
                with dec.view() as data:
                    took = gw.take_orders(self, data)
                if took:
                    dec.consume(took)
                    continue
            msg = dec.next()
            if msg is None:
                break
            gw.handle(self, msg)
        if not dec.buffered:
            self.partial_since = 0.0
        self.flush()
        self._sync_reading()

    def pause_writing(self) -> None:
        """The client reads slower than we answer: stop reading its requests."""
        self.pause("write")

    def resume_writing(self) -> None:
        """The write buffer drained below low water: read requests again."""
        self.resume("write")

    def connection_lost(self, exc: Exception | None) -> None:
        """Detaches the session (it survives for a reconnect)."""
        self.closing = True
        self.decoder.clear()
        self.before = {}
        self.out = bytearray()
        self.gw.detach(self)

    def eof_received(self) -> bool:
        """The client closed its side: close ours (nothing more will come)."""
        return False

    # -- flow control ---------------------------------------------------------------------
    def pause(self, why: str) -> None:
        """Stops handling and reading for a reason (write backpressure, a backlogged input
        ring, too many commands in flight)."""
        self.paused.add(why)
        self.outbox.paused = True
        self._sync_reading()

    def resume(self, why: str) -> None:
        """Lifts one reason; the waiting frames, then reading, resume when none is left."""
        if why not in self.paused:
            return
        self.paused.discard(why)
        if not self.paused:
            self.outbox.paused = False
            if self.decoder.complete():
                asyncio.get_running_loop().call_soon(self.process)
            else:
                self._sync_reading()

    def _sync_reading(self) -> None:
        want = not self.paused and not self.decoder.complete()
        t = self.transport
        if want != self.reading and t is not None and not self.closing:
            self.reading = want
            if want:
                t.resume_reading()
            else:
                t.pause_reading()

    # -- output ---------------------------------------------------------------------------
    def send(self, msg: msgspec.Struct) -> None:
        """Queues one message for the next flush."""
        if self.transport is None:
            return
        if not self.out:
            self.gw.dirty.add(self)
        self.encoder.append(self.out, msg)

    def send_frame(self, frames: bytes) -> None:
        """Queues msgpack frames written by the compiled path (``ringlog._gateway``): as they
        are to a msgpack session, re-encoded to a JSON one (a debugging codec)."""
        if self.transport is None or not frames:
            return
        if self.outbox.raw:
            self.outbox.queue(frames, self.gw.dirty)
            return
        if not self.out:
            self.gw.dirty.add(self)
        for msg in decode_frames(frames):
            self.encoder.append(self.out, msg)

    def error(self, code: int, message: str, seq: int = 0) -> None:
        """Sends an error frame; too many in a row closes this connection only."""
        gw = self.gw
        gw.metrics.errors += 1
        s = self.session
        if s is not None:
            if seq and seq <= s.last_seen:  # a taken seq (not a gap's): kept for resends
                s.record(seq, Error(code, message, seq))
            s.errors += 1
            n = s.errors
        else:
            self.errors += 1
            n = self.errors
        self.send(Error(code, message, seq))
        if n > gw.config.limits.max_errors:
            gw.metrics.closed_for_errors += 1
            self.send(Error(ErrorCode.BAD_MESSAGE,
                            f"more than {gw.config.limits.max_errors} errors in a row: closing"))
            self.close()

    def memory(self) -> int:
        """Bytes this connection holds by the server's accounting: unsent output (the
        transport's buffer, at most ``max_buffered`` after a flush, and the batch being
        built), the incomplete frame, and the frames of one read waiting while paused (kept
        as the bytes that were read)."""
        t = self.transport
        buffered = t.get_write_buffer_size() if t is not None and not t.is_closing() else 0
        return buffered + len(self.out) + self.decoder.buffered

    def close(self) -> None:
        """Closes after the queued answers are written."""
        self.closing = True
        self.gw.dirty.add(self)
