"""Processor lifecycle and topologies: drain keeps running, stop stops, metrics survive a
stop, output keys reach listeners, bad handlers are refused before any file exists, and
every topology journals before processing and replays the same batches."""

import os
import struct

import numpy as np
import pytest
from test_processor import CFG, Summer, ev

from ringlog import BatchEventHandler, RingLogError
from ringlog._benchhandlers import SumHandler
from ringlog.errors import ConfigError
from ringlog.events import FLAG_BATCH_END
from ringlog.journal import JournalReader
from ringlog.processor import INLINE_BELOW_CPUS, Processor, ProcessorConfig, resolve_topology

TOPOLOGIES = ["inline", "staged", "driven"]


def _cfg(topology, **kw):
    return ProcessorConfig(**{**{f: getattr(CFG, f) for f in CFG.__struct_fields__},
                              "topology": topology, **kw})


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_drain_waits_until_idle_and_a_later_publish_is_handled(tmp_path, topology):
    outs = []
    p = Processor(Summer(), tmp_path, _cfg(topology), on_output=outs.append)
    p.start()
    for v in range(50):
        p.publish(ev(v), 5)
    p.drain(timeout=30)
    assert p.state == "running"
    assert p.handler.count == 50 and len(outs) == 50  # idle: handled and handed on
    p.publish(ev(100), 5)
    p.drain(timeout=30)
    assert p.handler.count == 51 and p.handler.total == sum(range(50)) + 100
    assert len(outs) == 51
    p.stop()
    assert p.state == "closed"


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_stop_handles_what_was_published_and_stops(tmp_path, topology):
    p = Processor(Summer(), tmp_path, _cfg(topology))
    p.start()
    for v in range(300):  # more than the ring holds: publish waits for the loop
        p.publish(ev(v), 5)
    p.stop()
    assert p.state == "closed" and all(not t.is_alive() for t in p._threads)
    assert p.handler.count == 300
    assert len(list(JournalReader(tmp_path / "input"))) == 300
    assert len(list(JournalReader(tmp_path / "output"))) == 300
    p.stop()  # idempotent


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_metrics_survive_a_stop(tmp_path, topology):
    p = Processor(Summer(), tmp_path, _cfg(topology))
    p.start()
    for v in range(40):
        p.publish(ev(v), 5)
    p.drain(timeout=30)
    live = p.metrics
    p.stop()
    m = p.metrics
    assert (m.published, m.journaled, m.processed, m.outputs, m.output_journaled) == \
        (40, 40, 40, 40, 40)
    assert (live.published, live.processed) == (40, 40)
    assert m.state == "closed" and m.journal_lag == 0 and m.logic_lag == 0


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("kind", ["python", "cython"])
def test_output_records_carry_the_key_the_handler_emitted(tmp_path, topology, kind):
    outs, batches = [], []
    h = Summer() if kind == "python" else SumHandler()
    p = Processor(h, tmp_path, _cfg(topology), on_output=outs.append)
    p.add_output_listener(batches.extend, batch=True)
    p.start()
    for v in range(20):
        p.publish(ev(v), 5)
    p.stop()
    assert [o.key for o in outs] == [v % 3 for v in range(20)]  # both handlers: key v % 3
    assert [o.key for o in batches] == [v % 3 for v in range(20)]


class _NotAHandler:
    pass


@pytest.mark.parametrize("bad, words", [
    (Summer, "class Summer, not an instance"),
    (_NotAHandler(), "is not a handler"),
    (42, "is not a handler"),
])
def test_bad_handler_is_refused_before_any_file_is_created(tmp_path, bad, words):
    d = tmp_path / "proc"
    with pytest.raises(ConfigError, match=words) as e:
        Processor(bad, d, CFG)
    assert isinstance(e.value, RingLogError) and e.value.field == "Processor.handler"
    assert not d.exists()


def test_bad_config_object_is_refused_before_any_file_is_created(tmp_path):
    d = tmp_path / "proc"
    with pytest.raises(ConfigError, match=r"Processor\.config"):
        Processor(Summer(), d, {"durability": "group"})
    assert not d.exists()


def test_topology_field_is_validated():
    with pytest.raises(ConfigError, match=r"ProcessorConfig\.topology"):
        ProcessorConfig(topology="threads")
    with pytest.raises(ConfigError, match=r"ProcessorConfig\.release"):
        ProcessorConfig(release="later")


def test_auto_topology_follows_the_cpus_the_process_may_use():
    cpus = len(os.sched_getaffinity(0))
    assert resolve_topology("auto") == ("inline" if cpus < INLINE_BELOW_CPUS else "staged")
    assert resolve_topology("inline") == "inline" and resolve_topology("staged") == "staged"


def test_auto_topology_with_one_cpu_is_inline(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert resolve_topology("auto") == "inline"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert resolve_topology("auto") == "staged"


@pytest.mark.parametrize("outputs", ["loop", "thread"])
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_only_inline_with_outputs_journaled_by_the_loop_has_no_output_thread(tmp_path, topology,
                                                                              outputs):
    p = Processor(Summer(), tmp_path, _cfg(topology, output_journaller=outputs))
    p.start()
    names = sorted(t.name for t in p._threads)
    p.stop()
    if topology == "inline" and outputs == "loop":
        assert names == ["ringlog-loop"] and p.output_ring is None
    elif topology == "inline":
        assert names == ["ringlog-loop", "ringlog-output"]
    elif topology == "driven":  # no loop thread: the caller's pump() is the loop
        assert names == ([] if outputs == "loop" else ["ringlog-output"])
    else:
        assert names == ["ringlog-journaller", "ringlog-loop", "ringlog-output"]


class JournalChecker(Summer):
    """Checks, for every event it handles, that the event is already in the input journal."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.missing = []

    def on_event(self, event, sequence, end_of_batch):
        recs = list(JournalReader(self.path).records(sequence, to_sequence=sequence))
        if not recs or bytes(recs[0].payload) != bytes(event.payload):
            self.missing.append(sequence)
        super().on_event(event, sequence, end_of_batch)


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_every_topology_journals_an_input_before_the_handler_sees_it(tmp_path, topology):
    h = JournalChecker(tmp_path / "input")
    p = Processor(h, tmp_path, _cfg(topology))
    p.start()
    for v in range(200):
        p.publish(ev(v), 5)
    p.stop()
    assert h.count == 200 and h.missing == []


class Batches(BatchEventHandler):
    def __init__(self):
        self.batches = []

    def on_batch(self, array, first_sequence):
        self.batches.append((first_sequence, len(array)))


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_replay_hands_a_batch_handler_the_live_batches_in_every_topology(tmp_path, topology):
    cfg = _cfg(topology, max_batch=16)
    h = Batches()
    p = Processor(h, tmp_path, cfg)
    p.start()
    for i in range(20):
        p.publish_many([ev(v) for v in range(i % 7 + 1)], 5)
    p.stop()
    ends = [r.sequence for r in JournalReader(tmp_path / "input") if r.flags & FLAG_BATCH_END]
    assert ends and all(n <= 16 for _, n in h.batches)
    assert [f + n - 1 for f, n in h.batches] == ends  # live batches are the journal's
    h2 = Batches()
    p2 = Processor(h2, tmp_path, cfg)
    p2.recover()
    p2.stop()
    assert h2.batches == h.batches


@pytest.mark.parametrize("first, second", [("inline", "staged"), ("staged", "inline")])
def test_a_directory_continues_under_the_other_topology(tmp_path, first, second):
    p = Processor(Summer(), tmp_path, _cfg(first))
    p.start()
    for v in range(30):
        p.publish(ev(v), 5)
    p.stop()
    h = Summer()
    p2 = Processor(h, tmp_path, _cfg(second))
    p2.start()
    assert (h.count, h.total) == (30, sum(range(30)))
    for v in range(30, 40):
        p2.publish(ev(v), 5)
    p2.stop()
    assert (h.count, h.total) == (40, sum(range(40)))
    outs = [struct.unpack("<qq", r.payload)[0] for r in JournalReader(tmp_path / "output")]
    assert outs == list(range(40))


def _records(values):
    return np.array([(v,) for v in values], dtype=[("v", "<i8")])


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_publish_records_feeds_a_numpy_array_as_one_event_per_element(tmp_path, topology):
    outs = []
    p = Processor(Summer(), tmp_path, _cfg(topology), on_output=outs.append)
    p.start()
    arr = _records(range(1000))  # more than the ring: claimed a ring-full at a time
    last = p.publish_records(arr, 5, timestamp_ns=np.arange(1000, dtype=np.int64) * 10)
    assert last == 999
    p.publish_records(bytes(ev(7)) + bytes(ev(8)), 6, record_size=8, timestamp_ns=1)
    p.stop()
    assert p.handler.count == 1002 and p.handler.total == sum(range(1000)) + 15
    recs = list(JournalReader(tmp_path / "input"))
    assert [r.timestamp_ns for r in recs[:1000]] == [i * 10 for i in range(1000)]
    assert [r.type_id for r in recs] == [5] * 1000 + [6, 6]
    assert [bytes(r.payload) for r in recs[-2:]] == [ev(7), ev(8)]
    assert len(outs) == 1002


def test_publish_records_per_record_type_ids_and_checks_before_claiming(tmp_path):
    p = Processor(Summer(), tmp_path, CFG)
    p.start()
    try:
        with pytest.raises(ValueError, match="whole number"):
            p.publish_records(b"x" * 12, record_size=8)
        with pytest.raises(RingLogError, match="do not fit"):
            p.publish_records(np.zeros(3, dtype=[("b", "V200")]))
        with pytest.raises(TypeError, match="1-d numpy array"):
            p.publish_records(b"abc")
        with pytest.raises(ValueError):  # 3 type ids for 2 records
            p.publish_records(_records([1, 2]), np.array([5, 5, 5]))
        assert p.input_ring.cursor == -1  # nothing claimed by a refused call
        p.publish_records(_records([1, 2]), np.array([5, 9], dtype=np.uint32))
    finally:
        p.stop()
    assert [r.type_id for r in JournalReader(tmp_path / "input")] == [5, 9]
