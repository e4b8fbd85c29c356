"""Stub of ringlog._loop: the journaller stage and the business-logic state machine."""

from collections.abc import Callable, Iterator
from typing import Any

from ._breaker import BreakerCore
from ._counters import StageCounters
from ._journal import JournalAppender, Segment
from ._release import ReleaseStage
from ._ring import Consumer, Ring

def journal_stage(consumer: Consumer, appender: JournalAppender, max_batch: int,
                  mark_batches: bool = True, counters: StageCounters | None = None) -> None: ...

class SlotEvent:
    """The flyweight event a Python handler receives (valid only during the call)."""

    @property
    def sequence(self) -> int: ...
    @property
    def timestamp_ns(self) -> int: ...
    @property
    def correlation_id(self) -> int: ...
    @property
    def producer_seq(self) -> int: ...
    @property
    def type_id(self) -> int: ...
    @property
    def flags(self) -> int: ...
    @property
    def producer_id(self) -> int: ...
    @property
    def payload(self) -> memoryview: ...
    def decode(self, registry: Any) -> Any: ...

class LogicCore:
    """The loop's logic; configured through ringlog.logic.LogicLoop."""

    handler: Any
    kind: int
    breaker: BreakerCore | None
    counters: StageCounters
    journal_counters: StageCounters  # the inline topology's journal stages' counters
    output_counters: StageCounters
    sink: Callable[[Any], None] | None
    snapshot_every: int
    last_sequence: int
    pending_from: int
    dedup: dict[int, int]
    outputs: int
    published: int
    processed: int
    duplicates: int
    dead_letters: int
    replaying: bool
    replay_quiet: int
    output_ring: Ring | None
    output_journal: JournalAppender | None
    slot_size: int
    def __init__(self, handler: Any, breaker: BreakerCore | None = None, *,
                 sink: Callable[[Any], None] | None = None,
                 reread: Callable[[int, int], Iterator[tuple[int, Any]]] | None = None,
                 snapshot: Callable[[int], None] | None = None,
                 dead_letter: Callable[[Any, int, str], None] | None = None,
                 dedup: bool = False, snapshot_every: int = 0, slot_size: int = 128,
                 max_batch: int = 1024, on_resume: Callable[[], None] | None = None) -> None: ...
    def set_outputs(self, ring: Ring | None = None,
                    journal: JournalAppender | None = None,
                    stage: ReleaseStage | None = None) -> None: ...
    @property
    def output_keys(self) -> Any: ...
    def run(self, consumer: Consumer, base: int, journal: JournalAppender | None = None,
            max_batch: int = 0) -> None: ...
    def pump(self, consumer: Consumer, base: int, journal: JournalAppender | None,
             max_batch: int, release_gil: bool = False) -> int: ...
    def replay_segment(self, seg: Segment, offset: int, sequence: int, verify: bool = True,
                       stop_sequence: int = -1) -> tuple[int, int, int, int]: ...
    def replay_done(self) -> None: ...
    def process(self, event: Any, sequence: int, end_of_batch: bool) -> None: ...
    def emit(self, payload: Any, type_id: int = 0, key: int = 0) -> int: ...
    @property
    def halted(self) -> bool: ...

class LoopHandle:
    """The processor's loop as C calls: pump() (driven topology) and its progress."""

    core: LogicCore
    running: bool
    driven: bool
    driver: int
    def __init__(self, core: LogicCore, lock: Any, on_error: Callable[[BaseException], None],
                 driven: bool) -> None: ...
    def arm(self, consumer: Consumer, base: int, journal: JournalAppender, max_batch: int,
            release_gil: bool) -> None: ...
    def pump(self) -> int: ...
    def held(self) -> int: ...
    @property
    def holding(self) -> bool: ...
    @property
    def processed_sequence(self) -> int: ...
