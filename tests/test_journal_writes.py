"""How records reach a segment: buffered (a private buffer written by pwrite(), the default)
and direct (stores into the mapped segment, ``buffered=False``).

Both must write the same bytes; a reader (another process, its own read-only map) must never
see a record before its body and CRC are in place, whatever the record and batch sizes (a
batch is committed by its first length word, written last); the appender thread takes no
page fault per 4 KiB under group commit.
"""

import multiprocessing as mp
import os
import resource
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringlog._journal import HEADER_SIZE, write_buffer_size
from ringlog._ring import Ring
from ringlog.errors import ConfigError
from ringlog.journal import Journal, JournalReader, JournalTailer, list_segments

SMALL = 1 << 16  # 64 KiB segments: batches of the sizes below cross pages and rolls


def payload(seq: int, n: int) -> bytes:
    """A payload that says which record it is: a reader can check any record it sees."""
    head = struct.pack("<qI", seq, n)[:n]
    return head + bytes((seq * 7 + i) & 0xFF for i in range(n - len(head)))


def _append_batches(j: Journal, sizes: list[list[int]]) -> int:
    seq = j.next_sequence
    for batch in sizes:
        j.append_many([payload(seq + i, n) for i, n in enumerate(batch)], 3)
        seq += len(batch)
    return seq


def _records_region(path) -> list[bytes]:
    """Every segment's bytes after its header (the header holds a creation time)."""
    out = []
    for _, p in list_segments(path):
        out.append(p.read_bytes()[HEADER_SIZE:])
    return out


# batches: small ones (copied into the map at commit under durability "none", pwrite()
# under group and sync), large ones (pwrite), first records
# under and over 256 bytes (the commit word written as one byte, or stored atomically), a
# record larger than the 256 KiB buffer (grown)
BATCHES = st.lists(st.lists(st.integers(0, 3000), min_size=1, max_size=60), min_size=1,
                   max_size=12)


# a tailing reader's test: many batches of small records, appended over a few rounds
TAIL_BATCHES = st.lists(st.lists(st.integers(0, 2000), min_size=20, max_size=200), min_size=5,
                        max_size=15)


# write buffers: the default, and small ones that a batch overflows (written in parts,
# committed once)
WBUFS = st.sampled_from([None, 2048, 8192, 20000])


def _with_write_buffer(wbuf, fn):
    before = write_buffer_size()
    if wbuf is not None:
        write_buffer_size(wbuf)
    try:
        return fn()
    finally:
        write_buffer_size(before)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=BATCHES, policy=st.sampled_from(["none", "group", "sync"]), wbuf=WBUFS)
def test_buffered_and_direct_appends_write_the_same_bytes(tmp_path_factory, sizes, policy,
                                                          wbuf):
    dirs = {}
    for buffered in (True, False):
        d = tmp_path_factory.mktemp("buffered" if buffered else "direct")

        def write(d=d, buffered=buffered):
            with Journal(d, segment_size=SMALL, first_segment_size=SMALL, durability=policy,
                         buffered=buffered) as j:
                assert j.appender.buffered is buffered
                return _append_batches(j, sizes)
        n = _with_write_buffer(wbuf, write)
        dirs[buffered] = d
    assert _records_region(dirs[True]) == _records_region(dirs[False])
    assert JournalReader(dirs[True]).verify_all() == (n, n - 1)
    assert [bytes(r.payload) for r in JournalReader(dirs[True])] == [
        payload(i, k) for i, k in enumerate(x for b in sizes for x in b)]


def test_a_record_larger_than_the_buffer_grows_it(tmp_path):
    big = [300_000, 10, 600_000, 5]
    with Journal(tmp_path, segment_size=4 << 20, durability="group") as j:
        for i, n in enumerate(big):
            j.append(payload(i, n))
        j.append_many([payload(4 + i, n) for i, n in enumerate(big)])
    assert [bytes(r.payload) for r in JournalReader(tmp_path)] == [
        payload(i, n) for i, n in enumerate(big + big)]


def test_appends_are_buffered_under_every_policy_unless_asked(tmp_path):
    for policy in ("none", "group", "sync"):
        with Journal(tmp_path / policy, durability=policy) as j:
            assert j.appender.buffered is True
        with Journal(tmp_path / f"{policy}-direct", durability=policy, buffered=False) as j:
            assert j.appender.buffered is False
    with pytest.raises(ConfigError, match=r"Journal\.buffered"):
        Journal(tmp_path / "bad", buffered="yes")


def _tail_in_child(path, n, conn):
    """Reads ``n`` records with checksums verified as the writer appends; reports what went
    wrong (a torn or CRC-failing record raises JournalCorruptError) or None."""
    try:
        t = JournalTailer(path, verify=True)
        got = 0
        while got < n:
            recs = t.poll(timeout=30)
            if not recs:
                conn.send(f"no record after {got} for 30 s")
                return
            for r in recs:
                if bytes(r.payload) != payload(r.sequence, len(r.payload)):
                    conn.send(f"record {r.sequence}: wrong payload")
                    return
            got += len(recs)
        conn.send(None)
    except BaseException as e:  # the parent reports it
        conn.send(repr(e))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=TAIL_BATCHES, rounds=st.integers(3, 6), wbuf=WBUFS)
def test_a_reader_process_tailing_pwritten_batches_never_sees_a_torn_record(
        tmp_path_factory, sizes, rounds, wbuf):
    d = tmp_path_factory.mktemp("tail")
    j = _with_write_buffer(wbuf, lambda: Journal(d, segment_size=SMALL,
                                                  first_segment_size=SMALL,
                                                  durability="group"))
    with j:
        assert j.appender.buffered
        tail_while_appending(j, sizes, rounds)


def tail_while_appending(j: Journal, sizes: list[list[int]], rounds: int) -> None:
    """Appends ``sizes`` ``rounds`` times while a forked reader process tails ``j`` with
    checksums verified; fails with what the reader saw go wrong."""
    ctx = mp.get_context("fork")
    total = sum(len(b) for b in sizes) * rounds
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_tail_in_child, args=(j.path, total, child))
    p.start()
    try:
        for _ in range(rounds):
            _append_batches(j, sizes)
        assert parent.poll(120), "the tailing reader did not finish in 120 s"
        assert parent.recv() is None
    finally:
        p.join(10)
        if p.exitcode is None:
            p.kill()
            p.join()


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def _faults_appending(j: Journal, batches: int, per_batch: int, durable_each: bool) -> int:
    """The appending thread's page faults over ``batches`` ring batches of ``per_batch``
    64-byte records (append_batch makes no Python object per record, whose allocations would
    fault on their own), the first batch left out (the first segment mapped, the buffer
    touched); ``durable_each``: each made durable by the group-commit thread before the next."""
    r = Ring(1024, 56)
    c = r.consumer()
    faults = 0
    for i in range(batches + 1):
        r.publish_many([bytes(8)] * per_batch, 1)
        batch = c.poll()
        before = _faults()
        j.append_batch(batch)
        if i:
            faults += _faults() - before
        c.release(batch)
        deadline = time.monotonic() + 30
        while durable_each and j.durable_sequence < j.last_sequence:
            assert time.monotonic() < deadline, "group commit never made the batch durable"
            time.sleep(0.0002)
    return faults


@pytest.mark.parametrize("buffered", [True, False])
def test_group_commit_appends_take_no_page_fault_per_page_when_buffered(tmp_path, buffered):
    # 1,024 records of 64 bytes per batch, 8 MiB in all
    with Journal(tmp_path, durability="group", buffered=buffered) as j:
        faults = _faults_appending(j, 128, 1024, durable_each=False)
    pages = 128 * 1024 * 64 // 4096
    if buffered:
        assert faults < pages // 20, f"{faults} page faults for {pages} pages written"
    else:  # the measurement works: stores into the shared map fault about once a page
        assert faults > pages // 4, f"only {faults} page faults for {pages} pages written"


def test_small_batches_under_group_commit_take_no_page_fault(tmp_path):
    # batches of ~1.8 KiB, each made durable before the next: a copy into the map would take
    # a write fault per batch (the fdatasync write-protected the page again, and cleaning a
    # page stored into through the map costs the sync thread a TLB shootdown); by pwrite()
    # the appending thread takes none
    with Journal(tmp_path, durability="group") as j:
        faults = _faults_appending(j, 100, 16, durable_each=True)
    assert faults < 10, f"{faults} page faults for 100 small batches"


def test_a_batch_whose_commit_word_is_missing_is_a_torn_tail(tmp_path):
    # the state a kill between a batch's pwrite() and its commit leaves: the body written,
    # the first length word still zero; reopening truncates it and keeps the prefix (under
    # `none`: nothing is marked durable, as when the kill comes before the next fdatasync)
    with Journal(tmp_path, durability="none") as j:
        j.append_many([payload(i, 100) for i in range(10)])
        end = j.appender.pos
        j.append_many([payload(10 + i, 500) for i in range(40)])  # > PWRITE_MIN: pwrite
    seg = list_segments(tmp_path)[-1][1]
    fd = os.open(seg, os.O_RDWR)
    try:
        os.pwrite(fd, bytes(4), end)  # as if the commit word was never written
    finally:
        os.close(fd)
    with Journal(tmp_path, durability="none") as j:
        assert j.recovery is not None and j.recovery.sequence == 10
        assert j.recovery.offset == end
        assert j.last_sequence == 9
    assert [bytes(r.payload) for r in JournalReader(tmp_path)] == [
        payload(i, 100) for i in range(10)]


@pytest.fixture
def write_buffer():
    """Sets the journal write buffer of appenders made in the test; restores it after."""
    before = write_buffer_size()
    yield write_buffer_size
    write_buffer_size(before)


@pytest.mark.parametrize("wbuf, size", [(8192, 100), (8192, 3000), (2048, 100)])
def test_records_flushed_before_the_commit_are_unreachable_until_it(tmp_path, write_buffer,
                                                                     wbuf, size):
    # a batch larger than the buffer is written out in parts before its commit (pwrite from
    # 4 KiB, else copied into the map; its first length word under 256 written as a byte,
    # else stored): none of it is reachable until the commit writes the held word
    write_buffer(wbuf)
    with Journal(tmp_path, durability="none") as j:
        j.append_many([payload(i, 100) for i in range(10)])
        end = j.appender.pos
        j.append_many([payload(10 + i, size) for i in range(100)], commit=False)
        seg = list_segments(tmp_path)[-1][1]
        data = seg.read_bytes()
        assert data[end:end + 4] == bytes(4)  # the held word
        written = len(data[end:j.appender.pos].rstrip(b"\0"))
        assert written > 100 * size // 2, "the parts before the commit were not written out"
        assert [r.sequence for r in JournalReader(tmp_path)] == list(range(10))
        j.appender.flush()
        assert [bytes(r.payload) for r in JournalReader(tmp_path)] == [
            payload(i, 100) for i in range(10)] + [payload(10 + i, size) for i in range(100)]
    assert JournalReader(tmp_path).verify_all() == (110, 109)


def _write_then_die(path, wbuf):
    """Commits 10 records, writes 40 more past the buffer without their commit, and exits
    without closing (what kill -9 leaves: the page cache holds the written parts)."""
    write_buffer_size(wbuf)
    j = Journal(path, durability="none")
    j.append_many([payload(i, 100) for i in range(10)])
    j.append_many([payload(10 + i, 700) for i in range(40)], commit=False)
    os._exit(0)


def test_a_crash_after_parts_of_a_batch_were_written_leaves_a_torn_tail(tmp_path):
    p = mp.get_context("fork").Process(target=_write_then_die, args=(tmp_path, 8192))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    with Journal(tmp_path, durability="none") as j:
        assert j.recovery is not None and j.recovery.sequence == 10
        assert j.last_sequence == 9
    assert [bytes(r.payload) for r in JournalReader(tmp_path)] == [
        payload(i, 100) for i in range(10)]
