"""The business-logic loop's state machine: one code path for live processing and for replay.

``LogicLoop.process`` takes input events in journal order and decides, for each, whether it
is a control event (breaker commands, timers, snapshot requests), a duplicate (dedup key seen
before), an event to hold back (the breaker is open), or an event for the handler. Live
processing and recovery both feed it the same journal order, so a replay trips, halts and
resumes the breaker at the same sequences and reproduces every output.

While the breaker is open the journal is the buffer: input keeps being journaled (nothing is
dropped) but the handler does not see it; ``pending_from`` remembers the first held-back
sequence. A journaled reset re-reads the journal from there, in order, before going on.
Not thread-safe: only the processor's loop thread (or the replaying thread) calls it.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import msgspec

from .events import (
    FLAG_CONTROL,
    TYPE_BREAKER_CLOSED,
    TYPE_BREAKER_RESET,
    TYPE_BREAKER_TRIPPED,
    TYPE_DISCARD_HELD,
    TYPE_RELEASE_HELD,
    TYPE_SNAPSHOT,
    TYPE_TIMER,
    is_control,
)

__all__ = ["InputEvent", "LogicLoop", "LoopState", "OutputRecord"]


class InputEvent(Protocol):
    """What the loop reads of an input event: a ring slot or a journal record view."""

    type_id: int
    flags: int
    timestamp_ns: int
    correlation_id: int
    producer_id: int
    producer_seq: int
    payload: Any


class OutputRecord(msgspec.Struct, array_like=True, frozen=True):
    """One output: its type, payload, breaker key, and the input that caused it."""

    type_id: int
    payload: bytes
    key: int
    timestamp_ns: int
    correlation_id: int
    cause: int  # journal sequence of the input event that produced it
    flags: int = 0


class LoopState(msgspec.Struct, array_like=True):
    """The loop's own state, saved in snapshots beside the handler's and the breaker's."""

    last_sequence: int = -1
    pending_from: int = -1  # first input held back while the breaker was open; -1 = none
    dedup: dict[int, int] = msgspec.field(default_factory=dict)
    outputs: int = 0  # outputs emitted (published or held)
    published: int = 0  # outputs published: the output journal's next sequence
    processed: int = 0
    duplicates: int = 0
    dead_letters: int = 0


class TripInfo(msgspec.Struct, array_like=True):
    """Payload of a TYPE_BREAKER_TRIPPED output: the input sequence and the trip report."""

    sequence: int
    report: Any


class LogicLoop:
    """Runs the handler over input events in journal order, with the breaker on its outputs.

    ``sink(record)`` receives each output that may be published; ``reread(lo, hi)`` yields
    ``(sequence, event)`` from the journal for a breaker reset; ``snapshot(sequence)`` is
    called for a snapshot request; ``dead_letter(event, seq, tb)`` for a poison event when the
    exception policy is ``dead_letter``. Not thread-safe.
    """

    def __init__(self, handler: Any, breaker: Any | None, *,
                 sink: Callable[[OutputRecord], None],
                 reread: Callable[[int, int], Iterator[tuple[int, InputEvent]]],
                 snapshot: Callable[[int], None] | None = None,
                 dead_letter: Callable[[InputEvent, int, str], None] | None = None,
                 dedup: bool = False) -> None:
        self.handler = handler
        self.breaker = breaker
        self.state = LoopState()
        self.replaying = False
        self._sink = sink
        self._reread = reread
        self._snapshot = snapshot
        self._dead_letter = dead_letter
        self._dedup = dedup
        self._current: tuple[int, int, int] = (-1, 0, 0)  # sequence, timestamp, correlation
        handler.emit = self.emit

    # -- inputs ---------------------------------------------------------------------------
    def process(self, event: InputEvent, sequence: int, end_of_batch: bool) -> None:
        """Handles one input event at journal ``sequence`` (dense, increasing)."""
        st = self.state
        if sequence != st.last_sequence + 1 and st.last_sequence >= 0:
            raise RuntimeError(f"input sequence {sequence} after {st.last_sequence}: "
                               "the loop must see every journal sequence once, in order")
        st.last_sequence = sequence
        if event.flags & FLAG_CONTROL or is_control(event.type_id):
            self._control(event, sequence)
        elif st.pending_from >= 0:
            # held back in the journal until a reset, or the automatic half-open
            if self.breaker.tick(event.timestamp_ns):
                self._resume(sequence)
                if st.pending_from < 0:
                    self._business(event, sequence, end_of_batch)
        else:
            self._business(event, sequence, end_of_batch)

    def _business(self, event: InputEvent, sequence: int, end_of_batch: bool) -> bool:
        """Runs the handler; returns False if the breaker opened on this event."""
        st = self.state
        if self._dedup and event.producer_id:
            last = st.dedup.get(event.producer_id, -1)
            if event.producer_seq <= last:
                st.duplicates += 1
                return True
            st.dedup[event.producer_id] = event.producer_seq
        self._current = (sequence, event.timestamp_ns, event.correlation_id)
        if self.breaker is not None:
            self.breaker.on_input(event.timestamp_ns)
        try:
            self.handler.on_event(event, sequence, end_of_batch)
        except Exception:
            if self._dead_letter is None:
                raise
            st.dead_letters += 1
            self._dead_letter(event, sequence, traceback.format_exc())
        st.processed += 1
        if self.breaker is not None and self.breaker.is_open:
            st.pending_from = sequence + 1
            return False
        return True

    def _control(self, event: InputEvent, sequence: int) -> None:
        t = event.type_id
        ts = event.timestamp_ns
        b = self.breaker
        if t == TYPE_TIMER:
            if self.state.pending_from < 0:
                self._business(event, sequence, True)
        elif t == TYPE_SNAPSHOT:
            if self._snapshot is not None and not self.replaying:
                self._snapshot(sequence)
        elif b is None:
            return
        elif t == TYPE_RELEASE_HELD:
            for rec in b.release_held():
                self._publish(rec)
        elif t == TYPE_DISCARD_HELD:
            b.discard_held()
        elif t == TYPE_BREAKER_RESET:
            b.reset(ts)
            self._publish(OutputRecord(TYPE_BREAKER_CLOSED, b"", 0, ts, event.correlation_id,
                                       sequence, FLAG_CONTROL))
            self._resume(sequence)

    def _resume(self, reset_sequence: int) -> None:
        """Re-reads the inputs held back while open, in journal order, up to (not including)
        ``reset_sequence``."""
        st = self.state
        lo = st.pending_from
        if lo < 0:
            return
        st.pending_from = -1
        for seq, ev in self._reread(lo, reset_sequence - 1):
            if ev.flags & FLAG_CONTROL or is_control(ev.type_id):
                continue  # already handled when it arrived
            if not self._business(ev, seq, seq == reset_sequence - 1):
                return  # tripped again: _business set pending_from past this event

    # -- outputs --------------------------------------------------------------------------
    def emit(self, payload: Any, type_id: int = 0, key: int = 0) -> int:
        """The handler's ``emit``: checks the breaker, then publishes or holds the output.

        Returns the breaker's decision (0 pass, 1 held, 2 throttled, 3 tripped).
        """
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"emit() takes bytes-like payloads, got {type(payload).__name__}")
        seq, ts, corr = self._current
        rec = OutputRecord(type_id, bytes(payload), key, ts, corr, seq)
        self.state.outputs += 1
        b = self.breaker
        if b is None:
            self._publish(rec)
            return 0
        decision = b.check(ts, type_id, key)
        if decision == b.PASS or decision == b.THROTTLE:
            self._publish(rec)
        else:
            b.hold(msgspec.msgpack.encode(rec))
            if decision == b.TRIPPED:
                info = TripInfo(seq, b.last_trip)
                self._publish(OutputRecord(TYPE_BREAKER_TRIPPED, msgspec.msgpack.encode(info),
                                           0, ts, corr, seq, FLAG_CONTROL))
        return int(decision)

    def _publish(self, rec: OutputRecord | bytes) -> None:
        if not isinstance(rec, OutputRecord):
            rec = msgspec.msgpack.decode(rec, type=OutputRecord)
        self.state.published += 1
        self._sink(rec)
