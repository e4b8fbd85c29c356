# The circuit breaker's C-level API, for the processor's Cython loop: the per-output decision
# (`breaker_check`) and the per-input count (`breaker_input`), inline, without a call. The
# Python API (`check`, `on_input`, ...) and `check_c`/`on_input_c` call these, so every path
# decides identically.
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc


cdef enum:
    RATIO_BUCKETS = 16


# decisions for one output, and breaker states (exported to Python as PASS, ..., CLOSED, ...)
cdef enum:
    BR_PASS = 0
    BR_HOLD = 1
    BR_THROTTLE = 2
    BR_TRIPPED = 3
    BR_CLOSED = 0
    BR_OPEN = 1
    BR_HALF_OPEN = 2


# the kill switch on a trip (BreakerConfig.kill)
cdef enum:
    KILL_NONE = 0
    KILL_KEY = 1         # a per-key trip cancels that key's resting orders
    KILL_ALL = 2         # any trip cancels everyone's
    KILL_KEY_OR_ALL = 3  # the key's on a per-key trip, everyone's on any other


cdef struct Window:
    int64_t* ts      # the last `cap` accepted timestamps (circular)
    int64_t cap
    int64_t head     # index of the oldest when full
    int64_t count


cdef struct CountLimit:
    # N outputs per W ns, in total, per handler key or per type id (one _CountLimit's state)
    int64_t max_count, window_ns
    int per            # 0 total, 1 handler key, 2 type id
    bint throttle
    Window total
    Window* keyed      # max_keys + 1 windows (the last is the shared overflow window)
    int64_t* keys      # open-addressing table of keys ...
    int64_t* slot      # ... and the window index of each used entry (-1 = empty)
    int64_t max_keys, nkeys, table
    int64_t last_key   # the key found last and its window: consecutive outputs often
    Window* last_win   # share a key (a key's window never moves: the table only grows)


# Window helpers: C structs only, inline (breaker_check below runs in the loop).
cdef inline bint window_full_within(Window* w, int64_t t, int64_t span) noexcept nogil:
    return w.count == w.cap and t - w.ts[w.head] < span


cdef inline void window_add(Window* w, int64_t t) noexcept nogil:
    cdef int64_t i
    if w.count < w.cap:  # filling: head stays 0 until full (see _load), no wrap yet
        i = w.head + w.count
        w.ts[i - w.cap if i >= w.cap else i] = t
        w.count += 1
    else:  # full: overwrite the oldest; a compare instead of a division per output
        w.ts[w.head] = t
        w.head += 1
        if w.head == w.cap:
            w.head = 0


cdef inline Window* limit_window(CountLimit* L, int64_t key) noexcept nogil:
    # The window of `key` under limit `L` (created on first use; past the cap of distinct
    # keys, the shared overflow one); NULL if its memory cannot be allocated.
    if not L.per:
        return &L.total
    if L.last_win != NULL and L.last_key == key:
        return L.last_win
    cdef uint64_t h = (<uint64_t>key * 0x9E3779B97F4A7C15ULL) >> 17
    cdef int64_t i = h & (L.table - 1), idx
    while L.slot[i] >= 0 and L.keys[i] != key:
        i = (i + 1) & (L.table - 1)
    if L.slot[i] >= 0:
        idx = L.slot[i]
    elif L.nkeys < L.max_keys:
        idx = L.nkeys
        L.nkeys += 1
        L.keys[i] = key
        L.slot[i] = idx
    else:
        idx = L.max_keys
    cdef Window* w = &L.keyed[idx]
    if w.ts == NULL:
        w.cap = L.max_count
        w.ts = <int64_t*>calloc(L.max_count, sizeof(int64_t))
        if w.ts == NULL:
            return NULL
    L.last_key = key
    L.last_win = w
    return w


cdef class BreakerCore:
    cdef list _limits
    cdef CountLimit** climits           # each limit's C state, in order (owned by _limits)
    cdef Window** cwins                 # check_c: each limit's window for this output
    cdef Py_ssize_t nlimits
    cdef readonly int state
    cdef int64_t clock                  # event time: the largest timestamp seen
    cdef int64_t ratio_window, ratio_min_inputs
    cdef double ratio_max
    cdef object ratio_name
    cdef int64_t bucket_start
    cdef int64_t ins[RATIO_BUCKETS]
    cdef int64_t outs[RATIO_BUCKETS]
    cdef frozenset allow
    cdef bint has_allow                 # skip the allow-list lookup when it is empty
    cdef int64_t half_open_after, opened_at
    cdef public object last_trip
    cdef object alert
    cdef readonly list held
    cdef readonly int64_t trips, resets, passed, throttled, checks, released, discarded
    cdef readonly int64_t alert_errors, inputs
    cdef readonly int kill            # kill switch on trip: KILL_NONE, KILL_KEY, KILL_ALL, ...
    cdef readonly int last_trip_per   # the tripping limit: 0 total/ratio, 1 per key, 2 per type
    cdef public bint defer_alert      # the loop alerts after running the kill switch

    cdef int64_t _now(self, int64_t ts) noexcept
    cdef void _ratio_advance(self, int64_t t) noexcept
    cdef void on_input_c(self, int64_t timestamp_ns) noexcept
    cdef int check_c(self, int64_t timestamp_ns, uint32_t type_id, int64_t key) except -1
    cdef int _trip(self, int64_t t, name, int64_t count, int64_t window, key, int per,
                   ratio=*) except -1
    cdef int _open_or_allowed(self, uint32_t type_id) except -2
    cdef int _trip_limit(self, Py_ssize_t i, int64_t t, uint32_t type_id,
                         int64_t key) except -1
    cdef int _ratio_check(self, int64_t t) except -1


# One input at event time `timestamp_ns`: moves the clock, counts it (and, with a ratio
# limit, fills its bucket). Inline so that the loop pays no call per input; the one
# implementation (BreakerCore.on_input_c calls it).
cdef inline void breaker_input(BreakerCore b, int64_t timestamp_ns) noexcept:
    if timestamp_ns > b.clock:
        b.clock = timestamp_ns
    b.inputs += 1
    if b.ratio_window:
        b._ratio_advance(b.clock)
        b.ins[RATIO_BUCKETS - 1] += 1


# The decision for one output (PASS, HOLD, THROTTLE or TRIPPED) at event time
# `timestamp_ns`: the one implementation (BreakerCore.check_c calls it). Inline so that the
# loop pays no call per output: the hot path reads and writes C structs only; an open
# breaker, the allow-list, the ratio limit and a trip (Python objects) are out of line.
cdef inline int breaker_check(BreakerCore b, int64_t timestamp_ns, uint32_t type_id,
                              int64_t key) except -1:
    cdef Py_ssize_t i
    cdef CountLimit* L
    cdef Window* w
    cdef bint throttled = False
    cdef int decision
    if timestamp_ns > b.clock:
        b.clock = timestamp_ns
    cdef int64_t t = b.clock
    b.checks += 1
    if b.state == BR_OPEN or b.has_allow:
        decision = b._open_or_allowed(type_id)
        if decision >= 0:
            return decision
    for i in range(b.nlimits):  # each limit's window for this output, found once
        L = b.climits[i]
        w = limit_window(L, key if L.per == 1 else type_id)
        if w == NULL:
            raise MemoryError("cannot allocate a breaker window")
        b.cwins[i] = w
        if window_full_within(w, t, L.window_ns):
            if not L.throttle:
                return b._trip_limit(i, t, type_id, key)
            throttled = True
    if b.ratio_window and b._ratio_check(t):
        return BR_TRIPPED
    for i in range(b.nlimits):  # passed every limit: counted in each window
        window_add(b.cwins[i], t)
    if b.state == BR_HALF_OPEN:
        b.state = BR_CLOSED  # the probe passed every limit
    if throttled:
        b.throttled += 1
        return BR_THROTTLE
    b.passed += 1
    return BR_PASS
