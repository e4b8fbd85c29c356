"""ringlog._emit: the batches cut in C are msgspec's bytes of OutputBatch, for every size of
payload, count of outputs and integer (the msgpack forms change at 16, 256, 65536, 2**32),
across segment boundaries; a damaged record is an error, never a skipped output."""

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
from ringlog.cluster.stream import OutputBatch, OutputRecordOut
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


def _reference(messages: list[list[list[Output]]], first_seq: int = 1) -> list[tuple[int, bytes]]:
    out, first = [], 0
    for k, cmds in enumerate(messages):
        outs = [OutputRecordOut(*o) for c in cmds for o in c]
        out.append((first_seq + k, msgspec.msgpack.encode(
            OutputBatch(first_seq + k, first, outs))))
        first += len(outs)
    return out


_outputs = st.lists(st.tuples(st.sampled_from(U32), st.sampled_from([0, 1, 255, 256, 1000]),
                              st.sampled_from(INTS), st.sampled_from(INTS),
                              st.sampled_from(U32)), max_size=20)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(_outputs, max_size=4), min_size=1, max_size=8))
def test_cutter_batches_are_msgspecs_bytes_of_output_batch(
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
        assert [s for s, _ in cutter.poll()] == [1]
        assert cutter.poll() == []
        assert [(m.seq, m.seen, m.end) for m in cutter.open_messages] == [(2, 1, -1)]
        cause = j.input.append(b"cmd", 7)
        assert [s for s, _ in cutter.poll()] == [2]
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
