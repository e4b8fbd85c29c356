import struct

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringlog.gateway.protocol import (
    Cancel,
    ErrorCode,
    FrameDecoder,
    Heartbeat,
    Logon,
    NewOrder,
    ProtocolError,
    Report,
    ServerMessage,
    encode_frame,
)


def frame_of(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_frames_round_trip_in_msgpack_and_json():
    msgs = [Logon(1, "tok"), NewOrder(2, 10, 1, 0, 5, price=100), Cancel(3, 10)]
    dec = FrameDecoder()
    stream = b"".join(encode_frame(m) for m in msgs)
    assert dec.feed(stream) == msgs and dec.codec == "msgpack"
    jdec = FrameDecoder()
    assert jdec.feed(b"".join(encode_frame(m, "json") for m in msgs)) == msgs
    assert jdec.codec == "json"


def test_message_is_an_array_with_its_tag_first():
    assert msgspec.msgpack.decode(encode_frame(Cancel(3, 10))[4:]) == [5, 3, 10]


def test_frames_split_at_every_byte_boundary_decode_the_same():
    frame = encode_frame(NewOrder(7, 1, 2, 1, 3, price=4))
    for cut in range(len(frame) + 1):
        dec = FrameDecoder()
        got = dec.feed(frame[:cut]) + dec.feed(frame[cut:])
        assert got == [NewOrder(7, 1, 2, 1, 3, price=4)]


def test_unknown_tag_is_a_bad_message_and_the_next_frame_still_decodes():
    body = msgspec.msgpack.encode([99, 1])
    dec = FrameDecoder()
    out = dec.feed(struct.pack(">I", len(body)) + body + encode_frame(Cancel(2, 1)))
    assert isinstance(out[0], ProtocolError) and out[0].code == ErrorCode.BAD_MESSAGE
    assert "99" in out[0].message and not out[0].fatal
    assert out[1] == Cancel(2, 1)


def test_wrong_field_type_names_the_field():
    body = msgspec.msgpack.encode([5, 1, "x"])
    (err,) = FrameDecoder().feed(struct.pack(">I", len(body)) + body)
    assert err.code == ErrorCode.BAD_MESSAGE and "$[2]" in err.message


def test_garbage_body_is_a_bad_frame():
    (err,) = FrameDecoder().feed(struct.pack(">I", 2) + b"\xc1\xc1")
    assert err.code == ErrorCode.BAD_FRAME and "msgpack" in err.message


def test_oversize_or_zero_length_is_fatal():
    for n in (0, 70_000):
        (err,) = FrameDecoder(max_frame=65536).feed(struct.pack(">I", n) + b"x" * 8)
        assert err.fatal and err.code == ErrorCode.BAD_FRAME and str(n) in err.message


def test_server_messages_decode_as_server_union():
    dec = FrameDecoder(ServerMessage)
    r = Report(4, "trade", 9, price=100, qty=2, maker_id=1, taker_id=9)
    assert dec.feed(encode_frame(r)) == [r]


@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data):
    dec = FrameDecoder(max_frame=1024)
    for item in dec.feed(data):
        assert isinstance(item, (ProtocolError, msgspec.Struct))


def test_invalid_message_with_bad_utf8_after_the_error_still_decodes_to_an_error():
    # typed decoding stops at the wrong type (field 2); the bad string after it must not
    # break the message that names the field
    body = msgspec.msgpack.encode([5, 1, "x", "y"]).replace(b"\xa1y", b"\xa2\xc5\x41")
    (err,) = FrameDecoder().feed(struct.pack(">I", len(body)) + body)
    assert err.code == ErrorCode.BAD_MESSAGE and "Cancel.order_id" in err.message


@given(st.lists(st.one_of(st.integers(-2**63, 2**64 - 1), st.binary(max_size=4),
                          st.text(max_size=4), st.none()), max_size=8),
       st.integers(1, 10))
def test_arrays_with_a_valid_tag_and_random_fields_never_raise(fields, tag):
    body = msgspec.msgpack.encode([tag, *fields])
    (item,) = FrameDecoder().feed(struct.pack(">I", len(body)) + body)
    assert isinstance(item, (ProtocolError, msgspec.Struct))


DEPTHS = [10, 100, 999, 1000, 5000, 100_000]


def nested(depth: int, codec: str, inside_heartbeat: bool = False) -> bytes:
    """A body nested ``depth`` deep: msgpack fixarray-of-one (0x91) or JSON ``[[[...]]]``;
    with ``inside_heartbeat`` the nesting is an extra element after a valid Heartbeat."""
    if codec == "msgpack":
        inner = b"\x91" * depth + b"\x01"
        return b"\x93\x03\x01" + inner if inside_heartbeat else inner
    inner = b"[" * depth + b"1" + b"]" * depth
    return b"[3,1," + inner + b"]" if inside_heartbeat else inner


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("codec", ["msgpack", "json"])
@pytest.mark.parametrize("inside", [False, True])
def test_deep_nesting_is_an_error_value_and_the_next_frame_decodes(depth, codec, inside):
    dec = FrameDecoder(max_frame=1 << 20)
    data = frame_of(nested(depth, codec, inside)) + encode_frame(Heartbeat(2))
    bad, good = dec.feed(data)
    assert isinstance(bad, ProtocolError) and bad.code == ErrorCode.BAD_MESSAGE
    assert not bad.fatal
    assert good == Heartbeat(2)
