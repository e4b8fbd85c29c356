"""Output batches: the outputs of each input stream message, cut from the local journals at
the same boundaries on every replica, and published by the leader alone.

::

    input journal  … MARK(s) cmd cmd cmd MARK(s+1) cmd …     (TYPE_STREAM_MARK: s, n)
    output journal … out(cause) out out out out …            (cause = input journal seq)
                        │ outputs whose cause lies in message s's commands
                        ▼ cut into parts of at most max_bytes (the servers' max_payload)
    OutputBatch(input_seq=s, first_output, timestamp_ns, outputs, part, parts)
        ──► leader: publish to RL_<name>_OUT_<k> (reports) or RL_<name>_MD_<k> (market
            data: an emitter each, by type), Nats-Msg-Id = "s.part",
            Nats-Expected-Last-Sequence = the stream sequence of the batch before

Every input message gives one output batch, or several consecutive ones (its parts) when
its outputs do not fit one NATS message; an empty one when its commands emitted nothing. A
new leader resumes at the output stream's last message (input message s, part j): it
rebuilds message s's parts, compares those the stream holds byte for byte and publishes the
rest, each expecting the stream's sequence before it, so a deposed leader cannot append (its
expected last sequence no longer matches, and the message id is a duplicate). The parts are
cut greedily in output order under one bound, so replicas with the same bound cut the same
parts. The batches are rebuilt from the journals, not kept in memory, so a replica that
restarted (its journal replayed with outputs suppressed) or a standby that just took over
builds the same bytes as the old leader.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import msgspec

from .._emit import BatchCutter
from ..errors import ClusterSetupError
from ..events import FLAG_CONTROL, TYPE_STREAM_MARK, is_control
from ..journal import JournalReader
from .stream import HEADERS_ROOM, OutputBatch

_head_decoder = msgspec.msgpack.Decoder(OutputBatch)

__all__ = ["HEADERS_ROOM", "MARK", "OutputChannel", "OutputEmitter", "OutputPosition",
           "find_mark", "last_mark", "output_position", "pack_mark", "unpack_mark"]

MARK = struct.Struct("<QI")  # stream sequence, commands in the message


class OutputChannel(NamedTuple):
    """One stream of a shard's outputs: its name and subject, the output types it carries
    (``types``; with ``exclude``: every other type), and whether it is the term's
    ``watched`` one (reports: its trouble ends a leader's term)."""

    stream: str
    subject: str
    types: tuple[int, ...]
    exclude: bool
    watched: bool


class OutputPosition(NamedTuple):
    """Where an output stream ends: its last sequence, the input message (``input_seq``,
    ``part`` of ``parts``) that message belongs to, the output index of that input
    message's first output (``first_output`` of its part 0) and the index after the last
    message's outputs (``next_output``); zeros for an empty stream."""

    last: int
    input_seq: int
    part: int
    parts: int
    first_output: int = 0
    next_output: int = 0

    @property
    def through(self) -> int:
        """The last input message whose outputs the stream holds whole."""
        return self.input_seq if self.part == self.parts - 1 else self.input_seq - 1

    def stream_seq_of(self, input_seq: int, part: int) -> int | None:
        """The stream sequence of a part of message ``input_seq``, if that message is the
        last one's (its parts are consecutive, ending at or after ``last``)."""
        if input_seq != self.input_seq:
            return None
        return self.last - self.part + part


async def output_position(js: Any, stream: str) -> OutputPosition:
    """The output stream's end (``stream``'s last message, read from its stream leader)."""
    info = await js.stream_info(stream)
    last = int(info.state.last_seq)
    if last == 0:
        return OutputPosition(0, 0, 0, 1)
    b = _decode_head(stream, last, (await js.get_msg(stream, last, direct=True)).data)
    first = b.first_output
    if b.part:
        first = _decode_head(stream, last - b.part, (await js.get_msg(
            stream, last - b.part, direct=True)).data).first_output
    return OutputPosition(last, b.input_seq, b.part, b.parts, first,
                          b.first_output + len(b.outputs))


def _decode_head(stream: str, seq: int, data: bytes) -> OutputBatch:
    """Message ``seq`` of an output stream as an OutputBatch; ClusterSetupError naming the
    stream and the fix when it is not one (the format of an earlier version:
    ``[input_seq, first_output, [outputs]]``, which no replica of this version can extend)."""
    try:
        return _head_decoder.decode(data)
    except msgspec.DecodeError as e:
        raise ClusterSetupError(
            f"{stream}: message {seq} is not an output batch of this version ({e}; "
            f"written by an earlier ringlog, whose batches were [input_seq, first_output, "
            f"[outputs]]?): a new leader cannot continue that stream. Run the upgraded "
            f"cluster under a new --cluster-name, or, once the stream's consumers have read "
            f"it, delete it (nats stream rm {stream}) and start the replicas again") from e


def pack_mark(stream_seq: int, commands: int) -> bytes:
    """The payload of a TYPE_STREAM_MARK record."""
    return MARK.pack(stream_seq, commands)


def unpack_mark(payload: Any) -> tuple[int, int]:
    """``(stream_seq, commands)`` of a TYPE_STREAM_MARK payload."""
    s, n = MARK.unpack(bytes(payload))
    return int(s), int(n)


def _is_mark(rec: Any) -> bool:
    return bool(rec.type_id == TYPE_STREAM_MARK and rec.flags & FLAG_CONTROL)


def _is_command(rec: Any) -> bool:
    return not (rec.flags & FLAG_CONTROL or is_control(rec.type_id))


def _first_mark_from(reader: JournalReader, seq: int, end: int) -> tuple[int, int] | None:
    """``(journal seq, stream seq)`` of the first mark at or after ``seq`` (up to ``end``)."""
    for rec in reader.records(seq, to_sequence=end):
        if _is_mark(rec):
            return rec.sequence, unpack_mark(rec.payload)[0]
    return None


def _first_retained(reader: JournalReader) -> int:
    segs = reader.segments()
    return segs[0][0] if segs else 0


def find_mark(path: Any, stream_seq: int, last: int) -> int | None:
    """The input journal sequence of the first mark whose stream sequence is >= ``stream_seq``
    (binary search over the journal up to ``last``); None if there is none."""
    reader = JournalReader(path)
    try:
        lo, hi = _first_retained(reader), last + 1
        while lo < hi:
            mid = (lo + hi) // 2
            found = _first_mark_from(reader, mid, last)
            if found is None or found[1] >= stream_seq:
                hi = mid
            else:
                lo = found[0] + 1
        found = _first_mark_from(reader, lo, last) if lo <= last else None
        return found[0] if found is not None and found[1] >= stream_seq else None
    finally:
        reader.close()


def last_mark(path: Any, last: int) -> tuple[int, int, int, int] | None:
    """The newest stream message in the input journal: ``(stream seq, commands, commands
    journaled, journal seq of its mark)``; None if the journal holds no mark."""
    reader = JournalReader(path)
    try:
        first = _first_retained(reader)
        window = 4096
        while True:
            start = max(first, last - window)
            found: tuple[int, int, int, int] | None = None
            for rec in reader.records(start, to_sequence=last):
                if _is_mark(rec):
                    s, n = unpack_mark(rec.payload)
                    found = (s, n, 0, rec.sequence)
                elif found is not None and _is_command(rec):
                    found = (found[0], found[1], found[2] + 1, found[3])
            if found is not None or start <= first:
                return found
            window *= 4
    finally:
        reader.close()


def _first_output_caused_at_or_after(path: Any, cause: int, end: int) -> int:
    """The output journal sequence of the first output whose cause is >= ``cause``
    (outputs are journaled in cause order); ``end`` if none."""
    reader = JournalReader(path)
    try:
        lo, hi = _first_retained(reader), end
        while lo < hi:
            mid = (lo + hi) // 2
            rec = next(reader.records(mid, to_sequence=mid), None)
            if rec is None or rec.producer_seq >= cause:
                hi = mid
            else:
                lo = mid + 1
        return lo
    finally:
        reader.close()


class OutputEmitter:
    """Builds the output batches of input stream messages from ``start_seq`` on by tailing a
    running processor's journals (see the module docstring; the per-record work is
    ``ringlog._emit.BatchCutter``'s, in C). Not thread-safe.

    ``poll()`` returns the batches completed since the last call as ``(input stream seq,
    part, parts, bytes)``, each at most ``max_bytes``: a message is complete once the loop
    has processed its last command and every output published so far is in the output
    journal. ``types``/``exclude``: the outputs of one stream (``ringlog._emit.BatchCutter``),
    numbered from ``start_output`` at ``start_seq``.
    """

    def __init__(self, processor: Any, start_seq: int, max_bytes: int = 1 << 62,
                 types: tuple[int, ...] = (), exclude: bool = True,
                 start_output: int = -1) -> None:
        self.processor = processor
        self.start_seq = start_seq
        inp, out = processor.input, processor.output
        # One reading of the journal's end serves both: with no mark of start_seq up to
        # `last`, it lies past `last`. (Reading next_sequence separately raced the loop: a
        # mark journaled between the two reads was skipped and its batch never came.)
        last = inp.last_sequence
        jm = find_mark(inp.path, start_seq, last) if last >= 0 else None
        in_from = jm if jm is not None else last + 1
        out_from = _first_output_caused_at_or_after(out.path, in_from, out.next_sequence)
        self._cutter = BatchCutter(processor, start_seq, in_from, out_from, max_bytes, types,
                                   exclude, start_output)

    def poll(self) -> list[tuple[int, int, int, bytes]]:
        """The batches completed since the last call, in stream order."""
        return self._cutter.poll()

    def describe(self) -> dict[str, Any]:
        """Where the emitter stands (for a diagnosis): the first open message, the tailers'
        positions, the processor's counts."""
        c = self._cutter
        head = c.open_messages[0] if c.open_messages else None
        p = self.processor
        return {"start_seq": self.start_seq, "open_messages": len(c.open_messages),
                "head": None if head is None else [head.seq, head.commands, head.seen,
                                                    head.mark, head.end],
                "input_tail": c.input_tail, "output_tail": c.output_tail,
                "collected": c.collected, "first_output": c.first_output,
                "processed": p.processed_sequence, "published": p.published_outputs,
                "input_last": p.input.last_sequence, "output_next": p.output.next_sequence}

    def close(self) -> None:
        """Releases the journal mappings."""
        self._cutter.close()

