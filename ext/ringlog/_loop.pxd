# The processor's hot loops: the journaller stage and LogicCore, the business-logic state
# machine (control events, dedup, breaker halt/resume, exception policy, outputs). One
# per-event path (`process_c`) serves the live loop over ring slots, replay over mapped
# journal records and Python event objects, so every decision is the same in all three.
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint32_t

from ringlog._breaker cimport BreakerCore
from ringlog._counters cimport StageCounters
from ringlog._handler cimport CyEventHandler, Emitter
from ringlog._hashmap cimport rl_map
from ringlog._journal cimport JournalAppender, Segment
from ringlog._release cimport ReleaseStage
from ringlog._ring cimport Consumer, Ring
from ringlog.includes.event cimport rl_header
from ringlog.includes.pycall cimport vectorcallfunc


cdef enum HandlerKind:
    KIND_PYTHON = 0           # on_event(event, sequence, end_of_batch) with a flyweight event
    KIND_CYTHON = 1           # CyEventHandler.on_event_c: no Python object per event
    KIND_BATCH = 2            # on_batch(array, first_sequence) with a numpy view of slots


cdef class SlotEvent:
    # The flyweight a Python handler receives: reads the header it points at. Reused for
    # every event; valid only during the handler call (as in the Disruptor).
    cdef const rl_header* h
    cdef int64_t seq              # the journal sequence (the ring's differs)
    cdef object owner_view        # memoryview over the memory `h` points into
    cdef const char* owner_base


cdef class _CoreEmitter(Emitter):
    # A Cython handler's emit_c goes straight to LogicCore.emit_c (breaker, in-place write).
    cdef LogicCore core


cdef class LogicCore:
    cdef readonly object handler
    cdef readonly int kind
    cdef CyEventHandler cy
    cdef object py_call           # bound on_event or on_batch
    cdef int py_nargs             # how many of (event, sequence, end_of_batch) on_event takes
    cdef object py_func, py_self  # on_event as function (+ its self, or None): vectorcall
    cdef vectorcallfunc py_vc     # py_func's vectorcall function (NULL: the generic call)
    cdef PyObject* seq_cache      # the last sequence int, reused while no handler keeps it
    cdef readonly BreakerCore breaker
    cdef bint dedup_on
    cdef public object sink           # outputs as OutputRecords when replaying or ringless
    cdef object _reread, _snapshot, _dead_letter, _on_resume
    cdef object _on_kill, _on_enable    # the handler's kill switch hooks (or None)
    cdef int bypass                    # > 0 while the kill switch runs: outputs skip the breaker
    cdef bint kill_armed               # a trip armed the kill switch for the current input
    cdef public int64_t snapshot_every
    # state (saved in snapshots through ringlog.logic.LoopState)
    cdef public int64_t last_sequence
    cdef public int64_t pending_from   # first input held back while the breaker is open
    cdef rl_map dedup_map           # producer_id -> last applied producer_seq (``dedup``)
    cdef public int64_t outputs, published, processed, duplicates, dead_letters, kills
    cdef public bint replaying
    cdef public int64_t replay_quiet   # replay: outputs below this index are suppressed
    # the input being handled: outputs carry its sequence, timestamp and correlation id
    cdef int64_t cur_seq, cur_ts, cur_corr
    cdef public Ring output_ring       # live outputs are written here in place
    cdef int64_t out_lo, out_hi        # output slots written, not yet published (-1: none)
    cdef int64_t out_next, out_end     # next output slot to write; last one claimed
    cdef int64_t out_chunk             # output slots claimed at once
    cdef uint32_t out_room             # payload bytes an output slot holds
    cdef public JournalAppender output_journal  # ...or, with no ring, appended straight here
    cdef ReleaseStage release_stage    # with a ring: this thread appends and hands over (or None)
    cdef object out_keys               # int64 per output ring slot: the breaker key
    cdef int64_t* out_keys_p
    cdef SlotEvent fly
    # batch handlers: slots of `slot_size` bytes; replay gathers runs in `scratch`
    cdef readonly int slot_size
    cdef object dtype
    cdef object scratch
    cdef object scratch_view
    cdef char* scratch_p
    cdef int64_t scratch_cap, run_n, run_first
    cdef object OutputRecord, TripInfo, KillInfo, KillReport, encode, decode
    cdef public StageCounters counters  # stored at each live batch end (ringlog._counters)
    # the journal stages' counters when this thread journals (inline topology, no output ring)
    cdef public StageCounters journal_counters, output_counters
    # the nogil loop (_steps_nogil): the batch it hands to the GIL and where in it
    cdef int64_t nb_nxt, nb_avail, run_slot
    cdef bint nb_was_open, run_opened, run_snapshot, in_run

    cdef int process_c(self, const rl_header* h, const char* payload, int64_t seq,
                       bint end_of_batch, object obj) except -1
    cdef int _business(self, const rl_header* h, const char* payload, int64_t seq,
                       bint end_of_batch, object obj) except -1
    cdef int _run(self, Consumer consumer, int64_t base, JournalAppender journal,
                  int64_t limit) except -1
    cdef int64_t _step(self, Consumer consumer, int64_t base, JournalAppender journal,
                       int64_t limit, int64_t wait_ns, bint release_gil) except -3
    cdef int64_t _steps_nogil(self, Consumer consumer, int64_t base, JournalAppender journal,
                              int64_t limit) except -3 nogil
    cdef void _idle_counters(self) noexcept nogil
    cdef int64_t _finish_batch(self, Consumer consumer, int64_t base, int64_t nxt,
                               int64_t avail, int64_t s, bint was_open) except -3
    cdef int _batch_end(self, Consumer consumer, int64_t base, int64_t avail) except -1 nogil
    cdef int _attach(self, Ring ring) except -1
    cdef int64_t _business_run(self, Ring ring, int64_t s, int64_t hi,
                               int64_t base) except -1
    cdef int64_t _business_run_nogil(self, Ring ring, int64_t s, int64_t hi,
                                     int64_t base) except -2 nogil
    cdef int _dead_in_run(self, const rl_header* h, int64_t seq) except -1
    cdef int _opened(self, int64_t pending) except -1
    cdef int64_t _replay_run(self, Segment seg, Py_ssize_t* offset, int64_t seq,
                             int64_t stop, bint verify, int* status) except -1
    cdef int _call(self, const rl_header* h, const char* payload, int64_t seq,
                   bint end_of_batch, object obj) except -1
    cdef int _batch(self, object arr, const char* rows, int64_t n, int64_t first) except -1
    cdef int _dead(self, object event, int64_t seq, object tb) except -1
    cdef int _control(self, const rl_header* h, const char* payload, int64_t seq,
                      object obj) except -1
    cdef int _resume(self, int64_t reset_sequence) except -1
    cdef int _kill_on_trip(self) except -1
    cdef object _kill(self, object key, bint by_trip)
    cdef int _after(self, int64_t seq) except -1
    cdef void _store_counters(self, int64_t seq, int64_t ts) noexcept nogil
    cdef bint _rare(self, const rl_header* h) noexcept
    cdef int _flush_scratch(self) except -1
    cdef int _ring_run(self, Ring ring, int64_t lo, int64_t hi, int64_t base) except -1
    cdef object _readonly(self, object arr)
    cdef char* _scratch_row(self, const rl_header* h, const char* payload) except NULL
    cdef int emit_c(self, uint32_t type_id, const char* payload, uint32_t length,
                    int64_t key) except -1 nogil
    cdef int emit_packed_c(self, const char* p, size_t n) except -1 nogil
    cdef int _publish(self, uint32_t type_id, uint32_t flags, const char* payload,
                      uint32_t length, int64_t key, int64_t ts, int64_t corr,
                      int64_t cause) except -1 nogil
    cdef int _publish_record(self, object rec) except -1
    cdef int _hold(self, int decision, uint32_t type_id, const char* payload,
                   uint32_t length, int64_t key) except -1
    cdef int release_outputs(self) except -1 nogil
    cdef int64_t _claim_outputs(self, uint32_t length) except -1 nogil
    cdef int64_t _await_output_slot(self) except -2


cdef class LoopHandle:
    cdef readonly LogicCore core
    cdef Consumer consumer             # the loop's consumer (armed by start())
    cdef int64_t base                  # journal sequence of ring sequence 0
    cdef JournalAppender journal
    cdef int max_batch
    cdef bint release_gil
    cdef object _acquire, _release     # the processor's pump lock
    cdef object _on_error              # Processor._halt
    cdef public bint running           # the processor's state is "running"
    cdef readonly bint driven          # the driven topology: pump() is the loop's step
    cdef public unsigned long driver   # the thread that pumped last (threading.get_ident())
    cpdef int64_t pump(self) except -1
    cdef int64_t pump_held(self) except -1
    cdef int64_t processed_c(self) noexcept
    cdef bint holding_c(self) noexcept
