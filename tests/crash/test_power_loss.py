"""Simulated power losses (tests/crash/powerloss.py): after any of them, recovery returns
every record and snapshot acknowledged as durable, treats the rest as a torn tail, and never
calls corruption a state a power loss can produce. Two planted bugs show the simulator can
fail: each is caught within 100 simulated crashes.

`make test` runs a bounded number of crashes per policy; `make stress` (-m stress) 1,000.
"""

from __future__ import annotations

import random
import shutil
import struct
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from ringlog import _journal, durable
from ringlog.errors import JournalCorruptError, SnapshotError
from ringlog.journal import Journal, JournalReader, list_segments
from ringlog.journaltool import check
from ringlog.snapshot import SnapshotStore

from .powerloss import CrashImage, PowerLossModel, crash_count, crash_runs

SEG = 16384


def payload(seq: int) -> bytes:
    return struct.pack("<q", seq) * (1 + seq % 5)


def run_workload(tmp: Path, policy: str, seed: int, crashes: int,
                 crash_rate: float = 0.08, prefault: bool = True,
                 write_behind: bool = False) -> PowerLossModel:
    """Appends (rolling segments), writes snapshots and prunes, taking crash images at
    random sync points and between appends until ``crashes`` images exist. ``prefault``
    False: no segment is ever prepared, so every roll is the appender's own (it creates the
    segment, the background thread syncs the roll). ``write_behind``: the journal's writer
    thread makes every write (each flush handed off), so a crash also catches records still
    in its buffers."""
    root = tmp / "run"
    jdir, sdir = root / "j", root / "s"
    jdir.mkdir(parents=True)
    sdir.mkdir()
    rnd = random.Random(seed)
    model = PowerLossModel([jdir, sdir], rnd, crash_rate)
    model.limit = crashes
    model.install()
    try:
        j = Journal(jdir, segment_size=SEG, durability=policy, group_events=16, group_ms=0.5,
                    prefault=prefault, write_behind=write_behind)
        model.journal = j
        store = SnapshotStore(sdir)
        try:
            seq = -1
            while len(model.images) < crashes:
                model.phase = "append"
                batch = rnd.choice([1, 1, 1, 4])
                seq = j.append_many([payload(seq + 1 + k) for k in range(batch)], 1) \
                    if batch > 1 else j.append(payload(seq + 1), 1)
                if policy == "sync":
                    model.acked = seq
                if rnd.random() < 0.03:
                    model.crash("append")
                if seq % 97 < batch:
                    model.phase = "snapshot"
                    store.write(seq, struct.pack("<q", seq) * 64)
                    model.snapshots.append(seq)
                if seq % 389 < batch and len(model.snapshots) > 2:
                    model.phase = "prune"
                    keep = model.snapshots[-2]
                    model.snapshots = [s for s in model.snapshots if s >= keep]
                    store.delete_before(keep)
                    j.drop_segments_before(keep + 1)
        finally:
            model.journal = None
            j.close()
    finally:
        model.remove()
    return model


def verify_image(img: CrashImage, where: Path, actions: Counter[str] | None = None
                 ) -> str | None:
    """None if recovery from ``img`` keeps every promise; else what went wrong. ``actions``
    counts the recovery decisions taken."""
    if where.exists():
        shutil.rmtree(where)
    img.write(where)
    jdir, sdir = where / "j", where / "s"
    jdir.mkdir(parents=True, exist_ok=True)
    sdir.mkdir(parents=True, exist_ok=True)
    try:
        with Journal(jdir, segment_size=SEG, durability="none", prefault=False) as j:
            last = j.last_sequence
            if actions is not None:
                actions.update(d.action for d in j.decisions)
    except JournalCorruptError as e:
        return f"a power-loss state called corruption: {e}"
    segs = list_segments(jdir)
    first = segs[0][0] if segs else 0
    n = first
    try:  # (what recovery left must read back whole: a reader's corruption is a failure too)
        for rec in JournalReader(jdir):
            if rec.sequence != n or bytes(rec.payload) != payload(n):
                return f"record {rec.sequence} wrong (expected {n})"
            n += 1
    except JournalCorruptError as e:
        return f"the journal recovery left reads as corrupt: {e}"
    if last < img.acked:
        return f"acknowledged records {last + 1}..{img.acked} lost"
    problem = check(jdir, live=False).problem
    if problem is not None:
        return f"verify after recovery: {problem.kind}: {problem.message}"
    store = SnapshotStore(sdir)
    for s in img.snapshots:
        try:
            store.load(s)
        except SnapshotError as e:
            return f"acknowledged snapshot {s} lost: {e}"
    newest = store.latest()
    if newest is not None and first > newest.sequence + 1:
        return f"journal starts at {first}: cannot replay from snapshot {newest.sequence}"
    if first > 0 and newest is None:
        return f"journal starts at {first} and no snapshot is left"
    return None


def simulate(tmp_path: Path, policy: str, crashes: int, seed: int = 1,
             actions: Counter[str] | None = None, prefault: bool = True,
             write_behind: bool = False,
             first_failure: bool = False) -> tuple[int, list[str], dict[str, int]]:
    return crash_runs(
        tmp_path, crashes, 100,
        lambda work, i, n: run_workload(work, policy, seed * 1000 + i, n, prefault=prefault,
                                        write_behind=write_behind),
        lambda model: ((img, verify_image(img, tmp_path / "img", actions))
                       for img in model.images), first_failure=first_failure)


def _crashes(request: pytest.FixtureRequest) -> int:
    return crash_count(request.config, 100)


@pytest.mark.crash
@pytest.mark.stress
@pytest.mark.parametrize("policy", ["sync", "group"])
def test_recovery_after_simulated_power_losses(tmp_path, policy, request):
    crashes = _crashes(request)
    done, failures, counts = simulate(tmp_path, policy, crashes)
    print(f"\n{policy}: {done} simulated power losses, crash points {counts}, "
          f"{len(failures)} failures")
    assert done >= crashes
    assert not failures, failures[:5]
    # every kind of crash point was exercised
    assert {"append", "roll", "snapshot", "prune"} <= set(counts), counts


@pytest.mark.crash
@pytest.mark.parametrize("policy", ["sync", "group"])
def test_recovery_after_power_losses_when_the_appender_makes_every_roll(tmp_path, policy):
    # no prepared segment: each roll creates its segment on the appending thread and leaves
    # the old tail's, the new header's and the directory's syncs to the background thread
    done, failures, counts = simulate(tmp_path / "ok", policy, 100, seed=3, prefault=False)
    assert done >= 100 and not failures, failures[:5]
    assert "roll" in counts, counts
    durable.planted.add("no_roll_dir_fsync")  # and the simulation would see a roll's bug
    try:
        _, failures, _ = simulate(tmp_path / "bug", policy, 100, seed=3, prefault=False)
    finally:
        durable.planted.discard("no_roll_dir_fsync")
    assert failures, "the simulator missed a roll without a directory fsync"


def _simulate_write_behind(tmp_path: Path, bug: bool) -> tuple[int, list[str], dict[str, int]]:
    """Power losses of a group-commit journal whose writer thread makes every write (each
    flush handed off) and pauses before each one, so crashes fall between hand-offs and
    writes; ``bug``: commits published as appended at hand-off, before their write."""
    before = _journal.write_behind_min()
    _journal.write_behind_min(0)
    _journal._plant("slow_writer", True)
    _journal._plant("append_before_write", bug)
    try:
        return simulate(tmp_path, "group", 100, seed=5, write_behind=True)
    finally:
        _journal._plant("append_before_write", False)
        _journal._plant("slow_writer", False)
        _journal.write_behind_min(before)


@pytest.mark.crash
def test_recovery_after_power_losses_with_every_write_made_behind(tmp_path):
    # a processor's output journal: the durable mark must never cover a record its writer
    # thread had not written when the fdatasync ran
    done, failures, counts = _simulate_write_behind(tmp_path / "ok", bug=False)
    assert done >= 100 and not failures, failures[:5]
    assert {"append", "roll"} <= set(counts), counts
    _, failures, _ = _simulate_write_behind(tmp_path / "bug", bug=True)
    assert failures, "the simulator missed commits published before they were written"


@pytest.mark.crash
def test_planted_bug_durable_mark_before_fdatasync_is_caught(tmp_path):
    _journal._plant("mark_before_sync", True)
    try:
        done, failures, _ = simulate(tmp_path, "sync", 100, seed=7)
    finally:
        _journal._plant("mark_before_sync", False)
    assert done <= 100 and failures, "the simulator missed a mark published before the sync"


@pytest.mark.crash
def test_planted_bug_no_directory_fsync_at_roll_is_caught(tmp_path):
    durable.planted.add("no_roll_dir_fsync")
    try:
        done, failures, _ = simulate(tmp_path, "sync", 100, seed=7)
    finally:
        durable.planted.discard("no_roll_dir_fsync")
    assert done <= 100 and failures, "the simulator missed a roll without a directory fsync"


def _roll_window_images(tmp: Path, policy: str, rolls: int, per_roll: int) -> PowerLossModel:
    """Crash images taken between rolls made without the GIL and the background thread's
    syncs of them (old segment's tail, new header, directory), which the test holds back by
    holding the journal's roll lock; under sync, from the appender's own fdatasync of the
    new segment, after which the lock is let go (the append waits for those syncs)."""
    root = tmp / "run"
    jdir = root / "j"
    jdir.mkdir(parents=True)
    (root / "s").mkdir()
    model = PowerLossModel([jdir, root / "s"], random.Random(f"window-{policy}"))
    held = threading.Event()

    def hook(op: str, path: str, target: str | None) -> None:
        # the appender's own sync (policy sync); the group-commit thread's syncs of the
        # current segment go on while the roll lock is held (the mark stays capped)
        if held.is_set() and op == "fdatasync" and j.appender.roll_pending \
                and threading.current_thread() is threading.main_thread():
            for _ in range(per_roll):  # before the model records this sync as done
                model.crash("roll", op)
            held.clear()
            j._roll_lock.release()
        model.hook(op, path, target)

    _journal.set_sync_hook(hook)  # before the journal: the model sees its first segment
    j = Journal(jdir, segment_size=SEG, durability=policy, group_events=16, group_ms=0.5)
    model.journal = j
    try:
        seq = -1
        for _ in range(rolls):
            deadline = time.monotonic() + 30  # safety net: the background thread prepares
            while not (j.appender.offered and not j.appender.roll_pending):
                assert time.monotonic() < deadline, "no prepared segment offered in 30 s"
                j.appender.wait_durable(seq, 0.001)  # sleeps without the GIL
            rolled = j.fast_rolls
            j._roll_lock.acquire()
            held.set()
            while j.fast_rolls == rolled:
                seq = j.append(payload(seq + 1), 1)
                if policy == "sync":
                    model.acked = seq
            if held.is_set():  # group: nothing synced the new segment yet
                for _ in range(per_roll):
                    model.crash("roll", "after-roll")
                held.clear()
                j._roll_lock.release()
    finally:
        _journal.set_sync_hook(None)
        model.journal = None
        j.close()
    return model


@pytest.mark.crash
@pytest.mark.parametrize("policy", ["sync", "group"])
def test_power_losses_between_a_roll_and_its_syncs_leave_torn_rolls_set_aside(tmp_path,
                                                                              policy):
    """A roll names the new segment before its header, the directory and the old segment's
    tail are synced (the background thread does that): a power loss in that window may leave
    a newest segment without its header, or after a torn tail. Recovery sets it aside as a
    torn roll, keeps every acknowledged record and never calls the state corruption."""
    model = _roll_window_images(tmp_path, policy, rolls=5, per_roll=20)
    actions: Counter[str] = Counter()
    failures = [f"[{img.op}] {why}" for img in model.images
                if (why := verify_image(img, tmp_path / "img", actions)) is not None]
    print(f"\n{policy}: {len(model.images)} power losses in a roll's window, recovery "
          f"decisions {dict(actions)}")
    assert len(model.images) == 100
    assert not failures, failures[:5]
    assert actions["set_aside_torn_roll"] > 0, actions  # the state was produced and handled


@pytest.mark.crash
def test_planted_bug_durable_mark_past_a_roll_before_its_syncs_is_caught(tmp_path):
    # the planted mark is followed by a 20 ms pause (journal.py) so that crashes fall in
    # its window whatever the scheduling; up to 300 losses, stopping at the first caught
    durable.planted.add("roll_mark_before_sync")
    try:
        _, failures, _ = simulate(tmp_path, "group", 300, seed=7, first_failure=True)
    finally:
        durable.planted.discard("roll_mark_before_sync")
    assert failures, "the simulator missed a mark published past an unsynced roll"
