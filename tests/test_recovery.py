"""Recovery rules at the end of a journal, alike in open, verify and repair.

- durable records never disappear silently (issue #13 item 1, reproduced as written);
- a damaged hint (durable mark) or .idx is its own kind, rebuilt, never costs a record;
- every byte of the last record, torn or flipped, under each state of the durable mark.
"""

import shutil
import struct
from pathlib import Path

import pytest

from ringlog import JournalCorruptError
from ringlog._journal import HEADER_SIZE, Segment
from ringlog.journal import Journal, JournalReader, list_segments
from ringlog.journaltool import apply_repair, check, plan_repair


def _records(path: Path) -> list[tuple[str, int, int, int]]:
    """(segment path, offset, record bytes incl. padding, sequence) of every record."""
    return [(rec.segment.path, rec.offset, 8 + ((48 + len(rec.payload) + 7) & ~7),
             rec.sequence) for rec in JournalReader(path)]


def _payload(i: int) -> bytes:
    return struct.pack("<q", i) * (1 + i % 3)


def test_zeroed_range_of_durable_records_is_corruption_never_silent_loss(tmp_path):
    """The issue's repro: 10,000 records synced; 80,000 bytes zeroed from the start of
    record 5000 in the active segment. verify must not pass, open must refuse (and never
    append over the hidden records), both naming file, offset and the sequences lost."""
    d = tmp_path / "j"
    with Journal(d, segment_size=1 << 20, durability="sync", group_events=1) as j:
        for i in range(0, 10_000, 100):
            j.append_many([_payload(k) for k in range(i, i + 100)], 1)
        assert j.durable_sequence == 9999
    seg_path, off, _, seq = _records(d)[5000]
    assert seq == 5000 and seg_path == str(list_segments(d)[-1][1])
    with open(seg_path, "r+b") as f:
        f.seek(off)
        f.write(bytes(80_000))
    res = check(d)
    assert res.problem is not None and res.problem.kind == "corrupt"
    assert (res.problem.path, res.problem.offset, res.problem.sequence) == (seg_path, off, 5000)
    assert "5000..9999" in res.problem.message
    with pytest.raises(JournalCorruptError, match=r"5000\.\.9999") as e:
        Journal(d, segment_size=1 << 20)
    assert (e.value.path, e.value.offset, e.value.sequence) == (seg_path, off, 5000)
    with pytest.raises(JournalCorruptError):
        JournalReader(d).verify_all()
    with pytest.raises(JournalCorruptError, match="refuses to drop committed records"):
        plan_repair(d)
    # nothing was written: the records after the hole are still there, byte for byte
    raw = Path(seg_path).read_bytes()
    assert raw[off:off + 80_000] == bytes(80_000)
    assert Segment.open(seg_path).find_record(off + 80_000, len(raw), 5001)[0] > 0


@pytest.mark.parametrize("to_end", [False, True])
def test_missing_durable_records_with_nothing_after_them_are_corruption(tmp_path, to_end):
    d = tmp_path / "j"
    with Journal(d, segment_size=1 << 16, durability="group") as j:
        for i in range(300):
            j.append(_payload(i), 1)
    seg_path, off, _, seq = _records(d)[-40]
    with open(seg_path, "r+b") as f:
        f.seek(off)
        f.write(bytes((1 << 16) - off if to_end else 8))  # a lost write / a zeroed length
    with pytest.raises(JournalCorruptError, match=f"{seq}\\.\\.299"):
        Journal(d, segment_size=1 << 16)
    assert check(d).problem.kind == "corrupt"


def test_the_same_damage_above_the_durable_mark_is_a_torn_tail(tmp_path):
    """Records appended after the last sync: a power loss may keep any subset of their
    pages, so a hole followed by records is a torn tail there (reported, then cut)."""
    d = tmp_path / "j"
    with Journal(d, segment_size=1 << 16, durability="none") as j:  # close: no sync
        for i in range(100):
            j.append(_payload(i), 1)
        j.sync()
        for i in range(100, 300):
            j.append(_payload(i), 1)
        assert j.durable_sequence == 99
    recs = _records(d)
    seg_path, off, _, _ = recs[150]
    with open(seg_path, "r+b") as f:
        f.seek(off)
        f.write(bytes(600))
    assert check(d).problem.kind == "torn_tail"
    with Journal(d, segment_size=1 << 16) as j:
        assert j.next_sequence == 150
        assert [x.action for x in j.decisions] == ["truncate_torn_tail"]
        assert j.decisions[0].offset == off and j.decisions[0].sequence == 150
    assert check(d).problem is None


# -- hints: the durable mark and the sparse index ------------------------------------------
@pytest.fixture(scope="module")
def three_segments(tmp_path_factory):
    d = tmp_path_factory.mktemp("hint") / "j"
    with Journal(d, segment_size=16384, durability="group") as j:
        for i in range(500):
            j.append(_payload(i), 1, timestamp_ns=i)
    assert len(list_segments(d)) >= 3
    return d


@pytest.mark.parametrize("which", [0, -1])
@pytest.mark.parametrize("pos", range(HEADER_SIZE - 16, HEADER_SIZE, 3))
def test_flipped_bit_in_the_durable_mark_hint_is_a_hint_problem(three_segments, tmp_path,
                                                                which, pos):
    d = tmp_path / "j"
    shutil.copytree(three_segments, d)
    seg = list_segments(d)[which][1]
    with open(seg, "r+b") as f:
        f.seek(pos)
        b = f.read(1)[0]
        f.seek(pos)
        f.write(bytes([b ^ 0x20]))
    res = check(d)
    assert res.problem is not None and res.problem.kind == "hint"
    assert res.problem.path == str(seg) and res.records == 500 if which == -1 else True
    for force in (False, True):
        plan = plan_repair(d, force=force)
        assert plan.last_dropped < plan.first_dropped and not plan.move_segments
        assert plan.truncate_path is None and plan.rewrite_mark == [str(seg)]
        assert "drops no record" in plan.describe()
    if which == -1:  # open rewrites the last segment's own mark and keeps every record
        with Journal(d, segment_size=16384) as j:
            assert j.next_sequence == 500
            assert "rewrite_durable_mark" in [x.action for x in j.decisions]
    else:
        apply_repair(d, plan_repair(d), tmp_path / "side")
    assert check(d).problem is None
    assert [r.sequence for r in JournalReader(d)] == list(range(500))


def test_damaged_index_is_reported_rebuilt_and_never_costs_a_record(three_segments, tmp_path):
    idx = list_segments(three_segments)[0][1].with_suffix(".idx")
    size = idx.stat().st_size
    for pos in range(0, size, max(1, size // 12)):
        d = tmp_path / f"j{pos}"
        shutil.copytree(three_segments, d)
        target = d / idx.name
        raw = bytearray(target.read_bytes())
        raw[pos] ^= 0x04
        target.write_bytes(raw)
        p = check(d).problem
        assert p is not None and p.kind == "index" and p.path == str(target), pos
        plan = plan_repair(d, force=True)
        assert plan.first_dropped > plan.last_dropped and plan.truncate_path is None
        apply_repair(d, plan, tmp_path / f"side{pos}")
        assert check(d).problem is None
        assert target.read_bytes() == idx.read_bytes()  # rebuilt exactly as written
        target.write_bytes(bytes(raw))  # damaged again: open rebuilds it too
        with Journal(d, segment_size=16384) as j:
            assert j.next_sequence == 500
            assert [x.action for x in j.decisions] == ["rebuild_index"]
        assert target.read_bytes() == idx.read_bytes()


# -- torn tails: every byte of the last record, each state of the durable mark --------------
@pytest.fixture(scope="module")
def small_journal(tmp_path_factory):
    d = tmp_path_factory.mktemp("torn") / "j"
    with Journal(d, segment_size=16384, durability="none") as j:
        for i in range(40):
            j.append(_payload(i) + b"xyz", 1)  # odd length: the record has padding
    seg_path, off, size, seq = _records(d)[-1]
    return d, Path(seg_path).name, off, size, seq


# mark states: (name, mark value relative to the last record's sequence, expected kind)
MARKS = [("below", -1, "torn_tail"), ("at", 0, "corrupt"), ("damaged", None, "torn_tail")]
DAMAGE = ["flip", "zero", "zero_from"]  # one bit, one byte, a torn write from the byte on


def _damage(raw: bytearray, pos: int, how: str, end: int) -> None:
    if how == "flip":
        raw[pos] ^= 0x80
    elif how == "zero":
        raw[pos] = 0
    else:
        raw[pos:end] = bytes(end - pos)


@pytest.mark.parametrize("mark_state", MARKS, ids=[m[0] for m in MARKS])
@pytest.mark.parametrize("how", DAMAGE)
def test_every_byte_of_the_last_record(small_journal, tmp_path, mark_state, how):
    src, name, off, size, seq = small_journal
    _, rel, expected = mark_state
    pristine = (src / name).read_bytes()
    for pos in range(off, off + size):
        raw = bytearray(pristine)
        before = bytes(raw)
        _damage(raw, pos, how, off + size)
        if bytes(raw) == before:
            continue  # zeroing a zero byte (padding) changes nothing
        if rel is None:
            raw[HEADER_SIZE - 10] ^= 1  # the hint pair no longer matches
        else:
            struct.pack_into("<qq", raw, HEADER_SIZE - 16, ~(seq + rel), seq + rel)
        d = tmp_path / f"{pos}"
        shutil.copytree(src, d)
        (d / name).write_bytes(raw)
        ctx = f"byte {pos - off} of the last record, {how}, mark {mark_state[0]}"
        p = check(d, live=False).problem
        if how == "zero_from" and pos == off and expected == "torn_tail":
            # the whole record absent, not durable: a clean end (and a damaged hint)
            assert p is None or p.kind == "hint", ctx
            with Journal(d, segment_size=16384) as j:
                assert j.next_sequence == seq and j.recovery is None, ctx
            shutil.rmtree(d)
            continue
        assert p is not None and p.kind == expected and p.offset == off, ctx
        assert p.sequence == seq, ctx
        if expected == "torn_tail":
            plan = plan_repair(d, live=False)
            assert plan.first_dropped == seq and plan.last_dropped == -1, ctx
            with Journal(d, segment_size=16384) as j:  # open agrees: cuts exactly it
                assert j.next_sequence == seq and j.recovery.offset == off, ctx
            assert check(d).problem is None, ctx
        else:
            with pytest.raises(JournalCorruptError):
                plan_repair(d, live=False)
            with pytest.raises(JournalCorruptError) as e:
                Journal(d, segment_size=16384)
            assert e.value.offset == off and e.value.sequence == seq, ctx
        shutil.rmtree(d)


def test_repair_of_a_kill_9_torn_body_succeeds(small_journal, tmp_path):
    """A body with no length word (what kill -9 leaves): repair plans and applies the cut
    and exits clean (it used to fail every time: 'changed since the repair was planned')."""
    src, name, off, _size, seq = small_journal
    d = tmp_path / "j"
    shutil.copytree(src, d)
    raw = bytearray((d / name).read_bytes())
    struct.pack_into("<I", raw, off, 0)  # the length word is stored last: never written
    (d / name).write_bytes(raw)
    plan = plan_repair(d)
    assert plan is not None and plan.problem.kind == "torn_tail"
    apply_repair(d, plan, tmp_path / "side")
    assert check(d).problem is None
    assert [r.sequence for r in JournalReader(d)] == list(range(seq))
