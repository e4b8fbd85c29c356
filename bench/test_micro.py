"""pytest-benchmark micro-benchmarks: `pytest bench/ --benchmark-only` (not in `make test`).

Each measures one Python-level call of the hot API; the C-level loops are in bench_ring.py.
"""

import pytest

from ringlog import Breaker, BreakerConfig, Journal, Limit, Ring


@pytest.fixture
def ring():
    r = Ring(1 << 16, 64)
    c = r.consumer()
    yield r, c
    r.close()


@pytest.mark.benchmark(group="ring")
def test_publish_one(benchmark, ring):
    r, c = ring

    def publish():
        r.publish(b"12345678")
        if r.cursor - c.sequence > 60000:
            c.poll()
            c.release()

    benchmark(publish)


@pytest.mark.benchmark(group="ring")
def test_publish_many_64(benchmark, ring):
    r, c = ring
    items = [b"12345678"] * 64

    def publish():
        r.publish_many(items)
        c.poll()
        c.release()

    benchmark(publish)


@pytest.mark.benchmark(group="ring")
def test_poll_batch_of_64_as_numpy(benchmark, ring):
    r, c = ring
    items = [b"12345678"] * 64

    def consume():
        r.publish_many(items)
        b = c.poll()
        _ = b.array["header"]["sequence"].sum()
        c.release()

    benchmark(consume)


@pytest.mark.benchmark(group="journal")
def test_journal_append_one(benchmark, tmp_path):
    with Journal(tmp_path, durability="none") as j:
        benchmark(j.append, b"12345678")


@pytest.mark.benchmark(group="breaker")
def test_breaker_check(benchmark):
    b = Breaker(BreakerConfig(limits=[Limit(max_count=10**7, window_ns=10**9)]))
    benchmark(b.check, 1, 0, 0)
