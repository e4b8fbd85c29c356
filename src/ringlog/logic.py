"""The business-logic loop's state machine: one code path for live processing and for replay.

``LogicLoop.process`` takes input events in journal order and decides, for each, whether it
is a control event (breaker commands, timers, snapshot requests), a duplicate (dedup key seen
before), an event to hold back (the breaker is open), or an event for the handler. Live
processing and recovery both feed it the same journal order, so a replay trips, halts and
resumes the breaker at the same sequences and reproduces every output.

While the breaker is open the journal is the buffer: input keeps being journaled (nothing is
dropped) but the handler does not see it; ``pending_from`` remembers the first held-back
sequence. A journaled reset re-reads the journal from there, in order, before going on.
The state machine is compiled (``ringlog._loop.LogicCore``: the same per-event code for ring
slots, journal records and Python events); this module is its configurable shell and the
plain-data types it produces. Not thread-safe: only the processor's loop thread (or the
replaying thread) calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import msgspec

from ._loop import LogicCore

__all__ = ["InputEvent", "KillInfo", "LogicLoop", "LoopState", "OutputRecord", "TripInfo"]


class InputEvent(Protocol):
    """What the loop reads of an input event: a ring slot or a journal record view.

    Read-only properties, so the compiled events' readonly fields satisfy it too."""

    @property
    def type_id(self) -> int: ...
    @property
    def flags(self) -> int: ...
    @property
    def timestamp_ns(self) -> int: ...
    @property
    def correlation_id(self) -> int: ...
    @property
    def producer_id(self) -> int: ...
    @property
    def producer_seq(self) -> int: ...
    @property
    def payload(self) -> Any: ...


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
    kills: int = 0  # kill switch runs (on a trip or an operator's kill)


class TripInfo(msgspec.Struct, array_like=True):
    """Payload of a TYPE_BREAKER_TRIPPED output: the input sequence and the trip report."""

    sequence: int
    report: Any


class KillInfo(msgspec.Struct, array_like=True):
    """Payload of a TYPE_KILLED output: the input sequence the kill switch ran at, the key
    whose resting orders it cancelled (None: everyone's), how many the handler cancelled, and
    whether a breaker trip (rather than an operator) set it off."""

    sequence: int
    key: int | None
    cancelled: int
    by_trip: bool


class LogicLoop(LogicCore):
    """Runs the handler over input events in journal order, with the breaker on its outputs.

    The logic itself is ``ringlog._loop.LogicCore`` (Cython); this shell configures it and
    exposes its state as a ``LoopState`` for snapshots. ``sink(record)`` receives outputs when
    replaying or when no ``output_ring`` is set (live outputs are written into the output ring
    in place); ``reread(lo, hi)`` yields ``(sequence, event)`` from the journal for a breaker
    reset; ``snapshot(sequence)`` is called for a snapshot request and every
    ``snapshot_every`` inputs (live only); ``dead_letter(event, seq, tb)`` for a poison event
    when the exception policy is ``dead_letter``; ``on_resume()`` when a reset lets input
    through again. The handler's ``on_kill(key)`` / ``on_enable(key)`` (optional) serve
    the kill switch (BreakerConfig.kill and the journaled TYPE_KILL / TYPE_ENABLE). Not
    thread-safe.
    """

    def __init__(self, handler: Any, breaker: Any | None, *,
                 sink: Callable[[OutputRecord], None] | None = None,
                 reread: Callable[[int, int], Iterator[tuple[int, InputEvent]]] | None = None,
                 snapshot: Callable[[int], None] | None = None,
                 dead_letter: Callable[[InputEvent, int, str], None] | None = None,
                 dedup: bool = False, snapshot_every: int = 0, slot_size: int = 128,
                 max_batch: int = 1024, on_resume: Callable[[], None] | None = None) -> None:
        super().__init__(handler, breaker, sink=sink, reread=reread, snapshot=snapshot,
                         dead_letter=dead_letter, dedup=dedup, snapshot_every=snapshot_every,
                         slot_size=slot_size, max_batch=max_batch, on_resume=on_resume)

    @property
    def state(self) -> LoopState:
        """The loop's state as plain data (a copy), for snapshots and inspection."""
        return LoopState(self.last_sequence, self.pending_from, dict(self.dedup),
                         self.outputs, self.published, self.processed, self.duplicates,
                         self.dead_letters, self.kills)

    @state.setter
    def state(self, st: LoopState) -> None:
        (self.last_sequence, self.pending_from, self.dedup, self.outputs, self.published,
         self.processed, self.duplicates, self.dead_letters, self.kills) = (
            st.last_sequence, st.pending_from, dict(st.dedup), st.outputs, st.published,
            st.processed, st.duplicates, st.dead_letters, st.kills)
