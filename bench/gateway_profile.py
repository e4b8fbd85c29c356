"""Where the gateway's loop thread spends its CPU: one run of ``ringlog serve`` under the load
generator with ``perf record -e cpu-clock -g`` on the server's main thread (the gateway's
event loop) only, then the self time by function, the inclusive time of the compiled entry
points, and the time in system calls by call and caller. Build with ``RINGLOG_SYMBOLS=1``
for the Cython functions' names (a stripped build shows their addresses in the
``ringlog/_*.so`` objects only). Needs ``perf``.

    python bench/gateway_profile.py [durable|immediate] [CONNECTIONS] [RATE] [SECONDS]
"""

from __future__ import annotations

import collections
import subprocess
import sys
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
    def script(data: Path) -> str:
        cmd = ["perf", "script", "-i", str(data)] + (["-F", ",".join(fields)] if fields else [])
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    return bg.record_under(a, lambda pid, data: [
        "sh", "-c", f"sleep 2; exec perf record -q -e cpu-clock -F 4000 -g {target} {pid} "
        f"-o {data} -- sleep {a.seconds - 3}"], script)


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
    print("in system calls, by the kernel function under the entry and the caller above it:")
    for (kfn, caller), k in _by_syscall(samples).most_common(TOP // 2):
        print(f"  {100 * k / n:5.1f}%  {kfn} <- {caller}")
    names = [[f.split(" [")[0] for f in s] for s in samples]
    writes = [f for f in names if "ksys_write" in f]
    rx = sum(1 for f in writes if "tcp_v4_rcv" in f)  # loopback: the peer's receive path
    woke = sum(1 for f in writes if "sock_def_readable" in f)
    print(f"write(): {100 * len(writes) / n:.1f}%, of which the receiving socket's TCP path "
          f"(loopback: the generator's side, run on this thread) {100 * rx / n:.1f}% and "
          f"waking its reader {100 * woke / n:.1f}%")


def _by_syscall(samples: list[list[str]]) -> collections.Counter[tuple[str, str]]:
    """Samples inside a system call, counted by (the syscall's kernel function, the
    user-space frame that made it: libc's wrapper, e.g. ``syscall`` for ringlog's raw
    futex calls, ``pthread_cond_signal`` for the GIL's hand-over)."""
    out: collections.Counter[tuple[str, str]] = collections.Counter()
    for s in samples:
        names = [f.split(" [")[0] for f in s]
        entry = [i for i, f in enumerate(names) if f.startswith("entry_SYSCALL")]
        if entry and entry[-1] >= 2:
            i = entry[-1]
            out[(names[i - 2], names[i + 1] if i + 1 < len(names) else "?")] += 1
    return out


if __name__ == "__main__":
    main()
