"""Peers measured in the same run: the Java LMAX Disruptor and the machine's limits.

Both ship in this package (so an installed ringlog measures them too):

    peers/limits.py                   python -m ringlog.bench.peers.limits DIR
    peers/disruptor/DisruptorPeer.java  our runner of Debian's libdisruptor-java,
    peers/disruptor/run.sh              compiled and run by run.sh (apt-get installs Java)

Each prints one figure a line as ``NAME VALUE  # note`` or ``NAME k=v k=v``; a peer that cannot
run becomes ``{"skipped": why}``, a note in the report, never the end of the run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["DISRUPTOR", "parse_anchor_lines", "run_disruptor", "run_limits"]

DISRUPTOR = Path(__file__).parent / "disruptor" / "run.sh"


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
    """Runs ``peers.limits`` (memcpy, mmap write, fdatasync, Python call cost) in a process of
    its own and parses it."""
    cmd = [sys.executable, "-m", "ringlog.bench.peers.limits"] + ([directory] if directory
                                                                  else [])
    return _run(cmd, timeout, "limits")


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
    """Runs our Java LMAX Disruptor peer (``disruptor/run.sh``); a note instead of figures
    where Java and libdisruptor-java are absent and cannot be installed."""
    if not shutil.which("bash"):
        return {"skipped": "no bash to run disruptor/run.sh"}
    return _run(["bash", str(DISRUPTOR), str(events), str(runs)], timeout, "disruptor/run.sh")
