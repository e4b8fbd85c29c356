"""A hypothesis state machine: the ring and the plain-Python model agree on every step."""

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ringlog._ring import Ring

from reference_ring import ModelRing


class RingMatchesModel(RuleBasedStateMachine):
    producer = "multi"

    def __init__(self):
        super().__init__()
        self.ring = Ring(8, 64, producer=self.producer)
        self.model = ModelRing(8)
        self.consumers = []
        self.counter = 0

    @precondition(lambda self: len(self.consumers) < 4)
    @rule(data=st.data())
    def add_consumer(self, data):
        after = data.draw(st.lists(st.sampled_from(range(len(self.consumers))), unique=True,
                                   max_size=2)) if self.consumers else []
        c = self.ring.consumer(after=[self.consumers[i] for i in after])
        assert self.model.add_consumer(after) == len(self.consumers)
        self.consumers.append(c)

    @rule(n=st.integers(1, 5))
    def publish(self, n):
        for _ in range(n):
            payload = self.counter.to_bytes(4, "little")
            self.counter += 1
            expect = self.model.try_publish(payload)
            assert self.ring.try_publish(payload) == (expect is not None)

    @rule(n=st.integers(1, 12))
    def publish_many(self, n):
        """A batch claim: all of it fits now, or the model says it would block (skipped)."""
        if self.model.free() < n:
            return
        payloads = [(self.counter + i).to_bytes(4, "little") for i in range(n)]
        self.counter += n
        for p in payloads:
            self.model.try_publish(p)
        assert self.ring.publish_many(payloads, timeout=0) == self.model.cursor

    @precondition(lambda self: self.consumers)
    @rule(data=st.data(), max_batch=st.integers(1, 8))
    def poll(self, data, max_batch):
        i = data.draw(st.sampled_from(range(len(self.consumers))))
        got = [(e.sequence, bytes(e.payload))
               for e in self.consumers[i].poll(max_batch=max_batch, timeout=0)]
        assert got == self.model.poll(i, max_batch)

    @precondition(lambda self: self.consumers)
    @rule(data=st.data())
    def release(self, data):
        i = data.draw(st.sampled_from(range(len(self.consumers))))
        self.consumers[i].release()
        self.model.release(i)

    @invariant()
    def cursor_and_sequences_agree(self):
        assert self.ring.cursor == self.model.cursor
        for i, c in enumerate(self.consumers):
            assert c.sequence == self.model.consumers[i]


class SingleProducerRingMatchesModel(RingMatchesModel):
    producer = "single"


TestMultiProducerRingMatchesModel = RingMatchesModel.TestCase
TestSingleProducerRingMatchesModel = SingleProducerRingMatchesModel.TestCase
