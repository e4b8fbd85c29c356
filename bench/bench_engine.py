"""Matching engine benchmarks: the engine alone, per-command latency, and behind the processor.

    engine-only:   numpy COMMAND_DTYPE array ──Engine.process_commands (one C loop)──► books
                   (reports and market data built, counted, not emitted)
    full pipeline: producer ──publish_many──► input ring ──► journaller (group commit) ──►
                   Engine handler (processor loop) ──► breaker ──► output ring ──► output journal

    engine_adds_throughput        passive GTC limits, nothing trades
    engine_cancels_throughput     cancels of those orders in random order
    engine_matches_throughput     a resting sell then an IOC buy that takes it, repeated
    engine_mixed_throughput       the realistic mix of ringlog.engine.flow.mixed_flow (L1 + L2 on)
    engine_mixed_no_market_data   the same with market data off
    engine_command_service_time_* ns per command on the mixed flow, back to back (clock reads
                                  around each)
    processor_engine_journaled    the mixed flow through the full pipeline
Peers on the same flows: ``cython-orderbook`` from PyPI (adds, cancels, matches, mixed; it has no
IOC/FOK/post-only/STP or modify, so those run as plain limits with an IOC's rest cancelled after,
and a modify as cancel + add) and the pure-Python reference book of tests/reference_book.py
(mixed, a shorter run: it re-sorts the book on every match).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from typing import Any

import numpy as np

from ringlog.bench.latency import percentiles
from ringlog.bench.stats import summarize
from ringlog.engine import Command, Engine, OrderType, Side, Tif
from ringlog.engine.flow import adds_flow, cancels_flow, demo_config, matches_flow, mixed_flow


def _rate(cmds: np.ndarray, types: Any, md: bool = True,
          before: tuple[np.ndarray, int] | None = None) -> float:
    """Commands per second of ``process_commands`` on a fresh engine (after ``before``)."""
    engine = Engine(demo_config(market_data=md, max_orders=1 << 21))
    if before is not None:
        engine.process_commands(*before)
    t0 = time.perf_counter()
    engine.process_commands(cmds, types)
    return len(cmds) / (time.perf_counter() - t0)


def _latencies(cmds: np.ndarray, types: np.ndarray) -> dict[str, Any]:
    """Percentiles of the wall time of each command, back to back (service time)."""
    lat = np.zeros(len(cmds), np.int64)
    Engine(demo_config(max_orders=1 << 21)).process_commands(cmds, types, latencies=lat)
    return percentiles(lat)


def _pipeline(n: int, cmds: np.ndarray, types: np.ndarray) -> tuple[float, dict]:
    """Commands per second through the processor (default ProcessorConfig: topology auto,
    blocking waits, group commit, durable release) with a per-account breaker, fed by the
    bulk producer (``publish_records``: the command array in one call, no Python object per
    command); and the CPU figures per command. The processor is the engine flow's
    (``pipeline_ab.engine_processor``), as every A/B tool builds it."""
    from pipeline_ab import engine_processor

    from ringlog.bench.cpu import CpuMeter

    d = tempfile.mkdtemp(prefix="ringlog-engine-", dir=".")
    try:
        p = engine_processor(d)
        p.start()
        time.sleep(0.3)  # let the journals prepare their next segment
        ts = np.arange(n, dtype=np.int64) * 1000
        tids = types.astype(np.uint32)
        with CpuMeter() as m:
            t0 = time.perf_counter()
            p.publish_records(cmds, tids, timestamp_ns=ts)
            p.drain(timeout=900)
            dt = time.perf_counter() - t0
        p.stop()
        return n / dt, m.per_event(n)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _engine_alone(cmds: np.ndarray, types: np.ndarray) -> tuple[float, dict]:
    """The same flow through the engine alone (one C loop), with its CPU per command."""
    from ringlog.bench.cpu import CpuMeter

    engine = Engine(demo_config(max_orders=1 << 21))
    with CpuMeter(poll=None) as m:
        t0 = time.perf_counter()
        engine.process_commands(cmds, types)
        dt = time.perf_counter() - t0
    return len(cmds) / dt, m.per_event(len(cmds))


def _pipeline_rows(runs: int, n: int) -> list[dict[str, Any]]:
    """The engine behind the processor vs the engine alone, interleaved round by round on
    the same flow: ratio of rates and of CPU per command (the loop thread's vs the engine
    alone's), with per-thread CPU and context switches per 1,000 commands."""
    import statistics

    from ringlog.bench.cpu import summary_line

    cmds, types = mixed_flow(n, seed=21)
    pipe, alone = [], []
    for _ in range(runs):
        pipe.append(_pipeline(n, cmds, types))
        alone.append(_engine_alone(cmds, types))
    ratios = [a[0] / b[0] for a, b in zip(pipe, alone, strict=True)]
    loop_cpu = [a[1]["threads"].get("rl-loop", {}).get("cpu_ns", 0.0) /
                max(b[1]["cpu_ns_total"], 1e-9) for a, b in zip(pipe, alone, strict=True)]
    med = sorted(pipe, key=lambda x: x[0])[len(pipe) // 2][1]
    amed = sorted(alone, key=lambda x: x[0])[len(alone) // 2][1]

    def cpu(d: dict) -> dict:
        return {"threads_ns_per_event": {k: round(v["cpu_ns"], 1) for k, v in d["threads"].items()
                                         if v["cpu_ns"] >= 0.5},
                "total_ns_per_event": round(d["cpu_ns_total"], 1),
                "cs_per_1k_events": round(d["cs_per_1k"], 2),
                "cpus_busy": round(d["cpu_utilisation"], 2)}

    row = _row("processor_engine_journaled", "ops/s", [r for r, _ in pipe],
               {"engine_alone": statistics.median(r for r, _ in alone)},
               note="default ProcessorConfig (group commit, durable release, blocking waits, "
                    "topology auto); per-account breaker; bulk producer (publish_records); "
                    f"{n:,} mixed commands; ratios are medians of {runs} interleaved rounds")
    row["ratios"] = {"engine_alone": statistics.median(ratios),
                     "loop_cpu_vs_engine_alone_cpu": statistics.median(loop_cpu)}
    row["ratio_runs"] = {"engine_alone": {"min": min(ratios), "max": max(ratios),
                                          "runs": ratios},
                         "loop_cpu_vs_engine_alone_cpu": {"min": min(loop_cpu),
                                                          "max": max(loop_cpu),
                                                          "runs": loop_cpu}}
    row["cpu"] = cpu(med)
    row["note"] += f"; {summary_line(med)} (median run)"
    alone_row = _row("engine_alone_same_flow", "ops/s", [r for r, _ in alone],
                     note=f"{summary_line(amed)} (median run)")
    alone_row["cpu"] = cpu(amed)
    return [row, alone_row]


# -- peers ------------------------------------------------------------------------------------
def _peer_cython_orderbook(cmds: np.ndarray, types: Any,
                           before: tuple[np.ndarray, Any] | None = None) -> float | str:
    """Commands per second of cython-orderbook on the same flow (one OrderBook per symbol)."""
    try:
        from cython_orderbook import Order, OrderBook, OrderSide
    except ImportError as e:
        return f"cython-orderbook not installed ({e}); pip install 'ringlog[bench]'"
    books: dict[int, Any] = {}
    ids: dict[int, tuple[Any, str, Any]] = {}     # our id -> (book, peer id, peer side)
    sides = {Side.BUY: OrderSide.BID, Side.SELL: OrderSide.ASK}

    def play(rows: list[tuple], kinds: list[int]) -> None:
        for (oid, price, qty, _acct, sym, side, otype, tif, _fl, _stp, _pad, _tag), t in zip(
                rows, kinds, strict=True):
            if t == Command.NEW:
                if qty <= 0 or side not in sides or sym > 100:
                    continue
                book = books.get(sym) or books.setdefault(sym, OrderBook())
                if otype == OrderType.MARKET:
                    book.add_market_order(Order(side=sides[side], original_quantity=qty))
                    continue
                o = Order(side=sides[side], price=price, original_quantity=qty)
                book.add_limit_order(o)
                if tif != Tif.GTC:
                    book.cancel_order(o.order_id)
                else:
                    ids[oid] = (book, o.order_id, sides[side])
            else:
                got = ids.pop(oid, None)
                if got is not None:
                    got[0].cancel_order(got[1])
                    if t == Command.MODIFY and qty > 0:   # loses priority: a new order
                        o = Order(side=got[2], price=price, original_quantity=qty)
                        got[0].add_limit_order(o)
                        ids[oid] = (got[0], o.order_id, got[2])

    def rows_of(c: np.ndarray, t: Any) -> tuple[list[tuple], list[int]]:
        kinds = [t] * len(c) if isinstance(t, int) else t.tolist()
        return c.tolist(), kinds

    if before is not None:
        play(*rows_of(*before))
    rows, kinds = rows_of(cmds, types)
    t0 = time.perf_counter()
    play(rows, kinds)
    return len(rows) / (time.perf_counter() - t0)


def _peer_reference(n: int) -> float:
    """Commands per second of the pure-Python reference book on the mixed flow."""
    from ringlog.bench.runner import bench_dir

    tests = str(bench_dir().parent / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from reference_book import RefEngine

    cmds, types = mixed_flow(n, seed=31)
    ref = RefEngine(demo_config(max_orders=1 << 21))
    payloads = [c.tobytes() for c in cmds]
    t0 = time.perf_counter()
    for t, p in zip(types.tolist(), payloads, strict=True):
        ref.apply(t, p)
    return n / (time.perf_counter() - t0)


def _row(name: str, unit: str, values: list[float], peers: dict[str, Any] | None = None,
         note: str = "") -> dict[str, Any]:
    row: dict[str, Any] = {"target": "engine", "name": name, "unit": unit, **summarize(values)}
    figures = {k: v for k, v in (peers or {}).items() if isinstance(v, float)}
    if figures:
        row["peers"] = figures
        row["ratios"] = {k: row["median"] / v for k, v in figures.items()}
    skipped = [f"{k}: {v}" for k, v in (peers or {}).items() if isinstance(v, str)]
    if note or skipped:
        row["note"] = "; ".join([note, *skipped]).strip("; ")
    return row


def run(runs: int = 3, smoke: bool = False, peers: dict | None = None) -> list[dict]:
    """Engine-only rates, latency percentiles and the full pipeline, with the peers."""
    n = 50_000 if smoke else 2_000_000
    n_peer = 20_000 if smoke else 300_000
    adds = adds_flow(n)
    cancels = cancels_flow(adds)
    matches = matches_flow(n)
    mixed, types = mixed_flow(n, seed=11)
    new = int(Command.NEW)
    rows = [
        _row("engine_adds_throughput", "ops/s", [_rate(adds, new) for _ in range(runs)],
             {"cython-orderbook": _peer_cython_orderbook(adds[:n_peer], new)}),
        _row("engine_cancels_throughput", "ops/s",
             [_rate(cancels, int(Command.CANCEL), before=(adds, new)) for _ in range(runs)],
             {"cython-orderbook": _peer_cython_orderbook(
                 cancels_flow(adds[:n_peer]), int(Command.CANCEL),
                 before=(adds[:n_peer], new))}),
        _row("engine_matches_throughput", "ops/s", [_rate(matches, new) for _ in range(runs)],
             {"cython-orderbook": _peer_cython_orderbook(matches[:n_peer], new)},
             note="half the commands rest a sell, half take it with an IOC buy"),
        _row("engine_mixed_throughput", "ops/s", [_rate(mixed, types) for _ in range(runs)],
             {"cython-orderbook": _peer_cython_orderbook(mixed[:n_peer], types[:n_peer]),
              "reference_book": _peer_reference(2_000 if smoke else 20_000)},
             note="L1 + L2 (depth 5) market data on"),
        _row("engine_mixed_no_market_data", "ops/s",
             [_rate(mixed, types, md=False) for _ in range(runs)]),
    ]
    lat = [_latencies(mixed, types) for _ in range(runs)]
    for q in ("p50", "p99", "p99.9", "max"):
        rows.append(_row(f"engine_command_service_time_{q}", "ns", [x[q] for x in lat],
                         note="mixed flow back to back; includes ~20 ns of clock reads"))
    rows += _pipeline_rows(1 if smoke else max(runs, 5), 20_000 if smoke else 2_000_000)
    return rows


if __name__ == "__main__":
    import json

    print(json.dumps(run(runs=1, smoke="--smoke" in sys.argv), indent=1))

GOALS = [
    {"goal": "engine-only >= 5M ops/s on the mixed stream (exchange-core's single-book figure)",
     "row": "engine_mixed_throughput", "min": 5e6,
     "why": "per command: a 48-byte decode, 2-4 hash probes, the match, and 2.6 reports plus L1/L2 "
            "records built; on a shared 2-core machine the figure swings with the neighbours"},
    {"goal": ">= 2M ops/s through the full pipeline (group commit, durable release, breaker, "
             "default config, bulk producer)",
     "row": "processor_engine_journaled", "min": 2e6,
     "why": ("one loop thread does the engine's work, journals the input and builds ~2.6 "
            "output records (~410 bytes: copy, CRC) and checks the breaker; the output "
            "journal's pwrite() is made behind it by the writer thread (docs/processor.md "
            "step 19), without the GIL (the engine sets nogil_events: step 24). Met in this "
            "run of 2026-12-02 00:50 (2.14M/s median of 10 runs, 1.55-2.44; 00:36: 2.32M/s; "
            "00:47: 1.92M/s, 1.47-2.54); its median run spent per command: loop 340 ns, "
            "writer 113, output sync 103, input sync 46, producer 39. On 2026-12-01: 2.19M/s "
            "at 19:45, 2.45M/s at 18:55, 1.73M/s at 16:37 (before step 22's lookahead): the "
            "machine moves the figure by ~1.5x within an hour. The run of 2026-12-02 13:20 "
            "(the host's steal time up ~25 s in that hour) read 1.97M/s, 1.23-2.38M; the "
            "input's group commit paced while nothing waits (docs/processor.md step 28) read "
            "1.04x without the pause, 0.81-1.55, in 8 interleaved rounds of the same hour "
            "(bench/flow_variants_ab.py default,lazy_0)")},
    {"goal": "through the pipeline >= 0.3x the engine alone on the same flow (same run)",
     "row": "processor_engine_journaled", "ratio": "engine_alone", "min": 0.3,
     "why": ("the engine alone is ~90-120 ns of CPU per command (9.71M ops/s, 102 ns, in "
             "this run of 00:50; 8.13M at 19:45 the day before), so 0.3x needs the loop "
             "thread at <= ~300-400 ns per command of wall time; it spends ~340-360 ns of CPU "
             "(the row below) and shares the two CPUs with ~300 ns per command of the other "
             "threads. Rounds ranged 0.18-0.29x (0.22-0.28x at 19:45). Where the loop's CPU "
             "goes (docs/processor.md step 24, perf, the nogil loop): the engine's functions "
             "~120-130 ns (its prefetch ~26 waiting for line fill buffers), the emit path "
             "~52 (the breaker's window store ~8, its key probe ~6, the first store of each "
             "output record ~12), the input's copy + CRC ~37 and pwrite() ~12-20, futex "
             "wake-ups ~19; the GIL no longer (step 24). The run of 2026-12-02 13:20, a noisy "
             "hour: 0.17x, rounds 0.13-0.24x")},
    {"goal": "the loop thread's CPU per command <= 2.5x the engine alone's",
     "row": "processor_engine_journaled", "ratio": "loop_cpu_vs_engine_alone_cpu", "max": 2.5,
     "why": ("the engine inside the pipeline cost ~1.7-2x the engine alone (~165-200 "
             "against ~100 ns per command): its id map's lines, evicted by the journal "
             "copies between commands, were waited on in new_order and release (63 and 43 "
             "ns per command inside, 40 and 12 alone). Step 22 (docs/processor.md) starts "
             "loading them 16 commands ahead (loop CPU 0.88x at 8 commands, then 0.88x again "
             "from 8 to 16, 10 rounds each): the engine's functions ~117-137 ns inside. What "
             "is left is the loop's own part (~200 ns: emit path and breaker ~52, the input's "
             "copy + CRC ~37 and pwrite() ~12-20, futex ~19, ring and batch steps); the "
             "nogil loop (step 24) took its GIL wait and ~4% of its CPU (build_ab, 10 rounds: "
             "0.96). Rounds ranged 2.54-4.08x in this run of 00:50 (2.70-3.59x at 19:45 the "
             "day before, with the engine alone at 8.13M/s against 9.71M now): the quieter "
             "the machine, the cheaper the engine alone, the higher this ratio. The run of "
             "2026-12-02 13:20 (a noisy hour): 3.52x, rounds 3.00-5.25x; the loop 335 ns per "
             "command at its median; a quiet moment of 11:55 read the loop at ~250 ns "
             "(bench/build_ab.py) and the engine alone at ~90 (2.8x). Left in the loop's "
             "system time: the breaker windows' growth through the run's first second of "
             "event time (~6 page faults per 1,000 commands)")},
    {"goal": ">= 10x the Python peer (cython-orderbook) on the mixed stream",
     "row": "engine_mixed_throughput", "ratio": "cython-orderbook", "min": 10.0,
     "why": "the peer makes Python objects per order and per trade"},
]
