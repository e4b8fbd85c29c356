"""The matching engine's order books (see docs/matching.md): data structures and the match loop.

``Books`` holds every symbol's book, one order pool shared by all of them and the id -> order
map (ids are unique among live orders across symbols). A book's price levels are an array
indexed by tick over the symbol's tick band, each level an intrusive FIFO list of pool
indices; one hierarchical bitmap per side finds the next non-empty level in a few word
operations, so the best price never rests on an emptied level. The rules (validation, limits,
STP defaults, bands) live in ``ringlog.engine._engine``; this module executes.

Reports of the current command are appended to an output arena that the engine flushes to
``emit_c`` (or counts, in the batch benchmark entry point). Not thread-safe.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport INT64_MAX, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset

__all__ = ["Books", "layouts"]

from ringlog._hashmap cimport (
    map_clear,
    map_del,
    map_free,
    map_get,
    map_init,
    map_prefetch,
    map_slot,
)

from ringlog.includes.tables cimport rl_prefetch_w, rl_table_alloc

cdef extern from *:
    """
    static inline int rl_ctz(unsigned long long v) { return __builtin_ctzll(v); }
    static inline int rl_clz(unsigned long long v) { return __builtin_clzll(v); }
    """
    int rl_ctz(unsigned long long v) nogil
    int rl_clz(unsigned long long v) nogil

cdef enum:
    ORDER_REC = 48         # snapshot bytes per order
    BOOK_REC = 24          # snapshot bytes per book header
cdef uint64_t ALL = <uint64_t>0xFFFFFFFFFFFFFFFF


cdef int bm_init(rl_bitmap* m, int64_t nbits) except -1:
    cdef int64_t n = nbits, total = 0
    cdef int d = 0
    while True:
        n = (n + 63) >> 6
        m.off[d] = total
        m.nwords[d] = n
        total += n
        d += 1
        if n == 1:
            break
        if d == BITMAP_MAX_DEPTH:
            raise ValueError(f"a tick band of {nbits} ticks is too wide (at most 64**4)")
    m.depth = d
    m.words = <uint64_t*>calloc(total, sizeof(uint64_t))
    if m.words == NULL:
        raise MemoryError(f"cannot allocate a bitmap of {nbits} bits")
    return 0


cdef inline void bm_set(rl_bitmap* m, int64_t i) noexcept nogil:
    cdef int lvl
    cdef int64_t w
    cdef uint64_t was
    for lvl in range(m.depth):
        w = i >> 6
        was = m.words[m.off[lvl] + w]
        m.words[m.off[lvl] + w] = was | (<uint64_t>1 << (i & 63))
        if was:
            return          # the levels above already have this word's bit
        i = w


cdef inline void bm_clear(rl_bitmap* m, int64_t i) noexcept nogil:
    cdef int lvl
    cdef int64_t w
    cdef uint64_t v
    for lvl in range(m.depth):
        w = i >> 6
        v = m.words[m.off[lvl] + w] & ~(<uint64_t>1 << (i & 63))
        m.words[m.off[lvl] + w] = v
        if v:
            return
        i = w


cdef inline int64_t bm_next(const rl_bitmap* m, int64_t i) noexcept nogil:
    """The smallest set bit >= i, or -1."""
    cdef int lvl = 0
    cdef int64_t w
    cdef uint64_t v
    while True:
        if lvl == m.depth:
            return -1
        w = i >> 6
        if w >= m.nwords[lvl]:
            return -1
        v = m.words[m.off[lvl] + w] & (ALL << (i & 63))
        if v:
            i = (w << 6) + rl_ctz(v)
            break
        i = w + 1
        lvl += 1
    while lvl > 0:
        lvl -= 1
        i = (i << 6) + rl_ctz(m.words[m.off[lvl] + i])
    return i


cdef inline bint bm_test(const rl_bitmap* m, int64_t i) noexcept nogil:
    """Is bit i set (in the lowest level: the one that says which levels rest)?"""
    return (m.words[i >> 6] >> (i & 63)) & 1


cdef bint bm_consistent(const rl_bitmap* m) noexcept nogil:
    """Does every upper level's bit i say exactly whether word i below is non-zero (and no bit
    past the last word is set)? For check(): the lowest level is tested bit by bit there."""
    cdef int lvl
    cdef int64_t w
    cdef uint64_t v
    for lvl in range(1, m.depth):
        for w in range(m.nwords[lvl] << 6):
            v = m.words[m.off[lvl] + (w >> 6)] >> (w & 63) & 1
            if v != (w < m.nwords[lvl - 1] and m.words[m.off[lvl - 1] + w] != 0):
                return False
    return True


cdef inline int64_t bm_prev(const rl_bitmap* m, int64_t i) noexcept nogil:
    """The largest set bit <= i, or -1."""
    cdef int lvl = 0
    cdef int64_t w
    cdef uint64_t v
    while True:
        if lvl == m.depth or i < 0:
            return -1
        w = i >> 6
        v = m.words[m.off[lvl] + w] & (ALL >> (63 - (i & 63)))
        if v:
            i = (w << 6) + 63 - rl_clz(v)
            break
        i = w - 1
        lvl += 1
    while lvl > 0:
        lvl -= 1
        i = (i << 6) + 63 - rl_clz(m.words[m.off[lvl] + i])
    return i


cdef inline int64_t best_after(rl_book* b, uint8_t side, int64_t price) noexcept nogil:
    """The best price of ``side`` strictly worse than ``price``, or 0."""
    cdef int64_t i
    if side == BUY:
        i = bm_prev(&b.bids, price - b.min_price - 1)
    else:
        i = bm_next(&b.asks, price - b.min_price + 1)
    return 0 if i < 0 else b.min_price + i


cdef char* grow_output(rl_out* o, size_t need) except NULL nogil:
    """Doubles the output arena until ``need`` more bytes fit (out of line: rare)."""
    cdef size_t cap = o.cap
    cdef char* p
    while o.len + need > cap:
        cap *= 2
    p = <char*>realloc(o.buf, cap)
    if p == NULL:
        with gil:
            raise MemoryError(f"cannot grow the output arena to {cap} bytes")
    o.buf = p
    o.cap = cap
    return p


cdef inline int l2_bids(rl_book* b, rl_l2_level* lv, int depth, uint64_t* diff) noexcept nogil:
    """Writes the best ``depth`` bid levels over ``lv`` (zeros after the last), OR-ing any
    change into ``diff``; returns how many there are. Walks the bits of one bitmap word at a
    time (the levels near the touch are dense): the hierarchy only to skip empty words.
    The book's fields are read into locals once: the stores to ``lv`` could alias them."""
    cdef const uint64_t* words = b.bids.words      # level 0 of the hierarchy comes first
    cdef const rl_level* levels = b.levels
    cdef int64_t lo = b.min_price, i, w = 0, p, q
    cdef uint64_t v = 0, d = 0
    cdef int n = 0
    if b.best_bid:
        i = b.best_bid - lo
        w = i >> 6
        v = words[w] & (ALL >> (63 - (i & 63)))
    while n < depth and v:
        i = (w << 6) + 63 - rl_clz(v)
        v &= ~(<uint64_t>1 << (i & 63))
        p = lo + i
        q = levels[i].qty
        d |= <uint64_t>(lv[n].price ^ p) | <uint64_t>(lv[n].qty ^ q)
        lv[n].price = p
        lv[n].qty = q
        n += 1
        if v == 0 and w > 0 and n < depth:        # this word is done: the next one down
            i = bm_prev(&b.bids, (w << 6) - 1)
            if i >= 0:
                w = i >> 6
                v = words[w] & (ALL >> (63 - (i & 63)))
    b.l2_bid_bound = lv[n - 1].price if n == depth else 0
    diff[0] |= d | _l2_zero(lv, n, depth)
    return n


cdef inline int l2_asks(rl_book* b, rl_l2_level* lv, int depth, uint64_t* diff) noexcept nogil:
    """``l2_bids`` for the asks (upwards from the best ask)."""
    cdef const uint64_t* words = b.asks.words
    cdef const rl_level* levels = b.levels
    cdef int64_t lo = b.min_price, i, w = 0, p, q
    cdef uint64_t v = 0, d = 0
    cdef int n = 0
    if b.best_ask:
        i = b.best_ask - lo
        w = i >> 6
        v = words[w] & (ALL << (i & 63))
    while n < depth and v:
        i = (w << 6) + rl_ctz(v)
        v &= v - 1
        p = lo + i
        q = levels[i].qty
        d |= <uint64_t>(lv[n].price ^ p) | <uint64_t>(lv[n].qty ^ q)
        lv[n].price = p
        lv[n].qty = q
        n += 1
        if v == 0 and n < depth:
            i = bm_next(&b.asks, (w + 1) << 6)
            if i >= 0:
                w = i >> 6
                v = words[w] & (ALL << (i & 63))
    b.l2_ask_bound = lv[n - 1].price if n == depth else INT64_MAX
    diff[0] |= d | _l2_zero(lv, n, depth)
    return n


cdef inline uint64_t _l2_zero(rl_l2_level* lv, int n, int depth) noexcept nogil:
    """Zeroes levels n..depth-1; returns non-zero if any was not."""
    cdef uint64_t d = 0
    while n < depth:
        d |= <uint64_t>lv[n].price | <uint64_t>lv[n].qty
        lv[n].price = 0
        lv[n].qty = 0
        n += 1
    return d


cdef inline void level_changed(rl_book* b, uint8_t side, int64_t price) noexcept nogil:
    """Notes what a change of the level at ``price`` (best prices already updated) may have
    changed: the L1 if it is at or better than its side's best (or the side is empty), that
    side's L2 if it is inside the last L2 window (or the window was not full)."""
    if side == BUY:
        if price >= b.best_bid:
            b.md_dirty |= MD_L1
        if price >= b.l2_bid_bound:
            b.md_dirty |= MD_BIDS
    else:
        if price <= b.best_ask or b.best_ask == 0:
            b.md_dirty |= MD_L1
        if price <= b.l2_ask_bound:
            b.md_dirty |= MD_ASKS


cdef class Books:
    """Every symbol's book, one shared order pool and the id map. Not thread-safe.

    ``symbols`` is a list of ``(symbol_id, min_price, max_price)`` tick bands; ``capacity``
    the number of live orders the pool holds; ``l2_depth`` the levels per side of L2 records.
    """

    def __cinit__(self, list symbols, int32_t capacity, int l2_depth=0):
        cdef int32_t i
        cdef rl_book* b
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.orders = <rl_order*>rl_table_alloc(capacity * sizeof(rl_order))
        if self.orders == NULL:
            raise MemoryError(f"cannot allocate an order pool of {capacity} orders")
        memset(self.orders, 0, capacity * sizeof(rl_order))
        self.capacity = capacity
        for i in range(capacity):
            self.orders[i].book = -1
            self.orders[i].next = i + 1 if i + 1 < capacity else -1
        self.free_head = 0
        map_init(&self.ids, capacity)
        map_init(&self.open_count, capacity)
        map_init(&self.symbols, len(symbols))
        self.l2_depth = l2_depth
        self.l2_size = sizeof(rl_l2_head) + 2 * l2_depth * sizeof(rl_l2_level)
        self.books = <rl_book*>calloc(max(1, len(symbols)), sizeof(rl_book))
        if self.books == NULL:
            raise MemoryError("cannot allocate the books")
        for sym, lo, hi in symbols:
            b = &self.books[self.nbooks]
            self.nbooks += 1
            b.symbol = sym
            b.min_price = lo
            b.max_price = hi
            b.levels = <rl_level*>malloc((hi - lo + 1) * sizeof(rl_level))
            b.l2_last = <char*>calloc(1, self.l2_size)
            if b.levels == NULL or b.l2_last == NULL:
                raise MemoryError(f"cannot allocate the levels of symbol {sym}")
            bm_init(&b.bids, hi - lo + 1)
            bm_init(&b.asks, hi - lo + 1)
            map_slot(&self.symbols, sym, self.nbooks - 1)[0] = self.nbooks - 1
            self.clear_book(b)
        self.out.cap = 4096
        self.out.buf = <char*>malloc(self.out.cap)
        if self.out.buf == NULL:
            raise MemoryError("cannot allocate the output arena")

    def __dealloc__(self):
        cdef int32_t i
        if self.books != NULL:
            for i in range(self.nbooks):
                free(self.books[i].levels)
                free(self.books[i].bids.words)
                free(self.books[i].asks.words)
                free(self.books[i].l2_last)
            free(self.books)
        free(self.orders)
        free(self.out.buf)
        map_free(&self.ids)
        map_free(&self.open_count)
        map_free(&self.symbols)

    cdef void clear_book(self, rl_book* b) noexcept nogil:
        cdef int64_t n = b.max_price - b.min_price + 1, i
        cdef rl_l2_head* head = <rl_l2_head*>b.l2_last
        for i in range(n):
            b.levels[i].head = -1
            b.levels[i].tail = -1
            b.levels[i].qty = 0
        memset(b.bids.words, 0, (b.bids.off[b.bids.depth - 1] + 1) * sizeof(uint64_t))
        memset(b.asks.words, 0, (b.asks.off[b.asks.depth - 1] + 1) * sizeof(uint64_t))
        b.best_bid = 0
        b.best_ask = 0
        b.last_price = 0
        b.n_orders = 0
        b.md_dirty = 0      # the L1 and L2 last sent (zeros) are those of an empty book
        b.l2_bid_bound = 0
        b.l2_ask_bound = INT64_MAX
        memset(b.l1_last, 0, sizeof(b.l1_last))
        memset(b.l2_last, 0, self.l2_size)
        head.symbol = b.symbol
        head.depth = self.l2_depth

    # -- lookups ----------------------------------------------------------------------------
    cdef int32_t book_of(self, uint32_t symbol) noexcept nogil:
        return <int32_t>map_get(&self.symbols, symbol, -1)

    cdef int32_t find(self, uint64_t order_id) noexcept nogil:
        return <int32_t>map_get(&self.ids, order_id, -1)

    cdef int64_t open_orders_of(self, uint32_t account) noexcept nogil:
        return map_get(&self.open_count, account, 0)

    cdef int32_t first_order(self, rl_book* b, uint8_t side) noexcept nogil:
        cdef int64_t best = b.best_bid if side == BUY else b.best_ask
        return -1 if best == 0 else b.levels[best - b.min_price].head

    cdef int32_t next_order(self, int32_t idx) noexcept nogil:
        """The order after ``idx`` in priority order on its side (next in FIFO, else the head
        of the next worse level), or -1."""
        cdef rl_order* o = &self.orders[idx]
        cdef rl_book* b
        cdef int64_t p
        if o.next >= 0:
            return o.next
        b = &self.books[o.book]
        p = best_after(b, o.side, o.price)
        return -1 if p == 0 else b.levels[p - b.min_price].head

    # -- outputs ----------------------------------------------------------------------------
    cdef int report_order(self, uint32_t type_id, int64_t key, int32_t idx, uint8_t reason,
                          uint8_t command, int64_t qty) except -1 nogil:
        """A report about a pool order: its id, account, symbol, price, side and leaves."""
        cdef rl_order* o = &self.orders[idx]
        cdef rl_report* r = push_report(&self.out, type_id, key)
        r.order_id = o.id
        r.account = o.account
        r.symbol = self.books[o.book].symbol
        r.price = o.price
        r.qty = qty
        r.leaves = o.leaves
        r.side = o.side
        r.reason = reason
        r.command = command
        return 0

    # -- book maintenance -------------------------------------------------------------------
    cdef int32_t rest(self, rl_book* b, const rl_taker* t) except -1 nogil:
        """Puts the taker's remainder at the tail of its level; returns its pool index."""
        cdef int32_t idx = self.free_head
        cdef rl_order* o
        cdef rl_level* lvl = &b.levels[t.price - b.min_price]
        if idx < 0:
            with gil:
                raise MemoryError("the order pool is full (the engine checks before resting)")
        o = &self.orders[idx]
        self.free_head = o.next
        if o.next >= 0:
            rl_prefetch_w(&self.orders[o.next])  # the next order to rest takes it
        o.id = t.id
        o.price = t.price
        o.qty = t.qty
        o.leaves = t.leaves
        o.account = t.account
        o.book = <int32_t>(b - self.books)
        o.side = t.side
        o.flags = t.flags
        o.stp = t.stp
        o.next = -1
        o.prev = lvl.tail
        if lvl.tail >= 0:
            self.orders[lvl.tail].next = idx
        else:
            lvl.head = idx
            if t.side == BUY:
                bm_set(&b.bids, t.price - b.min_price)
                if b.best_bid == 0 or t.price > b.best_bid:
                    b.best_bid = t.price
            else:
                bm_set(&b.asks, t.price - b.min_price)
                if b.best_ask == 0 or t.price < b.best_ask:
                    b.best_ask = t.price
        lvl.tail = idx
        lvl.qty += t.leaves
        b.n_orders += 1
        self.live += 1
        map_slot(&self.ids, t.id, idx)[0] = idx
        map_slot(&self.open_count, t.account, 0)[0] += 1
        level_changed(b, t.side, t.price)
        return idx

    cdef void unlink(self, int32_t idx) noexcept nogil:
        """Takes an order out of its level (the best price moves on if the level empties)."""
        cdef rl_order* o = &self.orders[idx]
        cdef rl_book* b = &self.books[o.book]
        cdef rl_level* lvl = &b.levels[o.price - b.min_price]
        if o.prev >= 0:
            self.orders[o.prev].next = o.next
        else:
            lvl.head = o.next
        if o.next >= 0:
            self.orders[o.next].prev = o.prev
        else:
            lvl.tail = o.prev
        lvl.qty -= o.leaves
        b.n_orders -= 1
        if lvl.head < 0:
            if o.side == BUY:
                bm_clear(&b.bids, o.price - b.min_price)
                if o.price == b.best_bid:
                    b.best_bid = best_after(b, BUY, o.price)
            else:
                bm_clear(&b.asks, o.price - b.min_price)
                if o.price == b.best_ask:
                    b.best_ask = best_after(b, SELL, o.price)
        level_changed(b, o.side, o.price)

    cdef void release(self, int32_t idx) noexcept nogil:
        """Returns an unlinked order's slot to the pool and forgets its id."""
        cdef rl_order* o = &self.orders[idx]
        cdef int64_t* n = map_slot(&self.open_count, o.account, 0)
        n[0] -= 1
        if n[0] <= 0:
            map_del(&self.open_count, o.account)
        map_del(&self.ids, o.id)
        o.book = -1
        o.next = self.free_head
        self.free_head = idx
        self.live -= 1

    cdef int cancel(self, int32_t idx, int64_t key, uint8_t reason,
                    uint8_t command) except -1 nogil:
        """Removes a live order with a CANCELLED report (qty = the quantity cancelled)."""
        cdef rl_order* o = &self.orders[idx]
        cdef int64_t q = o.leaves
        self.unlink(idx)
        o.leaves = 0
        self.report_order(R_CANCELLED, key, idx, reason, command, q)
        self.release(idx)
        self.n_cancels += 1
        return 0

    cdef void set_leaves(self, int32_t idx, int64_t leaves) noexcept nogil:
        """Reduces an order in place (it keeps its place in the FIFO)."""
        cdef rl_order* o = &self.orders[idx]
        cdef rl_book* b = &self.books[o.book]
        b.levels[o.price - b.min_price].qty += leaves - o.leaves
        o.qty += leaves - o.leaves
        o.leaves = leaves
        level_changed(b, o.side, o.price)

    # -- matching ---------------------------------------------------------------------------
    cdef bint would_cross(self, rl_book* b, const rl_taker* t) noexcept nogil:
        if t.side == BUY:
            return b.best_ask != 0 and b.best_ask <= t.price
        return b.best_bid != 0 and b.best_bid >= t.price

    cdef int64_t fillable(self, rl_book* b, const rl_taker* t) noexcept nogil:
        """How much of the taker could fill now within its limit, under its STP mode
        (stopping once ``t.leaves`` is reached): the fill-or-kill test."""
        cdef int64_t got = 0, p
        cdef int32_t idx
        cdef rl_order* o
        p = b.best_ask if t.side == BUY else b.best_bid
        while p != 0 and got < t.leaves and ((p <= t.price) if t.side == BUY
                                             else (p >= t.price)):
            if t.stp_mode == STP_NONE:
                got += b.levels[p - b.min_price].qty
            else:
                idx = b.levels[p - b.min_price].head
                while idx >= 0 and got < t.leaves:
                    o = &self.orders[idx]
                    if o.account == t.account:
                        if t.stp_mode != STP_CANCEL_OLDEST:
                            return got      # the taker would be cancelled here
                    else:
                        got += o.leaves
                    idx = o.next
            p = best_after(b, SELL if t.side == BUY else BUY, p)
        return got

    cdef int match(self, rl_book* b, rl_taker* t) except -1 nogil:
        """Trades the taker against the opposite side in price-time priority, within its limit.

        Returns 1 if self-trade prevention cancels the taker's remainder, else 0."""
        cdef int64_t best, q
        cdef int32_t idx, nxt
        cdef rl_order* o
        cdef rl_level* lvl
        cdef rl_trade* tr
        cdef int64_t o_qty_left
        cdef uint8_t maker_side = SELL if t.side == BUY else BUY
        while t.leaves > 0:
            if t.side == BUY:
                best = b.best_ask
                if best == 0 or best > t.price:
                    return 0
            else:
                best = b.best_bid
                if best == 0 or best < t.price:
                    return 0
            lvl = &b.levels[best - b.min_price]
            idx = lvl.head
            while idx >= 0 and t.leaves > 0:
                o = &self.orders[idx]
                nxt = o.next
                # a filled maker's id leaves the id map, and the next maker follows: start
                # both loads now (random lines) instead of waiting on each in turn
                map_prefetch(&self.ids, o.id)
                if nxt >= 0:
                    rl_prefetch_w(&self.orders[nxt])
                if o.account == t.account and t.stp_mode != STP_NONE:
                    if t.stp_mode == STP_CANCEL_NEWEST:
                        return 1
                    self.cancel(idx, t.account, CXL_SELF_TRADE, t.command)
                    if t.stp_mode == STP_CANCEL_BOTH:
                        return 1
                    idx = nxt
                    continue
                q = o.leaves if o.leaves < t.leaves else t.leaves
                o.leaves -= q
                o_qty_left = o.leaves
                t.leaves -= q
                lvl.qty -= q
                b.last_price = best
                self.n_trades += 1
                self.traded_qty += q
                tr = <rl_trade*>push_output(&self.out, R_TRADE, sizeof(rl_trade), t.account)
                tr.taker_id = t.id
                tr.maker_id = o.id
                tr.taker_account = t.account
                tr.maker_account = o.account
                tr.symbol = b.symbol
                tr.taker_side = t.side
                tr.price = best
                tr.qty = q
                tr.taker_leaves = t.leaves
                tr.maker_leaves = o_qty_left
                if o_qty_left == 0:
                    self.unlink(idx)
                    self.release(idx)
                else:
                    level_changed(b, maker_side, best)
                idx = nxt
        return 0

    # -- market data ------------------------------------------------------------------------
    cdef int market_data(self, rl_book* b, int64_t key, bint publish) except -1 nogil:
        """L1 and L2 records for a book the current command touched, where they changed
        since the last ones sent (``publish`` false: only remember the current state)."""
        cdef int64_t cur[4]
        cdef rl_l1* l1
        cdef rl_l2_head* head
        cdef rl_l2_level* lv
        cdef uint64_t diff = 0
        cdef int n
        cdef uint8_t dirty = b.md_dirty
        if not dirty:
            return 0
        b.md_dirty = 0
        if dirty & MD_L1:
            cur[0] = b.best_bid
            cur[1] = b.levels[b.best_bid - b.min_price].qty if b.best_bid else 0
            cur[2] = b.best_ask
            cur[3] = b.levels[b.best_ask - b.min_price].qty if b.best_ask else 0
            if memcmp(cur, b.l1_last, sizeof(cur)) != 0:
                memcpy(b.l1_last, cur, sizeof(cur))
                if publish:
                    l1 = <rl_l1*>push_output(&self.out, 210, sizeof(rl_l1), key)
                    l1.symbol = b.symbol
                    l1.bid_price = cur[0]
                    l1.bid_qty = cur[1]
                    l1.ask_price = cur[2]
                    l1.ask_qty = cur[3]
        if self.l2_depth == 0 or not dirty & (MD_BIDS | MD_ASKS):
            return 0
        # rebuilt in place over the last one sent (only the sides that changed), noting any
        # difference on the way
        head = <rl_l2_head*>b.l2_last
        lv = <rl_l2_level*>(b.l2_last + sizeof(rl_l2_head))
        if dirty & MD_BIDS:
            n = l2_bids(b, lv, self.l2_depth, &diff)
            diff |= <uint64_t>(head.bids ^ n)
            head.bids = n
        if dirty & MD_ASKS:
            n = l2_asks(b, lv + self.l2_depth, self.l2_depth, &diff)
            diff |= <uint64_t>(head.asks ^ n)
            head.asks = n
        if publish and diff:
            memcpy(reserve_output(&self.out, 211, self.l2_size, key), b.l2_last, self.l2_size)
        return 0

    # -- snapshot ---------------------------------------------------------------------------
    def dump_orders(self):
        """Every book's last price and live orders, in priority order, as bytes:
        per book (config order) ``symbol u32, pad u32, last_price i64, n_orders i64`` then
        ``n_orders`` x (id u64, price i64, qty i64, leaves i64, account u32, side u8,
        flags u8, stp u8, pad u8, pad u64): bids best first, then asks, FIFO within a level."""
        cdef Py_ssize_t size = self.nbooks * BOOK_REC + self.live * ORDER_REC
        cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
        cdef char* p = PyBytes_AS_STRING(out)
        cdef rl_book* b
        cdef rl_order* o
        cdef int32_t i, idx
        cdef uint8_t side
        memset(p, 0, size)
        for i in range(self.nbooks):
            b = &self.books[i]
            (<uint32_t*>p)[0] = b.symbol
            (<int64_t*>p)[1] = b.last_price
            (<int64_t*>p)[2] = b.n_orders
            p += BOOK_REC
            for side in (BUY, SELL):
                idx = self.first_order(b, side)
                while idx >= 0:
                    o = &self.orders[idx]
                    (<uint64_t*>p)[0] = o.id
                    (<int64_t*>p)[1] = o.price
                    (<int64_t*>p)[2] = o.qty
                    (<int64_t*>p)[3] = o.leaves
                    (<uint32_t*>p)[8] = o.account
                    (<uint8_t*>p)[36] = o.side
                    (<uint8_t*>p)[37] = o.flags
                    (<uint8_t*>p)[38] = o.stp
                    p += ORDER_REC
                    idx = self.next_order(idx)
        return out

    def load_orders(self, const unsigned char[::1] data):
        """Replaces every book with the state ``dump_orders`` wrote; ValueError if it does not
        fit this engine (other symbols, too many orders, a truncated or inconsistent blob)."""
        cdef const unsigned char* p = &data[0] if data.shape[0] else NULL
        cdef const unsigned char* end = p + data.shape[0]
        cdef int32_t i
        cdef int64_t n
        cdef rl_book* b
        cdef rl_taker t
        self.reset()
        for i in range(self.nbooks):
            b = &self.books[i]
            if end - p < BOOK_REC:
                raise ValueError("the order book snapshot is truncated")
            if (<uint32_t*>p)[0] != b.symbol:
                raise ValueError(f"the snapshot's book {i} is symbol {(<uint32_t*>p)[0]}, "
                                 f"this engine's is {b.symbol}: the symbols differ")
            b.last_price = (<int64_t*>p)[1]
            n = (<int64_t*>p)[2]
            p += BOOK_REC
            if n < 0 or end - p < n * ORDER_REC:
                raise ValueError("the order book snapshot is truncated")
            if n + self.live > self.capacity:
                raise ValueError(f"the snapshot holds more orders than the pool's "
                                 f"{self.capacity}: raise max_orders")
            for _ in range(n):
                memset(&t, 0, sizeof(t))
                t.id = (<uint64_t*>p)[0]
                t.price = (<int64_t*>p)[1]
                t.qty = (<int64_t*>p)[2]
                t.leaves = (<int64_t*>p)[3]
                t.account = (<uint32_t*>p)[8]
                t.side = p[36]
                t.flags = p[37]
                t.stp = p[38]
                if (t.side != BUY and t.side != SELL or t.price < b.min_price
                        or t.price > b.max_price or t.leaves <= 0 or self.find(t.id) >= 0):
                    raise ValueError(f"the snapshot's order {t.id} is invalid for symbol "
                                     f"{b.symbol}")
                self.rest(b, &t)
                p += ORDER_REC
        if p != end:
            raise ValueError(f"{end - p} bytes left over after the order book snapshot")
        for i in range(self.nbooks):
            self.market_data(&self.books[i], 0, False)
        self.out.len = 0
        self.out.n = 0

    def reset(self):
        """Empties every book and the pool."""
        cdef int32_t i
        for i in range(self.nbooks):
            self.clear_book(&self.books[i])
        for i in range(self.capacity):
            self.orders[i].book = -1
            self.orders[i].next = i + 1 if i + 1 < self.capacity else -1
        self.free_head = 0
        self.live = 0
        map_clear(&self.ids)
        map_clear(&self.open_count)
        self.n_trades = 0
        self.traded_qty = 0
        self.n_cancels = 0

    # -- queries from Python ----------------------------------------------------------------
    cdef rl_book* _book(self, uint32_t symbol) except NULL:
        cdef int32_t i = self.book_of(symbol)
        if i < 0:
            raise KeyError(f"unknown symbol {symbol}")
        return &self.books[i]

    def best(self, uint32_t symbol):
        """``(bid_price, bid_qty, ask_price, ask_qty)``; a missing side is ``0, 0``."""
        cdef rl_book* b = self._book(symbol)
        return (b.best_bid, b.levels[b.best_bid - b.min_price].qty if b.best_bid else 0,
                b.best_ask, b.levels[b.best_ask - b.min_price].qty if b.best_ask else 0)

    def levels(self, uint32_t symbol, int side, Py_ssize_t depth=-1, bint orders=False):
        """Price levels of one side, best first: ``(price, qty, count)`` tuples, or with
        ``orders`` ``(price, qty, [order dicts in FIFO order])``; ``depth`` < 0 = all."""
        cdef rl_book* b = self._book(symbol)
        cdef int64_t p = b.best_bid if side == BUY else b.best_ask
        cdef int32_t idx
        cdef list out = [], fifo
        while p != 0 and (depth < 0 or len(out) < depth):
            idx = b.levels[p - b.min_price].head
            fifo = []
            while idx >= 0:
                fifo.append(self._order_dict(idx) if orders else idx)
                idx = self.orders[idx].next
            out.append((p, b.levels[p - b.min_price].qty, fifo if orders else len(fifo)))
            p = best_after(b, side, p)
        return out

    cdef dict _order_dict(self, int32_t idx):
        cdef rl_order* o = &self.orders[idx]
        return {"order_id": o.id, "account": o.account, "symbol": self.books[o.book].symbol,
                "side": o.side, "price": o.price, "qty": o.qty, "leaves": o.leaves,
                "post_only": bool(o.flags & RL_FLAG_POST_ONLY), "stp": o.stp}

    def order(self, uint64_t order_id):
        """The live order ``order_id`` as a dict, or None."""
        cdef int32_t idx = self.find(order_id)
        return None if idx < 0 else self._order_dict(idx)

    def book_info(self, uint32_t symbol):
        """``(last_price, n_orders)`` of one book."""
        cdef rl_book* b = self._book(symbol)
        return b.last_price, b.n_orders

    def check(self):
        """Verifies the internal invariants (for tests): every level's FIFO links, size and
        bitmap bit agree, best prices are the extreme non-empty levels, the book is not
        crossed, and the id map, account counts and free list account for every slot.
        Raises AssertionError naming the first broken one."""
        cdef int32_t i, idx, prev, n_live = 0, n_free = 0
        cdef int64_t p, q, k
        cdef rl_book* b
        cdef rl_level* lv
        cdef rl_order* o
        cdef uint8_t side
        cdef dict counts = {}
        for i in range(self.nbooks):
            b = &self.books[i]
            if b.best_bid and b.best_ask and b.best_bid >= b.best_ask:
                raise AssertionError(f"book {b.symbol} is crossed: {b.best_bid} >= {b.best_ask}")
            for k in range(b.max_price - b.min_price + 1):
                lv = &b.levels[k]
                p = b.min_price + k
                q = 0
                prev = -1
                idx = lv.head
                side = 0
                while idx >= 0:
                    o = &self.orders[idx]
                    if o.prev != prev or o.price != p or o.book != i or o.leaves <= 0:
                        raise AssertionError(f"order {o.id} is mislinked at {b.symbol}@{p}")
                    if side and o.side != side:
                        raise AssertionError(f"both sides rest at {b.symbol}@{p}")
                    if self.find(o.id) != idx:
                        raise AssertionError(f"order {o.id} is not in the id map")
                    side = o.side
                    q += o.leaves
                    n_live += 1
                    counts[o.account] = counts.get(o.account, 0) + 1
                    prev = idx
                    idx = o.next
                if lv.tail != prev or lv.qty != q:
                    raise AssertionError(f"level {b.symbol}@{p}: tail or size is wrong")
                if bm_test(&b.bids, k) != (side == BUY) or bm_test(&b.asks, k) != (side == SELL):
                    raise AssertionError(f"level {b.symbol}@{p}: bitmap disagrees")
            k = b.max_price - b.min_price + 1  # no bit past the band
            if (not bm_consistent(&b.bids) or not bm_consistent(&b.asks)
                    or bm_next(&b.bids, k) >= 0 or bm_next(&b.asks, k) >= 0):
                raise AssertionError(f"book {b.symbol}: a bitmap's upper words disagree with "
                                     "the words below them, or a bit is set past the band")
            if (b.best_bid != best_after(b, BUY, b.max_price + 1)
                    or b.best_ask != best_after(b, SELL, b.min_price - 1)):
                raise AssertionError(f"book {b.symbol}: best prices are stale")
        idx = self.free_head
        while idx >= 0:
            n_free += 1
            idx = self.orders[idx].next
        if n_live != self.live or n_free != self.capacity - self.live:
            raise AssertionError(f"{n_live} linked and {n_free} free orders, pool says "
                                 f"{self.live} live of {self.capacity}")
        if self.ids.size != self.live or self.open_count.size != len(counts) or any(
                self.open_orders_of(a) != n for a, n in counts.items()):
            raise AssertionError("the id map or the open-order counts disagree with the books")

    def _flip_bit(self, uint32_t symbol, int side, int lvl, int64_t bit):
        """Flips one bit of a book's bitmap (a word of level ``lvl``): for the tests that
        show check() catches a damaged bitmap. Never called by the engine."""
        cdef rl_book* b = self._book(symbol)
        cdef rl_bitmap* m = &b.bids if side == BUY else &b.asks
        if not 0 <= lvl < m.depth or not 0 <= bit < m.nwords[lvl] << 6:
            raise IndexError(f"no bit {bit} in level {lvl} of {m.depth}")
        m.words[m.off[lvl] + (bit >> 6)] ^= <uint64_t>1 << (bit & 63)

    @property
    def live_orders(self):
        """Live orders across all books."""
        return self.live

    @property
    def free_slots(self):
        """Free slots in the order pool."""
        return self.capacity - self.live


cdef inline Py_ssize_t _at(void* field, void* record) noexcept:
    return <char*>field - <char*>record


def layouts():
    """Sizes and field offsets of the C records (records.h), for the test against the dtypes."""
    cdef rl_command c
    cdef rl_report r
    cdef rl_trade t
    cdef rl_l1 l1
    cdef rl_l2_head h
    cdef rl_l2_level lv
    return {
        "command": (sizeof(rl_command), {
            "order_id": _at(&c.order_id, &c), "price": _at(&c.price, &c),
            "qty": _at(&c.qty, &c), "account": _at(&c.account, &c),
            "symbol": _at(&c.symbol, &c), "side": _at(&c.side, &c),
            "order_type": _at(&c.order_type, &c), "tif": _at(&c.tif, &c),
            "flags": _at(&c.flags, &c), "stp": _at(&c.stp, &c),
            "client_tag": _at(&c.client_tag, &c)}),
        "report": (sizeof(rl_report), {
            "order_id": _at(&r.order_id, &r), "account": _at(&r.account, &r),
            "symbol": _at(&r.symbol, &r), "price": _at(&r.price, &r),
            "qty": _at(&r.qty, &r), "leaves": _at(&r.leaves, &r),
            "side": _at(&r.side, &r), "reason": _at(&r.reason, &r),
            "command": _at(&r.command, &r)}),
        "trade": (sizeof(rl_trade), {
            "taker_id": _at(&t.taker_id, &t), "maker_id": _at(&t.maker_id, &t),
            "taker_account": _at(&t.taker_account, &t),
            "maker_account": _at(&t.maker_account, &t), "symbol": _at(&t.symbol, &t),
            "taker_side": _at(&t.taker_side, &t), "price": _at(&t.price, &t),
            "qty": _at(&t.qty, &t), "taker_leaves": _at(&t.taker_leaves, &t),
            "maker_leaves": _at(&t.maker_leaves, &t)}),
        "l1": (sizeof(rl_l1), {
            "symbol": _at(&l1.symbol, &l1), "bid_price": _at(&l1.bid_price, &l1),
            "bid_qty": _at(&l1.bid_qty, &l1), "ask_price": _at(&l1.ask_price, &l1),
            "ask_qty": _at(&l1.ask_qty, &l1)}),
        "l2_head": (sizeof(rl_l2_head), {
            "symbol": _at(&h.symbol, &h), "depth": _at(&h.depth, &h),
            "bids": _at(&h.bids, &h), "asks": _at(&h.asks, &h)}),
        "l2_level": (sizeof(rl_l2_level), {
            "price": _at(&lv.price, &lv), "qty": _at(&lv.qty, &lv)}),
    }
