"""Checks ``--type`` and ``--where`` of ``journal dump|tail`` against the journal's own schema
before any output, so a misspelt name is a usage error naming the valid choices instead of an
empty result with exit 0.

    schema of the first and last segment  ->  type names, payload fields (numeric or not)
    --type NAME|ID                         ->  a schema name, a control name or a number
    --where FIELD OP VALUE                 ->  a header or schema field; a number for a
                                               numeric field; VALUE not starting with an OP
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .common import UsageError

HEADER_FIELDS = {"sequence": True, "timestamp_ns": True, "type_id": True, "flags": True,
                 "correlation_id": True, "producer_id": True, "producer_seq": True,
                 "type": False, "length": True}  # name -> numeric
_NUMERIC_NAMES = {"int", "float", "bool"}
_WHERE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|!=|==|>|<|=)\s*(.*?)\s*$")


def _numeric(type_text: str) -> bool:
    if type_text in _NUMERIC_NAMES:
        return True
    import numpy as np

    try:
        return np.dtype(type_text).kind in "iufb"
    except TypeError:
        return False


def journal_schema(path: Path) -> tuple[dict[str, int], dict[str, bool]]:
    """(type name -> id, payload field -> numeric) of the journal at ``path``, from the
    schema descriptors of its first and last segments."""
    from ..journal import JournalReader

    reader = JournalReader(path)
    segs = reader.segments()
    names: dict[str, int] = {}
    fields: dict[str, bool] = {}
    for first, p in {s: None for s in (segs[:1] + segs[-1:])}:
        raw = reader.segment(first, p).schema
        try:
            desc = json.loads(raw) if raw else []
        except ValueError:
            desc = []
        for d in desc if isinstance(desc, list) else []:
            if not isinstance(d, dict) or "type_id" not in d:
                continue
            names[str(d.get("name") or f"type{d['type_id']}").lower()] = int(d["type_id"])
            for f in d.get("fields") or []:
                if str(f[0]).startswith("_"):
                    continue  # layout padding, never shown
                fields[str(f[0])] = fields.get(str(f[0]), True) and _numeric(str(f[1]))
    return names, fields


def check_filter(path: Path, types: list[str], where: list[str]) -> None:
    """Raises UsageError for a ``--type`` or ``--where`` this journal cannot match."""
    if not types and not where:
        return
    from ..events import CONTROL_NAMES

    names, fields = journal_schema(path)
    known = set(names) | set(CONTROL_NAMES.values())
    for t in types:
        if t.isdigit() or t.lower() in known or re.fullmatch(r"type\d+", t.lower()):
            continue
        raise UsageError(f"--type {t!r}: no such type in {path}; choose a type id or one of "
                         f"{', '.join(sorted(known))}")
    for w in where:
        m = _WHERE.match(w)
        if m is None:
            raise UsageError(f"--where {w!r}: expected FIELD OP VALUE with OP one of "
                             "= == != > >= < <= (e.g. price>100)")
        field, op, value = m.groups()
        if value[:1] in ("<", ">", "=", "!") or value == "":
            raise UsageError(f"--where {w!r}: after {op!r} comes a value, not {value!r} "
                             "(e.g. price>100)")
        bare = field.removeprefix("payload.")
        if field in HEADER_FIELDS:
            numeric = HEADER_FIELDS[field]
        elif bare in fields:
            numeric = fields[bare]
        elif field.startswith("payload.") and not fields:
            continue  # no schema names the payload's keys: an undeclared key may match
        else:
            choices = sorted(HEADER_FIELDS) + sorted(fields)
            raise UsageError(f"--where {w!r}: no field {field!r} in {path}; choose from "
                             f"{', '.join(choices)}"
                             + ("" if fields else " (or payload.KEY for an undeclared key)"))
        if numeric and not _is_number(value):
            raise UsageError(f"--where {w!r}: {field} is a number, {value!r} is not")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text.lower() in ("true", "false")
    return True


def check_range(low: Any, high: Any, what: str) -> None:
    """Raises UsageError when an explicit range is empty (``--from 10 --to 5``)."""
    if low is not None and high is not None and high < low:
        raise UsageError(f"{what}: the end comes before the start; nothing would match")
