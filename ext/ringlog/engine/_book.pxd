# The order books of the matching engine: a preallocated order pool, an id -> order hash map,
# per-symbol books whose price levels are intrusive FIFO lists indexed directly by tick, with a
# hierarchical bitmap per side for best-price search, and an output arena for the reports of
# the current command. No Python object per order. Not thread-safe: the processor's loop thread
# is the only caller.
cimport cython
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memset

from ringlog._handler cimport PACKED_HEADER
from ringlog._hashmap cimport rl_map
from ringlog.engine.records cimport (
    RL_FLAG_POST_ONLY,
    rl_command,
    rl_l1,
    rl_l2_head,
    rl_l2_level,
    rl_report,
    rl_trade,
)

# enum values of records.py (Side, Stp, CancelReason, Report) used by the matching loop
cdef enum:
    BUY = 1
    SELL = 2
    STP_NONE = 1
    STP_CANCEL_NEWEST = 2
    STP_CANCEL_OLDEST = 3
    STP_CANCEL_BOTH = 4
    CXL_SELF_TRADE = 3
    R_TRADE = 203
    R_CANCELLED = 204
    BITMAP_MAX_DEPTH = 4
    OUT_HEAD = PACKED_HEADER    # bytes before each output's payload in the arena
    MD_L1 = 1                   # rl_book.md_dirty: a level at or better than a best changed
    MD_BIDS = 2                 # a bid level inside the last L2 window changed
    MD_ASKS = 4                 # an ask level inside the last L2 window changed

ctypedef struct rl_order:       # one pool entry (a live order, or a free slot): one cache line
    uint64_t id
    int64_t price
    int64_t qty                 # executed + leaves (a modify sets leaves, qty follows)
    int64_t leaves              # open quantity
    uint32_t account
    int32_t book                # index of its book; -1 = free slot
    int32_t prev                # FIFO neighbours in its level (-1 = none); next = free list
    int32_t next
    uint8_t side
    uint8_t flags
    uint8_t stp                 # the order's own STP mode as sent (may be ENGINE_DEFAULT)
    uint8_t _pad[13]            # to 64 bytes: the pool is line-aligned, so no order straddles

ctypedef struct rl_level:       # one price level: an intrusive FIFO of pool indices
    int32_t head
    int32_t tail
    int64_t qty

ctypedef struct rl_bitmap:      # hierarchical bitmap: bit i of level k+1 = word i of level k != 0
    uint64_t* words
    int64_t off[BITMAP_MAX_DEPTH]
    int64_t nwords[BITMAP_MAX_DEPTH]
    int depth

ctypedef struct rl_out:         # output arena: [type u32 | length u32 | key i64 | payload]...
    char* buf
    size_t len
    size_t cap
    int32_t n                   # outputs in it

ctypedef struct rl_book:
    uint32_t symbol
    int64_t min_price           # tick band: levels[price - min_price]
    int64_t max_price
    rl_level* levels
    rl_bitmap bids
    rl_bitmap asks
    int64_t best_bid            # 0 = no bid
    int64_t best_ask            # 0 = no ask
    int64_t last_price          # last trade price; 0 = none yet
    int64_t n_orders
    uint8_t md_dirty            # MD_* bits: what the current command changed of the L1/L2
    int64_t l2_bid_bound        # worst bid price in the last L2 (0: fewer than depth levels)
    int64_t l2_ask_bound        # worst ask price in the last L2 (max: fewer than depth levels)
    int64_t l1_last[4]          # last L1 sent: bid price, bid qty, ask price, ask qty
    char* l2_last               # last L2 payload sent (l2_size bytes)

ctypedef struct rl_taker:       # the incoming side of a match (not in the pool until it rests)
    uint64_t id
    int64_t price               # limit; the band edge for market orders
    int64_t qty
    int64_t leaves
    uint32_t account
    uint8_t side
    uint8_t flags
    uint8_t stp                 # the order's STP as sent (kept when it rests)
    uint8_t stp_mode            # resolved mode (never ENGINE_DEFAULT)
    uint8_t command             # Command - 100, for the reports


@cython.final    # methods called directly (no vtable), so the C compiler can inline them
cdef class Books:
    cdef rl_order* orders
    cdef int32_t capacity
    cdef int32_t free_head
    cdef int32_t live
    cdef rl_map ids             # order id -> pool index
    cdef rl_map open_count      # account -> live orders
    cdef rl_map symbols         # symbol id -> book index
    cdef rl_book* books
    cdef int32_t nbooks
    cdef int l2_depth
    cdef uint32_t l2_size
    cdef rl_out out             # the current command's outputs
    cdef int64_t n_trades       # counters, part of the state
    cdef int64_t traded_qty
    cdef int64_t n_cancels      # orders cancelled out of the book (user, mass, STP)

    cdef int32_t book_of(self, uint32_t symbol) noexcept nogil
    cdef int32_t find(self, uint64_t order_id) noexcept nogil
    cdef int64_t open_orders_of(self, uint32_t account) noexcept nogil
    cdef int report_order(self, uint32_t type_id, int64_t key, int32_t idx, uint8_t reason,
                          uint8_t command, int64_t qty) except -1 nogil
    cdef bint would_cross(self, rl_book* b, const rl_taker* t) noexcept nogil
    cdef int64_t fillable(self, rl_book* b, const rl_taker* t) noexcept nogil
    cdef int match(self, rl_book* b, rl_taker* t) except -1 nogil
    cdef int32_t rest(self, rl_book* b, const rl_taker* t) except -1 nogil
    cdef void unlink(self, int32_t idx) noexcept nogil
    cdef void release(self, int32_t idx) noexcept nogil
    cdef int cancel(self, int32_t idx, int64_t key, uint8_t reason,
                    uint8_t command) except -1 nogil
    cdef void set_leaves(self, int32_t idx, int64_t leaves) noexcept nogil
    cdef int market_data(self, rl_book* b, int64_t key, bint publish) except -1 nogil
    cdef void clear_book(self, rl_book* b) noexcept nogil
    cdef int32_t first_order(self, rl_book* b, uint8_t side) noexcept nogil
    cdef int32_t next_order(self, int32_t idx) noexcept nogil
    cdef rl_book* _book(self, uint32_t symbol) except NULL
    cdef dict _order_dict(self, int32_t idx)


# -- the output arena (inline so that _engine shares it: no call per report; a struct, not the
# Books object, so that no reference is counted per call) ----------------------------------
cdef char* grow_output(rl_out* o, size_t need) except NULL nogil


cdef inline char* reserve_output(rl_out* o, uint32_t type_id, uint32_t length,
                                 int64_t key) except NULL nogil:
    """Appends an output's head to the arena (type u32 | length u32 | key i64, then the
    payload padded to 8 bytes: the layout CyEventHandler.emit_packed_c takes, so the engine
    emits a command's outputs in one call); returns its payload, which the caller fills
    entirely."""
    cdef size_t need = OUT_HEAD + ((length + 7) & ~7)
    cdef char* p
    if o.len + need > o.cap:
        grow_output(o, need)
    p = o.buf + o.len
    (<uint32_t*>p)[0] = type_id
    (<uint32_t*>p)[1] = length
    (<int64_t*>p)[1] = key
    o.len += need
    o.n += 1
    return p + OUT_HEAD


cdef inline char* push_output(rl_out* o, uint32_t type_id, uint32_t length,
                              int64_t key) except NULL nogil:
    """``reserve_output`` with the payload zeroed: where ``length`` is a constant (a report,
    a trade, an L1 update) the C compiler zeroes it with a few stores, not a memset call."""
    cdef char* p = reserve_output(o, type_id, length, key)
    memset(p, 0, (length + 7) & ~7)
    return p


cdef inline rl_report* push_report(rl_out* o, uint32_t type_id, int64_t key) except NULL nogil:
    return <rl_report*>push_output(o, type_id, sizeof(rl_report), key)
