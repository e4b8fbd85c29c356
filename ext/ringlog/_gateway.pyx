"""The gateway's per-order path in C: order frames decoded into engine command records and
published to the input ring in one claim per read; engine output records routed to their
sessions and encoded as protocol frames; each session's resend store of answer frames.

::

    socket read ─► CommandBatch.scan: the leading NewOrder/Cancel/Modify frames whose fields
        │          are in range and whose seqs follow on, as rl_command records (no object
        │          per field; any other frame stops the scan: the protocol's decoder and the
        │          per-message path take it from there)
        ▼ Gateway.take_orders: the session rules for the batch (seq, rate, open orders,
        │                      in-flight window), then CommandBatch.publish: one claim
    input ring (correlation = session << 40 | seq, dedup key = (session, seq))

    output ring slots (one bytes block per batch, on the gateway's loop thread)
        │ Router.drain: per slot in C: header; unwatched market data and control records
        │ skipped without an object
        ▼
    route: correlation -> requesting session, account -> its sessions, drop copies,
           subscribers; live orders for the open-orders limit
        │ one msgpack frame (bytes) per delivery, written in C from the record
        ├──────────────────────────────► Connection.send_frame (one write per flush)
        └─ seq != 0 ──► ResendStore.record(seq, frame)  (frames, within a byte budget)

The routing rules (who hears which report with which seq, the other account's order ids
hidden, live orders) live here only: ``ringlog.gateway.session.SessionTable.route`` decodes
these frames into the protocol's Structs for the rare callers (the rebuild at a restart, the
report replay, tests). Frames are byte for byte what msgspec writes for the same Struct (a
test compares them), so a client cannot tell which path answered.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport INT64_MIN, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec

from collections.abc import Mapping

from ringlog._ring cimport RL_CLOSED, Ring
from ringlog._wire cimport (
    RL_FLAG_POST_ONLY,
    put_int,
    put_len,
    put_str,
    rl_command,
    rl_l1,
    rl_l2_head,
    rl_l2_level,
    rl_report,
    rl_trade,
)
from ringlog.includes.event cimport RL_HEADER_SIZE, rl_header

from ringlog.engine.records import CancelReason, RejectReason
from ringlog.errors import RingClosedError
from ringlog.events import CONTROL_BASE as _CONTROL_BASE
from ringlog.events import TYPE_BREAKER_TRIPPED as _TYPE_BREAKER_TRIPPED
from ringlog.gateway.protocol import Ack, Error, ErrorCode, encode_frame

# The resend store's accounting, in bytes: a kept message counts ANSWER_COST, a kept seq
# SEQ_COST more (docs/protocol.md, "Memory": the budget a session's answers are held to).
ANSWER_COST = 160
SEQ_COST = 200

cdef enum:
    SEQ_BITS = 40
    ORDER_BITS = 32
    FRAME_MAX = 256                  # the largest frame written here (a Report: ~130 bytes)
    # engine output type ids (records.Report)
    R_ACCEPTED = 201
    R_REJECTED = 202
    R_TRADE = 203
    R_CANCELLED = 204
    R_MODIFIED = 205
    R_RESTED = 206
    R_ORDER_INFO = 207
    R_OPEN_ORDERS_END = 208
    R_L1 = 210
    R_L2 = 211
    SMALL_IDS = 1 << 16              # session ids up to this are found by list index
    # server message tags (protocol.py); a test checks the frames against msgspec's
    T_REPORT = 67
    T_MARKET_DATA = 70
    T_ORDER_INFO = 71
    T_OPEN_ORDERS_END = 72
    T_ACK = 66

cdef int64_t SEQ_MASK = (<int64_t>1 << SEQ_BITS) - 1
cdef uint64_t ORDER_MASK = (<uint64_t>1 << ORDER_BITS) - 1
cdef uint32_t CONTROL_BASE = _CONTROL_BASE
cdef uint32_t TYPE_BREAKER_TRIPPED = _TYPE_BREAKER_TRIPPED
cdef int64_t C_ANSWER = ANSWER_COST
cdef int64_t C_SEQ = SEQ_COST
# the gateway's settle: soon after commands are published or progress, backing off to
# SETTLE_MAX_S while nothing moves (ringlog.gateway.server imports it)
SETTLE_S = 0.0002
cdef double SETTLE_MAX_S = 0.05


cdef inline int64_t client_id(uint64_t eid, uint32_t account) noexcept nogil:
    """The wire order id of an engine order id (hidden, 0, if another account's)."""
    return <int64_t>(eid & ORDER_MASK) if (eid >> ORDER_BITS) == account else 0


cdef Py_ssize_t put_report(uint8_t* buf, const report_t* r, int64_t seq) noexcept nogil:
    """Writes the Report frame of ``r`` with ``seq`` at ``buf`` (FRAME_MAX bytes at most);
    returns its length."""
    cdef Py_ssize_t n = 6
    buf[4] = 0x9c                                  # [67, seq, kind, ... rseq]: 12 items
    buf[5] = T_REPORT
    n += put_int(buf + n, seq)
    n += put_str(buf + n, r.kind, r.kind_len)
    n += put_int(buf + n, r.order_id)
    n += put_str(buf + n, r.reason, r.reason_len)
    n += put_int(buf + n, r.price)
    n += put_int(buf + n, r.qty)
    n += put_int(buf + n, r.remaining)
    n += put_int(buf + n, r.maker_id)
    n += put_int(buf + n, r.taker_id)
    n += put_int(buf + n, r.symbol)
    n += put_int(buf + n, r.rseq)
    put_len(buf, n - 4)
    return n


cdef Py_ssize_t put_market_data(uint8_t* buf, uint32_t symbol, int64_t level, int64_t bp,
                                int64_t bq, int64_t ap, int64_t aq) noexcept nogil:
    """Writes a MarketData frame at ``buf``; returns its length."""
    cdef Py_ssize_t n = 6
    buf[4] = 0x97                                  # [70, symbol, level, bid, bid qty, ask, qty]
    buf[5] = T_MARKET_DATA
    n += put_int(buf + n, symbol)
    n += put_int(buf + n, level)
    n += put_int(buf + n, bp)
    n += put_int(buf + n, bq)
    n += put_int(buf + n, ap)
    n += put_int(buf + n, aq)
    put_len(buf, n - 4)
    return n


cdef struct rs_record:              # a frame's header in the arena; the frame follows
    int64_t next                        # arena offset of its seq's next frame (-1: last)
    int32_t size                        # bytes of the record, header and padding included
    int32_t length                      # bytes of the frame; -1: dead (evicted, or padding)


cdef enum:
    RS_ALIGN = 16
    RS_FIRST_ARENA = 16 << 10           # bytes at first; doubles up to the budget
    RS_MIN_ARENA = 4 << 10              # at least (a tiny budget still keeps an error frame)
    RS_FIRST_ENTRIES = 64


cdef inline int64_t rs_size(Py_ssize_t n) noexcept nogil:
    return (<int64_t>sizeof(rs_record) + n + RS_ALIGN - 1) & ~(<int64_t>RS_ALIGN - 1)


cdef inline uint64_t rs_hash(int64_t seq) noexcept nogil:
    return <uint64_t>seq * <uint64_t>0x9E3779B97F4A7C15


cdef class ResendStore:
    """One session's answers kept for resends, as the frames that were sent: at most
    ``window`` seqs and ``budget`` bytes by the accounting of docs/protocol.md ("Memory": a
    kept message counts ANSWER_COST, a kept seq SEQ_COST more). The oldest seqs go first; a
    seq whose answers alone pass the budget keeps one memory_limit Error frame instead (it was
    answered once; a resend says to ask again).

    The frames live in one byte arena per session used as a ring (no Python object per
    frame or seq), which never exceeds the budget in real bytes either (at least 4 KiB)::

        arena  [rec|frame][rec|frame][pad ][rec|frame] ...   rec: next, size, length
                 ▲ rpos (oldest)          wraps at the end ─►   ▲ wpos (next write)
        entries (ring, oldest first): seq, head, tail, frames  ◄─ hash: seq -> entry
        a seq's frames: head ─next─► ... ─next─► tail (interleaved with other seqs')

    Not thread-safe (the gateway's loop)."""

    def __cinit__(self, Py_ssize_t window, int64_t budget):
        if window < 1 or budget < 1:
            raise ValueError(f"window and budget must be >= 1, got {window}, {budget}")
        self.window = window
        self.budget = budget
        # real bytes never past the budget (rounded to the record alignment), at least 4 KiB
        self._cap_max = max(<int64_t>RS_MIN_ARENA,
                            (budget + RS_ALIGN - 1) & ~(<int64_t>RS_ALIGN - 1))
        self._cap = min(self._cap_max, <int64_t>RS_FIRST_ARENA)
        self._ecap = min(<int64_t>window, <int64_t>RS_FIRST_ENTRIES)
        self._max_seq = INT64_MIN
        self._hmask = 2 * RS_FIRST_ENTRIES - 1
        while self._hmask + 1 < 2 * self._ecap:
            self._hmask = 2 * self._hmask + 1
        self._arena = <char*>PyMem_Malloc(self._cap)
        self._entries = <rs_entry*>PyMem_Malloc(self._ecap * sizeof(rs_entry))
        self._hash = <int64_t*>PyMem_Malloc((self._hmask + 1) * sizeof(int64_t))
        if not self._arena or not self._entries or not self._hash:
            raise MemoryError()
        memset(self._hash, 0xff, (self._hmask + 1) * sizeof(int64_t))

    def __dealloc__(self):
        PyMem_Free(self._arena)
        PyMem_Free(self._entries)
        PyMem_Free(self._hash)

    # -- the seqs: entries in a ring, found by hash ------------------------------------------
    cdef rs_entry* _find(self, int64_t seq) noexcept:
        cdef uint64_t h = rs_hash(seq) & <uint64_t>self._hmask
        cdef int64_t k
        cdef rs_entry* e
        while True:
            k = self._hash[h]
            if k < 0:
                return NULL
            e = &self._entries[k % self._ecap]
            if e.seq == seq:
                return e
            h = (h + 1) & <uint64_t>self._hmask

    cdef void _hash_put(self, int64_t seq, int64_t k) noexcept:
        cdef uint64_t h = rs_hash(seq) & <uint64_t>self._hmask
        while self._hash[h] >= 0:
            h = (h + 1) & <uint64_t>self._hmask
        self._hash[h] = k

    cdef void _hash_del(self, int64_t seq, int64_t k) noexcept:
        # linear probing's backward-shift deletion (no tombstones) of entry number k (its
        # slot is the one holding k: no entry read per probe)
        cdef uint64_t m = <uint64_t>self._hmask, i = rs_hash(seq) & m, j, home
        while self._hash[i] != k:
            i = (i + 1) & m
        j = i
        while True:
            self._hash[i] = -1
            while True:
                j = (j + 1) & m
                if self._hash[j] < 0:
                    return
                home = rs_hash(self._entries[self._hash[j] % self._ecap].seq) & m
                # move j back to i unless its home lies cyclically in (i, j]
                if (i <= j and (home <= i or home > j)) or (i > j and home <= i and home > j):
                    break
            self._hash[i] = self._hash[j]
            i = j

    cdef int _grow_entries(self) except -1:
        cdef int64_t ecap = min(2 * self._ecap, <int64_t>self.window), k
        cdef int64_t hsize = self._hmask + 1
        cdef rs_entry* es = <rs_entry*>PyMem_Malloc(ecap * sizeof(rs_entry))
        cdef int64_t* hs
        if es == NULL:
            raise MemoryError()
        while hsize < 2 * ecap:
            hsize *= 2
        hs = <int64_t*>PyMem_Malloc(hsize * sizeof(int64_t))
        if hs == NULL:
            PyMem_Free(es)
            raise MemoryError()
        for k in range(self._efirst, self._efirst + self._ecount):
            es[k % ecap] = self._entries[k % self._ecap]
        PyMem_Free(self._entries)
        PyMem_Free(self._hash)
        self._entries, self._ecap = es, ecap
        self._hash, self._hmask = hs, hsize - 1
        memset(hs, 0xff, hsize * sizeof(int64_t))
        for k in range(self._efirst, self._efirst + self._ecount):
            self._hash_put(es[k % ecap].seq, k)
        return 0

    cdef rs_entry* _add(self, int64_t seq) except NULL:
        cdef rs_entry* e
        cdef int64_t k
        if self._ecount == self.window:
            self._evict()
        elif self._ecount == self._ecap:
            self._grow_entries()
        k = self._efirst + self._ecount
        self._ecount += 1
        e = &self._entries[k % self._ecap]
        e.seq = seq
        e.head = e.tail = -1
        e.frames = 0
        e.overflowed = False
        self._hash_put(seq, k)
        if seq > self._max_seq:
            self._max_seq = seq
        self.kept += C_SEQ
        return e

    cdef void _evict(self) noexcept:
        cdef rs_entry* e = &self._entries[self._efirst % self._ecap]
        self._free_frames(e)
        self.kept -= C_SEQ + C_ANSWER * e.frames
        self._hash_del(e.seq, self._efirst)
        self._efirst += 1
        self._ecount -= 1
        self.evicted += 1

    # -- the frames: records in the arena ---------------------------------------------------
    cdef void _free_frames(self, rs_entry* e) noexcept:
        cdef int64_t off = e.head
        cdef rs_record* r
        while off >= 0:
            r = <rs_record*>(self._arena + off)
            r.length = -1
            off = r.next
        e.head = e.tail = -1
        self._reclaim()

    cdef void _reclaim(self) noexcept:
        cdef rs_record* r
        while self._rpos < self._wpos:
            r = <rs_record*>(self._arena + self._rpos % self._cap)
            if r.length >= 0:
                return
            self._rpos += r.size

    cdef int _grow_arena(self, int64_t need) except -1:
        """Doubles the arena (up to the budget) so ``need`` more bytes fit, keeping the
        records in ring order from offset 0 (their links moved by the same shift)."""
        cdef int64_t cap = self._cap, used = self._wpos - self._rpos, start, k
        cdef int64_t old = self._cap
        cdef char* a
        cdef rs_record* r
        cdef rs_entry* e
        while cap - used < need + RS_ALIGN and cap < self._cap_max:
            cap = min(2 * cap, self._cap_max)
        if cap == old:
            return 0
        a = <char*>PyMem_Malloc(cap)
        if a == NULL:
            raise MemoryError()
        start = self._rpos % old
        if start + used <= old:
            memcpy(a, self._arena + start, used)
        else:
            memcpy(a, self._arena + start, old - start)
            memcpy(a + old - start, self._arena, used - (old - start))
        PyMem_Free(self._arena)
        self._arena = a
        self._cap = cap
        self._rpos, self._wpos = 0, used
        k = 0
        while k < used:                            # an offset p moves to (p - start) mod old
            r = <rs_record*>(a + k)
            if r.length >= 0 and r.next >= 0:
                r.next = (r.next - start + old) % old
            k += r.size
        for k in range(self._efirst, self._efirst + self._ecount):
            e = &self._entries[k % self._ecap]
            if e.head >= 0:
                e.head = (e.head - start + old) % old
                e.tail = (e.tail - start + old) % old
        return 0

    cdef int _append(self, rs_entry* e, const char* frame, Py_ssize_t n) except -1:
        """Writes one frame of ``e`` at the ring's head, evicting the oldest seqs (never
        ``e``) while it does not fit; returns 1, or 0 if it cannot fit beside ``e``'s own
        frames (nothing written then)."""
        cdef int64_t size = rs_size(n), pad, off
        cdef rs_record* r
        if self._wpos - self._rpos + size + RS_ALIGN > self._cap:
            self._grow_arena(size)
        while True:
            if self._rpos == self._wpos:           # empty: start again at offset 0
                self._rpos = self._wpos = 0
            pad = self._cap - self._wpos % self._cap
            if pad >= size:
                pad = 0
            if self._cap - (self._wpos - self._rpos) >= size + pad:
                break
            if &self._entries[self._efirst % self._ecap] == e:
                return 0
            self._evict()
        if pad:                                    # the rest of the arena: a dead record
            r = <rs_record*>(self._arena + self._wpos % self._cap)
            r.size = <int32_t>pad
            r.length = -1
            self._wpos += pad
            self._reclaim()
        off = self._wpos % self._cap
        r = <rs_record*>(self._arena + off)
        r.next = -1
        r.size = <int32_t>size
        r.length = <int32_t>n
        memcpy(self._arena + off + sizeof(rs_record), frame, n)
        self._wpos += size
        if e.tail >= 0:
            (<rs_record*>(self._arena + e.tail)).next = off
        else:
            e.head = off
        e.tail = off
        e.frames += 1
        return 1

    cdef void _overflow(self, rs_entry* e) except *:
        # this seq alone is over the budget (a large OpenOrders reply): one error frame
        cdef bytes err = encode_frame(Error(
            ErrorCode.MEMORY_LIMIT, f"the answers of seq {e.seq} passed this session's "
            f"resend budget ({self.budget} bytes): not kept, ask again", e.seq))
        self._free_frames(e)
        self.kept -= C_ANSWER * e.frames
        e.frames = 0
        e.overflowed = True
        if self._append(e, err, len(err)):
            self.kept += C_ANSWER

    cdef int record_frame(self, int64_t seq, const char* frame, Py_ssize_t n) except -1:
        """Keeps one answer frame of ``seq`` (C callers: the router)."""
        cdef rs_entry* e = NULL
        # a seq's answers come together, and new seqs come in order: the newest entry, or a
        # seq past every seq ever kept, without a probe of the hash (a cache miss or more)
        if self._ecount:
            e = &self._entries[(self._efirst + self._ecount - 1) % self._ecap]
            if e.seq != seq:
                e = self._find(seq) if seq <= self._max_seq else NULL
        if e == NULL:
            e = self._add(seq)
        elif e.overflowed:
            return 0
        if not self._append(e, frame, n):
            self._overflow(e)
            return 0
        self.kept += C_ANSWER
        while self.kept > self.budget:
            if &self._entries[self._efirst % self._ecap] != e:
                self._evict()
            else:
                self._overflow(e)
                break
        return 0

    def record(self, int64_t seq, const uint8_t[::1] frame):
        """Keeps one answer frame of ``seq``."""
        cdef const char* p = b""
        if frame.shape[0]:
            p = <const char*>&frame[0]
        self.record_frame(seq, p, frame.shape[0])

    cdef bytes _join(self, rs_entry* e, Py_ssize_t most):
        cdef int64_t off = e.head, total = 0
        cdef Py_ssize_t k = 0
        cdef rs_record* r
        while off >= 0 and k != most:
            r = <rs_record*>(self._arena + off)
            total += r.length
            off = r.next
            k += 1
        out = PyBytes_FromStringAndSize(NULL, total)
        cdef char* p = PyBytes_AS_STRING(out)
        off = e.head
        while total:
            r = <rs_record*>(self._arena + off)
            memcpy(p, self._arena + off + sizeof(rs_record), r.length)
            p += r.length
            total -= r.length
            off = r.next
        return out

    def get(self, int64_t seq, Py_ssize_t most=-1):
        """The kept frames of ``seq`` (the first ``most`` of them; all with -1), one bytes."""
        cdef rs_entry* e = self._find(seq)
        return b"" if e == NULL else self._join(e, most)

    def count(self, int64_t seq):
        """How many frames ``seq`` keeps."""
        cdef rs_entry* e = self._find(seq)
        return 0 if e == NULL else e.frames

    @property
    def overflowed(self):
        """The kept seqs whose answers passed the budget (a memory_limit error kept)."""
        cdef int64_t k
        return {self._entries[k % self._ecap].seq
                for k in range(self._efirst, self._efirst + self._ecount)
                if self._entries[k % self._ecap].overflowed}

    @property
    def arena_bytes(self):
        """Bytes of the frame arena now (it grows by doubling up to the budget)."""
        return self._cap

    def __contains__(self, seq):
        return isinstance(seq, int) and -(1 << 63) <= seq < (1 << 63) and \
            self._find(seq) != NULL

    def __iter__(self):
        cdef int64_t k
        return iter([self._entries[k % self._ecap].seq
                     for k in range(self._efirst, self._efirst + self._ecount)])

    def __len__(self):
        return self._ecount


cdef inline int _append_out(Outbox ob, const char* f, Py_ssize_t n) except -1:
    cdef bytearray out = ob.out
    cdef Py_ssize_t k = PyByteArray_GET_SIZE(out)
    PyByteArray_Resize(out, k + n)
    memcpy(PyByteArray_AS_STRING(out) + k, f, n)
    return 0


cdef class Outbox:
    """What the router needs of one connection, as C fields: ``out``, the batch of frames
    written at its next flush; ``paused`` (market data to it is dropped); ``raw`` (msgpack:
    frames go out as they are; else ``conn.send_frame`` re-encodes them); ``queued`` (it is
    in the gateway's dirty set since its last flush). Not thread-safe (the gateway's loop)."""

    def __init__(self, conn):
        self.conn = conn
        self.out = bytearray()
        self.paused = False
        self.raw = True
        self.queued = False

    def queue(self, const uint8_t[::1] frames, set dirty):
        """Appends msgpack frames to the output batch (the connection joins ``dirty``)."""
        if frames.shape[0]:
            _append_out(self, <const char*>&frames[0], frames.shape[0])
        if not self.queued:
            self.queued = True
            dirty.add(self.conn)


cdef class Inflight:
    """A session's in-flight commands, oldest first: each one's seq, its input's journal
    sequence (its cause, -1 until published) and whether it is a new order (counted against
    the open-orders limit until answered). A ring of C structs that grows by doubling (the
    session's reading pauses at ``max_inflight``, so it stays that size): the gateway's
    entry, publish, settle and completion of a batch touch no Python object per command.

    Seqs enter in increasing order (a session's seqs are taken in order). The deque API the
    rare callers read is kept: ``len``, ``[i]``, iteration, ``in``, ``append``, ``extend``,
    ``popleft``, ``remove``, ``clear``. Not thread-safe (the gateway's loop)."""

    def __cinit__(self):
        self._cap = 16
        self._e = <if_entry*>PyMem_Malloc(self._cap * sizeof(if_entry))
        if self._e == NULL:
            raise MemoryError()
        self._head = 0
        self._count = 0
        self.news = 0

    def __dealloc__(self):
        PyMem_Free(self._e)

    cdef if_entry* _at(self, int64_t i) noexcept:
        return &self._e[(self._head + i) & (self._cap - 1)]

    cdef int _grow(self) except -1:
        cdef if_entry* e = <if_entry*>PyMem_Malloc(2 * self._cap * sizeof(if_entry))
        cdef int64_t i
        if e == NULL:
            raise MemoryError()
        for i in range(self._count):
            e[i] = self._at(i)[0]
        PyMem_Free(self._e)
        self._e = e
        self._cap *= 2
        self._head = 0
        return 0

    cdef int push(self, int64_t seq, bint is_new) except -1:
        cdef if_entry* e
        if self._count and seq <= self._at(self._count - 1).seq:
            raise ValueError(f"in-flight seq {seq} is not above the last one "
                             f"({self._at(self._count - 1).seq})")
        if self._count == self._cap:
            self._grow()
        e = self._at(self._count)
        e.seq = seq
        e.cause = -1
        e.is_new = is_new
        self._count += 1
        self.news += is_new
        return 0

    cdef int64_t _index(self, int64_t seq) noexcept:
        # binary search (seqs increase): the position of seq, or -1
        cdef int64_t lo = 0, hi = self._count - 1, mid, x
        while lo <= hi:
            mid = (lo + hi) >> 1
            x = self._at(mid).seq
            if x == seq:
                return mid
            if x < seq:
                lo = mid + 1
            else:
                hi = mid - 1
        return -1

    cdef int64_t first(self) noexcept:
        """The oldest in-flight seq, or -1 if none."""
        return self._at(0).seq if self._count else -1

    cdef int64_t complete(self, int64_t seq) noexcept:
        # pops every seq <= seq; returns how many of them were new orders
        cdef int64_t n = 0
        cdef if_entry* e
        while self._count:
            e = self._at(0)
            if e.seq > seq:
                break
            n += e.is_new
            self._head = (self._head + 1) & (self._cap - 1)
            self._count -= 1
        self.news -= n
        return n

    def enter(self, int64_t first, int64_t n, news=()):
        """Seqs ``first .. first + n - 1`` go in flight, those in ``news`` (ascending) as new
        orders; returns how many new orders entered."""
        cdef int64_t i, k = 0, nxt = -1
        it = iter(news)
        for x in it:
            nxt = x
            break
        for i in range(first, first + n):
            if i == nxt:
                self.push(i, True)
                k += 1
                nxt = -1
                for x in it:
                    nxt = x
                    break
            else:
                self.push(i, False)
        if nxt != -1:
            raise ValueError(f"new order seq {nxt} is not among {first}..{first + n - 1} "
                             "or not ascending")
        return k

    def published(self, int64_t first, int64_t n, int64_t cause):
        """Seqs ``first .. first + n - 1`` are in the input ring from journal sequence
        ``cause`` on, one each; returns how many of them are in flight (those get their
        cause; one not in flight - answered, halted - has nothing to complete)."""
        return self._published(first, n, cause)

    cdef int64_t _published(self, int64_t first, int64_t n, int64_t cause) noexcept:
        cdef int64_t lo = 0, hi = self._count, mid, k = 0, seq
        cdef if_entry* e
        while lo < hi:  # the first entry at or above first (seqs increase)
            mid = (lo + hi) >> 1
            if self._at(mid).seq < first:
                lo = mid + 1
            else:
                hi = mid
        while lo < self._count:
            e = self._at(lo)
            seq = e.seq
            if seq >= first + n:
                break
            e.cause = cause + (seq - first)
            k += 1
            lo += 1
        return k

    def cause(self, int64_t seq):
        """The journal sequence of an in-flight seq's input (-1: not published yet)."""
        cdef int64_t i = self._index(seq)
        if i < 0:
            raise KeyError(seq)
        return self._at(i).cause

    def settle(self, int64_t done):
        """Completes the oldest seqs whose input (journal sequence) is at or below ``done``,
        up to the first not published or not done; returns ``(last seq completed or 0, new
        orders among them)``."""
        cdef int64_t last = 0
        cdef int64_t n = self._settle(done, &last)
        return last, n

    cdef int64_t _settle(self, int64_t done, int64_t* last) noexcept:
        cdef int64_t n = 0
        cdef if_entry* e
        last[0] = 0
        while self._count:
            e = self._at(0)
            if e.cause < 0 or e.cause > done:
                break
            last[0] = e.seq
            n += e.is_new
            self._head = (self._head + 1) & (self._cap - 1)
            self._count -= 1
        self.news -= n
        return n

    def complete_through(self, int64_t seq):
        """Pops the seqs up to ``seq`` (answered); returns how many were new orders."""
        return self.complete(seq)

    def append(self, int64_t seq, bint is_new=False):
        """One seq goes in flight (above every one in flight)."""
        self.push(seq, is_new)

    def extend(self, seqs):
        """Seqs go in flight, in order (not new orders: ``enter`` marks those)."""
        for x in seqs:
            self.push(x, False)

    def popleft(self):
        """Removes and returns the oldest seq."""
        if not self._count:
            raise IndexError("pop from an empty in-flight ring")
        cdef int64_t seq = self._at(0).seq
        self.complete(seq)
        return seq

    def remove(self, int64_t seq):
        """Takes ``seq`` out of flight wherever it is (a command never published); returns
        whether it was a new order. ValueError if it is not in flight."""
        cdef int64_t i = self._index(seq), j
        if i < 0:
            raise ValueError(f"seq {seq} is not in flight")
        cdef bint was_new = self._at(i).is_new
        for j in range(i, self._count - 1):
            self._at(j)[0] = self._at(j + 1)[0]
        self._count -= 1
        self.news -= was_new
        return was_new

    def clear(self):
        """Empties the ring."""
        self._head = 0
        self._count = 0
        self.news = 0

    def is_new(self, int64_t seq):
        """Whether in-flight ``seq`` is a new order (False if it is not in flight)."""
        cdef int64_t i = self._index(seq)
        return i >= 0 and self._at(i).is_new

    def __len__(self):
        return self._count

    def __getitem__(self, Py_ssize_t i):
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError("in-flight index out of range")
        return self._at(i).seq

    def __contains__(self, seq):
        return isinstance(seq, int) and self._index(seq) >= 0

    def __iter__(self):
        return iter([self._at(i).seq for i in range(self._count)])

    def __repr__(self):
        return f"Inflight({list(self)})"


class CausesView(Mapping):
    """A read-only view of a session's published in-flight seqs: ``seq -> journal sequence
    of its input`` (for the rare callers; the gateway uses ``Inflight`` directly)."""

    def __init__(self, Inflight ring):
        self._ring = ring

    def __getitem__(self, seq):
        c = self._ring.cause(seq) if seq in self._ring else -1
        if c < 0:
            raise KeyError(seq)
        return c

    def __iter__(self):
        r = self._ring
        return iter([q for q in r if r.cause(q) >= 0])

    def __len__(self):
        return sum(1 for _ in self)


cdef inline uint64_t _order_hash(uint64_t x) noexcept nogil:
    x *= <uint64_t>0x9E3779B97F4A7C15
    return x ^ (x >> 29)


cdef class OrderSet:
    """An account's live order ids (the engine's ids, ``account << 32 | order id``: never 0)
    for the open-orders limit, as an open-addressing hash set of uint64 (linear probing,
    deletion by backward shift: no tombstones), so the router's add and discard per report
    make no int object and no Python set operation. ``len``, ``in``, iteration, ``add``,
    ``discard`` and ``clear`` for the rare callers. Not thread-safe (the gateway's loop)."""

    def __cinit__(self):
        self._mask = 15
        self._count = 0
        self._slots = <uint64_t*>PyMem_Malloc(16 * sizeof(uint64_t))
        if self._slots == NULL:
            raise MemoryError()
        memset(self._slots, 0, 16 * sizeof(uint64_t))

    def __dealloc__(self):
        PyMem_Free(self._slots)

    cdef int64_t _pos(self, uint64_t x) noexcept:
        # the slot holding x, or the empty slot where it would go (the table is never full)
        cdef int64_t i = <int64_t>(_order_hash(x) & <uint64_t>self._mask)
        while self._slots[i] != 0 and self._slots[i] != x:
            i = (i + 1) & self._mask
        return i

    cdef int _grow(self) except -1:
        cdef uint64_t* old = self._slots
        cdef int64_t n = self._mask + 1, i
        cdef uint64_t* grown = <uint64_t*>PyMem_Malloc(2 * n * sizeof(uint64_t))
        if grown == NULL:
            raise MemoryError()
        memset(grown, 0, 2 * n * sizeof(uint64_t))
        self._slots = grown
        self._mask = 2 * n - 1
        for i in range(n):
            if old[i] != 0:
                self._slots[self._pos(old[i])] = old[i]
        PyMem_Free(old)
        return 0

    cdef bint has(self, uint64_t x) noexcept:
        """Whether ``x`` is in the set."""
        return x != 0 and self._slots[self._pos(x)] == x

    cdef int put(self, uint64_t x) except -1:
        """Adds ``x`` (not 0)."""
        cdef int64_t i
        if 2 * (self._count + 1) > self._mask + 1:  # at most half full: short probes
            self._grow()
        i = self._pos(x)
        if self._slots[i] == 0:
            self._slots[i] = x
            self._count += 1
        return 0

    cdef void drop(self, uint64_t x) noexcept:
        """Removes ``x`` if present; the entries after it in its probe run move back."""
        cdef int64_t i, j, k
        if x == 0:
            return
        i = self._pos(x)
        if self._slots[i] == 0:
            return
        j = i
        while True:
            j = (j + 1) & self._mask
            if self._slots[j] == 0:
                break
            k = <int64_t>(_order_hash(self._slots[j]) & <uint64_t>self._mask)
            # the entry at j stays if its home k lies cyclically in (i, j]
            if (i < k <= j) if i <= j else (i < k or k <= j):
                continue
            self._slots[i] = self._slots[j]
            i = j
        self._slots[i] = 0
        self._count -= 1

    def add(self, uint64_t order_id):
        """Adds an engine order id (ValueError for 0, which is never one)."""
        if order_id == 0:
            raise ValueError("order id 0 is not an engine order id")
        self.put(order_id)

    def discard(self, uint64_t order_id):
        """Removes an engine order id if it is there."""
        self.drop(order_id)

    def clear(self):
        """Empties the set."""
        memset(self._slots, 0, (self._mask + 1) * sizeof(uint64_t))
        self._count = 0

    def __len__(self):
        return self._count

    def __contains__(self, x):
        return isinstance(x, int) and 0 < x < (1 << 64) and self.has(x)

    def __iter__(self):
        return iter([self._slots[i] for i in range(self._mask + 1) if self._slots[i] != 0])

    def __repr__(self):
        return f"OrderSet({sorted(self)})"


cdef class SessionCore:
    """What the router needs of a session, as C fields: ``id``, ``account``, ``store`` (its
    answers kept for resends), ``conn`` (the connection while one is attached; setting it
    also gives the router that connection's Outbox), ``inflight`` (the commands awaiting
    their first report, each with its cause and whether it is a new order: an ``Inflight``
    ring; ``causes`` and ``news`` are read-only views of it), ``depth`` (market data
    subscriptions: symbol -> depth) and ``live`` (the account's live order ids, shared by
    its sessions). ``ringlog.gateway.session.Session`` adds the session rules. Not
    thread-safe (the gateway's loop)."""

    def __init__(self, int64_t id, uint32_t account, ResendStore store):
        self.id = id
        self.account = account
        self.store = store
        self._conn = None
        self._outbox = None
        self.inflight = Inflight()
        self.depth = {}
        self.live = None
        self.last_seen = self.acked = self.errors = 0
        self.tokens = self.token_time = 0.0

    cdef int64_t _tokens(self, double rate, int64_t burst, double now, int64_t n,
                         bint take) noexcept:
        # the bucket refilled up to now (at most burst): how many of n fit; with take the
        # refill and the n taken are kept (without: a look that changes nothing)
        cdef double t = self.tokens + (now - self.token_time) * rate
        cdef int64_t k
        if not t < burst:
            t = <double>burst
        k = <int64_t>t
        if n < k:
            k = n
        if take:
            self.tokens = t - k
            self.token_time = now
        return k

    cdef int64_t _ack_target(self) noexcept:
        return self.inflight.first() - 1 if self.inflight._count else self.last_seen

    def ack_target(self):
        """The highest seq with everything at or below it answered."""
        return self._ack_target()

    def take_tokens(self, double rate, int64_t burst, double now, int64_t n):
        """Token bucket: how many of ``n`` messages fit the rate limit now (those are
        taken)."""
        return self._tokens(rate, burst, now, n, True)

    def take_token(self, double rate, int64_t burst, double now):
        """Token bucket: True if one more message fits the rate limit now."""
        return self._tokens(rate, burst, now, 1, True) == 1

    @property
    def causes(self):
        """In-flight seq -> its input's journal sequence, for the published ones (a view)."""
        return CausesView(self.inflight)

    @property
    def news(self):
        """The in-flight seqs that are new orders (a copy)."""
        r = self.inflight
        return frozenset(q for q in r if r.is_new(q))

    @property
    def conn(self):
        """The attached connection, or None."""
        return self._conn

    @conn.setter
    def conn(self, c):
        self._conn = c
        self._outbox = None if c is None else getattr(c, "outbox", None)


cdef int _mark_published(SessionCore s, int64_t first, int64_t n, int64_t cause,
                         set unsettled) except -1:
    s.inflight._published(first, n, cause)
    unsettled.add(s)
    return 0


def published(SessionCore s, int64_t first, int64_t n, int64_t cause, set unsettled):
    """Commands ``first .. first + n - 1`` of ``s`` are in the input ring from journal
    sequence ``cause`` on (one each, in order): they get their causes, and ``s`` joins
    ``unsettled`` (the sessions with commands in flight)."""
    _mark_published(s, first, n, cause, unsettled)


def settle(set unsettled, dict pending_new, int64_t done):
    """Completes the in-flight commands of the ``unsettled`` sessions whose input (journal
    sequence) is at or below ``done`` (``Inflight.settle``; their new orders leave
    ``pending_new``, a session with nothing left in flight leaves ``unsettled``); returns
    the sessions whose Ack may move."""
    cdef SessionCore s
    cdef int64_t last, left
    out = []
    for x in list(unsettled):
        s = <SessionCore?>x
        left = s.inflight._settle(done, &last)
        if left:
            pending_new[s.account] -= left
        if last:
            out.append(s)
        if not s.inflight._count:
            unsettled.discard(s)
    return out


cdef class ConnectionCore:
    """What the read path needs of a connection, as C fields (``GatewayCore.read`` reads
    and writes them without a dict lookup): ``gw``, ``decoder``, ``transport``, ``session``,
    ``outbox``, ``paused`` (why reading is paused; empty: it is not), ``reading``,
    ``closing``, ``owed_to``, ``resent``, ``logout_seq``, ``heard`` and ``partial_since``
    (``time.monotonic()`` seconds). ``ringlog.gateway.connection.Connection`` subclasses it
    and documents them. Not thread-safe (the gateway's loop)."""

    def flush(self):
        """Appends an Ack if the acknowledged seq moved, then writes everything queued (one
        ``transport.write``); a write buffer past ``max_buffered`` closes the connection
        as a slow consumer; a logout acked or a close asked for closes it after the write."""
        self._flush()

    cdef int _flush(self) except -1:
        cdef Outbox box = self.outbox
        cdef GatewayCore gw = <GatewayCore?>self.gw
        cdef SessionCore s
        cdef int64_t target
        cdef Py_ssize_t n, k
        cdef bytearray out
        cdef uint8_t ack[16]
        box.queued = False  # the router adds this connection to the dirty set again
        t = self.transport
        if t is None or t.is_closing():
            box.out = bytearray()  # aborted (slow consumer) or closed: nothing more goes out
            return 0
        if self.session is not None:
            s = <SessionCore>self.session
            if self.paused and "inflight" in self.paused and \
                    s.inflight._count <= gw._max_inflight // 2:
                self.resume("inflight")
            target = s._ack_target()
            if self.owed_to and target > self.resent:
                target = self.resent
            if target > s.acked:
                s.acked = target
                if box.raw:  # msgpack: [66, seq], as msgspec writes Ack(seq)
                    ack[4] = 0x92
                    ack[5] = T_ACK
                    k = 6 + put_int(ack + 6, target)
                    put_len(ack, k - 4)
                    _append_out(box, <const char*>ack, k)
                else:
                    (<object>self).encoder.append(box.out, Ack(target))
            if self.logout_seq and s.acked >= self.logout_seq:
                self.logout_seq = 0
                self.closing = True
        out = box.out
        n = PyByteArray_GET_SIZE(out)
        if n:
            # the transport may keep the buffer it was given (uvloop does when the socket is
            # full): hand it over and start a new one, never clear or reuse it
            m = gw.metrics
            m.bytes_out += n
            t.write(out)
            box.out = bytearray()
            if t.get_write_buffer_size() > gw._max_buffered:
                # a slow consumer: its unread output would grow without bound
                m.slow_consumers += 1
                self.closing = True
                t.abort()
                return 0
        if self.closing:
            t.close()
        return 0


def complete_through(SessionCore s, int64_t seq):
    """Marks session ``s``'s in-flight seqs up to ``seq`` answered (a session's reports arrive
    in seq order, so a later seq's report completes earlier silent ones); returns how many
    new orders left flight."""
    return s.inflight.complete(seq)


cdef class Router:
    """Routes engine output records to sessions as frames; built over a SessionTable (its
    dicts are shared, not copied). ``route`` answers one record with ``[(session, seq,
    frame)]``; ``drain`` routes a block of output ring slots and delivers the frames. With
    ``effects`` a record also moves live orders and in-flight seqs (without: a replay of the
    journal, which must change nothing). Not thread-safe (the gateway's loop)."""

    def __init__(self, table):
        self.table = table
        self.by_id = table.by_id
        self.by_account = table.by_account
        self.live = table.live
        self.copiers = table.copiers
        self.subscribers = table.subscribers
        self.pending_new = table.pending_new
        # sessions are configured once: small ids find theirs by index, not by a dict
        top = max(self.by_id, default=0)
        self._by_sid = [self.by_id.get(i) for i in range(top + 1)] if top <= SMALL_IDS else None
        self._collect = None
        self._dirty = None
        # a reason this gateway does not know (a newer engine's) is kept as a number
        self.reasons = [f"reason_{i}".encode() for i in range(512)]
        for r in RejectReason:
            self.reasons[int(r)] = r.name.lower().encode()
        for r in CancelReason:
            self.reasons[256 + int(r)] = r.name.lower().encode()

    def route(self, uint32_t type_id, const uint8_t[::1] payload, int64_t corr,
              int64_t rseq=0, bint effects=True):
        """``[(session, seq, frame)]`` of one output record (``rseq``: the report seq of its
        first report, ``report_seq(out_seq)``)."""
        out = []
        cdef const char* p = b""
        if payload.shape[0]:
            p = <const char*>&payload[0]
        self._collect = out
        try:
            self._route(type_id, p, payload.shape[0], corr, rseq, effects)
        finally:
            self._collect = None
        return out

    def drain(self, bytes block, Py_ssize_t slot_size, int64_t rseq0, set dirty):
        """Routes a block of output ring slots (``slot_size`` bytes each: header, payload)
        whose first record makes report seq ``rseq0``: each frame is written once, in C,
        kept for resends if it answers a seq (``ResendStore``) and appended to its session's
        connection's output batch (``Outbox``; market data to a paused one is dropped: a
        later update replaces it), which joins ``dirty``. Returns ``(slots, reports,
        dropped, trip)``: ``trip`` is the cause (input journal sequence) of the first
        breaker-tripped record, or -1."""
        cdef const char* base = PyBytes_AS_STRING(block)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(block), pos = 0, i = 0
        cdef const rl_header* h
        cdef uint32_t symbol
        cdef int64_t trip = -1
        if slot_size <= RL_HEADER_SIZE or n % slot_size:
            raise ValueError(f"a block of {n} bytes is not whole slots of {slot_size}")
        subscribers = self.subscribers
        self.reports = self.dropped = 0
        self._dirty = dirty
        try:
            while pos < n:
                h = <const rl_header*>(base + pos)
                if h.length > <uint32_t>(slot_size - RL_HEADER_SIZE):
                    raise ValueError(f"slot {i}: payload length {h.length} exceeds the slot "
                                     f"({slot_size} bytes)")
                if h.type_id == TYPE_BREAKER_TRIPPED and trip < 0:
                    trip = h.producer_seq
                if (h.type_id == R_L1 or h.type_id == R_L2) and h.length >= 4:
                    memcpy(&symbol, <const char*>h + RL_HEADER_SIZE, 4)
                    # nobody watches: no object made
                    if not subscribers or not subscribers.get(symbol):
                        pos += slot_size
                        i += 1
                        continue
                self._route(h.type_id, <const char*>h + RL_HEADER_SIZE, h.length,
                            h.correlation_id, rseq0 + 2 * i, True)
                pos += slot_size
                i += 1
        finally:
            self._dirty = None
        return i, self.reports, self.dropped, trip

    cdef int _emit(self, object s, int64_t seq, const uint8_t* f, Py_ssize_t n,
                   bint md) except -1:
        """Delivers one frame to session ``s``: collected (``route``), or kept for resends
        and queued on its connection (``drain``)."""
        cdef SessionCore sc
        cdef Outbox ob
        if self._collect is not None:
            self._collect.append((s, seq, PyBytes_FromStringAndSize(<const char*>f, n)))
            return 0
        sc = <SessionCore>s
        self.reports += 1
        if seq:
            sc.store.record_frame(seq, <const char*>f, n)
        ob = sc._outbox
        if ob is None:
            return 0
        if md and ob.paused:
            self.dropped += 1
            return 0
        if ob.raw:
            _append_out(ob, <const char*>f, n)
        else:
            ob.conn.send_frame(PyBytes_FromStringAndSize(<const char*>f, n))
        if not ob.queued:  # with seq: the Ack may move even with nothing else to say
            ob.queued = True
            self._dirty.add(ob.conn)
        return 0

    cdef int _route(self, uint32_t type_id, const char* p, Py_ssize_t n, int64_t corr,
                    int64_t rseq, bint effects) except -1:
        cdef int64_t sid, seq, left
        cdef Inflight fl
        cdef rl_report r
        cdef rl_trade t
        cdef report_t rep
        cdef bytes name
        cdef OrderSet live
        cdef uint8_t buf[FRAME_MAX]
        if type_id >= CONTROL_BASE:
            # the processor's own outputs (breaker tripped/closed) carry the correlation of
            # the input they followed; they are not the engine's answer to it
            return 0
        sid = corr >> SEQ_BITS
        seq = corr & SEQ_MASK
        if not sid:
            req = None
        elif self._by_sid is not None:
            req = self._by_sid[sid] if sid < len(self._by_sid) else None
        else:
            req = self.by_id.get(sid)
        if effects and req is not None and seq:
            # a session's commands are journaled in seq order: a report of seq means every
            # earlier seq is done (even one that made no report); seq itself may have more
            fl = (<SessionCore>req).inflight
            if 0 <= fl.first() < seq:
                left = fl.complete(seq - 1)
                if left:
                    self.pending_new[(<SessionCore>req).account] -= left
        if R_ACCEPTED <= type_id <= R_RESTED and type_id != R_TRADE:
            _need(type_id, n, sizeof(rl_report))
            memcpy(&r, p, sizeof(rl_report))
            if effects:
                if req is not None and (<SessionCore>req).account == r.account:
                    live = (<SessionCore>req).live
                else:
                    live = self.live.get(r.account)
                if live is not None:
                    if type_id == R_RESTED or (type_id == R_MODIFIED and r.leaves > 0):
                        if r.order_id:
                            live.put(r.order_id)
                    elif type_id == R_CANCELLED or type_id == R_MODIFIED:
                        live.drop(r.order_id)
            _kind(&rep, type_id)
            if type_id == R_REJECTED or type_id == R_CANCELLED:
                name = self.reasons[(256 if type_id == R_CANCELLED else 0) + r.reason]
                rep.reason = PyBytes_AS_STRING(name)
                rep.reason_len = PyBytes_GET_SIZE(name)
            rep.order_id = client_id(r.order_id, r.account)
            rep.price = r.price
            rep.qty = r.qty
            rep.remaining = r.leaves
            rep.maker_id = rep.taker_id = 0
            rep.symbol = r.symbol
            rep.rseq = rseq
            self._to_account(req, seq, r.account, &rep)
        elif type_id == R_TRADE:
            _need(type_id, n, sizeof(rl_trade))
            memcpy(&t, p, sizeof(rl_trade))
            if effects:
                if not t.taker_leaves:
                    live = self.live.get(t.taker_account)
                    if live is not None:
                        live.drop(t.taker_id)
                if not t.maker_leaves:
                    live = self.live.get(t.maker_account)
                    if live is not None:
                        live.drop(t.maker_id)
            _kind(&rep, R_TRADE)
            rep.price = t.price
            rep.qty = t.qty
            rep.symbol = t.symbol
            rep.order_id = rep.taker_id = client_id(t.taker_id, t.taker_account)
            rep.maker_id = client_id(t.maker_id, t.taker_account)
            rep.remaining = t.taker_leaves
            rep.rseq = rseq
            self._to_account(req, seq, t.taker_account, &rep)
            rep.order_id = rep.maker_id = client_id(t.maker_id, t.maker_account)
            rep.taker_id = client_id(t.taker_id, t.maker_account)
            rep.remaining = t.maker_leaves
            rep.rseq = rseq + 1 if rseq else 0
            self._to_account(None, 0, t.maker_account, &rep)
        elif type_id == R_ORDER_INFO:
            _need(type_id, n, sizeof(rl_report))
            memcpy(&r, p, sizeof(rl_report))
            if req is None and sid == 0:  # the gateway's own query: seq is the account
                if effects and r.leaves > 0 and seq in self.live:
                    self.live[seq].add(r.order_id)
            elif req is not None:
                self._emit(req, seq, buf, _put_order_info(buf, seq, &r), False)
        elif type_id == R_OPEN_ORDERS_END:
            _need(type_id, n, sizeof(rl_report))
            memcpy(&r, p, sizeof(rl_report))
            if req is None and sid == 0:
                if effects:
                    self.table.rebuilding.discard(seq)
            elif req is not None:
                self._emit(req, seq, buf,
                           _put_open_orders_end(buf, seq, <int64_t>r.order_id), False)
        elif type_id == R_L1:
            self._route_l1(p, n)
        elif type_id == R_L2:
            self._route_l2(p, n)
        return 0

    cdef int _to_account(self, object req, int64_t seq, uint32_t account,
                         const report_t* rep) except -1:
        cdef uint8_t buf[FRAME_MAX]
        cdef Py_ssize_t k
        if req is not None and (<SessionCore>req).account == account:
            self._emit(req, seq, buf, put_report(buf, rep, seq), False)
            copiers = self.copiers.get(account) if self.copiers else None
            if copiers:
                # drop copies: the account's other sessions that subscribed hear it, unsolicited
                k = put_report(buf, rep, 0)
                for s in copiers:
                    if s is not req:
                        self._emit(s, 0, buf, k, False)
            return 0
        # not this session's command (a maker's fill, an operator's kill): every session of
        # the account hears it, unsolicited (seq 0)
        sessions = self.by_account.get(account)
        if sessions:
            k = put_report(buf, rep, 0)
            for s in sessions:
                self._emit(s, 0, buf, k, False)
        return 0

    cdef int _route_l1(self, const char* p, Py_ssize_t n) except -1:
        cdef rl_l1 m
        cdef uint8_t buf[FRAME_MAX]
        cdef Py_ssize_t k = 0
        _need(R_L1, n, sizeof(rl_l1))
        memcpy(&m, p, sizeof(rl_l1))
        subs = self.subscribers.get(m.symbol)
        if not subs:
            return 0
        for s in subs:
            if (<SessionCore>s).depth.get(m.symbol) == 1:
                if not k:
                    k = put_market_data(buf, m.symbol, 0, m.bid_price, m.bid_qty,
                                        m.ask_price, m.ask_qty)
                self._emit(s, 0, buf, k, True)
        return 0

    cdef int _route_l2(self, const char* p, Py_ssize_t n) except -1:
        cdef rl_l2_head head
        cdef rl_l2_level bid, ask
        cdef Py_ssize_t i, want
        cdef uint8_t buf[FRAME_MAX]
        _need(R_L2, n, sizeof(rl_l2_head))
        memcpy(&head, p, sizeof(rl_l2_head))
        _need(R_L2, n, sizeof(rl_l2_head) + 2 * head.depth * sizeof(rl_l2_level))
        subs = self.subscribers.get(head.symbol)
        if not subs:
            return 0
        for s in subs:
            want = (<SessionCore>s).depth.get(head.symbol, 0)
            if want <= 1:
                continue
            for i in range(min(want, <Py_ssize_t>head.depth)):
                memcpy(&bid, p + sizeof(rl_l2_head) + i * sizeof(rl_l2_level),
                       sizeof(rl_l2_level))
                memcpy(&ask, p + sizeof(rl_l2_head) + (head.depth + i) *
                       sizeof(rl_l2_level), sizeof(rl_l2_level))
                self._emit(s, 0, buf, put_market_data(buf, head.symbol, i, bid.price,
                                                      bid.qty, ask.price, ask.qty), True)
        return 0


cdef void _need(uint32_t type_id, Py_ssize_t n, Py_ssize_t size) except *:
    if n < size:
        raise ValueError(f"an output record of type {type_id} has {n} bytes, needs {size}")


cdef void _kind(report_t* rep, uint32_t type_id) noexcept:
    rep.reason = b""
    rep.reason_len = 0
    if type_id == R_ACCEPTED:
        rep.kind = b"accepted"
        rep.kind_len = 8
    elif type_id == R_REJECTED:
        rep.kind = b"rejected"
        rep.kind_len = 8
    elif type_id == R_TRADE:
        rep.kind = b"trade"
        rep.kind_len = 5
    elif type_id == R_CANCELLED:
        rep.kind = b"cancelled"
        rep.kind_len = 9
    elif type_id == R_MODIFIED:
        rep.kind = b"modified"
        rep.kind_len = 8
    else:
        rep.kind = b"rested"
        rep.kind_len = 6


cdef Py_ssize_t _put_order_info(uint8_t* buf, int64_t seq, const rl_report* r) noexcept:
    cdef Py_ssize_t n = 6
    buf[4] = 0x98                                  # [71, seq, id, symbol, side, price, qty, st]
    buf[5] = T_ORDER_INFO
    n += put_int(buf + n, seq)
    n += put_int(buf + n, client_id(r.order_id, r.account))
    n += put_int(buf + n, r.symbol)
    n += put_int(buf + n, r.side)
    n += put_int(buf + n, r.price)
    n += put_int(buf + n, r.leaves)
    n += put_str(buf + n, b"open" if r.leaves > 0 else b"done", 4)
    put_len(buf, n - 4)
    return n


cdef Py_ssize_t _put_open_orders_end(uint8_t* buf, int64_t seq, int64_t count) noexcept:
    cdef Py_ssize_t n = 6
    buf[4] = 0x93                                  # [72, seq, count]
    buf[5] = T_OPEN_ORDERS_END
    n += put_int(buf + n, seq)
    n += put_int(buf + n, count)
    put_len(buf, n - 4)
    return n


# -- input: order frames -> command records -> the input ring -------------------------------

cdef enum:
    T_NEW = 4
    T_CANCEL = 5
    T_MODIFY = 6
    C_NEW = 101
    C_CANCEL = 102
    C_MODIFY = 103


cdef inline bint get_int(const uint8_t* p, Py_ssize_t end, Py_ssize_t* pos,
                         int64_t* out) noexcept nogil:
    """A msgpack integer that fits int64 at ``pos[0]`` (advancing it); False for anything
    else (another type, a uint64 past int64, the end of the frame)."""
    cdef Py_ssize_t i = pos[0], w, k
    cdef uint8_t b
    cdef uint64_t u = 0
    if i >= end:
        return False
    b = p[i]
    if b < 0x80 or b >= 0xe0:
        out[0] = b if b < 0x80 else <int64_t>b - 256
        pos[0] = i + 1
        return True
    if 0xcc <= b <= 0xcf:
        w = 1 << (b - 0xcc)
    elif 0xd0 <= b <= 0xd3:
        w = 1 << (b - 0xd0)
    else:
        return False
    if i + 1 + w > end:
        return False
    for k in range(w):
        u = (u << 8) | p[i + 1 + k]
    if b == 0xcf and u >> 63:                      # a uint64 past int64: out of range
        return False
    if b >= 0xd0 and w < 8 and u >> (8 * w - 1):   # sign-extend a negative int8..int32
        u |= ~<uint64_t>0 << (8 * w)
    out[0] = <int64_t>u
    pos[0] = i + 1 + w
    return True


cdef inline bint get_range(const uint8_t* p, Py_ssize_t end, Py_ssize_t* pos, int64_t lo,
                           int64_t hi, int64_t* out) noexcept nogil:
    return get_int(p, end, pos, out) and lo <= out[0] <= hi


cdef bint parse_order(const uint8_t* p, Py_ssize_t q, Py_ssize_t end, int64_t want_seq,
                      uint32_t account, rl_command* c, uint32_t* kind) noexcept nogil:
    """One frame body as an engine command, if it is a complete NewOrder (all 10 fields),
    Cancel or Modify in msgpack whose every field is in the protocol's range and whose seq is
    ``want_seq`` (any seq if -1). False for anything else: the protocol's decoder handles
    that frame (and names what is wrong with it), so nothing is accepted here that it would
    refuse. The record is what the engine sees: ``account << 32 | order_id``, the seq in
    ``client_tag``."""
    cdef int64_t seq, oid, v
    cdef uint8_t head
    if end - q < 2:
        return False
    head = p[q]
    memset(c, 0, sizeof(rl_command))
    if head == 0x9b and p[q + 1] == T_NEW:
        kind[0] = C_NEW
    elif head == 0x93 and p[q + 1] == T_CANCEL:
        kind[0] = C_CANCEL
    elif head == 0x95 and p[q + 1] == T_MODIFY:
        kind[0] = C_MODIFY
    else:
        return False
    q += 2
    if not get_range(p, end, &q, 1, (<int64_t>1 << 40) - 1, &seq):
        return False
    if want_seq >= 0 and seq != want_seq:
        return False
    if not get_range(p, end, &q, 1, (<int64_t>1 << 32) - 1, &oid):
        return False
    c.order_id = (<uint64_t>account << ORDER_BITS) | <uint64_t>oid
    c.account = account
    c.client_tag = <uint64_t>seq
    if kind[0] == C_NEW:
        if not get_range(p, end, &q, 0, (<int64_t>1 << 32) - 1, &v):
            return False
        c.symbol = <uint32_t>v
        if not get_range(p, end, &q, 0, 255, &v):
            return False
        c.side = <uint8_t>v
        if not get_int(p, end, &q, &c.qty) or not get_int(p, end, &q, &c.price):
            return False
        if not get_range(p, end, &q, 0, 255, &v):
            return False
        c.order_type = <uint8_t>v
        if not get_range(p, end, &q, 0, 255, &v):
            return False
        c.tif = <uint8_t>v
        if q >= end or (p[q] != 0xc2 and p[q] != 0xc3):
            return False
        c.flags = RL_FLAG_POST_ONLY if p[q] == 0xc3 else 0
        q += 1
        if not get_range(p, end, &q, 0, 255, &v):
            return False
        c.stp = <uint8_t>v
    elif kind[0] == C_MODIFY:
        if not get_int(p, end, &q, &c.price) or not get_int(p, end, &q, &c.qty):
            return False
    return q == end                                # nothing after the last field


cdef class CommandBatch:
    """The engine commands decoded from the leading order frames of one read (at most
    ``capacity``): ``scan`` fills it, ``publish`` puts a prefix of it into the input ring.
    Reused from read to read; not thread-safe (the gateway's loop)."""

    def __cinit__(self, Py_ssize_t capacity):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._recs = PyMem_Malloc(capacity * sizeof(rl_command))
        self._kinds = <uint32_t*>PyMem_Malloc(capacity * sizeof(uint32_t))
        self._ends = <Py_ssize_t*>PyMem_Malloc(capacity * sizeof(Py_ssize_t))
        if not self._recs or not self._kinds or not self._ends:
            raise MemoryError()
        self.capacity = capacity

    def __dealloc__(self):
        PyMem_Free(self._recs)
        PyMem_Free(self._kinds)
        PyMem_Free(self._ends)

    def scan(self, const uint8_t[::1] data, Py_ssize_t max_frame, int64_t next_seq,
             Py_ssize_t most, uint32_t account):
        """Decodes the complete frames at the start of ``data`` while each is an order frame
        (``parse_order``) numbered ``next_seq``, ``next_seq + 1`` ... (any seq for the first
        if ``next_seq`` is -1), at most ``most`` (and ``capacity``); returns how many."""
        if data.shape[0] == 0:
            self.count = 0
            return 0
        return self._scan(&data[0], data.shape[0], max_frame, next_seq, most, account)

    cdef Py_ssize_t _scan(self, const uint8_t* p, Py_ssize_t n, Py_ssize_t max_frame,
                          int64_t next_seq, Py_ssize_t most, uint32_t account) noexcept:
        cdef Py_ssize_t pos = 0, k = 0, ln
        cdef rl_command* recs = <rl_command*>self._recs
        most = min(most, self.capacity)
        with nogil:
            while k < most and n - pos >= 4:
                ln = (<Py_ssize_t>p[pos] << 24) | (<Py_ssize_t>p[pos + 1] << 16) | \
                    (<Py_ssize_t>p[pos + 2] << 8) | p[pos + 3]
                if ln == 0 or ln > max_frame or n - pos - 4 < ln:
                    break
                if not parse_order(p, pos + 4, pos + 4 + ln,
                                   next_seq + k if next_seq >= 0 or k else -1, account,
                                   &recs[k], &self._kinds[k]):
                    break
                if k == 0:
                    self.first_seq = <int64_t>recs[0].client_tag
                    next_seq = self.first_seq
                pos += 4 + ln
                self._ends[k] = pos
                k += 1
        self.count = k
        return k

    def end(self, Py_ssize_t k):
        """Bytes of ``data`` taken by the first ``k`` commands' frames."""
        return self._ends[k - 1] if 0 < k <= self.count else 0

    def new_seqs(self, Py_ssize_t k):
        """The seqs of the new orders among the first ``k`` commands."""
        cdef rl_command* recs = <rl_command*>self._recs
        return [<int64_t>recs[i].client_tag for i in range(min(k, self.count))
                if self._kinds[i] == C_NEW]

    def prefix_with_news(self, Py_ssize_t k, Py_ssize_t news):
        """The longest prefix (at most ``k`` commands) holding at most ``news`` new orders."""
        return self._prefix_with_news(k, news)

    cdef Py_ssize_t _prefix_with_news(self, Py_ssize_t k, Py_ssize_t news) noexcept:
        cdef Py_ssize_t i, seen = 0
        for i in range(min(k, self.count)):
            if self._kinds[i] == C_NEW:
                if seen == news:
                    return i
                seen += 1
        return min(k, self.count)

    def command(self, Py_ssize_t i):
        """``(type id, payload)`` of command ``i`` (for a backlog or a single message)."""
        if not 0 <= i < self.count:
            raise IndexError(i)
        return self._kinds[i], PyBytes_FromStringAndSize(
            <char*>self._recs + i * sizeof(rl_command), sizeof(rl_command))

    def publish(self, Ring ring, Py_ssize_t k, uint32_t producer_id, int64_t timestamp_ns):
        """Publishes the first ``k`` commands to ``ring`` in one claim, each with
        ``producer_id`` and its seq as the dedup key and ``producer_id << 40 | seq`` as its
        correlation id; returns the first ring sequence, or -1 if the ring has no room for
        all of them now (nothing is published then). Never waits."""
        cdef int64_t hi
        if not 0 < k <= self.count:
            raise ValueError(f"cannot publish {k} of {self.count} commands")
        if ring.slot_size - RL_HEADER_SIZE < <int>sizeof(rl_command):
            raise ValueError(f"a {ring.slot_size}-byte slot cannot hold a command record")
        hi = ring.try_claim(k)
        if hi == RL_CLOSED:
            raise RingClosedError("publish on a closed ring")
        if hi < 0:
            return -1
        self._write(ring, hi - k + 1, k, producer_id, timestamp_ns)
        return hi - k + 1

    cdef void _write(self, Ring ring, int64_t lo, Py_ssize_t k, uint32_t producer_id,
                     int64_t timestamp_ns) noexcept:
        # the first k commands into the claimed slots lo .. lo + k - 1, then published
        cdef int64_t i
        cdef rl_header* h
        cdef rl_command* recs = <rl_command*>self._recs
        with nogil:
            for i in range(k):
                h = <rl_header*>ring.slot(lo + i)
                h.sequence = lo + i
                h.timestamp_ns = timestamp_ns
                h.correlation_id = (<int64_t>producer_id << SEQ_BITS) | \
                    <int64_t>recs[i].client_tag
                h.producer_seq = <int64_t>recs[i].client_tag
                h.type_id = self._kinds[i]
                h.flags = 0
                h.length = sizeof(rl_command)
                h.producer_id = producer_id
                memcpy(<char*>h + RL_HEADER_SIZE, &recs[i], sizeof(rl_command))
            ring.publish_range(lo, lo + k - 1)


cdef CommandBatch _one = CommandBatch(1)


def order_command(bytes frame, uint32_t account):
    """``(type id, payload)`` of one NewOrder / Cancel / Modify frame for ``account`` (the
    same decoding as the fast path); ValueError if the frame is not such a message."""
    cdef CommandBatch b = _one
    if not b.scan(frame, len(frame), -1, 1, account):
        raise ValueError("not a complete NewOrder, Cancel or Modify frame")
    return b.command(0)


# -- the read path: a logged-on connection's read of order frames, in one call ---------------

cdef inline double _monotonic() noexcept nogil:
    # time.monotonic()'s value: CLOCK_MONOTONIC in ns as a double, in seconds
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>(<int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec) / 1e9


cdef inline int64_t _time_ns() noexcept nogil:
    # time.time_ns()
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef class GatewayCore:
    """What the read path needs of the gateway, as C fields, and the read path itself
    (``ringlog.gateway.server.Gateway`` subclasses it and documents the fields)::

        data_received(bytes) ─► read: counts the bytes; a logged-on, unpaused connection
            │ with nothing kept in its decoder ─► _take: the leading order frames that pass
            │ every session rule, published in one claim; the whole read taken ─► heard,
            │ flush only if it has something to do, reading in sync ─► -1 (done)
            └─► otherwise the bytes taken (0: none) - the caller keeps the rest in the
                decoder and the per-message path handles it as before

    ``_take`` (also ``take_orders``, for frames kept in the decoder) decides nothing the
    per-message path (``Gateway.handle``) would decide differently: it takes a prefix of
    order frames whose seqs follow on, within the in-flight window, the open-orders room and
    the rate tokens, and only when the breaker is closed and the input ring has room for all
    of them; whatever it leaves (another message, a frame a rule refuses, a halted breaker,
    a full or closed ring) the per-message path answers, one message at a time, as always.
    Not thread-safe (the gateway's loop)."""

    def __init__(self, processor, table, metrics, limits):
        self.processor = processor
        self._handle = None if processor is None else processor.loop_handle  # None: tests
        self.table = table
        self.metrics = metrics
        self._unsettled = table.unsettled
        self._pending_new = table.pending_new
        self._max_frame = limits.max_frame
        self._max_inflight = limits.max_inflight
        self._max_buffered = limits.max_buffered
        self._rate = limits.rate
        self._burst = limits.burst
        self._max_open = limits.max_open_orders
        self._batch = CommandBatch(limits.max_inflight)
        self._input = None
        self._fast = False
        self._driven = self._pump_due = False
        self._settle_delay = SETTLE_S
        self._held_from = -1

    def read(self, ConnectionCore conn, data):
        """One read of ``conn``: the bytes are counted (``bytes_in``); a closing connection's
        are dropped (-1). When the connection is logged on, not paused, keeps no partial
        frame and the whole read is order frames that ``_take`` takes, the read is done here
        (its Ack, if one is due, and its write through ``conn.flush()``): -1. Otherwise the
        bytes taken from the front (0: none), and the caller handles the rest."""
        cdef Py_ssize_t n = len(data), took
        m = self.metrics
        m.bytes_in += n
        if conn.closing:
            return -1
        if n == 0 or type(data) is not bytes or conn.paused or conn.decoder.buffered:
            return 0
        took = self._take(conn, <const uint8_t*>PyBytes_AS_STRING(data), n)
        if took != n:
            return took
        # Connection._received and process() after a read taken whole: a frame completed,
        # nothing is kept, then flush() and the reading's state
        conn.heard = _monotonic()
        conn.partial_since = 0.0
        conn._flush()
        if conn.reading != (not conn.paused):
            conn._sync_reading()
        return -1

    def take_orders(self, ConnectionCore conn, const uint8_t[::1] data):
        """The leading order frames of ``data`` (bytes kept in ``conn``'s decoder) that pass
        every session rule, published in one claim (``_take``); returns the bytes taken."""
        if data.shape[0] == 0:
            return 0
        return self._take(conn, &data[0], data.shape[0])

    cdef Py_ssize_t _take(self, ConnectionCore conn, const uint8_t* p,
                          Py_ssize_t n) except -1:
        # the rules of Gateway.handle for each frame, for a prefix of order frames at once:
        # seq in turn, the in-flight window, the open-orders room, the rate tokens; then the
        # breaker and the ring's room; only then is any state changed
        cdef SessionCore s
        cdef CommandBatch b = self._batch
        cdef Ring ring = self._input
        cdef Py_ssize_t k, i, news = 0
        cdef int64_t first, lo, room
        cdef double now
        cdef Inflight fl
        sess = conn.session
        if sess is None or ring is None or not self._fast or conn.owed_to or self.backlog:
            return 0  # rare states (and a cluster gateway): the per-message path knows them
        if ring.slot_size - RL_HEADER_SIZE < <int>sizeof(rl_command):
            return 0  # (the per-message path's publish says why)
        s = <SessionCore>sess
        fl = s.inflight
        first = s.last_seen + 1
        k = b._scan(p, n, self._max_frame, first, self._max_inflight - fl._count, s.account)
        if not k:
            return 0
        room = self._max_open - (s.live._count if s.live is not None else 0) - \
            self._pending_new.get(s.account, 0)
        k = b._prefix_with_news(k, room if room > 0 else 0)
        if not k:
            return 0
        now = _monotonic()
        k = s._tokens(self._rate, self._burst, now, k, False)
        if not k or self._handle.holding_c():  # the breaker holds input
            return 0
        lo = ring.try_claim(k)
        if lo < 0:
            return 0  # full (the per-message path parks) or closed (it answers Halted)
        lo -= k - 1
        # taken: the session's state, the commands in flight, then published
        s._tokens(self._rate, self._burst, now, k, True)
        s.last_seen = first + k - 1
        s.errors = 0
        m = self.metrics
        m.messages += k
        for i in range(k):
            fl.push(first + i, b._kinds[i] == C_NEW)
            news += b._kinds[i] == C_NEW
        b._write(ring, lo, k, <uint32_t>s.id, _time_ns())
        _mark_published(s, first, k, self._journal_base + lo, self._unsettled)
        self._entered(conn, s, news)
        self._after_publish(s)
        return b._ends[k - 1]

    cdef int _entered(self, ConnectionCore conn, SessionCore s, int64_t news) except -1:
        if news:
            self._pending_new[s.account] += news
        if s.inflight._count >= self._max_inflight:
            conn.pause("inflight")
        return 0

    cdef int _after_publish(self, SessionCore s) except -1:
        if self._driven and not self._pump_due:
            self._pump_soon()
        if self._settle_timer is None:  # completes them even if they make no report
            self._arm_settle()
        return 0

    cdef int _pump_soon(self) except -1:
        # pumps once the reads of this loop iteration are in (one pump for every connection
        # that was readable), not once per read
        if not self._pump_due:
            self._pump_due = True
            if self._pump_cb is None:
                self._pump_cb = self._pump_now  # one bound method, not one per read
            self._loop.call_soon(self._pump_cb)
        return 0

    def _flush_dirty(self):
        """Flushes every connection in ``dirty`` (emptying it)."""
        cdef set dirty = self.dirty
        while dirty:
            (<ConnectionCore?>dirty.pop())._flush()

    def _arm_settle(self):
        """Completes commands just published even if they make no report: a settle soon
        (``_after_publish`` calls this when no settle timer is armed)."""
        self._settle_delay = SETTLE_S
        self._settle_timer = self._loop.call_later(SETTLE_S, self._settle, True)

    # -- the per-iteration side: pump, route, settle, flush -------------------------------
    def _pump_now(self):
        """Has the processor handle what is in its input ring (``Processor.pump``), then
        routes what it handed to the sink right away, without waiting for the eventfd
        (release immediate; under durable release the sync thread's durable hook hands
        the outputs over later and the eventfd wakes this loop)."""
        self._pump_due = False
        sink = self._sink
        if self._stopping or sink is None or self._handle is None or not self._handle.running:
            return  # halted: publishing answers Halted (the ring is closed); stopping:
            # drain() and stop() pump, on another thread
        sink.quiet = True  # what the pump hands over is taken below: no eventfd write
        try:
            self._handle.pump()  # Processor.pump() without its Python frames
        finally:
            sink.quiet = False
        if sink.queued:  # (a pump that halted midway may have handed some over too)
            self._drain_outputs()

    def _drain_outputs(self):
        """Routes the output slots waiting (the sink's, then any queued by
        ``_on_outputs``) with ``Router.drain``, counts them, then settles."""
        cdef int64_t reports = 0, dropped = 0, routed = 0, n, r, d, trip
        # clear the flag before draining: a record queued after this point schedules again
        self._scheduled = False
        sink = self._sink
        if sink is not None:  # the sink's fd was readable, or a drain for another reason
            block = sink.take()
            if block is not None:
                self._outq.append((block, sink.slot_size))
        if self._holding:
            return
        q = self._outq
        router = <Router?>self.table.router
        while q:
            # routed and encoded in C: market data of a symbol nobody watches (most outputs
            # of a busy book) is skipped there without an object, but still counts for the
            # report seqs; the block's first report seq is session.report_seq of its first
            # record's output journal sequence (2 * sequence + 1)
            slots, slot_size = q.popleft()
            n, r, d, trip = router.drain(slots, slot_size,
                                         2 * (self._out_base + self._routed + routed) + 1,
                                         self.dirty)
            if trip >= 0 and self._held_from < 0:
                self._held_from = trip  # outputs from this input on are held
            routed += n
            reports += r
            dropped += d
        self._routed += routed
        if reports or dropped:
            m = self.metrics
            m.reports += reports
            m.market_data_dropped += dropped
        if self._rebuild is not None and not self.table.rebuilding \
                and not self._rebuild.done():
            self._rebuild.set_result(None)
        self._settle()

    def _settle(self, bint from_timer=False):
        """Completes commands the engine has finished. The processor says when it finished
        an input, not which output was an input's last, so while commands are in flight this
        rechecks on a timer: soon after progress, backing off to 50 ms when nothing moves (a
        halted breaker holds them)."""
        cdef int64_t done
        cdef set unsettled = self._unsettled
        if from_timer:
            self._settle_timer = None
        if unsettled and self._holding_completion:
            if self._settle_timer is None:  # look again later
                self._settle_timer = self._loop.call_later(SETTLE_MAX_S, self._settle, True)
        elif unsettled:
            p = self.processor
            done = self._done_through()
            if self._held_from >= 0:
                b = p.breaker
                if b is None or b.held_count == 0:
                    self._held_from = -1  # released or discarded: routed like any output
                elif done > self._held_from - 1:  # held reports may still come: never
                    done = self._held_from - 1     # complete past the trip
            moved = settle(unsettled, self._pending_new, done)
            for s in moved:
                c = (<SessionCore>s)._conn
                if c is not None:
                    self.dirty.add(c)
            self._settle_delay = SETTLE_S if moved or not from_timer \
                else min(self._settle_delay * 2, SETTLE_MAX_S)
            if unsettled and self._settle_timer is None:
                self._settle_timer = self._loop.call_later(self._settle_delay, self._settle,
                                                           True)
        self._flush_dirty()

    cdef int64_t _done_through(self) except? -2:
        # the journal sequence up to which the loop has finished every input and all their
        # outputs were routed, or -1 while some are still on their way
        cdef LoopHandle h = self._handle
        cdef int64_t done
        if h is None or not h.running:
            return -1
        done = h.processed_c()  # read first: outputs of inputs <= done are published
        return done if self._routed + self._published0 >= h.core.published else -1

    def _enter(self, ConnectionCore conn, SessionCore s, int64_t first, int64_t n, news=()):
        """Commands ``first .. first + n - 1`` of ``s`` go in flight (the new orders among
        them, ``news``, count against the open-orders limit until answered); at
        ``max_inflight`` its reading pauses (its answers are bounded by the window, not by
        its sending)."""
        self._entered(conn, s, s.inflight.enter(first, n, news))

    def _published(self, SessionCore s, int64_t first, int64_t n, ring_seq):
        """Commands are in the input ring (or, ``ring_seq`` None, submitted and told later):
        they complete once the engine has done them."""
        if ring_seq is not None:
            self.table.published(s, first, self._journal_base + ring_seq, n)
        self._after_publish(s)
