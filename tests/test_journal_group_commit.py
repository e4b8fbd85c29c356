"""The group-commit thread syncs and publishes the durable mark without the GIL, so a
durable release never waits for whichever thread holds it (a gateway's event loop):

    appender: append, commit ─► wake ─► group-commit thread (C loop, no GIL):
                                        fdatasync ─► durable mark ─► waiters, readers
"""

import ctypes
import subprocess
import sys
import time

from ringlog.journal import Journal

_WATCH = """
import sys, time
from ringlog.journal import JournalReader
r, want = JournalReader(sys.argv[1]), int(sys.argv[2])
print("ready", flush=True)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    if r.durable_sequence >= want:
        print("durable", flush=True)
        break
    time.sleep(0.001)
else:
    print("timeout", flush=True)
"""


def _line(libc: ctypes.CDLL, fd: int) -> bytes:
    """One line from ``fd`` through ``libc`` (a PyDLL: the GIL stays held while it blocks)."""
    buf, line = ctypes.create_string_buffer(1), b""
    while libc.read(fd, buf, 1) == 1 and buf.raw != b"\n":
        line += buf.raw
    return line


def test_the_durable_mark_moves_while_another_thread_holds_the_gil(tmp_path):
    """This thread appends, then keeps the GIL (a blocking read through ctypes.PyDLL, the
    switch interval at 60 s) until a process watching the journal reports the records
    durable: the group commit happened while it could not have taken the GIL."""
    d = tmp_path / "j"
    n = 100
    with Journal(d, durability="group") as j:
        assert j.wait_ready(30)  # the next segment is prepared: no Python work is pending
        watcher = subprocess.Popen([sys.executable, "-c", _WATCH, str(d), str(n - 1)],
                                   stdout=subprocess.PIPE)
        libc = ctypes.PyDLL(None)
        libc.read.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        libc.read.restype = ctypes.c_ssize_t
        interval = sys.getswitchinterval()
        try:
            assert watcher.stdout.readline() == b"ready\n"
            sys.setswitchinterval(60)  # no forced hand-over from here to the proof
            for i in range(n):
                j.append(i.to_bytes(8, "little"))
            said = _line(libc, watcher.stdout.fileno())  # the GIL is held until this returns
        finally:
            sys.setswitchinterval(interval)
            watcher.kill()
            watcher.wait()
            watcher.stdout.close()
        assert said == b"durable", "the durable mark did not move while the GIL was held"
        deadline = time.monotonic() + 30
        while j.durable_sequence < n - 1:
            assert time.monotonic() < deadline
            time.sleep(0.001)


def test_the_header_holds_a_durable_sequence_before_any_thread_can_read_it(tmp_path):
    # what a thread reads from durable_sequence it may tell another process at once, and
    # then be killed (the kill -9 test's child does): the segment header, which that
    # process reads, must hold the value by then (it was published in memory first, and a
    # read between the two could claim more than the file's readers find)
    import threading

    with Journal(tmp_path, durability="group", group_events=1) as j:
        seg = j.appender.segment
        stop = threading.Event()

        def append() -> None:
            while not stop.is_set():
                j.append_many([b"x" * 32] * 8, 1)
                time.sleep(0)

        t = threading.Thread(target=append)
        t.start()
        seen = []
        try:
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and j.appender.segment is seg:
                d = j.durable_sequence
                m = seg.durable_sequence
                if m < d:
                    seen.append((d, m))
                    break
        finally:
            stop.set()
            t.join(30)
        assert j.durable_sequence > 100  # many group commits were raced
        assert not seen, f"durable_sequence {seen[0][0]} read before the header held it"
