# The processor's output stage in C (ringlog._release): poll the output ring, append to the
# output journal, release to the listeners after the outputs' inputs are durable, taking the
# GIL once per hand-over.
from libc.stdint cimport int64_t

from ringlog._counters cimport StageCounters
from ringlog._journal cimport JournalAppender
from ringlog._ring cimport Consumer, Ring


cdef extern from "pthread.h" nogil:
    ctypedef struct pthread_mutex_t:
        pass


cdef class SlotSink:
    # One producer thread (the output stage, no GIL) and one consumer thread (take()).
    cdef pthread_mutex_t lock        # guards buf/len/cap against the consumer's swap
    cdef char* buf                   # the producer's side: slots not yet taken
    cdef Py_ssize_t len
    cdef Py_ssize_t cap
    cdef readonly int fd             # eventfd: readable while slots wait (-1 once closed)
    cdef readonly int slot_size
    cdef readonly int64_t pushes
    cdef readonly int64_t signals    # eventfd writes (an empty sink became non-empty)
    # bounded (a loop-appended stage sets it): a push that would hold more than `limit`
    # bytes is refused (0: no bound), and take() calls `refill(refill_ctx)` once it emptied
    # the sink, so the refused slots follow (the output ring holds them meanwhile)
    cdef readonly Py_ssize_t limit
    cdef readonly int64_t refusals   # pushes refused by the bound
    cdef void (*refill)(void* ctx) noexcept nogil
    cdef void* refill_ctx
    # set by the consumer's own thread while it produces too (a driven processor's pump):
    # no eventfd write, the consumer takes right after (read under the lock by push)
    cdef public bint quiet

    cdef int push(self, const char* first, Py_ssize_t first_len, const char* rest,
                  Py_ssize_t rest_len, int slot_size) noexcept nogil


cdef class ReleaseStage:
    # One thread runs it: the processor's rl-output (run()), or the engine loop itself
    # (attach(), then loop_append() per published batch of outputs).
    cdef readonly Consumer consumer
    cdef Ring ring
    cdef JournalAppender journal      # the output journal: every output is appended here
    cdef JournalAppender gate         # the input journal (durable release), or None
    cdef readonly list listeners      # fn(slots: bytes, slot_size: int), once per hand-over
    cdef readonly SlotSink sink       # handed over without the GIL (None: no sink)
    cdef bint python_listeners        # listeners is not empty: hand-overs take the GIL
    cdef StageCounters counters
    cdef int64_t** ctr
    cdef readonly int64_t appended    # next ring sequence to append (all before it are)
    cdef readonly int64_t released    # next ring sequence to hand over (all before it were)
    cdef readonly int64_t handovers   # hand-overs so far (GIL acquisitions of the pump)
    cdef readonly int64_t durable_waits  # sleeps for the input journal's durable mark
    # hooked (a gate and a SlotSink only): the gate's durable hook hands over on the thread
    # that advanced the mark; `lock` then guards appended/released and every hand-over
    cdef bint hooked
    cdef pthread_mutex_t lock
    cdef readonly int64_t hook_handovers  # hand-overs made by the durable hook
    cdef readonly bint by_loop        # attach(): the engine loop appends, no rl-output

    cdef int64_t _pump(self) except -1 nogil
    cdef int64_t _await_output(self) noexcept nogil
    cdef int64_t _releasable(self, int64_t durable) noexcept nogil
    cdef int _hand_over(self, int64_t upto) except -1
    cdef bint _to_sinks(self, int64_t upto) noexcept nogil
    cdef int loop_append(self, int64_t hi) except -1 nogil
    cdef int check_gate(self) except -1
    cdef int64_t _gate_durable(self) noexcept nogil
    cdef void _released(self, int64_t upto) noexcept nogil
    cdef int64_t _release_durable(self, int64_t durable, bint by_hook) noexcept nogil
    cdef int64_t _last_cause(self) noexcept nogil
