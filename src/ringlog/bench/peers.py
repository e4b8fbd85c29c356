"""Peers measured in the same run: the Java LMAX Disruptor and the machine's limits.

Both come from ``shared/anchors`` beside the repository (or ``$RINGLOG_ANCHORS``); each prints
one figure a line as ``NAME VALUE  # note`` or ``NAME k=v k=v``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["anchors_dir", "parse_anchor_lines", "run_disruptor", "run_limits"]


def anchors_dir() -> Path | None:
    """The anchors folder: ``$RINGLOG_ANCHORS``, else ``../shared/anchors`` from the repo."""
    env = os.environ.get("RINGLOG_ANCHORS")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [p / "shared" / "anchors" for p in here.parents]
    candidates += [Path.cwd().parent / "shared" / "anchors"]
    return next((c for c in candidates if (c / "limits.py").exists()), None)


def parse_anchor_lines(text: str) -> dict[str, Any]:
    """``NAME VALUE  # note`` -> {NAME: float}; ``NAME k=v ...`` -> {NAME: {k: float}}."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        body = line.split("#", 1)[0].split()
        if len(body) < 2:
            continue
        name, rest = body[0], body[1:]
        if "=" in rest[0]:
            out[name] = {k: float(v) for k, v in (kv.split("=", 1) for kv in rest)}
        else:
            try:
                out[name] = float(rest[0])
            except ValueError:
                continue
    return out


def run_limits(directory: str | None = None, timeout: float = 600) -> dict[str, Any]:
    """Runs ``limits.py`` (memcpy, mmap write, fdatasync, Python call cost) and parses it."""
    d = anchors_dir()
    if d is None:
        return {"skipped": "shared/anchors not found"}
    cmd = [sys.executable, str(d / "limits.py")] + ([directory] if directory else [])
    return _run(cmd, timeout, "limits.py")


def _run(cmd: list[str], timeout: float, what: str) -> dict[str, Any]:
    """The parsed figures of an anchor, or ``{"skipped": why}``: a peer that cannot run is a
    note in the report, never the end of the benchmark run."""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.CalledProcessError as e:
        tail = (e.stderr or e.stdout or "").strip().splitlines()[-1:] or ["no output"]
        return {"skipped": f"{what} exited with {e.returncode}: {tail[0][:200]}"}
    except subprocess.TimeoutExpired:
        return {"skipped": f"{what} took longer than {timeout:g} s"}
    except OSError as e:
        return {"skipped": f"{what} could not start: {e}"}
    figures = parse_anchor_lines(res.stdout)
    return figures or {"skipped": f"{what} printed no figures"}


def run_disruptor(events: int = 20_000_000, runs: int = 3,
                  timeout: float = 1800) -> dict[str, Any]:
    """Runs the Java LMAX Disruptor anchor; a note instead of figures where Java is absent."""
    d = anchors_dir()
    if d is None:
        return {"skipped": "shared/anchors not found"}
    script = d / "disruptor" / "run.sh"
    if not shutil.which("java") and not shutil.which("apt-get"):
        return {"skipped": "Java is absent (and no apt-get to install it)"}
    got = _run(["bash", str(script), str(events), str(runs)], timeout, "disruptor/run.sh")
    if "skipped" in got and not shutil.which("java"):
        got["skipped"] = f"Java is absent and run.sh could not install it: {got['skipped']}"
    return got
