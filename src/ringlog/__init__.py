"""ringlog: an LMAX-style single-writer event processor for Python.

A Disruptor ring feeds one business-logic thread that journals every event to
memory-mapped segments, recovers by snapshot + replay, and halts on an output-volume
circuit breaker without losing an event. The public API is this flat namespace.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__
from .errors import (
    CircuitOpenError,
    InsufficientCapacityError,
    JournalCorruptError,
    JournalError,
    RingClosedError,
    RingError,
    RingLogError,
    SchemaError,
    SnapshotError,
)
from .events import HEADER_DTYPE, HEADER_SIZE, EventRegistry, EventType, slot_dtype

# Parts are imported on first use: `ringlog --help` stays instant, and each part loads alone.
_LAZY: dict[str, str] = {}


def _export(module: str, *names: str) -> None:
    for n in names:
        _LAZY[n] = module


_export("._ring", "Ring", "Consumer", "Batch", "Event")
_export(".journal", "Journal", "JournalReader", "JournalTailer", "Record", "TornTail")
_export(".snapshot", "Snapshot", "SnapshotStore")
_export(".breaker", "Breaker", "BreakerConfig", "BreakerConfigError", "Limit", "RatioLimit",
        "TripReport")
_export(".processor", "Processor", "ProcessorConfig", "ProcessorMetrics", "RecoveryReport")
_export(".handler", "EventHandler", "BatchEventHandler")
_export("._handler", "CyEventHandler")
_export(".engine", "Engine", "EngineConfig", "EngineConfigError", "SymbolSpec", "AccountLimits")


if TYPE_CHECKING:  # the lazy names with their real types, for mypy and IDEs (same list as above)
    from ._handler import CyEventHandler as CyEventHandler
    from ._ring import Batch as Batch
    from ._ring import Consumer as Consumer
    from ._ring import Event as Event
    from ._ring import Ring as Ring
    from .breaker import Breaker as Breaker
    from .breaker import BreakerConfig as BreakerConfig
    from .breaker import BreakerConfigError as BreakerConfigError
    from .breaker import Limit as Limit
    from .breaker import RatioLimit as RatioLimit
    from .breaker import TripReport as TripReport
    from .engine import AccountLimits as AccountLimits
    from .engine import Engine as Engine
    from .engine import EngineConfig as EngineConfig
    from .engine import EngineConfigError as EngineConfigError
    from .engine import SymbolSpec as SymbolSpec
    from .handler import BatchEventHandler as BatchEventHandler
    from .handler import EventHandler as EventHandler
    from .journal import Journal as Journal
    from .journal import JournalReader as JournalReader
    from .journal import JournalTailer as JournalTailer
    from .journal import Record as Record
    from .journal import TornTail as TornTail
    from .processor import Processor as Processor
    from .processor import ProcessorConfig as ProcessorConfig
    from .processor import ProcessorMetrics as ProcessorMetrics
    from .processor import RecoveryReport as RecoveryReport
    from .snapshot import Snapshot as Snapshot
    from .snapshot import SnapshotStore as SnapshotStore


def get_include() -> list[str]:
    """The C header directories a Cython extension needs to ``cimport ringlog._ring`` (and
    the other .pxd files shipped in the wheel): pass them as ``include_dirs``."""
    from pathlib import Path

    here = Path(__file__).parent
    ext = here.parent.parent / "ext" / "ringlog"  # a checkout (editable install)
    base = here if (here / "includes").is_dir() else ext
    return [str(base / "includes"), str(base / "engine")]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ringlog' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "HEADER_DTYPE",
    "HEADER_SIZE",
    "CircuitOpenError",
    "EventRegistry",
    "EventType",
    "InsufficientCapacityError",
    "JournalCorruptError",
    "JournalError",
    "RingClosedError",
    "RingError",
    "RingLogError",
    "SchemaError",
    "SnapshotError",
    "get_include",
    "slot_dtype",
    *_LAZY,
]
