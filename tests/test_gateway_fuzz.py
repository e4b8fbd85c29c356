"""The conformance fuzz (tests/conformance/fuzz.py) against an in-process gateway, where the
server's insides can be checked too: no unexpected exception was counted, no rejected frame
reached the input journal, and the engine's state hash is what it was before the fuzz."""

from __future__ import annotations

import pytest
from conformance import fuzz, wire

from ringlog.engine.records import Side
from ringlog.gateway.protocol import Ack, NewOrder
from ringlog.gateway.session import Limits

from gateway_helpers import ALICE, BOB, Raw, config, logon, running


def fuzz_in_process(tmp_path, seed, frames):
    cfg = config(Limits(rate=1e6, burst=1_000_000, max_frame=1 << 16))
    with running(tmp_path, cfg) as g:
        gw = g.gateway
        r = Raw(gw.address)  # a book with resting orders on both sides
        logon(r, ALICE)
        r.send(*[NewOrder(i, i, 1, Side.BUY if i % 2 else Side.SELL, 5,
                          90 + i if i % 2 else 120 + i) for i in range(1, 21)])
        r.read_until(lambda m: m == Ack(20))
        engine = gw.processor.handler
        before = g.call(lambda: (engine.state_hash(), gw.processor.input.next_sequence))
        p = wire.Peer(gw.address)
        p.send(wire.logon(0, BOB))
        ack = p.next()
        f = fuzz.Fuzz(seed, ack[1], BOB, 1)
        fuzz.run(p, f, frames)
        after = g.call(lambda: (engine.state_hash(), gw.processor.input.next_sequence))
        assert after == before  # nothing rejected reached the journal or the engine
        assert g.call(lambda: gw.metrics.unexpected_exceptions) == 0
        assert g.call(lambda: gw.metrics.errors) > f.sent // 2  # the fuzz was mostly bad
        p.close()


@pytest.mark.parametrize("seed", [7, 8])
def test_fuzz_changes_no_engine_state_and_raises_nothing_unexpected(tmp_path, seed):
    fuzz_in_process(tmp_path, seed, 4_000)


@pytest.mark.stress
def test_a_million_fuzzed_frames_change_no_engine_state(tmp_path, request):
    # a million frames under `make stress` (-m stress); a bounded run in `make test`
    long = "stress" in (request.config.getoption("markexpr") or "")
    fuzz_in_process(tmp_path, 2026, 1_000_000 if long else 20_000)
