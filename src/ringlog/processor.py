"""Processor: producers -> input ring -> journaller -> business-logic loop -> breaker -> outputs.

::

    producers ──publish──► INPUT RING ──► journaller (append, group commit) ──gates──►
        business-logic loop (one thread: the handler, the only writer of its state)
            │ emit ──► breaker ──► OUTPUT RING ──► output journal + on_output callbacks

A processor owns a directory: ``input/`` (the input journal), ``output/`` (the output
journal), ``snapshots/`` and ``dead-letter/``. ``start()`` recovers first (newest valid
snapshot + replay of the input journal after it, outputs suppressed or verified), so a
restarted processor continues exactly where the journal ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec

from ._loop import journal_stage
from .config import check_fields, config_error
from .errors import CircuitOpenError, RingClosedError, RingLogError
from .events import (
    FLAG_BATCH_END,
    FLAG_CONTROL,
    TYPE_BATCH_MARK,
    TYPE_BREAKER_RESET,
    TYPE_DEAD_LETTER,
    TYPE_DISCARD_HELD,
    TYPE_RELEASE_HELD,
    TYPE_SNAPSHOT,
    TYPE_TIMER,
    EventRegistry,
    control_descriptors,
)
from .logic import InputEvent, LogicLoop, LoopState, OutputRecord

__all__ = ["Processor", "ProcessorConfig", "ProcessorManifest", "ProcessorMetrics",
           "RecoveryReport", "read_manifest"]

MANIFEST = "processor.json"


class ProcessorConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a processor is built; validated at construction with errors naming the field."""

    ring_capacity: int = 1 << 14
    output_capacity: int = 1 << 14
    slot_size: int = 128
    max_batch: int = 1024
    durability: Literal["none", "group", "sync"] = "group"
    wait: Literal["blocking", "busy_spin", "yielding", "sleeping"] = "blocking"
    segment_size: int = 64 << 20
    snapshot_every: int = 0  # events between automatic snapshots; 0 = only on request
    exception_policy: Literal["halt", "dead_letter"] = "halt"
    dedup: bool = False

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("ring_capacity", "output_capacity"):
            v = getattr(self, name)
            if v < 2 or v & (v - 1):
                raise config_error(self, name, f"must be a power of two >= 2, got {v}")
        if self.slot_size < 56 or self.slot_size % 8:
            raise config_error(self, "slot_size", f"must be a multiple of 8 and >= 56 (the "
                               f"48-byte header plus payload), got {self.slot_size}")
        if self.max_batch < 1:
            raise config_error(self, "max_batch", f"must be >= 1, got {self.max_batch}")
        if self.segment_size < 8192 or self.segment_size % 4096:
            raise config_error(self, "segment_size", f"must be a multiple of 4096 and >= 8192 "
                               f"bytes, got {self.segment_size}")
        if self.snapshot_every < 0:
            raise config_error(self, "snapshot_every", f"must be >= 0, got "
                               f"{self.snapshot_every}")


class ProcessorMetrics(msgspec.Struct, frozen=True):
    """Counters readable while running (from any thread; each a consistent-enough read)."""

    state: str
    published: int
    journaled: int
    durable: int
    processed: int
    outputs: int
    output_journaled: int
    journal_lag: int
    logic_lag: int
    breaker_state: str
    held: int
    duplicates: int
    dead_letters: int
    events_in_per_s: float
    events_out_per_s: float


class ProcessorManifest(msgspec.Struct, frozen=True):
    """How a processor directory was last run, written by ``start()`` as ``processor.json``:
    the handler's class, the ProcessorConfig and the breaker's configuration (None: none).
    ``ringlog replay`` takes its breaker, dedup and exception policy from it."""

    handler: str
    config: ProcessorConfig
    breaker: dict[str, Any] | None = None


def read_manifest(directory: str | Path) -> ProcessorManifest | None:
    """The manifest of a processor directory; None where no processor has started there."""
    path = Path(directory) / MANIFEST
    try:
        return msgspec.json.decode(path.read_bytes(), type=ProcessorManifest)
    except FileNotFoundError:
        return None
    except msgspec.DecodeError as e:  # ValidationError is a DecodeError
        raise RingLogError(f"{path}: {e}") from e


class RecoveryReport(msgspec.Struct, frozen=True):
    """What ``recover()`` did: the snapshot it started from and the events it replayed."""

    snapshot_sequence: int
    replayed: int
    last_sequence: int
    verified_outputs: int
    first_divergence: int | None  # input sequence whose outputs differ from the recorded ones
    outputs_restored: int  # outputs the output journal lacked (lost in a crash), journaled


class Processor:
    """An LMAX-style event processor around one handler. See the module docstring.

    Producers may publish from any thread (the input ring is multi-producer); everything else
    (the handler, the breaker, snapshots) runs on the loop thread.
    """

    def __init__(self, handler: Any, directory: str | Path, config: ProcessorConfig | None = None,
                 *, breaker: Any | None = None, registry: EventRegistry | None = None,
                 on_output: Callable[[OutputRecord], None] | None = None) -> None:
        from .journal import Journal
        from .snapshot import SnapshotStore

        self.config = config or ProcessorConfig()
        self.directory = Path(directory)
        self.handler = handler
        self.breaker = breaker
        self.registry = registry or EventRegistry()
        self._on_output = [on_output] if on_output else []
        self._on_output_batch: list[Callable[[list[OutputRecord]], None]] = []
        self._on_output_slots: list[Callable[[bytes, int], None]] = []
        c = self.config
        self.directory.mkdir(parents=True, exist_ok=True)
        self._schema = _Schema(self.registry)
        self.input = Journal(self.directory / "input", segment_size=c.segment_size,
                             durability=c.durability, registry=self._schema)  # type: ignore[arg-type]
        self.output = Journal(self.directory / "output", segment_size=c.segment_size,
                              durability="none" if c.durability == "none" else "group",
                              registry=self._schema)  # type: ignore[arg-type]
        self.snapshots = SnapshotStore(self.directory / "snapshots")
        self._dead_letter_journal: Any = None
        self._state = "created"
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None
        self._open = threading.Condition()
        self._loop = LogicLoop(handler, breaker, reread=self._reread,
                               snapshot=self._take_snapshot,
                               dead_letter=(self._write_dead_letter
                                            if c.exception_policy == "dead_letter" else None),
                               dedup=c.dedup, snapshot_every=c.snapshot_every,
                               slot_size=c.slot_size, max_batch=c.max_batch,
                               on_resume=self._notify_resumed)
        self._rate_mark = (time.monotonic(), 0, 0)
        self._recovered: RecoveryReport | None = None

    # -- recovery -------------------------------------------------------------------------
    def recover(self, verify: bool = False) -> RecoveryReport:
        """Loads the newest valid snapshot and replays the input journal after it.

        Outputs are suppressed during replay; with ``verify`` they are compared with the
        recorded output journal and the first divergent input sequence is reported.
        """
        if self._state not in ("created",):
            raise RingLogError(f"recover() must come before start(); the processor is "
                               f"{self._state}")
        loop = self._loop
        snap_seq = -1
        snap = self.snapshots.latest()
        if snap is not None:
            snap_seq = snap.sequence
            self._restore(snap.data)
        # Outputs of the replay line up with the output journal from the snapshot's count
        # of published outputs on; those the journal lacks (lost from the output ring by a
        # crash) are journaled now, so none is lost. Outputs already journaled and not
        # verified are suppressed inside the loop (no record is built for them).
        journaled = self.output.next_sequence
        index = loop.published
        recorded = self.output.reader(index) if verify and index < journaled else iter(())
        verified, divergence = 0, None
        missing: list[OutputRecord] = []

        def on_output(out: OutputRecord) -> None:
            nonlocal verified, divergence
            if loop.published - 1 < journaled:  # this output's index in the output journal
                want = next(recorded, None)
                if divergence is None and (want is None or not _same_output(out, want)):
                    divergence = out.cause
                verified += 1
            else:
                missing.append(out)

        from .journal import JournalReader

        self._end_torn_batch()
        loop.replaying = True
        loop.replay_quiet = 0 if verify else journaled
        loop.sink = on_output
        replayed = 0
        try:
            self.handler.on_start()
            replayed = JournalReader(self.input.path).walk(snap_seq + 1, loop.replay_segment)
            loop.replay_done()
        finally:
            loop.replaying = False
            loop.sink = None
        for out in missing:
            self.output.append(out.payload, out.type_id, timestamp_ns=out.timestamp_ns,
                               correlation_id=out.correlation_id, producer_seq=out.cause,
                               flags=out.flags)
        self._recovered = RecoveryReport(snap_seq, replayed, loop.last_sequence, verified,
                                         divergence, len(missing))
        self._state = "recovered"
        return self._recovered

    def _end_torn_batch(self) -> None:
        """A crash can cut the journaller's last batch short: its last record then lacks
        FLAG_BATCH_END, and a later replay would join it to the next live batch. Journaling a
        no-op control marker that ends it makes every replay hand a batch handler the same
        batches as this one."""
        last = self.input.last_sequence
        rec = next(self.input.reader(last), None) if last >= 0 else None
        if rec is None or rec.flags & FLAG_BATCH_END:
            return
        self.input.append(b"", TYPE_BATCH_MARK, timestamp_ns=rec.timestamp_ns,
                          flags=FLAG_CONTROL | FLAG_BATCH_END)
        if self.config.durability != "none":
            self.input.sync()

    def _write_manifest(self) -> None:
        """Records how this directory is run (``processor.json``, atomically), so that the
        replay tools rebuild state the same way without being told."""
        from .snapshot import atomic_write

        h = type(self.handler)
        b = getattr(self.breaker, "config", None)
        doc = ProcessorManifest(handler=f"{h.__module__}:{h.__qualname__}", config=self.config,
                                breaker=msgspec.to_builtins(b) if b is not None else None)
        atomic_write(self.directory / MANIFEST, msgspec.json.format(msgspec.json.encode(doc)))

    def _restore(self, data: bytes) -> None:
        parts = msgspec.msgpack.decode(data, type=_Snapshot)
        self._loop.state = parts.loop
        self.handler.on_restore(parts.handler)
        if self.breaker is not None and parts.breaker:
            self.breaker.restore(parts.breaker)

    def _take_snapshot(self, sequence: int) -> None:
        if self._state == "running":
            # The snapshot's count of published outputs must be in the output journal (and on
            # disk) first: outputs before a snapshot are never regenerated by a replay.
            target = self._out.cursor
            while self._oc.sequence < target:
                if self._out.closed:
                    raise RingLogError("the output stage stopped before a snapshot could be "
                                       "taken")
                time.sleep(0.0002)
            if self.config.durability != "none":
                self.output.sync()
        snap = _Snapshot(loop=self._loop.state, handler=self.handler.on_snapshot(),
                         breaker=self.breaker.snapshot() if self.breaker is not None else b"")
        self.snapshots.write(sequence, msgspec.msgpack.encode(snap))

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def input_ring(self) -> Any:
        """The input ring (for producers written in Cython, with its cdef claim/publish API);
        None before ``start()``."""
        return getattr(self, "_in", None)

    @property
    def output_ring(self) -> Any:
        """The output ring (an extra consumer registered before publishing sees every
        output, e.g. a latency probe); None before ``start()``."""
        return getattr(self, "_out", None)

    def start(self) -> None:
        """Recovers (if not done), then starts the journaller, loop and output threads."""
        from ._ring import Ring

        if self._state == "created":
            self.recover()
        if self._state != "recovered":
            raise RingLogError(f"start() on a processor that is {self._state}")
        c = self.config
        self._in = Ring(c.ring_capacity, c.slot_size, producer="multi", wait=c.wait)
        self._out = Ring(c.output_capacity, c.slot_size, producer="single", wait=c.wait)
        self._jc = self._in.consumer()
        self._lc = self._in.consumer(after=[self._jc])
        self._oc = self._out.consumer()
        self._base = self.input.last_sequence + 1  # journal sequence of ring sequence 0
        self._loop.output_ring = self._out
        self._write_manifest()
        self._state = "running"
        for name, fn in (("journaller", self._run_journaller), ("logic", self._run_logic),
                         ("output", self._run_output)):
            t = threading.Thread(target=self._guard, args=(fn,), name=f"ringlog-{name}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except RingClosedError:
            pass
        except BaseException as e:  # the loop halts; the error is re-raised by stop/drain
            self._error = e
            self._state = "halted"
            self._in.close()
            self._out.close()

    def drain(self, timeout: float | None = None) -> None:
        """Processes everything published so far, then stops."""
        deadline = None if timeout is None else time.monotonic() + timeout
        target = self._in.cursor
        while self._state == "running" and (self._lc.sequence < target
                                             or self._oc.sequence < self._out.cursor):
            if self._loop_halted_by_breaker() and self._lc.sequence >= target:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"drain: the loop is at {self._lc.sequence}, "
                                   f"the input cursor at {target}")
            time.sleep(0.001)
        self.stop()

    def stop(self) -> None:
        """Stops the threads after their current batch; closes journals. Idempotent."""
        if self._state in ("running", "halted") and self._threads:
            self._in.close()
            for t in self._threads[:2]:  # journaller and loop: the loop may still emit
                t.join()
            if self._error is None and self._lc.sequence < self._jc.sequence:
                # the loop saw the ring closed before the journaller released its last
                # batch: handle that batch too (on this thread, now the only one)
                self._guard(lambda: self._loop.run(self._lc, self._base))
            self._out.close()
            self._threads[2].join()
            self._threads = []
            self._state = "stopped" if self._error is None else "halted"
        if self._state != "closed":
            self.input.close()
            self.output.close()
            if self._dead_letter_journal is not None:
                self._dead_letter_journal.close()
            self._state = "closed" if self._error is None else "halted"
        if self._error is not None:
            err, self._error = self._error, None
            raise RingLogError(f"the processor halted: {err!r}") from err

    def halt(self) -> None:
        """Stops at once without draining; what was journaled is replayed on restart."""
        self.stop()

    def __enter__(self) -> Processor:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- producers ------------------------------------------------------------------------
    def publish(self, payload: Any, type_id: int = 0, *, timestamp_ns: int | None = None,
                correlation_id: int = 0, producer_id: int = 0, producer_seq: int = 0,
                timeout: float | None = None) -> int:
        """Publishes an input event (bytes-like payload); returns its ring sequence.

        The timestamp is taken here (the producer's clock), never by the loop. While the
        breaker is open this blocks (backpressure) and raises CircuitOpenError on timeout.
        """
        if self._loop_halted_by_breaker():
            self._wait_closed(timeout)
        ts = time.time_ns() if timestamp_ns is None else timestamp_ns
        return self._in.publish(payload, type_id, timestamp_ns=ts, correlation_id=correlation_id,
                                producer_id=producer_id, producer_seq=producer_seq,
                                timeout=timeout)

    def publish_many(self, payloads: Any, type_id: int = 0, *,
                     timestamp_ns: int | None = None, timeout: float | None = None) -> int:
        """Publishes several input events with one claim per ring-full; returns the last
        ring sequence. All share one timestamp (taken here if not given)."""
        if self._loop_halted_by_breaker():
            self._wait_closed(timeout)
        ts = time.time_ns() if timestamp_ns is None else timestamp_ns
        return self._in.publish_many(payloads, type_id, timestamp_ns=ts, timeout=timeout)

    def publish_struct(self, event: msgspec.Struct, **kw: Any) -> int:
        """Publishes a registered msgspec Struct as an input event."""
        type_id, data = self.registry.encode(event)
        return self.publish(data, type_id, **kw)

    def _control(self, type_id: int, timestamp_ns: int | None) -> int:
        ts = time.time_ns() if timestamp_ns is None else timestamp_ns
        return self._in.publish(b"", type_id, timestamp_ns=ts, flags=FLAG_CONTROL)

    def timer(self, timestamp_ns: int) -> int:
        """Publishes a timer event: handlers see time advance only through such events."""
        return self._control(TYPE_TIMER, timestamp_ns)

    def reset_breaker(self, timestamp_ns: int | None = None) -> int:
        """Operator command (journaled): close the breaker and re-read held-back input."""
        return self._control(TYPE_BREAKER_RESET, timestamp_ns)

    def release_held(self, timestamp_ns: int | None = None) -> int:
        """Operator command (journaled): publish the outputs held while the breaker was open."""
        return self._control(TYPE_RELEASE_HELD, timestamp_ns)

    def discard_held(self, timestamp_ns: int | None = None) -> int:
        """Operator command (journaled): drop the held outputs (they stay in the journal)."""
        return self._control(TYPE_DISCARD_HELD, timestamp_ns)

    def request_snapshot(self, timestamp_ns: int | None = None) -> int:
        """Asks the loop to snapshot at this point of the input stream."""
        return self._control(TYPE_SNAPSHOT, timestamp_ns)

    def add_output_listener(self, fn: Callable[..., None], *,
                            batch: bool | Literal["slots"] = False) -> None:
        """Calls ``fn(record)`` from the output thread for every published output, or with
        ``batch`` ``fn(records)`` once per batch the output stage takes (a list in output
        order: one call, and one hand-off to another thread, per batch), or with
        ``batch="slots"`` ``fn(slots, slot_size)``: a bytes copy of the batch's output ring
        slots (``ringlog.slot_dtype`` records; no object per output, see
        ``ringlog._wire.OutputSlots``). Add listeners before ``start()``: the output stage is
        chosen then."""
        if self._state == "running":
            raise RingLogError("add_output_listener() must come before start()")
        (self._on_output_slots if batch == "slots" else self._on_output_batch if batch
         else self._on_output).append(fn)

    def _loop_halted_by_breaker(self) -> bool:
        return bool(self._loop.pending_from >= 0)

    @property
    def halted(self) -> bool:
        """True while the circuit breaker is open and input is held: producers block (or
        get CircuitOpenError on timeout) until a journaled reset; the gateway answers
        "halted". Safe to read from any thread."""
        return self._loop_halted_by_breaker()

    def _wait_closed(self, timeout: float | None) -> None:
        with self._open:
            if not self._open.wait_for(lambda: not self._loop_halted_by_breaker(), timeout):
                raise CircuitOpenError("the circuit breaker is open: input is held until an "
                                       "operator resets it (Processor.reset_breaker)")

    # -- threads --------------------------------------------------------------------------
    def _run_journaller(self) -> None:
        journal_stage(self._jc, self.input.appender, self.config.max_batch)

    def _run_logic(self) -> None:
        self._loop.run(self._lc, self._base)

    def _run_output(self) -> None:
        c = self.config
        each, whole, slots = self._on_output, self._on_output_batch, self._on_output_slots
        if not each and not whole and not slots:  # only the output journal: GIL-free stage
            journal_stage(self._oc, self.output.appender, c.max_batch, False)
            return
        slot_size = self._out.slot_size
        while True:
            batch = self._oc.poll(c.max_batch, timeout=0.05)
            if len(batch):
                self.output.append_batch(batch)
                if slots:  # one copy per batch: the slots are reused once released
                    block = batch.array.tobytes()
                    for fn in slots:
                        fn(block, slot_size)
                if each or whole:
                    recs = [_output_of(ev) for ev in batch]
                    for fn in each:
                        for rec in recs:
                            fn(rec)
                    for fn in whole:
                        fn(recs)
                self._oc.release(batch)

    def _notify_resumed(self) -> None:
        with self._open:
            self._open.notify_all()

    def _reread(self, lo: int, hi: int) -> Iterator[tuple[int, InputEvent]]:
        for rec in self.input.reader(lo, to_sequence=hi):
            yield rec.sequence, rec

    def _write_dead_letter(self, event: InputEvent, sequence: int, tb: str) -> None:
        from .journal import Journal

        if self._dead_letter_journal is None:
            self._dead_letter_journal = Journal(self.directory / "dead-letter",
                                                durability="group")
        body = msgspec.msgpack.encode(_DeadLetter(sequence, event.type_id, bytes(event.payload),
                                                  tb))
        self._dead_letter_journal.append(body, TYPE_DEAD_LETTER,
                                         timestamp_ns=event.timestamp_ns,
                                         correlation_id=event.correlation_id)

    # -- inspection -----------------------------------------------------------------------
    @property
    def processed_sequence(self) -> int:
        """Journal sequence of the last input the loop has finished (-1: none yet). While
        running, every output of the inputs up to it is already in the output ring (it is
        read before ``published_outputs`` when both are read). Safe from any thread."""
        if self._state == "running":
            return int(self._base + self._lc.sequence)
        return int(self._loop.last_sequence)

    @property
    def published_outputs(self) -> int:
        """Outputs published to the output ring since the processor's first event (its
        output journal's next sequence once they are journaled); held outputs are not
        counted until released. Safe from any thread."""
        return int(self._loop.published)

    def dedup_positions(self) -> dict[int, int]:
        """``producer_id -> last applied producer_seq`` of the dedup table (a copy); after
        ``recover()`` it says where each producer (a gateway session) resumes. Empty unless
        ``ProcessorConfig(dedup=True)``."""
        return dict(self._loop.dedup)

    def journal_sequence_of(self, ring_sequence: int) -> int:
        """The input journal sequence an event published at ``ring_sequence`` (what
        ``publish`` returned) gets: inputs are journaled in ring order from the journal's
        end at ``start()``."""
        if self._state not in ("running", "stopped", "halted") or not hasattr(self, "_base"):
            raise RingLogError(f"journal_sequence_of() needs a started processor; it is "
                               f"{self._state}")
        return int(self._base + ring_sequence)

    @property
    def state(self) -> str:
        """created, recovered, running, stopped, halted or closed."""
        return self._state

    @property
    def metrics(self) -> ProcessorMetrics:
        """A snapshot of the counters; safe to read from any thread while running."""
        st = self._loop
        running = self._state == "running"
        published = self._in.cursor + 1 if running else 0
        journaled = self._jc.sequence + 1 if running else 0
        logic = self._lc.sequence + 1 if running else 0
        now = time.monotonic()
        t0, p0, o0 = self._rate_mark
        dt = max(now - t0, 1e-9)
        rates = ((st.processed - p0) / dt, (st.outputs - o0) / dt)
        self._rate_mark = (now, st.processed, st.outputs)
        b = self.breaker
        return ProcessorMetrics(
            state=self._state, published=published, journaled=journaled,
            durable=self.input.durable_sequence, processed=st.processed, outputs=st.outputs,
            output_journaled=self._oc.sequence + 1 if running else 0,
            journal_lag=published - journaled, logic_lag=journaled - logic,
            breaker_state=b.state_name if b is not None else "none",
            held=b.held_count if b is not None else 0, duplicates=st.duplicates,
            dead_letters=st.dead_letters, events_in_per_s=rates[0], events_out_per_s=rates[1])


class _Schema:
    """The processor's event registry plus the control event types, as the schema
    descriptor of its journals' segment headers."""

    def __init__(self, registry: EventRegistry) -> None:
        self.registry = registry

    def describe(self) -> list[dict[str, Any]]:
        return [*self.registry.describe(), *control_descriptors()]

    def encode(self, event: msgspec.Struct) -> tuple[int, bytes]:
        return self.registry.encode(event)


class _Snapshot(msgspec.Struct, array_like=True):
    loop: LoopState
    handler: bytes
    breaker: bytes


class _DeadLetter(msgspec.Struct, array_like=True):
    sequence: int
    type_id: int
    payload: bytes
    traceback: str


def _output_of(ev: Any) -> OutputRecord:
    """An output ring slot (or output journal record) as an OutputRecord; the breaker key
    is not kept past the breaker (0)."""
    return OutputRecord(ev.type_id, bytes(ev.payload), 0, ev.timestamp_ns,
                        ev.correlation_id, ev.producer_seq, ev.flags)


def _same_output(rec: OutputRecord, recorded: Any) -> bool:
    return (rec.type_id == recorded.type_id and rec.payload == bytes(recorded.payload)
            and rec.cause == recorded.producer_seq)

