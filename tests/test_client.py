"""The client library against a real gateway on loopback (stand-in engine)."""

from __future__ import annotations

import asyncio

import pytest

from ringlog.client import AsyncClient, Client, GatewayError, LogonRejected
from ringlog.engine.records import Side
from ringlog.gateway.protocol import Halted, NewOrder, OpenOrders, OpenOrdersEnd

from gateway_helpers import TOKENS, running

ALICE, BOB = TOKENS[1][0], TOKENS[2][0]


def test_sync_client_logs_on_sends_and_awaits_reports(tmp_path):
    with running(tmp_path) as g, Client(*g.gateway.address, ALICE) as c:
        assert c.account == 7
        seq = c.new_order(1, 1, Side.BUY, 5, 100)
        assert [m.kind for m in c.answers(seq)] == ["accepted", "rested"]
        got = c.request(OpenOrders)
        assert got[-1] == OpenOrdersEnd(2, 1)
        assert c.acked == 2 and not c.unacked


def test_sync_client_with_a_bad_token_raises_logon_rejected(tmp_path):
    with running(tmp_path) as g, pytest.raises(LogonRejected, match="unknown token"):
        Client(*g.gateway.address, "not-a-token-at-all")


def test_json_client_gets_the_same_answers(tmp_path):
    with running(tmp_path) as g, Client(*g.gateway.address, ALICE, codec="json") as c:
        assert [m.kind for m in c.request(NewOrder, 1, 1, Side.BUY, 5, 100)] == \
            ["accepted", "rested"]


def test_messages_sent_while_disconnected_are_sent_after_the_reconnect(tmp_path):
    async def main(addr):
        a = await AsyncClient.connect(*addr, ALICE)
        await a.close_and_wait()
        seqs = [a.new_order(i, 1, Side.BUY, 1, 100) for i in (1, 2, 3)]
        assert list(a.unacked) == seqs and not a.connected
        ack = await a.logon()
        assert ack.session_seq == 0
        for s in seqs:
            assert [m.kind for m in await a.answers(s)] == ["accepted", "rested"]
        await a.close_and_wait()

    with running(tmp_path) as g:
        asyncio.run(asyncio.wait_for(main(g.gateway.address), 30))


def test_answers_time_out_with_a_clear_error_when_nothing_is_acked(tmp_path):
    async def main(addr):
        a = await AsyncClient.connect(*addr, ALICE)
        await a.close_and_wait()
        seq = a.new_order(1, 1, Side.BUY, 1, 100)
        with pytest.raises(GatewayError, match=f"seq {seq} not acknowledged"):
            await a.answers(seq, timeout=0.05)

    with running(tmp_path) as g:
        asyncio.run(asyncio.wait_for(main(g.gateway.address), 30))


def test_gateway_on_the_default_asyncio_loop_serves_the_same(tmp_path):
    with running(tmp_path, loop="asyncio") as g, Client(*g.gateway.address, BOB) as c:
        assert [m.kind for m in c.request(NewOrder, 1, 1, Side.SELL, 5, 100)] == \
            ["accepted", "rested"]
        assert not isinstance(c.request(OpenOrders)[0], Halted)


def test_close_and_wait_aborts_a_connection_whose_server_stopped_reading():
    """A closing transport reads no more but flushes its writes first: against a server
    that has stopped reading (it waits for us to read its answers) that flush never ends.
    close_and_wait must give up and abort instead of hanging the caller for ever."""
    import socket
    import threading

    from ringlog.gateway.protocol import FrameEncoder, LogonAck

    srv = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve():
        conn, _ = srv.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.recv(4096)  # the Logon frame
        ack = bytearray()
        FrameEncoder().append(ack, LogonAck(0, 7))
        conn.sendall(ack)
        done.wait(30)  # then never reads again
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()

    async def go():
        c = AsyncClient("127.0.0.1", srv.getsockname()[1], "token")
        await c.logon(timeout=5)
        c.send_raw(b"\0" * (32 << 20))  # far more than the socket buffers hold
        await asyncio.wait_for(c.close_and_wait(timeout=0.2), 20)
        assert not c.connected

    try:
        asyncio.run(go())
    finally:
        done.set()
        t.join(5)
        srv.close()
