"""Soak: 8 clients trade while reconnecting at random moments (an abrupt abort or a clean
close, with commands in flight); afterwards 0 misrouted answers and every fill exactly once,
checked against the output journal. Five minutes under `make stress` (-m stress); a few
seconds in `make test`."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest

from ringlog.client import AsyncClient, LogonRejected
from ringlog.engine.records import Report as R
from ringlog.engine.records import Side, Tif
from ringlog.gateway.protocol import Cancel, Error, Heartbeat, NewOrder, Report
from ringlog.gateway.session import TRADE, GatewayConfig, Limits, SessionEntry
from ringlog.journal import JournalReader

from gateway_helpers import running

pytestmark = pytest.mark.stress

CLIENTS = 8
ACCOUNT0 = 200


def soak_config() -> GatewayConfig:
    return GatewayConfig(port=0, limits=Limits(rate=1e6, burst=1_000_000), sessions=[
        SessionEntry(i, f"soak-token-{i}", ACCOUNT0 + i) for i in range(1, CLIENTS + 1)])


class Trader:
    """One client: sends batches, sometimes drops the connection before awaiting them,
    checks that every answer names the order it was sent for, collects its fills."""

    def __init__(self, i: int, addr: tuple[str, int], seed: int) -> None:
        self.i = i
        self.account = ACCOUNT0 + i
        self.rng = random.Random(seed)
        self.client = AsyncClient(*addr, f"soak-token-{i}")
        self.next_id = 1
        self.live: list[int] = []
        self.fills: list[int] = []  # report seqs of this account's trade reports
        self.misrouted: list[str] = []
        self.reconnects = 0

    async def logon(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            try:
                await self.client.logon()
                return
            except LogonRejected:  # the old connection is not yet gone on the server
                assert time.monotonic() < deadline
                await asyncio.sleep(0.005)

    async def drop(self) -> None:
        c = self.client
        if self.rng.random() < 0.5 and c._proto is not None and c._proto.transport is not None:
            c._proto.transport.abort()  # abrupt: whatever was on the wire is lost
        await c.close_and_wait()
        await asyncio.sleep(self.rng.random() * 0.02)
        self.reconnects += 1
        await self.logon()

    def send_batch(self) -> list[tuple[int, int]]:
        r, c = self.rng, self.client
        sent = []
        for _ in range(r.randrange(1, 6)):
            if self.live and r.random() < 0.3:
                oid = self.live.pop(r.randrange(len(self.live)))
                sent.append((c.send(Cancel, oid), oid))
            else:
                oid = self.next_id
                self.next_id += 1
                side = Side.BUY if r.random() < 0.5 else Side.SELL
                tif = Tif.IOC if r.random() < 0.2 else Tif.GTC
                sent.append((c.send(NewOrder, oid, 1, side, r.randrange(1, 6),
                                    r.randrange(95, 106), tif=tif), oid))
                self.live.append(oid)
        return sent

    async def run(self, deadline: float) -> None:
        await self.logon()
        while time.monotonic() < deadline:
            sent = self.send_batch()
            if self.rng.random() < 0.08:
                await asyncio.sleep(self.rng.random() * 0.003)  # a random moment in flight
                await self.drop()
            for seq, oid in sent:
                for m in await self.client.answers(seq, timeout=30):
                    if isinstance(m, Error):
                        continue
                    if not isinstance(m, Report) or m.order_id != oid:
                        self.misrouted.append(f"seq {seq} for order {oid}: {m}")
                    elif m.kind == "trade":
                        self.fills.append(m.rseq)
            self.take_events()

    def take_events(self) -> None:
        q = self.client.events
        while not q.empty():
            m = q.get_nowait()
            if isinstance(m, Report) and m.kind == "trade":
                self.fills.append(m.rseq)

    async def finish(self) -> None:
        await self.client.request(Heartbeat, timeout=30)  # everything before it has arrived
        self.take_events()
        await self.client.close_and_wait()


def soak(tmp_path, seconds: float, seed: int) -> None:
    with running(tmp_path, soak_config(), ring_capacity=1 << 12) as g:
        addr = g.gateway.address

        async def main() -> list[Trader]:
            traders = [Trader(i, addr, seed * 100 + i) for i in range(1, CLIENTS + 1)]
            deadline = time.monotonic() + seconds
            await asyncio.gather(*(t.run(deadline) for t in traders))
            for t in traders:
                await t.finish()
            return traders

        traders = asyncio.run(asyncio.wait_for(main(), seconds + 120))
        out = g.gateway.processor.output.path
        assert g.call(lambda: g.gateway.metrics.unexpected_exceptions) == 0
    expected: dict[int, Counter[int]] = {t.account: Counter() for t in traders}
    for rec in JournalReader(out).records(0):
        if rec.type_id == R.TRADE:
            _, _, t_acct, m_acct, *_ = TRADE.unpack(bytes(rec.payload))
            expected[t_acct][2 * rec.sequence + 1] += 1
            expected[m_acct][2 * rec.sequence + 2] += 1
    assert sum(t.reconnects for t in traders) >= CLIENTS  # the soak did reconnect
    assert sum(len(e) for e in expected.values()) > 0  # and trade
    for t in traders:
        assert t.misrouted == [], t.misrouted[:5]
        got = Counter(t.fills)
        assert [r for r, n in got.items() if n > 1] == [], "duplicated fills"
        assert got == expected[t.account], (
            f"client {t.i}: lost {sorted(expected[t.account] - got)[:10]}, "
            f"unexpected {sorted(got - expected[t.account])[:10]}")


@pytest.mark.timeout(600)  # the long form trades for 300 s, then checks
def test_reconnecting_traders_get_every_fill_once_and_no_misrouted_answer(tmp_path, request):
    long = "stress" in (request.config.getoption("markexpr") or "")
    soak(tmp_path, 300.0 if long else 4.0, seed=1)
