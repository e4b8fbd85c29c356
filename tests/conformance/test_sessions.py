"""Logon and the session sequence model over the wire (docs/protocol.md, "The session
sequence model")."""

from __future__ import annotations

from .wire import (
    ACK,
    BUY,
    ERROR,
    HEARTBEAT,
    LOGON_ACK,
    LOGON_REJECT,
    NOT_LOGGED_ON,
    ORDER_INFO,
    ORDER_STATUS,
    REPORT,
    SEQUENCE_GAP,
    Peer,
    frame,
    logon,
    new_order,
    reports,
)


def test_logon_ack_says_taken_account_answered_and_report_position(server):
    tok, _, account = server.pair()
    p = Peer(server.address)
    p.send(logon(0, tok))
    ack = p.next()
    assert ack[:4] == [LOGON_ACK, 0, account, 0] and ack[4] >= 0
    p.close()


def test_unknown_token_is_rejected_and_closed(server):
    p = Peer(server.address)
    p.send(logon(0, "no-such-token"))
    assert p.next()[0] == LOGON_REJECT
    assert p.closed()


def test_anything_before_logon_is_not_logged_on_and_applies_nothing(server):
    tok = server.token()
    p = Peer(server.address)
    p.send(new_order(1, 1, server.symbol(), BUY, 1, 100))
    (err,) = p.read(1)
    assert err[:2] == [ERROR, NOT_LOGGED_ON]
    p.send(logon(0, tok))
    assert p.next()[1] == 0  # seq 1 was never taken


def test_orders_in_order_a_gap_names_the_expected_seq_and_a_resend_repeats(server):
    tok, sym = server.token(), server.symbol()
    p = Peer(server.address)
    p.send(logon(0, tok))
    p.next()
    p.send(new_order(1, 7, sym, BUY, 5, 100))
    first = p.until_ack(1)
    assert [m[2] for m in reports(first, 1)] == ["accepted", "rested"]
    p.send(frame(HEARTBEAT, 5))
    gap = p.next()
    assert gap[:2] == [ERROR, SEQUENCE_GAP] and "next expected seq is 2" in gap[2]
    assert gap[3] == 5
    p.send(new_order(1, 7, sym, BUY, 5, 100))  # a resend: the same answers, the seq's Ack
    assert p.until_ack(1) == first
    p.send(frame(ORDER_STATUS, 2, 7))
    got = p.until_ack(2)
    assert [m[6] for m in got if m[0] == ORDER_INFO] == [5]  # applied once


def test_a_second_connection_continues_after_every_seq_the_first_left_in_flight(server):
    """The issue's race: 300 orders in one write, close without reading, log on again at
    once. Whatever the server has answered by then, session_seq + 1 is a new seq: the next
    order is applied and answered with its own reports."""
    tok, sym = server.token(), server.symbol()
    for round_ in range(3):
        a = Peer(server.address)
        a.send(logon(0, tok))
        base = a.next()[1]
        a.send(b"".join(new_order(base + k, 10_000 * round_ + k, sym, BUY, 1, 50)
                        for k in range(1, 301)))
        a.close()
        while True:  # the first connection may still be logged on for a moment
            b = Peer(server.address)
            b.send(logon(0, tok))
            ack = b.next()
            if ack[0] == LOGON_ACK:
                break
            b.close()
        nxt = ack[1] + 1
        oid = 90_000 + round_
        b.send(new_order(nxt, oid, sym, BUY, 1, 40))
        got = b.until_ack(nxt, timeout=30)
        assert [(m[2], m[3]) for m in reports(got, nxt)] == [("accepted", oid), ("rested", oid)]
        b.send(frame(ORDER_STATUS, nxt + 1, oid))
        got = b.until_ack(nxt + 1)
        assert [m[7] for m in got if m[0] == ORDER_INFO] == ["open"]
        b.close()


def test_a_logon_seq_ahead_of_the_server_is_a_gap_error_and_the_session_goes_on(server):
    for claimed in (100, (1 << 40) - 1):
        tok, sym = server.token(), server.symbol()
        p = Peer(server.address)
        p.send(logon(claimed, tok))
        ack, err = p.read(2)
        assert ack[:2] == [LOGON_ACK, 0]
        assert err[:2] == [ERROR, SEQUENCE_GAP] and "next expected seq is 1" in err[2]
        p.send(new_order(1, 1, sym, BUY, 1, 100))
        got = p.until_ack(1)
        assert [m[2] for m in reports(got, 1)] == ["accepted", "rested"]
        assert got[-1] == [ACK, 1]
        p.close()


def test_json_logon_is_answered_in_json(server):
    tok = server.token()
    p = Peer(server.address)
    p.send(frame(1, 0, tok, codec="json"))
    p.sock.settimeout(10)
    while len(p.buf) < 5:
        p.buf += p.sock.recv(100)
    assert p.buf[4:5] == b"["
    assert p.next()[0] == LOGON_ACK


def test_resend_after_reconnect_answers_again_without_applying(server):
    tok, sym = server.token(), server.symbol()
    p = Peer(server.address)
    p.send(logon(0, tok))
    p.next()
    p.send(new_order(1, 3, sym, BUY, 2, 100))
    first = p.until_ack(1)
    p.close()
    q = Peer(server.address)
    while True:
        q.send(logon(0, tok))
        if q.next()[0] == LOGON_ACK:
            break
        q.close()
        q = Peer(server.address)
    q.send(new_order(1, 3, sym, BUY, 2, 100))
    assert q.until_ack(1) == first
    q.send(frame(ORDER_STATUS, 2, 3))
    got = q.until_ack(2)
    assert [m[6] for m in got if m[0] == ORDER_INFO] == [2]
    assert not [m for m in got if m[0] == REPORT]
