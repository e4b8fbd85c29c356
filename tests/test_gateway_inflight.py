"""A session's in-flight commands as a C ring (ringlog._gateway.Inflight): the same seqs,
causes, new-order counts and completions as a plain model (a deque of seqs, a dict of causes,
a set of new orders: what SessionCore held before) across wrap-arounds and growth; the deque
API the rare callers read; and the session table's settle and completion through it."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringlog._gateway import Inflight
from ringlog.gateway.session import GatewayConfig, Limits, SessionEntry, SessionTable


class Model:
    """The in-flight state as SessionCore kept it in Python objects."""

    def __init__(self) -> None:
        self.q: deque[int] = deque()
        self.causes: dict[int, int] = {}
        self.news: set[int] = set()

    def enter(self, first: int, n: int, news: list[int]) -> int:
        self.q.extend(range(first, first + n))
        self.news.update(news)
        return len(news)

    def published(self, first: int, n: int, cause: int, live: list[int]) -> None:
        self.causes.update((s, cause + s - first) for s in live)

    def _pop(self) -> int:
        x = self.q.popleft()
        self.causes.pop(x, None)
        if x in self.news:
            self.news.discard(x)
            return 1
        return 0

    def complete(self, seq: int) -> int:
        n = 0
        while self.q and self.q[0] <= seq:
            n += self._pop()
        return n

    def settle(self, done: int) -> tuple[int, int]:
        last = n = 0
        while self.q and 0 <= self.causes.get(self.q[0], -1) <= done:
            last = self.q[0]
            n += self._pop()
        return last, n

    def remove(self, seq: int) -> bool:
        self.q.remove(seq)
        self.causes.pop(seq, None)
        was = seq in self.news
        self.news.discard(seq)
        return was


ops = st.lists(st.tuples(st.sampled_from(["enter", "publish", "complete", "settle", "remove"]),
                         st.integers(0, 40), st.integers(0, 2**20)), max_size=120)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_the_ring_keeps_what_the_deque_dict_and_set_kept(script):
    ring, model = Inflight(), Model()
    next_seq, next_cause, unpublished = 1, 100, []
    for op, a, b in script:
        if op == "enter":
            n = a % 33 + 1  # past the first capacity (16) at times: growth mid-ring
            news = [s for s in range(next_seq, next_seq + n) if (s * 7 + b) % 3 == 0]
            assert ring.enter(next_seq, n, news) == model.enter(next_seq, n, news)
            unpublished.append((next_seq, n))
            next_seq += n
        elif op == "publish" and unpublished:
            first, n = unpublished.pop(0)
            live = [s for s in range(first, first + n) if s in model.q]
            assert ring.published(first, n, next_cause) == len(live)
            model.published(first, n, next_cause, live)
            next_cause += n
        elif op == "complete" and model.q:
            upto = model.q[0] + a % 8
            assert ring.complete_through(upto) == model.complete(upto)
        elif op == "settle":
            done = 100 + b % max(1, next_cause - 100 + 5)
            assert ring.settle(done) == model.settle(done)
        elif op == "remove" and model.q:
            seq = model.q[b % len(model.q)]
            assert ring.remove(seq) == model.remove(seq)
        assert list(ring) == list(model.q) and len(ring) == len(model.q)
        assert ring.news == len(model.news)
        for s in model.q:
            assert ring.cause(s) == model.causes.get(s, -1)
            assert ring.is_new(s) == (s in model.news)
        if model.q:
            assert ring[0] == model.q[0] and ring[-1] == model.q[-1]


def test_the_ring_wraps_many_times_at_a_fixed_size_in_order():
    ring = Inflight()
    seq = 1
    for _ in range(1000):  # 12 in flight at a time: the 16-entry ring wraps ~750 times
        ring.enter(seq, 12, [seq, seq + 11])
        ring.published(seq, 12, 10 * seq)
        assert list(ring) == list(range(seq, seq + 12)) and ring.news == 2
        assert ring.settle(10 * seq + 10) == (seq + 10, 1)  # causes 10*seq .. 10*seq+10
        assert ring.complete_through(seq + 11) == 1 and not ring
        seq += 12


def test_the_ring_grows_past_its_capacity_keeping_order_and_causes():
    ring = Inflight()
    ring.enter(1, 10)
    assert ring.complete_through(6) == 0  # the head is mid-ring before the growth
    ring.enter(11, 5000, range(11, 5011, 2))
    ring.published(7, 5004, 1)
    assert list(ring) == list(range(7, 5011)) and ring.news == 2500
    assert [ring.cause(s) for s in (7, 10, 11, 5010)] == [1, 4, 5, 5004]
    assert ring.settle(5004) == (5010, 2500) and len(ring) == 0


def test_the_deque_api_of_the_rare_callers():
    ring = Inflight()
    assert not ring and len(ring) == 0 and list(ring) == []
    ring.append(3)
    ring.extend([5, 8])
    ring.append(9, True)
    assert ring and list(ring) == [3, 5, 8, 9] and ring[1] == 5 and ring[-1] == 9
    assert 8 in ring and 4 not in ring and "8" not in ring
    assert ring.popleft() == 3 and ring.remove(9) is True and ring.news == 0
    with pytest.raises(ValueError, match="not in flight"):
        ring.remove(4)
    with pytest.raises(ValueError, match="not above"):
        ring.append(8)  # seqs enter in increasing order
    with pytest.raises(IndexError):
        ring[2]
    ring.clear()
    with pytest.raises(IndexError):
        ring.popleft()


def test_publishing_gives_causes_to_the_seqs_in_flight_only():
    ring = Inflight()
    ring.enter(1, 3)
    ring.remove(2)  # e.g. halted
    assert ring.published(1, 5, 10) == 2  # 2 is not in flight, 4 and 5 never were
    assert [ring.cause(1), ring.cause(3)] == [10, 12]
    with pytest.raises(ValueError, match="new order seq 9"):
        ring.enter(4, 2, [9])


def _table() -> SessionTable:
    cfg = GatewayConfig(sessions=[SessionEntry(1, "token-one", 7)], limits=Limits())
    return SessionTable(cfg)


def test_the_session_views_and_the_open_orders_count_follow_the_ring():
    t = _table()
    s = t.by_id[1]
    t.pending_new[7] += s.inflight.enter(1, 4, [2, 4])
    t.published(s, 1, 50, 3)  # seq 4 is not published yet (a parked command)
    assert dict(s.causes) == {1: 50, 2: 51, 3: 52} and 4 not in s.causes
    assert s.news == {2, 4} and t.open_orders(7) == 2
    assert t.settle(60) == [s] and list(s.inflight) == [4] and t.open_orders(7) == 1
    assert s in t.unsettled and s.ack_target() == 3
    assert s.complete_through(4) == 1
