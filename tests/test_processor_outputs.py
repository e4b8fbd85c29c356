"""Who journals the outputs (``ProcessorConfig.output_journaller``): the loop thread itself,
or an output thread sleeping on the output ring while the loop only fills slots (published
once per input batch). Every topology writes the same output journal byte for byte, in the
handler's emit order, and a snapshot never counts an output the output journal lacks."""

import struct

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_processor import CFG, ev

from ringlog import EventHandler
from ringlog._benchhandlers import SumHandler
from ringlog.errors import ConfigError
from ringlog.journal import JournalReader
from ringlog.processor import Processor, ProcessorConfig

# (topology, output_journaller)
STAGES = {"inline-thread": ("inline", "thread"), "inline-loop": ("inline", "loop"),
          "staged": ("staged", "loop")}
DEADLINE = 60  # s: a safety net for drain(), never reached when the processor works


def _cfg(stages, **kw):
    topology, outputs = STAGES[stages]
    return msgspec.structs.replace(CFG, topology=topology, output_journaller=outputs, **kw)


class Fanout(EventHandler):
    """Emits ``k`` outputs for the event (value, k): (value, j) padded to a length that
    varies with j, so records of several sizes follow each other."""

    def __init__(self):
        self.emitted = 0
        self.short = []  # snapshots that found fewer outputs journaled than emitted
        self.path = None

    def on_event(self, event, sequence, end_of_batch):
        v, k = struct.unpack("<qq", event.payload)
        for j in range(k):
            self.emit(struct.pack("<qq", v, j) + bytes(j * 8), type_id=2, key=v % 5)
            self.emitted += 1

    def on_snapshot(self):
        if self.path is not None:  # what the snapshot counts must be journaled already
            journaled = sum(1 for _ in JournalReader(self.path))
            if journaled < self.emitted:
                self.short.append((journaled, self.emitted))
        return msgspec.msgpack.encode(self.emitted)

    def on_restore(self, data):
        self.emitted = msgspec.msgpack.decode(data)


def _run(path, handler, cfg, inputs, snapshot_at=()):
    """Publishes ``inputs`` (payload bytes) with timestamps from their index, a snapshot
    request after each index in ``snapshot_at``; returns the output journal as (sequence,
    header + payload bytes) and the input journal's business sequences."""
    p = Processor(handler, path, cfg)
    p.start()
    for i, payload in enumerate(inputs):
        p.publish(payload, 5, timestamp_ns=1_000 * (i + 1))
        if i in snapshot_at:
            p.request_snapshot(timestamp_ns=1_000 * (i + 1))
    p.drain(timeout=DEADLINE)
    p.stop()
    outs = [(r.sequence, bytes(r.body)) for r in JournalReader(path / "output")]
    ins = [r.sequence for r in JournalReader(path / "input") if r.type_id == 5]
    return outs, ins


@pytest.mark.parametrize("kind", ["python", "cython"])
def test_every_topology_writes_the_same_output_journal_byte_for_byte(tmp_path, kind):
    inputs = ([struct.pack("<qq", v, v % 4) for v in range(300)] if kind == "python"
              else [ev(v) for v in range(300)])
    got = {}
    for stages in STAGES:
        handler = Fanout() if kind == "python" else SumHandler()
        # a small output ring: a batch's outputs fill it, so the loop publishes what it
        # wrote and waits for the output stage mid-batch
        got[stages], _ = _run(tmp_path / stages, handler, _cfg(stages, output_capacity=8),
                              inputs, snapshot_at={50, 51, 200})
    first = got["inline-loop"]
    assert len(first) == (sum(v % 4 for v in range(300)) if kind == "python" else 300)
    for stages, outs in got.items():
        assert outs == first, stages


@pytest.mark.parametrize("stages", list(STAGES))
def test_a_snapshot_finds_every_output_it_counts_in_the_output_journal(tmp_path, stages):
    h = Fanout()
    h.path = tmp_path / "output"
    # snapshots every 7 inputs, mid-batch: the outputs of the batch so far must be
    # published to the output stage and journaled before the snapshot is written
    cfg = _cfg(stages, snapshot_every=7, max_batch=64)
    p = Processor(h, tmp_path, cfg)
    p.start()
    p.publish_many([struct.pack("<qq", v, 3) for v in range(200)], 5)
    p.drain(timeout=DEADLINE)
    p.stop()
    assert h.emitted == 600 and h.short == []


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(fanout=st.lists(st.integers(0, 6), min_size=1, max_size=120),
       max_batch=st.sampled_from([1, 3, 16, 1024]),
       output_capacity=st.sampled_from([2, 4, 64]),
       stages=st.sampled_from(list(STAGES)),
       chunk=st.integers(1, 40))
def test_outputs_are_journaled_in_emit_order_with_their_input_as_cause(
        tmp_path_factory, fanout, max_batch, output_capacity, stages, chunk):
    path = tmp_path_factory.mktemp("order")
    cfg = _cfg(stages, max_batch=max_batch, output_capacity=output_capacity)
    p = Processor(Fanout(), path, cfg)
    p.start()
    payloads = [struct.pack("<qq", v, k) for v, k in enumerate(fanout)]
    for i in range(0, len(payloads), chunk):  # batches of several sizes reach the loop
        p.publish_many(payloads[i:i + chunk], 5)
    p.drain(timeout=DEADLINE)
    p.stop()
    ins = {v: r.sequence for v, r in enumerate(JournalReader(path / "input"))}
    want = [(v, j, ins[v]) for v, k in enumerate(fanout) for j in range(k)]
    got = [(*struct.unpack_from("<qq", r.payload), r.producer_seq)
           for r in JournalReader(path / "output")]
    assert got == want


def test_outputs_are_journaled_by_the_loop_unless_asked():
    assert ProcessorConfig().output_journaller == "loop"


def test_output_journaller_field_is_validated():
    with pytest.raises(ConfigError, match=r"ProcessorConfig\.output_journaller"):
        ProcessorConfig(output_journaller="both")
