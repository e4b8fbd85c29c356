"""Events: the fixed slot header, numpy views of it, and the registry of typed events.

A slot (and a journal record body) is a 48-byte header followed by the payload::

     0        8          16           24           32      36      40      44      48
     | seq    | timestamp  | correlation | producer_seq | type  | flags | length | prod_id | payload

Hot-path events are fixed binary records (a numpy dtype and a matching C struct); general
events are msgspec Structs registered with a type id and encoded as msgpack into the payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from .errors import SchemaError

__all__ = [
    "CONTROL_BASE",
    "FLAG_BATCH_END",
    "FLAG_CONTROL",
    "FLAG_MSGPACK",
    "FLAG_REPLAY",
    "HEADER_DTYPE",
    "HEADER_SIZE",
    "EventRegistry",
    "EventType",
    "control_descriptors",
    "is_control",
    "slot_dtype",
]

HEADER_SIZE = 48
FLAG_MSGPACK = 0x1
FLAG_CONTROL = 0x2
FLAG_REPLAY = 0x4
FLAG_BATCH_END = 0x8  # the journaller's batch ends here: replay sees the live batches

HEADER_DTYPE = np.dtype(
    [
        ("sequence", "<i8"),
        ("timestamp_ns", "<i8"),
        ("correlation_id", "<i8"),
        ("producer_seq", "<i8"),
        ("type_id", "<u4"),
        ("flags", "<u4"),
        ("length", "<u4"),
        ("producer_id", "<u4"),
    ]
)
assert HEADER_DTYPE.itemsize == HEADER_SIZE


def slot_dtype(slot_size: int, payload: np.dtype | None = None) -> np.dtype:
    """The structured dtype of one ring slot of ``slot_size`` bytes: header + payload.

    ``payload`` is the fixed record dtype that follows the header (a hot-path event); without
    it the payload is raw bytes. The result's itemsize is exactly ``slot_size``.
    """
    room = slot_size - HEADER_SIZE
    if room < 0:
        raise SchemaError(f"slot_size {slot_size} is smaller than the {HEADER_SIZE}-byte header")
    fields: list[tuple[Any, ...]] = [("header", HEADER_DTYPE)]
    if payload is None:
        fields.append(("payload", np.uint8, (room,)))
        return np.dtype(fields)
    payload = np.dtype(payload)
    if payload.itemsize > room:
        raise SchemaError(
            f"payload dtype of {payload.itemsize} bytes does not fit a {slot_size}-byte slot "
            f"({room} bytes after the header); use a larger slot_size"
        )
    return np.dtype(
        {"names": ["header", "payload"], "formats": [HEADER_DTYPE, payload],
         "offsets": [0, HEADER_SIZE], "itemsize": slot_size}
    )


@dataclass(frozen=True)
class EventType:
    """One registered event type: its id, name, schema version and Python type."""

    type_id: int
    name: str
    version: int
    struct: type[msgspec.Struct] | None
    dtype: np.dtype | None

    def describe(self) -> dict[str, Any]:
        """A JSON-able descriptor of this type, written into journal segment headers."""
        if self.dtype is not None:
            fields = [[n, self.dtype[n].str] for n in self.dtype.names or ()]
            kind = "record"
        elif self.struct is not None:
            fields = [[f.name, _type_name(f.type)] for f in msgspec.structs.fields(self.struct)]
            kind = "msgpack"
        else:
            fields, kind = [], "bytes"
        return {"type_id": self.type_id, "name": self.name, "version": self.version,
                "kind": kind, "fields": fields}


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", None) or repr(t)


class EventRegistry:
    """Maps type ids to event types, and encodes/decodes msgspec Struct payloads.

    Encoders and decoders are built once per type and reused (the msgspec way). Schemas are
    versioned: ``upcaster`` functions turn an old version's decoded dict into the current
    Struct, so old journals stay readable. Not thread-safe for registration; encode/decode are.
    """

    def __init__(self) -> None:
        self._by_id: dict[int, EventType] = {}
        self._by_struct: dict[type, EventType] = {}
        self._decoders: dict[int, msgspec.msgpack.Decoder] = {}
        self._upcasters: dict[tuple[int, int], Any] = {}
        self._encoder = msgspec.msgpack.Encoder()

    def register(self, type_id: int, struct: type[msgspec.Struct] | None = None, *,
                 name: str | None = None, version: int = 1,
                 dtype: np.dtype | None = None) -> EventType:
        """Registers a msgspec Struct (or a fixed numpy record ``dtype``) under ``type_id``."""
        if not isinstance(type_id, int) or not 0 < type_id < CONTROL_BASE:
            raise SchemaError(f"type_id must be an int in 1..{CONTROL_BASE - 1} (ids above are "
                              f"reserved for control events), got {type_id!r}")
        if type_id in self._by_id:
            raise SchemaError(f"type_id {type_id} is already registered as "
                              f"{self._by_id[type_id].name!r}")
        if struct is not None and not (isinstance(struct, type)
                                       and issubclass(struct, msgspec.Struct)):
            raise SchemaError(f"struct must be a msgspec.Struct subclass, got {struct!r}")
        if struct is not None and dtype is not None:
            raise SchemaError("register either a msgspec Struct or a numpy dtype, not both")
        et = EventType(type_id, name or (struct.__name__ if struct else f"type{type_id}"),
                       version, struct, np.dtype(dtype) if dtype is not None else None)
        self._by_id[type_id] = et
        if struct is not None:
            self._by_struct[struct] = et
            self._decoders[type_id] = msgspec.msgpack.Decoder(struct)
        return et

    def add_upcaster(self, type_id: int, from_version: int, fn: Any) -> None:
        """Registers ``fn(dict) -> Struct`` to read payloads written at ``from_version``."""
        self._upcasters[(type_id, from_version)] = fn

    def type_of(self, obj_or_id: Any) -> EventType:
        """The EventType of a type id or of a Struct instance/class."""
        key = obj_or_id if isinstance(obj_or_id, int) else (
            obj_or_id if isinstance(obj_or_id, type) else type(obj_or_id))
        et = self._by_id.get(key) if isinstance(key, int) else self._by_struct.get(key)
        if et is None:
            raise SchemaError(f"event type {obj_or_id!r} is not registered; call register() first")
        return et

    def encode(self, event: msgspec.Struct) -> tuple[int, bytes]:
        """Returns ``(type_id, msgpack bytes)`` of a registered Struct."""
        return self.type_of(event).type_id, self._encoder.encode(event)

    def encode_into(self, event: msgspec.Struct, buffer: bytearray, offset: int = 0) -> int:
        """Encodes into ``buffer`` at ``offset`` (no allocation); returns the type id."""
        et = self.type_of(event)
        self._encoder.encode_into(event, buffer, offset)
        return et.type_id

    def decode(self, type_id: int, payload: Any, version: int | None = None) -> Any:
        """Decodes a payload of ``type_id``; applies an upcaster for an older ``version``."""
        et = self.type_of(type_id)
        if version is not None and version != et.version:
            up = self._upcasters.get((type_id, version))
            if up is None:
                raise SchemaError(f"no upcaster for {et.name} v{version} -> v{et.version}")
            return up(msgspec.msgpack.decode(payload))
        if et.dtype is not None:
            return np.frombuffer(payload, dtype=et.dtype, count=1)[0]
        dec = self._decoders.get(type_id)
        if dec is None:
            return bytes(payload)
        try:
            return dec.decode(payload)
        except msgspec.ValidationError as e:
            raise SchemaError(f"payload of type {et.name} (id {type_id}) is invalid: {e}") from e

    def describe(self) -> list[dict[str, Any]]:
        """The schema descriptor: every registered type, JSON-able, ordered by id."""
        return [self._by_id[k].describe() for k in sorted(self._by_id)]

    def __contains__(self, type_id: object) -> bool:
        return type_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)


# Control events: reserved type ids at the top of the range, flagged FLAG_CONTROL. They travel
# through the input ring and the journal like any event, so replay meets them at the same
# sequences (breaker commands, timers, snapshot requests).
CONTROL_BASE = 0xFFFF_FF00
TYPE_TIMER = CONTROL_BASE + 1            # input: a timer tick; its timestamp is the event time
TYPE_BREAKER_RESET = CONTROL_BASE + 2    # input: operator closes the breaker, re-reads held input
TYPE_RELEASE_HELD = CONTROL_BASE + 3     # input: operator publishes the held outputs
TYPE_DISCARD_HELD = CONTROL_BASE + 4     # input: operator drops the held outputs
TYPE_SNAPSHOT = CONTROL_BASE + 5         # input: take a snapshot at this sequence
TYPE_BATCH_MARK = CONTROL_BASE + 6       # input: no-op that ends a batch a crash cut short
TYPE_KILL = CONTROL_BASE + 7             # input: operator kill switch (payload: msgpack [key])
TYPE_ENABLE = CONTROL_BASE + 8           # input: operator re-enables a killed key ([key])
TYPE_STREAM_MARK = CONTROL_BASE + 9      # input: no-op, a cluster stream message starts here
TYPE_BREAKER_TRIPPED = CONTROL_BASE + 16  # output: the breaker opened (payload: msgpack trip info)
TYPE_BREAKER_CLOSED = CONTROL_BASE + 17   # output: the breaker closed again
TYPE_DEAD_LETTER = CONTROL_BASE + 18      # dead-letter journal: a poison event and its traceback
TYPE_KILLED = CONTROL_BASE + 19           # output: the kill switch ran (payload: msgpack KillInfo)

CONTROL_NAMES = {
    TYPE_BATCH_MARK: "batch_mark",
    TYPE_STREAM_MARK: "stream_mark",
    TYPE_TIMER: "timer",
    TYPE_BREAKER_RESET: "breaker_reset",
    TYPE_RELEASE_HELD: "release_held",
    TYPE_DISCARD_HELD: "discard_held",
    TYPE_SNAPSHOT: "snapshot",
    TYPE_BREAKER_TRIPPED: "breaker_tripped",
    TYPE_BREAKER_CLOSED: "breaker_closed",
    TYPE_DEAD_LETTER: "dead_letter",
    TYPE_KILL: "kill",
    TYPE_ENABLE: "enable",
    TYPE_KILLED: "killed",
}


def control_descriptors() -> list[dict[str, Any]]:
    """Descriptors of the control event types, in the form of ``EventRegistry.describe()``,
    so a journal's schema names every type id it may hold."""
    return [{"type_id": t, "name": n, "version": 1, "kind": "control", "fields": []}
            for t, n in sorted(CONTROL_NAMES.items())]


def is_control(type_id: int) -> bool:
    """True for the reserved control type ids (never registered by applications)."""
    return type_id >= CONTROL_BASE
