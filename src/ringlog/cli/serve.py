"""``ringlog serve`` (engine behind the gateway) and ``ringlog load`` (open-loop load)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, count, cpus, port, rate, seconds, whole

DEFAULT_ENGINE = "ringlog.engine:Engine"


def _serve_breaker(args: argparse.Namespace) -> Any:
    """The breaker of ``ringlog serve`` (None without ``--breaker-max``)."""
    from .. import Breaker, BreakerConfig, Limit

    if not args.breaker_max:
        return None
    # the engine emits every report keyed by its account: per="key" limits each account
    return Breaker(BreakerConfig(limits=[Limit(
        max_count=args.breaker_max, window_ns=args.breaker_window_ms * 10**6,
        per="key" if args.breaker_per_account else None)], kill=args.breaker_kill))


def cmd_serve(args: argparse.Namespace) -> int:
    """Runs the matching engine behind the processor behind the gateway until SIGINT/SIGTERM."""
    if args.cluster:  # a replica of a cluster shard instead (docs/cluster.md)
        from ..cluster.cli import cmd_serve_cluster
        return cmd_serve_cluster(args)
    import importlib

    import msgspec

    from .. import Processor, ProcessorConfig
    from ..gateway.server import run_server
    from ..gateway.session import GatewayConfigError, load_config
    from ..processor import resolve_topology

    try:
        cfg = load_config(args.config)
    except GatewayConfigError as e:
        print(f"ringlog serve: {e}", file=sys.stderr)
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
    from .. import engine

    real = factory is engine.Engine
    if real and cfg.engine is None:
        print(f"{args.config}: no [engine] section: the matching engine needs its symbols "
              "(docs/protocol.md, \"Configuration\")", file=sys.stderr)
        return EXIT_USAGE
    metrics = None
    if args.metrics_port is not None:  # Prometheus over DIR/counters (ringlog.metrics)
        from ..metrics import serve_metrics

        metrics = serve_metrics(args.directory, args.metrics_port, args.metrics_host)
    breaker = _serve_breaker(args)
    slot = cfg.engine.min_slot_size if cfg.engine is not None else 128
    reg = engine.registry(cfg.engine.l2_depth) if real and cfg.engine is not None else None
    topology = resolve_topology(args.topology, driver=True)  # auto: driven on few CPUs
    proc = Processor(factory(cfg.engine) if cfg.engine is not None else factory(),
                     args.directory,
                     ProcessorConfig(dedup=True, durability=args.durability,
                                     release=args.release, topology=topology,
                                     snapshot_every=args.snapshot_every,
                                     output_io=args.output_io,
                                     slot_size=max(slot, 128),
                                     loop_cpus=args.loop_cpus,
                                     background_cpus=args.background_cpus),
                     breaker=breaker, registry=reg)  # (metrics: closed with the process)

    def ready(gw: Any) -> None:
        host, port = gw.address
        rec = gw.recovery
        print(json.dumps({"event": "listening", "host": host, "port": port,
                          "sessions": len(cfg.sessions),
                          "metrics_port": metrics.address[1] if metrics else None,
                          "recovered": msgspec.to_builtins(rec) if rec else None}), flush=True)

    # the loop thread hands the GIL to the processor's threads and back for every order: at
    # the default 5 ms switch interval a wake-up can wait that long behind a busy thread
    sys.setswitchinterval(args.switch_interval_us / 1e6)
    try:
        run_server(proc, cfg, loop=args.loop, on_ready=ready)
    finally:
        if metrics is not None:
            metrics.close()
    return EXIT_OK


def cmd_load(args: argparse.Namespace) -> int:
    """Offers an open-loop load to a gateway; prints (or writes) the JSON result."""
    from ..gateway.session import GatewayConfigError, load_config
    from ..loadgen import LoadConfig, run_load

    tokens = list(args.token or [])
    host, port = args.host, args.port
    if args.config:
        try:
            cfg = load_config(args.config)
        except GatewayConfigError as e:
            print(f"ringlog load: {e}", file=sys.stderr)
            return EXIT_USAGE
        tokens += [s.token for s in cfg.sessions]
        host, port = host or cfg.host, port or cfg.port
    if args.connections > len(tokens):
        # the gateway allows one logged-on connection per session
        need = args.connections - len(tokens)
        where = f"{args.config}" if args.config else "the gateway's config"
        print(f"ringlog load: --connections {args.connections} needs {args.connections} "
              f"session tokens (one logon each), {len(tokens)} given: add {need} [[sessions]] "
              f"to {where} (and restart serve), pass --token {need} more time(s), or use "
              f"--connections {max(len(tokens), 1)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        lc = LoadConfig(host=host or "127.0.0.1", port=port or 7878, tokens=tokens,
                        rate=args.rate, connections=args.connections, duration=args.duration,
                        warmup=args.warmup, pattern=args.pattern, tick_us=args.tick_us,
                        stamps=args.stamps)
    except ValueError as e:
        print(f"ringlog load: {e}", file=sys.stderr)
        return EXIT_USAGE
    from ..client import GatewayError

    try:
        doc = run_load(lc)
    except (OSError, GatewayError) as e:
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
                                   "serve the gateway protocol (docs/protocol.md).",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n"
                              "  ringlog serve ./data --config gateway.toml\n"
                              "  ringlog serve ./data --config gateway.toml --port 0 "
                              "--durability sync --snapshot-every 100000\n"
                              "  ringlog serve ./data --config gateway.toml --breaker-max 5000 "
                              "--breaker-per-account\n"
                              "prints one JSON line {\"event\": \"listening\", ...} when "
                              "ready; stops on SIGINT/SIGTERM")
    s.add_argument("directory", help="the processor's directory (journals, snapshots)")
    s.add_argument("--config", required=True, help="gateway config (TOML or .json): sessions")
    s.add_argument("--host", help="bind address (default: the config's, 127.0.0.1)")
    s.add_argument("--port", type=port, help="port (default: the config's; 0 = any free)")
    s.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    s.add_argument("--durability", choices=["none", "group", "sync"], default="group")
    s.add_argument("--release", choices=["durable", "immediate"], default="durable",
                   help="reports leave once their order is durable (default) or at once")
    s.add_argument("--snapshot-every", type=whole(0, what="events"), default=0,
                   help="events between snapshots (0: none)")
    s.add_argument("--engine", default=DEFAULT_ENGINE, help="module:Class of the handler")
    s.add_argument("--breaker-max", type=whole(0, what="outputs"), default=0,
                   help="trip the breaker above this many outputs per window (0: no breaker)")
    s.add_argument("--breaker-window-ms", type=count, default=1000,
                   help="the breaker's window in milliseconds (1000)")
    s.add_argument("--breaker-per-account", action="store_true",
                   help="--breaker-max counts each account's reports apart")
    s.add_argument("--breaker-kill", choices=["none", "key", "all", "key_or_all"],
                   default="none", help="kill switch on a trip: cancel the tripped account's "
                   "(key) or everyone's (all) resting orders")
    s.add_argument("--metrics-port", type=port, help="serve Prometheus metrics on this port "
                   "(0: any free; needs the metrics extra)")
    s.add_argument("--metrics-host", default="127.0.0.1", help="metrics bind address")
    s.add_argument("--loop-cpus", type=cpus, metavar="LIST",
                   help="pin the processor's loop thread to these CPUs (0,2-3 as taskset)")
    s.add_argument("--background-cpus", type=cpus, metavar="LIST",
                   help="pin the processor's other threads (output stage, fdatasync threads)")
    s.add_argument("--topology", choices=["auto", "driven", "inline", "staged"],
                   default="auto",
                   help="the processor's threads: driven (the gateway's event loop runs the "
                        "engine: no loop thread), inline (a loop thread), staged (a thread "
                        "per stage); auto: driven below 4 usable CPUs, else staged "
                        "(docs/processor.md, \"Topology\")")
    s.add_argument("--output-io", choices=["auto", "direct", "buffered"], default="auto",
                   help="how the output journal is written: direct (O_DIRECT, no page cache), "
                        "buffered (the page cache); auto (the default): direct where the "
                        "file system takes it, except under the staged topology "
                        "(docs/processor.md, steps 25-26 and 30)")
    s.add_argument("--switch-interval-us", type=count, default=500,
                   help="the interpreter's GIL switch interval (default 500; Python's is 5000)")
    from ..cluster.cli import add_cluster_options
    add_cluster_options(s)


def _add_load(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("load", help="open-loop load against a gateway (latency percentiles)",
                       description="Send at a fixed offered rate over N sessions; latency from "
                                   "each message's intended send time (wrk2).",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n"
                              "  ringlog load --config gateway.toml --rate 50k --duration 10\n"
                              "  ringlog load --config gateway.toml --connections 4 --rate 1M "
                              "--pattern rest_cancel --json load.json\n"
                              "  ringlog load --port 7878 --token t1 --token t2 --connections 2\n"
                              "each connection logs on with its own session token; exit 1 if a "
                              "message went unanswered")
    s.add_argument("--config", help="take host, port and tokens from a gateway config")
    s.add_argument("--token", action="append", help="a session token (one per connection)")
    s.add_argument("--host")
    s.add_argument("--port", type=port)
    s.add_argument("--rate", type=rate, default=10_000.0,
                   help="messages/s over all connections: 2500, 50k, 1.5M (10k)")
    s.add_argument("--connections", type=count, default=1)
    s.add_argument("--duration", type=seconds(0, strict=True), default=5.0,
                   help="seconds of sending")
    s.add_argument("--warmup", type=seconds(0), default=1.0, help="first seconds not measured")
    s.add_argument("--pattern", choices=["mixed", "ioc", "rest_cancel"], default="mixed",
                   help="mixed: the engine's mixed flow on symbols 1..4 (default)")
    s.add_argument("--tick-us", type=count, default=100,
                   help="the sender wakes at most this often (us); due orders go in one write")
    s.add_argument("--stamps", choices=["wake", "kernel"], default="wake",
                   help="stamp answers when the generator wakes for them (wake, default), or "
                        "with the kernel's receive time and read them at the send rounds "
                        "(kernel: fewer wakes, a stamp up to a tick late)")
    s.add_argument("--json", help="write the result here instead of stdout")



def add_parsers(sub: Any) -> None:
    """Registers ``serve`` and ``load``."""
    _add_serve(sub)
    _add_load(sub)


COMMANDS = {"serve": cmd_serve, "load": cmd_load}
