"""Stub of ringlog._loadgen: the load generator's send/receive loop in C."""

from typing import Any

import numpy as np
from numpy.typing import NDArray

LOST: dict[int, str]

def frame_ends(frames: bytes, count: int) -> NDArray[np.int64]: ...
def drive(fds: list[int], frames: list[bytes], ends: list[NDArray[np.int64]],
          intended: list[NDArray[np.int64]], scanners: list[Any], tick_ns: int, drain_ns: int,
          sample_ns: int, start_ns: int, precise_wait: bool = True,
          kernel_stamps: bool = False
          ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int, int, int]], int]: ...
