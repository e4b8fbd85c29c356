"""kill -9 a process appending to a journal at random moments; reopen; check everything.

Each cycle forks a child that reopens the journal and appends records whose payload is a
function of their sequence, reporting the durable sequence through a pipe. The parent
SIGKILLs it at a random moment, reopens the journal and checks: sequences dense from 0, every
payload intact, nothing lost up to the last durable sequence the child reported.
"""

import os
import random
import signal
import struct
from pathlib import Path

import pytest

from ringlog.journal import Journal, JournalReader
from ringlog.snapshot import SnapshotStore

from .killer import run_and_kill

SEG = 1 << 16


def body(seq: int) -> bytes:
    return struct.pack("<q", seq) * (1 + seq % 7)


def _child(path: str, policy: str, wfd: int) -> None:
    with Journal(path, segment_size=SEG, durability=policy, group_events=50,
                 group_ms=1) as j:
        while True:
            seq = j.next_sequence
            j.append(body(seq), 1)
            if seq % 25 == 0:
                os.write(wfd, struct.pack("<q", j.durable_sequence))


@pytest.mark.crash
@pytest.mark.parametrize("policy", ["none", "group", "sync"])
def test_journal_survives_kill_9_at_random_moments(tmp_path, policy):
    cycles = int(os.environ.get("RINGLOG_CRASH_CYCLES", "50"))
    rnd = random.Random(f"{policy}-seed")
    path = str(tmp_path / "j")
    durable_seen = -1
    for _ in range(cycles):
        reported = run_and_kill(lambda w: _child(path, policy, w), rnd.uniform(0.005, 0.04))
        durable_seen = max([durable_seen, *reported])
        # what a reader is told is durable: at least what the child reported, never lost
        marked = JournalReader(path).durable_sequence if os.path.isdir(path) else -1
        assert marked >= durable_seen
        with Journal(path, segment_size=SEG, durability="none") as j:
            last = j.last_sequence
            assert j.recovery is None or j.recovery.sequence == last + 1
        assert last >= marked  # nothing acknowledged as durable was lost
    n = 0
    for rec in JournalReader(path):
        assert rec.sequence == n and bytes(rec.payload) == body(n)
        n += 1
    assert n == last + 1 and n > 0


def big_body(seq: int) -> bytes:
    """40..1,000 bytes, a function of the sequence: batches of these pass 4 KiB (pwrite)."""
    return struct.pack("<q", seq) * (5 + seq * 37 % 120)


def _batch_child(path: str, policy: str, wfd: int) -> None:
    with Journal(path, segment_size=SEG, durability=policy, group_events=50,
                 group_ms=1) as j:
        k = 0
        while True:
            seq = j.next_sequence
            j.append_many([big_body(seq + i) for i in range(1 + k % 60)], 1)
            k += 1
            os.write(wfd, struct.pack("<q", j.durable_sequence))


@pytest.mark.crash
@pytest.mark.parametrize("policy", ["group", "sync"])
def test_journal_of_pwritten_batches_keeps_a_valid_prefix_after_kill_9(tmp_path, policy):
    # batches of up to 60 records (up to ~60 KiB, pwrite()n from the appender's buffer, the
    # first length word last): a kill between the two writes leaves a body without its
    # commit word, which reopening truncates as a torn tail
    cycles = int(os.environ.get("RINGLOG_CRASH_CYCLES", "50"))
    rnd = random.Random(f"{policy}-batches")
    path = str(tmp_path / "j")
    durable_seen = last = -1
    for _ in range(cycles):
        reported = run_and_kill(lambda w: _batch_child(path, policy, w),
                                rnd.uniform(0.005, 0.04))
        durable_seen = max([durable_seen, *reported])
        with Journal(path, segment_size=SEG, durability="none") as j:
            assert j.recovery is None or j.recovery.sequence == j.last_sequence + 1
            last = j.last_sequence
        assert last >= durable_seen  # nothing acknowledged as durable was lost
    n = 0
    for rec in JournalReader(path):
        assert rec.sequence == n and bytes(rec.payload) == big_body(n)
        n += 1
    assert n == last + 1 and n > 0


def _snap_child(path: str) -> None:
    s = SnapshotStore(path)
    i = 0
    while True:
        s.write(i, bytes([i & 0xFF]) * 200_000)
        i += 1


@pytest.mark.crash
def test_snapshot_is_whole_or_absent_after_kill_9(tmp_path):
    rnd = random.Random(7)
    for _ in range(20):
        run_and_kill(lambda _w: _snap_child(str(tmp_path)), rnd.uniform(0.002, 0.03))
        s = SnapshotStore(tmp_path)
        for seq in s.sequences():
            snap = s.load(seq)  # raises if any visible snapshot is partial
            assert snap.data == bytes([seq & 0xFF]) * 200_000
        for p in tmp_path.glob("*.tmp*"):
            p.unlink()  # a crash may leave a temp file: never a visible snapshot
        for p in tmp_path.glob("*.snap"):
            p.unlink()


def _roll_child(path: str, policy: str, extra: int, wfd: int) -> None:
    """Rolls once without the GIL, appends ``extra`` more records, reports the last sequence
    and kills itself: the background thread may not have synced or indexed anything of it."""
    j = Journal(path, segment_size=SEG, first_segment_size=8192, durability=policy,
                group_events=50, group_ms=1)
    if not j.wait_ready(30):
        os._exit(3)
    rolled = j.fast_rolls
    while j.fast_rolls == rolled:
        j.append(body(j.next_sequence), 1)
    for _ in range(extra):
        j.append(body(j.next_sequence), 1)
    os.write(wfd, struct.pack("<q", j.last_sequence))
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.crash
@pytest.mark.parametrize("policy", ["none", "group", "sync"])
def test_kill_9_right_after_a_roll_loses_no_appended_record(tmp_path, policy):
    """kill -9 keeps the page cache: every record appended before the kill, on either side
    of a roll whose syncs, index and directory fsync were still the background thread's,
    is there after reopening, and recovery finds nothing torn."""
    rnd = random.Random(f"{policy}-roll")
    path = str(tmp_path / "j")
    last, cycles = -1, max(1, int(os.environ.get("RINGLOG_CRASH_CYCLES", "50")) // 5)
    for cycle in range(cycles):
        reported = run_and_kill(lambda w: _roll_child(path, policy, rnd.choice([0, 0, 1, 5]),
                                                      w), 30.0, until_exit=True)
        assert len(reported) == 1, f"cycle {cycle}: the child did not roll"
        with Journal(path, segment_size=SEG, first_segment_size=8192,
                     durability="none") as j:
            assert j.last_sequence == reported[0]
            assert {d.action for d in j.decisions} <= {"remove_temp_file", "rebuild_index"}
            last = j.last_sequence
    n = 0
    for rec in JournalReader(path):
        assert rec.sequence == n and bytes(rec.payload) == body(n)
        n += 1
    assert n == last + 1 and len(list(Path(path).glob("*.seg"))) > cycles  # one roll each
