"""Release after durability: under group/sync no output reaches a listener before the input
that caused it is durable (ProcessorConfig.release="durable", the default)."""

import struct
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_processor import Summer, ev

from ringlog.processor import Processor, ProcessorConfig

TOPOLOGIES = ["inline", "staged"]


def _cfg(**kw):
    base = dict(ring_capacity=256, output_capacity=256, segment_size=1 << 16,
                durability="group")
    base.update(kw)
    return ProcessorConfig(**base)


class Witness:
    """An output listener that checks, at every call, that the output's cause is durable
    in the input journal at that instant."""

    def __init__(self):
        self.p = None
        self.seen = []
        self.violations = []
        self.first = threading.Event()

    def __call__(self, rec):
        durable = self.p.input.durable_sequence
        if rec.cause > durable:
            self.violations.append((rec.cause, durable))
        self.seen.append(rec)
        self.first.set()


def _hold_group_commit(p):
    """Makes the input journal's group commit wait at a gate: nothing becomes durable until
    the returned event is set."""
    gate, entered = threading.Event(), threading.Event()
    real = p.input._group_sync

    def held():
        entered.set()
        gate.wait(60)
        real()

    p.input._group_sync = held
    # the sync thread calls it after every wait (50 ms at most): once it is inside, no call
    # of the real one begun before the patch can still be running
    assert entered.wait(30)
    return gate


def _watch_durable_waits(p):
    """Signals when the output stage starts waiting for an input to become durable."""
    waiting = threading.Event()
    real = p._await_durable

    def watched(appender, sequence):
        waiting.set()
        real(appender, sequence)

    p._await_durable = watched
    return waiting


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_output_is_not_released_while_its_input_is_not_durable(tmp_path, topology):
    w = Witness()
    p = Processor(Summer(), tmp_path, _cfg(topology=topology), on_output=w)
    w.p = p
    p.start()
    gate = _hold_group_commit(p)
    waiting = _watch_durable_waits(p)
    try:
        p.publish(ev(1), 5, timestamp_ns=1)
        # whichever comes first: the output stage waits for durability (right), or the
        # listener is called (wrong: the input cannot be durable, the gate is shut)
        deadline = time.monotonic() + 30
        while not (waiting.is_set() or w.first.is_set()) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert waiting.is_set() or w.first.is_set()
        assert w.violations == []
        assert w.seen == []  # nothing left the process while the input was not durable
        assert p.input.durable_sequence < p.journal_sequence_of(0)
    finally:
        gate.set()
    p.drain(timeout=30)
    p.stop()
    assert [struct.unpack("<qq", r.payload)[1] for r in w.seen] == [1]
    assert w.violations == []


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_immediate_release_hands_outputs_on_before_durability(tmp_path, topology):
    """The opt-out does what it says: an output reaches the listener while its input is
    still not durable (the gate stays shut until the listener has it)."""
    w = Witness()
    p = Processor(Summer(), tmp_path, _cfg(topology=topology, release="immediate"),
                  on_output=w)
    w.p = p
    p.start()
    gate = _hold_group_commit(p)
    try:
        p.publish(ev(1), 5, timestamp_ns=1)
        assert w.first.wait(30)
        assert w.violations  # released before durable: what "immediate" promises
    finally:
        gate.set()
    p.drain(timeout=30)
    p.stop()


def test_sync_durability_releases_outputs_of_durable_inputs_only(tmp_path):
    w = Witness()
    p = Processor(Summer(), tmp_path, _cfg(durability="sync"), on_output=w)
    w.p = p
    p.start()
    for v in range(200):
        p.publish(ev(v), 5, timestamp_ns=v)
    p.drain(timeout=30)
    p.stop()
    assert len(w.seen) == 200 and w.violations == []


class _SlowSync:
    """Group commit that takes a while per fdatasync, so outputs would overtake it."""

    def __init__(self, p, pause):
        self.real = p.input._group_sync
        self.pause = pause

    def __call__(self):
        time.sleep(self.pause)
        self.real()


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.integers(1, 40), min_size=1, max_size=12),
       topology=st.sampled_from(TOPOLOGIES), batch_listener=st.booleans(),
       pause=st.sampled_from([0.0, 0.001, 0.005]))
def test_every_released_output_has_a_durable_cause_over_random_batches(
        tmp_path_factory, batches, topology, batch_listener, pause):
    w = Witness()
    p = Processor(Summer(), tmp_path_factory.mktemp("rel"), _cfg(topology=topology))
    w.p = p
    if batch_listener:
        p.add_output_listener(lambda recs: [w(r) for r in recs], batch=True)
    else:
        p.add_output_listener(w)
    p.start()
    p.input._group_sync = _SlowSync(p, pause)
    v = 0
    for n in batches:
        p.publish_many([ev(v + i) for i in range(n)], 5, timestamp_ns=v)
        v += n
    p.drain(timeout=60)
    p.stop()
    assert w.violations == []
    assert len(w.seen) == v  # every output released, in order
    assert [r.cause for r in w.seen] == sorted(r.cause for r in w.seen)
