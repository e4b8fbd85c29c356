# The journal's C-level API (docs/journal-format.md): a mapped segment, the appender's hot
# path (memcpy into the map, commit by storing the length last) and the record scanner.
from libc.stdint cimport int32_t, int64_t, uint32_t

from ringlog._ring cimport _Mapping
from ringlog.includes.event cimport rl_header


cdef enum:
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

    cdef int scan_one(self, Py_ssize_t off, int64_t expect_seq, bint verify,
                      uint32_t* length) noexcept nogil
    cdef void store_durable(self, int64_t seq) noexcept nogil
    cdef void finish_header(self, int64_t first_sequence, int64_t created_ns,
                            int64_t durable) noexcept nogil
    cdef int64_t durable_hint(self) noexcept nogil
    cdef Py_ssize_t first_nonzero_c(self, Py_ssize_t start, Py_ssize_t end) noexcept nogil


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
    cdef int32_t durable_signal   # bumped (futex) each time `durable` advances
    cdef int32_t durable_waiters  # threads sleeping in wait_durable_c
    cdef readonly int policy
    cdef readonly int64_t group_events
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
    cdef Py_ssize_t wcap
    cdef readonly bint buffered
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
    cdef int _flush(self) except -1 nogil
    cdef void _aim(self) noexcept nogil
    cdef void _write(self, const rl_header* h, const char* payload) noexcept nogil
    cdef void _note_index(self, int64_t seq, int64_t ts) noexcept nogil
    cdef int commit(self) except -1 nogil
    cdef void _set_durable(self, int64_t seq) noexcept nogil
    cdef int _fast_roll(self, Py_ssize_t need) noexcept nogil
    cdef void _switch(self, Py_ssize_t pos, int64_t next_seq) noexcept nogil
    cdef int _await_roll(self, int64_t last) except -1 nogil
    cdef _fix_path(self)
    cdef int64_t wait_durable_c(self, int64_t seq, int64_t timeout_ns) noexcept nogil
    # the durable hook (set_durable_hook): fn, its argument, calls running now
    cdef durable_hook_t durable_hook
    cdef void* durable_hook_ctx
    cdef int32_t durable_hook_busy
    cdef void set_durable_hook(self, durable_hook_t fn, void* ctx) noexcept nogil
