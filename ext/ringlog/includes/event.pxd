# Declarations of includes/event.h: the 48-byte header of every slot and journal record.
from libc.stdint cimport int64_t, uint32_t


cdef extern from "event.h" nogil:
    ctypedef struct rl_header:
        int64_t sequence
        int64_t timestamp_ns
        int64_t correlation_id
        int64_t producer_seq
        uint32_t type_id
        uint32_t flags
        uint32_t length
        uint32_t producer_id
    int RL_HEADER_SIZE
    void rl_header_set(rl_header* h, int64_t sequence, int64_t timestamp_ns,
                       int64_t correlation_id, int64_t producer_seq, uint32_t type_id,
                       uint32_t flags, uint32_t length)
    uint32_t RL_FLAG_MSGPACK
    uint32_t RL_FLAG_CONTROL
    uint32_t RL_FLAG_REPLAY
    uint32_t RL_FLAG_BATCH_END
