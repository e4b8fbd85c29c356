"""Stub of ringlog._release: the output stage for slot listeners as one compiled pump."""

from collections.abc import Callable
from typing import Any

from ._counters import StageCounters
from ._journal import JournalAppender
from ._ring import Consumer

class ReleaseStage:
    """Appends outputs to the output journal and hands durable prefixes to slot listeners.
    One thread runs it: its own (``run()``) or, ``attach()``-ed, the engine loop."""

    consumer: Consumer
    listeners: list[Callable[[bytes, int], Any]]  # what a listener returns is ignored
    sink: SlotSink | None
    appended: int
    released: int
    handovers: int
    durable_waits: int
    hook_handovers: int
    by_loop: bool

    def __init__(self, consumer: Consumer, journal: JournalAppender,
                 gate: JournalAppender | None,
                 listeners: list[Callable[[bytes, int], Any]],
                 counters: StageCounters | None = None) -> None: ...
    def run(self) -> None: ...
    def attach(self) -> None:
        """Makes the engine loop this stage's thread (bounded sink, durable hook)."""
    def unbound(self) -> None:
        """Lifts the sink's bound and hands over what it held back."""
    def finish(self) -> None:
        """Hands over everything appended once durable, then unhooks."""

class SlotSink:
    """Output slot blocks handed over without the GIL; ``fd`` (an eventfd) is readable while
    some wait. One producer thread and one consumer thread."""

    fd: int
    slot_size: int
    pushes: int
    signals: int
    limit: int
    refusals: int
    quiet: bool

    def __init__(self) -> None: ...
    def __call__(self, slots: bytes | bytearray | memoryview, slot_size: int) -> None: ...
    def take(self) -> bytes | None: ...
    @property
    def queued(self) -> int: ...
