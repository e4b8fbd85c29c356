"""The ``ringlog`` command: one parser, one ``cmd_<name>(args)`` per subcommand, a dispatch table.

Imports happen inside the commands so that ``ringlog --help`` is instant. Exit codes: 0 success,
1 the thing checked failed (corruption, regression), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def cmd_bench(args: argparse.Namespace) -> int:
    """Runs benchmark targets and peers; writes JSON and, if asked, the markdown report."""
    from .bench import report, results, runner

    if args.targets and args.targets[0] == "compare":
        if len(args.targets) != 3:
            print("usage: ringlog bench compare OLD.json NEW.json", file=sys.stderr)
            return EXIT_USAGE
        rows = results.compare(results.load(args.targets[1]), results.load(args.targets[2]),
                               args.threshold)
        for r in rows:
            flag = "REGRESSION" if r["regression"] else "ok"
            print(f"{r['target']:10} {r['name']:44} {r['change']:+7.1%}  {flag}")
        return EXIT_FAILED if any(r["regression"] for r in rows) else EXIT_OK
    targets = list(runner.TARGETS) if not args.targets or "all" in args.targets else args.targets
    unknown = [t for t in targets if t not in runner.TARGETS]
    if unknown:
        print(f"unknown bench target(s) {unknown}; choose from {list(runner.TARGETS)}",
              file=sys.stderr)
        return EXIT_USAGE
    if args.from_json:
        doc = results.load(args.from_json)  # re-render a saved run, measure nothing
    else:
        doc = runner.run_all(targets, runs=args.runs, smoke=args.smoke,
                             with_peers=not args.no_peers,
                             progress=lambda s: print(s, file=sys.stderr, flush=True))
    if args.json:
        results.save(doc, args.json)
    if args.report:
        cmdline = "ringlog bench " + " ".join(sys.argv[2:] if len(sys.argv) > 2 else [])
        with open(args.report, "w") as f:
            f.write(report.render(doc, args.command_text or cmdline.strip(),
                                  targets=runner.goals(doc["config"]["targets"])))
    if not args.json and not args.report:
        json.dump(doc, sys.stdout, indent=1)
        print()
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The one parser of every subcommand."""
    p = argparse.ArgumentParser(prog="ringlog", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    b = sub.add_parser("bench", help="run benchmarks (or: bench compare OLD.json NEW.json)",
                       description="Run benchmark targets with peers in the same run.",
                       epilog="examples:\n  ringlog bench ring --runs 5 --json ring.json\n"
                              "  ringlog bench compare old.json new.json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("targets", nargs="*", help="ring journal breaker processor engine gateway all")
    b.add_argument("--runs", type=int, default=3, help="runs per figure (median reported)")
    b.add_argument("--smoke", action="store_true", help="tiny sizes: checks the harness only")
    b.add_argument("--no-peers", action="store_true", help="skip the Disruptor and limits")
    b.add_argument("--json", help="write the results document here")
    b.add_argument("--report", help="write the markdown report here")
    b.add_argument("--from-json", help="render the report from a saved results document")
    b.add_argument("--command-text", help=argparse.SUPPRESS)
    b.add_argument("--threshold", type=float, default=0.2, help="compare: regression fraction")
    return p


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"bench": cmd_bench}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ringlog`` and ``python -m ringlog``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
