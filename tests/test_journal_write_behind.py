"""Write-behind (``Journal(write_behind=True)``, a processor's output journal): the appending
thread hands whole buffers to the journal's writer thread.

The bytes on disk must be those of an appender that writes them itself, whatever the batch
and buffer sizes and wherever the segment rolls; a record is published as appended (and so
synced by the group commit) only once it is in the file; a reader never sees a torn record;
a write that fails on the writer thread fails the appending thread's next step with the path
and offset, never silently.
"""

import os
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_journal_writes import (
    BATCHES,
    SMALL,
    TAIL_BATCHES,
    WBUFS,
    _append_batches,
    _records_region,
    _with_write_buffer,
    payload,
    tail_while_appending,
)
from test_processor import Summer

from ringlog._journal import HEADER_SIZE, JournalAppender, Segment, write_behind_min
from ringlog.errors import ConfigError, JournalError
from ringlog.journal import Journal, JournalReader
from ringlog.processor import Processor, ProcessorConfig

GROUP = 1  # JournalAppender policies: none 0, group 1, sync 2


@pytest.fixture
def hand_off_every_flush():
    before = write_behind_min()
    write_behind_min(0)
    yield
    write_behind_min(before)


def _with_write_behind_min(nbytes, fn):
    """``fn()`` with write-behind handing off flushes of ``nbytes`` or more (None: the
    default)."""
    before = write_behind_min()
    if nbytes is not None:
        write_behind_min(nbytes)
    try:
        return fn()
    finally:
        write_behind_min(before)


def _appender_without_writer(tmp_path, size=1 << 20):
    """A write-behind appender with no writer thread: what it hands off stays unwritten until
    a flush() (which then writes it on the calling thread)."""
    seg = Segment.prepare(tmp_path / "00000000000000000000.seg", size)
    seg.seal_header(0, b"[]", time.time_ns(), -1)
    a = JournalAppender(None, GROUP, 1000, 1024, True, True)
    a.attach(seg, HEADER_SIZE, 0)
    return a, seg


def test_a_commit_is_published_only_once_its_records_are_written(tmp_path):
    a, seg = _appender_without_writer(tmp_path)
    assert a.write_behind
    a.append_many([payload(i, 1000) for i in range(40)])  # ~41 KiB: handed off at the commit
    # committed, but not written: not appended for readers or the group commit
    assert a.last_sequence == -1
    assert seg.next_length(HEADER_SIZE) == 0
    assert seg.is_zero(HEADER_SIZE, HEADER_SIZE + 40 * 1000)
    a.flush()
    assert a.last_sequence == 39
    assert [bytes(r.payload) for _, r in seg.records(HEADER_SIZE, 0)] == [
        payload(i, 1000) for i in range(40)]


def test_a_small_commit_with_nothing_in_flight_is_written_at_once(tmp_path):
    a, seg = _appender_without_writer(tmp_path)
    a.append_many([payload(i, 100) for i in range(10)])  # ~1.5 KiB: under write_behind_min
    assert a.last_sequence == 9
    assert [bytes(r.payload) for _, r in seg.records(HEADER_SIZE, 0)] == [
        payload(i, 100) for i in range(10)]


def test_a_small_commit_behind_one_in_flight_waits_its_turn(tmp_path):
    a, seg = _appender_without_writer(tmp_path)
    a.append_many([payload(i, 1000) for i in range(40)])  # handed off
    a.append_many([payload(40 + i, 100) for i in range(3)])  # small, but behind it: in order
    assert a.last_sequence == -1 and seg.next_length(HEADER_SIZE) == 0
    a.flush()
    assert a.last_sequence == 42
    assert len(list(seg.records(HEADER_SIZE, 0))) == 43


def test_more_flushes_than_slots_wait_for_the_writer(tmp_path, hand_off_every_flush):
    # with no writer thread the appender writes the oldest itself once every slot is taken
    a, seg = _appender_without_writer(tmp_path)
    for b in range(200):  # many more than the 8 slots
        a.append_many([payload(b * 5 + i, 300) for i in range(5)])
    a.flush()
    assert a.last_sequence == 999
    assert [bytes(r.payload) for _, r in seg.records(HEADER_SIZE, 0)] == [
        payload(i, 300) for i in range(1000)]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=BATCHES, policy=st.sampled_from(["none", "group"]), wbuf=WBUFS,
       wb_min=st.sampled_from([0, 4096, None]))
def test_write_behind_writes_the_bytes_the_appender_would(tmp_path_factory, sizes, policy,
                                                          wbuf, wb_min):
    dirs = {}

    def write(behind):
        d = dirs[behind] = tmp_path_factory.mktemp("behind" if behind else "itself")
        with Journal(d, segment_size=SMALL, first_segment_size=SMALL, durability=policy,
                     write_behind=behind) as j:
            assert j.appender.write_behind is behind
            return _append_batches(j, sizes)
    for behind in (False, True):
        n = _with_write_behind_min(wb_min, lambda b=behind: _with_write_buffer(wbuf,
                                                                              lambda: write(b)))
    assert _records_region(dirs[True]) == _records_region(dirs[False])
    assert JournalReader(dirs[True]).verify_all() == (n, n - 1)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=TAIL_BATCHES, rounds=st.integers(3, 6), wbuf=WBUFS,
       wb_min=st.sampled_from([0, None]))
def test_a_reader_process_tailing_a_write_behind_journal_never_sees_a_torn_record(
        tmp_path_factory, sizes, rounds, wbuf, wb_min):
    d = tmp_path_factory.mktemp("tail")

    def tail():
        j = _with_write_buffer(wbuf, lambda: Journal(d, segment_size=SMALL,
                                                      first_segment_size=SMALL,
                                                      durability="group", write_behind=True))
        with j:
            tail_while_appending(j, sizes, rounds)
    _with_write_behind_min(wb_min, tail)


def test_a_failed_write_on_the_writer_thread_fails_the_next_append(tmp_path,
                                                                    hand_off_every_flush):
    j = Journal(tmp_path, durability="group", write_behind=True)
    try:
        j.append_many([payload(i, 200) for i in range(10)])
        j.appender.flush()
        assert j.last_sequence == 9
        seg = j.appender.segment
        ro = os.open(seg.path, os.O_RDONLY)
        os.dup2(ro, seg.fd)  # the writer's next pwrite(): EBADF
        os.close(ro)
        j.append_many([payload(10 + i, 200) for i in range(10)])
        with pytest.raises(JournalError, match=r"write to .*\.seg at byte offset \d+ failed"):
            j.appender.flush()
        assert j.last_sequence == 9  # nothing past the failed write is appended
        assert j.failed
        with pytest.raises(JournalError, match="failed"):
            j.append(b"x")
    finally:
        j.close()


def test_write_behind_needs_a_buffered_appender_and_no_sync_policy(tmp_path):
    with pytest.raises(ConfigError, match=r"Journal\.write_behind"):
        Journal(tmp_path / "a", durability="sync", write_behind=True)
    with pytest.raises(ConfigError, match=r"Journal\.write_behind"):
        Journal(tmp_path / "b", buffered=False, write_behind=True)
    with pytest.raises(ConfigError, match=r"Journal\.write_behind"):
        Journal(tmp_path / "c", write_behind="yes")


def test_a_processor_writes_its_output_journal_behind(tmp_path):
    p = Processor(Summer(), tmp_path, ProcessorConfig(durability="group"))
    try:
        assert p.output.appender.write_behind
        assert not p.input.appender.write_behind  # journal before process: written inline
    finally:
        p.stop()


def test_sync_from_another_thread_while_appending_covers_only_written_records(
        tmp_path, hand_off_every_flush):
    # sync() waits for what was handed off when it was called, then fdatasyncs: whatever it
    # returns as durable is readable, whole and checksummed, at that moment
    j = Journal(tmp_path, durability="group", group_events=1 << 30, write_behind=True)
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def syncer():
        try:
            while not stop.is_set():
                d = j.sync()
                if d >= 0:
                    r = JournalReader(tmp_path)
                    got = sum(1 for rec in r.records(0) if rec.sequence <= d)
                    r.close()
                    assert got == d + 1, f"sync() returned {d} but {got} records are readable"
                    seen.append(d)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=syncer)
    t.start()
    try:
        for b in range(300):
            j.append_many([payload(b * 10 + i, 700) for i in range(10)])
        deadline = time.monotonic() + 30  # at least one sync after the last append
        while len(seen) < 2 and not errors and time.monotonic() < deadline:
            time.sleep(0.001)
    finally:
        stop.set()
        t.join(60)
        j.close()
    assert not t.is_alive() and not errors, errors[:1]
    assert len(seen) >= 2 and seen == sorted(seen)
    assert JournalReader(tmp_path).verify_all() == (3000, 2999)
