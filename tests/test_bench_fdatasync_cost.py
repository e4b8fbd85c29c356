"""bench/fdatasync_cost.py: what it refuses (one line, exit 2) and that each way of making a
small append durable really writes the bytes where a reader finds them."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / "fdatasync_cost.py"), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("args, says", [
    (("--variants", "falloc,nope"), "unknown variant 'nope'"),
    (("--syncs", "100000", "--variants", "direct_dsync"), "--syncs at most"),
    (("0",), "rounds, --syncs and --record must be >= 1"),
    (("--record", "0"), "rounds, --syncs and --record must be >= 1"),
    (("--record", "4096", "--syncs", "4096"), "--syncs at most 4094 with --record 4096"),
])
def test_usage_errors_are_one_line_and_exit_2(tmp_path, args, says):
    r = _run(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert says in r.stderr and "Traceback" not in r.stderr


def test_the_direct_variants_write_every_record(tmp_path, monkeypatch):
    # O_DIRECT rewrites the tail block from the aligned buffer: the file must end up holding
    # each record at its place, as the buffered variants leave it
    monkeypatch.syspath_prepend(str(BENCH))
    import fdatasync_cost as fc

    record = bytes(range(1, 251)) + b"x" * 150  # 400 bytes, none of them zero
    path = tmp_path / "direct.tmp"
    fd = fc.os.open(path, fc.os.O_RDWR | fc.os.O_CREAT, 0o644)
    try:
        fc.os.pwrite(fd, bytes(fc.SIZE), 0)
        try:
            cpu, wall = fc._direct(str(path), fd, 25, True, record)
        except OSError as e:  # a file system without O_DIRECT (tmpfs): nothing to check
            pytest.skip(f"O_DIRECT refused here: {e}")
    finally:
        fc.os.close(fd)
    data = path.read_bytes()
    n = len(record)
    assert data[fc.BLOCK:fc.BLOCK + 25 * n] == record * 25
    assert data[fc.BLOCK + 25 * n:fc.BLOCK + 25 * n + 4096].count(0) == 4096
    assert cpu > 0 and wall > 0
