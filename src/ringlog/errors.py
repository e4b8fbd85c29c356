"""ringlog's error hierarchy: every error says what was wrong and what to do.

Every error ringlog raises derives from RingLogError and from the builtin a Python user would
catch for that kind of failure:

    RingLogError
    |- ConfigError            ValueError, TypeError  (.field "ProcessorConfig.x", .value)
    |  |- BreakerConfigError, EngineConfigError      (ringlog.breaker, ringlog.engine)
    |- RingError              ValueError             (misuse, incompatible shared file)
    |  |- RingClosedError                            (as a closed file's ValueError)
    |  |- InsufficientCapacityError  BlockingIOError (a non-blocking claim would block)
    |- SchemaError            ValueError
    |- JournalError           OSError
    |  |- JournalCorruptError ValueError too         (.path .offset .sequence)
    |- SnapshotError          OSError
    |- CircuitOpenError       RuntimeError
    |- CountersError          ValueError             (not a counters file; a bad allocation)
    |  |- CountersVersionError                       (another layout version)
    |- CountersFileError      OSError                (.errno .path: refused, in use: EBUSY)
    |  |- CountersMissingError FileNotFoundError
    |- StateError             RuntimeError           (cannot go on in its current state)
    |- WaitTimeoutError       TimeoutError           (drain, a server's start)
    |- HandlerSpecError       ValueError             ("module:Class" that names no handler)
    |- ListenError            OSError                (.errno, .filename "host:port")
    |- MissingExtraError      ImportError            (names the pip command)

Beside their parts: AdminError (RuntimeError: refused) and AdminSocketError
(ConnectionError: not delivered) in ringlog.admin; GatewayError (ConnectionError),
GatewayTimeout (TimeoutError) and LogonRejected (PermissionError) in ringlog.client;
GatewayConfigError (ValueError) in ringlog.gateway; Divergence (RuntimeError) in
ringlog.cluster. tests/test_typing.py checks every one.
"""

__all__ = [
    "CircuitOpenError",
    "ClusterError",
    "ClusterSetupError",
    "ClusterTimeoutError",
    "ClusterUnreachableError",
    "ConfigError",
    "CountersError",
    "CountersFileError",
    "CountersMissingError",
    "CountersVersionError",
    "HandlerSpecError",
    "InsufficientCapacityError",
    "JournalCorruptError",
    "JournalError",
    "ListenError",
    "MissingExtraError",
    "RingClosedError",
    "RingError",
    "RingLogError",
    "SchemaError",
    "SnapshotError",
    "StateError",
    "WaitTimeoutError",
]


class RingLogError(Exception):
    """Base class of every error ringlog raises."""


class ConfigError(RingLogError, ValueError, TypeError):
    """A configuration value that cannot work, raised when the configuration is built.

    ``field`` is the path of the offending value the way ``msgspec.convert`` reports it
    (``"ProcessorConfig.ring_capacity"``, ``"BreakerConfig.limits[1].per"``) and ``value`` the
    value given. A ValueError and a TypeError, so either builtin catches it.
    """

    def __init__(self, field: str, message: str, value: object = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.value = value


class RingError(RingLogError, ValueError):
    """A ring buffer was misused or is incompatible (bad size, foreign shared-memory file)."""


class RingClosedError(RingError):
    """An operation on a ring (or processor) that has been closed."""


class InsufficientCapacityError(RingError, BlockingIOError):
    """A non-blocking claim found no free slot: the consumers have not caught up (backpressure)."""


class SchemaError(RingLogError, ValueError):
    """An event type is unknown, registered twice, or does not fit a slot."""


class JournalError(RingLogError, OSError):
    """A journal could not be opened, written or read. ``errno`` and ``path`` name the
    operating-system error and the file when one caused it (a full disk: ENOSPC)."""

    def __init__(self, message: str = "", *, errno: int | None = None,
                 path: str | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.path = path


class JournalCorruptError(JournalError, ValueError):
    """A journal record or segment failed validation; names the file and the byte offset."""

    def __init__(self, message: str, path: str | None = None, offset: int | None = None,
                 sequence: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset
        self.sequence = sequence


class SnapshotError(RingLogError, OSError):
    """A snapshot could not be written, or no valid snapshot could be loaded; ``errno`` and
    ``path`` as in JournalError."""

    def __init__(self, message: str = "", *, errno: int | None = None,
                 path: str | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.path = path


class CircuitOpenError(RingLogError, RuntimeError):
    """The circuit breaker is open: the processor is halted until an operator resets it."""


class WaitTimeoutError(RingLogError, TimeoutError):
    """A wait bounded by a timeout ran out (``drain()``, a server's start); the message says
    how far it got."""


class HandlerSpecError(RingLogError, ValueError):
    """A ``module:Class`` (or ``file.py:Class``) spec that does not name an importable event
    handler, factory or breaker; says which part is wrong."""


class StateError(RingLogError, RuntimeError):
    """The object cannot go on in its current state: ``start()`` twice, ``drain()`` of a
    stopped processor, ``emit()`` outside a processor, a processor or a replay stopped by its
    handler's exception (the cause is chained); says the state."""


class CountersError(RingLogError, ValueError):
    """A file that is not a usable counters file (size, magic, header), or a counter that
    cannot be allocated (label, type, the file full); names the file or the label. The
    operating system's refusals are CountersFileError."""


class CountersVersionError(CountersError):
    """A counters file of another layout version: read it with the ringlog that wrote it."""


class CountersFileError(RingLogError, OSError):
    """The operating system refused the counters file (open, create, size, map), or another
    live process writes it (``errno`` EBUSY); ``errno`` and ``path`` say which."""

    def __init__(self, message: str, *, errno: int | None = None,
                 path: str | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.path = path


class CountersMissingError(CountersFileError, FileNotFoundError):
    """No counters file where one was looked for: no processor (with counters on) has run
    in that directory."""


class ListenError(RingLogError, OSError):
    """A server (the metrics endpoint) could not listen on its address: ``errno`` says why
    and ``filename`` is the ``host:port``. Build it as ``ListenError(errno, strerror,
    "host:port")``, like an OSError."""


class ClusterError(RingLogError, RuntimeError):
    """A replicated shard cannot go on: a gap in its input stream, a publisher that failed,
    a replica's processor that stopped, a directory a snapshot cannot seed."""


class ClusterTimeoutError(ClusterError, TimeoutError):
    """NATS or JetStream did not answer (or a replica did not get somewhere) in time; the
    message says what was waited for and how long."""


class ClusterUnreachableError(ClusterError, ConnectionError):
    """No NATS server of the cluster's list could be reached."""


class ClusterSetupError(ClusterError):
    """What a replica found at start that the operator must fix (servers whose
    ``max_payload`` cannot carry the shard's output batches, an output stream of an earlier
    format): the message names the servers or the stream and the fix (exit 2)."""


class MissingExtraError(RingLogError, ImportError):
    """A feature needs a package of an extra that is not installed; says the pip command."""
