"""The ``ringlog`` command: one parser, one ``cmd_<name>(args)`` per subcommand, a dispatch table.

Imports happen inside the commands so that ``ringlog --help`` is instant. Exit codes: 0 success,
1 the thing checked failed (corruption, regression), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

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


DEFAULT_ENGINE = "ringlog.engine:MatchingEngine"


def cmd_serve(args: argparse.Namespace) -> int:
    """Runs the matching engine behind the processor behind the gateway until SIGINT/SIGTERM."""
    import importlib

    import msgspec

    from . import Breaker, BreakerConfig, Limit, Processor, ProcessorConfig
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
    breaker = None
    if args.breaker_max:
        breaker = Breaker(BreakerConfig(limits=[Limit(max_count=args.breaker_max,
                                                      window_ns=args.breaker_window_ms * 10**6)]))
    proc = Processor(factory(), args.directory,
                     ProcessorConfig(dedup=True, durability=args.durability,
                                     snapshot_every=args.snapshot_every), breaker=breaker)

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
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
