"""The load generator's own CPU per order, this tree's loop against another revision's, in
interleaved pairs (issue #16).

::

    REV's loop: git archive REV (src, ext, setup.py, pyproject.toml) ─► its ext/ringlog/_loadgen.pyx
                built apart (RINGLOG_ONLY=_loadgen) and its src/ringlog/loadgen.py imported
                on top of it (both as modules of their own; this tree's _wire and the rest)
    for each run: for each peer (echo, gateway): for each scenario (8 conns 200k/s, tick 1,000 us;
        1 conn 50k/s, tick 100 us: make bench's): old then new (new then old on odd runs)
    ─► per (peer, scenario, loop): median and spread of client_cpu_ns_per_order and of the
       round trip's p50 and p99, and the new/old CPU ratio of each pair

``.venv/bin/python bench/bench_loadgen.py --old REV --runs 3 [--seconds 3] [--tick-us N]
[--release durable|immediate] [--peers echo,gateway] [--scenarios 8,1]``; without ``--old``
only this tree's loop runs; ``--stamps wake,kernel`` (no ``--old``) runs this tree's loop
once with each way of stamping answers (``LoadConfig.stamps``) and compares the second with
the first. Each line also gives the peer's CPU per order: a cost the generator sheds can
land on the server (loopback TCP charges each side part of the other's work).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gateway import TOKENS, _echo, _gateway, sender_tick_us

import ringlog.loadgen as new_loadgen

# (connections, offered orders/s): make bench's; its send tick and in-flight window follow
# from the connections (bench_gateway.sender_tick_us, inflight_window)
SCENARIOS = ((8, 200_000.0), (1, 50_000.0))
ROOT = Path(__file__).resolve().parent.parent


def _module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # msgspec resolves the annotations through it
    spec.loader.exec_module(mod)
    return mod


def load_revision(rev: str, directory: str) -> Any:
    """``ringlog/loadgen.py`` as of ``rev`` as a module (its relative imports made absolute),
    on ``rev``'s compiled loop (``ext/ringlog/_loadgen.pyx``, built in ``directory``) if it
    had one."""
    def show(path: str) -> str:
        return subprocess.run(["git", "show", f"{rev}:{path}"], check=True, cwd=ROOT,
                              capture_output=True, text=True).stdout

    text = show("src/ringlog/loadgen.py")
    if "from ._loadgen import" in text:
        tree = Path(directory) / "rev"
        archive = subprocess.run(["git", "archive", rev, "src", "ext", "setup.py",
                                  "pyproject.toml"], check=True, cwd=ROOT,
                                 capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], check=True,
                       cwd=tree, env={**os.environ, "RINGLOG_ONLY": "_loadgen"},
                       stdout=subprocess.DEVNULL)
        so = next((tree / "src" / "ringlog").glob("_loadgen.*.so"))
        _module("loadgen_old_loop._loadgen", so)  # PyInit__loadgen: the name's last part
        text = text.replace("from ._loadgen import", "from loadgen_old_loop._loadgen import")
    path = Path(directory) / "loadgen_old.py"
    path.write_text(text.replace("from .", "from ringlog."))
    return _module("loadgen_old", path)


def one(mod: Any, port: int, pid: int, conns: int, rate: float, seconds: float,
        tick_us: int, stamps: str | None = None) -> dict[str, Any]:
    """One run of ``mod``'s generator (answers stamped ``stamps`` way, if given); its result
    document with the process's user and system CPU (s) over the whole run added."""
    cfg = mod.LoadConfig(port=port, tokens=TOKENS[:conns], rate=rate, connections=conns,
                         duration=seconds, warmup=min(1.0, seconds / 3), pattern="mixed",
                         server_pid=pid, drain_timeout=30.0, tick_us=tick_us,
                         **({"stamps": stamps} if stamps else {}))
    t0 = os.times()
    doc = mod.run_load(cfg)
    t1 = os.times()
    return {**doc, "user_s": t1.user - t0.user, "system_s": t1.system - t0.system}


def _spread(v: list[float], scale: float = 1.0) -> str:
    """median [min - max] of ``v / scale``, whole units."""
    return (f"{statistics.median(v) / scale:.0f} [{min(v) / scale:.0f} - "
            f"{max(v) / scale:.0f}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", help="the git revision whose loop to compare with")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--peers", default="echo,gateway")
    ap.add_argument("--tick-us", type=int, help="every scenario's tick (default: make bench's)")
    ap.add_argument("--release", choices=("durable", "immediate"), default="durable",
                    help="the gateway's release of reports (make bench's rows: durable)")
    ap.add_argument("--stamps", help="two ways of stamping answers to compare, e.g. wake,kernel")
    ap.add_argument("--scenarios", default="8,1", help="connection counts of SCENARIOS to run")
    a = ap.parse_args()
    if a.stamps and (a.old or len(a.stamps.split(",")) != 2 or
                     not set(a.stamps.split(",")) <= {"wake", "kernel"}):
        ap.error(f"--stamps takes two of wake,kernel and no --old, got {a.stamps!r}")
    scenarios = [s for s in SCENARIOS if str(s[0]) in a.scenarios.split(",")]
    got: dict[tuple[str, int, float, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # (name, module, stamps); the second of two is compared with the first
        loops = ([(w, new_loadgen, w) for w in a.stamps.split(",")] if a.stamps else
                 ([("old", load_revision(a.old, tmp), None)] if a.old else []) +
                 [("new", new_loadgen, None)])
        for run in range(a.runs):
            for peer_name in a.peers.split(","):
                for conns, rate in scenarios:
                    for name, mod, stamps in loops[::-1] if run % 2 else loops:
                        gw = Path(tmp) / f"gw{run}{conns}{name}"
                        if peer_name != "echo":
                            gw.mkdir()
                        peer = (_echo() if peer_name == "echo" else
                                _gateway(str(gw), a.release, conns))
                        try:
                            doc = one(mod, peer.port, peer.pid, conns, rate, a.seconds,
                                      a.tick_us or sender_tick_us(conns), stamps)
                        finally:
                            peer.stop()
                        got.setdefault((peer_name, conns, rate, name), []).append(doc)
                        lat = doc["latency_ns"] or {}
                        print(f"run {run} {peer_name} {conns}c {rate:.0f}/s {name}: "
                              f"{doc['client_cpu_ns_per_order']:.0f} ns/order (peer "
                              f"{doc['server_cpu_ns_per_order'] or 0:.0f}), answered "
                              f"{doc['answered']}/{doc['sent']}, p50 "
                              f"{lat.get('p50', 0) / 1000:.0f} us, p99 "
                              f"{lat.get('p99', 0) / 1000:.0f} us, run user/sys "
                              f"{doc['user_s']:.2f}/{doc['system_s']:.2f} s", flush=True)
    first, second = [w[0] for w in loops] if len(loops) == 2 else ("old", "new")
    for (peer_name, conns, rate, name), docs in sorted(got.items()):
        cpu = [d["client_cpu_ns_per_order"] for d in docs]
        line = (f"{peer_name} {conns}c {rate:.0f}/s {name}: CPU {_spread(cpu)} ns/order, peer "
                f"{_spread([d['server_cpu_ns_per_order'] or 0 for d in docs])} ns/order, "
                f"p50 {_spread([(d['latency_ns'] or {}).get('p50', 0) for d in docs], 1e3)} us, "
                f"p99 {_spread([(d['latency_ns'] or {}).get('p99', 0) for d in docs], 1e3)} us "
                f"(n={len(docs)})")
        old = got.get((peer_name, conns, rate, first))
        if name == second and old:
            ratios = [n / o["client_cpu_ns_per_order"] for n, o in zip(cpu, old, strict=True)]
            line += f"; CPU {second}/{first} per pair {', '.join(f'{r:.2f}' for r in ratios)}"
        print(line)


if __name__ == "__main__":
    main()
