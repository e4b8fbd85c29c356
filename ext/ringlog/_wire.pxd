# The gateway protocol's framing in C (docs/protocol.md): msgpack frames of the order messages
# written from engine command records, and a scanner of answer frames that records completion
# times without a Python object per frame.
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy


# the engine's records (one declaration: ringlog/engine/records.pxd)
from ringlog.engine.records cimport (
    RL_FLAG_POST_ONLY,
    rl_command,
    rl_l1,
    rl_l2_head,
    rl_l2_level,
    rl_report,
    rl_trade,
)


# msgpack writers shared by the compiled gateway modules (msgspec writes the same bytes)
cdef inline Py_ssize_t put_int(uint8_t* p, int64_t v) noexcept nogil:
    """msgpack's smallest encoding of ``v`` (msgspec's choice too); returns bytes written."""
    cdef uint64_t u
    cdef int i
    if v >= 0:
        u = <uint64_t>v
        if u < 128:
            p[0] = <uint8_t>u
            return 1
        if u < 256:
            p[0] = 0xcc
            p[1] = <uint8_t>u
            return 2
        if u < 65536:
            p[0] = 0xcd
            p[1] = <uint8_t>(u >> 8)
            p[2] = <uint8_t>u
            return 3
        if (u >> 32) == 0:
            p[0] = 0xce
            for i in range(4):
                p[1 + i] = <uint8_t>(u >> (24 - 8 * i))
            return 5
        p[0] = 0xcf
        for i in range(8):
            p[1 + i] = <uint8_t>(u >> (56 - 8 * i))
        return 9
    if v >= -32:
        p[0] = <uint8_t>(<int>v & 0xff)
        return 1
    u = <uint64_t>v
    if v >= -128:
        p[0] = 0xd0
        p[1] = <uint8_t>u
        return 2
    if v >= -32768:
        p[0] = 0xd1
        p[1] = <uint8_t>(u >> 8)
        p[2] = <uint8_t>u
        return 3
    if v >= -0x7fffffff - 1:
        p[0] = 0xd2
        for i in range(4):
            p[1 + i] = <uint8_t>(u >> (24 - 8 * i))
        return 5
    p[0] = 0xd3
    for i in range(8):
        p[1 + i] = <uint8_t>(u >> (56 - 8 * i))
    return 9


cdef inline Py_ssize_t put_str(uint8_t* p, const char* s, Py_ssize_t n) noexcept nogil:
    """A msgpack str of ``n`` bytes (fixstr, str8 or str16, as msgspec writes it)."""
    cdef Py_ssize_t h
    if n < 32:
        p[0] = <uint8_t>(0xa0 | n)
        h = 1
    elif n < 256:
        p[0] = 0xd9
        p[1] = <uint8_t>n
        h = 2
    else:
        p[0] = 0xda
        p[1] = <uint8_t>(n >> 8)
        p[2] = <uint8_t>n
        h = 3
    memcpy(p + h, s, n)
    return h + n


cdef inline void put_len(uint8_t* p, Py_ssize_t body) noexcept nogil:
    """The 4-byte big-endian length prefix of a frame."""
    p[0] = <uint8_t>(body >> 24)
    p[1] = <uint8_t>(body >> 16)
    p[2] = <uint8_t>(body >> 8)
    p[3] = <uint8_t>body


cdef int64_t read_int(const uint8_t* p, Py_ssize_t n, Py_ssize_t* pos) noexcept nogil
cdef Py_ssize_t skip_item(const uint8_t* p, Py_ssize_t n, Py_ssize_t pos) noexcept nogil


cdef class AnswerScanner:
    cdef bytearray _buf                 # the partial frame left over from the last feed
    cdef int64_t[::1] done              # completion time (ns) of message i (seq base + i)
    cdef readonly int64_t base          # the seq of message 0
    cdef readonly int64_t answered, halted, errors, frames, acked
    cdef readonly int64_t bad           # frames that are not msgpack arrays (never expected)
    cdef int64_t _scan(self, const uint8_t* p, Py_ssize_t n, int64_t now) noexcept nogil


cdef class OutputSlots:
    cdef bytes block                    # a copy of whole output ring slots
    cdef Py_ssize_t slot_size, pos
    cdef dict subscribers               # symbol -> sessions watching its market data
    cdef readonly int64_t count, skipped
