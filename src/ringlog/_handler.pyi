"""Stub of ringlog._handler: the base class of handlers written in Cython."""

from collections.abc import Callable
from typing import Any

LOOKAHEAD_EVENTS: int  # how many events ahead the loop calls a lookahead handler's prefetch_c

class Emitter:
    """Sends a Cython handler's outputs to a Python ``emit(payload, type_id, key)``."""

    def __init__(self, fn: Callable[[bytes, int, int], Any] | None = None) -> None: ...

class CyEventHandler:
    """Base class of a handler written in Cython: override ``cdef on_event_c`` (and, for
    state larger than the caches, set ``lookahead`` and override ``cdef prefetch_c``; to be
    handled without the GIL, set ``nogil_events`` and override ``cdef on_event_nogil``)."""

    emit: Callable[..., Any]
    @property
    def nogil_events(self) -> bool:
        """True when the processor's loop handles this handler's events without the GIL."""
    def on_event(self, event: Any, sequence: int, end_of_batch: bool) -> None: ...
    def on_start(self) -> None: ...
    def on_snapshot(self) -> bytes: ...
    def on_restore(self, data: bytes) -> None: ...
