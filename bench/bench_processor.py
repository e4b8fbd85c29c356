"""End-to-end processor benchmarks: producer ──ring──► journaller (group) ──► Python handler
──► (breaker) ──► output ring ──► output journal.

    processor_python_handler:          trivial Python handler, no breaker
    processor_python_handler_breaker:  the same with a breaker limit that never trips
Ratios: to the bare Python call ceiling from shared/anchors/limits.py (1e9 / python_call_ns
calls per second) and breaker overhead as the ratio of the two.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from typing import Any

from ringlog import Breaker, BreakerConfig, EventHandler, Limit, Processor, ProcessorConfig
from ringlog.bench.stats import summarize


class Counter(EventHandler):
    """Counts events and emits one output per 16 inputs."""

    def __init__(self) -> None:
        self.n = 0

    def on_event(self, event: Any, sequence: int, end_of_batch: bool) -> None:
        self.n += 1
        if not self.n & 15:
            self.emit(b"o", 1)


def _once(n: int, breaker: bool) -> float:
    d = tempfile.mkdtemp(prefix="ringlog-proc-", dir=".")
    cfg = ProcessorConfig(ring_capacity=1 << 16, output_capacity=1 << 14,
                          durability="group", wait="yielding")
    b = Breaker(BreakerConfig(limits=[Limit(max_count=10_000_000, window_ns=10**9)])) \
        if breaker else None
    h = Counter()
    p = Processor(h, d, cfg, breaker=b)
    p.start()
    chunk = [b"12345678"] * 512
    t0 = time.perf_counter()
    for _ in range(n // len(chunk)):
        p.publish_many(chunk, 1, timestamp_ns=0)
    p.drain(timeout=300)
    dt = time.perf_counter() - t0
    shutil.rmtree(d)
    return h.n / dt


def run(runs: int = 3, smoke: bool = False, peers: dict | None = None) -> list[dict]:
    """Processor throughput with a Python handler, with and without the breaker."""
    peers = peers or {}
    lim = peers.get("limits", {}) if isinstance(peers.get("limits"), dict) else {}
    n = 20_000 if smoke else 1_000_000
    plain = summarize([_once(n, False) for _ in range(runs)])
    guarded = summarize([_once(n, True) for _ in range(runs)])
    rows = []
    ceiling = 1e9 / lim["python_call_ns"] if lim.get("python_call_ns") else None
    for name, s in (("processor_python_handler", plain),
                    ("processor_python_handler_breaker", guarded)):
        row = {"target": "processor", "name": name, "unit": "events/s", **s}
        if ceiling:
            row["peers"] = {"python_call_ceiling": ceiling}
            row["ratios"] = {"python_call_ceiling": s["median"] / ceiling}
        rows.append(row)
    rows[1].setdefault("ratios", {})["without_breaker"] = guarded["median"] / plain["median"]
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(runs=1, smoke="--smoke" in sys.argv), indent=1))

GOALS = [
    {"goal": "trivial Python handler >= 40% of the bare Python call ceiling",
     "row": "processor_python_handler", "ratio": "python_call_ceiling", "min": 0.4,
     "why": "the loop itself is Python: per event a LogicLoop.process call, the dedup/control "
            "checks and the handler call (a Cython loop is the planned fix)"},
    {"goal": "breaker overhead < 5% (throughput with breaker >= 0.95x without)",
     "row": "processor_python_handler_breaker", "ratio": "without_breaker", "min": 0.95,
     "why": "the breaker is consulted per output from Python; noise between runs is ~5%"},
]
