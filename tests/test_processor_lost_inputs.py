"""Inputs a crash lost after the loop handled them: a power loss takes the input journal's
tail (not yet durable) while the output journal (synced on its own) keeps the outputs they
caused. Recovery must cut those outputs, or the next live inputs take the lost inputs'
sequences and the output journal names them as the causes of outputs they never made (a
reconnecting client would be resent a fill for an order the exchange has no record of). And a
snapshot must never be durable ahead of the inputs it covers."""

import struct

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_processor import CFG
from test_processor_outputs import Fanout

from ringlog.errors import JournalError
from ringlog.journal import Journal, JournalReader, cut_after
from ringlog.journaltool import check
from ringlog.processor import Processor

DEADLINE = 60  # s: a safety net for drain(), never reached when the processor works
GROUP = msgspec.structs.replace(CFG, durability="group")


def _feed(p, values, k=3):
    for v in values:
        p.publish(struct.pack("<qq", v, k), 5)
    p.drain(timeout=DEADLINE)


def _business_inputs(path):
    return [r for r in JournalReader(path / "input") if r.type_id == 5]


def misaligned(path):
    """None if every output names as its cause the input that made it (Fanout's outputs carry
    the input's value) and the outputs of each input are all there, in order; else what is
    wrong. (tests/crash/test_processor_power_loss.py checks its images with it too.)"""
    ins = {r.sequence: struct.unpack("<qq", bytes(r.payload)) for r in _business_inputs(path)}
    made: dict[int, list[int]] = {}
    for r in JournalReader(path / "output"):
        v, j = struct.unpack_from("<qq", bytes(r.payload))
        if r.producer_seq not in ins:
            return f"output {r.sequence} names input {r.producer_seq}, which the journal lacks"
        if ins[r.producer_seq][0] != v:
            return (f"output {r.sequence} (value {v}) names input {r.producer_seq} of value "
                    f"{ins[r.producer_seq][0]}: outputs of a lost input were kept")
        made.setdefault(r.producer_seq, []).append(j)
    for seq, (v, k) in ins.items():
        if made.get(seq, []) != list(range(k)):
            return f"input {seq} (value {v}) has outputs {made.get(seq)}, not {list(range(k))}"
    return None


def _lose_inputs_after(path, keep):
    """What a power loss leaves when only the inputs up to sequence ``keep`` were durable:
    the input journal cut after it; the output journal untouched."""
    assert cut_after(path / "input", keep) is not None


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kept=st.integers(0, 60), lost=st.integers(1, 60), after=st.integers(0, 40),
       snapshot_at=st.integers(-1, 59), verify=st.booleans())
def test_outputs_of_lost_inputs_are_cut_and_new_inputs_line_up(tmp_path_factory, kept, lost,
                                                                after, snapshot_at, verify):
    path = tmp_path_factory.mktemp("p")
    p = Processor(Fanout(), path, GROUP)
    p.start()
    _feed(p, range(kept))
    if 0 <= snapshot_at < kept:  # a snapshot only before the loss (see the last test)
        p.request_snapshot()
        p.drain(timeout=DEADLINE)
    durable = p.input.last_sequence  # (what the snapshot covers is durable before it: below)
    _feed(p, range(1000, 1000 + lost))
    p.stop()
    had = sum(1 for _ in JournalReader(path / "output"))
    _lose_inputs_after(path, durable)

    p = Processor(Fanout(), path, GROUP)
    report = p.recover(verify=verify)
    assert report.outputs_cut == 3 * lost
    assert p.output.next_sequence == had - 3 * lost
    assert report.first_divergence is None
    p.start()
    _feed(p, range(2000, 2000 + after))
    p.stop()
    assert misaligned(path) is None, misaligned(path)
    values = [struct.unpack("<qq", bytes(r.payload))[0] for r in _business_inputs(path)]
    assert values == [*range(kept), *range(2000, 2000 + after)]
    outs = [r.sequence for r in JournalReader(path / "output")]
    assert outs == list(range(3 * (kept + after)))


def test_nothing_is_cut_when_no_input_was_lost(tmp_path):
    p = Processor(Fanout(), tmp_path, GROUP)
    p.start()
    _feed(p, range(50))
    p.stop()
    p = Processor(Fanout(), tmp_path, GROUP)
    assert p.recover().outputs_cut == 0
    assert p.output.decisions == []
    p.start()
    p.stop()
    assert misaligned(tmp_path) is None, misaligned(tmp_path)


def test_cut_after_crosses_segments_and_lowers_the_durable_mark(tmp_path):
    with Journal(tmp_path, segment_size=1 << 16, durability="group") as j:
        for i in range(3000):  # ~3 segments of 64 KiB
            j.append(struct.pack("<q", i) * 4)
        j.sync()
    firsts = [f for f, _ in JournalReader(tmp_path).segments()]
    assert len(firsts) >= 3
    keep = firsts[1] + 7  # inside the second segment: the later ones go
    d = cut_after(tmp_path, keep)
    assert d.action == "cut_after" and d.sequence == keep + 1
    assert check(tmp_path, live=False).problem is None  # `ringlog journal verify`: clean
    with Journal(tmp_path, segment_size=1 << 16, durability="group") as j:
        assert j.decisions == []  # nothing torn, no durable record missing
        assert j.last_sequence == keep
        assert j.durable_sequence == keep
        j.append(b"after the cut")
    recs = list(JournalReader(tmp_path))
    assert [r.sequence for r in recs] == list(range(keep + 2))
    assert bytes(recs[-1].payload) == b"after the cut"
    assert cut_after(tmp_path, keep + 1) is None  # nothing after the end


def test_cut_after_refuses_to_cut_before_the_journals_first_record(tmp_path):
    with Journal(tmp_path, segment_size=1 << 16, durability="group") as j:
        for i in range(3000):
            j.append(struct.pack("<q", i) * 4)
    (_, gone), (second, _) = JournalReader(tmp_path).segments()[:2]
    gone.unlink()  # as retention drops a segment
    gone.with_suffix(".idx").unlink(missing_ok=True)
    with pytest.raises(JournalError, match=f"starts at {second}"):
        cut_after(tmp_path, second - 5)
    recs = [r.sequence for r in JournalReader(tmp_path)]
    assert recs == list(range(second, 3000))  # nothing was cut


class SnapshotWatcher(Fanout):
    """Records, at each snapshot, the input journal's durable sequence against the last
    input the snapshot covers."""

    def __init__(self):
        super().__init__()
        self.processor = None
        self.seen = []

    def on_event(self, event, sequence, end_of_batch):
        self.last = sequence
        super().on_event(event, sequence, end_of_batch)

    def on_snapshot(self):
        self.seen.append((self.last, self.processor.input.durable_sequence))
        return super().on_snapshot()


@pytest.mark.parametrize("topology", ["inline", "staged"])
def test_a_snapshot_is_never_durable_ahead_of_its_inputs(tmp_path, topology):
    h = SnapshotWatcher()
    p = Processor(h, tmp_path, msgspec.structs.replace(GROUP, topology=topology))
    h.processor = p
    p.start()
    for round_ in range(20):
        for v in range(200):  # a burst, then at once a snapshot: the group commit lags
            p.publish(struct.pack("<qq", round_ * 1000 + v, 1), 5)
        p.request_snapshot()
    p.drain(timeout=DEADLINE)
    p.stop()
    assert len(h.seen) == 20
    late = [(last, durable) for last, durable in h.seen if durable < last]
    assert not late, f"snapshots taken before their inputs were durable: {late}"
