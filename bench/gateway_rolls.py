"""Do the gateway's round-trip spikes line up with journal segment rolls? One run of ``ringlog
serve`` under the load generator, then each roll of the input and output journals (the last
write of a segment, its file's ctime, is the roll to the next one; the segments still open at
the end are left out) against the orders slower than the run's p99 (by their intended send
time).

    python bench/gateway_rolls.py [durable|immediate] [CONNECTIONS] [RATE] [SECONDS]

Prints the run's p50/p99, every roll (journal, segment size, time since the start), the share
of the slow orders intended within [roll - 30 ms, roll + 10 ms] of some roll, and the share of
the run's time those windows cover (what the share would be if spikes ignored rolls).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import bench_gateway as bg

BEFORE_NS, AFTER_NS = 30_000_000, 10_000_000


def main() -> None:
    """Runs once and prints the figures."""
    a = bg.scenario_args(__doc__, 10.0)
    with tempfile.TemporaryDirectory(dir=".") as d:
        peer = bg._gateway(d, a.release, a.connections)
        wall_minus_mono = time.time_ns() - time.monotonic_ns()
        try:
            cfg = bg.scenario_load(a, peer.port)
            conns = bg.drive_unmeasured(cfg)
            rolls = sorted((p.stat().st_ctime_ns - wall_minus_mono, p.parent.name,
                            p.stat().st_size)
                           for journal in ("input", "output")
                           for p in sorted((Path(d) / "data" / journal).glob("*.seg"))[:-1])
        finally:
            peer.stop()
    intended = np.concatenate([c.intended for c in conns])
    done = np.concatenate([c.done for c in conns])
    start = int(intended.min())
    keep = (intended >= start + 2_000_000_000) & (done > 0)
    lat, at = done[keep] - intended[keep], intended[keep]
    p50, p99 = np.percentile(lat, [50, 99])
    print(f"p50 {p50 / 1e6:.2f} ms, p99 {p99 / 1e6:.2f} ms, max {lat.max() / 1e6:.1f} ms")
    slow = at[lat > p99]
    near = np.zeros(slow.size, bool)
    covered = 0
    end = int(intended.max())
    for t, journal, size in rolls:
        print(f"{journal:6s} rolls after a {size >> 20:2d} MiB segment at "
              f"{(t - start) / 1e9:6.2f} s")
        near |= (slow >= t - BEFORE_NS) & (slow <= t + AFTER_NS)
        if start + 2_000_000_000 <= t <= end:
            covered += BEFORE_NS + AFTER_NS
    span = end - start - 2_000_000_000
    print(f"orders above p99 intended near a roll: {100 * near.mean():.0f}% "
          f"(the roll windows cover {100 * covered / max(span, 1):.0f}% of the measured time)")
    worst = np.argsort(lat)[-5:]
    print("slowest: " + ", ".join(f"{lat[i] / 1e6:.1f} ms at {(at[i] - start) / 1e9:.2f} s"
                                  for i in worst))


if __name__ == "__main__":
    main()
