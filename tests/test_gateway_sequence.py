"""The session sequence model (docs/protocol.md, "Sequence numbers"): what LogonAck says when
the server has taken more seqs than it has answered, and what a logon seq that is ahead of the
server does. The race of a second connection logging on while the first one's commands are in
flight is made deterministic with the gateway's ``hold_outputs`` hook: outputs wait unrouted,
so taken > answered at the logon, every time."""

from __future__ import annotations

import time

from ringlog.client import AsyncClient
from ringlog.engine.records import Side
from ringlog.gateway.protocol import (
    Ack,
    Error,
    ErrorCode,
    Heartbeat,
    Logon,
    LogonAck,
    NewOrder,
    OrderInfo,
    OrderStatus,
    Report,
    encode_frame,
)

from gateway_helpers import ALICE, Raw, logon, run, running

N = 40  # orders the first connection leaves in flight


def wait_for(g, fn, timeout=10.0):
    """Polls ``fn()`` on the gateway's loop until it is true (bounded)."""
    deadline = time.monotonic() + timeout
    while not g.call(fn):
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def leave_orders_in_flight(g, addr):
    """A raw connection sends N orders in one write and closes without reading; returns
    once the server has taken them all (outputs held) and the connection is gone."""
    gw = g.gateway
    g.call(gw.hold_outputs)
    r = Raw(addr)
    logon(r, ALICE)
    r.send_bytes(b"".join(encode_frame(NewOrder(i, i, 1, Side.BUY, 1, 100)) for i in
                          range(1, N + 1)))
    s = g.call(lambda: gw.table.by_id[1])
    wait_for(g, lambda: s.last_seen == N)
    r.close()
    wait_for(g, lambda: s.conn is None)
    assert g.call(lambda: s.acked) < N  # the race the issue saw, now certain


def test_logon_while_answers_are_held_reports_every_taken_seq_raw(tmp_path):
    with running(tmp_path) as g:
        leave_orders_in_flight(g, g.gateway.address)
        r = Raw(g.gateway.address)
        ack = logon(r, ALICE)
        assert isinstance(ack, LogonAck)
        assert ack.session_seq == N  # taken, not answered
        nxt = ack.session_seq + 1  # a client without history continues here
        r.send(NewOrder(nxt, 999, 1, Side.BUY, 1, 90))
        g.call(g.gateway.release_outputs)
        got = r.read_until(lambda m: isinstance(m, Ack) and m.seq >= nxt)
        mine = [m for m in got if isinstance(m, Report) and m.seq == nxt]
        assert [(m.kind, m.order_id) for m in mine] == [("accepted", 999), ("rested", 999)]
        r.send(OrderStatus(nxt + 1, 999))
        got = r.read_until(lambda m: isinstance(m, Ack) and m.seq >= nxt + 1)
        assert OrderInfo(nxt + 1, 999, 1, Side.BUY, 90, 1, "open") in got


def test_logon_while_answers_are_held_reports_every_taken_seq_client(tmp_path):
    async def main(g, addr):
        leave_orders_in_flight(g, addr)
        b = await AsyncClient.connect(*addr, ALICE)  # a new process: no history
        assert b.server_seq == N
        seq = b.new_order(999, 1, Side.BUY, 1, 90)
        assert seq == N + 1
        g.call(g.gateway.release_outputs)
        got = await b.answers(seq)
        assert [(m.kind, m.order_id) for m in got] == [("accepted", 999), ("rested", 999)]
        (info,) = await b.request(OrderStatus, 999)
        assert info.status == "open" and info.price == 90
        await b.close_and_wait()

    with running(tmp_path) as g:
        run(main(g, g.gateway.address))


def test_a_client_with_history_gets_every_answer_of_its_in_flight_seqs(tmp_path):
    async def main(g, addr):
        gw = g.gateway
        a = await AsyncClient.connect(*addr, ALICE)
        g.call(gw.hold_outputs)
        seqs = [a.new_order(i, 1, Side.BUY, 1, 100) for i in range(1, 11)]
        s = g.call(lambda: gw.table.by_id[1])
        wait_for(g, lambda: s.last_seen == 10)
        await a.close_and_wait()
        wait_for(g, lambda: s.conn is None)
        g.call(gw.release_outputs)  # routed while no connection: kept for the resend
        wait_for(g, lambda: s.acked == 10 or not s.inflight)
        ack = await a.reconnect()
        assert ack.session_seq == 10
        for seq in seqs:
            got = await a.answers(seq)
            assert [(m.kind, m.order_id) for m in got] == [("accepted", seq), ("rested", seq)]
        await a.close_and_wait()

    with running(tmp_path) as g:
        run(main(g, g.gateway.address))


def test_a_logon_seq_ahead_of_the_server_is_an_error_and_changes_nothing(tmp_path):
    for n, claimed in enumerate((100, (1 << 40) - 1)):
        with running(tmp_path / str(n)) as g:
            r = Raw(g.gateway.address)
            r.send(Logon(claimed, ALICE))
            ack, err = r.read(2)
            assert (ack.session_seq, ack.account) == (0, 7)
            assert isinstance(err, Error) and err.code == ErrorCode.SEQUENCE_GAP
            assert "next expected seq is 1" in err.message
            r.send(NewOrder(1, 5, 1, Side.BUY, 1, 100))  # applied, not taken for a resend
            got = r.read_until(lambda m: m == Ack(1))
            assert [m.kind for m in got if isinstance(m, Report)] == ["accepted", "rested"]
            r.send(Heartbeat(3))  # a jump: the error names the expected seq, no ack
            (gap,) = r.read(1)
            assert gap.code == ErrorCode.SEQUENCE_GAP and "next expected seq is 2" in gap.message
            r.send(OrderStatus(2, 5))
            got = r.read_until(lambda m: m == Ack(2))
            assert got[0].status == "open"


def test_an_ack_never_overtakes_the_answers_a_resend_will_repeat(tmp_path):
    """A seq in flight at a logon, its answers routed before it (to no connection), completes
    before the client's resends arrive: the Ack on the new connection waits for the resends,
    so each resent seq's answers come before an Ack covers it (found by the soak: the client
    took a cumulative Ack for answers not yet repeated and lost them)."""
    with running(tmp_path) as g:
        gw = g.gateway
        s = g.call(lambda: gw.table.by_id[1])
        g.call(gw.hold_completion)
        r = Raw(gw.address)
        logon(r, ALICE)
        r.send(*[NewOrder(i, i, 1, Side.BUY, 1, 100) for i in range(1, 6)])
        wait_for(g, lambda: len(s.answers.get(5, ())) == 2)  # routed, seq 5 not completed
        r.close()
        wait_for(g, lambda: s.conn is None)
        r2 = Raw(gw.address)
        ack = logon(r2, ALICE)  # a client that saw nothing acked
        assert (ack.session_seq, ack.acked) == (5, 4)
        g.call(gw.release_completion)  # seq 5 completes before any resend arrives
        wait_for(g, lambda: not s.inflight)
        r2.send(*[NewOrder(i, i, 1, Side.BUY, 1, 100) for i in range(1, 6)])
        got = r2.read_until(lambda m: m == Ack(5))
        for seq in range(1, 6):  # no Ack covers a seq before its answers
            first_ack = next(i for i, m in enumerate(got) if isinstance(m, Ack) and m.seq >= seq)
            mine = [m.order_id for m in got[:first_ack] if isinstance(m, Report) and m.seq == seq]
            assert mine == [seq, seq], (seq, got)
