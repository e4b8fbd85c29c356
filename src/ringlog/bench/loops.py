"""Measuring loops shared by the demo and bench/: the ring between two GIL-free C loops."""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

from .._ring import Ring
from .._ringbench import consume, consume_values, produce, produce_values
from ..ring import pin_current_thread

if TYPE_CHECKING:
    from .._ring import Producer, Wait

__all__ = ["one_to_one_threads"]


def one_to_one_threads(count: int, batch: int = 1, wait: Wait = "busy_spin",
                       producer: Producer = "single", like_for_like: bool = False) -> float:
    """Events per second from a producer thread to a consumer thread, claims of ``batch``
    (the Disruptor's OneToOneSequencedThroughputTest shape). By default each event carries
    the full header and the consumer checks per-producer order; ``like_for_like`` writes one
    8-byte value per event and sums it, as the Disruptor's test does. With two or more CPUs the
    producer is pinned to CPU 0 and the consumer to CPU 1: unpinned, the scheduler sometimes
    stacks both spinning threads on one core and the figure swings 5x between runs."""
    ring = Ring(1 << 16, 64, producer=producer, wait=wait)
    c = ring.consumer()
    pin = len(os.sched_getaffinity(0)) >= 2
    before = os.sched_getaffinity(0)

    def consumer() -> None:
        if pin:
            pin_current_thread(1)
        if like_for_like:
            consume_values(c, count)
        else:
            consume(c, count)

    t = threading.Thread(target=consumer)
    if pin:
        pin_current_thread(0)
    try:
        t0 = time.perf_counter()
        t.start()
        (produce_values if like_for_like else produce)(ring, count, batch)
        t.join()
        return count / (time.perf_counter() - t0)
    finally:
        if pin:
            os.sched_setaffinity(0, before)
