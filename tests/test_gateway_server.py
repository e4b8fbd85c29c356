"""The gateway over real TCP on loopback, in front of a processor running the real matching
engine (the stand-in only where a test must hold the engine still)."""

from __future__ import annotations

import struct
import threading
import time

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringlog import Breaker, BreakerConfig, Limit
from ringlog.client import AsyncClient
from ringlog.engine.records import Side, Tif
from ringlog.gateway.protocol import (
    Ack,
    Cancel,
    Error,
    ErrorCode,
    Halted,
    Heartbeat,
    Logon,
    LogonAck,
    LogonReject,
    MarketData,
    MassCancel,
    Modify,
    NewOrder,
    OpenOrders,
    OpenOrdersEnd,
    OrderInfo,
    OrderStatus,
    Report,
    Subscribe,
    encode_frame,
)
from ringlog.gateway.session import Limits

from gateway_helpers import (
    ALICE,
    ALICE2,
    BOB,
    CAROL,
    Raw,
    config,
    frame_of,
    logon,
    pos,
    run,
    running,
    with_clients,
)
from standin_engine import StandInEngine


# -- logon ---------------------------------------------------------------------------------
def test_logon_with_a_known_token_is_acked_with_its_account_and_seq(tmp_path):
    with running(tmp_path) as g:
        r = Raw(g.gateway.address)
        assert pos(logon(r, ALICE)) == (0, 7)
        r.send(Heartbeat(1))
        assert r.read(1) == [Ack(1)]


def test_logon_with_an_unknown_token_is_rejected_and_closed(tmp_path):
    with running(tmp_path) as g:
        r = Raw(g.gateway.address)
        ack = logon(r, "token-alice-but-wrong")
        assert isinstance(ack, LogonReject) and "unknown token" in ack.reason
        assert r.closed_by_peer()
        assert g.call(lambda: g.gateway.metrics.logon_failures) == 1


def test_second_logon_of_a_session_is_rejected_and_the_first_goes_on(tmp_path):
    with running(tmp_path) as g:
        a, b = Raw(g.gateway.address), Raw(g.gateway.address)
        assert isinstance(logon(a, ALICE), LogonAck)
        rej = logon(b, ALICE)
        assert isinstance(rej, LogonReject) and "already logged on" in rej.reason
        a.send(Heartbeat(1))
        assert a.read(1) == [Ack(1)]


def test_messages_before_logon_get_not_logged_on_and_apply_nothing(tmp_path):
    with running(tmp_path) as g:
        r = Raw(g.gateway.address)
        r.send(NewOrder(1, 1, 1, Side.BUY, 5, 100))
        (err,) = r.read(1)
        assert isinstance(err, Error) and err.code == ErrorCode.NOT_LOGGED_ON
        assert pos(logon(r, ALICE)) == (0, 7)  # seq 1 was never taken
        r.send(OpenOrders(1))
        assert r.read_until(lambda m: isinstance(m, OpenOrdersEnd))[-1].count == 0


def test_json_logon_is_answered_in_json(tmp_path):
    with running(tmp_path) as g:
        r = Raw(g.gateway.address)
        r.send(Logon(0, ALICE), codec="json")
        r.sock.settimeout(5)
        data = r.sock.recv(100)
        assert data[4:5] == b"["
        (ack,) = r.dec.feed(data)
        assert pos(ack) == (0, 7)


# -- orders, reports, isolation ----------------------------------------------------------
def test_orders_are_answered_in_order_and_a_trade_reaches_maker_and_taker(tmp_path):
    async def body(a, b):
        got = await a.request(NewOrder, 11, 1, Side.BUY, 10, 100)
        assert [m.kind for m in got] == ["accepted", "rested"]
        got = await b.request(NewOrder, 11, 1, Side.SELL, 4, 99)
        assert [m.kind for m in got] == ["accepted", "trade"]
        # the taker sees its own id and the price of the maker; never the maker's id
        assert got[1].order_id == 11 and got[1].price == 100 and got[1].maker_id == 0
        fill = await a.next_event(5)
        assert fill == Report(0, "trade", 11, "", 100, 4, 6, maker_id=11, taker_id=0, symbol=1,
                              rseq=fill.rseq)
        assert fill.rseq == got[-1].rseq + 1  # the trade's second report: the maker's

    with_clients(tmp_path, body, ALICE, BOB)


def test_an_account_cannot_see_or_touch_another_accounts_orders(tmp_path):
    async def body(a, b):
        await a.request(NewOrder, 5, 1, Side.BUY, 10, 100)
        (rej,) = await b.request(Cancel, 5)
        assert rej.kind == "rejected" and rej.reason == "unknown_order"
        (rej,) = await b.request(OrderStatus, 5)
        assert rej.kind == "rejected"
        assert await b.request(OpenOrders) == [OpenOrdersEnd(3, 0)]
        # bob may use the same order id: ids are per account
        got = await b.request(NewOrder, 5, 2, Side.SELL, 1, 500)
        assert [m.kind for m in got] == ["accepted", "rested"]
        info = await a.request(OpenOrders)
        assert info == [OrderInfo(2, 5, 1, Side.BUY, 100, 10, "open"), OpenOrdersEnd(2, 1)]

    with_clients(tmp_path, body, ALICE, BOB)


def test_two_sessions_of_one_account_share_its_orders(tmp_path):
    async def main(addr):
        a = await AsyncClient.connect(*addr, ALICE)
        a2 = await AsyncClient.connect(*addr, ALICE2)
        await a.request(NewOrder, 5, 1, Side.BUY, 10, 100)
        (c,) = await a2.request(Cancel, 5)
        assert c.kind == "cancelled" and c.reason == "user" and c.qty == 10
        await a.close_and_wait()
        await a2.close_and_wait()

    with running(tmp_path) as g:
        run(main(g.gateway.address))


def test_market_data_reaches_subscribers_only(tmp_path):
    async def body(a, b):
        await b.request(Subscribe, 1)
        await a.request(NewOrder, 1, 1, Side.BUY, 3, 100)
        md = await b.next_event(5)
        assert md == MarketData(1, 0, 100, 3, 0, 0)
        await a.request(NewOrder, 2, 2, Side.BUY, 3, 100)  # another symbol
        await b.request(Subscribe, 1, 0)  # unsubscribe
        await a.request(NewOrder, 3, 1, Side.BUY, 3, 101)
        await b.request(Heartbeat)
        assert b.events.empty() and a.events.empty()

    with_clients(tmp_path, body, ALICE, BOB)


# -- sequencing and idempotency ------------------------------------------------------------
def test_a_resent_seq_is_answered_again_and_applied_once(tmp_path):
    with running(tmp_path) as g:
        r = Raw(g.gateway.address)
        logon(r, ALICE)
        r.send(NewOrder(1, 9, 1, Side.BUY, 10, 100))
        first = r.read_until(lambda m: m == Ack(1))
        r.send(NewOrder(1, 9, 1, Side.BUY, 10, 100))
        again = r.read_until(lambda m: m == Ack(1))
        assert again == first
        r.send(OpenOrders(2))
        got = r.read_until(lambda m: isinstance(m, OpenOrdersEnd))
        assert got[-1].count == 1
        assert g.call(lambda: g.gateway.processor.metrics.duplicates) == 0  # never published


def test_a_seq_gap_is_an_error_and_takes_nothing(tmp_path):
    with running(tmp_path) as g:
        r = Raw(g.gateway.address)
        logon(r, ALICE)
        r.send(NewOrder(3, 9, 1, Side.BUY, 10, 100))
        (err,) = r.read(1)
        assert err.code == ErrorCode.SEQUENCE_GAP and "next expected seq is 1" in err.message
        r.send(Heartbeat(1))
        assert r.read(1) == [Ack(1)]


def test_resend_after_reconnect_returns_the_answers_without_reapplying(tmp_path):
    async def main(addr, g):
        a = await AsyncClient.connect(*addr, ALICE)
        seqs = [a.new_order(i, 1, Side.BUY, 1, 100 + i) for i in range(1, 21)]
        await a.answers(seqs[-1])
        # pretend the last ten acks were lost: the client resends them after a reconnect
        for s in seqs[10:]:
            a.unacked[s] = NewOrder(s, s, 1, Side.BUY, 1, 100 + s)
        a.acked = 10
        ack = await a.reconnect()
        assert ack.session_seq == 20
        got = await a.request(OpenOrders)
        assert got[-1] == OpenOrdersEnd(21, 20)
        await a.close_and_wait()

    with running(tmp_path) as g:
        run(main(g.gateway.address, g))
        assert g.call(lambda: g.gateway.metrics.resends) == 10


def test_resend_is_idempotent_across_a_restart(tmp_path):
    order = NewOrder(1, 42, 1, Side.BUY, 10, 100)
    with running(tmp_path) as g:
        r = Raw(g.gateway.address)
        logon(r, ALICE)
        r.send(order)
        before = r.read_until(lambda m: m == Ack(1))
        r.close()
    with running(tmp_path) as g:  # the same journal: the engine recovers by replay
        r = Raw(g.gateway.address)
        assert pos(logon(r, ALICE)) == (1, 7)
        r.send(order)  # a client that never saw the answer resends it
        assert r.read_until(lambda m: m == Ack(1)) == before
        r.send(OpenOrders(2))
        got = r.read_until(lambda m: isinstance(m, OpenOrdersEnd))
        assert got == [OrderInfo(2, 42, 1, Side.BUY, 100, 10, "open"), OpenOrdersEnd(2, 1)]


def test_restart_recovers_orders_and_limits_for_reconnecting_clients(tmp_path):
    cfg = config(Limits(max_open_orders=3))

    async def before(addr):
        a = await AsyncClient.connect(*addr, ALICE)
        b = await AsyncClient.connect(*addr, BOB)
        for i in (1, 2, 3):
            await a.request(NewOrder, i, 1, Side.BUY, 10, 100 - i)
        (err,) = await a.request(NewOrder, 4, 1, Side.BUY, 10, 90)
        assert err.code == ErrorCode.LIMIT_EXCEEDED
        await b.request(NewOrder, 1, 1, Side.SELL, 5, 99)  # fills 5 of alice's order 1
        b.new_order(2, 1, Side.SELL, 1, 500)  # sent, never awaited: resent after restart
        await a.close_and_wait()
        await b.close_and_wait()
        return a, b

    with running(tmp_path, cfg) as g:
        a, b = run(before(g.gateway.address))

    async def after(addr):
        for c in (a, b):  # the same clients, the new server's port
            await c.reconnect(host=addr[0], port=addr[1])
        got = await a.request(OpenOrders)
        assert [(m.order_id, m.open_qty) for m in got[:-1]] == [(1, 5), (2, 10), (3, 10)]
        (err,) = await a.request(NewOrder, 5, 1, Side.BUY, 10, 90)
        assert err.code == ErrorCode.LIMIT_EXCEEDED  # the count came back with the engine
        await a.request(Cancel, 3)
        assert [m.kind for m in await a.request(NewOrder, 6, 1, Side.BUY, 1, 90)] == \
            ["accepted", "rested"]
        got = await b.request(OpenOrders)
        assert [(m.order_id, m.price) for m in got[:-1]] == [(2, 500)]
        await a.close_and_wait()
        await b.close_and_wait()

    with running(tmp_path, cfg) as g:
        run(after(g.gateway.address))


def test_logout_closes_after_everything_before_it_is_answered(tmp_path):
    async def main(addr):
        a = await AsyncClient.connect(*addr, ALICE)
        seqs = [a.new_order(i, 1, Side.BUY, 1, 100) for i in range(1, 50)]
        await a.logout()
        assert a.acked == seqs[-1] + 1 and not a.unacked

    with running(tmp_path) as g:
        run(main(g.gateway.address))


def test_a_restart_forgets_seqs_answered_without_the_engine_and_the_client_renumbers(tmp_path):
    with running(tmp_path) as g:
        r = Raw(g.gateway.address)
        logon(r, ALICE)
        r.send(NewOrder(1, 1, 1, Side.BUY, 1, 100), Heartbeat(2), Heartbeat(3))
        r.read_until(lambda m: m == Ack(3))
        r.close()
    with running(tmp_path) as g:
        r = Raw(g.gateway.address)
        # the heartbeats were answered by the gateway alone: after a restart the server only
        # knows seq 1 from the journal. It stays authoritative and names the expected seq.
        r.send(Logon(3, ALICE))
        ack, err = r.read(2)
        assert pos(ack) == (1, 7) and ack.acked == 1
        assert err.code == ErrorCode.SEQUENCE_GAP and "next expected seq is 2" in err.message
        r.send(Heartbeat(2))
        assert r.read(1) == [Ack(2)]


def test_the_client_renumbers_its_unacked_messages_after_a_restart_forgot_heartbeats(tmp_path):
    async def first(addr):
        a = await AsyncClient.connect(*addr, ALICE)
        await a.request(NewOrder, 1, 1, Side.BUY, 1, 100)
        await a.request(Heartbeat)
        await a.close_and_wait()
        return a

    with running(tmp_path) as g:
        a = run(first(g.gateway.address))
    assert a.acked == 2

    async def second(addr):
        seq = a.new_order(2, 1, Side.BUY, 1, 101)  # queued while disconnected: seq 3
        assert seq == 3
        ack = await a.reconnect(host=addr[0], port=addr[1])
        assert ack.session_seq == 1 and a.acked == 1
        got = await a.answers(2)  # renumbered: the server's seq 2
        assert [m.kind for m in got] == ["accepted", "rested"]
        assert a.events.empty()  # the expected sequence_gap is not an event
        got = await a.request(OpenOrders)
        assert sorted(m.order_id for m in got[:-1]) == [1, 2]
        await a.close_and_wait()

    with running(tmp_path) as g:
        run(second(g.gateway.address))


def test_modify_order_status_and_mass_cancel_reach_the_engine_for_the_account(tmp_path):
    async def body(a, b):
        for i in (1, 2):
            await a.request(NewOrder, i, 1, Side.BUY, 10, 100)
        await b.request(NewOrder, 1, 1, Side.BUY, 10, 100)
        got = await a.request(Modify, 1, 99, 4)
        # a new price loses time priority: the engine re-rests it (docs/matching.md)
        assert [(m.kind, m.order_id, m.price, m.remaining) for m in got] == \
            [("modified", 1, 99, 4), ("rested", 1, 99, 4)]
        assert await a.request(OrderStatus, 1) == [OrderInfo(4, 1, 1, Side.BUY, 99, 4, "open")]
        got = await a.request(MassCancel)
        assert sorted((m.kind, m.reason, m.order_id) for m in got) == \
            [("cancelled", "mass_cancel", 1), ("cancelled", "mass_cancel", 2)]
        assert (await a.request(OpenOrders))[-1].count == 0
        assert (await b.request(OpenOrders))[-1].count == 1  # bob's order untouched

    with_clients(tmp_path, body, ALICE, BOB)


def test_a_command_that_makes_no_report_is_still_acked(tmp_path):
    # the engine emits nothing for a mass cancel with nothing to cancel (docs/matching.md)
    with running(tmp_path) as g:
        r = Raw(g.gateway.address)
        logon(r, ALICE)
        r.send(MassCancel(1))
        assert r.read(1) == [Ack(1)]


def test_a_session_silent_past_its_heartbeat_is_closed(tmp_path):
    with running(tmp_path, config(Limits(heartbeat_grace=1.0))) as g:
        r = Raw(g.gateway.address)
        r.send(Logon(0, ALICE, heartbeat_ms=100))
        assert pos(r.read(1)[0]) == (0, 7)
        got = r.read_until(lambda m: isinstance(m, Error), timeout=5)
        assert got[-1].code == ErrorCode.TIMEOUT and "nothing heard" in got[-1].message
        assert r.closed_by_peer()


# -- limits and abuse ----------------------------------------------------------------------
def test_rate_limit_answers_errors_and_repeated_abuse_closes_only_that_session(tmp_path):
    cfg = config(Limits(rate=1.0, burst=5, max_errors=10))
    with running(tmp_path, cfg) as g:
        other = Raw(g.gateway.address)
        logon(other, BOB)
        r = Raw(g.gateway.address)
        logon(r, ALICE)
        r.send(*[Heartbeat(i) for i in range(1, 31)])
        got = r.read_until(lambda m: isinstance(m, Error) and "errors in a row" in m.message)
        limited = [m for m in got if isinstance(m, Error) and m.code == ErrorCode.RATE_LIMITED]
        assert len(limited) == 11 and limited[0].seq == 6
        assert r.closed_by_peer()
        other.send(Heartbeat(1))
        assert other.read(1) == [Ack(1)]


def test_open_order_limit_counts_live_and_pending_orders(tmp_path):
    cfg = config(Limits(max_open_orders=2))
    with running(tmp_path, cfg) as g:
        r = Raw(g.gateway.address)
        logon(r, ALICE)
        r.send(*[NewOrder(i, i, 1, Side.BUY, 1, 100) for i in (1, 2, 3)])
        got = r.read_until(lambda m: m == Ack(3))
        errs = [m for m in got if isinstance(m, Error)]
        assert [(e.seq, e.code) for e in errs] == [(3, ErrorCode.LIMIT_EXCEEDED)]
        # a cancel frees its slot once the engine confirmed it (not while in flight)
        r.send(Cancel(4, 1))
        r.read_until(lambda m: m == Ack(4))
        # an IOC order counts while in flight and never rests
        r.send(NewOrder(5, 7, 1, Side.BUY, 1, 100, tif=Tif.IOC))
        got = r.read_until(lambda m: m == Ack(5))
        r.send(NewOrder(6, 8, 1, Side.BUY, 1, 100), NewOrder(7, 9, 1, Side.BUY, 1, 100))
        got += r.read_until(lambda m: m == Ack(7))
        assert [(m.seq, m.kind) for m in got if isinstance(m, Report)] == \
            [(5, "accepted"), (5, "cancelled"), (6, "accepted"), (6, "rested")]
        assert [m.seq for m in got if isinstance(m, Error)] == [7]


def test_oversize_frame_is_an_error_and_closes_only_that_session(tmp_path):
    cfg = config(Limits(max_frame=256))
    with running(tmp_path, cfg) as g:
        other = Raw(g.gateway.address)
        logon(other, BOB)
        r = Raw(g.gateway.address)
        logon(r, ALICE)
        r.send(Logon(0, "x" * 300))
        (err,) = r.read(1)
        assert err.code == ErrorCode.BAD_FRAME and "outside 1..256" in err.message
        assert r.closed_by_peer()
        other.send(Heartbeat(1))
        assert other.read(1) == [Ack(1)]


def test_malformed_frames_get_errors_naming_the_problem_and_the_session_goes_on(tmp_path):
    with running(tmp_path) as g:
        r = Raw(g.gateway.address)
        logon(r, ALICE)
        cases = [
            (frame_of(b"\xc1\xc1"), ErrorCode.BAD_FRAME, "msgpack"),
            (frame_of(msgspec.msgpack.encode([99, 1])), ErrorCode.BAD_MESSAGE, "99"),
            (frame_of(msgspec.msgpack.encode([4, 1, "x", 1, 1, 1])), ErrorCode.BAD_MESSAGE,
             "NewOrder.order_id"),
            (frame_of(msgspec.msgpack.encode([4, 1, 5])), ErrorCode.BAD_MESSAGE, "length"),
            (frame_of(msgspec.msgpack.encode([4, 1, 5, 1, 1, 2**63])), ErrorCode.BAD_MESSAGE,
             "NewOrder.qty"),
            (frame_of(b'[4, 1,'), ErrorCode.BAD_FRAME, "JSON"),
            (frame_of(b'{"tag": 3}'), ErrorCode.BAD_MESSAGE, "array"),
        ]
        for data, code, text in cases:
            r.send_bytes(data)
            (err,) = r.read(1)
            assert isinstance(err, Error) and err.code == code and text in err.message, err
        r.send(Heartbeat(1))
        assert r.read(1) == [Ack(1)]


# -- backpressure --------------------------------------------------------------------------
def test_a_client_that_never_reads_is_paused_with_bounded_memory_and_others_go_on(tmp_path):
    lim = Limits(high_water=16 << 10, low_water=4 << 10, max_buffered=4 << 20, rate=1e9,
                 burst=10**9, max_inflight=128)
    with running(tmp_path, config(lim)) as g:
        addr = g.gateway.address
        slow = Raw(addr, rcvbuf=4096)
        logon(slow, ALICE)
        slow.send(*[NewOrder(i, i, 1, Side.BUY, 1, 100) for i in range(1, 41)])
        slow.read_until(lambda m: m == Ack(40))
        # every OpenOrders answer is 41 frames (~1 KiB): send 100k and never read them
        n = 100_000
        frames = b"".join(encode_frame(OpenOrders(i)) for i in range(41, 41 + n))
        slow.sock.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 3
        while sent < len(frames) and time.monotonic() < deadline:
            try:
                sent += slow.sock.send(frames[sent:sent + 65536])
            except BlockingIOError:
                threading.Event().wait(0.01)  # the kernel buffers are full

        def state():
            (c,) = [c for c in g.gateway.connections if c.session.id == 1]
            return (c.paused, c.transport.get_write_buffer_size(), len(c.pending),
                    g.gateway.metrics.messages)

        deadline = time.monotonic() + 10
        while "write" not in g.call(state)[0]:
            assert time.monotonic() < deadline, g.call(state)
            threading.Event().wait(0.01)
        _, buffered, waiting, handled = g.call(state)
        # it stopped handling the client's requests: its output is bounded by high water and
        # the answers of the in-flight window (128 x ~1 KiB), its input by one read
        assert handled < n and waiting < 64 << 10
        assert buffered < lim.high_water + 128 * 1100

        async def fast():
            b = await AsyncClient.connect(*addr, BOB)
            for i in range(50):
                got = await b.request(NewOrder, i + 1, 2, Side.SELL, 1, 200, timeout=5)
                assert got[0].kind == "accepted"
            await b.close_and_wait()

        run(fast())
        assert g.call(state)[1:] == (buffered, waiting, handled + 1 + 50)  # bob's only


def test_unread_unsolicited_output_past_the_limit_closes_the_slow_consumer(tmp_path):
    # the taker's answers are bounded by its in-flight window (64 x 3 reports, well under
    # max_buffered); the maker's fills are unsolicited and unbounded: it is the one closed
    lim = Limits(high_water=2 << 10, low_water=1 << 10, max_buffered=32 << 10, rate=1e9,
                 burst=10**9, socket_buffer=8192, max_inflight=64)
    with running(tmp_path, config(lim)) as g:
        addr = g.gateway.address
        maker = Raw(addr, rcvbuf=4096)
        logon(maker, ALICE)
        maker.send(NewOrder(1, 1, 1, Side.BUY, 10**9, 100))
        maker.read_until(lambda m: m == Ack(1))

        async def taker():
            b = await AsyncClient.connect(*addr, BOB)
            for i in range(1, 4001):
                b.new_order(i, 1, Side.SELL, 1, 100)
            await b.answers(4000, timeout=30)
            await b.close_and_wait()

        run(taker())
        assert g.call(lambda: g.gateway.metrics.slow_consumers) == 1
        assert maker.closed_by_peer(10)


class GatedEngine(StandInEngine):
    """The stand-in, but the first new order of account 7 waits until the test opens the gate."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def on_event(self, event, sequence, end_of_batch):
        if event.type_id == 101 and not self.gate.is_set() and not self.orders:
            assert self.gate.wait(20), "the test never opened the gate"
        super().on_event(event, sequence, end_of_batch)


def test_a_full_input_ring_parks_commands_in_order_and_never_blocks_the_loop(tmp_path):
    engine = GatedEngine()
    # a loop thread of its own: driven, the stuck engine would be the event loop's thread
    with running(tmp_path, handler=engine, ring_capacity=8, topology="inline") as g:
        a = Raw(g.gateway.address)
        logon(a, ALICE)
        b = Raw(g.gateway.address)
        logon(b, BOB)
        a.send(*[NewOrder(i, i, 1, Side.BUY, 1, 100 - i) for i in range(1, 41)])
        deadline = time.monotonic() + 10
        while not g.call(lambda: g.gateway.backlog):
            assert time.monotonic() < deadline, "the ring never filled"
            threading.Event().wait(0.01)
        # the engine is stuck and the ring is full: the loop still answers others at once
        b.send(Heartbeat(1))
        assert b.read(1) == [Ack(1)]
        engine.gate.set()
        got = a.read_until(lambda m: m == Ack(40), timeout=20)
        rested = [m.seq for m in got if isinstance(m, Report) and m.kind == "rested"]
        assert rested == list(range(1, 41))  # every one, once, in order
        assert g.call(lambda: g.gateway.metrics.backlog_peak) > 0
        assert g.call(lambda: g.gateway.processor.metrics.duplicates) == 0


def test_a_full_input_ring_under_the_driven_topology_parks_and_pumps_in_order(tmp_path):
    with running(tmp_path, ring_capacity=8, topology="driven") as g:
        a = Raw(g.gateway.address)
        logon(a, ALICE)
        a.send(*[NewOrder(i, i, 1, Side.BUY, 1, 100 - i) for i in range(1, 41)])
        got = a.read_until(lambda m: m == Ack(40), timeout=20)
        rested = [m.seq for m in got if isinstance(m, Report) and m.kind == "rested"]
        assert rested == list(range(1, 41))  # every one, once, in order
        assert g.call(lambda: g.gateway.metrics.backlog_peak) > 0
        assert g.call(lambda: g.gateway.processor.metrics.duplicates) == 0


# -- the breaker ---------------------------------------------------------------------------
def test_new_orders_get_halted_while_the_breaker_is_open_and_flow_after_a_reset(tmp_path):
    # outputs: 3 at start (the open-orders query of each account), then 3 per resting order
    # (accepted, rested, L1): 15 pass, order 5 makes the 16th, which trips
    b = Breaker(BreakerConfig(limits=[Limit(max_count=15, window_ns=10**15)]))
    with running(tmp_path, breaker=b) as g:
        r = Raw(g.gateway.address)
        logon(r, ALICE)
        for i in range(1, 5):
            r.send(NewOrder(i, i, 1, Side.BUY, 1, 100))
            r.read_until(lambda m, i=i: m == Ack(i))
        r.send(NewOrder(5, 5, 1, Side.BUY, 1, 100))  # trips: its outputs are held
        proc = g.gateway.processor
        deadline = time.monotonic() + 10
        while proc.metrics.breaker_state != "open":
            assert time.monotonic() < deadline, "the breaker never tripped"
            threading.Event().wait(0.01)
        # the loop is not blocked: the next order is answered Halted at once
        r.send(NewOrder(6, 6, 1, Side.BUY, 1, 100), Heartbeat(7))
        (halted,) = r.read(1)
        assert isinstance(halted, Halted) and halted.seq == 6 and "breaker" in halted.reason
        proc.reset_breaker()
        proc.release_held()  # order 5's reports go out; then everything up to 7 is acked
        got = r.read_until(lambda m: m == Ack(7))
        assert [(m.seq, m.kind) for m in got if isinstance(m, Report)] == \
            [(5, "accepted"), (5, "rested")]
        r.send(NewOrder(8, 8, 1, Side.BUY, 1, 100))
        got = r.read_until(lambda m: m == Ack(8))
        assert [(m.seq, m.kind) for m in got if isinstance(m, Report)] == \
            [(8, "accepted"), (8, "rested")]
        r.send(OpenOrders(9))  # 6 was never applied
        got = r.read_until(lambda m: isinstance(m, OpenOrdersEnd))
        assert sorted(m.order_id for m in got[:-1]) == [1, 2, 3, 4, 5, 8]
        assert g.call(lambda: g.gateway.metrics.halted) == 1


# -- fuzz ----------------------------------------------------------------------------------
_frames = st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=64).map(frame_of),
    st.lists(st.one_of(st.integers(-2**63, 2**64 - 1), st.text(max_size=5), st.none(),
                       st.booleans(), st.floats(allow_nan=False)), max_size=8)
    .map(lambda xs: frame_of(msgspec.msgpack.encode(xs))),
    st.tuples(st.integers(1, 10), st.lists(st.integers(-5, 2**40), max_size=8))
    .map(lambda t: frame_of(msgspec.msgpack.encode([t[0], *t[1]]))),
    st.integers(0, 2**32 - 1).map(lambda n: struct.pack(">I", n)),
)


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory):
    cfg = config(Limits(max_frame=512, max_errors=5))
    with running(tmp_path_factory.mktemp("fuzz"), cfg) as g:
        g.bystander = Raw(g.gateway.address)  # logged on before the fuzz, used after it
        assert pos(logon(g.bystander, ALICE)) == (0, 7)
        g.bystander.send(NewOrder(1, 1, 1, Side.BUY, 5, 100))
        g.bystander.read_until(lambda m: m == Ack(1))
        yield g


@settings(max_examples=60, deadline=None)
@given(chunks=st.lists(_frames, min_size=1, max_size=6), logged_on=st.booleans())
def test_fuzzed_frames_never_hurt_the_server_or_other_sessions(fuzz_gateway, chunks, logged_on):
    g = fuzz_gateway
    r = Raw(g.gateway.address)
    try:
        if logged_on:
            logon(r, CAROL)
        for c in chunks:
            try:
                r.send_bytes(c)
            except (BrokenPipeError, ConnectionResetError):
                break  # closed for abuse: allowed
    finally:
        r.close()
    # the server and another session are fine: bob logs on, trades, logs off
    other = Raw(g.gateway.address)
    try:
        ack = logon(other, BOB)
        assert isinstance(ack, LogonAck)
        other.send(Heartbeat(ack.session_seq + 1))
        assert other.read_until(lambda m: isinstance(m, Ack))[-1] == Ack(ack.session_seq + 1)
    finally:
        other.close()
    # carol's session was released whatever the fuzz did (wait for the server to see the close)
    deadline = time.monotonic() + 5
    while g.call(lambda: g.gateway.table.by_id[3].conn is not None):
        assert time.monotonic() < deadline
        threading.Event().wait(0.01)


def test_after_the_fuzz_a_session_connected_throughout_still_trades(fuzz_gateway):
    r = fuzz_gateway.bystander
    r.send(OpenOrders(2), Cancel(3, 1))
    got = r.read_until(lambda m: m == Ack(3))
    assert OrderInfo(2, 1, 1, Side.BUY, 100, 5, "open") in got
    assert [m.kind for m in got if isinstance(m, Report)] == ["cancelled"]
