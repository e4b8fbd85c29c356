"""Publish-to-handled and publish-to-output latency under configuration variants, interleaved.

::

    paced producer ──► input ring ──► loop (LatencyHandler: handled[i] = now - due[i])
                                        └─ staged: ──► output ring ──► probe: output[i]
    python bench/latency_config_ab.py VARIANT[,VARIANT...] [rounds] [--rate R] [--events N]
        VARIANT: "default" (ProcessorConfig as a user gets it) or FIELD=VALUE[+FIELD=VALUE],
            e.g. max_batch=16384; integers are parsed as such (a field ProcessorConfig
            refuses: one line and exit 2); ``handler=nogil`` runs the handler without the
            GIL (``nogil_events``; ``handler=gil``, the default, with it)

Each round runs every variant once per topology (``auto``: publish to handled; ``staged``:
publish to handled and to output, after the input is durable), each in a process of its own,
the order reversed every other round; the bench's paced producer and handler
(bench_processor's latency rows). Per run: p50, p99, p99.9 over the events less the first
tenth; then the medians per variant and topology.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _fields(variant: str) -> dict[str, Any]:
    """``FIELD=VALUE+FIELD=VALUE`` as ProcessorConfig keywords (``default``: none)."""
    if variant == "default":
        return {}
    out: dict[str, Any] = {}
    for part in variant.split("+"):
        k, _, v = part.partition("=")
        out[k] = int(v) if v.lstrip("-").isdigit() else v
    return out


def one(variant: str, topology: str, rate: float, n: int) -> dict:
    """One run of ``variant`` under ``topology`` in this process."""
    sys.path.insert(0, str(HERE))
    import bench_processor as bp

    from ringlog import ProcessorConfig
    from ringlog.bench.latency import percentiles

    extra = _fields(variant)
    nogil = extra.pop("handler", "gil") == "nogil"
    bp._config = lambda **kw: ProcessorConfig(**{**kw, **extra})
    handled, output = bp._latency(rate, n, topology, nogil=nogil)
    out: dict[str, float] = {}
    for what, lat in (("handled", handled), ("output", output)):
        if lat is not None:
            pc = percentiles(lat[n // 10:])
            out.update({f"{what}_{k}": pc[k] for k in ("p50", "p99", "p99.9")})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants")
    ap.add_argument("rounds", nargs="?", type=int, default=3)
    ap.add_argument("--rate", type=float, default=1_000_000.0)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--topologies", default="auto,staged")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one[0], a.one[1], a.rate, a.events)))
        return 0
    variants, tops = a.variants.split(","), a.topologies.split(",")
    if a.rounds < 1 or a.rate <= 0 or a.events < 10:
        ap.error("rounds must be >= 1, --rate > 0 and --events >= 10")
    if any(t not in ("auto", "inline", "staged", "driven") for t in tops):
        ap.error(f"--topologies: a comma list of auto, inline, staged, driven; got {a.topologies}")
    from ringlog import ProcessorConfig
    from ringlog.errors import RingLogError

    for v in variants:  # a wrong field or value: one line here, not a child's traceback
        fields = _fields(v)
        if fields.pop("handler", "gil") not in ("gil", "nogil"):
            ap.error(f"variant {v!r}: handler must be gil or nogil")
        try:
            ProcessorConfig(**fields)
        except (RingLogError, TypeError, ValueError) as e:
            ap.error(f"variant {v!r}: {e}")
    sys.path.insert(0, str(HERE))
    import pipeline_ab as ab

    def run(name: str) -> dict[str, float]:
        v, t = name.split(" ")
        done = subprocess.run([sys.executable, __file__, "--one", v, t, "--rate", str(a.rate),
                               "--events", str(a.events), "x"], capture_output=True, text=True)
        lines = done.stdout.strip().splitlines()
        if done.returncode or not lines:
            raise SystemExit(f"{name}: the run failed: {done.stderr.strip()[-400:]}")
        return json.loads(lines[-1])

    res = ab.interleaved([f"{v} {t}" for v in variants for t in tops], a.rounds, run,
                         "{:.0f} ns")
    for name, runs in res.items():
        print(f"{name}: " + ", ".join(
            f"{k} {statistics.median(d[k] for d in runs) / 1e3:.1f} us" for k in runs[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
