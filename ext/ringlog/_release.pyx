"""The processor's output stage for slot listeners (``add_output_listener(batch="slots")``, the
gateway) as one compiled pump that needs the GIL only to hand a block over.

::

    output ring ──► append to the output journal (memcpy, no GIL) ──► appended
                                                                          │ outputs whose cause
                                                                          │ (input journal seq,
                                                                          │ header.producer_seq)
                     input journal's durable mark (futex) ────gates────►  │ is durable
                                                                          ▼
                    one bytes copy of the durable prefix ──► listeners(slots, slot_size)
                    (the GIL, once per hand-over) ──► slots released to the engine loop

Pipelined: while the oldest appended output waits for its input's fdatasync, the pump keeps
appending what the engine loop publishes (each wake-up takes all there is), and a hand-over
takes every appended output whose cause is durable then, not one poll's batch per sync.
Order is kept: the hand-over is the longest prefix of unreleased outputs whose causes are all
durable. A failed input journal stops the stage with a JournalError and nothing after the
durable mark is handed over. Without a gate (release immediate, or durability none) a
hand-over follows each append.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t
from libc.string cimport memcpy

from ringlog._counters cimport (
    JS_BACKLOG, JS_BATCHES, JS_DURABLE, JS_SEQUENCE, StageCounters, counter_add, counter_set,
)
from ringlog._journal cimport JournalAppender
from ringlog._ring cimport RL_CLOSED, RL_TIMEOUT, Consumer, Ring
from ringlog.includes.atomics cimport rl_load_acquire
from ringlog.includes.event cimport rl_header

from ringlog.errors import JournalError

__all__ = ["ReleaseStage"]

cdef int64_t WAIT_NS = 50000000  # re-check a closed ring or a failed journal this often
cdef enum:
    PUMP_CLOSED = -2              # the ring is closed and everything was handed over
    PUMP_FAILED = -3              # the input journal failed: nothing more is handed over


cdef class ReleaseStage:
    """The output stage of a processor whose listeners all take slot blocks: appends every
    output to ``journal`` (the output journal), then hands the outputs to each of
    ``listeners`` as ``fn(slots, slot_size)`` (a bytes copy of consecutive output ring slots,
    ``ringlog.slot_dtype`` records), only once ``gate`` (the input journal's appender; None:
    at once) has made their causes durable. ``run()`` returns when the output ring is closed
    and everything was handed over; it raises a listener's exception or a JournalError when
    the input journal failed. Not thread-safe: one thread runs it."""

    def __init__(self, Consumer consumer, JournalAppender journal, JournalAppender gate,
                 list listeners, StageCounters counters=None):
        if not listeners:
            raise ValueError("ReleaseStage needs at least one listener")
        for fn in listeners:
            if not callable(fn):
                raise TypeError(f"a listener must be callable, got {type(fn).__name__}")
        self.consumer = consumer
        self.ring = consumer.ring
        self.journal = journal
        self.gate = gate
        self.listeners = list(listeners)
        self.counters = counters if counters is not None else StageCounters(None, "journal")
        self.ctr = self.counters.slot
        self.appended = self.released = rl_load_acquire(consumer.seq_ptr) + 1

    def run(self):
        """Pumps until the output ring is closed and drained (see the class docstring)."""
        cdef int64_t upto
        while True:
            with nogil:
                upto = self._pump()
            if upto == PUMP_CLOSED:
                return
            if upto == PUMP_FAILED:
                raise JournalError(f"input journal failed before sequence "
                                   f"{self._cause(self.released)} was durable: its outputs "
                                   "are not released")
            self._hand_over(upto)

    cdef int64_t _pump(self) except -1 nogil:
        """Appends what the ring holds and returns the end (exclusive) of the next
        hand-over, or PUMP_CLOSED / PUMP_FAILED; sleeps on the ring or on the durable mark
        meanwhile, never holding the GIL."""
        cdef int64_t avail, hi, upto, d, cause
        while True:
            avail = self.consumer.available(self.appended)
            if avail >= self.appended:
                hi = min(avail, self.appended | self.ring.mask)  # one contiguous run of slots
                self.journal.append_slots(self.ring.slot(self.appended), self.ring.slot_size,
                                          hi - self.appended + 1)
                self.appended = hi + 1
                counter_set(self.ctr[JS_SEQUENCE], self.journal.last_seq)
                counter_set(self.ctr[JS_BACKLOG], avail - hi)
            if self.released < self.appended:
                if self.gate is None:
                    return self.appended
                d = rl_load_acquire(&self.gate.durable)
                upto = self._releasable(d)
                if upto > self.released:
                    return upto
                if self.gate.failed:
                    return PUMP_FAILED
                # the oldest unreleased output waits for its input's sync; what the loop
                # publishes meanwhile is appended after the wake-up
                cause = (<const rl_header*>self.ring.slot(self.released)).producer_seq
                self.durable_waits += 1
                self.gate.wait_durable_c(cause, WAIT_NS)
                continue
            avail = self.consumer.wait_for(self.appended, WAIT_NS)
            if avail == RL_CLOSED:
                return PUMP_CLOSED
            if avail == RL_TIMEOUT:  # idle: the output journal's sync may have moved on
                counter_set(self.ctr[JS_DURABLE], rl_load_acquire(&self.journal.durable))

    cdef int64_t _releasable(self, int64_t durable) noexcept nogil:
        """The end (exclusive) of the longest run of unreleased outputs whose causes are at
        or below ``durable``."""
        cdef int64_t s = self.released
        while s < self.appended and \
                (<const rl_header*>self.ring.slot(s)).producer_seq <= durable:
            s += 1
        return s

    cdef int _hand_over(self, int64_t upto) except -1:
        """One bytes copy of ring slots [released, upto) to every listener (the GIL held),
        then the slots go back to the engine loop."""
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
        for fn in self.listeners:
            fn(block, size)
        self.consumer.set_sequence(upto - 1)
        self.released = upto
        self.handovers += 1
        counter_set(self.ctr[JS_DURABLE], rl_load_acquire(&self.journal.durable))
        counter_add(self.ctr[JS_BATCHES], 1)
        return 0

    def _cause(self, int64_t seq):
        return (<const rl_header*>self.ring.slot(seq)).producer_seq
