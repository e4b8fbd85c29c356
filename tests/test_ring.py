"""Unit tests of the ring: every operation and every error."""

import os
import threading

import msgspec
import numpy as np
import pytest

from ringlog import (
    EventRegistry,
    InsufficientCapacityError,
    RingClosedError,
    RingError,
    SchemaError,
)
from ringlog._ring import Ring


def test_ring_with_capacity_not_a_power_of_two_is_an_error():
    for bad in (0, 1, 3, 100):
        with pytest.raises(RingError, match="power of two"):
            Ring(bad)


def test_ring_with_bad_slot_size_is_an_error_naming_the_header():
    with pytest.raises(RingError, match="48-byte header"):
        Ring(8, 48)
    with pytest.raises(RingError, match="multiple of 8"):
        Ring(8, 100)


def test_ring_with_unknown_producer_or_wait_is_an_error():
    with pytest.raises(RingError, match="producer"):
        Ring(8, producer="many")
    with pytest.raises(RingError, match="wait must be one of"):
        Ring(8, wait="spin")


def test_publish_then_poll_returns_header_fields_and_payload():
    r = Ring(8, 64)
    c = r.consumer()
    seq = r.publish(b"hello", 7, timestamp_ns=11, correlation_id=12, flags=1, producer_id=3,
                    producer_seq=4)
    assert seq == 0
    (e,) = list(c.poll())
    assert (e.sequence, e.type_id, e.timestamp_ns, e.correlation_id, e.flags, e.producer_id,
            e.producer_seq) == (0, 7, 11, 12, 1, 3, 4)
    assert bytes(e.payload) == b"hello"


def test_publish_accepts_any_buffer_and_rejects_other_types():
    r = Ring(8, 64)
    c = r.consumer()
    r.publish(bytearray(b"ab"))
    r.publish(memoryview(b"cd"))
    r.publish(np.array([1], dtype=np.int64))
    assert [bytes(e.payload) for e in c.poll()] == [b"ab", b"cd", np.int64(1).tobytes()]
    with pytest.raises(TypeError, match="bytes-like"):
        r.publish("text")
    assert r.cursor == 2  # the failed publish claimed nothing


def test_oversize_payload_is_a_schema_error_and_claims_nothing():
    r = Ring(8, 64)
    with pytest.raises(SchemaError, match="17 bytes does not fit a 64-byte slot"):
        r.publish(b"x" * 17)
    assert r.cursor == -1
    r.publish(b"x" * 16)
    assert r.cursor == 0


def test_full_ring_try_publish_returns_false_and_overwrites_nothing():
    r = Ring(4, 64)
    c = r.consumer()
    assert all(r.try_publish(bytes([i])) for i in range(4))
    assert not r.try_publish(b"x")
    with pytest.raises(InsufficientCapacityError, match="full"):
        r.publish(b"y", timeout=0.01)
    assert [bytes(e.payload) for e in c.poll()] == [b"\x00", b"\x01", b"\x02", b"\x03"]
    c.release()
    assert r.try_publish(b"z")


def test_ring_wraps_around_many_times_in_order():
    r = Ring(4, 64)
    c = r.consumer()
    got = []
    for i in range(1000):
        r.publish(i.to_bytes(4, "little"))
        got += [int.from_bytes(e.payload, "little") for e in c.poll(timeout=0)]
    assert got == list(range(1000))


def test_batch_never_wraps_the_ring_end_and_numpy_view_matches():
    r = Ring(8, 64)
    c = r.consumer()
    for i in range(6):
        r.publish(bytes([i]))
    c.poll()
    c.release()
    for i in range(6, 12):
        r.publish(bytes([i]))
    b = c.poll()
    assert (b.lo, b.hi) == (6, 7)  # stops at the end of the ring
    arr = b.array
    assert arr["header"]["sequence"].tolist() == [6, 7]
    assert arr["payload"][:, 0].tolist() == [6, 7]
    b2 = c.poll()
    assert (b2.lo, b2.hi) == (8, 11)
    assert [b2.end_of_batch(e.sequence) for e in b2] == [False, False, False, True]
    assert b2[-1].sequence == 11 and b2[0].sequence == 8
    with pytest.raises(IndexError, match="batch index 4 out of range"):
        b2[4]


def test_poll_with_max_batch_limits_the_batch():
    r = Ring(16, 64)
    c = r.consumer()
    r.publish_many([b"a"] * 10)
    assert len(c.poll(max_batch=3)) == 3
    assert len(c.poll()) == 7


def test_multi_producer_consumer_waits_for_at_most_its_max_batch():
    # the availability scan stops at max_batch slots (each flag is read once per batch), so
    # even a longer poll gets no more than the consumer's max_batch, and nothing is skipped
    r = Ring(64, 64, producer="multi")
    c = r.consumer(max_batch=10)
    r.publish_many([b"x%d" % i for i in range(40)])
    sizes, seen = [], []
    while True:
        b = c.poll(max_batch=40, timeout=0)
        if not len(b):
            break
        sizes.append(len(b))
        seen += [bytes(e.payload) for e in b]
    assert sizes == [10, 10, 10, 10]
    assert seen == [b"x%d" % i for i in range(40)]


def test_poll_times_out_with_an_empty_batch():
    r = Ring(8, 64)
    c = r.consumer()
    b = c.poll(timeout=0.01)
    assert len(b) == 0 and not b


def test_publish_many_checks_every_payload_before_claiming():
    r = Ring(8, 64)
    with pytest.raises(SchemaError, match="payload 2 of 17 bytes"):
        r.publish_many([b"a", b"b", b"x" * 17])
    assert r.cursor == -1
    c = r.consumer()
    assert r.publish_many([b"a", b"b"], 5) == 1
    assert [(e.type_id, bytes(e.payload)) for e in c.poll()] == [(5, b"a"), (5, b"b")]


def test_publish_many_larger_than_the_ring_flows_through_a_consumer():
    r = Ring(8, 64)
    c = r.consumer()
    got = []
    t = threading.Thread(target=lambda: got.extend(bytes(e.payload) for e in c))
    t.start()
    items = [i.to_bytes(2, "little") for i in range(100)]
    r.publish_many(items, timeout=10)
    while c.sequence < 99:
        c.ring.cursor  # noqa: B018
        t.join(0.01)
    r.close()
    t.join(10)
    assert got == items


def test_publish_struct_encodes_a_registered_struct():
    class Tick(msgspec.Struct, array_like=True):
        px: int

    reg = EventRegistry()
    reg.register(3, Tick)
    r = Ring(8, 64)
    c = r.consumer()
    r.publish_struct(Tick(5), reg)
    (e,) = list(c.poll())
    assert e.type_id == 3 and e.flags & 1 and reg.decode(3, e.payload) == Tick(5)


def test_downstream_consumer_never_passes_its_upstream():
    r = Ring(16, 64)
    a = r.consumer()
    b = r.consumer(after=[a])
    r.publish_many([b"x"] * 5)
    assert len(b.poll(timeout=0)) == 0
    assert len(a.poll(max_batch=2)) == 2
    assert len(b.poll(timeout=0)) == 0  # a has not released yet
    a.release()
    assert b.poll(timeout=0).hi == 1


def test_diamond_consumer_waits_for_both_upstreams():
    r = Ring(16, 64)
    a, b = r.consumer(), r.consumer()
    d = r.consumer(after=[a, b])
    r.publish_many([b"x"] * 4)
    a.poll()
    a.release()
    b.poll(max_batch=1)
    b.release()
    assert d.poll(timeout=0).hi == 0
    b.poll()
    b.release()
    assert d.poll(timeout=0).hi == 3


def test_producer_is_gated_by_the_slowest_consumer():
    r = Ring(4, 64)
    fast, slow = r.consumer(), r.consumer()
    r.publish_many([b"x"] * 4)
    fast.poll()
    fast.release()
    assert not r.try_publish(b"y")
    slow.poll(max_batch=1)
    slow.release()
    assert r.try_publish(b"y") and not r.try_publish(b"z")


def test_close_wakes_a_blocked_consumer_and_publish_after_close_fails():
    r = Ring(8, 64, wait="blocking")
    c = r.consumer()
    errors = []

    def wait():
        try:
            c.poll(timeout=30)
        except RingClosedError as e:
            errors.append(e)

    t = threading.Thread(target=wait)
    t.start()
    r.close()
    t.join(10)
    assert not t.is_alive() and len(errors) == 1
    with pytest.raises(RingClosedError):
        r.publish(b"x")


def test_close_lets_consumers_drain_what_was_published():
    r = Ring(8, 64)
    c = r.consumer()
    r.publish_many([b"a", b"b"])
    r.close()
    assert [bytes(e.payload) for e in c] == [b"a", b"b"]


@pytest.mark.parametrize("wait", ["busy_spin", "yielding", "sleeping", "blocking"])
@pytest.mark.parametrize("producer", ["single", "multi"])
def test_every_wait_strategy_delivers_across_threads(wait, producer):
    r = Ring(64, 64, producer=producer, wait=wait)
    c = r.consumer()
    n = 5000
    got = []

    def consume():
        while len(got) < n:
            got.extend(int.from_bytes(e.payload, "little") for e in c.poll(timeout=10))

    t = threading.Thread(target=consume)
    t.start()
    for i in range(n):
        r.publish(i.to_bytes(4, "little"), timeout=10)
    t.join(30)
    assert got == list(range(n))


def test_blocking_consumer_uses_no_cpu_while_idle():
    r = Ring(8, 64, wait="blocking")
    c = r.consumer()
    cpu = []

    def idle():
        t0 = __import__("time").thread_time()
        c.poll(timeout=0.3)
        cpu.append(__import__("time").thread_time() - t0)

    t = threading.Thread(target=idle)
    t.start()
    t.join(10)
    assert cpu[0] < 0.05  # a spinning wait would burn ~0.3 s of CPU


def test_consumer_metrics_count_batches_and_depth():
    r = Ring(16, 64)
    c = r.consumer()
    r.publish_many([b"x"] * 5)
    c.poll(max_batch=2)
    m = c.metrics
    assert m["batches"] == 1 and m["events"] == 2 and m["max_batch"] == 2
    assert m["depth"] == 5  # nothing released yet
    c.release()
    assert c.metrics["depth"] == 3


def test_ring_memory_is_slots_times_size_plus_constant():
    r1, r2 = Ring(1024, 128), Ring(2048, 128)
    assert r2.nbytes - r1.nbytes == 1024 * 128


def test_shared_ring_create_attach_and_errors(tmp_path):
    path = tmp_path / "ring"
    r = Ring.create(path, 8, 64, producer="multi")
    c = r.consumer()
    other = Ring.attach(path)
    other.publish(b"from-attach", 2)
    (e,) = list(c.poll(timeout=1))
    assert bytes(e.payload) == b"from-attach" and e.type_id == 2
    with pytest.raises(RingError, match="already exists"):
        Ring.create(path, 8, 64)
    foreign = tmp_path / "foreign"
    foreign.write_bytes(b"\0" * 8192)
    with pytest.raises(RingError, match="not a ringlog ring"):
        Ring.attach(foreign)
    small = tmp_path / "small"
    small.write_bytes(b"x" * 10)
    with pytest.raises(RingError, match="too small"):
        Ring.attach(small)
    trunc = tmp_path / "trunc"
    trunc.write_bytes(path.read_bytes()[:-64])
    with pytest.raises(RingError, match="truncated or foreign"):
        Ring.attach(trunc)
    with pytest.raises(RingError, match="cannot open"):
        Ring.attach(tmp_path / "missing")
    assert other.attach_consumer(c.index).sequence == c.sequence
    with pytest.raises(RingError, match="no active consumer 5"):
        other.attach_consumer(5)
    os.unlink(path)


def test_pin_current_thread_pins_only_the_calling_thread():
    from ringlog.ring import pin_current_thread

    before = os.sched_getaffinity(0)
    seen = {}

    def worker():
        pin_current_thread(0)
        seen["inside"] = os.sched_getaffinity(0)

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert seen["inside"] == {0}
    assert os.sched_getaffinity(0) == before  # the main thread is unaffected
    with pytest.raises(ValueError, match="non-empty subset"):
        pin_current_thread(set())


def test_bad_input_to_publish_is_a_clear_error_and_claims_nothing():
    r = Ring(8, 64)
    c = r.consumer()
    with pytest.raises(TypeError, match="payload 1 must be bytes-like, got int"):
        r.publish_many([b"a", 5])  # bytes(5) would have been five zero bytes
    with pytest.raises(TypeError, match="payload 0 must be bytes-like, got str"):
        r.publish_many(["text"])
    with pytest.raises(OverflowError):
        r.publish(b"x", -1)  # type ids are u32
    with pytest.raises(TypeError):
        r.publish(b"x", timestamp_ns="now")
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        r.publish(b"x", timeout=-1)
    assert r.cursor == -1 and len(c.poll(timeout=0)) == 0
    with pytest.raises(TypeError):
        Ring("8")
    with pytest.raises(RingError, match="over the limit"):
        Ring(1 << 31)


def test_every_publish_on_a_closed_ring_fails_and_changes_nothing():
    r = Ring(8, 64, producer="multi")
    c = r.consumer()
    r.publish(b"kept")
    r.close()
    with pytest.raises(RingClosedError):
        r.publish(b"x")
    with pytest.raises(RingClosedError):
        r.try_publish(b"x")
    with pytest.raises(RingClosedError):
        r.publish_many([b"x", b"y"])
    assert r.cursor == 0 and r.closed
    assert [bytes(e.payload) for e in c] == [b"kept"]


def test_consumer_graph_errors_are_clear():
    r, other = Ring(8, 64), Ring(8, 64)
    with pytest.raises(RingError, match="after= takes consumers of this ring"):
        r.consumer(after=[other.consumer()])
    with pytest.raises(RingError, match="after= takes consumers of this ring"):
        r.consumer(after=["a"])
    for _ in range(16):
        r.consumer()
    with pytest.raises(RingError, match="at most 16 consumers"):
        r.consumer()


def _patched(src, dst, offset, value, fmt="<Q"):
    import struct

    raw = bytearray(src.read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    dst.write_bytes(raw)
    return dst


def test_attach_to_a_mismatched_or_foreign_file_is_a_clear_error(tmp_path):
    path = tmp_path / "ring"
    Ring.create(path, 8, 64)
    # header layout: magic u64 @0, version u32 @8, header_size u32 @12, capacity i64 @16,
    # slot_size u32 @24, multi_producer u32 @28, total_size u64 @32, avail @40, slots @48
    with pytest.raises(RingError, match="format version 9"):
        Ring.attach(_patched(path, tmp_path / "v9", 8, 9, "<I"))
    with pytest.raises(RingError, match="header 12 bytes"):
        Ring.attach(_patched(path, tmp_path / "hs", 12, 12, "<I"))
    with pytest.raises(RingError, match=r"inconsistent ring header \(capacity 6"):
        Ring.attach(_patched(path, tmp_path / "cap", 16, 6))
    with pytest.raises(RingError, match="inconsistent ring header"):
        Ring.attach(_patched(path, tmp_path / "slot", 24, 1 << 20, "<I"))
    with pytest.raises(RingError, match="inconsistent ring header"):
        Ring.attach(_patched(path, tmp_path / "off", 48, 1 << 40))
    with pytest.raises(RingError, match="not a ringlog ring"):
        Ring.attach(_patched(path, tmp_path / "magic", 0, 0x3130_4C4E_524A_4C52))
    with pytest.raises(RingError, match="wait must be one of"):
        Ring.attach(path, wait="spin")
    from ringlog.journal import Journal

    with Journal(tmp_path / "j", segment_size=8192, durability="none") as j:
        j.append(b"x")
    (seg,) = (tmp_path / "j").glob("*.seg")
    with pytest.raises(RingError, match="not a ringlog ring"):
        Ring.attach(seg)  # a journal segment is not a ring
    assert Ring.attach(path).capacity == 8  # the original is untouched


def test_batch_metrics_follow_batch_sizes_and_queue_depth():
    r = Ring(64, 64)
    c = r.consumer(max_batch=4)
    r.publish_many([b"x"] * 10)
    sizes = [len(c.poll(timeout=0)) for _ in range(3)]
    assert sizes == [4, 4, 2]
    m = c.metrics
    assert (m["batches"], m["events"], m["max_batch"]) == (3, 10, 4)
    assert m["mean_batch"] == pytest.approx(10 / 3)
    assert m["depth"] == 2  # the last batch of 2 is still held
    c.release()
    assert c.metrics["depth"] == 0 and c.metrics["sequence"] == 9
