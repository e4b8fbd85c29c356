"""Retention: the last K snapshots and the journal a replay from the oldest needs; nothing
past an unverified snapshot, the breaker's held inputs or a caller's floor; a soak stays
flat on disk; `ringlog journal prune`."""

from __future__ import annotations

import struct
from pathlib import Path

import msgspec
import pytest

from ringlog.cli import main as cli_main
from ringlog.errors import ConfigError
from ringlog.handler import EventHandler
from ringlog.journal import JournalReader, list_segments
from ringlog.processor import Processor, ProcessorConfig
from ringlog.retention import Retention, apply_prune, plan_prune

SEG = 16384


class Summer(EventHandler):
    def __init__(self):
        self.count = 0
        self.total = 0

    def on_event(self, event, sequence, end_of_batch):
        (v,) = struct.unpack("<q", event.payload)
        self.count += 1
        self.total += v
        self.emit(struct.pack("<q", self.total), type_id=1)

    def on_snapshot(self):
        return msgspec.msgpack.encode([self.count, self.total])

    def on_restore(self, data):
        self.count, self.total = msgspec.msgpack.decode(data)


def cfg(keep=2, every=400, archive=None):
    return ProcessorConfig(ring_capacity=256, output_capacity=256, segment_size=SEG,
                           durability="none", snapshot_every=every,
                           retention=Retention(keep_snapshots=keep, archive_dir=archive)
                           if keep else None)


def du(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def publish(p: Processor, start: int, n: int) -> None:
    for v in range(start, start + n):
        p.publish(struct.pack("<q", v), 5, timestamp_ns=v)


def test_retention_is_validated():
    with pytest.raises(ConfigError, match="keep_snapshots"):
        Retention(keep_snapshots=0)
    with pytest.raises(ConfigError, match="retention"):
        ProcessorConfig(retention="3")  # type: ignore[arg-type]


@pytest.mark.stress
def test_soak_stays_flat_on_disk_and_recovers_the_same_state(tmp_path, request):
    rounds = 40 if "stress" in (request.config.getoption("-m") or "") else 8
    h = Summer()
    p = Processor(h, tmp_path, cfg())
    p.start()
    sizes, segs, snaps = [], [], []
    for r in range(rounds):
        publish(p, r * 2500, 2500)
        p.drain(timeout=60)  # idle: no snapshot or prune half done while we look
        sizes.append(du(tmp_path))
        segs.append(len(list_segments(tmp_path / "input")))
        snaps.append(len(list((tmp_path / "snapshots").glob("*.snap"))))
    p.stop()
    # 2,500 events a round write ~10 segments a round each way; without retention the
    # directory grows linearly. With keep=2 and a snapshot every 400 events it stays flat.
    assert max(snaps) <= 2, snaps
    assert max(segs) <= 6, segs
    assert max(sizes[2:]) <= 1.25 * max(sizes[:2]), sizes
    total = rounds * 2500
    h2 = Summer()
    p2 = Processor(h2, tmp_path, cfg())
    p2.recover()
    assert (h2.count, h2.total) == (total, total * (total - 1) // 2)
    p2.stop()


def test_archive_keeps_every_segment_somewhere(tmp_path):
    arch = tmp_path / "archive"
    h = Summer()
    p = Processor(h, tmp_path / "proc", cfg(archive=str(arch)))
    p.start()
    publish(p, 0, 6000)
    p.drain(timeout=60)
    p.stop()
    kept = list_segments(tmp_path / "proc" / "input")
    archived = list_segments(arch / "input")
    assert archived and kept[0][0] > 0
    firsts = [f for f, _ in archived] + [f for f, _ in kept]
    assert firsts[0] == 0 and firsts == sorted(set(firsts))  # nothing lost, no overlap
    # the archive plus the kept segments read back as the whole journal
    whole = tmp_path / "whole"
    whole.mkdir()
    for _, path in archived + kept:
        (whole / path.name).write_bytes(path.read_bytes())
    assert [r.sequence for r in JournalReader(whole)] == list(range(6000))
    assert (arch / "output").is_dir()


def _proc_with_snapshots(tmp_path: Path, n: int = 3000, every: int = 400) -> Path:
    d = tmp_path / "proc"
    p = Processor(Summer(), d, cfg(keep=0, every=every))
    p.start()
    publish(p, 0, n)
    p.drain(timeout=60)
    p.stop()
    return d


def test_never_past_a_snapshot_that_does_not_read_back(tmp_path):
    d = _proc_with_snapshots(tmp_path)
    snaps = sorted((d / "snapshots").glob("*.snap"))
    assert len(snaps) >= 5
    good = plan_prune(d, Retention(keep_snapshots=2))
    assert good.keep_input_from == int(snaps[-2].stem) + 1
    raw = bytearray(snaps[-1].read_bytes())
    raw[-1] ^= 1  # the newest is damaged: it does not count as kept
    snaps[-1].write_bytes(raw)
    plan = plan_prune(d, Retention(keep_snapshots=2))
    assert plan.keep_input_from == int(snaps[-3].stem) + 1
    assert str(snaps[-3]) not in plan.snapshots and str(snaps[-2]) not in plan.snapshots
    apply_prune(plan)
    first = list_segments(d / "input")[0][0]
    assert first <= int(snaps[-3].stem) + 1


def test_floors_of_the_breaker_and_of_the_caller(tmp_path):
    d = _proc_with_snapshots(tmp_path)
    base = plan_prune(d, Retention(keep_snapshots=1))
    assert base.segments
    held = plan_prune(d, Retention(keep_snapshots=1), pending_from=100)
    assert held.keep_input_from == 100 and "breaker" in " ".join(held.reasons)
    floor = plan_prune(d, Retention(keep_snapshots=1), min_input=50, min_output=10)
    assert (floor.keep_input_from, floor.keep_output_from) == (50, 10)
    for plan in (held, floor):
        for s in plan.segments:
            nxt = next(f for f, _ in list_segments(Path(s).parent) if f > int(Path(s).stem))
            floor_of = plan.keep_input_from if "input" in s else plan.keep_output_from
            assert nxt <= floor_of
    too_few = plan_prune(d, Retention(keep_snapshots=50))
    assert not too_few.segments and not too_few.snapshots


def test_cli_prune_dry_run_then_apply(tmp_path, capsys):
    d = _proc_with_snapshots(tmp_path)
    before = sorted(p.name for p in d.rglob("*"))
    assert cli_main(["journal", "prune", str(d), "--keep", "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "remove snapshot" in out and "frees" in out
    assert sorted(p.name for p in d.rglob("*")) == before
    assert cli_main(["journal", "prune", str(d), "--keep", "1"]) == 0
    assert len(list((d / "snapshots").glob("*.snap"))) == 1
    assert cli_main(["journal", "prune", str(d)]) == 2  # no retention configured, no --keep
    assert cli_main(["journal", "prune", str(tmp_path), "--keep", "1"]) == 2
    p = Processor(Summer(), d, cfg(keep=0))
    p.start()
    try:
        assert cli_main(["journal", "prune", str(d), "--keep", "1"]) == 1  # running
    finally:
        p.stop()
