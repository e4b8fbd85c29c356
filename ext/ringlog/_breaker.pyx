"""The circuit breaker on output volume: exact sliding windows in event time.

A count limit of N outputs per W ns keeps the timestamps of the last N accepted outputs in a
circular buffer: the next output is over the limit exactly when N of them are less than W
old. Event time never goes back, so timestamps W old are dropped for good when it matters (N
kept, or the buffer full), and the buffer grows (doubling) only to about twice what the
window holds at its busiest: a limit of 10**6 per key costs a quiet key 64 bytes, not 8 MB.
Per-key limits keep one such buffer per key in an open-addressing table with a cap on
distinct keys (keys past the cap share one overflow window: stricter, never unlimited). The
output/input ratio limit counts in 16 buckets over its window. Time is only ever the event
timestamps the processor passes in, so a replay makes the same decisions. Not thread-safe:
only the processor's loop thread calls it.
"""

from libc.stdint cimport int64_t, uint32_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memmove

import msgspec

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "PASS", "HOLD", "THROTTLE", "TRIPPED", "BreakerCore",
           "KillReport", "TripReport"]

PASS, HOLD, THROTTLE, TRIPPED = BR_PASS, BR_HOLD, BR_THROTTLE, BR_TRIPPED
CLOSED, OPEN, HALF_OPEN = BR_CLOSED, BR_OPEN, BR_HALF_OPEN
_STATE_NAMES = ("closed", "open", "half_open")
_KILL_MODES = {"none": KILL_NONE, "key": KILL_KEY, "all": KILL_ALL, "key_or_all": KILL_KEY_OR_ALL}


cdef class _CountLimit:
    """N outputs per W ns, in total, per handler key or per type id. The state is the C
    struct ``c``, which ``BreakerCore.check_c`` reads through a pointer (no Python object
    per output)."""

    cdef CountLimit c
    cdef object name

    def __cinit__(self, int64_t max_count, int64_t window_ns, int per, bint throttle, name,
                  int64_t max_keys):
        cdef int64_t i
        cdef CountLimit* L = &self.c
        L.max_count, L.window_ns, L.per = max_count, window_ns, per
        L.throttle, L.max_keys = throttle, max_keys
        self.name = name
        L.total.max_count, L.total.span = max_count, window_ns
        if per:
            L.table = 1
            while L.table < 2 * max_keys:
                L.table <<= 1
            L.keys = <int64_t*>calloc(L.table, sizeof(int64_t))
            L.slot = <int64_t*>calloc(L.table, sizeof(int64_t))
            L.keyed = <Window*>calloc(max_keys + 1, sizeof(Window))
            if L.keys == NULL or L.slot == NULL or L.keyed == NULL:
                raise MemoryError("cannot allocate breaker windows")
            for i in range(L.table):
                L.slot[i] = -1
            for i in range(max_keys + 1):
                L.keyed[i].max_count, L.keyed[i].span = max_count, window_ns

    def __dealloc__(self):
        cdef int64_t i
        cdef CountLimit* L = &self.c
        free(L.total.ts)
        if L.keyed != NULL:
            for i in range(L.max_keys + 1):
                free(L.keyed[i].ts)
        free(L.keyed)
        free(L.keys)
        free(L.slot)

    cdef Window* window(self, int64_t key) noexcept:
        """The window of ``key`` (created on first use; past the cap, the overflow one)."""
        return limit_window(&self.c, key)

    def window_bytes(self):
        """Bytes allocated for this limit's timestamps (every window's buffer)."""
        cdef int64_t i, n = self.c.total.cap
        if self.c.keyed != NULL:
            for i in range(self.c.max_keys + 1):
                n += self.c.keyed[i].cap
        return n * sizeof(int64_t)

    def clear(self):
        """Empties every window (keys stay known)."""
        cdef int64_t i
        cdef CountLimit* L = &self.c
        L.total.count = L.total.head = 0
        if L.keyed != NULL:
            for i in range(L.max_keys + 1):
                L.keyed[i].count = L.keyed[i].head = 0

    def state(self):
        """The windows as plain data (for snapshots), keys in insertion order."""
        cdef int64_t i
        cdef CountLimit* L = &self.c
        order = sorted((L.slot[i], L.keys[i]) for i in range(L.table)
                       if L.per and L.slot[i] >= 0)
        keyed = [[k, _dump(&L.keyed[idx])] for idx, k in order]
        overflow = _dump(&L.keyed[L.max_keys]) if L.per else None
        return [_dump(&L.total), keyed, overflow]

    def load(self, state):
        """Restores windows from ``state()`` output (into a fresh limit)."""
        total, keyed, overflow = state
        _load(&self.c.total, total)
        for k, wd in keyed:
            _load(self.window(k), wd)
        if overflow is not None and overflow[2]:
            self.c.nkeys = self.c.max_keys
            _load(self.window(-1 if self.c.max_keys else 0), overflow)


cdef int window_room(Window* w, int64_t t, int64_t need) noexcept nogil:
    """Makes room for ``need`` more timestamps in ``w`` at clock ``t`` (count + need <=
    max_count): drops those that left the window, then grows the buffer (doubling, up to
    ``max_count`` entries, oldest entry first) if it is still over half full; -1 if there
    is no memory (the window keeps its entries)."""
    window_prune(w, t)
    if w.cap - w.count >= need and (w.count + need) * 2 <= w.cap or w.cap == w.max_count:
        return 0
    cdef int64_t cap = w.cap if w.cap else 8, run
    while cap - w.count < need or (w.count + need) * 2 > cap:
        cap *= 2
    if cap > w.max_count:
        cap = w.max_count
    cdef int64_t* ts = <int64_t*>realloc(w.ts, cap * sizeof(int64_t))
    if ts == NULL:
        return -1
    if w.head + w.count > w.cap:  # wrapped: the run from the oldest to the old end moves
        run = w.cap - w.head      # to the new end
        memmove(ts + cap - run, ts + w.head, run * sizeof(int64_t))
        w.head = cap - run
    w.ts = ts
    w.cap = cap
    return 0


cdef list _dump(Window* w):
    cdef int64_t j
    if w.ts == NULL:
        return [0, 0, []]
    return [w.head, w.count, [w.ts[(w.head + j) % w.cap] for j in range(w.count)]]


cdef int _load(Window* w, wd) except -1:
    w.head = 0
    w.count = 0
    for t in wd[2]:
        if window_add(w, t) < 0:
            raise MemoryError("cannot grow a breaker window")
    return 0


cdef class BreakerCore:
    """Decisions for each output: PASS, HOLD (open), THROTTLE (soft limit) or TRIPPED."""

    PASS, HOLD, THROTTLE, TRIPPED = BR_PASS, BR_HOLD, BR_THROTTLE, BR_TRIPPED

    def __init__(self, limits, ratio=None, allow=(), half_open_after_ns=None, alert=None,
                 int64_t max_keys=4096, kill="none"):
        self._limits = [_CountLimit(l.max_count, l.window_ns,
                                    {None: 0, "key": 1, "type": 2}[l.per],
                                    l.tier == "throttle", l.name or f"limit{i}", max_keys)
                        for i, l in enumerate(limits)]
        # the limits' C state in order, and room for each one's window of the output being
        # checked (found once, then added to once the output passes every limit)
        self.nlimits = len(self._limits)
        self.climits = <CountLimit**>calloc(self.nlimits + 1, sizeof(CountLimit*))
        self.cwins = <Window**>calloc(self.nlimits + 1, sizeof(Window*))
        if self.climits == NULL or self.cwins == NULL:
            raise MemoryError("cannot allocate the breaker's limit table")
        for i, lim in enumerate(self._limits):
            self.climits[i] = &(<_CountLimit>lim).c
        self.ratio_window = 0
        if ratio is not None:
            self.ratio_window = ratio.window_ns
            self.ratio_min_inputs = ratio.min_inputs
            self.ratio_max = ratio.max_ratio
            self.ratio_name = ratio.name or "ratio"
        self.allow = frozenset(allow)
        self.has_allow = len(self.allow) > 0
        ids = sorted(t for t in self.allow if 0 <= t < 1 << 32)  # no other type id exists
        self.allow_ids = <uint32_t*>calloc(len(ids) + 1, sizeof(uint32_t))
        if self.allow_ids == NULL:
            raise MemoryError("cannot allocate the breaker's allow-list")
        for i, t in enumerate(ids):
            self.allow_ids[i] = t
        self.n_allow = len(ids)
        self.runs_ok = (not self.ratio_window and not self.has_allow
                        and all((<_CountLimit>lim).c.per != 2 for lim in self._limits))
        self.half_open_after = -1 if half_open_after_ns is None else half_open_after_ns
        self.alert = alert
        self.kill = _KILL_MODES[kill]
        self.held = []
        self.state = BR_CLOSED
        self.clock = -(1 << 62)

    def __dealloc__(self):
        free(self.climits)
        free(self.cwins)
        free(self.allow_ids)

    cdef int64_t _now(self, int64_t ts) noexcept:
        if ts > self.clock:
            self.clock = ts
        return self.clock

    cdef void _ratio_advance(self, int64_t t) noexcept nogil:
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
        breaker_input(self, timestamp_ns)

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

    def pass_run(self, int64_t timestamp_ns, int64_t key, int64_t count):
        """True if ``count`` outputs at ``timestamp_ns`` under ``key`` all pass (then they
        are counted, as ``count`` calls of ``check`` would count them); False if each must
        go through ``check`` (nothing is counted; the clock moves to ``timestamp_ns`` as
        the first ``check`` would move it). The processor's loop uses it for a handler's
        outputs of one input."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        return breaker_pass_run(self, timestamp_ns, key, count) == 1

    cdef int check_c(self, int64_t timestamp_ns, uint32_t type_id, int64_t key) except -1:
        return breaker_check(self, timestamp_ns, type_id, key)

    cdef int _open_or_allowed(self, uint32_t type_id) noexcept nogil:
        """While open: PASS for the allow-list, else HOLD. While closed (or half-open: a
        probe is judged by the limits), PASS for the allow-list; -1: judge it by the
        limits."""
        cdef Py_ssize_t lo = 0, hi = self.n_allow, mid
        while lo < hi:  # binary search of the sorted allow-list
            mid = (lo + hi) // 2
            if self.allow_ids[mid] < type_id:
                lo = mid + 1
            else:
                hi = mid
        if lo < self.n_allow and self.allow_ids[lo] == type_id:
            if self.state != BR_HALF_OPEN:
                self.passed += 1
                return BR_PASS
        elif self.state == BR_OPEN:
            return BR_HOLD
        return -1

    cdef int _trip_limit(self, Py_ssize_t i, int64_t t, uint32_t type_id,
                         int64_t key) except -1:
        """Trips on count limit ``i`` for the output being checked."""
        cdef CountLimit* L = self.climits[i]
        return self._trip(t, (<_CountLimit>self._limits[i]).name, L.max_count, L.window_ns,
                          key if L.per == 1 else (type_id if L.per else None), L.per)

    cdef int _ratio_check(self, int64_t t) except -1 nogil:
        """The output/input ratio limit for one more output: trips (returns 1, with the GIL)
        or counts it."""
        cdef int64_t sin = 0, sout = 0, i
        self._ratio_advance(t)
        for i in range(RATIO_BUCKETS):
            sin += self.ins[i]
            sout += self.outs[i]
        if sin >= self.ratio_min_inputs and (sout + 1) > self.ratio_max * sin:
            with gil:
                self._trip(t, self.ratio_name, sout + 1, self.ratio_window, None, 0,
                           ratio=(sout + 1) / sin)
            return 1
        self.outs[RATIO_BUCKETS - 1] += 1
        return 0

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

    def window_bytes(self):
        """Bytes the count limits' windows hold for timestamps (every key's buffer): they
        grow with the outputs inside a window at its busiest, not with ``max_count``."""
        return sum((<_CountLimit>lim).window_bytes() for lim in self._limits)

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
