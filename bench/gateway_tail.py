"""What the slowest 1% of a gateway run's orders wait for: one run of ``ringlog serve`` under
the load generator (in this process) with ``perf sched record -a -k CLOCK_MONOTONIC`` (every
task on every CPU, on the clock the generator stamps its orders with), then the intervals in
which orders slower than the run's p99 were in flight (intended send to first answer, merged)
against what ran and what waited in them: per server thread its run time and its scheduling
delay (runnable, waiting for a CPU), the generator's, and the other processes' run time on
the two CPUs. The same figures over the whole measured run say what is normal; the slowest
intervals are listed.

    python bench/gateway_tail.py [durable|immediate] [CONNECTIONS] [RATE] [SECONDS]

Needs ``perf`` (software scheduler events work in this VM).
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import bench_gateway as bg

# perf sched timehist: time, [cpu], task[tid/pid], wait, sch delay, run (ms)
LINE = re.compile(r"^\s*(\d+\.\d+)\s+\[(\d+)\]\s+(.+?)\[(\d+)(?:/(\d+))?\]\s+"
                  r"([\d.]+)\s+([\d.]+)\s+([\d.]+)")


def _spans(text: str) -> list[tuple[int, int, int, str, int, float]]:
    """``(end ns, run ns, sched delay ns, task, pid, 0)`` of each switch-out: the task ran
    [end - run, end] after being runnable for the delay before that."""
    out = []
    for ln in text.splitlines():
        m = LINE.match(ln)
        if not m:
            continue
        end = int(float(m.group(1)) * 1e9)
        pid = int(m.group(5) or m.group(4))
        out.append((end, int(float(m.group(8)) * 1e6), int(float(m.group(7)) * 1e6),
                    m.group(3).strip(), pid, 0.0))
    return out


def _merge(starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for s, e in sorted(zip(starts.tolist(), ends.tolist(), strict=True)):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def _account(spans, windows, server_pid):
    """Per task key: run ns and sched-delay ns inside the windows (server threads by name,
    other processes as 'other:<name>')."""
    run: collections.Counter[str] = collections.Counter()
    delay: collections.Counter[str] = collections.Counter()
    worst: collections.Counter[str] = collections.Counter()
    starts = np.array([w[0] for w in windows], np.int64)
    for end, r, d, task, pid, _ in spans:
        key = task if pid == server_pid else "loadgen" if pid == os.getpid() else \
            "other:" + task.split(":")[0][:16]
        if task.startswith("<idle>") or task.startswith("swapper"):
            continue
        lo = end - r - d
        i = max(0, int(np.searchsorted(starts, lo, "right")) - 1)
        while i < len(windows) and windows[i][0] < end:
            w0, w1 = windows[i]
            run[key] += _overlap(end - r, end, w0, w1)
            dd = _overlap(lo, end - r, w0, w1)
            delay[key] += dd
            worst[key] = max(worst[key], dd)
            i += 1
    return run, delay, worst


def main() -> None:
    """Runs once and prints the figures."""
    a = bg.scenario_args(__doc__, 10.0, 4)
    with tempfile.TemporaryDirectory(dir=".") as d:
        peer = bg._gateway(d, a.release, a.connections)
        data = Path(d) / "sched.data"
        try:
            perf = subprocess.Popen(["perf", "sched", "record", "-q", "-a", "-k",
                                     "CLOCK_MONOTONIC", "-o", str(data), "--", "sleep",
                                     str(a.seconds + 1)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            cfg = bg.scenario_load(a, peer.port)
            conns = bg.drive_unmeasured(cfg)
            perf.wait()
        finally:
            peer.stop()
        text = subprocess.run(["perf", "sched", "timehist", "-i", str(data)],
                              capture_output=True, text=True).stdout
    intended = np.concatenate([c.intended for c in conns])
    done = np.concatenate([c.done for c in conns])
    t0 = int(intended.min()) + 2_000_000_000
    keep = (intended >= t0) & (done > 0)
    lat, at, fin = done[keep] - intended[keep], intended[keep], done[keep]
    p50, p99 = np.percentile(lat, [50, 99])
    slow = lat > p99
    windows = _merge(at[slow], fin[slow])
    whole = [(t0, int(fin.max()))]
    spans = _spans(text)
    print(f"p50 {p50 / 1e6:.2f} ms, p99 {p99 / 1e6:.2f} ms, max {lat.max() / 1e6:.1f} ms; "
          f"{slow.sum()} slow orders in {len(windows)} intervals covering "
          f"{sum(e - s for s, e in windows) / 1e6:.0f} ms of {(whole[0][1] - t0) / 1e6:.0f} ms; "
          f"{len(spans)} switches recorded")
    for title, ws in (("whole run", whole), ("slow intervals", windows)):
        span = sum(e - s for s, e in ws) or 1
        run, delay, worst = _account(spans, ws, peer.pid)
        print(f"{title} (per ms of interval: run us / sched delay us, longest delay ms):")
        keys = sorted(set(run) | set(delay), key=lambda k: -(run[k] + delay[k]))[:12]
        for k in keys:
            print(f"  {k:28s} {1e3 * run[k] / span:7.1f} / {1e3 * delay[k] / span:7.1f}  "
                  f"{worst[k] / 1e6:6.2f}")
    top = sorted(windows, key=lambda w: w[0] - w[1])[:5]
    for w0, w1 in top:
        run, delay, worst = _account(spans, [(w0, w1)], peer.pid)
        srv = sorted(((k, delay[k]) for k in delay if not k.startswith("other:")),
                     key=lambda kv: -kv[1])[:3]
        oth = sorted(((k, run[k]) for k in run if k.startswith("other:")),
                     key=lambda kv: -kv[1])[:3]
        print(f"interval at {(w0 - t0) / 1e9 + 2:.2f} s, {(w1 - w0) / 1e6:.1f} ms: server "
              "delays " + ", ".join(f"{k} {v / 1e6:.1f} ms" for k, v in srv) +
              "; others ran " + ", ".join(f"{k[6:]} {v / 1e6:.1f} ms" for k, v in oth))


if __name__ == "__main__":
    main()
