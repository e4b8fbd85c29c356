"""Runs benchmark targets and peers into one results document, and renders the report.

A target is ``bench/bench_<target>.py`` in the repository with ``run(runs, smoke) -> list[dict]``
returning result rows (see ``results``). Peers (the Java Disruptor, machine limits) run in the
same invocation so that every ratio compares figures taken minutes apart on the same machine.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from . import peers, results

__all__ = ["TARGETS", "bench_dir", "goals", "load_target", "run_all"]

TARGETS = ("ring", "journal", "breaker", "processor", "engine", "gateway", "tools")


def bench_dir() -> Path:
    """The repository's ``bench/`` folder (next to ``src/``), else ``./bench``."""
    for p in Path(__file__).resolve().parents:
        if (p / "bench").is_dir() and (p / "src" / "ringlog").is_dir():
            return p / "bench"
    return Path.cwd() / "bench"


def load_target(name: str) -> ModuleType | None:
    """Imports ``bench/bench_<name>.py``; None where the target has no benchmarks yet."""
    path = bench_dir() / f"bench_{name}.py"
    if not path.exists():
        return None
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def run_all(targets: list[str], runs: int = 3, smoke: bool = False,
            with_peers: bool = True, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs the peers and each target; returns the results document."""
    doc = results.new_document({"runs": runs, "smoke": smoke, "targets": targets})
    if with_peers:
        progress("peers: machine limits (shared/anchors/limits.py)")
        with tempfile.TemporaryDirectory(dir=".") as d:
            doc["peers"]["limits"] = peers.run_limits(d)
        if not smoke:
            progress("peers: Java LMAX Disruptor (shared/anchors/disruptor/run.sh)")
            doc["peers"]["disruptor"] = peers.run_disruptor(20_000_000, runs)
    for t in targets:
        mod = load_target(t)
        if mod is None:
            progress(f"{t}: no bench/bench_{t}.py yet, skipped")
            continue
        progress(f"{t}: running ({runs} runs{', smoke' if smoke else ''})")
        for row in mod.run(runs=runs, smoke=smoke, peers=doc["peers"]):
            row.setdefault("target", t)
            doc["results"].append(row)
    return doc


def goals(targets: list[str]) -> list[dict[str, Any]]:
    """The performance goals (``GOALS``) each target's bench module declares."""
    out = []
    for t in targets:
        mod = load_target(t)
        for g in getattr(mod, "GOALS", []) if mod else []:
            out.append({"target": t, **g})
    return out
