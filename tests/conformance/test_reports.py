"""The execution-report stream, drop copies and cancel-on-disconnect over the wire
(docs/protocol.md, "Execution reports", "Cancel on disconnect")."""

from __future__ import annotations

import time

from .wire import (
    ACK,
    BUY,
    HEARTBEAT,
    LOGON_ACK,
    OPEN_ORDERS,
    OPEN_ORDERS_END,
    REPORT,
    SELL,
    Peer,
    frame,
    logon,
    new_order,
    reports,
)


def connect(server, token, seq=0, **kw):
    """Logs on, retrying while the session's previous connection is still being closed."""
    deadline = time.monotonic() + 10
    while True:
        p = Peer(server.address)
        p.send(logon(seq, token, **kw))
        ack = p.next()
        if ack[0] == LOGON_ACK:
            return p, ack
        p.close()
        assert time.monotonic() < deadline
        time.sleep(0.02)


def quiet_messages(p, seq):
    """Everything up to the Ack of a heartbeat with ``seq`` (sent now), heartbeat Ack excluded."""
    p.send(frame(HEARTBEAT, seq))
    return p.until(lambda m: m == [ACK, seq])[:-1]


def rest(p, sym, n, first_seq=1):
    for k in range(n):
        p.send(new_order(first_seq + k, k + 1, sym, BUY, 2, 100 - k))
    p.until_ack(first_seq + n - 1)


def hit(server, sym, n):
    q, _ = connect(server, server.token())
    for k in range(1, n + 1):
        q.send(new_order(k, 500 + k, sym, SELL, 2, 1))
        got = q.until_ack(k)
        assert [m[2] for m in reports(got, k)][:2] == ["accepted", "trade"]
    q.close()


def test_fills_while_away_are_replayed_once_in_order_after_reports_after(server):
    tok, sym = server.token(), server.symbol()
    p, ack = connect(server, tok)
    rest(p, sym, 4)
    position = ack[4]
    p.close()
    hit(server, sym, 3)
    p, _ = connect(server, tok, 4, reports_after=position)
    got = [m for m in quiet_messages(p, 5) if m[0] == REPORT]
    assert [(m[1], m[2], m[3], m[7]) for m in got] == [(0, "trade", k, 0) for k in (1, 2, 3)]
    rseqs = [m[11] for m in got]
    assert rseqs == sorted(rseqs) and len(set(rseqs)) == 3 and rseqs[0] > position
    p.close()
    p, _ = connect(server, tok, 5, reports_after=rseqs[-1])  # nothing after the last seen
    assert quiet_messages(p, 6) == []


def test_drop_copy_sibling_gets_every_report_of_the_account(server):
    tok, sibling, _ = server.pair()
    sym = server.symbol()
    a, _ = connect(server, tok)
    b, _ = connect(server, sibling, drop_copy=True)
    a.send(new_order(1, 1, sym, BUY, 3, 100))
    answers = reports(a.until_ack(1), 1)
    got = [m for m in quiet_messages(b, 1) if m[0] == REPORT]
    assert [(m[1], m[2], m[3]) for m in got] == [(0, "accepted", 1), (0, "rested", 1)]
    assert [m[11] for m in got] == [m[11] for m in answers]


def test_cancel_on_disconnect_cancels_the_accounts_orders_after_the_grace(server):
    tok, sibling, _ = server.pair()
    sym = server.symbol()
    a, _ = connect(server, tok, cancel_on_disconnect_ms=100)
    rest(a, sym, 3)
    b, _ = connect(server, sibling)
    a.close()
    cancelled = b.until(lambda m: m[0] == REPORT and m[2] == "cancelled" and m[3] == 3)
    assert sorted(m[3] for m in cancelled if m[0] == REPORT) == [1, 2, 3]
    b.send(frame(OPEN_ORDERS, 1))
    got = b.until_ack(1)
    assert [m[2] for m in got if m[0] == OPEN_ORDERS_END] == [0]


def test_reports_and_resends_survive_a_server_restart(server):
    tok, sym = server.token(), server.symbol()
    p, ack = connect(server, tok)
    rest(p, sym, 2)
    position = ack[4]
    p.send(new_order(3, 3, sym, BUY, 2, 50))
    first = p.until_ack(3)
    p.close()
    hit(server, sym, 2)
    server.restart()
    p, ack = connect(server, tok, 3, reports_after=position)
    assert ack[1] == 3
    fills = [m for m in p.read(2) if m[0] == REPORT]
    assert [(m[2], m[3]) for m in fills] == [("trade", 1), ("trade", 2)]
    p.send(new_order(3, 3, sym, BUY, 2, 50))  # a resend after the restart: the same answers
    assert p.until_ack(3) == first
