"""Corruption is always found and named: bit flips, torn tails, truncated, missing and
foreign files."""

import json
import os
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringlog import JournalCorruptError, JournalError
from ringlog._journal import HEADER_SIZE, crc32c, crc32c_mode
from ringlog.journal import Journal, JournalReader, list_segments
from ringlog.journaltool import check

SMALL = 1 << 14


def _make(path, n=500, size=40, durability="group"):
    # group: close() syncs and publishes the durable mark, so every record is durable
    with Journal(path, segment_size=SMALL, durability=durability) as j:
        for i in range(n):
            j.append(bytes([i & 0xFF]) * size, 1, timestamp_ns=i)
    return [p for _, p in list_segments(path)]


def _record_offsets(seg_path):
    data = seg_path.read_bytes()
    off, out = HEADER_SIZE, []
    while off + 8 <= len(data):
        n = struct.unpack_from("<I", data, off)[0]
        if n == 0:
            break
        out.append((off, n))
        off += 8 + ((n + 7) & ~7)
    return out


def test_crc32c_matches_the_standard_check_value():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


def _crc32c_reference(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@settings(max_examples=30)
@given(data=st.binary(max_size=200), seed=st.integers(0, 2**32 - 1))
def test_hardware_and_table_crc32c_agree_with_a_reference(data, seed):
    mode = crc32c_mode()
    try:
        for m in {0, mode}:
            crc32c_mode(m)
            assert crc32c(data) == _crc32c_reference(data)
            assert crc32c(data[7:], crc32c(data[:7])) == _crc32c_reference(data)
    finally:
        crc32c_mode(mode)


def test_journal_written_with_one_crc_implementation_reads_with_the_other(tmp_path):
    mode = crc32c_mode()
    try:
        crc32c_mode(0)
        _make(tmp_path / "a", n=300, size=45)
        crc32c_mode(mode)
        assert JournalReader(tmp_path / "a").verify_all() == (300, 299)
        _make(tmp_path / "b", n=300, size=45)
        crc32c_mode(0)
        assert JournalReader(tmp_path / "b").verify_all() == (300, 299)
    finally:
        crc32c_mode(mode)
    with pytest.raises(ValueError, match="mode must be 0"):
        crc32c_mode(2)


@settings(max_examples=40)
@given(st.data())
def test_a_bit_flip_anywhere_in_a_record_is_detected_with_file_and_offset(tmp_path_factory,
                                                                          data):
    d = tmp_path_factory.mktemp("j")
    segs = _make(d)
    seg = data.draw(st.sampled_from(segs[:-1]))  # a sealed segment: mid-file corruption
    recs = _record_offsets(seg)
    off, n = data.draw(st.sampled_from(recs))
    pos = data.draw(st.integers(off, off + 8 + n - 1))
    bit = data.draw(st.integers(0, 7))
    raw = bytearray(seg.read_bytes())
    raw[pos] ^= 1 << bit
    seg.write_bytes(raw)
    os.remove(seg.with_suffix(".idx"))  # force the scan, as `journal verify` does
    with pytest.raises(JournalCorruptError) as e:
        JournalReader(d).verify_all()
    assert e.value.path == str(seg) and e.value.offset == off


def test_bit_flip_in_the_middle_of_the_last_segment_is_corruption_not_a_torn_tail(tmp_path):
    segs = _make(tmp_path)
    last = segs[-1]
    off, _ = _record_offsets(last)[1]
    raw = bytearray(last.read_bytes())
    raw[off + 20] ^= 0x10
    last.write_bytes(raw)
    with pytest.raises(JournalCorruptError, match="checksum mismatch at byte offset") as e:
        Journal(tmp_path, segment_size=SMALL)
    assert e.value.offset == off and e.value.path == str(last)


def test_torn_last_record_is_truncated_and_reported(tmp_path):
    segs = _make(tmp_path, durability="none")  # the last record is past the durable mark
    last = segs[-1]
    off, n = _record_offsets(last)[-1]
    raw = bytearray(last.read_bytes())
    raw[off + 8 + n - 1] ^= 0xFF  # the tail of the body never reached the disk
    last.write_bytes(raw)
    with Journal(tmp_path, segment_size=SMALL) as j:
        rec = j.recovery
        assert rec is not None and rec.path == str(last) and rec.offset == off
        assert rec.sequence == 499 and rec.bytes_dropped == 8 + ((n + 7) & ~7)
        assert j.next_sequence == 499
        assert j.append(b"new") == 499
    assert JournalReader(tmp_path).verify_all() == (500, 499)


def test_torn_length_word_is_truncated(tmp_path):
    segs = _make(tmp_path, durability="none")
    last = segs[-1]
    off, n = _record_offsets(last)[-1]
    end = off + 8 + ((n + 7) & ~7)
    raw = bytearray(last.read_bytes())
    struct.pack_into("<I", raw, end, 10**6)  # a length word with nothing behind it
    last.write_bytes(raw)
    with Journal(tmp_path, segment_size=SMALL) as j:
        assert j.recovery.offset == end and j.next_sequence == 500


def test_missing_middle_segment_is_a_clear_error(tmp_path):
    segs = _make(tmp_path)
    os.remove(segs[1])
    with pytest.raises(JournalCorruptError, match="missing or out of order"):
        Journal(tmp_path, segment_size=SMALL)
    with pytest.raises(JournalCorruptError, match="missing or out-of-order"):
        JournalReader(tmp_path).verify_all()


def test_truncated_segment_is_a_clear_error(tmp_path):
    segs = _make(tmp_path)
    os.truncate(segs[-1], SMALL - 4096)
    with pytest.raises(JournalCorruptError, match="truncated or extended"):
        Journal(tmp_path, segment_size=SMALL)
    os.truncate(segs[-1], 100)
    with pytest.raises(JournalCorruptError, match="too small for a segment"):
        Journal(tmp_path, segment_size=SMALL)


def test_foreign_file_and_damaged_header_are_clear_errors(tmp_path):
    segs = _make(tmp_path)
    raw = bytearray(segs[-1].read_bytes())
    raw[30] ^= 1
    segs[-1].write_bytes(raw)
    with pytest.raises(JournalCorruptError, match="header checksum"):
        Journal(tmp_path, segment_size=SMALL)
    segs[-1].write_bytes(b"GARBAGE!" + bytes(SMALL - 8))
    with pytest.raises(JournalCorruptError, match="not a ringlog journal segment"):
        Journal(tmp_path, segment_size=SMALL)
    (tmp_path / "notes.seg").write_bytes(b"x")
    with pytest.raises(JournalCorruptError, match="not a segment name"):
        Journal(tmp_path, segment_size=SMALL)


def test_not_a_directory_is_an_error(tmp_path):
    with pytest.raises(JournalError, match="not a journal directory"):
        JournalReader(tmp_path / "nope")


def test_random_garbage_in_the_unwritten_area_is_corruption(tmp_path):
    segs = _make(tmp_path, n=20)
    last = segs[-1]
    off, n = _record_offsets(last)[-1]
    raw = bytearray(last.read_bytes())
    rnd = random.Random(1)
    base = off + 8 + ((n + 7) & ~7) + 512
    raw[base:base + 64] = bytes(rnd.randrange(1, 256) for _ in range(64))
    raw[off + 9] ^= 1  # bad last record followed by non-zero bytes
    last.write_bytes(raw)
    with pytest.raises(JournalCorruptError):
        Journal(tmp_path, segment_size=SMALL)


def _unit_start(seg_path, pos):
    """Where a flip at ``pos`` must be reported: the start of the checksummed or checked unit
    holding it (a record, the length word after the last record, or the very byte)."""
    recs = _record_offsets(seg_path)
    for off, n in recs:
        if off <= pos < off + 8 + ((n + 7) & ~7):
            return off
    end = recs[-1][0] + 8 + ((recs[-1][1] + 7) & ~7)
    return end if end <= pos < end + 4 else pos


@settings(max_examples=60)
@given(st.data())
def test_a_bit_flip_at_any_offset_of_a_sealed_segment_is_detected_where_it_is(
        tmp_path_factory, data):
    d = tmp_path_factory.mktemp("j")
    segs = _make(d, n=400, size=45)  # 45: every record has padding, every segment a tail
    seg = data.draw(st.sampled_from(segs[:-1]))
    size = seg.stat().st_size
    pos = data.draw(st.one_of(st.integers(0, HEADER_SIZE - 1), st.integers(HEADER_SIZE,
                                                                            size - 1)))
    raw = bytearray(seg.read_bytes())
    raw[pos] ^= 1 << data.draw(st.integers(0, 7))
    seg.write_bytes(raw)
    if HEADER_SIZE - 16 <= pos < HEADER_SIZE:  # the durable-mark hint: not a record's damage
        p = check(d).problem
        assert (p.kind, p.path, p.offset) == ("hint", str(seg), HEADER_SIZE - 16)
        return
    with pytest.raises(JournalCorruptError) as e:
        JournalReader(d).verify_all()
    assert e.value.path == str(seg)
    if pos < HEADER_SIZE:
        assert 0 <= e.value.offset < HEADER_SIZE  # the header field or its checksum
    else:
        assert e.value.offset == _unit_start(seg, pos)


def test_padding_and_durable_mark_damage_are_named(tmp_path):
    segs = _make(tmp_path, n=300, size=45)
    off, n = _record_offsets(segs[0])[3]
    raw = bytearray(segs[0].read_bytes())
    raw[off + 8 + n] = 1  # first padding byte
    segs[0].write_bytes(raw)
    with pytest.raises(JournalCorruptError, match="non-zero padding after the record") as e:
        JournalReader(tmp_path).verify_all()
    assert e.value.offset == off
    raw[off + 8 + n] = 0
    raw[HEADER_SIZE - 3] ^= 4  # inside the durable sequence mark: a hint, not a record
    segs[0].write_bytes(raw)
    assert JournalReader(tmp_path).verify_all() == (300, 299)
    p = check(tmp_path).problem
    assert (p.kind, p.path, p.offset) == ("hint", str(segs[0]), HEADER_SIZE - 16)
    assert "durable sequence mark damaged" in p.message
    raw[HEADER_SIZE - 3] ^= 4
    last, m = _record_offsets(segs[0])[-1]
    end = last + 8 + ((m + 7) & ~7)
    assert end + 8 < SMALL  # the sealed segment has an unwritten tail
    raw[end + 6] = 0x80
    segs[0].write_bytes(raw)
    with pytest.raises(JournalCorruptError, match="non-zero byte at offset") as e:
        JournalReader(tmp_path).verify_all()
    assert e.value.offset == end + 6


def test_segments_out_of_order_are_a_clear_error(tmp_path):
    segs = _make(tmp_path)
    a, b = segs[1], segs[2]
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)  # the two files' contents swapped under their names
    b.write_bytes(data_a)
    for p in (a, b):
        p.with_suffix(".idx").unlink()
    with pytest.raises(JournalCorruptError, match="header says first sequence") as e:
        list(JournalReader(tmp_path))
    assert e.value.path == str(a)
    with pytest.raises(JournalCorruptError, match=r"sequence out of order|header says first"):
        Journal(tmp_path, segment_size=SMALL)


def test_a_repeated_record_with_a_valid_checksum_is_corruption(tmp_path):
    segs = _make(tmp_path, n=40)
    (o1, n1), (o2, _) = _record_offsets(segs[0])[5:7]
    raw = bytearray(segs[0].read_bytes())
    raw[o2:o2 + 8 + n1] = raw[o1:o1 + 8 + n1]  # sequence 5 written again where 6 belongs
    segs[0].write_bytes(raw)
    with pytest.raises(JournalCorruptError, match="sequence out of order at byte offset") as e:
        list(JournalReader(tmp_path))
    assert (e.value.path, e.value.offset, e.value.sequence) == (str(segs[0]), o2, 6)


def test_a_schema_too_large_for_the_header_as_json_is_stored_compressed_and_read_back(tmp_path):
    import numpy as np

    from ringlog.events import EventRegistry

    reg = EventRegistry()
    for i in range(1, 61):  # ~60 record types: several KiB of JSON, past the 4 KiB header
        reg.register(i, name=f"record_type_{i}", dtype=np.dtype(
            [(f"field_{k}", "<i8") for k in range(6)]))
    raw = json.dumps(reg.describe(), separators=(",", ":")).encode()
    assert len(raw) > 4096
    with Journal(tmp_path / "j", registry=reg, durability="none") as j:
        j.append(b"\0" * 48, 7)
    seg = (tmp_path / "j").glob("*.seg")
    header = next(iter(sorted(seg))).read_bytes()[:4096]
    assert raw not in header and header[48:49] == b"x"  # zlib, not JSON
    assert JournalReader(tmp_path / "j").schema == reg.describe()
    # a schema too large even compressed is a clear error, not a corrupt header
    huge = EventRegistry()
    for i in range(1, 400):
        huge.register(i, name=os.urandom(16).hex(), dtype=np.dtype([("x", "<i8")]))
    with pytest.raises(JournalError, match="does not fit"):
        Journal(tmp_path / "k", registry=huge, durability="none")
