"""The seeded frame fuzz against the server (fuzz.py): every frame gets its documented answer
and the session survives; ``make stress`` runs a million frames."""

from __future__ import annotations

import pytest

from . import fuzz
from .wire import LOGON_ACK, Peer, logon


def fuzz_frames(server, seed, frames):
    tok, sym = server.token(), server.symbol()
    p = Peer(server.address)
    p.send(logon(0, tok))
    ack = p.next()
    assert ack[0] == LOGON_ACK
    f = fuzz.Fuzz(seed, ack[1], tok, sym)
    fuzz.run(p, f, frames)
    assert f.sent >= frames


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzzed_frames_get_their_documented_answers(server, seed):
    fuzz_frames(server, seed, 3_000)


@pytest.mark.stress
def test_a_million_fuzzed_frames_get_their_documented_answers(server, request):
    # a million frames under `make stress` (-m stress); a bounded run in `make test`
    long = "stress" in (request.config.getoption("markexpr") or "")
    fuzz_frames(server, 12345, 1_000_000 if long else 20_000)
