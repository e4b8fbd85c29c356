"""ringlog._emit: the batches cut in C are encode_batch's bytes of OutputBatch (msgpack,
trailing defaults omitted), for every size of payload, count of outputs and integer (the
msgpack forms change at 16, 256, 65536, 2**32), across segment boundaries; a message whose
outputs pass max_bytes is cut into parts that do not, greedily; one stream's share of the
outputs by type; a damaged record is an error, never a skipped output."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringlog._emit import BatchCutter, JournalCursor
from ringlog.cluster.outputs import pack_mark
from ringlog.cluster.stream import OutputBatch, OutputRecordOut, encode_batch
from ringlog.errors import JournalCorruptError
from ringlog.events import FLAG_CONTROL, TYPE_STREAM_MARK, TYPE_TIMER
from ringlog.journal import Journal, list_segments

Output = tuple[int, bytes, int, int, int]  # type id, payload, correlation, timestamp, flags
INTS = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, -1, -32, -33,
        -128, -129, -32768, -32769, -2**31, -2**31 - 1, -2**63]
U32 = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1]


class _Journals:
    """The two journals and the counts BatchCutter reads from a Processor, written directly:
    everything appended counts as processed and published."""

    def __init__(self, directory: Path, segment_size: int = 1 << 16) -> None:
        kw: dict[str, Any] = {"durability": "none", "segment_size": segment_size,
                              "first_segment_size": segment_size, "prefault": False}
        self.input = Journal(directory / "in", **kw)
        self.output = Journal(directory / "out", **kw)

    @property
    def processed_sequence(self) -> int:
        return self.input.last_sequence

    @property
    def published_outputs(self) -> int:
        return self.output.next_sequence

    def message(self, seq: int, commands: list[list[Output]]) -> None:
        """Journals message ``seq``: its mark, then each command and the outputs it caused
        (a timer between commands: control input, in no count)."""
        self.input.append(pack_mark(seq, len(commands)), TYPE_STREAM_MARK, flags=FLAG_CONTROL)
        for outs in commands:
            self.input.append(b"\x01", TYPE_TIMER, flags=FLAG_CONTROL)
            cause = self.input.append(b"cmd", 7)
            for ty, pl, corr, ts, fl in outs:
                self.output.append(pl, ty, correlation_id=corr, timestamp_ns=ts, flags=fl,
                                   producer_seq=cause)

    def close(self) -> None:
        self.input.close()
        self.output.close()


def _record(o: Output, ts: int) -> OutputRecordOut:
    ty, pl, corr, t, fl = o
    return OutputRecordOut(ty, pl, corr, fl, None if t == ts else t)


def _reference(messages: list[list[list[Output]]], first_seq: int = 1
               ) -> list[tuple[int, int, int, bytes]]:
    out, first = [], 0
    for k, cmds in enumerate(messages):
        flat = [o for c in cmds for o in c]
        ts = flat[0][3] if flat else 0
        outs = [_record(o, ts) for o in flat]
        out.append((first_seq + k, 0, 1, encode_batch(
            OutputBatch(first_seq + k, first, ts, outs))))
        first += len(outs)
    return out


_outputs = st.lists(st.tuples(st.sampled_from(U32), st.sampled_from([0, 1, 255, 256, 1000]),
                              st.sampled_from(INTS), st.sampled_from(INTS),
                              st.sampled_from(U32)), max_size=20)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(_outputs, max_size=4), min_size=1, max_size=8))
def test_cutter_batches_are_the_encoded_bytes_of_output_batch(
        tmp_path_factory: Any, shape: list[list[list[tuple[int, int, int, int, int]]]]) -> None:
    messages = [[[(ty, bytes([n % 251]) * n, c, ts, fl) for ty, n, c, ts, fl in cmd]
                 for cmd in msg] for msg in shape]
    j = _Journals(tmp_path_factory.mktemp("j"), segment_size=2 * 4096 + 4096)
    try:
        for k, m in enumerate(messages):
            j.message(k + 1, m)
        cutter = BatchCutter(j, 1, 0, 0)
        assert cutter.poll() == _reference(messages)
        assert cutter.poll() == []
        cutter.close()
    finally:
        j.close()


def test_cutter_writes_the_long_forms_of_bin_and_array(tmp_path: Path) -> None:
    """bin16, bin32, array16 and array32 heads: a 300-byte, a 70000-byte payload, a message
    of 70000 outputs."""
    big = [(1, b"x" * 300, 0, 0, 0), (2, b"y" * 70000, -5, 2**40, 3)]
    many = [(3, b"", i, i, 0) for i in range(70000)]
    messages = [[big], [many[:20]], [many]]
    j = _Journals(tmp_path, segment_size=1 << 20)
    try:
        for k, m in enumerate(messages):
            j.message(k + 1, m)
        cutter = BatchCutter(j, 1, 0, 0)
        assert cutter.poll() == _reference(messages)
    finally:
        j.close()


def test_cutter_counts_the_batches_before_start_seq_without_returning_them(
        tmp_path: Path) -> None:
    messages = [[[(1, b"a", 0, 0, 0)] * k] for k in (2, 0, 3, 1)]
    j = _Journals(tmp_path)
    try:
        for k, m in enumerate(messages):
            j.message(k + 1, m)
        cutter = BatchCutter(j, 3, 0, 0)
        assert cutter.poll() == _reference(messages)[2:]
        assert cutter.first_output == 6
    finally:
        j.close()


def test_cutter_waits_for_a_message_whose_commands_are_not_all_journaled(
        tmp_path: Path) -> None:
    j = _Journals(tmp_path)
    try:
        j.message(1, [[(1, b"a", 0, 0, 0)]])
        j.input.append(pack_mark(2, 2), TYPE_STREAM_MARK, flags=FLAG_CONTROL)
        cause = j.input.append(b"cmd", 7)
        j.output.append(b"b", 1, producer_seq=cause)
        cutter = BatchCutter(j, 1, 0, 0)
        assert [b[0] for b in cutter.poll()] == [1]
        assert cutter.poll() == []
        assert [(m.seq, m.seen, m.end) for m in cutter.open_messages] == [(2, 1, -1)]
        cause = j.input.append(b"cmd", 7)
        assert [b[0] for b in cutter.poll()] == [2]
    finally:
        j.close()


def test_cutter_raises_on_a_damaged_output_record(tmp_path: Path) -> None:
    j = _Journals(tmp_path)
    try:
        j.message(1, [[(1, b"payload", 0, 0, 0)]])
        seg = list_segments(tmp_path / "out")[0][1]
        at = seg.read_bytes().index(b"payload")
        with open(seg, "r+b") as f:  # the shared mapping sees the flipped byte
            os.pwrite(f.fileno(), b"P", at)
        cutter = BatchCutter(j, 1, 0, 0)
        with pytest.raises(JournalCorruptError, match="offset"):
            cutter.poll()
        cutter.close()
    finally:
        j.close()


def test_cursor_starts_past_the_end_of_an_empty_journal(tmp_path: Path) -> None:
    j = _Journals(tmp_path)
    try:
        cutter = BatchCutter(j, 1, 0, 0)
        assert cutter.poll() == []
        j.message(1, [])
        assert cutter.poll() == _reference([[]])
        assert isinstance(JournalCursor(tmp_path / "in", 0).next_sequence, int)
    finally:
        j.close()


_small = st.lists(st.tuples(st.sampled_from([1, 210, 65536]), st.integers(0, 120),
                            st.sampled_from([0, 1, 300, 2**40]), st.sampled_from([5, 5, 5, 6]),
                            st.sampled_from([0, 0, 3])), max_size=30)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(_small, max_size=4), min_size=1, max_size=6),
       st.sampled_from([256, 333, 1000, 4096]))
def test_cutter_cuts_a_message_into_parts_of_at_most_max_bytes_greedily(
        tmp_path_factory: Any, shape: list[list[list[tuple[int, int, int, int, int]]]],
        max_bytes: int) -> None:
    """Every part within max_bytes and encode_batch's bytes of its OutputBatch; the parts of a
    message consecutive, numbered, with the message's outputs in order and contiguous output
    indexes; a cut only where the next output would not have fit (the bound less the
    largest head)."""
    messages = [[[(ty, bytes([n % 251]) * n, c, ts, fl) for ty, n, c, ts, fl in cmd]
                 for cmd in msg] for msg in shape]
    j = _Journals(tmp_path_factory.mktemp("j"))
    try:
        for k, m in enumerate(messages):
            j.message(k + 1, m)
        got = BatchCutter(j, 1, 0, 0, max_bytes).poll()
    finally:
        j.close()
    dec = msgspec.msgpack.Decoder(OutputBatch)
    first = 0

    def size(o: OutputRecordOut) -> int:  # of one output in a batch
        return len(encode_batch(OutputBatch(0, 0, ts, [o]))) - len(encode_batch(
            OutputBatch(0, 0, ts, [])))
    for k, msg in enumerate(messages):
        flat = [o for c in msg for o in c]
        ts = flat[0][3] if flat else 0
        parts = [b for b in got if b[0] == k + 1]
        assert [(b[1], b[2]) for b in parts] == [(i, len(parts)) for i in range(len(parts))]
        outs: list[OutputRecordOut] = []
        for i, (_, _, _, data) in enumerate(parts):
            assert len(data) <= max_bytes
            b = dec.decode(data)
            assert encode_batch(b) == data
            assert (b.input_seq, b.first_output, b.timestamp_ns, b.part, b.parts) == \
                (k + 1, first + len(outs), ts, i, len(parts))
            if i + 1 < len(parts):  # greedy: the next part's first output did not fit
                nxt = dec.decode(parts[i + 1][3]).outputs[0]
                body = sum(size(o) for o in b.outputs)
                assert 64 + body + size(nxt) > max_bytes
            outs += b.outputs
        assert outs == [_record(o, ts) for o in flat]
        first += len(outs)
    assert len(got) == sum(len([b for b in got if b[0] == k + 1]) for k in range(len(messages)))


def test_cutter_refuses_an_output_larger_than_max_bytes(tmp_path: Path) -> None:
    j = _Journals(tmp_path)
    try:
        j.message(1, [[(1, b"x" * 200, 0, 0, 0)]])
        with pytest.raises(ValueError, match="max_payload"):
            BatchCutter(j, 1, 0, 0, 200).poll()
    finally:
        j.close()


def test_cutters_by_type_split_the_outputs_into_two_streams_numbered_on_their_own(
        tmp_path: Path) -> None:
    """A cutter of types {210, 211} and one of every other type: each batch holds its
    stream's outputs in order, its first_output counts that stream's outputs from
    start_output (given at start_seq: what the stream's last batch says)."""
    md, rep = (210, b"m", 0, 7, 0), (1, b"r", 5, 7, 0)
    messages = [[[rep, md, md]], [[md]], [[rep], [rep, md]], []]
    j = _Journals(tmp_path)
    try:
        for k, m in enumerate(messages):
            j.message(k + 1, m)
        reports = BatchCutter(j, 1, 0, 0, types=(210, 211), exclude=True).poll()
        market = BatchCutter(j, 2, 0, 0, types=(210, 211), exclude=False,
                             start_output=100).poll()
    finally:
        j.close()
    dec = msgspec.msgpack.Decoder(OutputBatch)
    assert [(s, dec.decode(d).first_output, [o.type_id for o in dec.decode(d).outputs])
            for s, _, _, d in reports] == [(1, 0, [1]), (2, 1, []), (3, 1, [1, 1]), (4, 3, [])]
    assert [(s, dec.decode(d).first_output, [o.type_id for o in dec.decode(d).outputs])
            for s, _, _, d in market] == [(2, 100, [210]), (3, 101, [210]), (4, 102, [])]
