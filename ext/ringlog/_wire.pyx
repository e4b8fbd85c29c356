"""The gateway protocol's framing in C: order frames from command records, answers scanned,
output ring slots handed to the gateway's loop as one block per batch.

::

    COMMAND_DTYPE records ─► encode_orders ─► [len][0x9b 4 seq order_id ...] ... ─► socket
    socket ─► AnswerScanner.feed ─► done[seq - base] = now  (first answer of each message)
    output ring batch ─► bytes (one copy, output thread) ─► OutputSlots ─► (index, type,
        payload, correlation, cause) per record the gateway routes (loop thread; unwatched market
        data skipped in C)

A frame is a 4-byte big-endian length and a msgpack array ``[tag, field, ...]`` (the
``array_like`` msgspec Structs of ``ringlog.gateway.protocol``); integers take msgpack's
smallest form, exactly as msgspec writes them, so a frame from here decodes with the
protocol's own decoder (a test checks that for every message kind). The load generator uses
both halves; nothing here allocates a Python object per frame.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from ringlog.includes.event cimport RL_HEADER_SIZE, rl_header


cdef enum:
    # message tags (protocol.py); a test checks them against the Structs
    T_NEW = 4
    T_CANCEL = 5
    T_MODIFY = 6
    T_ACK = 66
    T_REPORT = 67
    T_ERROR = 68
    T_HALTED = 69
    T_ORDER_INFO = 71
    T_OPEN_ORDERS_END = 72
    # engine command type ids (records.Command)
    C_NEW = 101
    C_CANCEL = 102
    C_MODIFY = 103
    # engine market-data output type ids (records.Report.L1 / L2)
    R_L1 = 210
    R_L2 = 211
    MAX_ORDER_FRAME = 4 + 1 + 1 + 9 * 9 + 1 + 1 + 2   # the largest NewOrder frame, rounded

ORDER_FRAME_MAX = MAX_ORDER_FRAME


cdef inline Py_ssize_t put_order(uint8_t* p, const rl_command* c, uint32_t kind,
                                 int64_t seq) noexcept nogil:
    """One frame of command ``c`` as the client message of ``kind``; 0 for another kind."""
    cdef Py_ssize_t n = 4
    if kind == C_NEW:
        p[n] = 0x9b                                     # NewOrder: tag and 10 fields
        p[n + 1] = T_NEW
        n += 2
        n += put_int(p + n, seq)
        n += put_int(p + n, <int64_t>c.order_id)
        n += put_int(p + n, c.symbol)
        n += put_int(p + n, c.side)
        n += put_int(p + n, c.qty)
        n += put_int(p + n, c.price)
        n += put_int(p + n, c.order_type)
        n += put_int(p + n, c.tif)
        p[n] = 0xc3 if c.flags & RL_FLAG_POST_ONLY else 0xc2
        n += 1
        n += put_int(p + n, c.stp)
    elif kind == C_CANCEL:
        p[n] = 0x93
        p[n + 1] = T_CANCEL
        n += 2
        n += put_int(p + n, seq)
        n += put_int(p + n, <int64_t>c.order_id)
    elif kind == C_MODIFY:
        p[n] = 0x95
        p[n + 1] = T_MODIFY
        n += 2
        n += put_int(p + n, seq)
        n += put_int(p + n, <int64_t>c.order_id)
        n += put_int(p + n, c.price)
        n += put_int(p + n, c.qty)
    else:
        return 0
    put_len(p, n - 4)
    return n


def encode_orders(const uint8_t[::1] commands, const uint32_t[::1] kinds, Py_ssize_t start,
                  Py_ssize_t stop, int64_t first_seq):
    """Frames of commands ``start..stop`` (a COMMAND_DTYPE array viewed as bytes, and their
    ``Command`` type ids) numbered ``first_seq + i - start``; returns one ``bytes``.

    NEW, CANCEL and MODIFY become NewOrder, Cancel and Modify (the account is the session's,
    so it is not sent); another kind raises ValueError naming it."""
    cdef Py_ssize_t count = len(kinds)
    if commands.shape[0] != count * <Py_ssize_t>sizeof(rl_command):
        raise ValueError(f"commands hold {commands.shape[0]} bytes, not {count} records of "
                         f"{sizeof(rl_command)}")
    if not 0 <= start <= stop <= count:
        raise ValueError(f"range {start}..{stop} is outside 0..{count}")
    out = PyBytes_FromStringAndSize(NULL, (stop - start) * MAX_ORDER_FRAME)
    cdef uint8_t* p = <uint8_t*>PyBytes_AS_STRING(out)
    cdef const rl_command* recs = <const rl_command*>&commands[0] if count else NULL
    cdef Py_ssize_t n = 0, i, w
    with nogil:
        for i in range(start, stop):
            w = put_order(p + n, &recs[i], kinds[i], first_seq + i - start)
            if w == 0:
                break
            n += w
    if i < stop and stop > start and w == 0:
        raise ValueError(f"command {i} has type {kinds[i]}: only NEW, CANCEL and MODIFY "
                         "are order messages")
    return out[:n]


cdef int64_t read_int(const uint8_t* p, Py_ssize_t n, Py_ssize_t* pos) noexcept nogil:
    """The msgpack integer at ``pos[0]`` (advancing it); -1 and pos = n if there is none."""
    cdef Py_ssize_t i = pos[0], w, k
    cdef uint8_t b
    cdef uint64_t u = 0
    if i >= n:
        pos[0] = n
        return -1
    b = p[i]
    if b < 0x80:
        pos[0] = i + 1
        return b
    if b >= 0xe0:
        pos[0] = i + 1
        return <int64_t>b - 256
    if 0xcc <= b <= 0xcf:
        w = 1 << (b - 0xcc)
    elif 0xd0 <= b <= 0xd3:
        w = 1 << (b - 0xd0)
    else:
        pos[0] = n
        return -1
    if i + 1 + w > n:
        pos[0] = n
        return -1
    for k in range(w):
        u = (u << 8) | p[i + 1 + k]
    pos[0] = i + 1 + w
    if b >= 0xd0 and w < 8 and u >> (8 * w - 1):   # sign-extend a negative int8..int32
        return <int64_t>(u | (~<uint64_t>0 << (8 * w)))
    return <int64_t>u


cdef Py_ssize_t skip_item(const uint8_t* p, Py_ssize_t n, Py_ssize_t pos) noexcept nogil:
    """The position after the scalar msgpack item at ``pos`` (int, str, bool, nil); ``n`` if
    it is something else or runs past the end."""
    cdef uint8_t b
    cdef Py_ssize_t ln = 0
    if pos >= n:
        return n
    b = p[pos]
    if b < 0x80 or b >= 0xe0 or b == 0xc0 or b == 0xc2 or b == 0xc3:
        return pos + 1
    if 0xa0 <= b <= 0xbf:
        ln = b & 0x1f
        pos += 1
    elif b == 0xd9 and pos + 1 < n:
        ln = p[pos + 1]
        pos += 2
    elif b == 0xda and pos + 2 < n:
        ln = (<Py_ssize_t>p[pos + 1] << 8) | p[pos + 2]
        pos += 3
    elif 0xcc <= b <= 0xd3:
        read_int(p, n, &pos)
        return pos
    else:
        return n
    return pos + ln if pos + ln <= n else n


cdef class AnswerScanner:
    """Records when each message of one connection was first answered. Not thread-safe.

    ``feed(data, now)`` walks the complete frames of ``data`` (keeping a partial one for the
    next call) and, for every answer carrying a seq (Report, Halted, Error, OrderInfo,
    OpenOrdersEnd), sets ``done[seq - base] = now`` if it is still 0; Acks move ``acked``.
    The client's own order frames count as answers too, so an echo server is a valid peer.
    """

    def __init__(self, int64_t[::1] done, int64_t base):
        self._buf = bytearray()
        self.done = done
        self.base = base

    def feed(self, data, int64_t now):
        """Scans ``data``; returns how many messages it completed."""
        cdef const uint8_t[::1] view
        cdef int64_t before = self.answered
        cdef Py_ssize_t used
        cdef bytearray buf = self._buf
        if buf:
            buf += data
            view = buf
            used = self._scan(&view[0], len(buf), now)
            view = None  # release the export before resizing
            del buf[:used]
        elif len(data):
            view = data
            used = self._scan(&view[0], view.shape[0], now)
            if used < view.shape[0]:
                buf += data[used:]
        return self.answered - before

    cdef int64_t _scan(self, const uint8_t* p, Py_ssize_t n, int64_t now) noexcept nogil:
        cdef Py_ssize_t pos = 0, q, end
        cdef uint32_t ln
        cdef int64_t tag, seq, i
        cdef int64_t size = self.done.shape[0]
        cdef uint8_t head
        while n - pos >= 4:
            ln = (<uint32_t>p[pos] << 24) | (<uint32_t>p[pos + 1] << 16) | \
                (<uint32_t>p[pos + 2] << 8) | p[pos + 3]
            if n - pos - 4 < ln:
                break
            q = pos + 4
            end = q + ln
            pos = end
            self.frames += 1
            head = p[q] if ln else 0
            if not (0x91 <= head <= 0x9f or head == 0xdc):
                self.bad += 1
                continue
            q += 1 if head != 0xdc else 3
            tag = read_int(p, end, &q)
            if tag == T_ERROR:                         # [68, code, message, seq]
                q = skip_item(p, end, skip_item(p, end, q))
            seq = read_int(p, end, &q) if q < end else -1
            if tag == T_ACK:
                if seq > self.acked:
                    self.acked = seq
                continue
            if seq <= 0 or not (tag == T_REPORT or tag == T_HALTED or tag == T_ERROR
                                or tag == T_ORDER_INFO or tag == T_OPEN_ORDERS_END
                                or T_NEW <= tag <= T_MODIFY):
                continue
            i = seq - self.base
            if 0 <= i < size and self.done[i] == 0:
                self.done[i] = now
                self.answered += 1
                if tag == T_HALTED:
                    self.halted += 1
                elif tag == T_ERROR:
                    self.errors += 1
        return pos


cdef class OutputSlots:
    """Iterates a copy of consecutive output ring slots (``slot_size`` bytes each: the 48-byte
    event header, then the payload) as ``(index, type_id, payload, correlation_id, cause)``:
    the slot's index in the block, and the cause is the input's journal sequence (the slot's
    ``producer_seq``). Market data (L1 /
    L2) of a symbol with no entry in ``subscribers`` (a dict: symbol -> set) is skipped
    without making an object. ``count`` says how many slots were passed, skipped or not.
    Not thread-safe.
    """

    def __init__(self, bytes block, int slot_size, dict subscribers):
        if slot_size <= RL_HEADER_SIZE or len(block) % slot_size:
            raise ValueError(f"a block of {len(block)} bytes is not whole slots of {slot_size}")
        self.block = block
        self.slot_size = slot_size
        self.subscribers = subscribers
        self.pos = 0
        self.count = 0
        self.skipped = 0

    def __iter__(self):
        return self

    def __next__(self):
        cdef const char* base = PyBytes_AS_STRING(self.block)
        cdef Py_ssize_t n = len(self.block)
        cdef const rl_header* h
        cdef uint32_t symbol
        cdef object subs
        while self.pos < n:
            h = <const rl_header*>(base + self.pos)
            self.pos += self.slot_size
            self.count += 1
            if h.length > <uint32_t>(self.slot_size - RL_HEADER_SIZE):
                raise ValueError(f"slot {self.count - 1}: payload length {h.length} exceeds "
                                 f"the slot ({self.slot_size} bytes)")
            if (h.type_id == R_L1 or h.type_id == R_L2) and h.length >= 4:
                memcpy(&symbol, <const char*>h + RL_HEADER_SIZE, 4)
                subs = self.subscribers.get(symbol)
                if not subs:
                    self.skipped += 1
                    continue
            return (self.count - 1, h.type_id,
                    PyBytes_FromStringAndSize(<const char*>h + RL_HEADER_SIZE, h.length),
                    h.correlation_id, h.producer_seq)
        raise StopIteration
