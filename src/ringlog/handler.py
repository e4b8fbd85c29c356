"""Handlers: the business logic the processor calls, one event at a time or one batch at a time.

The processor's loop thread is the only caller, so a handler is the single writer of its state
and needs no locks (not thread-safe, by design). Determinism: a handler must read time only from
``event.timestamp_ns`` and must not consult anything outside its state and the event, so that
replaying the journal reproduces its state and outputs bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BatchEventHandler", "EventHandler"]


class EventHandler:
    """Base class of a Python handler: override ``on_event``; call ``self.emit`` for outputs.

    Lifecycle hooks: ``on_start`` before the first event; ``on_snapshot`` returns the state as
    bytes (taken from the loop thread at a journaled sequence); ``on_restore`` loads it back.
    Not thread-safe: only the processor's loop thread calls it.
    """

    def on_start(self) -> None:
        """Called once on the loop thread before the first event (and before replay)."""

    def on_event(self, event: Any, sequence: int, end_of_batch: bool) -> None:
        """Handles one input event; ``sequence`` is its journal sequence.

        ``event`` is a flyweight reused for every event (the Disruptor way): read its fields
        and ``payload`` (a zero-copy view) during the call; copy ``bytes(event.payload)`` to
        keep anything.

        The loop passes only the parameters the override declares: ``on_event(self, event)``
        gets the event alone (``event.sequence`` is the journal sequence; ``event.flags &
        FLAG_BATCH_END`` marks a journal batch end) and ``on_event(self, event, sequence)``
        the two; that spares a new int per call, which is most of what the loop adds to a
        trivial Python handler. Three parameters (or ``*args``) get all three.
        """
        raise NotImplementedError

    def on_snapshot(self) -> bytes:
        """The handler's state as bytes; the default handler is stateless."""
        return b""

    def on_restore(self, data: bytes) -> None:
        """Replaces the handler's state with one written by ``on_snapshot``."""

    def emit(self, payload: Any, type_id: int = 0, key: int = 0) -> None:  # replaced at start
        """Publishes an output (bytes, or a registered msgspec Struct) through the breaker.

        ``key`` is the breaker's per-key limit key (an account or symbol id). Bound by the
        processor when it starts; calling it on a handler outside a processor is an error.
        """
        from .errors import StateError

        raise StateError("emit() is only available while the handler runs in a Processor")



class BatchEventHandler(EventHandler):
    """Base class of a vectorised handler: override ``on_batch(array, first_sequence)``.

    ``array`` is a numpy structured view (``ringlog.slot_dtype(slot_size, payload_dtype)``)
    of consecutive business events, journal sequences ``first_sequence`` on: zero-copy over
    the ring when live, valid only during the call (copy what you keep). Set
    ``payload_dtype`` to a fixed record dtype to get typed payload fields. The batches are
    the journaller's, so replay hands over the same batches; control events, dedup keys and
    events re-read after a breaker reset arrive as batches of one. Outputs ``emit``-ted
    during ``on_batch`` carry the batch's last sequence, timestamp and correlation id. With
    the ``dead_letter`` policy, an exception dead-letters every event of the batch.
    Not thread-safe: only the processor's loop thread calls it.
    """

    payload_dtype: np.dtype | None = None

    def on_batch(self, array: np.ndarray, first_sequence: int) -> None:
        """Handles ``len(array)`` events, journal sequences ``first_sequence`` on."""
        raise NotImplementedError
