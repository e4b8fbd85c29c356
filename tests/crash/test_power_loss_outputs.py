"""Simulated power losses under a running Processor: no output a client received may be
missing after recovery (issue #13).

A listener (``add_output_listener``) stands for the client: it records each output it is
handed. Crash images (tests/crash/powerloss.py) are taken at random sync points of the
input/output journals and snapshots, and right after the listener received an output. Each
image is recovered by a fresh Processor (which journals the outputs its output journal lacks)
and every output received before the crash point must be in the recovered output journal,
in order (cause, type and payload).

Under ``release="durable"`` (the default) this must hold for durability group and sync, in
both topologies. Under ``release="immediate"`` outputs are handed out before their input is
durable, and the same check finds a missing output: the check can fail.

Seeded; the threads' interleaving still varies from run to run, but the durable check is an
invariant (it holds at every crash point, whatever the timing). `make test` runs 50 crashes
per case, `make stress` (-m stress) 1,000.
"""

from __future__ import annotations

import random
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringlog.errors import JournalCorruptError
from ringlog.handler import EventHandler
from ringlog.journal import JournalReader
from ringlog.processor import Processor, ProcessorConfig

from .powerloss import CrashImage, PowerLossModel, crash_count, crash_runs, processor_under

SEG = 1 << 16
MAX_EVENTS = 6000  # per run; a run that took fewer crash images is followed by another


class Tally(EventHandler):
    """Running sum of 8-byte ints; one or two outputs per event (so output and input
    sequences drift apart), each naming the event and the sum."""

    def __init__(self) -> None:
        self.total = 0

    def on_event(self, event, sequence, end_of_batch):
        (v,) = struct.unpack("<q", event.payload)
        self.total += v
        for k in range(1 + v % 2):
            self.emit(struct.pack("<qqq", sequence, v, self.total + k), type_id=9)

    def on_snapshot(self):
        return struct.pack("<q", self.total)

    def on_restore(self, data):
        (self.total,) = struct.unpack("<q", data)


class ClientModel(PowerLossModel):
    """The power-loss model plus, for each crash image, how many outputs the client had
    received when it was taken."""

    def __init__(self, root: Path, rnd: random.Random, crash_rate: float) -> None:
        super().__init__([root / "input", root / "output", root / "snapshots"], rnd,
                         crash_rate)
        self.received: list[tuple[int, int, bytes]] = []
        self.seen: list[int] = []  # parallel to self.images

    def _phase_of(self, op: str, p: Path) -> str:
        if self.phase != "append":
            return self.phase
        d = p.parent.name if op != "fsync_dir" else p.name
        # input journal steps keep the base names (append, roll)
        return {"output": "output", "snapshots": "snapshot"}.get(d) or super()._phase_of(op, p)

    def crash(self, phase: str, op: str = "-") -> None:
        with self._lock:
            # counted before any file is read: each of these outputs was released before
            # the image, so (under durable release) its input was synced before it
            n = len(self.received)
            before = len(self.images)
            super().crash(phase, op)
            if len(self.images) > before:
                self.seen.append(n)


def run_processor(tmp: Path, durability: str, topology: str, release: str, seed: int,
                  crashes: int, crash_rate: float = 0.03,
                  output_io: str = "buffered") -> ClientModel:
    """Runs a Processor with a recording listener, taking crash images at random sync
    points and after random releases until ``crashes`` images exist (or MAX_EVENTS)."""
    root = tmp / "run"
    for d in ("input", "output", "snapshots"):
        (root / d).mkdir(parents=True)
    rnd = random.Random(seed)
    lrnd = random.Random(seed + 1)  # the listener's own stream (another thread)
    model = ClientModel(root, rnd, crash_rate)
    model.limit = crashes
    cfg = ProcessorConfig(ring_capacity=256, output_capacity=256, segment_size=SEG,
                          durability=durability, topology=topology, release=release,
                          snapshot_every=701, counters=False, admin=False,
                          output_io=output_io)

    def client(rec) -> None:
        model.received.append((rec.cause, rec.type_id, bytes(rec.payload)))
        if lrnd.random() < 0.01:  # just after a client got an output: the crash that matters
            model.crash("release")

    def make() -> Processor:
        p = Processor(Tally(), root, cfg)
        p.add_output_listener(client)
        return p

    with processor_under(model, make) as p:
        v = 0
        while len(model.images) < crashes and v < MAX_EVENTS:
            p.publish(struct.pack("<q", v), 5, timestamp_ns=v)
            v += 1
    return model


def verify_outputs(img: CrashImage, received: list[tuple[int, int, bytes]], where: Path,
                   topology: str) -> str | None:
    """None if every output in ``received`` is in the output journal recovered from
    ``img``, in order; else what went wrong."""
    if where.exists():
        shutil.rmtree(where)
    img.write(where)
    for d in ("input", "output", "snapshots"):
        (where / d).mkdir(parents=True, exist_ok=True)
    try:
        p = Processor(Tally(), where, ProcessorConfig(segment_size=SEG, durability="none",
                                                      topology=topology, counters=False,
                                                      admin=False))
        try:
            p.recover()
        finally:
            p.stop()
    except JournalCorruptError as e:
        return f"a power-loss state called corruption: {e}"
    got = [(r.producer_seq, r.type_id, bytes(r.payload)) for r in JournalReader(where / "output")]
    for i, want in enumerate(received):
        if i >= len(got):
            return (f"{len(received) - i} received outputs missing after recovery, from "
                    f"output {i} (cause {want[0]}); recovered {len(got)}")
        if got[i] != want:
            return f"output {i}: received {want}, recovered {got[i]}"
    return None


def simulate(tmp_path: Path, durability: str, topology: str, release: str, crashes: int,
             seed: int = 1, first_failure: bool = False,
             output_io: str = "buffered") -> tuple[int, list[str], dict[str, int]]:
    """Runs until ``crashes`` images are verified (or, with ``first_failure``, one fails);
    returns (images verified, failures, crash points by phase)."""
    def run(work: Path, i: int, n: int) -> ClientModel:
        return run_processor(work, durability, topology, release, seed * 1000 + i, n,
                             output_io=output_io)

    def verify(model: ClientModel) -> Iterator[tuple[CrashImage, str | None]]:
        for img, n in zip(model.images, model.seen, strict=True):
            yield img, verify_outputs(img, model.received[:n], tmp_path / "img", topology)

    return crash_runs(tmp_path, crashes, 50, run, verify, first_failure)


def _crashes(request: pytest.FixtureRequest) -> int:
    return crash_count(request.config, 50)


@pytest.mark.crash
@pytest.mark.stress
@pytest.mark.parametrize("topology", ["inline", "staged", "driven", "driven-direct-io"])
@pytest.mark.parametrize("durability", ["group", "sync"])
def test_no_received_output_lost_after_simulated_power_losses(tmp_path, durability, topology,
                                                              request):
    # driven-direct-io: the output journal written with O_DIRECT, as `ringlog serve` runs it
    crashes = _crashes(request)
    topology, _, direct = topology.partition("-")
    done, failures, counts = simulate(tmp_path, durability, topology, "durable", crashes,
                                      output_io="direct" if direct else "buffered")
    print(f"\n{durability}/{topology}: {done} simulated power losses, crash points {counts}, "
          f"{len(failures)} failures")
    assert done >= crashes
    assert not failures, failures[:5]
    assert "release" in counts, counts  # crashes right after a client got an output


@pytest.mark.crash
@pytest.mark.parametrize("topology", ["inline", "staged", "driven"])
def test_immediate_release_loses_received_outputs(tmp_path, topology):
    """The check can fail: outputs released before their input is durable go missing.

    Whether a client holds such an output at a crash point depends on thread timing (the
    group commit usually catches up within an event or two): measured, 1-9 of every 100
    crash images fail, so the run goes on to the first failure, up to 500 crashes."""
    done, failures, _ = simulate(tmp_path, "group", topology, "immediate", 500, seed=7,
                                 first_failure=True)
    assert failures, f"no received output was missing in {done} crashes under immediate release"
    print(f"\nimmediate/{topology}: caught after {done} simulated power losses: {failures[0]}")
