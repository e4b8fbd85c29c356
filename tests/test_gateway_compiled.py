"""The gateway's compiled per-order path (ringlog._gateway): order frames decoded straight into
command records accept exactly what the protocol's decoder accepts and make the same records;
report frames written in C are byte for byte msgspec's; the resend store keeps frames within
its budget; a read mixing order frames with other messages is answered as the per-message path
answers it."""

from __future__ import annotations

import struct

import msgspec
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ringlog import Ring
from ringlog._gateway import CommandBatch, ResendStore
from ringlog.engine.records import CancelReason, RejectReason, Side
from ringlog.engine.records import Report as R
from ringlog.gateway.protocol import (
    Ack,
    Cancel,
    Error,
    ErrorCode,
    FrameDecoder,
    Heartbeat,
    Modify,
    NewOrder,
    OpenOrdersEnd,
    ServerMessage,
    encode_frame,
)
from ringlog.gateway.session import (
    COMMAND,
    L1,
    L2_HEAD,
    REPORT,
    TRADE,
    GatewayConfig,
    Limits,
    SessionEntry,
    SessionTable,
    correlation,
)

from gateway_helpers import Raw, config, logon, running

I64 = st.integers(-(1 << 63), (1 << 63) - 1)
# mostly in range (the accepting branch), sometimes anything (the refusing one)
ANY_INT = st.one_of(*[st.integers(1, 250)] * 12, I64,
                    st.integers(-(1 << 64), 1 << 64), st.sampled_from([0, 255, 256, 1 << 32]))


def _table():
    return SessionTable(GatewayConfig(port=0, sessions=[
        SessionEntry(1, "token-one", 7), SessionEntry(2, "token-two", 8),
        SessionEntry(3, "token-three", 7)]))


def _old_record(msg, account):
    """The command record the per-message path packed before the fast path existed."""
    eid = account << 32 | msg.order_id
    if type(msg) is NewOrder:
        return 101, COMMAND.pack(eid, msg.price, msg.qty, account, msg.symbol, msg.side,
                                 msg.order_type, msg.tif, 1 if msg.post_only else 0, msg.stp,
                                 msg.seq)
    if type(msg) is Cancel:
        return 102, COMMAND.pack(eid, 0, 0, account, 0, 0, 0, 0, 0, 0, msg.seq)
    return 103, COMMAND.pack(eid, msg.new_price, msg.new_qty, account, 0, 0, 0, 0, 0, 0,
                             msg.seq)


@settings(max_examples=500, deadline=None)
@given(tag=st.sampled_from([4, 5, 6]), data=st.data(),
       post_only=st.one_of(st.booleans(), st.integers(0, 2)))
def test_the_fast_decoder_accepts_exactly_what_the_protocol_decoder_accepts(tag, data,
                                                                         post_only):
    full = {4: 11, 5: 3, 6: 5}[tag]  # the fast path takes complete messages only
    size = data.draw(st.one_of(st.just(full - 1), st.integers(1, 11)))
    fields = data.draw(st.lists(ANY_INT, min_size=size, max_size=size))
    body = [tag, *fields]
    if tag == 4 and len(body) > 9:
        body[9] = post_only  # the bool field (or an int where a bool belongs)
    try:
        frame = struct.pack(">I", 0) + msgspec.msgpack.encode(body)
    except OverflowError:
        return  # not representable in msgpack at all
    frame = struct.pack(">I", len(frame) - 4) + frame[4:]
    (msg,) = FrameDecoder().feed(frame)
    b = CommandBatch(4)
    got = b.scan(frame, 4096, -1, 4, 42)
    if isinstance(msg, (NewOrder, Cancel, Modify)) and len(body) == full:
        event("accepted")
        assert got == 1 and b.end(1) == len(frame)
        assert b.command(0) == _old_record(msg, 42)
    else:
        assert got == 0  # the per-message path decodes it (and names what is wrong)


def test_a_scan_stops_at_a_seq_out_of_turn_another_message_json_or_a_partial_frame():
    frames = [encode_frame(NewOrder(5, 1, 1, Side.BUY, 1, 10)), encode_frame(Cancel(6, 1)),
              encode_frame(Modify(7, 1, 11, 1))]
    b = CommandBatch(8)
    assert b.scan(b"".join(frames), 4096, 5, 8, 7) == 3 and b.first_seq == 5
    assert b.scan(b"".join(frames), 4096, 4, 8, 7) == 0  # 5 is not the next seq
    assert b.scan(b"".join(frames), 4096, 5, 2, 7) == 2  # at most `most`
    assert b.new_seqs(2) == [5] and b.prefix_with_news(2, 0) == 0
    mixed = frames[0] + encode_frame(Heartbeat(6)) + frames[1]
    assert b.scan(mixed, 4096, 5, 8, 7) == 1 and b.end(1) == len(frames[0])
    json = encode_frame(NewOrder(5, 1, 1, Side.BUY, 1, 10), "json")
    assert b.scan(json, 4096, 5, 8, 7) == 0
    assert b.scan(frames[0][:-1], 4096, 5, 8, 7) == 0
    assert b.scan(frames[0], len(frames[0]) - 5, 5, 8, 7) == 0  # over max_frame


def test_published_commands_carry_the_session_as_dedup_key_and_correlation():
    ring = Ring(8, 128)
    c = ring.consumer()
    b = CommandBatch(8)
    data = b"".join(encode_frame(Cancel(s, s)) for s in range(3, 8))
    assert b.scan(data, 4096, 3, 8, 9) == 5
    lo = b.publish(ring, 5, 2, 1234)
    assert lo == 0
    assert b.publish(ring, 5, 2, 1234) == -1  # no room for all five: nothing published
    events = list(c.poll(timeout=1.0))
    assert [(e.type_id, e.producer_id, e.producer_seq, e.correlation_id, e.timestamp_ns)
            for e in events] == [(102, 2, s, correlation(2, s), 1234) for s in range(3, 8)]
    assert bytes(events[0].payload) == _old_record(Cancel(3, 3), 9)[1]


def _frames(t, type_id, payload, corr, rseq=0):
    return [(s.id, seq, f) for s, seq, f in t.route_frames(type_id, payload, corr, rseq)]


@pytest.mark.parametrize(("type_id", "reason"), [
    (R.ACCEPTED, 0), (R.REJECTED, RejectReason.PRICE_BAND), (R.REJECTED, 250),
    (R.CANCELLED, CancelReason.UNFILLED), (R.MODIFIED, 0), (R.RESTED, 0)])
def test_report_frames_are_msgspecs_bytes(type_id, reason):
    t = _table()
    t.set_drop_copy(t.by_id[3], True)
    payload = REPORT.pack(7 << 32 | 4, 7, 3, -(1 << 40), 1 << 62, 300, Side.BUY, reason, 1)
    out = t.route_frames(type_id, payload, correlation(1, 1 << 39), 12345)
    assert [(s.id, seq) for s, seq, _ in out] == [(1, 1 << 39), (3, 0)]
    for (_, _, frame), (_, _, msg) in zip(out, t.route(type_id, payload, correlation(1, 5)),
                                          strict=True):
        assert frame == encode_frame(FrameDecoder(ServerMessage).feed(frame)[0])
        assert type(msg).__name__ == "Report"


def test_trade_order_info_end_and_market_data_frames_are_msgspecs_bytes():
    t = _table()
    s1, s2 = t.by_id[1], t.by_id[2]
    t.subscribe(s1, 5, 1)
    t.subscribe(s2, 5, 3)
    trade = TRADE.pack(8 << 32 | 3, 7 << 32 | 4, 8, 7, 1, Side.SELL, 100, 2, 0, 3)
    info = REPORT.pack(7 << 32 | 1, 7, 1, 100, 5, 5, Side.BUY, 0, 6)
    end = REPORT.pack(3, 7, 0, 0, 0, 0, 0, 0, 6)
    l2 = L2_HEAD.pack(5, 3, 2, 1) + struct.pack("<12q", 100, 1, 99, 2, 0, 0, 101, 3, 0, 0,
                                                   0, 0)
    got = (_frames(t, R.TRADE, trade, correlation(2, 5), 99) +
           _frames(t, R.ORDER_INFO, info, correlation(1, 6)) +
           _frames(t, R.OPEN_ORDERS_END, end, correlation(1, 7)) +
           _frames(t, R.L1, L1.pack(5, 100, 1, 101, 3), 0) + _frames(t, R.L2, l2, 0))
    assert [(sid, seq) for sid, seq, _ in got] == [
        (2, 5), (1, 0), (3, 0), (1, 6), (1, 7), (1, 0), (2, 0), (2, 0), (2, 0)]
    for _, _, frame in got:
        (msg,) = FrameDecoder(ServerMessage).feed(frame)
        assert frame == encode_frame(msg)


def test_the_resend_store_keeps_frames_and_gives_the_first_n_back():
    st_ = ResendStore(window=3, budget=10_000)
    for seq in (1, 2, 3, 4):
        st_.record(seq, encode_frame(Ack(seq)))
    assert list(st_) == [2, 3, 4] and st_.evicted == 1
    st_.record(4, encode_frame(OpenOrdersEnd(4, 1)))
    assert st_.count(4) == 2 and st_.get(4, 1) == encode_frame(Ack(4))
    assert st_.get(4) == encode_frame(Ack(4)) + encode_frame(OpenOrdersEnd(4, 1))
    assert st_.get(99) == b"" and 99 not in st_
    small = ResendStore(window=10, budget=600)
    for i in range(5):
        small.record(1, encode_frame(OpenOrdersEnd(1, i)))
    assert small.kept <= 600 and 1 in small.overflowed
    (err,) = FrameDecoder(ServerMessage).feed(small.get(1, 1))  # one error frame, whole
    assert err.code == ErrorCode.MEMORY_LIMIT and "ask again" in err.message


def test_a_read_mixing_orders_with_other_messages_is_answered_in_order(tmp_path):
    lim = Limits(rate=1.0, burst=6, max_open_orders=3)
    with running(tmp_path, config(lim)) as g:
        r = Raw(g.gateway.address)
        logon(r, "token-alice")
        frames = [NewOrder(1, 1, 1, Side.BUY, 1, 10), NewOrder(2, 2, 1, Side.BUY, 1, 10),
                  Heartbeat(3), NewOrder(4, 3, 1, Side.BUY, 1, 10),
                  NewOrder(5, 4, 1, Side.BUY, 1, 10),  # over max_open_orders
                  Cancel(6, 1), Cancel(7, 2), Cancel(8, 3)]  # 7, 8: over the burst of 6
        r.send_bytes(b"".join(encode_frame(m) for m in frames))
        got = r.read_until(lambda m: isinstance(m, Ack) and m.seq >= 8, timeout=30)
        errors = {m.seq: m.code for m in got if isinstance(m, Error)}
        assert errors == {5: ErrorCode.LIMIT_EXCEEDED, 7: ErrorCode.RATE_LIMITED,
                          8: ErrorCode.RATE_LIMITED}
        kinds = [(m.seq, m.kind) for m in got if type(m).__name__ == "Report"]
        assert (1, "rested") in kinds and (4, "rested") in kinds and (6, "cancelled") in kinds
        taken = g.call(lambda: g.gateway.metrics.messages)
        assert taken == 9  # the logon and eight messages, each counted once
        r.close()


@pytest.mark.parametrize("big_id", [70_000, (1 << 23) - 1])
def test_sessions_with_large_ids_are_routed_like_small_ones(big_id):
    # ids up to 65536 are found by list index in the router, larger ones by dict
    t = SessionTable(GatewayConfig(port=0, sessions=[
        SessionEntry(2, "token-small", 7), SessionEntry(big_id, "token-large", 8)]))
    for sid, acct in ((2, 7), (big_id, 8)):
        payload = REPORT.pack(acct << 32 | 4, acct, 3, 100, 5, 5, Side.BUY, 0, 1)
        mine = _frames(t, R.ACCEPTED, payload, correlation(sid, 9))
        assert [(s, q) for s, q, _ in mine] == [(sid, 9)]
        # an unknown session's command: the account hears it unsolicited (seq 0)
        other = _frames(t, R.ACCEPTED, payload, correlation(sid - 1, 9))
        assert [(s, q) for s, q, _ in other] == [(sid, 0)]
