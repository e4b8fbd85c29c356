"""The compiled output stage for slot listeners (ringlog._release.ReleaseStage): outputs go
to the output journal, then to the listeners only once their causes (input journal sequences,
``header.producer_seq``) are durable, in ring order, with a failed input journal stopping the
stage before anything past the durable mark is handed over."""

import queue
import select
import struct
import threading
import time

import numpy as np
import pytest
from test_processor import Summer, ev
from test_processor_release import _cfg, _hold_group_commit, _SlowSync

from ringlog import slot_dtype
from ringlog._release import ReleaseStage, SlotSink
from ringlog._ring import Ring
from ringlog.errors import JournalError
from ringlog.journal import Journal
from ringlog.processor import Processor

SLOT = 128
DEADLINE_S = 30.0  # a safety net only: every wait below ends on an event or a condition


class Stage:
    """A ReleaseStage on its own thread over a fresh ring, an output journal and an input
    journal whose durable mark only the test moves (its group commit never fires)."""

    def __init__(self, tmp_path, capacity=64, gated=True, sink=None):
        self.ring = Ring(capacity, SLOT, producer="single", wait="blocking")
        consumer = self.ring.consumer()
        self.output = Journal(tmp_path / "output", durability="none")
        self.input = Journal(tmp_path / "input", durability="group",
                             group_events=1 << 40, group_ms=1e9)
        self.blocks = queue.Queue()
        self.stage = ReleaseStage(consumer, self.output.appender,
                                  self.input.appender if gated else None,
                                  [sink] if sink is not None else [self._listener])
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _listener(self, block, slot_size):
        assert slot_size == SLOT
        hdr = np.frombuffer(block, slot_dtype(SLOT))["header"]
        # the durable mark at the instant of the call: no cause may be above it
        self.blocks.put((hdr["producer_seq"].tolist(), self.input.appender.durable_sequence,
                         [struct.unpack_from("<q", block, i * SLOT + 48)[0]
                          for i in range(len(hdr))]))

    def _run(self):
        try:
            self.stage.run()
        except BaseException as e:  # the test inspects it
            self.error = e

    def publish(self, values, causes):
        for v, c in zip(values, causes, strict=True):
            self.ring.publish(struct.pack("<q", v), 7, producer_seq=c, timeout=DEADLINE_S)

    def mark_durable(self, seq):
        self.input.appender.mark_durable(seq)

    def wait_until(self, what, cond):
        deadline = time.monotonic() + DEADLINE_S
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.001)

    def take(self, n):
        """The causes, durable marks and values of the next hand-overs, ``n`` outputs in all."""
        causes, marks, values = [], [], []
        while len(values) < n:
            c, d, v = self.blocks.get(timeout=DEADLINE_S)
            causes += c
            marks.append((max(c), d))
            values += v
        return causes, marks, values

    def close(self):
        self.ring.close()
        self.thread.join(DEADLINE_S)
        assert not self.thread.is_alive()
        self.output.close()
        self.input.close()


def test_release_stage_with_undurable_causes_hands_over_only_the_durable_prefix(tmp_path):
    s = Stage(tmp_path)
    s.publish(range(10), range(10))
    s.thread.start()
    # the stage appended everything and sleeps on the durable mark of cause 0
    s.wait_until("the durable wait", lambda: s.stage.durable_waits > 0)
    s.wait_until("the appends", lambda: s.output.last_sequence == 9)
    assert s.blocks.empty()  # nothing handed over: no cause is durable
    s.mark_durable(4)
    causes, marks, values = s.take(5)
    assert causes == [0, 1, 2, 3, 4] and values == [0, 1, 2, 3, 4]
    assert all(top <= d for top, d in marks)
    assert s.blocks.empty()
    s.mark_durable(9)
    causes, marks, values = s.take(5)
    assert causes == [5, 6, 7, 8, 9] and values == [5, 6, 7, 8, 9]
    s.close()
    assert s.error is None
    assert s.stage.released == s.stage.appended == 10


def test_release_stage_keeps_order_across_ring_wraps_and_later_outputs(tmp_path):
    s = Stage(tmp_path, capacity=16)
    s.thread.start()
    n = 500
    causes = [i // 3 for i in range(n)]  # several outputs per input, as an engine makes

    def durable_marks():
        for c in range(0, causes[-1] + 1, 7):
            s.mark_durable(c)
            time.sleep(0.0002)  # spreads the marks over the run; order does not depend on it
        s.mark_durable(causes[-1])

    marker = threading.Thread(target=durable_marks, daemon=True)
    marker.start()
    s.publish(range(n), causes)  # blocks while the ring is full: the stage frees slots
    got_causes, marks, values = s.take(n)
    marker.join(DEADLINE_S)
    s.close()
    assert values == list(range(n))
    assert got_causes == causes
    assert all(top <= d for top, d in marks)
    assert s.stage.handovers <= n and s.output.last_sequence == n - 1  # all journaled


def test_release_stage_with_a_failed_input_journal_raises_and_releases_nothing(tmp_path):
    s = Stage(tmp_path)
    s.publish(range(4), [10, 11, 12, 13])
    s.mark_durable(9)
    s.thread.start()
    s.wait_until("the durable wait", lambda: s.stage.durable_waits > 0)
    s.input.appender.fail()
    s.input.appender.wake()  # the failure is seen at once, not after the 50 ms re-check
    s.thread.join(DEADLINE_S)
    assert isinstance(s.error, JournalError) and "not released" in str(s.error)
    assert s.blocks.empty()
    assert s.stage.released == 0
    s.ring.close()
    s.output.close()


def test_release_stage_without_a_gate_hands_over_at_once(tmp_path):
    s = Stage(tmp_path, gated=False)
    s.thread.start()
    s.publish(range(3), [100, 101, 102])  # nothing is durable: immediate release
    causes, _, values = s.take(3)
    assert causes == [100, 101, 102] and values == [0, 1, 2]
    s.close()
    assert s.error is None


def test_release_stage_on_close_hands_over_what_became_durable_then_returns(tmp_path):
    s = Stage(tmp_path)
    s.thread.start()
    s.publish(range(3), [0, 1, 2])
    s.wait_until("the durable wait", lambda: s.stage.durable_waits > 0)
    s.ring.close()  # closed with outputs waiting: they still wait for their inputs
    s.mark_durable(2)
    _, _, values = s.take(3)
    s.close()
    assert values == [0, 1, 2] and s.error is None


def test_release_stage_passes_a_listener_error_up(tmp_path):
    s = Stage(tmp_path, gated=False)

    def broken(block, slot_size):
        raise RuntimeError("listener broke")

    s.stage.listeners[0] = broken
    s.thread.start()
    s.publish([1], [0])
    s.thread.join(DEADLINE_S)
    assert isinstance(s.error, RuntimeError)
    s.ring.close()
    s.output.close()
    s.input.close()


def test_release_stage_without_listeners_is_refused(tmp_path):
    ring = Ring(16, SLOT)
    out = Journal(tmp_path / "o", durability="none")
    with pytest.raises(ValueError, match="listener"):
        ReleaseStage(ring.consumer(), out.appender, None, [])
    with pytest.raises(TypeError, match="callable"):
        ReleaseStage(ring.consumer(), out.appender, None, [3])
    out.close()


# -- the stage inside a processor (add_output_listener(batch="slots")) ----------------------

class SlotWitness:
    """A slot listener that checks, at every call, that each output's cause is durable in the
    input journal at that instant, and keeps the outputs' payloads in order."""

    def __init__(self):
        self.p = None
        self.causes = []
        self.sums = []
        self.violations = []

    def __call__(self, block, slot_size):
        durable = self.p.input.durable_sequence
        arr = np.frombuffer(block, slot_dtype(slot_size))
        for c in arr["header"]["producer_seq"].tolist():
            if c > durable:
                self.violations.append((c, durable))
            self.causes.append(c)
        self.sums += [struct.unpack_from("<qq", block, i * slot_size + 48)[1]
                      for i in range(len(arr))]


@pytest.mark.parametrize("topology", ["inline", "staged"])
@pytest.mark.parametrize("pause", [0.0, 0.003])
def test_processor_slot_listener_gets_every_output_in_order_after_durability(
        tmp_path, topology, pause):
    w = SlotWitness()
    p = Processor(Summer(), tmp_path, _cfg(topology=topology))
    w.p = p
    p.add_output_listener(w, batch="slots")
    p.start()
    p.input._group_sync = _SlowSync(p, pause)
    v = 0
    for n in (1, 17, 3, 40, 2, 64, 5):
        p.publish_many([ev(v + i) for i in range(n)], 5, timestamp_ns=v)
        v += n
    p.drain(timeout=60)
    p.stop()
    assert w.violations == []
    assert w.sums == list(np.cumsum(range(v)))  # every output, in order
    assert w.causes == sorted(w.causes)


def _wait_output_journaled(p: Processor) -> None:
    """Until the output stage has the first output in its journal (polled: the journal's
    sequence is the only sign; DEADLINE_S is a safety net)."""
    deadline = time.monotonic() + DEADLINE_S
    while p.output.last_sequence < 0:
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_processor_slot_listener_waits_for_a_held_group_commit(tmp_path):
    w = SlotWitness()
    p = Processor(Summer(), tmp_path, _cfg())
    w.p = p
    p.add_output_listener(w, batch="slots")
    p.start()
    gate = _hold_group_commit(p)
    try:
        p.publish(ev(1), 5, timestamp_ns=1)
        _wait_output_journaled(p)
        assert w.sums == []  # and holds it: its input is not durable
        assert p.input.durable_sequence < p.journal_sequence_of(0)
    finally:
        gate.set()
    p.drain(timeout=DEADLINE_S)
    p.stop()
    assert w.sums == [1] and w.violations == []


# -- SlotSink: the hand-over without the GIL ----------------------------------------------

def _readable(fd, timeout):
    return bool(select.select([fd], [], [], timeout)[0])


def test_slot_sink_takes_queued_blocks_in_order_and_clears_its_fd():
    sink = SlotSink()
    assert sink.take() is None and not _readable(sink.fd, 0)
    sink(b"a" * SLOT, SLOT)
    sink(b"b" * SLOT * 2, SLOT)
    assert _readable(sink.fd, DEADLINE_S)
    assert sink.signals == 1  # one wake-up: the second block found the sink non-empty
    assert sink.take() == b"a" * SLOT + b"b" * SLOT * 2 and sink.slot_size == SLOT
    assert not _readable(sink.fd, 0) and sink.take() is None
    sink(b"c" * SLOT, SLOT)  # after a take, the next block wakes the consumer again
    assert _readable(sink.fd, DEADLINE_S) and sink.take() == b"c" * SLOT


def test_release_stage_into_a_sink_waits_for_durability_without_the_gil(tmp_path):
    sink = SlotSink()
    s = Stage(tmp_path, sink=sink)
    s.publish(range(6), range(6))
    s.thread.start()
    s.wait_until("the appends", lambda: s.stage.appended == 6)
    assert sink.queued == 0 and not _readable(sink.fd, 0)  # nothing durable, nothing out
    s.mark_durable(2)  # the durable hook hands over, on this thread, before it returns
    assert _readable(sink.fd, 0) and s.stage.released == 3
    hdr = np.frombuffer(sink.take(), slot_dtype(SLOT))["header"]
    assert hdr["producer_seq"].tolist() == [0, 1, 2]
    s.mark_durable(5)
    assert s.stage.released == 6
    hdr = np.frombuffer(sink.take(), slot_dtype(SLOT))["header"]
    assert hdr["producer_seq"].tolist() == [3, 4, 5]
    s.close()
    assert s.error is None


def test_release_stage_into_a_sink_releases_on_either_thread_never_past_the_mark(tmp_path):
    # the mark moves behind the appends (the durable hook releases, on the marking thread)
    # and ahead of them (the output stage releases at its append): each take holds exactly
    # the outputs whose causes are at or below the mark, in order, and nothing more
    sink = SlotSink()
    s = Stage(tmp_path, capacity=256, sink=sink)
    s.thread.start()
    taken, published, mark = [], 0, -1
    for step in range(40):
        s.publish(range(published, published + 10), range(published, published + 10))
        published += 10
        s.wait_until("the appends", lambda p=published: s.stage.appended == p)
        mark = published - 6 if step % 2 else published + 3
        s.mark_durable(mark)
        want = min(mark + 1, published)
        s.wait_until("the release", lambda w=want: s.stage.released == w)
        block = sink.take()
        causes = np.frombuffer(block, slot_dtype(SLOT))["header"]["producer_seq"].tolist()
        assert causes == list(range(len(taken), want)) and max(causes) <= mark
        taken += causes
    s.mark_durable(published - 1)
    s.wait_until("the last release", lambda: s.stage.released == published)
    taken += np.frombuffer(sink.take(), slot_dtype(SLOT))["header"]["producer_seq"].tolist()
    s.close()
    assert s.error is None and taken == list(range(400))
    # both threads released (the output stage can win the race for a mark it woke on, but
    # not for all twenty marks it sleeps through)
    assert 0 < s.stage.hook_handovers < s.stage.handovers


def test_processor_with_a_slot_sink_releases_only_durable_outputs_in_order(tmp_path):
    sink = SlotSink()
    p = Processor(Summer(), tmp_path, _cfg())
    p.add_output_listener(sink, batch="slots")
    p.start()
    gate = _hold_group_commit(p)
    try:
        p.publish(ev(1), 5, timestamp_ns=1)
        _wait_output_journaled(p)
        assert sink.queued == 0  # and holds it: its input is not durable
    finally:
        gate.set()
    p.input._group_sync = _SlowSync(p, 0.002)
    for v in range(2, 200):
        p.publish(ev(v), 5, timestamp_ns=v)
    p.drain(timeout=DEADLINE_S)  # everything released into the sink
    durable = p.input.durable_sequence
    p.stop()
    arr = np.frombuffer(sink.take(), slot_dtype(p.config.slot_size))
    sums = [struct.unpack_from("<qq", arr[i].tobytes(), 48)[1] for i in range(len(arr))]
    assert sums == list(np.cumsum(range(1, 200)))
    assert int(arr["header"]["producer_seq"].max()) <= durable
