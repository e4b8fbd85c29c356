"""Stub of ringlog._release: the output stage for slot listeners as one compiled pump."""

from collections.abc import Callable

from ._counters import StageCounters
from ._journal import JournalAppender
from ._ring import Consumer

class ReleaseStage:
    """Appends outputs to the output journal and hands durable prefixes to slot listeners.
    Not thread-safe: one thread runs it."""

    consumer: Consumer
    listeners: list[Callable[[bytes, int], object]]
    sink: SlotSink | None
    appended: int
    released: int
    handovers: int
    durable_waits: int
    hook_handovers: int

    def __init__(self, consumer: Consumer, journal: JournalAppender,
                 gate: JournalAppender | None,
                 listeners: list[Callable[[bytes, int], object]],
                 counters: StageCounters | None = None) -> None: ...
    def run(self) -> None: ...

class SlotSink:
    """Output slot blocks handed over without the GIL; ``fd`` (an eventfd) is readable while
    some wait. One producer thread and one consumer thread."""

    fd: int
    slot_size: int
    pushes: int
    signals: int

    def __init__(self) -> None: ...
    def __call__(self, slots: bytes | bytearray | memoryview, slot_size: int) -> None: ...
    def take(self) -> bytes | None: ...
    @property
    def queued(self) -> int: ...
