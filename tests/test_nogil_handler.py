"""Cython handlers that handle events without the GIL (``CyEventHandler.nogil_events``).

The processor's loop thread then journals and handles whole batches while another Python
thread holds the GIL; a handler without the flag waits for it. What such a handler decides is
the same either way: tests/test_loop.py's model test runs the nogil kind through breaker trips,
held input, dedup resends, dead letters and replay; the engine (``nogil_events``) runs its own
model and processor tests that way."""

import sys
import time

import msgspec
import numpy as np
import pytest
from test_processor import CFG, MS, ev

from ringlog._benchhandlers import CountingHandler, SumHandler
from ringlog.engine import Engine
from ringlog.engine.flow import demo_config, mixed_flow
from ringlog.journal import JournalReader
from ringlog.processor import Processor
from ringlog.snapshot import SnapshotStore

N = 2000
HOLD_S = 0.3  # how long the handler without the flag is kept from the GIL
# room for every event in the ring and the journals' first segments (1 MiB): publish never
# waits and no segment rolls (the journals' background threads prepare the next segment
# with the GIL, so a roll may wait for it)
BIG = msgspec.structs.replace(CFG, ring_capacity=1 << 15, output_capacity=1 << 15,
                              segment_size=1 << 26)


def _hold_gil_until(done, timeout):
    """Runs busy loops that never give the GIL up (a switch interval longer than the
    wait) until ``done()`` or ``timeout`` seconds; returns ``done()`` as seen then."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(60.0)
    try:
        end = time.monotonic() + timeout
        while not done() and time.monotonic() < end:
            pass
        return done()
    finally:
        sys.setswitchinterval(old)


@pytest.mark.parametrize("topology", ["inline", "staged"])
@pytest.mark.parametrize("listener", [False, True], ids=["journal", "listener"])
def test_a_nogil_handler_handles_batches_while_another_thread_holds_the_gil(tmp_path,
                                                                             topology,
                                                                             listener):
    h = CountingHandler(every=4, nogil=True)
    outs = []
    p = Processor(h, tmp_path, msgspec.structs.replace(BIG, topology=topology,
                                                       max_batch=64),
                  on_output=outs.append if listener else None)
    p.start()
    try:
        p.publish(ev(0), 5, timestamp_ns=MS)
        p.drain(timeout=30)  # the loop thread is past its start (Python) and waits for input

        def publish_and_wait():
            for v in range(1, N + 1):
                p.publish(ev(v), 5, timestamp_ns=(v + 1) * MS)
            return h.count == N + 1

        old = sys.getswitchinterval()
        sys.setswitchinterval(60.0)
        try:  # this thread publishes, then waits, holding the GIL throughout
            published = publish_and_wait() or _hold_gil_until(lambda: h.count == N + 1, 30)
        finally:
            sys.setswitchinterval(old)
        p.drain(timeout=30)
    finally:
        p.stop()
    assert published, f"handled {h.count} of {N + 1} events while this thread held the GIL"
    if listener:  # every fourth count, in order (the listener runs once the GIL is free)
        assert [int.from_bytes(o.payload, "little") for o in outs] == list(
            range(4, N + 2, 4))


def test_a_handler_without_the_flag_waits_for_the_gil(tmp_path):
    # the control case: the same handler with the GIL is held back by the same hold, so the
    # test above can fail
    h = CountingHandler(every=4, nogil=False)
    p = Processor(h, tmp_path, BIG)
    p.start()
    try:
        p.publish(ev(0), 5, timestamp_ns=MS)
        p.drain(timeout=30)
        old = sys.getswitchinterval()
        sys.setswitchinterval(60.0)
        try:
            p.publish(ev(1), 5, timestamp_ns=2 * MS)
            handled = _hold_gil_until(lambda: h.count == 2, HOLD_S)
        finally:
            sys.setswitchinterval(old)
        p.drain(timeout=30)
    finally:
        p.stop()
    assert not handled and h.count == 2


def test_the_engine_matches_a_flow_while_another_thread_holds_the_gil(tmp_path):
    # the engine's commands run without the GIL: a mixed flow (trades, cancels, rejects) is
    # matched while this thread holds it, and ends in the state the engine alone reaches
    cfg = demo_config(max_orders=1 << 16)
    cmds, types = mixed_flow(2_000, seed=5)  # ~0.6 MiB of outputs: no roll
    alone = Engine(cfg)
    alone.apply(1, b"\0" * 8)  # the warm-up command below: an unknown one, rejected
    alone.process_commands(cmds, types.astype(np.uint32))
    eng = Engine(cfg)
    p = Processor(eng, tmp_path, msgspec.structs.replace(BIG, slot_size=cfg.min_slot_size))
    p.start()
    try:
        p.publish(b"\0" * 8, 1, timestamp_ns=1)
        p.drain(timeout=30)  # the loop thread is past its start (Python) and waits for input
        old = sys.getswitchinterval()
        sys.setswitchinterval(60.0)
        try:
            p.publish_records(cmds, types.astype(np.uint32),
                              timestamp_ns=np.arange(1, len(cmds) + 1, dtype=np.int64) * 1000)
            done = _hold_gil_until(lambda: eng.stats()["commands"] == len(cmds) + 1, 60)
        finally:
            sys.setswitchinterval(old)
        p.drain(timeout=60)
    finally:
        p.stop()
    assert eng.nogil_events and not CountingHandler().nogil_events
    assert done, f"{eng.stats()['commands']} of {len(cmds) + 1} commands while holding the GIL"
    assert eng.stats()["trades"] > 100 and eng.stats()["cancelled"] > 100
    assert eng.state_hash() == alone.state_hash()
    eng.books.check()


def test_automatic_snapshots_and_dead_letters_match_the_handler_with_the_gil(tmp_path):
    # snapshot_every on the nogil path: the run stops after each snapshot's event and takes
    # it with the GIL; the poison events sit exactly at snapshot points (an exception and a
    # snapshot after the same event). Same snapshots, outputs and dead letters both ways.
    cfg = msgspec.structs.replace(BIG, snapshot_every=50, exception_policy="dead_letter",
                                  max_batch=37)
    got = {}
    for nogil in (False, True):
        d = tmp_path / f"nogil-{nogil}"
        h = SumHandler(fail_on=49, nogil=nogil)
        p = Processor(h, d, cfg)
        p.start()
        for v in range(1000):
            p.publish(ev(v % 100), 5, timestamp_ns=(v + 1) * MS)
        p.drain(timeout=30)
        p.stop()
        snaps = SnapshotStore(d / "snapshots")
        got[nogil] = ([(s, snaps.load(s).data) for s in snaps.sequences()],
                      [(r.type_id, bytes(r.payload)) for r in JournalReader(d / "output")],
                      [msgspec.msgpack.decode(r.payload)[0]
                       for r in JournalReader(d / "dead-letter")],
                      (h.count, h.total))
    assert [s for s, _ in got[True][0]] == list(range(49, 1000, 50))
    assert got[True][2] == list(range(49, 1000, 100))
    assert got[True] == got[False]


@pytest.mark.parametrize("allow", [[7], [1]], ids=["allow-other", "allow-this"])
def test_a_ratio_limit_and_an_allow_list_decide_alike_without_the_gil(tmp_path, allow):
    # the breaker's allow-list and ratio limit are checked without the GIL on the nogil
    # path (the trip takes it): the ratio trips (one output per input against 0.5) unless
    # the handler's output type is allowed; the same outputs, figures and counters both ways
    from ringlog.breaker import Breaker, BreakerConfig, Limit, RatioLimit

    got = {}
    for nogil in (False, True):
        d = tmp_path / f"nogil-{nogil}"
        br = Breaker(BreakerConfig(limits=[Limit(max_count=40, window_ns=100 * MS)],
                                   ratio=RatioLimit(max_ratio=0.5, window_ns=50 * MS,
                                                    min_inputs=8),
                                   allow_types=frozenset(allow)))
        p = Processor(SumHandler(nogil=nogil), d, BIG, breaker=br)
        p.start()
        for v in range(300):
            p.input_ring.publish(ev(v), 5, timestamp_ns=(v + 1) * MS)
        p.drain(timeout=30)
        loop = p._loop
        figures = (loop.processed, loop.outputs, loop.published, loop.pending_from)
        counters = p.breaker.counters()
        p.stop()
        got[nogil] = ([(r.type_id, bytes(r.payload), r.flags)
                       for r in JournalReader(d / "output")], figures, counters)
    assert got[True] == got[False]
    tripped = got[True][1][3] >= 0
    assert tripped == (allow == [7]), got[True][1]
