"""The resend store's byte arena (ringlog._gateway.ResendStore): the same answers, seqs,
evictions and accounting as a plain model of the rule in docs/protocol.md ("Memory") - an
ordered map of seq -> frames, oldest seq first out - across arena wrap-arounds, growth and
budget evictions; never more real bytes than the budget; and the kept frames resent byte for
byte after a reconnect."""

from __future__ import annotations

from collections import OrderedDict

from hypothesis import given, settings
from hypothesis import strategies as st

from ringlog._gateway import ANSWER_COST, SEQ_COST, ResendStore
from ringlog.engine.records import Side
from ringlog.gateway.protocol import (
    Ack,
    Error,
    ErrorCode,
    FrameDecoder,
    NewOrder,
    Report,
    ServerMessage,
    encode_frame,
)
from ringlog.gateway.session import Limits

from gateway_helpers import ALICE, Raw, config, logon, running


class ModelStore:
    """The rule in plain Python (the oracle): seq -> list of frames in first-answer order."""

    def __init__(self, window: int, budget: int) -> None:
        self.window, self.budget = window, budget
        self.frames: OrderedDict[int, list[bytes]] = OrderedDict()
        self.overflowed: set[int] = set()
        self.kept = self.evicted = 0

    def _evict(self) -> None:
        seq, frames = self.frames.popitem(last=False)
        self.kept -= SEQ_COST + ANSWER_COST * len(frames)
        self.overflowed.discard(seq)
        self.evicted += 1

    def record(self, seq: int, frame: bytes) -> None:
        if seq not in self.frames:
            if len(self.frames) == self.window:
                self._evict()
            self.frames[seq] = []
            self.kept += SEQ_COST
        elif seq in self.overflowed:
            return
        self.frames[seq].append(frame)
        self.kept += ANSWER_COST
        while self.kept > self.budget:
            if next(iter(self.frames)) != seq:
                self._evict()
                continue
            self.kept -= ANSWER_COST * (len(self.frames[seq]) - 1)
            self.frames[seq] = [encode_frame(Error(
                ErrorCode.MEMORY_LIMIT, f"the answers of seq {seq} passed this session's "
                f"resend budget ({self.budget} bytes): not kept, ask again", seq))]
            self.overflowed.add(seq)
            break


def _same(store: ResendStore, model: ModelStore) -> None:
    assert list(store) == list(model.frames)
    assert len(store) == len(model.frames)
    assert (store.kept, store.evicted, store.overflowed) == \
        (model.kept, model.evicted, model.overflowed)
    for seq, frames in model.frames.items():
        assert seq in store and store.count(seq) == len(frames)
        assert store.get(seq) == b"".join(frames)
        assert store.get(seq, 1) == (frames[0] if frames else b"")


def _frame(seq: int, i: int, size: int) -> bytes:
    return encode_frame(Error(ErrorCode.BAD_MESSAGE, "x" * size, seq + i))


# frames of at most ~60 bytes: the accounting (>= 160 bytes a frame) binds before the arena
answers = st.lists(st.tuples(st.integers(1, 60), st.integers(0, 40)), max_size=600)


@settings(max_examples=200, deadline=None)
@given(answers, st.integers(1, 64), st.integers(200, 40_000))
def test_the_arena_keeps_what_the_model_of_the_rule_keeps(ops, window, budget):
    store, model = ResendStore(window, budget), ModelStore(window, budget)
    for i, (seq, size) in enumerate(ops):
        f = _frame(seq, i, size)
        store.record(seq, f)
        model.record(seq, f)
        assert store.kept == model.kept  # checked at every step, the rest at the end
    _same(store, model)
    assert store.arena_bytes <= max(4096, budget + 15)


# the gateway's own order: seqs rising by 0 (more answers of the seq), 1 or a few (errors
# answered before an earlier seq's engine answers), now and then an earlier seq's answers
steps = st.lists(st.tuples(st.sampled_from([0, 0, 1, 1, 1, 2, 5, -1, -3, -30]),
                           st.integers(0, 40)), max_size=600)


@settings(max_examples=200, deadline=None)
@given(steps, st.integers(1, 64), st.integers(200, 40_000))
def test_seqs_in_the_gateways_order_are_kept_as_the_model_keeps_them(ops, window, budget):
    # record_frame finds the newest seq and a seq past every kept one without the hash:
    # the same answers as the model when seqs come mostly in order, repeat and go back
    store, model = ResendStore(window, budget), ModelStore(window, budget)
    seq = 1
    for i, (step, size) in enumerate(ops):
        seq = max(1, seq + step)
        f = _frame(seq, i, size)
        store.record(seq, f)
        model.record(seq, f)
    _same(store, model)


def test_the_arena_wraps_around_many_times_and_keeps_the_newest_seqs_whole():
    # 1 MiB of budget, two interleaved answers of ~100 bytes per seq: the arena grows to what
    # the kept frames need (half the budget) and is written over several times
    store, model = ResendStore(4096, 1 << 20), ModelStore(4096, 1 << 20)
    written = 0
    for seq in range(1, 20_001):
        for target, f in ((seq, _frame(seq, 0, 80)), (seq - 1, _frame(seq - 1, 1, 60))):
            if target:
                store.record(target, f)
                model.record(target, f)
                written += len(f)
    _same(store, model)
    assert store.evicted > 10_000 and store.arena_bytes <= 1 << 20
    assert written > 4 * store.arena_bytes


def test_the_arena_grows_while_its_oldest_record_is_mid_ring_and_keeps_every_link():
    # the window evicts first (the oldest record moves round a 16 KiB arena), then seqs of
    # three interleaved 400-byte answers need 64 KiB: the arena grows from a wrapped state
    store, model = ResendStore(40, 64 << 10), ModelStore(40, 64 << 10)
    for seq in range(1, 1001):
        f = _frame(seq, 0, 10)
        store.record(seq, f)
        model.record(seq, f)
    assert store.arena_bytes == 16 << 10
    for seq in range(1001, 1041):
        for target in (seq - 2, seq - 1, seq):
            f = _frame(target, seq, 400)
            store.record(target, f)
            model.record(target, f)
    _same(store, model)
    assert store.arena_bytes == 64 << 10


def test_frames_larger_than_the_accounting_evict_by_real_bytes_oldest_first():
    # 1,000-byte frames count 160 bytes each: the arena (the budget in real bytes) binds
    store = ResendStore(window=1000, budget=64 << 10)
    frames = {seq: _frame(seq, 0, 1000) for seq in range(1, 501)}
    for seq, f in frames.items():
        store.record(seq, f)
    kept = list(store)
    assert kept == list(range(501 - len(kept), 501))  # a suffix: the oldest went first
    assert 40 <= len(kept) < 66 and store.arena_bytes == 64 << 10
    assert all(store.get(seq) == frames[seq] for seq in kept)
    assert store.evicted == 500 - len(kept)
    assert store.kept == len(kept) * (SEQ_COST + ANSWER_COST)


def test_one_seq_past_the_arena_keeps_its_memory_limit_error_and_later_seqs_still_fit():
    store = ResendStore(window=10, budget=1 << 20)
    store.record(1, b"ok" * 10)
    for i in range(2000):  # ~2 MB of answers to seq 2: more than the arena can hold
        store.record(2, _frame(2, i, 1000))
    assert list(store) == [2] and store.overflowed == {2} and store.evicted == 1
    (err,) = FrameDecoder(ServerMessage).feed(store.get(2))
    assert err.code == ErrorCode.MEMORY_LIMIT and err.seq == 2
    store.record(2, b"ignored")  # an overflowed seq keeps nothing more
    store.record(3, encode_frame(Ack(3)))
    assert store.get(3) == encode_frame(Ack(3)) and store.count(2) == 1


def test_a_reconnected_client_is_resent_its_answers_after_the_arena_wrapped(tmp_path):
    # 24 KiB of resend budget: ~60 seqs of the 400 sent are kept; the arena wraps ~7 times
    lim = Limits(session_memory=24 << 10, rate=1e6, burst=100_000)
    n = 400
    with running(tmp_path, config(lim)) as g:
        r = Raw(g.gateway.address)
        logon(r, ALICE)
        r.send(*[NewOrder(seq, seq, 1, Side.BUY, 1, 100 + seq % 50) for seq in range(1, n + 1)])
        first = [m for m in r.read_until(lambda m: m == Ack(n), timeout=30)
                 if isinstance(m, Report) and m.seq > 0]
        r.close()
        kept = g.call(lambda: list(g.gateway.table.by_id[1].store))
        assert kept == list(range(n - len(kept) + 1, n + 1)) and 30 < len(kept) < n
        r2 = Raw(g.gateway.address)
        logon(r2, ALICE, seq=n)
        for seq in (kept[0], kept[len(kept) // 2], n):
            r2.send(NewOrder(seq, seq, 1, Side.BUY, 1, 100 + seq % 50))
            again = [m for m in r2.read_until(lambda m, q=seq: m == Ack(q), timeout=10)
                     if isinstance(m, Report)]
            assert again == [m for m in first if m.seq == seq]
            assert [m.kind for m in again] == ["accepted", "rested"]
