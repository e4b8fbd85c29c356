"""``ringlog demo``: help without running, a directory of its own, never deleting what it did
not make; one quick run end to end (recovery reproduces the live engine)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def ringlog(*args, cwd):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


@pytest.mark.parametrize("module", [["ringlog", "demo"], ["ringlog.demo"]])
def test_help_shows_options_and_examples_and_runs_nothing(module, tmp_path):
    (tmp_path / "demo-journal").mkdir()
    (tmp_path / "demo-journal" / "mine.txt").write_text("keep")
    r = ringlog(*module, "--help", cwd=tmp_path)
    assert r.returncode == 0 and "--dir DIR" in r.stdout and "examples:" in r.stdout
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["demo-journal", "mine.txt"]


@pytest.mark.parametrize("kind", ["files", "a file"])
def test_a_directory_it_did_not_make_is_refused_and_left_as_it_was(kind, tmp_path):
    target = tmp_path / "data"
    if kind == "files":
        target.mkdir()
        (target / "orders.db").write_text("precious")
    else:
        target.write_text("precious")
    r = ringlog("ringlog", "demo", "--dir", target, "--quick", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1
    assert str(target) in r.stderr and "Traceback" not in r.stderr
    assert (target / "orders.db" if kind == "files" else target).read_text() == "precious"
    assert sorted(p.name for p in tmp_path.rglob("*")) == (
        ["data", "orders.db"] if kind == "files" else ["data"])


def test_a_quick_run_recovers_the_live_state_and_a_second_run_replaces_its_own_dir(tmp_path):
    target = tmp_path / "new" / "demo"
    first = ringlog("ringlog", "demo", "--dir", target, "--quick", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "MATCH" in first.stdout and "MISMATCH" not in first.stdout
    assert {p.name for p in target.iterdir()} >= {".ringlog-demo", "input", "output",
                                                   "snapshots"}
    (target / "leftover").write_text("from the first run")
    second = ringlog("ringlog", "demo", "--dir", target, "--quick", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert not (target / "leftover").exists()  # the demo's own directory was replaced
    verify = ringlog("ringlog", "journal", "verify", target, cwd=tmp_path)
    assert verify.returncode == 0 and verify.stdout.count("ok: ") >= 2, verify.stderr
