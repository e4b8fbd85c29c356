# Counters in a shared-memory file (includes/counterslayout.h), for Cython code that stores
# with zero Python overhead:
#
#   cdef int64_t* p = (<Counter>counter).addr      # once, when wiring the stage
#   counter_set(p, sequence)                        # per batch: one release store
#   counter_add(p, n)                               # owner thread only (not atomic RMW)
#
# A stage without counters points at a private int64 instead, so the store needs no branch.
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec

from ringlog.includes.atomics cimport rl_load_acquire, rl_load_relaxed, rl_store_release


cdef extern from "counterslayout.h" nogil:
    uint64_t RL_COUNTERS_MAGIC
    uint32_t RL_COUNTERS_VERSION
    int RL_COUNTERS_HEADER_SIZE
    int RL_COUNTER_LABEL_MAX
    int RL_COUNTER_UNUSED
    int RL_COUNTER_ALLOCATED
    int RL_COUNTER_RECLAIMED
    int RL_WRITER_RUNNING
    int RL_WRITER_CLOSED
    ctypedef struct rl_counters_line:
        int64_t value
    ctypedef struct rl_counters_header:
        uint64_t magic
        uint32_t version
        uint32_t header_size
        uint32_t max_counters
        uint32_t meta_size
        uint32_t value_size
        uint32_t reserved
        int64_t metadata_offset
        int64_t values_offset
        int64_t total_size
        int64_t writer_pid
        int64_t writer_start_ticks
        int64_t created_ns
        rl_counters_line heartbeat_ns
        rl_counters_line writer_state
        rl_counters_line high_water
    ctypedef struct rl_counter_meta:
        int32_t state
        int32_t type_id
        int64_t registration_id
        int32_t label_length
        char label[108]
    ctypedef struct rl_counter_value:
        int64_t value


# release store: a reader's acquire load of the counter sees everything before it
cdef inline void counter_set(int64_t* p, int64_t v) noexcept nogil:
    rl_store_release(p, v)


# owner thread only: relaxed load of its own value, release store of the sum
cdef inline void counter_add(int64_t* p, int64_t d) noexcept nogil:
    rl_store_release(p, rl_load_relaxed(p) + d)


# acquire load (any thread, any process)
cdef inline int64_t counter_get(const int64_t* p) noexcept nogil:
    return rl_load_acquire(p)


cdef class _CountersMap:
    # The mapped file; every Counter and reader keeps it alive (no store into unmapped memory).
    cdef char* base
    cdef Py_ssize_t size
    cdef object path
    cdef rl_counters_header* hdr
    cdef rl_counter_meta* meta(self, int i) noexcept nogil
    cdef int64_t* value(self, int i) noexcept nogil


cdef class Counter:
    cdef int64_t* addr                 # the value: store with counter_set / counter_add
    cdef readonly int id
    cdef readonly int type_id
    cdef readonly int64_t registration_id
    cdef readonly str label
    cdef _CountersMap _map
    cdef object _manager


cdef class CountersManager:
    cdef _CountersMap _map
    cdef object _lock
    cdef object _heartbeat
    cdef int32_t _stop
    cdef int64_t _next_registration
    cdef readonly double heartbeat_interval
    cdef dict _labels


# Slots of a stage's StageCounters (the order of STAGE_COUNTERS in _counters.pyx).
# journaller: last journaled sequence; backlog: events published but not yet journaled at
# its batch end; last durable sequence (also stored when idle); batches journaled
cdef enum:
    JS_SEQUENCE = 0
    JS_BACKLOG = 1
    JS_DURABLE = 2
    JS_BATCHES = 3
# logic: last input handled; batches; inputs the handler saw; outputs emitted (published or
# held); outputs published; dead letters; duplicates; breaker state (0 closed, 1 open,
# 2 half-open), trips and held outputs; kill switch runs
cdef enum:
    LS_SEQUENCE = 0
    LS_BATCHES = 1
    LS_PROCESSED = 2
    LS_OUTPUTS = 3
    LS_PUBLISHED = 4
    LS_DEAD_LETTERS = 5
    LS_DUPLICATES = 6
    LS_BREAKER_STATE = 7
    LS_BREAKER_TRIPS = 8
    LS_BREAKER_HELD = 9
    LS_KILLS = 10
    LS_AGE = 11          # 28 buckets of event age at handling: < 2^10 ns, < 2^11, ..., rest
    LS_AGE_BUCKETS = 28
    # ns the loop thread waited to take the GIL back after a batch's journal step (it
    # holds the GIL while it handles a batch)
    LS_GIL_WAIT = LS_AGE + LS_AGE_BUCKETS
cdef enum:
    STAGE_MAX = 40


cdef extern from *:
    int __builtin_clzll(unsigned long long x) nogil


# the age bucket of `age_ns` (< 2^10 ns is bucket 0; 2^36 ns and over the last)
cdef inline int age_bucket(int64_t age_ns) noexcept nogil:
    cdef int b
    if age_ns < 1024:
        return 0
    b = 63 - __builtin_clzll(<unsigned long long>age_ns) - 9
    return b if b < LS_AGE_BUCKETS - 1 else LS_AGE_BUCKETS - 1


# CLOCK_REALTIME ns: the clock producers stamp events with (Processor.publish)
cdef inline int64_t wall_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef class StageCounters:
    # A stage's counters, stored by the stage thread at its batch ends. A slot with no counter
    # (no counters file) points into `spare`, so a store never needs a branch.
    cdef int64_t* slot[40]
    cdef int64_t spare[40]
    cdef readonly list counters
    cdef readonly str kind


cdef class CountersReader:
    cdef _CountersMap _map
    cdef readonly object path
    cdef int64_t _ino
    cdef dict _cache
