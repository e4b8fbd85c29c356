"""The TCP gateway of a cluster node: clients' commands go to the shard's input stream, and
their reports come back from this node's own replica, which processes that stream like every
other replica.

::

    client ──TCP──► Gateway (sessions, seqs, limits: unchanged)
                       │ submit(cmd)  (the gateway's one seam: instead of processor.publish)
                       ▼
                  InputPublisher ── batches, Nats-Msg-Id ──► RL_<name>_IN_<shard> (R=3)
                                                                │ ordered, every replica
                       ┌────────────────────────────────────────┘
                       ▼
                  this node's Replica: feeder ─► Processor (dedup by session, seq)
                       │ applied(session, seq, journal seq)      │ outputs
                       ▼                                         ▼
                  table.published (settles silent commands)  Gateway._on_outputs ─► sessions

A report reaches a client only after its command is stored in the replicated stream and
processed here; the bytes are those the leader publishes to the output stream (every replica
makes the same outputs, checked by the state-hash checkpoints). So a gateway never waits for
the leader: a leader failover does not pause it, and a client whose node dies logs on at
another node, where the session's state is the same (the dedup table is replicated state: a
resend of a command already in the stream is applied once).

One session is logged on at one node at a time: a logon takes the session's lease (key
``session-<id>`` of the shard's lease bucket, the leader lease's kind: ``ringlog.cluster.
lease``), renewed while the session is connected here and released when it leaves. A logon
at a second node waits for the lease up to twice its ttl (a node that died stops renewing:
its clients move over within that), then is refused naming the node that holds it; a node
that loses a lease it held (paused past the ttl while another took it) closes the session's
connection.

::

    logon(token) ─► catch-up ─► SessionLeases.acquire(id) ── held by node X ──► LogonReject
                                     │ ok                                     "... at node X"
                                     ▼
                               Gateway logon ... renew every ttl/4 ... detach ─► release

A logon also waits until this node's replica has applied everything the input stream held when
the logon came (``ClusterGateway``): a client that moves here from a dead node was acked
by that node's replica, so its commands are in the stream; answering the logon before they
are applied here would give it a stale session seq (and a client renumbers to a stale seq).

Not thread-safe: everything but ``applied`` (the feeder thread's hook) runs on the replica's
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from ..errors import InsufficientCapacityError, RingClosedError, RingLogError
from ..gateway.protocol import LogonReject
from ..gateway.server import Gateway
from .lease import Lease
from .replica import connect
from .stream import Command, InputPublisher

__all__ = ["ClusterGateway", "GatewayFront", "SessionLeases"]

LOGON_CATCH_UP_S = 30.0  # a logon waits this long for the replica to catch up, then is refused


class ClusterGateway(Gateway):
    """A Gateway whose logons wait for the node's replica to reach the input stream's end
    (see the module docstring). Not thread-safe (the event loop's)."""

    def __init__(self, processor: Any, config: Any, front: GatewayFront,
                 sessions: SessionLeases) -> None:
        super().__init__(processor, config, submit=front.submit)
        self.front = front
        self.sessions = sessions
        self._logons: set[asyncio.Future[None]] = set()  # logons waiting for the catch-up

    def _logon(self, conn: Any, msg: Any) -> None:
        conn.pause("catch-up")  # its next frames wait with it
        task = asyncio.ensure_future(self._logon_caught_up(conn, msg))
        self._logons.add(task)
        task.add_done_callback(self._logons.discard)

    async def _logon_caught_up(self, conn: Any, msg: Any) -> None:
        behind = await self.front.catch_up(LOGON_CATCH_UP_S)
        if conn.transport is None or conn.closing:
            return
        if behind:
            self.metrics.logon_failures += 1
            conn.send(LogonReject(f"this node's replica is {behind} input messages behind "
                                  f"the stream: log on again, or at another node"))
            conn.close()
            return
        s = self.table.authenticate(msg.token)
        if s is not None and s.conn is None:  # (unknown or here already: the Gateway says)
            refused = await self.sessions.acquire(s.id)
            if conn.transport is None or conn.closing:
                if refused is None and s.conn is None:
                    self.sessions.release(s.id)
                return
            if refused is not None:
                self.metrics.logon_failures += 1
                conn.send(LogonReject(refused))
                conn.close()
                return
        super()._logon(conn, msg)
        conn.resume("catch-up")
        conn.flush()

    def detach(self, conn: Any) -> None:
        """A connection closed: its session's lease goes once no connection here has it."""
        s = conn.session
        super().detach(conn)
        if s is not None and s.conn is None:
            self.sessions.release(s.id)

    def drop_session(self, session_id: int) -> None:
        """Closes the connection of a session whose lease this node lost."""
        s = self.table.by_id.get(session_id)
        if s is not None and s.conn is not None:
            s.conn.close()


class SessionLeases:
    """The leases of the sessions logged on at this node (see the module docstring):
    ``acquire`` at logon, ``release`` when the session leaves, ``run()`` renews them and calls
    ``lost(session id)`` for one another node took. ``kv()`` gives the lease bucket (the
    replica's, replaced after a reconnect). Not thread-safe (one event loop)."""

    def __init__(self, kv: Callable[[], Any], node: str, ttl: float,
                 lost: Callable[[int], None]) -> None:
        self.kv = kv
        self.node = node
        self.ttl = ttl
        self.lost = lost
        self.held: dict[int, Lease] = {}
        self._releasing: set[asyncio.Future[None]] = set()

    @staticmethod
    def key(session_id: int) -> str:
        """The session's key in the lease bucket."""
        return f"session-{session_id}"

    async def acquire(self, session_id: int, wait: float | None = None) -> str | None:
        """Takes the session's lease, waiting up to ``wait`` seconds (default: twice the
        ttl, by when a dead holder's lease has expired) while another node holds it. None
        once held; else why not (naming the node that holds it)."""
        lease = Lease(self.kv(), self.key(session_id), self.node, self.ttl)
        deadline = time.monotonic() + (2 * self.ttl if wait is None else wait)
        while True:
            if await lease.try_acquire() and lease.held():
                self.held[session_id] = lease
                return None
            if time.monotonic() >= deadline:
                holder = None
                with contextlib.suppress(Exception):
                    holder = await lease.current_holder()
                if holder:
                    return (f"session {session_id} is logged on at node {holder}: log off "
                            f"there first")
                return (f"session {session_id}: its lease could not be taken (the lease bucket "
                        f"did not answer in time): log on again")
            await asyncio.sleep(self.ttl / 8)

    def release(self, session_id: int) -> None:
        """Gives the session's lease up (in the background: it expires anyway)."""
        lease = self.held.pop(session_id, None)
        if lease is not None:
            task = asyncio.ensure_future(lease.release())
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def released(self) -> None:
        """Waits for the releases in flight (bounded by the bucket's timeouts)."""
        while self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)

    async def renew_all(self) -> None:
        """One renewal of every lease held; ``lost`` for each another node took. A lease
        that lapsed while the bucket did not answer (a NATS node's re-election takes
        seconds) is taken again, not given up: its session stays."""
        kv = self.kv()
        for sid, lease in list(self.held.items()):
            lease.kv = kv
            if await lease.renew() or lease.held():
                continue
            holder = None
            with contextlib.suppress(Exception):
                holder = await lease.current_holder()
            if holder is not None and holder != self.node and self.held.get(sid) is lease:
                del self.held[sid]
                self.lost(sid)
            elif holder is None:
                await lease.try_acquire()  # (expired, or the bucket is away: next round)

    async def run(self) -> None:
        """Renews every ttl/4 until cancelled."""
        while True:
            await asyncio.sleep(self.ttl / 4)
            await self.renew_all()


class GatewayFront:
    """Runs a ``ringlog.gateway.Gateway`` on a replica's processor with the shard's input
    stream as the way in (see the module docstring). ``max_pending`` batches may await their
    acknowledgement before ``submit`` pushes back (the gateway then parks commands in its
    backlog and stops reading their senders)."""

    def __init__(self, gateway_config: Any, *, max_pending: int = 64) -> None:
        self.gateway_config = gateway_config
        self.max_pending = max_pending
        self.gateway: Any = None
        self.publisher: InputPublisher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listening: asyncio.Future[None] | None = None
        self._nc: Any = None
        self._old: list[Any] = []
        self.sessions: SessionLeases | None = None
        self._renewing: asyncio.Future[None] | None = None

    async def start(self, replica: Any) -> None:
        """Connects a publisher and starts the gateway on ``replica.processor`` (recovered,
        not started: the gateway adds its output listener, then starts it). Returns once
        the processor runs; ``listening()`` waits for the socket."""
        self._loop = asyncio.get_running_loop()
        self.replica = replica
        cfg, shard = replica.cfg, replica.config.shard
        self._name = f"ringlog-gw-{replica.config.replica_id}"
        self._cfg = cfg
        self._nc = await connect(cfg, self._name)
        self.publisher = InputPublisher(self._nc.jetstream(timeout=cfg.publish_timeout), cfg,
                                        shard, max_pending=self.max_pending,
                                        reconnect=self._reconnect)
        p = replica.processor
        self.sessions = SessionLeases(lambda: replica.lease_kv, replica.config.replica_id,
                                      cfg.lease_ttl, lambda sid: self.gateway.drop_session(sid))
        self.gateway = ClusterGateway(p, self.gateway_config, self, self.sessions)
        self._renewing = asyncio.ensure_future(self.sessions.run())
        self._listening = asyncio.ensure_future(self.gateway.start())
        # Gateway.start() starts the processor before its first wait (its open-orders
        # queries, answered through the stream once the replica consumes it)
        while p.state != "running" and not self._listening.done():
            await asyncio.sleep(0)
        if self._listening.done():
            self._listening.result()  # raises what stopped it

    async def listening(self) -> tuple[str, int]:
        """Waits until the gateway listens; returns its address."""
        assert self._listening is not None, "start() first"
        await self._listening
        return self.gateway.address

    async def _reconnect(self) -> Any:
        """A new connection for the publisher once nats-py closed the old one for good."""
        self._old.append(self._nc)
        self._nc = await connect(self._cfg, self._name)
        return self._nc.jetstream(timeout=self._cfg.publish_timeout)

    async def catch_up(self, timeout: float) -> int:
        """Waits until the replica has applied the input stream's last message as of now;
        returns how many messages it is still behind after ``timeout`` (0: caught up)."""
        names = self.replica.names
        deadline = time.monotonic() + timeout
        try:
            info = await self.replica.js.stream_info(names.input_stream)
            target = int(info.state.last_seq)
        except Exception:  # NATS unreachable: what this node has is all it can know
            return 0
        status = self.replica.status
        while status.applied_seq < target:
            if time.monotonic() > deadline:
                return target - status.applied_seq
            await asyncio.sleep(0.005)  # the feeder thread moves applied_seq
        return 0

    def submit(self, payload: Any, type_id: int, *, correlation_id: int = 0,
               producer_id: int = 0, producer_seq: int = 0, timeout: float | None = None,
               ) -> None:
        """The gateway's way in: the command joins the open batch of the input stream.
        Returns None: its journal sequence is told by ``applied`` once this node's replica
        has it. InsufficientCapacityError while ``max_pending`` batches are unacknowledged
        (the gateway retries); RingClosedError once the publisher has failed."""
        pub = self.publisher
        assert pub is not None
        if pub.pending >= self.max_pending:
            raise InsufficientCapacityError(f"{pub.pending} batches await JetStream's "
                                            f"acknowledgement")
        try:
            pub.add(Command(type_id, bytes(payload), correlation_id, producer_id,
                            producer_seq))
        except RingLogError as e:
            raise RingClosedError(str(e)) from e

    def applied(self, commands: list[tuple[int, int, int]]) -> None:
        """The feeder thread put one stream message's session commands ``(producer id,
        producer seq, ring sequence)`` into the processor's ring: hand them to the loop."""
        loop = self._loop
        if loop is not None and commands:
            with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
                loop.call_soon_threadsafe(self._applied, commands)

    def _applied(self, commands: list[tuple[int, int, int]]) -> None:
        """Loop thread: a command of a session in flight here gets its journal sequence
        (the gateway settles it once the loop has finished it, even if it made no report);
        a session connected elsewhere has its seqs follow the stream, so a client that moves
        here after its node died is told the right next seq."""
        gw = self.gateway
        if gw is None or gw.processor.state != "running":
            return
        table, p = gw.table, gw.processor
        for producer, seq, ring_seq in commands:
            s = table.by_id.get(producer)
            if s is None:
                continue
            if s.inflight and s.inflight[0] <= seq <= s.last_seen:
                if seq not in s.causes:
                    table.published(s, seq, p.journal_sequence_of(ring_seq))
            elif s.conn is None and not s.inflight and seq > s.last_seen:
                s.last_seen = s.acked = seq

    async def stop(self) -> None:
        """Stops the gateway (closing its connections; it drains and stops the processor)
        and flushes the publisher (bounded: NATS may be gone)."""
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renewing
        if self._listening is not None and not self._listening.done():
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listening
        if self.gateway is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.gateway.stop(), 30)
        if self.sessions is not None:  # its sessions' leases go now, not at their expiry
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.sessions.released(), 5)
        if self.publisher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.publisher.close(), 5)
        for nc in [*self._old, self._nc]:
            if nc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(nc.close(), 5)
