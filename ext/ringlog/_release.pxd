# The processor's output stage in C (ringlog._release): poll the output ring, append to the
# output journal, release to the listeners after the outputs' inputs are durable, taking the
# GIL once per hand-over.
from libc.stdint cimport int64_t

from ringlog._counters cimport StageCounters
from ringlog._journal cimport JournalAppender
from ringlog._ring cimport Consumer, Ring


cdef class ReleaseStage:
    # Not thread-safe: one thread (the processor's rl-output) runs it.
    cdef readonly Consumer consumer
    cdef Ring ring
    cdef JournalAppender journal      # the output journal: every output is appended here
    cdef JournalAppender gate         # the input journal (durable release), or None
    cdef readonly list listeners      # fn(slots: bytes, slot_size: int), once per hand-over
    cdef StageCounters counters
    cdef int64_t** ctr
    cdef readonly int64_t appended    # next ring sequence to append (all before it are)
    cdef readonly int64_t released    # next ring sequence to hand over (all before it were)
    cdef readonly int64_t handovers   # hand-overs so far (GIL acquisitions of the pump)
    cdef readonly int64_t durable_waits  # sleeps for the input journal's durable mark

    cdef int64_t _pump(self) except -1 nogil
    cdef int64_t _releasable(self, int64_t durable) noexcept nogil
    cdef int _hand_over(self, int64_t upto) except -1
