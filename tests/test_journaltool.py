"""journaltool in-process: any flipped bit is found at its record, time parsing, filters."""

import os
import shutil
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringlog import Journal
from ringlog.journal import JournalReader
from ringlog.journaltool import Filter, PayloadDecoder, check, parse_time, plan_repair

N = 500


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A small journal of 3 segments and the extent of every checksummed byte in it."""
    d = tmp_path_factory.mktemp("jt") / "j"
    with Journal(d, segment_size=16384, durability="group") as j:  # all durable on close
        for i in range(N):
            j.append(struct.pack("<q", i) * (1 + i % 3), 1 + i % 4, timestamp_ns=i)
    extents = []  # (file name, start, end, sequence, last record of the journal)
    for rec in JournalReader(d):
        start = rec.offset
        extents.append((rec.segment.path.rsplit("/", 1)[1], start,
                        start + 8 + 48 + len(rec.payload), rec.sequence, rec.sequence == N - 1))
    return d, extents


@given(st.data())
def test_check_finds_any_flipped_checksummed_bit_at_its_record(pristine, tmp_path_factory, data):
    src, extents = pristine
    name, start, end, seq, last = data.draw(st.sampled_from(extents))
    pos = data.draw(st.integers(start, end - 1))
    bit = data.draw(st.integers(0, 7))
    d = tmp_path_factory.mktemp("flip") / "j"
    shutil.copytree(src, d)
    with open(d / name, "r+b") as f:
        f.seek(pos)
        b = f.read(1)[0]
        f.seek(pos)
        f.write(bytes([b ^ (1 << bit)]))
    res = check(d)
    p = res.problem
    assert p is not None, (name, pos, seq)
    assert (p.path.rsplit("/", 1)[1], p.offset, p.sequence) == (name, start, seq)
    assert p.kind in (("corrupt", "torn_tail") if last else ("corrupt",))
    assert res.records == seq  # every record before it was counted intact


def test_check_of_a_clean_journal_counts_everything(pristine):
    src, _ = pristine
    res = check(src)
    assert res.problem is None and (res.records, res.first_sequence, res.last_sequence) == (
        N, 0, N - 1)
    assert plan_repair(src) is None


def test_check_flags_a_stale_index(pristine, tmp_path):
    src, _ = pristine
    d = tmp_path / "j"
    shutil.copytree(src, d)
    idx = sorted(d.glob("*.idx"))
    shutil.copy(idx[1], idx[0])  # the wrong segment's index
    p = check(d).problem
    assert p.kind == "index" and p.path == str(idx[0])
    assert plan_repair(d).drop_index == [str(idx[0])]


@pytest.mark.parametrize(("text", "ns"), [
    ("1700000000123456789", 1700000000123456789),
    ("2023-11-14T22:13:20Z", 1700000000_000000000),
    ("2023-11-14T22:13:20.123456789Z", 1700000000_123456789),
    ("2023-11-14T22:13:20.5", 1700000000_500000000),
    ("2023-11-15T00:13:20.000000001+02:00", 1700000000_000000001),
])
def test_parse_time_keeps_nanoseconds_and_zones(text, ns):
    assert parse_time(text) == ns


def test_parse_time_and_where_reject_nonsense_with_a_clear_message():
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_time("last tuesday")
    with pytest.raises(ValueError, match="FIELD OP VALUE"):
        Filter(where=["price ~ 3"]).compile()


def test_where_compares_header_and_payload_fields_and_never_matches_missing_ones(pristine):
    src, _ = pristine
    dec = PayloadDecoder()
    recs = list(JournalReader(src).records(0, to_sequence=9))
    accept = Filter(where=["type_id>=3", "sequence!=2"]).compile()
    assert [r.sequence for r in recs if accept(r, dec)] == [3, 6, 7]
    assert not any(Filter(where=["price>1"]).compile()(r, dec) for r in recs)
    assert dec.as_dict(recs[0])["payload_hex"] == struct.pack("<q", 0).hex()


def test_check_finds_records_hidden_behind_a_zeroed_length_word(pristine, tmp_path):
    src, extents = pristine
    d = tmp_path / "j"
    shutil.copytree(src, d)
    name, start, _, seq, _ = extents[-20]  # in the last segment: nothing would show a gap
    with open(d / name, "r+b") as f:
        f.seek(start)
        f.write(b"\0\0\0\0")
    p = check(d).problem
    assert (p.kind, p.offset, p.sequence) == ("corrupt", start, seq)


def test_info_counts_by_type_in_c_and_past_its_table_in_python(tmp_path):
    from ringlog.journaltool import info

    with Journal(tmp_path / "few", durability="none") as j:
        for i in range(1000):
            j.append(b"x", 1 + i % 3)
    got = info(tmp_path / "few")["counts_by_type"]
    assert got == {"type1 (1)": 334, "type2 (2)": 333, "type3 (3)": 333}
    with Journal(tmp_path / "many", durability="none") as j:  # 5000 distinct ids > 4096 slots
        for i in range(5000):
            j.append(b"x", 1 + i)
            if i < 10:
                j.append(b"y", 1 + i)
    got = info(tmp_path / "many")["counts_by_type"]
    assert len(got) == 5000 and got["type1 (1)"] == 2 and got["type5000 (5000)"] == 1


def test_check_never_reports_a_live_journal_being_appended_as_corrupt(tmp_path):
    import threading

    results = []
    with Journal(tmp_path / "live", segment_size=1 << 16, durability="none") as j:
        def writer():  # a bounded amount: 2000 batches of 64 records, ~300 segments
            for _ in range(2000):
                j.append_many([b"p" * 40] * 64)

        t = threading.Thread(target=writer)
        results.append(check(tmp_path / "live"))  # before the writer: growth is certain
        t.start()
        while t.is_alive() or len(results) < 3:
            results.append(check(tmp_path / "live"))
        t.join()
    assert all(r.problem is None for r in results), [r.problem for r in results if r.problem]
    assert results[-1].records > results[0].records  # it really was growing


def test_info_reports_the_durable_sequence_the_appender_published(tmp_path):
    from ringlog.journaltool import info

    with Journal(tmp_path / "g", durability="group") as j:
        for _ in range(10):
            j.append(b"x")
        j.sync()
        assert info(tmp_path / "g")["durable_sequence"] == 9  # live, from another reader
        assert info(tmp_path / "g")["appender_pid"] == os.getpid()
