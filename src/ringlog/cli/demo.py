"""``ringlog demo``: the matching engine behind the processor, into a directory of its own."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_USAGE, _parser


def cmd_demo(args: argparse.Namespace) -> int:
    """Runs ringlog.demo into --dir; refuses a directory the demo did not make."""
    from .. import demo

    try:
        return demo.main(Path(args.dir), quick=args.quick)
    except demo.DirectoryInUse as e:
        print(f"ringlog demo: {e}", file=sys.stderr)
        return EXIT_USAGE


def add_parsers(sub: Any) -> None:
    """Registers ``demo``."""
    p = _parser(sub, "demo", "run the matching engine behind the processor: journal, circuit "
                "breaker trip and reset, recovery with matching state hashes",
                "  ringlog demo\n"
                "  ringlog demo --dir /tmp/ringlog-demo --quick\n"
                "  ringlog journal info ./demo-journal   # then look at what it wrote\n"
                "DIR is created; one made by an earlier demo is replaced; any other non-empty "
                "directory is refused and left as it is")
    p.add_argument("--dir", default="demo-journal", metavar="DIR",
                   help="where the journals and snapshots go (default ./demo-journal)")
    p.add_argument("--quick", action="store_true", help="a tenth of the events (seconds)")


COMMANDS = {"demo": cmd_demo}
