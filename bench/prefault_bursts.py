"""How hard the journal's background thread bursts while it prepares segments: a fresh
journal (group commit, 64 MiB segments, growth from the first size) appended at a steady byte
rate, and the background thread's CPU share in each 20 ms window (``/proc`` schedstat, each
window divided by its own length): the largest window, the 99th percentile and the windows
above half a CPU. Interleaved runs of this checkout and, with ``--base-src``, another source
tree (e.g. an older commit's ``src``: ``git worktree add /tmp/old <commit>``, built).

    python bench/prefault_bursts.py [--base-src /tmp/old/src] [--rate 40e6] [--seconds 6]
        [--runs 3]

On a 2-CPU machine a window near 1.0 is a whole CPU taken from the threads that answer
orders (docs/processor.md, step 15).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

WINDOW_S = 0.02
RECORD = 256


def _task_cpu_ns(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/schedstat") as f:
        return int(f.read().split()[0])


def child(rate: float, seconds: float) -> dict:
    """One run in this process: the background thread's CPU share per window."""
    from ringlog.journal import Journal

    with tempfile.TemporaryDirectory(prefix="pfb-") as d:
        j = Journal(os.path.join(d, "j"), durability="group", segment_size=64 << 20)
        tid = j.thread.native_id
        assert tid is not None
        stop = threading.Event()
        payload = b"x" * (RECORD - 32)

        def produce() -> None:
            per = 16  # small steps, as a gateway publishes: the group commit never idles
            step, t = per * RECORD / rate, time.monotonic()
            while not stop.is_set():
                for _ in range(per):
                    j.append(payload)
                t += step
                stop.wait(max(0.0, t - time.monotonic()))

        p = threading.Thread(target=produce, name="producer")
        p.start()
        shares: list[float] = []
        last_t, last_c = time.monotonic(), _task_cpu_ns(tid)
        end = last_t + seconds
        while last_t < end:
            time.sleep(WINDOW_S)
            now, c = time.monotonic(), _task_cpu_ns(tid)
            shares.append((c - last_c) / 1e9 / (now - last_t))
            last_t, last_c = now, c
        stop.set()
        p.join()
        rolls = (j.fast_rolls, j.fallback_rolls)
        j.close()
    s = sorted(shares)
    return {"max": s[-1], "p99": s[int(0.99 * (len(s) - 1))], "mean": statistics.fmean(s),
            "over_half": sum(1 for x in s if x > 0.5), "windows": len(s),
            "fast_rolls": rolls[0], "fallback_rolls": rolls[1]}


def _run(src: str | None, rate: float, seconds: float) -> dict:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    out = subprocess.run([sys.executable, __file__, "--child", str(rate), str(seconds)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-src", help="another source tree to compare with")
    ap.add_argument("--rate", type=float, default=40e6, help="bytes appended per second")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    if a.base_src and not os.path.isdir(os.path.join(a.base_src, "ringlog")):
        ap.error(f"--base-src {a.base_src}: no ringlog package there")
    if a.rate <= 0 or a.seconds <= 0 or a.runs < 1:
        ap.error("--rate and --seconds must be > 0 and --runs >= 1")
    sides = {"this": None} if not a.base_src else {"base": a.base_src, "this": None}
    res: dict[str, list[dict]] = {k: [] for k in sides}
    for r in range(a.runs):
        for k in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            doc = _run(sides[k], a.rate, a.seconds)
            res[k].append(doc)
            print(f"{k}: background thread max {doc['max']:.2f} CPU, p99 {doc['p99']:.2f}, "
                  f"mean {doc['mean']:.3f}, {doc['over_half']} of {doc['windows']} windows "
                  f"> 0.5; rolls fast {doc['fast_rolls']} fallback {doc['fallback_rolls']}",
                  flush=True)
    for k, docs in res.items():
        med = {f: statistics.median(d[f] for d in docs) for f in ("max", "p99", "mean",
                                                                   "over_half")}
        print(f"{k}: median of {len(docs)} runs: max {med['max']:.2f} "
              f"[{min(d['max'] for d in docs):.2f} - {max(d['max'] for d in docs):.2f}], "
              f"p99 {med['p99']:.2f}, mean {med['mean']:.3f}, windows > 0.5: "
              f"{med['over_half']:.0f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(float(sys.argv[2]), float(sys.argv[3]))))
    else:
        main()
