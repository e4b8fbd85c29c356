"""Small Cython handlers for benchmarks and tests (the smallest real CyEventHandlers).

``CountingHandler`` counts events and emits one 8-byte output every ``every`` events (the
end-to-end throughput handler); ``LatencyHandler`` records, per event, now minus the event's
timestamp (its intended send time from an open-loop producer) and emits one output per event;
``SumHandler`` is the Cython twin of the tests' Python ``Summer`` (count and sum of int64
payloads, one output per event, a poison value), so the same input can be checked through both;
``LookaheadHandler`` records which event each ``prefetch_c`` call was for (the lookahead contract).
Each takes ``nogil=True`` to be handled without the GIL (``on_event_nogil``, ``nogil_events``);
its ``on_event_c`` is the same code.
Not thread-safe: the processor's loop thread calls them.
"""

from libc.stdint cimport int64_t
from libc.string cimport memcpy

from ringlog._handler cimport CyEventHandler
from ringlog.includes.event cimport rl_header
from ringlog.includes.ringwait cimport rl_now_ns

import msgspec

__all__ = ["CountingHandler", "LatencyHandler", "LookaheadHandler", "SumHandler"]


cdef class CountingHandler(CyEventHandler):
    """Counts events; emits the count (8 bytes, type 1) every ``every`` events."""

    cdef readonly int64_t count
    cdef int64_t mask

    def __init__(self, int64_t every=16, bint nogil=False):
        if every < 1 or every & (every - 1):
            raise ValueError(f"every must be a power of two >= 1, got {every}")
        self.mask = every - 1
        self.nogil_events = nogil

    cdef int on_event_c(self, const rl_header* h, const char* payload, int64_t sequence,
                        bint end_of_batch) except -1:
        return self.on_event_nogil(h, payload, sequence, end_of_batch)

    cdef int on_event_nogil(self, const rl_header* h, const char* payload, int64_t sequence,
                            bint end_of_batch) except -1 nogil:
        self.count += 1
        if not self.count & self.mask:
            self.emit_nogil(1, <const char*>&self.count, 8, 0)
        return 0


cdef class LatencyHandler(CyEventHandler):
    """Stores now - timestamp_ns of each event into ``out`` and emits one output per event
    (its timestamp is the input's, so an output consumer measures publish to output)."""

    cdef int64_t[::1] out
    cdef readonly int64_t count

    def __init__(self, int64_t[::1] out, bint nogil=False):
        self.out = out
        self.nogil_events = nogil

    cdef int on_event_c(self, const rl_header* h, const char* payload, int64_t sequence,
                        bint end_of_batch) except -1:
        return self.on_event_nogil(h, payload, sequence, end_of_batch)

    cdef int on_event_nogil(self, const rl_header* h, const char* payload, int64_t sequence,
                            bint end_of_batch) except -1 nogil:
        if self.count < self.out.shape[0]:
            self.out[self.count] = rl_now_ns() - h.timestamp_ns
        self.count += 1
        self.emit_nogil(1, <const char*>&sequence, 8, 0)
        return 0


cdef class SumHandler(CyEventHandler):
    """Count and sum of int64 payloads; emits (sequence, running total) as type 1 with key
    ``value % 3`` for every event; raises on the value ``fail_on``."""

    cdef readonly int64_t count, total
    cdef object fail_on
    cdef int64_t poison
    cdef bint has_poison

    def __init__(self, fail_on=None, bint nogil=False):
        self.fail_on = fail_on
        self.has_poison = fail_on is not None
        self.poison = fail_on if fail_on is not None else 0
        self.nogil_events = nogil

    cdef int on_event_c(self, const rl_header* h, const char* payload, int64_t sequence,
                        bint end_of_batch) except -1:
        return self.on_event_nogil(h, payload, sequence, end_of_batch)

    cdef int on_event_nogil(self, const rl_header* h, const char* payload, int64_t sequence,
                            bint end_of_batch) except -1 nogil:
        cdef int64_t v = 0, out[2]
        if h.length != 8:
            with gil:
                raise ValueError(f"SumHandler expects 8-byte payloads, got {h.length} bytes")
        memcpy(&v, payload, 8)
        if self.has_poison and v == self.poison:
            with gil:
                raise ValueError(f"poison {v}")
        self.count += 1
        self.total += v
        out[0] = sequence
        out[1] = self.total
        self.emit_nogil(1, <const char*>out, 16, ((v % 3) + 3) % 3)  # Python's v % 3
        return 0

    def on_snapshot(self):
        """[count, total] as msgpack."""
        return msgspec.msgpack.encode([self.count, self.total])

    def on_restore(self, data):
        """Loads ``on_snapshot`` output."""
        self.count, self.total = msgspec.msgpack.decode(data)


cdef class LookaheadHandler(CyEventHandler):
    """Records the lookahead contract for int64 payloads: per event handled, its value and
    the value of the last event ``prefetch_c`` was called for since the event before (-1:
    none), as pairs into ``out``. ``lookahead``: whether it asks for ``prefetch_c`` calls."""

    cdef int64_t[::1] out
    cdef readonly int64_t count, prefetches
    cdef int64_t last

    def __init__(self, int64_t[::1] out, bint lookahead=True, bint nogil=False):
        self.out = out
        self.lookahead = lookahead
        self.last = -1
        self.nogil_events = nogil

    cdef void prefetch_c(self, const rl_header* h, const char* payload) noexcept nogil:
        if h.length == 8:
            memcpy(&self.last, payload, 8)
            self.prefetches += 1

    cdef int on_event_c(self, const rl_header* h, const char* payload, int64_t sequence,
                        bint end_of_batch) except -1:
        return self.on_event_nogil(h, payload, sequence, end_of_batch)

    cdef int on_event_nogil(self, const rl_header* h, const char* payload, int64_t sequence,
                            bint end_of_batch) except -1 nogil:
        cdef int64_t v = -1
        if h.length == 8:
            memcpy(&v, payload, 8)
        if 2 * self.count + 1 < self.out.shape[0]:
            self.out[2 * self.count] = v
            self.out[2 * self.count + 1] = self.last
        self.count += 1
        self.last = -1
        return 0
