"""The processor: pipeline, lifecycle, determinism and recovery, breaker halts, dead letters."""

import struct
import time

import msgspec
import pytest

from ringlog import CircuitOpenError, EventRegistry, RingLogError
from ringlog.breaker import Breaker, BreakerConfig, Limit
from ringlog.events import TYPE_BREAKER_RESET
from ringlog.handler import EventHandler
from ringlog.journal import JournalReader
from ringlog.processor import Processor, ProcessorConfig

MS = 1_000_000
CFG = ProcessorConfig(ring_capacity=256, output_capacity=256, segment_size=1 << 16,
                      durability="none")


class Summer(EventHandler):
    """State: count and sum of 8-byte ints; emits the running sum for every event."""

    def __init__(self, fail_on=None):
        self.count = 0
        self.total = 0
        self.fail_on = fail_on

    def on_event(self, event, sequence, end_of_batch):
        (v,) = struct.unpack("<q", event.payload)
        if v == self.fail_on:
            raise ValueError(f"poison {v}")
        self.count += 1
        self.total += v
        self.emit(struct.pack("<qq", sequence, self.total), type_id=1, key=v % 3)

    def on_snapshot(self):
        return msgspec.msgpack.encode([self.count, self.total])

    def on_restore(self, data):
        self.count, self.total = msgspec.msgpack.decode(data)


def ev(v):
    return struct.pack("<q", v)


def run(path, values, handler=None, config=CFG, breaker=None, ts=None, **kw):
    h = handler or Summer()
    outs = []
    p = Processor(h, path, config, breaker=breaker, on_output=outs.append, **kw)
    p.start()
    for i, v in enumerate(values):
        p.publish(ev(v), 5, timestamp_ns=(ts(i) if ts else i * MS))
    p.drain(timeout=30)
    p.stop()
    return h, outs, p


def test_pipeline_processes_every_event_in_order_and_journals_inputs_and_outputs(tmp_path):
    h, outs, p = run(tmp_path, range(1000))
    assert (h.count, h.total) == (1000, sum(range(1000)))
    assert [struct.unpack("<qq", o.payload)[0] for o in outs] == list(range(1000))
    assert [o.cause for o in outs] == list(range(1000))
    inputs = list(JournalReader(tmp_path / "input"))
    assert [struct.unpack("<q", r.payload)[0] for r in inputs] == list(range(1000))
    assert len(list(JournalReader(tmp_path / "output"))) == 1000
    assert p.state == "closed"


def test_restart_recovers_state_from_the_journal_alone_and_continues(tmp_path):
    run(tmp_path, range(500))
    h2, outs2, _ = run(tmp_path, range(500, 600))
    assert (h2.count, h2.total) == (600, sum(range(600)))
    assert [o.cause for o in outs2] == list(range(500, 600))  # replay emitted nothing


def test_recover_with_verify_finds_no_divergence_then_finds_an_injected_one(tmp_path):
    run(tmp_path, range(300))
    p = Processor(Summer(), tmp_path, CFG)
    rep = p.recover(verify=True)
    assert (rep.replayed, rep.verified_outputs, rep.first_divergence) == (300, 300, None)
    p.stop()

    class Different(Summer):
        def on_event(self, event, sequence, end_of_batch):
            (v,) = struct.unpack("<q", event.payload)
            self.total += v + (1 if sequence >= 123 else 0)
            self.emit(struct.pack("<qq", sequence, self.total), type_id=1)

    p = Processor(Different(), tmp_path, CFG)
    assert p.recover(verify=True).first_divergence == 123
    p.stop()


def test_snapshot_plus_replay_equals_full_replay(tmp_path):
    cfg = msgspec.structs.replace(CFG, snapshot_every=100)
    run(tmp_path, range(450), config=cfg)
    p = Processor(Summer(), tmp_path, cfg)
    rep = p.recover()
    assert rep.snapshot_sequence == 399 and rep.replayed == 50
    assert (p.handler.count, p.handler.total) == (450, sum(range(450)))
    p.stop()


def test_request_snapshot_is_taken_at_its_sequence(tmp_path):
    h = Summer()
    p = Processor(h, tmp_path, CFG)
    p.start()
    for v in range(10):
        p.publish(ev(v), 5)
    p.request_snapshot()
    p.publish(ev(10), 5)
    p.drain(timeout=30)
    p.stop()
    snap = p.snapshots.latest()
    assert snap.sequence == 10  # the snapshot request itself is sequence 10
    assert msgspec.msgpack.decode(snap.data)[1] != b""


def test_breaker_trips_holds_outputs_resumes_on_a_journaled_reset_and_replays_same(tmp_path):
    cfg = BreakerConfig(limits=[Limit(max_count=10, window_ns=1000 * MS)])
    trips = []
    h = Summer()
    outs = []
    p = Processor(h, tmp_path, CFG, breaker=Breaker(cfg, alert=trips.append),
                  on_output=outs.append)
    p.start()
    for i in range(30):
        p._in.publish(ev(i), 5, timestamp_ns=i * MS)  # bypass producer backpressure
    _wait(lambda: p._lc.sequence >= 29)
    assert h.count == 11  # the 11th output tripped; nothing after it was processed
    assert p.breaker.is_open and p.breaker.held_count == 1 and len(trips) == 1
    assert p.metrics.breaker_state == "open"
    p.reset_breaker(timestamp_ns=10_000 * MS)
    _wait(lambda: p._lc.sequence >= 30)
    assert h.count == 22 and p.breaker.is_open  # re-read 11 held-back inputs, tripped again
    p.release_held(timestamp_ns=10_001 * MS)
    p.reset_breaker(timestamp_ns=20_000 * MS)
    p.drain(timeout=30)
    p.stop()
    assert h.count == 30 and h.total == sum(range(30))
    kinds = [o.type_id for o in outs]
    published = [struct.unpack("<qq", o.payload)[0] for o in outs if o.type_id == 1]
    # every output is published or still held: none lost; held ones were released in order
    assert len(published) + p.breaker.held_count == 30
    assert p.breaker.released == 2  # one held output per trip
    # replay from the journal alone halts and resumes at the same sequences
    h2 = Summer()
    p2 = Processor(h2, tmp_path, CFG, breaker=Breaker(cfg))
    p2.recover()
    assert (h2.count, h2.total) == (h.count, h.total)
    assert p2.breaker.counters() == p.breaker.counters()
    p2.stop()
    assert kinds.count(0xFFFF_FF10) == 2  # two trip events in the output stream


def test_dead_letter_policy_records_the_poison_event_and_goes_on(tmp_path):
    cfg = msgspec.structs.replace(CFG, exception_policy="dead_letter")
    h, _outs, _p = run(tmp_path, range(20), handler=Summer(fail_on=7), config=cfg)
    assert h.count == 19
    (dl,) = list(JournalReader(tmp_path / "dead-letter"))
    seq, type_id, _payload, tb = msgspec.msgpack.decode(dl.payload)
    assert seq == 7 and type_id == 5 and "poison 7" in tb


def test_halt_policy_stops_the_processor_and_reports_the_error(tmp_path):
    p = Processor(Summer(fail_on=3), tmp_path, CFG)
    p.start()
    for v in range(10):
        p.publish(ev(v), 5)
    _wait(lambda: p.state == "halted")
    with pytest.raises(RingLogError, match="poison 3"):
        p.stop()


def test_duplicate_producer_sequence_is_journaled_but_processed_once(tmp_path):
    cfg = msgspec.structs.replace(CFG, dedup=True)
    h = Summer()
    p = Processor(h, tmp_path, cfg)
    p.start()
    for ps in (1, 2, 2, 3, 1):
        p.publish(ev(ps), 5, producer_id=9, producer_seq=ps)
    p.drain(timeout=30)
    p.stop()
    assert h.count == 3 and h.total == 6
    assert len(list(JournalReader(tmp_path / "input"))) == 5


def test_bad_configuration_is_an_error():
    with pytest.raises(ValueError, match="ring_capacity: must be a power of two"):
        ProcessorConfig(ring_capacity=100)
    with pytest.raises(ValueError, match="max_batch"):
        ProcessorConfig(max_batch=0)
    # was an OverflowError once the loop was built
    with pytest.raises(ValueError, match="max_batch: must be from 1 to 2147483647, got 2"):
        ProcessorConfig(max_batch=2**41)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"durability": "fast"}, "ProcessorConfig.durability"),
    ({"wait": "spin"}, "ProcessorConfig.wait"),
    ({"ring_capacity": "1024"}, "ProcessorConfig.ring_capacity"),
    ({"dedup": 1}, "ProcessorConfig.dedup"),
    ({"slot_size": 60}, "ProcessorConfig.slot_size"),
    ({"segment_size": 5000}, "ProcessorConfig.segment_size"),
    ({"snapshot_every": -1}, "ProcessorConfig.snapshot_every"),
])
def test_configuration_errors_name_the_field_at_construction(kwargs, field):
    from ringlog.errors import ConfigError, RingLogError

    with pytest.raises(ConfigError) as info:
        ProcessorConfig(**kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")
    assert isinstance(info.value, RingLogError)
    assert info.value.value == next(iter(kwargs.values()))


def _wait(cond, timeout=30.0):
    import time

    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.001)


def test_halted_is_true_while_the_breaker_holds_input_and_publish_times_out(tmp_path):
    cfg = BreakerConfig(limits=[Limit(max_count=3, window_ns=1000 * MS)])
    p = Processor(Summer(), tmp_path, CFG, breaker=Breaker(cfg))
    p.start()
    assert not p.halted
    for i in range(5):
        p.publish(ev(i), 5, timestamp_ns=i * MS)
    _wait(lambda: p._lc.sequence >= 4)
    assert p.halted and p.metrics.breaker_state == "open"
    with pytest.raises(CircuitOpenError, match="circuit breaker is open"):
        p.publish(ev(9), 5, timeout=0.05)
    p.reset_breaker(timestamp_ns=10_000 * MS)
    _wait(lambda: not p.halted)
    p.publish(ev(9), 5, timeout=5)  # accepted again
    p.drain(timeout=30)
    p.stop()


def test_journal_headers_carry_the_registry_and_the_control_types(tmp_path):
    class Deposit(msgspec.Struct, array_like=True):
        account: int
        amount: int

    class Nop(EventHandler):
        def on_event(self, event, sequence, end_of_batch):
            assert event.decode(reg) == Deposit(1, 2)

    reg = EventRegistry()
    reg.register(7, Deposit)
    p = Processor(Nop(), tmp_path, CFG, registry=reg)
    p.start()
    p.publish_struct(Deposit(1, 2))
    p.drain(timeout=30)
    p.stop()
    for part in ("input", "output"):
        schema = {d["type_id"]: d for d in JournalReader(tmp_path / part).schema}
        assert schema[7]["name"] == "Deposit"
        assert schema[7]["fields"] == [["account", "int"], ["amount", "int"]]
        assert schema[TYPE_BREAKER_RESET]["name"] == "breaker_reset"
        assert schema[TYPE_BREAKER_RESET]["kind"] == "control"


def test_stop_without_drain_loses_nothing_published(tmp_path):
    h = Summer()
    p = Processor(h, tmp_path, CFG)
    p.start()
    p.publish_many([ev(v) for v in range(200)], 5)
    p.stop()  # the stages finish what was published, then stop
    assert len(list(JournalReader(tmp_path / "input"))) == 200
    assert h.count == 200 and p.state == "closed"


def test_metrics_are_readable_while_running(tmp_path):
    p = Processor(Summer(), tmp_path, CFG)
    p.start()
    p.publish_many([ev(v) for v in range(100)], 5)
    _wait(lambda: p.metrics.processed == 100)
    m = p.metrics
    assert (m.published, m.journaled, m.outputs) == (100, 100, 100)
    assert m.logic_lag == 0 and m.duplicates == 0 and m.state == "running"
    p.drain(timeout=30)
    p.stop()


def test_start_records_how_the_directory_is_run_for_the_replay_tools(tmp_path):
    from ringlog.processor import read_manifest

    assert read_manifest(tmp_path) is None  # no processor has started here
    cfg = msgspec.structs.replace(CFG, dedup=True, exception_policy="dead_letter")
    limits = BreakerConfig(limits=[Limit(max_count=5, window_ns=10**9, per="key")])
    p = Processor(Summer(), tmp_path, cfg, breaker=Breaker(limits))
    p.start()
    p.stop()
    m = read_manifest(tmp_path)
    assert m.handler == f"{Summer.__module__}:Summer" and m.config == cfg
    assert msgspec.convert(m.breaker, BreakerConfig) == limits
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically, nothing left behind
    (tmp_path / "processor.json").write_text('{"handler": 3}')
    with pytest.raises(RingLogError, match=r"processor\.json"):
        read_manifest(tmp_path)


# -- the public progress API the gateway reads ----------------------------------------------
def test_progress_api_maps_ring_to_journal_sequences_and_counts_outputs(tmp_path):
    import threading

    class Gate(Summer):
        def __init__(self):
            super().__init__()
            self.open = threading.Event()

        def on_event(self, event, sequence, end_of_batch):
            if event.producer_seq == 99:  # holds the loop here until the test opens it
                assert self.open.wait(10)
            super().on_event(event, sequence, end_of_batch)

    cfg = msgspec.structs.replace(CFG, dedup=True)
    *_, p = run(tmp_path, range(5), config=cfg)
    assert p.processed_sequence == 4 and p.published_outputs == 5
    other = Processor(Summer(), tmp_path / "other", cfg)
    with pytest.raises(RingLogError, match="started"):
        other.journal_sequence_of(0)
    other.stop()
    g = Gate()
    p = Processor(g, tmp_path, cfg)
    p.recover()
    assert (p.processed_sequence, p.published_outputs) == (4, 5)  # from the replay
    p.start()
    try:
        # ring sequence 0 of this run is journal sequence 5: the journal's end
        first = p.publish(ev(1), 5, producer_id=3, producer_seq=1)
        assert p.journal_sequence_of(first) == 5
        deadline = time.monotonic() + 10
        while p.processed_sequence < 5:  # (progress is published per batch)
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert p.dedup_positions() == {3: 1}
        held = p.publish(ev(2), 5, producer_id=3, producer_seq=99)
        assert p.journal_sequence_of(held) == 6
        # the loop finished input 5 (and published its output), not input 6
        assert p.processed_sequence == 5 and p.published_outputs == 6
        g.open.set()
    finally:
        p.drain(timeout=30)
        p.stop()
    assert p.processed_sequence == 6 and p.published_outputs == 7
    p2 = Processor(Summer(), tmp_path, cfg)
    p2.recover()
    assert p2.dedup_positions() == {3: 99}  # where producer 3 resumes after a restart
    p2.stop()
