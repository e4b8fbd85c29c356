"""``ringlog stat DIR``: a running processor's counters, live (ringlog.stat)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import UsageError, _parser


def cmd_stat(args: argparse.Namespace) -> int:
    """Shows the counters of the processor in DIR, refreshed every interval."""
    from .._counters import CountersError, CountersFileError
    from ..stat import run_stat

    if args.interval <= 0:
        raise UsageError(f"--interval must be > 0 seconds, got {args.interval}")
    if args.count < 0:
        raise UsageError(f"--count must be >= 0, got {args.count}")
    try:
        return run_stat(args.dir, args.interval, args.count, args.json)
    except (CountersFileError, CountersError) as e:
        raise UsageError(str(e)) from None


def add_parsers(sub: Any) -> None:
    """Registers ``stat``."""
    s = _parser(sub, "stat", "show a running processor's counters live (rates, lags, breaker)",
                "  ringlog stat var/engine\n"
                "  ringlog stat var/engine --json --interval 5 | jq .rates\n")
    s.add_argument("dir", help="the processor's directory (it holds the counters file)")
    s.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    s.add_argument("--count", type=int, default=0, help="stop after N refreshes (0: never)")
    s.add_argument("--json", action="store_true", help="one JSON line per interval")


COMMANDS = {"stat": cmd_stat}
