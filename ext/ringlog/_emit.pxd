# The cluster leader's output emitter in C (src/ringlog/cluster/outputs.py): journals read one
# record at a time without a Python object per record, output batches written as msgpack in
# one buffer.
from libc.stdint cimport int64_t, uint8_t, uint32_t

from ringlog._journal cimport Segment
from ringlog.includes.event cimport rl_header


cdef class JournalCursor:
    # Not thread-safe: one reading thread.
    cdef object reader                  # ringlog.journal.JournalReader: lists, maps segments
    cdef Segment seg                    # the segment read (None until located)
    cdef Py_ssize_t off                 # byte offset of record next_sequence in seg
    cdef readonly int64_t next_sequence
    cdef uint32_t _len                  # body length of the record peek() holds (0: none)
    cdef bint verify

    cdef int peek(self, int64_t last, const rl_header** out) except -1
    cdef void advance(self) noexcept nogil
    cdef bint _next_segment(self) except -1


cdef class OpenMessage:
    cdef readonly int64_t seq           # input stream sequence
    cdef readonly int64_t commands      # commands in the message
    cdef readonly int64_t mark          # input journal seq of its mark
    cdef readonly int64_t seen          # its commands journaled so far
    cdef readonly int64_t end           # input journal seq of its last command (-1: not yet)


cdef class BatchCutter:
    # Not thread-safe: the leader's publishing task alone.
    cdef JournalCursor inputs, outputs
    cdef object processor, in_journal, out_journal
    cdef readonly int64_t start_seq
    cdef readonly int64_t first_output  # output index of the batch being collected
    cdef readonly list open_messages    # OpenMessage, oldest first
    cdef int64_t out_last               # the output journal's last sequence as last read
    cdef readonly int64_t max_bytes     # bound of one batch's bytes (a part of a message)
    cdef uint8_t* buf                   # the open message's outputs, encoded, back to back
    cdef Py_ssize_t cap, pos
    cdef readonly int64_t collected     # outputs in buf
    cdef int64_t msg_ts                 # the open message's event time (its first output's)
    cdef Py_ssize_t part_start          # buf offset of the open part's first output
    cdef int64_t part_count             # outputs in the open part
    cdef list cuts                      # (buf offset, outputs) where each closed part ends
    cdef uint32_t types[8]              # the output types of this cutter's stream ...
    cdef int ntypes
    cdef bint exclude                   # ... or (exclude) every type but those
    cdef readonly int64_t start_output  # output index of message start_seq's first (-1: ours)

    cdef int _scan_inputs(self, int64_t last) except -1
    cdef int _collect(self, int64_t mark, int64_t end, int64_t published) except -1
    cdef bint _selected(self, uint32_t type_id) noexcept nogil
    cdef int _append(self, const rl_header* h) except -1
    cdef list _parts(self, int64_t seq)
