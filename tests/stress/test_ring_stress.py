"""Multi-producer stress: threads and processes; every event exactly once, each producer's
events in order (checked by the C consumer loop in ringlog._ringbench)."""

import multiprocessing as mp
import os
import threading

import pytest

from ringlog._ring import Ring
from ringlog._ringbench import consume, cycle, produce

pytestmark = pytest.mark.stress  # `make stress` runs these alone; they stay in `make test`

N = 200_000


def _expected(producers, n):
    return producers * (n * (n - 1) // 2)


@pytest.mark.parametrize("batch", [1, 16])
def test_two_producer_threads_deliver_every_event_once_in_order(batch):
    r = Ring(1024, 64, producer="multi", wait="yielding")
    c = r.consumer()
    threads = [threading.Thread(target=produce, args=(r, N, batch, p)) for p in range(2)]
    for t in threads:
        t.start()
    total = consume(c, 2 * N, nproducers=2, timeout=60)
    for t in threads:
        t.join(60)
    assert total == _expected(2, N)
    assert r.cursor == 2 * N - 1


def _producer_process(path, n, batch, pid):
    produce(Ring.attach(path), n, batch, pid)


@pytest.mark.parametrize(("producers", "batch"), [(2, 1), (3, 32)])
def test_producer_processes_deliver_every_event_once_in_order(tmp_path, producers, batch):
    path = str(tmp_path / "ring")
    r = Ring.create(path, 1024, 64, producer="multi", wait="blocking")
    c = r.consumer()
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_producer_process, args=(path, N, batch, p))
             for p in range(producers)]
    for p in procs:
        p.start()
    total = consume(c, producers * N, nproducers=producers, timeout=60)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert total == _expected(producers, N)
    assert r.cursor == producers * N - 1 and c.sequence == producers * N - 1


def _consumer_process(path, index, n, q):
    r = Ring.attach(path)
    q.put(consume(r.attach_consumer(index), n, timeout=60))


def test_consumer_in_another_process_gates_the_producer(tmp_path):
    path = str(tmp_path / "ring")
    r = Ring.create(path, 64, 64, producer="single", wait="blocking")
    c = r.consumer()
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_consumer_process, args=(path, c.index, N, q))
    p.start()
    produce(r, N, 8, 0)  # 64 slots: the producer must wait for the other process each lap
    assert q.get(timeout=60) == _expected(1, N)
    p.join(30)
    assert p.exitcode == 0


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_ring_memory_does_not_grow_with_events():
    r = Ring(1 << 12, 64)
    c = r.consumer()
    t = threading.Thread(target=consume, args=(c, 1_000_000))
    t.start()
    produce(r, 1_000_000, 64)  # warm: every slot and page touched
    t.join(60)
    before = _rss_bytes()
    t = threading.Thread(target=consume, args=(c, 10_000_000))
    t.start()
    produce(r, 10_000_000, 64)
    t.join(60)
    assert _rss_bytes() - before < 1 << 20  # 10M more events: no growth beyond noise


def test_ring_memory_stays_flat_over_100m_events():
    """100M events through every sequencer and barrier step (one C thread alternating claim,
    publish, wait_for and set_sequence): RSS and the mapping stay slots x slot size + O(1)."""
    r = Ring(1 << 12, 64)
    c = r.consumer()
    cycle(r, c, 1_000_000, 64)  # warm: every slot and page touched
    before, nbytes = _rss_bytes(), r.nbytes
    n = 100_000_000
    assert cycle(r, c, n, 64) == n * (n - 1) // 2
    assert c.sequence == 1_000_000 + n - 1
    assert r.nbytes == nbytes == 4096 + (1 << 12) * 64  # one header page + the slots
    assert _rss_bytes() - before < 1 << 20


def _pipeline_stage(consumer, upstream, n, violations):
    """Consumes n events; after each batch checks the batch never passed any upstream."""
    got = 0
    while got < n:
        b = consumer.poll(timeout=10)
        if b and any(b.hi > u.sequence for u in upstream):
            violations.append((b.lo, b.hi, [u.sequence for u in upstream]))
        got += len(b)
    consumer.release()


@pytest.mark.parametrize("shape", ["pipeline", "diamond"])
def test_downstream_consumers_never_pass_upstream_across_threads(shape):
    r = Ring(64, 64, producer="single", wait="blocking")
    a = r.consumer(max_batch=7)
    if shape == "pipeline":  # a -> b -> d
        b = r.consumer(after=[a], max_batch=5)
        d = r.consumer(after=[b], max_batch=3)
        stages = [(a, []), (b, [a]), (d, [b])]
    else:  # a and b in parallel, d after both
        b = r.consumer(max_batch=5)
        d = r.consumer(after=[a, b], max_batch=3)
        stages = [(a, []), (b, []), (d, [a, b])]
    n, violations = 20_000, []
    threads = [threading.Thread(target=_pipeline_stage, args=(c, up, n, violations))
               for c, up in stages]
    for t in threads:
        t.start()
    produce(r, n, 1, 0)
    for t in threads:
        t.join(60)
    assert violations == []
    assert [c.sequence for c, _ in stages] == [n - 1] * 3
