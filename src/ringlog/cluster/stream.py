"""The shard's input log: one JetStream stream per shard; gateways publish batches of
commands to it, each batch once.

::

    gateway ─ publish(cmd) ─► open batch ─(batch_max_bytes | batch_max_commands | linger)─►
        ready batches ─► sender: js.publish(rl.<name>.in.<shard>, InputBatch,
                                            Nats-Msg-Id=<publisher>.<batch no>)
             ▲    │ no ack (timeout, no stream leader, reconnect)
             └────┘ retry the same batch with the same id: JetStream's duplicate window
                    stores it once, whatever the retries

One batch is in flight at a time, so a retried batch can never land behind its successor:
commands from one publisher keep their order in the stream. Throughput comes from the size
of the batches, not from a window of outstanding publishes.

``InputBatch`` is the message (msgpack, array-like): the publisher's clock once per batch (the
event time every replica hands the processor, so replicas agree) and the commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ..errors import ClusterError, ClusterTimeoutError
from .config import ClusterConfig, ShardNames

__all__ = ["HEADERS_ROOM", "Command", "InputBatch", "InputPublisher", "OutputBatch",
           "OutputRecordOut", "encode_batch", "ensure_shard", "input_decoder"]


class Command(msgspec.Struct, array_like=True, frozen=True):
    """One command as the processor's input: a type id and payload plus the ids a gateway
    routes reports with (``correlation_id``) and deduplicates sessions with."""

    type_id: int
    payload: bytes
    correlation_id: int = 0
    producer_id: int = 0
    producer_seq: int = 0


class InputBatch(msgspec.Struct, array_like=True):
    """A message of the input stream: commands with one event time."""

    timestamp_ns: int
    commands: list[Command]


class OutputRecordOut(msgspec.Struct, array_like=True, frozen=True):
    """One output as it travels in the output stream: no local journal sequences, and the
    fields most outputs leave at their defaults omitted from the end of the array (market
    data: ``[type_id, payload]``; a report: ``[type_id, payload, correlation_id]``; msgspec
    decodes the short forms; ``encode_batch`` writes them).
    ``timestamp_ns`` is None when it is the batch's (``OutputBatch.timestamp_ns``): every
    output of an input message has its event time, so it is written once per batch."""

    type_id: int
    payload: bytes
    correlation_id: int = 0
    flags: int = 0
    timestamp_ns: int | None = None

    def time_in(self, batch: OutputBatch) -> int:
        """This output's event time (its own, else its batch's)."""
        return batch.timestamp_ns if self.timestamp_ns is None else self.timestamp_ns


class OutputBatch(msgspec.Struct, array_like=True):
    """The outputs of one input stream message (``input_seq``), or part ``part`` of
    ``parts`` of them when they do not fit one NATS message (the servers' ``max_payload``):
    the parts of a message are consecutive in the output stream. ``first_output`` is the
    index of its first output since the shard began; ``timestamp_ns`` the event time of its
    outputs (the first output's; 0 when there is none). Encoded deterministically: every
    replica builds the same bytes (``ringlog._emit``); ``part`` and ``parts`` are omitted
    for a message in one piece."""

    input_seq: int
    first_output: int
    timestamp_ns: int
    outputs: list[OutputRecordOut]
    part: int = 0
    parts: int = 1


_batch_encoder = msgspec.msgpack.Encoder()
# a message's share of the servers' max_payload left to its headers (ids, expected sequence,
# replica id): a batch is at most max_payload - HEADERS_ROOM bytes
HEADERS_ROOM = 1024


def _trimmed(fields: list[Any], defaults: tuple[Any, ...]) -> list[Any]:
    """``fields`` without the trailing ones equal to their defaults (``defaults``: those of
    the last fields)."""
    keep = len(fields)
    for value, default in zip(reversed(fields), reversed(defaults), strict=False):
        if value != default:
            break
        keep -= 1
    return fields[:keep]


def encode_batch(batch: OutputBatch) -> bytes:
    """The bytes of ``batch`` in the output stream, as ``ringlog._emit`` writes them: msgpack
    arrays without the trailing fields at their defaults (msgspec writes them all), an
    output's ``timestamp_ns`` only when it differs from its batch's. For tests and tools;
    the leader's batches are written in C."""
    outs = [_trimmed([o.type_id, o.payload, o.correlation_id, o.flags, o.timestamp_ns],
                     (0, 0, None)) for o in batch.outputs]
    return _batch_encoder.encode(_trimmed([batch.input_seq, batch.first_output,
                                           batch.timestamp_ns, outs, batch.part, batch.parts],
                                          (0, 1)))


def input_decoder() -> msgspec.msgpack.Decoder[InputBatch]:
    """A reusable decoder of input stream messages."""
    return msgspec.msgpack.Decoder(InputBatch)


async def until_answered(call: Callable[[], Awaitable[Any]], what: str,
                         timeout: float = 60.0) -> Any:
    """``await call()``, again while JetStream does not answer (a timeout, no responders, no
    stream leader yet: a busy or electing cluster), for up to ``timeout`` seconds; then
    RingLogError naming ``what``. Other errors pass through."""
    import nats.errors
    from nats.js.errors import APIError, ServiceUnavailableError

    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        try:
            return await call()
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError,
                ServiceUnavailableError, APIError) as e:
            if isinstance(e, APIError) and not isinstance(e, ServiceUnavailableError) \
                    and e.code not in (503, 504):
                raise
            if time.monotonic() > deadline:
                raise ClusterTimeoutError(f"{what}: JetStream did not answer within "
                                          f"{timeout:.0f} s: {e!r}") from e
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


async def ensure_shard(js: Any, cfg: ClusterConfig, shard: int) -> ShardNames:
    """Creates the shard's input, output and market data streams and the cluster's buckets
    if missing
    (idempotent: replicas and gateways all call it at start; retried while JetStream does not
    answer)."""
    return await until_answered(lambda: _ensure_shard(js, cfg, shard),  # type: ignore[no-any-return]
                                f"creating shard {shard} of {cfg.name}")


async def _ensure_shard(js: Any, cfg: ClusterConfig, shard: int) -> ShardNames:
    from nats.js.api import RetentionPolicy, StorageType, StreamConfig
    from nats.js.errors import BadRequestError

    names = cfg.names(shard)
    streams = [(names.input_stream, names.input_subject, cfg.replicas),
               (names.output_stream, names.output_subject, cfg.replicas)]
    if cfg.market_data_types:
        streams.append((names.market_data_stream, names.market_data_subject,
                        cfg.market_data_replicas))
    for stream, subject, replicas in streams:
        sc = StreamConfig(name=stream, subjects=[subject], num_replicas=replicas,
                          storage=StorageType.FILE, retention=RetentionPolicy.LIMITS,
                          duplicate_window=cfg.duplicate_window, allow_direct=True)
        try:
            await js.add_stream(sc)
        except BadRequestError as e:
            if e.err_code != 10058:  # "stream name already in use" with another config
                raise
    # the servers mark a lease's expiry (a standby's watch sees it: ringlog.cluster.lease)
    await ensure_bucket(js, names.lease_bucket, cfg.replicas, ttl=cfg.lease_ttl,
                        markers=True)
    await ensure_bucket(js, names.checkpoint_bucket, cfg.replicas)
    await ensure_bucket(js, names.status_bucket, cfg.replicas, ttl=300.0)
    from .snapshot import ensure_snapshot_store

    await ensure_snapshot_store(js, names.snapshot_bucket, cfg.replicas)
    return names


async def ensure_bucket(js: Any, bucket: str, replicas: int, ttl: float | None = None,
                        markers: bool = False) -> Any:
    """The key-value bucket ``bucket``, created if missing. With ``markers`` (and a ttl) the
    servers write a deletion marker when a key expires, which a watch of the key sees (NATS
    2.11+; a bucket made without them gets them; servers or a nats-py without them: the
    bucket as before, and the standbys' safety net finds expired leases)."""
    from nats.js.api import KeyValueConfig, StorageType
    from nats.js.errors import BucketNotFoundError

    marker_ttl = max(1.0, ttl) if markers and ttl else None
    try:
        kv = await js.key_value(bucket)
    except BucketNotFoundError:
        plain: dict[str, Any] = {"bucket": bucket, "history": 1, "ttl": ttl,
                                 "replicas": replicas, "storage": StorageType.FILE}
        for kw in ([{**plain, "limit_marker_ttl": marker_ttl}, plain] if marker_ttl
                   else [plain]):
            try:
                return await js.create_key_value(KeyValueConfig(**kw))
            except Exception:  # created by another replica meanwhile, or no markers here
                with contextlib.suppress(BucketNotFoundError):
                    return await js.key_value(bucket)
        return await js.key_value(bucket)  # (raises: the bucket could not be made)
    if marker_ttl is not None:
        with contextlib.suppress(Exception):  # (servers before 2.11: the standbys poll)
            await _add_markers(js, f"KV_{bucket}", marker_ttl)
    return kv


async def _add_markers(js: Any, stream: str, marker_ttl: float) -> None:
    """Turns on the servers' deletion markers of expired keys in a bucket made without."""
    import dataclasses

    info = await js.stream_info(stream)
    if info.config.subject_delete_marker_ttl:
        return
    await js.update_stream(dataclasses.replace(info.config, allow_msg_ttl=True,
                                               subject_delete_marker_ttl=marker_ttl))


class InputPublisher:
    """Batches commands for one shard and publishes each batch exactly once (see the module
    docstring). Not thread-safe: use it from one event loop.

    ``await publish(...)`` returns once the command is in a batch (it waits only while
    ``max_pending`` batches are unacknowledged: backpressure); ``await flush()`` returns the
    stream sequence of the last batch once every batch is stored.
    """

    def __init__(self, js: Any, cfg: ClusterConfig, shard: int, *,
                 publisher_id: str | None = None, max_pending: int = 64,
                 reconnect: Callable[[], Awaitable[Any]] | None = None) -> None:
        self.js = js
        self.reconnect = reconnect  # a new JetStream context once nats-py closed the old one
        self.cfg = cfg
        self.names = cfg.names(shard)
        self.publisher_id = publisher_id or uuid.uuid4().hex[:12]
        self.max_pending = max_pending
        self.batches_sent = 0
        self.retries = 0
        self.last_seq = 0  # stream sequence of the newest stored batch
        self._open: list[Command] = []
        self._open_bytes = 0
        self._ready: deque[tuple[str, bytes]] = deque()
        self._next_id = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._linger: asyncio.TimerHandle | None = None
        self._error: BaseException | None = None
        self._sender = asyncio.ensure_future(self._send_loop())

    async def publish(self, type_id: int, payload: bytes, *, correlation_id: int = 0,
                      producer_id: int = 0, producer_seq: int = 0) -> None:
        """Adds one command to the open batch."""
        if not self._room.is_set():
            await self._room.wait()
        self.add(Command(type_id, payload, correlation_id, producer_id, producer_seq))

    def add(self, cmd: Command) -> None:
        """Adds a command without waiting (the caller watches ``pending``)."""
        if self._error is not None:
            raise ClusterError(f"the publisher to {self.names.input_stream} failed: "
                               f"{self._error!r}") from self._error
        size = len(cmd.payload) + 24
        if self._open and self._open_bytes + size > self.cfg.batch_max_bytes:
            self._cut()
        self._open.append(cmd)
        self._open_bytes += size
        if len(self._open) >= self.cfg.batch_max_commands:
            self._cut()
        elif self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(self.cfg.batch_linger,
                                                                  self._cut)

    @property
    def pending(self) -> int:
        """Batches cut and not yet stored."""
        return len(self._ready)

    def _cut(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if not self._open:
            return
        for data in self._encoded(self._open, time.time_ns()):
            self._ready.append((f"{self.publisher_id}.{self._next_id}", data))
            self._next_id += 1
        self._open, self._open_bytes = [], 0
        self._idle.clear()
        self._wake.set()
        if len(self._ready) >= self.max_pending:
            self._room.clear()

    def _encoded(self, commands: list[Command], ts: int) -> list[bytes]:
        """The batch's bytes; several batches (halves, again if need be) if it passes the
        servers' max_payload less HEADERS_ROOM (``batch_max_bytes`` is counted roughly by
        ``add``, and a server may take less than it)."""
        data = _batch_encoder.encode(InputBatch(ts, commands))
        limit = getattr(getattr(self.js, "_nc", None), "max_payload", None)
        if not isinstance(limit, int) or len(data) <= limit - HEADERS_ROOM \
                or len(commands) == 1:
            return [data]
        half = len(commands) // 2
        return self._encoded(commands[:half], ts) + self._encoded(commands[half:], ts)

    async def flush(self) -> int:
        """Cuts the open batch and waits until every batch is stored; returns the stream
        sequence of the last one."""
        self._cut()
        await self._idle.wait()
        if self._error is not None:
            raise ClusterError(f"the publisher to {self.names.input_stream} failed: "
                               f"{self._error!r}") from self._error
        return self.last_seq

    async def close(self) -> None:
        """Flushes, then stops the sender."""
        try:
            await self.flush()
        finally:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    async def _send_loop(self) -> None:
        import nats.errors

        try:
            while True:
                if not self._ready:
                    self._idle.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                msg_id, data = self._ready[0]
                try:
                    self.last_seq = await publish_once(self.js, self.names.input_subject, data,
                                                       msg_id, self.cfg.publish_timeout,
                                                       self.cfg.duplicate_window, self)
                except nats.errors.ConnectionClosedError:
                    if self.reconnect is None:
                        raise
                    self.js = await self.reconnect()  # the same batch again, same id
                    continue
                self._ready.popleft()
                self.batches_sent += 1
                if len(self._ready) < self.max_pending:
                    self._room.set()
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._error = e
            self._idle.set()
            self._room.set()


async def publish_once(js: Any, subject: str, data: bytes, msg_id: str, timeout: float,
                       give_up_after: float, counter: Any = None,
                       headers: dict[str, str] | None = None) -> int:
    """Publishes ``data`` with ``msg_id`` until JetStream acknowledges it (retrying on a
    timeout, a missing stream leader or a reconnect; the duplicate window makes a retry of a
    stored message a no-op); returns its stream sequence."""
    import nats.errors
    from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError

    hdrs = {"Nats-Msg-Id": msg_id, **(headers or {})}
    deadline = time.monotonic() + give_up_after
    pause = 0.02
    while True:
        try:
            ack = await js.publish(subject, data, timeout=timeout, headers=hdrs)
            return int(ack.seq)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError,
                nats.errors.ConnectionReconnectingError, ServiceUnavailableError,
                NoStreamResponseError) as e:
            err: BaseException = e
        except APIError as e:
            if e.code not in (503, 504):
                raise
            err = e
        if counter is not None:
            counter.retries += 1
        if time.monotonic() > deadline:
            raise ClusterTimeoutError(f"{subject}: no acknowledgement for message {msg_id} within "
                               f"{give_up_after:.0f} s: {err!r}") from err
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)
