# cython: freethreading_compatible=False
"""The ring buffer: LMAX Disruptor semantics over private or shared memory.

Preallocated slots (a power-of-two count of fixed-size slots, each an rl_header + payload),
a single-producer sequencer (no CAS) or a multi-producer sequencer (CAS claim + per-slot
availability rounds), consumers with their own sequences and barriers over upstream
consumers, and four wait strategies. Producers never overwrite a slot a consumer has not
released (backpressure). Every wait releases the GIL and takes a timeout.
"""

cimport cython
from cpython.buffer cimport (
    PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_ND, PyBUF_STRIDES, PyBuffer_Release, PyObject_GetBuffer,
)
from libc.errno cimport errno
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t, INT64_MAX
from libc.stdlib cimport free
from libc.string cimport memcpy, memset
from posix.fcntl cimport O_CREAT, O_EXCL, O_RDWR, open as c_open
from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE
from posix.mman cimport mmap, munmap
from posix.stat cimport fstat, struct_stat
from posix.unistd cimport close as c_close, ftruncate

from ringlog.includes.atomics cimport (
    rl_cas, rl_cpu_relax, rl_fence, rl_fetch_add32, rl_load_acquire, rl_load_acquire32,
    rl_store_release, rl_store_release32,
)
from ringlog.includes.event cimport RL_HEADER_SIZE, rl_header, rl_header_set
from ringlog.includes.ringwait cimport (
    rl_futex_wait, rl_futex_wake_all, rl_now_ns, rl_sleep_ns, rl_sleeper_in, rl_sleeper_out,
    rl_wake_sleepers, rl_yield,
)

import os

from ringlog.errors import InsufficientCapacityError, RingClosedError, RingError, SchemaError
from ringlog.events import FLAG_MSGPACK, slot_dtype

cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void** p, size_t alignment, size_t size)

cdef extern from "Python.h":
    object PyMemoryView_FromObject(object)

__all__ = ["Batch", "Consumer", "Event", "Ring", "WaitKind"]

_WAIT_NAMES = {"busy_spin": BUSY_SPIN, "yielding": YIELDING, "sleeping": SLEEPING,
               "blocking": BLOCKING}
_HEADER_BYTES = (sizeof(rl_ring_header) + 4095) & ~4095


cdef int64_t _timeout_ns(object timeout) except? -2:
    """A timeout in seconds as ns; -1 for None (no limit)."""
    if timeout is None:
        return -1
    t = float(timeout)
    if t < 0:
        raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout!r}")
    return <int64_t>(t * 1e9)


cdef class _Mapping:
    """The ring memory (an mmap), exported as a writable buffer: every view holds it alive."""

    def __cinit__(self):
        self.base = NULL
        self.size = 0
        self.fd = -1

    def __getbuffer__(self, Py_buffer *buf, int flags):
        buf.buf = self.base
        buf.len = self.size
        buf.readonly = 0
        buf.itemsize = 1
        buf.format = NULL
        if flags & PyBUF_FORMAT:
            buf.format = "B"
        buf.ndim = 1
        buf.shape = &self.size if flags & PyBUF_ND else NULL
        buf.strides = &buf.itemsize if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        buf.suboffsets = NULL
        buf.internal = NULL
        buf.obj = self

    def __releasebuffer__(self, Py_buffer *buf):
        pass

    def __dealloc__(self):
        if self.base != NULL:
            munmap(self.base, self.size)
        if self.fd >= 0:
            c_close(self.fd)


cdef _Mapping _map_anonymous(Py_ssize_t size):
    cdef _Mapping m = _Mapping()
    cdef void* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if p == MAP_FAILED:
        raise MemoryError(f"could not map {size} bytes for the ring")
    m.base = <char*>p
    m.size = size
    return m


cdef _Mapping _map_file(str path, Py_ssize_t size, bint create):
    cdef struct_stat st
    cdef bytes bpath = os.fsencode(path)
    cdef int fd = c_open(bpath, O_RDWR | (O_CREAT | O_EXCL if create else 0), 0o600)
    if fd < 0:
        err = os.strerror(errno)
        if create and os.path.exists(path):
            raise RingError(f"{path} already exists; attach to it with Ring.attach(), "
                            "or remove it first")
        raise RingError(f"cannot open ring file {path}: {err}")
    if create:
        if ftruncate(fd, size) != 0:
            c_close(fd)
            raise RingError(f"cannot size ring file {path} to {size} bytes")
    else:
        fstat(fd, &st)
        size = st.st_size
        if size < _HEADER_BYTES:
            c_close(fd)
            raise RingError(f"{path} is {size} bytes, too small to be a ringlog ring "
                            f"(header alone is {_HEADER_BYTES})")
    return map_fd(fd, size, True, path, RingError)


cdef _Mapping map_fd(int fd, Py_ssize_t size, bint writable, str path, object error):
    """Maps ``size`` bytes of ``fd`` shared; the mapping owns (and closes) the fd; a failure
    raises ``error`` naming the file."""
    cdef _Mapping m = _Mapping()
    m.fd = fd
    m.path = path
    cdef void* p = mmap(NULL, size, PROT_READ | (PROT_WRITE if writable else 0), MAP_SHARED,
                        fd, 0)
    if p == MAP_FAILED:
        raise error(f"cannot map {path} ({size} bytes): {os.strerror(errno)}")
    m.base = <char*>p
    m.size = size
    return m


cdef class Event:
    """One slot seen by a consumer: header fields and a zero-copy ``payload`` memoryview.

    Valid until the consumer releases its batch (the producer may then reuse the slot).
    """

    def __repr__(self):
        return (f"Event(sequence={self.sequence}, type_id={self.type_id}, "
                f"length={len(self.payload)}, timestamp_ns={self.timestamp_ns})")


cdef class Batch:
    """Consecutive slots ``lo..hi`` handed out by ``Consumer.poll``: iterate, or ``array``.

    A batch never wraps around the end of the ring, so its numpy view is contiguous.
    """

    def __len__(self):
        return <Py_ssize_t>(self.hi - self.lo + 1)

    def __bool__(self):
        return self.hi >= self.lo

    def __iter__(self):
        cdef _BatchIter it = _BatchIter.__new__(_BatchIter)
        it.ring = self.consumer.ring
        it.next_seq = self.lo
        it.hi = self.hi
        return it

    def __getitem__(self, Py_ssize_t i):
        if i < 0:
            i += self.hi - self.lo + 1
        if not 0 <= i <= self.hi - self.lo:
            raise IndexError(f"batch index {i} out of range 0..{self.hi - self.lo}")
        return _event_at(self.consumer.ring, self.lo + i)

    @property
    def array(self):
        """A numpy structured view (``ringlog.slot_dtype``) of the batch's slots, zero-copy."""
        cdef Ring ring = self.consumer.ring
        import numpy as np
        n = self.hi - self.lo + 1
        off = ring.hdr.slots_offset + (self.lo & ring.mask) * ring.slot_size
        return np.frombuffer(ring._view, dtype=ring._dtype, count=max(n, 0), offset=off)

    def end_of_batch(self, int64_t sequence):
        """True for the last sequence of the batch."""
        return sequence == self.hi


cdef bytes _buffer_bytes(object p, Py_ssize_t i):
    """A bytes copy of a bytes-like payload; TypeError naming the item otherwise (bytes(5)
    would silently be five zero bytes)."""
    try:
        return memoryview(p).tobytes()
    except TypeError:
        raise TypeError(f"payload {i} must be bytes-like, got {type(p).__name__}") from None


@cython.final
cdef class _BatchIter:
    """Iterates a Batch's events (a plain iterator: cheaper per event than a generator)."""

    cdef Ring ring
    cdef int64_t next_seq
    cdef int64_t hi

    def __iter__(self):
        return self

    def __next__(self):
        if self.next_seq > self.hi:
            raise StopIteration
        self.next_seq += 1
        return _event_at(self.ring, self.next_seq - 1)


cdef Event _event_at(Ring ring, int64_t seq):
    cdef rl_header* h = <rl_header*>ring.slot(seq)
    cdef Event e = Event.__new__(Event)
    cdef Py_ssize_t off = (<char*>h - ring._map.base) + RL_HEADER_SIZE
    e.sequence = h.sequence
    e.timestamp_ns = h.timestamp_ns
    e.correlation_id = h.correlation_id
    e.producer_seq = h.producer_seq
    e.type_id = h.type_id
    e.flags = h.flags
    e.producer_id = h.producer_id
    e.payload = ring._view[off:off + h.length]
    return e


cdef int64_t _claimed(int64_t hi, int64_t done, int64_t total) except? -3:
    """``hi`` from a claim, or the error it stands for (naming how far the batch got)."""
    if hi == RL_CLOSED:
        raise RingClosedError("publish on a closed ring")
    if hi < -1:
        raise InsufficientCapacityError(
            f"the ring stayed full for the whole timeout after {done} of {total} events")
    return hi


cdef class Ring:
    """A Disruptor ring of ``capacity`` slots of ``slot_size`` bytes.

    ``producer="single"`` is for exactly one publishing thread (it is not thread-safe, like
    the Disruptor's SingleProducerSequencer); ``"multi"`` lets any number of threads and
    processes publish. ``wait`` picks how consumers wait: ``busy_spin`` (lowest latency, one
    core each), ``yielding``, ``sleeping`` or ``blocking`` (a futex: an idle consumer uses no
    CPU). With ``path`` the ring lives in a shared-memory file that other processes
    ``Ring.attach``.
    """

    def __cinit__(self):
        cdef void* p = NULL
        if posix_memalign(&p, sizeof(rl_producer_local), sizeof(rl_producer_local)) != 0:
            raise MemoryError("cannot allocate the producer state")
        self.prod = <rl_producer_local*>p
        memset(p, 0, sizeof(rl_producer_local))

    def __dealloc__(self):
        free(self.prod)

    def __init__(self, int64_t capacity, int slot_size=128, *, str producer="single",
                 str wait="blocking", path=None):
        if capacity < 2 or capacity & (capacity - 1):
            raise RingError(f"capacity must be a power of two >= 2, got {capacity}")
        if capacity > (1 << 30):
            raise RingError(f"capacity {capacity} is over the limit of 2**30 slots")
        if slot_size < RL_HEADER_SIZE + 8 or slot_size % 8:
            raise RingError(f"slot_size must be a multiple of 8 and at least "
                            f"{RL_HEADER_SIZE + 8} (the {RL_HEADER_SIZE}-byte header + "
                            f"payload), got {slot_size}")
        if producer not in ("single", "multi"):
            raise RingError(f"producer must be 'single' or 'multi', got {producer!r}")
        if wait not in _WAIT_NAMES:
            raise RingError(f"wait must be one of {sorted(_WAIT_NAMES)}, got {wait!r}")
        multi = producer == "multi"
        avail_bytes = ((capacity * 4 + 4095) & ~4095) if multi else 0
        total = _HEADER_BYTES + avail_bytes + capacity * slot_size
        m = _map_anonymous(total) if path is None else _map_file(os.fspath(path), total, True)
        cdef rl_ring_header* h = <rl_ring_header*>(<_Mapping>m).base
        memset(h, 0, sizeof(rl_ring_header))
        h.version = RL_RING_VERSION
        h.header_size = sizeof(rl_ring_header)
        h.capacity = capacity
        h.slot_size = slot_size
        h.multi_producer = multi
        h.total_size = total
        h.avail_offset = _HEADER_BYTES
        h.slots_offset = _HEADER_BYTES + avail_bytes
        h.cursor.value = -1
        h.gating_cache.value = -1
        if multi:
            memset((<_Mapping>m).base + h.avail_offset, 0xFF, capacity * 4)  # round -1
        rl_fence()
        h.magic = RL_RING_MAGIC  # last: an attacher never sees a half-written header
        self._setup(m, _WAIT_NAMES[wait])

    @classmethod
    def create(cls, path, int64_t capacity, int slot_size=128, *, str producer="single",
               str wait="blocking"):
        """Creates a ring in a new shared-memory file (e.g. under /dev/shm)."""
        return cls(capacity, slot_size, producer=producer, wait=wait, path=path)

    @classmethod
    def attach(cls, path, *, str wait="blocking"):
        """Maps an existing ring file created by ``Ring.create`` in another process."""
        if wait not in _WAIT_NAMES:
            raise RingError(f"wait must be one of {sorted(_WAIT_NAMES)}, got {wait!r}")
        path = os.fspath(path)
        m = _map_file(path, 0, False)
        cdef rl_ring_header* h = <rl_ring_header*>(<_Mapping>m).base
        if h.magic != RL_RING_MAGIC:
            raise RingError(f"{path} is not a ringlog ring (bad magic {h.magic:#x})")
        if h.version != RL_RING_VERSION or h.header_size != sizeof(rl_ring_header):
            raise RingError(f"{path} has ring format version {h.version} / header "
                            f"{h.header_size} bytes; this build reads version "
                            f"{RL_RING_VERSION} / {sizeof(rl_ring_header)} bytes")
        if h.total_size != <uint64_t>(<_Mapping>m).size:
            raise RingError(f"{path} is {(<_Mapping>m).size} bytes but its header says "
                            f"{h.total_size}: truncated or foreign")
        # a damaged header must not send a producer writing outside the mapping
        cap, ss = h.capacity, h.slot_size
        if (cap < 2 or cap & (cap - 1) or cap > (1 << 30) or ss < RL_HEADER_SIZE + 8 or ss % 8
                or h.multi_producer > 1 or h.slots_offset < _HEADER_BYTES
                or h.slots_offset + cap * ss != <int64_t>h.total_size
                or (h.multi_producer and h.avail_offset + cap * 4 > h.slots_offset)
                or not 0 <= h.n_consumers <= RL_MAX_CONSUMERS):
            raise RingError(f"{path} has an inconsistent ring header (capacity {cap}, slot "
                            f"size {ss}, slots at {h.slots_offset}, {h.n_consumers} "
                            f"consumers): damaged or foreign")
        cdef Ring r = Ring.__new__(Ring)
        r._setup(m, _WAIT_NAMES[wait])
        return r

    def _setup(self, _Mapping m, int wait_kind):
        self._map = m
        self.hdr = <rl_ring_header*>m.base
        self.capacity = self.hdr.capacity
        self.slot_size = self.hdr.slot_size
        self.mask = self.capacity - 1
        self.index_shift = 0
        while (1 << self.index_shift) < self.capacity:
            self.index_shift += 1
        self.multi_producer = self.hdr.multi_producer
        self.slots = m.base + self.hdr.slots_offset
        self.avail = <int32_t*>(m.base + self.hdr.avail_offset)
        self.wait_kind = <WaitKind>wait_kind
        self.prod.next_value = rl_load_acquire(&self.hdr.cursor.value)
        self.prod.cached_gating = -1
        self._view = PyMemoryView_FromObject(m)
        self._dtype = slot_dtype(self.slot_size)

    # -- sequencer (C level) --------------------------------------------------------------
    cdef int64_t min_gating(self, int64_t floor) noexcept nogil:
        """Minimum sequence of the active consumers (acquire loads); ``floor`` if none."""
        cdef int64_t m = INT64_MAX, v
        cdef int i, n = rl_load_acquire32(&self.hdr.n_consumers)
        for i in range(n):
            if rl_load_acquire32(&self.hdr.consumer_active[i]):
                v = rl_load_acquire(&self.hdr.consumers[i].value)
                if v < m:
                    m = v
        return floor if m == INT64_MAX else m

    cdef int wait_step(self, int spins, int64_t deadline, int64_t wrap) noexcept nogil:
        """One backoff step of a producer waiting until every consumer has passed ``wrap``
        (space to claim); 1 when out of time or closed. Blocking rings sleep on the futex
        the consumers signal as they release slots (no polling wake-ups on a full ring)."""
        cdef int64_t left = 1000000
        cdef int32_t token
        if self.hdr.closed:
            return 1
        if deadline >= 0:
            left = deadline - rl_now_ns()
            if left <= 0:
                return 1
        # a full ring frees room when a consumer ends a batch (~100 us and more), so a
        # blocking producer yields briefly before it sleeps: each yield with nothing else to
        # run returns at once, and a hundred of them per wait cost the engine flow's
        # producer ~30% of its CPU (docs/processor.md, step 21)
        cdef int yields = 10 if self.wait_kind == BLOCKING else 100
        if spins < 100:
            rl_cpu_relax()
        elif spins < 100 + yields or self.wait_kind == BUSY_SPIN:
            rl_yield()
        elif self.wait_kind == BLOCKING:
            token = rl_sleeper_in(&self.hdr.wake.signal, &self.hdr.wake.waiters)
            if self.min_gating(wrap) < wrap and not rl_load_acquire32(&self.hdr.closed):
                rl_futex_wait(&self.hdr.wake.signal, token, min(left, 1000000))
            rl_sleeper_out(&self.hdr.wake.waiters)
        else:
            rl_sleep_ns(20000)
        return 0

    cdef int64_t _claim_sp(self, int64_t n, int64_t deadline, bint once) noexcept nogil:
        cdef rl_producer_local* p = self.prod
        cdef int64_t next_seq = p.next_value + n
        if next_seq - self.capacity > p.cached_gating:
            return self._claim_sp_wait(n, deadline, once)  # out of line: a lean fast path
        p.next_value = next_seq
        return next_seq

    cdef int64_t _claim_sp_wait(self, int64_t n, int64_t deadline, bint once) noexcept nogil:
        """Single producer, slow path: refreshes the cached consumer minimum, waiting for
        space unless ``once``."""
        cdef rl_producer_local* p = self.prod
        cdef int64_t next_seq = p.next_value + n
        cdef int64_t wrap = next_seq - self.capacity
        cdef int spins = 0
        while True:
            p.cached_gating = self.min_gating(p.next_value)
            if wrap <= p.cached_gating:
                break
            if once:
                return RL_TIMEOUT
            if self.wait_step(spins, deadline, wrap):
                return RL_CLOSED if self.hdr.closed else RL_TIMEOUT
            spins += 1
        p.next_value = next_seq
        return next_seq

    cdef int64_t _claim_mp(self, int64_t n, int64_t deadline, bint once) noexcept nogil:
        cdef int64_t current, next_seq, wrap, gating
        cdef int spins = 0
        while True:
            current = rl_load_acquire(&self.hdr.cursor.value)
            next_seq = current + n
            wrap = next_seq - self.capacity
            gating = rl_load_acquire(&self.hdr.gating_cache.value)
            if wrap > gating or gating > current:
                gating = self.min_gating(current)
                if wrap > gating:
                    if once:
                        return RL_TIMEOUT
                    if self.wait_step(spins, deadline, wrap):
                        return RL_CLOSED if self.hdr.closed else RL_TIMEOUT
                    spins += 1
                    continue
                rl_store_release(&self.hdr.gating_cache.value, gating)
            elif rl_cas(&self.hdr.cursor.value, current, next_seq):
                return next_seq

    cdef int64_t claim(self, int64_t n, int64_t timeout_ns) noexcept nogil:
        """Claims ``n`` slots, waiting for space; the highest claimed sequence, or
        RL_TIMEOUT / RL_CLOSED. ``timeout_ns`` < 0 waits without limit."""
        if self.hdr.closed:
            return RL_CLOSED
        cdef int64_t deadline = -1 if timeout_ns < 0 else rl_now_ns() + timeout_ns
        if self.multi_producer:
            return self._claim_mp(n, deadline, False)
        return self._claim_sp(n, deadline, False)

    cdef int64_t try_claim(self, int64_t n) noexcept nogil:
        """Claims ``n`` slots only if free now; RL_TIMEOUT if the ring is full."""
        if self.hdr.closed:
            return RL_CLOSED
        if self.multi_producer:
            return self._claim_mp(n, -1, True)
        return self._claim_sp(n, -1, True)

    cdef int64_t claim_or_raise(self, int64_t n, int64_t timeout_ns, int64_t done,
                                int64_t total) except -1:
        """The claim of one chunk of a batch publish (``done`` of ``total`` events published
        before it), with the GIL held: without a hand-off when there is room, else waiting
        without the GIL. The highest claimed sequence; RingClosedError or
        InsufficientCapacityError (naming how far the batch got) otherwise."""
        cdef int64_t hi = self.try_claim(n)
        if hi == RL_TIMEOUT:
            with nogil:
                hi = self.claim(n, timeout_ns)
        return _claimed(hi, done, total)

    cdef void publish_range(self, int64_t lo, int64_t hi) noexcept nogil:
        """Makes slots ``lo..hi`` visible to consumers (release), then wakes sleepers."""
        cdef int64_t s
        if self.multi_producer:
            for s in range(lo, hi + 1):
                rl_store_release32(&self.avail[s & self.mask], <int32_t>(s >> self.index_shift))
        else:
            rl_store_release(&self.hdr.cursor.value, hi)
        if self.wait_kind == BLOCKING:  # checked here: no call for the other strategies
            self.signal()

    cdef void signal(self) noexcept nogil:
        """Wakes blocked waiters; costs no syscall when nobody sleeps."""
        if self.wait_kind != BLOCKING:
            return
        rl_wake_sleepers(&self.hdr.wake.signal, &self.hdr.wake.waiters)

    cdef int64_t highest_published(self, int64_t lo, int64_t hi) noexcept nogil:
        """Multi-producer: the highest s in lo..hi such that every slot up to s is published."""
        cdef int64_t s
        for s in range(lo, hi + 1):
            if rl_load_acquire32(&self.avail[s & self.mask]) != <int32_t>(s >> self.index_shift):
                return s - 1
        return hi

    # -- Python API ------------------------------------------------------------------------
    cdef int64_t _publish_one(self, object payload, uint32_t type_id, int64_t timestamp_ns,
                              int64_t correlation_id, uint32_t flags, uint32_t producer_id,
                              int64_t producer_seq, int64_t timeout_ns, bint once) except? -1:
        cdef Py_buffer buf
        cdef const char* data
        cdef Py_ssize_t n
        cdef bint release = False
        if isinstance(payload, bytes):
            data = PyBytes_AS_STRING(payload)
            n = PyBytes_GET_SIZE(payload)
        else:
            try:
                PyObject_GetBuffer(payload, &buf, 0)
            except TypeError:
                raise TypeError(f"payload must be bytes-like, got {type(payload).__name__}")
            data = <const char*>buf.buf
            n = buf.len
            release = True
        cdef int64_t seq
        cdef rl_header* h
        try:
            if n > self.slot_size - RL_HEADER_SIZE:
                raise SchemaError(f"payload of {n} bytes does not fit a {self.slot_size}-byte "
                                  f"slot ({self.slot_size - RL_HEADER_SIZE} bytes after the "
                                  "header); use a larger slot_size")
            seq = self.try_claim(1)  # holding the GIL: no hand-off unless we must wait
            if seq == RL_TIMEOUT and not once:
                with nogil:
                    seq = self.claim(1, timeout_ns)
            if seq < -1:
                if seq == RL_CLOSED:
                    raise RingClosedError("publish on a closed ring")
                if once:
                    return -1
                raise InsufficientCapacityError(
                    "the ring stayed full for the whole timeout: consumers are behind")
            h = <rl_header*>self.slot(seq)
            h.sequence = seq
            h.timestamp_ns = timestamp_ns
            h.correlation_id = correlation_id
            h.producer_seq = producer_seq
            h.type_id = type_id
            h.flags = flags
            h.length = <uint32_t>n
            h.producer_id = producer_id
            memcpy(<char*>h + RL_HEADER_SIZE, data, n)
            self.publish_range(seq, seq)
            return seq
        finally:
            if release:
                PyBuffer_Release(&buf)

    def publish(self, payload, uint32_t type_id=0, *, int64_t timestamp_ns=0,
                int64_t correlation_id=0, uint32_t flags=0, uint32_t producer_id=0,
                int64_t producer_seq=0, timeout=None):
        """Publishes one event (bytes-like payload); returns its sequence.

        Blocks while the ring is full (backpressure) up to ``timeout`` seconds, then raises
        InsufficientCapacityError. An oversize payload is a SchemaError and claims nothing.
        """
        return self._publish_one(payload, type_id, timestamp_ns, correlation_id, flags,
                                 producer_id, producer_seq, _timeout_ns(timeout), False)

    def try_publish(self, payload, uint32_t type_id=0, *, int64_t timestamp_ns=0,
                    int64_t correlation_id=0, uint32_t flags=0, uint32_t producer_id=0,
                    int64_t producer_seq=0):
        """Publishes one event only if a slot is free now; False if the ring is full."""
        return self._publish_one(payload, type_id, timestamp_ns, correlation_id, flags,
                                 producer_id, producer_seq, 0, True) >= 0

    def publish_many(self, payloads, uint32_t type_id=0, *, int64_t timestamp_ns=0,
                     int64_t correlation_id=0, uint32_t flags=0, timeout=None):
        """Publishes a sequence of payloads with one claim per ring-full; returns the last
        sequence (-1 for none). Every payload is checked before anything is claimed."""
        cdef list items = [x if isinstance(x, bytes) else _buffer_bytes(x, k)
                           for k, x in enumerate(payloads)]
        cdef Py_ssize_t room = self.slot_size - RL_HEADER_SIZE, i, n = len(items)
        cdef bytes p
        for i in range(n):
            if PyBytes_GET_SIZE(items[i]) > room:
                raise SchemaError(f"payload {i} of {PyBytes_GET_SIZE(items[i])} bytes does not "
                                  f"fit a {self.slot_size}-byte slot ({room} bytes after "
                                  "the header)")
        cdef int64_t t = _timeout_ns(timeout)
        cdef int64_t hi = -1, lo, s, chunk
        cdef rl_header* h
        i = 0
        while i < n:
            chunk = min(n - i, self.capacity)
            hi = self.claim_or_raise(chunk, t, i, n)
            lo = hi - chunk + 1
            for s in range(lo, hi + 1):
                p = items[i]
                i += 1
                h = <rl_header*>self.slot(s)
                rl_header_set(h, s, timestamp_ns, correlation_id, 0, type_id, flags,
                              <uint32_t>PyBytes_GET_SIZE(p))
                memcpy(<char*>h + RL_HEADER_SIZE, PyBytes_AS_STRING(p), h.length)
            self.publish_range(lo, hi)
        return hi

    def publish_records(self, records, type_id=0, *, timestamp_ns=0,
                        int64_t correlation_id=0, uint32_t flags=0,
                        Py_ssize_t record_size=0, timeout=None):
        """Publishes ``n`` fixed-size records from one buffer in one call: no Python object
        per event, the copying done without the GIL (replay feeds, market-data files, load
        generators). ``records``: a C-contiguous numpy array (a structured dtype: one element
        per event, the payload is its bytes) or any bytes-like buffer with ``record_size``.
        ``type_id`` and ``timestamp_ns``: one value for all, or an array of ``n``. Returns
        the last sequence (-1 for none). Everything is checked before anything is claimed."""
        import numpy as np

        cdef Py_buffer buf
        cdef Py_ssize_t size = record_size, room = self.slot_size - RL_HEADER_SIZE, n
        if size <= 0:
            size = getattr(records, "itemsize", 0)
            if getattr(records, "ndim", 1) != 1 or size <= 0:
                raise TypeError("publish_records takes a 1-d numpy array of records, or a "
                                "bytes-like buffer with record_size=")
        if size > room:
            raise SchemaError(f"records of {size} bytes do not fit a {self.slot_size}-byte "
                              f"slot ({room} bytes after the header)")
        PyObject_GetBuffer(records, &buf, PyBUF_C_CONTIGUOUS)
        try:
            if buf.len % size:
                raise ValueError(f"a buffer of {buf.len} bytes is not a whole number of "
                                 f"{size}-byte records")
            n = buf.len // size
            tids = np.broadcast_to(np.asarray(type_id, dtype=np.uint32), (n,))
            tss = np.broadcast_to(np.asarray(timestamp_ns, dtype=np.int64), (n,))
            tids, tss = np.ascontiguousarray(tids), np.ascontiguousarray(tss)
            return self._publish_records(<const char*>buf.buf, size, n, tids, tss,
                                         correlation_id, flags, _timeout_ns(timeout))
        finally:
            PyBuffer_Release(&buf)

    cdef int64_t _publish_records(self, const char* src, Py_ssize_t size, Py_ssize_t n,
                                  const uint32_t[::1] tids, const int64_t[::1] tss,
                                  int64_t corr, uint32_t flags, int64_t t) except? -3:
        cdef int64_t hi = -1, lo, s, chunk
        cdef int64_t step = max(1, self.capacity // 8)  # claims of an eighth of the ring:
        cdef Py_ssize_t i = 0                            # the consumer overlaps the copying
        cdef rl_header* h
        with nogil:
            while i < n:
                chunk = min(n - i, step)
                hi = self.claim(chunk, t)
                if hi < -1:
                    break
                lo = hi - chunk + 1
                for s in range(lo, hi + 1):
                    h = <rl_header*>self.slot(s)
                    rl_header_set(h, s, tss[i], corr, 0, tids[i], flags, <uint32_t>size)
                    memcpy(<char*>h + RL_HEADER_SIZE, src + i * size, size)
                    i += 1
                self.publish_range(lo, hi)
        return _claimed(hi, i, n)

    def publish_struct(self, event, registry, **kw):
        """Publishes a registered msgspec Struct (msgpack payload, FLAG_MSGPACK set)."""
        type_id, data = registry.encode(event)
        kw["flags"] = kw.get("flags", 0) | FLAG_MSGPACK
        return self.publish(data, type_id, **kw)

    def consumer(self, after=(), int max_batch=0):
        """Registers a consumer gating the producers; ``after`` lists upstream consumers
        it must never pass (pipeline and diamond graphs). It starts at the current cursor.
        ``max_batch`` (0: min(capacity, 4096)) bounds its batches: on a multi-producer ring
        a consumer with no ``after`` waits for at most that many slots at a time, so a longer
        ``poll(max_batch)`` gets no more."""
        cdef int i, n = self.hdr.n_consumers
        cdef int32_t deps = 0
        for c in after:
            if not isinstance(c, Consumer) or (<Consumer>c).ring is not self:
                raise RingError(f"after= takes consumers of this ring, got {c!r}")
            deps |= 1 << (<Consumer>c).index
        if n >= RL_MAX_CONSUMERS:
            raise RingError(f"a ring has at most {RL_MAX_CONSUMERS} consumers")
        start = rl_load_acquire(&self.hdr.cursor.value)
        for i in range(RL_MAX_CONSUMERS):
            if deps & (1 << i):
                start = min(start, rl_load_acquire(&self.hdr.consumers[i].value))
        rl_store_release(&self.hdr.consumers[n].value, start)
        self.hdr.consumer_deps[n] = deps
        rl_store_release32(&self.hdr.consumer_active[n], 1)
        rl_store_release32(&self.hdr.n_consumers, n + 1)
        return Consumer._bind(self, n, max_batch)

    def attach_consumer(self, int index, int max_batch=0):
        """The consumer registered at ``index`` (e.g. by another process), to consume here."""
        if not 0 <= index < self.hdr.n_consumers or not self.hdr.consumer_active[index]:
            raise RingError(f"no active consumer {index} in this ring "
                            f"({self.hdr.n_consumers} registered)")
        return Consumer._bind(self, index, max_batch)

    def close(self):
        """Closes the ring: claims fail, and waits return once what was published is consumed.
        """
        rl_store_release32(&self.hdr.closed, 1)
        rl_fetch_add32(&self.hdr.wake.signal, 1)
        rl_futex_wake_all(&self.hdr.wake.signal)

    @property
    def closed(self):
        """True once ``close()`` was called (in any process)."""
        return rl_load_acquire32(&self.hdr.closed) != 0

    @property
    def cursor(self):
        """Highest claimed (multi-producer) or published (single-producer) sequence."""
        return rl_load_acquire(&self.hdr.cursor.value)

    @property
    def path(self):
        """The shared-memory file, or None for private memory."""
        return self._map.path

    @property
    def nbytes(self):
        """Bytes of ring memory: header + availability flags + capacity x slot_size."""
        return self._map.size

    @property
    def dtype(self):
        """The numpy dtype of one slot."""
        return self._dtype

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        kind = "multi" if self.multi_producer else "single"
        return (f"Ring(capacity={self.capacity}, slot_size={self.slot_size}, "
                f"producer={kind!r}, cursor={self.cursor})")


cdef class Consumer:
    """One consumer: its own Sequence and a SequenceBarrier over the cursor and its upstream
    consumers. Not thread-safe: one thread consumes through it.

    ``poll()`` hands out the next batch; the batch's slots stay reserved until ``release()``
    or the next ``poll()``, which releases the previous batch first.
    """

    @staticmethod
    cdef Consumer _bind(Ring ring, int index, int max_batch):
        cdef Consumer c = Consumer.__new__(Consumer)
        c.ring = ring
        c.index = index
        c.seq_ptr = &ring.hdr.consumers[index].value
        c.deps = ring.hdr.consumer_deps[index]
        c.max_batch = max_batch if max_batch > 0 else <int>min(ring.capacity, 4096)
        c.pending_hi = rl_load_acquire(c.seq_ptr)
        return c

    cdef int64_t available(self, int64_t seq) noexcept nogil:
        """Highest sequence >= ``seq`` this consumer may read now, else ``seq - 1``. On a
        multi-producer ring a consumer with no upstream consumer looks at most ``max_batch``
        slots ahead: each slot's availability flag is read once per batch, not once per
        batch for every slot up to the cursor (a loop taking 1,024 of 16,384 claimed slots
        scanned each 16 times). Behind an upstream consumer the batch is what it released
        (a staged loop must see the journaller's batches whole), no more is scanned."""
        cdef rl_ring_header* h = self.ring.hdr
        cdef int64_t avail = rl_load_acquire(&h.cursor.value), v
        cdef int i
        if avail < seq:
            return seq - 1
        if self.deps:
            for i in range(RL_MAX_CONSUMERS):
                if self.deps & (1 << i):
                    v = rl_load_acquire(&h.consumers[i].value)
                    if v < avail:
                        avail = v
            if avail < seq:
                return seq - 1
        if self.ring.multi_producer:
            if not self.deps:
                avail = min(avail, seq + self.max_batch - 1)
            return self.ring.highest_published(seq, avail)
        return avail

    cdef int64_t wait_for(self, int64_t seq, int64_t timeout_ns) noexcept nogil:
        """Waits until ``seq`` is readable; returns the highest readable sequence (batching),
        or RL_TIMEOUT, or RL_CLOSED once the ring is closed and nothing is left."""
        cdef int64_t avail = self.available(seq)
        if avail >= seq:
            return avail  # the common case under load: no clock read, no spill
        return self._wait_slow(seq, timeout_ns)

    cdef int64_t _wait_slow(self, int64_t seq, int64_t timeout_ns) noexcept nogil:
        """``wait_for`` once ``seq`` was not readable: spin, yield, sleep or block."""
        cdef rl_ring_header* h = self.ring.hdr
        cdef WaitKind kind = self.ring.wait_kind
        cdef int64_t avail, deadline = -1, left
        cdef int32_t token
        cdef int spins = 0
        if timeout_ns >= 0:
            deadline = rl_now_ns() + timeout_ns
        while True:
            avail = self.available(seq)
            if avail >= seq:
                return avail
            if rl_load_acquire32(&h.closed):
                return RL_CLOSED
            if deadline >= 0:
                left = deadline - rl_now_ns()
                if left <= 0:
                    return RL_TIMEOUT
            else:
                left = 100000000  # re-check at least every 100 ms
            spins += 1
            if kind == BUSY_SPIN or spins < 64:
                rl_cpu_relax()
            elif kind == YIELDING or spins < 128:
                rl_yield()
            elif kind == SLEEPING:
                rl_sleep_ns(min(left, 50000))
            else:
                token = rl_sleeper_in(&h.wake.signal, &h.wake.waiters)
                if self.available(seq) < seq and not rl_load_acquire32(&h.closed):
                    rl_futex_wait(&h.wake.signal, token, min(left, 100000000))
                rl_sleeper_out(&h.wake.waiters)

    cdef void set_sequence(self, int64_t seq) noexcept nogil:
        """Releases every slot up to ``seq`` (release store) and wakes downstream sleepers."""
        rl_store_release(self.seq_ptr, seq)
        if self.ring.wait_kind == BLOCKING:
            self.ring.signal()

    # -- Python API ------------------------------------------------------------------------
    def poll(self, int max_batch=0, timeout=None):
        """The next batch (at most ``max_batch`` events, never wrapping the ring end); an empty
        batch if nothing came within ``timeout`` seconds. Releases the previous batch.
        Raises RingClosedError once the ring is closed and everything was consumed."""
        cdef int64_t t = _timeout_ns(timeout)
        cdef int64_t nxt, avail, end
        cdef int limit = max_batch if max_batch > 0 else self.max_batch
        if self.pending_hi > rl_load_acquire(self.seq_ptr):
            self.set_sequence(self.pending_hi)
        nxt = self.pending_hi + 1
        avail = self.available(nxt)  # holding the GIL: release it only to wait
        if avail < nxt:
            with nogil:
                avail = self.wait_for(nxt, t)
        cdef Batch b = Batch.__new__(Batch)
        b.consumer = self
        b.lo = nxt
        if avail == RL_CLOSED:
            raise RingClosedError("the ring is closed and every published event was consumed")
        if avail == RL_TIMEOUT:
            b.hi = nxt - 1
            return b
        end = (nxt | self.ring.mask)  # last sequence before the ring wraps
        avail = min(avail, nxt + limit - 1, end)
        b.hi = avail
        self.pending_hi = avail
        self.batches += 1
        self.events += avail - nxt + 1
        if avail - nxt + 1 > self.max_batch_seen:
            self.max_batch_seen = avail - nxt + 1
        return b

    def release(self, Batch batch=None):
        """Releases the slots of the last batch (or up to ``batch``) to the producers."""
        hi = self.pending_hi if batch is None else batch.hi
        if hi > rl_load_acquire(self.seq_ptr):
            self.set_sequence(hi)

    def __iter__(self):
        """Yields every event until the ring is closed and drained."""
        while True:
            try:
                batch = self.poll()
            except RingClosedError:
                return
            yield from batch

    @property
    def sequence(self):
        """Highest sequence this consumer has released."""
        return rl_load_acquire(self.seq_ptr)

    @property
    def depth(self):
        """Queue depth: events published but not yet released by this consumer."""
        return max(0, rl_load_acquire(&self.ring.hdr.cursor.value) - rl_load_acquire(self.seq_ptr))

    @property
    def metrics(self):
        """Batches, events, mean and max batch size, queue depth."""
        return {"batches": self.batches, "events": self.events,
                "mean_batch": <double>self.events / self.batches if self.batches else 0.0,
                "max_batch": self.max_batch_seen, "depth": self.depth,
                "sequence": self.sequence}
