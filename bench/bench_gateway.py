"""Gateway benchmarks: the engine's mixed flow through TCP sessions and back, open loop, beside
the transport's ceiling (an echo server) driven by the same generator in the same run.

    ringlog.loadgen (this process: C frames, select loop) ══TCP loopback══► peer (a subprocess)
        peer = ringlog serve: gateway (uvloop) ─► ring ─► journal (group) ─► engine ─► reports
        peer = echo:          uvloop Protocol writing every byte back (the transport's ceiling)
    ◄═══ first answer of each order: latency from its *intended* send time (wrk2, CO-corrected)

    gateway_8conn_200k_*:  200k orders/s offered over 8 connections for 30 s: answered/s,
                           answered %, latency percentiles, backlog, CPU per order (both sides)
    gateway_1conn_50k_*:   50k orders/s on one connection: the round trip's percentiles, with
                           the same run's fdatasync p99 (durability group; reports released
                           once their order is durable, and _release_immediate: at once)
    echo_*:                the same runs against the echo peer; gateway rows carry the ratio
Runs alternate gateway and echo so both see the same machine; medians and ranges over runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ringlog.bench.latency import latency_rows, past_capacity, percentiles, rate_label
from ringlog.bench.stats import summarize
from ringlog.loadgen import LoadConfig, measure

T = TypeVar("T")


# the load generator's send tick (us): a send carries a tick's orders (at 8 connections and
# 200k/s, 25 per connection: 1,000 us read the generator at 0.85x and 0.91x of 500 us' CPU per
# order in two sets of 4 interleaved pairs, bench/gateway_ab.py --ticks 500,1000; the wait for
# the round, up to a tick, is in the CO-corrected latency); one connection at 50k/s gets a
# finer one (its latency row)
def sender_tick_us(connections: int) -> int:
    """make bench's send tick for ``connections`` connections."""
    return 100 if connections == 1 else 1000


def inflight_window(connections: int) -> int:
    """make bench's in-flight window per session for ``connections`` connections: 50k/s on
    one connection times a durable round trip of up to ~20 ms needs more than 1024."""
    return 8192 if connections == 1 else 1024


TOKENS = [f"bench-token-{i:02d}" for i in range(1, 9)]
# the demo's engine (ringlog.engine.flow.demo_config): symbols 1..4 around 10_000 ticks, a
# 10% band; the mixed flow rests ~20% of its orders for good, so the pool is large
ENGINE = "[engine]\nmax_orders = 8388608\nl2_depth = 5\n" + "".join(
    f"[[engine.symbols]]\nsymbol = {s}\nmin_price = 1\nmax_price = 20000\n"
    f"reference_price = 10000\nband_pct = 10.0\n" for s in range(1, 5))


class _Peer:
    """A server subprocess that prints ``{"port": ...}`` once it listens; SIGTERM stops it."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{argv[2:4]} failed: {self.proc.communicate()[1]}")
        self.port = json.loads(line)["port"]
        self.pid = self.proc.pid

    def stop(self) -> str:
        """Stops the peer; returns the tail of what it wrote to stderr."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.communicate(timeout=120)[1][-2000:]


def gateway_config(directory: str, max_inflight: int = 1024) -> Path:
    """Writes the benchmark's gateway config (8 sessions, the demo engine) in ``directory``.
    ``max_inflight``: a session's in-flight window; one connection's rate is at most the
    window / the round trip (Little's law), so under durable release at 50k/s with fdatasync
    taking ~10-20 ms here the default 1024 would cap it, not the server."""
    cfg = Path(directory) / "gw.toml"
    cfg.write_text("port = 0\n[limits]\nrate = 1e7\nburst = 1000000\n"
                   f"max_open_orders = 10000000\nmax_inflight = {max_inflight}\n" + "".join(
                       f'[[sessions]]\nid = {i}\ntoken = "{t}"\naccount = {i}\n'
                       for i, t in enumerate(TOKENS, 1)) + ENGINE)
    return cfg


def _gateway(directory: str, release: str = "durable", connections: int = 8,
             extra: list[str] | None = None) -> _Peer:
    """``ringlog serve`` in ``directory`` with make bench's in-flight window for
    ``connections`` connections."""
    cfg = gateway_config(directory, inflight_window(connections))
    return _Peer([sys.executable, "-m", "ringlog", "serve", str(Path(directory) / "data"),
                  "--config", str(cfg), "--release", release, *(extra or [])])


def _echo() -> _Peer:
    return _Peer([sys.executable, "-m", "ringlog.bench.echo"])


def fdatasync_p99(directory: str, count: int = 500) -> float:
    """p99 of a 4 KiB write + fdatasync on ``directory``'s file system (ns): the floor of a
    durable round trip on this disk, measured in the same run."""
    path = Path(directory) / "fdatasync.probe"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, count * 4096)
        os.fsync(fd)
        block = b"x" * 4096
        lat = np.zeros(count, np.int64)
        for i in range(count):
            t = time.perf_counter_ns()
            os.pwrite(fd, block, i * 4096)
            os.fdatasync(fd)
            lat[i] = time.perf_counter_ns() - t
    finally:
        os.close(fd)
        path.unlink()
    return percentiles(lat)["p99"]



def scenario_args(doc: str, seconds: float, min_seconds: float = 0.0) -> argparse.Namespace:
    """The one-run scripts' arguments (release, connections, rate, seconds), checked: a
    wrong one is one line and exit 2."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("release", nargs="?", choices=("durable", "immediate"), default="durable")
    ap.add_argument("connections", nargs="?", type=int, choices=range(1, 9), default=1,
                    metavar="CONNECTIONS (1-8)")
    ap.add_argument("rate", nargs="?", type=float, default=50_000.0, help="orders/s offered")
    ap.add_argument("seconds", nargs="?", type=float, default=seconds)
    a = ap.parse_args()
    if a.rate <= 0 or a.seconds <= min_seconds:
        ap.error(f"the rate must be > 0 and the seconds > {min_seconds:g}")
    return a


def bench_load(port: int, server_pid: int, conns: int, rate: float, duration: float,
               warmup: float, tick_us: int = 0, drain_timeout: float = 30.0) -> LoadConfig:
    """make bench's load: the mixed flow from ``conns`` of the bench's sessions, sent in
    rounds of ``tick_us`` (0: make bench's tick for ``conns``)."""
    return LoadConfig(port=port, tokens=TOKENS[:conns], rate=rate, connections=conns,
                      duration=duration, warmup=warmup, pattern="mixed",
                      tick_us=tick_us or sender_tick_us(conns), server_pid=server_pid,
                      drain_timeout=drain_timeout)


def scenario_load(a: argparse.Namespace, port: int, server_pid: int = 0) -> LoadConfig:
    """The one-run scripts' load: ``bench_load`` at ``scenario_args``'s rate, warm-up 2 s."""
    return bench_load(port, server_pid, a.connections, a.rate, a.seconds, 2.0)


def record_under(a: argparse.Namespace, recorder: Callable[[int, Path], list[str]],
                 read: Callable[[Path], T]) -> tuple[dict[str, Any], T]:
    """One ``scenario_load`` run of a gateway of its own (``ringlog serve`` in a temporary
    directory) while
    ``recorder(server_pid, out)``, a command line (perf), started first and waited for,
    records beside it into the file ``out``; the load generator's result and ``read(out)``
    (before the directory goes)."""
    with tempfile.TemporaryDirectory(dir=".") as d:
        peer = _gateway(d, a.release, a.connections)
        out = Path(d) / "recorded"
        try:
            perf = subprocess.Popen(recorder(peer.pid, out))
            doc, _ = measure(scenario_load(a, peer.port, peer.pid))
            perf.wait()
        finally:
            peer.stop()
        return doc, read(out)


def drive_unmeasured(cfg: LoadConfig) -> list[Any]:
    """Offers ``cfg``'s load without the load generator's summary (the scripts that read each
    order's send and answer times themselves); returns the connections, closed."""
    from ringlog.loadgen import _Conn, _drive, plan_load

    conns = [_Conn(cfg, cfg.tokens[k], p) for k, p in enumerate(plan_load(cfg))]
    try:
        _drive(cfg, conns)
    finally:
        for c in conns:
            c.sock.close()
    return conns


def _run_once(peer: _Peer, conns: int, rate: float, duration: float, warmup: float
              ) -> tuple[dict[str, Any], np.ndarray]:
    """One load generator run against ``peer`` (make bench's send tick for ``conns``)."""
    return measure(bench_load(peer.port, peer.pid, conns, rate, duration, warmup))


def _by_thread(docs: list[dict[str, Any]]) -> str:
    """The server's CPU per order and context switches per 1,000 orders by thread, in the
    run at the median: which stage an order's CPU goes to, and how often each one wakes."""
    med = sorted(docs, key=lambda d: d["server_cpu_ns_per_order"])[len(docs) // 2]
    threads = sorted((med.get("server_threads") or {}).items(),
                     key=lambda kv: -kv[1]["cpu_ns_per_order"])
    return "by thread (median run): " + ", ".join(
        f"{name} {v['cpu_ns_per_order'] / 1000:.2f} us ({v['switches_per_1k_orders']:.0f} cs/1k)"
        for name, v in threads if v["cpu_ns_per_order"] >= 50) if threads else ""


def _rows(series: str, rate: float, got: list[tuple[dict[str, Any], np.ndarray]]
          ) -> list[dict[str, Any]]:
    docs = [g[0] for g in got]
    pre = f"{series}_{rate_label(rate)}"
    missing = sum(d["missing"] for d in docs)
    stamped = ("answers stamped with the kernel's receive time, read at the send rounds"
               if docs[0].get("stamps") == "kernel" else "answers stamped as the generator "
               "wakes for them")
    lost = [why for d in docs for why in d["connections_lost"]]
    note = "; ".join(([f"{missing} orders unanswered"] if missing else []) +
                     ([f"{len(lost)} connections lost ({lost[0]})"] if lost else []))
    rows = [{"target": "gateway", "name": f"{pre}_orders_per_s", "unit": "orders/s",
             **summarize([d["achieved_rate"] for d in docs]),
             **({"note": note} if note else {})},
            {"target": "gateway", "name": f"{pre}_answered_pct", "unit": "%",
             **summarize([100.0 * d["answered"] / d["sent"] for d in docs])},
            {"target": "gateway", "name": f"{pre}_server_cpu_per_order", "unit": "ns",
             **summarize([d["server_cpu_ns_per_order"] for d in docs]),
             "note": "the peer process's CPU (all threads) over the run / orders; "
                     + _by_thread(docs)},
            {"target": "gateway", "name": f"{pre}_client_cpu_per_order", "unit": "ns",
             **summarize([d["client_cpu_ns_per_order"] for d in docs]),
             "note": f"the load generator's own process CPU / orders ({stamped})"},
            {"target": "gateway", "name": f"{pre}_backlog_growth", "unit": "orders",
             **summarize([d["backlog_last_third"] - d["backlog_first_third"] for d in docs]),
             "note": "unanswered orders: median of the last third of the run minus the first"}]
    achieved = [d["achieved_rate"] for d in docs]  # answered orders/s of each run
    if past_capacity(rate, achieved):  # every figure of these runs was taken past capacity
        for r in rows:
            r["past_capacity"] = True
    return rows + latency_rows("gateway", series, rate, [g[1] for g in got],
                               note="round trip: intended send -> first answer "
                                    f"(CO-corrected; {stamped})",
                               achieved=achieved)


def run(runs: int = 3, smoke: bool = False, peers: dict | None = None,
        connections: tuple[int, ...] = (8, 1)) -> list[dict]:
    """Throughput at 200k/s on 8 connections and latency at 50k/s on one (``connections``
    picks the series), against the gateway and the echo peer alternately."""
    # (connections, offered rate, seconds, warmup, gateway release modes)
    plan = ([(1, 2_000.0, 0.3, 0.05, ("durable",))] if smoke else
            [p for p in [(8, 200_000.0, 30.0, 5.0, ("durable",)),
                         (1, 50_000.0, 10.0, 2.0, ("durable", "immediate"))]
             if p[0] in connections])
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="ringlog-gw-", dir=".") as d:
        sync_p99 = fdatasync_p99(d, 100 if smoke else 500)
        for conns, rate, duration, warmup, releases in plan:
            kinds = [*releases, "echo"]
            got: dict[str, list] = {k: [] for k in kinds}
            for r in range(runs):
                for kind in kinds[::-1] if r % 2 else kinds:
                    sub = Path(d) / f"{kind}-{conns}-{r}"
                    sub.mkdir()
                    peer = _echo() if kind == "echo" else _gateway(str(sub), kind, conns)
                    try:
                        got[kind].append(_run_once(peer, conns, rate, duration, warmup))
                    finally:
                        err = peer.stop()
                    if got[kind][-1][0]["connections_lost"] and err:
                        print(f"bench_gateway: {kind} peer's stderr: {err}", file=sys.stderr)
            echo = _rows(f"echo_{conns}conn", rate, got["echo"])
            by_name = {row["name"]: row for row in echo}
            for release in releases:
                series = f"gateway_{conns}conn" + ("" if release == "durable" else
                                                  f"_release_{release}")
                gw = _rows(series, rate, got[release])
                for row in gw:
                    twin = by_name.get(row["name"].replace(series, f"echo_{conns}conn", 1))
                    if twin and twin.get("median") and row.get("median"):
                        row.setdefault("ratios", {})["echo"] = row["median"] / twin["median"]
                rows += gw
            rows += echo
    rows.append({"target": "gateway", "name": "fdatasync_4k_p99", "unit": "ns",
                 **summarize([sync_p99]),
                 "note": "4 KiB pwrite + fdatasync on the benchmark's file system, same run"})
    p99 = next((r for r in rows if r["name"] == "gateway_1conn_latency_50k_per_s_p99"), None)
    if p99 is not None and p99.get("median"):
        # the rule: < 1 ms, or fdatasync p99 + 0.3 ms where that p99 exceeds 0.7 ms
        target = max(1_000_000.0, sync_p99 + 300_000.0)
        rows.append({"target": "gateway", "name": "gateway_1conn_50k_p99_of_target",
                     "unit": "x", **summarize([v / target for v in p99["runs"]]),
                     "note": f"p99 round trip / {target / 1e6:.2f} ms (max of 1 ms and the "
                             "same run's fdatasync p99 + 0.3 ms)"})
    return rows


if __name__ == "__main__":
    print(json.dumps(run(runs=1, smoke="--smoke" in sys.argv), indent=1))

GOALS = [
    {"goal": ">= 200k orders/s sustained (8 connections, 200k offered for 30 s, mixed flow): "
             "answered at >= 99% of the offered rate",
     "row": "gateway_8conn_200k_orders_per_s", "min": 198_000,
     "why": ("the server needs ~5-6 us of CPU per order over its threads (see the server CPU "
            "row's note) and shares two cores with the load generator")},
    {"goal": ">= 99% answered at 200k/s offered (8 connections)",
     "row": "gateway_8conn_200k_answered_pct", "min": 99.0,
     "why": "answers lag while the server is saturated"},
    {"goal": "p99 round trip < 10 ms at 200k/s (8 connections, CO-corrected)",
     "row": "gateway_8conn_latency_200k_per_s_p99", "max": 10_000_000,
     "why": ("at 200k/s the server takes ~0.85-1.0 of the 2 cores (~4.2-4.8 us per order) "
            "beside the generator's ~0.25: answers queue behind bursts (p50 ~1.5-2.7 ms); "
            "the journal's segment preparation no longer takes a whole CPU in bursts "
            "(docs/processor.md step 15: p99 17.3 -> 4.15 ms in three interleaved pairs). "
            "The three runs of 2026-12-02 06:41 read 7.96, 16.1 and 70.8 ms, in an hour when "
            "the echo peer's own p99 read 1.25-5.66 ms and interleaved A/B pairs of one build "
            "8-118 ms (docs/gateway-design.md, eighteenth round); those of 03:55 read "
            "7.94-18.8 ms, median 9.99; those of 09:12, after segments were zero-filled "
            "ahead (docs/processor.md step 27: p99 3.40 -> 2.21 ms in five interleaved "
            "pairs), 2.88-6.15 ms; those of 18:40 (the generator's tick 1,000 us: up to a "
            "tick more of wait before the send, counted) 6.32-49.4 ms, in an hour when the "
            "echo peer's own p99 read 6.04-13.8 ms (758 us at 09:12): the gateway 0.75x "
            "the echo peer's p99 in that run")},
    {"goal": "p99 round trip < 1 ms (or fdatasync p99 + 0.3 ms) at 50k orders/s, 1 connection, "
             "durable release",
     "row": "gateway_1conn_50k_p99_of_target", "max": 1.0,
     "why": ("at 50k/s on one connection a wake-up carries a few orders, so per-wake-up costs "
            "dominate: ~17 us of server CPU per order over the gateway's thread (~10 us: "
            "it also runs the engine, driven topology) and the input fdatasync thread (~6.2 "
            "us: an fdatasync every ~4 orders, each ~25-30 us of guest CPU in VM exits; "
            "~7.1 before the durable mark went by pwrite(), docs/gateway-design.md twelfth "
            "round), ~220-300 switches per 1,000 orders each; they queue behind each other "
            "and the generator. The p99 follows the fdatasync cadence, not CPU contention: "
            "a 200 us pause between group commits saved a quarter of the CPU and doubled "
            "the p99 (1.85 -> 3.68 ms). Release immediate in the same run, the next rows. "
            "The 30 s runs of 2026-12-01 14:00 read 1.93-2.4 ms, those of 19:07 1.46-1.98 "
            "ms and of 19:47 1.53-8.25 ms (release immediate 0.67-0.98 ms); interleaved "
            "10 s pairs read 1.10-1.27 "
            "ms, and 1.00-1.13 ms after docs/processor.md step 16; "
            "now and then a run has a stall of 50-200 ms, not explained yet (perf sched of "
            "such runs shows perf itself and kdamond taking the CPUs: "
            "docs/gateway-design.md). Zero-filled segments (docs/processor.md step 27: no "
            "inode write per group commit) took interleaved 10 s pairs of 2026-12-02 from "
            "1.72 to 1.47 ms and 1.40 to 1.30 ms, and in a noisier hour from 2.89 to 4.34 "
            "ms (p50 0.64 -> 0.60); the 30 s runs of 09:12 read 1.67-3.35x "
            "the target (fdatasync p99 alone 214 us, so 1 ms), release immediate 0.89-1.0 "
            "ms: most of the tail is this hour's scheduling, not the durability wait. The "
            "runs of 18:40 read 11.3-11.8x (11.8 ms), in an hour when the echo peer's own "
            "one-connection p99 read 4.29-6.49 ms (422 us at 09:12) and its server 8.3 us "
            "of CPU per order (4.1 at 09:12): the gateway 1.85x the echo peer's p99, "
            "release immediate 9.38 ms")},
    {"goal": "server CPU per order <= 3 us (process CPU, all threads, 200k/s run)",
     "row": "gateway_8conn_200k_server_cpu_per_order", "max": 3_000,
     "why": ("per thread in the row's note: the gateway's thread ~2.8 us (was ~4.3: the "
            "read and per-iteration paths in C, docs/gateway-design.md ninth round, and the "
            "engine's cheaper commands, docs/processor.md step 14; it runs uvloop, the "
            "sessions and the engine with its journal appends), the input fdatasync thread "
            "~1.1 us (back-to-back group commits: ~3,500 fdatasyncs a second at ~60 us of "
            "guest CPU each in this VM's device path whatever the rate; O_DIRECT with "
            "RWF_DSYNC is no cheaper, bench/fdatasync_cost.py), the output journal's "
            "writer ~0.3 us: `ringlog serve` writes it with O_DIRECT (docs/processor.md "
            "step 25: its sync thread, ~0.35-0.95 us when the journal went through the page "
            "cache, now has nothing to write back; the server 2-5% less CPU per order in "
            "interleaved pairs); the echo peer's server alone costs ~0.63-0.76 us per order "
            "in the same runs (docs/gateway-design.md, fifteenth round). The runs of "
            "2026-12-02 09:12 read 4.66-4.82 us (06:41: 4.15); interleaved pairs of that "
            "hour read 4.69 us for the build before step 27 (zero-filled segments: the "
            "input sync thread -13%; the gateway's thread +7%, its socket writes following "
            "the faster syncs) and 4.65 after it; the runs of 18:40 (1,000 us generator "
            "rounds) 3.81-4.49 us")},
    {"goal": "the load generator <= 1 us of its own CPU per order (8 connections, 200k/s)",
     "row": "gateway_8conn_200k_client_cpu_per_order", "max": 1_000,
     "why": ("~90% of its CPU is the kernel's (perf: the loopback TCP path of its sends, "
            "which runs the server's receive, and the switches of its wakes). Reading "
            "answers only at its 500 us send rounds, stamped with the kernel's receive time "
            "(`LoadConfig.stamps='kernel'`), took it to ~1.0 us (0.73-0.90x per pair in four "
            "sets, bench/bench_loadgen.py --stamps wake,kernel) and left the gateway's CPU "
            "unchanged in three of them, but the gateway's p99 median came out higher in all "
            "four (the generator's ACKs wait for the rounds too), so make bench stamps "
            "answers as the generator wakes for them (docs/gateway-design.md, eighteenth "
            "round). The runs of 2026-12-02 09:12 read 1.37-1.40 us (500 us send rounds), "
            "with the echo peer's generator at 0.98-1.04 us in the same runs; since "
            "2026-12-02 18:40 make bench sends in 1,000 us rounds at 8 connections (25 orders "
            "a send per connection: half the sends, each segment's loopback receive charged "
            "to the sender; bench/gateway_ab.py --ticks 500,1000, two sets of 4 pairs: "
            "0.85x and 0.91x; the wait for a round is in the CO-corrected latency): 0.82-1.06 "
            "us, the echo peer's generator 0.70-0.93 us in the same runs "
            "(docs/gateway-design.md, twenty-first round)")},
]
