"""A full disk or a refused permission: always JournalError/SnapshotError with the path and
the errno; producers of a processor that halted get an error carrying the cause; the thread
that prepares segments logs once per change of state. Injected through the sync hook (the
same every run), and once on a real 256 KiB tmpfs."""

import contextlib
import errno
import logging
import os
import subprocess
import time

import pytest

from ringlog import _journal
from ringlog.errors import JournalError, RingClosedError, RingLogError, SnapshotError
from ringlog.handler import EventHandler
from ringlog.journal import Journal
from ringlog.processor import Processor, ProcessorConfig
from ringlog.snapshot import SnapshotStore


class Counter(EventHandler):
    def __init__(self):
        self.n = 0

    def on_event(self, event, sequence, end_of_batch):
        self.n += 1


def ev(v):
    return v.to_bytes(8, "little")


def _fail(op_names, err=errno.ENOSPC):
    def hook(op, path, target):
        if op in op_names:
            raise OSError(err, os.strerror(err))
    return hook


@pytest.mark.parametrize("topology", ["auto", "driven"])  # driven: the publisher pumps
def test_producer_of_a_halted_processor_gets_the_disk_full_cause(tmp_path, topology):
    cfg = ProcessorConfig(ring_capacity=64, output_capacity=64, segment_size=1 << 16,
                          durability="sync", topology=topology)
    p = Processor(Counter(), tmp_path, cfg)
    p.start()
    try:
        p.publish(ev(1))
        _journal.set_sync_hook(_fail({"fdatasync"}))
        deadline = time.monotonic() + 30
        with pytest.raises(RingClosedError) as ei:
            while time.monotonic() < deadline:  # the journaller fails on its next sync
                p.publish(ev(2), timeout=1)
        assert "No space left on device" in str(ei.value)
        cause = ei.value.__cause__
        assert isinstance(cause, JournalError) and cause.errno == errno.ENOSPC
        assert cause.path and cause.path.endswith(".seg")
    finally:
        _journal.set_sync_hook(None)
        with contextlib.suppress(RingLogError):
            p.stop()
    assert isinstance(p.halt_cause, JournalError)


def test_segment_preparation_logs_once_per_change_of_state(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="ringlog.journal")
    j = Journal(tmp_path, segment_size=8192, durability="none", group_ms=1)
    try:
        j.append(b"x")
        _journal.set_sync_hook(_fail({"fallocate"}))
        deadline = time.monotonic() + 5
        failures = 0
        while time.monotonic() < deadline and failures < 20:  # the thread retries
            j._prepare_next()
            failures += 1
        _journal.set_sync_hook(None)
        j._prepare_next()
    finally:
        _journal.set_sync_hook(None)
        j.close()
    msgs = [r.getMessage() for r in caplog.records if "prepar" in r.getMessage()]
    assert len(msgs) == 2, msgs  # failing once, working again once
    assert "No space left on device" in msgs[0] and "works again" in msgs[1]


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EACCES, errno.EIO])
def test_snapshot_write_errors_name_path_and_errno(tmp_path, err):
    store = SnapshotStore(tmp_path)
    _journal.set_sync_hook(_fail({"create", "fsync", "rename", "fsync_dir"}, err))
    try:
        with pytest.raises(SnapshotError) as ei:
            store.write(1, b"s")
    finally:
        _journal.set_sync_hook(None)
    assert ei.value.errno == err and str(tmp_path) in ei.value.path


def test_unusable_journal_directory_is_a_journal_error(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(JournalError) as ei:
        Journal(tmp_path / "file" / "x")  # a path under a file (root ignores modes)
    assert ei.value.errno in (errno.ENOTDIR, errno.EEXIST) and ei.value.path


@pytest.fixture
def tiny_tmpfs(tmp_path):
    d = tmp_path / "tmpfs"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(d)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"mounting a tmpfs needs root (CI runs as root): {r.stderr}"
    yield d
    subprocess.run(["umount", "-l", str(d)], check=True)


def test_real_full_disk_is_a_journal_error_and_durable_records_stay(tiny_tmpfs):
    j = Journal(tiny_tmpfs / "j", segment_size=65536, durability="sync", prefault=False)
    last = -1
    with pytest.raises(JournalError) as ei:
        for i in range(100_000):
            last = j.append(b"%08d" % i * 8)
    assert ei.value.errno == errno.ENOSPC and ei.value.path.startswith(str(tiny_tmpfs))
    assert "disk full" in str(ei.value) or "No space" in str(ei.value)
    with pytest.raises(JournalError):
        j.append(b"more")
    j.close()
    with Journal(tiny_tmpfs / "j", segment_size=65536, durability="sync",
                 prefault=False) as j2:
        assert j2.last_sequence == last  # every acknowledged record is there
    store = SnapshotStore(tiny_tmpfs / "s")
    with pytest.raises(SnapshotError) as si:
        store.write(1, os.urandom(300_000))
    assert si.value.errno == errno.ENOSPC and not list((tiny_tmpfs / "s").glob("*.tmp*"))
