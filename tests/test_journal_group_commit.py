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
