"""Ring benchmarks, with the Python queues measured in the same run.

    one_to_one_threads:   producer thread ──ring──► consumer thread   (C loops, no GIL)
    one_to_one_processes: producer process ──shm ring──► consumer     (C loops)
    two_to_one_threads:   2 producer threads ──multi-producer ring──► consumer
    python_*:             plain Python publish / publish_many ──► Python poll
    latency_100k:         open-loop producer at 100k events/s ──► consumer; latency from each
                          event's intended send time (coordinated omission corrected)

``run(runs, smoke, peers)`` returns result rows (see ringlog.bench.results); ratios are to the
Java LMAX Disruptor and to queue.Queue / multiprocessing.Queue / faster-fifo from the same run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
from typing import Any

import numpy as np

from ringlog import Ring
from ringlog._ringbench import consume, consume_latency, cycle, produce, produce_paced
from ringlog.bench.latency import percentiles
from ringlog.bench.loops import one_to_one_threads
from ringlog.bench.stats import summarize


def _threads_2p1c(n: int, batch: int) -> float:
    ring = Ring(1 << 16, 64, producer="multi", wait="yielding")
    c = ring.consumer()
    ps = [threading.Thread(target=produce, args=(ring, n // 2, batch, p)) for p in range(2)]
    t0 = time.perf_counter()
    for p in ps:
        p.start()
    consume(c, n // 2 * 2, nproducers=2)
    for p in ps:
        p.join()
    return n // 2 * 2 / (time.perf_counter() - t0)


def _producer_process(path: str, n: int, batch: int) -> None:
    produce(Ring.attach(path), n, batch)


def _processes_1p1c(n: int, batch: int) -> float:
    import os
    import tempfile

    path = os.path.join(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None),
                        "ring")
    ring = Ring.create(path, 1 << 16, 64, producer="single", wait="yielding")
    c = ring.consumer()
    p = mp.get_context("fork").Process(target=_producer_process, args=(path, n, batch))
    t0 = time.perf_counter()
    p.start()
    consume(c, n)
    dt = time.perf_counter() - t0
    p.join()
    os.unlink(path)
    return n / dt


def _python_single(n: int) -> float:
    ring = Ring(1 << 14, 64, wait="yielding")
    c = ring.consumer()
    done = threading.Event()

    def consumer() -> None:
        got = 0
        while got < n:
            for _ in c.poll(timeout=5):
                got += 1
        done.set()

    t = threading.Thread(target=consumer)
    t0 = time.perf_counter()
    t.start()
    pub = ring.publish
    for _ in range(n):
        pub(b"12345678")
    done.wait()
    return n / (time.perf_counter() - t0)


def _python_batched(n: int, chunk: int = 256) -> float:
    ring = Ring(1 << 14, 64, wait="yielding")
    c = ring.consumer()
    n -= n % chunk
    items = [b"12345678"] * chunk

    def consumer() -> None:
        got = 0
        while got < n:
            got += len(c.poll(timeout=5))

    t = threading.Thread(target=consumer)
    t0 = time.perf_counter()
    t.start()
    for _ in range(n // chunk):
        ring.publish_many(items)
    t.join()
    return n / (time.perf_counter() - t0)


def _queue_queue(n: int) -> float:
    q: queue.Queue[bytes | None] = queue.Queue(maxsize=1 << 14)

    def consumer() -> None:
        get = q.get
        while get() is not None:
            pass

    t = threading.Thread(target=consumer)
    t0 = time.perf_counter()
    t.start()
    put = q.put
    for _ in range(n):
        put(b"12345678")
    put(None)
    t.join()
    return n / (time.perf_counter() - t0)


def _mp_consumer(q: Any) -> None:
    while q.get() is not None:
        pass


def _mp_queue(n: int) -> float:
    ctx = mp.get_context("fork")
    q = ctx.Queue(maxsize=1 << 14)
    p = ctx.Process(target=_mp_consumer, args=(q,))
    t0 = time.perf_counter()
    p.start()
    for _ in range(n):
        q.put(b"12345678")
    q.put(None)
    p.join()
    return n / (time.perf_counter() - t0)


def _ff_consumer(q: Any) -> None:
    while True:
        for m in q.get_many(max_messages_to_get=1024, timeout=10):
            if m is None:
                return


def _faster_fifo(n: int) -> float | None:
    try:
        from faster_fifo import Queue as FQueue
    except ImportError:
        return None
    q = FQueue(max_size_bytes=8 << 20)
    p = mp.get_context("fork").Process(target=_ff_consumer, args=(q,))
    t0 = time.perf_counter()
    p.start()
    chunk = [b"12345678"] * 256
    for _ in range(n // 256):
        q.put_many(chunk, timeout=10)
    q.put(None)
    p.join()
    return n // 256 * 256 / (time.perf_counter() - t0)


def _latency(rate: float, n: int, wait: str) -> np.ndarray:
    ring = Ring(1 << 14, 64, wait=wait)
    c = ring.consumer()
    out = np.zeros(n, dtype=np.int64)
    t = threading.Thread(target=consume_latency, args=(c, out))
    t.start()
    produce_paced(ring, n, rate)
    t.join()
    return out


def _rss_growth(n: int) -> float:
    """Bytes the process grew by while ``n`` events went through a 4096 x 64 B ring (after a
    warm-up that touched every slot): the ring must stay slots x slot size + O(1)."""
    ring = Ring(1 << 12, 64)
    c = ring.consumer()
    cycle(ring, c, 1_000_000, 64)

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    before = rss()
    cycle(ring, c, n, 64)
    return float(rss() - before)


def _row(name: str, values: list[float], unit: str = "events/s", **extra: Any) -> dict:
    return {"target": "ring", "name": name, "unit": unit, **summarize(values), **extra}


def _ratios(row: dict, peers: dict[str, float | None]) -> dict:
    row["peers"] = {k: v for k, v in peers.items() if v}
    row["ratios"] = {k: row["median"] / v for k, v in peers.items() if v}
    return row


def run(runs: int = 3, smoke: bool = False, peers: dict | None = None) -> list[dict]:
    """Every ring figure, each the median of ``runs`` runs, with peers from the same run."""
    peers = peers or {}
    d = peers.get("disruptor", {}) if isinstance(peers.get("disruptor"), dict) else {}
    n = 200_000 if smoke else 20_000_000
    py_n = 20_000 if smoke else 1_000_000

    def rep(fn: Any, *args: Any) -> list[float]:
        return [fn(*args) for _ in range(runs)]

    qq = rep(_queue_queue, py_n // 4)
    qq_med = float(np.median(qq))
    mpq = float(np.median(rep(_mp_queue, py_n // 10)))
    ff_runs = [v for v in rep(_faster_fifo, py_n) if v]
    ff = float(np.median(ff_runs)) if ff_runs else None
    rows = [
        _row("peer_queue.Queue_1p1c", qq),
        _row("peer_multiprocessing.Queue_1p1c", [mpq]),
    ]
    if ff:
        rows.append(_row("peer_faster_fifo_1p1c_batched", ff_runs))
    rows += [
        _ratios(_row("one_to_one_threads_claim1_busy_spin", rep(one_to_one_threads, n, 1)),
                {"disruptor_1p1c_busyspin": d.get("disruptor_1p1c_busyspin_ops_per_s")}),
        _ratios(_row("one_to_one_threads_claim64_busy_spin", rep(one_to_one_threads, n, 64)),
                {"disruptor_1p1c_batch64": d.get("disruptor_1p1c_busyspin_batch64_ops_per_s")}),
        # like-for-like with the Disruptor's test: 8 bytes written per event, summed
        _ratios(_row("one_to_one_threads_claim1_busy_spin_8b",
                     rep(one_to_one_threads, n, 1, "busy_spin", "single", True)),
                {"disruptor_1p1c_busyspin": d.get("disruptor_1p1c_busyspin_ops_per_s")}),
        _ratios(_row("one_to_one_threads_claim64_busy_spin_8b",
                     rep(one_to_one_threads, n, 64, "busy_spin", "single", True)),
                {"disruptor_1p1c_batch64": d.get("disruptor_1p1c_busyspin_batch64_ops_per_s")}),
        _ratios(_row("one_to_one_threads_claim1_yielding",
                     rep(one_to_one_threads, n, 1, "yielding")),
                {"disruptor_1p1c_yielding": d.get("disruptor_1p1c_yielding_ops_per_s")}),
        _ratios(_row("one_to_one_threads_claim1_blocking",
                     rep(one_to_one_threads, n // 4, 1, "blocking")),
                {"disruptor_1p1c_blocking": d.get("disruptor_1p1c_blocking_ops_per_s")}),
        _row("one_to_one_threads_claim1_sleeping", rep(one_to_one_threads, n // 4, 1, "sleeping")),
        _ratios(_row("one_to_one_threads_claim1_multi_producer_sequencer",
                     rep(one_to_one_threads, n, 1, "busy_spin", "multi")),
                {"disruptor_multi_producer": d.get(
                    "disruptor_1p1c_multi_producer_busyspin_ops_per_s")}),
        _row("two_to_one_threads_claim1", rep(_threads_2p1c, n, 1)),
        _row("two_to_one_threads_claim64", rep(_threads_2p1c, n, 64)),
        _ratios(_row("one_to_one_processes_claim64", rep(_processes_1p1c, n, 64)),
                {"multiprocessing.Queue": mpq, "faster_fifo": ff}),
        _row("one_to_one_processes_claim1", rep(_processes_1p1c, n // 4, 1)),
        _ratios(_row("python_publish_and_iterate_per_event", rep(_python_single, py_n)),
                {"queue.Queue": qq_med}),
        _ratios(_row("python_publish_many_and_poll_batches", rep(_python_batched, py_n * 4)),
                {"queue.Queue": qq_med, "faster_fifo": ff}),
    ]
    rows.append(_row("ring_rss_growth_over_100m_events",
                     rep(_rss_growth, 1_000_000 if smoke else 100_000_000), unit="bytes"))
    lat_n = 10_000 if smoke else 200_000
    for wait in ("busy_spin", "blocking"):
        samples = [percentiles(_latency(100_000, lat_n, wait)) for _ in range(runs)]
        for p in ("p50", "p99", "p99.9"):
            row = _row(f"latency_100k_per_s_{wait}_{p}", [s[p] for s in samples], unit="ns")
            dl = d.get("disruptor_latency_busyspin_100k_per_s_ns")
            if isinstance(dl, dict) and p in dl:
                row["peers"] = {"disruptor_busyspin": dl[p]}
                row["ratios"] = {"disruptor_busyspin": row["median"] / dl[p]}
            rows.append(row)
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(runs=1, smoke="--smoke" in sys.argv), indent=1))

GOALS = [
    {"goal": "C-level 1P1C, claims of 1, >= 1.0x the Java Disruptor (busy-spin)",
     "row": "one_to_one_threads_claim1_busy_spin", "ratio": "disruptor_1p1c_busyspin",
     "min": 1.0,
     "why": "this row writes 36 bytes of header and payload per event and the consumer "
            "checks per-producer order; the Disruptor's test writes one long (see the _8b "
            "row). Two busy threads on a 2-vCPU VM also share the cores with the harness."},
    {"goal": "C-level 1P1C, claims of 64, >= 1.0x the Java Disruptor",
     "row": "one_to_one_threads_claim64_busy_spin", "ratio": "disruptor_1p1c_batch64",
     "min": 1.0, "why": "as above: more bytes written and checked per event than the "
                        "Disruptor's 8 (see the _8b row)"},
    {"goal": "C-level 1P1C like-for-like (8 bytes per event), claims of 1, >= 1.0x Disruptor",
     "row": "one_to_one_threads_claim1_busy_spin_8b", "ratio": "disruptor_1p1c_busyspin",
     "min": 1.0, "why": "cache-line transfers of the cursor between the two vCPUs"},
    {"goal": "C-level 1P1C like-for-like (8 bytes per event), claims of 64, >= 1.0x Disruptor",
     "row": "one_to_one_threads_claim64_busy_spin_8b", "ratio": "disruptor_1p1c_batch64",
     "min": 1.0, "why": "cache-line transfers of the cursor between the two vCPUs"},
    {"goal": "Python-level publish + consume >= 5M events/s (per-event calls)",
     "row": "python_publish_and_iterate_per_event", "min": 5e6,
     "why": "one Python call to publish and one Event object per consumed event cost "
            "~0.5-1 us together, and both threads share the GIL; publish_many + poll (the "
            "batched row) is the Python path that reaches the goal"},
    {"goal": "Python-level >= 50x queue.Queue (batched publish_many + poll)",
     "row": "python_publish_many_and_poll_batches", "ratio": "queue.Queue", "min": 50.0,
     "why": "see the batched row"},
    {"goal": "ring memory: no growth over 100M events (RSS growth <= 64 KiB)",
     "row": "ring_rss_growth_over_100m_events", "max": 65536.0,
     "why": "the ring allocates nothing per event; growth here would be a leak"},
    {"goal": "cross-process batched (claims of 64) >= 50M events/s",
     "row": "one_to_one_processes_claim64", "min": 5e7,
     "why": "cache-line transfers between the two processes' cores dominate on this VM"},
]
