"""The journal's hot paths: mapped segments, the appender, the record scanner.

Record and segment layout: docs/journal-format.md. The appender builds each record (event
header and payload, the journal sequence, the CRC32C) and commits it by its length word,
written last, so a concurrent reader (a tailer in another thread or process, reading the
mapped segment) never sees a half-written record. By default the records of a batch are
built in a private buffer and written to the segment file with pwrite() (the page cache is the
one the readers map): stores into a shared file map take a write fault on the first store into
each 4 KiB page after every fdatasync or background writeback, a pwrite() takes none
(docs/processor.md). ``buffered=False`` stores them into the map directly::

    buffered (default)                              direct (buffered=False)
    records ──► private buffer (pos - out_at bytes)   records ──► mapped segment at pos
                    │ buffer full: _flush(publish=False), commit(): _flush()
                    ├─ the first flush since a commit: all but its first length word,
                    │  which is held (the records after it are unreachable until then)
                    ├─ later flushes before the commit: all of their bytes (one call)
                    │     by pwrite(); under durability "none" a part smaller
                    │     than PWRITE_MIN is copied into the map instead
                    └─ commit: the held word (a 1-byte pwrite, or a release store into
                       the map): the whole batch becomes reachable at once
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.errno cimport EINTR, EIO, errno
from libc.stdint cimport INT64_MAX, int32_t, int64_t, uint32_t, uint64_t
from libc.stdio cimport rename, snprintf
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memmove, memset
from posix.fcntl cimport O_CREAT, O_EXCL, O_RDONLY, O_RDWR, open as c_open
from posix.stat cimport fstat, struct_stat
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec
from posix.types cimport off_t

from ringlog._ring cimport Batch, Event, Ring, map_fd
from ringlog.includes.atomics cimport (
    rl_cas, rl_cpu_relax, rl_fence, rl_fetch_add32, rl_load_acquire, rl_load_acquire32,
    rl_load_acquire_u32, rl_store_release, rl_store_release32, rl_store_release_u32,
)
from ringlog.includes.event cimport RL_HEADER_SIZE, rl_header
from ringlog.includes.ringwait cimport (
    rl_futex_wait, rl_futex_wake_all, rl_now_ns, rl_sleeper_in, rl_sleeper_out,
    rl_wake_sleepers,
)

import json
import os
import zlib

from ringlog.errors import JournalCorruptError, JournalError

cdef extern from "crc32c.h" nogil:
    int rl_crc32c_mode
    void rl_crc32c_setup()
    uint32_t rl_crc32c(uint32_t crc, const void* buf, size_t n)
    uint32_t rl_crc32c_copy(uint32_t crc, void* dst, const void* src, size_t n)
    uint32_t rl_crc32c_body(void* dst, const void* src, size_t n, uint64_t first)

cdef extern from "<fcntl.h>" nogil:
    int posix_fallocate(int fd, long offset, long length)
    int sync_file_range(int fd, long offset, long nbytes, unsigned int flags)
    const int O_DIRECT
    const unsigned int SYNC_FILE_RANGE_WRITE

cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void** memptr, size_t alignment, size_t size)

cdef extern from "<unistd.h>" nogil:
    int fdatasync(int fd)
    int fsync(int fd)
    ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset)
    ssize_t pread(int fd, void* buf, size_t n, off_t offset)
    int close(int fd)
    int usleep(unsigned int usec)

cdef extern from "Python.h":
    object PyMemoryView_FromObject(object)

cdef extern from *:
    """
    /* a <- b, b <- c, c <- a: rotates three owned object fields without the GIL (each
       object keeps exactly the references it had, so no reference count changes) */
    #define RL_ROTATE3(a, b, c) do { void* rl_t_ = (void*)(a); (a) = (b); (b) = (c); \
                                     (c) = rl_t_; } while (0)
    """
    void RL_ROTATE3(Segment a, Segment b, Segment c) nogil

rl_crc32c_setup()
_HAS_HW_CRC = rl_crc32c_mode == 1

__all__ = ["JournalAppender", "Record", "Segment", "crc32c", "scan", "set_sync_hook",
           "sync_hook"]


# Segment.write_zeros writes from this (never written: its pages stay the kernel's zero page)
cdef enum:
    ZERO_RUN = 256 << 10
cdef char _zero_run[ZERO_RUN]

# -- the sync hook: every durability step of the journal goes through durable_sync ----------
# Production: `_hook_fn` is NULL and durable_sync is one branch before the syscall. Tests
# (the power-loss simulator, injected ENOSPC/EIO) install a Python callable with
# set_sync_hook; it runs with the GIL before the operation and may raise OSError to make the
# operation fail with that errno. Python-level file steps (rename, unlink, directory fsync,
# snapshot files) go through ringlog.durable, which calls the same hook.
ctypedef int (*_sync_hook_fn)(int op, int fd) noexcept nogil

cdef _sync_hook_fn _hook_fn = NULL
cdef object _py_hook = None
cdef int _plant_mark_early = 0  # test-only planted bug: publish the durable mark before sync
cdef int _plant_append_before_write = 0  # and: write-behind publishes a commit at hand-off
cdef unsigned int _wb_delay_us = 0  # test-only: the write-behind writer's pause per write
cdef int _plant_direct_word_with_body = 0  # and: direct I/O writes a word with its body
_OP_NAMES = {SYNC_DATA: "fdatasync", SYNC_FILE: "fsync"}


cdef int _run_py_hook(op, path, target) noexcept:
    """Runs the Python hook for one step (with the GIL): 0, or the errno to fail it with."""
    hook = _py_hook
    if hook is None:
        return 0
    try:
        hook(op, path, target)
    except OSError as e:
        return e.errno or 5
    except BaseException:  # a broken test hook must not pass for a successful step
        import traceback
        traceback.print_exc()
        return 5  # EIO
    return 0


cdef int _call_py_hook(int op, int fd) noexcept nogil:
    with gil:
        if _py_hook is None:
            return 0
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = f"fd {fd}"
        return _run_py_hook(_OP_NAMES[op], path, None)


cdef int _call_py_path_hook(const char* op, const char* path,
                            const char* target) noexcept nogil:
    """The Python hook for a step named by paths (a rename without the GIL)."""
    with gil:
        if _py_hook is None:
            return 0
        return _run_py_hook(op.decode(), os.fsdecode(path),
                            None if target == NULL else os.fsdecode(target))


cdef int durable_rename(const char* src, const char* dst) noexcept nogil:
    """rename(2) through the hook, without the GIL; returns 0 or the errno."""
    cdef int rc
    if _hook_fn != NULL:
        rc = _call_py_path_hook("rename", src, dst)
        if rc != 0:
            return rc
    return errno if rename(src, dst) != 0 else 0


cdef int durable_sync(int fd, int op) noexcept nogil:
    """fdatasync (SYNC_DATA) or fsync (SYNC_FILE) of ``fd`` through the hook; returns 0 or
    the errno of the failure."""
    cdef int rc
    if _hook_fn != NULL:
        rc = _hook_fn(op, fd)
        if rc != 0:
            return rc
    rc = fdatasync(fd) if op == SYNC_DATA else fsync(fd)
    return errno if rc != 0 else 0


def set_sync_hook(hook):
    """Installs ``hook(op, path, target)`` called before every durability step (``op`` one
    of fdatasync, fsync, fsync_dir, rename, unlink, create, fallocate); an OSError it raises
    fails the step with that errno. None removes it (production runs without one)."""
    global _py_hook, _hook_fn
    if hook is not None and not callable(hook):
        raise TypeError(f"sync hook must be callable or None, got {type(hook).__name__}")
    _py_hook = hook
    if hook is None:
        _hook_fn = NULL
    else:
        _hook_fn = _call_py_hook


def sync_hook():
    """The installed sync hook (None in production)."""
    return _py_hook


def _plant(str name, bint on):
    """Test-only planted bugs that the power-loss simulator must catch, and ``slow_writer``:
    the write-behind writer sleeps 300 us before each write (a wide window for a crash between
    a hand-off and its write)."""
    global _plant_mark_early, _plant_append_before_write, _wb_delay_us
    global _plant_direct_word_with_body
    if name == "mark_before_sync":
        _plant_mark_early = on
    elif name == "direct_word_with_body":
        _plant_direct_word_with_body = on
    elif name == "append_before_write":
        _plant_append_before_write = on
    elif name == "slow_writer":
        _wb_delay_us = 300 if on else 0
    else:
        raise ValueError(f"unknown planted bug {name!r}")


MAGIC = b"RLJRNL01"
FORMAT_VERSION = 1
HEADER_SIZE = SEG_HEADER_SIZE
LAZY_SYNC_MAX_MS = 60_000  # the group commit's pause while nothing waits: a minute at most
# segment header offsets (docs/journal-format.md)
cdef enum:
    H_VERSION = 8
    H_HDRSIZE = 12
    H_FIRST = 16
    H_CREATED = 24
    H_SEGSIZE = 32
    H_SCHLEN = 40
    H_HDRCRC = 44
    H_SCHEMA = 48
    H_DURABLE_CHECK = SEG_HEADER_SIZE - 16  # ~durable sequence (a torn/flipped pair shows)
    H_DURABLE = SEG_HEADER_SIZE - 8         # durable sequence hint, outside the header crc


cdef enum:
    WBUF_SIZE = 256 * 1024  # a buffered appender's private buffer (grown for a larger record)
    # Under durability "none" a flush of fewer bytes is copied into the map instead: its two
    # pwrite() calls (~1.3-2.7 us each on the 2-vCPU VM, plus ~0.9 us per page) cost about
    # what the one or two write faults (~3.5 us each) of a batch within a page do; above a
    # page pwrite() wins, ~3x at 64 KiB (figures: docs/processor.md, bench/journal_write_ab.py).
    # Under group and sync every flush is a pwrite(): each fdatasync write-protects the pages
    # stored into through the map again, and cleaning them costs the sync thread TLB
    # shootdowns besides the appender's faults (docs/processor.md, step 16)
    PWRITE_MIN = 4096
    # Write-behind: a flush this large is handed to the writer thread (its pwrite() costs
    # ~1.3-3.4 us per call plus ~0.9 us per 4 KiB, bench/journal_write_ab.py: ~10 us at 32
    # KiB); smaller ones are written on the appending thread while nothing is in flight, with
    # no wake-up of the writer per call (a gateway's few orders per pump). Not tuned: the
    # engine flow hands off whole 256 KiB buffers, one connection's pumps stay under it
    WB_MIN = 32 * 1024
    # Direct I/O (docs/journal-format.md): the writer's stage, and what it writes at once.
    # bench/odirect_cost.py: O_DIRECT writes of 256 KiB cost ~1.0-1.2 us of CPU per 4 KiB on
    # the 2-vCPU VM, steady, where buffered ones swing 1-8 us (a new page-cache page each,
    # whose first touch the host backs) plus the writeback
    DIRECT_STAGE = 1024 * 1024
    DIRECT_MIN = 256 * 1024
    BLK = 4096                # O_DIRECT's unit here: offsets, lengths, buffer addresses


cdef Py_ssize_t _wbuf_size = WBUF_SIZE  # what new buffered appenders get (write_buffer_size)


def write_buffer_size(Py_ssize_t nbytes=-1):
    """The private buffer of buffered appenders made from now on, in bytes (``nbytes`` > 0
    sets it; default 256 KiB); returns the size in force. A batch larger than it is written
    out in parts (one pwrite() each) and committed once. For tests and benchmarks."""
    global _wbuf_size
    if nbytes == 0 or nbytes < -1:
        raise ValueError(f"write_buffer_size: nbytes must be > 0, got {nbytes}")
    if nbytes > 0:
        _wbuf_size = _align8(max(nbytes, 64))
    return _wbuf_size


cdef Py_ssize_t _wb_min = WB_MIN  # what a write-behind flush hands off (write_behind_min)
cdef Py_ssize_t _direct_stage = DIRECT_STAGE  # a direct-I/O writer's stage (direct_stage_size)
cdef Py_ssize_t _direct_min = DIRECT_MIN      # staged bytes written at once


def direct_stage_size(Py_ssize_t nbytes=-1, Py_ssize_t write_at=-1):
    """The stage of direct-I/O appenders made from now on (``nbytes``, a multiple of 4096,
    at least 8192; default 1 MiB) and the staged bytes its writer writes at once
    (``write_at``, at most ``nbytes``; default 256 KiB); returns both in force. For tests
    (a small stage fills in the middle of a batch) and benchmarks."""
    global _direct_stage, _direct_min
    if nbytes != -1 and (nbytes < 2 * BLK or nbytes % BLK):
        raise ValueError(f"direct_stage_size: nbytes must be a multiple of 4096 and >= 8192, "
                         f"got {nbytes}")
    if nbytes > 0:
        _direct_stage = nbytes
    if write_at != -1 and not 0 < write_at <= _direct_stage:
        raise ValueError(f"direct_stage_size: write_at must be in 1..{_direct_stage}, got "
                         f"{write_at}")
    if write_at > 0:
        _direct_min = write_at
    _direct_min = min(_direct_min, _direct_stage)
    return _direct_stage, _direct_min


def write_behind_min(Py_ssize_t nbytes=-1):
    """The smallest flush a write-behind appender hands to its writer thread while none is
    in flight, in bytes (``nbytes`` >= 0 sets it, 0: every flush; default 32 KiB); returns
    the size in force. For tests and benchmarks."""
    global _wb_min
    if nbytes < -1:
        raise ValueError(f"write_behind_min: nbytes must be >= 0, got {nbytes}")
    if nbytes >= 0:
        _wb_min = nbytes
    return _wb_min


def direct_io_supported(directory):
    """Whether files in ``directory`` take O_DIRECT writes: a probe file is created there,
    written one aligned 4 KiB block with O_DIRECT and removed."""
    cdef void* buf = NULL
    cdef int fd
    cdef ssize_t w
    probe = os.path.join(os.fspath(directory), f".direct-probe-{os.getpid()}.tmp")
    try:
        fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o644)
    except OSError:
        return False
    try:
        if posix_memalign(&buf, BLK, BLK) != 0:
            raise MemoryError()
        memset(buf, 0, BLK)
        with nogil:
            w = pwrite(fd, buf, BLK, 0)
        return w == BLK
    finally:
        free(buf)
        os.close(fd)
        os.unlink(probe)


cdef inline bint _by_copy(JournalAppender a, Py_ssize_t n) noexcept nogil:
    """A flush of ``n`` bytes is copied into the map, not written by pwrite(): under
    durability "none" only, below PWRITE_MIN (see there); never under direct I/O."""
    return a.policy == NONE and n < PWRITE_MIN and not a.direct_io


cdef int _pwrite_all(int fd, const char* buf, Py_ssize_t n, Py_ssize_t off) noexcept nogil:
    """pwrite() of all ``n`` bytes at ``off`` (a short write continued, EINTR retried);
    returns 0 or the errno."""
    cdef ssize_t w
    while n > 0:
        w = pwrite(fd, buf, n, off)
        if w < 0:
            if errno == EINTR:
                continue
            return errno
        if w == 0:
            return EIO
        buf += w
        n -= w
        off += w
    return 0


cdef object _direct_hook = None  # test-only: sees every direct write (fd, offset, bytes)


def _set_direct_write_hook(hook):
    """Test-only: ``hook(fd, offset, data)`` is called (with the GIL) before every O_DIRECT write
    of a direct-I/O writer; an exception fails the write (EIO). None removes it."""
    global _direct_hook
    _direct_hook = hook


cdef int _run_direct_hook(int fd, const char* buf, Py_ssize_t n,
                          Py_ssize_t off) noexcept with gil:
    try:
        _direct_hook(fd, off, buf[:n])
    except BaseException:
        import traceback
        traceback.print_exc()
        return EIO
    return 0


cdef int _direct_write(int fd, const char* buf, Py_ssize_t n, Py_ssize_t off) noexcept nogil:
    """One O_DIRECT write of whole blocks (through the test hook, if one is set). No Python
    object in here: Cython would take the GIL on the way out to release it."""
    if _direct_hook is not None and _run_direct_hook(fd, buf, n, off) != 0:
        return EIO
    return _pwrite_all(fd, buf, n, off)


cdef inline void _publish_staged(JournalAppender a) noexcept nogil:
    """A direct-I/O writer publishes the last commit it staged, once it is in the file."""
    if a.st_last > rl_load_acquire(&a.last_seq):
        rl_store_release(&a.last_seq, a.st_last)
        a._nudge(a.st_last)


cdef inline bint _staged(JournalAppender a) noexcept nogil:
    """A direct-I/O writer has something to write: staged bytes not in the file, or the
    frontier's word, committed but not written."""
    return a.st_len > a.st_done or a.fr_ready


cdef int _write_item(const wb_item* it) noexcept nogil:
    """Makes one write of buffered records (``JournalAppender._flush``): the bytes, by pwrite()
    or a copy into the map, then the held length word if the item carries it. Returns 0 or the
    errno."""
    cdef int err = 0
    cdef Py_ssize_t n = it.n - it.skip
    if n > 0:
        if it.by_copy:
            memcpy(it.base + it.at + it.skip, it.buf + it.skip, n)
        else:
            err = _pwrite_all(it.fd, it.buf + it.skip, n, it.at + it.skip)
    if err == 0 and it.word_at >= 0:
        rl_fence()  # the body's stores before the commit word's, on any CPU
        if it.word_by_pwrite and it.word < 256:
            # one non-zero byte (little-endian: the first): a reader sees 0 or all
            err = _pwrite_all(it.fd, <const char*>&it.word, 1, it.word_at)
        else:
            # a kernel copy may store byte by byte, so a reader could see a part of a wider
            # word: an atomic store into the map (may fault) instead
            rl_store_release_u32(<uint32_t*>(it.base + it.word_at), it.word)
    return err


def crc32c(data, uint32_t crc=0):
    """CRC32C of a bytes-like object (continuing from ``crc``)."""
    cdef Py_buffer buf
    PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
    try:
        return rl_crc32c(crc, buf.buf, buf.len)
    finally:
        PyBuffer_Release(&buf)


def crc32c_mode(int mode=-1):
    """The CRC32C implementation in use: 1 the SSE4.2 instruction, 0 the table. ``mode`` 0 or
    1 switches it (tests run both; the table is the fallback on CPUs without SSE4.2)."""
    global rl_crc32c_mode  # the C variable, not a local of this function
    if mode == 1 and not _HAS_HW_CRC:
        raise ValueError("this CPU has no SSE4.2 crc32 instruction")
    if mode in (0, 1):
        rl_crc32c_mode = mode
    elif mode != -1:
        raise ValueError(f"mode must be 0 (table) or 1 (sse4.2), got {mode}")
    return rl_crc32c_mode


def _crc32c_copy(data, uint32_t crc=0, Py_ssize_t dst_offset=0):
    """Test hook: ``(crc, copy)`` from the appender's fused copy + CRC32C of ``data`` into a
    buffer at byte ``dst_offset`` (0-7: unaligned destinations)."""
    cdef bytes src = bytes(data)
    cdef Py_ssize_t n = len(src)
    if not 0 <= dst_offset < 8:
        raise ValueError(f"dst_offset must be 0..7, got {dst_offset}")
    cdef bytearray dst = bytearray(n + 8)
    cdef char* d = dst
    cdef uint32_t c = rl_crc32c_copy(crc, d + dst_offset, <const char*>src, n)
    return c, bytes(dst[dst_offset:dst_offset + n])


def _output_body(uint32_t type_id, uint32_t flags, payload, int64_t seq, int64_t ts,
                 int64_t corr, int64_t cause):
    """Test hook: ``(crc, body)`` as ``write_output`` builds an output record's body (header
    + payload) and its CRC32C, from a payload at any alignment (a memoryview slice)."""
    cdef const unsigned char[::1] p = payload
    cdef uint32_t n = <uint32_t>p.shape[0]
    cdef bytearray out = bytearray(RL_HEADER_SIZE + n + 8)
    cdef char* o = out
    cdef const unsigned char* src = &p[0] if n else NULL
    cdef uint32_t c = rl_output_body_pick()(<rl_header*>o, seq, ts, corr, cause, type_id,
                                            flags, src, n)
    return c, bytes(out[:RL_HEADER_SIZE + n])


cdef class Segment:
    """One mapped segment file: a 4096-byte header, then records. See the format doc."""

    def __cinit__(self):
        self.dfd = -1

    def __dealloc__(self):
        if self.dfd >= 0:
            close(self.dfd)

    def open_direct(self):
        """Opens the file a second time with O_DIRECT (``dfd``), for a direct-I/O appender's
        writer; once. JournalError if the file system refuses O_DIRECT (tmpfs before Linux
        6.6, some FUSE and network file systems)."""
        if self.dfd >= 0:
            return
        # through /proc: the file may have been renamed without the GIL since it was mapped
        try:
            self.dfd = os.open(f"/proc/self/fd/{self._map.fd}", os.O_RDWR | os.O_DIRECT)
        except OSError as e:
            raise JournalError(f"cannot open {self.path} for direct I/O (O_DIRECT): "
                               f"{e.strerror}; use direct_io=False on this file system",
                               errno=e.errno, path=self.path) from None

    @staticmethod
    def prepare(path, Py_ssize_t size):
        """Creates, preallocates (posix_fallocate) and maps a new segment file without a
        header yet; a full disk is a JournalError here, never a SIGBUS later."""
        cdef str p = os.fspath(path)
        cdef int fd = c_open(os.fsencode(p), O_RDWR | O_CREAT | O_EXCL, 0o644)
        if fd < 0:
            e = errno
            raise JournalError(f"cannot create segment {p}: {os.strerror(e)}", errno=e,
                               path=p)
        cdef int rc = 0
        if _py_hook is not None:
            try:
                _py_hook("create", p, None)
                _py_hook("fallocate", p, None)
            except OSError as e:
                rc = e.errno or 5
        if rc == 0:
            with nogil:
                rc = posix_fallocate(fd, 0, size)
        if rc != 0:
            os.close(fd)
            os.unlink(p)
            raise JournalError(f"cannot preallocate {size} bytes for segment {p}: "
                               f"{os.strerror(rc)} (is the disk full?)", errno=rc, path=p)
        cdef Segment s = Segment.__new__(Segment)
        s._map = map_fd(fd, size, True, p, JournalError)
        s._setup(p, True)
        s.first_sequence = -1
        return s

    def write_zeros(self, Py_ssize_t start, Py_ssize_t end):
        """Writes zeros over bytes ``start``..``end`` of the file with pwrite() and starts
        their write-back (``sync_file_range``, best effort), without the GIL; JournalError
        naming the path and offset if a write fails.

        A posix_fallocate'd block reads as zeros but is an *unwritten* extent: the first
        write-back of a record into it changes the file's extent map, so the fdatasync that
        makes the record durable writes the inode too, one more I/O waited for by every sync
        that reaches a new block (docs/journal-format.md, "Preparing segments"). After this
        the blocks are plain data (PostgreSQL zero-fills new WAL files for the same reason);
        their pages stay in the page cache, clean, for the appender's pwrite()s."""
        cdef int fd = self._map.fd, e = 0
        cdef Py_ssize_t off, n
        cdef ssize_t w
        start = max(start, 0)
        end = min(end, self.size)
        off = start
        with nogil:
            while off < end:
                n = min(<Py_ssize_t>ZERO_RUN, end - off)
                w = pwrite(fd, _zero_run, n, off)
                if w <= 0:  # (0 cannot happen inside the file: taken as an I/O error)
                    e = errno if w < 0 else EIO
                    if e == EINTR:
                        e = 0
                        continue
                    break
                off += w
            if e == 0 and end > start:  # a hint: a failed write-back surfaces at a sync
                sync_file_range(fd, start, end - start, SYNC_FILE_RANGE_WRITE)
        if e != 0:
            raise JournalError(f"cannot write zeros into segment {self.path} at offset "
                               f"{off}: {os.strerror(e)}", errno=e, path=self.path)

    def prefault(self, bint write=True, Py_ssize_t start=SEG_HEADER_SIZE,
                 Py_ssize_t end=-1):
        """Maps every page of ``start``..``end`` (default: all records) in advance (without
        the GIL) so the appender does not take the full first-touch fault (page allocation
        and zeroing) on the hot path.

        ``write``: store a zero in each page, the cheapest appends afterwards, but every
        page is then dirty: the first fdatasync writes the whole segment of zeros back and
        write-protects the pages again, so under group/sync the appender faults on every
        page anyway and the disk writes each page twice. Without ``write`` each page is only
        read: it is allocated in the page cache and mapped read-only, nothing is dirtied,
        and the appender's first store per page costs a minor write-protect fault."""
        cdef Py_ssize_t off = max(start, 0) & ~4095
        cdef volatile char* b = self.base
        cdef char sink = 0
        if end < 0 or end > self.size:
            end = self.size
        with nogil:
            while off < end:
                if write:
                    b[off] = 0
                else:
                    sink ^= b[off]
                off += 4096
        return sink

    def seal_header(self, int64_t first_sequence, bytes schema, int64_t created_ns,
                    int64_t durable=-1):
        """Writes the segment header (magic, version, first sequence, schema, crc) and the
        durable sequence known so far: ``write_template`` then ``finish_header``."""
        self.write_template(schema)
        self.finish_header(first_sequence, created_ns, durable)

    def write_template(self, bytes schema):
        """Writes the parts of the header known before a roll (magic, version, sizes,
        schema; zeros elsewhere): what is left, the first sequence, the creation time and the
        crc, ``finish_header`` writes without the GIL. A descriptor too large for the header
        as JSON is stored zlib-compressed (JSON starts with '[', zlib with 'x': readers tell
        them apart)."""
        cdef Py_ssize_t room = H_DURABLE_CHECK - H_SCHEMA
        if len(schema) > room:
            packed = zlib.compress(schema, 9)
            if len(packed) > room:
                raise JournalError(
                    f"schema descriptor of {len(schema)} bytes ({len(packed)} compressed) does "
                    f"not fit the {room} bytes of the segment header: register fewer types or "
                    f"shorter names/fields")
            schema = packed
        cdef char* b = self.base
        memset(b, 0, SEG_HEADER_SIZE)
        memcpy(b, "RLJRNL01", 8)
        (<uint32_t*>(b + H_VERSION))[0] = FORMAT_VERSION
        (<uint32_t*>(b + H_HDRSIZE))[0] = SEG_HEADER_SIZE
        (<uint64_t*>(b + H_SEGSIZE))[0] = self.size
        (<uint32_t*>(b + H_SCHLEN))[0] = len(schema)
        memcpy(b + H_SCHEMA, <const char*>schema, len(schema))
        self.first_sequence = -1

    cdef void finish_header(self, int64_t first_sequence, int64_t created_ns,
                            int64_t durable) noexcept nogil:
        """Completes a header whose template is written: first sequence, creation time,
        crc, and the durable sequence known so far."""
        cdef char* b = self.base
        (<int64_t*>(b + H_FIRST))[0] = first_sequence
        (<int64_t*>(b + H_CREATED))[0] = created_ns
        cdef uint32_t schlen = (<uint32_t*>(b + H_SCHLEN))[0]
        cdef uint32_t c = rl_crc32c(0, b, H_HDRCRC)
        (<uint32_t*>(b + H_HDRCRC))[0] = rl_crc32c(c, b + H_SCHEMA, schlen)
        self.first_sequence = first_sequence
        self.store_durable(durable)

    cdef void store_durable(self, int64_t seq) noexcept nogil:
        """Publishes the durable sequence to readers (in this and other processes): ~seq and
        seq in one pwrite() into the page cache, not stores through the map. A store leaves
        the header page's mapping writable and dirty, so the next fdatasync's writeback
        write-protects it again (a TLB-shootdown IPI to every CPU running a thread of this
        process: the loop's, the gateway's) and the next store takes a write fault: once per
        group commit. A reader that finds the pair torn reads it again (durable_sequence).
        Should the pwrite() fail, the stores (check word first) publish it."""
        cdef int64_t pair[2]
        pair[0] = ~seq
        pair[1] = seq
        if pwrite(self._map.fd, pair, sizeof(pair), H_DURABLE_CHECK) == sizeof(pair):
            return
        rl_store_release(<int64_t*>(self.base + H_DURABLE_CHECK), ~seq)
        rl_store_release(<int64_t*>(self.base + H_DURABLE), seq)

    cdef int64_t durable_hint(self) noexcept nogil:
        """The published durable value, unchecked (the appender's own monotonic bookkeeping).
        """
        return rl_load_acquire(<int64_t*>(self.base + H_DURABLE))

    @property
    def durable_sequence(self):
        """The durable sequence the appender published in this segment's header (-1: none).
        A pair that stays inconsistent (a flipped bit) is a JournalCorruptError."""
        cdef int64_t v, chk
        cdef int _tries
        for _tries in range(1000):
            v = rl_load_acquire(<int64_t*>(self.base + H_DURABLE))
            chk = rl_load_acquire(<int64_t*>(self.base + H_DURABLE_CHECK))
            if chk == ~v:
                return v
            if v == 0 and chk == 0:
                return -1  # never written (a segment from before the mark existed)
        raise JournalCorruptError(f"{self.path}: durable sequence mark damaged ({v} / check "
                                  f"{~chk})", self.path, H_DURABLE_CHECK)

    cdef Py_ssize_t first_nonzero_c(self, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
        cdef Py_ssize_t i
        for i in range(max(start, 0), min(end, self.size)):
            if self.base[i] != 0:
                return i
        return -1

    def first_nonzero(self, Py_ssize_t start, Py_ssize_t end):
        """Offset of the first non-zero byte in start..end (clipped), or -1."""
        cdef Py_ssize_t r
        with nogil:
            r = self.first_nonzero_c(start, end)
        return r

    @staticmethod
    def open(path, bint writable=False):
        """Maps an existing segment and validates its header; JournalCorruptError names the
        file and what is wrong."""
        cdef str p = os.fspath(path)
        cdef int fd = c_open(os.fsencode(p), O_RDWR if writable else O_RDONLY, 0)
        if fd < 0:
            raise JournalError(f"cannot open segment {p}: {os.strerror(errno)}")
        cdef struct_stat st
        fstat(fd, &st)
        if st.st_size < SEG_HEADER_SIZE:
            os.close(fd)
            raise JournalCorruptError(f"{p}: {st.st_size} bytes is too small for a segment "
                                      f"(header alone is {SEG_HEADER_SIZE})", p, 0)
        cdef Segment s = Segment.__new__(Segment)
        s._map = map_fd(fd, st.st_size, writable, p, JournalError)
        s._setup(p, writable)
        cdef char* b = s.base
        if b[:8] != MAGIC:
            raise JournalCorruptError(f"{p}: not a ringlog journal segment (magic "
                                      f"{b[:8]!r})", p, 0)
        cdef uint32_t version = (<uint32_t*>(b + H_VERSION))[0]
        if version != FORMAT_VERSION:
            raise JournalCorruptError(f"{p}: segment format version {version}; this build "
                                      f"reads version {FORMAT_VERSION}", p, H_VERSION)
        cdef uint32_t schlen = (<uint32_t*>(b + H_SCHLEN))[0]
        if H_SCHEMA + schlen > H_DURABLE_CHECK:
            raise JournalCorruptError(f"{p}: header schema length {schlen} is impossible", p,
                                      H_SCHLEN)
        cdef uint32_t c = rl_crc32c(rl_crc32c(0, b, H_HDRCRC), b + H_SCHEMA, schlen)
        if c != (<uint32_t*>(b + H_HDRCRC))[0]:
            raise JournalCorruptError(f"{p}: segment header checksum mismatch", p, H_HDRCRC)
        if (<uint64_t*>(b + H_SEGSIZE))[0] != <uint64_t>st.st_size:
            raise JournalCorruptError(
                f"{p}: file is {st.st_size} bytes but its header says "
                f"{(<uint64_t*>(b + H_SEGSIZE))[0]}: truncated or extended", p, H_SEGSIZE)
        cdef Py_ssize_t junk = s.first_nonzero_c(H_SCHEMA + schlen, H_DURABLE_CHECK)
        if junk >= 0:
            raise JournalCorruptError(f"{p}: non-zero byte at header offset {junk} (after the "
                                      "schema, where the header is all zeros)", p, junk)
        s.first_sequence = (<int64_t*>(b + H_FIRST))[0]
        return s

    def _setup(self, str path, bint writable):
        self.base = self._map.base
        self.size = self._map.size
        self.path = path
        self.writable = writable
        self._view = PyMemoryView_FromObject(self._map)

    def move_to(self, path):
        """Renames the segment file (a prepared segment taking its final name)."""
        path = os.fspath(path)
        from ringlog import durable
        durable.rename(self.path, path, JournalError)
        self.renamed(path)

    def renamed(self, path):
        """Records that the file now has the name ``path`` (renamed without the GIL)."""
        self.path = os.fspath(path)
        self._map.path = self.path

    @property
    def created_ns(self):
        """Creation time written in the header (wall clock ns)."""
        return (<int64_t*>(self.base + H_CREATED))[0]

    @property
    def schema(self):
        """The schema descriptor bytes (JSON) from the header (inflated if stored compressed)."""
        cdef uint32_t n = (<uint32_t*>(self.base + H_SCHLEN))[0]
        raw = bytes(self._view[H_SCHEMA:H_SCHEMA + n])
        return zlib.decompress(raw) if raw[:1] == b"x" else raw

    def schema_version(self, uint32_t type_id):
        """The schema version this segment's descriptor records for ``type_id`` (None if the
        journal was written without a registry or without that type)."""
        if self._versions is None:
            raw = self.schema
            self._versions = {d["type_id"]: d["version"] for d in json.loads(raw)} if raw \
                else {}
        return self._versions.get(type_id)

    @property
    def fd(self):
        """The file descriptor (for fdatasync)."""
        return self._map.fd

    def sync(self):
        """fdatasync of the segment file: what was written through the map becomes durable."""
        cdef int rc, fd = self._map.fd
        with nogil:
            rc = durable_sync(fd, SYNC_DATA)
        if rc != 0:
            raise JournalError(f"fdatasync of {self.path} failed: {os.strerror(rc)}",
                               errno=rc, path=self.path)

    def zero(self, Py_ssize_t start, Py_ssize_t end):
        """Zeroes bytes start..end (truncating a torn tail)."""
        if not self.writable:
            raise JournalError(f"{self.path} is mapped read-only")
        memset(self.base + start, 0, end - start)

    cdef int scan_one(self, Py_ssize_t off, int64_t expect_seq, bint verify,
                      uint32_t* length) noexcept nogil:
        """Checks the record at ``off``; its body length goes to ``length``."""
        if off + REC_PREFIX > self.size:
            return SCAN_END
        cdef uint32_t n = rl_load_acquire_u32(<uint32_t*>(self.base + off))
        length[0] = n
        if n == 0:
            return SCAN_END
        if n < RL_HEADER_SIZE or off + REC_PREFIX + n > self.size:
            return SCAN_BAD_LENGTH
        cdef const rl_header* h = <const rl_header*>(self.base + off + REC_PREFIX)
        if h.length != n - RL_HEADER_SIZE:
            return SCAN_BAD_LENGTH
        if verify and rl_crc32c(0, h, n) != (<uint32_t*>(self.base + off + 4))[0]:
            return SCAN_BAD_CRC
        if verify and n & 7 and self.first_nonzero_c(off + REC_PREFIX + n,
                                                     off + REC_PREFIX + _align8(n)) >= 0:
            return SCAN_BAD_PADDING  # padding is outside the crc: checked to be zero
        if expect_seq >= 0 and h.sequence != expect_seq:
            return SCAN_BAD_SEQUENCE
        return SCAN_OK

    def scan(self, Py_ssize_t off, int64_t expect_seq, bint verify=True,
             int64_t stop_seq=-1):
        """Scans records from ``off`` (without the GIL) until the end, a bad record, or past
        ``stop_seq``; returns (status, offset reached, next expected sequence, count)."""
        cdef int st = SCAN_OK
        cdef uint32_t n = 0
        cdef int64_t count = 0
        with nogil:
            while stop_seq < 0 or expect_seq <= stop_seq:
                st = self.scan_one(off, expect_seq, verify, &n)
                if st != SCAN_OK:
                    break
                off += REC_PREFIX + _align8(n)
                expect_seq += 1
                count += 1
        return st, off, expect_seq, count

    def find_record(self, Py_ssize_t start, Py_ssize_t end, int64_t min_seq):
        """The first valid record (plausible length, checksum, zero padding, sequence >=
        ``min_seq``) at an 8-byte aligned offset in start..end, as (offset, sequence); (-1,
        -1) if none. Recovery's evidence that records follow a damaged range."""
        cdef Py_ssize_t off = _align8(start)
        cdef uint32_t n
        cdef const rl_header* h
        with nogil:
            while off + REC_PREFIX + RL_HEADER_SIZE <= min(end, self.size):
                n = (<uint32_t*>(self.base + off))[0]
                h = <const rl_header*>(self.base + off + REC_PREFIX)
                if n >= RL_HEADER_SIZE and off + REC_PREFIX + n <= self.size \
                        and h.length == n - RL_HEADER_SIZE and h.sequence >= min_seq \
                        and self.scan_one(off, h.sequence, True, &n) == SCAN_OK:
                    break
                off += 8
        if off + REC_PREFIX + RL_HEADER_SIZE > min(end, self.size):
            return -1, -1
        return off, (<const rl_header*>(self.base + off + REC_PREFIX)).sequence

    def last_nonzero(self, Py_ssize_t start, Py_ssize_t end):
        """Offset just past the last non-zero byte in start..end (clipped); ``start`` if all
        zero: the written end of a segment's data."""
        cdef Py_ssize_t lo = max(start, 0), i = min(end, self.size)
        with nogil:
            while i > lo and (i & 7):
                if self.base[i - 1] != 0:
                    break
                i -= 1
            else:
                while i - 8 >= lo and (<const uint64_t*>(self.base + i - 8))[0] == 0:
                    i -= 8
                while i > lo and self.base[i - 1] == 0:
                    i -= 1
        return i

    def write_durable_mark(self, int64_t seq):
        """Rewrites the durable-mark hint (value and check word): repair of a damaged hint,
        and recovery publishing what it found on disk."""
        if not self.writable:
            raise JournalError(f"{self.path} is mapped read-only", path=self.path)
        self.store_durable(seq)

    def is_zero(self, Py_ssize_t start, Py_ssize_t end):
        """True if every byte in start..end (clipped to the segment) is zero."""
        return self.first_nonzero(start, end) < 0

    def next_length(self, Py_ssize_t off):
        """The length word at ``off`` (0 past the end): is anything written after a bad
        record?"""
        if off + 4 > self.size:
            return 0
        return rl_load_acquire_u32(<uint32_t*>(self.base + off))

    def record(self, Py_ssize_t off):
        """The record at ``off`` as a zero-copy Record view (call after a valid scan)."""
        return _record_at(self, off)

    def records(self, Py_ssize_t off, int64_t expect_seq, bint verify=True):
        """Yields (offset, Record) from ``off`` until the written end; raises
        JournalCorruptError on a bad record."""
        cdef uint32_t n
        cdef int st
        while True:
            st = self.scan_one(off, expect_seq, verify, &n)
            if st == SCAN_END:
                return
            if st != SCAN_OK:
                raise corrupt(self.path, off, expect_seq, st)
            yield off, _record_at(self, off)
            off += REC_PREFIX + _align8(n)
            expect_seq += 1

    def __repr__(self):
        return f"Segment({self.path!r}, first_sequence={self.first_sequence})"


def corrupt(path, Py_ssize_t off, int64_t seq, int status):
    """The JournalCorruptError for a failed scan at ``off`` of ``path``."""
    what = {SCAN_BAD_LENGTH: "impossible record length", SCAN_BAD_CRC: "checksum mismatch",
            SCAN_BAD_SEQUENCE: "sequence out of order",
            SCAN_BAD_PADDING: "non-zero padding after the record",
            SCAN_UNTERMINATED: "data after the last record's missing length word (a damaged "
                               "length word, not a torn tail: data or a durable mark follows)"
            }.get(status, f"status {status}")
    return JournalCorruptError(f"{path}: {what} at byte offset {off} (expected sequence "
                               f"{seq})", path, off, seq)


cdef class Record(Event):
    """One journal record: the Event header fields, a zero-copy ``payload`` memoryview, and
    where it lies. The view stays valid while the Record (or the payload) is alive: it holds
    the mapping."""

    cdef readonly Py_ssize_t offset
    cdef readonly object segment

    def decode(self, registry):
        """The payload decoded by ``registry`` (an EventRegistry) into the Struct of this type
        id; a record written at an older schema version (per its segment's header) goes
        through the registry's upcaster to the current Struct."""
        return registry.decode(self.type_id, self.payload,
                               (<Segment>self.segment).schema_version(self.type_id))

    @property
    def body(self):
        """Header + payload bytes, exactly as they were appended (a ring slot's prefix)."""
        cdef Segment s = self.segment
        return s._view[self.offset + REC_PREFIX:self.offset + REC_PREFIX + RL_HEADER_SIZE
                       + len(self.payload)]

    def __repr__(self):
        return (f"Record(sequence={self.sequence}, type_id={self.type_id}, "
                f"length={len(self.payload)}, timestamp_ns={self.timestamp_ns})")


cdef Record _record_at(Segment s, Py_ssize_t off):
    cdef const rl_header* h = <const rl_header*>(s.base + off + REC_PREFIX)
    cdef Record r = Record.__new__(Record)
    r.sequence = h.sequence
    r.timestamp_ns = h.timestamp_ns
    r.correlation_id = h.correlation_id
    r.producer_seq = h.producer_seq
    r.type_id = h.type_id
    r.flags = h.flags
    r.producer_id = h.producer_id
    cdef Py_ssize_t p = off + REC_PREFIX + RL_HEADER_SIZE
    r.payload = s._view[p:p + h.length]
    r.offset = off
    r.segment = s
    return r


cdef class JournalAppender:
    """The hot path of appends into the current segment. Not thread-safe: one appending
    thread. Rolling to the next segment and group commit are the owner's (ringlog.Journal).

    ``buffered``: records are built in a private buffer and written out by pwrite() at each
    ``commit()`` (the default: stores into the map would fault on every page an fdatasync
    or background writeback cleaned); False: stored straight into the mapped segment.
    Either way a record becomes visible to readers at the ``commit()`` after it, at the
    latest; with ``write_behind`` once its writer wrote it, and with ``direct_io`` (O_DIRECT
    writes of whole 4 KiB blocks, no page cache) within ``linger_ms`` of the commit.
    """

    def __cinit__(self):
        self.index = NULL
        self.rolled_index = NULL
        self.wbuf = NULL
        self.held_at = -1
        self.output_body = rl_output_body_pick()  # set before anything can append
        self.st_buf = NULL
        self.fr_blk = NULL
        self.st_fd = -1
        self.st_last = -1
        self.fr_at = -1
        self.open_at = -1

    def __dealloc__(self):
        cdef int k
        free(self.index)
        free(self.rolled_index)
        if self.write_behind:  # wbuf is one of the slots' buffers
            for k in range(WB_SLOTS):
                free(self.wb_items[k].buf)
        else:
            free(self.wbuf)
        free(self.st_buf)
        free(self.fr_blk)

    def __init__(self, owner, int policy, int64_t group_events=1000,
                 int64_t index_every=1024, bint buffered=True, bint write_behind=False,
                 bint direct_io=False, double linger_ms=5.0, double lazy_ms=0.0):
        cdef int k
        if policy not in (NONE, GROUP, SYNC):
            raise ValueError(f"unknown durability policy {policy}")
        if write_behind and (not buffered or policy == SYNC):
            raise ValueError("write_behind needs a buffered appender and a policy other "
                             "than sync (a sync commit waits for its own fdatasync)")
        if direct_io and not write_behind:
            raise ValueError("direct_io needs write_behind (its writer thread makes the "
                             "device writes)")
        if not linger_ms > 0:
            raise ValueError(f"linger_ms must be > 0, got {linger_ms}")
        if not 0 <= lazy_ms <= LAZY_SYNC_MAX_MS:
            raise ValueError(f"lazy_ms must be from 0 to {LAZY_SYNC_MAX_MS}, got {lazy_ms}")
        self.lazy_ns = <int64_t>(lazy_ms * 1e6)
        self.wanted = -1
        self.owner = owner
        self.policy = policy
        self.group_events = max(1, group_events)
        self.index_every = max(1, index_every)
        self.durable = -1
        self.durable_cap = INT64_MAX
        self.last_seq = -1
        self.buffered = buffered
        if self.wbuf != NULL:  # (a buffered appender's, either way)
            raise JournalError("JournalAppender.__init__ called twice")
        self.write_behind = write_behind
        if self.write_behind:
            for k in range(WB_SLOTS):  # untouched pages cost nothing until a slot is used
                self.wb_items[k].buf = <char*>malloc(_wbuf_size)
                if self.wb_items[k].buf == NULL:
                    raise MemoryError()
                self.wb_items[k].cap = _wbuf_size
            self.wbuf, self.wcap = self.wb_items[0].buf, _wbuf_size
        elif self.buffered:
            self.wbuf = <char*>malloc(_wbuf_size)
            if self.wbuf == NULL:
                raise MemoryError()
            self.wcap = _wbuf_size
        self.direct_io = direct_io
        self.linger_ns = <int64_t>(linger_ms * 1e6)
        if direct_io:
            if posix_memalign(<void**>&self.st_buf, BLK, _direct_stage) != 0 or \
                    posix_memalign(<void**>&self.fr_blk, BLK, BLK) != 0:
                raise MemoryError()
            self.st_cap = _direct_stage

    def attach(self, Segment seg, Py_ssize_t pos, int64_t next_seq):
        """Continues appending into ``seg`` at byte ``pos`` with sequence ``next_seq``."""
        if not seg.writable:
            raise JournalError(f"{seg.path} is mapped read-only")
        if self.direct_io:
            seg.open_direct()
        if self.seg is not None:
            with nogil:
                self._flush()  # nothing pending when the owner rolls; kept for any other caller
                self._wb_wait(self.wb_head, True)
        self.seg = seg
        self.path_stale = 0
        self._switch(pos, next_seq)

    cdef void _switch(self, Py_ssize_t pos, int64_t next_seq) noexcept nogil:
        """Points the appender at ``self.seg`` from byte ``pos``, sequence ``next_seq``."""
        self.pos = pos
        self.held_at = -1  # _room published any held word before the roll
        self._aim()
        self.next_seq = next_seq
        self._set_durable(-1)  # carry what the group thread synced since `seg` was sealed
        rl_store_release(&self.last_seq, next_seq - 1)
        self.index_len = 0
        self.since_index = self.index_every  # index the first record of every segment

    # -- rolling without the GIL -----------------------------------------------------------
    #   background thread                     appending thread (no GIL, no fsync, no create)
    #   prepare + prefault + write_template
    #   offer(seg) ─── ready = 1 ──────────►  _fast_roll: finish_header, rename(2) to the
    #                                         final name, cap the durable mark, switch;
    #   take_roll() ◄── roll_pending = 1 ───  wake the background thread
    #   write the old .idx, fdatasync old,
    #   fdatasync new (header), fsync dir
    #   roll_done(upto) ── cap lifted ─────►  (sync policy: commit waits for this)
    cdef int _fast_roll(self, Py_ssize_t need) noexcept nogil:
        """Switches to the offered segment (a record of ``need`` bytes must fit); returns 0
        when there is none or it does not fit (the owner rolls then, with the GIL)."""
        cdef int64_t first = self.next_seq, d
        cdef timespec now
        cdef int64_t* idx
        cdef Py_ssize_t cap
        if not rl_load_acquire32(&self.ready) or rl_load_acquire32(&self.roll_pending) \
                or SEG_HEADER_SIZE + need > self.ready_seg.size:
            return 0
        if snprintf(self.roll_dst, ROLL_PATH_MAX, "%s/%020lld.seg", self.roll_dir,
                    <long long>first) >= ROLL_PATH_MAX:
            return 0
        clock_gettime(CLOCK_REALTIME, &now)
        # the header is whole before the file has its final name: a reader (any process)
        # that finds the name maps a valid header
        self.ready_seg.finish_header(first, <int64_t>now.tv_sec * 1000000000 + now.tv_nsec,
                                     rl_load_acquire(&self.durable))
        if durable_rename(self.ready_src, self.roll_dst) != 0:
            return 0  # the owner's roll tries again and reports the error
        # nothing past what is durable now may be published until the background thread has
        # synced the old segment's tail, the new header and the directory entry
        d = rl_load_acquire(&self.durable)
        rl_store_release(&self.durable_cap, d)
        idx, cap = self.rolled_index, self.rolled_index_cap  # the old index goes along
        self.rolled_index, self.rolled_index_cap = self.index, self.index_cap
        self.rolled_index_len = self.index_len
        self.index, self.index_cap = idx, cap
        self.rolled_last, self.rolled_end, self.rolled_max_ts = first - 1, self.pos, \
            self.max_ts
        RL_ROTATE3(self.seg, self.ready_seg, self.rolled_seg)  # seg <- new, rolled <- old
        rl_store_release32(&self.ready, 0)
        rl_store_release32(&self.path_stale, 1)
        rl_store_release32(&self.roll_pending, 1)
        self._switch(SEG_HEADER_SIZE, first)
        rl_wake_sleepers(&self.sync_signal, &self.sync_waiters)
        rl_wake_sleepers(&self.want_signal, &self.want_waiters)  # a lazy wait: the roll first
        return 1

    def fast_roll(self, Py_ssize_t need):
        """The owner's roll into the offered segment, made as the appender makes it (the
        syncs left to the background thread; counted by the owner, not in ``fast_rolls``);
        False if none is offered, a roll's syncs are pending or a record of ``need`` bytes
        does not fit it."""
        return self._fast_roll(need) == 1

    def offer(self, Segment seg, directory):
        """Background thread: offers a prepared segment (its header template written) for
        the next roll. Returns False if one is offered already or a path is too long for a
        roll without the GIL (the owner's roll takes it then)."""
        src, dst = os.fsencode(seg.path), os.fsencode(directory)
        if rl_load_acquire32(&self.ready) or len(src) >= ROLL_PATH_MAX \
                or len(dst) + 26 >= ROLL_PATH_MAX:
            return False
        if self.direct_io:
            seg.open_direct()
        memcpy(self.ready_src, <const char*>src, len(src) + 1)
        memcpy(self.roll_dir, <const char*>dst, len(dst) + 1)
        self.ready_seg = seg
        rl_store_release32(&self.ready, 1)
        return True

    def take_offer(self):
        """The offered segment, withdrawn (None if none). The appending thread only (or
        any thread once appends stopped)."""
        if not rl_load_acquire32(&self.ready):
            return None
        seg, self.ready_seg = self.ready_seg, None
        rl_store_release32(&self.ready, 0)
        return seg

    @property
    def offered(self):
        """True while a prepared segment is offered for the next roll."""
        return rl_load_acquire32(&self.ready) != 0

    def take_roll(self):
        """The work a roll without the GIL left, as (old segment, new segment, old's last
        sequence, end offset, max timestamp, index entries); None if no roll is pending.
        The new segment's path is its final name from here on. ``roll_done`` must follow."""
        cdef Py_ssize_t i
        if not rl_load_acquire32(&self.roll_pending) or self.rolled_seg is None:
            return None
        old, self.rolled_seg = self.rolled_seg, None
        self._fix_path()
        entries = [(self.rolled_index[i], self.rolled_index[i + 1], self.rolled_index[i + 2])
                   for i in range(0, self.rolled_index_len, 3)]
        self.rolled_index_len = 0
        return (old, self.seg, self.rolled_last, self.rolled_end, self.rolled_max_ts,
                entries)

    def roll_done(self, int64_t durable):
        """The old segment, the new header and the directory entry are on disk: the durable
        mark may pass the roll; publishes ``durable`` (everything synced; -1: nothing)."""
        with nogil:
            rl_store_release(&self.durable_cap, INT64_MAX)
            rl_store_release32(&self.roll_pending, 0)
            self._set_durable(durable)  # also wakes a sync-policy commit waiting for this

    @property
    def roll_pending(self):
        """True from a roll without the GIL until its syncs are done (``roll_done``)."""
        return rl_load_acquire32(&self.roll_pending) != 0

    cdef int _await_roll(self, int64_t last) except -1 nogil:
        """Sync policy: ``last`` is synced but a roll's syncs (the background thread's)
        are not done yet; sleeps until they are, then publishes ``last``."""
        cdef int32_t token
        while rl_load_acquire32(&self.roll_pending) and not self.failed:
            token = rl_sleeper_in(&self.durable_signal, &self.durable_waiters)
            if rl_load_acquire32(&self.roll_pending) and not self.failed:
                rl_futex_wait(&self.durable_signal, token, 50000000)
            rl_sleeper_out(&self.durable_waiters)
        if self.failed:
            with gil:
                raise JournalError("the journal failed while a segment roll was being made "
                                   "durable; reopen it to continue from what is durable")
        self._set_durable(last)
        return 0

    cdef _fix_path(self):
        if rl_load_acquire32(&self.path_stale):
            self.seg.renamed(os.fsdecode(self.roll_dst))
            self.path_stale = 0

    cdef int _room(self, Py_ssize_t need) except -1 nogil:
        """Makes room for a record of ``need`` bytes that does not fit before ``out_end``:
        flushes the buffer, rolls to the next segment if the record does not fit this one,
        grows the buffer for a record larger than it."""
        cdef char* grown
        if self.failed:
            self._raise_failed()
        if self.pos + need > self.seg.size:
            self._flush(True)  # a sealed segment holds all its records, committed
            self._wb_wait(self.wb_head, True)  # written, before its syncs and the switch
            if self.failed:
                self._raise_failed()
            if self._fast_roll(need):
                self.fast_rolls += 1
            else:
                with gil:  # the owner sizes the next segment to fit, or refuses the record
                    self.owner._roll(self, need)
        else:
            self._flush(False)  # the buffer is full: the batch's commit comes later
        if self.buffered and need > self.wcap:
            grown = <char*>realloc(self.wbuf, need)
            if grown == NULL:
                with gil:
                    raise MemoryError(f"no memory for a journal record of {need} bytes")
            self.wbuf, self.wcap = grown, need
            if self.write_behind:
                self.wb_items[self.wb_head % WB_SLOTS].buf = grown
                self.wb_items[self.wb_head % WB_SLOTS].cap = need
            self._aim()
        return 0

    cdef void _aim(self) noexcept nogil:
        """Points the record destination at ``pos``, nothing pending: the private buffer
        (buffered) or the mapped segment (direct)."""
        if self.buffered:
            self.out, self.out_at = self.wbuf, self.pos
            self.out_end = min(self.seg.size, self.pos + self.wcap)
        else:
            self.out, self.out_at, self.out_end = self.seg.base, 0, self.seg.size

    cdef int _flush(self, bint publish=True, int64_t last=-1) except -1 nogil:
        """Writes the buffered records (``out_at``..``pos``) into the segment. The length word
        of the first record since the last commit is held back (``held_at``): every later
        record is reachable only through it, so a reader sees none of them before that word,
        written last. ``publish``: then writes it (the commit: a batch's records become
        reachable at once, never a record before its body and CRC); else a full buffer is
        written out in one call and the word stays held. The file holds zero at ``held_at``
        until then. ``last`` (commit()): the sequence to publish once all is written.

        Write-behind: the write is handed to the writer thread instead when it is large or
        earlier ones are still in flight (they are written in order); returns 1 then (the
        writer publishes ``last``), else 0."""
        cdef Py_ssize_t n = self.pos - self.out_at
        cdef wb_item it
        cdef wb_item* w = &it
        cdef int err
        if not self.buffered or (n == 0 and last < 0 and not (publish and self.held_at >= 0)):
            return 0
        cdef bint behind = self.write_behind and (
            n >= _wb_min or self.direct_io or rl_load_acquire(&self.wb_tail) != self.wb_head)
        if behind:
            w = &self.wb_items[self.wb_head % WB_SLOTS]
        w.buf, w.at, w.n, w.skip, w.by_copy = self.wbuf, self.out_at, n, 0, _by_copy(self, n)
        w.fd = self.seg.dfd if self.direct_io else self.seg._map.fd
        w.base, w.word_at, w.last = self.seg.base, -1, last
        if n > 0 and self.held_at < 0:  # hold this flush's first length word until the commit
            self.held_at, self.held_word = self.out_at, (<uint32_t*>self.wbuf)[0]
            self.held_by_pwrite = not w.by_copy
            w.skip = 4
        if publish and self.held_at >= 0:
            w.word_at, w.word, w.word_by_pwrite = self.held_at, self.held_word, \
                self.held_by_pwrite
            self.held_at = -1
        if behind:
            if _plant_append_before_write and last >= 0:  # test-only planted bug
                rl_store_release(&self.last_seq, last)
            self._hand_off()
            self._aim()
            return 1
        err = _write_item(w)
        if err != 0:
            self.failed = 1  # the page cache holds part of the batch at most
            with gil:
                raise JournalError(f"write to {self.seg.path} at byte offset {self.out_at} "
                                   f"failed: {os.strerror(err)}", errno=err,
                                   path=self.seg.path)
        self._aim()
        return 0

    # -- write-behind ----------------------------------------------------------------------
    #   appending thread                              writer thread (run_writer, no GIL)
    #   records ──► slot buffer [head % WB_SLOTS]
    #   _flush: item (bytes, held word, last) ─ head+1 ─►  pwrite(bytes), then the held word;
    #   next slot's buffer (waits while all are        publish last_seq (the group-commit
    #   in flight)                                     thread syncs up to it), nudge it
    #   roll, flush(), sync(): _wb_wait(head)  ◄─ tail+1 ─  (a failed write: failed, errno)
    cdef int _hand_off(self) except -1 nogil:
        """Hands the item at ``wb_head`` to the writer and takes the next slot's buffer (once
        the writer is done with it). Direct I/O: the appender stages a small item itself
        when the stage is free and takes it without a write-out (a copy: the writer is not
        woken per item, and the appender never waits for a writer that has no CPU yet); the
        writer is woken only to write the stage out (DIRECT_MIN staged, a waiter, an item
        that needs a write-out first) or to start its linger over a stage it did not see."""
        cdef wb_item* nxt
        cdef wb_item* it = &self.wb_items[self.wb_head % WB_SLOTS]
        cdef bint wake = True
        rl_store_release(&self.wb_head, self.wb_head + 1)
        # (a large item, or a stage the writer or a waiter holds: the writer takes it)
        if self.direct_io and it.n < _wb_min and rl_cas(&self.wb_lock, 0, 1):
            wake = not self._stage_handed() or not rl_load_acquire32(&self.wb_lingering) or \
                self.st_len - self.st_done >= _direct_min or \
                rl_load_acquire(&self.wb_want) > self.wb_written
        if wake:
            self.writer_wakes += self.direct_io
            rl_wake_sleepers(&self.wb_signal, &self.wb_waiters)
        self._wb_wait(self.wb_head - WB_SLOTS + 1)  # the next slot's item is taken
        nxt = &self.wb_items[self.wb_head % WB_SLOTS]
        self.wbuf, self.wcap = nxt.buf, nxt.cap
        return 0

    cdef bint _stage_handed(self) noexcept nogil:
        """(Direct I/O, the appender, ``wb_lock`` taken, released here.) Stages the items
        handed off that fit the stage of their segment without writing it out; whether all
        of them did (else the writer must write the stage out first)."""
        cdef int64_t t = self.wb_tail
        cdef wb_item* it
        cdef int err
        cdef bint all_staged = True
        while t < rl_load_acquire(&self.wb_head):
            it = &self.wb_items[t % WB_SLOTS]
            if self.failed or it.fd != self.st_fd or self.st_len + it.n > self.st_cap:
                all_staged = False
                break
            err = self._stage_item(it, t)  # it fits: no write-out, no read
            if err != 0:
                self.wb_err, self.wb_err_at = err, it.at
                self.failed = 1
            t += 1
            rl_store_release(&self.wb_tail, t)
        rl_store_release(&self.wb_lock, 0)
        return all_staged and not self.failed

    cdef void _wb_wait(self, int64_t upto, bint written=False) noexcept nogil:
        """Returns once the items before ``upto`` are taken by the writer (their buffers free
        again), or with ``written`` once their bytes are in the file (the same unless direct
        I/O, whose writer is then asked to write its stage now); or the journal failed. Any
        thread; writes them itself while no writer thread runs."""
        cdef int32_t token
        cdef int64_t* done = &self.wb_written if written else &self.wb_tail
        cdef int64_t want
        while rl_load_acquire(done) < upto:
            if not rl_load_acquire32(&self.wb_running):
                self._wb_run(True)
                continue
            if written and self.direct_io:
                want = rl_load_acquire(&self.wb_want)
                while want < upto and not rl_cas(&self.wb_want, want, upto):
                    want = rl_load_acquire(&self.wb_want)
                rl_wake_sleepers(&self.wb_signal, &self.wb_waiters)
            token = rl_sleeper_in(&self.wb_done_signal, &self.wb_done_waiters)
            if rl_load_acquire(done) < upto and rl_load_acquire32(&self.wb_running):
                rl_futex_wait(&self.wb_done_signal, token, 50000000)
            rl_sleeper_out(&self.wb_done_waiters)

    cdef void _wb_run(self, bint force=False) noexcept nogil:
        """Writes every item handed off, in order (under ``wb_lock``: the writer thread, or a
        waiter helping when none runs). After a failed write the rest are dropped. Direct
        I/O: the items go into the stage, which is written out when it holds DIRECT_MIN
        bytes, lingered ``linger_ns``, a waiter wants it written, or ``force``."""
        cdef int64_t t
        cdef wb_item* it
        cdef int err = 0
        while not rl_cas(&self.wb_lock, 0, 1):
            rl_cpu_relax()
        t = self.wb_tail
        while t < rl_load_acquire(&self.wb_head):
            it = &self.wb_items[t % WB_SLOTS]
            if _wb_delay_us:
                usleep(_wb_delay_us)
            if not self.failed:
                if self.direct_io:
                    err = self._stage_item(it, t)
                else:
                    err = _write_item(it)
                    if err == 0 and it.last >= 0:
                        rl_store_release(&self.last_seq, it.last)
                        self._nudge(it.last)
                if err != 0:
                    self.wb_err, self.wb_err_at = err, it.at
                    self.failed = 1  # the page cache holds part of the batch at most
            t += 1
            rl_store_release(&self.wb_tail, t)
            if not self.direct_io:
                rl_store_release(&self.wb_written, t)
            rl_wake_sleepers(&self.wb_done_signal, &self.wb_done_waiters)
        if self.direct_io:
            if not self.failed and _staged(self) and (
                    force or rl_load_acquire(&self.wb_want) > self.wb_written
                    or rl_load_acquire32(&self.stopping)
                    or self.st_len - self.st_done >= _direct_min
                    or rl_now_ns() - self.st_since >= self.linger_ns):
                err = self._write_stage(t)
                if err != 0:
                    self.wb_err, self.wb_err_at = err, self.st_off
                    self.failed = 1
            if self.failed or not _staged(self):
                rl_store_release(&self.wb_written, t)  # (a waiter sees `failed`)
                if not self.failed:
                    _publish_staged(self)  # a commit with no bytes
            rl_wake_sleepers(&self.wb_done_signal, &self.wb_done_waiters)
        rl_store_release(&self.wb_lock, 0)

    # -- direct I/O: the writer's stage --------------------------------------------------
    #   items (records; a batch's first length word held at zero; its commit's word later)
    #     └─► stage: file bytes st_off.. (st_off 4 KiB aligned; st_buf[:st_done] in the file)
    #   write-out: the frontier's word (the first record not reachable in the file) zeroed,
    #     the stage's blocks by one pwrite(); then, if that word is known (committed), the
    #     frontier's block alone with it: readers reach the new records only after all their
    #     bytes are in the file. The last partial block stays staged (rewritten next time);
    #     the frontier's block, if the stage moves past it, is kept in fr_blk for its word.
    cdef int _stage_item(self, const wb_item* it, int64_t taken) noexcept nogil:
        """Copies one item into the stage, writing the stage out whenever it fills (``taken``:
        the items before this one are staged whole). Returns 0 or an errno."""
        cdef Py_ssize_t left = it.n, k, first = 1, at
        cdef const char* src = it.buf
        cdef int err
        if it.fd != self.st_fd:  # a new segment: all of the last one is written (the roll)
            if _staged(self):
                err = self._write_stage(taken)
                if err != 0:
                    return err
            self.st_fd = it.fd
            self.st_off = it.at & ~(<Py_ssize_t>BLK - 1)
            self.st_len = self.st_done = it.at - self.st_off
            self.fr_at = self.open_at = -1
            self.fr_ready = 0
            if self.st_len > 0:  # the committed records before `at` in its block
                if pread(self.st_fd, self.st_buf, BLK, self.st_off) != BLK:
                    return errno or EIO
        if it.at != self.st_off + self.st_len:
            return EIO  # not contiguous: an appender bug, never written over
        if it.skip:  # a batch starts: its first word stays zero in the file until its commit
            self.open_at = it.at
            if self.fr_at < 0:
                self.fr_at = it.at
        while left > 0:
            if self.st_len == self.st_cap:
                err = self._write_stage(taken)
                if err != 0:
                    return err
            k = min(left, self.st_cap - self.st_len)
            if not _staged(self):  # the linger starts with the first byte not in the file
                self.st_since = rl_now_ns()
            memcpy(self.st_buf + self.st_len, src, k)
            if first and it.skip:
                (<uint32_t*>(self.st_buf + self.st_len))[0] = 0
            first = 0
            self.st_len += k
            src += k
            left -= k
        if it.word_at >= 0:
            if not _staged(self):
                self.st_since = rl_now_ns()
            if it.word_at == self.fr_at:  # its batch is committed: the word goes alone, last
                self.fr_word, self.fr_ready = it.word, 1
            elif it.word_at >= self.st_off:  # a batch past the frontier: a part of its body
                at = it.word_at - self.st_off
                (<uint32_t*>(self.st_buf + at))[0] = it.word
                if at < self.st_done:  # in the kept block: it is written again
                    self.st_done = at
            else:
                return EIO  # a held word behind the stage is the frontier's, or a bug
            if it.word_at == self.open_at:
                self.open_at = -1
        if it.last >= 0:
            self.st_last = it.last
        return 0

    cdef int _write_stage(self, int64_t taken) noexcept nogil:
        """Writes the stage out (see the diagram above); publishes the last commit staged and
        the items before ``taken`` as written. Returns 0 or an errno."""
        cdef Py_ssize_t end = self.st_off + self.st_len, keep = end & ~(<Py_ssize_t>BLK - 1)
        cdef Py_ssize_t size = (self.st_len + BLK - 1) & ~(<Py_ssize_t>BLK - 1), f = self.fr_at
        cdef bint in_stage = f >= self.st_off, together = False
        cdef char* blk
        cdef int err
        if self.st_len > self.st_done:
            if _plant_direct_word_with_body and self.fr_ready and in_stage:
                (<uint32_t*>(self.st_buf + (f - self.st_off)))[0] = self.fr_word
                together = True  # test-only planted bug: the word with its body
            memset(self.st_buf + self.st_len, 0, size - self.st_len)
            err = _direct_write(self.st_fd, self.st_buf, size, self.st_off)
            self.direct_writes += 1
            if err != 0:
                return err
        if self.fr_ready:  # the frontier's batch is committed: its word, alone, after it
            if in_stage:
                (<uint32_t*>(self.st_buf + (f - self.st_off)))[0] = self.fr_word
                blk = self.st_buf + ((f - self.st_off) & ~(<Py_ssize_t>BLK - 1))
            else:
                (<uint32_t*>(self.fr_blk + (f & (BLK - 1))))[0] = self.fr_word
                blk = self.fr_blk
            if not together:
                err = _direct_write(self.st_fd, blk, BLK, f & ~(<Py_ssize_t>BLK - 1))
                self.direct_writes += 1
                if err != 0:
                    return err
            self.fr_at, self.fr_ready = self.open_at, 0  # batches commit in order
        # the frontier's block, if the stage moves past it, for its word's write later
        if self.fr_at >= self.st_off and self.fr_at < keep:
            memcpy(self.fr_blk, self.st_buf + ((self.fr_at - self.st_off) &
                                               ~(<Py_ssize_t>BLK - 1)), BLK)
        if keep > self.st_off:
            memmove(self.st_buf, self.st_buf + (keep - self.st_off), end - keep)
            self.st_off = keep
        self.st_len = self.st_done = end - keep
        _publish_staged(self)
        rl_store_release(&self.wb_written, taken)
        return 0

    def run_writer(self):
        """The write-behind writer thread's body (``write_behind``): writes the items the
        appender hands off, in order, without the GIL; returns after ``stop()`` once none is
        left. Direct I/O: it sleeps no longer than the linger while bytes are staged."""
        cdef int32_t token
        cdef int64_t timeout
        if not self.write_behind:
            raise JournalError("run_writer: this appender was made without write_behind")
        with nogil:
            rl_store_release32(&self.wb_running, 1)
            while True:
                self._wb_run()
                token = rl_sleeper_in(&self.wb_signal, &self.wb_waiters)
                if rl_load_acquire(&self.wb_tail) == rl_load_acquire(&self.wb_head) and \
                        rl_load_acquire(&self.wb_want) <= rl_load_acquire(&self.wb_written):
                    if rl_load_acquire32(&self.stopping):
                        rl_sleeper_out(&self.wb_waiters)
                        break
                    timeout = 1000000000
                    if self.direct_io and _staged(self) and not self.failed:
                        timeout = max(1, self.st_since + self.linger_ns - rl_now_ns())
                        rl_store_release32(&self.wb_lingering, 1)
                    rl_futex_wait(&self.wb_signal, token, timeout)
                    rl_store_release32(&self.wb_lingering, 0)
                rl_sleeper_out(&self.wb_waiters)
            rl_store_release32(&self.wb_running, 0)
            self._wb_run(True)  # an item handed off after the last look (none in a clean close)

    cdef int _raise_failed(self) except -1 nogil:
        with gil:
            if self.wb_err != 0:
                raise JournalError(f"write to {self.seg.path} at byte offset {self.wb_err_at} "
                                   f"failed: {os.strerror(self.wb_err)}; reopen the journal to "
                                   "continue from what is durable", errno=self.wb_err,
                                   path=self.seg.path)
            raise JournalError("the journal failed earlier (a write or sync error); "
                               "reopen it to continue from what is durable")

    cdef void _write(self, const rl_header* h, const char* payload) noexcept nogil:
        cdef char* rec = self.out + (self.pos - self.out_at)
        cdef rl_header* dst = <rl_header*>(rec + REC_PREFIX)
        cdef uint32_t n = RL_HEADER_SIZE + h.length
        cdef int64_t seq = self.next_seq
        cdef uint32_t crc
        _zero_tail(rec, n)
        # one pass: each word is loaded, stored and folded into the crc once; the body's
        # first word is the journal sequence, not the source's
        if payload == <const char*>h + RL_HEADER_SIZE:  # a ring slot: header + payload
            crc = rl_crc32c_body(dst, h, n, <uint64_t>seq)
        else:
            crc = rl_crc32c_body(dst, h, RL_HEADER_SIZE, <uint64_t>seq)
            if payload != NULL:
                crc = rl_crc32c_copy(crc, <char*>dst + RL_HEADER_SIZE, payload, h.length)
            else:
                crc = rl_crc32c(crc, <char*>dst + RL_HEADER_SIZE, h.length)
        _seal(self, rec, n, seq, h.timestamp_ns, crc)

    cdef int64_t write_output(self, uint32_t type_id, uint32_t flags, const char* payload,
                              uint32_t length, int64_t ts, int64_t corr,
                              int64_t cause) except -1 nogil:
        """``write_record`` of an output (``cause`` in ``producer_seq``, no producer id):
        ``append_output`` (inline in _journal.pxd, where the loop calls it) as a method."""
        return append_output(self, type_id, flags, payload, length, ts, corr, cause)

    cdef void _note_index(self, int64_t seq, int64_t ts) noexcept nogil:
        cdef int64_t* grown
        if self.index_len + 3 > self.index_cap:
            grown = <int64_t*>realloc(self.index, (self.index_cap * 2 + 96) * sizeof(int64_t))
            if grown == NULL:
                return  # the index is sparse anyway: a missing entry only slows a seek
            self.index = grown
            self.index_cap = self.index_cap * 2 + 96
        self.index[self.index_len] = seq
        self.index[self.index_len + 1] = self.pos
        self.index[self.index_len + 2] = ts if ts > self.max_ts else self.max_ts
        self.index_len += 3
        self.since_index = 0

    cdef int commit(self) except -1 nogil:
        """The durability step after a batch of appends: writes the buffered records out
        (committing them for readers), publishes ``last_seq`` (readers, the group-commit
        thread), fdatasyncs under ``sync``, wakes the group-commit thread once enough is
        unsynced under ``group``. Write-behind: the writer thread publishes ``last_seq`` once
        the batch is written."""
        cdef int64_t last = self.next_seq - 1
        cdef int err
        if self.write_behind:
            if self.failed:
                self._raise_failed()
            if self._flush(True, last):
                return 0
        else:
            self._flush()
        rl_store_release(&self.last_seq, last)
        if self.policy == SYNC:
            if _plant_mark_early:
                self._set_durable(last)
            err = durable_sync(self.seg._map.fd, SYNC_DATA)
            if err != 0:
                self.failed = 1
                with gil:
                    raise JournalError(f"fdatasync of {self.seg.path} failed: "
                                       f"{os.strerror(err)}", errno=err, path=self.seg.path)
            self._set_durable(last)
            if rl_load_acquire(&self.durable) < last:  # capped: a roll's syncs are pending
                self._await_roll(last)
        else:
            self._nudge(last)
        return 0

    cdef void _nudge(self, int64_t last) noexcept nogil:
        """Group policy: wakes the group-commit thread once ``group_events`` are unsynced
        (``last`` just published)."""
        if self.policy == GROUP and last - rl_load_acquire(&self.durable) >= self.group_events:
            rl_wake_sleepers(&self.sync_signal, &self.sync_waiters)

    cdef void _set_durable(self, int64_t seq) noexcept nogil:
        # The appending thread (sync policy, without the GIL), the group-commit thread and
        # any thread calling sync() may publish: a tiny lock keeps the header's value/check
        # pair consistent and the value monotonic. Held for two stores, once per sync.
        cdef durable_hook_t fn
        while not rl_cas(&self.durable_lock, 0, 1):
            rl_cpu_relax()
        if seq > self.durable_cap:  # a roll's syncs are pending (_fast_roll)
            seq = self.durable_cap
        if seq < self.durable:
            seq = self.durable
        # the header's mark first: a thread that reads durable_sequence and tells another
        # process (then is killed) never claims more than the file's readers will find
        if seq > self.seg.durable_hint():
            self.seg.store_durable(seq)
        if seq > self.durable:
            rl_store_release(&self.durable, seq)
        rl_store_release(&self.synced_at, rl_now_ns())  # the lazy pause counts from here
        rl_store_release(&self.durable_lock, 0)
        if self.durable_hook != NULL:  # set_durable_hook: run it here, before any wake-up
            rl_fetch_add32(&self.durable_hook_busy, 1)
            rl_fence()
            fn = self.durable_hook
            if fn != NULL:
                fn(self.durable_hook_ctx, rl_load_acquire(&self.durable))
            rl_fetch_add32(&self.durable_hook_busy, -1)
        rl_wake_sleepers(&self.durable_signal, &self.durable_waiters)

    cdef void set_durable_hook(self, durable_hook_t fn, void* ctx) noexcept nogil:
        """Sets (or, ``fn`` NULL, clears) the function every advance of the durable mark
        calls, on the thread that advanced it, after the mark is published. Clearing
        returns only once no call is running, so ``ctx`` may then be freed."""
        if fn != NULL:
            self.durable_hook_ctx = ctx
            rl_fence()
            self.durable_hook = fn
            return
        self.durable_hook = NULL
        rl_fence()
        while rl_load_acquire32(&self.durable_hook_busy) > 0:
            rl_cpu_relax()
        self.durable_hook_ctx = NULL

    cdef void want_durable(self, int64_t seq) noexcept nogil:
        """Asks for ``seq`` to be durable soon (any thread): the group commit runs back to
        back until it is, instead of letting appends gather for ``lazy_ns``. A thread that
        holds outputs for their inputs' durability says so here (``wait_durable_c`` does)."""
        cdef int64_t w = rl_load_acquire(&self.wanted)
        while seq > w:
            if rl_cas(&self.wanted, w, seq):
                rl_wake_sleepers(&self.want_signal, &self.want_waiters)
                return
            w = rl_load_acquire(&self.wanted)

    def set_lazy_ns(self, int64_t ns):
        """Changes the pause the group commit lets appends gather after each fdatasync
        while nothing is wanted (0: back to back always), on a running journal: the cycle
        reads it at its next decision. The processor turns it off once a listener holds
        every output for its input (``Processor.start``)."""
        if not 0 <= ns <= <int64_t>(LAZY_SYNC_MAX_MS * 1e6):
            raise ValueError(f"the lazy pause must be from 0 to {LAZY_SYNC_MAX_MS} ms, "
                             f"got {ns} ns")
        rl_store_release(&self.lazy_ns, ns)
        rl_fetch_add32(&self.want_signal, 1)  # a lazy wait in progress looks again
        rl_futex_wake_all(&self.want_signal)

    cdef int64_t _lazy_until(self, int64_t now) noexcept nogil:
        # Until when the group commit may let appends gather before its next fdatasync: the
        # last one's end + lazy_ns while something is unsynced and nothing wanted; 0: sync now
        cdef int64_t lazy = rl_load_acquire(&self.lazy_ns)  # (set_lazy_ns: any thread)
        cdef int64_t until = rl_load_acquire(&self.synced_at) + lazy
        cdef int64_t d = rl_load_acquire(&self.durable)
        if (not lazy or now >= until or rl_load_acquire(&self.wanted) > d
                or rl_load_acquire(&self.last_seq) <= d
                or rl_load_acquire32(&self.roll_pending) or rl_load_acquire32(&self.stopping)):
            return 0
        return until

    cdef void _lazy_wait(self, int64_t until) noexcept nogil:
        # Sleeps until `until` (monotonic ns), a want, a roll or close. Not on sync_signal:
        # the appends' nudges would wake it per batch (and cost the appender a futex call)
        cdef int32_t token
        cdef int64_t now = rl_now_ns()
        while now < until:
            token = rl_sleeper_in(&self.want_signal, &self.want_waiters)
            if self._lazy_until(now):
                rl_futex_wait(&self.want_signal, token, until - now)
            rl_sleeper_out(&self.want_waiters)
            if not self._lazy_until(rl_now_ns()):
                return
            now = rl_now_ns()

    cdef int64_t wait_durable_c(self, int64_t seq, int64_t timeout_ns) noexcept nogil:
        """Sleeps (futex, no spinning) until ``seq`` is durable or ``timeout_ns`` passed (< 0:
        no limit) or the journal failed; returns the durable sequence then. Any thread."""
        cdef int64_t d = rl_load_acquire(&self.durable)
        cdef int64_t deadline = -1 if timeout_ns < 0 else rl_now_ns() + timeout_ns
        cdef int64_t left = 50000000
        cdef int32_t token
        if d < seq:
            self.want_durable(seq)
        while d < seq and not self.failed:
            if deadline >= 0:
                left = deadline - rl_now_ns()
                if left <= 0:
                    break
            token = rl_sleeper_in(&self.durable_signal, &self.durable_waiters)
            if rl_load_acquire(&self.durable) < seq and not self.failed:
                rl_futex_wait(&self.durable_signal, token, min(left, 50000000))
            rl_sleeper_out(&self.durable_waiters)
            d = rl_load_acquire(&self.durable)
        return d

    cdef int64_t append_record(self, const rl_header* h, const char* payload) except -1 nogil:
        """Appends one event (header + ``h.length`` payload bytes); returns its sequence."""
        self.write_record(h, payload)
        self.commit()
        return self.next_seq - 1

    cdef int64_t write_record(self, const rl_header* h, const char* payload) except -1 nogil:
        """Appends one event like ``append_record`` but leaves the durability step to a
        ``commit()`` after the last record of the batch (the loop journals a batch's
        outputs so: one release store and one group-commit check per batch, not per
        output). Readers see the record after that ``commit()`` (or earlier)."""
        cdef Py_ssize_t need = REC_PREFIX + _align8(RL_HEADER_SIZE + h.length)
        if self.failed or self.pos + need > self.out_end:  # the call only when it matters
            self._room(need)
        self._write(h, payload)
        return self.next_seq - 1

    cdef int64_t append_slots(self, const char* base, Py_ssize_t stride,
                              Py_ssize_t count) except -1 nogil:
        """Appends ``count`` ring slots (each an rl_header + payload, ``stride`` bytes
        apart); one durability step for the batch. Returns the last sequence."""
        cdef Py_ssize_t i, need, pos = self.pos, end = self.out_end, at = self.out_at
        cdef const rl_header* h
        cdef char* out = self.out
        cdef char* rec
        cdef uint32_t n
        cdef int64_t seq = self.next_seq, since = self.since_index, every = self.index_every
        cdef int64_t max_ts = self.max_ts
        # _write's steps with the appender's fields in locals for the batch: a store into the
        # record may alias any field (no strict aliasing), so fields would be re-read per
        # record
        for i in range(count):
            h = <const rl_header*>(base + i * stride)
            n = RL_HEADER_SIZE + h.length
            need = REC_PREFIX + _align8(n)
            if pos + need > end or self.failed:
                self.pos, self.next_seq, self.since_index, self.max_ts = pos, seq, since, max_ts
                self._room(need)  # flushes, rolls to the next segment (or raises)
                out, at, end, pos, seq = self.out, self.out_at, self.out_end, self.pos, \
                    self.next_seq
                since, max_ts = self.since_index, self.max_ts
            rec = out + (pos - at)
            _zero_tail(rec, n)
            (<uint32_t*>(rec + 4))[0] = rl_crc32c_body(rec + REC_PREFIX, h, n, <uint64_t>seq)
            if since >= every:
                self.pos, self.max_ts = pos, max_ts
                self._note_index(seq, h.timestamp_ns)
                since = 0
            since += 1
            if h.timestamp_ns > max_ts:
                max_ts = h.timestamp_ns
            rl_store_release_u32(<uint32_t*>rec, n)  # commit: the length word last
            pos += need
            seq += 1
        self.pos, self.next_seq, self.since_index, self.max_ts = pos, seq, since, max_ts
        self.commit()
        return self.next_seq - 1

    # -- Python API ------------------------------------------------------------------------
    def append(self, payload, uint32_t type_id=0, *, int64_t timestamp_ns=0,
               int64_t correlation_id=0, uint32_t flags=0, uint32_t producer_id=0,
               int64_t producer_seq=0):
        """Appends one event with a bytes-like payload; returns its sequence."""
        cdef Py_buffer buf
        try:
            PyObject_GetBuffer(payload, &buf, PyBUF_SIMPLE)
        except TypeError:
            raise TypeError(f"payload must be bytes-like, got {type(payload).__name__}")
        cdef rl_header h
        h.sequence = 0
        h.timestamp_ns = timestamp_ns
        h.correlation_id = correlation_id
        h.producer_seq = producer_seq
        h.type_id = type_id
        h.flags = flags
        h.length = <uint32_t>buf.len
        h.producer_id = producer_id
        cdef int64_t seq
        try:
            if buf.len > 0xFFFFFFFF - RL_HEADER_SIZE:
                raise JournalError(f"payload of {buf.len} bytes is too large for a record")
            with nogil:
                seq = self.append_record(&h, <const char*>buf.buf)
            return seq
        finally:
            PyBuffer_Release(&buf)

    def append_many(self, payloads, uint32_t type_id=0, *, int64_t timestamp_ns=0,
                    int64_t correlation_id=0, uint32_t flags=0, bint commit=True):
        """Appends several bytes-like payloads with one durability step; returns the last
        sequence. Every payload is checked first: a bad one appends nothing. ``commit``
        False: written (in parts, when they overflow the buffer) but readers see them only
        at the next ``flush()``, as the loop's outputs within a batch."""
        cdef Py_buffer buf
        cdef rl_header h
        cdef Py_ssize_t need
        # segments grow up to the owner's segment_size: the largest record that can fit
        cdef Py_ssize_t room = getattr(self.owner, "segment_size", self.seg.size) \
            - SEG_HEADER_SIZE
        items = []
        for i, p in enumerate(payloads):
            try:
                v = memoryview(p)
            except TypeError:
                raise TypeError(f"payload {i} must be bytes-like, got {type(p).__name__}") \
                    from None
            if REC_PREFIX + _align8(RL_HEADER_SIZE + v.nbytes) > room:
                raise JournalError(f"payload {i}: a record of {v.nbytes} bytes cannot fit a "
                                   f"segment of {room + SEG_HEADER_SIZE} bytes; use a larger "
                                   "segment_size")
            items.append(v)
        memset(&h, 0, sizeof(h))
        h.timestamp_ns = timestamp_ns
        h.correlation_id = correlation_id
        h.type_id = type_id
        h.flags = flags
        for p in items:
            PyObject_GetBuffer(p, &buf, PyBUF_SIMPLE)
            try:
                h.length = <uint32_t>buf.len
                need = REC_PREFIX + _align8(RL_HEADER_SIZE + h.length)
                if self.failed or self.pos + need > self.out_end:
                    with nogil:  # it may wait for the writer thread
                        self._room(need)
                self._write(&h, <const char*>buf.buf)
            finally:
                PyBuffer_Release(&buf)
        if commit:
            with nogil:
                self.commit()
        return self.next_seq - 1

    def append_batch(self, Batch batch):
        """Appends a ring batch (consecutive slots) in one call; returns the last sequence."""
        cdef Ring ring = batch.consumer.ring
        cdef Py_ssize_t n = batch.hi - batch.lo + 1
        if n <= 0:
            return self.next_seq - 1
        cdef const char* base = ring.slot(batch.lo)
        cdef int stride = ring.slot_size
        cdef int64_t seq
        with nogil:
            seq = self.append_slots(base, stride, n)
        return seq

    def flush(self):
        """``commit()`` from Python: the records written since the last commit reach the
        segment (readers see them) and the durability step runs; write-behind: returns once
        they are written. The appending thread only."""
        with nogil:
            self.commit()
            self._wb_wait(self.wb_head, True)
        if self.failed:
            self._raise_failed()

    def sync(self):
        """Makes everything committed so far durable now (fdatasync); returns that sequence.
        Records written but not yet committed (``write_record``, ``write_output``) are not
        included: ``flush()`` them first, from the appending thread.
        Safe to call from the group-commit thread while the appender appends."""
        cdef int64_t head = rl_load_acquire(&self.wb_head)
        with nogil:
            self._wb_wait(head, True)  # write-behind: what was committed is in the file first
        cdef int64_t last = rl_load_acquire(&self.last_seq)
        cdef Segment seg = self.seg
        if self.failed:
            self._raise_failed()
        if _plant_mark_early:
            self._set_durable(last)
        try:
            seg.sync()
        except JournalError:
            self.failed = 1  # what the page cache holds may never reach the disk
            raise
        self._set_durable(last)
        return min(last, rl_load_acquire(&self.durable))  # lower while a roll's syncs run

    def wait_written(self, int64_t seq, double timeout):
        """Any thread: waits until the record ``seq`` is in the file (readers see it), asking a
        direct-I/O writer to write its stage now rather than at the end of its linger; returns
        the last sequence in the file, below ``seq`` after ``timeout`` seconds (a record not
        committed yet is not handed to the writer: nothing can write it) or a failure."""
        cdef int64_t deadline = rl_now_ns() + <int64_t>(max(0.0, timeout) * 1e9)
        cdef int64_t last = rl_load_acquire(&self.last_seq)
        with nogil:
            while last < seq and not self.failed and rl_now_ns() < deadline:
                if self.write_behind:
                    self._wb_wait(rl_load_acquire(&self.wb_head), True)
                last = rl_load_acquire(&self.last_seq)
                if last < seq:
                    usleep(200)
                    last = rl_load_acquire(&self.last_seq)
        return last

    def mark_durable(self, int64_t seq):
        """Records that everything up to ``seq`` is on disk (after the owner synced it) and
        publishes it in the current segment's header for readers."""
        self._set_durable(seq)

    def wait_for_work(self, double timeout, bint group=True):
        """Background thread: sleeps (no GIL) until a roll left work, ``group_events``
        are unsynced (``group``: the group-commit policy), ``wake()`` or ``timeout`` seconds
        pass."""
        cdef int64_t t = <int64_t>(timeout * 1e9)
        with nogil:
            self._sleep_for_work(group, t)

    cdef void _sleep_for_work(self, bint group, int64_t timeout_ns) noexcept nogil:
        # wait_for_work's sleep (the futex handshake of includes/ringwait.h): none when a
        # roll left work, close began or (group) group_events are unsynced already
        cdef int32_t token = rl_sleeper_in(&self.sync_signal, &self.sync_waiters)
        if not rl_load_acquire32(&self.roll_pending) and not (
                group and rl_load_acquire(&self.last_seq) - rl_load_acquire(&self.durable)
                >= self.group_events) and not rl_load_acquire32(&self.stopping):
            rl_futex_wait(&self.sync_signal, token, timeout_ns)
        rl_sleeper_out(&self.sync_waiters)

    def group_commit(self, double timeout, bint prepare):
        """Background thread, group policy: the group-commit cycle without the GIL. Sleeps
        as ``wait_for_work``, then fdatasyncs the current segment and publishes the durable
        mark, again and again, and returns only when Python is needed: a roll left work, a
        segment is to be prepared (``prepare`` and none offered), a wake-up or ``timeout``
        found nothing to sync (close, idle), or a sync failed (raised, the appender failed).
        So a durable mark never waits for the GIL (a gateway's loop thread may hold it);
        between the chunks of a segment's pre-fault, ``pace`` does the same."""
        cdef int64_t t = <int64_t>(timeout * 1e9), last, until
        cdef int rc = 0
        with nogil:
            while not self.failed:
                self._sleep_for_work(True, t)
                if rl_load_acquire32(&self.roll_pending) or (
                        prepare and not rl_load_acquire32(&self.ready)):
                    break
                last = rl_load_acquire(&self.last_seq)
                if last <= rl_load_acquire(&self.durable):
                    break  # woken for something else (close), or idle
                until = self._lazy_until(rl_now_ns())
                if until:  # nothing waits for it: let appends gather (lazy_ns)
                    self._lazy_wait(until)
                    if rl_load_acquire32(&self.roll_pending):
                        break
                    last = rl_load_acquire(&self.last_seq)
                rc = self._sync_to(last)
                if rc != 0:
                    break
        if rc != 0:
            self._raise_sync_failed(rc)

    cdef int _sync_to(self, int64_t last) noexcept nogil:
        """One group commit: fdatasync of the current segment, then the durable mark at
        ``last`` (read before the sync); 0, or the errno that failed the appender."""
        if _plant_mark_early:  # test-only planted bug: the mark before the sync
            self._set_durable(last)
        # a roll after the read of last leaves the old segment here: its tail is what last
        # covers, and the mark stays capped until the roll's own syncs
        cdef int rc = durable_sync(self.seg._map.fd, SYNC_DATA)
        if rc != 0:
            self.failed = 1  # what the page cache holds may never reach the disk
            return rc
        self.group_syncs += 1
        self._set_durable(last)
        return 0

    cdef _raise_sync_failed(self, int rc):
        raise JournalError(f"fdatasync of {self.seg.path} failed: {os.strerror(rc)}",
                           errno=rc, path=self.seg.path)

    def pace(self, double until, double due, double group_s, bint group):
        """Background thread, between the chunks of a segment's pre-fault: group commits
        without the GIL until the monotonic time ``until``, a roll leaves work or close;
        returns when the next group commit is due (``due`` on entry). ``group``: the group
        policy (else it only waits); ``group_s`` > 0: a commit when ``group_events`` are
        unsynced or every ``group_s`` seconds (the output journal's large groups), 0: back
        to back. In Python this loop took the GIL after every commit, so a gateway's loop
        thread holding it (up to the 5 ms switch interval) held the next commit back."""
        cdef int64_t until_ns = <int64_t>(until * 1e9), due_ns = <int64_t>(due * 1e9)
        cdef int64_t group_ns = <int64_t>(group_s * 1e9), now, wake_at, last, lazy
        cdef int rc = 0
        with nogil:
            while not self.failed:
                if rl_load_acquire32(&self.roll_pending) or rl_load_acquire32(&self.stopping):
                    break
                now = rl_now_ns()
                last = rl_load_acquire(&self.last_seq)
                lazy = self._lazy_until(now) if group and not group_ns else 0
                if group and not lazy and (not group_ns or now >= due_ns or
                                           last - rl_load_acquire(&self.durable)
                                           >= self.group_events):
                    if last > rl_load_acquire(&self.durable):
                        rc = self._sync_to(last)
                        if rc != 0:
                            break
                    due_ns = now + group_ns
                    now = rl_now_ns()
                if now >= until_ns:
                    break
                wake_at = due_ns if group and group_ns and due_ns < until_ns else until_ns
                if lazy:
                    self._lazy_wait(min(lazy, wake_at))
                # none after a sync longer than group_s (the next is due now): a negative
                # timeout would sleep with no limit
                elif wake_at > now:
                    self._sleep_for_work(group, wake_at - now)
        if rc != 0:
            self._raise_sync_failed(rc)
        return due_ns / 1e9

    def stop(self):
        """For close: the background thread's waits return at once from now on (a wake-up
        alone is lost if it comes between the thread's check of the journal's closed flag
        and its sleep), and it is woken."""
        rl_store_release32(&self.stopping, 1)
        self.wake()

    def wake(self):
        """Wakes the group-commit thread (for close), the write-behind writer and every
        thread in wait_durable."""
        rl_fetch_add32(&self.sync_signal, 1)
        rl_futex_wake_all(&self.sync_signal)
        rl_fetch_add32(&self.wb_signal, 1)
        rl_futex_wake_all(&self.wb_signal)
        rl_fetch_add32(&self.durable_signal, 1)
        rl_futex_wake_all(&self.durable_signal)
        rl_fetch_add32(&self.want_signal, 1)
        rl_futex_wake_all(&self.want_signal)

    def wait_durable(self, int64_t sequence, timeout=None):
        """Waits without the GIL (sleeping, not spinning) until ``sequence`` is durable;
        returns the durable sequence, which is below ``sequence`` only after ``timeout``
        seconds (None: no limit) or when the journal failed."""
        cdef int64_t t = -1 if timeout is None else <int64_t>(max(0.0, timeout) * 1e9)
        cdef int64_t d
        with nogil:
            d = self.wait_durable_c(sequence, t)
        return d

    def take_index(self):
        """The sparse index entries of the current segment as a list of
        (sequence, offset, max timestamp) triples."""
        cdef Py_ssize_t i
        return [(self.index[i], self.index[i + 1], self.index[i + 2])
                for i in range(0, self.index_len, 3)]

    def fail(self):
        """Marks the appender failed: every later append raises."""
        self.failed = 1

    @property
    def failed(self):
        """True once a write or sync error happened (appends and syncs then raise)."""
        return self.failed != 0

    @property
    def segment(self):
        """The segment being appended to."""
        self._fix_path()
        return self.seg

    @property
    def max_timestamp(self):
        """The largest event timestamp appended so far (the index's running maximum)."""
        return self.max_ts

    @property
    def last_sequence(self):
        """The last appended sequence (-1 before the first)."""
        return rl_load_acquire(&self.last_seq)

    @property
    def next_sequence(self):
        """The sequence the next append gets."""
        return self.next_seq

    @property
    def durable_sequence(self):
        """The highest sequence known to be on disk (-1 if none)."""
        return rl_load_acquire(&self.durable)


def scan(Segment seg, Py_ssize_t off, int64_t expect_seq, bint verify=True,
         int64_t stop_seq=-1):
    """Module-level alias of ``Segment.scan``."""
    return seg.scan(off, expect_seq, verify, stop_seq)


# -- type counts for `ringlog journal info`: one pass without the GIL -----------------------
cdef enum:
    _TC_SLOTS = 4096  # distinct type ids a pass can count (open addressing, power of two)


def type_counts(Segment seg, Py_ssize_t off, int64_t expect_seq, int64_t stop_seq=-1):
    """Counts records by type id from ``off`` (sequence ``expect_seq``) to the written end or
    past ``stop_seq``, without checksums; returns ({type_id: count}, last timestamp, records).
    None when more distinct type ids occur than the table holds (count in Python then)."""
    cdef uint32_t* keys = <uint32_t*>calloc(_TC_SLOTS, sizeof(uint32_t))
    cdef int64_t* counts = <int64_t*>calloc(_TC_SLOTS, sizeof(int64_t))
    if keys == NULL or counts == NULL:
        free(keys)
        free(counts)
        raise MemoryError()
    cdef uint32_t n = 0, t, h
    cdef int64_t total = 0, last_ts = 0
    cdef bint full = False
    cdef const rl_header* hd
    try:
        with nogil:
            while stop_seq < 0 or expect_seq <= stop_seq:
                if seg.scan_one(off, expect_seq, False, &n) != SCAN_OK:
                    break
                hd = <const rl_header*>(seg.base + off + REC_PREFIX)
                t = hd.type_id
                h = (t * <uint32_t>2654435761u) & (_TC_SLOTS - 1)
                while counts[h] != 0 and keys[h] != t:
                    h = (h + 1) & (_TC_SLOTS - 1)
                    if h == ((t * <uint32_t>2654435761u) & (_TC_SLOTS - 1)):
                        full = True
                        break
                if full:
                    break
                keys[h] = t
                counts[h] += 1
                last_ts = hd.timestamp_ns
                off += REC_PREFIX + _align8(n)
                expect_seq += 1
                total += 1
        if full:
            return None
        return {keys[i]: counts[i] for i in range(_TC_SLOTS) if counts[i]}, last_ts, total
    finally:
        free(keys)
        free(counts)
