"""``python -m ringlog.demo`` (``make demo``): the ring, the journal and the processor at work.

1. Ring throughput, 1 producer -> 1 consumer on two threads: C-level loops (claims of 1 and
   of 64) and plain Python (publish_many + poll).
2. Journal appends from a ring batch, 64-byte records, group commit.
3. The processor with a Python handler and the circuit breaker: a runaway handler trips it,
   input is held in the journal, a journaled reset resumes it; then a fresh processor
   recovers from the journal alone and its state hash matches.
The journal is left in ``./demo-journal`` for the tools.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import sys
import threading
import time
from pathlib import Path

from ._ring import Ring
from .bench.loops import one_to_one_threads
from .breaker import Breaker, BreakerConfig, Limit
from .handler import EventHandler
from .journal import Journal
from .processor import Processor, ProcessorConfig


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds / 1e6:8.2f} M events/s"


def ring_python_level(count: int) -> tuple[int, float]:
    """(events, seconds) for events published with publish_many and consumed with poll."""
    ring = Ring(1 << 14, 64, wait="yielding")
    c = ring.consumer()
    chunk = [b"12345678"] * 256
    count -= count % len(chunk)
    got = 0

    def consumer() -> None:
        nonlocal got
        while got < count:
            got += len(c.poll(timeout=5))

    t = threading.Thread(target=consumer)
    t0 = time.perf_counter()
    t.start()
    for _ in range(count // len(chunk)):
        ring.publish_many(chunk, timeout=5)
    t.join()
    return count, time.perf_counter() - t0


def journal_appends(path: Path, count: int) -> float:
    """Seconds to journal ``count`` 64-byte records from ring batches (group commit)."""
    ring = Ring(1 << 14, 64)
    c = ring.consumer()
    chunk = [b"12345678"] * 4096
    count -= count % len(chunk)
    with Journal(path, durability="group", segment_size=64 << 20) as j:
        t0 = time.perf_counter()
        done = 0
        while done < count:
            ring.publish_many(chunk)
            while True:
                b = c.poll(timeout=0)
                if not b:
                    break
                j.append_batch(b)
                done += len(b)
        j.sync()
        return time.perf_counter() - t0


class Runaway(EventHandler):
    """Keeps a running sum per account; at its 3000th event a 'bug' emits 1000 orders."""

    def __init__(self) -> None:
        self.sums: dict[int, int] = {}
        self.seen = 0

    def on_event(self, event, sequence, end_of_batch):  # type: ignore[no-untyped-def]
        account, amount = struct.unpack("<qq", event.payload)
        self.sums[account] = self.sums.get(account, 0) + amount
        self.seen += 1
        copies = 1000 if self.seen == 3000 else 1
        for _ in range(copies):
            self.emit(struct.pack("<qq", account, self.sums[account]), type_id=1, key=account)

    def on_snapshot(self) -> bytes:
        return struct.pack(f"<{1 + 2 * len(self.sums)}q", self.seen,
                           *[x for kv in sorted(self.sums.items()) for x in kv])

    def on_restore(self, data: bytes) -> None:
        self.seen, *vals = struct.unpack(f"<{len(data) // 8}q", data)
        self.sums = dict(zip(vals[::2], vals[1::2], strict=True))

    def state_hash(self) -> str:
        return hashlib.sha256(self.on_snapshot()).hexdigest()[:16]


def processor_demo(path: Path, count: int) -> None:
    """Runs the processor with the breaker, trips it, resets it, recovers from the journal."""
    cfg = ProcessorConfig(ring_capacity=1 << 14, output_capacity=1 << 14,
                          durability="group", snapshot_every=5000)
    # normal flow: 1000 events and outputs per second of event time; the bug adds ~1000
    limits = BreakerConfig(limits=[Limit(max_count=1500, window_ns=1_000_000_000,
                                         name="per-second")])
    trips = []
    outputs = 0

    def count_output(_rec: object) -> None:
        nonlocal outputs
        outputs += 1

    h = Runaway()
    p = Processor(h, path, cfg, breaker=Breaker(limits, alert=trips.append),
                  on_output=count_output)
    p.start()
    t0 = time.perf_counter()
    for i in range(count):
        # event time: 1000 events per (event-time) second, from the producer's clock
        p._in.publish(struct.pack("<qq", i % 7, i), 1, timestamp_ns=i * 1_000_000)
    while p._lc.sequence < count - 1:
        time.sleep(0.005)
    elapsed = time.perf_counter() - t0
    m = p.metrics
    print(f"  published {count} events in {elapsed:.2f} s; journaled {m.journaled}, "
          f"processed {m.processed} (Python handler)")
    print(f"  breaker: {m.breaker_state}, held outputs {m.held}")
    if trips:
        t = trips[0]
        print(f"  TRIP: limit {t.limit!r}: {t.count} outputs within {t.window_ns / 1e9:.0f} s "
              f"(event time {t.timestamp_ns / 1e9:.3f} s); input since then is held in the "
              "journal")
    p.release_held(timestamp_ns=count * 1_000_000)
    p.reset_breaker(timestamp_ns=count * 1_000_000 + 10_000_000_000)
    p.drain(timeout=60)
    print(f"  after an operator release + reset: processed {h.seen}, breaker "
          f"{p.breaker.state_name}, outputs published {outputs}")
    live = h.state_hash()
    h2 = Runaway()
    p2 = Processor(h2, path, cfg, breaker=Breaker(limits))
    t0 = time.perf_counter()
    rep = p2.recover(verify=True)
    dt = time.perf_counter() - t0
    p2.stop()
    print(f"  recovery: snapshot at {rep.snapshot_sequence}, replayed {rep.replayed} events in "
          f"{dt:.2f} s, outputs verified {rep.verified_outputs}, first divergence "
          f"{rep.first_divergence}")
    print(f"  state hash live {live} / recovered {h2.state_hash()}: "
          f"{'MATCH' if live == h2.state_hash() else 'MISMATCH'}")
    if live != h2.state_hash():
        raise SystemExit(1)


def main() -> int:
    """Runs the demo; exit code 1 if recovery did not reproduce the live state."""
    quick = "--quick" in sys.argv
    n = 2_000_000 if quick else 20_000_000
    print("ringlog demo\n\n1. ring, 1 producer -> 1 consumer, two threads")
    for batch in (1, 64):
        rate = one_to_one_threads(n, batch, wait="yielding")
        print(f"   C level, claims of {batch:<2}:  {rate / 1e6:8.2f} M events/s")
    m = n // 10
    print(f"   Python, publish_many+poll: {_rate(*ring_python_level(m))}")
    work = Path("demo-journal")
    shutil.rmtree(work, ignore_errors=True)
    k = n // 4
    print(f"\n2. journal, {k} x 64-byte records from ring batches, group commit")
    secs = journal_appends(work / "bench", k)
    print(f"   {_rate(k, secs)}, {k * 64 / secs / 1e9:.2f} GB/s")
    print("\n3. processor + circuit breaker + recovery")
    processor_demo(work / "processor", 20_000 if quick else 100_000)
    print(f"\njournal left in {work}/ for the tools")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
