"""The inline topology with a SlotSink as the one output listener (the gateway): the engine
loop appends its outputs to the output journal itself and hands them to the sink, the input
journal's durable hook hands over the rest; no rl-output thread. The guarantees are those of
the output stage: journaled before it leaves, not before its input is durable (release
"durable"), in order, nothing past the mark when the input journal fails, and a slow sink
holds the loop back through the output ring (bounded) without loss or deadlock."""

import select
import struct
import threading
import time

import numpy as np
import pytest
from test_processor import Summer, ev
from test_processor_release import _cfg, _hold_group_commit

from ringlog import slot_dtype
from ringlog._release import SlotSink
from ringlog.errors import StateError
from ringlog.processor import Processor

DEADLINE_S = 30.0  # a safety net only: every wait below ends on an event or a condition


def _start(tmp_path, **kw):
    sink = SlotSink()
    p = Processor(Summer(), tmp_path, _cfg(topology="inline", **kw))
    p.add_output_listener(sink, batch="slots")
    p.start()
    return p, sink


def _wait(what, cond):
    deadline = time.monotonic() + DEADLINE_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


class Reader:
    """The gateway's side of the sink: takes blocks when its eventfd is readable, checking
    that every output's cause is durable at the take, until ``n`` outputs arrived."""

    def __init__(self, p, sink, n, slot_size):
        self.p, self.sink, self.n, self.size = p, sink, n, slot_size
        self.causes, self.sums, self.violations = [], [], []
        self.go = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self.go.wait(DEADLINE_S)
        deadline = time.monotonic() + DEADLINE_S
        while len(self.sums) < self.n and time.monotonic() < deadline:
            select.select([self.sink.fd], [], [], 0.05)
            block = self.sink.take()
            if block is None:
                continue
            durable = self.p.input.durable_sequence
            arr = np.frombuffer(block, slot_dtype(self.size))
            for c in arr["header"]["producer_seq"].tolist():
                if c > durable:
                    self.violations.append((c, durable))
                self.causes.append(c)
            self.sums += [struct.unpack_from("<qq", block, i * self.size + 48)[1]
                          for i in range(len(arr))]

    def join(self):
        self.thread.join(DEADLINE_S + 5)
        assert not self.thread.is_alive()


def test_a_slot_sink_alone_runs_without_an_output_thread(tmp_path):
    p, _ = _start(tmp_path)
    try:
        names = [t.name for t in p._threads]
        assert "ringlog-output" not in names and p._stage is not None and p._stage.by_loop
    finally:
        p.stop()
    q, _ = _start(tmp_path / "thread", output_journaller="thread")  # the A/B switch
    try:
        assert "ringlog-output" in [t.name for t in q._threads] and q._stage is None
    finally:
        q.stop()


@pytest.mark.parametrize("journaller", ["loop", "thread"])
def test_the_loop_journals_an_output_but_holds_it_until_its_input_is_durable(
        tmp_path, journaller):
    # fails if the new path skipped the durable check: the output is in the output journal
    # (the loop appended it) while the group commit is held, and the sink stays empty
    p, sink = _start(tmp_path, output_journaller=journaller)
    gate = _hold_group_commit(p)
    try:
        p.publish(ev(1), 5, timestamp_ns=1)
        _wait("the output journal", lambda: p.output.last_sequence >= 0)
        assert sink.queued == 0 and sink.take() is None
        assert p.input.durable_sequence < p.journal_sequence_of(0)
    finally:
        gate.set()
    _wait("the release", lambda: sink.queued > 0)  # the durable hook hands it over
    block = sink.take()
    assert struct.unpack_from("<qq", block, 48)[1] == 1
    assert np.frombuffer(block, slot_dtype(p.config.slot_size))["header"]["producer_seq"][0] \
        <= p.input.durable_sequence
    p.stop()


@pytest.mark.parametrize("release", ["durable", "immediate"])
def test_outputs_keep_their_order_across_many_output_ring_wraps(tmp_path, release):
    n = 3000
    p, sink = _start(tmp_path, output_capacity=16, release=release)
    r = Reader(p, sink, n, p.config.slot_size)
    r.thread.start()
    r.go.set()
    for lo in range(0, n, 50):  # batches of inputs; 16 output slots wrap ~190 times
        p.publish_many([ev(v) for v in range(lo, lo + 50)], 5, timestamp_ns=lo)
    r.join()
    p.drain(timeout=DEADLINE_S)
    p.stop()
    assert r.sums == list(np.cumsum(range(n)))  # every output once, in order
    assert r.causes == sorted(r.causes)
    if release == "durable":
        assert r.violations == []
    assert p.output.last_sequence == n - 1  # and every one journaled


@pytest.mark.parametrize("release", ["durable", "immediate"])
def test_a_slow_sink_reader_holds_the_loop_back_then_gets_everything(tmp_path, release):
    n = 2000
    p, sink = _start(tmp_path, output_capacity=16, release=release)
    size = p.config.slot_size
    r = Reader(p, sink, n, size)
    r.thread.start()
    publisher = threading.Thread(
        target=lambda: [p.publish(ev(v), 5, timestamp_ns=v, timeout=DEADLINE_S)
                        for v in range(n)], daemon=True)
    publisher.start()
    # nobody takes: the sink refuses past its bound, the output ring fills, the loop waits
    _wait("the sink's bound", lambda: sink.refusals > 0)
    _wait("the publisher to run ahead", lambda: p.input_ring.cursor >= 200)
    # while nobody takes, outputs are bounded by the sink (one output ring of bytes), the
    # ring (16 slots) and the loop's claimed chunk: the loop is held back, not the memory
    assert sink.queued <= sink.limit == 16 * size
    assert p.published_outputs <= 16 + 16 + 2 + 1
    assert p.processed_sequence < p.journal_sequence_of(n - 1)
    r.go.set()  # the reader starts taking: each take hands over what waited in the ring
    r.join()
    publisher.join(DEADLINE_S)
    assert not publisher.is_alive()
    p.drain(timeout=DEADLINE_S)
    p.stop()
    assert r.sums == list(np.cumsum(range(n)))
    assert r.violations == [] or release == "immediate"


def test_stop_with_a_full_sink_nobody_reads_hands_everything_over(tmp_path):
    n = 200  # fits the input ring (256) while the loop is held back
    p, sink = _start(tmp_path, output_capacity=16)
    done = threading.Event()

    def publish_all():
        for v in range(n):
            p.publish(ev(v), 5, timestamp_ns=v, timeout=DEADLINE_S)
        done.set()

    threading.Thread(target=publish_all, daemon=True).start()
    _wait("the sink's bound", lambda: sink.refusals > 0)
    assert done.wait(DEADLINE_S)  # the input ring takes the rest; the loop is held back
    p.stop()  # lifts the bound: the loop ends, everything reaches the sink once durable
    arr = np.frombuffer(sink.take(), slot_dtype(p.config.slot_size))
    sums = [struct.unpack_from("<qq", arr[i].tobytes(), 48)[1] for i in range(len(arr))]
    assert sums == list(np.cumsum(range(n)))


def test_a_failed_input_journal_halts_the_loop_path_without_releasing(tmp_path):
    p, sink = _start(tmp_path)
    gate, entered = threading.Event(), threading.Event()
    real = p.input._group_sync

    def held():  # as _hold_group_commit, but a failed journal's sync marks nothing durable
        entered.set()
        gate.wait(DEADLINE_S)
        if not p.input.appender.failed:
            real()

    p.input._group_sync = held
    assert entered.wait(DEADLINE_S)
    try:
        p.publish(ev(1), 5, timestamp_ns=1)
        _wait("the output journal", lambda: p.output.last_sequence >= 0)
        p.input.appender.fail()
        p.input.appender.wake()
    finally:
        gate.set()
    with pytest.raises(StateError, match="not released"):
        p.stop()
    assert sink.queued == 0 and sink.take() is None
