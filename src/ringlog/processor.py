"""Processor: producers -> input ring -> journaller -> business-logic loop -> breaker -> outputs.

Two topologies run the same logical stages in the same order (``ProcessorConfig.topology``;
``auto`` picks by the CPUs the process may use, ``os.sched_getaffinity``):

::

    staged (a thread per stage; for machines with CPUs to spare)
    producers ──publish──► INPUT RING ──► journaller thread (memcpy+CRC into the mmap) ──gates──►
        loop thread (the handler, the only writer of its state) ──emit──► breaker ──►
        OUTPUT RING ──► output thread: output journal, then listeners (after durability)

    inline (few CPUs: nothing spins on a core it shares)
    producers ──publish──► INPUT RING ──► loop thread: append the batch to the input journal
        (no GIL), then handle it ──emit──► breaker ──┬─► output journal (records built by the
                                                      │   loop: output_journaller "loop"; its
                                                      │   writer thread pwrite()s them behind)
                                                      └─► OUTPUT RING (slots published once per
            batch) ──► output thread, sleeping on the ring: output journal (copy + CRC + pwrite
            of whole batches), then listeners if any (output_journaller "thread", or listeners)

    driven (no loop thread: the thread that owns the processor, e.g. the gateway's event loop,
    calls pump() after it publishes, and on a timer for what other threads publish)
    producers ──publish──► INPUT RING ──► pump() on the owner's thread: the inline loop's step
        (append the batch to the input journal, then handle it), until the ring is empty

    all: the input journal's sync thread sleeps until there is something to fdatasync and
    starts the next fdatasync as soon as the previous one returns (group commit)

Ordering, in every topology: an input is in the journal before the handler sees it; under
``durability`` group/sync with ``release="durable"`` (the default) no output reaches a
listener (the gateway, an output stream) before the input that caused it is durable, so a
client never holds an acknowledgement for an input a power loss can erase.

A processor owns a directory: ``input/`` (the input journal), ``output/`` (the output
journal), ``snapshots/`` and ``dead-letter/``. ``start()`` recovers first (newest valid
snapshot + replay of the input journal after it, outputs suppressed or verified), so a
restarted processor continues exactly where the journal ends.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec

from . import durable
from ._loop import LoopHandle, journal_stage
from ._release import ReleaseStage, SlotSink
from .bench.cpu import name_thread
from .config import check_fields, config_error, cpus_not_allowed
from .errors import (
    CircuitOpenError,
    ConfigError,
    InsufficientCapacityError,
    JournalCorruptError,
    JournalError,
    RingClosedError,
    RingLogError,
    StateError,
    WaitTimeoutError,
)
from .events import (
    FLAG_BATCH_END,
    FLAG_CONTROL,
    TYPE_BATCH_MARK,
    TYPE_BREAKER_RESET,
    TYPE_DEAD_LETTER,
    TYPE_DISCARD_HELD,
    TYPE_ENABLE,
    TYPE_KILL,
    TYPE_RELEASE_HELD,
    TYPE_SNAPSHOT,
    TYPE_TIMER,
    EventRegistry,
    control_descriptors,
)
from .journal import LAZY_SYNC_MAX_MS
from .logic import InputEvent, LogicLoop, LoopState, OutputRecord
from .retention import Retention, prune_processor

__all__ = ["Processor", "ProcessorConfig", "ProcessorManifest", "ProcessorMetrics",
           "RecoveryReport", "read_manifest", "resolve_topology"]

log = logging.getLogger("ringlog.processor")

MANIFEST = "processor.json"
COUNTERS = "counters"  # the live counters file (ringlog._counters), read by `ringlog stat`
INLINE_BELOW_CPUS = 4  # ``topology="auto"``: inline when the process may use fewer CPUs
OUTPUT_GROUP_EVENTS, OUTPUT_GROUP_MS = 1 << 16, 20.0  # output journal: sync in large groups
_DRIVEN_WAIT_S = 0.005  # driven, a full ring: the slice a publisher waits before pumping again
WRITTEN_WAIT_S = 30.0  # a snapshot waits this long at most for its outputs to be in the file


def _allowed_cpus(c: ProcessorConfig) -> tuple[frozenset[int] | None, frozenset[int] | None]:
    """``(loop_cpus, background_cpus)`` once each is checked against the CPUs this process may
    use (``os.sched_getaffinity``: a container's or taskset's limit counts)."""
    for name in ("loop_cpus", "background_cpus"):
        cpus = getattr(c, name)
        why = None if cpus is None else cpus_not_allowed(cpus)
        if why is not None:
            raise config_error(c, name, why)
    return c.loop_cpus, c.background_cpus


def resolve_topology(topology: str = "auto", *,
                     driver: bool = False) -> Literal["inline", "staged", "driven"]:
    """The topology ``auto`` stands for here: ``inline`` when this process may run on fewer
    than ``INLINE_BELOW_CPUS`` CPUs (``os.sched_getaffinity``: containers and taskset count),
    where a thread per stage would make the stages take turns on shared cores, or with
    ``driver`` (the caller's own thread will pump, as the gateway's event loop does)
    ``driven``: on such machines one thread fewer that wants a CPU; else ``staged``.
    ``inline``/``staged``/``driven`` are returned as given (``driven`` needs a caller that
    pumps: ``ProcessorConfig(topology="auto")`` never picks it)."""
    if topology in ("inline", "staged", "driven"):
        return topology  # type: ignore[return-value]
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    if cpus >= INLINE_BELOW_CPUS:
        return "staged"
    return "driven" if driver else "inline"


class ProcessorConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a processor is built; validated at construction with errors naming the field."""

    ring_capacity: int = 1 << 14
    output_capacity: int = 1 << 14
    slot_size: int = 128
    max_batch: int = 1024
    durability: Literal["none", "group", "sync"] = "group"
    # group: while nothing waits for an input to be durable (no output held for release, no
    # wait_durable), the group commit lets appends gather this long after each fdatasync; an output
    # held for its input makes it sync at once and back to back (docs/processor.md,
    # "Durability"); 0: back to back always, as under durable release with listeners (every
    # output held: start() turns the pause off)
    lazy_sync_ms: float = 1.0
    wait: Literal["blocking", "busy_spin", "yielding", "sleeping"] = "blocking"
    segment_size: int = 64 << 20
    snapshot_every: int = 0  # events between automatic snapshots; 0 = only on request
    exception_policy: Literal["halt", "dead_letter"] = "halt"
    dedup: bool = False
    counters: bool = True  # DIR/counters: live counters for `ringlog stat` and metrics
    admin: bool = True  # DIR/admin.sock: journaled operator commands (`ringlog admin`)
    # "inline": the loop thread journals each batch itself, then handles it; "staged": a
    # journaller thread ahead of the loop; "auto": inline on few CPUs (resolve_topology);
    # "driven": inline's step with no loop thread, run by whoever calls pump() (the
    # gateway's event-loop thread: docs/processor.md, "Topology")
    topology: Literal["auto", "inline", "staged", "driven"] = "auto"
    # inline with no output listener, who appends outputs to the output journal: "loop" the
    # loop thread itself (no output ring, no thread); "thread" an output thread sleeping on
    # the output ring (the loop only fills slots): fewer instructions on the loop thread but
    # more CPU in all on a shared 2-vCPU machine (docs/processor.md, step 10). Inline with a
    # SlotSink as the one listener (the gateway), "loop": the loop appends its slots and
    # hands them to the sink (the input journal's durable hook hands over the rest), no
    # output thread (docs/gateway-design.md, seventh round). Staged always has the output
    # thread, and so do Python listeners.
    output_journaller: Literal["loop", "thread"] = "loop"
    # "durable": under group/sync an output reaches listeners only once the input that caused
    # it is durable (power-loss safe acks); "immediate": as soon as it is journaled
    release: Literal["durable", "immediate"] = "durable"
    # how the output journal's writer thread writes: "buffered" by pwrite() into the page
    # cache; "direct" whole 4 KiB blocks with O_DIRECT from its own buffer (no page cache:
    # no page allocated, dirtied and written back per 4 KiB; records reach the file within
    # 20 ms of their batch, so a live tailer sees them that late): less CPU per byte, one
    # write at a time to the device (`ringlog serve` asks for "auto"); "auto": direct where
    # the file system takes O_DIRECT, except under the staged topology (buffered there: not
    # measured to pay). Buffered by default: direct saved CPU on the engine flow but widened
    # the publish-to-handled tail at 100k/s (docs/processor.md, steps 25-26 and 30;
    # docs/journal-format.md, "Direct I/O")
    output_io: Literal["buffered", "direct", "auto"] = "buffered"
    retention: Retention | None = None  # prune after each snapshot (ringlog.retention)
    # CPU placement (os.sched_setaffinity), as Disruptor and Chronicle deployments pin their
    # threads: the loop thread on ``loop_cpus``; the other stages (journaller, output) and
    # the journals' group-commit threads on ``background_cpus``; None: where the OS puts
    # them; driven, ``loop_cpus`` pins the thread that calls start() (the driver). Checked
    # against the CPUs this process may use at start() (docs/processor.md, "Placing the
    # threads").
    loop_cpus: frozenset[int] | None = None
    background_cpus: frozenset[int] | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("ring_capacity", "output_capacity"):
            v = getattr(self, name)
            if v < 2 or v & (v - 1):
                raise config_error(self, name, f"must be a power of two >= 2, got {v}")
        if self.slot_size < 56 or self.slot_size % 8:
            raise config_error(self, "slot_size", f"must be a multiple of 8 and >= 56 (the "
                               f"48-byte header plus payload), got {self.slot_size}")
        if not 1 <= self.max_batch <= 2**31 - 1:  # the loop's C int
            raise config_error(self, "max_batch", f"must be from 1 to {2**31 - 1}, got "
                               f"{self.max_batch}")
        if not 0 <= self.lazy_sync_ms <= LAZY_SYNC_MAX_MS:
            raise config_error(self, "lazy_sync_ms", f"must be from 0 to {LAZY_SYNC_MAX_MS} "
                               f"ms, got {self.lazy_sync_ms}")
        if self.segment_size < 8192 or self.segment_size % 4096:
            raise config_error(self, "segment_size", f"must be a multiple of 4096 and >= 8192 "
                               f"bytes, got {self.segment_size}")
        if self.snapshot_every < 0:
            raise config_error(self, "snapshot_every", f"must be >= 0, got "
                               f"{self.snapshot_every}")
        for name in ("loop_cpus", "background_cpus"):
            cpus = getattr(self, name)
            if cpus is not None and (not cpus or min(cpus) < 0):
                raise config_error(self, name, f"must be a non-empty set of CPU numbers >= 0 "
                                   f"(or None), got {sorted(cpus)}")


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
        raise JournalCorruptError(f"{path}: {e}", path=str(path)) from e


class RecoveryReport(msgspec.Struct, frozen=True):
    """What ``recover()`` did: the snapshot it started from and the events it replayed."""

    snapshot_sequence: int
    replayed: int
    last_sequence: int
    verified_outputs: int
    first_divergence: int | None  # input sequence whose outputs differ from the recorded ones
    outputs_restored: int  # outputs the output journal lacked (lost in a crash), journaled
    outputs_cut: int = 0  # outputs of inputs a crash lost, cut from the output journal


class Processor:
    """An LMAX-style event processor around one handler. See the module docstring.

    Producers may publish from any thread (the input ring is multi-producer); everything else
    (the handler, the breaker, snapshots) runs on the loop thread, or under the ``driven``
    topology on the thread calling ``pump()``.
    """

    # driven: pump() keeps the GIL through the journal append (bench/driven_pump.py measures
    # the other choice; docs/gateway-design.md, eighth round)
    _pump_nogil = False
    _handle: LoopHandle | None = None  # __init__ makes it once the loop exists

    def __init__(self, handler: Any, directory: str | Path, config: ProcessorConfig | None = None,
                 *, breaker: Any | None = None, registry: EventRegistry | None = None,
                 on_output: Callable[[OutputRecord], None] | None = None) -> None:
        from .journal import Journal
        from .snapshot import SnapshotStore

        _check_handler(handler)  # before any file exists: a bad handler leaves nothing behind
        if config is not None and not isinstance(config, ProcessorConfig):
            raise ConfigError("Processor.config", f"must be a ProcessorConfig, got "
                              f"{type(config).__name__}", config)
        if on_output is not None and not callable(on_output):
            raise ConfigError("Processor.on_output", f"must be callable, got "
                              f"{type(on_output).__name__}", on_output)
        self.config = config or ProcessorConfig()
        self.topology = resolve_topology(self.config.topology)
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
                             durability=c.durability, registry=self._schema,  # type: ignore[arg-type]
                             lazy_sync_ms=c.lazy_sync_ms)
        # the output journal is not on the release path (a restart recomputes outputs from
        # the input journal): it syncs in large groups, sparing a core the fdatasync churn,
        # and its writes are made behind the appending thread (the loop's, or the gateway's)
        try:
            self.output = self._open_output()
        except BaseException:  # (output_io="direct" where O_DIRECT is refused): unlocked
            self.input.close()
            raise
        self.snapshots = SnapshotStore(self.directory / "snapshots")
        self._dead_letter_journal: Any = None
        self._state = "created"
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None
        self.halt_cause: BaseException | None = None  # what halted it (kept after stop)
        self._open = threading.Condition()
        try:
            self._loop = LogicLoop(handler, breaker, reread=self._reread,
                                   snapshot=self._take_snapshot,
                                   dead_letter=(self._write_dead_letter
                                                if c.exception_policy == "dead_letter"
                                                else None),
                                   dedup=c.dedup, snapshot_every=c.snapshot_every,
                                   slot_size=c.slot_size, max_batch=c.max_batch,
                                   on_resume=self._notify_resumed)
        except BaseException:  # a handler/breaker mismatch: leave the journals unlocked
            self.input.close()
            self.output.close()
            raise
        self._rate_mark = (time.monotonic(), 0, 0)
        self._recovered: RecoveryReport | None = None
        self._in: Any = None
        self._out: Any = None
        self._stage: ReleaseStage | None = None  # start(): the loop thread runs it (SlotSink)
        self._oc: Any = None
        self._final: tuple[int, int, int, int] | None = None  # _counts() at the last stop
        self._pumping = threading.Lock()  # driven: held by the one thread inside pump()
        # pump() and the loop's progress as C calls (a gateway driving the loop uses it)
        self._handle = LoopHandle(self._loop, self._pumping, self._halt,
                                  self.topology == "driven")
        self._live = False  # started and not yet stopped (its stages may run)
        # driven: under sync the journal append waits for an fdatasync, which must not hold
        # the GIL (nor hold back a sync thread that takes it: a Python journal hook)
        self._nogil_append = self._pump_nogil or self.config.durability == "sync"

    def _open_output(self) -> Any:
        from .journal import Journal, direct_io_supported

        c = self.config
        path = self.directory / "output"
        path.mkdir(exist_ok=True)
        direct = (c.output_io == "direct"
                  or (c.output_io == "auto" and self.topology != "staged")) \
            and direct_io_supported(path)
        if c.output_io == "direct" and not direct:
            raise config_error(c, "output_io", f"'direct', but the file system of {path} does "
                               "not take O_DIRECT writes (use 'auto' or 'buffered')")
        return Journal(path, segment_size=c.segment_size,
                       durability="none" if c.durability == "none" else "group",
                       group_events=OUTPUT_GROUP_EVENTS, group_ms=OUTPUT_GROUP_MS,
                       registry=self._schema, write_behind=True,  # type: ignore[arg-type]
                       direct_io=direct, linger_ms=OUTPUT_GROUP_MS)

    # -- recovery -------------------------------------------------------------------------
    def recover(self, verify: bool = False) -> RecoveryReport:
        """Loads the newest valid snapshot and replays the input journal after it.

        Outputs are suppressed during replay; with ``verify`` they are compared with the
        recorded output journal and the first divergent input sequence is reported.
        """
        if self._state not in ("created",):
            raise StateError(f"recover() must come before start(); the processor is "
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
        cut = 0
        if loop.published < journaled and "no_output_cut" not in durable.planted:  # (a
            cut = self._cut_lost_outputs(loop.published)  # test-only planted bug)
        for out in missing:
            self.output.append(out.payload, out.type_id, timestamp_ns=out.timestamp_ns,
                               correlation_id=out.correlation_id, producer_seq=out.cause,
                               flags=out.flags)
        self._recovered = RecoveryReport(snap_seq, replayed, loop.last_sequence, verified,
                                         divergence, len(missing), cut)
        self._state = "recovered"
        return self._recovered

    def _cut_lost_outputs(self, keep: int) -> int:
        """The output journal holds more outputs than the replay made (``keep``): outputs of
        inputs a power loss took from the input journal's tail (journaled, not yet durable)
        while the output journal, synced on its own, kept them. No listener saw them (release
        "durable" waits for their inputs), and no replay makes them again, so they are cut:
        the next live output takes the index of the first. Returns how many."""
        from .journal import cut_after

        last_input = self.input.last_sequence
        n = self.output.next_sequence - keep
        kept = [r.producer_seq for r in self.output.reader(keep, verify=False)
                if r.producer_seq <= last_input]
        if kept:
            # not an input's loss: a handler whose replay differs from its run (or outputs
            # a lost breaker command released from the hold); cut all the same, so that
            # output indexes stay those of the replay, but say so
            log.warning("%s: %d of the %d outputs past the replay's %d have causes the input "
                        "journal holds (first: input %d): the replay made fewer outputs than "
                        "the run did", self.output.path, len(kept), n, keep, kept[0])
        self.output.close()
        decision = cut_after(self.output.path, keep - 1)
        self.output = self._open_output()
        if decision is None:
            return 0
        self.output.decisions.append(decision)
        log.warning("%s: recovery: cut %d outputs of inputs the input journal lacks (from "
                    "output %d, the input journal ends at %d)", self.output.path, n, keep,
                    last_input)
        return n

    def _end_torn_batch(self) -> None:
        """A crash can cut the journaller's last batch short: its last record then lacks
        FLAG_BATCH_END, and a later replay would join it to the next live batch. Journaling a
        no-op control marker that ends it makes every replay hand a batch handler the same
        batches as this one."""
        last = self.input.last_sequence
        try:
            rec = next(self.input.reader(last), None) if last >= 0 else None
        except JournalError:  # empty, starting after `last` (a directory seeded from a
            rec = None        # snapshot: ringlog.cluster.snapshot)
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
            # (inline without listeners, or a SlotSink's, this thread journaled them itself:
            # nothing to wait for)
            target = self._out.cursor if self._out is not None and self._stage is None else -1
            while self._oc is not None and self._oc.sequence < target:
                if self._out.closed:
                    raise StateError("the output stage stopped before a snapshot could be "
                                     "taken")
                time.sleep(0.0002)
            if self._out is None:  # this thread's outputs may still be in the buffer
                self.output.appender.flush()
            elif not self._outputs_written(WRITTEN_WAIT_S):  # (a direct-I/O writer lingers)
                raise StateError("the output journal did not write the outputs a snapshot "
                                 f"counts within {WRITTEN_WAIT_S} s")
            if self.config.durability != "none":
                self.output.sync()
                # and the inputs it covers: a snapshot past the input journal's durable end
                # would, after a power loss, stand for inputs the journal no longer has
                if "snapshot_before_inputs_durable" not in durable.planted:  # (a test-only
                    self.input.sync()                                   # planted bug)
        snap = _Snapshot(loop=self._loop.state, handler=self.handler.on_snapshot(),
                         breaker=self.breaker.snapshot() if self.breaker is not None else b"")
        self.snapshots.write(sequence, msgspec.msgpack.encode(snap))
        if self.config.retention is not None:
            prune_processor(self, self.config.retention)

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
        """Recovers (if not done), then starts the stage threads of the topology."""
        from ._ring import Ring

        if self._state == "created":
            self.recover()
        if self._state != "recovered":
            raise StateError(f"start() on a processor that is {self._state}")
        c = self.config
        cpus = _allowed_cpus(c)  # before anything starts: a CPU this process lacks fails here
        inline = self.topology in ("inline", "driven")  # driven: inline's step, pumped
        listeners = bool(self._on_output or self._on_output_batch or self._on_output_slots)
        if listeners and self._gated and c.durability == "group":
            # every output now waits for its input to be durable, so the group commit always
            # has a waiter: a lazy pause would only cost each commit cycle a second wake-up
            # (the append's nudge, then the release's want: docs/processor.md, step 31)
            self.input.appender.set_lazy_ns(0)
        # inline, a SlotSink the one listener (the gateway): the loop appends and hands over
        sink_only = (inline and c.output_journaller == "loop" and not self._on_output
                     and not self._on_output_batch and len(self._on_output_slots) == 1
                     and isinstance(self._on_output_slots[0], SlotSink))
        self._in = Ring(c.ring_capacity, c.slot_size, producer="multi", wait=c.wait)
        # the consumer that journals looks at most max_batch slots ahead (a batch is never
        # longer); a staged loop takes what the journaller released, whole batches
        lc = self._in.consumer(max_batch=c.max_batch) if inline else None
        self._jc = lc or self._in.consumer(max_batch=c.max_batch)
        self._lc = lc or self._in.consumer(after=[self._jc])
        self._base = self.input.last_sequence + 1  # journal sequence of ring sequence 0
        self._published_at_start = int(self._loop.published)
        if inline and not listeners and c.output_journaller == "loop":  # no output ring
            self._out = self._oc = None
            self._loop.set_outputs(None, self.output.appender)
        else:
            self._out = Ring(c.output_capacity, c.slot_size, producer="single", wait=c.wait)
            self._oc = self._out.consumer()
        self._open_counters()
        self._stage = None
        if self._out is not None:
            if sink_only:  # no output thread: the loop thread is the stage's
                self._stage = ReleaseStage(self._oc, self.output.appender,
                                           self.input.appender if self._gated else None,
                                           self._on_output_slots, self._output_counters)
                self._stage.attach()
                if self.topology == "driven":
                    # the sink's consumer is the pumping thread itself: a bound would
                    # have the pump wait for a take() only its own thread can do. One
                    # pump's outputs bound it (at most a ring of inputs per pump)
                    self._stage.unbound()
            self._loop.set_outputs(self._out, None, self._stage)
        if c.admin:  # before any thread starts: a socket that cannot be made fails start()
            from .admin import AdminServer

            try:
                self._admin = AdminServer(self, self.directory)
            except RingLogError:
                if self.counters is not None:
                    self.counters.close()
                raise
        self._write_manifest()
        # driven: pump()'s arguments, taken once
        self.loop_handle.arm(self._lc, self._base, self.input.appender, c.max_batch,
                             self._nogil_append)
        self._state = "running"
        self._live = True
        self.loop_handle.driver = threading.get_ident()  # until another thread pumps
        stages: list[tuple[str, Callable[[], None]]] = (
            [] if self.topology == "driven" else [("loop", self._run_logic)])
        if not inline:
            stages.insert(0, ("journaller", self._run_journaller))
        if self._out is not None and self._stage is None:
            stages.append(("output", self._run_output))
        for name, fn in stages:
            t = threading.Thread(target=self._guard, args=(fn, f"rl-{name}"),
                                 name=f"ringlog-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self._place_threads(*cpus)

    def _place_threads(self, loop: frozenset[int] | None,
                       background: frozenset[int] | None) -> None:
        """Pins the loop thread and the background threads (ProcessorConfig.loop_cpus,
        background_cpus); a thread that already ended is left alone."""
        for t in [*self._threads, *self.input.threads, *self.output.threads]:
            cpus = loop if t.name == "ringlog-loop" else background
            if cpus is not None and t.native_id is not None and t.is_alive():
                with contextlib.suppress(ProcessLookupError):  # it ended since the check
                    os.sched_setaffinity(t.native_id, cpus)
        if self.topology == "driven" and loop is not None:  # the loop is the caller's thread
            os.sched_setaffinity(threading.get_native_id(), loop)

    def _open_counters(self) -> None:
        """Makes ``DIR/counters`` (with ``config.counters``) and the stages' counters in it;
        without it every stage stores into private spares, the same way."""
        from ._counters import CountersManager, StageCounters

        self.counters = (CountersManager.create(self.directory / COUNTERS)
                         if self.config.counters else None)
        self._loop.counters = StageCounters(self.counters, "logic")
        if self.breaker is None:
            self._loop.counters.set("breaker_state", -1)  # readers show "none"
        self._journal_counters = StageCounters(self.counters, "journal")
        self._output_counters = StageCounters(self.counters, "journal", "output")
        # inline topology: the loop thread journals its input (and, with no output ring,
        # its outputs) itself, so it stores those stages' counters too
        self._loop.journal_counters = self._journal_counters
        self._loop.output_counters = self._output_counters

    def _guard(self, fn: Callable[[], Any], name: str | None = None) -> Any:
        if name:
            name_thread(name)  # per-thread CPU figures (ringlog.bench.cpu), perf, top
        try:
            return fn()
        except RingClosedError:
            pass
        except BaseException as e:  # the loop halts; the error is re-raised by stop/drain
            self._halt(e)
        return None

    def _halt(self, e: BaseException) -> None:
        """The loop failed with ``e``: halted, rings closed; stop()/drain() raise it."""
        self._error = self.halt_cause = e
        self._state = "halted"
        self._in.close()
        if self._out is not None:
            self._out.close()

    # -- the driven topology ----------------------------------------------------------------
    def pump(self) -> int:
        """The ``driven`` topology's loop step, on the caller's thread: journals and handles
        what the input ring holds (published before the call), in batches of at most
        ``max_batch``, exactly as the inline loop thread would, and returns how many events
        it handled (0 when there were none, or the processor is not running). Never waits
        for input. Outputs are published as the loop thread publishes them (a SlotSink
        listener gets them here under release immediate, from the sync thread's durable
        hook under durable release). A handler error, a breaker kill or a journal failure
        halts the processor as on the loop thread (``state`` "halted", the error raised by
        ``stop()``); this returns what it handled before. One pumper at a time: a call while
        another thread is inside ``pump()`` raises StateError."""
        if self.topology != "driven":
            raise StateError(f"pump() needs ProcessorConfig(topology=\"driven\"); this "
                             f"processor runs the {self.topology} topology, whose loop "
                             "thread pumps")
        return self.loop_handle.pump()

    def _pump_held(self) -> int:
        """pump() with ``_pumping`` held (``LoopHandle.held``)."""
        return self.loop_handle.held()

    @property
    def loop_handle(self) -> LoopHandle:
        """The loop as C calls (``ringlog._loop.LoopHandle``): ``pump()`` and the progress
        figures without a Python frame, for a caller that drives the loop per iteration (the
        gateway). Same rules as ``pump()`` and the properties it mirrors."""
        assert self._handle is not None  # made in __init__
        return self._handle

    def _pump_all(self) -> None:
        """Driven, drain and stop: pumps (waiting for a pump on another thread to end) until
        everything published is handled, the processor halted, or only slots claimed and
        not yet published are left (their producers publish them or time out)."""
        with self._pumping:
            while self._state == "running" and self._lc.sequence < self._in.cursor:
                if not self._pump_held():
                    break

    def _idle(self, target: int) -> bool:
        """Everything published up to ring sequence ``target`` is handled and every output
        of it has left the output stage."""
        if self._lc.sequence < target:
            return False
        return self._out is None or self._oc.sequence >= self._out.cursor

    def _outputs_written(self, timeout: float) -> bool:
        """Whether every output the loop journaled is in the output journal's file (asks its
        writer, waiting up to ``timeout`` seconds): a snapshot and ``drain()``."""
        last = int(self._loop.published) - 1
        return last < 0 or self.output.wait_written(last, timeout) >= last

    def drain(self, timeout: float | None = None) -> None:
        """Waits until everything published so far is handled and its outputs have left the
        output stage (in the output journal's file, where readers find them, and handed to
        listeners); the processor keeps running, so a later publish is handled as usual.
        Returns early while the breaker holds input back. Raises TimeoutError after
        ``timeout`` seconds, or the processor's error (RingLogError) if it halted."""
        if self._state not in ("running", "halted"):
            raise StateError(f"drain() on a processor that is {self._state}")
        deadline = None if timeout is None else time.monotonic() + timeout
        target = self._in.cursor
        pause = 0.0001
        while self._state == "running" and not self._idle(target):
            if self.topology == "driven":  # nobody else may pump: this thread does
                self._pump_all()
                if self._idle(target):
                    break
            if self._loop_halted_by_breaker() and self._lc.sequence >= target:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeoutError(f"drain: the loop is at {self._lc.sequence}, "
                                       f"the input cursor at {target}")
            time.sleep(pause)
            pause = min(pause * 2, 0.005)
        if self._state == "running":  # a direct-I/O writer lingers: ask it
            left = WRITTEN_WAIT_S if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._outputs_written(left):
                raise WaitTimeoutError(f"drain: the output journal's writer has not written "
                                       f"output {int(self._loop.published) - 1} within "
                                       f"{left:.3g} s")
        if self._error is not None:
            self.stop()  # raises the error that halted the processor

    def stop(self) -> None:
        """Handles what is already published, stops the threads and closes the journals
        (everything appended is synced unless durability is ``none``). Idempotent; raises
        the error that halted the processor, if one did."""
        if getattr(self, "_admin", None) is not None:
            self._admin.close()
        if self._state in ("running", "halted") and self._live:
            self._in.close()
            if self.topology == "driven":  # no loop thread: handle the rest here, now
                self._pump_all()
            loops = [t for t in self._threads if t.name != "ringlog-output"]
            if self._stage is not None:  # a full sink must not hold the loop from its end
                self._stage.unbound()
            for t in loops:  # journaller and loop: the loop may still emit
                t.join()
            if self._error is None and self._lc.sequence < self._jc.sequence:
                # the loop saw the ring closed before the journaller released its last
                # batch: handle that batch too (on this thread, now the only one)
                self._guard(lambda: self._loop.run(self._lc, self._base))
            if self._stage is not None:  # the loop's outputs: handed over once durable
                self._guard(self._stage.finish)
            if self._out is not None:
                self._out.close()
            for t in self._threads:
                t.join()
            self._threads = []
            self._live = False
            self._final = self._counts()
            self._state = "stopped" if self._error is None else "halted"
        if self._state != "closed":
            self.input.close()
            self.output.close()
            for journal, stage in ((self.input, "_journal_counters"),
                                   (self.output, "_output_counters")):
                ctr = getattr(self, stage, None)  # what the journals' threads wrote last
                if ctr is not None and not journal.failed:
                    ctr.set("sequence", journal.last_sequence)
                    ctr.set("backlog", 0)
                    ctr.set("durable", journal.durable_sequence)
            if self._dead_letter_journal is not None:
                self._dead_letter_journal.close()
            counters = getattr(self, "counters", None)
            if counters is not None:
                counters.close()
            self._state = "closed" if self._error is None else "halted"
        if self._error is not None:
            err, self._error = self._error, None
            raise StateError(f"the processor halted: {err!r}") from err

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
        self.wait_input_open(timeout)
        ts = time.time_ns() if timestamp_ns is None else timestamp_ns
        try:
            if not self._drives_itself(timeout):  # no closure per event off the driver
                return self._in.publish(payload, type_id, timestamp_ns=ts,
                                        correlation_id=correlation_id, producer_id=producer_id,
                                        producer_seq=producer_seq, timeout=timeout)
            return self._with_room(lambda t: self._in.publish(
                payload, type_id, timestamp_ns=ts, correlation_id=correlation_id,
                producer_id=producer_id, producer_seq=producer_seq, timeout=t), timeout)
        except RingClosedError as e:
            raise self._closed(e) from self.halt_cause

    def publish_many(self, payloads: Any, type_id: int = 0, *,
                     timestamp_ns: int | None = None, timeout: float | None = None) -> int:
        """Publishes several input events with one claim per ring-full; returns the last
        ring sequence. All share one timestamp (taken here if not given)."""
        self.wait_input_open(timeout)
        ts = time.time_ns() if timestamp_ns is None else timestamp_ns
        try:
            if not self._drives_itself(timeout):  # one call, no copy of the payload list
                return self._in.publish_many(payloads, type_id, timestamp_ns=ts,
                                             timeout=timeout)
            return self._in_chunks(len(payloads), lambda lo, hi, t: self._in.publish_many(
                payloads[lo:hi], type_id, timestamp_ns=ts, timeout=t), timeout)
        except RingClosedError as e:
            raise self._closed(e) from self.halt_cause

    def _closed(self, e: RingClosedError) -> RingClosedError:
        """The error a producer gets from a closed ring: the cause when a failure (a full
        disk: JournalError with path and errno) halted the processor."""
        if self.halt_cause is None:
            return e
        return RingClosedError(f"the processor halted: {self.halt_cause}")

    def publish_records(self, records: Any, type_id: Any = 0, *, timestamp_ns: Any = None,
                        record_size: int = 0, timeout: float | None = None) -> int:
        """Publishes many fixed-size input events from one buffer in one call, with no
        Python object per event and the copying done without the GIL: a 1-d numpy array
        (each element's bytes are one payload, e.g. the engine's ``COMMAND_DTYPE``) or a
        bytes-like buffer of ``record_size``-byte records. ``type_id`` and ``timestamp_ns``
        are one value or an array with one per record (default timestamp: now). Returns
        the last ring sequence."""
        self.wait_input_open(timeout)
        ts = time.time_ns() if timestamp_ns is None else timestamp_ns
        try:
            if not self._drives_itself(timeout):
                return self._in.publish_records(records, type_id, timestamp_ns=ts,
                                                record_size=record_size, timeout=timeout)
            import numpy as np

            arr = isinstance(records, np.ndarray)
            data = records if arr else memoryview(records).cast("B")
            size = 1 if arr else record_size
            n = len(data) // size if size > 0 else 1  # record_size 0: the ring's error

            def part(v: Any, lo: int, hi: int) -> Any:  # per-record arrays are sliced too
                return v[lo:hi] if isinstance(v, np.ndarray) else v

            return self._in_chunks(n, lambda lo, hi, t: self._in.publish_records(
                data[lo * size:hi * size], part(type_id, lo, hi), timestamp_ns=part(ts, lo, hi),
                record_size=record_size, timeout=t), timeout)
        except RingClosedError as e:
            raise self._closed(e) from self.halt_cause

    def publish_struct(self, event: msgspec.Struct, **kw: Any) -> int:
        """Publishes a registered msgspec Struct as an input event."""
        type_id, data = self.registry.encode(event)
        return self.publish(data, type_id, **kw)

    def _control(self, type_id: int, timestamp_ns: int | None, payload: bytes = b"") -> int:
        ts = time.time_ns() if timestamp_ns is None else timestamp_ns
        return self._with_room(lambda t: self._in.publish(payload, type_id, timestamp_ns=ts,
                                                          flags=FLAG_CONTROL, timeout=t), None)

    def _drives_itself(self, timeout: float | None) -> bool:
        """Driven, on the driver's thread, a publish that may wait: it must pump itself."""
        return (self.topology == "driven" and timeout != 0
                and threading.get_ident() == self.loop_handle.driver)

    def _in_chunks(self, n: int, publish: Callable[[int, int, float | None], int],
                   timeout: float | None) -> int:
        """On the driver's thread (the callers check ``_drives_itself``): ``publish(lo, hi,
        timeout)`` of events ``lo .. hi - 1`` in chunks of at most an eighth of the ring (each
        chunk one claim, all or nothing, so a full ring refuses a chunk whole and it is retried
        after a pump; the timeout applies per chunk)."""
        if n <= 0:
            return publish(0, n, timeout)
        step = max(1, self._in.capacity // 8)
        last = -1
        for lo in range(0, n, step):
            last = self._with_room(functools.partial(publish, lo, min(n, lo + step)),
                                   timeout)
        return last

    def _with_room(self, publish: Callable[[float | None], int], timeout: float | None) -> int:
        """``publish(timeout)`` under the topology's backpressure. Driven, only a pump
        empties the ring: on the driver's own thread (the last to pump, or the one that
        started the processor) a full ring is emptied by pumping here, so the driver never
        waits for itself; another thread waits, as on any ring, for the driver's next pump
        (its timer bounds the wait) or for ``stop()``, which closes the ring
        (RingClosedError), up to ``timeout`` seconds (InsufficientCapacityError)."""
        if not self._drives_itself(timeout):
            return publish(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return publish(0)
            except InsufficientCapacityError:
                pass
            if self._pumping.acquire(blocking=False):  # a stop() elsewhere may hold it
                try:
                    if self._pump_held():
                        continue
                finally:
                    self._pumping.release()
            left = _DRIVEN_WAIT_S if deadline is None else min(deadline - time.monotonic(),
                                                              _DRIVEN_WAIT_S)
            try:  # a claimed slot, a held breaker or a stop() elsewhere: look again soon
                return publish(max(left, 0.0))
            except InsufficientCapacityError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    def kill(self, key: int | None = None, timestamp_ns: int | None = None) -> int:
        """Operator command (journaled): the kill switch by hand. The loop calls the
        handler's ``on_kill(key)`` (None: every key) at this point of the input: resting
        orders are cancelled with outputs past the breaker, and new ones refused until
        ``enable``."""
        return self._control(TYPE_KILL, timestamp_ns, self._key_payload("kill", key))

    def enable(self, key: int | None = None, timestamp_ns: int | None = None) -> int:
        """Operator command (journaled): re-enables a killed key (None: every key) through
        the handler's ``on_enable(key)``."""
        return self._control(TYPE_ENABLE, timestamp_ns, self._key_payload("enable", key))

    def _key_payload(self, what: str, key: int | None) -> bytes:
        if not callable(getattr(self.handler, f"on_{what}", None)):
            raise StateError(f"{what}: {type(self.handler).__name__} has no on_{what}(key) "
                             "(the kill switch needs the handler's support)")
        if key is not None and (type(key) is not int or not -2**63 <= key < 2**63):
            raise ConfigError(f"Processor.{what}.key", "must be an int64 or None (everyone), "
                              f"got {key!r}", key)
        return msgspec.msgpack.encode(key)

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
        ``ringlog._wire.OutputSlots``). When every listener takes slots, the output stage is
        compiled (``ringlog._release.ReleaseStage``: the GIL once per hand-over); a
        ``ringlog._release.SlotSink`` as the listener gets them with no GIL at all, waking
        its consumer through an eventfd. Add listeners before ``start()``: the output stage
        is chosen then."""
        if self._state == "running":
            raise StateError("add_output_listener() must come before start()")
        (self._on_output_slots if batch == "slots" else self._on_output_batch if batch
         else self._on_output).append(fn)

    def _loop_halted_by_breaker(self) -> bool:
        return self.loop_handle.holding

    @property
    def halted(self) -> bool:
        """True while the circuit breaker is open and input is held: producers block (or
        get CircuitOpenError on timeout) until a journaled reset; the gateway answers
        "halted". Safe to read from any thread."""
        return self._loop_halted_by_breaker()

    def wait_input_open(self, timeout: float | None = None) -> None:
        """Returns at once while input flows; while the circuit breaker holds input, blocks
        until a journaled reset (``timeout`` None: no limit) and raises CircuitOpenError on
        timeout. What every producer of this processor does before it publishes."""
        if not self._loop_halted_by_breaker():
            return
        with self._open:
            if not self._open.wait_for(lambda: not self._loop_halted_by_breaker(), timeout):
                raise CircuitOpenError("the circuit breaker is open: input is held until an "
                                       "operator resets it (Processor.reset_breaker)")

    # -- threads --------------------------------------------------------------------------
    def _run_journaller(self) -> None:
        journal_stage(self._jc, self.input.appender, self.config.max_batch,
                      counters=self._journal_counters)

    def _run_logic(self) -> None:
        if self.topology == "inline":
            self._loop.run(self._lc, self._base, self.input.appender, self.config.max_batch)
        else:
            self._loop.run(self._lc, self._base)

    @property
    def _gated(self) -> bool:
        """Do listeners wait for their outputs' inputs to be durable?"""
        return self.config.release == "durable" and self.config.durability != "none"

    def _run_output(self) -> None:
        c = self.config
        each, whole, slots = self._on_output, self._on_output_batch, self._on_output_slots
        if not each and not whole and not slots:  # only the output journal: GIL-free stage
            journal_stage(self._oc, self.output.appender, c.max_batch, False,
                          self._output_counters)
            return
        ctr = self._output_counters
        gate = self.input.appender if self._gated else None
        if slots and not each and not whole:
            # the gateway's case: poll, append and the durable wait without the GIL, which is
            # taken once per hand-over (ringlog._release)
            ReleaseStage(self._oc, self.output.appender, gate, slots, ctr).run()
            return
        keys, mask = self._loop.output_keys, self._out.capacity - 1
        slot_size = self._out.slot_size
        # Under durable release a batch waits one fdatasync: take all that is there (up to the
        # ring's end), or the stage would release at most max_batch outputs per sync.
        take = self._out.capacity if gate is not None else c.max_batch
        while True:
            batch = self._oc.poll(take, timeout=0.05)
            if not len(batch):
                continue
            self.output.append_batch(batch)
            if gate is not None:
                # release after durability: the outputs' causes (input journal sequences)
                # must be on disk before anything is handed on
                self._await_durable(gate, int(batch.array["header"]["producer_seq"].max()))
            if slots:  # one copy per batch: the slots are reused once released
                block = batch.array.tobytes()
                for fn in slots:
                    fn(block, slot_size)
            if each or whole:
                recs = [_output_of(ev, int(keys[ev.sequence & mask])) for ev in batch]
                for on_each in each:
                    for rec in recs:
                        on_each(rec)
                for on_whole in whole:
                    on_whole(recs)
            self._oc.release(batch)
            ctr.set("sequence", self.output.last_sequence)
            ctr.set("durable", self.output.durable_sequence)
            ctr.add("batches")

    def _await_durable(self, appender: Any, sequence: int) -> None:
        """Sleeps (no GIL, no spinning) until input ``sequence`` is durable; a failed input
        journal halts the output stage (its outputs are never released)."""
        while appender.wait_durable(sequence, 0.1) < sequence:
            if appender.failed or self.input.failed:
                raise JournalError(f"input journal failed before sequence {sequence} was "
                                   "durable: its outputs are not released")

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
        return self.loop_handle.processed_sequence

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
            raise StateError(f"journal_sequence_of() needs a started processor; it is "
                             f"{self._state}")
        return int(self._base + ring_sequence)

    @property
    def state(self) -> str:
        """created, recovered, running, stopped, halted or closed."""
        return self._state

    @property
    def _state(self) -> str:
        return self._state_now

    @_state.setter
    def _state(self, value: str) -> None:
        self._state_now = value
        if self._handle is not None:  # its running flag follows (its pump and progress)
            self._handle.running = value == "running"

    def _counts(self) -> tuple[int, int, int, int]:
        """(published, journaled, handled, outputs journaled) as counts of ring sequences
        since start, from the live sequences."""
        if self._in is None:
            return 0, 0, 0, 0
        published = self._in.cursor + 1
        journaled = self._jc.sequence + 1
        logic = self._lc.sequence + 1
        if self._oc is not None:
            out = self._oc.sequence + 1
        else:  # inline without listeners: the loop journals outputs as it emits them
            out = int(self._loop.published) - self._published_at_start
        return published, journaled, logic, out

    @property
    def metrics(self) -> ProcessorMetrics:
        """A snapshot of the counters; safe to read from any thread while running, and after
        stop() (the figures of the run that ended)."""
        st = self._loop
        running = self._state == "running"
        if running or self._final is None:
            published, journaled, logic, out = self._counts()
        else:
            published, journaled, logic, out = self._final
        now = time.monotonic()
        t0, p0, o0 = self._rate_mark
        dt = max(now - t0, 1e-9)
        rates = ((st.processed - p0) / dt, (st.outputs - o0) / dt) if running else (0.0, 0.0)
        self._rate_mark = (now, st.processed, st.outputs)
        b = self.breaker
        return ProcessorMetrics(
            state=self._state, published=published, journaled=journaled,
            durable=self.input.durable_sequence, processed=st.processed, outputs=st.outputs,
            output_journaled=out,
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


def _check_handler(handler: Any) -> None:
    """A RingLogError (ConfigError naming ``Processor.handler``) for what cannot be a handler:
    a class instead of an instance, or an object with neither ``on_event`` nor ``on_batch``
    (a CyEventHandler instance always qualifies)."""
    from ._handler import CyEventHandler

    if isinstance(handler, type):
        raise ConfigError("Processor.handler", f"got the class {handler.__qualname__}, not an "
                          f"instance: pass {handler.__qualname__}() (or what its constructor "
                          "needs)", handler)
    if isinstance(handler, CyEventHandler):
        return
    if not (callable(getattr(handler, "on_event", None))
            or callable(getattr(handler, "on_batch", None))):
        raise ConfigError("Processor.handler", f"{type(handler).__name__} is not a handler: "
                          "it needs on_event(event, sequence, end_of_batch) or "
                          "on_batch(array, first_sequence) (subclass ringlog.EventHandler)",
                          handler)
    if not callable(getattr(handler, "on_start", None)):
        raise ConfigError("Processor.handler", f"{type(handler).__name__} has no on_start(): "
                          "subclass ringlog.EventHandler (or BatchEventHandler), which "
                          "provides the lifecycle hooks", handler)


def _output_of(ev: Any, key: int = 0) -> OutputRecord:
    """An output ring slot (or output journal record) as an OutputRecord with its breaker
    key (the output journal does not keep keys: 0 there)."""
    return OutputRecord(ev.type_id, bytes(ev.payload), key, ev.timestamp_ns,
                        ev.correlation_id, ev.producer_seq, ev.flags)


def _same_output(rec: OutputRecord, recorded: Any) -> bool:
    return (rec.type_id == recorded.type_id and rec.payload == bytes(recorded.payload)
            and rec.cause == recorded.producer_seq)

