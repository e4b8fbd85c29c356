"""Stub of ringlog._wire: order frames from command records, answer frames scanned in C."""

from typing import Any

import numpy as np
from numpy.typing import NDArray

ORDER_FRAME_MAX: int

def encode_orders(commands: NDArray[np.uint8] | memoryview | bytes,
                  kinds: NDArray[np.uint32], start: int, stop: int, first_seq: int) -> bytes: ...

class AnswerScanner:
    base: int
    answered: int
    halted: int
    errors: int
    frames: int
    acked: int
    bad: int
    def __init__(self, done: NDArray[np.int64], base: int) -> None: ...
    def feed(self, data: bytes | bytearray | memoryview, now: int) -> int: ...


class OutputSlots:
    count: int
    skipped: int
    def __init__(self, block: bytes, slot_size: int, subscribers: dict[int, Any]) -> None: ...
    def __iter__(self) -> OutputSlots: ...
    def __next__(self) -> tuple[int, int, bytes, int, int]: ...
