"""Where the gateway's loop thread spends its CPU: one run of ``ringlog serve`` under the load
generator with ``perf record -e cpu-clock -g`` on the server's main thread (the gateway's
event loop) only, then the self time by function, and the inclusive time of the compiled
entry points. Build with ``RINGLOG_SYMBOLS=1`` for the Cython functions' names (a stripped
build shows their addresses in the ``ringlog/_*.so`` objects only). Needs ``perf``.

    python bench/gateway_profile.py [durable|immediate] [CONNECTIONS] [RATE] [SECONDS]
"""

from __future__ import annotations

import collections
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import bench_gateway as bg

TOP = 40


def _samples(script: str) -> list[list[str]]:
    """Each sample's call chain (innermost first) as ``function [object]`` strings."""
    out = []
    for block in script.split("\n\n"):
        lines = block.strip().splitlines()[1:]
        chain = []
        for ln in lines:
            parts = ln.split(None, 1)
            if len(parts) < 2:
                continue
            fn, _, obj = parts[1].rpartition(" (")
            fn = fn.split("+0x")[0]
            chain.append(f"{fn} [{Path(obj.rstrip(')')).name}]")
        if chain:
            out.append(chain)
    return out


def record(a: Any, target: str, fields: tuple[str, ...] = ()) -> tuple[dict, str]:
    """One run of ``ringlog serve`` under the load generator (scenario ``a``) with ``perf
    record -g`` of the server's ``target`` ("-t": its main thread, "-p": every thread) over
    the run less its first two seconds and the last; the generator's result and ``perf
    script`` of the samples (``fields``: its -F list, default perf's own)."""
    with tempfile.TemporaryDirectory(dir=".") as d:
        peer = bg._gateway(d, a.release, 8192 if a.connections == 1 else 1024)
        data = Path(d) / "perf.data"
        try:
            doc = bg.measure_under(a, peer, [
                "sh", "-c", f"sleep 2; exec perf record -q -e cpu-clock -F 4000 -g "
                f"{target} {peer.pid} -o {data} -- sleep {a.seconds - 3}"])
        finally:
            peer.stop()
        cmd = ["perf", "script", "-i", str(data)] + (["-F", ",".join(fields)] if fields else [])
        script = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return doc, script


def main() -> None:
    """Runs once and prints the main thread's profile."""
    a = bg.scenario_args(__doc__, 10.0, 3)
    doc, script = record(a, "-t")
    samples = _samples(script)
    n = len(samples) or 1
    lat = doc["latency_ns"] or {}
    main_ns = (doc["server_threads"] or {}).get("main", {}).get("cpu_ns_per_order", 0.0)
    print(f"{len(samples)} samples; {doc['achieved_rate']:.0f} answered/s; main thread "
          f"{main_ns:.0f} ns per order; p50 {lat.get('p50', 0) / 1e6:.2f} ms, "
          f"p99 {lat.get('p99', 0) / 1e6:.2f} ms")
    self_t = collections.Counter(s[0] for s in samples)
    incl: collections.Counter[str] = collections.Counter()
    for s in samples:
        incl.update(set(s))
    print("self:")
    for fn, k in self_t.most_common(TOP):
        print(f"  {100 * k / n:5.1f}%  {fn}")
    print("inclusive (ringlog's compiled functions and the Python objects' C API):")
    for fn, k in incl.most_common():
        if "_gateway" in fn or "_wire" in fn or "_release" in fn or "_ring" in fn:
            print(f"  {100 * k / n:5.1f}%  {fn}")


if __name__ == "__main__":
    main()
