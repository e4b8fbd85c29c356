# The ring buffer's C-level API, for Cython code that claims, writes and consumes slots in
# place with no Python object per event (the processor, the matching engine).
#
# Producer:  hi = ring.claim(n, timeout_ns)      (RL_TIMEOUT / RL_CLOSED on failure)
#            h = <rl_header*> ring.slot(seq) ... write header and payload ...
#            ring.publish_range(hi - n + 1, hi)
# Consumer:  avail = c.wait_for(next_seq, timeout_ns)   (>= next_seq, or RL_TIMEOUT/RL_CLOSED)
#            ... read slots next_seq..avail ... c.set_sequence(avail)
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t


cdef extern from "ringlayout.h" nogil:
    uint64_t RL_RING_MAGIC
    uint32_t RL_RING_VERSION
    int RL_MAX_CONSUMERS
    int64_t RL_TIMEOUT    # a wait or claim ran out of time
    int64_t RL_CLOSED     # the ring was closed
    ctypedef struct rl_line_seq:
        int64_t value
    ctypedef struct rl_line_wake:
        int32_t signal
        int32_t waiters
    ctypedef struct rl_producer_local:
        int64_t next_value    # single producer: last claimed
        int64_t cached_gating  # single producer: cached consumer minimum
    ctypedef struct rl_ring_header:
        uint64_t magic
        uint32_t version
        uint32_t header_size
        int64_t capacity
        uint32_t slot_size
        uint32_t multi_producer
        uint64_t total_size
        int64_t avail_offset
        int64_t slots_offset
        int32_t closed
        int32_t n_consumers
        int32_t consumer_active[16]
        int32_t consumer_deps[16]
        rl_line_seq cursor
        rl_line_seq gating_cache
        rl_line_seq consumers[16]
        rl_line_wake wake


cpdef enum WaitKind:
    BUSY_SPIN = 0
    YIELDING = 1
    SLEEPING = 2
    BLOCKING = 3


cdef class Consumer


cdef class _Mapping:
    # Owns the ring memory (mmap); exports it as a buffer so views keep it alive.
    cdef char* base
    cdef Py_ssize_t size
    cdef int fd
    cdef object path


cdef _Mapping map_fd(int fd, Py_ssize_t size, bint writable, str path, object error)


cdef class Event:
    cdef readonly int64_t sequence
    cdef readonly int64_t timestamp_ns
    cdef readonly int64_t correlation_id
    cdef readonly int64_t producer_seq
    cdef readonly uint32_t type_id
    cdef readonly uint32_t flags
    cdef readonly uint32_t producer_id
    cdef readonly object payload


cdef class Batch:
    cdef readonly Consumer consumer
    cdef readonly int64_t lo
    cdef readonly int64_t hi


cdef class Ring:
    cdef _Mapping _map
    cdef rl_ring_header* hdr
    cdef char* slots
    cdef int32_t* avail
    cdef readonly int64_t capacity
    cdef readonly int slot_size
    cdef int64_t mask
    cdef int index_shift
    cdef readonly bint multi_producer
    cdef readonly WaitKind wait_kind
    cdef rl_producer_local* prod  # single producer's state, on its own cache line
    cdef object _view            # memoryview over the whole mapping
    cdef object _dtype

    cdef inline char* slot(self, int64_t seq) noexcept nogil:
        return self.slots + (seq & self.mask) * self.slot_size
    cdef int64_t claim(self, int64_t n, int64_t timeout_ns) noexcept nogil
    cdef int64_t try_claim(self, int64_t n) noexcept nogil
    cdef int64_t claim_or_raise(self, int64_t n, int64_t timeout_ns, int64_t done,
                                int64_t total) except -1
    cdef void publish_range(self, int64_t lo, int64_t hi) noexcept nogil
    cdef int64_t _publish_records(self, const char* src, Py_ssize_t size, Py_ssize_t n,
                                  const uint32_t[::1] tids, const int64_t[::1] tss,
                                  int64_t corr, uint32_t flags, int64_t t) except? -3
    cdef int64_t min_gating(self, int64_t floor) noexcept nogil
    cdef void signal(self) noexcept nogil
    cdef int wait_step(self, int spins, int64_t deadline, int64_t wrap) noexcept nogil
    cdef int64_t highest_published(self, int64_t lo, int64_t hi) noexcept nogil
    cdef int64_t _claim_mp(self, int64_t n, int64_t deadline, bint once) noexcept nogil
    cdef int64_t _claim_sp(self, int64_t n, int64_t deadline, bint once) noexcept nogil
    cdef int64_t _claim_sp_wait(self, int64_t n, int64_t deadline, bint once) noexcept nogil
    cdef int64_t _publish_one(self, object payload, uint32_t type_id, int64_t timestamp_ns,
                              int64_t correlation_id, uint32_t flags, uint32_t producer_id,
                              int64_t producer_seq, int64_t timeout_ns, bint once) except? -1


cdef class Consumer:
    cdef readonly Ring ring
    cdef readonly int index
    cdef int64_t* seq_ptr
    cdef int32_t deps
    cdef readonly int max_batch
    cdef readonly int64_t batches
    cdef readonly int64_t events
    cdef readonly int64_t max_batch_seen
    cdef int64_t pending_hi     # highest sequence of the batch handed out by poll()

    @staticmethod
    cdef Consumer _bind(Ring ring, int index, int max_batch)
    cdef int64_t available(self, int64_t seq) noexcept nogil
    cdef int64_t wait_for(self, int64_t seq, int64_t timeout_ns) noexcept nogil
    cdef int64_t _wait_slow(self, int64_t seq, int64_t timeout_ns) noexcept nogil
    cdef void set_sequence(self, int64_t seq) noexcept nogil
