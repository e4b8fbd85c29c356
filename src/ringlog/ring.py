"""Ring conveniences that are not on the hot path: CPU pinning of the calling thread.

The ring itself is ``ringlog._ring`` (Ring, Consumer, Batch, Event).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from .errors import RingError

__all__ = ["pin_current_thread"]


def pin_current_thread(cpus: int | Iterable[int]) -> set[int]:
    """Pins the calling thread (not the whole process) to ``cpus``; returns the previous set.

    A busy-spinning consumer pinned to its own core keeps its cache warm and is never
    migrated; on a 2-core machine pin at most one spinning thread per core. Linux only.
    """
    wanted = {cpus} if isinstance(cpus, int) else set(cpus)
    available = os.sched_getaffinity(0)
    if not wanted or not wanted <= set(range(os.cpu_count() or 1)):
        raise RingError(f"cpus must be a non-empty subset of 0..{(os.cpu_count() or 1) - 1}, "
                        f"got {sorted(wanted)}")
    os.sched_setaffinity(0, wanted)  # pid 0: the calling thread on Linux
    return available
