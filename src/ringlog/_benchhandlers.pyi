"""Stub of ringlog._benchhandlers: small Cython handlers for benchmarks and tests."""

from typing import Any

from ._handler import CyEventHandler

class CountingHandler(CyEventHandler):
    count: int
    def __init__(self, every: int = 16, nogil: bool = False) -> None: ...

class LatencyHandler(CyEventHandler):
    count: int
    def __init__(self, out: Any, nogil: bool = False) -> None: ...

class LookaheadHandler(CyEventHandler):
    count: int
    prefetches: int
    def __init__(self, out: Any, lookahead: bool = True, nogil: bool = False) -> None: ...

class SumHandler(CyEventHandler):
    count: int
    total: int
    def __init__(self, fail_on: int | None = None, nogil: bool = False) -> None: ...
