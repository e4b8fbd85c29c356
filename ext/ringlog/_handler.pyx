"""Cython handlers: ``CyEventHandler`` is the base class of business logic written in Cython.

A subclass overrides ``cdef on_event_c(h, payload, sequence, end_of_batch)`` and calls
``self.emit_c(type_id, payload, length, key)`` per output, or ``self.emit_packed_c(p, n)``
once for outputs it built packed in a buffer (``PACKED_HEADER`` in ``_handler.pxd``: the
processor's loop then walks them without a call per output). The processor's Cython loop calls
``on_event_c`` straight from the ring slot; Python callers (the Python loop, tests) use
``on_event(event, sequence, end_of_batch)``, which builds the header from the event's
fields and passes the payload's buffer. Not thread-safe: only the loop thread calls it.

A handler whose state is too large for the caches can set ``self.lookahead = True`` and
override ``cdef void prefetch_c(h, payload)``: the loop then calls it for the event
``LOOKAHEAD`` (16) places ahead of the one it hands to ``on_event_c``, within the batch it has
(at most once per event, never for one not yet published), so the handler can start loading
the lines that event will touch (``rl_prefetch`` in ``includes/tables.h``) while it works on
the ones before::

    loop: ... prefetch_c(e[i+16]) ─► on_event_c(e[i]) ─► prefetch_c(e[i+17]) ─► ...

Replay (recovery, the replay tool) calls it the same way for the record 16 ahead in the
segment it reads, checked for length and sequence but not yet for its CRC. It must not
change any state: a handler's results are the same whether the hints came or not.

A handler whose events need no Python object can set ``self.nogil_events = True`` and
override ``cdef int on_event_nogil(h, payload, sequence, end_of_batch) except -1 nogil``,
emitting through ``self.emit_nogil(...)`` or ``self.emit_packed_nogil(p, n)``: the
processor's loop thread then journals and handles whole batches without the GIL, so the
application's other Python threads (producers, an event loop, a busy main thread) and the
loop no longer wait for each other::

    loop thread (nogil_events)          other Python threads
      take batch ─► journal ─► on_event_nogil x n ─► publish outputs ─► next batch
      (the GIL only for a control event, an open breaker, a hold or trip, an error)

A rare path that needs Python (a Python container, a raise) takes the GIL itself
(``with gil:``); ``on_event_c`` stays the entry point with the GIL (replay, Python callers)
and may simply call ``on_event_nogil``.
"""

from libc.stdint cimport int64_t, uint32_t
from libc.string cimport memset

from ringlog.includes.event cimport rl_header

__all__ = ["LOOKAHEAD_EVENTS", "CyEventHandler", "Emitter"]

LOOKAHEAD_EVENTS = LOOKAHEAD  # how far ahead prefetch_c comes (the .pxd's LOOKAHEAD)

cdef char _EMPTY[1]


cdef class Emitter:
    """Sends a Cython handler's outputs to a Python ``emit(payload, type_id, key)``."""

    def __cinit__(self, fn=None):
        self._fn = fn

    cdef int emit(self, uint32_t type_id, const char* payload, uint32_t length,
                  int64_t key) except -1:
        if self._fn is None:
            raise RuntimeError("emit() is only available while the handler runs in a Processor")
        self._fn(payload[:length], type_id, key)
        return 0

    cdef int emit_packed(self, const char* p, size_t n) except -1:
        cdef const char* end = p + n
        while p < end:
            self.emit((<const uint32_t*>p)[0], p + PACKED_HEADER, (<const uint32_t*>p)[1],
                      (<const int64_t*>(p + 8))[0])
            p = packed_next(p)
        return 0

    cdef int emit_nogil(self, uint32_t type_id, const char* payload, uint32_t length,
                        int64_t key) except -1 nogil:
        with gil:
            return self.emit(type_id, payload, length, key)

    cdef int emit_packed_nogil(self, const char* p, size_t n) except -1 nogil:
        with gil:
            return self.emit_packed(p, n)


cdef class CyEventHandler:
    """Base class of a handler written in Cython (see the module docstring).

    Lifecycle hooks are the same as ``ringlog.EventHandler``'s: ``on_start``,
    ``on_snapshot`` (state as bytes) and ``on_restore``.
    """

    def __cinit__(self, *args, **kwargs):
        self._emitter = Emitter(None)

    cdef int on_event_c(self, const rl_header* h, const char* payload, int64_t sequence,
                        bint end_of_batch) except -1:
        raise NotImplementedError(f"{type(self).__name__} must override cdef on_event_c")

    cdef int on_event_nogil(self, const rl_header* h, const char* payload, int64_t sequence,
                            bint end_of_batch) except -1 nogil:
        with gil:
            return self.on_event_c(h, payload, sequence, end_of_batch)

    cdef void prefetch_c(self, const rl_header* h, const char* payload) noexcept nogil:
        pass

    cdef int emit_c(self, uint32_t type_id, const char* payload, uint32_t length,
                    int64_t key) except -1:
        return self._emitter.emit(type_id, payload, length, key)

    cdef int emit_packed_c(self, const char* p, size_t n) except -1:
        return self._emitter.emit_packed(p, n)

    cdef int emit_nogil(self, uint32_t type_id, const char* payload, uint32_t length,
                        int64_t key) except -1 nogil:
        return self._emitter.emit_nogil(type_id, payload, length, key)

    cdef int emit_packed_nogil(self, const char* p, size_t n) except -1 nogil:
        return self._emitter.emit_packed_nogil(p, n)

    def on_event(self, event, int64_t sequence, bint end_of_batch):
        """Handles one event given as Python object (a ring Event or a journal Record)."""
        cdef rl_header h
        cdef const unsigned char[::1] body = memoryview(event.payload).cast("B")
        memset(&h, 0, sizeof(h))
        h.sequence = sequence
        h.timestamp_ns = event.timestamp_ns
        h.correlation_id = event.correlation_id
        h.producer_seq = event.producer_seq
        h.type_id = event.type_id
        h.flags = event.flags
        h.length = <uint32_t>body.shape[0]
        h.producer_id = event.producer_id
        cdef const char* data = _EMPTY
        if body.shape[0]:
            data = <const char*>&body[0]
        self.on_event_c(&h, data, sequence, end_of_batch)

    @property
    def emit(self):
        """The output function ``emit(payload, type_id=0, key=0)``, bound by the processor."""
        fn = self._emitter._fn
        if fn is None:
            raise RuntimeError("emit() is only available while the handler runs in a Processor")
        return fn

    @emit.setter
    def emit(self, fn):
        self._emitter = fn if isinstance(fn, Emitter) else Emitter(fn)

    def on_start(self):
        """Called once on the loop thread before the first event (and before replay)."""

    def on_snapshot(self):
        """The handler's state as bytes; the default handler is stateless."""
        return b""

    def on_restore(self, data):
        """Replaces the handler's state with one written by ``on_snapshot``."""
