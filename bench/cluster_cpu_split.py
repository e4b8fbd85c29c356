"""Where a shard's CPU goes, per command and per process, in bench_cluster.py's R=3
throughput run (leader + standby, 3 nats-servers on loopback, this process publishing), with
optionally a second build of the replicas or other input batch limits in interleaved pairs
(an A/B of two commits, or of two configurations).

    this process: InputPublisher ══► RL_IN_0 (R=3) ══► leader replica ══► RL_OUT_0 (R=3)
                                                  ║                  ╚═► RL_MD_0 (R=1)
                                                  ╚══► standby replica
    per run: CPU us per command of the leader, the standby, the three nats-servers (summed)
             and this process; commands/s; input, output and market data stream bytes per
             command (an older build's "base" replicas: market data in the output stream); the
             raw js.publish_async byte rate of the same message size right after, and ours
             over it (the issue's goal: >= 0.5x)

Run: ``python bench/cluster_cpu_split.py [--commands N] [--runs R] [--base-src SRC]
[--batch BYTES,COMMANDS] [--set FIELD=JSON] [--idle SECONDS] [--latency RATE]``.
``--base-src`` names the ``src`` directory of another build, put first on the replicas'
PYTHONPATH for the "base" runs (e.g. ``git archive <commit> src/ringlog | tar -x -C
/tmp/base`` and the compiled ``*.so`` files of a build of that commit copied beside its
modules); runs then alternate base, this tree, this tree, base, ... ``--set`` adds a variant
of this tree with other ClusterConfig fields; ``--idle`` measures an idle shard's CPU per
second instead, ``--latency`` the end-to-end latency at a fixed rate. Prints one JSON line
per run and the medians and min-max of each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import bench_cluster as bc

from ringlog.cluster.natsserver import NatsCluster
from ringlog.cluster.trial import engine_commands, stop_all


async def one_run(b: Any, cl: NatsCluster, n: int, market_data: bool = True,
                  **cfg_kw: Any) -> dict[str, float]:
    """``n`` engine commands through one R=3 shard (leader + standby): CPU per command of
    each process, rate, stream bytes per command, and the raw rate of the same size.
    ``cfg_kw``: ClusterConfig fields (batch limits)."""
    cfg = b.config(replicas=3, **cfg_kw)
    reps, w = await b.replicas(cfg, ["lead", "standby"])
    try:
        cmds = engine_commands(n)
        leader = await w.leader()
        pids = {("leader" if r.replica_id == leader else "standby"): r.pid for r in reps}
        pids.update({f"nats{i}": p.pid for i, p in enumerate(cl.procs) if p is not None})
        cpu0 = {k: bc._cpu_s(p) for k, p in pids.items()}
        me0 = time.process_time()
        elapsed = (await b.drive(cfg, w, leader, cmds, market_data))[1]
        us = {k: (bc._cpu_s(p) - cpu0[k]) / n * 1e6 for k, p in pids.items()}
        ii = await b.js.stream_info(w.names.input_stream)
        oi = await b.js.stream_info(w.names.output_stream)
        mi = await b.js.stream_info(w.names.market_data_stream)
    finally:
        stop_all(reps)
    size = ii.state.bytes / max(ii.state.messages, 1)
    raw = await b.raw(3, int(size), max(50, int(ii.state.messages)))
    return {"leader_us": us["leader"], "standby_us": us["standby"],
            "nats_us": sum(v for k, v in us.items() if k.startswith("nats")),
            "publisher_us": (time.process_time() - me0) / n * 1e6,
            "commands_per_s": n / elapsed, "in_bytes_per_command": ii.state.bytes / n,
            "out_bytes_per_command": oi.state.bytes / n,
            "md_bytes_per_command": mi.state.bytes / n, "msg_size": size,
            "raw_bytes_per_s": raw["bytes_per_s"],
            "vs_raw": ii.state.bytes / elapsed / raw["bytes_per_s"]}


async def idle_run(b: Any, cl: NatsCluster, seconds: float, **cfg_kw: Any
                   ) -> dict[str, float]:
    """CPU per second of each process of an idle R=3 shard (leader + standby, no input)
    over ``seconds``, after a settling second."""
    cfg = b.config(replicas=3, **cfg_kw)
    reps, w = await b.replicas(cfg, ["lead", "standby"])
    try:
        leader = await w.leader()
        pids = {("leader" if r.replica_id == leader else "standby"): r.pid for r in reps}
        pids.update({f"nats{i}": p.pid for i, p in enumerate(cl.procs) if p is not None})
        await asyncio.sleep(1.0)
        cpu0 = {k: bc._cpu_s(p) for k, p in pids.items()}
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        dt = time.monotonic() - t0
        ms = {k: (bc._cpu_s(p) - cpu0[k]) / dt * 1e3 for k, p in pids.items()}
    finally:
        stop_all(reps)
    return {"leader_ms_per_s": ms["leader"], "standby_ms_per_s": ms["standby"],
            "nats_ms_per_s": sum(v for k, v in ms.items() if k.startswith("nats"))}


async def _measure(cl: NatsCluster, tmp: Path, n: int, runs: int, base: str | None,
                   batch: tuple[int, int] | None, settings: dict[str, Any],
                   idle: float, latency: float) -> dict[str, list[dict[str, float]]]:
    variants = ["tree"] + (["base"] if base else []) + (["batch"] if batch else []) + \
        (["set"] if settings else [])
    variants = variants[1:] + variants[:1]  # (the other variant first)
    res: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    async with bc._Bench(cl, tmp) as b:
        for k in range(runs):
            for v in variants if k % 2 == 0 else variants[::-1]:
                if v == "base":
                    os.environ["PYTHONPATH"] = str(base)
                kw = {"batch_max_bytes": batch[0], "batch_max_commands": batch[1]} \
                    if v == "batch" and batch else settings if v == "set" else {}
                try:
                    if latency:  # (bench_cluster's latency run: R=3, its own config)
                        got = await b.latency(latency, 5.0)
                    else:
                        got = await (idle_run(b, cl, idle, **kw) if idle else
                                     one_run(b, cl, n, v != "base", **kw))
                finally:
                    os.environ.pop("PYTHONPATH", None)
                res[v].append(got)
                print(json.dumps({"variant": v, **{x: round(y, 4) for x, y in got.items()}}),
                      flush=True)
    return res


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--commands", type=int, default=200_000)
    a.add_argument("--runs", type=int, default=3)
    a.add_argument("--base-src", dest="base",
                   help="src/ of another build for the replicas (an A/B)")
    a.add_argument("--batch", help="BYTES,COMMANDS: also runs with these input batch limits "
                   "(ClusterConfig.batch_max_bytes, batch_max_commands), interleaved")
    a.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=JSON",
                   help="also runs (variant 'set') with this ClusterConfig field, e.g. "
                   "market_data_replicas=3 or market_data_types=[]; repeatable")
    a.add_argument("--idle", type=float, default=0.0, metavar="SECONDS",
                   help="instead of commands: CPU per second of an idle shard over SECONDS")
    a.add_argument("--latency", type=float, default=0.0, metavar="RATE",
                   help="instead: bench_cluster's latency run (5 s at RATE commands/s, "
                   "intended send -> output batch at a subscriber), base and tree only")
    args = a.parse_args()
    batch = tuple(int(x) for x in args.batch.split(",")) if args.batch else None
    settings: dict[str, Any] = {}
    for item in args.settings:
        field, _, value = item.partition("=")
        try:
            settings[field] = json.loads(value)
        except ValueError:
            a.error(f"--set {item}: the value is not JSON")
    with tempfile.TemporaryDirectory(prefix="ringlog-cpu-split-") as d:
        cl = NatsCluster(3, Path(d) / "nats").start()
        try:
            res = asyncio.run(_measure(cl, Path(d), args.commands, args.runs, args.base,
                                       batch, settings, args.idle,
                                       args.latency))  # type: ignore[arg-type]
        finally:
            cl.stop()
    for v, rows in res.items():
        summary = {k: {"median": round(statistics.median(r[k] for r in rows), 4),
                       "min": round(min(r[k] for r in rows), 4),
                       "max": round(max(r[k] for r in rows), 4)} for k in rows[0]}
        print(json.dumps({"variant": v, **summary}))


if __name__ == "__main__":
    main()
