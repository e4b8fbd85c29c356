"""The journal's CRC32C and output-record build: known vectors, both implementations (the
SSE4.2 instruction and the portable table) against a bit-by-bit reference, every length
0..300 at every alignment, and an output body byte for byte as docs/journal-format.md
describes it."""

import struct
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringlog._journal import _HAS_HW_CRC, _crc32c_copy, _output_body, crc32c, crc32c_mode


def _reference_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)
    return table


_TABLE = _reference_table()


def _reference(data: bytes, crc: int = 0) -> int:
    """CRC32C by the definition (reflected 0x82F63B78, pre- and post-inverted)."""
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _modes() -> list[int]:
    """The implementations this CPU can run: the table always, the instruction if present."""
    return [0, 1] if _HAS_HW_CRC else [0]


@contextmanager
def _mode(m: int) -> Iterator[None]:
    old = crc32c_mode()
    crc32c_mode(m)
    try:
        yield
    finally:
        crc32c_mode(old)


def test_switching_the_implementation_takes_effect():
    """crc32c_mode(0) once assigned a local of the function: the table was never tested."""
    assert crc32c_mode() == (1 if _HAS_HW_CRC else 0)  # the instruction where there is one
    for m in _modes():
        with _mode(m):
            assert crc32c_mode() == m
        assert crc32c_mode() == _modes()[-1]


# RFC 3720 (iSCSI), appendix B.4, and the usual check value
VECTORS = [
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (b"", 0),
]


@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize(("data", "expect"), VECTORS)
def test_known_crc32c_vectors(mode, data, expect):
    if mode not in _modes():
        pytest.skip("this CPU has no SSE4.2 crc32 instruction")
    assert _reference(data) == expect
    with _mode(mode):
        assert crc32c(data) == expect
        assert _crc32c_copy(data) == (expect, data)


@pytest.mark.parametrize("mode", [0, 1])
def test_every_length_to_300_at_every_alignment(mode):
    if mode not in _modes():
        pytest.skip("this CPU has no SSE4.2 crc32 instruction")
    blob = bytes((i * 131 + 7) & 0xFF for i in range(320))
    with _mode(mode):
        for n in range(301):
            for start in range(8):
                data = blob[start:start + n]
                want = _reference(data)
                src = memoryview(blob)[start:start + n]  # unaligned source, no copy
                assert crc32c(src) == want, (n, start)
                assert _crc32c_copy(src, 0, (start * 3) % 8) == (want, data), (n, start)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), start=st.integers(0, 7), dst=st.integers(0, 7),
       split=st.integers(0, 300), seed=st.integers(0, 2**32 - 1))
def test_both_implementations_agree_with_the_reference(data, start, dst, split, seed):
    buf = bytes(start) + data
    src = memoryview(buf)[start:]
    split = min(split, len(data))
    want = _reference(data)
    for m in _modes():
        with _mode(m):
            assert crc32c(src) == want
            assert crc32c(src[split:], crc32c(src[:split])) == want  # continued
            first, _ = _crc32c_copy(src[:split], 0, dst)
            assert _crc32c_copy(src[split:], first, dst) == (want, data[split:])
            assert _crc32c_copy(src, seed, dst) == (_reference(data, seed), data)


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=300), start=st.integers(0, 7),
       type_id=st.integers(0, 2**32 - 1), flags=st.integers(0, 2**32 - 1),
       seq=st.integers(-(2**63), 2**63 - 1), ts=st.integers(-(2**63), 2**63 - 1),
       corr=st.integers(-(2**63), 2**63 - 1), cause=st.integers(-(2**63), 2**63 - 1))
def test_an_output_body_is_the_header_then_the_payload_with_their_crc(
        payload, start, type_id, flags, seq, ts, corr, cause):
    # docs/journal-format.md: sequence, timestamp_ns, correlation_id, producer_seq (the
    # cause), type_id, flags, length, producer_id 0, then the payload
    want = struct.pack("<qqqqIIII", seq, ts, corr, cause, type_id, flags, len(payload), 0) \
        + payload
    src = memoryview(bytes(start) + payload)[start:]
    for m in _modes():
        with _mode(m):
            assert _output_body(type_id, flags, src, seq, ts, corr, cause) \
                == (_reference(want), want)
