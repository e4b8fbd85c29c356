"""Simulated power losses of a running processor (tests/crash/powerloss.py over its input
journal, output journal and snapshots), under each topology: after any of them, recovery
keeps every input acknowledged as durable, the output journal holds exactly the outputs of
the inputs that survived (each naming the input that made it), and the processor goes on.

A power loss can take the input journal's tail while the output journal, synced on its own,
keeps the outputs those inputs made, and it can keep a snapshot of inputs the input journal
lost: recovery must cut those outputs (Processor._cut_lost_outputs), and a snapshot must not
be written before its inputs are durable. Planting either bug back makes the simulation fail.
(test_power_loss_outputs.py checks the other side: no output a client received is missing.)
"""

from __future__ import annotations

import random
import shutil
import struct
import time
from collections import Counter
from pathlib import Path

import pytest
from test_processor_lost_inputs import misaligned
from test_processor_outputs import Fanout

from ringlog import durable
from ringlog.errors import RingLogError
from ringlog.journal import JournalReader
from ringlog.processor import Processor, ProcessorConfig

from .powerloss import CrashImage, PowerLossModel, crash_count, crash_runs, processor_under

DEADLINE = 60  # s: a safety net for drain(), never reached when the processor works
TOPOLOGIES = ["inline", "staged", "driven"]


def _config(topology: str) -> ProcessorConfig:
    return ProcessorConfig(ring_capacity=256, output_capacity=256, segment_size=1 << 16,
                           durability="group", snapshot_every=61, topology=topology,
                           counters=False, admin=False)


def _command(v: int) -> bytes:
    return struct.pack("<qq", v, 1 + v % 3)  # Fanout: 1-3 outputs (v, j)


def run_processor(work: Path, topology: str, seed: int, crashes: int) -> PowerLossModel:
    """Publishes commands to a processor until ``crashes`` crash images exist; the model
    takes them at random durability steps of its journals and snapshots (sync threads,
    rolls, snapshot writes), so they fall anywhere in the loop's work."""
    root = work / "run"
    dirs = [root / "input", root / "output", root / "snapshots"]
    for d in dirs:
        d.mkdir(parents=True)
    model = PowerLossModel(dirs, random.Random(seed), crash_rate=0.05)
    model.limit = crashes
    record, input_dir = model.hook, dirs[0].resolve()

    def slow_input_disk(op: str, path: str, target: str | None) -> None:
        record(op, path, target)
        if op == "fdatasync" and Path(path).parent == input_dir:
            time.sleep(0.003)  # the input journal's syncs lag: crashes find inputs handled,
                               # their outputs and snapshots written, and not yet durable

    with processor_under(model, lambda: Processor(Fanout(), root, _config(topology)),
                         slow_input_disk) as p:
        v = 0
        while len(model.images) < crashes:
            p.publish(_command(v), 5)
            v += 1
            if topology == "driven" and v % 8 == 0:
                p.pump()
            if v % 200 == 0:
                p.drain(timeout=DEADLINE)
    return model


def verify_image(img: CrashImage, where: Path, topology: str,
                 seen: Counter[str] | None = None) -> str | None:
    """None if a restart from ``img`` keeps every promise; else what went wrong. ``seen``
    counts the images whose recovery cut outputs and those whose recovery restored some."""
    if where.exists():
        shutil.rmtree(where)
    img.write(where)
    try:
        h = Fanout()
        p = Processor(h, where, _config(topology))
        rep = p.recover(verify=True)
        if p.input.last_sequence < img.acked:
            return f"acknowledged inputs {p.input.last_sequence + 1}..{img.acked} lost"
        if seen is not None:
            seen["cut"] += rep.outputs_cut > 0
            seen["restored"] += rep.outputs_restored > 0
        if rep.first_divergence is not None:
            return f"the replay diverged from the output journal at input {rep.first_divergence}"
        p.start()
        for i in range(5):  # and it goes on: new inputs take the next sequences
            p.publish(_command(10**6 + i), 5)
        if topology == "driven":
            p.pump()
        p.drain(timeout=DEADLINE)
        p.stop()
    except RingLogError as e:
        return f"restart failed: {type(e).__name__}: {e}"
    wrong = misaligned(where)
    if wrong is not None:
        return wrong
    outs = list(JournalReader(where / "output"))
    if [r.sequence for r in outs] != list(range(len(outs))):
        return "output journal sequences are not dense from 0"
    if h.emitted != len(outs):
        return f"the handler's state counts {h.emitted} outputs, the journal has {len(outs)}"
    return None


def simulate(tmp_path: Path, topology: str, crashes: int, seed: int = 1,
             first_failure: bool = False, seen: Counter[str] | None = None
             ) -> tuple[int, list[str], dict[str, int]]:
    def verify(model: PowerLossModel):
        for i, img in enumerate(model.images):
            yield img, verify_image(img, tmp_path / f"img{i}", topology, seen)

    return crash_runs(tmp_path, crashes, 25,
                      lambda work, i, n: run_processor(work, topology, seed * 1000 + i, n),
                      verify, first_failure=first_failure)


@pytest.mark.crash
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_processor_keeps_its_promises_after_simulated_power_losses(tmp_path, topology,
                                                                  request):
    crashes = crash_count(request.config, 50)
    seen: Counter[str] = Counter()
    done, failures, counts = simulate(tmp_path / "0", topology, crashes, seen=seen)
    # the case the cut is for (inputs lost, their outputs kept) is a few in a hundred
    # images: more, up to 300 in all, until one shows it
    for more in range(1, 6):
        if seen["cut"] or failures:
            break
        n, failures, c = simulate(tmp_path / str(more), topology, 50, seed=1 + more,
                                  seen=seen)
        done += n
        counts = {k: counts.get(k, 0) + c.get(k, 0) for k in {*counts, *c}}
    print(f"\n{topology}: {done} simulated power losses, crash points {counts}, "
          f"recoveries {dict(seen)}, {len(failures)} failures")
    assert done >= crashes
    assert not failures, failures[:5]
    assert seen["cut"] > 0, "no power loss took inputs whose outputs were journaled"


@pytest.mark.crash
@pytest.mark.parametrize("bug", ["no_output_cut", "snapshot_before_inputs_durable"])
def test_planted_processor_bugs_are_caught(tmp_path, bug):
    durable.planted.add(bug)
    try:
        done, failures, _ = simulate(tmp_path, "inline", 300, seed=7, first_failure=True)
    finally:
        durable.planted.discard(bug)
    assert failures, f"{done} simulated power losses missed the planted bug {bug}"
