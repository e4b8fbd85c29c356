"""The circuit breaker on output volume: exact sliding windows in event time.

A count limit of N outputs per W ns keeps the timestamps of the last N outputs in a circular
buffer: the next output is over the limit exactly when the oldest of those N is less than W
old. Per-key limits keep one such buffer per key in an open-addressing table with a cap on
distinct keys (keys past the cap share one overflow window: stricter, never unlimited). The
output/input ratio limit counts in 16 buckets over its window. Time is only ever the event
timestamps the processor passes in, so a replay makes the same decisions. Not thread-safe:
only the processor's loop thread calls it.
"""

from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free

import msgspec

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "PASS", "HOLD", "THROTTLE", "TRIPPED", "BreakerCore",
           "KillReport", "TripReport"]

PASS, HOLD, THROTTLE, TRIPPED = BR_PASS, BR_HOLD, BR_THROTTLE, BR_TRIPPED
CLOSED, OPEN, HALF_OPEN = BR_CLOSED, BR_OPEN, BR_HALF_OPEN
_STATE_NAMES = ("closed", "open", "half_open")
_KILL_MODES = {"none": KILL_NONE, "key": KILL_KEY, "all": KILL_ALL, "key_or_all": KILL_KEY_OR_ALL}


cdef struct Window:
    int64_t* ts      # the last `cap` accepted timestamps (circular)
    int64_t cap
    int64_t head     # index of the oldest when full
    int64_t count


cdef inline bint window_full_within(Window* w, int64_t t, int64_t span) noexcept nogil:
    return w.count == w.cap and t - w.ts[w.head] < span


cdef inline void window_add(Window* w, int64_t t) noexcept nogil:
    if w.count < w.cap:
        w.ts[(w.head + w.count) % w.cap] = t
        w.count += 1
    else:
        w.ts[w.head] = t
        w.head = (w.head + 1) % w.cap


cdef class _CountLimit:
    """N outputs per W ns, in total, per handler key or per type id."""

    cdef int64_t max_count, window_ns
    cdef int per          # 0 total, 1 handler key, 2 type id
    cdef bint throttle
    cdef object name
    cdef Window total
    cdef Window* keyed    # max_keys + 1 windows (the last is the shared overflow window)
    cdef int64_t* keys    # open-addressing table of keys ...
    cdef int64_t* slot    # ... and the window index of each used entry (-1 = empty)
    cdef int64_t max_keys, nkeys, table

    def __cinit__(self, int64_t max_count, int64_t window_ns, int per, bint throttle, name,
                  int64_t max_keys):
        cdef int64_t i
        self.max_count, self.window_ns, self.per = max_count, window_ns, per
        self.throttle, self.name, self.max_keys = throttle, name, max_keys
        self.total.cap = max_count
        self.total.ts = <int64_t*>calloc(max_count, sizeof(int64_t))
        if per:
            self.table = 1
            while self.table < 2 * max_keys:
                self.table <<= 1
            self.keys = <int64_t*>calloc(self.table, sizeof(int64_t))
            self.slot = <int64_t*>calloc(self.table, sizeof(int64_t))
            self.keyed = <Window*>calloc(max_keys + 1, sizeof(Window))
            if self.keys == NULL or self.slot == NULL or self.keyed == NULL:
                raise MemoryError("cannot allocate breaker windows")
            for i in range(self.table):
                self.slot[i] = -1
        if self.total.ts == NULL:
            raise MemoryError("cannot allocate breaker windows")

    def __dealloc__(self):
        cdef int64_t i
        free(self.total.ts)
        if self.keyed != NULL:
            for i in range(self.max_keys + 1):
                free(self.keyed[i].ts)
        free(self.keyed)
        free(self.keys)
        free(self.slot)

    cdef Window* window(self, int64_t key) except NULL:
        """The window of ``key`` (created on first use; past the cap, the overflow one)."""
        if not self.per:
            return &self.total
        cdef uint64_t h = (<uint64_t>key * 0x9E3779B97F4A7C15ULL) >> 17
        cdef int64_t i = h & (self.table - 1), idx
        while self.slot[i] >= 0 and self.keys[i] != key:
            i = (i + 1) & (self.table - 1)
        if self.slot[i] >= 0:
            idx = self.slot[i]
        elif self.nkeys < self.max_keys:
            idx = self.nkeys
            self.nkeys += 1
            self.keys[i] = key
            self.slot[i] = idx
        else:
            idx = self.max_keys
        cdef Window* w = &self.keyed[idx]
        if w.ts == NULL:
            w.cap = self.max_count
            w.ts = <int64_t*>calloc(self.max_count, sizeof(int64_t))
            if w.ts == NULL:
                raise MemoryError("cannot allocate a breaker window")
        return w

    def clear(self):
        """Empties every window (keys stay known)."""
        cdef int64_t i
        self.total.count = self.total.head = 0
        if self.keyed != NULL:
            for i in range(self.max_keys + 1):
                self.keyed[i].count = self.keyed[i].head = 0

    def state(self):
        """The windows as plain data (for snapshots), keys in insertion order."""
        cdef int64_t i
        order = sorted((self.slot[i], self.keys[i]) for i in range(self.table)
                       if self.per and self.slot[i] >= 0)
        keyed = [[k, _dump(&self.keyed[idx])] for idx, k in order]
        overflow = _dump(&self.keyed[self.max_keys]) if self.per else None
        return [_dump(&self.total), keyed, overflow]

    def load(self, state):
        """Restores windows from ``state()`` output (into a fresh limit)."""
        total, keyed, overflow = state
        _load(&self.total, total)
        for k, wd in keyed:
            _load(self.window(k), wd)
        if overflow is not None and overflow[2]:
            self.nkeys = self.max_keys
            _load(self.window(-1 if self.max_keys else 0), overflow)


cdef list _dump(Window* w):
    cdef int64_t j
    if w.ts == NULL:
        return [0, 0, []]
    return [w.head, w.count, [w.ts[(w.head + j) % w.cap] for j in range(w.count)]]


cdef void _load(Window* w, wd):
    w.head = 0
    w.count = 0
    for t in wd[2]:
        window_add(w, t)


cdef class BreakerCore:
    """Decisions for each output: PASS, HOLD (open), THROTTLE (soft limit) or TRIPPED."""

    PASS, HOLD, THROTTLE, TRIPPED = BR_PASS, BR_HOLD, BR_THROTTLE, BR_TRIPPED

    def __init__(self, limits, ratio=None, allow=(), half_open_after_ns=None, alert=None,
                 int64_t max_keys=4096, kill="none"):
        self._limits = [_CountLimit(l.max_count, l.window_ns,
                                    {None: 0, "key": 1, "type": 2}[l.per],
                                    l.tier == "throttle", l.name or f"limit{i}", max_keys)
                        for i, l in enumerate(limits)]
        self.ratio_window = 0
        if ratio is not None:
            self.ratio_window = ratio.window_ns
            self.ratio_min_inputs = ratio.min_inputs
            self.ratio_max = ratio.max_ratio
            self.ratio_name = ratio.name or "ratio"
        self.allow = frozenset(allow)
        self.has_allow = len(self.allow) > 0
        self.half_open_after = -1 if half_open_after_ns is None else half_open_after_ns
        self.alert = alert
        self.kill = _KILL_MODES[kill]
        self.held = []
        self.state = BR_CLOSED
        self.clock = -(1 << 62)

    cdef int64_t _now(self, int64_t ts) noexcept:
        if ts > self.clock:
            self.clock = ts
        return self.clock

    cdef void _ratio_advance(self, int64_t t) noexcept:
        cdef int64_t width = self.ratio_window // RATIO_BUCKETS or 1, i, steps
        if self.bucket_start == 0 and self.ins[0] == 0 and self.outs[0] == 0:
            self.bucket_start = t - t % width
        steps = (t - self.bucket_start) // width
        if steps <= 0:
            return
        if steps >= RATIO_BUCKETS:
            for i in range(RATIO_BUCKETS):
                self.ins[i] = 0
                self.outs[i] = 0
        else:
            for i in range(RATIO_BUCKETS - steps):
                self.ins[i] = self.ins[i + steps]
                self.outs[i] = self.outs[i + steps]
            for i in range(RATIO_BUCKETS - steps, RATIO_BUCKETS):
                self.ins[i] = 0
                self.outs[i] = 0
        self.bucket_start += steps * width

    def on_input(self, int64_t timestamp_ns):
        """Counts an input event (for the ratio limit) at its event time."""
        self.on_input_c(timestamp_ns)

    cdef void on_input_c(self, int64_t timestamp_ns) noexcept:
        cdef int64_t t = self._now(timestamp_ns)
        self.inputs += 1
        if self.ratio_window:
            self._ratio_advance(t)
            self.ins[RATIO_BUCKETS - 1] += 1

    def tick(self, int64_t timestamp_ns):
        """While open: True when an input at ``timestamp_ns`` ends the cool-down (the
        breaker turns half-open). It does not move the clock: the input held back while open
        is judged later at its own event times."""
        if self.state == BR_OPEN and self.half_open_after >= 0 \
                and timestamp_ns - self.opened_at >= self.half_open_after:
            self.state = BR_HALF_OPEN
            return True
        return False

    def check(self, int64_t timestamp_ns, uint32_t type_id=0, int64_t key=0):
        """The decision for one output at event time ``timestamp_ns``."""
        return self.check_c(timestamp_ns, type_id, key)

    cdef int check_c(self, int64_t timestamp_ns, uint32_t type_id, int64_t key) except -1:
        cdef int64_t t = self._now(timestamp_ns), sin, sout, i
        cdef _CountLimit lim
        cdef Window* w
        cdef bint throttled = False
        self.checks += 1
        if self.state == BR_OPEN:
            if self.has_allow and type_id in self.allow:
                self.passed += 1
                return BR_PASS
            return BR_HOLD
        if self.has_allow and self.state == BR_CLOSED and type_id in self.allow:
            self.passed += 1
            return BR_PASS
        for lim in self._limits:
            w = lim.window(key if lim.per == 1 else type_id)
            if window_full_within(w, t, lim.window_ns):
                if lim.throttle:
                    throttled = True
                    continue
                return self._trip(t, lim.name, lim.max_count, lim.window_ns,
                                  key if lim.per == 1 else (type_id if lim.per else None),
                                  lim.per)
        if self.ratio_window:
            self._ratio_advance(t)
            sin = sout = 0
            for i in range(RATIO_BUCKETS):
                sin += self.ins[i]
                sout += self.outs[i]
            if sin >= self.ratio_min_inputs and (sout + 1) > self.ratio_max * sin:
                return self._trip(t, self.ratio_name, sout + 1, self.ratio_window, None, 0,
                                  ratio=(sout + 1) / sin)
            self.outs[RATIO_BUCKETS - 1] += 1
        for lim in self._limits:
            window_add(lim.window(key if lim.per == 1 else type_id), t)
        if self.state == BR_HALF_OPEN:
            self.state = BR_CLOSED  # the probe passed every limit
        if throttled:
            self.throttled += 1
            return BR_THROTTLE
        self.passed += 1
        return BR_PASS

    cdef int _trip(self, int64_t t, name, int64_t count, int64_t window, key, int per,
                   ratio=None) except -1:
        self.state = BR_OPEN
        self.opened_at = t
        self.trips += 1
        self.last_trip_per = per
        self.last_trip = TripReport(name, count, window, key, t, ratio)
        if not self.defer_alert:
            self.send_alert(self.last_trip)
        return BR_TRIPPED

    def send_alert(self, report):
        """Calls the alert hook with ``report`` (errors are counted, never raised). The loop
        calls it after the kill switch ran, with what was cancelled in ``report.kill``."""
        if self.alert is not None:
            try:
                self.alert(report)
            except Exception:
                self.alert_errors += 1  # an alert hook never breaks the breaker

    def kill_scope(self):
        """Whom the kill switch cancels for the last trip: ``(True, key)`` for one key,
        ``(True, None)`` for everyone, ``(False, None)`` for no one."""
        per_key = self.last_trip_per == 1 and self.last_trip is not None
        if self.kill == KILL_ALL or (self.kill == KILL_KEY_OR_ALL and not per_key):
            return True, None
        if per_key and (self.kill == KILL_KEY or self.kill == KILL_KEY_OR_ALL):
            return True, self.last_trip.key
        return False, None

    def hold(self, bytes record):
        """Keeps an output that may not be published while open (never dropped)."""
        self.held.append(record)

    def release_held(self):
        """Returns the held outputs in order and forgets them (they are published)."""
        out, self.held = self.held, []
        self.released += len(out)
        return out

    def discard_held(self):
        """Drops the held outputs; returns how many."""
        n = len(self.held)
        self.held = []
        self.discarded += n
        return n

    def reset(self, int64_t timestamp_ns):
        """Operator reset: closes the breaker and starts every window afresh, so the input
        held back while open is judged at its own event times (the reset's timestamp does
        not move the clock). Held outputs stay held until released or discarded."""
        cdef _CountLimit lim
        cdef int i
        if self.state != BR_CLOSED:
            self.resets += 1
        self.state = BR_CLOSED
        for lim in self._limits:
            lim.clear()
        for i in range(RATIO_BUCKETS):
            self.ins[i] = 0
            self.outs[i] = 0

    @property
    def is_open(self):
        """True while OPEN (HALF_OPEN lets a probe through)."""
        return self.state == BR_OPEN

    @property
    def state_name(self):
        """closed, open or half_open."""
        return _STATE_NAMES[self.state]

    @property
    def held_count(self):
        """Outputs held while open."""
        return len(self.held)

    def counters(self):
        """Every counter, for metrics."""
        return {"state": self.state_name, "trips": self.trips, "resets": self.resets,
                "held": len(self.held), "released": self.released,
                "discarded": self.discarded, "throttled": self.throttled,
                "passed": self.passed, "checks": self.checks, "inputs": self.inputs,
                "alert_errors": self.alert_errors}

    def snapshot(self):
        """The full state (windows, counters, held outputs) as msgpack bytes."""
        return msgspec.msgpack.encode([
            self.state, self.clock, self.opened_at, self.bucket_start,
            [self.ins[i] for i in range(RATIO_BUCKETS)],
            [self.outs[i] for i in range(RATIO_BUCKETS)],
            [(<_CountLimit>lim).state() for lim in self._limits], self.held,
            [self.trips, self.resets, self.passed, self.throttled, self.checks,
             self.released, self.discarded, self.inputs],
            None if self.last_trip is None else msgspec.to_builtins(self.last_trip)])

    def restore(self, bytes data):
        """Replaces the state with one from ``snapshot()`` (same configuration)."""
        (state, clock, opened, bstart, ins, outs, lims, held, ctr,
         last) = msgspec.msgpack.decode(data)
        if len(lims) != len(self._limits):
            raise ValueError("snapshot was taken with a different breaker configuration")
        self.state, self.clock, self.opened_at, self.bucket_start = state, clock, opened, bstart
        for i in range(RATIO_BUCKETS):
            self.ins[i] = ins[i]
            self.outs[i] = outs[i]
        for lim, st in zip(self._limits, lims):
            (<_CountLimit>lim).load(st)
        self.held = [bytes(h) for h in held]
        (self.trips, self.resets, self.passed, self.throttled, self.checks, self.released,
         self.discarded, self.inputs) = ctr
        self.last_trip = None if last is None else msgspec.convert(last, TripReport)


class KillReport(msgspec.Struct, frozen=True, array_like=True):
    """What the kill switch did: the key whose resting orders it cancelled (None: everyone's),
    the input sequence it ran at, and what the handler's ``on_kill`` reported cancelled."""

    key: int | None
    sequence: int
    cancelled: list[int]


class TripReport(msgspec.Struct, frozen=True, array_like=True):
    """Why the breaker opened: the limit, its figures, and the event time; ``kill`` is what
    the kill switch cancelled (in the report the alert hook gets after it ran)."""

    limit: str
    count: int
    window_ns: int
    key: int | None
    timestamp_ns: int
    ratio: float | None = None
    kill: KillReport | None = None
