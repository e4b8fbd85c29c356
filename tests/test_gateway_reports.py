"""The execution-report stream (docs/protocol.md, "Execution reports"): report seqs derived
from the output journal, fills made while a client is away replayed exactly once and in
order after it reconnects (also across a server restart), drop copies to sibling sessions,
an explicit gap answer past the journal's retention, and cancel-on-disconnect as a journaled
mass cancel."""

from __future__ import annotations

import time

from ringlog.client import AsyncClient
from ringlog.engine.records import Command, Side
from ringlog.engine.records import Report as R
from ringlog.gateway.protocol import (
    Ack,
    Error,
    ErrorCode,
    Heartbeat,
    Logon,
    NewOrder,
    OpenOrders,
    Report,
)
from ringlog.gateway.session import TRADE, report_seq
from ringlog.journal import JournalReader

from gateway_helpers import ALICE, ALICE2, BOB, Raw, logon, run, running


def wait_for(g, fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not g.call(fn):
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


async def drain_events(c, quiet=0.3):
    """Every event that arrives until nothing more comes for ``quiet`` seconds; a heartbeat
    round trip first, so everything the server sent before it is here."""
    await c.request(Heartbeat)
    out = []
    while True:
        try:
            out.append(await c.next_event(quiet))
        except TimeoutError:
            return out


async def rest_and_leave(addr, n=5):
    """Alice rests n buy orders and goes away; returns her client (with its history)."""
    a = await AsyncClient.connect(*addr, ALICE)
    for i in range(1, n + 1):
        await a.request(NewOrder, i, 1, Side.BUY, 3, 100 - i)
    await a.close_and_wait()
    return a


async def hit(addr, n=5):
    """Bob sells into alice's orders: n fills of 3 each, best price first (each one fills
    one of alice's orders)."""
    b = await AsyncClient.connect(*addr, BOB)
    for i in range(1, n + 1):
        got = await b.request(NewOrder, 100 + i, 1, Side.SELL, 3, 1)
        assert [m.kind for m in got][:2] == ["accepted", "trade"]
    await b.close_and_wait()


def check_fills(events, n=5):
    fills = [e for e in events if isinstance(e, Report)]
    assert [(f.kind, f.order_id, f.qty, f.remaining) for f in fills] == \
        [("trade", i, 3, 0) for i in range(1, n + 1)]
    rseqs = [f.rseq for f in fills]
    assert rseqs == sorted(rseqs) and len(set(rseqs)) == n
    assert all(isinstance(e, Report) for e in events)  # nothing else, no gap error


def test_fills_made_while_away_arrive_after_the_reconnect_once_and_in_order(tmp_path):
    async def main(addr):
        a = await rest_and_leave(addr, 6)
        await hit(addr)
        await a.reconnect()
        check_fills(await drain_events(a))
        await a.reconnect()  # nothing new: nothing replayed again
        assert await drain_events(a) == []
        await hit(addr, 1)  # live while connected: once, not again at the next reconnect
        got = await drain_events(a)
        assert [(e.kind, e.order_id, e.remaining) for e in got] == [("trade", 6, 0)]
        await a.reconnect()
        assert await drain_events(a) == []
        await a.close_and_wait()

    with running(tmp_path) as g:
        run(main(g.gateway.address))


def test_fills_made_while_away_arrive_after_a_server_restart_too(tmp_path):
    with running(tmp_path) as g:
        a = run(rest_and_leave(g.gateway.address, 6))
        run(hit(g.gateway.address))

    async def after(addr):
        await a.reconnect(host=addr[0], port=addr[1])
        check_fills(await drain_events(a))
        await hit(addr, 1)  # live after the restart: its report seq is the journal's too
        (live,) = await drain_events(a)
        await a.close_and_wait()
        return live

    with running(tmp_path) as g:
        live = run(after(g.gateway.address))
        out = g.gateway.processor.output.path
    records = {rec.sequence: (rec.type_id, bytes(rec.payload))
               for rec in JournalReader(out).records(0)}
    type_id, payload = records[(live.rseq - 1) // 2]
    assert type_id == R.TRADE and live.rseq % 2 == 0  # the maker's side of that trade
    assert TRADE.unpack(payload)[1] & 0xFFFFFFFF == live.order_id == 6


def test_report_seqs_are_the_output_journals_and_live_equals_replayed(tmp_path):
    async def live(addr):
        a = await AsyncClient.connect(*addr, ALICE)
        for i in (1, 2):
            await a.request(NewOrder, i, 1, Side.BUY, 3, 100 - i)
        await hit(addr, 2)
        got = await drain_events(a)
        await a.close_and_wait()
        return got

    with running(tmp_path) as g:
        fills = run(live(g.gateway.address))
        assert [(f.kind, f.order_id) for f in fills] == [("trade", 1), ("trade", 2)]
        r = Raw(g.gateway.address)  # a sibling asks for the whole stream from the start
        r.send(Logon(0, ALICE2, 0, 0))
        got = r.read(3)
        assert got[1:] == fills  # the same reports, the same report seqs
        out = g.gateway.processor.output.path
    records = {rec.sequence: (rec.type_id, bytes(rec.payload))
               for rec in JournalReader(out).records(0)}
    for f in fills:  # the maker's side of a trade record: that record's second report seq
        seq = (f.rseq - 1) // 2
        assert f.rseq == report_seq(seq) + 1
        type_id, payload = records[seq]
        assert type_id == R.TRADE
        maker = TRADE.unpack(payload)[1]
        assert maker & 0xFFFFFFFF == f.order_id and maker >> 32 == 7


def test_drop_copy_gives_a_sibling_every_report_of_the_account(tmp_path):
    async def main(addr):
        a = await AsyncClient.connect(*addr, ALICE)
        copy = await AsyncClient.connect(*addr, ALICE2, drop_copy=True)
        bob = await AsyncClient.connect(*addr, BOB)
        got = await a.request(NewOrder, 1, 1, Side.BUY, 10, 100)
        await bob.request(NewOrder, 1, 1, Side.SELL, 4, 100)
        events = await drain_events(copy)
        assert [(e.seq, e.kind, e.order_id) for e in events] == \
            [(0, "accepted", 1), (0, "rested", 1), (0, "trade", 1)]
        assert [e.rseq for e in events[:2]] == [m.rseq for m in got]
        # a sibling without the subscription hears the fill (unsolicited) but not a's answers
        await copy.close_and_wait()
        plain = AsyncClient("127.0.0.1", addr[1], ALICE2)
        await plain.logon()
        await a.request(NewOrder, 2, 1, Side.BUY, 10, 90)
        assert await drain_events(plain) == []
        for c in (a, plain, bob):
            await c.close_and_wait()

    with running(tmp_path) as g:
        run(main(g.gateway.address))


def test_a_request_older_than_the_retention_gets_an_explicit_gap_answer(tmp_path):
    with running(tmp_path, segment_size=8192) as g:
        a = run(rest_and_leave(g.gateway.address, 3))
        run(hit(g.gateway.address, 2))
        p = g.gateway.processor

        async def churn(addr):  # enough outputs to fill a few small segments
            c = await AsyncClient.connect(*addr, BOB)
            for i in range(60):
                await c.request(NewOrder, 1000 + i, 2, Side.BUY, 1, 10)
            await c.close_and_wait()

        run(churn(g.gateway.address))
        cut = p.output.next_sequence - 5
        assert g.call(lambda: p.output.drop_segments_before(cut))
        first = JournalReader(p.output.path).segments()[0][0]
        assert first > 0
        r = Raw(g.gateway.address)
        r.send(Logon(a.acked, ALICE, 0, 0))
        got = r.read(2)
        err = got[1]
        assert isinstance(err, Error) and err.code == ErrorCode.REPORTS_GONE
        assert err.message == f"reports before {report_seq(first)} are gone; use OpenOrders"
        r.send(OpenOrders(a.acked + 1))  # what the answer says to do
        got = r.read_until(lambda m: isinstance(m, Ack))
        assert [m.order_id for m in got if hasattr(m, "open_qty")] == [3]


def test_cancel_on_disconnect_cancels_after_the_grace_as_a_journaled_mass_cancel(tmp_path):
    async def leave(addr, grace_ms):
        a = await AsyncClient.connect(*addr, ALICE, cancel_on_disconnect_ms=grace_ms)
        for i in (1, 2, 3):
            await a.request(NewOrder, i, 1, Side.BUY, 10, 100 - i)
        await a.close_and_wait()
        return a

    async def open_orders(addr):
        c = await AsyncClient.connect(*addr, ALICE2)
        got = await c.request(OpenOrders)
        await c.close_and_wait()
        return got[-1].count

    with running(tmp_path) as g:
        gw = g.gateway
        run(leave(gw.address, 50))
        wait_for(g, lambda: gw.metrics.cancel_on_disconnect == 1)
        assert run(open_orders(gw.address)) == 0
        # back within the grace: nothing is cancelled
        a = run(leave(gw.address, 60_000))
        r = Raw(gw.address)
        logon(r, ALICE, a.acked)
        r.close()
        wait_for(g, lambda: gw.table.by_id[1].conn is None)
        assert run(open_orders(gw.address)) == 3
        assert g.call(lambda: gw.metrics.cancel_on_disconnect) == 1
        inputs = [rec.type_id for rec in gw.processor.input.reader(0)]
    assert inputs.count(Command.MASS_CANCEL) == 1  # journaled: a replay reproduces it
    with running(tmp_path) as g:  # recovered by replay: the first three stay cancelled
        assert run(open_orders(g.gateway.address)) == 3
