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

A logon waits until this node's replica has applied everything the input stream held when
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
from typing import Any

from ..errors import InsufficientCapacityError, RingClosedError, RingLogError
from ..gateway.protocol import LogonReject
from ..gateway.server import Gateway
from .replica import connect
from .stream import Command, InputPublisher

__all__ = ["ClusterGateway", "GatewayFront"]

LOGON_CATCH_UP_S = 30.0  # a logon waits this long for the replica to catch up, then is refused


class ClusterGateway(Gateway):
    """A Gateway whose logons wait for the node's replica to reach the input stream's end
    (see the module docstring). Not thread-safe (the event loop's)."""

    def __init__(self, processor: Any, config: Any, front: GatewayFront) -> None:
        super().__init__(processor, config, submit=front.submit)
        self.front = front
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
        super()._logon(conn, msg)
        conn.resume("catch-up")
        conn.flush()


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
        self.gateway = ClusterGateway(p, self.gateway_config, self)
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
        if self._listening is not None and not self._listening.done():
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listening
        if self.gateway is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.gateway.stop(), 30)
        if self.publisher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.publisher.close(), 5)
        for nc in [*self._old, self._nc]:
            if nc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(nc.close(), 5)
