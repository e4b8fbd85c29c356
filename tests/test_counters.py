"""Counters in a shared-memory file: writer, reader in another process, liveness, layout."""

import contextlib
import errno
import mmap
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringlog._counters import (
    GAUGE,
    LABEL_MAX,
    SEQUENCE,
    TOTAL,
    CountersError,
    CountersFileError,
    CountersManager,
    CountersReader,
    CountersVersionError,
)

# header offsets (includes/counterslayout.h)
OFF_VERSION, OFF_START_TICKS = 8, 64


@contextlib.contextmanager
def _python(code, *args):
    """A Python process running ``code``; killed (pipes closed) when the block ends."""
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()


def _poke(path, offset, fmt, value):
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        struct.pack_into(fmt, m, offset, value)


def test_counters_reader_in_another_process_sees_a_writer_threads_stores_in_order(tmp_path):
    path = tmp_path / "counters"
    n = 200_000
    # read() loads in id order, so `second` (id 0) before `first` (id 1); the writer stores
    # first then second: with release stores and acquire loads the reader never sees second
    # ahead of first, nor a value go back
    code = """
        import sys
        from ringlog._counters import CountersReader
        r = CountersReader(sys.argv[1])
        print("ready", flush=True)
        last = -1
        while True:
            # one read() loads in allocation order (first, then second), so take `second`
            # from one read and `first` from a later one
            b = {c.label: c.value for c in r.read()}["stage.second"]
            a = {c.label: c.value for c in r.read()}["stage.first"]
            if a < b or b < last:
                print("disorder", a, b, last, flush=True)
                sys.exit(1)
            last = b
            if b == int(sys.argv[2]):
                print("done", a, b, flush=True)
                break
    """
    with CountersManager.create(path) as mgr:
        second = mgr.allocate("stage.second", SEQUENCE)
        first = mgr.allocate("stage.first", SEQUENCE)
        with _python(code, path, n) as reader:
            assert reader.stdout.readline().strip() == "ready"

            def write():
                for i in range(1, n + 1):
                    first.set(i)
                    second.set(i)

            t = threading.Thread(target=write)
            t.start()
            t.join(60)
            out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, (out, err)
    assert out.split() == ["done", str(n), str(n)]


def test_counters_python_api_add_set_and_reader_values(tmp_path):
    with CountersManager.create(tmp_path / "c") as mgr:
        a = mgr.allocate("events.in", TOTAL)
        b = mgr.allocate("journal.lag", GAUGE)
        a.add(5)
        a.add()
        b.set(-3)
        r = CountersReader(tmp_path / "c")
        assert r.values() == {"events.in": 6, "journal.lag": -3}
        assert [(c.id, c.type_id, c.label) for c in r.read()] == [
            (0, TOTAL, "events.in"), (1, GAUGE, "journal.lag")]
        assert a.value == 6 and r.writer_pid == os.getpid()


WRITER = """
    import sys, time
    from ringlog._counters import CountersManager
    m = CountersManager.create(sys.argv[1], heartbeat_interval=0.01)
    m.allocate("x").set(42)
    if sys.argv[2] == "close":
        m.close()
    print("ready", flush=True)
    time.sleep(60)
"""


def test_counters_writer_killed_reads_as_dead_and_clean_close_as_stopped(tmp_path):
    path = tmp_path / "counters"
    with _python(WRITER, path, "run") as w:
        assert w.stdout.readline().strip() == "ready"
        r = CountersReader(path)
        assert r.writer_status() == "running"
        assert r.writer_pid == w.pid
        assert r.values() == {"x": 42}
        w.kill()
        w.wait()
        assert r.writer_status() == "dead"
        assert r.values() == {"x": 42}  # the last figures stay readable
    with _python(WRITER, path, "close") as c:
        assert c.stdout.readline().strip() == "ready"
        assert r.reopen()  # a new writer replaced the file
        assert not r.reopen()
        assert r.writer_pid == c.pid
        assert r.writer_status() == "stopped"


def test_counters_pid_reused_by_another_process_reads_as_dead(tmp_path):
    with CountersManager.create(tmp_path / "c") as mgr:
        mgr.allocate("x")
        r = CountersReader(tmp_path / "c")
        assert r.writer_status() == "running"
        # the pid is alive (ours) but started at another time: not the writer
        _poke(tmp_path / "c", OFF_START_TICKS, "<q", 12345)
        assert r.writer_status() == "dead"


def test_counters_hung_writer_reads_as_stale(tmp_path):
    path = tmp_path / "counters"
    with _python(WRITER, path, "run") as w:
        assert w.stdout.readline().strip() == "ready"
        r = CountersReader(path)
        os.kill(w.pid, signal.SIGSTOP)  # alive, but its heartbeat thread no longer runs
        deadline = time.monotonic() + 20
        while r.writer_status(stale_after=0.2) != "stale":
            assert time.monotonic() < deadline, "a stopped writer never read as stale"
            time.sleep(0.05)
        os.kill(w.pid, signal.SIGCONT)
        while r.writer_status(stale_after=0.2) != "running":
            assert time.monotonic() < deadline, "a resumed writer never read as running"
            time.sleep(0.05)


def test_counters_other_layout_version_is_refused_naming_both_versions(tmp_path):
    with CountersManager.create(tmp_path / "c") as mgr:
        mgr.allocate("x")
    _poke(tmp_path / "c", OFF_VERSION, "<I", 2)
    with pytest.raises(CountersVersionError, match=r"version 2; this ringlog reads version 1"):
        CountersReader(tmp_path / "c")


def test_counters_foreign_or_short_file_is_refused_naming_it(tmp_path):
    short = tmp_path / "short"
    short.write_bytes(b"x" * 100)
    with pytest.raises(CountersError, match="short is 100 bytes"):
        CountersReader(short)
    junk = tmp_path / "junk"
    junk.write_bytes(b"\0" * 8192)
    with pytest.raises(CountersError, match="not a ringlog counters file"):
        CountersReader(junk)
    with pytest.raises(FileNotFoundError):
        CountersReader(tmp_path / "absent")


def test_counters_create_refuses_a_file_a_live_writer_holds(tmp_path):
    path = tmp_path / "counters"
    with _python(WRITER, path, "run") as w:
        assert w.stdout.readline().strip() == "ready"
        with pytest.raises(CountersFileError, match=f"in use by process {w.pid}") as e:
            CountersManager.create(path)
        assert e.value.errno == errno.EBUSY and e.value.path == str(path)
        w.kill()
        w.wait()
        with CountersManager.create(path) as mgr:  # its writer is dead now: replaced
            assert CountersReader(path).writer_pid == os.getpid()
            assert mgr.max_counters == 1024


def test_counters_allocate_rejects_bad_labels_duplicates_and_a_full_file(tmp_path):
    with CountersManager.create(tmp_path / "c", max_counters=2) as mgr:
        for bad in ("", "naïve", "tab\there", "x" * (LABEL_MAX + 1)):
            with pytest.raises(CountersError, match="label"):
                mgr.allocate(bad)
        mgr.allocate("x" * LABEL_MAX)
        mgr.allocate("b")
        with pytest.raises(CountersError, match="already allocated"):
            mgr.allocate("b")
        with pytest.raises(CountersError, match=r"full \(2 counters\)"):
            mgr.allocate("c")
        mgr.counters()["b"].free()
        with pytest.raises(CountersError, match="type_id must be >= 1"):
            mgr.allocate("d", type_id=0)
    with pytest.raises(CountersError, match="max_counters"):
        CountersManager.create(tmp_path / "d", max_counters=0)


def test_counters_freed_id_is_reused_with_a_new_registration(tmp_path):
    with CountersManager.create(tmp_path / "c") as mgr:
        a = mgr.allocate("a")
        mgr.allocate("b").set(2)
        a.set(7)
        r = CountersReader(tmp_path / "c")
        reg = r.read()[0].registration_id
        a.free()
        assert r.values() == {"b": 2}
        c = mgr.allocate("c")
        assert c.id == a.id and c.value == 0  # a reused id starts from zero
        (first,) = [v for v in r.read() if v.id == a.id]
        assert first.label == "c" and first.registration_id != reg


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(-2**63, 2**63 - 1),
                          st.booleans()), max_size=40))
def test_counters_reader_matches_a_model_under_allocate_set_free(tmp_path_factory, ops):
    path = tmp_path_factory.mktemp("ctr") / "c"
    model = {}
    with CountersManager.create(path, max_counters=8) as mgr:
        r = CountersReader(path)
        live = {}
        for label, value, free in ops:
            if label not in live:
                live[label] = mgr.allocate(label)
                model[label] = 0
            if free:
                live.pop(label).free()
                del model[label]
            else:
                live[label].set(value)
                model[label] = value
            assert r.values() == model


def test_counters_killed_writer_not_yet_reaped_reads_as_dead_and_is_replaced(tmp_path):
    path = tmp_path / "counters"
    with _python(WRITER, path, "run") as w:
        assert w.stdout.readline().strip() == "ready"
        os.kill(w.pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        stat = Path(f"/proc/{w.pid}/stat")
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the killed writer never became a zombie"
            time.sleep(0.01)
        # a zombie until its parent (we) reaps it: already not a writer
        assert CountersReader(path).writer_status() == "dead"
        with CountersManager.create(path):  # a restart may take the file at once
            assert CountersReader(path).writer_pid == os.getpid()
