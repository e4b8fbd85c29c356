"""The ``ringlog`` command: one parser, one ``cmd_<name>(args)`` per subcommand, a dispatch table.

Imports happen inside the commands so that ``ringlog --help`` is instant. Exit codes: 0 success,
1 the thing checked failed (corruption, regression), 2 usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def cmd_bench(args: argparse.Namespace) -> int:
    """Runs benchmark targets, peers and (``--handler``) a user's handler; writes JSON with
    HdrHistogram logs beside it and, if asked, the markdown report with its PNG plots."""
    from pathlib import Path

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
    if args.targets:
        targets = list(runner.TARGETS) if "all" in args.targets else args.targets
    else:  # `ringlog bench --handler x:Y` measures the handler alone
        targets = [] if args.handler else list(runner.TARGETS)
    unknown = [t for t in targets if t not in runner.TARGETS]
    if unknown:
        print(f"unknown bench target(s) {unknown}; choose from {list(runner.TARGETS)}",
              file=sys.stderr)
        return EXIT_USAGE
    if args.from_json:
        doc = results.load(args.from_json)  # re-render a saved run, measure nothing
    else:
        from .bench.pipeline import HandlerSpecError, PipelineOptions, load_handler

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
    if args.report:
        from .bench import plots

        out = Path(args.report)
        out.parent.mkdir(parents=True, exist_ok=True)
        img_dir = Path(args.plots) if args.plots else out.parent / "img"
        images = [(t, title, os.path.relpath(p, out.parent))
                  for t, title, p in plots.plot_all(doc, img_dir)]
        cmdline = "ringlog " + " ".join(args.argv)
        out.write_text(report.render(doc, args.command_text or cmdline.strip(),
                                     targets=runner.goals(doc["config"]["targets"]),
                                     images=images))
    elif args.plots:
        from .bench import plots

        plots.plot_all(doc, args.plots)
    if not args.json and not args.report:
        json.dump(doc, sys.stdout, indent=1)
        print()
    failed = [] if args.from_json else [x for x in doc["skipped"] if x.get("failed")]
    for x in failed:
        print(f"ringlog bench: {x['name']} failed: {x['reason']}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _rate(text: str) -> float:
    """An offered rate: ``2500``, ``10k``, ``1.5M`` events per second."""
    scale = {"k": 1e3, "m": 1e6}.get(text[-1:].lower(), 1.0)
    try:
        return float(text[:-1] if scale != 1.0 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a rate: {text!r} (e.g. 2500, 10k, 1.5M)") from None


DEFAULT_ENGINE = "ringlog.engine:Engine"


def _serve_breaker(args: argparse.Namespace) -> Any:
    """The breaker of ``ringlog serve`` (None without ``--breaker-max``)."""
    from . import Breaker, BreakerConfig, Limit

    if not args.breaker_max:
        return None
    # the engine emits every report keyed by its account: per="key" limits each account
    return Breaker(BreakerConfig(limits=[Limit(
        max_count=args.breaker_max, window_ns=args.breaker_window_ms * 10**6,
        per="key" if args.breaker_per_account else None)]))


def cmd_serve(args: argparse.Namespace) -> int:
    """Runs the matching engine behind the processor behind the gateway until SIGINT/SIGTERM."""
    import importlib

    import msgspec

    from . import Processor, ProcessorConfig
    from .gateway.server import run_server
    from .gateway.session import GatewayConfigError, load_config

    try:
        cfg = load_config(args.config)
    except GatewayConfigError as e:
        print(e, file=sys.stderr)
        return EXIT_USAGE
    over = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if over:
        cfg = msgspec.structs.replace(cfg, **over)
    module, _, attr = args.engine.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr or "Engine")
    except (ImportError, AttributeError) as e:
        print(f"cannot load the engine {args.engine!r}: {e}", file=sys.stderr)
        return EXIT_USAGE
    from . import engine

    real = factory is engine.Engine
    if real and cfg.engine is None:
        print(f"{args.config}: no [engine] section: the matching engine needs its symbols "
              "(docs/protocol.md, \"Configuration\")", file=sys.stderr)
        return EXIT_USAGE
    breaker = _serve_breaker(args)
    slot = cfg.engine.min_slot_size if cfg.engine is not None else 128
    reg = engine.registry(cfg.engine.l2_depth) if real and cfg.engine is not None else None
    proc = Processor(factory(cfg.engine) if cfg.engine is not None else factory(),
                     args.directory,
                     ProcessorConfig(dedup=True, durability=args.durability,
                                     snapshot_every=args.snapshot_every,
                                     slot_size=max(slot, 128)),
                     breaker=breaker, registry=reg)

    def ready(gw: Any) -> None:
        host, port = gw.address
        rec = gw.recovery
        print(json.dumps({"event": "listening", "host": host, "port": port,
                          "sessions": len(cfg.sessions),
                          "recovered": msgspec.to_builtins(rec) if rec else None}), flush=True)

    # the loop thread hands the GIL to the processor's threads and back for every order: at
    # the default 5 ms switch interval a wake-up can wait that long behind a busy thread
    sys.setswitchinterval(args.switch_interval_us / 1e6)
    run_server(proc, cfg, loop=args.loop, on_ready=ready)
    return EXIT_OK


def cmd_load(args: argparse.Namespace) -> int:
    """Offers an open-loop load to a gateway; prints (or writes) the JSON result."""
    from .gateway.load import LoadConfig, run_load
    from .gateway.session import GatewayConfigError, load_config

    tokens = list(args.token or [])
    host, port = args.host, args.port
    if args.config:
        try:
            cfg = load_config(args.config)
        except GatewayConfigError as e:
            print(e, file=sys.stderr)
            return EXIT_USAGE
        tokens += [s.token for s in cfg.sessions]
        host, port = host or cfg.host, port or cfg.port
    try:
        lc = LoadConfig(host=host or "127.0.0.1", port=port or 7878, tokens=tokens,
                        rate=args.rate, connections=args.connections, duration=args.duration,
                        warmup=args.warmup, pattern=args.pattern, loop=args.loop)
    except ValueError as e:
        print(f"ringlog load: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        doc = run_load(lc)
    except OSError as e:
        print(f"ringlog load: cannot reach the gateway at {lc.host}:{lc.port}: {e}",
              file=sys.stderr)
        return EXIT_FAILED
    text = json.dumps(doc, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return EXIT_OK if doc["missing"] == 0 else EXIT_FAILED


def _add_serve(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("serve", help="run the matching engine behind the TCP gateway",
                       description="Recover the engine from DIRECTORY (snapshot + journal), then "
                                   "serve the gateway protocol (docs/protocol.md).")
    s.add_argument("directory", help="the processor's directory (journals, snapshots)")
    s.add_argument("--config", required=True, help="gateway config (TOML or .json): sessions")
    s.add_argument("--host", help="bind address (default: the config's, 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default: the config's; 0 = any free)")
    s.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    s.add_argument("--durability", choices=["none", "group", "sync"], default="group")
    s.add_argument("--snapshot-every", type=int, default=0, help="events between snapshots")
    s.add_argument("--engine", default=DEFAULT_ENGINE, help="module:Class of the handler")
    s.add_argument("--breaker-max", type=int, default=0,
                   help="trip the breaker above this many outputs per window (0: no breaker)")
    s.add_argument("--breaker-window-ms", type=int, default=1000)
    s.add_argument("--breaker-per-account", action="store_true",
                   help="--breaker-max counts each account's reports apart")
    s.add_argument("--switch-interval-us", type=int, default=500,
                   help="the interpreter's GIL switch interval (default 500; Python's is 5000)")


def _add_load(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("load", help="open-loop load against a gateway (latency percentiles)",
                       description="Send at a fixed offered rate over N sessions; latency from "
                                   "each message's intended send time (wrk2).")
    s.add_argument("--config", help="take host, port and tokens from a gateway config")
    s.add_argument("--token", action="append", help="a session token (one per connection)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--rate", type=float, default=10_000.0, help="messages/s, all connections")
    s.add_argument("--connections", type=int, default=1)
    s.add_argument("--duration", type=float, default=5.0, help="seconds of sending")
    s.add_argument("--warmup", type=float, default=1.0, help="first seconds not measured")
    s.add_argument("--pattern", choices=["ioc", "rest_cancel"], default="ioc")
    s.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    s.add_argument("--json", help="write the result here instead of stdout")


def build_parser() -> argparse.ArgumentParser:
    """The one parser of every subcommand."""
    p = argparse.ArgumentParser(prog="ringlog", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    b = sub.add_parser("bench", help="run benchmarks (or: bench compare OLD.json NEW.json)",
                       description="Run benchmark targets with peers in the same run.",
                       epilog="examples:\n  ringlog bench ring --runs 5 --json ring.json\n"
                              "  ringlog bench --handler myapp:Handler --rate 10k --runs 5\n"
                              "  ringlog bench compare old.json new.json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("targets", nargs="*", help="ring journal breaker processor engine gateway "
                                              "tools all (default all; none with --handler)")
    b.add_argument("--runs", type=int, default=3, help="runs per figure (median reported)")
    b.add_argument("--smoke", action="store_true", help="tiny sizes: checks the harness only")
    b.add_argument("--no-peers", action="store_true", help="skip the Disruptor and limits")
    b.add_argument("--json", help="write the results document here (HdrHistogram logs go to "
                                  "a folder beside it)")
    b.add_argument("--report", help="write the markdown report here (plots in img/ beside it)")
    b.add_argument("--plots", help="write the PNG plots to this folder")
    b.add_argument("--from-json", help="render the report from a saved results document")
    b.add_argument("--command-text", help=argparse.SUPPRESS)
    b.add_argument("--threshold", type=float, default=0.1,
                   help="compare: a change worse than this fraction is a regression (0.1)")
    h = b.add_argument_group("your handler through the full pipeline (--handler)")
    h.add_argument("--handler", metavar="MODULE:CLASS",
                   help="measure this handler (module:Class or file.py:Class, built with no "
                        "arguments): producer -> ring -> journal -> handler -> outputs; a "
                        "static bench_payloads(size) on the class supplies valid input")
    h.add_argument("--event-size", type=int, default=64, help="payload bytes per event (64)")
    h.add_argument("--ring-size", type=int, default=1 << 14, help="ring capacity (16384)")
    h.add_argument("--wait", default="blocking",
                   choices=["blocking", "busy_spin", "yielding", "sleeping"],
                   help="wait strategy of the processor's threads (blocking)")
    h.add_argument("--durability", default="group", choices=["none", "group", "sync"],
                   help="journal durability (group)")
    h.add_argument("--rate", type=_rate, action="append", metavar="EVENTS_PER_S",
                   help="offered rate of the latency runs, repeatable (1k and 10k)")
    h.add_argument("--duration", type=float, default=5.0,
                   help="seconds of each throughput run and each latency rate (5)")
    _add_serve(sub)
    _add_load(sub)
    return p


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "bench": cmd_bench,
    "serve": cmd_serve,
    "load": cmd_load,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ringlog`` and ``python -m ringlog``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the report's command line
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
