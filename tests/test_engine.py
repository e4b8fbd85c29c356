"""The matching engine, rule by rule (docs/matching.md), with hand-computed expectations."""

import json

import msgspec
import numpy as np
import pytest

from ringlog.engine import (
    AccountLimits,
    CancelReason,
    Command,
    Engine,
    EngineConfig,
    EngineConfigError,
    OrderType,
    RejectReason,
    Report,
    Side,
    Stp,
    SymbolSpec,
    Tif,
    cancel,
    decode,
    mass_cancel,
    modify,
    new_order,
    open_orders,
    order_status,
    registry,
)
from ringlog.engine._book import layouts
from ringlog.engine.codec import command
from ringlog.engine.records import (
    COMMAND_DTYPE,
    L1_DTYPE,
    L2_HEAD_DTYPE,
    L2_LEVEL_DTYPE,
    REPORT_DTYPE,
    TRADE_DTYPE,
)

B, S = Side.BUY, Side.SELL


def make(market_data=False, **kw):
    symbols = kw.pop("symbols", [SymbolSpec(symbol=1, max_price=1000),
                                 SymbolSpec(symbol=2, max_price=1000)])
    return Engine(EngineConfig(symbols=symbols, market_data=market_data, **kw))


def run(e, type_id, payload):
    return [decode(t, p) for t, p in e.apply(type_id, payload)]


def new(e, oid, acct, side, price, qty, symbol=1, **kw):
    return run(e, Command.NEW, new_order(oid, account=acct, symbol=symbol, side=side,
                                         price=price, qty=qty, **kw))


def kinds(reports):
    return [r["type"].name for r in reports]


def trades(reports):
    return [(r["maker_id"], r["price"], r["qty"], r["taker_leaves"], r["maker_leaves"])
            for r in reports if r["type"] == Report.TRADE]


def fifo(e, symbol, side):
    book = e.book(symbol)["bids" if side == B else "asks"]
    return [(lv["price"], [o["order_id"] for o in lv["orders"]]) for lv in book]


def last(reports):
    return reports[-1]


# -- records ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, dtype", [("command", COMMAND_DTYPE), ("report", REPORT_DTYPE),
                                         ("trade", TRADE_DTYPE), ("l1", L1_DTYPE),
                                         ("l2_head", L2_HEAD_DTYPE),
                                         ("l2_level", L2_LEVEL_DTYPE)])
def test_records_h_structs_match_the_dtypes_in_size_and_offsets(name, dtype):
    size, offsets = layouts()[name]
    assert size == dtype.itemsize
    public = {n: dtype.fields[n][1] for n in dtype.names if not n.startswith("_")}
    assert offsets == public


# -- limit orders and priority -----------------------------------------------------------------
def test_limit_gtc_that_does_not_cross_is_accepted_then_rested():
    e = make()
    r = new(e, 1, 7, B, 100, 5)
    assert kinds(r) == ["ACCEPTED", "RESTED"]
    assert r[1]["leaves"] == 5 and r[1]["price"] == 100 and r[1]["account"] == 7
    assert e.best(1) == (100, 5, 0, 0)
    assert e.order(1)["leaves"] == 5


def test_match_takes_best_price_first_then_fifo_and_trades_at_the_maker_price():
    e = make()
    new(e, 1, 1, S, 101, 5)
    new(e, 2, 1, S, 100, 5)
    new(e, 3, 2, S, 100, 5)
    r = new(e, 10, 9, B, 101, 12)
    assert kinds(r) == ["ACCEPTED", "TRADE", "TRADE", "TRADE"]
    assert trades(r) == [(2, 100, 5, 7, 0), (3, 100, 5, 2, 0), (1, 101, 2, 0, 3)]
    assert all(t["taker_id"] == 10 and t["taker_side"] == B for t in r[1:])
    assert [t["maker_account"] for t in r[1:]] == [1, 2, 1]
    assert e.best(1) == (0, 0, 101, 3) and e.order(10) is None


def test_crossing_limit_trades_at_the_better_resting_price():
    e = make()
    new(e, 1, 1, S, 100, 5)
    r = new(e, 2, 2, B, 105, 5)
    assert trades(r) == [(1, 100, 5, 0, 0)]


def test_gtc_remainder_rests_at_the_tail_of_its_level():
    e = make()
    new(e, 1, 1, B, 100, 5)
    new(e, 2, 1, S, 99, 3)          # a sell at 99 takes 3 of the bid at 100
    assert e.order(1)["leaves"] == 2
    new(e, 3, 2, S, 102, 4)
    r = new(e, 4, 3, B, 100, 6)
    assert kinds(r) == ["ACCEPTED", "RESTED"]
    assert fifo(e, 1, B) == [(100, [1, 4])]


def test_gtc_partially_filled_rests_its_remainder_with_leaves():
    e = make()
    new(e, 1, 1, S, 100, 3)
    r = new(e, 2, 2, B, 100, 10)
    assert kinds(r) == ["ACCEPTED", "TRADE", "RESTED"]
    assert r[-1]["leaves"] == 7 and r[-1]["qty"] == 10
    assert e.best(1) == (100, 7, 0, 0)


def test_emptied_best_level_is_never_left_as_best():
    e = make()
    new(e, 1, 1, B, 100, 5)
    new(e, 2, 1, B, 90, 5)
    new(e, 3, 1, B, 80, 5)
    run(e, Command.CANCEL, cancel(1, account=1))
    assert e.best(1)[:2] == (90, 5)
    new(e, 4, 2, S, 90, 5)          # takes the whole 90 level
    assert e.best(1)[:2] == (80, 5)
    run(e, Command.CANCEL, cancel(3, account=1))
    assert e.best(1) == (0, 0, 0, 0)


# -- IOC, FOK, market, post-only ---------------------------------------------------------------
def test_ioc_matches_what_crosses_and_cancels_the_remainder():
    e = make()
    new(e, 1, 1, S, 100, 3)
    new(e, 2, 1, S, 102, 3)
    r = new(e, 3, 2, B, 101, 10, tif=Tif.IOC)
    assert kinds(r) == ["ACCEPTED", "TRADE", "CANCELLED"]
    assert r[-1]["reason"] == CancelReason.UNFILLED and r[-1]["qty"] == 7
    assert r[-1]["leaves"] == 0 and e.order(3) is None and e.best(1)[2] == 102


def test_ioc_fully_filled_has_no_final_report():
    e = make()
    new(e, 1, 1, S, 100, 5)
    assert kinds(new(e, 2, 2, B, 100, 5, tif=Tif.IOC)) == ["ACCEPTED", "TRADE"]


def test_fok_unfillable_within_its_limit_is_killed_without_trades():
    e = make()
    new(e, 1, 1, S, 100, 5)
    new(e, 2, 1, S, 102, 5)           # beyond the FOK's limit: does not count
    r = new(e, 3, 2, B, 101, 6, tif=Tif.FOK)
    assert kinds(r) == ["ACCEPTED", "CANCELLED"]
    assert r[1]["reason"] == CancelReason.FOK_UNFILLABLE and r[1]["qty"] == 6
    assert fifo(e, 1, S) == [(100, [1]), (102, [2])]


def test_fok_fillable_across_levels_fills_completely():
    e = make()
    new(e, 1, 1, S, 100, 5)
    new(e, 2, 1, S, 102, 5)
    r = new(e, 3, 2, B, 102, 8, tif=Tif.FOK)
    assert trades(r) == [(1, 100, 5, 3, 0), (2, 102, 3, 0, 2)]


def test_market_order_sweeps_every_level_and_cancels_the_rest():
    e = make()
    new(e, 1, 1, B, 100, 2)
    new(e, 2, 1, B, 50, 2)
    r = new(e, 3, 2, S, 0, 5, order_type=OrderType.MARKET, tif=Tif.IOC)
    assert trades(r) == [(1, 100, 2, 3, 0), (2, 50, 2, 1, 0)]
    assert r[-1]["type"] == Report.CANCELLED and r[-1]["reason"] == CancelReason.UNFILLED
    assert r[-1]["qty"] == 1 and r[0]["price"] == 0


def test_market_fok_kills_when_the_book_is_too_thin():
    e = make()
    new(e, 1, 1, S, 100, 2)
    r = new(e, 2, 2, B, 0, 3, order_type=OrderType.MARKET, tif=Tif.FOK)
    assert kinds(r) == ["ACCEPTED", "CANCELLED"] and r[1]["reason"] == CancelReason.FOK_UNFILLABLE


def test_market_gtc_and_priced_market_orders_are_rejected():
    e = make()
    r = new(e, 1, 1, B, 0, 3, order_type=OrderType.MARKET, tif=Tif.GTC)
    assert kinds(r) == ["REJECTED"] and r[0]["reason"] == RejectReason.INVALID_TYPE
    r = new(e, 2, 1, B, 100, 3, order_type=OrderType.MARKET, tif=Tif.IOC)
    assert r[0]["reason"] == RejectReason.INVALID_PRICE


def test_post_only_rests_when_passive_and_is_rejected_when_it_would_cross():
    e = make()
    new(e, 1, 1, S, 100, 5)
    assert kinds(new(e, 2, 2, B, 99, 5, post_only=True)) == ["ACCEPTED", "RESTED"]
    r = new(e, 3, 2, B, 100, 5, post_only=True)
    assert kinds(r) == ["REJECTED"] and r[0]["reason"] == RejectReason.POST_ONLY_WOULD_CROSS
    assert e.best(1) == (99, 5, 100, 5)         # never re-priced
    r = new(e, 4, 2, B, 90, 5, post_only=True, tif=Tif.IOC)
    assert r[0]["reason"] == RejectReason.INVALID_TYPE


# -- cancel and modify -------------------------------------------------------------------------
def test_cancel_removes_the_order_with_its_open_quantity():
    e = make()
    new(e, 1, 1, B, 100, 5)
    new(e, 2, 2, S, 100, 2)
    r = run(e, Command.CANCEL, cancel(1, account=1))
    assert kinds(r) == ["CANCELLED"]
    assert r[0]["reason"] == CancelReason.USER and r[0]["qty"] == 3 and r[0]["leaves"] == 0
    assert r[0]["command"] == Command.CANCEL - 100
    r = run(e, Command.CANCEL, cancel(1, account=1))
    assert r[0]["type"] == Report.REJECTED and r[0]["reason"] == RejectReason.UNKNOWN_ORDER


def test_cancel_or_modify_of_another_accounts_order_is_rejected():
    e = make()
    new(e, 1, 1, B, 100, 5)
    assert run(e, Command.CANCEL, cancel(1, account=2))[0]["reason"] == RejectReason.NOT_OWNER
    r = run(e, Command.MODIFY, modify(1, account=2, price=100, qty=1))
    assert r[0]["reason"] == RejectReason.NOT_OWNER
    assert e.order(1)["leaves"] == 5


def test_modify_reducing_quantity_in_place_keeps_priority():
    e = make()
    new(e, 1, 1, B, 100, 5)
    new(e, 2, 2, B, 100, 5)
    r = run(e, Command.MODIFY, modify(1, account=1, price=100, qty=2))
    assert kinds(r) == ["MODIFIED"] and r[0]["leaves"] == 2 and r[0]["qty"] == 2
    assert fifo(e, 1, B) == [(100, [1, 2])]
    assert e.best(1)[:2] == (100, 7)
    assert trades(new(e, 3, 3, S, 100, 1)) == [(1, 100, 1, 0, 1)]


def test_modify_increasing_quantity_loses_priority():
    e = make()
    new(e, 1, 1, B, 100, 5)
    new(e, 2, 2, B, 100, 5)
    r = run(e, Command.MODIFY, modify(1, account=1, price=100, qty=8))
    assert kinds(r) == ["MODIFIED", "RESTED"] and r[1]["leaves"] == 8
    assert fifo(e, 1, B) == [(100, [2, 1])]


def test_modify_of_a_partly_filled_order_keeps_its_executed_quantity_in_qty():
    e = make()
    new(e, 1, 1, B, 100, 10)
    new(e, 2, 2, S, 100, 4)
    r = run(e, Command.MODIFY, modify(1, account=1, price=100, qty=3))
    assert r[0]["qty"] == 7 and r[0]["leaves"] == 3     # 4 executed + 3 open


def test_modify_to_a_crossing_price_re_enters_and_trades_as_taker():
    e = make()
    new(e, 1, 1, B, 99, 5)
    new(e, 2, 2, S, 101, 3)
    r = run(e, Command.MODIFY, modify(1, account=1, price=101, qty=5))
    assert kinds(r) == ["MODIFIED", "TRADE", "RESTED"]
    assert r[1]["taker_id"] == 1 and r[1]["maker_id"] == 2 and r[1]["price"] == 101
    assert r[2]["leaves"] == 2 and fifo(e, 1, B) == [(101, [1])]


def test_modify_of_post_only_to_a_crossing_price_is_rejected_and_changes_nothing():
    e = make()
    new(e, 1, 1, B, 99, 5, post_only=True)
    new(e, 2, 2, S, 101, 3)
    r = run(e, Command.MODIFY, modify(1, account=1, price=101, qty=5))
    assert r[0]["reason"] == RejectReason.POST_ONLY_WOULD_CROSS
    assert e.order(1)["price"] == 99


# -- self-trade prevention ---------------------------------------------------------------------
def stp_book(stp):
    e = make(stp=stp)
    new(e, 1, 2, S, 100, 2)          # another account first
    new(e, 2, 1, S, 100, 3)          # the taker's own order
    new(e, 3, 2, S, 101, 4)
    return e


def test_stp_none_lets_an_account_trade_with_itself():
    e = stp_book(Stp.NONE)
    r = new(e, 9, 1, B, 101, 6)
    assert trades(r) == [(1, 100, 2, 4, 0), (2, 100, 3, 1, 0), (3, 101, 1, 0, 3)]


def test_stp_cancel_newest_cancels_the_takers_remainder_and_keeps_the_maker():
    e = stp_book(Stp.CANCEL_NEWEST)
    r = new(e, 9, 1, B, 101, 6)
    assert kinds(r) == ["ACCEPTED", "TRADE", "CANCELLED"]
    assert r[-1]["order_id"] == 9 and r[-1]["reason"] == CancelReason.SELF_TRADE
    assert r[-1]["qty"] == 4 and e.order(2)["leaves"] == 3


def test_stp_cancel_oldest_cancels_the_maker_and_goes_on():
    e = stp_book(Stp.CANCEL_OLDEST)
    r = new(e, 9, 1, B, 101, 6)
    assert kinds(r) == ["ACCEPTED", "TRADE", "CANCELLED", "TRADE"]
    assert r[2]["order_id"] == 2 and r[2]["reason"] == CancelReason.SELF_TRADE
    assert r[2]["qty"] == 3 and r[2]["account"] == 1
    assert trades(r) == [(1, 100, 2, 4, 0), (3, 101, 4, 0, 0)]


def test_stp_cancel_both_cancels_maker_and_taker():
    e = stp_book(Stp.CANCEL_BOTH)
    r = new(e, 9, 1, B, 101, 6)
    assert kinds(r) == ["ACCEPTED", "TRADE", "CANCELLED", "CANCELLED"]
    assert [x["order_id"] for x in r[2:]] == [2, 9] and e.order(2) is None
    assert e.best(1)[2:] == (101, 4)


def test_stp_per_order_override_beats_the_engine_default():
    e = stp_book(Stp.CANCEL_NEWEST)
    r = new(e, 9, 1, B, 101, 6, stp=Stp.NONE)
    assert len(trades(r)) == 3


def test_fok_fillability_applies_the_stp_rule():
    e = stp_book(Stp.CANCEL_NEWEST)    # own order at 100 stops the fill at 2
    r = new(e, 9, 1, B, 101, 3, tif=Tif.FOK)
    assert kinds(r) == ["ACCEPTED", "CANCELLED"] and r[1]["reason"] == CancelReason.FOK_UNFILLABLE
    e = stp_book(Stp.CANCEL_OLDEST)    # own order skipped: 2 + 4 available
    r = new(e, 9, 1, B, 101, 7, tif=Tif.FOK)
    assert r[-1]["reason"] == CancelReason.FOK_UNFILLABLE
    r = new(e, 10, 1, B, 101, 6, tif=Tif.FOK)
    assert kinds(r) == ["ACCEPTED", "TRADE", "CANCELLED", "TRADE"]


# -- accounts and bands ------------------------------------------------------------------------
def test_account_limits_reject_with_their_reason_and_overrides_apply():
    e = make(limits=AccountLimits(max_order_qty=10, max_open_orders=2),
             account_limits={5: AccountLimits(max_order_qty=100)})
    assert new(e, 1, 1, B, 100, 11)[0]["reason"] == RejectReason.MAX_ORDER_QTY
    new(e, 2, 1, B, 100, 1)
    new(e, 3, 1, B, 99, 1, symbol=2)
    assert new(e, 4, 1, B, 98, 1)[0]["reason"] == RejectReason.MAX_OPEN_ORDERS
    assert kinds(new(e, 5, 1, B, 98, 1, tif=Tif.IOC)) == ["ACCEPTED", "CANCELLED"]
    assert kinds(new(e, 6, 5, B, 98, 100)) == ["ACCEPTED", "RESTED"]
    r = run(e, Command.MODIFY, modify(6, account=5, price=98, qty=101))
    assert r[0]["reason"] == RejectReason.MAX_ORDER_QTY


def test_price_band_in_ticks_from_the_reference_then_from_the_last_trade():
    e = make(symbols=[SymbolSpec(symbol=1, max_price=1000, reference_price=500, band_ticks=10)])
    assert new(e, 1, 1, B, 489, 1)[0]["reason"] == RejectReason.PRICE_BAND
    assert kinds(new(e, 2, 1, B, 490, 1)) == ["ACCEPTED", "RESTED"]
    new(e, 3, 2, S, 490, 1)          # trade at 490: the band now centres on 490
    assert kinds(new(e, 4, 1, B, 480, 1)) == ["ACCEPTED", "RESTED"]
    assert new(e, 5, 1, S, 501, 1)[0]["reason"] == RejectReason.PRICE_BAND
    r = run(e, Command.MODIFY, modify(4, account=1, price=479, qty=1))
    assert r[0]["reason"] == RejectReason.PRICE_BAND


def test_price_band_in_percent():
    e = make(symbols=[SymbolSpec(symbol=1, max_price=1000, reference_price=200, band_pct=5)])
    assert kinds(new(e, 1, 1, B, 190, 1)) == ["ACCEPTED", "RESTED"]
    assert new(e, 2, 1, B, 189, 1)[0]["reason"] == RejectReason.PRICE_BAND
    assert new(e, 3, 1, S, 211, 1)[0]["reason"] == RejectReason.PRICE_BAND


# -- invalid commands --------------------------------------------------------------------------
@pytest.mark.parametrize("kw, reason", [
    ({"qty": 0}, RejectReason.INVALID_QTY),
    ({"qty": -5}, RejectReason.INVALID_QTY),
    ({"qty": (1 << 40) + 1}, RejectReason.INVALID_QTY),
    ({"price": 0}, RejectReason.INVALID_PRICE),
    ({"price": -3}, RejectReason.INVALID_PRICE),
    ({"price": 1001}, RejectReason.INVALID_PRICE),
    ({"symbol": 99}, RejectReason.UNKNOWN_SYMBOL),
    ({"side": 3}, RejectReason.INVALID_SIDE),
    ({"tif": 7}, RejectReason.INVALID_TYPE),
    ({"order_type": 4}, RejectReason.INVALID_TYPE),
    ({"stp": 9}, RejectReason.INVALID_TYPE),
    ({"flags": 0x80}, RejectReason.INVALID_TYPE),
])
def test_invalid_new_order_is_rejected_with_its_reason_and_echoes_the_command(kw, reason):
    e = make()
    fields = {"account": 4, "symbol": 1, "side": B, "price": 100, "qty": 5, **kw}
    r = run(e, Command.NEW, command(42, **fields))
    assert kinds(r) == ["REJECTED"] and r[0]["reason"] == reason
    assert r[0]["order_id"] == 42 and r[0]["account"] == 4 and r[0]["command"] == 1
    assert e.stats()["rejected"] == 1 and e.stats()["live_orders"] == 0


def test_duplicate_live_id_is_rejected_but_a_dead_id_may_be_reused():
    e = make()
    new(e, 1, 1, B, 100, 5)
    r = new(e, 1, 2, S, 200, 5, symbol=2)      # ids are unique across symbols
    assert r[0]["reason"] == RejectReason.DUPLICATE_ORDER_ID
    run(e, Command.CANCEL, cancel(1, account=1))
    assert kinds(new(e, 1, 2, S, 200, 5, symbol=2)) == ["ACCEPTED", "RESTED"]


@pytest.mark.parametrize("cmd, payload", [
    (Command.CANCEL, cancel(5, account=1)),
    (Command.MODIFY, modify(5, account=1, price=100, qty=1)),
    (Command.ORDER_STATUS, order_status(5, account=1)),
])
def test_commands_on_an_unknown_order_are_rejected_unknown_order(cmd, payload):
    r = run(make(), cmd, payload)
    assert kinds(r) == ["REJECTED"] and r[0]["reason"] == RejectReason.UNKNOWN_ORDER
    assert r[0]["command"] == cmd - 100


def test_modify_with_bad_quantity_or_price_is_rejected():
    e = make()
    new(e, 1, 1, B, 100, 5)
    assert run(e, Command.MODIFY, modify(1, account=1, price=100, qty=0))[0]["reason"] == \
        RejectReason.INVALID_QTY
    assert run(e, Command.MODIFY, modify(1, account=1, price=0, qty=5))[0]["reason"] == \
        RejectReason.INVALID_PRICE


def test_unknown_command_and_malformed_payload_are_rejected_not_raised():
    e = make()
    r = run(e, 150, cancel(1, account=3))
    assert r[0]["reason"] == RejectReason.UNKNOWN_COMMAND and r[0]["command"] == 50
    r = run(e, Command.NEW, new_order(1, account=3, symbol=1, side=B, price=1, qty=1)[:40])
    assert r[0]["reason"] == RejectReason.MALFORMED and r[0]["order_id"] == 1
    assert run(e, Command.CANCEL, b"")[0]["reason"] == RejectReason.MALFORMED
    assert run(e, Command.NEW, b"x" * 64)[0]["reason"] == RejectReason.MALFORMED


def test_a_full_order_pool_rejects_resting_orders_but_not_ioc():
    e = make(max_orders=2)
    new(e, 1, 1, B, 100, 1)
    new(e, 2, 1, B, 99, 1)
    assert new(e, 3, 1, B, 98, 1)[0]["reason"] == RejectReason.ORDER_POOL_FULL
    assert kinds(new(e, 4, 2, S, 100, 1, tif=Tif.IOC)) == ["ACCEPTED", "TRADE"]
    assert kinds(new(e, 5, 1, B, 98, 1)) == ["ACCEPTED", "RESTED"]


def test_ids_sharing_their_low_bits_fill_the_pool_and_are_found_cancelled_and_reused():
    # ids striding by 2**20 share their home line's slot bits in the id map: long probe runs,
    # and deletions in random order shift entries back over the gaps
    n = 512
    e = make(max_orders=n)
    ids = [(k << 20) | 3 for k in range(n)]
    for i, oid in enumerate(ids):
        assert kinds(new(e, oid, 1 + i % 7, B, 100 + i % 50, 1)) == ["ACCEPTED", "RESTED"]
    assert new(e, 5, 1, B, 100, 1)[0]["reason"] == RejectReason.ORDER_POOL_FULL
    e.books.check()
    gone = [ids[k] for k in np.random.default_rng(5).permutation(n)[: n // 2]]
    for oid in gone:
        assert kinds(run(e, Command.CANCEL, cancel(oid, account=1 + ids.index(oid) % 7))) == [
            "CANCELLED"]
    e.books.check()
    for oid in ids:
        assert (e.order(oid) is None) == (oid in gone)
    for oid in gone:                    # a dead id may be used again, a live one not
        assert kinds(new(e, oid, 2, S, 900, 1)) == ["ACCEPTED", "RESTED"]
    assert new(e, ids[0] if ids[0] not in gone else ids[1], 2, S, 900, 1)[0]["reason"] in (
        RejectReason.DUPLICATE_ORDER_ID, RejectReason.ORDER_POOL_FULL)
    e.books.check()


def test_many_orders_at_one_level_trade_in_fifo_order_and_empty_it():
    e = make(max_orders=3000)
    for oid in range(1, 3001):
        new(e, oid, 1 + oid % 3, S, 500, 2)
    assert e.depth(1)["asks"] == [(500, 6000, 3000)]
    r = new(e, 10_000, 9, B, 0, 6000, order_type=OrderType.MARKET, tif=Tif.IOC)
    trades = [x for x in r if x["type"] == Report.TRADE]
    assert [t["maker_id"] for t in trades] == list(range(1, 3001))
    assert e.best(1) == (0, 0, 0, 0) and e.books.live_orders == 0
    e.books.check()


def test_l2_reaches_levels_far_from_the_best_across_empty_bitmap_words():
    # a band of 300,000 ticks: the next level after the best may be words or whole
    # hierarchy blocks away
    e = make(market_data=True, l2_depth=3,
             symbols=[SymbolSpec(symbol=1, min_price=1, max_price=300_000)])
    for oid, price in enumerate([1, 64, 262_144], start=1):
        new(e, oid, 1, B, price, 1)
    for oid, price in enumerate([262_145, 299_999, 300_000], start=4):
        new(e, oid, 2, S, price, 1)
    r = run(e, Command.CANCEL, cancel(3, account=1))
    assert kinds(r) == ["CANCELLED", "L1", "L2"]
    assert r[2]["bids"] == [(64, 1), (1, 1)] and r[2]["asks"] == [
        (262_145, 1), (299_999, 1), (300_000, 1)]
    r = run(e, Command.CANCEL, cancel(4, account=2))
    assert r[2]["asks"] == [(299_999, 1), (300_000, 1)]
    assert kinds(new(e, 7, 2, S, 150_000, 1)) == ["ACCEPTED", "RESTED", "L1", "L2"]
    r = new(e, 8, 2, S, 299_998, 1)
    assert r[2]["asks"] == [(150_000, 1), (299_998, 1), (299_999, 1)]
    assert new(e, 9, 1, B, 3, 1)[2]["bids"] == [(64, 1), (3, 1), (1, 1)]
    assert new(e, 10, 1, B, 2, 1)[2]["bids"] == [(64, 1), (3, 1), (2, 1)]
    assert kinds(new(e, 11, 1, B, 1, 1)) == ["ACCEPTED", "RESTED"]      # below the depth
    e.books.check()


# -- mass cancel and queries -------------------------------------------------------------------
def test_mass_cancel_cancels_only_that_accounts_orders_in_book_order():
    e = make()
    new(e, 1, 1, B, 100, 1)
    new(e, 2, 2, B, 100, 1)
    new(e, 3, 1, S, 110, 1)
    new(e, 4, 1, B, 101, 1)
    new(e, 5, 1, S, 100, 1, symbol=2)
    r = run(e, Command.MASS_CANCEL, mass_cancel(1, symbol=1))
    assert [(x["order_id"], x["reason"]) for x in r] == [
        (4, CancelReason.MASS_CANCEL), (1, CancelReason.MASS_CANCEL),
        (3, CancelReason.MASS_CANCEL)]
    assert e.order(2) is not None and e.order(5) is not None
    assert [x["order_id"] for x in run(e, Command.MASS_CANCEL, mass_cancel(1))] == [5]
    r = run(e, Command.MASS_CANCEL, mass_cancel(1, symbol=77))
    assert r[0]["reason"] == RejectReason.UNKNOWN_SYMBOL


def test_order_status_and_open_orders_report_live_orders():
    e = make()
    new(e, 1, 1, B, 100, 5)
    new(e, 2, 1, S, 200, 5, symbol=2)
    new(e, 3, 2, S, 100, 2)
    r = run(e, Command.ORDER_STATUS, order_status(1, account=1))
    assert kinds(r) == ["ORDER_INFO"] and (r[0]["qty"], r[0]["leaves"]) == (5, 3)
    assert run(e, Command.ORDER_STATUS, order_status(1, account=2))[0]["reason"] == \
        RejectReason.NOT_OWNER
    r = run(e, Command.OPEN_ORDERS, open_orders(1))
    assert kinds(r) == ["ORDER_INFO", "ORDER_INFO", "OPEN_ORDERS_END"]
    assert [x["order_id"] for x in r] == [1, 2, 2]
    r = run(e, Command.OPEN_ORDERS, open_orders(1, symbol=2))
    assert [x["order_id"] for x in r] == [2, 1] and r[-1]["symbol"] == 2


def test_book_query_shows_levels_with_fifo_order_lists():
    e = make()
    for i, (acct, px) in enumerate([(1, 100), (2, 100), (1, 99)], start=1):
        new(e, i, acct, B, px, i)
    d = e.depth(1, 1)
    assert d == {"bids": [(100, 3, 2)], "asks": []}
    book = e.book(1)
    assert [(lv["price"], lv["qty"]) for lv in book["bids"]] == [(100, 3), (99, 3)]
    assert [o["order_id"] for o in book["bids"][0]["orders"]] == [1, 2]
    with pytest.raises(KeyError, match="unknown symbol 9"):
        e.best(9)


# -- market data -------------------------------------------------------------------------------
def test_l1_and_l2_are_emitted_after_the_reports_only_when_they_change():
    e = make(market_data=True, l2_depth=2)
    r = new(e, 1, 1, B, 100, 5)
    assert kinds(r) == ["ACCEPTED", "RESTED", "L1", "L2"]
    assert (r[2]["bid_price"], r[2]["bid_qty"], r[2]["ask_price"]) == (100, 5, 0)
    assert r[3]["bids"] == [(100, 5)] and r[3]["asks"] == []
    r = new(e, 2, 1, B, 99, 5)
    assert kinds(r) == ["ACCEPTED", "RESTED", "L2"]             # L1 unchanged
    assert r[2]["bids"] == [(100, 5), (99, 5)]
    assert kinds(new(e, 3, 1, B, 98, 5)) == ["ACCEPTED", "RESTED"]   # below the depth
    r = run(e, Command.CANCEL, cancel(1, account=1))
    assert kinds(r) == ["CANCELLED", "L1", "L2"]
    assert r[1]["bid_price"] == 99 and r[2]["bids"] == [(99, 5), (98, 5)]
    assert kinds(new(e, 4, 1, B, 0, 5)) == ["REJECTED"]


def test_market_data_off_emits_no_l1_or_l2():
    e = make(market_data=False)
    assert kinds(new(e, 1, 1, B, 100, 5)) == ["ACCEPTED", "RESTED"]


# -- state ---------------------------------------------------------------------------------------
def test_snapshot_restore_reproduces_the_books_byte_for_byte_and_continues_identically():
    from ringlog.engine.flow import demo_config, mixed_flow

    cfg = demo_config(2, max_orders=4096)
    cmds, types = mixed_flow(3000, seed=5, symbols=2, accounts=6)
    a = Engine(cfg)
    a.process_commands(cmds[:2000], types[:2000])
    snap = a.on_snapshot()
    b = Engine(cfg)
    b.on_restore(snap)
    assert b.on_snapshot() == snap and b.state_hash() == a.state_hash()
    assert b.dump_state() == a.dump_state()
    a.books.check()
    b.books.check()
    for i in range(2000, 3000):
        one = cmds[i:i + 1].tobytes()
        assert a.apply(int(types[i]), one) == b.apply(int(types[i]), one)
    assert a.state_hash() == b.state_hash()


def test_restore_into_an_engine_with_other_symbols_is_a_clear_error():
    a = make()
    new(a, 1, 1, B, 100, 5)
    other = make(symbols=[SymbolSpec(symbol=1, max_price=1000),
                          SymbolSpec(symbol=3, max_price=1000)])
    with pytest.raises(ValueError, match="symbols differ"):
        other.on_restore(a.on_snapshot())
    with pytest.raises(ValueError, match="bad magic"):
        other.on_restore(b"nonsense")
    small = make(max_orders=1)
    new(a, 2, 1, B, 99, 5)
    with pytest.raises(ValueError, match="max_orders"):
        small.on_restore(a.on_snapshot())


def test_dump_state_is_json_able_and_lists_every_book():
    e = make()
    new(e, 1, 1, B, 100, 5)
    d = json.loads(json.dumps(e.dump_state()))
    assert [b["symbol"] for b in d["books"]] == [1, 2]
    assert d["books"][0]["bids"][0]["orders"][0]["order_id"] == 1
    assert d["state_hash"] == e.state_hash()


def test_process_commands_counts_the_same_outputs_as_apply_and_times_each_command():
    from ringlog.engine.flow import demo_config, mixed_flow

    cmds, types = mixed_flow(2000, seed=9)
    a, b = Engine(demo_config()), Engine(demo_config())
    lat = np.zeros(len(cmds), np.int64)
    n = a.process_commands(cmds, types, latencies=lat)
    assert n == sum(len(b.apply(int(t), c.tobytes())) for t, c in zip(types, cmds, strict=True))
    assert a.state_hash() == b.state_hash() and (lat > 0).all()
    with pytest.raises(ValueError, match="type_ids has 3 entries"):
        a.process_commands(cmds, types[:3])
    with pytest.raises(TypeError, match="COMMAND_DTYPE"):
        a.process_commands(np.zeros(2, "V48"), 101)


def test_registry_describes_every_command_and_report_with_its_dtype():
    reg = registry(l2_depth=3)
    ids = {d["type_id"]: d for d in reg.describe()}
    assert set(ids) == {int(c) for c in Command} | {int(r) for r in Report}
    assert ids[Command.NEW]["kind"] == "record" and ids[Report.TRADE]["name"] == "trade"
    rec = reg.decode(Report.TRADE, bytes(64))
    assert rec.dtype == TRADE_DTYPE
    assert reg.type_of(int(Report.L2)).dtype.itemsize == 16 + 32 * 3
    # the descriptor goes into each journal segment's 4 KiB header (48 bytes of it are taken)
    for depth in (0, 5, 64):
        assert len(json.dumps(registry(depth).describe(), separators=(",", ":"))) <= 4096 - 48


# -- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize("build, match", [
    (lambda: EngineConfig(symbols=[]), r"EngineConfig\.symbols: needs at least one"),
    (lambda: EngineConfig(symbols=[SymbolSpec(symbol=1, max_price=10)] * 2),
     r"EngineConfig\.symbols\[1\]: symbol 1 is configured twice"),
    (lambda: SymbolSpec(symbol=0, max_price=10),
     r"SymbolSpec\.symbol: must be an integer in 1\.\."),
    (lambda: SymbolSpec(symbol=1, min_price=10, max_price=5), "max_price"),
    (lambda: SymbolSpec(symbol=1, max_price=1 << 30), "spans"),
    (lambda: SymbolSpec(symbol=1, max_price=10, band_pct=150), "band_pct"),
    (lambda: SymbolSpec(symbol=1, max_price=10, reference_price=11), "reference_price"),
    (lambda: AccountLimits(max_open_orders=-1), "max_open_orders"),
    (lambda: EngineConfig(symbols=[SymbolSpec(symbol=1, max_price=10)], max_orders=0),
     "max_orders"),
    (lambda: EngineConfig(symbols=[SymbolSpec(symbol=1, max_price=10)],
                          stp=Stp.ENGINE_DEFAULT), "stp"),
    (lambda: EngineConfig(symbols=[SymbolSpec(symbol=1, max_price=10)], l2_depth=500),
     "l2_depth"),
])
def test_bad_config_is_a_clear_error_at_construction(build, match):
    with pytest.raises(EngineConfigError, match=match):
        build()


def test_config_decodes_from_json_with_precise_errors():
    cfg = msgspec.json.decode(b'{"symbols": [{"symbol": 3, "max_price": 99}], "stp": 2}',
                              type=EngineConfig)
    assert cfg.symbols[0].symbol == 3 and cfg.stp == Stp.CANCEL_NEWEST
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.json.decode(b'{"symbols": [], "bogus": 1}', type=EngineConfig)
    with pytest.raises(TypeError, match="EngineConfig"):
        Engine({"symbols": []})


def test_min_slot_size_fits_the_largest_record():
    cfg = EngineConfig(symbols=[SymbolSpec(symbol=1, max_price=10)], l2_depth=5)
    assert cfg.min_slot_size >= 48 + cfg.l2_size and cfg.min_slot_size == 256


def test_outputs_reach_a_python_emit_in_order_through_the_packed_entry():
    # Outside a processor, Engine.on_event hands a command's outputs to a Python
    # emit(payload, type_id, key) one by one (Emitter.emit_packed's default walk of the
    # packed outputs): the same outputs, in the same order, as apply(), keyed by account.
    from types import SimpleNamespace

    from ringlog.engine.flow import demo_config, mixed_flow

    cfg = demo_config(2)
    cmds, types = mixed_flow(300, seed=3, symbols=2, accounts=4)
    got, engine, direct = [], Engine(cfg), Engine(cfg)
    engine.emit = lambda payload, type_id, key: got.append((type_id, bytes(payload), key))
    want = []
    for i in range(len(cmds)):
        ev = SimpleNamespace(payload=cmds[i:i + 1].tobytes(), type_id=int(types[i]),
                             timestamp_ns=i, correlation_id=0, producer_seq=0, flags=0,
                             producer_id=0)
        engine.on_event(ev, i, True)
        want += direct.apply(int(types[i]), cmds[i:i + 1].tobytes())
    assert [(t, p) for t, p, _ in got] == want and len(want) > 300
    assert {k for _, _, k in got} <= {0, *range(1, 6)}  # accounts (0: market data)
