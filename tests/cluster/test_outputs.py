"""Output batches cut from a processor's journals: one per input stream message, the outputs
its commands gave, the same bytes after a restart; the journal's last stream mark says where
a replica resumes (a message cut short continues after its journaled commands)."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from ringlog import Processor, ProcessorConfig
from ringlog.cluster.outputs import OutputEmitter, find_mark, last_mark, pack_mark
from ringlog.cluster.stream import OutputBatch
from ringlog.cluster.trial import engine_commands
from ringlog.engine.flow import demo_engine
from ringlog.events import FLAG_CONTROL, TYPE_STREAM_MARK

COMMANDS = engine_commands(400)


def _processor(directory: Any) -> Processor:
    e = demo_engine()
    return Processor(e, directory, ProcessorConfig(slot_size=max(128, e.config.min_slot_size),
                                                   segment_size=1 << 20))


def _feed(p: Processor, messages: list[list[tuple[int, bytes]]], first_seq: int = 1) -> None:
    for k, cmds in enumerate(messages):
        p.input_ring.publish(pack_mark(first_seq + k, len(cmds)), TYPE_STREAM_MARK,
                             timestamp_ns=k + 1, flags=FLAG_CONTROL)
        for ty, pl in cmds:
            p.publish(pl, ty, timestamp_ns=k + 1)


def _drain(em: OutputEmitter, count: int) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 30
    while len(got) < count:
        got += em.poll()
        assert time.monotonic() < deadline, f"{len(got)} of {count} batches"
        time.sleep(0.0005)
    return got


def _split(sizes: list[int]) -> list[list[tuple[int, bytes]]]:
    out, i = [], 0
    for n in sizes:
        out.append(COMMANDS[i:i + n])
        i += n
    return out


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=25))
def test_emitter_gives_one_batch_per_message_with_its_commands_outputs(tmp_path_factory: Any,
                                                                      sizes: list[int]) -> None:
    messages = _split(sizes)
    p = _processor(tmp_path_factory.mktemp("p"))
    p.start()
    try:
        _feed(p, messages)
        batches = _drain(OutputEmitter(p, 1), len(messages))
    finally:
        p.stop()
    ref = demo_engine()
    first = 0
    dec = msgspec.msgpack.Decoder(OutputBatch)
    for k, (seq, data) in enumerate(batches):
        b = dec.decode(data)
        want = [out for ty, pl in messages[k] for out in ref.apply(ty, pl)]
        assert (seq, b.input_seq, b.first_output) == (k + 1, k + 1, first)
        assert [(o.type_id, o.payload) for o in b.outputs] == want
        first += len(b.outputs)


def test_emitter_after_a_restart_rebuilds_the_same_bytes_from_any_message(tmp_path: Any) -> None:
    messages = _split([3, 1, 7, 2, 5, 4])
    p = _processor(tmp_path)
    p.start()
    _feed(p, messages)
    before = _drain(OutputEmitter(p, 1), len(messages))
    p.stop()
    again = _processor(tmp_path)
    again.start()  # recovers: the journal replayed with outputs suppressed
    try:
        assert _drain(OutputEmitter(again, 4), 3) == before[3:]
        assert find_mark(again.input.path, 4, again.input.last_sequence) is not None
        assert find_mark(again.input.path, 7, again.input.last_sequence) is None
    finally:
        again.stop()


def test_last_mark_says_how_much_of_a_cut_message_is_journaled(tmp_path: Any) -> None:
    p = _processor(tmp_path)
    p.start()
    try:
        _feed(p, _split([2, 3]))
        p.input_ring.publish(pack_mark(3, 5), TYPE_STREAM_MARK, timestamp_ns=9,
                             flags=FLAG_CONTROL)
        for ty, pl in COMMANDS[:3]:  # 3 of its 5 commands, then the "crash"
            p.publish(pl, ty, timestamp_ns=9)
        p.drain(10)
        seq, n, journaled, _ = last_mark(p.input.path, p.input.last_sequence) or (0, 0, 0, 0)
    finally:
        p.stop()
    assert (seq, n, journaled) == (3, 5, 3)
