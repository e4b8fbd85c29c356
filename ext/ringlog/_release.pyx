"""The processor's output stage for slot listeners (``add_output_listener(batch="slots")``, the
gateway) as one compiled pump that needs the GIL only to hand a block over.

::

    output ring ──► append to the output journal (memcpy, no GIL) ──► appended
                                                                          │ outputs whose cause
                                                                          │ (input journal seq,
                                                                          │ header.producer_seq)
                     input journal's durable mark (futex) ────gates────►  │ is durable
                                                                          ▼
                    the durable prefix ──► SlotSink: memcpy into its buffer, no GIL; an
                        │                  eventfd write when it was empty ──► the gateway's
                        │                  event loop (add_reader) takes one bytes of it all
                        └─► Python listeners(slots, slot_size): one bytes copy, the GIL once
                    then the slots go back to the engine loop

With a SlotSink as the only listener, the input journal's durable hook releases: the thread
that advances the durable mark (the group-commit thread, right after its fdatasync) hands the
outputs it made durable into the sink itself, so the output stage's wake-up is no longer
between the mark and the eventfd (it still wakes once per sync, after the hook, to append
what the engine published during the fdatasync):

    group-commit thread: fdatasync ─► durable mark ─► hook: durable prefix ─► SlotSink ─► eventfd
    rl-output thread:    output ring ─► output journal ─► appended; sleeps on the durable mark
                         (woken after the hook ran) or, all released, on the ring

Both threads hand over under one mutex (`lock`), each the prefix durable at the time, so an
output appended after the mark moved is released by the output stage itself.

Inline topology, a SlotSink the one listener (``attach()``): no rl-output thread. The engine
loop, right after it publishes a batch's output slots, appends them to the output journal and
hands over what is durable already (all of it under release immediate); the durable hook
hands over the rest; handed-over slots go back to the loop at once:

    engine loop:      outputs ─► OUTPUT RING (publish) ─► output journal ─► durable prefix
                                                                             ─► SlotSink
    group-commit thread: fdatasync ─► durable mark ─► hook: durable prefix ─► SlotSink

The sink is then bounded (one output ring of bytes): a push that would exceed it is refused
and the slots stay in the ring, so a slow consumer fills the ring and the ring holds the loop
back (``LogicCore._claim_outputs`` waits, re-checking a failed input journal); the consumer's
``take()`` hands over what waited. ``unbound()`` (stop) lifts the bound, ``finish()`` hands
over the rest once durable and unhooks.

Pipelined: while the oldest appended output waits for its input's fdatasync, the pump keeps
appending what the engine loop publishes (each wake-up takes all there is), and a hand-over
takes every appended output whose cause is durable then, not one poll's batch per sync.
Order is kept: the hand-over is the longest prefix of unreleased outputs whose causes are all
durable. A failed input journal stops the stage with a JournalError and nothing after the
durable mark is handed over. Without a gate (release immediate, or durability none) a
hand-over follows each append.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.errno cimport errno
from libc.stdint cimport INT64_MAX, int64_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy
from posix.time cimport nanosleep, timespec
from posix.unistd cimport close, read, write

from ringlog._counters cimport (
    JS_BACKLOG, JS_BATCHES, JS_DURABLE, JS_SEQUENCE, StageCounters, counter_add, counter_set,
)
from ringlog._journal cimport JournalAppender, written_seq
from ringlog._ring cimport RL_CLOSED, RL_TIMEOUT, Consumer, Ring
from ringlog.includes.atomics cimport rl_load_acquire
from ringlog.includes.event cimport rl_header

import os

from ringlog.errors import JournalError

__all__ = ["ReleaseStage", "SlotSink"]


cdef extern from "pthread.h" nogil:
    int pthread_mutex_init(pthread_mutex_t* m, void* attr)
    int pthread_mutex_destroy(pthread_mutex_t* m)
    int pthread_mutex_lock(pthread_mutex_t* m)
    int pthread_mutex_unlock(pthread_mutex_t* m)


cdef extern from "sys/eventfd.h" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_NONBLOCK
    int EFD_CLOEXEC


cdef class SlotSink:
    """Output slot blocks handed from the output stage to another thread without the GIL: the
    stage appends slots to a C buffer and writes an eventfd when the buffer was empty; the
    consumer (the gateway's event loop: ``loop.add_reader(sink.fd, ...)``) calls ``take()``
    for all that waits, as one bytes of whole slots (``ringlog.slot_dtype`` records, in
    output order). Pass it to ``Processor.add_output_listener(sink, batch="slots")``; called
    as ``sink(slots, slot_size)`` from Python it queues a block the same way. One producer
    thread and one consumer thread."""

    def __cinit__(self):
        pthread_mutex_init(&self.lock, NULL)
        self.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self.fd < 0:
            raise OSError(errno, f"eventfd: {os.strerror(errno)}")

    def __dealloc__(self):
        # the fd is closed only here: the producer holds a reference while it may write
        if self.fd >= 0:
            close(self.fd)
        free(self.buf)
        pthread_mutex_destroy(&self.lock)

    cdef int push(self, const char* first, Py_ssize_t first_len, const char* rest,
                  Py_ssize_t rest_len, int slot_size) noexcept nogil:
        """Appends ``first`` then ``rest`` (whole slots); wakes the consumer if the sink was
        empty. Returns -1 if memory ran out, 1 if the bound refused them (nothing appended
        either way), else 0. An empty sink takes any block."""
        cdef Py_ssize_t need, cap
        cdef char* grown
        cdef bint was_empty
        cdef uint64_t one = 1
        pthread_mutex_lock(&self.lock)
        need = self.len + first_len + rest_len
        if self.limit and self.len and need > self.limit:  # bounded: the ring holds them
            self.refusals += 1
            pthread_mutex_unlock(&self.lock)
            return 1
        if need > self.cap:
            cap = max(need, 2 * self.cap, 1 << 16)
            grown = <char*>realloc(self.buf, cap)
            if grown == NULL:
                pthread_mutex_unlock(&self.lock)
                return -1
            self.buf, self.cap = grown, cap
        was_empty = self.len == 0 and not self.quiet
        memcpy(self.buf + self.len, first, first_len)
        if rest_len:
            memcpy(self.buf + self.len + first_len, rest, rest_len)
        self.len = need
        self.slot_size = slot_size
        self.pushes += 1
        pthread_mutex_unlock(&self.lock)
        if was_empty:  # the consumer takes everything at once: one wake-up per take
            # (quiet: the consumer's thread pushed this itself and takes next)
            self.signals += 1
            write(self.fd, &one, 8)
        return 0

    def __call__(self, slots, int slot_size):
        """Queues a block of slots from Python (a processor's Python output path)."""
        cdef const unsigned char[::1] v = slots
        cdef int rc
        with nogil:
            rc = self.push(<const char*>&v[0] if v.shape[0] else NULL, v.shape[0], NULL, 0,
                           slot_size)
        if rc:
            raise MemoryError("SlotSink: no memory for a block of output slots")

    def take(self):
        """Everything queued, as one bytes of whole slots (None when nothing waits); clears
        the eventfd first, so a block pushed after the take wakes the consumer again."""
        cdef uint64_t count
        cdef Py_ssize_t n
        read(self.fd, &count, 8)  # non-blocking; EAGAIN when already clear
        pthread_mutex_lock(&self.lock)
        n = self.len
        if n == 0:
            pthread_mutex_unlock(&self.lock)
            return None
        try:
            block = PyBytes_FromStringAndSize(self.buf, n)
            self.len = 0
        finally:
            pthread_mutex_unlock(&self.lock)
        if self.refill != NULL:  # bounded: what the bound held back follows now
            self.refill(self.refill_ctx)
        return block

    @property
    def queued(self):
        """Bytes waiting for ``take()``. Read under the lock: a push that saw ``quiet`` (and
        so wrote no eventfd) is either counted here or saw ``quiet`` cleared and wrote it."""
        cdef Py_ssize_t n
        pthread_mutex_lock(&self.lock)
        n = self.len
        pthread_mutex_unlock(&self.lock)
        return n

cdef int64_t WAIT_NS = 50000000  # re-check a closed ring or a failed journal this often


cdef void _on_taken(void* ctx) noexcept nogil:
    # the sink's refill (a loop-appended stage, bounded sink): ctx is the ReleaseStage, alive
    # until finish() cleared it (with the GIL, which take() holds while it calls this)
    (<ReleaseStage>ctx)._release_durable((<ReleaseStage>ctx)._gate_durable(), False)


cdef void _on_durable(void* ctx, int64_t durable) noexcept nogil:
    # the gate's durable hook (JournalAppender.set_durable_hook): ctx is the ReleaseStage,
    # alive while its run() is (run() clears the hook, waiting out a running call, first)
    (<ReleaseStage>ctx)._release_durable(durable, True)


cdef enum:
    PUMP_CLOSED = -2              # the ring is closed and everything was handed over
    PUMP_FAILED = -3              # the input journal failed: nothing more is handed over


cdef class ReleaseStage:
    """The output stage of a processor whose listeners all take slot blocks: appends every
    output to ``journal`` (the output journal), then hands the outputs to each of
    ``listeners`` as ``fn(slots, slot_size)`` (a bytes copy of consecutive output ring slots,
    ``ringlog.slot_dtype`` records; at most one of them a ``SlotSink``, which gets them
    without the GIL), only once ``gate`` (the input journal's appender; None: at once) has
    made their causes durable. ``run()`` returns when the output ring is closed
    and everything was handed over; it raises a listener's exception or a JournalError when
    the input journal failed. Not thread-safe: one thread runs it."""

    def __init__(self, Consumer consumer, JournalAppender journal, JournalAppender gate,
                 list listeners, StageCounters counters=None):
        if not listeners:
            raise ValueError("ReleaseStage needs at least one listener")
        for fn in listeners:
            if not callable(fn):
                raise TypeError(f"a listener must be callable, got {type(fn).__name__}")
        sinks = [fn for fn in listeners if isinstance(fn, SlotSink)]
        if len(sinks) > 1:
            raise ValueError("one SlotSink per output stage (its consumer takes all)")
        self.sink = sinks[0] if sinks else None
        listeners = [fn for fn in listeners if not isinstance(fn, SlotSink)]
        self.consumer = consumer
        self.ring = consumer.ring
        self.journal = journal
        self.gate = gate
        self.listeners = list(listeners)
        self.python_listeners = bool(listeners)
        self.counters = counters if counters is not None else StageCounters(None, "journal")
        self.ctr = self.counters.slot
        self.appended = self.released = rl_load_acquire(consumer.seq_ptr) + 1
        self.hooked = gate is not None and self.sink is not None and not self.python_listeners

    def __cinit__(self):
        pthread_mutex_init(&self.lock, NULL)

    def __dealloc__(self):
        pthread_mutex_destroy(&self.lock)

    def run(self):
        """Pumps until the output ring is closed and drained (see the class docstring)."""
        cdef int64_t upto
        if self.hooked:
            self.gate.set_durable_hook(_on_durable, <void*>self)
        try:
            while True:
                with nogil:
                    upto = self._pump()
                if upto == PUMP_CLOSED:
                    return
                if upto == PUMP_FAILED:
                    raise JournalError(f"input journal failed before sequence "
                                       f"{self._cause(self.released)} was durable: its "
                                       "outputs are not released")
                self._hand_over(upto)
        finally:
            if self.hooked:
                with nogil:
                    self.gate.set_durable_hook(NULL, NULL)

    cdef int64_t _pump(self) except -1 nogil:
        """Appends what the ring holds and returns the end (exclusive) of the next
        hand-over to Python listeners, or PUMP_CLOSED / PUMP_FAILED; hands over to the sink
        itself and sleeps on the ring or on the durable mark meanwhile, without the GIL (a
        roll of the output journal takes it, in the journal's code)."""
        cdef int64_t avail, hi, upto, cause, unwritten
        while True:
            avail = self.consumer.available(self.appended)
            if avail >= self.appended:
                hi = min(avail, self.appended | self.ring.mask)  # one contiguous run of slots
                self.journal.append_slots(self.ring.slot(self.appended), self.ring.slot_size,
                                          hi - self.appended + 1)
                if self.hooked:
                    pthread_mutex_lock(&self.lock)
                self.appended = hi + 1
                if self.hooked:
                    pthread_mutex_unlock(&self.lock)
                counter_set(self.ctr[JS_SEQUENCE], written_seq(self.journal, &unwritten))
                counter_set(self.ctr[JS_BACKLOG], avail - hi + unwritten)
            if self.hooked:
                # what is durable already goes now; the rest goes from the durable hook on
                # the sync thread, before this one wakes from the durable wait (which it
                # still sleeps in, once per sync, to append what came meanwhile: sleeping
                # on the ring instead would wake it for each of the engine's publishes)
                cause = self._release_durable(rl_load_acquire(&self.gate.durable), False)
                if cause >= 0:
                    if self.gate.failed:
                        return PUMP_FAILED
                    self.durable_waits += 1
                    self.gate.wait_durable_c(cause, WAIT_NS)
                    continue
                if self._await_output() == PUMP_CLOSED:
                    return PUMP_CLOSED
                continue
            if self.released < self.appended:
                upto = self.appended if self.gate is None else \
                    self._releasable(rl_load_acquire(&self.gate.durable))
                if upto > self.released:
                    if self.python_listeners:
                        return upto  # Python listeners: run() takes the GIL
                    self._to_sinks(upto)
                    continue
                if self.gate.failed:
                    return PUMP_FAILED
                # the oldest unreleased output waits for its input's sync; what the loop
                # publishes meanwhile is appended after the wake-up
                cause = (<const rl_header*>self.ring.slot(self.released)).producer_seq
                self.gate.want_durable(self._last_cause())
                self.durable_waits += 1
                self.gate.wait_durable_c(cause, WAIT_NS)
                continue
            if self._await_output() == PUMP_CLOSED:
                return PUMP_CLOSED

    cdef int64_t _await_output(self) noexcept nogil:
        """Sleeps on the output ring for the next output: PUMP_CLOSED once it is closed and
        empty, else 0 (after a timeout the durable counter is refreshed: idle, the output
        journal's sync may have moved on)."""
        cdef int64_t avail = self.consumer.wait_for(self.appended, WAIT_NS)
        if avail == RL_CLOSED:
            return PUMP_CLOSED
        if avail == RL_TIMEOUT:
            counter_set(self.ctr[JS_DURABLE], rl_load_acquire(&self.journal.durable))
        return 0

    cdef int64_t _releasable(self, int64_t durable) noexcept nogil:
        """The end (exclusive) of the longest run of unreleased outputs whose causes are at
        or below ``durable``."""
        cdef int64_t s = self.released
        while s < self.appended and \
                (<const rl_header*>self.ring.slot(s)).producer_seq <= durable:
            s += 1
        return s

    cdef bint _to_sinks(self, int64_t upto) noexcept nogil:
        """Ring slots [released, upto) into the sink (no GIL), then back to the engine loop.
        Without memory for them the sink is retried after a pause (outputs are never
        dropped; the ring's backpressure holds the loop meanwhile). A bounded sink that is
        full refuses them: they stay in the ring (False) until its consumer's take()."""
        cdef Py_ssize_t size = self.ring.slot_size
        cdef int64_t lo = self.released
        cdef int64_t first = min(upto, (lo | self.ring.mask) + 1) - lo  # before the wrap
        cdef timespec pause
        cdef int rc
        pause.tv_sec, pause.tv_nsec = 0, 1000000
        if self.sink is not None:
            while True:
                rc = self.sink.push(self.ring.slot(lo), first * size, self.ring.slot(lo + first),
                                    (upto - lo - first) * size, self.ring.slot_size)
                if rc == 0:
                    break
                if rc == 1:
                    return False
                nanosleep(&pause, NULL)
        self._released(upto)
        return True

    cdef void _released(self, int64_t upto) noexcept nogil:
        self.consumer.set_sequence(upto - 1)
        self.released = upto
        self.handovers += 1
        counter_set(self.ctr[JS_DURABLE], rl_load_acquire(&self.journal.durable))
        counter_add(self.ctr[JS_BATCHES], 1)

    cdef int64_t _release_durable(self, int64_t durable, bint by_hook) noexcept nogil:
        """Hooked: hands the appended outputs whose causes are at or below ``durable`` into
        the sink (either thread, under the lock); returns the cause of the oldest output
        left unreleased, -1 if none is."""
        cdef int64_t upto, cause = -1, last = -1
        pthread_mutex_lock(&self.lock)
        upto = self._releasable(durable)
        if upto > self.released and self._to_sinks(upto) and by_hook:
            self.hook_handovers += 1
        if self.released < self.appended:
            cause = (<const rl_header*>self.ring.slot(self.released)).producer_seq
            last = self._last_cause()
        pthread_mutex_unlock(&self.lock)
        if last >= 0 and self.gate is not None:  # (its wake-up, if any, not under the lock)
            self.gate.want_durable(last)
        return cause

    cdef int64_t _last_cause(self) noexcept nogil:
        # the cause of the last appended output: while it is held, the group commit syncs
        # back to back until that input is durable (JournalAppender.want_durable)
        return (<const rl_header*>self.ring.slot(self.appended - 1)).producer_seq

    cdef int _hand_over(self, int64_t upto) except -1:
        """Ring slots [released, upto) to the sink and one bytes copy of them to every Python
        listener (the GIL held), then back to the engine loop."""
        cdef Ring ring = self.ring
        cdef Py_ssize_t size = ring.slot_size
        cdef int64_t lo = self.released
        cdef int64_t first = min(upto, (lo | ring.mask) + 1) - lo  # slots before the wrap
        cdef int64_t n = upto - lo
        block = PyBytes_FromStringAndSize(NULL, n * size)
        cdef char* dst = PyBytes_AS_STRING(block)
        memcpy(dst, ring.slot(lo), first * size)
        if n > first:
            memcpy(dst + first * size, ring.slot(lo + first), (n - first) * size)
        if self.sink is not None:
            self.sink(block, size)
        for fn in self.listeners:
            fn(block, size)
        self._released(upto)
        return 0

    # -- the engine loop appends (no rl-output thread) ---------------------------------------
    def attach(self):
        """Makes the engine loop this stage's thread (``LogicCore.set_release``): the loop
        appends each published batch of outputs itself (``loop_append``) and hands over
        what may go; the input journal's durable hook hands over the rest on the thread
        that advanced the mark. The sink is bounded to one output ring of bytes: when its
        consumer lags, outputs wait in the ring and the ring holds the loop back; the
        consumer's ``take()`` hands over what waited. ``finish()`` ends it."""
        if self.sink is None or self.python_listeners:
            raise ValueError("only a stage whose one listener is a SlotSink runs on the loop")
        self.by_loop = self.hooked = True
        self.sink.limit = self.ring.capacity * self.ring.slot_size
        self.sink.refill_ctx = <void*>self
        self.sink.refill = _on_taken
        if self.gate is not None:
            self.gate.set_durable_hook(_on_durable, <void*>self)

    cdef int loop_append(self, int64_t hi) except -1 nogil:
        """The loop thread, right after it published output slots up to ``hi``: appends
        them to the output journal, then hands over those whose causes are durable now
        (all of them without a gate, release immediate)."""
        cdef int64_t lo, end, unwritten
        cdef Py_ssize_t size = self.ring.slot_size
        while self.appended <= hi:  # one contiguous run of slots per append
            lo = self.appended
            end = min(hi, lo | self.ring.mask)
            self.journal.append_slots(self.ring.slot(lo), size, end - lo + 1)
            pthread_mutex_lock(&self.lock)
            self.appended = end + 1
            pthread_mutex_unlock(&self.lock)
        counter_set(self.ctr[JS_SEQUENCE], written_seq(self.journal, &unwritten))
        counter_set(self.ctr[JS_BACKLOG], unwritten)
        self._release_durable(self._gate_durable(), False)
        return 0

    cdef int64_t _gate_durable(self) noexcept nogil:
        """The input journal's durable mark; without a gate, no bound."""
        return INT64_MAX if self.gate is None else rl_load_acquire(&self.gate.durable)

    cdef int check_gate(self) except -1:
        """Raises JournalError once the input journal failed (nothing past its durable
        mark is ever handed over): the loop, held back by a full output ring, stops."""
        if self.gate is not None and self.gate.failed:
            raise JournalError(f"input journal failed before sequence "
                               f"{self._cause(self.released)} was durable: its outputs "
                               "are not released")
        return 0

    def unbound(self):
        """Lifts the sink's bound and hands over what it held back (stop: the loop, held by
        a full output ring, must not wait for a consumer that may have gone)."""
        if self.by_loop:
            self.sink.limit = 0
            with nogil:
                self._release_durable(self._gate_durable(), False)

    def finish(self):
        """Stops a loop-appended stage (the loop has ended): lifts the sink's bound, waits
        until every appended output was handed over (its input durable), then unhooks.
        Raises JournalError, handing nothing more over, if the input journal failed."""
        cdef int64_t cause
        cdef bint failed = False
        if not self.by_loop:
            return
        self.sink.limit = 0
        try:
            with nogil:
                while True:
                    cause = self._release_durable(self._gate_durable(), False)
                    if cause < 0:
                        break
                    if self.gate.failed:
                        failed = True
                        break
                    self.durable_waits += 1
                    self.gate.wait_durable_c(cause, WAIT_NS)
            if failed:
                self.check_gate()
        finally:
            if self.gate is not None:
                with nogil:
                    self.gate.set_durable_hook(NULL, NULL)
            self.sink.refill = NULL  # take() runs with the GIL held: none is running now
            self.by_loop = False

    def _cause(self, int64_t seq):
        return (<const rl_header*>self.ring.slot(seq)).producer_seq
