"""ringlog._feed: an input stream message into the ring in C gives the records the Python
feeder gave (its mark, then each command with its ids and the batch's time), skips the
commands a crash already journaled, and refuses a message that is not an InputBatch before
publishing anything."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ringlog import Processor, ProcessorConfig
from ringlog._feed import publish_message
from ringlog.cluster.outputs import pack_mark
from ringlog.cluster.stream import Command, InputBatch
from ringlog.cluster.trial import engine_commands
from ringlog.engine.flow import demo_engine
from ringlog.errors import ClusterError
from ringlog.events import FLAG_BATCH_END, FLAG_CONTROL, TYPE_STREAM_MARK
from ringlog.journal import JournalReader

COMMANDS = engine_commands(40)
Rec = tuple[int, int, bytes, int, int, int, int]  # type, flags, payload, ts, corr, pid, pseq


def _processor(directory: Any) -> Processor:
    e = demo_engine()
    return Processor(e, directory, ProcessorConfig(slot_size=max(128, e.config.min_slot_size),
                                                   segment_size=1 << 20, dedup=True))


def _journaled(p: Processor) -> list[Rec]:
    p.drain(30)
    reader = JournalReader(p.input.path)
    try:
        return [(r.type_id, r.flags & ~FLAG_BATCH_END, bytes(r.payload), r.timestamp_ns,
                 r.correlation_id, r.producer_id, r.producer_seq) for r in reader.records()]
    finally:
        reader.close()


def _expected(seq: int, batch: InputBatch, skip: int = 0, mark: bool = True) -> list[Rec]:
    out: list[Rec] = []
    if mark:
        out.append((TYPE_STREAM_MARK, FLAG_CONTROL, pack_mark(seq, len(batch.commands)),
                    batch.timestamp_ns, 0, 0, 0))
    out += [(c.type_id, 0, c.payload, batch.timestamp_ns, c.correlation_id, c.producer_id,
             c.producer_seq) for c in batch.commands[skip:]]
    return out


def test_a_message_becomes_its_mark_and_its_commands(tmp_path: Any) -> None:
    batch = InputBatch(2**40 + 7, [Command(t, pl, -i, 3 if i % 2 else 0, 1000 + i)
                                   for i, (t, pl) in enumerate(COMMANDS)])
    p = _processor(tmp_path)
    p.start()
    try:
        sessions: list[tuple[int, int, int]] = []
        hi, ts = publish_message(p.input_ring, msgspec.msgpack.encode(batch), 5, 0, True,
                                 sessions)
        assert ts == batch.timestamp_ns and hi == len(COMMANDS)  # mark at 0, commands after
        assert sessions == [(3, 1000 + i, 1 + i) for i in range(len(COMMANDS)) if i % 2]
        assert _journaled(p) == _expected(5, batch)
    finally:
        p.stop()


def test_a_message_cut_by_a_crash_continues_after_its_journaled_commands(
        tmp_path: Any) -> None:
    batch = InputBatch(9, [Command(t, pl) for t, pl in COMMANDS[:6]])
    short = msgspec.msgpack.encode([9, [[t, pl] for t, pl in COMMANDS[:6]]])  # defaults cut
    p = _processor(tmp_path)
    p.start()
    try:
        publish_message(p.input_ring, short, 1, 4, False, [])
        publish_message(p.input_ring, short, 2, 6, True, [])  # every command journaled
        assert _journaled(p) == _expected(1, batch, 4, False) + _expected(2, batch, 6)
    finally:
        p.stop()


@pytest.mark.parametrize("data", [
    b"", b"\x90", msgspec.msgpack.encode([1]), msgspec.msgpack.encode([1, [[1]]]),
    msgspec.msgpack.encode([1, [[1, "text"]]]), msgspec.msgpack.encode([1, [[-1, b"x"]]]),
    msgspec.msgpack.encode([1, [[1, b"x", 0, 0, 0, 0]]]),
    msgspec.msgpack.encode([1, [[1, b"x"]]]) + b"\x00",
    msgspec.msgpack.encode([1, [[1, b"x"], [2, b"y" * 10]]])[:-3],
    msgspec.msgpack.encode([1, [[1, b"x" * 5000]]]),
])
def test_a_message_that_is_not_an_input_batch_publishes_nothing(tmp_path: Any,
                                                               data: bytes) -> None:
    p = _processor(tmp_path)
    p.start()
    try:
        with pytest.raises(ClusterError, match="input stream message 3"):
            publish_message(p.input_ring, data, 3, 0, True, [])
        assert _journaled(p) == []
    finally:
        p.stop()
