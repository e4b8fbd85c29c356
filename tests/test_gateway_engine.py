"""The gateway in front of the real matching engine, end to end over TCP on loopback: trades
between accounts, isolation, order types through the wire, mass cancel, restarts with the
engine's dedup, the breaker's per-account limit, and L1/L2 market data from real book changes.
"""

from __future__ import annotations

import threading
import time

import msgspec

from ringlog import Breaker, BreakerConfig, Limit
from ringlog.client import AsyncClient
from ringlog.engine.records import OrderType, Side, Tif
from ringlog.gateway.protocol import (
    Ack,
    Cancel,
    Halted,
    Heartbeat,
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
)
from ringlog.gateway.session import correlation, encode_command

from gateway_helpers import (
    ALICE,
    ALICE2,
    BOB,
    CAROL,
    TOKENS,
    Raw,
    engine_config,
    logon,
    run,
    running,
    with_clients,
)


def kinds(got):
    return [(m.kind, m.reason) for m in got]


def test_a_trade_reaches_both_accounts_with_their_own_order_ids_in_time_priority(tmp_path):
    async def body(a, b):
        assert kinds(await a.request(NewOrder, 11, 1, Side.BUY, 5, 100)) == \
            [("accepted", ""), ("rested", "")]
        await a.request(NewOrder, 12, 1, Side.BUY, 5, 100)
        await a.request(NewOrder, 13, 1, Side.BUY, 5, 101)  # better price: first
        got = await b.request(NewOrder, 901, 1, Side.SELL, 12, 99)
        # the taker hears its own id at the makers' prices, best price then oldest first;
        # fully filled, it has no final report (the last trade says remaining 0)
        assert [(m.kind, m.order_id, m.price, m.qty, m.remaining, m.maker_id) for m in got] == \
            [("accepted", 901, 99, 12, 12, 0), ("trade", 901, 101, 5, 7, 0),
             ("trade", 901, 100, 5, 2, 0), ("trade", 901, 100, 2, 0, 0)]
        fills = [await a.next_event(5) for _ in range(3)]
        # the maker hears its ids (unsolicited, seq 0), never the taker's
        assert [f.rseq for f in fills] == sorted({f.rseq for f in fills})  # in stream order
        fills = [msgspec.structs.replace(f, rseq=0) for f in fills]
        assert fills == [Report(0, "trade", 13, "", 101, 5, 0, maker_id=13, symbol=1),
                         Report(0, "trade", 11, "", 100, 5, 0, maker_id=11, symbol=1),
                         Report(0, "trade", 12, "", 100, 2, 3, maker_id=12, symbol=1)]
        got = await a.request(OpenOrders)
        assert got == [OrderInfo(4, 12, 1, Side.BUY, 100, 3, "open"), OpenOrdersEnd(4, 1)]
        assert await b.request(OpenOrders) == [OpenOrdersEnd(2, 0)]

    with_clients(tmp_path, body, ALICE, BOB)


def test_one_account_cannot_cancel_modify_query_or_mass_cancel_anothers_orders(tmp_path):
    async def main(addr):
        a = await AsyncClient.connect(*addr, ALICE)
        a2 = await AsyncClient.connect(*addr, ALICE2)  # another session of alice's account
        b = await AsyncClient.connect(*addr, BOB)
        await a.request(NewOrder, 5, 1, Side.BUY, 10, 100)
        # bob's order id 5 is his own id 5: alice's order is unknown to him
        assert kinds(await b.request(Modify, 5, 101, 3)) == [("rejected", "unknown_order")]
        assert kinds(await b.request(OrderStatus, 5)) == [("rejected", "unknown_order")]
        assert kinds(await b.request(MassCancel, 1)) == []  # nothing of his to cancel
        info = OrderInfo(1, 5, 1, Side.BUY, 100, 10, "open")
        assert await a2.request(OrderStatus, 5) == [info]  # untouched
        # a session of the same account may manage it
        assert kinds(await a2.request(Modify, 5, 100, 4)) == [("modified", "")]
        assert (await b.request(OpenOrders))[-1] == OpenOrdersEnd(4, 0)
        for c in (a, a2, b):
            await c.close_and_wait()

    with running(tmp_path) as g:
        run(main(g.gateway.address))


def test_ioc_fok_and_market_orders_through_the_wire(tmp_path):
    async def body(a, b):
        await a.request(NewOrder, 1, 1, Side.SELL, 5, 100)
        await a.request(NewOrder, 2, 1, Side.SELL, 5, 102)
        # IOC: takes what crosses, the rest is cancelled (unfilled), nothing rests
        got = await b.request(NewOrder, 1, 1, Side.BUY, 8, 101, OrderType.LIMIT, Tif.IOC)
        assert kinds(got) == [("accepted", ""), ("trade", ""), ("cancelled", "unfilled")]
        assert (got[1].qty, got[2].remaining) == (5, 0)
        # FOK: 10 not available within 102: nothing trades
        got = await b.request(NewOrder, 2, 1, Side.BUY, 10, 102, OrderType.LIMIT, Tif.FOK)
        assert kinds(got) == [("accepted", ""), ("cancelled", "fok_unfillable")]
        got = await b.request(NewOrder, 3, 1, Side.BUY, 5, 102, OrderType.LIMIT, Tif.FOK)
        assert kinds(got) == [("accepted", ""), ("trade", "")] and got[1].remaining == 0
        # market against an empty side: cancelled unfilled; market GTC is invalid
        got = await b.request(NewOrder, 4, 1, Side.BUY, 1, 0, OrderType.MARKET, Tif.IOC)
        assert kinds(got) == [("accepted", ""), ("cancelled", "unfilled")]
        got = await b.request(NewOrder, 5, 1, Side.BUY, 1, 0, OrderType.MARKET, Tif.GTC)
        assert kinds(got) == [("rejected", "invalid_type")]
        # a market sell sweeps the bids
        await a.request(NewOrder, 3, 1, Side.BUY, 2, 90)
        await a.request(NewOrder, 4, 1, Side.BUY, 2, 80)
        got = await b.request(NewOrder, 6, 1, Side.SELL, 3, 0, OrderType.MARKET, Tif.IOC)
        assert [(m.kind, m.price, m.qty) for m in got] == \
            [("accepted", 0, 3), ("trade", 90, 2), ("trade", 80, 1)]
        assert await b.request(OpenOrders) == [OpenOrdersEnd(7, 0)]

    with_clients(tmp_path, body, ALICE, BOB)


def test_mass_cancel_of_one_symbol_cancels_only_the_accounts_orders_there(tmp_path):
    async def body(a, b):
        await a.request(NewOrder, 1, 1, Side.BUY, 1, 100)
        await a.request(NewOrder, 2, 2, Side.BUY, 1, 100)
        await a.request(NewOrder, 3, 2, Side.SELL, 1, 200)
        await b.request(NewOrder, 1, 2, Side.BUY, 1, 100)
        got = await a.request(MassCancel, 2)
        assert sorted((m.kind, m.reason, m.order_id) for m in got) == \
            [("cancelled", "mass_cancel", 2), ("cancelled", "mass_cancel", 3)]
        got = await a.request(OpenOrders)
        assert [m.order_id for m in got[:-1]] == [1]
        assert [m.order_id for m in (await b.request(OpenOrders))[:-1]] == [1]

    with_clients(tmp_path, body, ALICE, BOB)


def test_a_resent_trade_after_a_restart_is_answered_again_and_never_trades_twice(tmp_path):
    with running(tmp_path) as g:
        a, b = Raw(g.gateway.address), Raw(g.gateway.address)
        logon(a, ALICE)
        logon(b, BOB)
        a.send(NewOrder(1, 7, 1, Side.BUY, 10, 100))
        a.read_until(lambda m: m == Ack(1))
        b.send(NewOrder(1, 70, 1, Side.SELL, 4, 100, OrderType.LIMIT, Tif.IOC))
        before = b.read_until(lambda m: m == Ack(1))
        assert [m.kind for m in before if isinstance(m, Report)] == ["accepted", "trade"]
    with running(tmp_path) as g:  # the same journal: the engine and the dedup table recover
        b = Raw(g.gateway.address)
        logon(b, BOB)
        b.send(NewOrder(1, 70, 1, Side.SELL, 4, 100, OrderType.LIMIT, Tif.IOC))
        assert b.read_until(lambda m: m == Ack(1)) == before  # the same answers, no new trade
        a = Raw(g.gateway.address)
        logon(a, ALICE, seq=1)
        a.send(OrderStatus(2, 7), OpenOrders(3))
        got = [m for m in a.read_until(lambda m: isinstance(m, OpenOrdersEnd))
               if not isinstance(m, Ack)]
        assert got == [OrderInfo(2, 7, 1, Side.BUY, 100, 6, "open"),
                       OrderInfo(3, 7, 1, Side.BUY, 100, 6, "open"), OpenOrdersEnd(3, 1)]
        # the gateway answered the resend itself; the same command reaching the processor
        # again (a resend racing a crash) is dropped by its dedup table: no trade either
        proc = g.gateway.processor
        assert proc.metrics.duplicates == 0
        cmd = NewOrder(1, 70, 1, Side.SELL, 4, 100, OrderType.LIMIT, Tif.IOC)
        type_id, payload = encode_command(cmd, TOKENS[2][1])
        proc.publish(payload, type_id, producer_id=2, producer_seq=1,
                     correlation_id=correlation(2, 1))
        a.send(OrderStatus(4, 7))
        assert a.read_until(lambda m: isinstance(m, OrderInfo))[-1] == \
            OrderInfo(4, 7, 1, Side.BUY, 100, 6, "open")
        assert proc.metrics.duplicates == 1


def test_a_per_account_breaker_limit_trips_on_one_account_and_halts_new_orders(tmp_path):
    # every output of a command is keyed by the account that sent it: at start one (the
    # gateway's open-orders query), then 3 per resting order (accepted, rested, L1)
    b = Breaker(BreakerConfig(limits=[Limit(max_count=10, window_ns=10**15, per="key")]))
    with running(tmp_path, breaker=b) as g:
        alice, bob = Raw(g.gateway.address), Raw(g.gateway.address)
        logon(alice, ALICE)
        logon(bob, BOB)
        for i in range(1, 4):  # 10 outputs each: 20 in all, under the limit per account
            for r in (alice, bob):
                r.send(NewOrder(i, i, 1 + (r is bob), Side.BUY, 1, 100 + i))  # new best bids
                r.read_until(lambda m, i=i: m == Ack(i))
        proc = g.gateway.processor
        assert proc.metrics.breaker_state == "closed"
        alice.send(NewOrder(4, 4, 1, Side.BUY, 1, 110))  # alice's 11th output trips
        deadline = time.monotonic() + 10
        while not proc.halted:
            assert time.monotonic() < deadline, proc.metrics
            threading.Event().wait(0.01)
        bob.send(NewOrder(4, 4, 2, Side.BUY, 1, 90), Heartbeat(5))
        (halted,) = bob.read(1)
        assert halted == Halted(4, "circuit breaker open: retry after an operator reset")
        assert bob.read(1) == [Ack(5)]
        proc.reset_breaker()
        proc.release_held()
        got = alice.read_until(lambda m: m == Ack(4))
        assert [(m.seq, m.kind) for m in got if isinstance(m, Report)] == \
            [(4, "accepted"), (4, "rested")]
        bob.send(NewOrder(4, 4, 2, Side.BUY, 1, 90))  # halted was final: a resend of it
        assert bob.read(1) == [halted]
        bob.send(NewOrder(6, 4, 2, Side.BUY, 1, 90))
        got = bob.read_until(lambda m: m == Ack(6))
        assert [(m.seq, m.kind) for m in got if isinstance(m, Report)] == \
            [(6, "accepted"), (6, "rested")]


def test_l1_and_l2_subscriptions_follow_real_book_changes(tmp_path):
    async def main(addr):
        a = await AsyncClient.connect(*addr, ALICE)
        l1 = await AsyncClient.connect(*addr, BOB)
        l2 = await AsyncClient.connect(*addr, CAROL)
        await l1.request(Subscribe, 1, 1)
        await l2.request(Subscribe, 1, 2)
        await a.request(NewOrder, 1, 1, Side.BUY, 5, 100)
        assert await l1.next_event(5) == MarketData(1, 0, 100, 5, 0, 0)
        assert [await l2.next_event(5) for _ in range(2)] == \
            [MarketData(1, 0, 100, 5, 0, 0), MarketData(1, 1, 0, 0, 0, 0)]
        await a.request(NewOrder, 2, 1, Side.BUY, 3, 99)  # below the best: L2 only
        await a.request(NewOrder, 3, 1, Side.SELL, 4, 105)
        assert [await l2.next_event(5) for _ in range(4)] == \
            [MarketData(1, 0, 100, 5, 0, 0), MarketData(1, 1, 99, 3, 0, 0),
             MarketData(1, 0, 100, 5, 105, 4), MarketData(1, 1, 99, 3, 0, 0)]
        assert await l1.next_event(5) == MarketData(1, 0, 100, 5, 105, 4)
        await a.request(NewOrder, 4, 2, Side.BUY, 1, 100)  # another book: nothing
        await a.request(Modify, 2, 99, 1)  # size down at the second level: L2 only
        await a.request(Cancel, 1)  # the best bid goes: both
        assert await l1.next_event(5) == MarketData(1, 0, 99, 1, 105, 4)
        assert [await l2.next_event(5) for _ in range(4)] == \
            [MarketData(1, 0, 100, 5, 105, 4), MarketData(1, 1, 99, 1, 0, 0),
             MarketData(1, 0, 99, 1, 105, 4), MarketData(1, 1, 0, 0, 0, 0)]
        for c in (l1, l2):
            await c.request(Heartbeat)
            assert c.events.empty()
        for c in (a, l1, l2):
            await c.close_and_wait()

    with running(tmp_path, engine=engine_config(l2_depth=3)) as g:
        run(main(g.gateway.address))
