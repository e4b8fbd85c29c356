"""The driven topology: no loop thread, the owner's thread calls ``Processor.pump()``. A pump
journals and handles what the ring holds in the inline loop's batches, one pumper at a time;
input other threads publish is handled by a timer pump; stop() from another thread loses
nothing; a handler error halts as on a loop thread; and the journal and outputs are those of
the inline topology for the same input."""

import struct
import threading

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_processor import CFG, Summer, ev

from ringlog._release import SlotSink
from ringlog.errors import InsufficientCapacityError, StateError
from ringlog.events import FLAG_BATCH_END, FLAG_CONTROL
from ringlog.journal import JournalReader
from ringlog.processor import Processor, resolve_topology

DEADLINE_S = 30.0  # a safety net only: every wait below ends on an event


def _cfg(**kw):
    return msgspec.structs.replace(CFG, topology="driven", **kw)


class Blocking(Summer):
    """A Summer whose every event says it is ``inside`` and waits to be let ``leave``."""

    def __init__(self):
        super().__init__()
        self.inside, self.leave = threading.Event(), threading.Event()

    def on_event(self, event, sequence, end_of_batch):
        self.inside.set()
        assert self.leave.wait(DEADLINE_S)
        super().on_event(event, sequence, end_of_batch)


def _records(path):
    return list(JournalReader(path))


def test_driven_is_never_what_auto_picks():
    assert resolve_topology("driven") == "driven"
    assert resolve_topology("auto") in ("inline", "staged")


def test_pump_journals_and_handles_what_the_ring_holds_in_max_batch_batches(tmp_path):
    outs = []
    p = Processor(Summer(), tmp_path, _cfg(max_batch=4), on_output=outs.append)
    p.start()
    assert not any(t.name == "ringlog-loop" for t in p._threads)  # no loop thread
    assert p.pump() == 0
    for v in range(10):
        p.publish(ev(v), 5)
    assert p.handler.count == 0  # nobody pumped yet
    assert p.pump() == 10
    assert p.handler.count == 10 and p.processed_sequence == 9
    assert p.pump() == 0
    p.stop()
    recs = _records(tmp_path / "input")
    ends = [r.sequence for r in recs if r.flags & FLAG_BATCH_END]
    assert ends == [3, 7, 9]  # batches of at most max_batch, as the inline loop journals
    assert [struct.unpack("<qq", bytes(o.payload)) for o in outs] == \
        [(v, sum(range(v + 1))) for v in range(10)]


def test_pump_on_another_topology_is_refused(tmp_path):
    p = Processor(Summer(), tmp_path, msgspec.structs.replace(CFG, topology="inline"))
    p.start()
    try:
        with pytest.raises(StateError, match="topology"):
            p.pump()
    finally:
        p.stop()


def test_a_second_concurrent_pump_is_refused(tmp_path):
    h = Blocking()
    inside, leave = h.inside, h.leave
    p = Processor(h, tmp_path, _cfg())
    p.start()
    p.publish(ev(1), 5)
    done = []
    t = threading.Thread(target=lambda: done.append(p.pump()))
    t.start()
    try:
        assert inside.wait(DEADLINE_S)
        with pytest.raises(StateError, match="one pumper at a time"):
            p.pump()
    finally:
        leave.set()
        t.join(DEADLINE_S)
    assert done == [1]
    p.stop()
    assert p.handler.count == 1


def test_a_publish_beyond_the_ring_on_the_pumping_thread_pumps_itself(tmp_path):
    p = Processor(Summer(), tmp_path, _cfg())
    p.start()
    for v in range(3 * CFG.ring_capacity):  # nobody else pumps: publish makes its own room
        p.publish(ev(v), 5)
    p.drain(timeout=DEADLINE_S)  # on the owner's thread: drains by pumping
    assert p.handler.count == 3 * CFG.ring_capacity
    p.stop()


def test_a_publish_with_no_room_and_a_busy_pumper_times_out(tmp_path):
    h = Blocking()
    inside, leave = h.inside, h.leave
    p = Processor(h, tmp_path, _cfg(max_batch=1))
    p.start()
    p.publish(ev(0), 5)
    t = threading.Thread(target=p.pump)
    t.start()
    try:
        assert inside.wait(DEADLINE_S)
        for v in range(CFG.ring_capacity - 1):  # the pumper holds slot 0: fill the rest
            p.publish(ev(v), 5, timeout=0)
        with pytest.raises(InsufficientCapacityError):
            p.publish(ev(-1), 5, timeout=0.02)
    finally:
        leave.set()
        t.join(DEADLINE_S)
    p.stop()
    assert p.handler.count == CFG.ring_capacity


def test_input_other_threads_publish_is_handled_by_the_timer_pump(tmp_path):
    p = Processor(Summer(), tmp_path, _cfg())
    p.start()
    stop = threading.Event()
    n = 4 * CFG.ring_capacity

    def driver():  # the owner's periodic pump (the gateway: call_later every 2 ms)
        while not stop.is_set():
            p.pump()
            stop.wait(0.002)

    def producer():
        for v in range(n):
            p.publish(ev(v), 5)  # a full ring waits for the driver (or pumps itself)
        p.request_snapshot()  # a control event from another thread, like an admin command

    d = threading.Thread(target=driver)
    d.start()
    try:
        t = threading.Thread(target=producer)
        t.start()
        t.join(DEADLINE_S)
        assert not t.is_alive()
        done = threading.Event()
        p_seq = p.journal_sequence_of(p.input_ring.cursor)
        while not done.wait(0.002):  # bounded by the deadline below, not by a sleep
            if p.processed_sequence >= p_seq:
                done.set()
            assert d.is_alive()
    finally:
        stop.set()
        d.join(DEADLINE_S)
    assert p.handler.count == n
    p.stop()


def test_stop_from_another_thread_after_the_driver_stopped_loses_nothing(tmp_path):
    p = Processor(Summer(), tmp_path, _cfg())
    p.start()
    for v in range(100):
        p.publish(ev(v), 5)
    assert p.pump() == 100  # the driver pumps, then stops pumping
    for v in range(100, 200):
        p.publish(ev(v), 5)
    t = threading.Thread(target=p.stop)
    t.start()
    t.join(DEADLINE_S)
    assert not t.is_alive() and p.state == "closed"
    assert p.handler.count == 200 and p.handler.total == sum(range(200))
    assert len(_records(tmp_path / "input")) == 200
    assert len(_records(tmp_path / "output")) == 200
    assert p.pump() == 0  # closed: nothing to do


def test_a_handler_error_during_pump_halts_and_stop_raises_it(tmp_path):
    p = Processor(Summer(fail_on=3), tmp_path, _cfg())
    p.start()
    for v in range(6):
        p.publish(ev(v), 5)
    assert p.pump() == 0  # the batch did not finish
    assert p.state == "halted" and isinstance(p.halt_cause, ValueError)
    assert p.handler.count == 3
    assert p.pump() == 0
    with pytest.raises(StateError, match="poison 3"):
        p.stop()
    assert len(_records(tmp_path / "input")) == 6  # journaled before it was handled


def test_the_loop_handle_is_the_processors_pump_and_progress_in_every_state(tmp_path):
    """``loop_handle`` (what the gateway calls per iteration, and what ``pump()`` and
    ``processed_sequence`` are) pumps, refuses a second pumper and says ``running`` and how
    far the loop is, from created through running and halted, on a journal that holds
    input already (journal sequences 0-2: ring sequence 0 is journal sequence 3)."""
    first = Processor(Summer(), tmp_path, _cfg())
    first.start()
    for v in range(20, 23):
        first.publish(ev(v), 5)
    first.pump()
    first.stop()
    p = Processor(Summer(fail_on=7), tmp_path, _cfg())
    h = p.loop_handle

    def at(processed):
        assert h.running == (p.state == "running")
        assert h.processed_sequence == p.processed_sequence == processed

    at(-1)  # nothing recovered yet
    assert h.pump() == 0  # not running: nothing to do, no error
    p.start()
    at(2)  # the 3 recovered
    for v in range(5):
        p.publish(ev(v), 5)
    assert h.pump() == 5 and p.handler.count == 3 + 5
    at(3 + 4)
    with p._pumping, pytest.raises(StateError, match="one pumper at a time"):
        h.pump()  # (the lock held: as if another thread were inside pump())
    for v in range(5, 10):
        p.publish(ev(v), 5)
    assert h.pump() == 0  # the handler failed on 7: halted, as by Processor.pump()
    assert p.state == "halted" and not h.running
    at(3 + 7)  # the input that failed (values 5, 6, 7: sequences 8, 9, 10)
    with pytest.raises(StateError, match="poison 7"):
        p.stop()
    at(3 + 7)


def test_the_loop_handle_pumps_only_the_driven_topology(tmp_path):
    p = Processor(Summer(), tmp_path, msgspec.structs.replace(CFG, topology="inline"))
    p.start()
    try:
        with pytest.raises(StateError, match="driven"):
            p.loop_handle.pump()
        assert p.loop_handle.running
    finally:
        p.stop()


def test_a_slot_sink_gets_outputs_during_pump_under_immediate_release(tmp_path):
    sink = SlotSink()
    p = Processor(Summer(), tmp_path, _cfg(durability="group", release="immediate"))
    p.add_output_listener(sink, batch="slots")
    p.start()
    for v in range(5):
        p.publish(ev(v), 5)
    p.pump()
    block = sink.take()  # handed over by the pump itself: no other thread
    assert block is not None and len(block) == 5 * CFG.slot_size
    p.stop()


def test_a_slot_sink_gets_durable_outputs_from_the_sync_thread(tmp_path):
    sink = SlotSink()
    p = Processor(Summer(), tmp_path, _cfg(durability="group"))
    p.add_output_listener(sink, batch="slots")
    p.start()
    for v in range(5):
        p.publish(ev(v), 5)
    p.pump()
    got = 0
    import select

    for _ in range(int(DEADLINE_S / 0.05)):  # the durable hook wakes the eventfd
        if got == 5:
            break
        select.select([sink.fd], [], [], 0.05)
        block = sink.take()
        got += len(block) // CFG.slot_size if block else 0
    assert got == 5
    p.stop()


def _run(path, topology, chunks, max_batch):
    """Publishes ``chunks`` (lists of values; a None value is a timer) and returns the
    input journal's (type, payload), the output journal's (type, payload, cause) and the
    handler's state; driven pumps after each chunk."""
    p = Processor(Summer(), path, msgspec.structs.replace(CFG, topology=topology,
                                                          max_batch=max_batch))
    p.start()
    ts = 0
    for chunk in chunks:
        for v in chunk:
            ts += 1
            if v is None:
                p.request_snapshot(ts)
            else:
                p.publish(ev(v), 5, timestamp_ns=ts)
        if topology == "driven":
            p.pump()
    p.drain(timeout=DEADLINE_S)
    p.stop()
    ins = [(r.type_id, bytes(r.payload), r.flags & FLAG_CONTROL)
           for r in _records(path / "input")]
    outs = [(r.type_id, bytes(r.payload), r.producer_seq) for r in _records(path / "output")]
    return ins, outs, (p.handler.count, p.handler.total)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.lists(st.one_of(st.integers(-1000, 1000), st.none()), max_size=40),
                       max_size=12),
       max_batch=st.sampled_from([1, 3, 64]))
def test_driven_journals_and_outputs_what_inline_does(tmp_path_factory, chunks, max_batch):
    a = _run(tmp_path_factory.mktemp("inline"), "inline", chunks, max_batch)
    b = _run(tmp_path_factory.mktemp("driven"), "driven", chunks, max_batch)
    assert a == b


def test_recovery_after_a_driven_run_replays_the_same_state(tmp_path):
    p = Processor(Summer(), tmp_path, _cfg(snapshot_every=37))
    p.start()
    for v in range(500):
        p.publish(ev(v), 5)
        if v % 50 == 0:
            p.pump()
    p.stop()
    q = Processor(Summer(), tmp_path, _cfg())
    report = q.recover(verify=True)
    assert report.first_divergence is None
    assert report.snapshot_sequence >= 0 and report.verified_outputs > 0
    assert (q.handler.count, q.handler.total) == (500, sum(range(500)))
    q.start()
    q.publish(ev(1000), 5)
    q.pump()
    q.stop()


def test_a_pump_with_more_outputs_than_the_output_ring_ends_without_a_take(tmp_path):
    # the sink's consumer is the pumping thread: a bounded sink would have the pump wait
    # for a take() only this thread can do (it fails that way with the bound kept)
    sink = SlotSink()
    p = Processor(Summer(), tmp_path, _cfg(output_capacity=16))
    p.add_output_listener(sink, batch="slots")
    p.start()
    for v in range(200):
        p.publish(ev(v), 5)
    assert p.pump() == 200
    assert sink.queued == 200 * CFG.slot_size
    p.stop()
