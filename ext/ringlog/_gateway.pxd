# The gateway's per-order path in C: order frames decoded into engine command records and
# published to the input ring; engine output records routed to their sessions and encoded as
# protocol frames; each session's resend store of answer frames.
from libc.stdint cimport int64_t, uint32_t


cdef struct report_t:               # the fields of one Report frame but its seq
    const char* kind
    Py_ssize_t kind_len
    const char* reason
    Py_ssize_t reason_len
    int64_t order_id, price, qty, remaining, maker_id, taker_id, rseq
    uint32_t symbol


cdef class ResendStore:
    cdef object frames                  # OrderedDict: seq -> bytearray of its answers' frames
    cdef readonly set overflowed        # kept seqs whose answers passed the budget
    cdef readonly Py_ssize_t window     # answered seqs kept at most
    cdef readonly int64_t budget        # bytes by the accounting (ANSWER_COST, SEQ_COST)
    cdef readonly int64_t kept          # bytes kept by that accounting
    cdef readonly int64_t evicted       # seqs dropped (window or budget)
    cpdef record(self, int64_t seq, bytes frame)
    cdef void _evict(self) except *


cdef class Router:
    cdef object table                   # the SessionTable (in-flight completion, rebuilding)
    cdef dict by_id, by_account, live, copiers, subscribers, pending_new
    cdef list reasons                   # (kind, code) -> reason name as bytes
    cdef int _route(self, uint32_t type_id, const char* p, Py_ssize_t n, int64_t corr,
                    int64_t rseq, bint effects, list out) except -1
    cdef void _to_account(self, object req, int64_t seq, uint32_t account,
                          const report_t* rep, list out) except *
    cdef void _route_l1(self, const char* p, Py_ssize_t n, list out) except *
    cdef void _route_l2(self, const char* p, Py_ssize_t n, list out) except *


cdef class CommandBatch:
    # the engine commands of one read's leading order frames (NewOrder, Cancel, Modify)
    cdef void* _recs                    # rl_command[capacity]
    cdef uint32_t* _kinds               # their Command type ids
    cdef Py_ssize_t* _ends              # byte offset after each one's frame
    cdef readonly Py_ssize_t capacity
    cdef readonly Py_ssize_t count
    cdef readonly int64_t first_seq
