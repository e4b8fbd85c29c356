# The gateway's per-order path in C: order frames decoded into engine command records and
# published to the input ring; engine output records routed to their sessions and encoded as
# protocol frames; each session's resend store of answer frames.
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

from ringlog._loop cimport LoopHandle
from ringlog._ring cimport Ring


cdef struct report_t:               # the fields of one Report frame but its seq
    const char* kind
    Py_ssize_t kind_len
    const char* reason
    Py_ssize_t reason_len
    int64_t order_id, price, qty, remaining, maker_id, taker_id, rseq
    uint32_t symbol


cdef struct rs_entry:               # one kept seq, in the order of its first answer
    int64_t seq
    int64_t head, tail                  # arena offsets of its first and last frame (-1: none)
    int64_t frames                      # frames kept (1 once overflowed: the error frame)
    bint overflowed                     # its answers passed the budget: an error frame kept


cdef class ResendStore:
    # the frames: a byte arena used as a ring of records (rs_record + frame, 16-aligned),
    # each linked to the next record of its seq; the seqs: a ring of rs_entry, oldest first,
    # found by an open-addressing hash of seq -> entry number
    cdef char* _arena
    cdef int64_t _cap, _cap_max         # arena bytes now, and at most (grown by doubling)
    cdef int64_t _rpos, _wpos           # ring positions (monotonic) of the oldest and next byte
    cdef rs_entry* _entries
    cdef int64_t _ecap, _efirst, _ecount    # entry ring: capacity, number of the oldest, count
    cdef int64_t* _hash                 # entry number or -1; size _hmask + 1 (>= 2 x _ecap)
    cdef int64_t _hmask
    cdef int64_t _max_seq               # the highest seq ever given an entry (>= every kept one)
    cdef readonly Py_ssize_t window     # answered seqs kept at most
    cdef readonly int64_t budget        # bytes by the accounting (ANSWER_COST, SEQ_COST)
    cdef readonly int64_t kept          # bytes kept by that accounting
    cdef readonly int64_t evicted       # seqs dropped (window or budget)
    cdef int record_frame(self, int64_t seq, const char* frame, Py_ssize_t n) except -1
    cdef rs_entry* _find(self, int64_t seq) noexcept
    cdef void _hash_put(self, int64_t seq, int64_t k) noexcept
    cdef void _hash_del(self, int64_t seq, int64_t k) noexcept
    cdef int _grow_entries(self) except -1
    cdef rs_entry* _add(self, int64_t seq) except NULL
    cdef void _evict(self) noexcept
    cdef void _free_frames(self, rs_entry* e) noexcept
    cdef void _reclaim(self) noexcept
    cdef int _grow_arena(self, int64_t need) except -1
    cdef int _append(self, rs_entry* e, const char* frame, Py_ssize_t n) except -1
    cdef void _overflow(self, rs_entry* e) except *
    cdef bytes _join(self, rs_entry* e, Py_ssize_t most)


cdef struct if_entry:               # one in-flight command of a session
    int64_t seq
    int64_t cause                       # its input's journal sequence (-1: not published)
    bint is_new                         # a new order (counts against the open-orders limit)


cdef class Inflight:
    # a ring of if_entry, oldest first, seqs increasing; capacity a power of two
    cdef if_entry* _e
    cdef int64_t _cap, _head, _count
    cdef readonly int64_t news          # in-flight new orders
    cdef if_entry* _at(self, int64_t i) noexcept
    cdef int64_t _published(self, int64_t first, int64_t n, int64_t cause) noexcept
    cdef int64_t _settle(self, int64_t done, int64_t* last) noexcept
    cdef int _grow(self) except -1
    cdef int push(self, int64_t seq, bint is_new) except -1
    cdef int64_t _index(self, int64_t seq) noexcept
    cdef int64_t first(self) noexcept
    cdef int64_t complete(self, int64_t seq) noexcept


cdef class OrderSet:
    # open addressing (linear probing) of nonzero uint64 ids; 0 marks an empty slot
    cdef uint64_t* _slots
    cdef int64_t _mask, _count
    cdef int64_t _pos(self, uint64_t x) noexcept
    cdef int _grow(self) except -1
    cdef bint has(self, uint64_t x) noexcept
    cdef int put(self, uint64_t x) except -1
    cdef void drop(self, uint64_t x) noexcept


cdef class Outbox:
    # what the router needs of a connection, as C fields: its output batch, whether market
    # data is dropped (reading paused), whether frames go out as they are (msgpack)
    cdef readonly object conn
    cdef public bytearray out
    cdef public bint paused, raw, queued


cdef class SessionCore:
    # what the router needs of a session, as C fields (ringlog.gateway.session.Session)
    cdef readonly int64_t id
    cdef readonly uint32_t account
    cdef readonly ResendStore store
    cdef object _conn
    cdef Outbox _outbox                 # the connection's, while one is attached
    cdef readonly Inflight inflight     # commands awaiting their first report, in order
    cdef public dict depth              # market data subscriptions: symbol -> depth
    cdef public OrderSet live           # the account's live order ids (SessionTable.live's)
    # the session rules' state (ringlog.gateway.session.Session): seqs and the rate bucket
    cdef public int64_t last_seen, acked, errors
    cdef public double tokens, token_time
    cdef int64_t _tokens(self, double rate, int64_t burst, double now, int64_t n,
                         bint take) noexcept
    cdef int64_t _ack_target(self) noexcept


cdef class ConnectionCore:
    # what the read path needs of a connection, as C fields (ringlog.gateway.connection's
    # Connection subclasses it)
    cdef public object gw, decoder, transport, session
    cdef public Outbox outbox
    cdef public set paused              # why reading is paused (empty: it is not)
    cdef public bint reading, closing
    cdef public int64_t owed_to, resent, logout_seq
    cdef public double heard, partial_since
    cdef int _flush(self) except -1


cdef class Router:
    cdef object table                   # the SessionTable (in-flight completion, rebuilding)
    cdef dict by_id, by_account, live, copiers, subscribers, pending_new
    cdef list reasons                   # (kind, code) -> reason name as bytes
    cdef list _by_sid                   # session id -> session (None: id > SMALL_IDS)
    cdef list _collect                  # route(): the deliveries, as (session, seq, frame)
    cdef set _dirty                     # drain(): the connections to flush
    cdef int64_t reports, dropped       # drain(): frames delivered, market data dropped
    cdef int _emit(self, object s, int64_t seq, const uint8_t* f, Py_ssize_t n,
                   bint md) except -1
    cdef int _route(self, uint32_t type_id, const char* p, Py_ssize_t n, int64_t corr,
                    int64_t rseq, bint effects) except -1
    cdef int _to_account(self, object req, int64_t seq, uint32_t account,
                         const report_t* rep) except -1
    cdef int _route_l1(self, const char* p, Py_ssize_t n) except -1
    cdef int _route_l2(self, const char* p, Py_ssize_t n) except -1


cdef class CommandBatch:
    # the engine commands of one read's leading order frames (NewOrder, Cancel, Modify)
    cdef void* _recs                    # rl_command[capacity]
    cdef uint32_t* _kinds               # their Command type ids
    cdef Py_ssize_t* _ends              # byte offset after each one's frame
    cdef readonly Py_ssize_t capacity
    cdef readonly Py_ssize_t count
    cdef readonly int64_t first_seq
    cdef Py_ssize_t _scan(self, const uint8_t* p, Py_ssize_t n, Py_ssize_t max_frame,
                          int64_t next_seq, Py_ssize_t most, uint32_t account) noexcept
    cdef Py_ssize_t _prefix_with_news(self, Py_ssize_t k, Py_ssize_t news) noexcept
    cdef void _write(self, Ring ring, int64_t lo, Py_ssize_t k, uint32_t producer_id,
                     int64_t timestamp_ns) noexcept


cdef class GatewayCore:
    # what the read path needs of the gateway, as C fields (ringlog.gateway.server's Gateway
    # subclasses it)
    cdef public object processor, table, metrics, backlog, _loop, _settle_timer
    cdef public set dirty               # the connections to flush (Router.drain adds too)
    # the output side (Gateway documents them)
    cdef public object _sink, _outq, _rebuild
    cdef public bint _scheduled, _holding, _holding_completion, _stopping
    cdef public int64_t _held_from, _routed, _published0, _out_base
    cdef public bint _fast, _driven, _pump_due
    cdef public int64_t _journal_base
    cdef public double _settle_delay
    cdef public CommandBatch _batch
    cdef public Ring _input             # the processor's input ring once started (else None)
    cdef LoopHandle _handle             # the processor's loop: running, pump(), progress
    cdef object _pump_cb                # self._pump_now, bound once
    cdef set _unsettled                 # the table's sessions with commands in flight
    cdef dict _pending_new              # the table's in-flight new orders per account
    cdef Py_ssize_t _max_frame, _max_inflight, _max_buffered
    cdef int64_t _burst, _max_open
    cdef double _rate
    cdef Py_ssize_t _take(self, ConnectionCore conn, const uint8_t* p,
                          Py_ssize_t n) except -1
    cdef int _entered(self, ConnectionCore conn, SessionCore s, int64_t news) except -1
    cdef int _after_publish(self, SessionCore s) except -1
    cdef int _pump_soon(self) except -1
    cdef int64_t _done_through(self) except? -2
