"""The cluster leader's output batches cut from the processor's journals in C: one record at a
time, no Python object per record, each batch's msgpack bytes written in one buffer.

::

    input journal   … MARK(s, n) cmd cmd … ──JournalCursor──► OpenMessage(s, n, mark, seen, end)
    output journal  … out(cause) out …     ──JournalCursor──► buf: [out][out]…|[out]…  (| a cut:
                                                                      │       the part would
                                                                      │       pass max_bytes)
                                                                      ▼ message s complete
        part k: 0x94|0x96 s first_output ts array(m) out … [k parts]
                (msgspec's bytes of OutputBatch, exactly; out = OutputRecordOut, trailing
                 defaults omitted)

The rules (which message a record belongs to, when a message is complete, which outputs a
batch skips) are src/ringlog/cluster/outputs.py's module docstring; OutputEmitter there owns a
BatchCutter and finds where it starts.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

from ringlog._journal cimport REC_PREFIX, SCAN_END, SCAN_OK, SEG_HEADER_SIZE
from ringlog._wire cimport put_int
from ringlog.includes.event cimport RL_FLAG_CONTROL, RL_HEADER_SIZE, rl_header

from ringlog._journal import corrupt
from ringlog.events import CONTROL_BASE, TYPE_STREAM_MARK

cdef uint32_t _CONTROL_BASE = CONTROL_BASE
cdef uint32_t _STREAM_MARK = TYPE_STREAM_MARK

cdef enum:
    MARK_SIZE = 12      # TYPE_STREAM_MARK payload: u64 stream seq, u32 commands (little-endian)
    HEAD_MAX = 64       # a batch head: fixarray(6), five ints (<= 9 bytes each), array32 head
    OUT_ROOM = 48       # one output's bytes beside its payload: fixarray(5), 4 ints, bin32 head


cdef inline Py_ssize_t _align8(Py_ssize_t n) noexcept nogil:
    return (n + 7) & ~(<Py_ssize_t>7)


cdef inline Py_ssize_t _put_sized(uint8_t* p, uint8_t fix, uint32_t fix_max, uint8_t tag16,
                                  Py_ssize_t n) noexcept nogil:
    """A msgpack array or bin head of ``n`` items/bytes, smallest form (msgspec's choice):
    ``fix | n`` up to ``fix_max`` (0: none), else tag16 + 2 bytes, else tag16 + 1 and 4 bytes
    (big-endian)."""
    if <uint32_t>n <= fix_max and fix_max:
        p[0] = <uint8_t>(fix | n)
        return 1
    if n < 65536:
        p[0] = tag16
        p[1] = <uint8_t>(n >> 8)
        p[2] = <uint8_t>n
        return 3
    p[0] = tag16 + 1
    p[1] = <uint8_t>(n >> 24)
    p[2] = <uint8_t>(n >> 16)
    p[3] = <uint8_t>(n >> 8)
    p[4] = <uint8_t>n
    return 5


cdef inline Py_ssize_t _put_array_head(uint8_t* p, Py_ssize_t n) noexcept nogil:
    return _put_sized(p, 0x90, 15, 0xdc, n)


cdef inline Py_ssize_t _put_bin(uint8_t* p, const char* data, Py_ssize_t n) noexcept nogil:
    """msgpack bin of ``n`` bytes (bin8, bin16 or bin32, as msgspec writes bytes)."""
    cdef Py_ssize_t h
    if n < 256:
        p[0] = 0xc4
        p[1] = <uint8_t>n
        h = 2
    else:
        h = _put_sized(p, 0, 0, 0xc5, n)
    memcpy(p + h, data, n)
    return h + n


cdef class JournalCursor:
    """Follows a live journal from ``from_sequence``, one record at a time in C: ``peek(last)``
    gives the next record's header if its sequence is <= ``last`` (the appender's last
    sequence: its records are committed), ``advance()`` moves past it. Checks every checksum
    (``verify``); a damaged record raises JournalCorruptError. Not thread-safe."""

    def __init__(self, path, int64_t from_sequence, bint verify=True):
        from ringlog.journal import JournalReader

        self.reader = JournalReader(path, verify=verify)
        self.next_sequence = from_sequence
        self.verify = verify

    cdef int peek(self, int64_t last, const rl_header** out) except -1:
        """1 and ``out`` set if record ``next_sequence`` exists and is <= ``last``, else 0.
        Bounded by ``last``, a cursor at the end never lists the directory for a next
        segment."""
        cdef uint32_t n = 0
        cdef int st
        if self.next_sequence > last:
            return 0
        if self._len:
            out[0] = <const rl_header*>(self.seg.base + self.off + REC_PREFIX)
            return 1
        if self.seg is None:
            found = self.reader.locate(self.next_sequence)
            if found is None:
                return 0
            self.seg, self.off = found[1], found[2]
        while True:
            st = self.seg.scan_one(self.off, self.next_sequence, self.verify, &n)
            if st == SCAN_OK:
                self._len = n
                out[0] = <const rl_header*>(self.seg.base + self.off + REC_PREFIX)
                return 1
            if st != SCAN_END:
                raise corrupt(self.seg.path, self.off, self.next_sequence, st)
            if not self._next_segment():
                return 0

    cdef void advance(self) noexcept nogil:
        """Past the record peek() gave."""
        self.off += REC_PREFIX + _align8(self._len)
        self.next_sequence += 1
        self._len = 0

    cdef bint _next_segment(self) except -1:
        # the appender rolls only after the last record of a segment is committed, so a
        # segment starting at next_sequence means this one ended
        for first, path in self.reader.segments():
            if first == self.next_sequence:
                self.reader.close()  # unmaps what was read (self.seg is replaced below)
                self.seg = self.reader.segment(first, path)
                self.off = SEG_HEADER_SIZE
                return True
        return False

    def close(self):
        """Releases the mappings."""
        self.seg = None
        self._len = 0
        self.reader.close()


cdef class OpenMessage:
    """An input stream message whose batch is not cut yet: its stream sequence, command
    count, the input journal sequence of its mark, its commands journaled so far, and the
    journal sequence of its last one (-1 until journaled)."""

    def __init__(self, int64_t seq, int64_t commands, int64_t mark):
        self.seq = seq
        self.commands = commands
        self.mark = mark
        self.seen = 0
        self.end = mark if commands == 0 else -1  # an empty message is complete at its mark

    def __repr__(self):
        return (f"OpenMessage(seq={self.seq}, commands={self.commands}, mark={self.mark}, "
                f"seen={self.seen}, end={self.end})")


cdef class BatchCutter:
    """Cuts output batches from a running processor's journals: the input journal read from
    ``in_from`` (a mark), the output journal from ``out_from`` (the first output caused at or
    after ``in_from``, whose output index it is); batches of messages before ``start_seq`` are
    counted, not returned. A message's outputs that do not fit ``max_bytes`` in one batch
    are cut into parts that do, greedily in output order (so the same parts on every replica
    with the same bound). ``types`` (up to 8 type ids) keeps only the outputs of those types
    (``exclude``: of every other type): one stream's share of the outputs, whose batches
    number its outputs from ``start_output`` at message ``start_seq`` (-1: the output
    journal's index). Not thread-safe."""

    def __cinit__(self):
        self.cap = 1 << 16
        self.buf = <uint8_t*>malloc(self.cap)
        if self.buf == NULL:
            raise MemoryError()
        self.cuts = []

    def __dealloc__(self):
        free(self.buf)

    def __init__(self, processor, int64_t start_seq, int64_t in_from, int64_t out_from,
                 int64_t max_bytes=1 << 62, types=(), bint exclude=True,
                 int64_t start_output=-1):
        if max_bytes < 2 * HEAD_MAX:
            raise ValueError(f"max_bytes must be >= {2 * HEAD_MAX}, got {max_bytes}")
        if len(types) > 8:
            raise ValueError(f"at most 8 output types per stream, got {len(types)}")
        self.max_bytes = max_bytes
        for t in types:
            self.types[self.ntypes] = t
            self.ntypes += 1
        self.exclude = exclude
        self.start_output = start_output
        self.processor = processor
        self.in_journal = processor.input
        self.out_journal = processor.output
        self.start_seq = start_seq
        self.inputs = JournalCursor(self.in_journal.path, in_from)
        self.outputs = JournalCursor(self.out_journal.path, out_from)
        self.first_output = out_from
        self.out_last = out_from - 1
        self.open_messages = []

    @property
    def input_tail(self):
        """The next input journal sequence to read."""
        return self.inputs.next_sequence

    @property
    def output_tail(self):
        """The next output journal sequence to read."""
        return self.outputs.next_sequence

    def poll(self):
        """The batches completed since the last call, in stream order, as ``(stream seq,
        part, parts, bytes)``: a message is complete once the loop has processed its last
        command and every output published so far is in the output journal."""
        cdef OpenMessage m
        cdef list done = []
        self._scan_inputs(self.in_journal.last_sequence)
        if not self.open_messages or (<OpenMessage>self.open_messages[0]).end < 0:
            return done
        p = self.processor
        cdef int64_t processed = p.processed_sequence  # first: its outputs are then published
        cdef int64_t published = p.published_outputs
        while self.open_messages:
            m = self.open_messages[0]
            if m.end < 0 or m.end > processed or not self._collect(m.mark, m.end, published):
                break
            del self.open_messages[0]
            if m.seq == self.start_seq and self.start_output >= 0:
                self.first_output = self.start_output  # (what _collect counted before: moot)
            if m.seq >= self.start_seq:
                done.extend(self._parts(m.seq))
            self.first_output += self.collected
            self.collected = self.part_count = 0
            self.pos = self.part_start = 0
            self.cuts = []
        return done

    cdef int _scan_inputs(self, int64_t last) except -1:
        """Reads the input journal up to ``last``: a mark opens a message, a command counts
        towards the newest open one."""
        cdef const rl_header* h
        cdef const uint8_t* pl
        cdef int64_t s
        cdef uint32_t n
        cdef OpenMessage m = None
        if self.open_messages:  # (no negative indexes: wraparound is off)
            m = self.open_messages[len(self.open_messages) - 1]
        cdef OpenMessage new
        while self.inputs.peek(last, &h):
            if h.type_id == _STREAM_MARK and h.flags & RL_FLAG_CONTROL:
                if h.length != MARK_SIZE:
                    raise ValueError(f"{self.in_journal.path}: stream mark {h.sequence} has "
                                     f"{h.length} payload bytes, not {MARK_SIZE}")
                pl = <const uint8_t*>h + RL_HEADER_SIZE
                memcpy(&s, pl, 8)
                memcpy(&n, pl + 8, 4)
                new = OpenMessage(s, n, h.sequence)
                if m is not None and m.seq == s and m.seen == 0:
                    self.open_messages.pop()  # marked again after a crash cut it before a command
                self.open_messages.append(new)
                m = new
            elif m is not None and not (h.flags & RL_FLAG_CONTROL or h.type_id >= _CONTROL_BASE):
                m.seen += 1
                if m.seen == m.commands:
                    m.end = h.sequence
            self.inputs.advance()
        return 0

    cdef int _collect(self, int64_t mark, int64_t end, int64_t published) except -1:
        """Encodes the outputs caused by input journal sequences ``mark..end``; 1 once every
        one is read (an output of a later input seen, or every published output read)."""
        cdef const rl_header* h
        while True:
            if not self.outputs.peek(self.out_last, &h):
                self.out_last = self.out_journal.next_sequence - 1
                if not self.outputs.peek(self.out_last, &h):
                    return self.outputs.next_sequence >= published
            if h.producer_seq > end:
                return 1
            if not self._selected(h.type_id):
                pass  # another stream's
            elif h.producer_seq < mark:
                # caused before this message's mark: by the tail of a message this cutter
                # did not see whole (it started mid-message, or the output journal's end was
                # read before the loop journaled these). In no batch here, but it holds an
                # output index: the batch's first output is later.
                self.first_output += 1
            else:
                self._append(h)
            self.outputs.advance()

    cdef bint _selected(self, uint32_t type_id) noexcept nogil:
        """Whether outputs of ``type_id`` belong to this cutter's stream."""
        cdef int i
        for i in range(self.ntypes):
            if self.types[i] == type_id:
                return not self.exclude
        return self.exclude

    cdef int _append(self, const rl_header* h) except -1:
        """One output as OutputRecordOut: ``[type_id, payload, correlation_id, flags,
        timestamp_ns]`` without the trailing fields at their defaults (0, 0, and None: the
        message's event time); a cut before it when the open part would pass max_bytes."""
        cdef Py_ssize_t need = self.pos + OUT_ROOM + h.length
        cdef uint8_t* grown
        if need > self.cap:
            while need > self.cap:
                self.cap *= 2
            grown = <uint8_t*>realloc(self.buf, self.cap)
            if grown == NULL:
                raise MemoryError()
            self.buf = grown
        if self.collected == 0:
            self.msg_ts = h.timestamp_ns
        cdef int n = 2
        if h.timestamp_ns != self.msg_ts:
            n = 5
        elif h.flags:
            n = 4
        elif h.correlation_id:
            n = 3
        cdef uint8_t* p = self.buf + self.pos
        cdef Py_ssize_t k = 1
        p[0] = <uint8_t>(0x90 | n)
        k += put_int(p + k, h.type_id)
        k += _put_bin(p + k, <const char*>h + RL_HEADER_SIZE, h.length)
        if n >= 3:
            k += put_int(p + k, h.correlation_id)
        if n >= 4:
            k += put_int(p + k, h.flags)
        if n == 5:
            k += put_int(p + k, h.timestamp_ns)
        if HEAD_MAX + k > self.max_bytes:
            raise ValueError(f"an output of {k} bytes (type {h.type_id}, output journal "
                             f"sequence {h.sequence}) cannot fit a batch of max_bytes="
                             f"{self.max_bytes} (the servers' max_payload is too small)")
        if self.part_count and HEAD_MAX + (self.pos - self.part_start) + k > self.max_bytes:
            self.cuts.append((self.pos, self.part_count))
            self.part_start = self.pos
            self.part_count = 0
        self.pos += k
        self.part_count += 1
        self.collected += 1
        return 0

    cdef list _parts(self, int64_t seq):
        """OutputBatch(seq, first_output, ts, outputs[, part, parts]) of each part of the
        collected outputs as msgpack: the head, then one copy of the part's outputs."""
        cdef uint8_t head[HEAD_MAX]
        cdef uint8_t tail[18]  # part, parts: two ints
        cdef Py_ssize_t k, t, start = 0, end
        cdef int64_t first = self.first_output, count, parts = len(self.cuts) + 1, part
        cdef int64_t ts = self.msg_ts if self.collected else 0
        cdef list out = []
        cdef bytes data
        cdef char* d
        for part in range(parts):
            if part < parts - 1:
                end, count = self.cuts[part]
            else:
                end, count = self.pos, self.part_count
            k = 1
            head[0] = 0x96 if parts > 1 else 0x94  # part and parts omitted at their defaults
            k += put_int(head + k, seq)
            k += put_int(head + k, first)
            k += put_int(head + k, ts)
            k += _put_array_head(head + k, count)
            t = 0
            if parts > 1:
                t = put_int(tail, part)
                t += put_int(tail + t, parts)
            data = PyBytes_FromStringAndSize(NULL, k + (end - start) + t)
            d = <char*>data
            memcpy(d, head, k)
            memcpy(d + k, self.buf + start, end - start)
            memcpy(d + k + (end - start), tail, t)
            out.append((seq, part, parts, data))
            first += count
            start = end
        return out

    def close(self):
        """Releases the journal mappings."""
        self.inputs.close()
        self.outputs.close()
