"""Stub of ringlog._ringbench: GIL-free producer and consumer loops for benchmarks."""

from ._ring import Consumer, Ring

def produce(ring: Ring, count: int, batch: int = 1, producer_id: int = 0) -> int: ...
def consume(consumer: Consumer, count: int, nproducers: int = 1,
            timeout: float = 30.0) -> int: ...
