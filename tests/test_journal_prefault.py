"""The background thread's paced pre-fault of the next segment: how long it rests after each
chunk (``prefault_pause``), and that group commits, a roll's syncs and close() go on while it
rests (a pre-fault that held them would stall every durable release behind it)."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from ringlog import _journal
from ringlog import journal as journal_mod
from ringlog.journal import PREFAULT_REST, Journal, list_segments, prefault_pause

DEADLINE_S = 30.0  # a safety net only: each wait below ends on the event it waits for


def test_a_chunk_rests_rest_times_its_work_while_nothing_is_appended():
    assert prefault_pause(0.001, 10, 0, 1 << 20, 0.5) == pytest.approx(PREFAULT_REST * 0.001)


def test_the_last_chunk_does_not_rest():
    assert prefault_pause(0.001, 0, 0, 1 << 20, 0.5) == 0.0


def test_a_slow_fill_keeps_the_whole_rest():
    # 1 MiB filled in 1 s, 63 MiB to go: the roll is ~63 s away
    assert prefault_pause(0.001, 100, 1 << 20, 63 << 20, 1.0) == \
        pytest.approx(PREFAULT_REST * 0.001)


def test_a_fast_fill_shortens_the_rest_to_end_half_way_to_the_roll():
    # the roll in 1 s at this rate; 100 chunks of 2 ms left: rest (0.5 - 0.2) / 100 each
    pause = prefault_pause(0.002, 100, 1 << 20, 1 << 20, 1.0)
    assert pause == pytest.approx(0.003)
    assert pause < PREFAULT_REST * 0.002


def test_a_fill_faster_than_the_pre_fault_does_not_rest():
    assert prefault_pause(0.001, 1000, 1 << 20, 1 << 20, 0.1) == 0.0


@pytest.fixture
def resting_prefault(monkeypatch):
    """Every pre-fault rests an hour after its first chunk; the event is set when it does."""
    resting = threading.Event()

    def pause(*args: object) -> float:
        resting.set()
        return 3600.0

    monkeypatch.setattr(journal_mod, "prefault_pause", pause)
    return resting


def _wait(cond, what: str) -> None:
    end = time.monotonic() + DEADLINE_S
    while not cond():
        assert time.monotonic() < end, f"{what}: not within {DEADLINE_S} s"
        time.sleep(0.001)


def test_group_commits_go_on_while_the_pre_fault_rests(tmp_path, resting_prefault):
    with Journal(tmp_path / "j", durability="group", segment_size=1 << 20) as j:
        assert resting_prefault.wait(DEADLINE_S), "the next segment's pre-fault never ran"
        for i in range(100):
            seq = j.append(b"x" * 64)
            _wait(lambda s=seq: j.durable_sequence >= s, f"append {i} durable")


def test_group_commits_during_the_rest_do_not_wait_for_the_gil(tmp_path, resting_prefault):
    # a gateway's loop thread holds the GIL for up to the switch interval at a time: here
    # this thread holds it throughout (an interval longer than the test) while each append
    # waits for its durable mark; a commit cycle that needs the GIL never comes back
    with Journal(tmp_path / "j", durability="group", segment_size=1 << 20) as j:
        assert resting_prefault.wait(DEADLINE_S), "the next segment's pre-fault never ran"
        # one commit while this thread lets the GIL go: the background thread is in the
        # rest's commit cycle from then on (the rest lasts an hour), not on its way to it
        first = j.append(b"g" * 64)
        _wait(lambda: j.durable_sequence >= first, "the first append durable")
        old = sys.getswitchinterval()
        sys.setswitchinterval(10 * DEADLINE_S)
        try:
            late = []
            for i in range(20):
                seq = j.append(b"g" * 64)
                end = time.monotonic() + DEADLINE_S
                while j.durable_sequence < seq and time.monotonic() < end:
                    pass  # a busy loop: never gives the GIL up
                if j.durable_sequence < seq:
                    late.append(i)
                    break
        finally:
            sys.setswitchinterval(old)
        assert not late, f"append {late} not durable while this thread held the GIL"


def test_a_sync_slower_than_the_group_interval_does_not_end_the_commits_of_a_rest(
        tmp_path, resting_prefault):
    # a journal syncing in large groups (the output journal's policy) whose sync takes
    # longer than its group interval: the next commit is due before the sync returns, and
    # the rest must go on committing (not sleep with no limit until the group fills)
    def slow(op: str, path: str, target: object) -> None:
        if op == "fdatasync":
            time.sleep(0.02)

    with Journal(tmp_path / "j", durability="group", segment_size=1 << 20,
                 group_events=1 << 20, group_ms=5) as j:
        assert resting_prefault.wait(DEADLINE_S), "the next segment's pre-fault never ran"
        _journal.set_sync_hook(slow)
        try:
            for i in range(5):
                seq = j.append(b"s" * 64)
                _wait(lambda s=seq: j.durable_sequence >= s, f"append {i} durable")
        finally:
            _journal.set_sync_hook(None)


def test_a_roll_during_the_rest_is_made_durable(tmp_path, resting_prefault):
    # the next segment is never offered (its pre-fault rests): the appender rolls by itself
    # (synchronously), and group commits must go on in each new segment
    with Journal(tmp_path / "j", durability="group", segment_size=64 << 10) as j:
        assert resting_prefault.wait(DEADLINE_S)
        seqs = [j.append(b"y" * 1000) for _ in range(200)]  # ~200 KiB: several rolls
        assert len(list((tmp_path / "j").glob("*.seg"))) > 1 or j.fallback_rolls > 0
        _wait(lambda: j.durable_sequence >= seqs[-1], "the appends after the rolls durable")
    with Journal(tmp_path / "j", durability="group", segment_size=64 << 10,
                 prefault=False) as j2:
        assert j2.last_sequence == seqs[-1]


def test_close_ends_a_resting_pre_fault(tmp_path, resting_prefault):
    j = Journal(tmp_path / "j", durability="group", segment_size=1 << 20)
    assert resting_prefault.wait(DEADLINE_S)
    j.append(b"z")
    j.close()
    j.thread.join(DEADLINE_S)
    assert not j.thread.is_alive(), "the background thread still rests after close()"


@pytest.mark.parametrize("durability", ["none", "sync"])
def test_other_policies_finish_a_roll_during_the_rest(tmp_path, resting_prefault, durability):
    with Journal(tmp_path / "j", durability=durability, segment_size=64 << 10) as j:
        assert resting_prefault.wait(DEADLINE_S)
        last = -1
        for _ in range(200):  # sync: each append waits for its roll's syncs, so a roll
            last = j.append(b"w" * 1000)  # left to the resting thread would hang here
        assert j.last_sequence == last


def test_a_journal_syncing_in_large_groups_keeps_its_pace_while_the_pre_fault_rests(
        tmp_path, monkeypatch):
    # the output journal's policy: a sync per group_events or group_ms, not per chunk
    resting = threading.Event()

    def pause(*args: object) -> float:  # 10 ms after each of the 256 chunks: ~2.6 s
        resting.set()
        return 0.01

    monkeypatch.setattr(journal_mod, "prefault_pause", pause)
    # (the background thread prepares once its first group wait ends: ~2 s here)
    with Journal(tmp_path / "j", durability="group", segment_size=64 << 20,
                 first_segment_size=64 << 20, group_events=8, group_ms=2_000.0) as j:
        assert resting.wait(DEADLINE_S)
        first = j.append(b"a")
        time.sleep(0.3)  # a sync per chunk or per rest would have come by now; the group's
        # time (2 s from the pre-fault's start) not yet
        assert j.durable_sequence < first, "synced before its group was due"
        last = first
        for _ in range(7):  # the group is full: synced now, rest or not
            last = j.append(b"b")
        _wait(lambda: j.durable_sequence >= last, "a full group durable")


def test_a_segment_the_appender_rolled_past_is_offered_at_once(tmp_path, resting_prefault):
    # the pre-fault rests (an hour) while the appender rolls by itself: the segment is late
    # then, and is offered as it is, so the roll after is the appender's own (fast) one
    with Journal(tmp_path / "j", durability="group", segment_size=64 << 10) as j:
        assert resting_prefault.wait(DEADLINE_S), "the next segment's pre-fault never ran"
        slow = j.fallback_rolls
        while j.fallback_rolls == slow:
            j.append(b"y" * 1000)
        # (the roll by itself left its syncs to the background thread: done first, or the
        # next roll would make them, with the GIL)
        _wait(lambda: j._appender.offered and not j._appender.roll_pending,
              "the late segment offered")
        fast = j.fast_rolls
        for _ in range(200):  # ~200 KiB: the next roll comes within
            j.append(b"y" * 1000)
            if j.fast_rolls > fast:
                break
        assert j.fast_rolls > fast


def test_a_journal_that_fills_fast_has_a_spare_segment_prepared(tmp_path, monkeypatch):
    # any rate counts as fast here: once a roll has told the rate, the background thread
    # prepares the segment after the offered one too, and the roll after next takes it
    monkeypatch.setattr(journal_mod, "SPARE_UNDER_S", 1e6)
    with Journal(tmp_path / "j", durability="group", segment_size=256 << 10,
                 first_segment_size=64 << 10) as j:

        def roll() -> None:
            _wait(lambda: j._appender.offered and not j._appender.roll_pending,
                  "a segment offered")
            rolls = j.fast_rolls
            while j.fast_rolls == rolls:
                j.append(b"z" * 1000)

        roll()
        _wait(lambda: j._spare is not None, "a spare beside the offered segment")
        spare = os.stat(j._spare.path).st_ino
        roll()  # into the offered one; the spare is offered next
        roll()
        assert os.stat(list_segments(tmp_path / "j")[-1][1]).st_ino == spare
        assert j.fallback_rolls == 0


def test_close_right_before_the_rest_begins_is_not_missed(tmp_path, monkeypatch):
    # close() sets the flag and wakes the thread after the pre-fault checked the flag and
    # before it went to sleep for its rest: a plain wake-up is gone by then (the thread
    # slept the whole hour); close() must end the rest anyway
    checked, closed = threading.Event(), threading.Event()

    def pause(*args: object) -> float:  # between the flag's check and the sleep
        checked.set()
        assert closed.wait(DEADLINE_S)
        return 3600.0

    monkeypatch.setattr(journal_mod, "prefault_pause", pause)
    j = Journal(tmp_path / "j", durability="group", segment_size=1 << 20)
    assert checked.wait(DEADLINE_S), "the next segment's pre-fault never ran"
    join = j.thread.join

    def joined(*args: object) -> None:  # close() has woken the thread: let it go on
        closed.set()
        join(*args)

    j.thread.join = joined  # type: ignore[method-assign]
    closer = threading.Thread(target=j.close, daemon=True)
    closer.start()
    closer.join(DEADLINE_S)
    assert not closer.is_alive(), "close() waits for a rest that began after its wake-up"


def test_a_segment_offered_while_the_appender_makes_its_own_is_taken_not_leaked(
        tmp_path, monkeypatch):
    # the appender rolls by itself (the prepared segment is held back) and, while its own
    # segment is being preallocated (without the GIL), the background thread offers the
    # prepared one: the appender rolls into that one and deletes its own; no file is left
    from ringlog import _journal

    hold = threading.Event()

    def pause(*args: object) -> float:
        assert hold.wait(DEADLINE_S)
        return 0.0

    monkeypatch.setattr(journal_mod, "prefault_pause", pause)
    d = tmp_path / "j"
    j = Journal(d, durability="none", segment_size=1 << 20, first_segment_size=64 << 10)

    def hook(op: str, path: str, target: object) -> None:
        if op == "fallocate" and "rolling-" in path and not hold.is_set():
            hold.set()  # the prepared segment goes on, and is offered
            _wait(lambda: j.appender.offered, "the prepared segment offered")

    _journal.set_sync_hook(hook)
    try:
        for _ in range(100):  # ~100 KiB: one roll
            j.append(b"r" * 1000)
        assert hold.is_set() and j.fallback_rolls == 1, "the appender did not roll by itself"
    finally:
        _journal.set_sync_hook(None)
        j.close()
    assert not list(d.glob("*.tmp")), sorted(p.name for p in d.iterdir())
    with Journal(d, durability="none") as again:
        assert again.next_sequence == 100 and not again.decisions


# -- zero-filled segments (prefault "zero": the default under group and sync) --------------
FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_UNWRITTEN = 0x800
_EXTENTS = 64


def _unwritten_bytes(path) -> int | None:
    """Bytes of ``path`` in unwritten (preallocated, never written) extents, from FIEMAP;
    None where the file system does not answer FIEMAP."""
    import fcntl
    import struct

    head = struct.pack("=QQIIII", 0, 2**64 - 1, FIEMAP_FLAG_SYNC, 0, _EXTENTS, 0)
    buf = bytearray(head + bytes(56 * _EXTENTS))
    with open(path, "rb") as f:
        try:
            fcntl.ioctl(f.fileno(), FS_IOC_FIEMAP, buf)
        except OSError:
            return None
    mapped = struct.unpack_from("=I", buf, 20)[0]
    total = 0
    for k in range(mapped):
        _, _, length, _, _, flags = struct.unpack_from("=QQQQQI", buf, 32 + 56 * k)
        if flags & FIEMAP_EXTENT_UNWRITTEN:
            total += length
    return total


@pytest.fixture
def extent_aware(tmp_path):
    """Skips where the file system cannot tell an unwritten extent from a written one (its
    FIEMAP does not show a posix_fallocate'd probe as unwritten: tmpfs, some network file
    systems): there a zero-filled segment and a preallocated one look alike, and the
    zero-fill has nothing to spare either."""
    probe = tmp_path / "probe"
    fd = os.open(probe, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.posix_fallocate(fd, 0, 1 << 20)
    finally:
        os.close(fd)
    if not _unwritten_bytes(probe):
        pytest.skip("this file system does not report unwritten extents (FIEMAP)")
    probe.unlink()


def _prepared(directory):
    _wait(lambda: list(directory.glob("prepared-*.tmp")), "a prepared segment")
    return next(directory.glob("prepared-*.tmp"))


def test_group_journals_write_their_segments_blocks_before_records_reach_them(
        tmp_path, extent_aware):
    # a preallocated block read as zeros but unwritten: the first write-back of a record
    # into it changes the extent map, and the fdatasync that follows writes the inode too
    d = tmp_path / "j"
    with Journal(d, durability="group", segment_size=1 << 20) as j:
        assert j._prefault == "zero"
        j.append(b"x" * 64)
        first = list_segments(d)[0][1]
        _wait(lambda: j._appender.offered, "the next segment prepared")
        nxt = _prepared(d)
        for path in (first, nxt):
            unwritten = _unwritten_bytes(path)
            assert unwritten == 0, f"{path}: {unwritten} bytes still unwritten"


def test_journals_without_syncs_keep_preallocated_blocks(tmp_path, extent_aware):
    # the control: under "none" nothing is synced, so nothing is zero-filled (no write of
    # the whole segment twice); FIEMAP sees the unwritten extents the test above must not
    d = tmp_path / "j"
    with Journal(d, durability="none", segment_size=1 << 20) as j:
        assert j._prefault == "read"
        j.append(b"x" * 64)
        _wait(lambda: j._appender.offered, "the next segment prepared")
        assert _unwritten_bytes(_prepared(d)) > 0


def test_a_journal_filling_fast_pre_faults_by_reads_instead(tmp_path, monkeypatch,
                                                           extent_aware):
    # its larger group commits amortise the inode writes; zeros would take its disk's
    # bandwidth (every rate is "fast" here; the first segment is zero-filled at creation)
    monkeypatch.setattr(journal_mod, "ZERO_FILL_UNDER", 0)
    d = tmp_path / "j"
    with Journal(d, durability="group", segment_size=1 << 20) as j:
        j.append(b"x" * 64)
        first = list_segments(d)[0][1]
        _wait(lambda: j._appender.offered, "the next segment prepared")
        assert _unwritten_bytes(_prepared(d)) > 0
        assert _unwritten_bytes(first) == 0


def test_records_read_back_across_zero_filled_segments(tmp_path):
    d = tmp_path / "j"
    payloads = [bytes([i % 251]) * (1 + i % 300) for i in range(3000)]
    with Journal(d, durability="group", segment_size=64 << 10) as j:
        for k, p in enumerate(payloads):
            j.append(p)
            if k % 500 == 0:  # give the background thread time to prepare
                _wait(lambda: j._appender.offered, "a prepared segment")
        j.sync()
    assert len(list_segments(d)) > 3
    got = [bytes(rec.payload) for rec in journal_mod.JournalReader(d)]
    assert got == payloads
    assert journal_mod.JournalReader(d).verify_all()[0] == len(payloads)


def test_write_zeros_names_the_path_and_offset_when_a_write_fails(tmp_path):
    with Journal(tmp_path / "j", durability="group", segment_size=1 << 20) as j:
        j.append(b"x")
        path = list_segments(tmp_path / "j")[0][1]
    seg = _journal.Segment.open(path)  # read-only: pwrite() fails with EBADF
    with pytest.raises(journal_mod.JournalError, match=f"{path}.*offset 0"):
        seg.write_zeros(0, 4096)


def test_write_zeros_clips_to_the_file_and_zeroes_what_was_written(tmp_path):
    with Journal(tmp_path / "j", durability="group", segment_size=1 << 20) as j:
        for _ in range(100):
            j.append(b"\xff" * 200)
        path = list_segments(tmp_path / "j")[0][1]
    seg = _journal.Segment.open(path, writable=True)
    size = os.path.getsize(path)
    seg.write_zeros(-4096, size + (1 << 20))  # clipped to the file: no error, no growth
    del seg
    assert os.path.getsize(path) == size
    assert not any(path.read_bytes())


def test_a_failed_zero_fill_leaves_the_segment_preallocated_and_appends_unharmed(
        tmp_path, monkeypatch, caplog, extent_aware):
    # an I/O error writing zeros is not the journal's failure: the segment is offered as it
    # is (its unwritten blocks read as zeros), only its syncs cost what they did before
    def failing(seg, start, end):
        raise journal_mod.JournalError(f"cannot write zeros into segment {seg.path} at "
                                       f"offset {start}: Input/output error")

    monkeypatch.setattr(journal_mod, "_zero_fill", failing)
    d = tmp_path / "j"
    payloads = [bytes([k % 251]) * 1000 for k in range(300)]  # ~300 KiB: rolls past it
    with Journal(d, durability="group", segment_size=64 << 10) as j:
        _wait(lambda: j._appender.offered, "a segment prepared despite the failure")
        assert _unwritten_bytes(_prepared(d)) > 0
        for p in payloads:
            j.append(p)
        j.sync()
        assert j.fast_rolls > 0
    assert "zero-filling the next segment failed" in caplog.text
    assert [bytes(r.payload) for r in journal_mod.JournalReader(d)] == payloads
