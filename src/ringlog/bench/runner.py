"""Runs benchmark targets and peers into one results document, and renders the report.

A target is ``bench/bench_<target>.py`` in the repository with ``run(runs, smoke, peers) ->
list[dict]`` returning result rows (see ``results``) and a ``GOALS`` list (see ``report``);
a ``run`` that also takes ``progress`` gets a callable to report each run on long benchmarks.
Peers (the Java Disruptor, machine limits) run in the same invocation, so that every ratio
compares figures taken minutes apart on the same machine. A user's handler (``--handler``) is
measured by ``pipeline``.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec

from . import latency, peers, results
from .progress import Progress

__all__ = ["TARGETS", "bench_dir", "goals", "load_target", "run_all"]

TARGETS = ("ring", "journal", "breaker", "processor", "engine", "gateway", "tools", "cluster")


def bench_dir() -> Path | None:
    """The repository's ``bench/`` folder (next to the ``src/`` this package is imported
    from), else ``./bench`` of a clone (with its ``src/ringlog``); None for an installed
    package run outside a checkout (even from a venv kept inside one)."""
    here = Path(__file__).resolve().parents  # <root>/src/ringlog/bench/runner.py
    roots = [here[3]] if here[2].name == "src" else []
    for p in [*roots, Path.cwd()]:
        if (p / "bench" / "bench_ring.py").is_file() and (p / "src" / "ringlog").is_dir():
            return p / "bench"
    return None


def load_target(name: str) -> ModuleType | None:
    """Imports ``bench/bench_<name>.py``; None where the target has no benchmarks yet."""
    folder = bench_dir()
    path = folder / f"bench_{name}.py" if folder is not None else None
    if path is None or not path.exists():
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
            with_peers: bool = True, progress: Callable[[str], None] = print,
            handler: str | None = None, options: Any = None,
            artifacts: Path | None = None,
            previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Runs the peers, each target and (with ``handler``, a ``module:Class`` spec) the user's
    handler through the pipeline built from ``options`` (PipelineOptions); returns the results
    document. A peer or target that fails is recorded under ``skipped`` with the reason and the
    run goes on; ``previous`` (an earlier document) supplies per-step timings for the ETA;
    ``artifacts`` is the folder of HdrHistogram logs (``latency.latency_rows``)."""
    from .pipeline import PipelineOptions, run_handler

    config: dict[str, Any] = {"runs": runs, "smoke": smoke, "targets": targets}
    if handler:
        options = options or PipelineOptions(runs=runs)
        config["handler"] = {"spec": handler, **msgspec.structs.asdict(options)}
    doc = results.new_document(config)
    doc["skipped"], doc["timings"] = [], {}
    steps: list[tuple[str, Callable[[], None]]] = []

    def guarded(name: str, fn: Callable[[], None]) -> Callable[[], None]:
        def call() -> None:
            try:
                fn()
            except Exception as e:  # one target's failure must not lose the others' figures
                reason = f"{type(e).__name__}: {e}"
                doc["skipped"].append({"name": name, "reason": reason, "failed": True})
                progress(f"{name}: FAILED, skipped ({reason})")
        return call

    if with_peers:
        def limits() -> None:
            with tempfile.TemporaryDirectory(dir=".") as d:
                doc["peers"]["limits"] = peers.run_limits(d)
        steps.append(("peers: machine limits (ringlog.bench.peers.limits)", limits))
        if smoke:
            doc["skipped"].append({"name": "peer disruptor", "reason": "not run in smoke mode"})
        else:
            def disruptor() -> None:
                doc["peers"]["disruptor"] = peers.run_disruptor(20_000_000, runs)
            steps.append(("peers: Java LMAX Disruptor (ringlog/bench/peers/disruptor)",
                          disruptor))
    for t in targets:
        mod = load_target(t)
        if mod is None:
            doc["skipped"].append({"name": t, "reason": f"no bench/bench_{t}.py yet"})
            continue

        def target(t: str = t, mod: ModuleType = mod) -> None:
            kw: dict[str, Any] = {}
            if "progress" in inspect.signature(mod.run).parameters:
                kw["progress"] = lambda s, t=t: progress(f"{t}: {s}")
            for row in mod.run(runs=runs, smoke=smoke, peers=doc["peers"], **kw):
                row.setdefault("target", t)
                doc["results"].append(row)
        steps.append((f"{t} ({runs} runs{', smoke' if smoke else ''})", target))
    if handler:
        def user() -> None:
            lim = doc["peers"].get("limits")
            doc["results"].extend(run_handler(
                handler, options, smoke=smoke, limits=lim if isinstance(lim, dict) else None,
                progress=progress))
        steps.append((f"handler {handler}", user))
    before = (previous or {}).get("timings", {})
    prog = Progress(len(steps), progress, estimates=[before.get(label) for label, _ in steps])
    for label, fn in steps:
        with prog.step(label), latency.hdr_logs_in(artifacts):
            guarded(label.split(" (")[0], fn)()
        doc["timings"][label] = round(prog.elapsed[-1], 3)
    for peer, figures in doc["peers"].items():
        if isinstance(figures, dict) and "skipped" in figures:
            doc["skipped"].append({"name": f"peer {peer}", "reason": figures["skipped"]})
    return doc


def goals(targets: list[str]) -> list[dict[str, Any]]:
    """The performance goals (``GOALS``) each target's bench module declares."""
    out = []
    for t in targets:
        mod = load_target(t)
        for g in getattr(mod, "GOALS", []) if mod else []:
            out.append({"target": t, **g})
    return out
