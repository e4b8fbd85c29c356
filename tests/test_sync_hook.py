"""The sync hook: every durability step of a journal and a snapshot passes through it, and an
error it injects (a full disk) surfaces as JournalError/SnapshotError with path and errno."""

import errno
import os

import pytest

from ringlog import _journal
from ringlog.errors import JournalError, SnapshotError
from ringlog.journal import Journal
from ringlog.snapshot import SnapshotStore


@pytest.fixture
def ops():
    seen: list[tuple[str, str, str | None]] = []
    _journal.set_sync_hook(lambda op, path, target: seen.append((op, path, target)))
    yield seen
    _journal.set_sync_hook(None)


def test_hook_sees_every_durability_step(tmp_path, ops):
    with Journal(tmp_path / "j", segment_size=16384, durability="sync",
                 prefault=False) as j:
        for _ in range(300):  # rolls several segments
            j.append(b"x" * 40)
    names = [o for o, _, _ in ops]
    seg_syncs = [p for o, p, _ in ops if o == "fdatasync" and p.endswith(".seg")]
    assert len(seg_syncs) >= 300  # one per sync append, at least
    assert names.count("fsync_dir") >= 3  # a directory fsync at each roll
    renames = [(p, t) for o, p, t in ops if o == "rename" and t.endswith(".seg")]
    assert len(renames) >= 3
    # a roll's rename comes before that segment's directory fsync
    first_rename = names.index("rename")
    assert "fsync_dir" in names[first_rename:]
    SnapshotStore(tmp_path / "s").write(5, b"state")
    sdir = str(tmp_path / "s")
    snap_ops = [o for o, p, _ in ops if p == sdir or p.startswith(sdir + "/")]
    assert snap_ops[-4:] == ["create", "fsync", "rename", "fsync_dir"]


def test_hook_must_be_callable():
    with pytest.raises(TypeError):
        _journal.set_sync_hook(42)
    assert _journal.sync_hook() is None


def _enospc_on(op_name):
    def hook(op, path, target):
        if op == op_name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return hook


def test_injected_enospc_in_fdatasync_is_a_journal_error_with_path_and_errno(tmp_path):
    j = Journal(tmp_path, segment_size=16384, durability="sync", prefault=False)
    try:
        j.append(b"ok")
        _journal.set_sync_hook(_enospc_on("fdatasync"))
        with pytest.raises(JournalError) as ei:
            j.append(b"lost")
        assert ei.value.errno == errno.ENOSPC
        assert ei.value.path.endswith(".seg")
        assert j.failed
        _journal.set_sync_hook(None)
        with pytest.raises(JournalError):
            j.append(b"after")  # failed for good until reopened
    finally:
        _journal.set_sync_hook(None)
        j.close()
    with Journal(tmp_path, segment_size=16384, durability="sync", prefault=False) as j:
        assert j.durable_sequence >= 0


def test_injected_enospc_at_segment_creation(tmp_path):
    j = Journal(tmp_path, segment_size=8192, durability="sync", prefault=False)
    try:
        _journal.set_sync_hook(_enospc_on("fallocate"))
        with pytest.raises(JournalError) as ei:
            for _ in range(200):
                j.append(b"y" * 64)
        assert ei.value.errno == errno.ENOSPC and "preallocate" in str(ei.value)
    finally:
        _journal.set_sync_hook(None)
        j.close()


def test_injected_error_in_snapshot_write_is_a_snapshot_error(tmp_path):
    store = SnapshotStore(tmp_path)
    for op in ("fsync", "rename", "fsync_dir", "create"):
        _journal.set_sync_hook(_enospc_on(op))
        try:
            with pytest.raises(SnapshotError) as ei:
                store.write(7, b"data")
        finally:
            _journal.set_sync_hook(None)
        assert ei.value.errno == errno.ENOSPC, op
        assert ei.value.path is not None and str(tmp_path) in ei.value.path
        assert not list(tmp_path.glob("*.tmp*")), op  # the temp file never stays behind
