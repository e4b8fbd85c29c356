"""Direct I/O (``Journal(write_behind=True, direct_io=True)``, a processor's output journal by
default): the writer thread stages records and writes whole 4 KiB blocks with O_DIRECT.

The bytes on disk must be those of an appender that writes them itself (across batches larger
than the stage, rolls and a reopen); at every single write the file must be a valid journal
prefix, and a write may make a record reachable (its batch's first length word) only once
every byte that word leads to is in the file, which a planted bug that writes the word with
its body breaks; a reader process tailing it never sees a torn record; what is committed
reaches the file within the linger, or at once on flush() or sync(); a failed write fails the
next append with the path and offset; a file system without O_DIRECT is a configuration
error naming the directory or the processor's field; `ringlog serve` asks for it (auto).
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

from ringlog import _journal
from ringlog._journal import HEADER_SIZE, crc32c, direct_stage_size
from ringlog.errors import ConfigError, JournalError
from ringlog.journal import Journal, JournalReader
from ringlog.processor import Processor, ProcessorConfig

pytestmark = pytest.mark.skipif(not _journal.direct_io_supported("."),
                                reason="this file system does not take O_DIRECT")

# stages: one that a batch overflows in its middle (written out in parts, the frontier's
# block kept aside), and the default
STAGES = st.sampled_from([(8192, 4096), (16384, 8192), None])


def _with_stage(stage, fn):
    before = direct_stage_size()
    if stage is not None:
        direct_stage_size(*stage)
    try:
        return fn()
    finally:
        direct_stage_size(*before)


def _align8(n: int) -> int:
    return (n + 7) & ~7


class FrontierCheck:
    """The direct-write hook: keeps a model of each segment file and, at every write, checks
    the rule (the first length word not yet reachable, the frontier, is either left zero or
    is all the write changes) and that the file is a valid journal prefix after it (every
    reachable record whole, its CRC right)."""

    def __init__(self) -> None:
        self.files: dict[int, bytearray] = {}
        self.writes = 0
        self.word_writes = 0
        self.errors: list[str] = []

    def __call__(self, fd: int, offset: int, data: bytes) -> None:
        ino = os.fstat(fd).st_ino
        model = self.files.get(ino)
        if model is None:
            with open(f"/proc/self/fd/{fd}", "rb") as f:  # (fd itself is O_DIRECT)
                model = self.files[ino] = bytearray(f.read())
        self.writes += 1
        f = self._frontier(model)
        end = offset + len(data)
        if offset <= f < end and int.from_bytes(data[f - offset:f - offset + 4], "little"):
            # the frontier's word set: nothing else may change in this write
            same = data[:f - offset] + bytes(4) + data[f - offset + 4:]
            was = bytes(model[offset:end])
            if same != was[:f - offset] + bytes(4) + was[f - offset + 4:]:
                self.errors.append(f"write at {offset} (+{len(data)}) sets the frontier's word "
                                   f"at {f} together with other bytes")
            self.word_writes += 1
        model[offset:end] = data
        self._verify(model, offset)

    @staticmethod
    def _frontier(model: bytearray) -> int:
        pos = HEADER_SIZE
        while pos + 8 <= len(model):
            n = int.from_bytes(model[pos:pos + 4], "little")
            if n == 0:
                return pos
            pos += 8 + _align8(n)
        return pos

    def _verify(self, model: bytearray, offset: int) -> None:
        pos = HEADER_SIZE
        while pos + 8 <= len(model):
            n = int.from_bytes(model[pos:pos + 4], "little")
            if n == 0:
                return
            crc = int.from_bytes(model[pos + 4:pos + 8], "little")
            if pos + 8 + n > len(model) or crc32c(bytes(model[pos + 8:pos + 8 + n])) != crc:
                self.errors.append(f"after the write at {offset}: the record at {pos} is "
                                   "reachable but not whole")
                return
            pos += 8 + _align8(n)


def _hook(check):
    _journal._set_direct_write_hook(check)


@pytest.fixture
def frontier_check():
    check = FrontierCheck()
    _journal._set_direct_write_hook(check)
    yield check
    _journal._set_direct_write_hook(None)


@settings(max_examples=25, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(sizes=BATCHES, policy=st.sampled_from(["none", "group"]), wbuf=WBUFS, stage=STAGES,
       reopen_at=st.integers(0, 12))
def test_direct_io_writes_the_bytes_the_appender_would_and_keeps_every_write_a_prefix(
        tmp_path_factory, frontier_check, sizes, policy, wbuf, stage, reopen_at):
    dirs = {}

    def write(direct):
        d = dirs[direct] = tmp_path_factory.mktemp("direct" if direct else "itself")
        n = 0
        for part in (sizes[:reopen_at], sizes[reopen_at:]):  # a reopen in between
            with Journal(d, segment_size=SMALL, first_segment_size=SMALL, durability=policy,
                         write_behind=direct, direct_io=direct) as j:
                assert j.appender.direct_io is direct
                n = _append_batches(j, part)
        return n
    for direct in (False, True):
        n = _with_stage(stage, lambda b=direct: _with_write_buffer(wbuf, lambda: write(b)))
    assert _records_region(dirs[True]) == _records_region(dirs[False])
    assert JournalReader(dirs[True]).verify_all() == (n, n - 1)
    assert not frontier_check.errors, frontier_check.errors[:3]
    assert frontier_check.writes > 0


def test_the_frontier_check_catches_a_word_written_with_its_body(tmp_path, frontier_check):
    # the planted bug: the stage's write carries the frontier's word (no separate write)
    _journal._plant("direct_word_with_body", True)
    try:
        with Journal(tmp_path, durability="group", write_behind=True, direct_io=True) as j:
            for b in range(5):
                j.append_many([payload(b * 10 + i, 300) for i in range(10)])
                j.appender.flush()
    finally:
        _journal._plant("direct_word_with_body", False)
    assert frontier_check.errors
    assert "together with other bytes" in frontier_check.errors[0]


def test_a_batch_larger_than_the_stage_is_written_in_parts_and_reachable_only_at_its_end(
        tmp_path, frontier_check):
    def run():
        with Journal(tmp_path, durability="group", write_behind=True, direct_io=True,
                     linger_ms=60_000) as j:
            a = j.appender
            j.append_many([payload(i, 1000) for i in range(100)])  # ~100 KiB, stage 16 KiB
            a.flush()
            assert j.last_sequence == 99
            assert a.direct_writes > 6  # the stage filled again and again within the batch
            return a.direct_writes
    _with_stage((16384, 8192), run)
    assert not frontier_check.errors, frontier_check.errors[:3]
    # one write of the frontier's word at the end, after every part of the body
    assert frontier_check.word_writes == 1
    assert JournalReader(tmp_path).verify_all() == (100, 99)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=TAIL_BATCHES, rounds=st.integers(3, 6), stage=STAGES)
def test_a_reader_process_tailing_a_direct_io_journal_never_sees_a_torn_record(
        tmp_path_factory, sizes, rounds, stage):
    d = tmp_path_factory.mktemp("tail")

    def tail():
        with Journal(d, segment_size=SMALL, first_segment_size=SMALL, durability="group",
                     write_behind=True, direct_io=True, linger_ms=1.0) as j:
            tail_while_appending(j, sizes, rounds)
    _with_stage(stage, tail)


def test_a_commit_reaches_the_file_within_the_linger_without_a_flush(tmp_path):
    with Journal(tmp_path, durability="group", write_behind=True, direct_io=True,
                 linger_ms=2.0) as j:
        j.append_many([payload(i, 100) for i in range(10)])
        # no flush(): the writer lingers 2 ms over what it staged, then writes it
        deadline = time.monotonic() + 30
        while j.last_sequence < 9 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert j.last_sequence == 9
        r = JournalReader(tmp_path)
        assert [bytes(x.payload) for x in r.records(0)] == [payload(i, 100) for i in range(10)]
        r.close()


def test_flush_and_sync_write_the_stage_at_once(tmp_path):
    with Journal(tmp_path, durability="group", group_events=1 << 30, write_behind=True,
                 direct_io=True, linger_ms=600_000) as j:
        j.append_many([payload(i, 100) for i in range(10)])
        time.sleep(0.05)
        assert j.last_sequence == -1  # staged: a ten-minute linger
        j.appender.flush()  # the appending thread asks for it written
        assert j.last_sequence == 9
        j.append_many([payload(10 + i, 100) for i in range(10)])
        done = []
        t = threading.Thread(target=lambda: done.append(j.sync()))  # any thread's sync()
        t.start()
        t.join(30)
        assert done == [19] and j.durable_sequence == 19
    assert JournalReader(tmp_path).verify_all() == (20, 19)


def test_wait_written_from_another_thread_writes_what_was_committed(tmp_path):
    with Journal(tmp_path, durability="group", write_behind=True, direct_io=True,
                 linger_ms=600_000) as j:
        j.append_many([payload(i, 100) for i in range(10)])
        got = []
        t = threading.Thread(target=lambda: got.append(j.wait_written(9, timeout=30)))
        t.start()
        t.join(60)
        assert got == [9]
        assert j.wait_written(10, timeout=0.05) == 9  # not committed: not written, no hang


def test_a_failed_direct_write_fails_the_next_append_with_path_and_offset(tmp_path):
    j = Journal(tmp_path, durability="group", write_behind=True, direct_io=True)
    try:
        j.append_many([payload(i, 200) for i in range(10)])
        j.appender.flush()
        seg = j.appender.segment
        ro = os.open(seg.path, os.O_RDONLY)
        os.dup2(ro, seg.dfd)  # the writer's next write: EBADF
        os.close(ro)
        j.append_many([payload(10 + i, 200) for i in range(10)])
        with pytest.raises(JournalError, match=r"write to .*\.seg at byte offset \d+ failed"):
            j.appender.flush()
        assert j.last_sequence == 9
        with pytest.raises(JournalError, match="failed"):
            j.append(b"x")
    finally:
        j.close()


def test_direct_io_configuration_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"Journal\.direct_io.*write_behind"):
        Journal(tmp_path / "a", direct_io=True)
    with pytest.raises(ConfigError, match=r"Journal\.direct_io"):
        Journal(tmp_path / "b", write_behind=True, direct_io="yes")
    with pytest.raises(ConfigError, match=r"Journal\.linger_ms"):
        Journal(tmp_path / "c", write_behind=True, direct_io=True, linger_ms=0)
    import ringlog.journal as journal_module

    monkeypatch.setattr(journal_module, "direct_io_supported", lambda _path: False)
    with pytest.raises(ConfigError, match=r"Journal\.direct_io.*file system of .*/d"):
        Journal(tmp_path / "d", write_behind=True, direct_io=True)
    Journal(tmp_path / "d", write_behind=True).close()  # the lock was released
    with pytest.raises(ConfigError, match=r"ProcessorConfig\.output_io.*/e/output"):
        Processor(Summer(), tmp_path / "e", ProcessorConfig(output_io="direct"))
    Journal(tmp_path / "e" / "input").close()  # the processor's input journal was closed
    p = Processor(Summer(), tmp_path / "f", ProcessorConfig(output_io="auto"))
    try:
        assert not p.output.appender.direct_io  # auto: buffered where O_DIRECT is refused
    finally:
        p.stop()


@pytest.mark.parametrize("topology", ["inline", "staged", "driven"])
def test_drain_returns_with_every_output_in_the_output_journals_file(tmp_path, topology):
    # a direct-I/O writer lingers up to 20 ms before it writes its stage: drain() asks it
    p = Processor(Summer(), tmp_path, ProcessorConfig(durability="group", topology=topology,
                                                      output_io="direct"))
    p.start()
    try:
        for rnd in range(3):
            for i in range(50):
                p.publish(i.to_bytes(8, "little"))
            p.drain(timeout=30)
            r = JournalReader(tmp_path / "output")
            assert sum(1 for _ in r) == 50 * (rnd + 1)  # while running, no stop() yet
            r.close()
    finally:
        p.stop()


@pytest.mark.parametrize("output_io, topology, direct", [
    ("auto", "inline", True), ("direct", "inline", True), ("buffered", "inline", False),
    (None, "inline", False), ("auto", "staged", False), ("direct", "staged", True),
    ("auto", "driven", True)])
def test_a_processor_writes_its_output_journal_with_direct_io_when_asked(
        tmp_path, output_io, topology, direct):
    # None: the default (buffered); auto: direct where the file system takes it, but staged
    kw = {} if output_io is None else {"output_io": output_io}
    p = Processor(Summer(), tmp_path, ProcessorConfig(durability="group", topology=topology,
                                                      **kw))
    try:
        assert p.output.appender.direct_io is direct
        assert not p.input.appender.direct_io  # journal before process: the page cache
        p.start()
        for i in range(1000):
            p.publish(i.to_bytes(8, "little"))
        p.drain(timeout=30)
    finally:
        p.stop()
    r = JournalReader(tmp_path / "output")
    assert r.verify_all() == (1000, 999)
    r.close()


def test_small_commits_are_staged_by_the_appender_without_waking_a_lingering_writer(
        tmp_path, frontier_check):
    # once the writer lingers over its stage (ten minutes), small commits are copied into the
    # stage by the appending thread: the writer is not woken and nothing is written until
    # the stage is asked for (the old hand-off woke it every 6 items)
    with Journal(tmp_path, durability="group", group_events=1 << 30, write_behind=True,
                 direct_io=True, linger_ms=600_000) as j:
        a = j.appender
        j.append_many([payload(0, 100)])
        assert a.writer_wakes == 1  # a new segment's first item: the writer opens its stage
        deadline = time.monotonic() + 30
        while not a.wb_lingering and time.monotonic() < deadline:
            time.sleep(0.001)
        assert a.wb_lingering
        wakes, writes = a.writer_wakes, a.direct_writes
        for i in range(1, 1001):
            j.append_many([payload(i, 100)])
        assert a.writer_wakes == wakes and a.direct_writes == writes == 0
        assert j.last_sequence == -1  # all staged, none written
        a.flush()
        assert j.last_sequence == 1000
    assert not frontier_check.errors, frontier_check.errors[:3]
    r = JournalReader(tmp_path)
    assert [bytes(x.payload) for x in r.records(0)] == [payload(i, 100) for i in range(1001)]
    r.close()
