"""The engine alone beside a neighbour on the other CPU: is the engine slower inside the
pipeline because of what the other threads do at the same time?

::

    python bench/engine_neighbor.py [commands] [rounds]

Each round times the engine alone (``bench_engine._engine_alone``: a fresh engine over the
engine flow of ``commands`` commands) with the other CPU idle, then beside each
neighbour process in turn:

- ``pwrite``: pwrite() of 256 KiB buffers into a page-cache file, what the output journal's
  writer thread does;
- ``memcpy``: a 64 MiB numpy copy in a loop (memory bandwidth and the shared L3);
- ``spin``: a pure-Python counting loop (a busy CPU, little memory).

Prints the engine's CPU ns per command (its thread's, schedstat), median and range per
neighbour.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_engine as be

NEIGHBOURS = {
    "pwrite": ("import os, tempfile\n"
               "fd, path = tempfile.mkstemp(prefix='ringlog-neighbour-')\n"
               "os.unlink(path)\n"
               "b, off = b'x' * 262144, 0\n"
               "while True:\n"
               "    os.pwrite(fd, b, off)\n"
               "    off = (off + 262144) % (256 << 20)\n"),
    "memcpy": ("import numpy as np\n"
               "a = np.ones(64 << 20, np.uint8)\n"
               "b = np.empty_like(a)\n"
               "while True:\n"
               "    np.copyto(b, a)\n"),
    "spin": "x = 0\nwhile True:\n    x += 1\n",
}


def main(n: int = 2_000_000, rounds: int = 3) -> None:
    cmds, types = be.mixed_flow(n, seed=21)
    res: dict[str, list[float]] = {k: [] for k in ["idle", *NEIGHBOURS]}
    for _ in range(rounds):
        for k in res:
            p = None
            if k != "idle":
                p = subprocess.Popen([sys.executable, "-c", NEIGHBOURS[k]])
                time.sleep(0.5)  # running before the engine starts
            try:
                res[k].append(be._engine_alone(cmds, types)[1]["cpu_ns_total"])
            finally:
                if p is not None:
                    p.kill()
                    p.wait()
    idle = statistics.median(res["idle"])
    for k, v in res.items():
        print(f"{k:8s} engine alone: CPU {statistics.median(v):.0f} ns per command "
              f"({min(v):.0f}-{max(v):.0f}), {statistics.median(v) / idle:.2f}x idle")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
