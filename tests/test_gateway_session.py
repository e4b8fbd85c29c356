"""Gateway sessions without sockets: config, binary layouts, sequencing state, routing."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringlog.engine.records import (
    COMMAND_DTYPE,
    L1_DTYPE,
    REPORT_DTYPE,
    TRADE_DTYPE,
    Command,
    Side,
)
from ringlog.engine.records import Report as R
from ringlog.gateway.protocol import Heartbeat, MarketData, NewOrder, Report
from ringlog.gateway.session import (
    COMMAND,
    L1,
    L2_HEAD,
    REPORT,
    TRADE,
    GatewayConfig,
    GatewayConfigError,
    Limits,
    SessionEntry,
    SessionTable,
    correlation,
    encode_command,
    load_config,
    split_correlation,
)


@pytest.mark.parametrize(("fmt", "dtype"), [(COMMAND, COMMAND_DTYPE), (REPORT, REPORT_DTYPE),
                                            (TRADE, TRADE_DTYPE), (L1, L1_DTYPE)])
def test_struct_layouts_match_the_engine_record_dtypes(fmt, dtype):
    assert fmt.size == dtype.itemsize
    names = [n for n in dtype.names if not n.startswith("_")]
    values = list(range(1, len(names) + 1))
    rec = np.frombuffer(fmt.pack(*values), dtype=dtype)[0]
    assert [int(rec[n]) for n in names] == values


def test_new_order_becomes_a_command_record_with_the_account_in_the_order_id():
    type_id, payload = encode_command(NewOrder(9, 5, 3, Side.SELL, 7, 101, post_only=True), 42)
    rec = np.frombuffer(payload, dtype=COMMAND_DTYPE)[0]
    assert type_id == Command.NEW
    assert int(rec["order_id"]) == 42 << 32 | 5 and int(rec["account"]) == 42
    assert (int(rec["symbol"]), int(rec["side"]), int(rec["qty"]), int(rec["price"])) == \
        (3, Side.SELL, 7, 101)
    assert int(rec["flags"]) == 1 and int(rec["client_tag"]) == 9


def test_non_engine_messages_are_not_commands():
    with pytest.raises(TypeError, match="Heartbeat"):
        encode_command(Heartbeat(1), 1)


@given(st.integers(1, (1 << 23) - 1), st.integers(1, (1 << 40) - 1))
def test_correlation_round_trips_and_stays_a_positive_int64(sid, seq):
    c = correlation(sid, seq)
    assert 0 < c < 1 << 63 and split_correlation(c) == (sid, seq)


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="appears twice"):
        GatewayConfig(sessions=[SessionEntry(1, "aaaaaaaa", 1), SessionEntry(1, "bbbbbbbb", 2)])
    with pytest.raises(ValueError, match="already used"):
        GatewayConfig(sessions=[SessionEntry(1, "aaaaaaaa", 1), SessionEntry(2, "aaaaaaaa", 2)])
    with pytest.raises(ValueError, match="at least 8"):
        SessionEntry(1, "short", 1)
    with pytest.raises(ValueError, match="low_water"):
        Limits(low_water=10, high_water=5)


def test_load_config_reads_toml_and_json_and_names_bad_fields(tmp_path):
    t = tmp_path / "gw.toml"
    t.write_text('port = 9000\n[limits]\nrate = 5.0\n[[sessions]]\nid = 1\n'
                 'token = "secret-token"\naccount = 7\n')
    cfg = load_config(t)
    assert cfg.port == 9000 and cfg.limits.rate == 5.0 and cfg.sessions[0].account == 7
    assert cfg.host == "127.0.0.1"  # loopback unless asked
    j = tmp_path / "gw.json"
    j.write_text('{"sessions": [{"id": 1, "token": "secret-token", "acount": 7}]}')
    with pytest.raises(GatewayConfigError, match="acount"):
        load_config(j)
    with pytest.raises(GatewayConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def _table(**kw):
    return SessionTable(GatewayConfig(sessions=[SessionEntry(1, "token-one", 7),
                                                SessionEntry(2, "token-two", 8)],
                                      limits=Limits(**kw)))


def test_authenticate_finds_only_exact_tokens():
    t = _table()
    assert t.authenticate("token-one").id == 1
    assert t.authenticate("token-on") is None and t.authenticate("token-one ") is None


def test_token_bucket_allows_the_burst_then_the_rate():
    s = _table(rate=10.0, burst=3).by_id[1]
    now = s.token_time
    assert [s.take_token(10.0, 3, now) for _ in range(4)] == [True, True, True, False]
    assert s.take_token(10.0, 3, now + 0.15) and not s.take_token(10.0, 3, now + 0.15)


def test_resend_window_keeps_the_latest_answers_only():
    s = _table(resend_window=2).by_id[1]
    for seq in (1, 2, 3):
        s.record(seq, Report(seq, "accepted", seq))
    assert list(s.answers) == [2, 3]


def _report(kind, eid, account, leaves=0):
    return REPORT.pack(eid, account, 1, 100, 5, leaves, Side.BUY, 0, 1)


def test_a_report_goes_to_its_session_and_completes_earlier_silent_seqs():
    t = _table()
    s = t.by_id[1]
    for seq, cause in ((1, 8), (2, 9), (3, 10)):
        s.inflight.append(seq)
        t.published(s, seq, cause)
    s.last_seen = 3
    out = list(t.route(R.ACCEPTED, _report(R.ACCEPTED, 7 << 32 | 4, 7, 5), correlation(1, 3),
                       cause=10))
    assert out == [(s, 3, Report(3, "accepted", 4, "", 100, 5, 5, symbol=1))]
    assert list(s.inflight) == [3] and s.ack_target() == 2  # 3 may have more reports
    assert t.settle(9) == [] and s.ack_target() == 2
    assert t.settle(10) == [s] and s.ack_target() == 3 and not t.unsettled


def test_settle_completes_commands_that_made_no_report_in_order():
    t = _table()
    s = t.by_id[1]
    for seq, cause in ((1, 20), (2, 21), (3, 22)):
        s.inflight.append(seq)
        t.published(s, seq, cause)
    s.last_seen = 3
    assert t.settle(21) == [s] and list(s.inflight) == [3] and s.ack_target() == 2


def test_a_trade_reaches_both_accounts_and_hides_the_other_sides_order_id():
    t = _table()
    s1, s2 = t.by_id[1], t.by_id[2]
    trade = TRADE.pack(8 << 32 | 3, 7 << 32 | 4, 8, 7, 1, Side.SELL, 100, 2, 0, 3)
    out = list(t.route(R.TRADE, trade, correlation(2, 5)))
    assert [(x[0], x[1]) for x in out] == [(s2, 5), (s1, 0)]
    taker, maker = out[0][2], out[1][2]
    assert (taker.order_id, taker.maker_id, taker.taker_id) == (3, 0, 3)
    assert (maker.order_id, maker.maker_id, maker.taker_id, maker.remaining) == (4, 4, 0, 3)


def test_live_orders_follow_rested_cancelled_and_filled_reports():
    t = _table()
    t.by_id[1].inflight.extend([1, 2])
    list(t.route(R.RESTED, _report(R.RESTED, 7 << 32 | 1, 7, 5), correlation(1, 1)))
    list(t.route(R.RESTED, _report(R.RESTED, 7 << 32 | 2, 7, 5), correlation(1, 2)))
    assert t.open_orders(7) == 2
    list(t.route(R.CANCELLED, _report(R.CANCELLED, 7 << 32 | 1, 7), correlation(0, 0)))
    trade = TRADE.pack(8 << 32 | 3, 7 << 32 | 2, 8, 7, 1, Side.SELL, 100, 5, 0, 0)
    list(t.route(R.TRADE, trade, correlation(2, 1)))
    assert t.open_orders(7) == 0


def test_open_orders_query_of_the_gateway_rebuilds_live_orders_silently():
    t = _table()
    t.rebuilding = {7}
    info = REPORT.pack(7 << 32 | 1, 7, 1, 100, 5, 5, Side.BUY, 0, 6)
    assert list(t.route(R.ORDER_INFO, info, correlation(0, 7))) == []
    end = REPORT.pack(1, 7, 0, 0, 0, 0, 0, 0, 6)
    assert list(t.route(R.OPEN_ORDERS_END, end, correlation(0, 7))) == []
    assert t.open_orders(7) == 1 and not t.rebuilding


def test_unknown_reasons_from_a_newer_engine_are_kept_as_numbers():
    t = _table()
    rej = REPORT.pack(7 << 32 | 1, 7, 1, 0, 0, 0, 0, 250, 2)
    ((_, _, msg),) = t.route(R.REJECTED, rej, correlation(1, 1))
    assert msg.reason == "reason_250"


def test_l2_goes_level_by_level_to_deeper_subscribers_and_l1_to_l1_subscribers():
    t = _table()
    s1, s2 = t.by_id[1], t.by_id[2]
    t.subscribe(s1, 5, 1)
    t.subscribe(s2, 5, 2)
    # depth 3: bids (100, 1) (99, 2) (0, 0), asks (101, 3) (0, 0) (0, 0)
    l2 = L2_HEAD.pack(5, 3, 2, 1) + struct.pack("<12q", 100, 1, 99, 2, 0, 0, 101, 3, 0, 0,
                                                   0, 0)
    out = list(t.route(R.L2, l2, 0))
    assert [(x[0], x[2]) for x in out] == [(s2, MarketData(5, 0, 100, 1, 101, 3)),
                                           (s2, MarketData(5, 1, 99, 2, 0, 0))]
    l1 = L1.pack(5, 100, 1, 101, 3)
    assert [x[0] for x in t.route(R.L1, l1, 0)] == [s1]
    t.subscribe(s2, 5, 0)
    assert list(t.route(R.L2, l2, 0)) == []
