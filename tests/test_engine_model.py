"""The engine against the pure-Python reference book (tests/reference_book.py) and invariants
under hypothesis: the same reports and books, never crossed, quantity conserved, FIFO kept."""

from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringlog.engine import (
    AccountLimits,
    Engine,
    EngineConfig,
    Report,
    Stp,
    SymbolSpec,
    decode,
)
from ringlog.engine.codec import command
from ringlog.engine.flow import demo_config, mixed_flow

from reference_book import RefEngine


def small_config(stp, market_data=True, **kw):
    return EngineConfig(symbols=[SymbolSpec(symbol=1, min_price=1, max_price=24,
                                            reference_price=12, band_ticks=9),
                                 SymbolSpec(symbol=2, min_price=5, max_price=12)],
                        stp=stp, market_data=market_data, l2_depth=3, max_orders=12,
                        limits=AccountLimits(max_order_qty=40, max_open_orders=6), **kw)


# commands over a tiny space so that ids collide, levels fill and every rule is met: mostly
# valid orders, cancels and modifies, with a share of anything-goes field values
_ids, _accts = st.integers(0, 15), st.integers(1, 3)
_valid_new = st.builds(
    lambda oid, acct, sym, side, kind, price, qty, stp: (101, command(
        oid, account=acct, symbol=sym, side=side, order_type=1 if kind == 3 else 0,
        tif=(0, 1, 2, 1, 0)[kind], price=0 if kind == 3 else price, qty=qty,
        flags=1 if kind == 4 else 0, stp=stp)),
    oid=_ids, acct=_accts, sym=st.sampled_from([1, 1, 1, 2]), side=st.integers(1, 2),
    kind=st.sampled_from([0, 0, 0, 1, 2, 3, 4]), price=st.integers(3, 21),
    qty=st.sampled_from([1, 2, 3, 5, 8, 13]), stp=st.sampled_from([0, 0, 0, 1, 2, 3, 4]))
_cancel = st.builds(lambda oid, acct: (102, command(oid, account=acct)), _ids, _accts)
_modify = st.builds(lambda oid, acct, price, qty: (103, command(oid, account=acct, price=price,
                                                                qty=qty)),
                    _ids, _accts, st.integers(3, 21), st.sampled_from([1, 2, 5, 9]))
_any = st.builds(
    lambda type_id, oid, acct, sym, side, otype, tif, price, qty, flags, stp: (
        type_id, command(oid, account=acct, symbol=sym, side=side, order_type=otype, tif=tif,
                         price=price, qty=qty, flags=flags, stp=stp)),
    type_id=st.sampled_from([101, 101, 102, 103, 104, 105, 106, 107]),
    oid=_ids, acct=_accts, sym=st.sampled_from([1, 2, 0, 9]),
    side=st.sampled_from([1, 2, 0]), otype=st.sampled_from([0, 1, 2]),
    tif=st.sampled_from([0, 1, 2, 3]), price=st.integers(-1, 26),
    qty=st.sampled_from([-1, 0, 1, 3, 41]), flags=st.sampled_from([0, 1, 2]),
    stp=st.sampled_from([0, 1, 2, 3, 4, 5]))
_cmd = st.one_of(_valid_new, _valid_new, _valid_new, _cancel, _modify, _any)


def check_invariants(e, cfg, reports, state):
    """Book not crossed; per order traded + cancelled + resting == quantity; FIFO by entry."""
    for spec in cfg.symbols:
        bid, _, ask, _ = e.best(spec.symbol)
        assert not (bid and ask and bid >= ask), f"crossed book {spec.symbol}: {bid} >= {ask}"
    for r in reports:
        t = r["type"]
        if t in (Report.ACCEPTED, Report.MODIFIED):
            oid = r["order_id"]
            if t == Report.ACCEPTED:
                state["life"][oid] = {"qty": r["qty"], "traded": 0, "cancelled": 0}
            else:
                life = state["life"][oid]
                life["qty"], life["cancelled"] = r["qty"], 0
                life["traded"] = r["qty"] - r["leaves"]    # executed before the modify
        elif t == Report.TRADE:
            state["life"][r["taker_id"]]["traded"] += r["qty"]
            state["life"][r["maker_id"]]["traded"] += r["qty"]
        elif t == Report.CANCELLED:
            state["life"][r["order_id"]]["cancelled"] += r["qty"]
        elif t == Report.RESTED:      # (re-)entry into the book: its time priority
            state["entry"][r["order_id"]] = state["clock"]
        state["clock"] += 1
    for oid, life in state["life"].items():
        live = e.order(oid)
        resting = live["leaves"] if live else 0
        assert life["traded"] + life["cancelled"] + resting == life["qty"], (oid, life, live)
    for spec in cfg.symbols:
        book = e.book(spec.symbol)
        for lv in book["bids"] + book["asks"]:
            ids = [o["order_id"] for o in lv["orders"]]
            assert sum(o["leaves"] for o in lv["orders"]) == lv["qty"]
            assert ids == sorted(ids, key=lambda i: state["entry"][i]), f"FIFO broken: {ids}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stp=st.sampled_from([Stp.NONE, Stp.CANCEL_NEWEST, Stp.CANCEL_OLDEST, Stp.CANCEL_BOTH]),
       cmds=st.lists(_cmd, min_size=20, max_size=120))
def test_engine_matches_the_reference_and_keeps_its_invariants(stp, cmds):
    cfg = small_config(stp)
    e, ref = Engine(cfg), RefEngine(cfg)
    state = {"life": {}, "entry": {}, "clock": 0}
    for type_id, payload in cmds:
        got = [decode(t, p) for t, p in e.apply(type_id, payload)]
        want = ref.apply(type_id, payload)
        assert got == want, f"command {type_id} {payload.hex()}"
        e.books.check()
        check_invariants(e, cfg, got, state)
    for spec in cfg.symbols:
        assert e.book(spec.symbol) == ref.book(spec.symbol)


@settings(max_examples=60, deadline=None)
@given(cmds=st.lists(_cmd, min_size=10, max_size=80), cut=st.integers(0, 80))
def test_snapshot_at_any_point_restores_an_engine_that_continues_identically(cmds, cut):
    cfg = small_config(Stp.CANCEL_OLDEST)
    a, b = Engine(cfg), Engine(cfg)
    for type_id, payload in cmds[:cut]:
        a.apply(type_id, payload)
    b.on_restore(a.on_snapshot())
    b.books.check()
    assert b.on_snapshot() == a.on_snapshot()
    for type_id, payload in cmds[cut:]:
        assert a.apply(type_id, payload) == b.apply(type_id, payload)
    assert a.state_hash() == b.state_hash()


@pytest.mark.parametrize("stp", [Stp.NONE, Stp.CANCEL_NEWEST, Stp.CANCEL_OLDEST,
                                 Stp.CANCEL_BOTH])
def test_engine_matches_the_reference_on_a_realistic_seeded_flow(stp):
    cfg = demo_config(2, stp=stp, max_orders=3000, l2_depth=4)
    cmds, types = mixed_flow(3000, seed=int(stp), symbols=2, accounts=5)
    e, ref = Engine(cfg), RefEngine(cfg)
    seen = defaultdict(int)
    for i in range(len(cmds)):
        one = cmds[i:i + 1].tobytes()
        got = [decode(t, p) for t, p in e.apply(int(types[i]), one)]
        assert got == ref.apply(int(types[i]), one), f"command {i}"
        for r in got:
            seen[r["type"]] += 1
    for spec in cfg.symbols:
        assert e.book(spec.symbol) == ref.book(spec.symbol)
    # the flow exercises every kind of output
    assert {Report.TRADE, Report.CANCELLED, Report.REJECTED, Report.MODIFIED, Report.RESTED,
            Report.L1, Report.L2} <= set(seen)


# A wide tick band (three levels of bitmap words) with prices bunched at word and hierarchy
# edges and far apart: the L2 walk crosses empty words and jumps through the hierarchy. Ids
# that share their low bits or stride by powers of two share home lines in the id map: probes
# run long and deletions shift entries back. A pool of 16 orders keeps the map at load 1/2.
_wide_prices = st.sampled_from([1, 2, 63, 64, 65, 127, 128, 4095, 4096, 4097, 4160, 150_000,
                                150_001, 262_143, 262_144, 262_145, 299_999, 300_000])
_strided_ids = st.sampled_from([0, 1, 4, 8, 1024, 2048, 4096, 1 << 20, (1 << 20) + 4,
                                1 << 32, (1 << 32) + 1, 1 << 62, (1 << 64) - 1, (1 << 64) - 4])
_wide_new = st.builds(
    lambda oid, acct, side, kind, price, qty: (101, command(
        oid, account=acct, symbol=1, side=side, order_type=1 if kind == 3 else 0,
        tif=(0, 1, 2, 1)[kind], price=0 if kind == 3 else price, qty=qty)),
    oid=_strided_ids, acct=_accts, side=st.integers(1, 2), kind=st.sampled_from([0, 0, 0, 1, 2, 3]),
    price=_wide_prices, qty=st.sampled_from([1, 2, 3, 5, 8]))
_wide_cmd = st.one_of(
    _wide_new, _wide_new, _wide_new,
    st.builds(lambda oid, acct: (102, command(oid, account=acct)), _strided_ids, _accts),
    st.builds(lambda oid, acct, price, qty: (103, command(oid, account=acct, price=price,
                                                          qty=qty)),
              _strided_ids, _accts, _wide_prices, st.sampled_from([1, 2, 5, 9])))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.sampled_from([1, 3, 6]), cmds=st.lists(_wide_cmd, min_size=20, max_size=150))
def test_sparse_wide_book_and_strided_ids_match_the_reference(depth, cmds):
    cfg = EngineConfig(symbols=[SymbolSpec(symbol=1, min_price=1, max_price=300_000)],
                       stp=Stp.CANCEL_OLDEST, l2_depth=depth, max_orders=16)
    e, ref = Engine(cfg), RefEngine(cfg)
    for type_id, payload in cmds:
        got = [decode(t, p) for t, p in e.apply(type_id, payload)]
        assert got == ref.apply(type_id, payload), f"command {type_id} {payload.hex()}"
        e.books.check()
    assert e.book(1) == ref.book(1)


def test_check_catches_a_damaged_bitmap_at_every_level():
    # the invariant check the property tests lean on must itself fail on a wrong bitmap: a
    # resting level's bit cleared, an empty level's bit set, an upper word's bit flipped, a
    # bit past the tick band
    cfg = EngineConfig(symbols=[SymbolSpec(symbol=1, min_price=1, max_price=300_000)],
                       max_orders=16)
    e = Engine(cfg)
    e.apply(101, command(1, account=1, symbol=1, side=1, price=4096, qty=5))
    e.apply(101, command(2, account=1, symbol=1, side=2, price=262_145, qty=5))
    e.books.check()
    band = 300_000
    for side, lvl, bit, what in [(1, 0, 4095, "bitmap disagrees"),  # bid at 4096 (min 1)
                                 (2, 0, 262_144, "bitmap disagrees"),
                                 (1, 0, 77, "bitmap disagrees"),  # nothing rests there
                                 (2, 1, 3, "upper words"), (1, 2, 0, "upper words"),
                                 (1, 2, 1, "upper words"),
                                 (2, 0, band + 1, "past the band")]:
        e.books._flip_bit(1, side, lvl, bit)
        with pytest.raises(AssertionError, match=what):
            e.books.check()
        e.books._flip_bit(1, side, lvl, bit)
        e.books.check()
