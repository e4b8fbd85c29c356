"""The results document: machine, versions, config and every run, as JSON; and regression compare.

One result row::

    {"target": "ring", "name": "1p1c_threads_batch64_cython", "unit": "events/s",
     "median": 1.2e8, "min": ..., "max": ..., "runs": [...],
     "peers": {"queue.Queue": 1.1e6}, "ratios": {"queue.Queue": 109.0}, "note": "..."}

Units ending in ``/s`` are higher-is-better; ``ns``/``us``/``ms`` units are lower-is-better.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["Document", "Row", "compare", "higher_is_better", "json_schema", "load",
           "machine_info", "merge", "new_document", "save", "validate", "versions"]

SCHEMA_VERSION = 1


class LatencyPoint(msgspec.Struct, frozen=True):
    """Marks a latency row for the percentile plot: which curve, which rate, which point."""

    series: str
    rate_per_s: float
    percentile: str


class Row(msgspec.Struct, frozen=True, omit_defaults=True):
    """One figure: the median of its runs with min, max and every run; peers and ratios from
    the same run. ``median`` is None for a figure that could not be measured (see ``note``)."""

    target: str
    name: str
    unit: str
    median: float | None
    min: float | None
    max: float | None
    runs: list[float]
    peers: dict[str, float] = {}
    ratios: dict[str, float] = {}
    note: str | None = None
    latency: LatencyPoint | None = None
    hdr_log: str | None = None  # HdrHistogram log, relative to the JSON file's folder
    past_capacity: bool = False  # taken at an offered rate a run did not sustain


class Machine(msgspec.Struct, frozen=True):
    """Where the figures were taken."""

    cpu: str
    cores: int | None
    memory_gib: float | None
    kernel: str
    python: str
    machine: str


class Skipped(msgspec.Struct, frozen=True, omit_defaults=True):
    """A peer or target that did not run, and why; ``failed`` where it raised."""

    name: str
    reason: str
    failed: bool = False


class Document(msgspec.Struct, frozen=True):
    """A results document (schema 1): machine, versions, config, peers and every row."""

    schema: int
    ringlog: str
    numpy: str
    created: str
    machine: Machine
    config: dict[str, Any]
    peers: dict[str, Any]
    results: list[Row]
    versions: dict[str, str] = {}  # package -> version
    skipped: list[Skipped] = []
    timings: dict[str, float] = {}  # seconds per step, for the next run's ETA


def validate(doc: Any, where: str = "results document") -> None:
    """Checks ``doc`` against ``Document``; a ValueError naming ``where`` and the JSON path
    of the first wrong field (``$.results[3].median``). Unknown fields are allowed and kept."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"{where}: not a ringlog results document (schema {SCHEMA_VERSION})")
    try:
        msgspec.convert(doc, Document)
    except msgspec.ValidationError as e:
        raise ValueError(f"{where}: {e}") from None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a results document, for tools outside Python."""
    return msgspec.json.schema(Document)


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, kernel and Python version of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    with contextlib.suppress(ValueError, OSError):
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib,
            "kernel": platform.release(), "python": sys.version.split()[0],
            "machine": platform.machine()}


def new_document(config: dict[str, Any]) -> dict[str, Any]:
    """An empty results document stamped with the machine, versions and config."""
    import numpy

    from .. import __version__
    return {"schema": SCHEMA_VERSION, "ringlog": __version__, "numpy": numpy.__version__,
            "versions": versions(),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "machine": machine_info(), "config": config, "peers": {}, "results": []}


def versions() -> dict[str, str]:
    """Versions of the packages the figures depend on (those installed)."""
    from importlib import metadata

    out = {}
    for name in ("Cython", "msgspec", "numpy", "hdrhistogram", "faster-fifo",
                 "cython-orderbook", "matplotlib", "uvloop"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def save(doc: dict[str, Any], path: str | Path) -> None:
    """Validates the document, then writes it as indented JSON (creating its folder)."""
    validate(doc, str(path))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``base`` with the rows of the targets ``new`` measured replaced by ``new``'s, in
    place of the old ones (a partial re-run folded into the full report). ``merged`` lists
    each fold (date, targets, runs, machine) so the report says which figures are newer.
    A target that failed in ``new`` (no rows) keeps its old rows: the fold names it under
    ``failed``."""
    asked = set(new["config"]["targets"])
    targets = asked & {x["target"] for x in new["results"]}
    rows: list[dict[str, Any]] = []
    placed: set[str] = set()
    for r in base["results"]:
        t = r["target"]
        if t not in targets:
            rows.append(r)
        elif t not in placed:  # the new rows where the old ones of that target began
            placed.add(t)
            rows += [x for x in new["results"] if x["target"] == t]
    rows += [x for x in new["results"] if x["target"] not in placed]  # targets base lacked
    out = dict(base, results=rows)
    out["merged"] = [*base.get("merged", []),
                     {"created": new["created"], "targets": sorted(targets),
                      "runs": new["config"].get("runs"), "machine": new["machine"],
                      **({"failed": sorted(asked - targets)} if asked - targets else {})}]
    return out


def load(path: str | Path) -> dict[str, Any]:
    """Reads and validates a results document; errors are ValueErrors naming the file."""
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    validate(doc, str(path))
    return doc  # type: ignore[no-any-return]


def higher_is_better(unit: str) -> bool:
    """Rates are higher-is-better; latencies and durations lower-is-better."""
    return unit.endswith("/s") or unit in ("ratio", "x")


def is_ours(row: dict[str, Any]) -> bool:
    """A figure of ringlog's own, not of a peer library measured beside it (``peer_...``)."""
    return not str(row["name"]).startswith("peer_")


def compare(old: dict[str, Any], new: dict[str, Any],
            threshold: float = 0.10) -> list[dict[str, Any]]:
    """Our rows present in both documents, with their change and a verdict in pyperf's manner:
    ``regression`` where the runs differ significantly (Welch's t-test, 95%) and the median
    is worse by more than ``threshold`` (a fraction) in the direction that matters for the
    unit; ``improvement`` the other way; else ``not significant`` (or ``too few runs``).
    Peer rows are left out: another library's figure moving is not our regression."""
    from .stats import t_test

    before = {(r["target"], r["name"]): r for r in old["results"]}
    rows = []
    for r in new["results"]:
        o = before.get((r["target"], r["name"]))
        if not is_ours(r) or o is None or not o.get("median") or r.get("median") is None:
            continue
        change = r["median"] / o["median"] - 1.0
        worse = -change if higher_is_better(r["unit"]) else change
        test = t_test(o.get("runs") or [], r.get("runs") or [])
        if test is None:
            verdict = "too few runs"
        elif not test.significant:
            verdict = "not significant"
        elif worse > threshold:
            verdict = "regression"
        elif -worse > threshold:
            verdict = "improvement"
        else:
            verdict = "within threshold"
        rows.append({"target": r["target"], "name": r["name"], "unit": r["unit"],
                     "old": o["median"], "new": r["median"], "change": change,
                     "t": None if test is None else test.t,
                     "verdict": verdict, "regression": verdict == "regression"})
    return rows
