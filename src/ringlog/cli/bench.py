"""``ringlog bench``: benchmark targets, peers, a user's handler; ``bench compare``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from typing import Any

from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, count, rate, seconds, size


def cmd_bench(args: argparse.Namespace) -> int:
    """Runs benchmark targets, peers and (``--handler``) a user's handler; writes JSON with
    HdrHistogram logs beside it and, if asked, the markdown report with its PNG plots."""
    from pathlib import Path

    from ..bench import report, results, runner

    if args.targets and args.targets[0] == "compare":
        if len(args.targets) != 3:
            print("usage: ringlog bench compare OLD.json NEW.json", file=sys.stderr)
            return EXIT_USAGE
        rows = results.compare(results.load(args.targets[1]), results.load(args.targets[2]),
                               args.threshold)
        if args.format == "json":
            json.dump(rows, sys.stdout, indent=1)
            print()
        else:
            print(compare_table(rows, args.threshold))
        return EXIT_FAILED if any(r["regression"] for r in rows) else EXIT_OK
    if args.targets:
        targets = list(runner.TARGETS) if "all" in args.targets else args.targets
    else:  # `ringlog bench --handler x:Y` measures the handler alone
        targets = [] if args.handler else list(runner.TARGETS)
    unknown = [t for t in targets if t not in runner.TARGETS]
    if unknown:
        print(f"ringlog bench: unknown target(s) {', '.join(unknown)}; choose from "
              f"{', '.join(runner.TARGETS)}, all", file=sys.stderr)
        return EXIT_USAGE
    if targets and not args.from_json and runner.bench_dir() is None:
        print("ringlog bench: the targets (" + ", ".join(targets) + ") are the repository's "
              "bench/ folder, which an installed package does not carry: run them from a clone "
              "(make bench), or measure your own handler: ringlog bench --handler "
              "module:Class", file=sys.stderr)
        return EXIT_USAGE
    missing = missing_extras(measure=not args.from_json,
                             plots=bool(args.report or args.plots))
    if missing:
        print(f"ringlog bench: needs {' and '.join(missing)}, not installed: pip install "
              f"'ringlog[bench]' (or: pip install {' '.join(EXTRAS[m] for m in missing)})",
              file=sys.stderr)
        return EXIT_USAGE
    if args.from_json:
        doc = results.load(args.from_json)  # re-render a saved run, measure nothing
    else:
        from ..bench.pipeline import HandlerSpecError, PipelineOptions, load_handler

        try:
            options = PipelineOptions(
                event_size=args.event_size, ring_size=args.ring_size, wait=args.wait,
                durability=args.durability, rates=tuple(args.rate or (1_000.0, 10_000.0)),
                duration=args.duration, runs=args.runs)
            if args.handler:
                load_handler(args.handler)  # a wrong spec fails now, not after the targets
        except (ValueError, HandlerSpecError) as e:
            print(f"ringlog bench: {e}", file=sys.stderr)
            return EXIT_USAGE
        json_path = Path(args.json) if args.json else None
        for p in (args.json, args.report):  # a long run must not end unable to write
            if p:
                Path(p).parent.mkdir(parents=True, exist_ok=True)
        previous = None
        if json_path is not None and json_path.exists():
            with contextlib.suppress(ValueError, OSError):
                previous = results.load(json_path)  # its timings give the ETA
        doc = runner.run_all(targets, runs=args.runs, smoke=args.smoke,
                             with_peers=not args.no_peers,
                             progress=lambda s: print(s, file=sys.stderr, flush=True),
                             handler=args.handler, options=options,
                             artifacts=(json_path.parent / f"{json_path.stem}-hlog"
                                        if json_path else None),
                             previous=previous)
    if args.json:
        results.save(doc, args.json)
    if args.merge_into:  # fold these targets' rows into a full report's document
        doc = results.merge(results.load(args.merge_into), doc)
        results.save(doc, args.merge_into)
    # row hdr_log paths are relative to the results JSON's folder
    logs_base = Path(args.merge_into or args.json or args.from_json or ".").parent
    if args.report:
        from ..bench import plots

        out = Path(args.report)
        out.parent.mkdir(parents=True, exist_ok=True)
        img_dir = Path(args.plots) if args.plots else out.parent / "img"
        images = [(t, title, os.path.relpath(p, out.parent))
                  for t, title, p in plots.plot_all(doc, img_dir, logs_base)]
        cmdline = "ringlog " + " ".join(args.argv)
        kept = report.kept_section(out.read_text()) if out.is_file() else ""
        out.write_text(report.render(doc, args.command_text or cmdline.strip(),
                                     targets=runner.goals(doc["config"]["targets"]),
                                     images=images, kept=kept))
    elif args.plots:
        from ..bench import plots

        plots.plot_all(doc, args.plots, logs_base)
    if args.format == "json":
        json.dump(doc, sys.stdout, indent=1)
        print()
    else:
        print(report.table(doc))
    failed = [] if args.from_json else [x for x in doc["skipped"] if x.get("failed")]
    for x in failed:
        hint = ""
        if x["name"].startswith("handler") and re.search(r"unpack|buffer|struct", x["reason"]):
            hint = (f" (the benchmark's events are --event-size {args.event_size} bytes: give "
                    "the size your handler unpacks, or a static bench_payloads(size) on the "
                    "class that returns valid payloads)")
        print(f"ringlog bench: {x['name']} failed: {x['reason']}{hint}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


# import name -> what pip installs (both in the bench extra)
EXTRAS = {"hdrh": "hdrhistogram", "matplotlib": "matplotlib"}


def missing_extras(measure: bool, plots: bool) -> list[str]:
    """The optional modules a run needs that are not installed: hdrh to measure latencies,
    matplotlib for --report/--plots; checked before a run, not after its minutes."""
    import importlib.util

    need = (["hdrh"] if measure else []) + (["matplotlib"] if plots else [])
    return [m for m in need if importlib.util.find_spec(m) is None]


def compare_table(rows: list[dict[str, Any]], threshold: float) -> str:
    """``bench compare`` for people: old and new medians with units, change, verdict."""
    from ..bench.stats import fmt_value

    head = f"{'target':10} {'benchmark':44} {'old':>18} {'new':>18} {'change':>8}  verdict"
    lines = [head]
    for r in rows:
        verdict = r["verdict"].upper() if r["regression"] else r["verdict"]
        lines.append(f"{r['target']:10} {r['name']:44} {fmt_value(r['old'], r['unit']):>18} "
                     f"{fmt_value(r['new'], r['unit']):>18} {r['change']:+8.1%}  {verdict}")
    lines.append(f"{len(rows)} of our figures compared (peer rows left out); a regression is "
                 f"a change worse than {threshold:.0%} that Welch's t-test on the runs finds "
                 "significant at 95%")
    return "\n".join(lines)


def add_parsers(sub: Any) -> None:
    """Registers ``bench``."""
    b = sub.add_parser("bench", help="run benchmarks (or: bench compare OLD.json NEW.json)",
                       description="Run benchmark targets with peers in the same run.",
                       epilog="examples:\n  ringlog bench ring --runs 5 --json ring.json\n"
                              "  ringlog bench --handler myapp:Handler --rate 10k --runs 5\n"
                              "  ringlog bench compare old.json new.json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    from ..bench.runner import TARGETS

    b.add_argument("targets", nargs="*", help=f"{' '.join(TARGETS)} all (default all; none "
                                              f"with --handler)")
    b.add_argument("--runs", type=count, default=3, help="runs per figure (median reported)")
    b.add_argument("--smoke", action="store_true", help="tiny sizes: checks the harness only")
    b.add_argument("--no-peers", action="store_true", help="skip the Disruptor and limits")
    b.add_argument("--json", help="write the results document here (HdrHistogram logs go to "
                                  "a folder beside it)")
    b.add_argument("--report", help="write the markdown report here (plots in img/ beside it)")
    b.add_argument("--plots", help="write the PNG plots to this folder")
    b.add_argument("--from-json", help="render the report from a saved results document")
    b.add_argument("--merge-into", metavar="JSON", help="replace the rows of the targets "
                   "measured (or read with --from-json) in this results document, save it, "
                   "and render --report from it")
    b.add_argument("--command-text", help=argparse.SUPPRESS)
    b.add_argument("--format", choices=["table", "json"], default="table",
                   help="stdout: a table for people (default) or JSON for scripts (the "
                        "results document; compare: its rows)")
    b.add_argument("--threshold", type=float, default=0.1,
                   help="compare: a change worse than this fraction is a regression (0.1)")
    h = b.add_argument_group("your handler through the full pipeline (--handler)")
    h.add_argument("--handler", metavar="MODULE:CLASS",
                   help="measure this handler (module:Class or file.py:Class, built with no "
                        "arguments): producer -> ring -> journal -> handler -> outputs; a "
                        "static bench_payloads(size) on the class supplies valid input")
    h.add_argument("--event-size", type=size, default=64,
                   help="payload bytes per event (64; 1KiB works)")
    h.add_argument("--ring-size", type=size, default=1 << 14,
                   help="ring capacity in slots (16384, or 16KiB)")
    h.add_argument("--wait", default="blocking",
                   choices=["blocking", "busy_spin", "yielding", "sleeping"],
                   help="wait strategy of the processor's threads (blocking)")
    h.add_argument("--durability", default="group", choices=["none", "group", "sync"],
                   help="journal durability (group)")
    h.add_argument("--rate", type=rate, action="append", metavar="EVENTS_PER_S",
                   help="offered rate of the latency runs, repeatable (1k and 10k)")
    h.add_argument("--duration", type=seconds(0, strict=True), default=5.0,
                   help="seconds of each throughput run and each latency rate (5)")


COMMANDS = {"bench": cmd_bench}
