"""The per-session memory budget (docs/protocol.md, "Memory"): answers kept for resends stay
within ``session_memory`` bytes by the server's own accounting, unsent output within
``max_buffered``, and many hostile sessions asking for large replies without reading cannot
take the server past the sum of their budgets."""

from __future__ import annotations

import time

import pytest

from ringlog.engine.records import Side
from ringlog.gateway.protocol import (
    Ack,
    Error,
    ErrorCode,
    NewOrder,
    OpenOrders,
    OpenOrdersEnd,
    encode_frame,
)
from ringlog.gateway.session import (
    ANSWER_COST,
    GatewayConfig,
    Limits,
    Session,
    SessionEntry,
)

from gateway_helpers import Raw, logon, running

BASE = {"session_memory": 64 << 10, "high_water": 64 << 10, "low_water": 16 << 10,
        "rate": 1e6, "burst": 100_000, "socket_buffer": 16 << 10}
# closed as slow consumers: their in-flight queries answer more than max_buffered
CLOSED = Limits(max_buffered=256 << 10, **BASE)
# paused, never closed: a few queries in flight fit under max_buffered
PAUSED = Limits(max_buffered=1 << 20, max_inflight=4, **BASE)
HOSTILE = 6
RESTING = 200


def cfg(lim):
    return GatewayConfig(port=0, limits=lim, sessions=[
        SessionEntry(i, f"hostile-token-{i}", 100 + i % 3) for i in range(1, HOSTILE + 2)])


def test_resend_store_stays_within_its_byte_budget_and_says_so_for_a_huge_answer():
    s = Session(SessionEntry(1, "token-abcdef", 7), Limits(session_memory=10_000))
    for seq in range(1, 200):
        s.record(seq, Ack(seq))
        assert s.kept <= 10_000
    assert s.evicted > 0 and 199 in s.answers and 1 not in s.answers
    for i in range(500):  # one reply far larger than the budget
        s.record(200, OpenOrdersEnd(200, i))
        assert s.kept <= 10_000
    (err,) = s.answers[200]
    assert err.code == ErrorCode.MEMORY_LIMIT and "ask again" in err.message
    s.record(201, Ack(201))
    assert s.answers[201] == [Ack(201)]


@pytest.mark.parametrize("LIM", [CLOSED, PAUSED], ids=["closed", "paused"])
def test_many_hostile_sessions_cannot_take_the_server_past_their_budgets(tmp_path, LIM):
    with running(tmp_path, cfg(LIM)) as g:
        gw = g.gateway
        raws = []
        for i in range(1, HOSTILE + 1):
            r = Raw(gw.address, rcvbuf=4096)
            logon(r, f"hostile-token-{i}")
            # resting orders (each account's open-order list grows with its sessions)
            r.send_bytes(b"".join(encode_frame(NewOrder(k, k, 1, Side.BUY, 1, 50 + k % 40))
                                  for k in range(1, RESTING + 1)))
            r.read_until(lambda m: m == Ack(RESTING), timeout=30)
            raws.append(r)
        # every hostile session asks for its account's open orders again and again, and
        # stops reading: each answer is hundreds of OrderInfos
        for r in raws:
            r.send_bytes(b"".join(encode_frame(OpenOrders(RESTING + k))
                                  for k in range(1, 201)))
        budget = LIM.session_memory + LIM.max_buffered + 64 * 1024 * ANSWER_COST // 5
        peak = {}
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:  # sample while the server works and waits
            mem = g.call(gw.memory)
            for sid, n in mem.items():
                peak[sid] = max(peak.get(sid, 0), n)
            time.sleep(0.05)
        kept = g.call(lambda: {s.id: s.kept for s in gw.table.by_id.values()})
        assert all(n <= LIM.session_memory for n in kept.values())
        slow = g.call(lambda: gw.metrics.slow_consumers)
        if LIM is PAUSED:  # held, not closed: their unsent output is what the budget holds
            assert slow == 0 and min(peak[i] for i in range(1, HOSTILE + 1)) > \
                LIM.session_memory
        else:
            assert slow == HOSTILE
        assert all(n <= budget for n in peak.values()), peak
        assert sum(peak.values()) <= HOSTILE * budget
        evicted = g.call(lambda: sum(s.evicted for s in gw.table.by_id.values()))
        overflowed = g.call(lambda: sum(len(s.overflowed) for s in gw.table.by_id.values()))
        assert evicted + overflowed > 0  # the budget was what held it, not a quiet run
        for r in raws:
            r.close()
        deadline = time.monotonic() + 10
        while g.call(lambda: len(gw.connections)):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        mem = g.call(gw.memory)  # only the resend stores remain, within their budget
        assert mem[0] == 0 and all(n <= LIM.session_memory for n in mem.values())
        # a bystander still trades
        b = Raw(gw.address)
        logon(b, f"hostile-token-{HOSTILE + 1}")
        b.send(NewOrder(1, 99_999, 2, Side.BUY, 1, 10))
        got = b.read_until(lambda m: m == Ack(1), timeout=30)
        assert [m.kind for m in got if not isinstance(m, (Ack, Error))] == ["accepted", "rested"]
