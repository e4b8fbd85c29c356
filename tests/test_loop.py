"""The compiled loop (ringlog._loop): the same outputs and state as a plain-Python model of the
loop on the same input, live over the ring, on replay over the journal and for Python events;
Cython, Python and batch handlers; the journaller stage; the flyweight event."""

import struct
import tempfile
import threading

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_logic import ModelEvent, ModelLoop
from test_processor import CFG, MS, Summer, ev

from ringlog import JournalError, RingLogError, SchemaError
from ringlog._benchhandlers import SumHandler
from ringlog._loop import SlotEvent, journal_stage
from ringlog._ring import Ring
from ringlog.breaker import Breaker, BreakerConfig, Limit
from ringlog.events import (
    FLAG_BATCH_END,
    FLAG_CONTROL,
    TYPE_BATCH_MARK,
    TYPE_BREAKER_RESET,
    TYPE_DISCARD_HELD,
    TYPE_RELEASE_HELD,
    TYPE_SNAPSHOT,
    TYPE_TIMER,
)
from ringlog.handler import BatchEventHandler, EventHandler
from ringlog.journal import Journal, JournalReader
from ringlog.logic import LogicLoop
from ringlog.processor import Processor

POISON = 13
DL_CFG = msgspec.structs.replace(CFG, exception_policy="dead_letter", dedup=True)


def breaker_config(half_open):
    return BreakerConfig(limits=[Limit(max_count=4, window_ns=20 * MS),
                                 Limit(max_count=3, window_ns=10 * MS, per="key")],
                         half_open_after_ns=half_open)


CONTROL = {"timer": TYPE_TIMER, "reset": TYPE_BREAKER_RESET, "release": TYPE_RELEASE_HELD,
           "discard": TYPE_DISCARD_HELD, "snapshot": TYPE_SNAPSHOT}
_EV = st.tuples(st.just("ev"), st.integers(-5, 40))
OPS = st.lists(st.one_of(
    _EV, _EV, _EV, _EV,                                  # mostly business events
    st.tuples(st.just("burst"), st.integers(5, 12)),     # that many events 0.1 ms apart
    st.tuples(st.just("dup"), st.integers(1, 6)),        # producer 9 resends producer_seq
    st.tuples(st.sampled_from(["reset", "reset", "release", "release", "discard", "timer",
                               "snapshot"]), st.just(0)),
    st.tuples(st.just("gap"), st.integers(1, 30)),       # event time jumps (ms)
), min_size=15, max_size=80)


def build(ops):
    """Input events from ops: business type 5 (int64 payloads), dedup resends, control."""
    out, t = [], 0
    for op, arg in ops:
        t += MS
        if op == "gap":
            t += arg * MS
        elif op == "ev":
            out.append(ModelEvent(5, ev(arg), t, correlation_id=len(out)))
        elif op == "burst":
            for i in range(arg):
                out.append(ModelEvent(5, ev(i), t + i * MS // 10, correlation_id=len(out)))
        elif op == "dup":
            out.append(ModelEvent(5, ev(arg), t, producer_id=9, producer_seq=arg))
        else:
            out.append(ModelEvent(CONTROL[op], b"", t, FLAG_CONTROL))
    return out


def model_of(events, half_open, dedup=True):
    m = ModelLoop(Summer(fail_on=POISON), Breaker(breaker_config(half_open)), events,
                  dedup=dedup, dead_letters=True)
    m.run()
    return m


def key(o):
    return (o.type_id, bytes(o.payload), o.cause, o.flags, o.timestamp_ns, o.correlation_id)


def loop_figures(loop):
    return (loop.processed, loop.duplicates, loop.outputs, loop.published, loop.dead_letters,
            loop.pending_from)


def model_figures(m):
    return (m.processed, m.duplicates, m.outputs, len(m.published), len(m.dead),
            m.pending_from)


def dead_sequences(path):
    return [msgspec.msgpack.decode(r.payload)[0] for r in JournalReader(path)]


def handler_of(kind):
    """The model's Summer as a Python handler, a Cython one, or a Cython one whose events
    the loop handles without the GIL (``nogil_events``)."""
    if kind == "python":
        return Summer(fail_on=POISON)
    return SumHandler(fail_on=POISON, nogil=kind == "cython_nogil")


@pytest.mark.parametrize("listener", [True, False], ids=["listener", "journal"])
@pytest.mark.parametrize("dedup", [True, False], ids=["dedup", "runs"])
@pytest.mark.parametrize("kind", ["python", "cython", "cython_nogil"])
@settings(max_examples=20)
@given(ops=OPS, half_open=st.sampled_from([None, 30 * MS]))
def test_live_loop_and_replay_match_the_model_on_random_mixes(kind, dedup, listener, ops,
                                                              half_open):
    """Events, control events, breaker trips/resets/releases, dedup resends and poison
    events: the live Cython loop (ring -> journal -> loop -> output ring, or with no
    listener straight into the output journal) publishes exactly the model's outputs, ends
    in its state, and a recovery from snapshot + journal verifies every output and reaches
    the same state again. Without dedup the loop and the replay take their business-run
    paths (``_business_run``, ``_replay_run``; ``_steps_nogil`` for a nogil handler): same
    decisions."""
    events = build(ops)
    m = model_of(events, half_open, dedup)
    cfg = msgspec.structs.replace(DL_CFG, dedup=dedup)
    with tempfile.TemporaryDirectory() as d:
        h = handler_of(kind)
        outs = []
        p = Processor(h, d, cfg, breaker=Breaker(breaker_config(half_open)),
                      on_output=outs.append if listener else None)
        p.start()
        for e in events:  # bypass producer backpressure: the breaker holds input back
            p.input_ring.publish(e.payload, e.type_id, timestamp_ns=e.timestamp_ns,
                                 flags=e.flags, correlation_id=e.correlation_id,
                                 producer_id=e.producer_id, producer_seq=e.producer_seq)
        p.drain(timeout=30)
        p.stop()
        got = [key(o) for o in outs] if listener else [  # a record's cause: producer_seq
            (r.type_id, bytes(r.payload), r.producer_seq, r.flags, r.timestamp_ns,
             r.correlation_id) for r in JournalReader(f"{d}/output")]
        assert got == [key(o) for o in m.published]
        assert (h.count, h.total) == (m.handler.count, m.handler.total)
        assert loop_figures(p._loop) == model_figures(m)
        assert p.breaker.counters() == m.breaker.counters()
        assert p.breaker.held == m.breaker.held
        assert p.halted == (m.pending_from >= 0)
        dead = dead_sequences(f"{d}/dead-letter") if m.dead else []
        assert dead == [s for s, _ in m.dead]

        h2 = handler_of(kind)
        p2 = Processor(h2, d, cfg, breaker=Breaker(breaker_config(half_open)))
        rep = p2.recover(verify=True)
        p2.stop()
        assert rep.first_divergence is None and rep.outputs_restored == 0
        assert (h2.count, h2.total) == (m.handler.count, m.handler.total)
        assert loop_figures(p2._loop)[:-1] == model_figures(m)[:-1]
        assert p2.breaker.counters() == m.breaker.counters()


@settings(max_examples=200)
@given(ops=OPS, half_open=st.sampled_from([None, 30 * MS]))
def test_python_event_path_matches_the_model(ops, half_open):
    """LogicLoop.process (Python events, used for re-reads) decides exactly as the model."""
    events = build(ops)
    m = model_of(events, half_open)
    outs, dead = [], []
    loop = LogicLoop(Summer(fail_on=POISON), Breaker(breaker_config(half_open)),
                     sink=outs.append, dedup=True,
                     reread=lambda lo, hi: ((s, events[s]) for s in range(lo, hi + 1)),
                     dead_letter=lambda e, s, tb: dead.append(s))
    for s, e in enumerate(events):
        loop.process(e, s, True)
    assert [key(o) for o in outs] == [key(o) for o in m.published]
    assert [o.key for o in outs] == [o.key for o in m.published]
    assert loop_figures(loop) == model_figures(m)
    assert dead == [s for s, _ in m.dead]
    assert loop.breaker.held == m.breaker.held


@settings(max_examples=100, deadline=None)
@given(keys=st.lists(st.tuples(st.sampled_from([1, 2, 3, 4, 1023, 1024, 1 << 31, (1 << 32) - 1])
                               | st.integers(1, (1 << 32) - 1), st.integers(-3, 60)),
                     min_size=1, max_size=300))
def test_dedup_table_keeps_the_last_seq_of_every_producer(keys):
    """The loop's dedup table (a C hash map that grows) applies an event only if its
    producer_seq is above the producer's last applied one, for any number of producers and
    any ids; ``dedup`` reads it back as a dict, and assigning that dict (a snapshot's
    restore) gives a loop that decides the same."""
    events = [ModelEvent(5, ev(i), MS * (i + 1), producer_id=pid, producer_seq=seq)
              for i, (pid, seq) in enumerate(keys)]
    loop = LogicLoop(Summer(), None, sink=lambda o: None, dedup=True)
    model, dups = {}, 0
    for s, e in enumerate(events):
        loop.process(e, s, True)
        if e.producer_seq <= model.get(e.producer_id, -1):
            dups += 1
        else:
            model[e.producer_id] = e.producer_seq
    assert loop.dedup == model and loop.duplicates == dups
    assert list(loop.dedup) == sorted(model)  # snapshots: the same bytes for the same state
    assert loop.processed == len(events) - dups
    again = LogicLoop(Summer(), None, sink=lambda o: None, dedup=True)
    again.state = loop.state
    assert again.dedup == model
    for s, (pid, seq) in enumerate(model.items()):  # the last seq again: a duplicate each
        again.process(ModelEvent(5, ev(0), 0, producer_id=pid, producer_seq=seq),
                      len(events) + s, True)
    assert again.duplicates == loop.duplicates + len(model)


@pytest.mark.parametrize("bad, word", [({1 << 32: 5}, "producer_id"), ({-1: 5}, "producer_id"),
                                      ({7: -2}, "negative")])
def test_dedup_table_refuses_what_no_producer_sends(bad, word):
    loop = LogicLoop(Summer(), None, sink=lambda o: None, dedup=True)
    loop.dedup = {3: 4}
    with pytest.raises(SchemaError, match=word):
        loop.dedup = bad
    assert loop.dedup == {3: 4}  # unchanged


class Recorder(EventHandler):
    """Keeps what it saw of each event during the call (the flyweight is reused)."""

    def __init__(self):
        self.seen = []

    def on_event(self, event, sequence, end_of_batch):
        self.seen.append((event.sequence, sequence, bytes(event.payload), end_of_batch,
                          event.flags & FLAG_BATCH_END != 0))


def test_flyweight_event_carries_the_journal_sequence_live_and_on_replay(tmp_path):
    r = Recorder()
    p = Processor(r, tmp_path, CFG)
    p.start()
    for v in range(50):
        p.publish(ev(v), 5)
    p.drain(timeout=30)
    p.stop()
    r2 = Recorder()
    p2 = Processor(r2, tmp_path, CFG)
    p2.start()  # recovers the first 50, then continues at journal sequence 50
    for v in range(50, 60):
        p2.publish(ev(v), 5)
    p2.drain(timeout=30)
    p2.stop()
    assert [s for s, *_ in r.seen] == list(range(50))
    assert [(a, b) for a, b, *_ in r2.seen] == [(s, s) for s in range(60)]
    assert [p for _, _, p, *_ in r2.seen] == [ev(v) for v in range(60)]
    # end_of_batch is the journaller's batch end, so the replay reports the same batches
    assert [x[3:] for x in r2.seen[:50]] == [x[3:] for x in r.seen]
    assert all(x[3] == x[4] for x in r2.seen) and r.seen[-1][3]


class BatchSummer(BatchEventHandler):
    """Vectorised Summer: int64 payloads, one output (first, n, total) per batch."""

    payload_dtype = np.dtype("<i8")

    def __init__(self, fail_on=None):
        self.count = self.total = 0
        self.batches = []
        self.fail_on = fail_on

    def on_batch(self, array, first_sequence):
        assert not array.flags.writeable  # inputs are read-only: replay sees what live saw
        vals = array["payload"][array["header"]["type_id"] == 5]  # timers arrive here too
        if self.fail_on is not None and (vals == self.fail_on).any():
            raise ValueError("poison in batch")
        self.count += len(vals)
        self.total += int(vals.sum())
        self.batches.append((first_sequence, len(array)))
        self.emit(struct.pack("<qqq", first_sequence, len(array), self.total), type_id=2)

    def on_snapshot(self):
        return msgspec.msgpack.encode([self.count, self.total])

    def on_restore(self, data):
        self.count, self.total = msgspec.msgpack.decode(data)


def test_batch_handler_gets_numpy_views_and_replay_hands_it_the_same_batches(tmp_path):
    cfg = msgspec.structs.replace(CFG, max_batch=16, dedup=True)
    h = BatchSummer()
    outs = []
    p = Processor(h, tmp_path, cfg, on_output=outs.append)
    p.start()
    for v in range(200):
        p.publish_many([ev(v)], 5)
        if v == 77:
            p.timer(10**12)  # a control event splits a batch; the timer is a batch of one
        if v == 120:
            p.publish(ev(1000), 5, producer_id=3, producer_seq=1)  # a dedup key: alone
    p.drain(timeout=30)
    p.stop()
    assert h.count == 201 and h.total == sum(range(200)) + 1000
    assert all(n <= 16 for _, n in h.batches)
    firsts = [f for f, _ in h.batches]
    assert firsts == sorted(firsts) and sum(n for _, n in h.batches) == 202  # + the timer
    assert (78, 1) in h.batches and (122, 1) in h.batches  # the timer and the dedup-keyed
    h2 = BatchSummer()
    p2 = Processor(h2, tmp_path, cfg)
    rep = p2.recover(verify=True)
    p2.stop()
    assert rep.first_divergence is None and rep.verified_outputs == len(outs)
    assert h2.batches == h.batches and (h2.count, h2.total) == (h.count, h.total)


def test_a_batch_cut_short_by_a_crash_is_ended_so_every_replay_sees_the_same_batches(tmp_path):
    # the journal as a crash leaves it: a batch of 5 whose last record has no batch end
    with Journal(tmp_path / "input", durability="none") as j:
        for v in range(5):
            j.append(ev(v), 5, timestamp_ns=v)
    h1 = BatchSummer()
    p1 = Processor(h1, tmp_path, CFG)
    p1.recover()
    p1.stop()
    assert h1.batches == [(0, 5)]
    last = next(JournalReader(tmp_path / "input").records(5))
    assert last.type_id == TYPE_BATCH_MARK and last.flags & FLAG_BATCH_END
    # live input after the restart, then a replay from scratch: the cut batch stays alone
    with Journal(tmp_path / "input", durability="none") as j:
        for v in range(5, 8):
            j.append(ev(v), 5, timestamp_ns=v, flags=FLAG_BATCH_END if v == 7 else 0)
    h2 = BatchSummer()
    p2 = Processor(h2, tmp_path, CFG)
    p2.recover()
    p2.stop()
    assert h2.batches == [(0, 5), (6, 3)] and h2.total == sum(range(8))


def test_timer_reaches_a_batch_handler_as_a_batch_of_one(tmp_path):
    class Timers(BatchEventHandler):
        def __init__(self):
            self.rows = []

        def on_batch(self, array, first_sequence):
            self.rows += [(first_sequence + i, int(t)) for i, t in
                          enumerate(array["header"]["type_id"])]

    h = Timers()
    p = Processor(h, tmp_path, CFG)
    p.start()
    p.publish(ev(1), 5)
    p.timer(123)
    p.drain(timeout=30)
    p.stop()
    assert h.rows == [(0, 5), (1, TYPE_TIMER)]


def test_batch_handler_exception_dead_letters_every_event_of_the_batch(tmp_path):
    cfg = msgspec.structs.replace(CFG, exception_policy="dead_letter")
    h = BatchSummer(fail_on=7)
    p = Processor(h, tmp_path, cfg)
    p.start()
    p.publish_many([ev(v) for v in range(5)], 5)
    p.drain(timeout=30)
    p.stop()
    assert not (tmp_path / "dead-letter").exists() and h.count == 5
    p = Processor(BatchSummer(fail_on=7), tmp_path, cfg)
    p.start()
    p.publish_many([ev(v) for v in range(5, 10)], 5)
    p.drain(timeout=30)
    p.stop()
    dead = [msgspec.msgpack.decode(r.payload) for r in JournalReader(tmp_path / "dead-letter")]
    assert [d[0] for d in dead] == [5, 6, 7, 8, 9]  # the whole batch, none lost
    assert [d[2] for d in dead] == [ev(v) for v in range(5, 10)]
    assert all("poison in batch" in d[3] for d in dead)
    assert p._loop.dead_letters == 5 and p._loop.processed == 10


def test_cython_handler_outputs_equal_the_python_handlers_byte_for_byte(tmp_path):
    values = [3, -4, 10**12, 0, 7] * 40
    _, py_outs, _ = _run(tmp_path / "py", values, Summer())
    _, cy_outs, _ = _run(tmp_path / "cy", values, SumHandler())
    assert [key(o) for o in cy_outs] == [key(o) for o in py_outs]
    assert len(cy_outs) == 200


def _run(path, values, h, config=CFG, **kw):
    outs = []
    p = Processor(h, path, config, on_output=outs.append, **kw)
    p.start()
    for i, v in enumerate(values):
        p.publish(ev(v), 5, timestamp_ns=i * MS)
    p.drain(timeout=30)
    p.stop()
    return h, outs, p


def test_oversize_output_is_a_clear_error_that_dead_letters_the_event(tmp_path):
    class Big(EventHandler):
        def on_event(self, event, sequence, end_of_batch):
            self.emit(b"x" * 200, type_id=1)

    cfg = msgspec.structs.replace(CFG, exception_policy="dead_letter")
    _, outs, p = _run(tmp_path, [1, 2], Big(), config=cfg)
    (d, _) = [msgspec.msgpack.decode(r.payload) for r in JournalReader(tmp_path / "dead-letter")]
    assert "does not fit a 128-byte output slot" in d[3]
    assert outs == [] and p._loop.published == 0


def test_emit_of_a_non_bytes_payload_is_a_type_error_naming_the_type(tmp_path):
    class Bad(EventHandler):
        def on_event(self, event, sequence, end_of_batch):
            self.emit("text", type_id=1)

    p = Processor(Bad(), tmp_path, CFG)
    p.start()
    p.publish(ev(1), 5)
    with pytest.raises(RingLogError, match="bytes-like payloads, got str"):
        p.drain(timeout=30)
        p.stop()


def test_slot_event_is_made_by_the_loop_only():
    with pytest.raises(TypeError, match="made by the loop only"):
        SlotEvent()


def test_loop_rejects_a_non_breaker_and_a_non_handler():
    with pytest.raises(TypeError, match=r"breaker must be a ringlog\.Breaker"):
        LogicLoop(Summer(), object())
    with pytest.raises(TypeError, match="is not a handler"):
        LogicLoop(object(), None)


def test_out_of_order_sequence_is_refused():
    loop = LogicLoop(Summer(), None, sink=lambda r: None)
    loop.process(ModelEvent(5, ev(1)), 0, True)
    with pytest.raises(RuntimeError, match="input sequence 2 after 0"):
        loop.process(ModelEvent(5, ev(1)), 2, True)


def test_journal_stage_marks_batch_ends_and_journals_every_slot_in_order(tmp_path):
    ring = Ring(64, 64, producer="multi")
    c = ring.consumer()
    j = Journal(tmp_path, durability="none")
    t = threading.Thread(target=journal_stage, args=(c, j.appender, 8))
    t.start()
    for i in range(100):
        ring.publish(ev(i), 5)
        if i % 30 == 29:
            ring.publish_many([ev(-1)] * 3, 5)
    ring.close()
    t.join(timeout=30)  # the stage returns once the ring is closed and drained
    assert not t.is_alive()
    j.close()
    recs = list(JournalReader(tmp_path))
    assert len(recs) == 109 and [r.sequence for r in recs] == list(range(109))
    vals = [struct.unpack("<q", r.payload)[0] for r in recs]
    assert [v for v in vals if v >= 0] == list(range(100))
    ends = [r.sequence for r in recs if r.flags & FLAG_BATCH_END]
    assert ends[-1] == 108
    batches = list(zip([0, *(e + 1 for e in ends[:-1])], ends, strict=True))
    assert max(hi - lo + 1 for lo, hi in batches) <= 8  # no batch over max_batch
    assert all(lo // 64 == hi // 64 for lo, hi in batches)  # none wraps the ring end


def test_oversize_replay_row_for_a_batch_handler_is_a_schema_error(tmp_path):
    j = Journal(tmp_path / "input", durability="none")
    j.append(b"x" * 100, 5)
    j.close()
    p = Processor(BatchSummer(), tmp_path, msgspec.structs.replace(CFG, slot_size=64))
    with pytest.raises(SchemaError, match="does not fit a 64-byte slot"):
        p.recover()
    p.stop()


def test_journal_stage_raises_a_journal_failure_instead_of_releasing_slots(tmp_path):
    ring = Ring(64, 64)
    c = ring.consumer()
    j = Journal(tmp_path, durability="none")
    j.appender.fail()  # as after a failed group commit
    ring.publish(ev(1), 5)
    with pytest.raises(JournalError, match="the journal failed earlier"):
        journal_stage(c, j.appender, 8)
    assert c.sequence == -1  # nothing released downstream unjournaled
    j.close()


class OneArg(EventHandler):
    """Declares only ``event``: the loop passes nothing else (no int per event)."""

    def __init__(self):
        self.seen = []

    def on_event(self, event):
        self.seen.append((event.sequence, bytes(event.payload)))


class TwoArgs(OneArg):
    def on_event(self, event, sequence):
        self.seen.append((event.sequence, sequence))


class AnyArgs(OneArg):
    def on_event(self, *args):
        self.seen.append((args[0].sequence, args[1], args[2]))


@pytest.mark.parametrize("handler", [OneArg, TwoArgs, AnyArgs])
def test_python_handler_gets_the_arguments_its_on_event_declares_live_and_on_replay(
        tmp_path, handler):
    """A handler that declares fewer than (event, sequence, end_of_batch) is called with
    just those, live, on replay and for a re-read event; the full contract is unchanged."""
    h, _, p = _run(tmp_path, list(range(40)), handler())
    assert p._loop.processed == 40 and p._loop.dead_letters == 0
    h2 = handler()
    p2 = Processor(h2, tmp_path, CFG)
    p2.recover()
    p2.stop()
    assert h2.seen == h.seen and len(h.seen) == 40
    if handler is OneArg:
        assert h.seen == [(s, ev(s)) for s in range(40)]
    else:
        assert all(seq == s for s, (_, seq, *_) in enumerate(h.seen))
    if handler is AnyArgs:
        assert h.seen[-1][2] is True  # end_of_batch: the last event closes its batch
    calls = []

    class Probe:
        def on_event(self, event, sequence):
            calls.append((event.payload, sequence))

    loop = LogicLoop(Probe(), None, sink=lambda out: None)
    loop.process(ModelEvent(5, ev(7), 0), 3, True)  # the Python-event path: the same rule
    assert calls == [(ev(7), 3)]


class Keeper(EventHandler):
    """Copies every ``sequence`` it is handed and keeps every third one itself."""

    def __init__(self):
        self.copies, self.kept = [], []

    def on_event(self, event, sequence, end_of_batch):
        self.copies.append(sequence + 0)  # a new int: its value now
        if len(self.copies) % 3 == 1:
            self.kept.append(sequence)  # the loop's own int, held past the call


def test_a_sequence_int_a_handler_keeps_is_never_rewritten(tmp_path):
    """The loop rewrites its last ``sequence`` int in place only while nobody else holds
    it (no allocation per event): every handler sees the right value, and the ints a
    handler kept keep theirs, live, on replay, past the small ints and across 2**30 (where
    a one-digit int ends)."""
    h, _, _ = _run(tmp_path, list(range(1000)), Keeper())
    assert h.copies == list(range(1000)) and h.kept == h.copies[::3]
    h2 = Keeper()
    p2 = Processor(h2, tmp_path, CFG)
    p2.recover()
    p2.stop()
    assert h2.copies == h.copies and h2.kept == h.kept
    seqs = [*range(250, 262), *range(2**30 - 4, 2**30 + 4), *range(2**40, 2**40 + 4)]
    h3 = Keeper()
    loop = LogicLoop(h3, None, sink=lambda out: None)
    for s in seqs:  # the Python-event path, at any sequence
        loop.last_sequence = s - 1
        loop.process(ModelEvent(5, ev(1), 0), s, False)
    assert h3.copies == seqs and h3.kept == seqs[::3]


@pytest.mark.parametrize("stop", [0, 17, 63, 64, 99])
def test_replay_stops_exactly_at_the_stop_sequence_inside_a_run(tmp_path, stop):
    """``replay_segment`` hands business records to the handler in runs: a stop sequence
    inside a run ends it there, and the next call continues at the next record."""
    _run(tmp_path, list(range(100)), SumHandler())
    h = SumHandler()
    loop = LogicLoop(h, None, sink=lambda out: None)
    loop.replaying = True
    reader = JournalReader(tmp_path / "input")
    seg = reader.segment(*reader.segments()[0])
    _, off, nxt, n = loop.replay_segment(seg, reader.locate(0)[2], 0, True, stop)
    assert (nxt, n, h.count, loop.last_sequence) == (stop + 1, stop + 1, stop + 1, stop)
    _, _, nxt, n = loop.replay_segment(seg, off, nxt)
    assert (nxt, h.count, h.total) == (100, 100, sum(range(100)))
