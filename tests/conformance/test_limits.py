"""Timeouts and connection caps over the wire (docs/protocol.md, "Heartbeats, timeouts and
connection limits"). The conformance server runs with logon and frame timeouts of 1 s and
48 connections per address."""

from __future__ import annotations

import time

from .wire import (
    ACK,
    CONNECTION_LIMIT,
    ERROR,
    HEARTBEAT,
    LOGON_ACK,
    TIMEOUT,
    Peer,
    frame,
    logon,
)


def closed_with_timeout(p):
    m = p.until(lambda m: m[0] == ERROR, timeout=15)[-1]
    assert m[1] == TIMEOUT
    assert p.closed(15)
    return m[2]


def test_a_connection_that_never_logs_on_is_closed(server):
    p = Peer(server.address)
    assert "no logon" in closed_with_timeout(p)


def test_half_a_frame_is_closed_after_the_frame_timeout(server):
    p = Peer(server.address)
    p.send(logon(0, server.token()))
    assert p.next()[0] == LOGON_ACK
    p.send(frame(HEARTBEAT, 1)[:3])
    assert "incomplete" in closed_with_timeout(p)


def test_a_heartbeat_session_silent_past_its_grace_is_closed(server):
    p = Peer(server.address)
    p.send(logon(0, server.token(), heartbeat_ms=200))
    assert p.next()[0] == LOGON_ACK
    assert "nothing heard" in closed_with_timeout(p)


def test_a_talking_session_stays(server):
    p = Peer(server.address)
    p.send(logon(0, server.token(), heartbeat_ms=300))
    p.next()
    end = time.monotonic() + 2.0
    seq = 0
    while time.monotonic() < end:
        seq += 1
        p.send(frame(HEARTBEAT, seq))
        assert p.next() == [ACK, seq]
        time.sleep(0.1)


def test_connections_past_the_per_address_cap_are_refused(server):
    peers = []
    refused = None
    for _ in range(60):
        p = Peer(server.address)
        p.send(logon(0, "not-a-token-but-keeps-it-open")[:2])  # a partial frame: no answer yet
        peers.append(p)
    for p in peers:  # the 49th and later were refused at once
        p.sock.settimeout(0.5)
    for p in peers[48:]:
        refused = p.next(5)
        assert refused[:2] == [ERROR, CONNECTION_LIMIT]
        assert p.closed()
    for p in peers[:48]:
        p.close()
    deadline = time.monotonic() + 10
    while True:  # the closed ones free their places
        q = Peer(server.address)
        q.send(logon(0, server.token()))
        m = q.next()
        if m[0] == LOGON_ACK:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
