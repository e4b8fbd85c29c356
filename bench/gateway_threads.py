"""One gateway run under the load generator, with the server's CPU per order and context
switches by thread: where an order's CPU goes at a given rate and connection count.

    python bench/gateway_threads.py [durable|immediate] [CONNECTIONS] [RATE] [SECONDS]

Prints the round-trip percentiles (us, CO-corrected) and the run's CPU figures.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_gateway as bg

from ringlog.bench.latency import percentiles


def main() -> None:
    """Runs once and prints the figures."""
    a = bg.scenario_args(__doc__, 8.0)
    with tempfile.TemporaryDirectory(dir=".") as d:
        peer = bg._gateway(d, a.release, a.connections)
        try:
            doc, lat = bg._run_once(peer, a.connections, a.rate, a.seconds, 2.0)
        finally:
            peer.stop()
    print(json.dumps({k: v if k == "count" else round(v / 1e3)  # latencies in us
                      for k, v in percentiles(lat).items()}))
    print(json.dumps({k: v for k, v in doc.items() if "cpu" in k or "thread" in k}, indent=1))


if __name__ == "__main__":
    main()
