# The circuit breaker's C-level API, for the processor's Cython loop: the per-output decision
# (`breaker_check`) and the per-input count (`breaker_input`), inline, without a call. The
# Python API (`check`, `on_input`, ...) and `check_c`/`on_input_c` call these, so every path
# decides identically.
from libc.stdint cimport int64_t, uint32_t, uint64_t


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
    # The last accepted timestamps (at most `max_count`), oldest first (circular): an output
    # is over the limit when `max_count` of them are less than `span` old. Event time never
    # goes back, so a timestamp that has left the window never counts again: such are
    # dropped when it matters (`max_count` kept, or the buffer full), not per output (no
    # read of the oldest per output). The buffer grows (doubling, up to `max_count`) only
    # when dropping them leaves it over half full: it follows what the window holds at its
    # busiest, not `max_count` (8 MB at 10**6) up front.
    int64_t* ts
    int64_t cap      # entries allocated (0: none yet)
    int64_t head     # index of the oldest
    int64_t count
    int64_t max_count, span


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
cdef int window_room(Window* w, int64_t t, int64_t need) noexcept nogil  # -1: no memory


cdef inline void window_prune(Window* w, int64_t t) noexcept nogil:
    # Drops the timestamps `span` or more older than `t` (the clock: they never count
    # again).
    while w.count and t - w.ts[w.head] >= w.span:
        w.head += 1
        if w.head == w.cap:
            w.head = 0
        w.count -= 1


cdef inline bint window_full_within(Window* w, int64_t t) noexcept nogil:
    # Are `max_count` accepted outputs less than `span` old at `t`? The same answer as
    # "the max_count-th last accepted output is less than `span` old". Fewer kept at all:
    # fewer inside the window, nothing to read.
    if w.count < w.max_count:
        return False
    window_prune(w, t)
    return w.count >= w.max_count


cdef inline int window_add(Window* w, int64_t t) noexcept nogil:
    # Counts an accepted output at `t`; -1 if the buffer cannot grow (no memory).
    cdef int64_t i
    if w.count == w.max_count:  # a throttled output past a full window: forget the oldest
        w.count -= 1
        w.head += 1
        if w.head == w.cap:
            w.head = 0
    elif w.count == w.cap and window_room(w, t, 1) < 0:
        return -1
    i = w.head + w.count
    w.ts[i - w.cap if i >= w.cap else i] = t  # a compare instead of a division per output
    w.count += 1
    return 0


cdef inline int window_add_run(Window* w, int64_t t, int64_t k) noexcept nogil:
    # Counts `k` accepted outputs at `t` (count + k <= max_count: none is forgotten), in one
    # pass; -1 if the buffer cannot grow (no memory).
    if w.cap - w.count < k and window_room(w, t, k) < 0:
        return -1
    cdef int64_t i = w.head + w.count, _j
    if i >= w.cap:
        i -= w.cap
    for _j in range(k):
        w.ts[i] = t
        i += 1
        if i == w.cap:
            i = 0
    w.count += k
    return 0


cdef inline Window* limit_window(CountLimit* L, int64_t key) noexcept nogil:
    # The window of `key` under limit `L` (a key gets its own on first use; past the cap of
    # distinct keys, the shared overflow one). Its buffer is allocated by window_add.
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
    cdef uint32_t* allow_ids            # the allow-list in C, sorted: checked without the GIL
    cdef Py_ssize_t n_allow
    cdef int64_t half_open_after, opened_at
    cdef public object last_trip
    cdef object alert
    cdef readonly list held
    cdef readonly int64_t trips, resets, passed, throttled, checks, released, discarded
    cdef readonly int64_t alert_errors, inputs
    cdef readonly int kill            # kill switch on trip: KILL_NONE, KILL_KEY, KILL_ALL, ...
    cdef readonly int last_trip_per   # the tripping limit: 0 total/ratio, 1 per key, 2 per type
    cdef public bint defer_alert      # the loop alerts after running the kill switch
    # breaker_pass_run applies: count limits in total or per key only, no ratio limit, no
    # allow-list
    cdef bint runs_ok

    cdef int64_t _now(self, int64_t ts) noexcept
    cdef void _ratio_advance(self, int64_t t) noexcept nogil
    cdef void on_input_c(self, int64_t timestamp_ns) noexcept
    cdef int check_c(self, int64_t timestamp_ns, uint32_t type_id, int64_t key) except -1
    cdef int _trip(self, int64_t t, name, int64_t count, int64_t window, key, int per,
                   ratio=*) except -1
    cdef int _open_or_allowed(self, uint32_t type_id) noexcept nogil
    cdef int _trip_limit(self, Py_ssize_t i, int64_t t, uint32_t type_id,
                         int64_t key) except -1
    cdef int _ratio_check(self, int64_t t) except -1 nogil


# One input at event time `timestamp_ns`: moves the clock, counts it (and, with a ratio
# limit, fills its bucket). Inline so that the loop pays no call per input; the one
# implementation (BreakerCore.on_input_c calls it). No GIL needed.
cdef inline void breaker_input(BreakerCore b, int64_t timestamp_ns) noexcept nogil:
    if timestamp_ns > b.clock:
        b.clock = timestamp_ns
    b.inputs += 1
    if b.ratio_window:
        b._ratio_advance(b.clock)
        b.ins[RATIO_BUCKETS - 1] += 1


# The decision for one output (PASS, HOLD, THROTTLE or TRIPPED) at event time
# `timestamp_ns`: the one implementation (BreakerCore.check_c calls it). Inline so that the
# loop pays no call per output: the hot path reads and writes C structs only, without the
# GIL; an open breaker, the allow-list and the ratio limit are out of line (C too), a trip
# (Python objects) takes the GIL (a nogil handler's loop holds none).
cdef inline int breaker_check(BreakerCore b, int64_t timestamp_ns, uint32_t type_id,
                              int64_t key) except -1 nogil:
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
        b.cwins[i] = w
        if window_full_within(w, t):
            if not L.throttle:
                with gil:
                    return b._trip_limit(i, t, type_id, key)
            throttled = True
    if b.ratio_window and b._ratio_check(t):
        return BR_TRIPPED
    for i in range(b.nlimits):  # passed every limit: counted in each window
        if window_add(b.cwins[i], t) < 0:
            with gil:
                raise MemoryError("cannot grow a breaker window")
    if b.state == BR_HALF_OPEN:
        b.state = BR_CLOSED  # the probe passed every limit
    if throttled:
        b.throttled += 1
        return BR_THROTTLE
    b.passed += 1
    return BR_PASS


# `k` outputs at event time `timestamp_ns` under breaker key `key` (a handler's outputs of
# one input, e.g. the engine's reports of one command to one account): 1 if each of them
# passes, as `k` breaker_check calls would decide it (PASS, not THROTTLE), and then they are
# counted as those calls would count them; 0 if they must be checked one by one. Exact:
# between outputs at one event time no timestamp leaves a window, so the j-th of them
# passes a limit iff its window held fewer than max_count - j; all pass iff
# count + k <= max_count in every window. One lookup and one check per run of outputs
# instead of per output. Applies to a closed breaker whose limits are in total or per key,
# without a ratio limit or an allow-list (`runs_ok`).
cdef inline int breaker_pass_run(BreakerCore b, int64_t timestamp_ns, int64_t key,
                                 int64_t k) except -1 nogil:
    cdef Py_ssize_t i
    cdef CountLimit* L
    cdef Window* w
    if not b.runs_ok or b.state != BR_CLOSED:
        return 0
    if timestamp_ns > b.clock:
        b.clock = timestamp_ns
    cdef int64_t t = b.clock
    for i in range(b.nlimits):
        L = b.climits[i]
        w = limit_window(L, key)
        b.cwins[i] = w
        if w.count + k > w.max_count:
            window_prune(w, t)
            if w.count + k > w.max_count:
                return 0
    for i in range(b.nlimits):
        if window_add_run(b.cwins[i], t, k) < 0:
            with gil:
                raise MemoryError("cannot grow a breaker window")
    b.checks += k
    b.passed += k
    return 1
