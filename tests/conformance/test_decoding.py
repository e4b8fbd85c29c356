"""Bad input over the wire: every bad frame gets an error frame naming the problem, the
session goes on, and a valid frame before it in the same write is answered (docs/protocol.md,
"Limits and errors")."""

from __future__ import annotations

import pytest

from .wire import (
    ACK,
    BAD_FRAME,
    BAD_MESSAGE,
    ERROR,
    HEARTBEAT,
    NOT_LOGGED_ON,
    Peer,
    body_frame,
    frame,
    logon,
)

DEPTHS = [10, 100, 1000, 10_000, 100_000]


def nested(depth: int, codec: str) -> bytes:
    if codec == "msgpack":
        return b"\x91" * depth + b"\x01"
    return b"[" * depth + b"1" + b"]" * depth


def nested_in_heartbeat(depth: int, codec: str) -> bytes:
    if codec == "msgpack":
        return b"\x93\x03\x07" + nested(depth, codec)
    return b"[3,7," + nested(depth, codec) + b"]"


def logged_on(server):
    p = Peer(server.address)
    p.send(logon(0, server.token()))
    p.next()
    return p


@pytest.mark.parametrize("codec", ["msgpack", "json"])
def test_deep_nesting_after_a_valid_frame_in_one_write_is_an_error_and_the_session_goes_on(
        server, codec):
    p = logged_on(server)
    seq = 0
    for depth in DEPTHS:
        for body in (nested(depth, codec), nested_in_heartbeat(depth, codec)):
            seq += 1
            p.send(frame(HEARTBEAT, seq, codec=codec) + body_frame(body))
            got = p.read(2)  # a heartbeat is answered by the Ack that ends the batch
            assert [ACK, seq] in got
            (err,) = [m for m in got if m[0] == ERROR]
            assert err[:2] == [ERROR, BAD_MESSAGE]
    seq += 1
    p.send(frame(HEARTBEAT, seq))
    assert p.next() == [ACK, seq]


def test_deep_nesting_before_logon_is_an_error_and_logon_still_works(server):
    p = Peer(server.address)
    for depth in (1000, 100_000):
        p.send(body_frame(nested(depth, "msgpack")) + body_frame(nested(depth, "json")))
        a, b = p.read(2)
        assert a[:2] == b[:2] == [ERROR, BAD_MESSAGE]
    p.send(logon(0, server.token()))
    assert p.next()[0] == 64


def test_malformed_frames_get_their_errors_in_order(server):
    p = logged_on(server)
    p.send(frame(HEARTBEAT, 1) + body_frame(b"\xc1\xc1") + frame(99, 1) +
           frame(HEARTBEAT, "x") + body_frame(b"[not json") + frame(HEARTBEAT, 2))
    got = p.until_ack(2)
    errors = [m for m in got if m[0] == ERROR]
    assert [m[:2] for m in errors] == [[ERROR, BAD_FRAME], [ERROR, BAD_MESSAGE],
                                       [ERROR, BAD_MESSAGE], [ERROR, BAD_FRAME]]
    assert "Heartbeat.seq" in errors[2][2]  # names the message and the field
    assert [m for m in got if m[0] == ACK][-1] == [ACK, 2]


def test_an_extra_element_is_a_bad_message(server):
    p = logged_on(server)
    p.send(frame(HEARTBEAT, 1, 0))
    (err,) = p.read(1)
    assert err[:2] == [ERROR, BAD_MESSAGE]
    p.send(frame(HEARTBEAT, 1))
    assert p.next() == [ACK, 1]


def test_an_oversize_length_is_fatal_for_that_connection_only(server):
    p = logged_on(server)
    q = logged_on(server)
    p.send(b"\xff\xff\xff\xff")
    (err,) = p.read(1)
    assert err[:2] == [ERROR, BAD_FRAME]
    assert p.closed()
    q.send(frame(HEARTBEAT, 1))
    assert q.next() == [ACK, 1]


def test_not_logged_on_for_every_message_type_before_logon(server):
    p = Peer(server.address)
    for msg in (frame(2, 1), frame(HEARTBEAT, 1), frame(4, 1, 1, 1, 1, 1, 100), frame(5, 1, 1),
                frame(6, 1, 1, 100, 1), frame(7, 1), frame(8, 1, 1), frame(9, 1),
                frame(10, 1, 1)):
        p.send(msg)
        assert p.next()[:2] == [ERROR, NOT_LOGGED_ON]
