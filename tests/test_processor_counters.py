"""The processor's counters file: every stage stores its figures at its batch ends."""

import os
import time

import msgspec
import pytest
from test_processor import CFG, MS, Summer, ev, run

from ringlog._counters import AGE_BUCKETS, GAUGE, SEQUENCE, STATE, TOTAL, CountersReader
from ringlog.breaker import Breaker, BreakerConfig, Limit
from ringlog.processor import Processor, ProcessorConfig
from ringlog.stat import histograms, quantile


def _values(path):
    return CountersReader(path / "counters").values()


@pytest.mark.parametrize("topology", ["inline", "staged"])
@pytest.mark.parametrize("listener", [True, False], ids=["listener", "no-listener"])
def test_processor_counters_hold_every_stages_sequence_and_totals_after_a_run(tmp_path,
                                                                              listener,
                                                                              topology):
    # inline: the loop thread journals inputs (and, with no listener, outputs) and stores
    # those counters; staged: the journaller and output threads store their own
    cfg = msgspec.structs.replace(CFG, topology=topology)
    if listener:
        run(tmp_path, range(1000), config=cfg)
    else:
        p = Processor(Summer(), tmp_path, cfg)
        p.start()
        for v in range(1000):
            p.publish(ev(v), 5, timestamp_ns=v * MS)
        p.drain(timeout=30)
        p.stop()
    v = _values(tmp_path)
    assert v["journal.sequence"] == 999 and v["journal.backlog"] == 0
    assert v["journal.batches"] >= 1 and v["logic.batches"] >= 1
    assert v["logic.sequence"] == 999
    assert (v["logic.processed"], v["logic.outputs"], v["logic.published"]) == (1000,) * 3
    assert v["output.sequence"] == 999
    assert (v["logic.dead_letters"], v["logic.duplicates"]) == (0, 0)
    assert v["logic.breaker_trips"] == 0 and v["logic.breaker_held"] == 0
    r = CountersReader(tmp_path / "counters")
    assert r.writer_status() == "stopped" and r.writer_pid == os.getpid()
    types = {c.label: c.type_id for c in r.read()}
    assert types["logic.sequence"] == SEQUENCE and types["logic.processed"] == TOTAL
    assert types["logic.breaker_state"] == STATE and types["journal.backlog"] == GAUGE


@pytest.mark.parametrize("output_io", ["direct", "buffered"])
def test_the_output_journal_counters_catch_up_while_the_loop_is_idle(tmp_path, output_io):
    # a direct-I/O writer writes the last batch's outputs up to a linger after the batch end
    # stored the counters: the idle loop stores them again, and stop() stores the last
    cfg = msgspec.structs.replace(CFG, topology="inline", output_io=output_io)
    p = Processor(Summer(), tmp_path, cfg)
    p.start()
    try:
        for v in range(100):
            p.publish(ev(v), 5, timestamp_ns=v * MS)
        p.drain(timeout=30)
        deadline = time.monotonic() + 20
        while _values(tmp_path)["output.sequence"] != 99 and time.monotonic() < deadline:
            time.sleep(0.01)
        v = _values(tmp_path)
        assert (v["output.sequence"], v["output.backlog"]) == (99, 0)
    finally:
        p.stop()


def test_processor_counters_show_a_breaker_trip_and_held_outputs(tmp_path):
    br = Breaker(BreakerConfig(limits=[Limit(max_count=10, window_ns=10**12)]))
    run(tmp_path, range(50), breaker=br)
    v = _values(tmp_path)
    assert v["logic.breaker_state"] == 1  # open
    assert v["logic.breaker_trips"] == 1
    assert v["logic.breaker_held"] == 1  # the output that tripped it
    assert v["logic.processed"] == 11 and v["logic.published"] == 11  # 10 + the trip notice
    assert v["journal.sequence"] == 49  # input is still journaled while halted


def test_processor_counters_count_dead_letters(tmp_path):
    cfg = ProcessorConfig(ring_capacity=256, output_capacity=256, segment_size=1 << 16,
                          durability="none", exception_policy="dead_letter")
    run(tmp_path, range(20), handler=Summer(fail_on=7), config=cfg)
    v = _values(tmp_path)
    assert v["logic.dead_letters"] == 1 and v["logic.processed"] == 20


def test_processor_counters_durable_mark_follows_group_commit(tmp_path):
    cfg = ProcessorConfig(ring_capacity=256, output_capacity=256, segment_size=1 << 16,
                          durability="sync")
    run(tmp_path, range(100), config=cfg)
    v = _values(tmp_path)
    # under `sync` the loop never handles an event before it is durable
    assert v["journal.durable"] == v["journal.sequence"] == 99


def test_processor_restart_replaces_the_counters_file_and_continues_the_sequences(tmp_path):
    run(tmp_path, range(100))
    r = CountersReader(tmp_path / "counters")
    run(tmp_path, range(100, 150))
    assert r.reopen()
    v = r.values()
    assert v["logic.sequence"] == 149 and v["journal.sequence"] == 149
    assert v["logic.processed"] == 150  # the loop's totals include the replayed inputs


def test_processor_without_counters_makes_no_counters_file(tmp_path):
    cfg = ProcessorConfig(ring_capacity=256, output_capacity=256, segment_size=1 << 16,
                          durability="none", counters=False)
    _, outs, p = run(tmp_path, range(10), config=cfg)
    assert len(outs) == 10 and p.counters is None
    assert not (tmp_path / "counters").exists()


def test_processor_counters_age_histogram_counts_each_batch_by_event_age(tmp_path):
    cfg = msgspec.structs.replace(CFG, topology="staged")
    p = Processor(Summer(), tmp_path, cfg)
    p.start()
    for v in range(200):  # stamped 5 ms in the past: every batch's last event is >= 5 ms old
        p.publish(ev(v), 5, timestamp_ns=time.time_ns() - 5_000_000)
    p.drain(timeout=30)
    p.stop()
    r = CountersReader(tmp_path / "counters")
    values = r.values()
    types = {c.label: c.type_id for c in r.read()}
    (buckets,) = histograms(values, types).values()
    assert len(buckets) == len(AGE_BUCKETS) + 1 and buckets[-1][0] == float("inf")
    assert sum(n for _, n in buckets) == values["logic.batches"]
    assert all(n == 0 for bound, n in buckets if bound <= 1 << 22)  # none under 4.2 ms
    assert quantile(buckets, 0.5) >= 1 << 23


def test_stat_quantile_picks_the_bucket_holding_the_rank():
    b = [(1024.0, 5), (2048.0, 0), (4096.0, 4), (float("inf"), 1)]
    assert quantile(b, 0.5) == 1024.0
    assert quantile(b, 0.51) == 4096.0
    assert quantile(b, 0.99) == float("inf")
    assert quantile([(1024.0, 0)], 0.5) is None


def test_output_backlog_counts_outputs_still_in_the_write_behind_buffers(tmp_path):
    # every output journal flush handed to a writer thread that pauses before each write:
    # the loop's batch ends see outputs appended but not in the file yet
    from ringlog import _journal

    before = _journal.write_behind_min()
    _journal.write_behind_min(0)
    _journal._plant("slow_writer", True)
    seen = []
    try:
        cfg = msgspec.structs.replace(CFG, topology="inline", output_journaller="loop",
                                      max_batch=16)
        p = Processor(Summer(), tmp_path, cfg)
        p.start()
        for v in range(2000):
            p.publish(ev(v), 5, timestamp_ns=v * MS)
            if v % 50 == 0:
                c = _values(tmp_path)
                seen.append((c["output.sequence"], c["output.backlog"], c["logic.published"]))
        p.drain(timeout=30)
        p.stop()
    finally:
        _journal._plant("slow_writer", False)
        _journal.write_behind_min(before)
    # what is in the file plus what is not yet never passes what was published (a read
    # while the loop runs may mix two batch ends' stores: the bound is the run's total)
    assert all(backlog >= 0 and seq + 1 + backlog <= 2000 for seq, backlog, _ in seen)
    assert max(backlog for _, backlog, _ in seen) > 0, seen  # the writer lags 300 us a write
    v = _values(tmp_path)
    assert v["output.sequence"] + 1 + v["output.backlog"] == v["logic.published"] == 2000


HOLD_S = 0.3  # how long this thread keeps the GIL from the loop


@pytest.mark.parametrize("topology", ["inline", "staged"])
def test_logic_gil_wait_counts_the_time_another_thread_held_the_gil(tmp_path, topology):
    # the loop journals a batch without the GIL and takes it back to handle the batch: a
    # thread keeping the GIL meanwhile holds the loop, and logic.gil_wait_ns says how long
    import sys

    p = Processor(Summer(), tmp_path, msgspec.structs.replace(CFG, topology=topology))
    p.start()
    try:
        p.publish(ev(0), 5, timestamp_ns=MS)
        p.drain(timeout=30)
        before = _values(tmp_path)["logic.gil_wait_ns"]
        old = sys.getswitchinterval()
        sys.setswitchinterval(60.0)  # the loop's request for the GIL is not granted early
        try:
            seq = p.publish(ev(1), 5, timestamp_ns=2 * MS)
            end = time.monotonic() + 30.0
            # busy loops that never give the GIL up: until the event is journaled (the loop
            # then wants the GIL to handle it), then HOLD_S more
            while p.input.last_sequence < seq and time.monotonic() < end:
                pass
            journaled = p.input.last_sequence >= seq
            until = time.perf_counter() + HOLD_S
            while time.perf_counter() < until:
                pass
        finally:
            sys.setswitchinterval(old)
        p.drain(timeout=30)
        waited = _values(tmp_path)["logic.gil_wait_ns"] - before
    finally:
        p.stop()
    assert journaled, "the event was not journaled while this thread held the GIL"
    # the loop waited from (about) the journaling to the end of the hold; a third of it
    # leaves room for the loop thread being descheduled in between
    assert waited >= HOLD_S * 1e9 / 3, f"logic.gil_wait_ns grew by {waited} ns"
