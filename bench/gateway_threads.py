"""One gateway run under the load generator, with the server's CPU per order and context
switches by thread: where an order's CPU goes at a given rate and connection count.

    python bench/gateway_threads.py [durable|immediate] [CONNECTIONS] [RATE] [SECONDS]

Prints the round-trip percentiles (us, CO-corrected) and the run's CPU figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_gateway as bg

from ringlog.bench.latency import percentiles


def main() -> None:
    """Runs once and prints the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("release", nargs="?", choices=("durable", "immediate"), default="durable")
    ap.add_argument("connections", nargs="?", type=int, choices=range(1, 9), default=1,
                    metavar="CONNECTIONS (1-8)")
    ap.add_argument("rate", nargs="?", type=float, default=50_000.0, help="orders/s offered")
    ap.add_argument("seconds", nargs="?", type=float, default=8.0)
    a = ap.parse_args()
    if a.rate <= 0 or a.seconds <= 0:
        ap.error("the rate and the seconds must be > 0")
    with tempfile.TemporaryDirectory(dir=".") as d:
        peer = bg._gateway(d, a.release)
        try:
            doc, lat = bg._run_once(peer, a.connections, a.rate, a.seconds, 2.0,
                                    100 if a.connections == 1 else 500)
        finally:
            peer.stop()
    print(json.dumps({k: round(v / 1e3) for k, v in percentiles(lat).items()}))
    print(json.dumps({k: v for k, v in doc.items() if "cpu" in k or "thread" in k}, indent=1))


if __name__ == "__main__":
    main()
