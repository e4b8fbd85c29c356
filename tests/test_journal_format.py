"""Corruption is always found and named: bit flips, torn tails, truncated, missing and
foreign files."""

import os
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringlog import JournalCorruptError, JournalError
from ringlog._journal import HEADER_SIZE, crc32c
from ringlog.journal import Journal, JournalReader, list_segments

SMALL = 1 << 14


def _make(path, n=500, size=40):
    with Journal(path, segment_size=SMALL, durability="none") as j:
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
    segs = _make(tmp_path)
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
    segs = _make(tmp_path)
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
