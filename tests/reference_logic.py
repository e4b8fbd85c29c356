"""A plain-Python model of the business-logic loop with the same observable behaviour, as a
test oracle for the compiled LogicCore (the loop's semantics as the Python LogicLoop had
them before the loop moved to Cython).

Single-threaded and obviously correct: events in a list, journal order = list order; control
events, dedup, breaker hold-back with the list as the buffer, reset re-reading from the first
held-back event, dead letters. It uses the real Breaker for the decisions (tested on its own).
"""

from __future__ import annotations

import traceback
from typing import Any

import msgspec

from ringlog.events import (
    FLAG_CONTROL,
    TYPE_BREAKER_CLOSED,
    TYPE_BREAKER_RESET,
    TYPE_BREAKER_TRIPPED,
    TYPE_DISCARD_HELD,
    TYPE_RELEASE_HELD,
    TYPE_TIMER,
    is_control,
)
from ringlog.logic import OutputRecord, TripInfo


class ModelEvent(msgspec.Struct):
    """An input event as the loop reads it."""

    type_id: int
    payload: bytes
    timestamp_ns: int = 0
    flags: int = 0
    correlation_id: int = 0
    producer_id: int = 0
    producer_seq: int = 0


class ModelLoop:
    """The loop over ``events`` (all known up front); outputs land in ``published``."""

    def __init__(self, handler: Any, breaker: Any, events: list[ModelEvent], *,
                 dedup: bool = False, dead_letters: bool = False) -> None:
        self.handler, self.breaker, self.events = handler, breaker, events
        self.dedup_on, self.dead_letters_on = dedup, dead_letters
        self.published: list[OutputRecord] = []
        self.dead: list[tuple[int, str]] = []  # (sequence, last traceback line)
        self.seen: dict[int, int] = {}
        self.pending_from = -1
        self.processed = self.duplicates = self.outputs = 0
        self.current = (-1, 0, 0)
        handler.emit = self.emit

    def run(self) -> None:
        for seq, ev in enumerate(self.events):
            if ev.flags & FLAG_CONTROL or is_control(ev.type_id):
                self.control(ev, seq)
            elif self.pending_from >= 0:
                if self.breaker.tick(ev.timestamp_ns):
                    self.resume(seq)
                    if self.pending_from < 0:
                        self.business(ev, seq)
            else:
                self.business(ev, seq)

    def business(self, ev: ModelEvent, seq: int) -> bool:
        if self.dedup_on and ev.producer_id:
            if ev.producer_seq <= self.seen.get(ev.producer_id, -1):
                self.duplicates += 1
                return True
            self.seen[ev.producer_id] = ev.producer_seq
        self.current = (seq, ev.timestamp_ns, ev.correlation_id)
        if self.breaker is not None:
            self.breaker.on_input(ev.timestamp_ns)
        try:
            self.handler.on_event(ev, seq, True)
        except Exception:
            if not self.dead_letters_on:
                raise
            self.dead.append((seq, traceback.format_exc().strip().splitlines()[-1]))
        self.processed += 1
        if self.breaker is not None and self.breaker.is_open:
            self.pending_from = seq + 1
            return False
        return True

    def control(self, ev: ModelEvent, seq: int) -> None:
        b, t = self.breaker, ev.type_id
        if t == TYPE_TIMER:
            if self.pending_from < 0:
                self.business(ev, seq)
        elif b is None:
            return
        elif t == TYPE_RELEASE_HELD:
            for raw in b.release_held():
                self.published.append(msgspec.msgpack.decode(raw, type=OutputRecord))
        elif t == TYPE_DISCARD_HELD:
            b.discard_held()
        elif t == TYPE_BREAKER_RESET:
            b.reset(ev.timestamp_ns)
            self.published.append(OutputRecord(TYPE_BREAKER_CLOSED, b"", 0, ev.timestamp_ns,
                                               ev.correlation_id, seq, FLAG_CONTROL))
            self.resume(seq)

    def resume(self, reset_seq: int) -> None:
        lo, self.pending_from = self.pending_from, -1
        if lo < 0:
            return
        for seq in range(lo, reset_seq):
            ev = self.events[seq]
            if ev.flags & FLAG_CONTROL or is_control(ev.type_id):
                continue
            if not self.business(ev, seq):
                return

    def emit(self, payload: bytes, type_id: int = 0, key: int = 0) -> int:
        seq, ts, corr = self.current
        rec = OutputRecord(type_id, bytes(payload), key, ts, corr, seq)
        self.outputs += 1
        b = self.breaker
        decision = 0 if b is None else b.check(ts, type_id, key)
        if b is None or decision in (b.PASS, b.THROTTLE):
            self.published.append(rec)
        else:
            b.hold(msgspec.msgpack.encode(rec))
            if decision == b.TRIPPED:
                info = msgspec.msgpack.encode(TripInfo(seq, b.last_trip))
                self.published.append(OutputRecord(TYPE_BREAKER_TRIPPED, info, 0, ts, corr,
                                                   seq, FLAG_CONTROL))
        return int(decision)
