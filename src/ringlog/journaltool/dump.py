"""``ringlog journal dump`` and ``tail``: records selected by a Filter, as a table or JSON lines."""

from __future__ import annotations

import contextlib
import operator
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import msgspec

from .. import journal
from .._journal import HEADER_SIZE, Record, Segment
from ..journal import JournalReader, JournalTailer
from .decode import _ENC, PayloadDecoder, format_time

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, "<=": operator.le, "!=": operator.ne, "==": operator.eq,
    ">": operator.gt, "<": operator.lt, "=": operator.eq}
_WHERE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|!=|==|>|<|=)\s*(.*?)\s*$")


def _literal(text: str) -> Any:
    for conv in (int, float):
        with contextlib.suppress(ValueError):
            return conv(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text


class Filter(msgspec.Struct, kw_only=True):
    """What ``dump`` and ``tail`` show: sequence and time bounds, types, a correlation id and
    field predicates (``price>100``, ``account=7``; header fields work too)."""

    from_sequence: int | None = None
    to_sequence: int | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    types: list[str] = []
    correlation_id: int | None = None
    where: list[str] = []
    limit: int | None = None

    def compile(self) -> Callable[[Record, PayloadDecoder], dict[str, Any] | None]:
        """A function returning the record's dict when it passes, else None. Header checks
        run before the payload is decoded."""
        ids = {int(t) for t in self.types if t.isdigit()}
        names = {t.lower() for t in self.types if not t.isdigit()}  # names match any case
        preds = []
        for w in self.where:
            m = _WHERE.match(w)
            if m is None:
                raise ValueError(f"--where {w!r}: expected FIELD OP VALUE with OP one of "
                                 "= == != > >= < <= (e.g. price>100)")
            preds.append((m.group(1), _OPS[m.group(2)], _literal(m.group(3))))
        corr, since, until = self.correlation_id, self.since_ns, self.until_ns

        def accept(rec: Record, dec: PayloadDecoder) -> dict[str, Any] | None:
            if corr is not None and rec.correlation_id != corr:
                return None
            if since is not None and rec.timestamp_ns < since:
                return None
            if until is not None and rec.timestamp_ns > until:
                return None
            if (ids or names) and rec.type_id not in ids \
                    and dec.type_name(rec).lower() not in names:
                return None
            d = dec.as_dict(rec)
            for field, op, value in preds:
                have = _field(d, field)
                try:
                    if have is _MISSING or not op(have, value):
                        return None
                except TypeError:  # comparing a number field with text: no match
                    return None
            return d

        return accept


_MISSING = object()


def _field(d: dict[str, Any], name: str) -> Any:
    if name in d and name != "payload":
        return d[name]
    cur: Any = d.get("payload")
    for part in name.removeprefix("payload.").split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return _MISSING
    return cur


def select(reader: JournalReader, flt: Filter) -> Iterator[dict[str, Any]]:
    """The records passing ``flt`` as dicts, streamed in sequence order."""
    accept = flt.compile()
    dec = PayloadDecoder()
    start = flt.from_sequence
    if flt.since_ns is not None:
        at = reader.locate_time(flt.since_ns)
        if at < 0:
            return
        start = at if start is None else max(start, at)
    stop = flt.to_sequence
    if flt.until_ns is not None:
        # time bounds use the time index: exact for non-decreasing event timestamps
        after = reader.locate_time(flt.until_ns + 1)
        if after >= 0:
            stop = after - 1 if stop is None else min(stop, after - 1)
    if stop is not None and start is not None and stop < start:
        return
    n = 0
    for rec in reader.records(start, to_sequence=stop):
        d = accept(rec, dec)
        if d is not None:
            yield d
            n += 1
            if flt.limit is not None and n >= flt.limit:
                return


_COLS = "{:>12}  {:30}  {:<18} {:>10} {:>5}  {}"


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (bytes, bytearray)):
        return v.rstrip(b"\0").decode("ascii", "replace") or "''"
    return str(v)


def format_row(d: dict[str, Any]) -> str:
    """One record as a line of the human table (aligned columns)."""
    p = d.get("payload", _MISSING)
    if p is _MISSING:
        hexs = d["payload_hex"]
        body = ("0x" + hexs[:64] + ("..." if len(hexs) > 64 else "")) if hexs else ""
    elif isinstance(p, dict):
        body = " ".join(f"{k}={_cell(v)}" for k, v in p.items())
    else:
        body = _cell(p)
    return _COLS.format(d["sequence"], format_time(d["timestamp_ns"]), d["type"][:18],
                        d["correlation_id"], d["length"], body)


TABLE_HEADER = _COLS.format("SEQUENCE", "TIME (UTC)", "TYPE", "CORR", "LEN", "PAYLOAD")


def write_rows(rows: Iterator[dict[str, Any]], out: TextIO, as_json: bool,
               header: bool = True) -> int:
    """Writes rows as JSON lines or the human table, streaming; returns the count."""
    n = 0
    if as_json:
        enc = _ENC.encode
        for d in rows:
            out.write(enc(d).decode() + "\n")
            n += 1
        return n
    for d in rows:
        if header and n == 0:
            out.write(TABLE_HEADER + "\n")
        out.write(format_row(d) + "\n")
        n += 1
    return n


def dump(path: str | Path, flt: Filter, out: TextIO, as_json: bool = False) -> int:
    """``ringlog journal dump``: streams matching records to ``out``; returns the count."""
    reader = JournalReader(path)
    return write_rows(select(reader, flt), out, as_json)


def tail(path: str | Path, out: TextIO, *, lines: int = 10, from_sequence: int | None = None,
         flt: Filter | None = None, as_json: bool = False, count: int | None = None,
         idle_exit: float | None = None) -> int:
    """``ringlog journal tail``: the last ``lines`` records, then follows the journal like
    ``tail -f`` until ``count`` records were shown, ``idle_exit`` seconds pass with nothing
    new, or the process is interrupted. Returns the count shown."""
    reader = JournalReader(path)
    segs = reader.segments()
    if from_sequence is None:
        last = last_sequence(path)
        first = segs[0][0] if segs else 0
        from_sequence = max(first, last + 1 - lines)
    tailer = JournalTailer(path, from_sequence)
    accept = (flt or Filter()).compile()
    dec = PayloadDecoder()
    shown = 0
    idle_since = time.monotonic()
    if not as_json:
        out.write(TABLE_HEADER + "\n")
    while count is None or shown < count:
        batch = tailer.poll(timeout=0.2)
        if not batch:
            if idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                break
            continue
        idle_since = time.monotonic()
        rows = (d for d in (accept(r, dec) for r in batch) if d is not None)
        if count is not None:
            rows = (d for _, d in zip(range(count - shown), rows, strict=False))
        shown += write_rows(rows, out, as_json, header=False)
        out.flush()
        del batch
    return shown


def last_sequence(path: str | Path) -> int:
    """The last committed sequence (first - 1 when empty), by a scan of the last segment."""
    segs = journal.list_segments(Path(path))
    if not segs:
        return -1
    first, p = segs[-1]
    seg = Segment.open(p)
    _, _, nxt, _ = seg.scan(HEADER_SIZE, first, False)
    return nxt - 1


