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
from ringlog.cluster.outputs import OutputEmitter, find_mark, last_mark, pack_mark, unpack_mark
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
                             timestamp_ns=first_seq + k, flags=FLAG_CONTROL)
        for ty, pl in cmds:
            p.publish(pl, ty, timestamp_ns=first_seq + k)


def _drain(em: OutputEmitter, count: int) -> list[tuple[int, int, int, bytes]]:
    got: list[tuple[int, int, int, bytes]] = []
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
    for k, (seq, part, parts, data) in enumerate(batches):
        b = dec.decode(data)
        want = [out for ty, pl in messages[k] for out in ref.apply(ty, pl)]
        assert (seq, part, parts) == (k + 1, 0, 1)
        assert (b.input_seq, b.first_output, b.timestamp_ns) == (k + 1, first, k + 1 if want else 0)
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


def test_an_emitter_made_mid_message_gives_the_bytes_of_one_made_at_the_start(
        tmp_path: Any) -> None:
    """A new leader builds its emitter while the journal holds part of a message: that
    message's remaining commands belong to it, not to the next (the batch would differ from
    the old leader's, which a standby reports as a divergence)."""
    p = _processor(tmp_path)
    p.start()
    try:
        ref = OutputEmitter(p, 1)
        msgs = _split([3, 4, 5])
        _feed(p, msgs[:1])
        p.input_ring.publish(pack_mark(2, 4), TYPE_STREAM_MARK, timestamp_ns=2,
                             flags=FLAG_CONTROL)
        for ty, pl in msgs[1][:2]:  # 2 of message 2's 4 commands journaled
            p.publish(pl, ty, timestamp_ns=2)
        p.drain(10)
        late = OutputEmitter(p, 3)  # no mark of 3 journaled yet
        for ty, pl in msgs[1][2:]:
            p.publish(pl, ty, timestamp_ns=2)
        _feed(p, msgs[2:], first_seq=3)
        assert _drain(late, 1) == _drain(ref, 3)[2:]
    finally:
        p.stop()


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 60), st.integers(1, 60))
def test_an_emitter_made_while_the_loop_runs_agrees_with_one_made_before(
        tmp_path_factory: Any, made_after: int, start_seq: int) -> None:
    """Whatever the journals hold when it is made (a mark, part of a message, outputs not
    yet journaled), a late emitter's batches equal those of an emitter made before input."""
    import threading

    messages = _split([1 + (k * 7) % 9 for k in range(60)])
    p = _processor(tmp_path_factory.mktemp("p"))
    p.start()
    try:
        ref = OutputEmitter(p, 1)
        fed = threading.Event()

        def feed() -> None:
            for k, cmds in enumerate(messages):
                _feed(p, [cmds], first_seq=k + 1)
                if k == made_after:
                    fed.set()
            fed.set()
        t = threading.Thread(target=feed)
        t.start()
        fed.wait(30)
        late = OutputEmitter(p, start_seq)
        t.join(30)
        assert _drain(late, len(messages) - start_seq + 1) == \
            _drain(ref, len(messages))[start_seq - 1:]
    finally:
        p.stop()


def test_a_message_marked_twice_after_a_crash_is_one_batch(tmp_path: Any) -> None:
    """A journal from a replica cut after a mark and before its first command, that marked
    the message again on resuming: the second mark supersedes the first (which would
    otherwise never complete and stall every later batch)."""
    msgs = _split([3, 4, 2])
    p = _processor(tmp_path / "twice")
    p.start()
    try:
        ref_p = _processor(tmp_path / "once")
        ref_p.start()
        try:
            _feed(ref_p, msgs)
            want = _drain(OutputEmitter(ref_p, 1), 3)
        finally:
            ref_p.stop()
        _feed(p, msgs[:1])
        p.input_ring.publish(pack_mark(2, 4), TYPE_STREAM_MARK, timestamp_ns=2,
                             flags=FLAG_CONTROL)  # the crash: no command of 2 journaled
        _feed(p, msgs[1:], first_seq=2)
        assert _drain(OutputEmitter(p, 1), 3) == want
    finally:
        p.stop()


def test_a_replica_resuming_a_message_cut_after_its_mark_does_not_mark_it_again(
        tmp_path: Any) -> None:
    """Recovery then the feeder, without NATS: message 2's mark is journaled with none of
    its commands; the replica resumes at message 2 and journals its commands under the
    one mark."""
    import asyncio

    from ringlog.cluster.config import ClusterConfig
    from ringlog.cluster.replica import Replica, ReplicaConfig
    from ringlog.cluster.stream import Command, InputBatch
    from ringlog.journal import JournalReader

    msgs = _split([3, 4, 2])
    p = _processor(tmp_path)
    p.start()
    _feed(p, msgs[:1])
    p.input_ring.publish(pack_mark(2, 4), TYPE_STREAM_MARK, timestamp_ns=2, flags=FLAG_CONTROL)
    p.stop()
    e = demo_engine()
    cluster = ClusterConfig(name="t", servers=["nats://127.0.0.1:4222"])  # never reached
    r = Replica(ReplicaConfig(cluster=cluster, replica_id="a",
                              directory=str(tmp_path), processor=ProcessorConfig(
                                  slot_size=max(128, e.config.min_slot_size),
                                  segment_size=1 << 20)))
    r._recover()
    assert r.processor is not None
    if r.processor.state != "running":
        r.processor.start()
    assert (r._next_seq, r._skip) == (2, 0)
    r._loop = asyncio.new_event_loop()
    try:
        enc = msgspec.msgpack.Encoder()
        for k, cmds in enumerate(msgs[1:], start=2):
            r._queue.put((k, enc.encode(InputBatch(k, [Command(ty, pl) for ty, pl in cmds]))))
        r._queue.put(None)
        r._feed()
        assert r.processor is not None
        r.processor.drain(10)
        reader = JournalReader(r.processor.input.path)
        marks = [unpack_mark(rec.payload)[0] for rec in reader.records()
                 if rec.type_id == TYPE_STREAM_MARK]
        reader.close()
        assert marks == [1, 2, 3]
    finally:
        if r.processor is not None:
            r.processor.stop()
        r._loop.close()


class _FakeStream:
    """An output stream in memory as JetStream keeps one: a message id is stored once (a
    duplicate is acknowledged at its first sequence), a wrong expected last sequence is
    refused (10071). ``lose`` holds the publish_async calls (0-based) whose message never
    arrives: their acknowledgement times out, so those after them are refused."""

    def __init__(self, lose: set[int]) -> None:
        self.msgs: list[tuple[bytes, dict[str, str]]] = []
        self.ids: dict[str, int] = {}
        self.lose = lose
        self.calls = 0

    def _store(self, data: bytes, headers: dict[str, str]) -> Any:
        from types import SimpleNamespace

        from nats.js.errors import BadRequestError

        mid = headers["Nats-Msg-Id"]
        if mid in self.ids:
            return SimpleNamespace(seq=self.ids[mid], duplicate=True)
        if int(headers["Nats-Expected-Last-Sequence"]) != len(self.msgs):
            raise BadRequestError(400, "wrong last sequence", 10071)
        self.msgs.append((data, headers))
        self.ids[mid] = len(self.msgs)
        return SimpleNamespace(seq=len(self.msgs), duplicate=False)

    async def publish_async(self, subject: str, data: bytes, headers: dict[str, str]) -> Any:
        import asyncio

        import nats.errors

        ack = asyncio.get_running_loop().create_future()
        self.calls += 1
        if self.calls - 1 in self.lose:
            ack.set_exception(nats.errors.TimeoutError())
        else:
            try:
                ack.set_result(self._store(data, headers))
            except Exception as e:
                ack.set_exception(e)
        return ack

    async def publish(self, subject: str, data: bytes, timeout: float,
                      headers: dict[str, str]) -> Any:
        return self._store(data, headers)

    async def stream_info(self, stream: str) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(state=SimpleNamespace(last_seq=len(self.msgs)))

    async def get_msg(self, stream: str, seq: int, direct: bool = True) -> Any:
        from types import SimpleNamespace

        data, headers = self.msgs[seq - 1]
        return SimpleNamespace(data=data, headers=headers)


@settings(max_examples=6, deadline=None)
@given(st.sets(st.integers(0, 40), max_size=4))
def test_a_publish_lost_in_the_middle_of_the_window_is_published_again_in_order(
        tmp_path_factory: Any, lose: set[int]) -> None:
    """The leader's window of publishes with a message lost (its acknowledgement times out,
    those after it are refused as out of sequence): every batch ends in the stream once, in
    order, byte for byte the emitter's."""
    import asyncio

    from ringlog.cluster.config import ClusterConfig
    from ringlog.cluster.outputs import HEADERS_ROOM, OutputChannel
    from ringlog.cluster.payload import OutputBound
    from ringlog.cluster.replica import Replica, ReplicaConfig

    messages = _split([1 + (k * 5) % 7 for k in range(30)])
    d = tmp_path_factory.mktemp("p")
    cluster = ClusterConfig(name="t", servers=["nats://127.0.0.1:4222"], publish_timeout=0.2)
    r = Replica(ReplicaConfig(cluster=cluster, replica_id="a", directory=str(d)))
    r._recover()
    p = r.processor
    assert p is not None
    p.start()
    try:
        _feed(p, messages)
        want = [data for *_, data in _drain(OutputEmitter(p, 1), len(messages))]
        stream = _FakeStream(lose)
        r.js, r.bound = stream, OutputBound((1 << 20) - HEADERS_ROOM, {})
        r.status.applied_seq = len(messages)

        class Lease:  # held until the stream holds every batch
            def held(self) -> bool:
                return len(stream.msgs) < len(want)

            async def renew(self) -> bool:
                return True
        channel = OutputChannel("OUT", "out", (), True, True)
        asyncio.run(asyncio.wait_for(r._publish_channel(Lease(), channel), 60))  # type: ignore
        assert [data for data, _ in stream.msgs] == want
        assert r.status.published_seq == len(messages)
    finally:
        p.stop()
