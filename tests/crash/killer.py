"""Fork a child that reports int64 values through a pipe, SIGKILL it after a delay, and
return what it reported: the shared machinery of the kill -9 tests."""

import os
import signal
import struct
import threading
import time
from collections.abc import Callable


def run_and_kill(child: Callable[[int], None], delay: float,
                 until_exit: bool = False) -> list[int]:
    """Runs ``child(write_fd)`` in a forked process, kills it with SIGKILL after ``delay``
    seconds (``until_exit``: unless it exits first, e.g. killing itself at a chosen point),
    and returns every int64 it wrote before dying (a torn last one is dropped)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            child(w)
        finally:
            os._exit(0)
    os.close(w)
    if until_exit:  # the safety net: a child that hangs is killed after `delay`
        timer = threading.Timer(delay, os.kill, (pid, signal.SIGKILL))
        timer.start()
        os.waitpid(pid, 0)
        timer.cancel()
    else:
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.close(r)
    return [struct.unpack_from("<q", data, i)[0] for i in range(0, len(data) - 7, 8)]
