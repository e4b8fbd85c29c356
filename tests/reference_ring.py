"""A plain-Python model of the ring with the same observable behaviour, as a test oracle.

Single-threaded and obviously correct: a list of slots, a cursor, consumer sequences with
upstream dependencies, and the same backpressure rule (never overwrite an unreleased slot).
"""


class ModelRing:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.slots: dict[int, bytes] = {}
        self.cursor = -1
        self.consumers: list[int] = []  # released sequence of each consumer
        self.deps: list[list[int]] = []
        self.pending: list[int] = []  # highest sequence handed out by poll, per consumer

    def add_consumer(self, after: list[int]) -> int:
        start = min([self.cursor] + [self.consumers[d] for d in after])
        self.consumers.append(start)
        self.pending.append(start)
        self.deps.append(list(after))
        return len(self.consumers) - 1

    def free(self) -> int:
        low = min(self.consumers, default=self.cursor)
        return self.capacity - (self.cursor - low)

    def try_publish(self, payload: bytes) -> int | None:
        if self.free() <= 0:
            return None
        self.cursor += 1
        self.slots[self.cursor] = payload
        return self.cursor

    def poll(self, c: int, max_batch: int) -> list[tuple[int, bytes]]:
        self.consumers[c] = max(self.consumers[c], self.pending[c])  # poll releases
        lo = self.pending[c] + 1
        hi = min([self.cursor] + [self.consumers[d] for d in self.deps[c]])
        hi = min(hi, lo + max_batch - 1, (lo | (self.capacity - 1)))
        if hi < lo:
            return []
        self.pending[c] = hi
        return [(s, self.slots[s]) for s in range(lo, hi + 1)]

    def release(self, c: int) -> None:
        self.consumers[c] = max(self.consumers[c], self.pending[c])
