# The circuit breaker's C-level API, for the processor's Cython loop: the per-output decision
# (`check_c`) and the per-input count (`on_input_c`) without a Python call. The Python API
# (`check`, `on_input`, `hold`, ...) calls these, so both paths decide identically.
from libc.stdint cimport int64_t, uint32_t


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
