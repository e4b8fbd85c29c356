"""A replica's feeder in C: one input stream message (msgpack InputBatch bytes) into the
processor's input ring, its mark first, with no Python object per command.

::

    InputBatch bytes: 0x92 ts [ [type_id, payload(bin), correlation_id, producer_id,
                                 producer_seq], ... ]          (trailing defaults may be cut)
        │ parsed and checked whole first (a bad message claims nothing)
        ▼
    ring slots: MARK(stream seq, n) cmd cmd cmd ...   (claimed an eighth of the ring at a time)
        └─► sessions: (producer_id, producer_seq, ring seq) of each command with a producer

The replica (src/ringlog/cluster/replica.py) calls ``publish_message`` while the breaker is
closed, and publishes command by command through the processor while it is open (there a
producer waits).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from ringlog._ring cimport Ring
from ringlog._wire cimport read_int
from ringlog.includes.event cimport RL_FLAG_CONTROL, RL_HEADER_SIZE, rl_header

from ringlog.errors import ClusterError
from ringlog.events import TYPE_STREAM_MARK

cdef uint32_t _STREAM_MARK = TYPE_STREAM_MARK

cdef enum:
    MARK_SIZE = 12      # TYPE_STREAM_MARK payload: u64 stream seq, u32 commands (little-endian)

cdef int64_t U32_MAX = 0xFFFFFFFF


ctypedef struct _cmd:
    Py_ssize_t payload      # offset of the payload in the message
    uint32_t length
    uint32_t type_id
    int64_t correlation_id
    uint32_t producer_id
    int64_t producer_seq


cdef inline Py_ssize_t _int_size(uint8_t b) noexcept nogil:
    """Bytes of the msgpack integer whose first byte is ``b`` (0: not an integer)."""
    if b < 0x80 or b >= 0xe0:
        return 1
    if 0xcc <= b <= 0xcf:
        return 1 + (1 << (b - 0xcc))
    if 0xd0 <= b <= 0xd3:
        return 1 + (1 << (b - 0xd0))
    return 0


cdef inline bint _int(const uint8_t* p, Py_ssize_t n, Py_ssize_t* pos,
                      int64_t* out) noexcept nogil:
    cdef Py_ssize_t k
    if pos[0] >= n:
        return False
    k = _int_size(p[pos[0]])
    if k == 0 or pos[0] + k > n:
        return False
    out[0] = read_int(p, n, pos)
    return True


cdef inline bint _head(const uint8_t* p, Py_ssize_t n, Py_ssize_t* pos, uint8_t fix,
                       uint8_t fix_mask, uint8_t tag8, uint8_t tag16, uint8_t tag32,
                       Py_ssize_t* out) noexcept nogil:
    """A msgpack array or bin head: its count or length into ``out``."""
    cdef Py_ssize_t i = pos[0]
    cdef uint8_t b
    if i >= n:
        return False
    b = p[i]
    if fix_mask and (b & ~fix_mask) == fix:
        out[0] = b & fix_mask
        pos[0] = i + 1
        return True
    if tag8 and b == tag8 and i + 2 <= n:
        out[0] = p[i + 1]
        pos[0] = i + 2
        return True
    if b == tag16 and i + 3 <= n:
        out[0] = (<Py_ssize_t>p[i + 1] << 8) | p[i + 2]
        pos[0] = i + 3
        return True
    if b == tag32 and i + 5 <= n:
        out[0] = ((<Py_ssize_t>p[i + 1] << 24) | (<Py_ssize_t>p[i + 2] << 16)
                  | (<Py_ssize_t>p[i + 3] << 8) | p[i + 4])
        pos[0] = i + 5
        return True
    return False


cdef Py_ssize_t _parse(const uint8_t* p, Py_ssize_t n, _cmd* cmds, Py_ssize_t count,
                       Py_ssize_t pos, Py_ssize_t room) noexcept nogil:
    """Fills ``cmds`` from the commands array's items at ``pos``; the offset of the first
    bad item (or -2 for a payload larger than ``room``), or -1 when all are good."""
    cdef Py_ssize_t i, fields, at
    cdef int64_t v
    cdef _cmd* c
    for i in range(count):
        at = pos
        c = &cmds[i]
        if not _head(p, n, &pos, 0x90, 0x0f, 0, 0xdc, 0xdd, &fields) or not 2 <= fields <= 5:
            return at
        if not _int(p, n, &pos, &v) or not 0 <= v <= U32_MAX:
            return at
        c.type_id = <uint32_t>v
        if not _head(p, n, &pos, 0, 0, 0xc4, 0xc5, 0xc6, &c.payload) or pos + c.payload > n:
            return at
        if c.payload > room:
            return -2
        c.length = <uint32_t>c.payload
        c.payload = pos
        pos += c.length
        c.correlation_id = c.producer_seq = 0
        c.producer_id = 0
        if fields >= 3:
            if not _int(p, n, &pos, &c.correlation_id):
                return at
        if fields >= 4:
            if not _int(p, n, &pos, &v) or not 0 <= v <= U32_MAX:
                return at
            c.producer_id = <uint32_t>v
        if fields == 5:
            if not _int(p, n, &pos, &c.producer_seq):
                return at
    return -1 if pos == n else pos


def publish_message(Ring ring, bytes data, int64_t stream_seq, Py_ssize_t skip, bint mark,
                    list sessions, int64_t timeout_ns=-1):
    """Publishes input stream message ``stream_seq`` (``data``: an InputBatch) into ``ring``:
    its mark (when ``mark``: not journaled before) and its commands from ``skip`` on, all with
    the batch's timestamp. Appends ``(producer_id, producer_seq, ring seq)`` to ``sessions``
    for each command with a producer. Returns ``(ring sequence of the last event published
    (-1: none), the batch's timestamp)``. ClusterError for a message that is not an
    InputBatch, before anything is published."""
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), pos = 0, fields, count, bad
    cdef Py_ssize_t room = ring.slot_size - RL_HEADER_SIZE
    cdef int64_t ts
    if not (_head(p, n, &pos, 0x90, 0x0f, 0, 0xdc, 0xdd, &fields) and fields == 2
            and _int(p, n, &pos, &ts)
            and _head(p, n, &pos, 0x90, 0x0f, 0, 0xdc, 0xdd, &count)):
        raise ClusterError(f"input stream message {stream_seq} is not an InputBatch (its head, "
                           f"{data[:16].hex()}...)")
    cdef _cmd* cmds = <_cmd*>malloc(max(count, 1) * sizeof(_cmd))
    if cmds == NULL:
        raise MemoryError()
    cdef Py_ssize_t first = min(skip, count), total, k, chunk
    cdef int64_t hi = -1, lo, s
    cdef int64_t step = max(1, ring.capacity // 8)  # the loop overlaps the copying
    cdef rl_header* h
    cdef _cmd* c
    cdef uint32_t ncmd = <uint32_t>count
    try:
        bad = _parse(p, n, cmds, count, pos, room)
        if bad == -2:
            raise ClusterError(f"input stream message {stream_seq}: a command's payload does "
                               f"not fit a {ring.slot_size}-byte slot")
        if bad >= 0:
            raise ClusterError(f"input stream message {stream_seq} is not an InputBatch (a bad "
                               f"item at byte {bad} of {n})")
        if mark and MARK_SIZE > room:
            raise ClusterError(f"a {ring.slot_size}-byte slot cannot hold a stream mark")
        total = (count - first) + (1 if mark else 0)
        k = 0  # events published so far (the mark is event 0 when marking)
        while k < total:
            chunk = min(total - k, step)
            hi = ring.claim_or_raise(chunk, timeout_ns, k, total)
            lo = hi - chunk + 1
            for s in range(lo, hi + 1):
                h = <rl_header*>ring.slot(s)
                h.sequence = s
                h.timestamp_ns = ts
                if mark and k == 0:
                    h.correlation_id = h.producer_seq = 0
                    h.type_id = _STREAM_MARK
                    h.flags = RL_FLAG_CONTROL
                    h.length = MARK_SIZE
                    h.producer_id = 0
                    memcpy(<char*>h + RL_HEADER_SIZE, &stream_seq, 8)  # <QI, little-endian
                    memcpy(<char*>h + RL_HEADER_SIZE + 8, &ncmd, 4)
                else:
                    c = &cmds[first + k - (1 if mark else 0)]
                    h.correlation_id = c.correlation_id
                    h.producer_seq = c.producer_seq
                    h.type_id = c.type_id
                    h.flags = 0
                    h.length = c.length
                    h.producer_id = c.producer_id
                    memcpy(<char*>h + RL_HEADER_SIZE, p + c.payload, c.length)
                    if c.producer_id:
                        sessions.append((c.producer_id, c.producer_seq, s))
                k += 1
            ring.publish_range(lo, hi)
        return hi, ts
    finally:
        free(cmds)
