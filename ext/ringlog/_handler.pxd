# The Cython handler contract: business logic written in Cython overrides `on_event_c` and
# calls `emit_c`; the processor's Cython loop calls `on_event_c` with the slot's header and
# payload pointers, so no Python object is made per event. From Python the same handler is
# driven through `on_event(event, sequence, end_of_batch)` (the slow path, used by tests and
# by the Python loop).
from libc.stdint cimport int64_t, uint32_t

from ringlog.includes.event cimport rl_header


# Outputs packed in one buffer, for `emit_packed`: each is a 16-byte header (type_id u32,
# payload length u32, breaker key i64) and its payload, padded to 8 bytes.
cdef enum:
    PACKED_HEADER = 16


# How many events ahead of `on_event_c` the processor's loop calls a lookahead handler's
# `prefetch_c` (far enough for a line to arrive from memory meanwhile, near enough for it
# to stay cached until used).
cdef enum:
    LOOKAHEAD = 16


# The packed output after the one at `p`.
cdef inline const char* packed_next(const char* p) noexcept nogil:
    return p + PACKED_HEADER + (((<const uint32_t*>p)[1] + 7) & ~(<uint32_t>7))


cdef class Emitter:
    # Where a Cython handler's outputs go. The processor's Cython loop supplies one that
    # checks the breaker and writes the output ring in place; the default wraps a Python
    # callable `emit(payload: bytes, type_id, key)`.
    cdef object _fn
    cdef int emit(self, uint32_t type_id, const char* payload, uint32_t length,
                  int64_t key) except -1
    # The outputs packed in p[0:n] (see PACKED_HEADER), in order: as many `emit` calls.
    cdef int emit_packed(self, const char* p, size_t n) except -1
    # The same two, callable without the GIL (the default takes it; the processor's emitter
    # takes it only for what the breaker holds or trips on).
    cdef int emit_nogil(self, uint32_t type_id, const char* payload, uint32_t length,
                        int64_t key) except -1 nogil
    cdef int emit_packed_nogil(self, const char* p, size_t n) except -1 nogil


cdef class CyEventHandler:
    cdef Emitter _emitter       # set by the processor (or by assigning `handler.emit`)
    # True when `prefetch_c` does something: the loop then calls it a few events ahead
    cdef bint lookahead
    # True when `on_event_nogil` handles events without the GIL: the processor's loop thread
    # then handles batches without taking it (other Python threads run meanwhile); set by the
    # subclass, readable from Python
    cdef readonly bint nogil_events

    # Handles one input event: `h` is its 48-byte header, `payload` its h.length bytes.
    # Both are valid only during the call. Raise to signal a poison event.
    cdef int on_event_c(self, const rl_header* h, const char* payload, int64_t sequence,
                        bint end_of_batch) except -1
    # `on_event_c` without the GIL, for a handler that sets `nogil_events`: C state only,
    # outputs through `emit_packed_nogil`; a rare path that needs Python takes the GIL
    # (`with gil:`) itself. The default takes the GIL and calls `on_event_c`.
    cdef int on_event_nogil(self, const rl_header* h, const char* payload, int64_t sequence,
                            bint end_of_batch) except -1 nogil
    # A hint, a few events before `on_event_c` sees the same event: start loading what it
    # will touch (the default does nothing). Must not change any state.
    cdef void prefetch_c(self, const rl_header* h, const char* payload) noexcept nogil
    # Publishes one output through the breaker; `key` is the breaker's per-key limit key.
    cdef int emit_c(self, uint32_t type_id, const char* payload, uint32_t length,
                    int64_t key) except -1
    # Publishes the outputs packed in p[0:n] (see PACKED_HEADER), in order, as `emit_c`
    # each: one call for all of an event's outputs (the processor's loop walks them).
    cdef int emit_packed_c(self, const char* p, size_t n) except -1
    # `emit_c` and `emit_packed_c` without the GIL (from `on_event_nogil`).
    cdef int emit_nogil(self, uint32_t type_id, const char* payload, uint32_t length,
                        int64_t key) except -1 nogil
    cdef int emit_packed_nogil(self, const char* p, size_t n) except -1 nogil
