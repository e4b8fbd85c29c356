"""ringlog: an LMAX-style single-writer event processor for Python.

A Disruptor ring feeds one business-logic thread that journals every event to
memory-mapped segments, recovers by snapshot + replay, and halts on an output-volume
circuit breaker without losing an event. The public API is this flat namespace.
"""

from __future__ import annotations

import importlib
from typing import Any

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
    "slot_dtype",
    *_LAZY,
]
