"""The embedded matching engine: price-time priority books as the processor's business logic.

``Engine(EngineConfig(...))`` is a Cython handler (``ringlog.engine._engine``) over the books
of ``ringlog.engine._book``; ``records`` holds the binary command and report layouts shared
with the gateway and tools; ``codec`` builds command payloads, decodes reports and provides
``registry()``. Semantics: docs/matching.md.
"""

from ._engine import Engine
from .codec import (
    cancel,
    decode,
    mass_cancel,
    modify,
    new_order,
    open_orders,
    order_status,
    registry,
)
from .config import AccountLimits, EngineConfig, EngineConfigError, SymbolSpec
from .records import (
    CancelReason,
    Command,
    OrderType,
    RejectReason,
    Report,
    Side,
    Stp,
    Tif,
)

__all__ = [
    "AccountLimits",
    "CancelReason",
    "Command",
    "Engine",
    "EngineConfig",
    "EngineConfigError",
    "OrderType",
    "RejectReason",
    "Report",
    "Side",
    "Stp",
    "SymbolSpec",
    "Tif",
    "cancel",
    "decode",
    "mass_cancel",
    "modify",
    "new_order",
    "open_orders",
    "order_status",
    "registry",
]
