"""The load generator's own CPU per order, this tree's loop against another revision's, in
interleaved pairs (issue #16).

::

    for each run: for each peer (echo, gateway): for each scenario (8 conns 200k/s, 1 conn 50k/s):
        old (``git show REV:src/ringlog/loadgen.py``, imported as a module) then new
    ─► per (peer, scenario, loop): median and spread of client_cpu_ns_per_order, and the new/old
       ratio of each pair

``.venv/bin/python bench/bench_loadgen.py --old REV --runs 3 [--seconds 3]
[--tick-us 100]``; without
``--old`` only this tree's loop runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gateway import TOKENS, _echo, _gateway

import ringlog.loadgen as new_loadgen

SCENARIOS = ((8, 200_000.0), (1, 50_000.0))


def load_revision(rev: str, directory: str) -> Any:
    """``ringlog/loadgen.py`` as of ``rev`` as a module (its relative imports made absolute)."""
    text = subprocess.run(["git", "show", f"{rev}:src/ringlog/loadgen.py"], check=True,
                          capture_output=True, text=True).stdout.replace("from .", "from ringlog.")
    path = Path(directory) / "loadgen_old.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("loadgen_old", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["loadgen_old"] = mod  # msgspec resolves the annotations through it
    spec.loader.exec_module(mod)
    return mod


def one(mod: Any, port: int, pid: int, conns: int, rate: float, seconds: float,
        tick_us: int) -> dict[str, Any]:
    """One run of ``mod``'s generator; its result document with the process's user and
    system CPU (s) over the whole run added."""
    cfg = mod.LoadConfig(port=port, tokens=TOKENS[:conns], rate=rate, connections=conns,
                         duration=seconds, warmup=min(1.0, seconds / 3), pattern="mixed",
                         server_pid=pid, drain_timeout=30.0, tick_us=tick_us)
    t0 = os.times()
    doc = mod.run_load(cfg)
    t1 = os.times()
    return {**doc, "user_s": t1.user - t0.user, "system_s": t1.system - t0.system}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", help="the git revision whose loop to compare with")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--peers", default="echo,gateway")
    ap.add_argument("--tick-us", type=int, default=100)
    a = ap.parse_args()
    got: dict[tuple[str, int, float, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        loops = ([("old", load_revision(a.old, tmp))] if a.old else []) + [("new", new_loadgen)]
        for run in range(a.runs):
            for peer_name in a.peers.split(","):
                for conns, rate in SCENARIOS:
                    for name, mod in loops:
                        gw = Path(tmp) / f"gw{run}{conns}{name}"
                        if peer_name != "echo":
                            gw.mkdir()
                        peer = _echo() if peer_name == "echo" else _gateway(str(gw), "immediate")
                        try:
                            doc = one(mod, peer.port, peer.pid, conns, rate, a.seconds, a.tick_us)
                        finally:
                            peer.stop()
                        got.setdefault((peer_name, conns, rate, name), []).append(
                            doc["client_cpu_ns_per_order"])
                        print(f"run {run} {peer_name} {conns}c {rate:.0f}/s {name}: "
                              f"{doc['client_cpu_ns_per_order']:.0f} ns/order, answered "
                              f"{doc['answered']}/{doc['sent']}, p50 "
                              f"{(doc['latency_ns'] or {}).get('p50', 0) / 1000:.0f} us, "
                              f"run user/sys "
                              f"{doc['user_s']:.2f}/{doc['system_s']:.2f} s",
                              flush=True)
    for (peer_name, conns, rate, name), v in sorted(got.items()):
        line = (f"{peer_name} {conns}c {rate:.0f}/s {name}: median {statistics.median(v):.0f} "
                f"ns/order (min {min(v):.0f}, max {max(v):.0f}, n={len(v)})")
        old = got.get((peer_name, conns, rate, "old"))
        if name == "new" and old:
            ratios = [n / o for n, o in zip(v, old, strict=True)]
            line += f"; new/old per pair {', '.join(f'{r:.2f}' for r in ratios)}"
        print(line)


if __name__ == "__main__":
    main()
