"""The driven topology's pump with the GIL held through the journal append, or released around
it: CPU and wall per pump of one event, alone and with another Python thread that wants the
GIL (as the gateway's process has: its admin and metrics threads, a user thread).

::

    this thread: publish one event ─► Processor.pump() ─► journal it (GIL held | released)
                                                        ─► handle it (SumHandler, Cython)
    [busy] another thread: a Python loop that takes the GIL whenever it is free

    python bench/driven_pump.py [--events 50000] [--busy-events 2000] [--rounds 3]

Prints, per mode and round (interleaved), ns of this thread's CPU and of wall time per pump.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time

from ringlog import Processor, ProcessorConfig
from ringlog._benchhandlers import SumHandler

PAYLOAD = (7).to_bytes(8, "little")


def one(nogil: bool, events: int, busy: bool) -> tuple[float, float]:
    """(CPU ns, wall ns) per publish + pump of one event."""
    with tempfile.TemporaryDirectory(prefix="driven-pump-") as d:
        cfg = ProcessorConfig(topology="driven", durability="group", counters=False,
                              admin=False, segment_size=64 << 20)
        p = Processor(SumHandler(), d, cfg)
        p._nogil_append = nogil
        p.start()
        stop = threading.Event()
        spinner = None
        if busy:
            def spin() -> None:
                n = 0
                while not stop.is_set():
                    n += 1

            spinner = threading.Thread(target=spin, daemon=True)
            spinner.start()
        try:
            for _ in range(1000):  # warm up: the journal's first pages, the caches
                p.publish(PAYLOAD)
                p.pump()
            c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
            for _ in range(events):
                p.publish(PAYLOAD)
                p.pump()
            c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
        finally:
            stop.set()
            if spinner is not None:
                spinner.join()
            p.stop()
    return (c1 - c0) / events, (w1 - w0) / events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--busy-events", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    print(f"switch interval {sys.getswitchinterval() * 1e6:.0f} us")
    for busy in (False, True):
        n = a.busy_events if busy else a.events
        got: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for r in range(a.rounds):
            for nogil in (False, True) if r % 2 == 0 else (True, False):
                got[nogil].append(one(nogil, n, busy))
        for nogil, rows in got.items():
            cpu = [x[0] for x in rows]
            wall = [x[1] for x in rows]
            print(f"{'busy thread' if busy else 'alone':11s} GIL "
                  f"{'released' if nogil else 'held    '}: CPU {statistics.median(cpu):,.0f} "
                  f"ns/pump [{min(cpu):,.0f} - {max(cpu):,.0f}], wall "
                  f"{statistics.median(wall):,.0f} ns/pump [{min(wall):,.0f} - "
                  f"{max(wall):,.0f}] ({a.rounds} rounds of {n:,})")


if __name__ == "__main__":
    main()
