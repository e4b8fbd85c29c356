"""Snapshots: atomic, checksummed, newest valid wins, damaged ones skipped."""

import os

import pytest

from ringlog import SnapshotError
from ringlog.snapshot import SnapshotStore


def test_write_load_and_list(tmp_path):
    s = SnapshotStore(tmp_path)
    s.write(10, b"state-10", {"who": "test"})
    s.write(20, b"state-20")
    assert s.sequences() == [10, 20]
    snap = s.latest()
    assert (snap.sequence, snap.data, snap.meta) == (20, b"state-20", {})
    assert s.load(10).meta == {"who": "test"}
    assert s.latest(at_or_before=15).sequence == 10
    assert [x["valid"] for x in s.list()] == [True, True]


def test_damaged_newest_snapshot_is_skipped_and_reported(tmp_path):
    s = SnapshotStore(tmp_path)
    s.write(1, b"good")
    p = s.write(2, b"will be damaged")
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 1
    p.write_bytes(raw)
    assert s.latest().sequence == 1
    assert "checksum mismatch" in s.skipped[0]
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        s.load(2)
    assert [x["valid"] for x in s.list()] == [True, False]


def test_truncated_and_foreign_snapshots_are_errors(tmp_path):
    s = SnapshotStore(tmp_path)
    p = s.write(3, b"x" * 100)
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(SnapshotError, match="truncated"):
        s.load(3)
    (tmp_path / f"{4:020d}.snap").write_bytes(b"not a snapshot at all, no sir" * 3)
    with pytest.raises(SnapshotError, match="not a ringlog snapshot"):
        s.load(4)
    assert s.latest() is None
    with pytest.raises(SnapshotError, match="cannot read"):
        s.load(99)


def test_no_temporary_files_remain_and_delete_before(tmp_path):
    s = SnapshotStore(tmp_path)
    for i in range(5):
        s.write(i, b"d")
    assert sorted(os.listdir(tmp_path)) == [f"{i:020d}.snap" for i in range(5)]
    s.delete_before(3)
    assert s.sequences() == [3, 4]


def test_stale_temp_files_of_a_dead_writer_are_removed_at_start(tmp_path):
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    store = SnapshotStore(tmp_path)
    store.write(3, b"ok")
    stale = tmp_path / f"00000000000000000009.snap.tmp{dead.pid}"
    stale.write_bytes(b"half a snapshot")
    live = tmp_path / f"00000000000000000010.snap.tmp{os.getppid()}"  # a live process's
    live.write_bytes(b"being written")
    again = SnapshotStore(tmp_path)
    assert again.removed_temp == [str(stale)]
    assert not stale.exists() and live.exists()
    assert again.sequences() == [3] and again.latest().data == b"ok"
