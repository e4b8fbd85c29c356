"""bench/gil_contention.py: what it refuses (one line, exit 2), and that a small run reports
both handlers with the GIL wait only the handler with the GIL has."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / "gil_contention.py"), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("args", [("10",), ("5000", "0"), ("5000", "1", "--busy", "-1")])
def test_usage_errors_are_one_line_and_exit_2(tmp_path, args):
    r = _run(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert "events must be >= 1000" in r.stderr and "Traceback" not in r.stderr


def test_a_busy_thread_makes_only_the_handler_with_the_gil_wait(tmp_path):
    r = _run("20000", "1", "--busy", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    waits = {k: float(v) for k, v in re.findall(r"round 1 (\w+): .* GIL wait (\d+) ns", r.stdout)}
    assert set(waits) == {"gil", "nogil"}, r.stdout
    assert waits["nogil"] == 0 < waits["gil"], r.stdout
    assert "nogil/gil median" in r.stdout
