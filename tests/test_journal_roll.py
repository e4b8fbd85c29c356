"""Segment rolls: the appending thread switches to a prepared segment without the GIL and
without a sync; the background thread makes the roll durable; a power loss in between
leaves a torn roll that recovery sets aside (docs/journal-format.md, "Rolling").

    appending thread: finish header, rename, switch   (no GIL, no fsync, no file created)
    background:       old .idx, fdatasync old, fdatasync new, fsync dir, mark may pass
"""

import ctypes
import os
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringlog import _journal
from ringlog._journal import Segment
from ringlog._loop import journal_stage
from ringlog._ring import Ring
from ringlog._ringbench import produce_paced
from ringlog.errors import JournalCorruptError
from ringlog.journal import Journal, JournalReader, list_segments
from ringlog.journaltool import apply_repair, check, plan_repair

FIRST, MAX = 8192, 1 << 15  # rolls every hundred records or so


def payload(seq: int, n: int) -> bytes:
    """Self-describing: a reader in another process checks it without being told sizes."""
    return struct.pack("<qI", seq, n) + bytes((seq + i) & 0xFF for i in range(n))


def well_formed(data: bytes, seq: int) -> bool:
    s, n = struct.unpack_from("<qI", data)
    return s == seq and len(data) == 12 + n and data[12:] == payload(seq, n)[12:]


def roll_once(j: Journal, size: int = 100) -> int:
    """Appends until the journal rolls without the GIL (after waiting for a prepared
    segment); returns how many appends that took."""
    assert j.wait_ready(30), "no prepared segment offered within 30 s"
    rolled, n = j.fast_rolls, 0
    while j.fast_rolls == rolled:
        j.append(payload(j.next_sequence, size))
        n += 1
    return n


# -- the appending thread's part ------------------------------------------------------------
@pytest.mark.parametrize("policy", ["none", "group", "sync"])
def test_a_roll_on_the_appending_thread_syncs_nothing_and_creates_no_file(tmp_path, policy):
    ops: list[tuple[int, str]] = []
    j = Journal(tmp_path / "j", segment_size=MAX, first_segment_size=FIRST,
                durability=policy)
    _journal.set_sync_hook(lambda op, path, target: ops.append((threading.get_ident(), op)))
    try:
        appends = sum(roll_once(j) for _ in range(3))
        assert j.wait_ready(30)  # the background thread made the last roll durable
    finally:
        _journal.set_sync_hook(None)
        j.close()
    mine = Counter(op for t, op in ops if t == threading.get_ident())
    # the roll renames; under sync each append fdatasyncs (the policy), the rolls add none
    assert mine == Counter({"rename": 3, **({"fdatasync": appends} if policy == "sync" else {})})
    theirs = Counter(op for t, op in ops if t != threading.get_ident())
    assert theirs["fsync_dir"] >= 3 and theirs["create"] >= 3  # the background thread's
    assert j.fast_rolls == 3 and j.fallback_rolls == 0


def test_without_a_prepared_segment_every_roll_is_the_counted_fallback(tmp_path):
    with Journal(tmp_path / "j", segment_size=MAX, first_segment_size=FIRST,
                 prefault=False) as j:
        for seq in range(1000):
            j.append(payload(seq, 100))
        rolls = len(list_segments(tmp_path / "j")) - 1
    assert rolls > 3 and j.fallback_rolls == rolls and j.fast_rolls == 0
    assert [r.sequence for r in JournalReader(tmp_path / "j")] == list(range(1000))


@pytest.mark.parametrize("policy", ["none", "group", "sync"])
def test_a_roll_with_none_prepared_creates_the_segment_but_leaves_the_syncs(tmp_path,
                                                                            policy):
    """No segment offered (no pre-fault, so none is ever prepared): the appending thread
    creates and names the next segment itself, but the fdatasyncs of the old and new
    segments and the directory fsync are the background thread's, as after a fast roll;
    under sync an append still returns only once its roll is durable."""
    ops: list[tuple[int, str]] = []
    me = threading.get_ident()
    j = Journal(tmp_path / "j", segment_size=MAX, first_segment_size=FIRST,
                durability=policy, prefault=False)
    _journal.set_sync_hook(lambda op, path, target: ops.append((threading.get_ident(), op)))
    try:
        for seq in range(1000):
            rolls = j.fallback_rolls
            j.append(payload(seq, 100))
            if policy == "sync":
                assert not j.appender.roll_pending and j.durable_sequence == seq
            deadline = time.monotonic() + 30
            while j.fallback_rolls > rolls and j.appender.roll_pending:  # the next roll
                assert time.monotonic() < deadline  # finds none pending: not its syncs here
                time.sleep(0.001)
        j.sync()
        assert j.durable_sequence == 999  # an explicit sync: under none too
    finally:
        _journal.set_sync_hook(None)
        j.close()
    rolls = len(list_segments(tmp_path / "j")) - 1
    assert rolls > 3 and j.fallback_rolls == rolls and j.fast_rolls == 0
    mine = Counter(op for t, op in ops if t == me)
    assert mine["create"] == mine["fallocate"] == mine["rename"] == rolls
    # under sync each append fdatasyncs (the policy); j.sync() one more
    assert mine["fsync_dir"] == 0 and mine["fdatasync"] == (1001 if policy == "sync" else 1)
    theirs = Counter(op for t, op in ops if t != me)
    assert theirs["fsync_dir"] == rolls
    assert [r.sequence for r in JournalReader(tmp_path / "j")] == list(range(1000))


def test_sync_policy_returns_from_an_append_only_once_its_roll_is_durable(tmp_path):
    with Journal(tmp_path / "j", segment_size=MAX, first_segment_size=FIRST,
                 durability="sync") as j:
        for _ in range(3):
            roll_once(j)
            # the append that rolled returned: the roll's syncs are done and it is durable
            assert not j.appender.roll_pending
            assert j.durable_sequence == j.last_sequence


_WATCH = """
import sys, time
from pathlib import Path
from ringlog._journal import HEADER_SIZE, Segment
from ringlog.journal import list_segments
seen, deadline = set(), time.monotonic() + 60
while time.monotonic() < deadline:  # report each segment once it holds a committed record
    for first, path in list_segments(Path(sys.argv[1])):
        if first not in seen and Segment.open(path).scan(HEADER_SIZE, first, True)[3] > 0:
            seen.add(first)
            print(first, flush=True)
    time.sleep(0.001)
"""


def _first_beyond(libc: ctypes.CDLL, fd: int, cur: int) -> int | None:
    """Reads reported first sequences from ``fd`` through ``libc`` (a PyDLL: the GIL stays
    held) until one is beyond ``cur``; None at end of file."""
    buf, line = ctypes.create_string_buffer(1), b""
    while libc.read(fd, buf, 1) == 1:
        if buf.raw != b"\n":
            line += buf.raw
        elif int(line) > cur:
            return int(line)
        else:
            line = b""
    return None


def test_a_roll_completes_while_another_thread_holds_the_gil(tmp_path):
    """The journaller appends without the GIL. This thread takes the GIL, notes the current
    segment, and keeps the GIL (blocking reads through ctypes.PyDLL do not release it) until
    a process watching the directory reports records in a later segment: the appender rolled
    and appended there while it could not have taken the GIL."""
    d = tmp_path / "j"
    j = Journal(d, segment_size=MAX, first_segment_size=FIRST)
    ring = Ring(1 << 14, 64)
    consumer = ring.consumer()
    stage = threading.Thread(target=journal_stage, args=(consumer, j.appender, 64))
    producer = threading.Thread(target=produce_paced, args=(ring, 1 << 40, 20_000.0, 200_000))
    watcher = subprocess.Popen([sys.executable, "-c", _WATCH, str(d)], stdout=subprocess.PIPE)
    libc = ctypes.PyDLL(None)
    libc.read.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
    libc.read.restype = ctypes.c_ssize_t
    interval = sys.getswitchinterval()
    cur, beyond = -1, None
    stage.start()
    producer.start()
    try:
        deadline = time.monotonic() + 30
        while j.last_sequence < 200:  # both threads are in their loops (which need no GIL)
            assert time.monotonic() < deadline, "nothing journaled in 30 s"
            time.sleep(0.001)
        sys.setswitchinterval(60)  # no forced hand-over from the check below to the proof
        while beyond is None and time.monotonic() < deadline:
            if not j.wait_ready(1):
                continue
            cur = j.appender.segment.first_sequence  # the GIL is held from here ...
            # ... and the journaller is in its C loop, not in a fallback roll (Python code,
            # which gave up the GIL for a sync): nothing of its own can need the GIL now
            in_c = sys._current_frames()[stage.ident].f_code.co_name == "run"
            if in_c and j.appender.offered and not j.appender.roll_pending:
                beyond = _first_beyond(libc, watcher.stdout.fileno(), cur)  # ... to here
                break
            time.sleep(0.001)  # not yet: give the GIL to whoever needs it
    finally:
        sys.setswitchinterval(interval)
        ring.close()
        producer.join()
        stage.join()
        watcher.kill()
        watcher.wait()
        watcher.stdout.close()
        j.close()
    assert beyond is not None and beyond > cur, "no roll while this thread held the GIL"
    assert j.fast_rolls >= 1
    assert [r.sequence for r in JournalReader(d)] == list(range(j.last_sequence + 1))


# -- readers in another process --------------------------------------------------------------
_TAIL = """
import struct, sys, time
from ringlog.journal import JournalTailer
t, n, expect = JournalTailer(sys.argv[1]), int(sys.argv[2]), 0
deadline = time.monotonic() + 60
while expect < n and time.monotonic() < deadline:
    for rec in t.poll(timeout=0.05):
        data = bytes(rec.payload)
        s, k = struct.unpack_from("<qI", data)
        body = bytes((s + i) & 0xFF for i in range(k))
        if rec.sequence != expect or s != expect or data[12:] != body:
            sys.exit(f"record {rec.sequence}: expected {expect}, payload of {s}")
        expect += 1
print(expect)
"""


@settings(max_examples=8, deadline=None)
@given(batches=st.lists(st.tuples(st.lists(st.integers(0, 3000), min_size=1, max_size=12),
                                  st.booleans()), min_size=20, max_size=120),
       policy=st.sampled_from(["none", "group", "sync"]))
def test_appends_across_many_rolls_read_live_by_a_tailer_in_another_process(
        tmp_path_factory, batches, policy):
    d = tmp_path_factory.mktemp("roll") / "j"
    total = sum(len(sizes) for sizes, _ in batches)
    j = Journal(d, segment_size=MAX, first_segment_size=FIRST, durability=policy)
    tailer = subprocess.Popen([sys.executable, "-c", _TAIL, str(d), str(total)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for sizes, settle in batches:
            if settle:  # let a prepared segment be offered: the next roll is a fast one
                j.wait_ready(30)
            first = j.next_sequence
            j.append_many([payload(first + i, n) for i, n in enumerate(sizes)])
    finally:
        j.close()
        out, err = tailer.communicate(timeout=90)
    assert tailer.returncode == 0, err
    assert int(out) == total
    rolls = len(list_segments(d)) - 1
    assert j.fast_rolls + j.fallback_rolls == rolls
    assert all(well_formed(bytes(r.payload), r.sequence) for r in JournalReader(d))


# -- the torn roll: a newest segment whose name reached the disk and nothing else -----------
def _two_segments(tmp: Path) -> tuple[Path, Path, Path, int]:
    """A journal of two segments, the newest with a few records, none durable (``none``):
    (directory, previous segment, newest segment, its first sequence)."""
    d = tmp / "j"
    with Journal(d, segment_size=MAX, first_segment_size=FIRST, durability="none") as j:
        roll_once(j)
        for _ in range(5):
            j.append(payload(j.next_sequence, 100))
    (_, prev), (first, last) = list_segments(d)
    return d, prev, last, first


def _zero(path: Path, start: int, end: int) -> None:
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(bytes(end - start))


@pytest.mark.parametrize("state", ["empty_file", "header_page_zero", "header_template",
                                   "previous_tail_torn"])
def test_a_torn_roll_is_set_aside_and_the_previous_segment_continues(tmp_path, state):
    d, prev, last, first = _two_segments(tmp_path)
    keep = first
    if state == "empty_file":  # the name reached the disk, the size did not
        os.truncate(last, 0)
    elif state == "header_page_zero":  # records reached the disk, the header page did not
        _zero(last, 0, 4096)
    elif state == "header_template":  # the header as prepared, not as the roll finished it
        for start, end in ((16, 32), (44, 48), (4080, 4096)):  # first, created, crc, mark
            _zero(last, start, end)
    else:  # a good header, but the previous segment's last page did not reach the disk
        end = JournalReader(d).locate(first - 1)[2]  # offset of the previous last record
        _zero(prev, end, end + 8)
        keep = first - 1
    # what verify reports first: the previous segment's torn tail, then the torn roll
    problem = check(d, live=False).problem
    assert (problem.kind, problem.path) == (("torn_tail", str(prev)) if keep < first
                                            else ("torn_roll", str(last)))
    with Journal(d, segment_size=MAX, first_segment_size=FIRST, durability="none") as j:
        assert j.last_sequence == keep - 1
        actions = [x.action for x in j.decisions]
        assert actions[0] == "set_aside_torn_roll" and j.decisions[0].path == str(last)
        if state == "previous_tail_torn":
            assert actions[1:] == ["truncate_torn_tail"]
        j.append(payload(j.next_sequence, 100))  # appends continue where the records end
    assert not last.with_suffix(".idx").exists() and last.with_name(last.name + ".torn").exists()
    assert [r.sequence for r in JournalReader(d)] == list(range(keep + 1))
    assert check(d, live=False).problem is None


def test_a_reader_that_read_a_segment_before_its_end_was_written_reads_the_rest_after_a_roll(
        tmp_path):
    # the race of a reader and a live journal: the reader reaches this segment's end, the
    # appender writes more and rolls, the reader lists the segments: it reads the rest of
    # this one before the next (not a gap: the appender rolls only after its last record)
    with Journal(tmp_path, segment_size=MAX, first_segment_size=FIRST,
                 durability="none") as j:
        for _ in range(5):
            j.append(payload(j.next_sequence, 100))
        reader = JournalReader(tmp_path)
        it = reader.records()
        assert [next(it).sequence for _ in range(5)] == list(range(5))
        listing = reader.segments

        def racing():
            reader.segments = listing
            roll_once(j)  # more records in this segment, then the roll
            j.append(payload(j.next_sequence, 100))
            return listing()

        reader.segments = racing
        assert [r.sequence for r in it] == list(range(5, j.next_sequence))
        assert len(list_segments(tmp_path)) == 2


@pytest.mark.parametrize("durable", [False, True])
def test_a_reader_ends_at_a_gap_before_a_roll_only_when_the_missing_records_were_not_durable(
        tmp_path, durable):
    # a live write-behind journal rolls before its writer wrote the old segment's end; a
    # reader between the two sees the old segment end early: the live end, not corruption,
    # as long as the durable mark is below the gap (as after a crash: a torn roll)
    d, prev, last, first = _two_segments(tmp_path)
    end = JournalReader(d).locate(first - 3)[2]  # its last three records: gone
    _zero(prev, end, Segment.open(prev).size)
    Segment.open(last, True).write_durable_mark(first + 2 if durable else first - 4)
    reader = JournalReader(d)
    if durable:
        with pytest.raises(JournalCorruptError, match="previous segment ends before"):
            list(reader)
    else:
        assert [r.sequence for r in reader] == list(range(first - 3))


def test_a_damaged_header_of_a_segment_whose_records_were_durable_is_corruption(tmp_path):
    d, _, last, first = _two_segments(tmp_path)
    Segment.open(last, True).write_durable_mark(first + 2)  # its records were durable
    _zero(last, 0, 4080)  # a damaged header, the mark intact
    with pytest.raises(JournalCorruptError, match="not a ringlog journal segment"):
        Journal(d, segment_size=MAX, first_segment_size=FIRST, durability="none")
    assert check(d, live=False).problem.kind == "header"


def test_verify_and_repair_follow_the_torn_roll_rule(tmp_path):
    d, _, last, first = _two_segments(tmp_path)
    os.truncate(last, 0)
    assert JournalReader(d).verify_all() == (first, first - 1)  # the torn roll is skipped
    plan = plan_repair(d, live=False)
    assert plan is not None and plan.move_segments == [str(last)]
    assert plan.last_dropped == -1  # nothing durable goes
    side = apply_repair(d, plan, tmp_path / "side")
    assert (side / last.name).exists() and not last.exists()
    assert check(d, live=False).problem is None
