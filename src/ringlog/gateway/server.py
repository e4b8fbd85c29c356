"""The gateway server: asyncio (uvloop) TCP sessions in front of a processor.

::

    client ──TCP──► Connection (asyncio.Protocol, FrameDecoder) ──► Gateway.handle
        │ logon, seq check, limits                                    │ publish(timeout=0)
        │                                                             ▼
        │                                           processor input ring ─► journal ─► engine
        │                                                                        │ emit
        ◄── Connection.flush (one write per batch) ◄── Router.drain (C) ◄── output stage
              (routes the slots, writes the report frames, keeps them    (ringlog._release,
               for resends: ringlog._gateway)                            no GIL): durable
                                                        slots into a SlotSink, its eventfd
                                                        wakes the loop (add_reader)

Everything but the processor's threads runs on one event loop thread, so sessions need no
locks. The loop never blocks: commands are published with ``timeout=0`` (a full input ring
parks them in a backlog retried from a timer while the senders' reading pauses; an open breaker
answers Halted at once). Each connection has write-buffer limits: above ``high_water`` its
reading pauses (so it cannot make the server queue more answers), as it does while
``max_inflight`` of its commands await the engine; beyond ``max_buffered`` it is closed as a
slow consumer; market data to a paused connection is dropped (it is a latest
value), reports never are. ``start()`` recovers the engine (snapshot + journal) and rebuilds
the sessions before the socket listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .._gateway import SETTLE_S, GatewayCore
from .._release import SlotSink
from ..errors import (
    CircuitOpenError,
    InsufficientCapacityError,
    JournalError,
    RingClosedError,
    WaitTimeoutError,
)
from ..journal import JournalReader
from .connection import Connection, GatewayMetrics, new_event_loop
from .protocol import (
    Ack,
    Error,
    ErrorCode,
    FrameEncoder,
    Halted,
    Heartbeat,
    Logon,
    LogonAck,
    LogonReject,
    Logout,
    MassCancel,
    NewOrder,
    ProtocolError,
    Report,
    Subscribe,
)
from .session import (
    ENGINE_MESSAGES,
    GatewayConfig,
    GatewayConfigError,
    Session,
    SessionTable,
    correlation,
    encode_command,
    report_seq,
    split_correlation,
)

__all__ = ["Connection", "Gateway", "GatewayMetrics", "GatewayThread", "new_event_loop",
           "run_server"]

_BACKLOG_RETRY_S = 0.0005
_REBUILD_TIMEOUT_S = 30.0
# driven topology: the event loop pumps the processor this often whatever happens, for input
# other threads publish (admin commands, a breaker reset, Processor.publish from a user thread)
_PUMP_EVERY_S = 0.002


class Gateway(GatewayCore):
    """The gateway around one processor running the matching engine (or any handler that
    speaks ``ringlog.engine.records``). Create it, ``await start()``, ``await stop()``.

    The processor must be built with ``ProcessorConfig(dedup=True)`` (a resent command is
    never applied twice) and not started: ``start()`` recovers it and rebuilds the sessions
    first. Not thread-safe: everything runs on the event loop that called ``start()``.
    ``submit`` replaces ``processor.publish`` as the way commands enter (same arguments;
    returns the ring sequence, or None when the journal sequence is told later).

    The read path of a logged-on connection is compiled (``ringlog._gateway.GatewayCore``,
    which this subclasses: ``read``, ``take_orders``, ``_enter``, ``_published``); the
    fields it reads are C fields there (``processor``, ``table``, ``metrics``, ``backlog``,
    ``_loop``, ``_settle_timer``, ``_settle_delay``, ``_fast``, ``_driven``, ``_pump_due``,
    ``_journal_base``, ``_batch``, ``_input``, ``dirty``, and the output side's ``_sink``,
    ``_outq``, ``_rebuild``, ``_scheduled``, ``_holding``, ``_holding_completion``,
    ``_stopping``, ``_held_from``, ``_routed``, ``_published0``, ``_out_base``); so is the
    per-iteration side (``_pump_now``, ``_drain_outputs``, ``_settle``, ``_flush_dirty``,
    and each connection's ``flush``).
    """

    def __init__(self, processor: Any, config: GatewayConfig, *,
                 submit: Callable[..., int | None] | None = None) -> None:
        if not processor.config.dedup:
            raise GatewayConfigError("the gateway needs ProcessorConfig(dedup=True): without "
                                     "it a resent command could be applied twice")
        # Where commands go: the processor's input ring, or (a cluster gateway) a shard's
        # input stream, whose submit returns None and reports each command's journal
        # sequence later through ``table.published`` (ringlog.cluster.front). The compiled
        # fast path publishes straight into the ring, so it serves the first case only.
        self._submit_command = submit or processor.publish
        self.config = config
        self.table = SessionTable(config)
        super().__init__(processor, self.table, GatewayMetrics(), config.limits)
        self._fast = submit is None
        self.connections: set[Connection] = set()
        self.peers: dict[str, int] = {}  # open connections per peer address
        self.dirty = set()
        self.backlog: deque[tuple[Session, int, int, bytes]] = deque()
        self._outq: deque[Any] = deque()
        self._sink: SlotSink | None = None  # the processor's outputs (start())
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._rebuild: asyncio.Future[None] | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._settle_timer = None
        self._settle_delay = SETTLE_S
        self._held_from = -1  # input whose outputs the breaker started holding; -1: none
        self.recovery: Any = None  # the processor's RecoveryReport, if start() recovered it
        self._routed = 0  # outputs routed since start
        self._published0 = 0  # outputs the processor had published before start
        self._out_base = 0  # output journal sequence of the first output routed this run
        self._cod: dict[int, asyncio.TimerHandle] = {}  # session id -> cancel-on-disconnect
        self._journal_base = 0  # journal sequence of this run's ring sequence 0
        self._holding = False  # test hook: outputs wait in _outq (hold_outputs)
        self._holding_completion = False  # test hook: no settle (hold_completion)
        self._stopping = False
        # the processor's driven topology: this loop thread is its loop (pump())
        self._driven = False
        self._pump_due = False  # a pump is scheduled (call_soon) for what was just published
        self._pump_timer: asyncio.TimerHandle | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Recovers the engine, rebuilds sessions, starts the processor, then listens."""
        self._loop = loop = asyncio.get_running_loop()
        p = self.processor
        if p.state == "created":  # recovery reads the journal: off the loop thread
            self.recovery = await loop.run_in_executor(None, p.recover)
        self._restore_sessions()
        self._published0 = p.published_outputs
        self._out_base = p.output.next_sequence  # the first record this run routes
        # outputs arrive through a SlotSink: the output stage hands them over without the
        # GIL and wakes this loop through the sink's eventfd (no call_soon_threadsafe)
        self._sink = SlotSink()
        p.add_output_listener(self._sink, batch="slots")
        p.start()
        loop.add_reader(self._sink.fd, self._drain_outputs)
        self._driven = p.topology == "driven"
        if self._driven:  # before the rebuild below: its commands need a pump
            self._pump_timer = loop.call_later(_PUMP_EVERY_S, self._pump_tick)
        self._journal_base = p.journal_sequence_of(0)  # + a ring sequence: its journal seq
        if self._fast:  # the read path publishes order frames straight into it
            self._input = p.input_ring
        from ..metrics import GatewayCounters

        self._gw_counters = GatewayCounters(self, loop)  # gateway.* in DIR/counters
        await self._rebuild_live_orders()
        c = self.config
        self._server = await loop.create_server(lambda: Connection(self), c.host, c.port,
                                                reuse_address=True)
        self._ticker = loop.call_later(self._tick_interval(), self._tick)

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` (the port is the kernel's choice if configured 0)."""
        assert self._server is not None, "start() first"
        return self._server.sockets[0].getsockname()[:2]

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stops listening, closes every connection, drains and stops the processor."""
        self._stopping = True
        if getattr(self, "_gw_counters", None) is not None:
            self._gw_counters.close()
        for timer in self._cod.values():
            timer.cancel()
        self._cod.clear()
        if self._server is not None:
            self._server.close()
        for c in list(self.connections):
            c.flush()
            if c.transport is not None:
                c.transport.close()
        if self._ticker is not None:
            self._ticker.cancel()
        if self._retry is not None:
            self._retry.cancel()
        if self._settle_timer is not None:
            self._settle_timer.cancel()
        if self._pump_timer is not None:  # drain() and stop() pump what is left
            self._pump_timer.cancel()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        p = self.processor
        try:
            if p.state == "running":  # drain() keeps the processor running: stop() after
                await asyncio.get_running_loop().run_in_executor(None, p.drain, drain_timeout)
        finally:
            try:
                p.stop()
            finally:
                if self._sink is not None and self._loop is not None:
                    self._loop.remove_reader(self._sink.fd)
                    self._drain_outputs()  # what the last drain released

    def memory(self) -> dict[int, int]:
        """Bytes each session holds by the server's own accounting (RSS does not shrink when
        Python frees memory, so it cannot tell): the answers kept for resends (at most
        ``session_memory``) and, while connected, its connection's share. Session id 0 sums
        the connections not logged on. Loop thread."""
        out = {s.id: s.kept for s in self.table.by_id.values()}
        out[0] = 0
        for c in self.connections:
            sid = c.session.id if c.session is not None else 0
            out[sid] += c.memory()
        return out

    def _restore_sessions(self) -> None:
        """After recovery: each session's last applied seq from the processor's dedup table,
        and the recent answers from the output journal's tail (for resends)."""
        applied = self.processor.dedup_positions()
        table = self.table
        for s in table.by_id.values():
            s.last_seen = s.acked = applied.get(s.id, 0)
        out = self.processor.output
        lo = max(0, out.next_sequence - self.config.answer_scan)
        for rec in out.reader(lo):
            sid, seq = split_correlation(rec.correlation_id)
            owner = table.by_id.get(sid)
            if owner is None or not seq or seq > owner.last_seen:
                continue
            for target, tseq, frame in table.route_frames(rec.type_id, bytes(rec.payload),
                                                          rec.correlation_id,
                                                          report_seq(rec.sequence)):
                if tseq:
                    target.store.record(tseq, frame)
        for live in table.live.values():  # rebuilt from the engine itself next
            live.clear()

    async def _rebuild_live_orders(self) -> None:
        """Asks the engine for each account's open orders (the open-orders limit's count)."""
        table = self.table
        accounts = list(table.live)
        if not accounts:
            return
        from ..engine.records import Command
        from .protocol import OpenOrders

        table.rebuilding = set()
        for acct in accounts:
            type_id, payload = encode_command(OpenOrders(1), acct)
            try:
                self._submit_command(payload, type_id, correlation_id=correlation(0, acct),
                                     timeout=1.0)
            except (CircuitOpenError, InsufficientCapacityError):
                # the breaker is open: the engine's own per-account limit still applies
                table.rebuilding = set()
                return
            table.rebuilding.add(acct)
        assert type_id == Command.OPEN_ORDERS
        self._rebuild = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._rebuild, _REBUILD_TIMEOUT_S)
        finally:
            self._rebuild = None

    # -- input ----------------------------------------------------------------------------
    def handle(self, conn: Connection, item: Any) -> None:
        """One decoded frame (or protocol error) of a connection."""
        if type(item) is ProtocolError:
            conn.error(item.code, item.message)
            if item.fatal:
                conn.close()
            return
        self.metrics.messages += 1
        s = conn.session
        if s is None:
            if type(item) is Logon:
                self._logon(conn, item)
            else:
                conn.error(ErrorCode.NOT_LOGGED_ON, "log on first: send Logon(seq, token)",
                           item.seq)
            return
        now = time.monotonic()
        if type(item) is Logon:
            conn.error(ErrorCode.BAD_MESSAGE, "this connection is already logged on")
            return
        seq = item.seq
        if seq <= s.last_seen:
            self._resend(conn, s, seq)
            return
        if seq != s.last_seen + 1:
            conn.error(ErrorCode.SEQUENCE_GAP,
                       f"seq {seq} skips ahead: the next expected seq is {s.last_seen + 1}", seq)
            return
        s.last_seen = seq
        if conn.owed_to:  # a new seq: the client resends nothing more
            conn.owed_to = 0
            conn.before.clear()
        lim = self.config.limits
        if not s.take_token(lim.rate, lim.burst, now):
            self.metrics.rate_limited += 1
            conn.error(ErrorCode.RATE_LIMITED,
                       f"over {lim.rate:g} messages/s (burst {lim.burst}): message dropped", seq)
            return
        s.errors = 0
        t = type(item)
        if t in ENGINE_MESSAGES:
            self._submit(conn, s, item)
        elif t is Heartbeat:
            pass  # answered by the Ack of the next flush
        elif t is Subscribe:
            self.table.subscribe(s, item.symbol, item.depth)
        elif t is Logout:
            conn.logout_seq = seq
        # the Ack of the next flush answers heartbeats, subscriptions and logouts

    def _logon(self, conn: Connection, msg: Logon) -> None:
        s = self.table.authenticate(msg.token)
        conn.encoder = FrameEncoder(conn.decoder.codec or "msgpack")
        conn.raw_frames = conn.encoder.codec == "msgpack"
        if s is None or s.conn is not None:
            self.metrics.logon_failures += 1
            conn.send(LogonReject("unknown token" if s is None
                                  else f"session {s.id} is already logged on"))
            conn.close()
            return
        self.metrics.logons += 1
        conn.session = s
        s.conn = conn
        s.errors = 0
        conn.heartbeat_s = msg.heartbeat_ms / 1000.0
        conn.cod_s = msg.cancel_on_disconnect_ms / 1000.0 if msg.cancel_on_disconnect_ms >= 0 \
            else -1.0
        timer = self._cod.pop(s.id, None)
        if timer is not None:  # back within the grace: nothing is cancelled
            timer.cancel()
        self.table.set_drop_copy(s, msg.drop_copy)
        s.acked = s.ack_target()
        # answers of in-flight seqs routed before this logon went to no connection (or to the
        # old one): a resend of such a seq repeats those; later ones come here as they route
        store = s.store
        conn.before = {q: store.count(q) for q in s.inflight if q in store}
        if msg.seq < s.last_seen:
            conn.owed_to, conn.resent = s.last_seen, msg.seq
        end = self._out_base + self._routed  # output records routed so far
        conn.send(LogonAck(s.last_seen, s.account, s.acked, 2 * end))
        if msg.seq > s.last_seen:
            # the server is authoritative: a client ahead of it (a restart forgot the seqs the
            # gateway answered alone, or a wrong claim) renumbers from the expected seq
            conn.error(ErrorCode.SEQUENCE_GAP,
                       f"logon seq {msg.seq} is ahead of the session's seq {s.last_seen}: "
                       f"the next expected seq is {s.last_seen + 1}")
        if msg.reports_after >= 0:
            self._replay_reports(conn, s, msg.reports_after, end)

    def _replay_reports(self, conn: Connection, s: Session, after: int, end: int) -> None:
        """Sends the reports after report seq ``after`` that this session would have heard
        unsolicited (fills of resting orders, engine cancels, drop copies), read from the
        output journal up to ``end`` (the records routed so far: the later ones reach this
        connection live). Solicited answers come back through resends, not here."""
        # routed records are committed, but a write-behind (direct I/O: lingering) writer may
        # not have them in the file yet: asked for now, or the replay would stop short
        out = self.processor.output
        if end > 0 and out.wait_written(end - 1) < end - 1:
            conn.send(Error(ErrorCode.REPORTS_GONE, "the output journal did not take the "
                            f"reports up to {report_seq(end - 1)} in time; use OpenOrders"))
            return
        reader = JournalReader(out.path)
        try:
            self._replay_from(reader, conn, s, after, end)
        except JournalError as e:  # retention dropped a segment while we read it
            conn.send(Error(ErrorCode.REPORTS_GONE,
                            f"the report replay stopped: {e}; use OpenOrders"))
        finally:
            reader.close()

    def _replay_from(self, reader: JournalReader, conn: Connection, s: Session, after: int,
                     end: int) -> None:
        segs = reader.segments()
        first = segs[0][0] if segs else end
        if after < 2 * first:  # retention dropped the records that made these
            conn.send(Error(ErrorCode.REPORTS_GONE,
                            f"reports before {report_seq(first)} are gone; use OpenOrders"))
        lo = max(first, after // 2)  # record o made report seqs 2o+1 and 2o+2
        if lo >= end:
            return
        route = self.table.route
        n = 0
        for rec in reader.records(lo, to_sequence=end - 1):
            for target, tseq, msg in route(rec.type_id, bytes(rec.payload),
                                           rec.correlation_id, -1, report_seq(rec.sequence),
                                           False):
                if target is s and not tseq and type(msg) is Report and msg.rseq > after:
                    conn.send(msg)
                    n += 1
        self.metrics.reports_replayed += n

    def _resend(self, conn: Connection, s: Session, seq: int) -> None:
        """A seq already taken: answer it again from the recorded answers, apply nothing."""
        self.metrics.resends += 1
        if conn.owed_to and seq > conn.resent:
            conn.resent = seq
            if seq >= conn.owed_to:
                conn.owed_to = 0
        if seq <= s.acked:
            conn.send_frame(s.store.get(seq))
            # Ack(seq), not the session's: a client resending seqs in order collects each
            # one's answers before an Ack covers the next
            conn.send(Ack(seq))
            return
        # in flight: repeat what was routed before this connection logged on; the rest and
        # the Ack are on their way here
        conn.send_frame(s.store.get(seq, conn.before.pop(seq, 0)))

    def _submit(self, conn: Connection, s: Session, msg: Any) -> None:
        seq = msg.seq
        is_new = type(msg) is NewOrder
        if is_new and self.table.order_room(s.account) <= 0:
            lim = self.config.limits.max_open_orders
            conn.error(ErrorCode.LIMIT_EXCEEDED,
                       f"account {s.account} has {lim} open or pending orders (the limit)", seq)
            return
        self._enter(conn, s, seq, 1, (seq,) if is_new else ())
        command = encode_command(msg, s.account)
        if self.backlog:
            self._park(conn, s, seq, *command)
            return
        try:
            ring_seq = self._publish(s, seq, command)
        except (CircuitOpenError, RingClosedError) as e:
            self._halted(s, seq, e)
        else:
            if ring_seq is None or ring_seq >= 0:
                self._published(s, seq, 1, ring_seq)
            else:
                self._park(conn, s, seq, *command)

    def _publish(self, s: Session, seq: int, command: tuple[int, bytes]) -> int | None:
        """The way one session command leaves the gateway: ``command`` (type id and
        payload) of ``s``'s ``seq`` into the processor's input ring (or the ``submit``
        given), never waiting, with the session as the dedup producer and
        ``correlation(s.id, seq)``. Returns its ring sequence, -1 if there is no room now,
        None if the journal sequence is told later (a cluster gateway); raises
        CircuitOpenError (breaker open) or RingClosedError. (The read path, ``_fast`` only,
        writes a batch of order frames into the ring itself: ``GatewayCore._take``.)"""
        try:
            return self._submit_command(command[1], command[0],
                                        correlation_id=correlation(s.id, seq),
                                        producer_id=s.id, producer_seq=seq, timeout=0)
        except InsufficientCapacityError:
            return -1

    def _halted(self, s: Session, seq: int, e: Exception) -> None:
        """Answers Halted: the command was not published (breaker open, processor stopped)."""
        self.metrics.halted += 1
        if s.inflight.remove(seq):  # a new order
            self.table.pending_new[s.account] -= 1
        reason = ("circuit breaker open: retry after an operator reset"
                  if isinstance(e, CircuitOpenError) else "the engine is stopped")
        msg = Halted(seq, reason)
        s.record(seq, msg)
        if s.conn is not None:
            s.conn.send(msg)

    def _park(self, conn: Connection, s: Session, seq: int, type_id: int, payload: bytes) -> None:
        """The input ring is full: keep the command in order and stop reading its sender."""
        self.backlog.append((s, seq, type_id, payload))
        self.metrics.backlog_peak = max(self.metrics.backlog_peak, len(self.backlog))
        conn.pause("backlog")
        if self._retry is None:
            assert self._loop is not None
            self._retry = self._loop.call_later(_BACKLOG_RETRY_S, self._retry_backlog)

    def _retry_backlog(self) -> None:
        self._retry = None
        if self._driven:  # the ring is full: what the engine handles makes room
            self._pump_now()
        q = self.backlog
        while q:
            s, seq, type_id, payload = q[0]
            try:
                ring_seq = self._publish(s, seq, (type_id, payload))
            except (CircuitOpenError, RingClosedError) as e:
                self._halted(s, seq, e)
            else:
                if ring_seq is not None and ring_seq < 0:
                    assert self._loop is not None
                    self._retry = self._loop.call_later(_BACKLOG_RETRY_S, self._retry_backlog)
                    return
                if ring_seq is not None:
                    self.table.published(s, seq, self._journal_base + ring_seq)
            q.popleft()
        self._settle()
        for c in list(self.connections):
            if "backlog" in c.paused:
                c.resume("backlog")
        self._flush_dirty()

    def detach(self, conn: Connection) -> None:
        """A connection closed: its session stays (state, answers) for a reconnect."""
        self.connections.discard(conn)
        self.dirty.discard(conn)
        if conn.peer:
            n = self.peers[conn.peer] - 1
            if n:
                self.peers[conn.peer] = n
            else:
                del self.peers[conn.peer]
            conn.peer = ""
        s = conn.session
        if s is not None and s.conn is conn:
            s.conn = None
            self.table.unsubscribe_all(s)
            self.table.set_drop_copy(s, False)
            if conn.cod_s >= 0 and self._loop is not None and not self._stopping:
                self._cod[s.id] = self._loop.call_later(conn.cod_s, self._cancel_on_disconnect,
                                                        s)
        conn.session = None
        conn.transport = None

    def _cancel_on_disconnect(self, s: Session) -> None:
        """The grace after a cancel-on-disconnect session's connection was lost has passed
        without a new logon: cancel every order of its account as a journaled MASS_CANCEL
        (an input like any other, so a replay reproduces it; its reports are unsolicited)."""
        self._cod.pop(s.id, None)
        if s.conn is not None:
            return
        type_id, payload = encode_command(MassCancel(1), s.account)
        try:
            self._submit_command(payload, type_id, correlation_id=correlation(0, 0), timeout=0)
        except InsufficientCapacityError:  # the ring is full for now: try again shortly
            assert self._loop is not None
            self._cod[s.id] = self._loop.call_later(_BACKLOG_RETRY_S * 20,
                                                    self._cancel_on_disconnect, s)
            return
        except (CircuitOpenError, RingClosedError):
            self.metrics.cancel_on_disconnect_failed += 1
            return
        self.metrics.cancel_on_disconnect += 1

    def _tick_interval(self) -> float:
        """A quarter of the shortest timeout, at most a second (tests use short ones)."""
        lim = self.config.limits
        return max(0.005, min(1.0, lim.logon_timeout / 4, lim.idle_timeout / 4,
                              lim.frame_timeout / 4))

    def _tick(self) -> None:
        """Closes connections past a timeout: no logon, silence beyond the heartbeat (or the
        idle timeout), a frame started and not finished. Paused connections are not read,
        so their silence is ours, not theirs: they are left alone."""
        assert self._loop is not None
        now = time.monotonic()
        lim = self.config.limits
        for c in list(self.connections):
            if c.closing or c.paused:
                continue
            why = ""
            s = c.session
            if s is None:
                if now - c.opened > lim.logon_timeout:
                    why = f"no logon within {lim.logon_timeout:g}s"
            elif c.heartbeat_s:
                if now - c.heard > lim.heartbeat_grace * c.heartbeat_s:
                    why = f"nothing heard for {lim.heartbeat_grace:g} x {c.heartbeat_s:g}s"
            elif now - c.heard > lim.idle_timeout:
                why = f"nothing heard for {lim.idle_timeout:g}s"
            if not why and c.partial_since and now - c.partial_since > lim.frame_timeout:
                why = f"a frame incomplete for {lim.frame_timeout:g}s"
            if why:
                self.metrics.timeouts += 1
                c.send(Error(ErrorCode.TIMEOUT, f"{why}: closing"))
                c.close()
        self._flush_dirty()
        self._ticker = self._loop.call_later(self._tick_interval(), self._tick)

    # -- the driven topology: this thread is the processor's loop --------------------------
    # (a read's pump is scheduled by GatewayCore._pump_soon, in C)
    def _pump_tick(self) -> None:
        """The periodic pump (every ``_PUMP_EVERY_S``): input published by other threads is
        handled within that time even while no client sends."""
        self._pump_now()
        assert self._loop is not None
        self._pump_timer = self._loop.call_later(_PUMP_EVERY_S, self._pump_tick)

    # -- output ---------------------------------------------------------------------------
    def _on_outputs(self, slots: bytes, slot_size: int) -> None:
        """A listener for blocks of output slots from another thread (the processor's own
        outputs come through ``self._sink``): queue them (no object per output); one loop
        wake-up per block (none while a drain is already scheduled)."""
        self._outq.append((slots, slot_size))
        if not self._scheduled:
            self._scheduled = True
            loop = self._loop
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
                    loop.call_soon_threadsafe(self._drain_outputs)

    def hold_outputs(self) -> None:
        """Test hook (loop thread): engine outputs wait, unrouted, until
        ``release_outputs()``; commands stay in flight, so a test sees a session that has
        taken more seqs than it has answered, deterministically."""
        self._holding = True

    def hold_completion(self) -> None:
        """Test hook (loop thread): outputs are routed, but commands that made no later
        report stay in flight (no settle) until ``release_completion()``."""
        self._holding_completion = True

    def release_completion(self) -> None:
        """Ends ``hold_completion``: finished commands complete now (loop thread)."""
        self._holding_completion = False
        self._settle()

    def release_outputs(self) -> None:
        """Ends ``hold_outputs``: the waiting outputs are routed now (loop thread)."""
        self._holding = False
        self._drain_outputs()

class GatewayThread:
    """Runs a Gateway on its own event loop in a background thread (tests, benchmarks, apps
    whose main thread is busy). ``start()`` returns once it listens; ``stop()`` joins."""

    def __init__(self, processor: Any, config: GatewayConfig, loop: str = "uvloop") -> None:
        self.gateway = Gateway(processor, config)
        self._kind = loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._done: asyncio.Future[None] | None = None

    def start(self, timeout: float = 30.0) -> tuple[str, int]:
        """Starts the thread; returns the bound address once the gateway listens."""
        self._thread = threading.Thread(target=self._run, name="ringlog-gateway", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise WaitTimeoutError(f"the gateway did not start within {timeout:g}s")
        if self._error is not None:
            raise self._error
        return self.gateway.address

    def _run(self) -> None:
        self._loop = loop = new_event_loop(self._kind)
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._done = asyncio.get_running_loop().create_future()
        try:
            await self.gateway.start()
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        await self._done
        await self.gateway.stop()

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Runs ``fn()`` on the gateway's loop thread and returns its result."""
        assert self._loop is not None

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stops the gateway (and its processor) and joins the thread. Idempotent."""
        if self._thread is None:
            return
        loop, done = self._loop, self._done
        if loop is not None and done is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda: None if done.done() else done.set_result(None))
        self._thread.join(timeout)
        self._thread = None


def run_server(processor: Any, config: GatewayConfig, *, loop: str = "uvloop",
               on_ready: Callable[[Gateway], None] | None = None) -> None:
    """Runs a gateway in the foreground until SIGINT or SIGTERM, then stops it cleanly
    (drains the processor). ``on_ready(gateway)`` is called once it listens."""
    import signal

    ev = new_event_loop(loop)

    async def main() -> None:
        gw = Gateway(processor, config)
        stop = asyncio.get_running_loop().create_future()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(
                sig, lambda: None if stop.done() else stop.set_result(None))
        await gw.start()
        if on_ready is not None:
            on_ready(gw)
        try:
            await stop
        finally:
            await gw.stop()

    try:
        ev.run_until_complete(main())
    finally:
        ev.close()
