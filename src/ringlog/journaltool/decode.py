"""Reading a journal's records without the application's code: times as ISO-8601 or ns, payloads
decoded by the schema descriptor each segment carries, results as JSON."""

from __future__ import annotations

import base64
import datetime as _dt
import json
import re
from typing import Any

import msgspec
import numpy as np

from .._journal import Record, ScanStatus, Segment
from ..events import CONTROL_NAMES, FLAG_CONTROL, FLAG_MSGPACK, is_control

# why a verifying scan stopped (ScanStatus), in the tools' words
SCAN_WHAT: dict[int, str] = {
    ScanStatus.SCAN_BAD_LENGTH: "impossible record length",
    ScanStatus.SCAN_BAD_CRC: "checksum mismatch",
    ScanStatus.SCAN_BAD_SEQUENCE: "sequence out of order",
    ScanStatus.SCAN_BAD_PADDING: "non-zero padding",
    ScanStatus.SCAN_UNTERMINATED: "bytes after the last record with no length word"}


# -- time ---------------------------------------------------------------------------------
_ISO_FRACTION = re.compile(r"^(.*?T\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d+))?(.*)$")


def parse_time(text: str) -> int:
    """Nanoseconds since the epoch from an integer (ns) or an ISO-8601 time; a time without
    a zone is UTC. Fractions keep all nine digits (``...T12:00:00.123456789Z``)."""
    t = text.strip()
    if re.fullmatch(r"-?\d+", t):
        return int(t)
    m = _ISO_FRACTION.match(t)
    frac = 0
    if m:
        digits = m.group(2) or ""
        frac = int((digits + "000000000")[:9]) if digits else 0
        t = m.group(1) + m.group(3)
    try:
        d = _dt.datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(f"{text!r} is neither nanoseconds since the epoch nor an ISO-8601 time "
                         "(e.g. 2026-11-24T12:00:00.5Z)") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.UTC)
    whole = d.replace(microsecond=0)
    return int(whole.timestamp()) * 1_000_000_000 + (frac if m else d.microsecond * 1000)


def format_time(ns: int) -> str:
    """ISO-8601 UTC with nanoseconds (``2026-11-24T12:00:00.000000001Z``)."""
    s, frac = divmod(ns, 1_000_000_000)
    try:
        d = _dt.datetime.fromtimestamp(s, _dt.UTC)
    except (OverflowError, OSError, ValueError):
        return str(ns)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


# -- decoding by the journal's own schema -------------------------------------------------
class _TypeDecoder:
    __slots__ = ("dtype", "fields", "kind", "name")

    def __init__(self, desc: dict[str, Any]) -> None:
        self.name: str = desc.get("name") or f"type{desc.get('type_id')}"
        self.kind: str = desc.get("kind", "bytes")
        self.fields: list[str] = [f[0] for f in desc.get("fields", [])]
        self.dtype: np.dtype | None = None
        if self.kind == "record":
            try:
                self.dtype = np.dtype([(str(n), str(t)) for n, t in desc["fields"]])
            except (TypeError, ValueError, KeyError):
                self.kind = "bytes"  # an unreadable descriptor: show the raw bytes

    def decode(self, payload: memoryview) -> Any:
        if self.dtype is not None:
            if len(payload) < self.dtype.itemsize:
                raise ValueError(f"{len(payload)} bytes, the {self.name} record needs "
                                 f"{self.dtype.itemsize}")
            row = np.frombuffer(payload, self.dtype, count=1)[0]
            # fields named _x are layout padding: nothing to show
            return {n: _plain(row[n]) for n in self.fields if not n.startswith("_")}
        if self.kind == "msgpack":
            return _named(msgspec.msgpack.decode(payload), self.fields)
        raise ValueError("no decoder")


def _plain(v: Any) -> Any:
    v = v.item() if hasattr(v, "item") and getattr(v, "shape", ()) == () else v
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _named(value: Any, names: list[str]) -> Any:
    """An array_like Struct decodes to a list: give its items their field names (a tagged
    one carries its tag first)."""
    if isinstance(value, list) and names:
        if len(value) == len(names) + 1 and isinstance(value[0], (int, str)):
            value = value[1:]
        if len(value) <= len(names):
            return dict(zip(names, value, strict=False))
    return value


class PayloadDecoder:
    """Decodes record payloads by the schema descriptor in each record's segment header, so
    a journal whose schema evolved across segments is decoded segment by segment."""

    def __init__(self) -> None:
        self._by_schema: dict[bytes, dict[int, _TypeDecoder]] = {}
        self._by_path: dict[str, dict[int, _TypeDecoder]] = {}
        self._lookup: dict[tuple[str, int], tuple[str, _TypeDecoder | None]] = {}

    def types_of(self, seg: Segment) -> dict[int, _TypeDecoder]:
        """type id -> decoder for one segment (cached by file and by schema bytes: a
        segment's header never changes)."""
        found = self._by_path.get(seg.path)
        if found is not None:
            return found
        raw = seg.schema
        types = self._by_schema.get(raw)
        if types is None:
            try:
                desc = json.loads(raw) if raw else []
            except ValueError:
                desc = []
            types = {int(d["type_id"]): _TypeDecoder(d) for d in desc if "type_id" in d}
            self._by_schema[raw] = types
        if len(self._by_path) > 1024:
            self._by_path.clear()
        self._by_path[seg.path] = types
        return types

    def _type(self, t: int, seg: Segment) -> tuple[str, _TypeDecoder | None]:
        key = (seg.path, t)
        found = self._lookup.get(key)
        if found is None:
            if is_control(t):
                found = (CONTROL_NAMES.get(t, f"control{t - 0xFFFF_FF00}"), None)
            else:
                td = self.types_of(seg).get(t)
                found = (td.name if td is not None else f"type{t}", td)
            if len(self._lookup) > 4096:
                self._lookup.clear()
            self._lookup[key] = found
        return found

    def type_name(self, rec: Record) -> str:
        """The type's name from the schema, a control event's name, or ``type<id>``."""
        return self._type(rec.type_id, rec.segment)[0]

    def name_of(self, t: int, seg: Segment) -> str:
        """The name of type id ``t`` in ``seg``'s schema (control names, else ``type<id>``)."""
        return self._type(t, seg)[0]

    def decode(self, rec: Record, td: _TypeDecoder | None = None) -> tuple[Any, bool]:
        """(decoded payload, True) or (hex string of the raw bytes, False)."""
        payload = rec.payload
        if td is None:
            td = self._type(rec.type_id, rec.segment)[1]
        try:
            if td is not None and td.kind != "bytes":
                return td.decode(payload), True
            if len(payload) and (rec.flags & (FLAG_MSGPACK | FLAG_CONTROL)
                                 or is_control(rec.type_id)):
                return msgspec.msgpack.decode(payload), True
        except (ValueError, msgspec.DecodeError):
            pass
        return bytes(payload).hex(), False

    def as_dict(self, rec: Record) -> dict[str, Any]:
        """One record as a JSON-able dict: header fields, type name, decoded payload."""
        name, td = self._type(rec.type_id, rec.segment)
        value, ok = self.decode(rec, td)
        return {"sequence": rec.sequence, "timestamp_ns": rec.timestamp_ns,
                "type_id": rec.type_id, "flags": rec.flags,
                "correlation_id": rec.correlation_id, "producer_id": rec.producer_id,
                "producer_seq": rec.producer_seq, "type": name, "length": len(rec.payload),
                "payload" if ok else "payload_hex": value}



_ENC = msgspec.json.Encoder()


def to_json(obj: Any) -> str:
    """JSON text of a result (msgspec Structs, bytes as base64)."""
    return _ENC.encode(obj).decode()


def b64(data: bytes) -> str:
    """Base64 text of raw bytes (state without a JSON form)."""
    return base64.b64encode(data).decode()
