"""A replica of one shard: the input stream, in order, into a local processor; the leader
alone publishes the outputs.

::

    RL_<name>_IN_<shard> ──fetch (ordered, from the journal's end)──► feeder thread
        MARK(s, n) + n commands ──publish──► Processor (journal before process, as ever)
                                               │ input journal, output journal
                      every checkpoint_every: hash ──► RL_<name>_CKPT (compare, halt)
    lease task ── renew / acquire RL_<name>_LEASE ──► leader?
    leader task ── OutputEmitter(journals) ── Nats-Expected-Last-Sequence ──► RL_<name>_OUT_<shard>
                └─ (market data types) ── the same, in a task of its own ──► RL_<name>_MD_<shard>
    status task ── RL_<name>_STATUS <shard>.<replica>: role, applied seq, idle state hash

Restart = the processor's own recovery (snapshot + local journal) then the stream from the
journal's last stream mark: a message cut short by a crash continues after its journaled
commands. An empty directory reads the whole stream. Standbys and the leader run the same
code; leadership only decides who publishes outputs.

``python -m ringlog.cluster --cluster nats://… --dir DIR --replica-id a`` runs one
(``ringlog serve --cluster`` does the same); it prints JSON lines (started, leader, standby,
diverged) and exits 3 when its state diverged from the shard's checkpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import io
import json
import os
import pkgutil
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

from .._feed import publish_message
from ..errors import (
    ClusterError,
    ClusterSetupError,
    ClusterTimeoutError,
    ClusterUnreachableError,
    RingLogError,
)
from ..processor import Processor, ProcessorConfig
from .checkpoint import Checkpoint, Divergence, record_checkpoint, state_hash
from .config import ClusterConfig
from .lease import Lease, LeaseWatch
from .outputs import OutputChannel, OutputEmitter, last_mark, output_position
from .payload import OutputBound
from .snapshot import (
    ShardSnapshot,
    fetch_snapshot,
    is_empty,
    read_seed,
    seed_directory,
    ship_snapshot,
)
from .stream import ensure_shard, publish_once, until_answered

__all__ = ["Replica", "ReplicaConfig", "ReplicaStatus", "connect", "main", "run_replica",
           "wait_for_jetstream"]

EXIT_DIVERGED = 3
EXIT_UNREACHABLE = 2  # no NATS server answered at start: a usage error, like a bad option
EXIT_SETUP = 2  # what the operator must fix, found at start (ClusterSetupError)
CHECKPOINT_RETRY_S = 600.0  # NATS trouble recording a checkpoint: retried this long
EMITTER_STALL_S = 10.0  # a leader's term neither publishing nor idle this long: a bug
OUTPUT_WINDOW = 64  # output publishes in flight per stream (each expects the one before)
# A test hook (tests/cluster/test_max_payload.py): with this variable set to 1, the leader
# stops itself (SIGSTOP) once, before it sends part 1 of a message, with every part before
# it stored: a kill -9 then lands between two parts of one message, deterministically.
PAUSE_MID_MESSAGE_ENV = "RINGLOG_TEST_PAUSE_MID_MESSAGE"


class _StreamTerm:
    """One output stream as a leader's term publishes it: the stream's last sequence as the
    term knows it, the input messages it holds whole (``through``) and those cut so far
    (``emitted``), the next stream sequence, the publishes in flight (oldest first: stream
    seq, input seq, part, parts, bytes, acknowledgement future) and the refusals seen. Not
    thread-safe: the term's task alone."""

    def __init__(self, channel: OutputChannel, pos: Any) -> None:
        self.channel = channel
        self.last = pos.last
        self.through = self.emitted = pos.through
        self.next_stream = pos.last + 1  # after the last message's parts
        self.window: collections.deque[tuple[int, int, int, int, bytes, Any]] = \
            collections.deque()
        self.rejected = 0


class ReplicaConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One replica: its cluster and shard, a name unique in the shard, its directory, the
    handler factory (``module:attr``, called with no arguments) and its processor's
    configuration. ``standby_only`` never takes the lease (a read replica)."""

    cluster: ClusterConfig
    replica_id: str
    directory: str
    shard: int = 0
    handler: str = "ringlog.engine.flow:demo_engine"
    processor: ProcessorConfig = msgspec.field(default_factory=ProcessorConfig)
    standby_only: bool = False

    def __post_init__(self) -> None:
        from ..config import check_fields, config_error

        check_fields(self)
        if not self.replica_id or not all(c.isalnum() or c in "-_" for c in self.replica_id):
            raise config_error(self, "replica_id", f"{self.replica_id!r}: use letters, "
                               f"digits, '-' or '_'")
        self.cluster.names(self.shard)  # the shard exists


class ReplicaStatus(msgspec.Struct):
    """What a replica publishes about itself (``RL_<name>_STATUS``, key
    ``<shard>.<replica>``) and prints: its role, the last input stream sequence it applied,
    the state hash at ``hash_seq`` (taken while idle), and the outputs it published."""

    replica: str
    pid: int
    role: str = "starting"  # starting, standby, leader, diverged, stopped
    applied_seq: int = 0
    hash_seq: int = 0
    state_hash: str = ""
    leader_since: float = 0.0  # wall time this replica last became leader
    published_seq: int = 0  # last input message whose output batches it published whole
    error: str = ""


class Replica:
    """Runs one replica until ``stop()`` or a divergence (see the module docstring)."""

    def __init__(self, config: ReplicaConfig,
                 handler_factory: Callable[[], Any] | None = None, *,
                 front: Any = None) -> None:
        self.config = config
        # a GatewayFront (ringlog.cluster.front): starts the processor itself (its output
        # listener comes first) and hears which session commands the feeder applied
        self.front = front
        self._factory = handler_factory or pkgutil.resolve_name(config.handler)
        self.cfg = config.cluster
        self.names = self.cfg.names(config.shard)
        self.status = ReplicaStatus(config.replica_id, os.getpid())
        self.handler: Any = None
        self.processor: Processor | None = None
        self._stopping = asyncio.Event()
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=256)
        self._next_seq = 1  # next input stream sequence to fetch
        self._skip = 0  # commands of message _next_seq already journaled (a crash cut it)
        self._cut = False  # its mark is journaled already (even with no command after it)
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reconnecting: asyncio.Future[None] | None = None
        self._seed = 0  # stream seq a snapshot seeded this directory at (0: none)
        self._journal_from = 1
        self._shipping: Any = None  # the snapshot upload in flight
        self._shipped_before = -1  # journal seq of the last snapshot shipped
        self._progress = 0.0  # monotonic time the leader's term last published or idled
        self._term_last = 0  # the output stream's last sequence as the term knows it
        self._emitter: OutputEmitter | None = None  # the term's, for the watchdog's report
        self._fed = asyncio.Event()  # set (from the feeder) after each message it applied
        self.connected = False  # reached NATS once (unreachable at start: the operator's error)
        self._too_small = False  # connected to a server below the output bound (reported)
        self._pause_mid_message = os.environ.get(PAUSE_MID_MESSAGE_ENV) == "1"  # (test hook)

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> int:
        """Connects, recovers, then consumes and (when leading) publishes until stopped.
        Returns 0, or EXIT_DIVERGED after a divergence."""
        self._loop = asyncio.get_running_loop()
        await self._connect()
        await ensure_shard(self.js, self.cfg, self.config.shard)
        await self._open_buckets()
        self.lease = Lease(self.lease_kv, self.names.lease_key, self.config.replica_id,
                           self.cfg.lease_ttl)
        self.lease_watch = LeaseWatch(self.lease_kv, self.names.lease_key,
                                      self.config.replica_id, self.cfg.lease_ttl)
        # operator errors first, before anything is recovered: servers that cannot carry the
        # shard's output parts, an output stream of an earlier format
        self.bound = await OutputBound.agree(self.nc, self.ckpt_kv, self.names, self.cfg)
        for stream in (c.stream for c in self._channels()):
            await until_answered(functools.partial(output_position, self.js, stream), stream)
        if is_empty(self.config.directory):  # a new replica: from the newest snapshot
            snap = await fetch_snapshot(self.js, self.names, self.config.replica_id,
                                        self.status_kv)
            if snap is not None:
                seed_directory(self.config.directory, snap, self.config.processor.segment_size)
                self._event("seeded", stream_seq=snap.stream_seq, bytes=len(snap.data))
        self._recover()
        if self.front is not None:
            await self.front.start(self)
        else:
            assert self.processor is not None
            self.processor.start()
        self._event("started", next_seq=self._next_seq, skip=self._skip)
        self.status.role = "standby"
        feeder = threading.Thread(target=self._guard_feeder, name="ringlog-feeder",
                                  daemon=True)
        feeder.start()
        tasks = [asyncio.ensure_future(t) for t in (self._fetch(), self._lead(),
                                                     self._report())]
        if not self.config.standby_only:
            tasks.append(asyncio.ensure_future(self.lease_watch.run()))
        if self.front is not None:
            tasks.append(asyncio.ensure_future(self._announce()))
        for t in tasks:  # a task that ends with an error stops the replica, loudly
            t.add_done_callback(self._task_done)
        await self._stopping.wait()
        for t in tasks:
            t.cancel()
        for t in tasks:  # (bounded: a stop never hangs on NATS)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(t, 5)
        while True:  # the feeder may be gone (it failed): never block on a full queue
            with contextlib.suppress(queue.Empty):
                self._queue.get_nowait()
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
                break
        await asyncio.get_running_loop().run_in_executor(None, feeder.join, 10)
        if self.front is not None:  # closes its clients, drains and stops the processor
            await self.front.stop()
        if self.processor is not None:
            with contextlib.suppress(Exception):
                self.processor.stop()
        diverged = isinstance(self._error, Divergence)
        self.status.role = "diverged" if diverged else "stopped"
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._put_status(), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.close(), 5)
        if self._error is not None and not diverged:
            raise self._error
        return EXIT_DIVERGED if diverged else 0

    def stop(self) -> None:
        """Asks the replica to stop (from the event loop's thread or a signal handler)."""
        self._stopping.set()

    async def _announce(self) -> None:
        """Prints where the gateway listens once it does (after its open-orders queries
        came back through the stream)."""
        host, port = await self.front.listening()
        self._event("listening", host=host, port=port)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._fail(task.exception())  # type: ignore[arg-type]

    async def _connect(self) -> None:
        self.nc = await connect(self.cfg, f"ringlog-{self.config.replica_id}",
                                on_closed=self._connection_closed)
        self.js = self.nc.jetstream(timeout=self.cfg.publish_timeout)
        self.connected = True
        await wait_for_jetstream(self.js)

    def _connection_closed(self) -> None:
        """nats-py closes a connection for good on a server -ERR while reconnecting: open a
        new one and move the buckets to it (the tasks pick up ``self.js`` as they retry)."""
        if not self._stopping.is_set():
            self._reconnecting = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            await self._connect()
            await self._open_buckets()
            self.lease.kv = self.lease_kv
            self.lease_watch.moved(self.lease_kv)
            self._event("reconnected")
        except BaseException as e:
            self._fail(e)

    async def _open_buckets(self) -> None:
        names, js = self.names, self.js
        self.lease_kv = await until_answered(lambda: js.key_value(names.lease_bucket),
                                             names.lease_bucket)
        self.ckpt_kv = await until_answered(lambda: js.key_value(names.checkpoint_bucket),
                                            names.checkpoint_bucket)
        self.status_kv = await until_answered(lambda: js.key_value(names.status_bucket),
                                              names.status_bucket)

    def _fail(self, e: BaseException) -> None:
        if self._error is None:
            self._error = e
        if isinstance(e, Divergence):
            self.status.error = str(e)
            self._event("diverged", stream_seq=e.stream_seq, mine=e.mine,
                        recorded=e.recorded.state_hash, by=e.recorded.replica)
        else:
            self.status.error = repr(e)
            self._event("failed", error=repr(e))
        self._stopping.set()

    def _event(self, name: str, **kw: Any) -> None:
        print(json.dumps({"event": name, "replica": self.config.replica_id,
                          "shard": self.config.shard, "time": time.time(), **kw}), flush=True)

    # -- recovery -------------------------------------------------------------------------
    def _recover(self) -> None:
        self.handler = self._factory()
        pc = self.config.processor
        need = getattr(getattr(self.handler, "config", None), "min_slot_size", 0)
        if need > pc.slot_size:  # the engine's market-data records need bigger slots
            pc = msgspec.structs.replace(pc, slot_size=need)
        # Every replica dedups by (producer, producer seq): a gateway session's resend (after
        # a failover, to another node) is applied once, identically everywhere.
        pc = msgspec.structs.replace(pc, dedup=True)
        if pc.output_io == "auto":  # the leader tails its output journal live to cut the
            # output batches: written direct, each would wait up to a linger (20 ms) and read
            # its pages back from the disk (docs/journal-format.md, "Direct I/O")
            pc = msgspec.structs.replace(pc, output_io="buffered")
        p = Processor(self.handler, self.config.directory, pc)
        p.recover()
        inp = p.input
        found = last_mark(inp.path, inp.last_sequence) if inp.last_sequence >= 0 else None
        self._seed = read_seed(self.config.directory)
        self._journal_from = self._seed + 1  # the first stream message its journal can hold
        if found is not None:
            s, n, journaled, _ = found
            self._next_seq, self._skip = (s + 1, 0) if journaled >= n else (s, journaled)
            self._cut = journaled < n
            self.status.applied_seq = s if journaled >= n else s - 1
        elif self._seed:  # seeded from a snapshot, no message journaled since
            self._next_seq = self._seed + 1
            self.status.applied_seq = self._seed
        self.processor = p  # started by run() (or by the front's gateway)

    # -- input: stream → processor --------------------------------------------------------
    async def _fetch(self) -> None:
        """Reads the input stream in order from ``_next_seq`` through an ordered push
        consumer (no acks, flow control; nats-py recreates it after a gap or missed
        heartbeats). A watchdog resubscribes from the next sequence when nothing arrives
        while the stream has more (the consumer's node died and the reset failed)."""
        import nats.errors
        from nats.js.api import ConsumerConfig, DeliverPolicy

        while True:
            try:
                sub = await self.js.subscribe(
                    self.names.input_subject, stream=self.names.input_stream,
                    ordered_consumer=True, idle_heartbeat=1.0,
                    config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                          opt_start_seq=self._next_seq, mem_storage=True))
            except Exception:
                await asyncio.sleep(0.1)
                continue
            idle = 0
            try:
                while True:
                    try:
                        m = await sub.next_msg(timeout=1.0)
                    except nats.errors.TimeoutError:
                        idle += 1
                        if idle >= 3 and await self._stream_has_more():
                            break  # resubscribe from _next_seq
                        continue
                    idle = 0
                    seq = m.metadata.sequence.stream
                    if seq < self._next_seq:
                        continue  # a duplicate delivery after a consumer reset
                    if seq > self._next_seq:
                        raise ClusterError(f"{self.names.input_stream}: expected sequence "
                                           f"{self._next_seq}, got {seq} (a gap: messages "
                                           f"deleted from the stream?)")
                    while True:
                        try:
                            self._queue.put_nowait((seq, m.data))
                            break
                        except queue.Full:
                            await asyncio.sleep(0.002)
                    self._next_seq = seq + 1
            except RingLogError as e:
                self._fail(e)
                return
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
                raise
            except Exception:
                await asyncio.sleep(0.05)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _stream_has_more(self) -> bool:
        try:
            info = await self.js.stream_info(self.names.input_stream)
        except Exception:
            return False
        return int(info.state.last_seq) >= self._next_seq

    def _guard_feeder(self) -> None:
        try:
            self._feed()
        except BaseException as e:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._fail, e)

    def _feed(self) -> None:
        """The feeder thread: each stream message becomes a mark and its commands in the
        processor's input ring; checkpoints and idle state hashes are taken here, where no
        other input can arrive meanwhile."""
        p = self.processor
        assert p is not None and self._loop is not None
        ring = p.input_ring
        every = self.cfg.checkpoint_every
        snap_every = self.cfg.snapshot_every
        skip, cut, last_ring = self._skip, self._cut, -1
        applied = self.front.applied if self.front is not None else None
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:  # quiet for 0.1 s: hash the state for the status
                # (also when nothing came since the start: a replica that recovered all it
                # applied from its journal hashes what it recovered; ring sequence -1 is then
                # what the processor already has)
                if self.status.hash_seq != self.status.applied_seq:
                    self._hash_now(last_ring)
                continue
            if item is None:
                return
            seq, data = item
            p.wait_input_open()  # the breaker holds input: wait as every producer does
            sessions: list[tuple[int, int, int]] = []
            # the mark and the commands into the ring in C (ringlog._feed), no object each
            hi, ts = publish_message(ring, data, seq, skip, not cut, sessions)
            last_ring = max(last_ring, hi)
            if applied is not None and sessions:
                applied(sessions)
            skip, cut = 0, False
            self.status.applied_seq = seq
            with contextlib.suppress(RuntimeError):  # (the loop closed during shutdown)
                self._loop.call_soon_threadsafe(self._fed.set)  # a leader idle on it goes on
            if seq % every == 0:
                h = self._hash_now(last_ring)
                cp = Checkpoint(seq, h, self.config.replica_id)
                self._record(seq, cp)
            if snap_every and seq % snap_every == 0 and self.status.role == "leader":
                last_ring = self._snapshot(seq, ts)

    def _snapshot(self, seq: int, ts: int) -> int:
        """The leader's feeder after message ``seq``: a local snapshot there (a control event
        the loop takes after the message), shipped to the object store in the background
        (one upload at a time: a slow one makes the next checkpoint skip). Returns the ring
        sequence of the snapshot request."""
        p = self.processor
        assert p is not None and self._loop is not None
        ring_seq = p.request_snapshot(timestamp_ns=ts)
        self._wait_processed(ring_seq)
        snap = p.snapshots.latest()
        if snap is None or snap.sequence != p.journal_sequence_of(ring_seq):
            return ring_seq
        if self._shipping is not None and not self._shipping.done():
            return ring_seq
        shard_snap = ShardSnapshot(seq, snap.sequence, p.published_outputs, snap.data)
        self._shipping = asyncio.run_coroutine_threadsafe(self._ship(shard_snap), self._loop)
        return ring_seq

    async def _ship(self, snap: ShardSnapshot) -> None:
        try:
            await ship_snapshot(self.js, self.names, snap, self.status_kv,
                                chunk=self.bound.bytes)
            self._event("snapshot_shipped", stream_seq=snap.stream_seq, bytes=len(snap.data))
        except Exception as e:  # the next one will do
            self._event("snapshot_failed", stream_seq=snap.stream_seq, error=repr(e))
            return
        # local copies: the newest two stay (recovery falls back to the older if the newest
        # is damaged); the journal they need is the processor's retention's business
        assert self.processor is not None
        try:
            if self._shipped_before >= 0:
                self.processor.snapshots.delete_before(self._shipped_before)
            self._shipped_before = snap.journal_seq
        except Exception as e:
            self._event("snapshot_cleanup_failed", error=repr(e))

    def _record(self, seq: int, cp: Checkpoint) -> None:
        """Records or checks a checkpoint from the feeder thread (which waits: no input
        passes an unchecked checkpoint, so a diverged replica writes no later reference);
        retries NATS trouble (a timeout, a bucket electing its leader, a connection replaced
        meanwhile) for up to CHECKPOINT_RETRY_S."""
        assert self._loop is not None
        deadline = time.monotonic() + CHECKPOINT_RETRY_S
        while True:
            try:
                asyncio.run_coroutine_threadsafe(
                    record_checkpoint(self.ckpt_kv, self.names.checkpoint_key(seq), cp),
                    self._loop).result(timeout=30)
                return
            except Divergence:
                raise
            except Exception:
                if time.monotonic() > deadline or self._stopping.is_set():
                    raise
                time.sleep(0.1)

    def _wait_processed(self, last_ring: int) -> None:
        """Waits until the loop has processed everything published up to ``last_ring`` (it is
        then idle: this thread is its only producer)."""
        p = self.processor
        assert p is not None
        target = p.journal_sequence_of(last_ring)
        while p.processed_sequence < target:
            if p.state != "running":
                p.stop()  # raises the loop's error
                raise ClusterError(f"the processor stopped ({p.state}) before input "
                                   f"{target} was processed")
            time.sleep(0.0002)

    def _hash_now(self, last_ring: int) -> str:
        """Waits until the loop is idle, then hashes the state."""
        self._wait_processed(last_ring)
        h = state_hash(self.handler)
        self.status.hash_seq, self.status.state_hash = self.status.applied_seq, h
        return h

    # -- leadership and outputs -----------------------------------------------------------
    async def _lead(self) -> None:
        """Standby: take the lease when its watch says it is free or lapsed
        (``LeaseWatch``). Leader: renew it every ttl/4 and publish output batches while it
        is trusted."""
        lease, watch = self.lease, self.lease_watch
        try:
            while True:
                if self.config.standby_only:
                    await asyncio.sleep(self.cfg.lease_ttl)
                    continue
                # when the watch says the key is free or lapsed (LeaseWatch)
                if not await watch.take(lease, self._may_lead):
                    continue
                if not lease.held():
                    # the write came back after the share of the ttl it may be trusted for
                    # (a loaded machine): a term could publish nothing, and taking the key
                    # again and again would keep it from a replica that can use it. Let it
                    # expire instead.
                    self._event("lease_too_slow", ttl=self.cfg.lease_ttl)
                    await asyncio.sleep(self.cfg.lease_ttl)
                    continue
                self.status.role = "leader"
                self.status.leader_since = lease.acquired_at
                self._event("leader", applied_seq=self.status.applied_seq,
                            watch=watch.describe())
                term = asyncio.Event()  # set when the term ends: renewing stops with it
                renew = asyncio.ensure_future(self._renew(lease, term))
                self._progress = time.monotonic()
                publishing = asyncio.ensure_future(self._publish_outputs(lease))
                try:
                    await self._watch_publishing(publishing)
                except asyncio.CancelledError:
                    if not publishing.cancelled():
                        raise  # the replica stops
                    lease.valid_until = 0.0  # the watchdog stopped a stalled term
                except Exception as e:  # NATS trouble: stand down, the lease decides anew
                    self._event("publish_error", error=repr(e))
                    lease.valid_until = 0.0
                finally:
                    await end_term(renew, term, publishing)
                self.status.role = "standby"
                self._event("standby", applied_seq=self.status.applied_seq)
        except asyncio.CancelledError:
            await lease.release()
            raise

    def dump(self) -> None:
        """Prints where the replica stands (SIGUSR1): the leader's term, its emitter, the
        stacks of the replica's tasks. For a diagnosis of a running replica."""
        stacks = io.StringIO()
        for t in asyncio.all_tasks():
            t.print_stack(file=stacks)
        self._event("dump", role=self.status.role, applied_seq=self.status.applied_seq,
                    published_seq=self.status.published_seq, term_last=self._term_last,
                    progress_age=round(time.monotonic() - self._progress, 3),
                    lease_held=self.lease.held() if hasattr(self, "lease") else None,
                    lease_watch=self.lease_watch.describe() if hasattr(self, "lease_watch")
                    else None,
                    emitter=self._emitter.describe() if self._emitter is not None else None,
                    stacks=stacks.getvalue())

    async def _watch_publishing(self, publishing: asyncio.Task[None]) -> None:
        """Awaits the term's publishing task, a watchdog over it: a term that neither
        publishes nor is idle for EMITTER_STALL_S (a bug: a call that never returns, an
        emitter that lost count) is reported with where it waits, and cancelled; the lease
        decides anew and a new term starts afresh from the journals."""
        while True:
            done, _ = await asyncio.wait([publishing], timeout=1.0)
            if done:
                return publishing.result()
            quiet = time.monotonic() - self._progress
            # (one publish may retry for up to a lease, each try up to publish_timeout)
            if quiet > max(EMITTER_STALL_S, 2 * self.cfg.lease_ttl + self.cfg.publish_timeout):
                stack = io.StringIO()
                publishing.print_stack(file=stack)
                emitter = self._emitter.describe() if self._emitter is not None else None
                self._event("publisher_stalled", quiet_s=round(quiet, 1),
                            applied_seq=self.status.applied_seq,
                            published_seq=self.status.published_seq, emitter=emitter,
                            stack=stack.getvalue())
                await stop_task(publishing)
                return

    async def _may_lead(self) -> bool:
        """A replica seeded from a snapshot at s has no output batches up to s: it may lead
        only once the output stream holds them whole. One connected to a server whose
        max_payload cannot carry a full output part (its connection moved there after the
        start check) does not lead."""
        if self.nc.max_payload < self.bound.needs:
            if not self._too_small:
                self._event("max_payload_too_small", server=str(self.nc.connected_url),
                            max_payload=self.nc.max_payload, needs=self.bound.needs)
            self._too_small = True
            return False
        self._too_small = False
        if not self._seed:
            return True
        try:
            pos = await output_position(self.js, self.names.output_stream)
        except Exception:
            return False
        if pos.through >= self._seed:
            self._seed = 0  # for good: the stream only grows
            return True
        return False

    async def _renew(self, lease: Lease, term: asyncio.Event) -> None:
        """Renews the lease every ttl/4 while it is trusted and the term lasts."""
        while lease.held() and not term.is_set():
            await asyncio.sleep(self.cfg.lease_ttl / 4)
            if not term.is_set():
                await lease.renew()

    async def _publish_outputs(self, lease: Lease) -> None:
        """The term's publishing, while the lease is trusted: reports (every output but the
        market data types) to the output stream, whose trouble ends the term, and market
        data to a stream of its own in a task beside it, whose trouble is retried and never
        ends the term (an R=1 stream whose node is down must not stop the reports)."""
        reports, *more = self._channels()
        if not more:
            await self._publish_channel(lease, reports)
            return
        market = asyncio.ensure_future(self._publish_market_data(lease, more[0]))
        try:
            await self._publish_channel(lease, reports)
        finally:
            await stop_task(market)

    def _channels(self) -> list[OutputChannel]:
        """The shard's output streams: reports, and market data if it has types."""
        names, md = self.names, tuple(self.cfg.market_data_types)
        reports = OutputChannel(names.output_stream, names.output_subject, md, True, True)
        if not md:
            return [reports]
        return [reports, OutputChannel(names.market_data_stream, names.market_data_subject,
                                       md, False, False)]

    async def _publish_market_data(self, lease: Lease, channel: OutputChannel) -> None:
        """Publishes the market data stream for the term, starting over after trouble."""
        while lease.held():
            try:
                await self._publish_channel(lease, channel)
            except Exception as e:  # (a cancellation passes: the term ended)
                self._event("market_data_error", error=repr(e))
            if lease.held():
                await asyncio.sleep(self.cfg.lease_ttl / 4)

    async def _publish_channel(self, lease: Lease, channel: OutputChannel) -> None:
        """Publishes one stream's output batches from its end on, while the lease is
        trusted; returns when it is not, or when no quorum acknowledges a batch within a
        lease. The parts of the stream's last input message that the stream holds (when this
        replica has them) and any batch the stream already holds are compared byte for byte.
        Up to OUTPUT_WINDOW publishes are in flight, each expecting the stream sequence of
        the one before it (a deposed leader's cannot land); one that fails makes the window
        be published again one at a time (``_settle``). The ``watched`` channel (reports) is
        the one the term's watchdog and status follow."""
        pos = await output_position(self.js, channel.stream)
        t = _StreamTerm(channel, pos)
        p = self.processor
        assert p is not None
        start, start_output = max(pos.input_seq, 1), pos.first_output
        if pos.input_seq < self._journal_from and pos.through == pos.input_seq:
            # seeded after the stream's last message: nothing of it to compare, continue after
            start, start_output = pos.input_seq + 1, pos.next_output
        # every replica cuts under the shard's recorded bound (ringlog.cluster.payload)
        emitter = OutputEmitter(p, start, self.bound.bytes, channel.types, channel.exclude,
                                start_output)
        if channel.watched:
            self._emitter, self._term_last = emitter, t.last
        try:
            while lease.held():
                batches = emitter.poll()
                for seq, part, parts, data in batches:
                    at = pos.stream_seq_of(seq, part) or t.next_stream
                    t.next_stream = at + 1
                    if part == parts - 1:
                        t.emitted = seq
                    if at <= pos.last:  # the stream has it: the same bytes, or we halt
                        if not await self._check_published(channel.stream, at, data):
                            return
                        self._stored(t, at, seq, part, parts, mine=False)
                        continue
                    if not lease.held():
                        return
                    if part == 1 and self._pause_mid_message and channel.watched \
                            and not await self._pause_between_parts(lease, t, seq):
                        return
                    ack = await self._send(channel.subject, data, self._headers(seq, part, at))
                    t.window.append((at, seq, part, parts, data, ack))
                    while len(t.window) >= OUTPUT_WINDOW or (t.window and t.window[0][5].done()):
                        if not await self._settle(lease, t):
                            return
                if batches:
                    continue
                if t.window:  # nothing new: wait for the oldest acknowledgement
                    await asyncio.wait([t.window[0][5]], timeout=self.cfg.publish_timeout)
                    if not await self._settle(lease, t):
                        return
                    continue
                if self.status.applied_seq > t.emitted:  # the loop is at it: look again soon
                    await asyncio.sleep(0.0005)
                    continue
                # idle, nothing new to publish: sleep until the feeder applies a message
                # (polling every 0.5 ms here cost an idle leader 8% of a core)
                if channel.watched:
                    self._progress = time.monotonic()
                self._fed.clear()
                if self.status.applied_seq <= t.emitted:  # (again: it may have moved)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._fed.wait(), self.cfg.lease_ttl / 8)
        finally:
            # the answers of publishes still in flight no longer matter: a new term starts
            # afresh from the stream
            for *_, ack in t.window:
                if not ack.done():
                    ack.cancel()
                elif not ack.cancelled():
                    ack.exception()  # (retrieved: nothing to report)
            if channel.watched:
                self._emitter = None
            emitter.close()

    async def _pause_between_parts(self, lease: Lease, t: _StreamTerm, seq: int) -> bool:
        """The test hook (PAUSE_MID_MESSAGE_ENV): every publish in flight stored (part 0 of
        message ``seq`` the stream's last), then this process stops itself. False: the term
        ended meanwhile."""
        while t.window:
            if not await self._settle(lease, t):
                return False
        self._pause_mid_message = False
        self._event("test_paused", input_seq=seq, stream_last=t.last)
        os.kill(os.getpid(), signal.SIGSTOP)
        return True

    async def _send(self, subject: str, data: bytes, headers: dict[str, str]) -> Any:
        """``js.publish_async``: the future of its acknowledgement (failed at once if the
        publish could not be sent, e.g. while reconnecting: ``_settle`` handles it)."""
        try:
            return await self.js.publish_async(subject, data, headers=headers)
        except Exception as e:
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(e)
            return failed

    def _headers(self, seq: int, part: int, at: int) -> dict[str, str]:
        """The headers of part ``part`` of input message ``seq``, to be stream message
        ``at``: its id (JetStream stores an id once) and the sequence it must follow."""
        return {"Nats-Msg-Id": f"{seq}.{part}", "Nats-Expected-Last-Sequence": str(at - 1),
                "Ringlog-Replica": self.config.replica_id}

    def _stored(self, t: _StreamTerm, at: int, seq: int, part: int, parts: int,
                mine: bool = True) -> None:
        """Books stream message ``at`` (part ``part`` of ``parts`` of input ``seq``) as in
        the stream (``mine``: published by this term)."""
        t.last = max(t.last, at)
        if part == parts - 1:
            t.through = seq
        if t.channel.watched:
            self._term_last = t.last
            if mine and part == parts - 1:
                self.status.published_seq = seq
            self._progress = time.monotonic()

    async def _settle(self, lease: Lease, t: _StreamTerm) -> bool:
        """Books the oldest publish in flight once acknowledged at its sequence. One that
        failed or went unanswered (a timeout, no stream leader, a deposed leader's refusal):
        the publishes after it expected it stored, so each one in flight is published again
        in order, one at a time (``_publish_one``: a stored one is acknowledged as a
        duplicate of its id, or found the same). False: the term must end."""
        at, seq, part, parts, _, ack = t.window[0]
        if not ack.done():
            await asyncio.wait([ack], timeout=self.cfg.publish_timeout)
        if ack.done() and not ack.cancelled() and ack.exception() is None \
                and int(ack.result().seq) == at:
            t.window.popleft()
            self._stored(t, at, seq, part, parts)
            return True
        again = list(t.window)
        t.window.clear()
        pending = [a for *_, a in again if not a.done()]
        if pending:  # (their answers first: a late one must not pass a publish sent again)
            await asyncio.wait(pending, timeout=self.cfg.publish_timeout)
        for *_, a in again:
            if not a.done():
                a.cancel()
            elif not a.cancelled():
                a.exception()  # (retrieved: its failure is handled here)
        for at, seq, part, parts, data, _ in again:
            if not lease.held() or not await self._publish_one(lease, t, at, seq, part, data):
                return False
            self._stored(t, at, seq, part, parts)
        return True

    async def _publish_one(self, lease: Lease, t: _StreamTerm, at: int, seq: int, part: int,
                           data: bytes) -> bool:
        """Publishes stream message ``at`` alone, retrying within a lease; True once it is
        in the stream (ours, or the same bytes already there). False: deposed, a different
        batch there, or no quorum (the term ends)."""
        import nats.errors
        from nats.js.errors import BadRequestError

        try:
            await publish_once(self.js, t.channel.subject, data, f"{seq}.{part}",
                               self.cfg.publish_timeout, self.cfg.lease_ttl,
                               headers=self._headers(seq, part, at))
            return True
        except BadRequestError as e:
            if e.err_code != 10071:  # wrong last sequence
                raise
        except (RingLogError, nats.errors.ConnectionClosedError):
            return False  # no quorum within a lease, or a new connection: retry
        # someone else published (we were deposed, or our own earlier attempt landed):
        # compare what is there, and step down if it is not ours
        if not await self._check_published(t.channel.stream, at, data):
            return False
        t.rejected += 1
        if t.rejected == 1 or t.rejected % 1000 == 0:  # (the watchdog's evidence)
            self._event("publish_rejected", stream=t.channel.stream, seq=seq, part=part,
                        stream_seq=at, times=t.rejected)
        return await lease.renew()

    async def _check_published(self, stream: str, seq: int, data: bytes) -> bool:
        """Compares this replica's batch with ``stream``'s message ``seq``; False (and the
        replica halting) when they differ."""
        try:
            msg = await self.js.get_msg(stream, seq, direct=True)
        except Exception:
            return True  # gone (retention): nothing to compare with
        if msg.data != data:
            self._fail(Divergence(seq, f"output batch of {len(data)} bytes",
                                  Checkpoint(seq, f"output batch of {len(msg.data or b'')} "
                                             f"bytes", (msg.headers or {}).get(
                                                 "Ringlog-Replica", "?"))))
            return False
        return True

    # -- status ---------------------------------------------------------------------------
    async def _report(self) -> None:
        last = b""
        while True:
            data = msgspec.json.encode(self.status)
            if data != last:
                with contextlib.suppress(Exception):
                    await self._put_status()
                    last = data
            await asyncio.sleep(0.1)

    async def _put_status(self) -> None:
        await self.status_kv.put(self.names.status_key(self.config.replica_id),
                                 msgspec.json.encode(self.status))


async def end_term(renew: asyncio.Future[None], term: asyncio.Event,
                   publishing: asyncio.Future[None] | None = None) -> None:
    """Ends a leader's term: its publishing and its renewals stop (``term`` set, each task
    cancelled until it is done). A cancellation alone did not do: on Python 3.11
    ``asyncio.wait_for`` (nats-py's request) can swallow one when the reply lands as it is
    cancelled, and the renewing task then kept the lease, renewed, for a term that had ended:
    the leader held the lease and published nothing, for minutes (the stalls in
    docs/cluster.md)."""
    term.set()
    if publishing is not None:
        await stop_task(publishing)
    await stop_task(renew)


async def stop_task(task: asyncio.Future[Any]) -> None:
    """Cancels ``task`` until it is done (one cancellation may be swallowed: ``end_term``);
    its error, if any, is retrieved and dropped (a term's failure ends it, nothing more)."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=1.0)
    if not task.cancelled():
        task.exception()


async def connect(cfg: ClusterConfig, name: str, first_try: float | None = None,
                  on_closed: Callable[[], Any] | None = None) -> Any:
    """A NATS connection that reconnects for ever once made; ClusterUnreachableError if no
    server answers within ``first_try`` seconds (default: ``cfg.connect_timeout``).
    Connection errors are counted, not printed; ``on_closed`` is called if the client closes
    the connection for good."""
    import nats

    errors: list[BaseException] = []
    opened = False

    async def quiet(e: BaseException) -> None:
        errors[:] = [e]

    async def closed() -> None:
        if opened and on_closed is not None:
            on_closed()

    try:
        nc = await asyncio.wait_for(nats.connect(
            cfg.servers, max_reconnect_attempts=-1, reconnect_time_wait=0.1,
            connect_timeout=2, name=name, error_cb=quiet, closed_cb=closed),
            cfg.connect_timeout if first_try is None else first_try)
        opened = True
        return nc
    except Exception as e:  # (TimeoutError included)
        why = errors[0] if errors else e
        raise ClusterUnreachableError(f"cannot reach NATS at {', '.join(cfg.servers)}: "
                                      f"{why!r}") from e


async def wait_for_jetstream(js: Any, timeout: float = 30.0) -> None:
    """Waits until JetStream answers (a new cluster elects its meta leader first)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await js.account_info()
            return
        except Exception as e:
            if time.monotonic() > deadline:
                raise ClusterTimeoutError(f"JetStream did not answer within {timeout:.0f} s: "
                                   f"{e!r}") from e
            await asyncio.sleep(0.1)


def run_replica(config: ReplicaConfig, handler_factory: Callable[[], Any] | None = None,
                *, front: Any = None) -> int:
    """Runs a replica (with a ``GatewayFront``: and its TCP gateway) in this process until
    SIGINT/SIGTERM; returns its exit code: 2 with one line naming the URLs when no NATS
    server answers at start (a wrong URL, a cluster not started: the operator's to fix)."""
    async def main() -> int:
        r = Replica(config, handler_factory, front=front)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, r.stop)
        loop.add_signal_handler(signal.SIGUSR1, r.dump)
        try:
            return await r.run()
        except ClusterUnreachableError as e:
            if r.connected:
                raise
            print(f"ringlog replica {config.replica_id}: {e}", file=sys.stderr)
            return EXIT_UNREACHABLE
        except ClusterSetupError as e:
            print(f"ringlog replica {config.replica_id}: {e}", file=sys.stderr)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(r.nc.close(), 5)
            return EXIT_SETUP

    try:
        return asyncio.run(main())
    except RingLogError as e:
        print(f"ringlog replica {config.replica_id}: {e}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    """``python -m ringlog.cluster``: exit 2 with one line for a bad option."""
    from .cli import add_cluster_options, cluster_config_from_args

    p = argparse.ArgumentParser(prog="python -m ringlog.cluster",
                                description="Run one replica of a ringlog shard.")
    p.add_argument("--dir", dest="directory", required=True, help="the replica's directory")
    p.add_argument("--handler", default="ringlog.engine.flow:demo_engine",
                   help="module:factory of the handler (called with no arguments)")
    p.add_argument("--durability", choices=("none", "group", "sync"), default="group")
    p.add_argument("--segment-size", type=int, default=64 << 20)
    add_cluster_options(p, required=True)
    args = p.parse_args(argv)
    try:
        cfg = cluster_config_from_args(args, args.directory, args.handler, ProcessorConfig(
            durability=args.durability, segment_size=args.segment_size))
    except RingLogError as e:
        print(f"ringlog replica: {e}", file=sys.stderr)
        return 2
    return run_replica(cfg)



if __name__ == "__main__":  # python -m ringlog.cluster.replica works too
    sys.exit(main())
