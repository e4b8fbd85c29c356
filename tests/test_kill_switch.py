"""The kill switch: a trip (or an operator) cancels resting orders at a journaled sequence."""

import time

import msgspec
import pytest

from ringlog import Breaker, BreakerConfig, Limit, Processor, ProcessorConfig
from ringlog.engine import Command, Engine, Report, Side, new_order
from ringlog.engine.codec import decode, modify
from ringlog.engine.flow import demo_config
from ringlog.engine.records import CancelReason, RejectReason
from ringlog.errors import ConfigError, RingLogError, StateError
from ringlog.events import TYPE_KILLED
from ringlog.handler import EventHandler
from ringlog.journal import Journal
from ringlog.logic import KillInfo

CFG = demo_config(2, market_data=False)
PCFG = ProcessorConfig(slot_size=CFG.min_slot_size, durability="none", segment_size=1 << 20)
US = 1_000


def order(oid, account, side, price, symbol=1):
    return new_order(oid, account=account, symbol=symbol, side=side, price=price, qty=1)


def wait_for(cond, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def outputs(path):
    with Journal(path / "output") as j:
        return [(r.type_id, bytes(r.payload), r.producer_seq) for r in j.reader(0)]


def cancels(outs, reason=CancelReason.KILL):
    return [decode(t, p)["order_id"] for t, p, _ in outs
            if t == Report.CANCELLED and decode(t, p)["reason"] == reason]


def rejects(outs, reason=RejectReason.ACCOUNT_DISABLED):
    return [decode(t, p)["order_id"] for t, p, _ in outs
            if t == Report.REJECTED and decode(t, p)["reason"] == reason]


def killed(outs):
    return [msgspec.msgpack.decode(p, type=KillInfo) for t, p, _ in outs if t == TYPE_KILLED]


def book_setup(p):
    """Accounts 2 and 3 rest quietly (ids 1-3); account 1 rests ids 10 and 11."""
    for i, (oid, acct, side, price) in enumerate([(1, 2, Side.BUY, 9_990),
                                                  (2, 2, Side.BUY, 9_991),
                                                  (3, 3, Side.SELL, 10_050),
                                                  (4, 3, Side.SELL, 10_060, ),
                                                  (10, 1, Side.SELL, 10_020),
                                                  (11, 1, Side.SELL, 10_021)]):
        p.publish(order(oid, acct, side, price, symbol=1 + oid % 2), Command.NEW,
                  timestamp_ns=i * US)


def runaway(p, n=30, first=100):
    """Account 1 runs away: ``n`` resting orders (2 outputs each) in one burst."""
    p.publish_many([order(first + i, 1, Side.SELL, 10_100 + i) for i in range(n)],
                   Command.NEW, timestamp_ns=100 * US)


def key_breaker(trips, kill="key"):
    return Breaker(BreakerConfig(limits=[Limit(max_count=40, window_ns=10**9, per="key")],
                                 kill=kill), alert=trips.append)


def test_trip_cancels_only_the_tripped_accounts_resting_orders_and_disables_it(tmp_path):
    trips = []
    engine = Engine(CFG)
    p = Processor(engine, tmp_path, PCFG, breaker=key_breaker(trips))
    p.start()
    book_setup(p)
    runaway(p)
    wait_for(lambda: p.halted, "the trip")
    # account 1's 4 setup outputs + 18 orders x 2 = 40; order 118's ACCEPTED is the 41st
    want = [10, 11, *range(100, 119)]
    assert len(trips) == 1 and trips[0].key == 1
    assert trips[0].kill is not None and trips[0].kill.key == 1
    assert sorted(trips[0].kill.cancelled) == want
    assert [engine.order(i) is not None for i in (1, 2, 3, 4)] == [True] * 4
    assert all(engine.order(i) is None for i in want)
    assert engine.disabled_accounts() == (False, [1])
    # the operator resets: input held back in the journal (orders 119-129) is re-read and
    # refused; the account stays disabled until re-enabled, others trade on
    p.reset_breaker(timestamp_ns=200 * US)
    p.discard_held(timestamp_ns=200 * US)
    p.publish(order(200, 1, Side.SELL, 10_200), Command.NEW, timestamp_ns=300 * US, timeout=30)
    p.publish(order(201, 2, Side.BUY, 9_980), Command.NEW, timestamp_ns=301 * US)
    p.publish(modify(1, account=2, price=9_985, qty=1), Command.MODIFY, timestamp_ns=302 * US)
    p.enable(1, timestamp_ns=303 * US)
    p.publish(order(202, 1, Side.SELL, 10_200), Command.NEW, timestamp_ns=304 * US)
    p.drain(timeout=60)
    p.stop()
    outs = outputs(tmp_path)
    assert sorted(cancels(outs)) == want  # published, not held: they bypass the hold
    assert rejects(outs) == [*range(119, 130), 200]
    assert engine.order(201) is not None and engine.order(202) is not None
    assert engine.disabled_accounts() == (False, [])
    (info,) = killed(outs)
    assert (info.key, info.cancelled, info.by_trip) == (1, len(want), True)
    assert all(c == info.sequence for t, _, c in outs if t == Report.CANCELLED
               and decode(t, _)["reason"] == CancelReason.KILL)


def test_replay_repeats_the_kill_and_reaches_the_same_state_hash(tmp_path):
    trips = []
    live = Engine(CFG)
    p = Processor(live, tmp_path, PCFG, breaker=key_breaker(trips))
    p.start()
    book_setup(p)
    runaway(p)
    wait_for(lambda: p.halted, "the trip")
    p.reset_breaker(timestamp_ns=200 * US)
    p.release_held(timestamp_ns=200 * US)
    p.drain(timeout=60)
    p.stop()
    fresh = Engine(CFG)
    again = []
    p2 = Processor(fresh, tmp_path, PCFG, breaker=key_breaker(again))
    rep = p2.recover(verify=True)
    p2.stop()
    assert rep.first_divergence is None and rep.verified_outputs == len(outputs(tmp_path))
    assert fresh.state_hash() == live.state_hash()
    assert fresh.disabled_accounts() == live.disabled_accounts() == (False, [1])
    assert again == []  # the replay does not page anyone a second time
    # the engine's snapshot keeps the killed accounts
    restored = Engine(CFG)
    restored.on_restore(live.on_snapshot())
    assert restored.state_hash() == live.state_hash()
    assert restored.disabled_accounts() == (False, [1])


def _tripped_on_a_total_limit(tmp_path, kill):
    """A processor on the engine whose runaway account trips a total (keyless) limit with the
    given kill setting; returns (processor, engine, alerts) once it has halted."""
    trips = []
    br = Breaker(BreakerConfig(limits=[Limit(max_count=40, window_ns=10**9)], kill=kill),
                 alert=trips.append)
    engine = Engine(CFG)
    p = Processor(engine, tmp_path, PCFG, breaker=br)
    p.start()
    book_setup(p)
    runaway(p)
    wait_for(lambda: p.halted, "the trip")
    return p, engine, trips


def test_kill_all_on_a_total_limit_cancels_everyone_until_enabled(tmp_path):
    p, engine, trips = _tripped_on_a_total_limit(tmp_path, "key_or_all")
    assert trips[0].kill.key is None
    assert engine.stats()["live_orders"] == 0
    assert engine.disabled_accounts() == (True, [])
    p.reset_breaker(timestamp_ns=200 * US)
    p.discard_held(timestamp_ns=200 * US)
    p.publish(order(300, 3, Side.BUY, 9_000), Command.NEW, timestamp_ns=300 * US, timeout=30)
    p.enable(None, timestamp_ns=301 * US)
    p.publish(order(301, 3, Side.BUY, 9_000), Command.NEW, timestamp_ns=302 * US)
    p.drain(timeout=60)
    p.stop()
    outs = outputs(tmp_path)
    assert {1, 2, 3, 4, 10, 11} <= set(cancels(outs))
    assert 300 in rejects(outs) and engine.order(301) is not None


def test_kill_key_on_a_trip_of_a_total_limit_kills_no_one_but_still_alerts(tmp_path):
    p, engine, trips = _tripped_on_a_total_limit(tmp_path, "key")
    p.stop()
    assert len(trips) == 1 and trips[0].kill is None
    assert engine.disabled_accounts() == (False, [])
    assert killed(outputs(tmp_path)) == []


def test_operator_kill_without_a_breaker_is_journaled_and_replayed(tmp_path):
    live = Engine(CFG)
    p = Processor(live, tmp_path, PCFG)
    p.start()
    book_setup(p)
    p.kill(2, timestamp_ns=50 * US)
    p.publish(order(400, 2, Side.BUY, 9_000), Command.NEW, timestamp_ns=51 * US)
    p.publish(order(401, 3, Side.BUY, 9_000), Command.NEW, timestamp_ns=52 * US)
    p.drain(timeout=60)
    p.stop()
    outs = outputs(tmp_path)
    assert sorted(cancels(outs)) == [1, 2]
    assert rejects(outs) == [400] and live.order(401) is not None
    (info,) = killed(outs)
    assert (info.key, info.cancelled, info.by_trip) == (2, 2, False)
    fresh = Engine(CFG)
    p2 = Processor(fresh, tmp_path, PCFG)
    assert p2.recover(verify=True).first_divergence is None
    p2.stop()
    assert fresh.state_hash() == live.state_hash()


def test_kill_switch_needs_a_handler_that_supports_it(tmp_path):
    class Plain(EventHandler):
        def on_event(self, event, sequence, end_of_batch):
            pass

    with pytest.raises(ConfigError, match=r"BreakerConfig.kill: .*Plain has none"):
        Processor(Plain(), tmp_path, PCFG, breaker=key_breaker([]))
    p = Processor(Plain(), tmp_path, PCFG)
    p.start()
    try:
        with pytest.raises(StateError, match="Plain has no on_kill"):
            p.kill(1)
        p2 = Processor(Engine(CFG), tmp_path / "e", PCFG)
        with pytest.raises(ConfigError, match=r"Processor\.kill\.key: must be an int64") as e:
            p2.kill("7")
        assert isinstance(e.value, RingLogError) and e.value.value == "7"
        p2.stop()
    finally:
        p.stop()


def test_python_handler_kill_outputs_bypass_the_hold(tmp_path):
    class Echo(EventHandler):
        """Emits one output per input with key 1; on_kill emits 3 'cancels'."""

        def __init__(self):
            self.enabled = True

        def on_event(self, event, sequence, end_of_batch):
            self.emit(b"out", type_id=1, key=1)

        def on_kill(self, key):
            for _ in range(3):
                self.emit(b"cxl", type_id=2, key=1)
            self.enabled = False
            return [7, 8, 9]

        def on_enable(self, key):
            self.enabled = True

    trips = []
    br = Breaker(BreakerConfig(limits=[Limit(max_count=5, window_ns=10**9, per="key")],
                               kill="key"), alert=trips.append)
    h = Echo()
    p = Processor(h, tmp_path, PCFG, breaker=br)
    p.start()
    for i in range(10):
        p.publish(b"x", 5, timestamp_ns=i * US)
    wait_for(lambda: p.halted, "the trip")
    p.stop()
    outs = outputs(tmp_path)
    assert [t for t, _, _ in outs].count(2) == 3 and not h.enabled
    assert trips[0].kill.cancelled == [7, 8, 9]
    assert br.held_count == 1  # only the tripping output is held
