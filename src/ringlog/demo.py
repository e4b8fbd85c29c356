"""``ringlog demo`` (``make demo``): the matching engine behind the full processor.

1. The engine alone: a seeded realistic order flow (mids random-walking, limit / cancel /
   modify / IOC / market / FOK / post-only, 50 accounts, 4 symbols, ~2% invalid commands) run
   in one C loop: throughput and latency per command.
2. The engine as the processor's handler: producer -> input ring -> journal (group commit) ->
   engine -> circuit breaker (per-account output limit) -> output ring -> output journal. Then
   a runaway account floods the engine, trips the breaker, and an operator release + reset
   (journaled like any event) resumes it.
3. A fresh engine recovers from snapshot + journal alone and its state hash matches.
The journals are left in ``--dir`` (default ``./demo-journal``) for the tools. The demo only
ever deletes a directory it made itself (it leaves a marker file in it); any other existing,
non-empty directory is refused.
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .bench.latency import percentiles
from .bench.loops import one_to_one_threads
from .breaker import Breaker, BreakerConfig, Limit
from .engine import Command, RejectReason, Report, Side, decode, new_order, registry
from .engine.flow import demo_engine, mixed_flow
from .errors import CircuitOpenError, RingLogError
from .journal import JournalReader
from .processor import Processor, ProcessorConfig

RUNAWAY = 999


def engine_alone(n: int) -> None:
    """Throughput of ``process_commands`` and the latency of single commands."""
    cmds, types = mixed_flow(n, seed=7)
    engine = demo_engine()
    t0 = time.perf_counter()
    outputs = engine.process_commands(cmds, types)
    dt = time.perf_counter() - t0
    s = engine.stats()
    print(f"   {n:,} commands in {dt:.2f} s: {n / dt / 1e6:.2f} M commands/s, "
          f"{outputs:,} reports + market data")
    print(f"   trades {s['trades']:,}, cancels {s['cancelled']:,}, rejects {s['rejected']:,}, "
          f"resting at the end {s['live_orders']:,}")
    lat = np.zeros(n, np.int64)
    demo_engine().process_commands(cmds, types, latencies=lat)
    q = percentiles(lat)
    print(f"   latency per command: p50 {q['p50']:.0f} ns, p99 {q['p99']:.0f} ns, "
          f"p99.9 {q['p99.9']:.0f} ns, max {q['max'] / 1000:.0f} us")


def tally(path: Path, first: int = 0) -> tuple[Counter[int], Counter[str]]:
    """Counts the output journal's records by type and reject reason (after the timed run)."""
    types: Counter[int] = Counter()
    rejects: Counter[str] = Counter()
    for rec in JournalReader(path / "output").records(first):
        types[rec.type_id] += 1
        if rec.type_id == Report.REJECTED:
            rejects[RejectReason(decode(rec.type_id, rec.payload)["reason"]).name] += 1
    return types, rejects


def pipeline(path: Path, n: int) -> str:
    """Runs the flow through the processor, then the runaway; returns the live state hash."""
    engine = demo_engine()
    cfg = engine.config
    # ~100k commands/s of event time: an account sees ~2k outputs/s; the limit is 10x that
    limits = BreakerConfig(limits=[Limit(max_count=2_000, window_ns=100_000_000, per="key",
                                         name="per-account")])
    trips: list = []
    breaker = Breaker(limits, alert=trips.append)
    p = Processor(engine, path, ProcessorConfig(slot_size=cfg.min_slot_size, durability="group",
                                                snapshot_every=n // 2),
                  breaker=breaker, registry=registry(cfg.l2_depth))
    p.start()
    cmds, types = mixed_flow(n, seed=8)
    payloads = [c.tobytes() for c in cmds]
    runs = np.concatenate([[0], np.flatnonzero(np.diff(types)) + 1, [n]]).tolist()
    t0 = time.perf_counter()
    # one claim per run of same-type commands; event time advances 10 us per command
    for lo, hi in itertools.pairwise(runs):
        p.publish_many(payloads[lo:hi], int(types[lo]), timestamp_ns=lo * 10_000)
    while (m := p.metrics).processed < n or m.output_journaled < m.outputs:
        time.sleep(0.001)
    dt = time.perf_counter() - t0
    print(f"   {n:,} commands journaled and matched in {dt:.2f} s: {n / dt / 1e6:.2f} M "
          f"commands/s (Cython loop); {m.outputs:,} outputs journaled")
    kinds, rejects = tally(path)
    print(f"   trades {kinds[Report.TRADE]:,}, rests {kinds[Report.RESTED]:,}, "
          f"cancels {kinds[Report.CANCELLED]:,}, L1 {kinds[Report.L1]:,}, "
          f"L2 {kinds[Report.L2]:,}")
    print(f"   rejects {kinds[Report.REJECTED]:,}: "
          + ", ".join(f"{k} {v}" for k, v in rejects.most_common()))
    print(f"   breaker: {m.breaker_state}, held {m.held}")
    # a runaway algo: 1500 orders within 1.5 ms of event time from one account; once the
    # breaker opens, the producer feels backpressure (CircuitOpenError after its timeout)
    t = n * 10_000
    sent = 0
    try:
        for i in range(1_500):
            p.publish(new_order(10_000_000 + i, account=RUNAWAY, symbol=1, side=Side.SELL,
                                price=10_500 + i % 50, qty=1), Command.NEW,
                      timestamp_ns=t + i * 1000, timeout=1.0)
            sent += 1
    except CircuitOpenError:
        pass
    deadline = time.monotonic() + 30
    while p.metrics.breaker_state != "open" and time.monotonic() < deadline:
        time.sleep(0.01)
    m = p.metrics
    if trips:
        print(f"   TRIP: account {trips[0].key} sent {trips[0].count} outputs within "
              f"{trips[0].window_ns / 1e6:.0f} ms; {m.held} outputs held; "
              + (f"the producer was refused after {sent} of 1500 orders" if sent < 1500 else
                 "all 1500 orders were in the ring before the loop tripped")
              + "; input since the trip waits in the journal")
    p.release_held(timestamp_ns=t + 10**9)
    p.reset_breaker(timestamp_ns=t + 2 * 10**9)
    p.drain(timeout=60)
    p.stop()
    print(f"   operator release + reset: breaker {breaker.state_name}, "
          f"{engine.stats()['commands']:,} commands processed")
    return engine.state_hash()


def recovery(path: Path, live: str) -> bool:
    """A fresh engine from the newest snapshot + replay; outputs verified against the journal."""
    engine = demo_engine()
    cfg = engine.config
    p = Processor(engine, path, ProcessorConfig(slot_size=cfg.min_slot_size),
                  breaker=Breaker(BreakerConfig(limits=[Limit(
                      max_count=2_000, window_ns=100_000_000, per="key", name="per-account")])),
                  registry=registry(cfg.l2_depth))
    t0 = time.perf_counter()
    rep = p.recover(verify=True)
    dt = time.perf_counter() - t0
    p.stop()
    got = engine.state_hash()
    print(f"   snapshot at sequence {rep.snapshot_sequence:,}, replayed {rep.replayed:,} events "
          f"in {dt:.2f} s, {rep.verified_outputs:,} outputs verified, first divergence "
          f"{rep.first_divergence}")
    print(f"   state hash live {live} / recovered {got}: {'MATCH' if got == live else 'MISMATCH'}")
    return got == live and rep.first_divergence is None


MARKER = ".ringlog-demo"  # in a directory the demo made: only such a directory is replaced


class DirectoryInUse(RingLogError, FileExistsError):
    """The demo's directory exists, holds files, and was not made by the demo."""


def prepare(work: Path) -> None:
    """Makes ``work`` for a run: new, empty, or made by an earlier demo (then replaced)."""
    if work.exists():
        if not work.is_dir():
            raise DirectoryInUse(f"{work} exists and is not a directory")
        if (work / MARKER).is_file():
            shutil.rmtree(work)  # an earlier demo's journals: ours to replace
        elif any(work.iterdir()):
            raise DirectoryInUse(f"{work} exists, holds files and was not made by ringlog demo;"
                                 " give another --dir (nothing was changed)")
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text("made by `ringlog demo`; the next demo run replaces this "
                               "directory\n")


def main(work: Path = Path("demo-journal"), quick: bool = False) -> int:
    """Runs the demo into ``work``; exit code 1 if recovery did not reproduce the live engine.
    Raises DirectoryInUse (before anything runs) for a directory it must not touch."""
    prepare(work)
    print("ringlog demo: a matching engine as the business logic of an LMAX-style processor\n")
    ring = one_to_one_threads(200_000 if quick else 2_000_000, 64, wait="yielding")
    print(f"0. ring, 1 producer -> 1 consumer thread, C level: {ring / 1e6:.1f} M events/s\n")
    print("1. the engine alone (C loop over a seeded order flow, 4 symbols, 50 accounts)")
    engine_alone(200_000 if quick else 2_000_000)
    print("\n2. the engine behind the processor: journal (group commit) + circuit breaker")
    live = pipeline(work, 20_000 if quick else 200_000)
    print("\n3. recovery of a fresh engine from the journal")
    ok = recovery(work, live)
    print(f"\njournals left in {work}/ (input/, output/, snapshots/) for the tools")
    return 0 if ok else 1


if __name__ == "__main__":  # python -m ringlog.demo: the same as `ringlog demo`
    import sys

    from .cli import main as cli_main

    raise SystemExit(cli_main(["demo", *sys.argv[1:]]))
