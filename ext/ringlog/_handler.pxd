# The Cython handler contract: business logic written in Cython overrides `on_event_c` and
# calls `emit_c`; the processor's Cython loop calls `on_event_c` with the slot's header and
# payload pointers, so no Python object is made per event. From Python the same handler is
# driven through `on_event(event, sequence, end_of_batch)` (the slow path, used by tests and
# by the Python loop).
from libc.stdint cimport int64_t, uint32_t

from ringlog.includes.event cimport rl_header


cdef class Emitter:
    # Where a Cython handler's outputs go. The processor's Cython loop supplies one that
    # checks the breaker and writes the output ring in place; the default wraps a Python
    # callable `emit(payload: bytes, type_id, key)`.
    cdef object _fn
    cdef int emit(self, uint32_t type_id, const char* payload, uint32_t length,
                  int64_t key) except -1


cdef class CyEventHandler:
    cdef Emitter _emitter       # set by the processor (or by assigning `handler.emit`)

    # Handles one input event: `h` is its 48-byte header, `payload` its h.length bytes.
    # Both are valid only during the call. Raise to signal a poison event.
    cdef int on_event_c(self, const rl_header* h, const char* payload, int64_t sequence,
                        bint end_of_batch) except -1
    # Publishes one output through the breaker; `key` is the breaker's per-key limit key.
    cdef int emit_c(self, uint32_t type_id, const char* payload, uint32_t length,
                    int64_t key) except -1
