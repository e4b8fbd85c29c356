# The journal's C-level API (docs/journal-format.md): a mapped segment, the appender's hot
# path (memcpy into the map, commit by storing the length last) and the record scanner.
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

from ringlog._ring cimport _Mapping
from ringlog.includes.atomics cimport rl_load_acquire, rl_store_release_u32
from ringlog.includes.event cimport RL_HEADER_SIZE, rl_header


cdef extern from "record.h" nogil:
    ctypedef uint32_t (*rl_output_body_fn)(rl_header* d, int64_t seq, int64_t ts,
                                           int64_t corr, int64_t cause, uint32_t type_id,
                                           uint32_t flags, const void* payload,
                                           uint32_t length)
    rl_output_body_fn rl_output_body_pick()


cdef enum:
    # write-behind: buffers handed to the writer thread at most - 1. More (64) spared a
    # lingering direct-I/O writer wake-ups at small commits, but cost the engine flow more
    # than they saved (its 256 KiB buffers cycled through 16 MiB: docs/processor.md, step 25)
    WB_SLOTS = 8
    SEG_HEADER_SIZE = 4096
    REC_PREFIX = 8            # u32 length + u32 crc32c
    ROLL_PATH_MAX = 4096      # longest path a roll without the GIL renames (else: fallback)


cpdef enum ScanStatus:
    SCAN_OK = 0               # a valid record
    SCAN_END = 1              # length 0: nothing more written in this segment
    SCAN_BAD_LENGTH = 2       # length smaller than a header or past the segment end
    SCAN_BAD_CRC = 3
    SCAN_BAD_SEQUENCE = 4     # not the next dense sequence
    SCAN_BAD_PADDING = 5      # a non-zero byte in the record's alignment padding
    SCAN_UNTERMINATED = 6     # length 0 but bytes after it: a body whose length was not stored


cdef enum:
    SYNC_DATA = 0             # durable_sync ops: fdatasync
    SYNC_FILE = 1             # fsync


cdef int durable_sync(int fd, int op) noexcept nogil


cpdef enum Durability:
    NONE = 0
    GROUP = 1
    SYNC = 2


cdef class Segment:
    cdef _Mapping _map
    cdef char* base
    cdef readonly Py_ssize_t size
    cdef readonly int64_t first_sequence
    cdef readonly object path
    cdef readonly bint writable
    cdef object _view
    cdef dict _versions        # type id -> schema version from the header (parsed lazily)
    cdef readonly int dfd      # an O_DIRECT descriptor of the file (open_direct), else -1

    cdef int scan_one(self, Py_ssize_t off, int64_t expect_seq, bint verify,
                      uint32_t* length) noexcept nogil
    cdef void store_durable(self, int64_t seq) noexcept nogil
    cdef void finish_header(self, int64_t first_sequence, int64_t created_ns,
                            int64_t durable) noexcept nogil
    cdef int64_t durable_hint(self) noexcept nogil
    cdef Py_ssize_t first_nonzero_c(self, Py_ssize_t start, Py_ssize_t end) noexcept nogil


# One write of buffered records into a segment (JournalAppender._flush): made on the appending
# thread, or handed to the write-behind writer thread (a ring of WB_SLOTS of them).
ctypedef struct wb_item:
    char* buf                  # the records (a write-behind slot's buffer, or the appender's)
    Py_ssize_t cap             # its size
    Py_ssize_t at              # the segment offset of buf[0]
    Py_ssize_t n               # bytes from buf[0]
    Py_ssize_t skip            # 4: the first length word is held (not written here), else 0
    int by_copy                # copied into the map, not by pwrite() (_by_copy)
    int fd                     # the segment's file (its O_DIRECT one: direct_io) and map
    char* base
    Py_ssize_t word_at         # -1, or a held length word written after the bytes (a commit)
    uint32_t word
    int word_by_pwrite
    int64_t last               # -1, or published as last_seq once written (commit())


# Called by whichever thread advanced the durable mark, right after publishing it (no GIL):
# ringlog._release.ReleaseStage hands the outputs made durable over from there.
ctypedef void (*durable_hook_t)(void* ctx, int64_t durable) noexcept nogil


cdef class JournalAppender:
    # Single writer: one thread appends (not thread-safe); the group-commit thread only reads
    # `last_seq` and writes `durable`, both with atomics.
    cdef Segment seg
    cdef readonly Py_ssize_t pos
    cdef int64_t next_seq
    cdef int64_t last_seq
    cdef int64_t durable
    cdef int64_t durable_lock  # serializes publishing `durable` (appender vs sync callers)
    cdef int32_t sync_signal
    cdef int32_t sync_waiters
    cdef int32_t stopping      # close(): the background thread's waits return at once
    cdef int32_t durable_signal   # bumped (futex) each time `durable` advances
    cdef int32_t durable_waiters  # threads sleeping in wait_durable_c
    cdef readonly int policy
    cdef readonly int64_t group_events
    # Group commit on demand: `wanted` is the highest sequence a thread waits to see durable
    # (want_durable: wait_durable_c, a release stage holding outputs). While it is not
    # durable the group commit runs back to back; while nothing is wanted it lets appends
    # gather for `lazy_ns` after each fdatasync (0: back to back always), sleeping on
    # want_signal, which a want, a roll and close wake.
    cdef int64_t wanted
    cdef int32_t want_signal
    cdef int32_t want_waiters
    cdef readonly int64_t lazy_ns
    cdef int64_t synced_at     # when a sync last published the durable mark (_set_durable)
    cdef readonly int64_t group_syncs  # fdatasyncs of the group commit (tests, benches)
    cdef int64_t index_every
    cdef int64_t since_index
    cdef int64_t max_ts
    cdef int64_t* index        # triples (sequence, offset, running max timestamp)
    cdef Py_ssize_t index_len
    cdef Py_ssize_t index_cap
    cdef object owner          # the Python Journal: rolls segments
    cdef int failed            # a write error happened: every later append fails
    # Where records are built: `out` + (pos - out_at). Buffered (the default): a private
    # buffer holding the records since the last flush, written out by pwrite() (no page
    # fault per 4 KiB of the shared map); direct (buffered=False): the map itself, out_at 0.
    cdef char* out
    cdef Py_ssize_t out_at     # segment offset of out[0]: the first unflushed byte
    cdef Py_ssize_t out_end    # records must end at or before this offset (flush or roll)
    cdef char* wbuf            # the private buffer (NULL when direct)
    # the length word of the first record flushed since the last commit, held back until
    # the commit (_flush): the records after it are unreachable until it is written
    cdef Py_ssize_t held_at    # its segment offset (-1: nothing held)
    cdef uint32_t held_word
    cdef bint held_by_pwrite   # its flush went by pwrite() (the word may go so too)
    cdef Py_ssize_t wcap
    cdef readonly bint buffered
    # Write-behind (write_behind=True): a flush of WB_MIN bytes or more, and any flush while
    # earlier ones are in flight, is handed to a writer thread (run_writer) as a wb_item; the
    # appender goes on building records in the next slot's buffer. Items are written in
    # order; the writer publishes last_seq for a commit's item once it is written, so the
    # group-commit thread never syncs past what is in the file.
    cdef readonly bint write_behind
    cdef wb_item wb_items[WB_SLOTS]
    cdef int64_t wb_head       # items handed off (the appender's counter)
    cdef int64_t wb_tail       # items written (whoever holds wb_lock)
    cdef int64_t wb_lock       # held while writing items: the writer thread, or a helper
    cdef int32_t wb_running    # the writer thread is in run_writer (else waiters help)
    cdef int32_t wb_signal     # the writer sleeps here
    cdef int32_t wb_waiters
    cdef int32_t wb_done_signal   # bumped each time wb_tail moves (futex)
    cdef int32_t wb_done_waiters
    cdef int wb_err            # the errno of a failed write-behind write, and its offset
    cdef Py_ssize_t wb_err_at
    cdef int64_t wb_written    # items whose bytes are in the file (== wb_tail unless direct_io)
    cdef int64_t wb_want       # a waiter wants the items before this written now (direct_io)
    cdef readonly int32_t wb_lingering  # the writer sleeps on a timeout with bytes staged
    # Direct I/O (direct_io=True, write-behind only): the writer copies the items it takes into an
    # aligned stage and writes whole 4 KiB blocks of it with O_DIRECT, once DIRECT_MIN bytes
    # are staged, `linger_ns` after the first, or when a waiter needs them written: no page
    # cache, no writeback, no page allocation per 4 KiB (docs/journal-format.md, "Direct I/O").
    # A write never makes a record reachable before its bytes are in the file: the length
    # word of the first record not yet reachable (the frontier) is zero in every write of
    # the stage, and written alone after it. Touched only under wb_lock.
    cdef readonly bint direct_io
    cdef readonly int64_t linger_ns
    cdef char* st_buf          # file bytes st_off .. st_off + st_len (4 KiB aligned)
    cdef Py_ssize_t st_cap
    cdef int st_fd             # the O_DIRECT descriptor the stage is for (-1: none yet)
    cdef Py_ssize_t st_off
    cdef Py_ssize_t st_len
    cdef Py_ssize_t st_done    # st_buf[:st_done] is in the file already (the kept block)
    cdef int64_t st_since      # when the first byte not in the file was staged
    cdef int64_t st_last       # the last commit staged (published once written; -1: none)
    cdef Py_ssize_t fr_at      # the frontier (-1: everything written is reachable)
    cdef uint32_t fr_word      # its length word, once its batch is committed (fr_ready)
    cdef bint fr_ready
    cdef char* fr_blk          # the frontier's block once the stage moved past it
    cdef Py_ssize_t open_at    # the start of the batch whose commit has not come yet (-1)
    cdef readonly int64_t direct_writes  # O_DIRECT write calls (the stage's and words')
    cdef readonly int64_t writer_wakes   # hand-offs that woke the writer (direct_io)
    # builds an output record's body: the CRC32C implementation in force when the appender
    # was made (rl_output_body_pick; append_output runs inlined in other modules)
    cdef rl_output_body_fn output_body
    # Rolling without the GIL (docs/journal-format.md, "Rolling"): the background thread
    # offers a prepared segment with its header template written; the appender finishes the
    # header, renames the file and switches to it, and leaves the old segment's index and
    # fdatasync, the new header's fdatasync and the directory fsync to that thread
    # (``take_roll`` ... ``roll_done``). Until then the durable mark stays below the roll.
    cdef Segment ready_seg     # the offered segment (None: none)
    cdef int32_t ready         # 1 while ready_seg may be taken (release/acquire)
    cdef Segment rolled_seg    # the segment the last roll left, until take_roll (else None)
    cdef int32_t roll_pending  # 1 from a roll without the GIL until roll_done
    cdef int32_t path_stale    # seg.path still names the prepared file; roll_dst is right
    cdef int64_t durable_cap   # _set_durable publishes no higher (a roll's syncs pending)
    cdef int64_t rolled_last   # the rolled segment's last sequence, end offset, max ts
    cdef Py_ssize_t rolled_end
    cdef int64_t rolled_max_ts
    cdef int64_t* rolled_index  # its sparse index (the buffers swap at a roll)
    cdef Py_ssize_t rolled_index_len
    cdef Py_ssize_t rolled_index_cap
    cdef readonly int64_t fast_rolls  # rolls done without the GIL
    cdef char ready_src[ROLL_PATH_MAX]  # the offered segment's (temporary) path
    cdef char roll_dir[ROLL_PATH_MAX]   # the journal directory
    cdef char roll_dst[ROLL_PATH_MAX]   # the final path of the segment the last roll took

    cdef int64_t append_record(self, const rl_header* h, const char* payload) except -1 nogil
    cdef int64_t write_record(self, const rl_header* h, const char* payload) except -1 nogil
    cdef int64_t write_output(self, uint32_t type_id, uint32_t flags, const char* payload,
                              uint32_t length, int64_t ts, int64_t corr,
                              int64_t cause) except -1 nogil
    cdef int64_t append_slots(self, const char* base, Py_ssize_t stride,
                              Py_ssize_t count) except -1 nogil
    cdef int _room(self, Py_ssize_t need) except -1 nogil
    cdef int _flush(self, bint publish=*, int64_t last=*) except -1 nogil
    cdef int _hand_off(self) except -1 nogil
    cdef bint _stage_handed(self) noexcept nogil
    cdef void _wb_wait(self, int64_t upto, bint written=*) noexcept nogil
    cdef void _wb_run(self, bint force=*) noexcept nogil
    cdef int _stage_item(self, const wb_item* it, int64_t taken) noexcept nogil
    cdef int _write_stage(self, int64_t taken) noexcept nogil
    cdef int _raise_failed(self) except -1 nogil
    cdef void _nudge(self, int64_t last) noexcept nogil
    cdef void _aim(self) noexcept nogil
    cdef void _write(self, const rl_header* h, const char* payload) noexcept nogil
    cdef void _note_index(self, int64_t seq, int64_t ts) noexcept nogil
    cdef int commit(self) except -1 nogil
    cdef void _set_durable(self, int64_t seq) noexcept nogil
    cdef int _sync_to(self, int64_t last) noexcept nogil
    cdef void _sleep_for_work(self, bint group, int64_t timeout_ns) noexcept nogil
    cdef _raise_sync_failed(self, int rc)
    cdef int _fast_roll(self, Py_ssize_t need) noexcept nogil
    cdef void _switch(self, Py_ssize_t pos, int64_t next_seq) noexcept nogil
    cdef int _await_roll(self, int64_t last) except -1 nogil
    cdef _fix_path(self)
    cdef void want_durable(self, int64_t seq) noexcept nogil
    cdef int64_t _lazy_until(self, int64_t now) noexcept nogil
    cdef void _lazy_wait(self, int64_t until) noexcept nogil
    cdef int64_t wait_durable_c(self, int64_t seq, int64_t timeout_ns) noexcept nogil
    # the durable hook (set_durable_hook): fn, its argument, calls running now
    cdef durable_hook_t durable_hook
    cdef void* durable_hook_ctx
    cdef int32_t durable_hook_busy
    cdef void set_durable_hook(self, durable_hook_t fn, void* ctx) noexcept nogil


cdef inline int64_t written_seq(JournalAppender j, int64_t* unwritten) noexcept nogil:
    """The last sequence in the file (what readers see: a stage's ``.sequence``), and in
    ``unwritten`` the records appended after it that are not in the file yet (in the buffer,
    or handed to the write-behind writer: counted in the stage's ``.backlog``). The appending
    thread only (``next_seq`` is its own)."""
    cdef int64_t w = rl_load_acquire(&j.last_seq)
    unwritten[0] = j.next_seq - 1 - w
    return w


# -- building an output record, inline where it is called (the loop's emit path) ----------


cdef inline Py_ssize_t _align8(Py_ssize_t n) noexcept nogil:
    return (n + 7) & ~7


cdef inline void _zero_tail(char* rec, uint32_t n) noexcept nogil:
    """Zeroes the last 8-byte word of a record of body length ``n`` before its body is
    written over the start of it: the alignment padding is zero (a private buffer holds
    the previous batch's bytes there)."""
    (<uint64_t*>(rec + REC_PREFIX + _align8(n) - 8))[0] = 0


cdef inline void _seal(JournalAppender self, char* rec, uint32_t n, int64_t seq, int64_t ts,
                       uint32_t crc) noexcept nogil:
    """Ends a record whose body is written at ``rec``: its CRC, the sparse index, then the
    length word, stored last (release) to commit it (directly; buffered, a flush commits the
    buffer); moves the append position."""
    (<uint32_t*>(rec + 4))[0] = crc
    if self.since_index >= self.index_every:
        self._note_index(seq, ts)
    self.since_index += 1
    if ts > self.max_ts:
        self.max_ts = ts
    rl_store_release_u32(<uint32_t*>rec, n)  # commit: the length word last
    self.pos += REC_PREFIX + _align8(n)
    self.next_seq = seq + 1


cdef inline int64_t append_output(JournalAppender j, uint32_t type_id, uint32_t flags,
                                  const char* payload, uint32_t length, int64_t ts,
                                  int64_t corr, int64_t cause) except -1 nogil:
    """``JournalAppender.write_output`` inlined into the caller (no call, prologue and
    return check per output): the header is stored straight where the record is built and
    checksummed from registers with the payload (``output_body``, one call); readers
    see the record after the next ``commit()``. Returns its sequence."""
    cdef uint32_t n = RL_HEADER_SIZE + length
    cdef Py_ssize_t need = REC_PREFIX + _align8(n)
    if j.failed or j.pos + need > j.out_end:
        j._room(need)
    cdef char* rec = j.out + (j.pos - j.out_at)
    cdef int64_t seq = j.next_seq
    _zero_tail(rec, n)
    _seal(j, rec, n, seq, ts,
          j.output_body(<rl_header*>(rec + REC_PREFIX), seq, ts, corr, cause, type_id,
                        flags, payload, length))
    return seq
