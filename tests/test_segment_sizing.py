"""Segments sized for the work: the first is small, each next one twice the last, up to
segment_size; a record that needs more rolls into a segment that fits it. A short run with
the default configuration leaves a small directory."""

import struct

import pytest

from ringlog import journal
from ringlog.errors import JournalError
from ringlog.handler import EventHandler
from ringlog.journal import FIRST_SEGMENT_SIZE, Journal, JournalReader, list_segments
from ringlog.processor import Processor, ProcessorConfig

KB = 1024


def sizes(d):
    return [p.stat().st_size for _, p in list_segments(d)]


def on_disk(d):
    return sum(p.stat().st_blocks * 512 for p in d.rglob("*") if p.is_file())


def test_segments_double_from_the_first_size_up_to_segment_size(tmp_path, monkeypatch):
    monkeypatch.setattr(journal, "FILL_AHEAD_S", 0.0)  # sized by doubling alone
    with Journal(tmp_path, segment_size=64 * KB, first_segment_size=16 * KB,
                 durability="none") as j:
        for _ in range(3000):
            j.append(b"x" * 40)
    got = sizes(tmp_path)
    assert got[:4] == [16 * KB, 32 * KB, 64 * KB, 64 * KB] and set(got[3:]) == {64 * KB}
    assert [r.sequence for r in JournalReader(tmp_path)] == list(range(3000))
    with Journal(tmp_path, segment_size=64 * KB, first_segment_size=16 * KB) as j:
        assert j.next_sequence == 3000  # reopened: continues at the full size
        for _ in range(1500):
            j.append(b"y" * 40)
    assert set(sizes(tmp_path)[3:]) == {64 * KB}


def test_a_journal_that_fills_fast_skips_sizes_up_to_segment_size(tmp_path, monkeypatch):
    """The next segment holds at least FILL_AHEAD_S of appends at the rate the last one
    filled: here any rate asks for more than segment_size, so the second segment is full
    size, not twice the first."""
    monkeypatch.setattr(journal, "FILL_AHEAD_S", 1e6)
    for prefault in (False, True):  # the roll on the appending thread, the prepared one
        d = tmp_path / str(prefault)
        with Journal(d, segment_size=256 * KB, first_segment_size=16 * KB,
                     durability="none", prefault=prefault) as j:
            if prefault:
                assert j.wait_ready(30)  # the second segment, prepared before any fill
            for _ in range(6000):
                j.append(b"x" * 40)
        got = sizes(d)
        # prepared ahead, the second is sized before the first filled: twice the first
        assert got[0] == 16 * KB and got[1] == (32 * KB if prefault else 256 * KB)
        assert set(got[2:]) == {256 * KB}, got
        assert [r.sequence for r in JournalReader(d)] == list(range(6000))


def test_a_record_larger_than_the_small_segment_rolls_into_one_that_fits(tmp_path):
    with Journal(tmp_path, segment_size=256 * KB, first_segment_size=16 * KB,
                 durability="none", prefault=False) as j:
        j.append(b"a")
        j.append(b"b" * (100 * KB))  # fits segment_size, not the 16 KiB first segment
        assert sizes(tmp_path) == [16 * KB, 104 * KB + 4 * KB]
        before = sizes(tmp_path)
        with pytest.raises(JournalError, match="cannot fit a segment of 262144 bytes"):
            j.append(b"c" * (300 * KB))
        with pytest.raises(JournalError, match="cannot fit"):
            j.append_many([b"d", b"e" * (300 * KB)])
        assert sizes(tmp_path) == before  # nothing rolled for a refused record
        j.append(b"f")
    assert [bytes(r.payload)[:1] for r in JournalReader(tmp_path)] == [b"a", b"b", b"f"]


def test_first_segment_size_is_validated(tmp_path):
    for bad in (4096, 12345, 128 * KB):
        with pytest.raises(ValueError, match="first_segment_size"):
            Journal(tmp_path / str(bad), segment_size=64 * KB, first_segment_size=bad)


class Balances(EventHandler):
    def __init__(self):
        self.total = 0

    def on_event(self, event, sequence, end_of_batch):
        self.total += struct.unpack("<q", event.payload)[0]
        self.emit(event.payload, type_id=1)


def test_a_short_run_with_the_default_config_leaves_a_small_directory(tmp_path):
    """The README's kind of example: default ProcessorConfig (64 MiB segment_size), a few
    thousand events. It used to leave 129 MB (two 64 MiB segments fully allocated)."""
    p = Processor(Balances(), tmp_path, ProcessorConfig())
    p.start()
    for i in range(5000):
        p.publish(struct.pack("<q", i))
    p.drain(timeout=60)
    p.stop()
    assert sizes(tmp_path / "input") == [FIRST_SEGMENT_SIZE]
    assert on_disk(tmp_path) <= 3 * FIRST_SEGMENT_SIZE  # input + output (+ a snapshot)
