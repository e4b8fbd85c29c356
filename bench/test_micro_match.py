"""pytest-benchmark micro-benchmarks of the matching engine (group: match), driven as the
processor drives it: ``on_event`` with command records taken from a ring.

    add:    64 limit orders that rest (no cross) into a book
    cancel: 64 cancels of resting orders
    match:  64 crossing orders, each filling one resting order

Collected only once ``ringlog.engine`` exports Engine, EngineConfig and SymbolSpec (conftest).
"""

import numpy as np
import pytest

from ringlog import Ring
from ringlog.engine import Engine, EngineConfig, SymbolSpec
from ringlog.engine.records import COMMAND_DTYPE, Command, Report, Side

N = 64


def _engine():
    e = Engine(EngineConfig(symbols=[SymbolSpec(symbol=1, max_price=100_000)],
                            market_data=False))
    out = []
    e.emit = lambda payload, type_id=0, key=0: out.append(type_id)
    e.on_start()
    return e, out


def _commands(kind, ids, side, price):
    """Ring events (as the processor's loop sees them) carrying one command per id."""
    recs = np.zeros(len(ids), dtype=COMMAND_DTYPE)
    recs["order_id"], recs["account"], recs["symbol"] = ids, 7, 1
    recs["side"], recs["price"], recs["qty"] = side, price, 10
    ring = Ring(1 << 8, 128)
    c = ring.consumer()
    for r in recs:
        ring.publish(r.tobytes(), int(kind))
    return list(c.poll()), ring


def _feed(e, events):
    for i, ev in enumerate(events):
        e.on_event(ev, i, i == len(events) - 1)


def _run(benchmark, setup_fn):
    state = {}

    def setup():
        state["e"], state["out"], state["events"], state["keep"] = setup_fn()
        return (), {}

    def target():
        _feed(state["e"], state["events"])

    benchmark.pedantic(target, setup=setup, rounds=200)
    return state["out"]


@pytest.mark.benchmark(group="match")
def test_match_add_64_resting(benchmark):
    def setup():
        e, out = _engine()
        events, ring = _commands(Command.NEW, range(1, N + 1), Side.BUY, 1000)
        return e, out, events, ring

    out = _run(benchmark, setup)
    assert out.count(Report.ACCEPTED) == N and out.count(Report.TRADE) == 0


@pytest.mark.benchmark(group="match")
def test_match_cancel_64(benchmark):
    def setup():
        e, out = _engine()
        adds, r1 = _commands(Command.NEW, range(1, N + 1), Side.BUY, 1000)
        _feed(e, adds)
        out.clear()
        events, r2 = _commands(Command.CANCEL, range(1, N + 1), Side.BUY, 0)
        return e, out, events, (r1, r2)

    out = _run(benchmark, setup)
    assert out.count(Report.CANCELLED) == N


@pytest.mark.benchmark(group="match")
def test_match_64_crossing_orders(benchmark):
    def setup():
        e, out = _engine()
        asks, r1 = _commands(Command.NEW, range(1, N + 1), Side.SELL, 1000)
        _feed(e, asks)
        out.clear()
        events, r2 = _commands(Command.NEW, range(N + 1, 2 * N + 1), Side.BUY, 1000)
        return e, out, events, (r1, r2)

    out = _run(benchmark, setup)
    assert out.count(Report.TRADE) == N
