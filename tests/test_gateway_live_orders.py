"""An account's live orders as a C hash set of uint64 (ringlog._gateway.OrderSet): the same
members as a Python set across growth and deletions in the middle of probe runs, and the
router's live-order updates through it (the open-orders limit's count)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringlog._gateway import OrderSet

ACCOUNT = 7 << 32

ops = st.lists(st.tuples(st.booleans(), st.integers(1, 300)), max_size=400)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_the_set_keeps_what_a_python_set_keeps(script):
    live, model = OrderSet(), set()
    for add, k in script:
        x = ACCOUNT | k if k % 3 else k << 40  # two id shapes: low bits and high bits vary
        if add:
            live.add(x)
            model.add(x)
        else:
            live.discard(x)
            model.discard(x)
        assert len(live) == len(model)
    assert sorted(live) == sorted(model)
    for k in range(1, 301):
        for x in (ACCOUNT | k, k << 40):
            assert (x in live) == (x in model)


def test_deleting_from_long_probe_runs_keeps_every_other_member_findable():
    live = OrderSet()
    ids = [ACCOUNT | k for k in range(1, 5001)]
    for x in ids:
        live.add(x)
    for x in ids[::2]:  # half of them, out of every probe run
        live.discard(x)
    assert len(live) == 2500 and all(x in live for x in ids[1::2])
    assert not any(x in live for x in ids[::2])
    live.clear()
    assert len(live) == 0 and list(live) == []


def test_zero_and_foreign_values_are_never_members():
    live = OrderSet()
    with pytest.raises(ValueError, match="order id 0"):
        live.add(0)
    live.discard(0)
    live.add(ACCOUNT | 1)
    assert 0 not in live and "x" not in live and -1 not in live and 1 << 70 not in live
    live.add(ACCOUNT | 1)  # twice: one member
    assert len(live) == 1
