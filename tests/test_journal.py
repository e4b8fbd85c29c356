"""Journal round trips, seeks, durability bookkeeping, retention and errors."""

import contextlib
import os
import threading

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringlog import EventRegistry, JournalError, SchemaError
from ringlog._ring import Ring
from ringlog.journal import Journal, JournalReader, JournalTailer

SMALL = 1 << 14  # 16 KiB segments: rolls every few hundred records


def payload(seq: int, n: int) -> bytes:
    return bytes((seq + i) & 0xFF for i in range(n))


def test_append_and_read_back_every_header_field(tmp_path):
    with Journal(tmp_path / "j") as j:
        seq = j.append(b"abc", 7, timestamp_ns=5, correlation_id=6, flags=2, producer_id=8,
                       producer_seq=9)
        assert seq == 0 and j.last_sequence == 0
    (r,) = list(JournalReader(tmp_path / "j"))
    assert (r.sequence, r.type_id, r.timestamp_ns, r.correlation_id, r.flags, r.producer_id,
            r.producer_seq, bytes(r.payload)) == (0, 7, 5, 6, 2, 8, 9, b"abc")


@settings(max_examples=25)
@given(events=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 2**32 - 1),
                                 st.integers(-2**63, 2**63 - 1)), min_size=1, max_size=400),
       policy=st.sampled_from(["none", "group", "sync"]))
def test_round_trip_of_random_sizes_across_segment_rolls(tmp_path_factory, events, policy):
    d = tmp_path_factory.mktemp("j")
    with Journal(d, segment_size=SMALL, durability=policy) as j:
        for i, (n, type_id, corr) in enumerate(events):
            assert j.append(payload(i, n), type_id, timestamp_ns=i, correlation_id=corr) == i
    recs = list(JournalReader(d))
    assert [r.sequence for r in recs] == list(range(len(events)))
    assert [(bytes(r.payload), r.type_id, r.correlation_id, r.timestamp_ns) for r in recs] == [
        (payload(i, n), t, c, i) for i, (n, t, c) in enumerate(events)]
    assert JournalReader(d).verify_all() == (len(events), len(events) - 1)


def test_reopen_continues_the_sequence_and_first_sequence_is_honoured(tmp_path):
    with Journal(tmp_path, first_sequence=100, segment_size=SMALL) as j:
        for _i in range(300):
            j.append(b"x" * 40)
    with Journal(tmp_path, segment_size=SMALL) as j:
        assert j.next_sequence == 400 and j.recovery is None
        assert j.append(b"y") == 400
    assert [r.sequence for r in JournalReader(tmp_path).records(398)] == [398, 399, 400]


def test_seek_by_sequence_and_by_time(tmp_path):
    with Journal(tmp_path, segment_size=SMALL, index_every=16) as j:
        for i in range(2000):
            j.append(b"z" * 20, timestamp_ns=1000 + 10 * i)
    rd = JournalReader(tmp_path)
    assert len(rd.segments()) > 3
    assert next(iter(rd.records(1234))).sequence == 1234
    assert [r.sequence for r in rd.records(1990, to_sequence=1992)] == [1990, 1991, 1992]
    assert rd.locate_time(1000 + 10 * 777) == 777
    assert rd.locate_time(1000 + 10 * 777 - 5) == 777
    assert next(iter(rd.records(from_time=1000 + 10 * 1500))).sequence == 1500
    assert rd.locate_time(10**12) == -1
    assert list(rd.records(5000)) == []


def test_durable_sequence_under_each_policy(tmp_path):
    with Journal(tmp_path / "s", durability="sync") as j:
        j.append(b"a")
        assert j.durable_sequence == 0
        j.append_many([b"b", b"c"])
        assert j.durable_sequence == 2
    with Journal(tmp_path / "g", durability="group", group_events=1, group_ms=1) as j:
        j.append(b"a")
        j.sync()
        assert j.durable_sequence == 0
    with Journal(tmp_path / "n", durability="none") as j:
        j.append(b"a")
        assert j.durable_sequence == -1
        assert j.sync() == 0 and j.durable_sequence == 0


def test_group_commit_advances_durable_without_an_explicit_sync(tmp_path):
    with Journal(tmp_path, durability="group", group_events=10, group_ms=5) as j:
        for _ in range(100):
            j.append(b"e")
        deadline = 0
        while j.durable_sequence < 99 and deadline < 2000:
            threading.Event().wait(0.005)
            deadline += 5
        assert j.durable_sequence == 99


def test_every_payload_length_gets_a_checksum_the_reader_verifies(tmp_path):
    # the fused copy + CRC takes 16, 8, 4, 2 and 1 bytes a step: every tail length, through
    # both append paths (a separate payload, and ring slots whose payload follows the header)
    r = Ring(128, 128)
    c = r.consumer()
    r.publish_many([payload(n, n) for n in range(81)], 3)
    with Journal(tmp_path) as j:
        for n in range(81):
            j.append(payload(n, n), 2)
        assert j.append_batch(c.poll()) == 161
    recs = list(JournalReader(tmp_path))
    assert [bytes(x.payload) for x in recs] == [payload(n, n) for n in range(81)] * 2
    assert JournalReader(tmp_path).verify_all() == (162, 161)


def test_append_batch_from_a_ring_journals_slots_byte_for_byte(tmp_path):
    r = Ring(64, 64)
    c = r.consumer()
    r.publish_many([b"p%d" % i for i in range(10)], 4, timestamp_ns=77)
    with Journal(tmp_path) as j:
        assert j.append_batch(c.poll()) == 9
    recs = list(JournalReader(tmp_path))
    assert [bytes(x.payload) for x in recs] == [b"p%d" % i for i in range(10)]
    assert {x.type_id for x in recs} == {4} and {x.timestamp_ns for x in recs} == {77}


def test_append_struct_and_decode_with_the_schema_in_the_segment(tmp_path):
    class Order(msgspec.Struct, array_like=True):
        id: int

    reg = EventRegistry()
    reg.register(3, Order)
    with Journal(tmp_path, registry=reg) as j:
        j.append_struct(Order(9))
    rd = JournalReader(tmp_path)
    (r,) = list(rd)
    assert r.decode(reg) == Order(9)
    assert rd.schema == [{"type_id": 3, "name": "Order", "version": 1, "kind": "msgpack",
                          "fields": [["id", "int"]]}]


def test_second_appender_on_the_same_directory_is_refused(tmp_path):
    with Journal(tmp_path), pytest.raises(JournalError, match="already open for appending"):
        Journal(tmp_path)


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"Journal\.durability: must be one of"):
        Journal(tmp_path, durability="fast")
    with pytest.raises(ValueError, match="segment_size"):
        Journal(tmp_path, segment_size=1000)
    with Journal(tmp_path) as j, pytest.raises(TypeError, match="bytes-like"):
        j.append("text")


def test_record_larger_than_a_segment_is_an_error_and_changes_nothing(tmp_path):
    with Journal(tmp_path, segment_size=8192) as j:
        with pytest.raises(JournalError, match="cannot fit a segment"):
            j.append(b"x" * 5000)
        assert j.append(b"ok") == 0


def test_bad_payload_in_a_batch_appends_nothing(tmp_path):
    with Journal(tmp_path, segment_size=8192) as j:
        j.append(b"first")
        with pytest.raises(TypeError, match="payload 2 must be bytes-like, got int"):
            j.append_many([b"a", b"b", 7])
        with pytest.raises(JournalError, match="payload 1: a record of 5000 bytes"):
            j.append_many([b"a", b"x" * 5000])
        with pytest.raises(OverflowError):
            j.append(b"x", -1)
        assert j.last_sequence == 0 and j.append_many([b"c", bytearray(b"d")]) == 2
    assert [bytes(r.payload) for r in JournalReader(tmp_path)] == [b"first", b"c", b"d"]


def test_append_on_closed_journal_is_an_error(tmp_path):
    j = Journal(tmp_path)
    j.close()
    with pytest.raises(JournalError, match="closed"):
        j.append(b"x")


def test_retention_drops_only_whole_segments_before_the_sequence(tmp_path):
    with Journal(tmp_path, segment_size=SMALL) as j:
        for _ in range(2000):
            j.append(b"r" * 40)
        segs = JournalReader(tmp_path).segments()
        keep_from = segs[2][0] + 5
        dropped = j.drop_segments_before(keep_from)
        assert len(dropped) == 2
        rd = JournalReader(tmp_path)
        assert rd.segments()[0][0] == segs[2][0]
        assert next(iter(rd.records(keep_from))).sequence == keep_from
        with pytest.raises(JournalError, match="before the journal's first retained"):
            list(rd.records(0))
    with Journal(tmp_path, segment_size=SMALL) as j:  # reopens fine after retention
        assert j.next_sequence == 2000


def test_tailer_follows_a_writer_thread_across_segment_rolls(tmp_path):
    j = Journal(tmp_path, segment_size=SMALL, durability="none")
    t = JournalTailer(tmp_path)
    n = 3000

    def write():
        for i in range(n):
            j.append(i.to_bytes(4, "little"))

    w = threading.Thread(target=write)
    w.start()
    got = []
    while len(got) < n:
        got += [int.from_bytes(r.payload, "little") for r in t.poll(timeout=5)]
    w.join()
    j.close()
    assert got == list(range(n))


def _write_in_child(path, n):
    with Journal(path, segment_size=SMALL, durability="none") as j:
        for i in range(n):
            j.append(i.to_bytes(4, "little"))


def test_tailer_follows_a_writer_process(tmp_path):
    import multiprocessing as mp

    os.makedirs(tmp_path / "j")
    ctx = mp.get_context("fork")
    p = ctx.Process(target=_write_in_child, args=(tmp_path / "j", 3000))
    p.start()
    while not list((tmp_path / "j").glob("*.seg")):
        p.join(0.001)
    t = JournalTailer(tmp_path / "j")
    got = []
    while len(got) < 3000:
        got += [int.from_bytes(r.payload, "little") for r in t.poll(timeout=5)]
    p.join(10)
    assert got == list(range(3000)) and p.exitcode == 0


def _fill_until_disk_full(path, q):
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    appended = 0
    try:
        # no file may grow past SMALL: the first segment (SMALL) is written whole, by
        # pwrite() too, and the next one (2 * SMALL, the journal grows) cannot be preallocated
        resource.setrlimit(resource.RLIMIT_FSIZE, (SMALL, SMALL))
        with Journal(path, segment_size=2 * SMALL, first_segment_size=SMALL,
                     durability="sync", prefault=False) as j:
            while True:
                j.append(payload(appended, 100))
                appended += 1
    except JournalError as e:
        q.put((appended, str(e)))
    except BaseException as e:
        q.put((appended, f"unexpected {e!r}"))


def test_disk_full_is_a_clear_error_and_what_was_durable_stays_readable(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_fill_until_disk_full, args=(tmp_path / "j", q))
    p.start()
    appended, message = q.get(timeout=30)
    p.join(10)
    assert "cannot preallocate" in message and "disk full" in message
    recs = list(JournalReader(tmp_path / "j"))
    assert len(recs) == appended > 0
    assert all(bytes(r.payload) == payload(r.sequence, 100) for r in recs)


def test_readers_see_the_durable_sequence_across_rolls(tmp_path):
    with Journal(tmp_path, segment_size=SMALL, durability="none") as j:
        rd = JournalReader(tmp_path)
        assert rd.durable_sequence == -1
        for _ in range(1000):  # several rolls, nothing synced under `none`
            j.append(b"d" * 40)
        assert len(rd.segments()) > 2 and JournalReader(tmp_path).durable_sequence == -1
        assert j.sync() == 999
        assert JournalReader(tmp_path).durable_sequence == 999
        for _ in range(500):
            j.append(b"d" * 40)
        # the new segments were sealed with what was durable then; nothing newer is claimed
        assert JournalReader(tmp_path).durable_sequence == 999
        assert JournalTailer(tmp_path).durable_sequence == 999
    with Journal(tmp_path, segment_size=SMALL, durability="sync") as j:
        assert JournalReader(tmp_path).durable_sequence == 1499  # what survived is on disk
        j.append(b"s")
        assert JournalReader(tmp_path).durable_sequence == 1500 == j.durable_sequence


def _sync_writer(path, n, q):
    with Journal(path, segment_size=SMALL, durability="group", group_events=10,
                 group_ms=1) as j:
        for i in range(n):
            j.append(i.to_bytes(4, "little"))
        q.put(j.sync())
        q.get(timeout=30)  # stay open until the parent has looked


def test_a_reader_in_another_process_sees_the_writers_durable_sequence(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    q_out = ctx.Queue()
    p = ctx.Process(target=_sync_writer, args=(tmp_path / "j", 2000, q_out))
    p.start()
    try:
        assert q_out.get(timeout=30) == 1999
        rd = JournalReader(tmp_path / "j")
        assert rd.durable_sequence == 1999
        assert [r.sequence for r in rd.records(1990)] == list(range(1990, 2000))
    finally:
        q_out.put(None)
        p.join(10)


def _broken_fsync(journal):
    """Points the current segment's fd at /dev/null: fdatasync then fails with EINVAL, as a
    failing disk would with EIO (the mapping, and so every record written before, is
    untouched; a pwrite() after it writes nowhere)."""
    fd = os.open("/dev/null", os.O_RDWR)
    os.dup2(fd, journal.appender.segment.fd)
    os.close(fd)


def test_sync_write_error_is_a_clear_exception_and_durable_data_stays_readable(tmp_path):
    j = Journal(tmp_path, durability="sync")
    for i in range(10):
        j.append(payload(i, 30))
    _broken_fsync(j)
    with pytest.raises(JournalError, match=r"fdatasync of .* failed"):
        j.append(payload(10, 30))
    with pytest.raises(JournalError, match="failed earlier"):
        j.append(b"more")
    assert j.durable_sequence == 9
    j.close()
    recs = list(JournalReader(tmp_path))
    assert [bytes(r.payload) for r in recs[:10]] == [payload(i, 30) for i in range(10)]


def test_group_commit_write_error_surfaces_on_the_next_append(tmp_path):
    j = Journal(tmp_path, durability="group", group_events=5, group_ms=1)
    for i in range(10):
        j.append(payload(i, 30))
    j.sync()
    _broken_fsync(j)
    with contextlib.suppress(JournalError):  # the failed sync may already surface in here
        for i in range(10, 20):
            j.append(payload(i, 30))
    j._thread.join(10)  # the group-commit thread stops at its failed sync
    assert not j._thread.is_alive() and j.failed
    with pytest.raises(JournalError, match=r"failed: fdatasync of .* Invalid argument"):
        j.append(b"again")
    assert j.durable_sequence >= 9
    j.close()
    assert [bytes(r.payload) for r in JournalReader(tmp_path).records(0, to_sequence=9)] == [
        payload(i, 30) for i in range(10)]


def test_records_decode_by_type_id_and_old_versions_are_upcast(tmp_path):
    class OrderV1(msgspec.Struct, array_like=True):
        id: int

    class Order(msgspec.Struct, array_like=True):
        id: int
        qty: int

    class Cancel(msgspec.Struct, array_like=True):
        id: int

    old = EventRegistry()
    old.register(3, OrderV1, name="Order", version=1)
    old.register(4, Cancel)
    with Journal(tmp_path, registry=old) as j:
        j.append_struct(OrderV1(1))
        j.append_struct(Cancel(1))
    new = EventRegistry()
    new.register(3, Order, version=2)
    new.register(4, Cancel)
    recs = list(JournalReader(tmp_path))
    with pytest.raises(SchemaError, match="no upcaster for Order v1 -> v2"):
        recs[0].decode(new)
    new.add_upcaster(3, 1, lambda fields: Order(fields[0], qty=0))
    assert [r.decode(new) for r in recs] == [Order(1, 0), Cancel(1)]
    with Journal(tmp_path, registry=new) as j:  # a new registry starts a new segment
        j.append_struct(Order(2, 5))
    recs = list(JournalReader(tmp_path))
    assert [r.decode(new) for r in recs] == [Order(1, 0), Cancel(1), Order(2, 5)]
    assert [r.segment.schema_version(3) for r in recs] == [1, 1, 2]


def test_retention_only_happens_when_asked(tmp_path):
    from ringlog.snapshot import SnapshotStore

    snaps = SnapshotStore(tmp_path / "snaps")
    with Journal(tmp_path / "j", segment_size=SMALL) as j:
        for i in range(3000):
            j.append(b"k" * 40)
            if i % 500 == 0:
                snaps.write(i, b"state")
        before = JournalReader(tmp_path / "j").segments()
    with Journal(tmp_path / "j", segment_size=SMALL) as j:
        assert JournalReader(tmp_path / "j").segments() == before  # nothing dropped
        keep = snaps.latest().sequence + 1
        dropped = j.drop_segments_before(keep)
    rd = JournalReader(tmp_path / "j")
    assert dropped and rd.segments()[0][0] <= keep
    assert [p for _, p in before if str(p) not in dropped] == [p for _, p in rd.segments()]
    assert next(iter(rd.records(keep))).sequence == keep


def test_durable_mark_stays_consistent_with_concurrent_sync_callers(tmp_path):
    j = Journal(tmp_path, segment_size=SMALL, durability="sync")
    stop = threading.Event()
    seen = []

    def syncer():
        rd = JournalReader(tmp_path)
        while not stop.is_set():
            j.sync()
            seen.append(rd.durable_sequence)  # raises if the pair were ever torn

    t = threading.Thread(target=syncer)
    t.start()
    try:
        for i in range(300):
            j.append(payload(i, 100))
    finally:
        stop.set()
        t.join(30)
    assert seen == sorted(seen)  # monotonic as readers see it
    assert JournalReader(tmp_path).durable_sequence == 299 == j.durable_sequence
    j.close()


def _unterminate_last_record(path, durable):
    """The journal as a crash between a record's body and its length word leaves it (the
    length is stored last), with the segment's durable mark set to ``durable``."""
    from ringlog.journal import list_segments

    with Journal(path, durability="none") as j:
        for _ in range(11):
            j.append(b"x" * 40, 1)
        end = j.appender.pos
    _, seg = list_segments(path)[-1]
    with open(seg, "r+b") as f:
        f.seek(end - (8 + 48 + 40))
        f.write(b"\0\0\0\0")  # the last record's length word, never stored
        f.seek(4080)  # the durable mark: its complement, then the value
        f.write((~durable).to_bytes(8, "little", signed=True))
        f.write(durable.to_bytes(8, "little", signed=True))
    return seg, end - (8 + 48 + 40)


def test_a_body_without_its_length_word_past_the_durable_mark_is_a_torn_tail(tmp_path):
    from ringlog.journaltool import check

    _, off = _unterminate_last_record(tmp_path / "j", durable=9)
    problem = check(tmp_path / "j").problem
    assert (problem.kind, problem.offset, problem.sequence) == ("torn_tail", off, 10)
    with Journal(tmp_path / "j", durability="none") as j:
        assert j.recovery.offset == off and j.recovery.sequence == 10
        assert j.recovery.bytes_dropped == 96 and j.last_sequence == 9
        j.append(b"y", 2)  # the space is reused only after the torn bytes were zeroed
    assert [r.type_id for r in JournalReader(tmp_path / "j")] == [1] * 10 + [2]


def test_a_missing_length_word_of_a_durable_record_is_corruption_not_a_torn_tail(tmp_path):
    from ringlog.journaltool import check

    _, off = _unterminate_last_record(tmp_path / "j", durable=10)
    assert check(tmp_path / "j").problem.kind == "corrupt"
    with pytest.raises(JournalError, match=f"offset {off}"):
        Journal(tmp_path / "j", durability="none")
