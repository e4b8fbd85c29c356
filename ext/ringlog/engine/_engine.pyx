"""The matching engine as a ringlog handler (semantics: docs/matching.md).

``Engine(config)`` is a ``CyEventHandler``: the processor calls ``on_event_c`` with the slot's
header and its COMMAND_DTYPE payload, decoded in place; the reports of one command are built
in the books' output arena, then emitted in order through ``emit_c`` with key = the account
of the command (so the breaker's per-key limits are per account). ``process_commands`` runs a
numpy array of commands in one C loop (engine-only benchmarks, the demo); ``apply`` runs one
command from Python and returns its outputs (tests). Not thread-safe: one loop thread only.
"""

import hashlib
import struct

from libc.stdint cimport INT64_MAX, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from ringlog._handler cimport LOOKAHEAD, CyEventHandler
from ringlog.engine._book cimport (
    BUY,
    CXL_SELF_TRADE,
    RL_FLAG_POST_ONLY,
    SELL,
    Books,
    push_report,
    rl_book,
    rl_command,
    rl_order,
    rl_report,
    rl_taker,
)
from ringlog._hashmap cimport map_free, map_get, map_init, map_prefetch, map_slot
from ringlog.includes.event cimport rl_header

from ringlog.engine.config import EngineConfig
from ringlog.engine.records import COMMAND_DTYPE

__all__ = ["Engine"]

cdef enum:
    CMD_NEW = 101
    CMD_CANCEL = 102
    CMD_MODIFY = 103
    CMD_MASS_CANCEL = 104
    CMD_ORDER_STATUS = 105
    CMD_OPEN_ORDERS = 106
    R_ACCEPTED = 201
    R_REJECTED = 202
    R_CANCELLED = 204
    R_MODIFIED = 205
    R_RESTED = 206
    R_ORDER_INFO = 207
    R_OPEN_ORDERS_END = 208
    LIMIT = 0
    MARKET = 1
    GTC = 0
    IOC = 1
    FOK = 2
    STP_MAX = 4
    # RejectReason
    UNKNOWN_SYMBOL = 1
    INVALID_QTY = 2
    INVALID_PRICE = 3
    INVALID_SIDE = 4
    INVALID_TYPE = 5
    DUPLICATE_ORDER_ID = 6
    UNKNOWN_ORDER = 7
    NOT_OWNER = 8
    POST_ONLY_WOULD_CROSS = 9
    PRICE_BAND = 10
    MAX_ORDER_QTY = 11
    MAX_OPEN_ORDERS = 12
    ORDER_POOL_FULL = 13
    UNKNOWN_COMMAND = 14
    MALFORMED = 15
    ACCOUNT_DISABLED = 16
    # CancelReason
    CXL_USER = 0
    CXL_UNFILLED = 1
    CXL_FOK = 2
    CXL_MASS = 4
    CXL_KILL = 5

cdef uint32_t CONTROL_BASE = 0xFFFFFF00     # ringlog.events.CONTROL_BASE: timers etc.
# the largest order quantity: level totals stay far from int64 overflow
cdef int64_t MAX_QTY = <int64_t>1 << 40
SNAPSHOT_MAGIC = b"RLENGIN1"
_HEAD = struct.Struct("<8sIIqqqqqq")        # magic, version, books, counters
_KILLED = struct.Struct("<II")              # v2: all disabled, n killed accounts (u32 each)


cdef class Engine(CyEventHandler):
    """Price-time priority order books per symbol as the processor's business logic.

    ``Engine(EngineConfig(...))``; see the module docstring and docs/matching.md. Not
    thread-safe: commands and queries come from the loop thread (or after it stopped).
    """

    def __init__(self, config):
        cdef int32_t i, n
        cdef list overrides
        if not isinstance(config, EngineConfig):
            raise TypeError(f"Engine() takes an EngineConfig, got {type(config).__name__}")
        self.config = config
        self.lookahead = True  # prefetch_c: the loop calls it a few commands ahead
        self.nogil_events = True  # on_event_nogil: the loop handles batches without the GIL
        self.default_stp = int(config.stp)
        self.md = config.market_data
        self.books = Books([(s.symbol, s.min_price, s.max_price) for s in config.symbols],
                           config.max_orders, config.l2_depth if config.market_data else 0)
        n = len(config.symbols)
        self.band_ticks = <int64_t*>malloc(n * sizeof(int64_t))
        self.band_ppm = <int64_t*>malloc(n * sizeof(int64_t))
        self.ref_price = <int64_t*>malloc(n * sizeof(int64_t))
        overrides = sorted(config.account_limits.items())
        self.max_qty = <int64_t*>malloc((1 + len(overrides)) * sizeof(int64_t))
        self.max_open = <int64_t*>malloc((1 + len(overrides)) * sizeof(int64_t))
        if (self.band_ticks == NULL or self.band_ppm == NULL or self.ref_price == NULL
                or self.max_qty == NULL or self.max_open == NULL):
            raise MemoryError("cannot allocate the engine's tables")
        for i, s in enumerate(config.symbols):
            self.band_ticks[i] = s.band_ticks
            self.band_ppm[i] = s.band_ppm
            self.ref_price[i] = s.reference_price
        map_init(&self.limit_index, max(1, len(overrides)))
        for i, lim in enumerate([config.limits] + [lim for _, lim in overrides]):
            self.max_qty[i] = lim.max_order_qty or INT64_MAX
            self.max_open[i] = lim.max_open_orders
        for i, (acct, _) in enumerate(overrides):
            map_slot(&self.limit_index, acct, 0)[0] = i + 1
        self.disabled = set()

    def __dealloc__(self):
        free(self.band_ticks)
        free(self.band_ppm)
        free(self.ref_price)
        free(self.max_qty)
        free(self.max_open)
        map_free(&self.limit_index)

    # -- the handler ------------------------------------------------------------------------
    cdef void prefetch_c(self, const rl_header* h, const char* payload) noexcept nogil:
        # the order id's line in the id map, which new orders insert into and cancels and
        # modifies look up: a random line of a map far larger than the caches
        cdef const rl_command* c = <const rl_command*>payload
        if h.length < sizeof(rl_command):
            return
        if CMD_NEW <= h.type_id <= CMD_MODIFY:
            map_prefetch(&self.books.ids, c.order_id)

    cdef int on_event_c(self, const rl_header* h, const char* payload, int64_t sequence,
                        bint end_of_batch) except -1:
        return self.on_event_nogil(h, payload, sequence, end_of_batch)

    cdef int on_event_nogil(self, const rl_header* h, const char* payload, int64_t sequence,
                            bint end_of_batch) except -1 nogil:
        # the processor's loop calls this without the GIL (nogil_events): the commands are
        # C; a mass cancel and a disabled account's check take the GIL themselves
        if h.type_id >= CONTROL_BASE:
            return 0                # timers and other control events carry no command
        self.command(h.type_id, payload, h.length)
        return self.flush(0)

    cdef int flush(self, int64_t key) except -1 nogil:
        """Emits the current command's outputs, in order: the books' arena is laid out as
        ``emit_packed_c`` takes it (``PACKED_HEADER``), so it goes in one call."""
        if self.books.out.len:
            self.emit_packed_nogil(self.books.out.buf, self.books.out.len)
        return 0

    cdef int command(self, uint32_t type_id, const char* payload, uint32_t length) except -1 nogil:
        """Runs one command; its outputs are left in the books' arena."""
        cdef rl_command c
        cdef uint8_t kind = <uint8_t>(type_id - 100) if 100 < type_id < 356 else 0
        if length >= sizeof(c):  # the usual command: one fixed-size copy, inlined
            memcpy(&c, payload, sizeof(c))
        else:  # short (malformed) payloads: the missing fields are zero
            memset(&c, 0, sizeof(c))
            memcpy(&c, payload, length)
        self.books.out.len = 0
        self.books.out.n = 0
        self.n_commands += 1
        if type_id < CMD_NEW or type_id > CMD_OPEN_ORDERS:
            return self.reject(&c, UNKNOWN_COMMAND, kind)
        if length != sizeof(rl_command):
            return self.reject(&c, MALFORMED, kind)
        if type_id == CMD_NEW:
            return self.new_order(&c)
        if type_id == CMD_CANCEL:
            return self.cancel(&c)
        if type_id == CMD_MODIFY:
            return self.modify(&c)
        if type_id == CMD_MASS_CANCEL:
            return self.mass_cancel(&c)
        if type_id == CMD_ORDER_STATUS:
            return self.order_status(&c)
        return self.open_orders(&c)

    # -- reports ----------------------------------------------------------------------------
    cdef int reject(self, const rl_command* c, uint8_t reason, uint8_t command) except -1 nogil:
        cdef rl_report* r = push_report(&self.books.out, R_REJECTED, c.account)
        r.order_id = c.order_id
        r.account = c.account
        r.symbol = c.symbol
        r.price = c.price
        r.qty = c.qty
        r.side = c.side
        r.reason = reason
        r.command = command
        self.n_rejected += 1
        return 0

    cdef int taker_report(self, uint32_t type_id, rl_book* b, const rl_taker* t, int64_t price,
                          int64_t qty, uint8_t reason) except -1 nogil:
        cdef rl_report* r = push_report(&self.books.out, type_id, t.account)
        r.order_id = t.id
        r.account = t.account
        r.symbol = b.symbol
        r.price = price
        r.qty = qty
        r.leaves = t.leaves if type_id != R_CANCELLED else 0
        r.side = t.side
        r.reason = reason
        r.command = t.command
        if type_id == R_CANCELLED:
            self.n_cancelled += 1
        return 0

    # -- rules ------------------------------------------------------------------------------
    cdef uint8_t check_price(self, rl_book* b, int64_t price) noexcept nogil:
        """0, INVALID_PRICE (outside the tick band) or PRICE_BAND (too far from the last
        trade, or from the reference price before the first trade)."""
        cdef int32_t i = <int32_t>(b - self.books.books)
        cdef int64_t ref, d
        if price < b.min_price or price > b.max_price:
            return INVALID_PRICE
        ref = b.last_price if b.last_price else self.ref_price[i]
        if ref:
            d = price - ref if price > ref else ref - price
            if self.band_ticks[i] and d > self.band_ticks[i]:
                return PRICE_BAND
            if self.band_ppm[i] and d * 1_000_000 > ref * self.band_ppm[i]:
                return PRICE_BAND
        return 0

    cdef int execute(self, rl_book* b, rl_taker* t, bint gtc, int64_t price) except -1 nogil:
        """Matches the taker, then rests its remainder (GTC) or cancels it."""
        cdef bint stp = self.books.match(b, t)
        if t.leaves > 0:
            if stp:
                self.taker_report(R_CANCELLED, b, t, price, t.leaves, CXL_SELF_TRADE)
            elif gtc:
                self.books.rest(b, t)
                self.taker_report(R_RESTED, b, t, price, t.qty, 0)
            else:
                self.taker_report(R_CANCELLED, b, t, price, t.leaves, CXL_UNFILLED)
        return 0

    cdef int new_order(self, const rl_command* c) except -1 nogil:
        cdef int32_t bi = <int32_t>map_get(&self.books.symbols, c.symbol, -1)
        cdef rl_book* b
        cdef rl_taker t
        cdef uint8_t r
        cdef int64_t lim
        cdef bint market, gtc
        if bi < 0:
            return self.reject(c, UNKNOWN_SYMBOL, 1)
        b = &self.books.books[bi]
        if c.side != BUY and c.side != SELL:
            return self.reject(c, INVALID_SIDE, 1)
        market = c.order_type == MARKET
        if (c.order_type > MARKET or c.tif > FOK or c.stp > STP_MAX
                or c.flags & ~RL_FLAG_POST_ONLY or (market and c.tif == GTC)
                or (c.flags & RL_FLAG_POST_ONLY and (market or c.tif != GTC))):
            return self.reject(c, INVALID_TYPE, 1)
        if c.qty <= 0 or c.qty > MAX_QTY:
            return self.reject(c, INVALID_QTY, 1)
        if market:
            if c.price != 0:
                return self.reject(c, INVALID_PRICE, 1)
        else:
            r = self.check_price(b, c.price)
            if r:
                return self.reject(c, r, 1)
        if self.any_disabled and self.is_disabled(c.account):
            return self.reject(c, ACCOUNT_DISABLED, 1)
        lim = self.limits_of(c.account)
        if c.qty > self.max_qty[lim]:
            return self.reject(c, MAX_ORDER_QTY, 1)
        if <int32_t>map_get(&self.books.ids, c.order_id, -1) >= 0:
            return self.reject(c, DUPLICATE_ORDER_ID, 1)
        gtc = c.tif == GTC
        if gtc:
            if (self.max_open[lim]
                    and map_get(&self.books.open_count, c.account, 0) >= self.max_open[lim]):
                return self.reject(c, MAX_OPEN_ORDERS, 1)
            if self.books.free_head < 0:
                return self.reject(c, ORDER_POOL_FULL, 1)
        t.id = c.order_id
        t.price = c.price if not market else (b.max_price if c.side == BUY else b.min_price)
        t.qty = c.qty
        t.leaves = c.qty
        t.account = c.account
        t.side = c.side
        t.flags = c.flags
        t.stp = c.stp
        t.stp_mode = c.stp if c.stp else self.default_stp
        t.command = 1
        if c.flags & RL_FLAG_POST_ONLY and self.books.would_cross(b, &t):
            return self.reject(c, POST_ONLY_WOULD_CROSS, 1)
        self.taker_report(R_ACCEPTED, b, &t, c.price, c.qty, 0)
        if c.tif == FOK and self.books.fillable(b, &t) < t.qty:
            self.taker_report(R_CANCELLED, b, &t, c.price, c.qty, CXL_FOK)
        else:
            self.execute(b, &t, gtc, c.price)
        if self.md and b.md_dirty:       # (no call when the book did not change)
            self.books.market_data(b, c.account, True)
        return 0

    cdef int cancel(self, const rl_command* c) except -1 nogil:
        cdef int32_t idx = <int32_t>map_get(&self.books.ids, c.order_id, -1)
        cdef int32_t bi
        if idx < 0:
            return self.reject(c, UNKNOWN_ORDER, 2)
        if self.books.orders[idx].account != c.account:
            return self.reject(c, NOT_OWNER, 2)
        bi = self.books.orders[idx].book
        self.books.cancel(idx, c.account, CXL_USER, 2)
        if self.md and self.books.books[bi].md_dirty:
            self.books.market_data(&self.books.books[bi], c.account, True)
        return 0

    cdef int modify(self, const rl_command* c) except -1 nogil:
        cdef int32_t idx = <int32_t>map_get(&self.books.ids, c.order_id, -1)
        cdef rl_order* o
        cdef rl_book* b
        cdef rl_taker t
        cdef uint8_t r = 0
        if idx < 0:
            return self.reject(c, UNKNOWN_ORDER, 3)
        o = &self.books.orders[idx]
        if o.account != c.account:
            return self.reject(c, NOT_OWNER, 3)
        if c.qty <= 0 or c.qty > MAX_QTY:
            return self.reject(c, INVALID_QTY, 3)
        if self.any_disabled and self.is_disabled(c.account):
            return self.reject(c, ACCOUNT_DISABLED, 3)
        b = &self.books.books[o.book]
        if c.price != o.price:
            r = self.check_price(b, c.price)
            if r:
                return self.reject(c, r, 3)
        if c.qty > self.max_qty[self.limits_of(c.account)]:
            return self.reject(c, MAX_ORDER_QTY, 3)
        if c.price == o.price and c.qty <= o.leaves:
            self.books.set_leaves(idx, c.qty)      # keeps its place in the FIFO
            self.books.report_order(R_MODIFIED, c.account, idx, 0, 3, o.qty)
        else:
            t.id = o.id
            t.price = c.price
            t.qty = o.qty - o.leaves + c.qty
            t.leaves = c.qty
            t.account = o.account
            t.side = o.side
            t.flags = o.flags
            t.stp = o.stp
            t.stp_mode = o.stp if o.stp else self.default_stp
            t.command = 3
            if t.flags & RL_FLAG_POST_ONLY and self.books.would_cross(b, &t):
                return self.reject(c, POST_ONLY_WOULD_CROSS, 3)
            self.books.unlink(idx)                 # loses priority: re-enters as if new
            self.books.release(idx)
            self.taker_report(R_MODIFIED, b, &t, t.price, t.qty, 0)
            self.execute(b, &t, True, t.price)
        if self.md and b.md_dirty:       # (no call when the book did not change)
            self.books.market_data(b, c.account, True)
        return 0

    cdef int mass_cancel(self, const rl_command* c) except -1 nogil:
        cdef int32_t lo = 0, hi = self.books.nbooks
        if c.symbol:
            lo = <int32_t>map_get(&self.books.symbols, c.symbol, -1)
            if lo < 0:
                return self.reject(c, UNKNOWN_SYMBOL, 4)
            hi = lo + 1
        with gil:  # walks every book: no hot path
            return self.cancel_resting(False, c.account, lo, hi, CXL_MASS, None)

    cdef int cancel_resting(self, bint every, uint32_t account, int32_t lo, int32_t hi,
                            uint8_t reason, list ids) except -1:
        """Cancels the resting orders of ``account`` (of every account with ``every``) in
        books lo..hi-1, in book and priority order; each gets a CANCELLED report (keyed by
        its account) and its id is appended to ``ids`` (if given)."""
        cdef int32_t bi, idx, nxt
        cdef uint8_t side
        cdef uint32_t owner
        for bi in range(lo, hi):
            for side in (BUY, SELL):
                idx = self.books.first_order(&self.books.books[bi], side)
                while idx >= 0:
                    nxt = self.books.next_order(idx)
                    owner = self.books.orders[idx].account
                    if every or owner == account:
                        if ids is not None:
                            ids.append(self.books.orders[idx].id)
                        self.books.cancel(idx, owner, reason, 4)
                    idx = nxt
            if self.md:
                self.books.market_data(&self.books.books[bi], account, True)
        return 0

    cdef inline int64_t limits_of(self, uint32_t account) noexcept nogil:
        """The index of the account's limits in max_qty/max_open (0: the defaults); no probe
        when no account has overrides."""
        return map_get(&self.limit_index, account, 0) if self.limit_index.size else 0

    cdef bint is_disabled(self, uint32_t account) noexcept nogil:
        if self.all_disabled:
            return True
        with gil:
            return account in self.disabled

    # -- the kill switch (the loop calls these; see BreakerConfig.kill) ---------------------
    def on_kill(self, key):
        """Cancels the resting orders of account ``key`` (None: every account) with reason
        KILL, emits the reports, and refuses the account's new orders and modifies
        (ACCOUNT_DISABLED) until ``on_enable``. Returns the cancelled order ids."""
        cdef list ids = []
        if key is not None and not 0 <= key < 2 ** 32:
            return ids  # not an account: nothing of it rests here
        self.books.out.len = 0
        self.books.out.n = 0
        self.cancel_resting(key is None, 0 if key is None else key, 0, self.books.nbooks,
                            CXL_KILL, ids)
        if key is None:
            self.all_disabled = True
        else:
            self.disabled.add(key)
        self.any_disabled = True
        self.flush(0)
        return ids

    def on_enable(self, key):
        """Accepts new orders again from account ``key`` (None: from every account)."""
        if key is None:
            self.all_disabled = False
            self.disabled.clear()
        else:
            self.disabled.discard(key)
        self.any_disabled = self.all_disabled or bool(self.disabled)

    def disabled_accounts(self):
        """``(all_disabled, sorted killed accounts)``."""
        return self.all_disabled, sorted(self.disabled)

    cdef int order_status(self, const rl_command* c) except -1 nogil:
        cdef int32_t idx = <int32_t>map_get(&self.books.ids, c.order_id, -1)
        if idx < 0:
            return self.reject(c, UNKNOWN_ORDER, 5)
        if self.books.orders[idx].account != c.account:
            return self.reject(c, NOT_OWNER, 5)
        return self.books.report_order(R_ORDER_INFO, c.account, idx, 0, 5,
                                       self.books.orders[idx].qty)

    cdef int open_orders(self, const rl_command* c) except -1 nogil:
        cdef int32_t bi, lo = 0, hi = self.books.nbooks, idx
        cdef int64_t n = 0
        cdef uint8_t side
        cdef rl_report* r
        if c.symbol:
            lo = <int32_t>map_get(&self.books.symbols, c.symbol, -1)
            if lo < 0:
                return self.reject(c, UNKNOWN_SYMBOL, 6)
            hi = lo + 1
        for bi in range(lo, hi):
            for side in range(BUY, SELL + 1):  # BUY, then SELL (a C loop: no tuple, no GIL)
                idx = self.books.first_order(&self.books.books[bi], side)
                while idx >= 0:
                    if self.books.orders[idx].account == c.account:
                        self.books.report_order(R_ORDER_INFO, c.account, idx, 0, 6,
                                                self.books.orders[idx].qty)
                        n += 1
                    idx = self.books.next_order(idx)
        r = push_report(&self.books.out, R_OPEN_ORDERS_END, c.account)
        r.order_id = n
        r.account = c.account
        r.symbol = c.symbol
        r.command = 6
        return 0

    # -- Python entry points ----------------------------------------------------------------
    def apply(self, uint32_t type_id, payload):
        """Runs one command given as bytes; returns its outputs as ``(type_id, bytes)`` in
        order (without emitting them). For tests and tools."""
        cdef const unsigned char[::1] body = memoryview(payload).cast("B")
        cdef char empty = 0
        cdef char* p = self.books.out.buf
        cdef list out = []
        cdef uint32_t length
        self.command(type_id, <const char*>&body[0] if body.shape[0] else &empty,
                     <uint32_t>body.shape[0])
        p = self.books.out.buf
        while p < self.books.out.buf + self.books.out.len:
            length = (<uint32_t*>p)[1]
            out.append(((<uint32_t*>p)[0], p[16:16 + length]))
            p += 16 + ((length + 7) & ~7)
        return out

    def process_commands(self, commands, type_ids, latencies=None):
        """Runs a COMMAND_DTYPE array in one C loop without emitting (engine-only benchmarks).

        ``type_ids`` is one Command id for all, or a uint32 array beside ``commands``; with
        ``latencies`` (an int64 array as long as ``commands``) each command's wall time in ns
        is written there. Returns the number of outputs the commands produced."""
        cdef const unsigned char[::1] raw = memoryview(commands).cast("B")
        cdef Py_ssize_t n = len(commands), i
        cdef const uint32_t[::1] types
        cdef int64_t[::1] lat
        cdef uint32_t one = 0
        cdef bint per_type = not isinstance(type_ids, int)
        cdef bint timed = latencies is not None
        cdef int64_t outputs = 0
        cdef timespec t0, t1
        cdef rl_header ah
        cdef const char* base
        if getattr(commands, "dtype", None) != COMMAND_DTYPE:
            raise TypeError("commands must be a numpy array of COMMAND_DTYPE")
        if n == 0:
            return 0
        if raw.shape[0] != n * <Py_ssize_t>sizeof(rl_command):
            raise ValueError(f"commands must be a contiguous COMMAND_DTYPE array "
                             f"({sizeof(rl_command)} bytes a record)")
        if per_type:
            types = type_ids
            if types.shape[0] != n:
                raise ValueError(f"type_ids has {types.shape[0]} entries for {n} commands")
        else:
            one = type_ids
        if timed:
            lat = latencies
            if lat.shape[0] < n:
                raise ValueError(f"latencies has room for {lat.shape[0]} of {n} commands")
        base = <const char*>&raw[0]
        for i in range(n):
            if i + LOOKAHEAD < n:  # as the processor's loop calls prefetch_c
                ah.type_id = types[i + LOOKAHEAD] if per_type else one
                ah.length = sizeof(rl_command)
                self.prefetch_c(&ah, base + (i + LOOKAHEAD) * sizeof(rl_command))
            if timed:
                clock_gettime(CLOCK_MONOTONIC, &t0)
            self.command(types[i] if per_type else one, base + i * sizeof(rl_command),
                         sizeof(rl_command))
            if timed:
                clock_gettime(CLOCK_MONOTONIC, &t1)
                lat[i] = (t1.tv_sec - t0.tv_sec) * 1_000_000_000 + (t1.tv_nsec - t0.tv_nsec)
            outputs += self.books.out.n
        self.books.out.len = 0
        self.books.out.n = 0
        return outputs

    # -- state ------------------------------------------------------------------------------
    def on_snapshot(self):
        """Every book byte for byte (orders in priority order), the counters and the killed
        accounts."""
        killed = sorted(self.disabled)
        return (_HEAD.pack(SNAPSHOT_MAGIC, 2, self.books.nbooks, self.n_commands,
                           self.n_rejected, self.n_cancelled, self.books.n_cancels,
                           self.books.n_trades, self.books.traded_qty)
                + _KILLED.pack(self.all_disabled, len(killed))
                + struct.pack(f"<{len(killed)}I", *killed) + self.books.dump_orders())

    def on_restore(self, data):
        """Replaces the state with one ``on_snapshot`` wrote (ValueError if it does not fit)."""
        data = bytes(data)
        if len(data) < _HEAD.size or data[:8] != SNAPSHOT_MAGIC:
            raise ValueError("not a matching engine snapshot (bad magic)")
        _, version, nbooks, cmds, rej, cxl, book_cxl, trades, qty = _HEAD.unpack_from(data)
        if version not in (1, 2) or nbooks != self.books.nbooks:
            raise ValueError(f"engine snapshot version {version} with {nbooks} books does not "
                             f"fit this engine ({self.books.nbooks} books)")
        off = _HEAD.size
        every, killed = False, []
        if version >= 2:  # version 1 had no kill switch: nobody disabled
            every, n = _KILLED.unpack_from(data, off)
            killed = list(struct.unpack_from(f"<{n}I", data, off + _KILLED.size))
            off += _KILLED.size + 4 * n
        self.books.load_orders(data[off:])
        self.all_disabled = bool(every)
        self.disabled = set(killed)
        self.any_disabled = self.all_disabled or bool(self.disabled)
        self.n_commands, self.n_rejected, self.n_cancelled = cmds, rej, cxl
        self.books.n_trades, self.books.traded_qty = trades, qty
        self.books.n_cancels = book_cxl

    def state_hash(self):
        """A digest of the whole state (books, FIFO order, counters): equal engines, equal
        hashes."""
        return hashlib.blake2b(self.on_snapshot(), digest_size=16).hexdigest()

    def stats(self):
        """Counters: commands, rejected, cancelled, trades, traded_qty, live_orders."""
        return {"commands": self.n_commands, "rejected": self.n_rejected,
                "cancelled": self.n_cancelled + self.books.n_cancels, "trades": self.books.n_trades,
                "traded_qty": self.books.traded_qty, "live_orders": self.books.live_orders}

    def best(self, uint32_t symbol):
        """``(bid_price, bid_qty, ask_price, ask_qty)`` of a symbol; a missing side is 0, 0."""
        return self.books.best(symbol)

    def depth(self, uint32_t symbol, Py_ssize_t levels=10):
        """``{"bids": [(price, qty, orders)...], "asks": [...]}``, best first."""
        return {"bids": self.books.levels(symbol, BUY, levels),
                "asks": self.books.levels(symbol, SELL, levels)}

    def order(self, uint64_t order_id):
        """The live order as a dict (id, account, symbol, side, price, qty, leaves, ...) or
        None."""
        return self.books.order(order_id)

    def book(self, uint32_t symbol):
        """The full book of a symbol: last price and every level with its FIFO order list."""
        last, n = self.books.book_info(symbol)
        return {"symbol": symbol, "last_price": last, "orders": n,
                "bids": [{"price": p, "qty": q, "orders": o}
                         for p, q, o in self.books.levels(symbol, BUY, -1, True)],
                "asks": [{"price": p, "qty": q, "orders": o}
                         for p, q, o in self.books.levels(symbol, SELL, -1, True)]}

    def dump_state(self):
        """Every book (see ``book``), the counters and the state hash, JSON-able."""
        return {"engine": "ringlog.engine", "state_hash": self.state_hash(),
                "stats": self.stats(),
                "books": [self.book(s.symbol) for s in self.config.symbols]}
