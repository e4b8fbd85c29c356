"""pytest-benchmark micro-benchmarks of the hot Python-level API, one group per operation.

Run with ``pytest bench/ --benchmark-only --benchmark-json=micro.json`` (never part of
``make test``: testpaths is tests/). Groups: publish, consume, append, breaker here; match in
test_micro_match.py (collected once ``ringlog.engine`` has the engine). The C-level loops are
measured end to end by bench_ring.py.

    publish:  Python ──publish / publish_many──► ring (a consumer keeps it from filling)
    consume:  ring ──poll──► Batch (numpy view / Event objects) ──release
    append:   Python ──append / append_batch──► journal segment (durability none)
"""

import pytest

from ringlog import Breaker, BreakerConfig, Journal, Limit, Ring

PAYLOAD = b"12345678"


@pytest.fixture
def ring():
    r = Ring(1 << 16, 64)
    c = r.consumer()
    yield r, c
    r.close()


@pytest.mark.benchmark(group="publish")
def test_publish_one(benchmark, ring):
    r, c = ring

    def publish():
        r.publish(PAYLOAD)
        if r.cursor - c.sequence > 60000:
            c.poll()
            c.release()

    benchmark(publish)


@pytest.mark.benchmark(group="publish")
def test_publish_many_64(benchmark, ring):
    r, c = ring
    items = [PAYLOAD] * 64

    def publish():
        r.publish_many(items)
        c.poll()
        c.release()

    benchmark(publish)


@pytest.mark.benchmark(group="consume")
def test_consume_batch_of_64_as_numpy(benchmark, ring):
    r, c = ring
    items = [PAYLOAD] * 64

    def consume():
        r.publish_many(items)
        b = c.poll()
        _ = b.array["header"]["sequence"].sum()
        c.release()

    benchmark(consume)


@pytest.mark.benchmark(group="consume")
def test_consume_batch_of_64_as_events(benchmark, ring):
    r, c = ring
    items = [PAYLOAD] * 64

    def consume():
        r.publish_many(items)
        for ev in c.poll():
            _ = ev.payload
        c.release()

    benchmark(consume)


@pytest.mark.benchmark(group="append")
def test_append_one(benchmark, tmp_path):
    with Journal(tmp_path, durability="none") as j:
        benchmark(j.append, PAYLOAD)


@pytest.mark.benchmark(group="append")
def test_append_batch_of_64(benchmark, tmp_path, ring):
    r, c = ring
    r.publish_many([PAYLOAD] * 64)
    batch = c.poll()
    with Journal(tmp_path, durability="none") as j:
        benchmark(j.append_batch, batch)


@pytest.mark.benchmark(group="breaker")
def test_breaker_check(benchmark):
    b = Breaker(BreakerConfig(limits=[Limit(max_count=10**7, window_ns=10**9)]))
    benchmark(b.check, 1, 0, 0)
