"""Counters in a shared-memory file: a live process's figures, readable from any process.

In the manner of Aeron's counters file (layout in ``includes/counterslayout.h``)::

    owner threads (loop, journaller, gateway, ...)       any process (ringlog stat, metrics)
        counter_set(addr, v)  ── release store ──►  DIR/counters  ◄── acquire load ── reader
    heartbeat thread ── now (every interval) ──►   header: pid, start ticks, heartbeat, state

``CountersManager`` makes the file (initialised under a temporary name, then renamed into
place, so a reader never sees a half-made file) and allocates named 64-bit counters in it;
each ``Counter`` is then stored only by its owner thread: from Cython through ``addr`` with the
inline helpers of ``_counters.pxd`` (one release store, no Python), from Python through
``set``/``add``. ``CountersReader`` maps the file read-only: it takes no lock and writes
nothing, so reading has no effect on the writer. The writer's pid (with its start time, so a
reused pid is not mistaken for it) and a heartbeat stored by a thread that sleeps tell a
reader whether the writer is running, stopped cleanly, dead or hung.

Counter types say how a reader shows a value: TOTAL (a monotonic count: readers derive its
rate from deltas), SEQUENCE (a position: also a rate), GAUGE (a level such as a lag) and STATE
(an enumerated state). Types from 1000 up are the application's.
"""

from libc.errno cimport EBUSY, ENOENT, errno
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memcpy, memset
from posix.fcntl cimport O_CREAT, O_RDONLY, O_RDWR, O_TRUNC, open as c_open
from posix.mman cimport MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap
from posix.stat cimport fstat, struct_stat
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from posix.unistd cimport close as c_close, ftruncate

from ringlog.includes.atomics cimport (
    rl_fence, rl_load_acquire32, rl_store_release, rl_store_release32,
)
from ringlog.includes.ringwait cimport rl_futex_wait, rl_futex_wake_all

import os
import threading
import time

import msgspec

from ringlog.errors import (
    CountersError, CountersFileError, CountersMissingError, CountersVersionError,
)

__all__ = [
    "AGE_BUCKETS", "BUCKET", "GAUGE", "LAYOUT_VERSION", "LABEL_MAX", "SEQUENCE",
    "STAGE_COUNTERS", "STATE", "TOTAL",
    "Counter", "CounterValue", "CountersError", "CountersFileError", "CountersManager",
    "CountersMissingError", "CountersReader", "CountersVersionError", "StageCounters",
]

TOTAL, SEQUENCE, GAUGE, STATE, BUCKET = 1, 2, 3, 4, 5
# A histogram is BUCKET counters labelled "<name>:<upper bound>" (a count of observations
# below that bound and at or above the previous one); AGE_BUCKETS bounds the loop's
# event-age histogram in ns: powers of two from 1 us to ~69 s, the last one open.
AGE_BUCKETS = tuple(1 << k for k in range(10, 37))
LAYOUT_VERSION = RL_COUNTERS_VERSION
LABEL_MAX = RL_COUNTER_LABEL_MAX
_LINE = 128

# The counters each processor stage stores at its batch ends, in slot order (the JS_*/LS_*
# enums of _counters.pxd); labels are "<prefix>.<name>". A stage's lag behind its upstream
# is derived by the reader from two sequences, so no stage loads another stage's line.
STAGE_COUNTERS = {
    "journal": (("sequence", SEQUENCE), ("backlog", GAUGE), ("durable", SEQUENCE),
                ("batches", TOTAL)),
    "logic": (("sequence", SEQUENCE), ("batches", TOTAL), ("processed", TOTAL),
              ("outputs", TOTAL), ("published", TOTAL), ("dead_letters", TOTAL),
              ("duplicates", TOTAL), ("breaker_state", STATE), ("breaker_trips", TOTAL),
              ("breaker_held", GAUGE), ("kills", TOTAL))
    + tuple((f"age_ns:{b}", BUCKET) for b in AGE_BUCKETS) + (("age_ns:inf", BUCKET),)
    + (("gil_wait_ns", TOTAL),),
}


class CounterValue(msgspec.Struct, frozen=True, array_like=True):
    """One counter as a reader sees it."""

    id: int
    type_id: int
    label: str
    value: int
    registration_id: int


cdef inline int64_t _mono_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


def _start_ticks(int pid):
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or 0
    where /proc is absent; None when the process does not exist or is a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return 0
    try:  # the command name may hold spaces and parentheses: split after its last ')'
        fields = stat[stat.rindex(b")") + 2:].split()
        if fields[0] in (b"Z", b"X"):
            return None  # a zombie (killed, not yet reaped) is not a writer any more
        return int(fields[19])
    except (ValueError, IndexError):
        return 0


cdef class _CountersMap:
    """The mapped counters file. Counters and readers hold it, so it is unmapped only when
    nothing can store into it or read it any more."""

    def __cinit__(self):
        self.base = NULL
        self.size = 0

    def __dealloc__(self):
        if self.base != NULL:
            munmap(self.base, self.size)

    cdef rl_counter_meta* meta(self, int i) noexcept nogil:
        return <rl_counter_meta*>(self.base + self.hdr.metadata_offset
                                  + i * sizeof(rl_counter_meta))

    cdef int64_t* value(self, int i) noexcept nogil:
        return <int64_t*>(self.base + self.hdr.values_offset + i * sizeof(rl_counter_value))


cdef _CountersMap _map_fd(int fd, Py_ssize_t size, bint writable, object path):
    cdef _CountersMap m = _CountersMap()
    cdef void* p = mmap(NULL, size, PROT_READ | (PROT_WRITE if writable else 0), MAP_SHARED,
                        fd, 0)
    cdef int err
    if p == MAP_FAILED:
        err = errno
        raise CountersFileError(f"cannot map counters file {path} ({size} bytes): "
                                f"{os.strerror(err)}", errno=err, path=path)
    m.base = <char*>p
    m.size = size
    m.path = path
    m.hdr = <rl_counters_header*>p
    return m


cdef _CountersMap _open_map(object path, int64_t* ino):
    """Maps an existing counters file read-only and checks its header."""
    cdef struct_stat st
    cdef _CountersMap m
    cdef rl_counters_header* h
    cdef bytes bpath = os.fsencode(path)
    cdef int fd = c_open(bpath, O_RDONLY)
    cdef int err
    if fd < 0:
        err = errno
        if err == ENOENT:
            raise CountersMissingError(f"no counters file at {path}", errno=err, path=path)
        raise CountersFileError(f"cannot open counters file {path}: {os.strerror(err)}",
                                errno=err, path=path)
    try:
        fstat(fd, &st)
        ino[0] = st.st_ino
        if st.st_size < RL_COUNTERS_HEADER_SIZE:
            raise CountersError(f"{path} is {st.st_size} bytes: not a ringlog counters file "
                                f"(the header alone is {RL_COUNTERS_HEADER_SIZE})")
        m = _map_fd(fd, st.st_size, False, path)
    finally:
        c_close(fd)  # the mapping stays valid without the descriptor
    h = m.hdr
    if h.magic != RL_COUNTERS_MAGIC:
        raise CountersError(f"{path} is not a ringlog counters file (bad magic)")
    if h.version != RL_COUNTERS_VERSION:
        raise CountersVersionError(f"{path} has counters layout version {h.version}; this "
                                   f"ringlog reads version {RL_COUNTERS_VERSION}")
    if (h.meta_size != sizeof(rl_counter_meta) or h.value_size != sizeof(rl_counter_value)
            or h.total_size != m.size or h.metadata_offset < RL_COUNTERS_HEADER_SIZE
            or h.values_offset < h.metadata_offset + <int64_t>h.max_counters * h.meta_size
            or h.values_offset + <int64_t>h.max_counters * h.value_size > m.size):
        raise CountersError(f"{path}: inconsistent counters header (sizes or offsets)")
    return m


cdef class Counter:
    """One 64-bit counter in the file, stored only by its owner thread (not thread-safe).
    Cython code stores through ``addr`` with ``counter_set``/``counter_add``."""

    def __init__(self):
        raise TypeError("counters are allocated with CountersManager.allocate()")

    def set(self, int64_t value):
        """Stores ``value`` (release)."""
        counter_set(self.addr, value)

    def add(self, int64_t delta=1):
        """Adds ``delta`` (owner thread only: a load and a release store, not an atomic
        read-modify-write)."""
        counter_add(self.addr, delta)

    @property
    def value(self):
        """The current value (acquire load)."""
        return counter_get(self.addr)

    def free(self):
        """Gives the id back (readers stop listing it; a later allocation may reuse it)."""
        self._manager.free(self)

    def __repr__(self):
        return f"Counter({self.id}, {self.label!r}, value={counter_get(self.addr)})"


cdef class CountersManager:
    """Makes a counters file and allocates counters in it; stores the writer's heartbeat.
    ``allocate``/``free`` may be called from any thread (a lock); each counter's value is
    stored by its owner thread only."""

    def __init__(self):
        raise TypeError("use CountersManager.create(path)")

    @staticmethod
    def create(path, int max_counters=1024, double heartbeat_interval=0.1):
        """Makes the counters file at ``path`` (replacing one left by a writer that is no
        longer running) and starts the heartbeat thread (it sleeps between beats)."""
        cdef CountersManager self = CountersManager.__new__(CountersManager)
        cdef int fd
        cdef Py_ssize_t size
        cdef rl_counters_header* h
        cdef int err
        path = os.fspath(path)
        if not 1 <= max_counters <= 1 << 20:
            raise CountersError(f"max_counters must be between 1 and {1 << 20}, got "
                                f"{max_counters}")
        if not heartbeat_interval > 0:
            raise CountersError(f"heartbeat_interval must be > 0 seconds, got "
                                f"{heartbeat_interval}")
        try:
            old = CountersReader(path)
        except (FileNotFoundError, CountersError):
            pass
        else:
            if old.writer_status() in ("running", "stale") and old.writer_pid != os.getpid():
                raise CountersFileError(f"{path} is in use by process {old.writer_pid}; stop "
                                        "it first (one writer per counters file)",
                                        errno=EBUSY, path=path)
        tmp = f"{path}.{os.getpid()}.tmp"
        size = RL_COUNTERS_HEADER_SIZE + 2 * max_counters * _LINE
        fd = c_open(os.fsencode(tmp), O_RDWR | O_CREAT | O_TRUNC, 0o644)
        if fd < 0:
            err = errno
            raise CountersFileError(f"cannot create counters file {tmp}: {os.strerror(err)}",
                                    errno=err, path=tmp)
        try:
            if ftruncate(fd, size) != 0:
                err = errno
                raise CountersFileError(f"cannot size counters file {tmp} to {size} "
                                        f"bytes: {os.strerror(err)}", errno=err, path=tmp)
            self._map = _map_fd(fd, size, True, path)
        except BaseException:
            c_close(fd)
            os.unlink(tmp)
            raise
        c_close(fd)
        h = self._map.hdr
        h.version = RL_COUNTERS_VERSION
        h.header_size = RL_COUNTERS_HEADER_SIZE
        h.max_counters = max_counters
        h.meta_size = sizeof(rl_counter_meta)
        h.value_size = sizeof(rl_counter_value)
        h.metadata_offset = RL_COUNTERS_HEADER_SIZE
        h.values_offset = RL_COUNTERS_HEADER_SIZE + max_counters * _LINE
        h.total_size = size
        h.writer_pid = os.getpid()
        h.writer_start_ticks = _start_ticks(os.getpid()) or 0
        h.created_ns = wall_ns()
        h.heartbeat_ns.value = h.created_ns
        h.writer_state.value = RL_WRITER_RUNNING
        rl_store_release(<int64_t*>&h.magic, <int64_t>RL_COUNTERS_MAGIC)
        os.replace(tmp, path)  # readers see the whole file or the previous one
        self._lock = threading.Lock()
        self._labels = {}
        self._next_registration = 1
        self.heartbeat_interval = heartbeat_interval
        self._stop = 0
        self._heartbeat = threading.Thread(target=self._beat, name="ringlog-counters-heartbeat",
                                           daemon=True)
        self._heartbeat.start()
        return self

    def _beat(self):
        cdef int64_t interval = <int64_t>(self.heartbeat_interval * 1e9)
        cdef rl_counters_header* h = self._map.hdr
        with nogil:  # a futex sleep between beats: close() wakes it at once
            while rl_load_acquire32(&self._stop) == 0:
                rl_store_release(&h.heartbeat_ns.value, wall_ns())
                rl_futex_wait(&self._stop, 0, interval)

    @property
    def path(self):
        """The counters file."""
        return self._map.path

    @property
    def max_counters(self):
        """How many counters the file holds."""
        return self._map.hdr.max_counters

    def allocate(self, str label, int type_id=TOTAL):
        """A new counter named ``label`` (ASCII, at most LABEL_MAX bytes, unique in the
        file), value 0. ``type_id``: TOTAL, SEQUENCE, GAUGE, STATE or an application type
        (>= 1000)."""
        cdef rl_counters_header* h = self._map.hdr
        cdef rl_counter_meta* m
        cdef int i, hw
        cdef bytes raw
        if not label or not label.isascii() or not label.isprintable():
            raise CountersError(f"counter label {label!r} must be non-empty printable ASCII")
        raw = label.encode("ascii")
        if len(raw) > RL_COUNTER_LABEL_MAX:
            raise CountersError(f"counter label {label!r} is {len(raw)} bytes; at most "
                                f"{RL_COUNTER_LABEL_MAX}")
        if type_id < 1:
            raise CountersError(f"counter {label!r}: type_id must be >= 1, got {type_id}")
        with self._lock:
            if label in self._labels:
                raise CountersError(f"counter label {label!r} is already allocated in "
                                    f"{self._map.path}")
            hw = <int>h.high_water.value
            i = 0
            while i < hw and self._map.meta(i).state != RL_COUNTER_RECLAIMED:
                i += 1
            if i == hw and hw >= <int>h.max_counters:
                raise CountersError(f"{self._map.path} is full ({h.max_counters} counters); "
                                    "create it with a larger max_counters")
            m = self._map.meta(i)
            counter_set(self._map.value(i), 0)
            m.type_id = type_id
            memset(m.label, 0, RL_COUNTER_LABEL_MAX)
            memcpy(m.label, <const char*>raw, len(raw))
            m.label_length = <int32_t>len(raw)
            rl_store_release(&m.registration_id, self._next_registration)
            rl_store_release32(&m.state, RL_COUNTER_ALLOCATED)  # publishes the record
            if i == hw:
                rl_store_release(&h.high_water.value, hw + 1)
            c = Counter.__new__(Counter)
            (<Counter>c).addr = self._map.value(i)
            (<Counter>c).id = i
            (<Counter>c).type_id = type_id
            (<Counter>c).registration_id = self._next_registration
            (<Counter>c).label = label
            (<Counter>c)._map = self._map
            (<Counter>c)._manager = self
            self._next_registration += 1
            self._labels[label] = c
        return c

    def free(self, Counter counter):
        """Gives a counter's id back; readers stop listing it."""
        with self._lock:
            if self._labels.get(counter.label) is not counter:
                return
            del self._labels[counter.label]
            rl_store_release32(&self._map.meta(counter.id).state, RL_COUNTER_RECLAIMED)

    def counters(self):
        """The live counters allocated here, by label."""
        with self._lock:
            return dict(self._labels)

    def close(self):
        """Marks the writer stopped (readers say "stopped", not "dead") and ends the
        heartbeat. Counters stay valid memory (a late store does no harm). Idempotent."""
        if self._heartbeat is None:
            return
        rl_store_release(&self._map.hdr.writer_state.value, RL_WRITER_CLOSED)
        rl_store_release32(&self._stop, 1)
        rl_futex_wake_all(&self._stop)
        self._heartbeat.join()
        self._heartbeat = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


cdef class StageCounters:
    """The counters of one processor stage (``STAGE_COUNTERS[kind]``), allocated in
    ``manager`` as ``<prefix>.<name>``; with no manager every slot is a private spare, so the
    stage stores the same way with or without a counters file. Not thread-safe: the stage's
    thread is the only writer."""

    def __init__(self, manager, str kind, str prefix=None):
        cdef int i
        spec = STAGE_COUNTERS.get(kind)
        if spec is None:
            raise CountersError(f"no stage counters of kind {kind!r}; known: "
                                f"{sorted(STAGE_COUNTERS)}")
        prefix = prefix or kind
        self.kind = kind
        self.counters = []
        for i in range(STAGE_MAX):
            self.spare[i] = 0
            self.slot[i] = &self.spare[i]
        if manager is None:
            return
        for i, (name, type_id) in enumerate(spec):
            c = (<CountersManager?>manager).allocate(f"{prefix}.{name}", type_id)
            self.counters.append(c)
            self.slot[i] = (<Counter>c).addr

    def set(self, str name, int64_t value):
        """Stores ``value`` into the counter ``name`` (a stage driven from Python)."""
        counter_set(self.slot[self._index(name)], value)

    def add(self, str name, int64_t delta=1):
        """Adds ``delta`` to the counter ``name`` (owner thread only)."""
        counter_add(self.slot[self._index(name)], delta)

    def _index(self, str name):
        for i, (n, _) in enumerate(STAGE_COUNTERS[self.kind]):
            if n == name:
                return i
        raise CountersError(f"stage {self.kind!r} has no counter {name!r}")

    def store_cost_ns(self, int64_t rounds=1_000_000):
        """Benchmarks what a batch end costs: ``rounds`` times a release store into each of
        this stage's slots (as the stages do), timed without the GIL. Returns ns per
        round."""
        cdef int64_t r, t0, t1
        cdef int i, n = max(len(STAGE_COUNTERS[self.kind]), 1)
        with nogil:
            t0 = _mono_ns()
            for r in range(rounds):
                for i in range(n):
                    counter_set(self.slot[i], r)
            t1 = _mono_ns()
        return (t1 - t0) / <double>max(rounds, 1)

    def values(self):
        """The stage's values by name (for tests and in-process inspection)."""
        return {c.label.split(".", 1)[1]: c.value for c in self.counters}


cdef class CountersReader:
    """Reads a counters file from any process: maps it read-only, takes no lock, stores
    nothing. ``reopen()`` follows a writer that replaced the file (a restart)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._map = _open_map(self.path, &self._ino)
        self._cache = {}

    def reopen(self):
        """Maps the file at ``path`` again if a new writer replaced it; True if it did."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        if st.st_ino == self._ino:
            return False
        self._map = _open_map(self.path, &self._ino)
        self._cache = {}
        return True

    @property
    def layout_version(self):
        """The file's layout version."""
        return self._map.hdr.version

    @property
    def max_counters(self):
        """How many counters the file holds."""
        return self._map.hdr.max_counters

    @property
    def writer_pid(self):
        """The writing process's id."""
        return self._map.hdr.writer_pid

    @property
    def created_ns(self):
        """When the writer made the file (CLOCK_REALTIME ns)."""
        return self._map.hdr.created_ns

    @property
    def heartbeat_ns(self):
        """The writer's last heartbeat (CLOCK_REALTIME ns)."""
        return counter_get(&self._map.hdr.heartbeat_ns.value)

    def writer_status(self, double stale_after=2.0):
        """running; stopped (closed cleanly); dead (its process is gone, or the pid now
        belongs to another process); stale (alive, but no heartbeat for ``stale_after``
        seconds: hung, or in another pid namespace)."""
        cdef rl_counters_header* h = self._map.hdr
        if counter_get(&h.writer_state.value) == RL_WRITER_CLOSED:
            return "stopped"
        ticks = _start_ticks(h.writer_pid)
        if ticks is None or (ticks and h.writer_start_ticks and ticks != h.writer_start_ticks):
            return "dead"
        if ticks == 0:  # no /proc: ask the kernel whether the pid exists
            try:
                os.kill(h.writer_pid, 0)
            except ProcessLookupError:
                return "dead"
            except PermissionError:
                pass
        if time.time_ns() - self.heartbeat_ns > stale_after * 1e9:
            return "stale"
        return "running"

    def read(self):
        """Every allocated counter, in id order, as CounterValues."""
        cdef _CountersMap mp = self._map
        cdef rl_counters_header* h = mp.hdr
        cdef int i, hw = <int>counter_get(&h.high_water.value)
        cdef rl_counter_meta* m
        cdef int64_t reg
        out = []
        if hw > <int>h.max_counters:
            hw = h.max_counters
        for i in range(hw):
            m = mp.meta(i)
            for _ in range(16):  # a record being freed and reused under us: read it again
                if rl_load_acquire32(&m.state) != RL_COUNTER_ALLOCATED:
                    meta = None
                    break
                reg = counter_get(&m.registration_id)
                meta = self._cache.get(i)
                if meta is None or meta[0] != reg:
                    n = min(max(m.label_length, 0), RL_COUNTER_LABEL_MAX)
                    meta = (reg, m.type_id, m.label[:n].decode("ascii", "replace"))
                rl_fence()
                if rl_load_acquire32(&m.state) == RL_COUNTER_ALLOCATED and \
                        counter_get(&m.registration_id) == reg:
                    self._cache[i] = meta
                    break
            else:
                meta = None
            if meta is not None:
                out.append(CounterValue(i, meta[1], meta[2], counter_get(mp.value(i)), meta[0]))
        return out

    def values(self):
        """``{label: value}`` of every allocated counter."""
        return {c.label: c.value for c in self.read()}
