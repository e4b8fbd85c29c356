"""ringlog's error hierarchy: every error says what was wrong and what to do."""

__all__ = [
    "CircuitOpenError",
    "InsufficientCapacityError",
    "JournalCorruptError",
    "JournalError",
    "RingClosedError",
    "RingError",
    "RingLogError",
    "SchemaError",
    "SnapshotError",
]


class RingLogError(Exception):
    """Base class of every error ringlog raises."""


class RingError(RingLogError):
    """A ring buffer was misused or is incompatible (bad size, foreign shared-memory file)."""


class RingClosedError(RingError):
    """An operation on a ring (or processor) that has been closed."""


class InsufficientCapacityError(RingError):
    """A non-blocking claim found no free slot: the consumers have not caught up (backpressure)."""


class SchemaError(RingLogError, ValueError):
    """An event type is unknown, registered twice, or does not fit a slot."""


class JournalError(RingLogError):
    """A journal could not be opened, written or read."""


class JournalCorruptError(JournalError, ValueError):
    """A journal record or segment failed validation; names the file and the byte offset."""

    def __init__(self, message: str, path: str | None = None, offset: int | None = None,
                 sequence: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset
        self.sequence = sequence


class SnapshotError(RingLogError):
    """A snapshot could not be written, or no valid snapshot could be loaded."""


class CircuitOpenError(RingLogError):
    """The circuit breaker is open: the processor is halted until an operator resets it."""
