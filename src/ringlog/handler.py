"""Handlers: the business logic the processor calls, one event at a time or one batch at a time.

The processor's loop thread is the only caller, so a handler is the single writer of its state
and needs no locks (not thread-safe, by design). Determinism: a handler must read time only from
``event.timestamp_ns`` and must not consult anything outside its state and the event, so that
replaying the journal reproduces its state and outputs bit for bit.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EventHandler"]


class EventHandler:
    """Base class of a Python handler: override ``on_event``; call ``self.emit`` for outputs.

    Lifecycle hooks: ``on_start`` before the first event; ``on_snapshot`` returns the state as
    bytes (taken from the loop thread at a journaled sequence); ``on_restore`` loads it back.
    Not thread-safe: only the processor's loop thread calls it.
    """

    def on_start(self) -> None:
        """Called once on the loop thread before the first event (and before replay)."""

    def on_event(self, event: Any, sequence: int, end_of_batch: bool) -> None:
        """Handles one input event; ``sequence`` is its journal sequence."""
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
        raise RuntimeError("emit() is only available while the handler runs in a Processor")

