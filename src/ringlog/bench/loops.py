"""Measuring loops shared by the demo and bench/: the ring between two GIL-free C loops."""

from __future__ import annotations

import threading
import time

from .._ring import Ring
from .._ringbench import consume, produce

__all__ = ["one_to_one_threads"]


def one_to_one_threads(count: int, batch: int = 1, wait: str = "busy_spin",
                       producer: str = "single") -> float:
    """Events per second from a producer thread to a consumer thread, claims of ``batch``
    (the Disruptor's OneToOneSequencedThroughputTest shape)."""
    ring = Ring(1 << 16, 64, producer=producer, wait=wait)
    c = ring.consumer()
    t = threading.Thread(target=consume, args=(c, count))
    t0 = time.perf_counter()
    t.start()
    produce(ring, count, batch)
    t.join()
    return count / (time.perf_counter() - t0)
