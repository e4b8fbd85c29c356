"""The processor's hot loops: the journaller stage and the business-logic state machine.

``LogicCore`` is the one implementation of the loop's logic; ``ringlog.logic.LogicLoop`` is its
configurable Python shell. For each input event, in journal order, it decides whether it is a
control event (breaker commands, timers, snapshot requests), a duplicate (dedup key seen
before), input to hold back (the breaker is open: the journal is the buffer, ``pending_from``
the first held-back sequence, re-read on a journaled reset) or business for the handler. The
handler's outputs pass the breaker (``BreakerCore.check_c``) and are written into the output
ring in place (claim, header + payload, publish), or held while the breaker is open.

The same per-event code (``process_c``) runs live over ring slots (``run``), on replay over
mapped journal records (``replay_segment``) and for Python event objects (``process``), so a
replay trips, halts, resumes and emits exactly as the live run did. Consecutive business
events (no control event, breaker closed; a duplicate is skipped in the run) run through
``_handle`` in runs with one exception frame (``_business_run`` live, ``_replay_run`` on
replay), with the same decisions. Handlers:

- ``CyEventHandler`` subclasses: ``on_event_c`` gets the slot's header and payload pointers;
  no Python object is made per event.
- Python ``on_event(event, sequence, end_of_batch)``: ``event`` is a flyweight ``SlotEvent``
  reused for every event, valid only during the call (copy ``bytes(event.payload)`` to keep).
  An ``on_event`` declaring fewer parameters (``event``, or ``event, sequence``) gets only
  those (``_event_arity``): no int made per call.
- Python ``on_batch(array, first_sequence)``: a numpy view (``slot_dtype``) of consecutive
  business events; the batches are the journaller's (``FLAG_BATCH_END``), so replay hands the
  handler the same batches. Outputs of a batch carry its last event's sequence and time.

Not thread-safe: only the processor's loop thread (or the replaying thread) drives a core.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from ringlog._breaker cimport (
    BR_CLOSED, BR_OPEN, BR_PASS, BR_THROTTLE, BR_TRIPPED, BreakerCore, breaker_check,
    breaker_input, breaker_pass_run,
)
from ringlog._counters cimport (
    JS_BACKLOG, JS_BATCHES, JS_DURABLE, JS_SEQUENCE, LS_AGE, LS_BATCHES, LS_BREAKER_HELD,
    LS_BREAKER_STATE, LS_BREAKER_TRIPS, LS_DEAD_LETTERS, LS_DUPLICATES, LS_GIL_WAIT, LS_KILLS,
    LS_OUTPUTS, LS_PROCESSED, LS_PUBLISHED, LS_SEQUENCE, StageCounters, age_bucket, counter_add,
    counter_set, wall_ns,
)
from ringlog._handler cimport LOOKAHEAD, PACKED_HEADER, CyEventHandler, Emitter, packed_next
from ringlog._hashmap cimport map_clear, map_free, map_get, map_init, map_reserve, map_slot
from ringlog._journal cimport (
    REC_PREFIX,
    SCAN_OK,
    JournalAppender,
    Segment,
    append_output,
    written_seq,
)
from ringlog._ring cimport RL_CLOSED, RL_TIMEOUT, Consumer, Ring
from ringlog.includes.atomics cimport rl_load_acquire, rl_load_acquire32
from ringlog.includes.pycall cimport rl_seq_int, rl_vectorcall, rl_vectorcall_of
from ringlog.includes.event cimport (
    RL_FLAG_BATCH_END, RL_FLAG_CONTROL, RL_HEADER_SIZE, rl_header, rl_header_set,
)
from ringlog.includes.ringwait cimport rl_now_ns

import inspect
import traceback

import msgspec
import numpy as np

from ringlog import events as _events
from ringlog.errors import ConfigError, RingClosedError, RingLogError, SchemaError, StateError

__all__ = ["LogicCore", "SlotEvent", "journal_stage"]


def _event_arity(on_event):
    """How many of (event, sequence, end_of_batch) a Python ``on_event`` takes: what its
    signature declares positionally (``*args``: all three). A handler that reads only
    ``event`` (its ``sequence`` included) is spared the int and bool made per call."""
    try:
        params = inspect.signature(on_event).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): the full contract
        return 3
    n = 0
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            return 3
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n if 1 <= n <= 3 else 3


# control type ids, from ringlog.events (the one place they are defined)
cdef uint32_t CONTROL_BASE = _events.CONTROL_BASE
cdef uint32_t T_TIMER = _events.TYPE_TIMER
cdef uint32_t T_SNAPSHOT = _events.TYPE_SNAPSHOT
cdef uint32_t T_RESET = _events.TYPE_BREAKER_RESET
cdef uint32_t T_RELEASE = _events.TYPE_RELEASE_HELD
cdef uint32_t T_DISCARD = _events.TYPE_DISCARD_HELD
cdef uint32_t T_TRIPPED = _events.TYPE_BREAKER_TRIPPED
cdef uint32_t T_CLOSED = _events.TYPE_BREAKER_CLOSED
cdef uint32_t T_KILL = _events.TYPE_KILL
cdef uint32_t T_ENABLE = _events.TYPE_ENABLE
cdef uint32_t T_KILLED = _events.TYPE_KILLED

cdef int64_t WAIT_NS = 50000000  # a stage re-checks for a closed ring at least this often
cdef int64_t OUT_CHUNK = 32      # output ring slots claimed at once (_claim_outputs)
cdef int64_t NEED_GIL = -4       # _steps_nogil: the rest of the batch needs the GIL
cdef char _EMPTY[1]


cdef extern from "Python.h":
    PyObject* Py_True
    PyObject* Py_False


cdef inline Py_ssize_t _align8(Py_ssize_t n) noexcept nogil:
    return (n + 7) & ~7


cdef inline bint _is_control(const rl_header* h) noexcept nogil:
    return (h.flags & RL_FLAG_CONTROL) != 0 or h.type_id >= CONTROL_BASE


def journal_stage(Consumer consumer, JournalAppender appender, int max_batch,
                  bint mark_batches=True, StageCounters counters=None):
    """The journaller: appends ring batches (at most ``max_batch`` slots, never wrapping the
    ring end) with one memcpy per slot, without the GIL, then releases them to the next
    stage.
    With ``mark_batches`` the last slot of each batch gets FLAG_BATCH_END before it is
    journaled, so replay sees the live batch boundaries. ``counters`` (kind "journal") are
    stored at each batch end. Returns when the ring is closed and drained."""
    cdef Ring ring = consumer.ring
    cdef int64_t nxt = rl_load_acquire(consumer.seq_ptr) + 1, avail, hi, unwritten
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    cdef StageCounters ctr = counters if counters is not None else StageCounters(None, "journal")
    cdef int64_t** c = ctr.slot
    with nogil:  # the GIL is taken only to roll a segment or raise
        while True:
            avail = consumer.wait_for(nxt, WAIT_NS)
            if avail == RL_CLOSED:
                break
            if avail == RL_TIMEOUT:  # idle: the sync thread may have moved the durable mark
                counter_set(c[JS_DURABLE], rl_load_acquire(&appender.durable))
                continue
            hi = min(avail, nxt + max_batch - 1, nxt | ring.mask)
            if mark_batches:
                (<rl_header*>ring.slot(hi)).flags |= RL_FLAG_BATCH_END
            appender.append_slots(ring.slot(nxt), ring.slot_size, hi - nxt + 1)
            consumer.set_sequence(hi)
            nxt = hi + 1
            counter_set(c[JS_SEQUENCE], written_seq(appender, &unwritten))
            counter_set(c[JS_BACKLOG], avail - hi + unwritten)
            counter_set(c[JS_DURABLE], rl_load_acquire(&appender.durable))
            counter_add(c[JS_BATCHES], 1)


cdef class SlotEvent:
    """The event a Python handler receives: a flyweight over the slot (or journal record)
    being handled, reused for every event and valid only during the handler call. Its
    ``sequence`` is the journal sequence. Copy ``bytes(event.payload)`` to keep a payload."""

    def __init__(self):
        raise TypeError("SlotEvent is made by the loop only (a flyweight over its slots)")

    @property
    def sequence(self):
        """The journal sequence of the event."""
        return self.seq

    @property
    def timestamp_ns(self):
        """The producer's timestamp: the only clock a handler may read."""
        return self.h.timestamp_ns

    @property
    def correlation_id(self):
        """The producer's correlation id (copied to the outputs)."""
        return self.h.correlation_id

    @property
    def producer_seq(self):
        """The producer's own sequence (the dedup key with ``producer_id``)."""
        return self.h.producer_seq

    @property
    def type_id(self):
        """The event type id."""
        return self.h.type_id

    @property
    def flags(self):
        """Header flags (FLAG_MSGPACK, FLAG_CONTROL, FLAG_BATCH_END ...)."""
        return self.h.flags

    @property
    def producer_id(self):
        """The producer id (0: no dedup key)."""
        return self.h.producer_id

    @property
    def payload(self):
        """A zero-copy memoryview of the payload, valid during the handler call."""
        cdef Py_ssize_t off = (<const char*>self.h + RL_HEADER_SIZE) - self.owner_base
        return self.owner_view[off:off + self.h.length]

    def decode(self, registry):
        """The payload decoded by ``registry`` (an EventRegistry) for this type id."""
        return registry.decode(self.h.type_id, self.payload)

    def __repr__(self):
        if self.h == NULL:
            return "SlotEvent(<unbound>)"
        return (f"SlotEvent(sequence={self.seq}, type_id={self.h.type_id}, "
                f"length={self.h.length}, timestamp_ns={self.h.timestamp_ns})")


cdef class _CoreEmitter(Emitter):
    """A Cython handler's ``emit_c`` goes straight to ``LogicCore.emit_c``."""

    cdef int emit(self, uint32_t type_id, const char* payload, uint32_t length,
                  int64_t key) except -1:
        return self.core.emit_c(type_id, payload, length, key)

    cdef int emit_packed(self, const char* p, size_t n) except -1:
        return self.core.emit_packed_c(p, n)

    cdef int emit_nogil(self, uint32_t type_id, const char* payload, uint32_t length,
                        int64_t key) except -1 nogil:
        return self.core.emit_c(type_id, payload, length, key)

    cdef int emit_packed_nogil(self, const char* p, size_t n) except -1 nogil:
        return self.core.emit_packed_c(p, n)


cdef int _header_of(object event, rl_header* h, Py_buffer* buf) except -1:
    """Fills ``h`` from a Python event (ring Event, journal Record, any InputEvent) and gets
    its payload buffer (released by the caller)."""
    try:
        PyObject_GetBuffer(event.payload, buf, PyBUF_SIMPLE)
    except TypeError:
        raise TypeError(f"event payload must be bytes-like, got "
                        f"{type(event.payload).__name__}") from None
    memset(h, 0, sizeof(rl_header))
    h.timestamp_ns = event.timestamp_ns
    h.correlation_id = event.correlation_id
    h.producer_seq = event.producer_seq
    h.type_id = event.type_id
    h.flags = event.flags
    h.length = <uint32_t>buf.len
    h.producer_id = event.producer_id
    return 0


cdef inline int _dedup_admit(LogicCore self, const rl_header* h) except -1 nogil:
    """1 if the event's producer_seq is past its producer's last applied one (now recorded),
    else 0: a duplicate (a resend), counted and not handled."""
    cdef int64_t last = map_get(&self.dedup_map, h.producer_id, -1)
    if h.producer_seq <= last:
        self.duplicates += 1
        return 0
    if last < 0:  # a new producer: room first (the insert itself never grows)
        with gil:
            map_reserve(&self.dedup_map, 1)
    map_slot(&self.dedup_map, h.producer_id, 0)[0] = h.producer_seq
    return 1


cdef inline int _admit(LogicCore self, const rl_header* h, int64_t seq) except -1 nogil:
    """What every business event goes through before its handler (``_business``, the runs
    with and without the GIL): 0 for a duplicate (not handled); else 1, with the outputs'
    cause, time and correlation id set and the input counted by the breaker."""
    if self.dedup_on and h.producer_id and not _dedup_admit(self, h):
        return 0
    self.cur_seq = seq
    self.cur_ts = h.timestamp_ns
    self.cur_corr = h.correlation_id
    if self.breaker is not None:
        breaker_input(self.breaker, h.timestamp_ns)
    return 1


cdef inline int _handle(LogicCore self, CyEventHandler cy, SlotEvent fly,
                        const rl_header* h, int64_t seq) except -1:
    """One event of a business run (``LogicCore._business_run``, ``._replay_run``): what
    ``_business`` does while the breaker is closed. Its end of batch is the record's
    FLAG_BATCH_END, as on the per-event path. ``cy`` and ``fly`` are the core's, held by
    the caller for the run (no reference counting per event). A function, not a method, so
    that the C compiler inlines it into both runs."""
    self.last_sequence = seq
    if not _admit(self, h, seq):
        return 0
    if cy is not None:
        cy.on_event_c(h, <const char*>h + RL_HEADER_SIZE, seq,
                      (h.flags & RL_FLAG_BATCH_END) != 0)
    else:  # the flyweight, re-pointed: no event object per call
        fly.h = h
        fly.seq = seq
        _call_on_event(self, fly, seq, (h.flags & RL_FLAG_BATCH_END) != 0)
    self.processed += 1
    return 0


cdef inline const rl_header* _run_next(Ring ring, int64_t s, int64_t hi,
                                       CyEventHandler cy, bint ahead) noexcept nogil:
    """The event at ring slot ``s`` of a business run up to ``hi``, or NULL at a control
    event (the run stops there); with ``ahead`` (a lookahead handler ``cy``) after the hint
    for the event LOOKAHEAD slots on. Both business runs, with and without the GIL."""
    cdef const rl_header* h = <const rl_header*>ring.slot(s)
    cdef const rl_header* ah
    if _is_control(h):
        return NULL
    if ahead and s + LOOKAHEAD <= hi:
        ah = <const rl_header*>ring.slot(s + LOOKAHEAD)
        cy.prefetch_c(ah, <const char*>ah + RL_HEADER_SIZE)
    return h


cdef inline int _to_slot(LogicCore self, uint32_t type_id, uint32_t flags, const char* payload,
                         uint32_t length, int64_t key, int64_t ts, int64_t corr,
                         int64_t cause) except -1 nogil:
    """One live output written in place into the next claimed output ring slot (published
    with the batch's by ``release_outputs``). A function, not a method, so that the C
    compiler inlines it into ``_publish``: C fields only, no reference counting."""
    cdef int64_t seq = self.out_next
    if seq > self.out_end or length > self.out_room:
        seq = self._claim_outputs(length)
    self.out_next = seq + 1
    cdef int64_t i = seq & self.output_ring.mask
    cdef rl_header* o = <rl_header*>(self.output_ring.slots + i * self.output_ring.slot_size)
    rl_header_set(o, seq, ts, corr, cause, type_id, flags, length)
    memcpy(<char*>o + RL_HEADER_SIZE, payload, length)
    self.out_keys_p[i] = key  # published with the slot (release_outputs)
    if self.out_lo < 0:
        self.out_lo = seq
    self.out_hi = seq
    return 0


cdef inline int _emit_one(LogicCore self, uint32_t type_id, const char* payload,
                          uint32_t length, int64_t key) except -1 nogil:
    """The handler's output (``LogicCore.emit_c``): the breaker's decision, then
    ``_emit_passed``. Lean on purpose (it runs per output): no Python object, what the
    breaker holds out of line. A function, not a method, so that the C compiler inlines it
    into ``emit_c`` and ``emit_packed_c``. Returns the breaker's decision (0 pass, 1 held,
    2 throttled, 3 tripped)."""
    cdef int decision = BR_PASS
    if self.breaker is not None and not self.bypass:
        decision = breaker_check(self.breaker, self.cur_ts, type_id, key)
        if decision != BR_PASS and decision != BR_THROTTLE:
            self.outputs += 1
            with gil:
                return self._hold(decision, type_id, payload, length, key)
    _emit_passed(self, type_id, payload, length, key)
    return decision


cdef inline int _emit_passed(LogicCore self, uint32_t type_id, const char* payload,
                             uint32_t length, int64_t key) except -1 nogil:
    """An output the breaker let through (or with no breaker): into the output ring slot
    when live (``_to_slot``), else the output journal when live, else ``_publish``."""
    self.outputs += 1
    if self.output_ring is not None and not self.replaying:  # live: into the ring
        self.published += 1
        _to_slot(self, type_id, 0, payload, length, key, self.cur_ts, self.cur_corr,
                 self.cur_seq)
    elif self.output_journal is not None and not self.replaying:  # live, no ring
        self.published += 1  # committed once per batch by run()
        append_output(self.output_journal, type_id, 0, payload, length, self.cur_ts,
                      self.cur_corr, self.cur_seq)
    else:  # replaying (or neither ring nor journal): the GIL only for a Python sink
        self._publish(type_id, 0, payload, length, key, self.cur_ts, self.cur_corr,
                      self.cur_seq)
    return 0


cdef inline int _emit_run(LogicCore self, const char* p, const char* end,
                          int64_t key) except -1 nogil:
    """``_emit_passed`` for each packed output from ``p`` to ``end`` (all with breaker key
    ``key``, all passed): straight into the output journal when that is where live outputs
    go (the test of where they go made once per run, not per output)."""
    if self.output_ring is None and self.output_journal is not None and not self.replaying:
        while p < end:
            self.outputs += 1
            self.published += 1  # committed once per batch by run()
            append_output(self.output_journal, (<const uint32_t*>p)[0], 0, p + PACKED_HEADER,
                          (<const uint32_t*>p)[1], self.cur_ts, self.cur_corr, self.cur_seq)
            p = packed_next(p)
        return 0
    while p < end:
        _emit_passed(self, (<const uint32_t*>p)[0], p + PACKED_HEADER,
                     (<const uint32_t*>p)[1], key)
        p = packed_next(p)
    return 0


cdef inline int _call_on_event(LogicCore self, object event, int64_t seq,
                               bint end_of_batch) except -1:
    """Calls a Python ``on_event`` with the arguments its signature takes (see
    ``_event_arity``): a handler that declares only ``event`` gets no int per event, the
    others the int of ``rl_seq_int`` (no allocation while they do not keep it). One
    vectorcall of the method's function with the handler first (no bound-method unpacking
    and reference counting per call)."""
    cdef PyObject* argv[5]
    cdef Py_ssize_t n = 1
    cdef object seq_obj
    argv[0] = NULL  # PY_VECTORCALL_ARGUMENTS_OFFSET: the callee may use this slot
    if self.py_self is not None:
        argv[n] = <PyObject*>self.py_self
        n += 1
    argv[n] = <PyObject*>event
    n += 1
    if self.py_nargs >= 2:
        seq_obj = rl_seq_int(&self.seq_cache, seq)
        argv[n] = <PyObject*>seq_obj
        n += 1
        if self.py_nargs == 3:
            argv[n] = Py_True if end_of_batch else Py_False
            n += 1
    rl_vectorcall(self.py_vc, self.py_func, &argv[1], <size_t>(n - 1))
    return 0


cdef inline int64_t _take_batch(Consumer consumer, Ring ring, JournalAppender journal,
                                int64_t nxt, int64_t limit, int64_t wait_ns,
                                int64_t** jc) except -3 nogil:
    """The next input batch from ``nxt`` on: waits up to ``wait_ns`` for it (0: only looks);
    with ``journal``, appends at most ``limit`` slots of it (memcpy + CRC, FLAG_BATCH_END on
    its last slot) before anything handles them. Returns its last sequence, RL_TIMEOUT when
    none is there (idle: the journal's durable mark, which the sync thread may have moved,
    stored), RL_CLOSED once the ring is closed and drained (``ring``: the consumer's); a
    failed append (a full disk) raises, which halts the loop."""
    cdef int64_t avail, seen
    if wait_ns > 0:
        avail = consumer.wait_for(nxt, wait_ns)
    else:
        avail = consumer.available(nxt)
        if avail < nxt:
            avail = RL_CLOSED if rl_load_acquire32(&ring.hdr.closed) else RL_TIMEOUT
    if avail == RL_TIMEOUT and journal is not None:
        counter_set(jc[JS_DURABLE], rl_load_acquire(&journal.durable))
    elif avail >= nxt and journal is not None:
        seen = avail
        avail = min(avail, nxt + limit - 1, nxt | ring.mask)
        (<rl_header*>ring.slot(avail)).flags |= RL_FLAG_BATCH_END
        journal.append_slots(ring.slot(nxt), ring.slot_size, avail - nxt + 1)
        counter_set(jc[JS_SEQUENCE], journal.last_seq)
        counter_set(jc[JS_BACKLOG], seen - avail)
        counter_set(jc[JS_DURABLE], rl_load_acquire(&journal.durable))
        counter_add(jc[JS_BATCHES], 1)
    return avail


cdef inline bint _in_order(LogicCore self, int64_t seq) noexcept nogil:
    """Is journal ``seq`` the one after the last the core saw (or the first it sees)?"""
    return self.last_sequence < 0 or seq == self.last_sequence + 1


cdef class LogicCore:
    """The business-logic state machine (see the module docstring). Configure it through
    ``ringlog.logic.LogicLoop``. Not thread-safe."""

    def __init__(self, handler, breaker=None, *, sink=None, reread=None, snapshot=None,
                 dead_letter=None, bint dedup=False, int64_t snapshot_every=0,
                 int slot_size=128, int max_batch=1024, on_resume=None):
        from ringlog._breaker import KillReport
        from ringlog.logic import KillInfo, OutputRecord, TripInfo

        if breaker is not None and not isinstance(breaker, BreakerCore):
            raise TypeError(f"breaker must be a ringlog.Breaker, got {type(breaker).__name__}")
        self._on_kill = getattr(handler, "on_kill", None)
        self._on_enable = getattr(handler, "on_enable", None)
        if breaker is not None and (<BreakerCore>breaker).kill:
            if not callable(self._on_kill):
                raise ConfigError("BreakerConfig.kill", f"a kill switch needs a handler with "
                                  f"on_kill(key); {type(handler).__name__} has none")
            (<BreakerCore>breaker).defer_alert = True  # alerted after the kill, with its report
        if snapshot_every < 0:
            raise ValueError(f"snapshot_every must be >= 0, got {snapshot_every}")
        self.handler = handler
        self.breaker = breaker
        self.sink = sink
        self._reread = reread
        self._snapshot = snapshot
        self._dead_letter = dead_letter
        self._on_resume = on_resume
        self.dedup_on = dedup
        self.snapshot_every = snapshot_every
        self.slot_size = slot_size
        self.last_sequence = -1
        self.pending_from = -1
        self.cur_seq = -1
        self.out_lo = -1
        self.fly = SlotEvent.__new__(SlotEvent)
        self.counters = StageCounters(None, "logic")
        self.journal_counters = StageCounters(None, "journal")
        self.output_counters = StageCounters(None, "journal")
        self.OutputRecord, self.TripInfo = OutputRecord, TripInfo
        self.KillInfo, self.KillReport = KillInfo, KillReport
        self.encode = msgspec.msgpack.Encoder().encode
        self.decode = msgspec.msgpack.Decoder(OutputRecord).decode
        cdef _CoreEmitter em
        cdef unsigned char[::1] mem
        if isinstance(handler, CyEventHandler):
            self.kind = KIND_CYTHON
            self.cy = handler
            em = _CoreEmitter(self.emit)
            em.core = self
            self.cy._emitter = em
            return
        on_batch = getattr(handler, "on_batch", None)
        if callable(on_batch):
            self.kind = KIND_BATCH
            self.py_call = on_batch
            if max_batch < 1:
                raise ValueError(f"max_batch must be >= 1, got {max_batch}")
            self.dtype = _events.slot_dtype(slot_size, getattr(handler, "payload_dtype", None))
            self.scratch = np.zeros(max_batch * slot_size, dtype=np.uint8)
            self.scratch_view = self.scratch.view(self.dtype)
            mem = self.scratch
            self.scratch_p = <char*>&mem[0]
            self.scratch_cap = max_batch
        else:
            on_event = getattr(handler, "on_event", None)
            if not callable(on_event):
                raise TypeError(f"{type(handler).__name__} is not a handler: it needs "
                                "on_event(event, sequence, end_of_batch) or "
                                "on_batch(array, first_sequence)")
            self.kind = KIND_PYTHON
            self.py_call = on_event
            self.py_nargs = _event_arity(on_event)
            self.py_func, self.py_self = on_event, None
            if inspect.ismethod(on_event):  # called as its function, the handler first
                self.py_func, self.py_self = on_event.__func__, on_event.__self__
            self.py_vc = rl_vectorcall_of(self.py_func)
        handler.emit = self.emit

    def __cinit__(self, *args, **kwargs):
        map_init(&self.dedup_map, 16)

    def __dealloc__(self):
        Py_XDECREF(self.seq_cache)
        map_free(&self.dedup_map)

    @property
    def dedup(self):
        """``producer_id -> last applied producer_seq`` (a copy, in producer_id order, so a
        snapshot's bytes never depend on the table's history; assign a mapping to replace
        it, as a snapshot's restore does: SchemaError, naming the entry, for a producer_id
        outside 0..2**32-1 or a negative seq, and the table unchanged). The table itself is a
        C hash map: the loop looks a key up and stores it per event with no Python object."""
        cdef uint64_t i
        out = []
        for i in range(self.dedup_map.mask + 1):
            if self.dedup_map.slots[i].val >= 0:
                out.append((self.dedup_map.slots[i].key, self.dedup_map.slots[i].val))
        return dict(sorted(out))

    @dedup.setter
    def dedup(self, positions):
        items = [(int(k), int(v)) for k, v in dict(positions).items()]
        for k, v in items:  # checked before the table changes
            if not 0 <= k < 1 << 32:
                raise SchemaError(f"dedup: producer_id {k} is outside 0..2**32-1")
            if v < 0:
                raise SchemaError(f"dedup: producer {k}'s last seq {v} is negative")
        map_clear(&self.dedup_map)
        map_reserve(&self.dedup_map, len(items))
        for k, v in items:
            map_slot(&self.dedup_map, <uint64_t>k, v)[0] = v

    # -- the per-event path ---------------------------------------------------------------
    cdef int process_c(self, const rl_header* h, const char* payload, int64_t seq,
                       bint end_of_batch, object obj) except -1:
        """Handles one input event at journal ``seq`` (dense, increasing). ``obj`` is the
        Python event for Python handlers, or None to use the flyweight over ``h``."""
        if seq != self.last_sequence + 1 and self.last_sequence >= 0:
            raise RuntimeError(f"input sequence {seq} after {self.last_sequence}: the loop "
                               "must see every journal sequence once, in order")
        self.last_sequence = seq
        if _is_control(h):
            self._control(h, payload, seq, obj)
        elif self.pending_from >= 0:
            # held back in the journal until a reset, or the automatic half-open
            if self.breaker.tick(h.timestamp_ns):
                self._resume(seq)
                if self.pending_from < 0:
                    self._business(h, payload, seq, end_of_batch, obj)
        else:
            self._business(h, payload, seq, end_of_batch, obj)
        if self.snapshot_every:
            self._after(seq)
        return 0

    cdef int _business(self, const rl_header* h, const char* payload, int64_t seq,
                       bint end_of_batch, object obj) except -1:
        """Runs the handler; returns 0 if the breaker opened on this event, else 1."""
        if not _admit(self, h, seq):
            return 1
        try:
            self._call(h, payload, seq, end_of_batch, obj)
        except Exception:
            if self._dead_letter is None:
                raise
            if obj is None:
                self.fly.h = h
                self.fly.seq = seq
                obj = self.fly
            self._dead(obj, seq, traceback.format_exc())
        self.processed += 1
        if self.breaker is not None and self.breaker.state == BR_OPEN:
            if self.kill_armed:
                self._kill_on_trip()
            self.pending_from = seq + 1
            return 0
        return 1

    cdef int64_t _business_run(self, Ring ring, int64_t s, int64_t hi,
                               int64_t base) except -1:
        """``_business`` for consecutive ring slots from ``s`` (a business event) to ``hi``,
        with one exception frame for the run instead of one per event; it stops before a
        control event and after the event that opens the breaker. Returns the next ring
        sequence to handle. Used when nothing else runs per event (no automatic
        snapshots): the decisions are exactly ``process_c``'s."""
        cdef const rl_header* h = NULL
        cdef int64_t seq = -1
        cdef bint opened = False
        cdef BreakerCore b = self.breaker
        cdef CyEventHandler cy = self.cy if self.kind == KIND_CYTHON else None
        cdef SlotEvent fly = self.fly
        cdef bint ahead = cy is not None and cy.lookahead
        try:
            while s <= hi:
                h = _run_next(ring, s, hi, cy, ahead)
                if h == NULL:
                    break
                seq = base + s
                _handle(self, cy, fly, h, seq)
                s += 1
                if b is not None and b.state == BR_OPEN:
                    opened = True
                    break
        except Exception:  # only the handler (and what it calls: emit) raises in the loop
            if self._dead_letter is None:
                raise
            opened = self._dead_in_run(h, seq)
            s += 1
        if opened:
            self._opened(seq + 1)
        return s

    cdef int64_t _business_run_nogil(self, Ring ring, int64_t s, int64_t hi,
                                     int64_t base) except -2 nogil:
        """``_business_run`` for a handler with ``nogil_events``, without the GIL: the same
        events, decisions and stops (before a control event, after the event that opens
        the breaker: ``run_opened``), and after an event an automatic snapshot follows
        (``run_snapshot``: ``_after`` takes it with the GIL). When the handler raises,
        ``in_run`` is still set and ``last_sequence`` is its event; the caller, with the
        GIL, makes it a dead letter or halts (``_run``)."""
        cdef const rl_header* h
        cdef int64_t seq, snap = -1
        cdef bint ahead = self.cy.lookahead
        if self.snapshot_every > 0 and not self.replaying and self._snapshot is not None:
            # the run ends with the next event a snapshot follows: (seq + 1) % every == 0
            snap = ((base + s) // self.snapshot_every + 1) * self.snapshot_every - 1 - base
            if snap < hi:
                hi = snap
        self.run_opened = False
        self.in_run = True
        while s <= hi:
            h = _run_next(ring, s, hi, self.cy, ahead)
            if h == NULL:
                break
            seq = base + s
            self.last_sequence = seq  # the event a raise comes from (_run)
            if _admit(self, h, seq):
                self.cy.on_event_nogil(h, <const char*>h + RL_HEADER_SIZE, seq,
                                       (h.flags & RL_FLAG_BATCH_END) != 0)
                self.processed += 1
            s += 1
            if self.breaker is not None and self.breaker.state == BR_OPEN:
                self.run_opened = True
                break
        self.in_run = False
        self.run_snapshot = snap >= 0 and s == snap + 1  # the snapshot's event handled
        return s

    cdef int _dead_in_run(self, const rl_header* h, int64_t seq) except -1:
        """The handler raised on ``h`` (journal ``seq``) in a business run and the policy is
        dead letters: records it, counts it handled; True if the breaker is open now."""
        self.fly.h = h
        self.fly.seq = seq
        self._dead(self.fly, seq, traceback.format_exc())
        self.processed += 1
        return self.breaker is not None and self.breaker.state == BR_OPEN

    cdef int _opened(self, int64_t pending) except -1:
        """After the event that opened the breaker: the kill switch when a trip armed it,
        then input from journal sequence ``pending`` on is held back."""
        if self.kill_armed:
            self._kill_on_trip()
        self.pending_from = pending
        return 0

    cdef int64_t _replay_run(self, Segment seg, Py_ssize_t* offset, int64_t seq,
                             int64_t stop, bint verify, int* status) except -1:
        """``_business_run`` over journal records: the business records of ``seg`` from
        byte ``offset[0]`` (sequence ``seq``) with one exception frame for the run. Stops
        before a control record, at a record the scan refuses (``status[0]``), past
        ``stop`` and after the record that opens the breaker. Moves ``offset[0]`` past the
        records handled and returns the next sequence."""
        cdef const rl_header* h = NULL
        cdef uint32_t n = 0
        cdef bint opened = False
        cdef BreakerCore b = self.breaker
        cdef CyEventHandler cy = self.cy if self.kind == KIND_CYTHON else None
        cdef SlotEvent fly = self.fly
        cdef Py_ssize_t off = offset[0]
        # a lookahead handler's cursor LOOKAHEAD records ahead (-1: none there); its records
        # are checked for bounds, lengths and sequence, their CRC only once they are handled
        cdef Py_ssize_t aoff = -1
        cdef uint32_t an = 0
        cdef const rl_header* ah
        cdef int i
        if seq != self.last_sequence + 1 and self.last_sequence >= 0:
            raise RuntimeError(f"input sequence {seq} after {self.last_sequence}: the loop "
                               "must see every journal sequence once, in order")
        if cy is not None and cy.lookahead:
            aoff = off
            for i in range(LOOKAHEAD):
                if seg.scan_one(aoff, seq + i, False, &an) != SCAN_OK:
                    aoff = -1
                    break
                aoff += REC_PREFIX + _align8(an)
        status[0] = SCAN_OK
        try:
            while stop < 0 or seq <= stop:
                status[0] = seg.scan_one(off, seq, verify, &n)
                if status[0] != SCAN_OK:
                    break
                h = <const rl_header*>(seg.base + off + REC_PREFIX)
                if _is_control(h):
                    break
                if aoff >= 0:
                    if (stop < 0 or seq + LOOKAHEAD <= stop) and \
                            seg.scan_one(aoff, seq + LOOKAHEAD, False, &an) == SCAN_OK:
                        ah = <const rl_header*>(seg.base + aoff + REC_PREFIX)
                        cy.prefetch_c(ah, <const char*>ah + RL_HEADER_SIZE)
                        aoff += REC_PREFIX + _align8(an)
                    else:
                        aoff = -1
                _handle(self, cy, fly, h, seq)
                off += REC_PREFIX + _align8(n)
                seq += 1
                if b is not None and b.state == BR_OPEN:
                    opened = True
                    break
        except Exception:  # the handler raised on the record at `off`
            if self._dead_letter is None:
                offset[0] = off
                raise
            opened = self._dead_in_run(h, seq)
            off += REC_PREFIX + _align8(n)
            seq += 1
        offset[0] = off
        if opened:
            self._opened(seq)
        return seq

    cdef int _call(self, const rl_header* h, const char* payload, int64_t seq,
                   bint end_of_batch, object obj) except -1:
        if self.kind == KIND_CYTHON:
            return self.cy.on_event_c(h, payload, seq, end_of_batch)
        if self.kind == KIND_PYTHON:
            if obj is None:
                self.fly.h = h
                self.fly.seq = seq
                obj = self.fly
            return _call_on_event(self, obj, seq, end_of_batch)
        # a batch handler meets a lone event (after a control event, a dedup key, a reset)
        # as a batch of one
        self.run_n = 0
        self._scratch_row(h, payload)
        self.run_n = 0
        self.py_call(self._readonly(self.scratch_view[:1]), seq)
        return 0

    cdef int _dead(self, object event, int64_t seq, object tb) except -1:
        self.dead_letters += 1
        self._dead_letter(event, seq, tb)
        return 0

    cdef int _after(self, int64_t seq) except -1:
        """Automatic snapshots: every ``snapshot_every`` input sequences (live only)."""
        if (seq + 1) % self.snapshot_every == 0 and not self.replaying \
                and self._snapshot is not None:
            self.release_outputs()  # the snapshot counts them: the output stage must see them
            self._snapshot(seq)
        return 0

    cdef int _control(self, const rl_header* h, const char* payload, int64_t seq,
                      object obj) except -1:
        cdef uint32_t t = h.type_id
        cdef int64_t ts = h.timestamp_ns
        cdef BreakerCore b = self.breaker
        if t == T_TIMER:
            if self.pending_from < 0:
                self._business(h, payload, seq, True, obj)
        elif t == T_SNAPSHOT:
            if self._snapshot is not None and not self.replaying:
                self.release_outputs()
                self._snapshot(seq)
        elif t == T_KILL or t == T_ENABLE:
            try:
                key = msgspec.msgpack.decode(payload[:h.length], type=int | None)
            except msgspec.DecodeError:
                return 0  # not written by Processor.kill/enable: nothing to do
            self.cur_seq, self.cur_ts, self.cur_corr = seq, ts, h.correlation_id
            if t == T_KILL and self._on_kill is not None:
                self._kill(key, False)
            elif t == T_ENABLE and self._on_enable is not None:
                self._on_enable(key)
        elif b is None:
            return 0
        elif t == T_RELEASE:
            for rec in b.release_held():
                self._publish_record(self.decode(rec))
        elif t == T_DISCARD:
            b.discard_held()
        elif t == T_RESET:
            b.reset(ts)
            self._publish(T_CLOSED, RL_FLAG_CONTROL, _EMPTY, 0, 0, ts, h.correlation_id, seq)
            self._resume(seq)
        return 0

    cdef int _kill_on_trip(self) except -1:
        """The kill switch, at the tripping input (after the handler returned): cancels
        whom the breaker's ``kill`` says, then alerts with the trip and what was cancelled."""
        cdef BreakerCore b = self.breaker
        self.kill_armed = False
        go, key = b.kill_scope()
        report = b.last_trip
        if go:
            report = msgspec.structs.replace(report, kill=self._kill(key, True))
        if not self.replaying:  # the live run alerted already
            b.send_alert(report)
        return 0

    cdef object _kill(self, object key, bint by_trip):
        """Runs the handler's ``on_kill(key)`` (key None: everyone) with its outputs past
        the breaker (not held, not counted), then publishes a KILLED control output.
        Returns the KillReport."""
        self.bypass += 1
        try:
            cancelled = self._on_kill(key)
        finally:
            self.bypass -= 1
        ids = [int(i) for i in cancelled] if cancelled is not None else []
        self.kills += 1
        info = self.encode(self.KillInfo(self.cur_seq, key, len(ids), by_trip))
        self._publish(T_KILLED, RL_FLAG_CONTROL, PyBytes_AS_STRING(info),
                      <uint32_t>PyBytes_GET_SIZE(info), 0, self.cur_ts, self.cur_corr,
                      self.cur_seq)
        return self.KillReport(key, self.cur_seq, ids)

    cdef int _resume(self, int64_t reset_sequence) except -1:
        """Re-reads the inputs held back while open, in journal order, up to (not
        including) ``reset_sequence``."""
        cdef int64_t lo = self.pending_from
        cdef rl_header h
        cdef Py_buffer buf
        cdef int more
        if lo < 0:
            return 0
        self.pending_from = -1
        for seq, ev in self._reread(lo, reset_sequence - 1):
            _header_of(ev, &h, &buf)
            try:
                if _is_control(&h):
                    continue  # already handled when it arrived
                more = self._business(&h, <const char*>buf.buf, seq,
                                      seq == reset_sequence - 1, ev)
            finally:
                PyBuffer_Release(&buf)
            if not more:
                return 0  # tripped again: _business set pending_from past this event
        return 0

    # -- batch handlers -------------------------------------------------------------------
    cdef bint _rare(self, const rl_header* h) noexcept:
        """Does this event leave the batch path (control, held back, dedup key)?"""
        return _is_control(h) or self.pending_from >= 0 or (self.dedup_on and h.producer_id)

    cdef char* _scratch_row(self, const rl_header* h, const char* payload) except NULL:
        """Copies an event into the next scratch row (slot layout, zero-filled)."""
        if self.run_n >= self.scratch_cap:
            raise RingLogError("internal: batch scratch overflow")
        if RL_HEADER_SIZE + h.length > <uint32_t>self.slot_size:
            raise SchemaError(f"event of {h.length} payload bytes does not fit a "
                              f"{self.slot_size}-byte slot: replay with the slot_size it was "
                              "written with")
        cdef char* row = self.scratch_p + self.run_n * self.slot_size
        memcpy(row, h, RL_HEADER_SIZE)
        memcpy(row + RL_HEADER_SIZE, payload, h.length)
        memset(row + RL_HEADER_SIZE + h.length, 0, self.slot_size - RL_HEADER_SIZE - h.length)
        self.run_n += 1
        return row

    cdef int _flush_scratch(self) except -1:
        cdef int64_t n = self.run_n
        if n:
            self.run_n = 0
            self._batch(self._readonly(self.scratch_view[:n]), self.scratch_p, n,
                        self.run_first)
        return 0

    cdef int _batch(self, object arr, const char* rows, int64_t n, int64_t first) except -1:
        """Runs ``on_batch`` over ``n`` consecutive business events laid out as slots."""
        cdef int64_t i, last = first + n - 1
        cdef const rl_header* h
        cdef object base_view
        cdef const char* base_p
        if first != self.last_sequence + 1 and self.last_sequence >= 0:
            raise RuntimeError(f"input sequence {first} after {self.last_sequence}: the loop "
                               "must see every journal sequence once, in order")
        self.last_sequence = last
        if self.breaker is not None:
            for i in range(n):
                self.breaker.on_input_c((<const rl_header*>(rows + i * self.slot_size))
                                        .timestamp_ns)
        h = <const rl_header*>(rows + (n - 1) * self.slot_size)
        self.cur_seq = last
        self.cur_ts = h.timestamp_ns
        self.cur_corr = h.correlation_id
        try:
            self.py_call(arr, first)
        except Exception:
            if self._dead_letter is None:
                raise
            tb = traceback.format_exc()
            base_view, base_p = self.fly.owner_view, self.fly.owner_base
            if rows == self.scratch_p:
                self.fly.owner_view = memoryview(self.scratch)
                self.fly.owner_base = self.scratch_p
            try:
                for i in range(n):  # every event of the batch, so none is lost
                    self.fly.h = <const rl_header*>(rows + i * self.slot_size)
                    self.fly.seq = first + i
                    self._dead(self.fly, first + i, tb)
            finally:
                self.fly.owner_view, self.fly.owner_base = base_view, base_p
        self.processed += n
        if self.breaker is not None and self.breaker.state == BR_OPEN:
            if self.kill_armed:
                self._kill_on_trip()
            self.pending_from = last + 1
        if self.snapshot_every and (last + 1) // self.snapshot_every > first // \
                self.snapshot_every and not self.replaying and self._snapshot is not None:
            self.release_outputs()
            self._snapshot(last)
        return 0

    # -- drivers --------------------------------------------------------------------------
    def set_outputs(self, Ring ring=None, JournalAppender journal=None,
                    ReleaseStage stage=None):
        """Where live outputs go: in place into ``ring`` (each slot's breaker key kept in
        ``output_keys``), or with no ring appended straight to ``journal`` by the loop
        thread (the inline topology when nothing listens to outputs). With ``stage`` (over
        ``ring``'s consumer, ``ReleaseStage.attach()``-ed) this thread also appends each
        published batch of slots to the output journal and hands over what may go (the
        inline topology when a SlotSink is the one listener: no output thread)."""
        cdef int64_t[::1] keys
        if stage is not None and (ring is None or stage.consumer.ring is not ring):
            raise ValueError("set_outputs: the release stage must consume the output ring")
        self.release_outputs()
        self.output_ring = ring
        self.output_journal = journal
        self.release_stage = stage
        self.out_keys = None
        self.out_keys_p = NULL
        self.out_next, self.out_end = 0, -1  # nothing claimed yet
        if ring is not None:
            self.out_room = ring.slot_size - RL_HEADER_SIZE
            # a chunk is a small part of the ring: claiming ahead never starves the consumer
            self.out_chunk = max(1, min(OUT_CHUNK, ring.capacity // 8))
            self.out_keys = np.zeros(ring.capacity, dtype=np.int64)
            keys = self.out_keys
            self.out_keys_p = &keys[0]

    @property
    def output_keys(self):
        """The breaker key of each output ring slot (index: ring sequence & mask), written
        before the slot is published; None without an output ring."""
        return self.out_keys

    def run(self, Consumer consumer, int64_t base, JournalAppender journal=None,
            int max_batch=0):
        """The live loop: handles ring batches (journal sequence = ``base`` + ring sequence)
        until the ring is closed and drained.

        Without ``journal`` a journaller stage upstream released the batches (staged
        topology). With ``journal`` this thread is the journaller too (inline topology):
        each batch of at most ``max_batch`` slots is appended (memcpy + CRC, FLAG_BATCH_END
        on its last slot, no GIL) before any of it is handled, so journal-before-process
        holds exactly as with a separate stage and replay sees the same batches."""
        cdef Ring ring = consumer.ring
        cdef int64_t limit = max_batch if max_batch > 0 else ring.capacity
        self._attach(ring)
        try:
            self._run(consumer, base, journal, limit)
        finally:  # outputs are published (journaled) even when the loop halts
            self.release_outputs()
            if self.output_journal is not None:
                self.output_journal.commit()

    def pump(self, Consumer consumer, int64_t base, JournalAppender journal, int max_batch,
             bint release_gil=False):
        """The driven topology's step: the caller's thread is the loop. Journals and handles
        what the ring holds now (up to its cursor when called), in batches of at most
        ``max_batch`` slots, with the same code and batches as ``run`` (journal before
        process, FLAG_BATCH_END, outputs published per batch), and returns how many events
        it handled; never waits for input. ``release_gil``: the journal append runs without
        the GIL (the caller's other threads may run meanwhile). Not thread-safe: one caller
        at a time (``Processor.pump`` enforces it)."""
        cdef Ring ring = consumer.ring
        cdef int64_t limit = max_batch if max_batch > 0 else ring.capacity
        cdef int64_t end = rl_load_acquire(&ring.hdr.cursor.value)  # what was published
        cdef int64_t n, total = 0
        self._attach(ring)
        try:
            while rl_load_acquire(consumer.seq_ptr) < end:
                n = self._step(consumer, base, journal, limit, 0, release_gil)
                if n <= 0:  # a slot claimed and not yet published, or closed and drained
                    break
                total += n
        finally:  # as run(): what was emitted is published even when the handler failed
            self.release_outputs()
            if self.output_journal is not None:
                self.output_journal.commit()
        return total

    cdef int _attach(self, Ring ring) except -1:
        """Python handlers' flyweight events point into ``ring``'s slots."""
        if self.kind == KIND_BATCH and ring.slot_size != self.slot_size:
            raise ValueError(f"the ring's slots are {ring.slot_size} bytes, the batch "
                             f"handler's view {self.slot_size}")
        self.fly.owner_view = ring._view
        self.fly.owner_base = ring._map.base
        return 0

    cdef int _run(self, Consumer consumer, int64_t base, JournalAppender journal,
                  int64_t limit) except -1:
        cdef int64_t r, s, gil_from
        if not (self.kind == KIND_CYTHON and self.cy.nogil_events):
            while self._step(consumer, base, journal, limit, WAIT_NS, True) != RL_CLOSED:
                pass
            return 0
        while True:  # a nogil handler: the GIL only for what _steps_nogil leaves
            try:
                with nogil:
                    r = self._steps_nogil(consumer, base, journal, limit)
                    gil_from = rl_now_ns()
                counter_add(self.counters.slot[LS_GIL_WAIT], rl_now_ns() - gil_from)
            except Exception:  # from the handler while in_run, else from a journal: halts
                if not self.in_run or self._dead_letter is None:
                    raise
                self.in_run = False
                s = self.last_sequence - base
                self.run_opened = self._dead_in_run(<const rl_header*>consumer.ring.slot(s),
                                                    self.last_sequence)
                self.run_snapshot = self.snapshot_every > 0  # _after decides
                self.run_slot = s + 1
                r = NEED_GIL
            if r == RL_CLOSED:
                return 0
            s = self.run_slot
            if self.run_opened:
                self._opened(base + s)
            if self.run_snapshot:  # after the event before s, as process_c takes it
                self._after(base + s - 1)
            self._finish_batch(consumer, base, self.nb_nxt, self.nb_avail, s,
                               self.nb_was_open)

    cdef int64_t _steps_nogil(self, Consumer consumer, int64_t base, JournalAppender journal,
                              int64_t limit) except -3 nogil:
        """``_step`` for a handler with ``nogil_events`` (``run``): batch after batch without
        the GIL for as long as each is business only with the breaker closed. Returns
        RL_CLOSED, or NEED_GIL with the batch ``nb_nxt``..``nb_avail`` to finish with the
        GIL from ``run_slot`` on (a control event, input held back, the breaker opened, an
        automatic snapshot due, a sequence out of order). Exceptions propagate: the
        handler's with ``in_run`` set (``_business_run_nogil``), any other (a journal's)
        without."""
        cdef int64_t nxt, avail, s
        cdef int64_t** jc = self.journal_counters.slot
        while True:
            nxt = rl_load_acquire(consumer.seq_ptr) + 1
            avail = _take_batch(consumer, consumer.ring, journal, nxt, limit, WAIT_NS, jc)
            if avail == RL_CLOSED:
                return RL_CLOSED
            if avail == RL_TIMEOUT:
                self._idle_counters()
                continue
            self.nb_nxt = nxt
            self.nb_avail = avail
            self.nb_was_open = self.pending_from >= 0
            self.run_slot = nxt
            self.run_opened = self.run_snapshot = False
            if self.nb_was_open or not _in_order(self, base + nxt):
                return NEED_GIL  # the GIL path raises on a sequence out of order
            s = self._business_run_nogil(consumer.ring, nxt, avail, base)
            self.run_slot = s
            if s <= avail or self.run_opened or self.run_snapshot:
                return NEED_GIL
            self._batch_end(consumer, base, avail)

    cdef int64_t _step(self, Consumer consumer, int64_t base, JournalAppender journal,
                       int64_t limit, int64_t wait_ns, bint release_gil) except -3:
        """One batch of the live loop, shared by ``run`` (the loop thread: waits up to
        ``wait_ns``, without the GIL) and ``pump`` (the driven topology: ``wait_ns`` 0, a
        look, no wait): journals the batch of at most ``limit`` slots (``journal`` given),
        handles it, publishes its outputs and moves the consumer past it. Returns how many
        events it handled, 0 when none was there (a timeout), RL_CLOSED once the ring is
        closed and drained."""
        cdef Ring ring = consumer.ring
        cdef int64_t nxt = rl_load_acquire(consumer.seq_ptr) + 1, avail
        cdef int64_t** jc = self.journal_counters.slot
        cdef int64_t gil_from
        if release_gil:
            with nogil:
                avail = _take_batch(consumer, ring, journal, nxt, limit, wait_ns, jc)
                gil_from = rl_now_ns()
            # another Python thread holding the GIL holds the loop here (logic.gil_wait_ns)
            counter_add(self.counters.slot[LS_GIL_WAIT], rl_now_ns() - gil_from)
        else:
            avail = _take_batch(consumer, ring, journal, nxt, limit, wait_ns, jc)
        if avail == RL_CLOSED:
            return RL_CLOSED
        if avail == RL_TIMEOUT:
            self._idle_counters()
            return 0
        return self._finish_batch(consumer, base, nxt, avail, nxt, self.pending_from >= 0)

    cdef void _idle_counters(self) noexcept nogil:
        """No input: the output journal's counters this thread keeps, as its writer and sync
        threads moved them since the last batch (a direct-I/O writer writes its stage up to
        a linger after the batch that filled it)."""
        cdef int64_t unwritten
        cdef int64_t** c
        if self.output_journal is not None:
            c = self.output_counters.slot
            counter_set(c[JS_SEQUENCE], written_seq(self.output_journal, &unwritten))
            counter_set(c[JS_BACKLOG], unwritten)
            counter_set(c[JS_DURABLE], rl_load_acquire(&self.output_journal.durable))

    cdef int64_t _finish_batch(self, Consumer consumer, int64_t base, int64_t nxt,
                               int64_t avail, int64_t s, bint was_open) except -3:
        """Handles the journaled batch ``nxt``..``avail`` from ring slot ``s`` on (the ones
        before it were handled without the GIL), then ends it (``_batch_end``). Returns how
        many events the batch holds. ``was_open``: input was held back at its start."""
        cdef Ring ring = consumer.ring
        cdef const rl_header* h
        cdef int64_t lo
        cdef bint fast = self.kind != KIND_BATCH and not self.snapshot_every
        if fast:
            if s == nxt and not _in_order(self, base + nxt):
                raise RuntimeError(f"input sequence {base + nxt} after "
                                   f"{self.last_sequence}: the loop must see every "
                                   "journal sequence once, in order")
            while s <= avail:
                h = <const rl_header*>ring.slot(s)
                if self.pending_from >= 0 or _is_control(h):
                    self.process_c(h, <const char*>h + RL_HEADER_SIZE, base + s,
                                   (h.flags & RL_FLAG_BATCH_END) != 0, None)
                    s += 1
                else:
                    s = self._business_run(ring, s, avail, base)
        elif self.kind != KIND_BATCH:
            for s in range(s, avail + 1):
                h = <const rl_header*>ring.slot(s)
                self.process_c(h, <const char*>h + RL_HEADER_SIZE, base + s,
                               (h.flags & RL_FLAG_BATCH_END) != 0, None)
        else:
            lo = -1
            for s in range(s, avail + 1):
                h = <const rl_header*>ring.slot(s)
                if self._rare(h):
                    if lo >= 0:
                        self._ring_run(ring, lo, s - 1, base)
                        lo = -1
                    self.process_c(h, <const char*>h + RL_HEADER_SIZE, base + s,
                                   (h.flags & RL_FLAG_BATCH_END) != 0, None)
                    continue
                if lo < 0:
                    lo = s
                if h.flags & RL_FLAG_BATCH_END or s == avail or (s & ring.mask) == \
                        ring.mask or s - lo + 1 >= self.scratch_cap:
                    self._ring_run(ring, lo, s, base)
                    lo = -1
        self._batch_end(consumer, base, avail)
        if self.breaker is not None:  # held outputs change only with the GIL
            counter_set(self.counters.slot[LS_BREAKER_HELD], len(self.breaker.held))
        if was_open and self.pending_from < 0 and self._on_resume is not None:
            self._on_resume()
        return avail - nxt + 1

    cdef int _batch_end(self, Consumer consumer, int64_t base, int64_t avail) except -1 nogil:
        """A handled batch's end: its outputs published (before the batch counts as
        handled) and committed to the output journal in one durability step, the consumer
        moved past it, the counters stored."""
        self.release_outputs()
        if self.output_journal is not None:
            self.output_journal.commit()
        consumer.set_sequence(avail)
        self._store_counters(base + avail,
                             (<const rl_header*>consumer.ring.slot(avail)).timestamp_ns)
        return 0

    cdef void _store_counters(self, int64_t seq, int64_t ts) noexcept nogil:
        """The loop's counters at a batch end: release stores into the counters file; the
        age histogram counts how old (wall clock) the batch's last event was when handled.
        The breaker's held outputs are stored where they change (with the GIL)."""
        cdef int64_t** c = self.counters.slot
        cdef int64_t unwritten
        counter_add(c[LS_AGE + age_bucket(wall_ns() - ts)], 1)
        counter_set(c[LS_SEQUENCE], seq)
        counter_add(c[LS_BATCHES], 1)
        counter_set(c[LS_PROCESSED], self.processed)
        counter_set(c[LS_OUTPUTS], self.outputs)
        counter_set(c[LS_PUBLISHED], self.published)
        counter_set(c[LS_DEAD_LETTERS], self.dead_letters)
        counter_set(c[LS_DUPLICATES], self.duplicates)
        if self.breaker is not None:
            counter_set(c[LS_BREAKER_STATE], self.breaker.state)
            counter_set(c[LS_BREAKER_TRIPS], self.breaker.trips)
        counter_set(c[LS_KILLS], self.kills)
        if self.output_journal is not None:  # outputs journaled by this thread
            c = self.output_counters.slot
            counter_set(c[JS_SEQUENCE], written_seq(self.output_journal, &unwritten))
            counter_set(c[JS_BACKLOG], unwritten)
            counter_set(c[JS_DURABLE], rl_load_acquire(&self.output_journal.durable))
            counter_add(c[JS_BATCHES], 1)

    cdef int _ring_run(self, Ring ring, int64_t lo, int64_t hi, int64_t base) except -1:
        """A batch handler's run of ring slots lo..hi, as a zero-copy view."""
        cdef int64_t n = hi - lo + 1
        arr = np.frombuffer(ring._view, dtype=self.dtype, count=n,
                            offset=ring.hdr.slots_offset + (lo & ring.mask) * ring.slot_size)
        return self._batch(self._readonly(arr), ring.slot(lo), n, base + lo)

    cdef object _readonly(self, object arr):
        """Handlers read their input, never write it (replay must see what live saw)."""
        arr.flags.writeable = False
        return arr

    def replay_segment(self, Segment seg, Py_ssize_t offset, int64_t sequence,
                       bint verify=True, int64_t stop_sequence=-1):
        """Replays the records of ``seg`` from byte ``offset`` (whose sequence is
        ``sequence``) until the written end, a bad record, or past ``stop_sequence``.
        Returns (scan status, offset reached, next sequence, records replayed), like
        ``Segment.scan``; a batch handler's last batch waits for ``replay_done``."""
        cdef uint32_t n = 0
        cdef int st = SCAN_OK
        cdef int64_t count = 0, nxt
        cdef const rl_header* h
        cdef const char* payload
        # business records in runs, as the live loop's fast path (automatic snapshots are
        # not taken while replaying)
        cdef bint fast = (self.kind != KIND_BATCH
                          and (self.replaying or not self.snapshot_every))
        self.fly.owner_view = seg._view
        self.fly.owner_base = seg.base
        while stop_sequence < 0 or sequence <= stop_sequence:
            if fast and self.pending_from < 0:
                nxt = self._replay_run(seg, &offset, sequence, stop_sequence, verify, &st)
                count += nxt - sequence
                sequence = nxt
                if st != SCAN_OK or (stop_sequence >= 0 and sequence > stop_sequence):
                    break
                # next: a control record, or input held back by the opened breaker
            st = seg.scan_one(offset, sequence, verify, &n)
            if st != SCAN_OK:
                break
            h = <const rl_header*>(seg.base + offset + REC_PREFIX)
            payload = <const char*>h + RL_HEADER_SIZE
            if self.kind != KIND_BATCH:
                self.process_c(h, payload, sequence, (h.flags & RL_FLAG_BATCH_END) != 0, None)
            elif self._rare(h):
                self._flush_scratch()
                self.process_c(h, payload, sequence, (h.flags & RL_FLAG_BATCH_END) != 0, None)
            else:
                if self.run_n == 0:
                    self.run_first = sequence
                self._scratch_row(h, payload)
                if h.flags & RL_FLAG_BATCH_END or self.run_n >= self.scratch_cap:
                    self._flush_scratch()
            offset += REC_PREFIX + _align8(n)
            sequence += 1
            count += 1
        return st, offset, sequence, count

    def replay_done(self):
        """Ends a replay: hands a batch handler the records gathered after the last batch
        end (a batch the crash cut short)."""
        if self.kind == KIND_BATCH:
            self._flush_scratch()

    def process(self, event, int64_t sequence, bint end_of_batch):
        """Handles one Python input event (a ring Event, a journal Record, any object with
        the header fields and a bytes-like payload) at journal ``sequence``."""
        cdef rl_header h
        cdef Py_buffer buf
        _header_of(event, &h, &buf)
        try:
            if self.kind == KIND_BATCH:
                self._flush_scratch()
            self.process_c(&h, <const char*>buf.buf, sequence, end_of_batch, event)
        finally:
            PyBuffer_Release(&buf)
            self.release_outputs()
            if self.output_journal is not None and not self.replaying:
                self.output_journal.commit()

    # -- outputs --------------------------------------------------------------------------
    def emit(self, payload, uint32_t type_id=0, int64_t key=0):
        """The handler's ``emit``: checks the breaker, then publishes or holds the output.

        Returns the breaker's decision (0 pass, 1 held, 2 throttled, 3 tripped).
        """
        cdef Py_buffer buf
        if isinstance(payload, bytes):
            return self.emit_c(type_id, PyBytes_AS_STRING(payload),
                               <uint32_t>PyBytes_GET_SIZE(payload), key)
        if not isinstance(payload, (bytearray, memoryview)):
            raise TypeError(f"emit() takes bytes-like payloads, got {type(payload).__name__}")
        PyObject_GetBuffer(payload, &buf, PyBUF_SIMPLE)
        try:
            return self.emit_c(type_id, <const char*>buf.buf, <uint32_t>buf.len, key)
        finally:
            PyBuffer_Release(&buf)

    cdef int emit_c(self, uint32_t type_id, const char* payload, uint32_t length,
                    int64_t key) except -1 nogil:
        return _emit_one(self, type_id, payload, length, key)

    cdef int emit_packed_c(self, const char* p, size_t n) except -1 nogil:
        """``emit_c`` for each output packed in ``p[0:n]`` (``PACKED_HEADER``), in order,
        with the same decisions: each run of consecutive outputs with one breaker key goes
        through the breaker at once when it can (``breaker_pass_run``: all of them pass),
        else output by output. Without the GIL but for what the breaker holds or trips on."""
        cdef const char* end = p + n
        cdef const char* q
        cdef int64_t key, k
        while p < end:
            key = (<const int64_t*>(p + 8))[0]
            q = packed_next(p)
            if (self.breaker is not None and not self.bypass and self.breaker.runs_ok
                    and self.breaker.state == BR_CLOSED):
                k = 1
                while q < end and (<const int64_t*>(q + 8))[0] == key:
                    q = packed_next(q)
                    k += 1
                if breaker_pass_run(self.breaker, self.cur_ts, key, k):
                    _emit_run(self, p, q, key)
                    p = q
                    continue
            while p < q:  # the run one by one (or, without a breaker, one output)
                _emit_one(self, (<const uint32_t*>p)[0], p + PACKED_HEADER,
                          (<const uint32_t*>p)[1], key)
                p = packed_next(p)
        return 0

    cdef int _hold(self, int decision, uint32_t type_id, const char* payload,
                   uint32_t length, int64_t key) except -1:
        """``emit_c``'s rare path: the breaker holds the output (open, or it tripped on
        this one: then the trip is published as a control output and the kill switch armed).
        Returns the decision."""
        cdef BreakerCore b = self.breaker
        b.hold(self.encode(self.OutputRecord(type_id, payload[:length], key, self.cur_ts,
                                             self.cur_corr, self.cur_seq)))
        counter_set(self.counters.slot[LS_BREAKER_HELD], len(b.held))
        if decision == BR_TRIPPED:
            info = self.encode(self.TripInfo(self.cur_seq, b.last_trip))
            self._publish(T_TRIPPED, RL_FLAG_CONTROL, PyBytes_AS_STRING(info),
                          <uint32_t>PyBytes_GET_SIZE(info), 0, self.cur_ts, self.cur_corr,
                          self.cur_seq)
            self.kill_armed = b.kill != 0  # runs once the handler returns
        return decision

    cdef int _publish_record(self, object rec) except -1:
        cdef bytes p = rec.payload
        return self._publish(rec.type_id, rec.flags, PyBytes_AS_STRING(p),
                             <uint32_t>PyBytes_GET_SIZE(p), rec.key, rec.timestamp_ns,
                             rec.correlation_id, rec.cause)

    cdef int _publish(self, uint32_t type_id, uint32_t flags, const char* payload,
                      uint32_t length, int64_t key, int64_t ts, int64_t corr,
                      int64_t cause) except -1 nogil:
        """Publishes one output: in place into the output ring when live (``_to_slot``); to
        the output journal when live without a ring; to ``sink`` when replaying (unless it
        is already journaled and not verified: a quiet replay's outputs need no GIL)."""
        self.published += 1
        if self.output_ring is not None and not self.replaying:
            return _to_slot(self, type_id, flags, payload, length, key, ts, corr, cause)
        if self.replaying and self.published <= self.replay_quiet:
            return 0
        if not self.replaying and self.output_journal is not None:
            # committed (last_seq, group-commit nudge) once per batch by run()
            self.output_journal.write_output(type_id, flags, payload, length, ts, corr,
                                             cause)
            return 0
        with gil:  # a Python sink (verify, a ringless loop)
            if self.sink is None:
                raise RingLogError("the loop has no output ring and no sink for its outputs")
            self.sink(self.OutputRecord(type_id, payload[:length], key, ts, corr, cause,
                                        flags))
        return 0

    cdef int64_t _claim_outputs(self, uint32_t length) except -1 nogil:
        """``_to_slot``'s rare path (once per ``out_chunk`` outputs): refuses an output too
        large for a slot; otherwise claims the next output slots, up to ``out_chunk`` at
        once when the ring has room (one claim per chunk of outputs, not per output), else
        waits for one (``_await_output_slot``, with the GIL). Without the GIL but to raise
        or wait. Returns the sequence of the slot to write."""
        cdef int64_t hi, size = self.output_ring.slot_size
        if length > <uint32_t>(size - RL_HEADER_SIZE):
            self.published -= 1
            with gil:
                raise SchemaError(f"output of {length} bytes does not fit a {size}-byte "
                                  f"output slot ({size - RL_HEADER_SIZE} bytes after the "
                                  "header); use a larger slot_size")
        if self.out_next <= self.out_end:  # claimed already: only the length was in question
            return self.out_next
        hi = self.output_ring.try_claim(self.out_chunk)
        if hi >= 0:
            self.out_end = hi
            return hi - self.out_chunk + 1
        if hi != RL_CLOSED:
            with gil:
                hi = self._await_output_slot()
        if hi == RL_CLOSED:
            with gil:
                raise RingClosedError("the output ring is closed")
        self.out_end = hi
        return hi

    cdef int64_t _await_output_slot(self) except -2:
        """The output ring is full: publishes what was written (the output stage frees
        slots only past what it sees) and waits for one slot without the GIL (whoever holds
        it may be what frees slots: a Python listener). Returns its sequence or RL_CLOSED."""
        cdef Ring r = self.output_ring
        cdef int64_t hi
        self.release_outputs()
        while True:  # backpressure
            with nogil:
                hi = r.claim(1, WAIT_NS)
            if hi != RL_TIMEOUT:
                return hi
            if self.release_stage is not None:  # no output thread to fail for us
                self.release_stage.check_gate()

    cdef int release_outputs(self) except -1 nogil:
        """Publishes the output slots written since the last call, in one release store (one
        fence, at most one wake of a sleeping output stage): at each input batch end, before
        a snapshot, when the output ring is full, when the loop stops. Outputs are handled
        per batch downstream anyway (journaled, gated on the batch's durability)."""
        if self.out_lo >= 0:
            self.output_ring.publish_range(self.out_lo, self.out_hi)
            self.out_lo = -1
            if self.release_stage is not None:  # no output thread: journal and hand over
                self.release_stage.loop_append(self.out_hi)
        return 0

    @property
    def halted(self):
        """True while the breaker holds input back (input is journaled, not processed)."""
        return self.pending_from >= 0


cdef extern from "pythread.h":
    unsigned long PyThread_get_thread_ident()


cdef class LoopHandle:
    """The processor's loop as C calls for the threads around it (``Processor.loop_handle``):
    whether it runs, how far it is (``processed_sequence``, ``published``) and, in the
    driven topology, its step (``pump``). ``Processor.pump()`` is this ``pump``; a gateway
    driving the processor from its event loop calls it, and reads the progress, without a
    Python frame per loop iteration.

    ::

        pump() ─► the pump lock (one pumper at a time; StateError if taken)
                  ─► running? ─► LogicCore.pump(consumer, base, journal, ...) ─► events handled
                     RingClosedError ─► 0; any other error ─► on_error (the processor halts)
    """

    def __init__(self, LogicCore core, lock, on_error, bint driven):
        self.core = core
        self.driven = driven
        self._acquire = lock.acquire
        self._release = lock.release
        self._on_error = on_error

    def arm(self, Consumer consumer, int64_t base, JournalAppender journal, int max_batch,
            bint release_gil):
        """At start(): the loop's consumer and journal, as ``LogicCore.pump`` takes them."""
        self.consumer = consumer
        self.base = base
        self.journal = journal
        self.max_batch = max_batch
        self.release_gil = release_gil

    cpdef int64_t pump(self) except -1:
        """The driven topology's step on the caller's thread (``Processor.pump``): how many
        events it handled; StateError if another thread is inside ``pump()``."""
        if not self.driven:
            raise StateError("pump() needs ProcessorConfig(topology=\"driven\"); this "
                             "processor's loop thread pumps")
        if not self._acquire(False):
            raise StateError("pump() is running on another thread: one pumper at a time")
        try:
            self.driver = PyThread_get_thread_ident()
            return self.pump_held()
        finally:
            self._release()

    cdef int64_t pump_held(self) except -1:
        # pump() with the lock held: 0 unless running; a failure halts the processor
        if not self.running:
            return 0
        try:
            return self.core.pump(self.consumer, self.base, self.journal, self.max_batch,
                                  self.release_gil)
        except RingClosedError:
            return 0
        except BaseException as e:  # halted as on a loop thread; stop() raises it
            self._on_error(e)
            return 0

    def held(self):
        """``pump()`` for a caller that holds the pump lock already (drain, stop, a full
        ring on the driver's thread)."""
        return self.pump_held()

    cdef int64_t processed_c(self) noexcept:
        if self.running:
            return self.base + rl_load_acquire(self.consumer.seq_ptr)
        return self.core.last_sequence

    cdef bint holding_c(self) noexcept:
        return self.core.pending_from >= 0

    @property
    def holding(self):
        """``Processor.halted``: the circuit breaker is open and input is held."""
        return self.holding_c()

    @property
    def processed_sequence(self):
        """``Processor.processed_sequence``: the journal sequence of the last input the loop
        has finished (-1: none yet)."""
        return self.processed_c()
