"""Timeouts, connection caps and what a closed connection leaves behind (docs/protocol.md,
"Timeouts and connection limits"). Timeouts are short here; every wait is bounded and no
assertion depends on how fast the machine is (a timeout fires at its time or later)."""

from __future__ import annotations

import time

from ringlog.engine.records import Side
from ringlog.gateway.protocol import (
    Ack,
    Error,
    ErrorCode,
    Heartbeat,
    Logon,
    LogonAck,
    NewOrder,
    encode_frame,
)
from ringlog.gateway.session import Limits

from gateway_helpers import ALICE, BOB, Raw, config, logon, running

SHORT = Limits(logon_timeout=0.3, idle_timeout=0.3, frame_timeout=0.3)


def wait_for(g, fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not g.call(fn):
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def timeout_error(r):
    got = r.read_until(lambda m: isinstance(m, Error), timeout=10)
    assert got[-1].code == ErrorCode.TIMEOUT
    assert r.closed_by_peer(10)
    return got[-1].message


def test_a_connection_that_never_logs_on_is_closed(tmp_path):
    with running(tmp_path, config(SHORT)) as g:
        r = Raw(g.gateway.address)
        assert "no logon" in timeout_error(r)


def test_a_silent_session_is_closed_after_the_idle_timeout(tmp_path):
    with running(tmp_path, config(SHORT)) as g:
        r = Raw(g.gateway.address)
        assert isinstance(logon(r, ALICE), LogonAck)
        assert "nothing heard" in timeout_error(r)


def test_a_session_that_keeps_talking_is_not_idle(tmp_path):
    # heartbeats every ~50 ms against a 1 s idle timeout: a loaded machine (a CI neighbour)
    # may stall either side for hundreds of ms without the session going quiet for 1 s
    lim = Limits(logon_timeout=1.0, idle_timeout=1.0, frame_timeout=1.0)
    with running(tmp_path, config(lim)) as g:
        r = Raw(g.gateway.address)
        logon(r, ALICE)
        t_end = time.monotonic() + 3.2  # > 3 idle timeouts
        seq = 0
        while time.monotonic() < t_end:
            seq += 1
            r.send(Heartbeat(seq))
            assert r.read(1) == [Ack(seq)]
            time.sleep(0.05)
        assert g.call(lambda: g.gateway.metrics.timeouts) == 0


def test_half_a_frame_held_is_closed_after_the_frame_timeout(tmp_path):
    lim = Limits(logon_timeout=60, idle_timeout=60, frame_timeout=0.3)
    with running(tmp_path, config(lim)) as g:
        r = Raw(g.gateway.address)
        logon(r, ALICE)
        frame = encode_frame(NewOrder(1, 1, 1, Side.BUY, 1, 100))
        r.send_bytes(frame[:7])  # and never the rest
        assert "incomplete" in timeout_error(r)
        other = Raw(g.gateway.address)  # the session is free again, nothing was taken
        assert logon(other, ALICE).session_seq == 0


def test_connections_over_the_total_or_per_peer_cap_are_refused(tmp_path):
    for lim, n in ((Limits(max_connections=5), 5), (Limits(max_connections_per_peer=3), 3)):
        with running(tmp_path / str(n), config(lim)) as g:
            held = [Raw(g.gateway.address) for _ in range(n)]
            wait_for(g, lambda n=n: len(g.gateway.connections) == n)
            extra = Raw(g.gateway.address)
            (err,) = extra.read(1)
            assert err.code == ErrorCode.CONNECTION_LIMIT and "limit" in err.message
            assert extra.closed_by_peer()
            held[0].close()  # one leaves: one more fits
            wait_for(g, lambda n=n: len(g.gateway.connections) == n - 1)
            again = Raw(g.gateway.address)
            assert isinstance(logon(again, ALICE), LogonAck)
            assert g.call(lambda: g.gateway.metrics.refused) == 1


def test_a_closed_connection_frees_everything_it_held(tmp_path):
    with running(tmp_path) as g:
        gw = g.gateway
        raws = []
        for i in range(20):
            r = Raw(gw.address)
            if i % 4 == 0:
                logon(r, ALICE if i % 8 == 0 else BOB)
                r.send_bytes(encode_frame(Heartbeat(1))[:3])  # half a frame in the decoder
            else:
                r.send_bytes(b"\0\0")  # not even a length
            raws.append(r)
            if i % 4 == 0:
                r.close()
                wait_for(g, lambda: not gw.table.by_id[1].conn and not gw.table.by_id[2].conn)
        for r in raws:
            r.close()
        wait_for(g, lambda: not gw.connections)
        assert g.call(lambda: (gw.peers, len(gw.dirty), [s.conn for s in
                                                          gw.table.by_id.values()])) == \
            ({}, 0, [None] * 4)
        r = Raw(gw.address)  # and the sessions log on again
        r.send(Logon(0, ALICE))
        assert r.read(1)[0].session_seq == 0
