"""The lookahead contract of Cython handlers (``CyEventHandler.prefetch_c``): the loop calls
it for the event ``LOOKAHEAD_EVENTS`` (16) places ahead of the one it hands to
``on_event_c``, at most once per event, never past what is published (live) or what the
journal holds (replay), never for a handler that does not ask for it; and the engine's
lookahead leaves its results exactly as they were."""

import tempfile

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_processor import CFG

from ringlog import Processor
from ringlog._benchhandlers import LookaheadHandler
from ringlog._handler import LOOKAHEAD_EVENTS
from ringlog.engine import Engine
from ringlog.engine.flow import demo_config, mixed_flow

LOOKAHEAD = LOOKAHEAD_EVENTS


def run(n, lookahead, topology, chunks, replay=False):
    """(pairs, prefetches) of a live run, or with ``replay`` of the recovery of its journal."""
    cfg = msgspec.structs.replace(CFG, topology=topology)
    with tempfile.TemporaryDirectory() as d:
        out = np.full(2 * n, -2, np.int64)
        h = LookaheadHandler(out, lookahead)
        p = Processor(h, d, cfg)
        p.start()
        lo = 0
        for size in chunks:  # bursts of several sizes: batches of several lengths
            hi = min(n, lo + size)
            p.publish_records(np.arange(lo, hi, dtype=np.int64))
            lo = hi
        if lo < n:
            p.publish_records(np.arange(lo, n, dtype=np.int64))
        p.drain(timeout=30)
        p.stop()
        if replay:
            out = np.full(2 * n, -2, np.int64)
            h = LookaheadHandler(out, lookahead)
            p = Processor(h, d, cfg)
            assert p.recover().replayed == n
            p.stop()
    assert h.count == n
    return out.reshape(n, 2), h.prefetches


@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 600), topology=st.sampled_from(["inline", "staged"]),
       chunks=st.lists(st.integers(1, 300), max_size=4), replay=st.booleans())
def test_prefetch_comes_lookahead_events_early_once_each(n, topology, chunks, replay):
    pairs, prefetches = run(n, True, topology, chunks, replay)
    handled, ahead = pairs[:, 0], pairs[:, 1]
    assert handled.tolist() == list(range(n))
    hinted = ahead[ahead >= 0]
    # each hint was for the event LOOKAHEAD places ahead of the one handled next, within
    # what was published, and no event was hinted twice
    assert np.all(hinted == handled[ahead >= 0] + LOOKAHEAD)
    assert np.all(hinted < n)
    assert len(set(hinted.tolist())) == len(hinted) == prefetches


@pytest.mark.parametrize("replay", [False, True])
def test_prefetch_is_called_when_a_batch_is_long_enough(replay):
    # one burst of 500 events: the loop's batches, and the replay's runs of records, are
    # longer than LOOKAHEAD
    pairs, prefetches = run(500, True, "inline", [500], replay)
    assert prefetches > 0
    assert prefetches == int((pairs[:, 1] >= 0).sum())


@pytest.mark.parametrize(("topology", "replay"), [("inline", False), ("staged", False),
                                                  ("inline", True)])
def test_no_prefetch_for_a_handler_that_does_not_ask(topology, replay):
    pairs, prefetches = run(300, False, topology, [300], replay)
    assert prefetches == 0
    assert np.all(pairs[:, 1] == -1)


def test_engine_results_are_the_same_with_and_without_lookahead():
    """The engine's prefetch_c only loads lines: process_commands (which calls it ahead)
    and one command at a time through on_event (which does not) leave the same books."""
    cmds, types = mixed_flow(20_000, seed=5)
    a, b = Engine(demo_config(max_orders=1 << 16)), Engine(demo_config(max_orders=1 << 16))
    a.process_commands(cmds, types)
    outs = []
    b.emit = lambda payload, type_id=0, key=0: outs.append(type_id)

    class Ev:  # the fields CyEventHandler.on_event reads
        timestamp_ns = correlation_id = producer_seq = producer_id = flags = 0

    for c, t in zip(cmds, types, strict=True):
        e = Ev()
        e.type_id, e.payload = int(t), c.tobytes()
        b.on_event(e, 0, True)
    assert a.on_snapshot() == b.on_snapshot()
    assert len(outs) > len(cmds)
