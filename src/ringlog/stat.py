"""``ringlog stat DIR``: a live view of a running processor's counters, from another process.

::

    processor threads ──release stores──► DIR/counters ◄── CountersReader (read-only map,
                                                          no lock, no store: no effect on them)
        every interval: sample ──► rates = Δvalue / Δt  (TOTAL and SEQUENCE counters)
                                   lags  = upstream sequence - own sequence
                                   breaker state by name, writer running/stopped/dead/stale
            │
            ├─► terminal: one table redrawn in place
            └─► --json: one line per interval (for scripts)

The reader follows a restarted processor (a new counters file replaces the old one).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ._counters import (
    BUCKET,
    GAUGE,
    SEQUENCE,
    STATE,
    TOTAL,
    CountersMissingError,
    CountersReader,
)

__all__ = ["COUNTERS_FILE", "Sample", "derive", "histograms", "open_reader", "quantile",
           "render", "run_stat", "sample"]

COUNTERS_FILE = "counters"
BREAKER_STATES = {-1: "none", 0: "closed", 1: "open", 2: "half_open"}
# derived lags: name -> (upstream counter, own counter, offset): upstream - own - offset
LAGS = {
    "journal.durable_lag": ("journal.sequence", "journal.durable", 0),
    "logic.lag": ("journal.sequence", "logic.sequence", 0),
    "output.lag": ("logic.published", "output.sequence", 1),
}
_TYPE_NAMES = {TOTAL: "total", SEQUENCE: "sequence", GAUGE: "gauge", STATE: "state",
               BUCKET: "bucket"}
_HOME, _CLEAR = "\x1b[H", "\x1b[J"


@dataclass(frozen=True)
class Sample:
    """The counters at one instant: values and types by label, and the writer's status."""

    time_ns: int
    writer: str
    pid: int
    heartbeat_ns: int
    values: dict[str, int]
    types: dict[str, int]


def open_reader(directory: str | Path) -> CountersReader:
    """The reader of ``DIR/counters``; CountersMissingError (a FileNotFoundError) naming it
    when there is none."""
    path = Path(directory) / COUNTERS_FILE
    if not path.is_file():
        raise CountersMissingError(f"no counters file at {path}: is a processor (with "
                                   "counters on) running in that directory?", path=str(path))
    return CountersReader(path)


def sample(reader: CountersReader) -> Sample:
    """Reads every counter once (follows a file a restarted writer replaced)."""
    reader.reopen()
    cs = reader.read()
    return Sample(time.time_ns(), reader.writer_status(), reader.writer_pid,
                  reader.heartbeat_ns, {c.label: c.value for c in cs},
                  {c.label: c.type_id for c in cs})


def histograms(values: dict[str, int], types: dict[str, int]
               ) -> dict[str, list[tuple[float, int]]]:
    """BUCKET counters grouped by histogram: ``{name: [(upper bound, count), ...]}`` in
    bound order (``inf`` last)."""
    out: dict[str, list[tuple[float, int]]] = {}
    for label, v in values.items():
        if types.get(label) == BUCKET and ":" in label:
            name, bound = label.rsplit(":", 1)
            out.setdefault(name, []).append((float(bound), v))
    for buckets in out.values():
        buckets.sort()
    return out


def quantile(buckets: list[tuple[float, int]], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (None: no observation)."""
    total = sum(n for _, n in buckets)
    if not total:
        return None
    seen = 0
    for bound, n in buckets:
        seen += n
        if seen >= q * total:
            return bound
    return buckets[-1][0]


def derive(prev: Sample | None, cur: Sample) -> dict[str, Any]:
    """Rates per second since ``prev`` (of TOTAL and SEQUENCE counters), derived lags and
    the breaker's state by name."""
    rates: dict[str, float] = {}
    if prev is not None and cur.time_ns > prev.time_ns and prev.pid == cur.pid:
        dt = (cur.time_ns - prev.time_ns) / 1e9
        for label, v in cur.values.items():
            if cur.types[label] in (TOTAL, SEQUENCE) and label in prev.values:
                rates[label] = (v - prev.values[label]) / dt
    values = cur.values
    lags = {name: values[up] - values[own] - off for name, (up, own, off) in LAGS.items()
            if up in values and own in values}
    if "journal.backlog" in values:
        lags["journal.backlog"] = values["journal.backlog"]
    state = values.get("logic.breaker_state")
    hists = {name: {f"p{int(q * 100)}": _bound(quantile(b, q)) for q in (0.5, 0.99)}
             for name, b in histograms(cur.values, cur.types).items()}
    return {"rates": rates, "lags": lags, "histograms": hists,
            "breaker": None if state is None else
            BREAKER_STATES.get(state, str(state))}


def render(directory: str | Path, cur: Sample, d: dict[str, Any], width: int = 100) -> str:
    """The terminal table of one sample."""
    age = max(0.0, (cur.time_ns - cur.heartbeat_ns) / 1e9)
    lines = [f"ringlog stat {directory}",
             f"writer pid {cur.pid}: {cur.writer} (heartbeat {age:.1f} s ago)   "
             f"{time.strftime('%H:%M:%S', time.localtime(cur.time_ns / 1e9))}"]
    if d["breaker"] is not None:
        v = cur.values
        lines.append(f"breaker {d['breaker'].upper()}   trips {v.get('logic.breaker_trips', 0)}"
                     f"   held {v.get('logic.breaker_held', 0)}   kills "
                     f"{v.get('logic.kills', 0)}")
    if d["lags"]:
        lines.append("lags    " + "   ".join(f"{k} {n:,}" for k, n in d["lags"].items()))
    for name, qs in d["histograms"].items():
        lines.append(f"{name}  " + "   ".join(f"{q} {_shown(b)}" for q, b in qs.items()))
    lines.append("")
    lines.append(f"{'COUNTER':<34} {'VALUE':>20} {'RATE/S':>16}  TYPE")
    for label, value in cur.values.items():
        if cur.types[label] == BUCKET:
            continue  # summarised above
        r = d["rates"].get(label)
        rate = "" if r is None else f"{r:,.1f}"
        lines.append(f"{label[:34]:<34} {value:>20,} {rate:>16}  "
                     f"{_TYPE_NAMES.get(cur.types[label], cur.types[label])}")
    return "\n".join(line[:width] for line in lines) + "\n"


def _bound(b: float | None) -> float | str | None:
    """A bucket bound for JSON: ``"inf"`` for the open last bucket."""
    return b if b is None or b != float("inf") else "inf"


def _shown(b: float | str | None) -> str:
    if b is None:
        return "-"
    return "over the last bound" if b == "inf" else f"< {_ns(float(b))}"


def _ns(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:g} {unit}"
    return f"{ns:g} ns"


def run_stat(directory: str | Path, interval: float = 1.0, count: int = 0,
             as_json: bool = False, out: TextIO | None = None) -> int:
    """Shows the counters every ``interval`` seconds (``count`` times; 0: until
    interrupted). A terminal gets the table redrawn in place; ``as_json`` prints one line per
    interval, each with the rates over that interval. Returns the exit code."""
    out = out or sys.stdout
    reader = open_reader(directory)
    tty = out.isatty() and not as_json
    prev: Sample | None = None
    shown = 0
    if tty:
        out.write("\x1b[2J")
    while count == 0 or shown < count:
        cur = sample(reader)
        d = derive(prev, cur)
        if as_json and prev is not None:
            out.write(json.dumps({"time_ns": cur.time_ns, "writer": cur.writer,
                                  "pid": cur.pid, "breaker": d["breaker"],
                                  "counters": cur.values, "rates": d["rates"],
                                  "lags": d["lags"], "histograms": d["histograms"]})
                      + "\n")
            shown += 1
        elif not as_json:
            text = render(directory, cur, d)
            out.write(_HOME + text + _CLEAR if tty else text + "\n")
            shown += 1
        out.flush()
        prev = cur
        if count == 0 or shown < count:
            time.sleep(interval)
    return 0
