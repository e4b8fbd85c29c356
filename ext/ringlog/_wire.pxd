# The gateway protocol's framing in C (docs/protocol.md): msgpack frames of the order messages
# written from engine command records, and a scanner of answer frames that records completion
# times without a Python object per frame.
from libc.stdint cimport int64_t, uint8_t, uint32_t


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
