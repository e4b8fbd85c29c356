"""Group commit on demand (``Journal(lazy_sync_ms=...)``, ``ProcessorConfig.lazy_sync_ms``):
while no thread waits for a sequence to be durable, the group commit lets appends gather
``lazy_sync_ms`` after each fdatasync; a waiter (``wait_durable``, an output held for its
input's durability) makes it sync at once and back to back::

    appends ──► group commit ──(nothing wanted)──► pause lazy_sync_ms ──► fdatasync
                     ▲                                   │ cut short by
    want_durable ────┘ (wait_durable, held outputs) ─────┘ a want, a roll, close

The tests below set the pause to a minute, so a path that forgot to ask would wait out the
30 s deadlines and fail; none depends on how fast this machine is.
"""

import struct
import time

import pytest
from test_processor import Summer, ev
from test_processor_release import Witness, _cfg
from test_release_loop import Reader

from ringlog._release import SlotSink
from ringlog.errors import ConfigError
from ringlog.journal import Journal, JournalReader
from ringlog.processor import Processor, ProcessorConfig

MINUTE_MS = 60_000.0
DEADLINE_S = 30.0  # a safety net only: every wait below ends on a condition


def _wait(what, cond):
    deadline = time.monotonic() + DEADLINE_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def _durable_first(j):
    """Appends one record and waits, without asking, until the leading sync made it durable
    (the first sync after a pause is not held back)."""
    seq = j.append(b"first")
    _wait("the first sync", lambda: j.durable_sequence >= seq)
    return seq


def test_with_nothing_waiting_the_syncs_are_spaced_by_the_pause(tmp_path):
    # back to back, 500 appends 2 ms apart take hundreds of fdatasyncs; spaced by 200 ms,
    # at most one per 200 ms (plus the leading one)
    with Journal(tmp_path / "j", durability="group", lazy_sync_ms=200) as j:
        a = j.appender
        _durable_first(j)
        before, t0 = a.group_syncs, time.monotonic()
        for i in range(500):
            last = j.append(struct.pack("<q", i))
            time.sleep(0.002)
        elapsed = time.monotonic() - t0
        syncs = a.group_syncs - before
        assert syncs <= elapsed / 0.2 + 2, (syncs, elapsed)
        # nobody asks, and the appends still become durable: within the pause
        _wait("the lazy sync", lambda: j.durable_sequence >= last)


def test_a_waiter_makes_the_held_sync_start_at_once(tmp_path):
    with Journal(tmp_path / "j", durability="group", lazy_sync_ms=MINUTE_MS) as j:
        _durable_first(j)
        seq = j.append(b"second")
        time.sleep(0.3)
        # held: the last sync was a moment ago and nothing waits (back to back would have
        # synced it in a few ms)
        assert j.durable_sequence < seq
        assert j.appender.wait_durable(seq, DEADLINE_S) >= seq  # not a minute


def test_a_roll_is_not_held_by_the_pause(tmp_path):
    # small segments: the appends roll many times; the roll's syncs and the mark past them
    # come without waiting out the pause once a waiter asks
    with Journal(tmp_path / "j", durability="group", lazy_sync_ms=MINUTE_MS,
                 segment_size=1 << 16, first_segment_size=1 << 16) as j:
        _durable_first(j)
        for i in range(3000):
            last = j.append(bytes(40) + struct.pack("<q", i))
        assert len(list((tmp_path / "j").glob("*.seg"))) > 2
        assert j.appender.wait_durable(last, DEADLINE_S) >= last
    assert JournalReader(tmp_path / "j").durable_sequence >= last


def test_a_new_pause_applies_to_a_running_journal_at_once(tmp_path):
    # set_lazy_ns(0) wakes a pause in progress: without the wake the held append would wait
    # out the minute and this test time out
    with Journal(tmp_path / "j", durability="group", lazy_sync_ms=MINUTE_MS) as j:
        _durable_first(j)
        seq = j.append(b"held")
        time.sleep(0.3)
        assert j.durable_sequence < seq  # held by the pause
        j.appender.set_lazy_ns(0)
        _wait("the sync the new pause allows", lambda: j.durable_sequence >= seq)
        assert j.appender.lazy_ns == 0
        with pytest.raises(ValueError, match="lazy pause"):
            j.appender.set_lazy_ns(-1)
        with pytest.raises(ValueError, match="lazy pause"):
            j.appender.set_lazy_ns(int(MINUTE_MS * 1e6) + 1)


def test_close_does_not_wait_out_the_pause_and_leaves_everything_durable(tmp_path):
    j = Journal(tmp_path / "j", durability="group", lazy_sync_ms=MINUTE_MS)
    _durable_first(j)
    last = j.append_many([struct.pack("<q", i) for i in range(100)])
    t0 = time.monotonic()
    j.close()
    assert time.monotonic() - t0 < DEADLINE_S
    assert JournalReader(tmp_path / "j").durable_sequence == last


@pytest.mark.parametrize("bad", [-1, 60_001, float("nan"), "1"])
def test_a_bad_pause_is_an_error_naming_the_field(tmp_path, bad):
    with pytest.raises(ConfigError, match=r"Journal\.lazy_sync_ms"):
        Journal(tmp_path / "j", lazy_sync_ms=bad)
    with pytest.raises(ConfigError, match=r"ProcessorConfig\.lazy_sync_ms"):
        ProcessorConfig(lazy_sync_ms=bad)


@pytest.mark.parametrize("topology", ["inline", "staged"])
def test_held_outputs_ask_for_their_inputs_durability(tmp_path, topology):
    """Python listeners, durable release: each output waits for its input, and asks, so the
    pause never applies to them."""
    w = Witness()
    p = Processor(Summer(), tmp_path, _cfg(topology=topology, lazy_sync_ms=MINUTE_MS),
                  on_output=w)
    w.p = p
    p.start()
    try:
        for round_ in range(5):  # each round after the leading sync of the one before
            for v in range(20):
                p.publish(ev(v), 5, timestamp_ns=v)
            _wait("the round's outputs", lambda r=round_: len(w.seen) == 20 * (r + 1))
    finally:
        p.stop()
    assert w.violations == []


def test_outputs_held_in_the_loop_for_a_slot_sink_ask_too(tmp_path):
    """The gateway's path: the loop appends its outputs and the input journal's durable hook
    hands them to the sink; the outputs the loop holds back ask for their inputs."""
    sink = SlotSink()
    p = Processor(Summer(), tmp_path, _cfg(topology="inline", lazy_sync_ms=MINUTE_MS))
    p.add_output_listener(sink, batch="slots")
    p.start()
    n = 300
    r = Reader(p, sink, n, p.config.slot_size)
    r.thread.start()
    r.go.set()
    try:
        for v in range(n):
            p.publish(ev(1), 5, timestamp_ns=v)
            if v % 50 == 0:
                time.sleep(0.01)  # several rounds, each after the last sync
        r.join()
    finally:
        p.stop()
    assert len(r.sums) == n and r.sums == list(range(1, n + 1))
    assert r.violations == []


@pytest.mark.parametrize("release,listener,paused", [
    ("durable", True, False), ("durable", False, True), ("immediate", True, True)])
def test_listeners_holding_every_output_turn_the_pause_off(tmp_path, release, listener,
                                                          paused):
    """Under durable release a listener holds every output for its input, so the group
    commit always has a waiter: start() turns the pause off (with it, each commit cycle woke
    the sync thread twice, for the append and then for the want). Without a listener, or
    under immediate release, nothing waits and the pause stays."""
    p = Processor(Summer(), tmp_path, _cfg(topology="inline", lazy_sync_ms=MINUTE_MS,
                                           release=release),
                  on_output=(lambda out: None) if listener else None)
    p.start()
    try:
        assert p.input.appender.lazy_ns == (int(MINUTE_MS * 1e6) if paused else 0)
    finally:
        p.stop()


def test_a_processor_without_listeners_drains_and_stops_promptly(tmp_path):
    p = Processor(Summer(), tmp_path, _cfg(topology="inline", lazy_sync_ms=MINUTE_MS))
    p.start()
    for v in range(100):
        p.publish(ev(v), 5, timestamp_ns=v)
    t0 = time.monotonic()
    p.drain(timeout=DEADLINE_S)
    last = p.journal_sequence_of(99)
    p.stop()
    assert time.monotonic() - t0 < DEADLINE_S
    assert JournalReader(tmp_path / "input").durable_sequence == last
