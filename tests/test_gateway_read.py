"""The compiled read path (``ringlog._gateway.GatewayCore.read``): a logged-on connection's
read of order frames is taken in one call, and whatever it leaves (another message, a frame a
rule refuses, a partial frame, the in-flight window, a full ring, a halted breaker) gets the
answers the per-message path gives. The reference is the same gateway with the fast path off
(``_fast = False``, as a cluster gateway runs): every frame through ``Gateway.handle``.

Reads are fed to the server's own ``Connection.data_received`` on the gateway's thread, so
where a read splits the stream is the test's choice, not the kernel's."""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringlog import Breaker, BreakerConfig, Limit
from ringlog.engine.records import Side
from ringlog.gateway.protocol import (
    Ack,
    Cancel,
    ErrorCode,
    Halted,
    Heartbeat,
    Modify,
    NewOrder,
    encode_frame,
)
from ringlog.gateway.session import Limits

from gateway_helpers import ALICE, Raw, config, frame_of, logon, running


class Peer:
    """One gateway with one logged-on raw client; ``feed`` hands bytes to the server's
    connection as one read."""

    def __init__(self, g: Any, fast: bool) -> None:
        self.g = g
        self.gw = g.gateway
        g.call(lambda: setattr(self.gw, "_fast", fast))
        self.raw = Raw(self.gw.address)
        logon(self.raw, ALICE)
        self.conn = g.call(lambda: next(c for c in self.gw.connections if c.session))
        self.session = self.conn.session

    def feed(self, data: bytes) -> int:
        """One read of ``data``; returns what ``Gateway.read`` returned for it."""
        got = []

        def one() -> None:
            got.append(self.gw.read(self.conn, data))
            if got[0] >= 0:
                self.conn._received(data, got[0])

        self.g.call(one)
        return got[0]

    def answers(self, timeout: float = 30.0) -> tuple[dict[int, list[Any]], list[str], int]:
        """Every answer until everything taken is acked: per seq in order (Acks left out,
        their timing is the loop's), the unsolicited ones sorted, and the last seq taken."""
        def settled() -> bool:  # every frame fed is handled (the window, a parked backlog)
            c = self.conn
            return not (c.paused or c.decoder.buffered or self.gw.backlog)

        deadline = time.monotonic() + timeout
        while not self.g.call(settled):
            assert time.monotonic() < deadline, "the frames fed were never all handled"
            threading.Event().wait(0.005)
        last = self.g.call(lambda: self.session.last_seen)
        got = self.raw.read_until(lambda m: type(m) is Ack and m.seq >= last, timeout) \
            if last else []
        by_seq: dict[int, list[Any]] = defaultdict(list)
        unsolicited = []
        for m in got:
            if type(m) is Ack:
                continue
            if getattr(m, "seq", 0):
                by_seq[m.seq].append(m)
            else:
                unsolicited.append(repr(m))
        return dict(by_seq), sorted(unsolicited), last


def _both(tmp_path: Any, cfg: Any, reads: list[bytes], **kw: Any) -> list[Any]:
    """The answers of the fast gateway and of the per-message one to the same reads, and
    what ``read`` returned for each read on the fast one."""
    out = []
    for fast in (True, False):
        with running(tmp_path / str(fast), cfg, **kw) as g:
            p = Peer(g, fast)
            took = [p.feed(r) for r in reads]
            out.append((p.answers(), took))
    (fast_answers, took), (slow_answers, _) = out
    assert fast_answers == slow_answers
    return [fast_answers, took]


def _frames(*msgs: Any) -> bytes:
    return b"".join(encode_frame(m) for m in msgs)


def _rest(seq: int, oid: int, price: int = 10) -> NewOrder:
    return NewOrder(seq, oid, 1, Side.BUY, 1, price)  # far below any ask: it rests


def test_a_read_of_order_frames_is_taken_whole_in_one_call(tmp_path):
    (by_seq, _, last), took = _both(tmp_path, config(), [
        _frames(_rest(1, 1), _rest(2, 2), Cancel(3, 1), Modify(4, 2, 11, 2))])
    assert took == [-1]  # done in C: nothing left for the decoder
    assert last == 4
    assert [m.kind for m in by_seq[3]] == ["cancelled"]
    assert by_seq[4][0].kind == "modified"


def test_a_mixed_read_is_split_at_the_first_other_frame(tmp_path):
    head = _frames(_rest(1, 1), _rest(2, 2))
    reads = [head + _frames(Heartbeat(3), _rest(4, 3)) + frame_of(b"\xc1") + _frames(_rest(5, 4))]
    (by_seq, unsolicited, last), took = _both(tmp_path, config(), reads)
    assert took == [len(head)]  # the orders before the heartbeat; the rest per message
    assert last == 5 and set(by_seq) == {1, 2, 4, 5}
    assert any(u.startswith("Error(") for u in unsolicited)  # the garbage frame's


def test_a_partial_frame_across_reads_is_kept_and_completed(tmp_path):
    whole = _frames(_rest(1, 1), _rest(2, 2), _rest(3, 3))
    cut = len(_frames(_rest(1, 1), _rest(2, 2))) + 7  # inside the third frame
    (by_seq, _, last), took = _both(tmp_path, config(), [whole[:cut], whole[cut:]])
    assert took == [cut - 7, 0]  # two orders in C; then the decoder has a partial frame
    assert last == 3 and all(by_seq[s][0].kind == "accepted" for s in (1, 2, 3))


def test_a_refused_order_in_the_middle_of_a_batch_is_answered_by_the_message_path(tmp_path):
    cfg = config(Limits(max_open_orders=2))
    reads = [_frames(_rest(1, 1), _rest(2, 2), _rest(3, 3), Cancel(4, 1))]
    (by_seq, _, last), took = _both(tmp_path, cfg, reads)
    assert took == [len(_frames(_rest(1, 1), _rest(2, 2)))]
    assert by_seq[3][0].code == ErrorCode.LIMIT_EXCEEDED
    assert [m.kind for m in by_seq[4]] == ["cancelled"] and last == 4


def test_rate_tokens_run_out_inside_a_read(tmp_path):
    cfg = config(Limits(rate=0.001, burst=3))  # no refill within the test
    reads = [_frames(*(_rest(i, i) for i in range(1, 6)))]
    (by_seq, _, _), took = _both(tmp_path, cfg, reads)
    assert took == [len(_frames(*(_rest(i, i) for i in range(1, 4))))]
    assert [by_seq[s][0].code for s in (4, 5)] == [ErrorCode.RATE_LIMITED] * 2


def test_the_inflight_window_reached_inside_a_read_pauses_and_the_rest_follow(tmp_path):
    cfg = config(Limits(max_inflight=2))
    reads = [_frames(*(_rest(i, i) for i in range(1, 7)))]
    (by_seq, _, last), took = _both(tmp_path, cfg, reads)
    assert took == [len(_frames(_rest(1, 1), _rest(2, 2)))]  # then paused: "inflight"
    assert last == 6 and sorted(by_seq) == [1, 2, 3, 4, 5, 6]


def test_a_read_larger_than_the_ring_goes_through_the_message_path(tmp_path):
    reads = [_frames(*(_rest(i, i) for i in range(1, 41)))]
    (by_seq, _, last), took = _both(tmp_path, config(), reads, ring_capacity=16)
    assert took == [0]  # no room for 40 at once: declined whole, nothing changed
    assert last == 40 and sorted(by_seq) == list(range(1, 41))


def test_orders_read_while_the_breaker_is_halted_are_answered_halted(tmp_path):
    # 3 outputs at start (the accounts' open-orders queries), 3 per resting order: the
    # 16th output (order 5's) trips
    for fast in (True, False):
        b = Breaker(BreakerConfig(limits=[Limit(max_count=15, window_ns=10**15)]))
        with running(tmp_path / str(fast), breaker=b) as g:
            p = Peer(g, fast)
            assert p.feed(_frames(*(_rest(i, i) for i in range(1, 6)))) == (-1 if fast else 0)
            proc = g.gateway.processor
            deadline = time.monotonic() + 10
            while not proc.halted:
                assert time.monotonic() < deadline, "the breaker never tripped"
                threading.Event().wait(0.01)
            assert p.feed(_frames(_rest(6, 6), _rest(7, 7), Heartbeat(8))) == 0
            got = p.raw.read_until(lambda m: type(m) is Halted and m.seq == 7)
            assert [m.seq for m in got if type(m) is Halted] == [6, 7]
            assert g.call(lambda: g.gateway.metrics.halted) == 2


# -- the property: random streams split at random points ------------------------------------
_op = st.one_of(
    st.tuples(st.just("rest"), st.integers(1, 20)),
    st.tuples(st.just("cross"), st.integers(1, 20)),  # a sell at or below resting bids
    st.tuples(st.just("cancel"), st.integers(1, 20)),
    st.tuples(st.just("modify"), st.integers(1, 20)),
    st.tuples(st.just("heartbeat"), st.just(0)),
    st.tuples(st.just("gap"), st.integers(2, 5)),
    st.tuples(st.just("garbage"), st.just(0)),
    st.tuples(st.just("bad_field"), st.just(0)),
)


def _stream(ops: list[tuple[str, int]]) -> bytes:
    out = []
    seq = 0
    for kind, x in ops:
        if kind == "gap":
            out.append(encode_frame(Heartbeat(seq + x)))  # skips ahead: refused, not taken
            continue
        if kind == "garbage":
            out.append(frame_of(b"\xc1"))
            continue
        seq += 1
        if kind == "rest":
            out.append(encode_frame(NewOrder(seq, x, 1, Side.BUY, 2, 10 + x)))
        elif kind == "cross":
            out.append(encode_frame(NewOrder(seq, 100 + seq, 1, Side.SELL, 1, 5)))
        elif kind == "cancel":
            out.append(encode_frame(Cancel(seq, x)))
        elif kind == "modify":
            out.append(encode_frame(Modify(seq, x, 9 + x, 3)))
        elif kind == "heartbeat":
            out.append(encode_frame(Heartbeat(seq)))
        else:  # order id 0 is out of range: the protocol's decoder names it
            out.append(encode_frame(NewOrder(seq, 0, 1, Side.BUY, 1, 10)))
            seq -= 1  # not taken
    return b"".join(out)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(_op, min_size=1, max_size=40),
       cuts=st.lists(st.integers(0, 4000), max_size=8),
       window=st.sampled_from([3, 1024]))
def test_random_reads_get_the_answers_of_the_per_message_path(tmp_path_factory, ops, cuts,
                                                              window):
    data = _stream(ops)
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    reads = [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    cfg = config(Limits(max_inflight=window, max_errors=1000))
    _both(tmp_path_factory.mktemp("reads"), cfg, reads)


@pytest.mark.parametrize("fast", [True, False])
def test_bytes_in_and_messages_are_counted_once_per_read_and_message(tmp_path, fast):
    with running(tmp_path) as g:
        p = Peer(g, fast)
        before = g.call(lambda: (g.gateway.metrics.bytes_in, g.gateway.metrics.messages))
        data = _frames(_rest(1, 1), _rest(2, 2), Heartbeat(3))
        p.feed(data[:5])
        p.feed(data[5:])
        p.answers()
        after = g.call(lambda: (g.gateway.metrics.bytes_in, g.gateway.metrics.messages))
        assert (after[0] - before[0], after[1] - before[1]) == (len(data), 3)


class _Transport:
    """What flush() uses of a transport: it records the writes."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytearray) -> None:
        self.written.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return 0


@pytest.mark.parametrize("seq", [1, 127, 128, 255, 256, 65_535, 65_536, 2**32, 2**40 - 1])
def test_the_compiled_flush_writes_msgspecs_ack_frame(seq):
    from ringlog._gateway import ConnectionCore, GatewayCore, Outbox
    from ringlog.gateway.connection import GatewayMetrics
    from ringlog.gateway.session import SessionTable

    cfg = config()
    table = SessionTable(cfg)
    gw = GatewayCore(None, table, GatewayMetrics(), cfg.limits)
    conn = ConnectionCore()
    conn.gw, conn.outbox, conn.paused = gw, Outbox(conn), set()
    conn.transport = t = _Transport()
    conn.session = s = table.by_id[1]
    s.last_seen = seq
    conn.flush()
    assert t.written == [encode_frame(Ack(seq))] and s.acked == seq
    assert gw.metrics.bytes_out == len(t.written[0])
    conn.flush()  # nothing moved: nothing written
    assert len(t.written) == 1
