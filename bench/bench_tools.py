"""Journal tools: verify, replay and dump rates on a journal of 64-byte records.

    verify_cli_64b:      journaltool.check (`ringlog journal verify`): headers, CRC32C and
                         sequence density of every record, in C without the GIL
    replay_python_64b:   Replayer.run (`ringlog replay`) with a trivial Python handler:
                         JournalReader.walk -> compiled LogicCore.replay_segment ->
                         one Python on_event call per event
    replay_cython_64b:   the same with a Cython handler (CountingHandler: on_event_c, no
                         Python object per event)
    dump_json_64b:       `ringlog journal dump --json` encoding to /dev/null (decode + JSON)

Replay runs the processor's compiled loop (ringlog._loop) over each mapped segment, so the
figures differ only by the handler's own cost.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any

from ringlog import Journal, Ring
from ringlog._benchhandlers import CountingHandler
from ringlog.bench.stats import summarize
from ringlog.journaltool import Filter, check, dump
from ringlog.replay import Replayer


class _Nothing:
    """The trivial handler: replay cost without business logic."""

    def on_start(self) -> None:
        pass

    def on_event(self, event: Any, sequence: int, end_of_batch: bool) -> None:
        pass

    def on_restore(self, data: bytes) -> None:
        pass


def _journal(total: int, d: str) -> str:
    ring = Ring(8192, 64)
    c = ring.consumer()
    ring.publish_many([b"x" * 16] * 4096)  # 48-byte header + 16 = 64-byte records
    batch = c.poll(max_batch=4096)
    path = tempfile.mkdtemp(dir=d)
    with Journal(path, durability="none", segment_size=64 << 20) as j:
        while j.next_sequence < total:
            j.append_batch(batch)
    return path


def _rate(fn: Any, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def run(runs: int = 3, smoke: bool = False, peers: dict | None = None) -> list[dict]:
    """Events/s of verify, replay and dump (medians of ``runs``)."""
    d = tempfile.mkdtemp(prefix="ringlog-bench-", dir=".")
    total = 100_000 if smoke else 4_000_000
    rows: list[dict] = []
    try:
        path = _journal(total, d)
        n = check(path).records
        rows.append({"target": "tools", "name": "verify_cli_64b", "unit": "events/s",
                     **summarize([_rate(lambda: check(path), n) for _ in range(runs)])})
        small = total // 8
        rows.append({"target": "tools", "name": "replay_python_64b", "unit": "events/s",
                     **summarize([_rate(lambda: Replayer(path, _Nothing()).run(small - 1),
                                        small) for _ in range(runs)])})
        # a Cython handler (on_event_c, no Python call per event), emitting every 1024 events
        rows.append({"target": "tools", "name": "replay_cython_64b", "unit": "events/s",
                     **summarize([_rate(lambda: Replayer(path, CountingHandler(1024)).run(
                         n - 1), n) for _ in range(runs)])})
        with open(os.devnull, "w") as null:
            rows.append({"target": "tools", "name": "dump_json_64b", "unit": "events/s",
                         **summarize([_rate(lambda: dump(path, Filter(limit=small // 4), null,
                                                         as_json=True), small // 4)
                                      for _ in range(runs)])})
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(runs=1, smoke="--smoke" in sys.argv), indent=1))

GOALS = [
    {"goal": "verify >= 20M events/s (64-byte records)", "row": "verify_cli_64b", "min": 2e7,
     "why": ""},
    {"goal": "replay >= 20M events/s (64-byte records, Cython handler)",
     "row": "replay_cython_64b", "min": 2e7, "why": ""},
]
