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
from pathlib import Path
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


class UsageError(ValueError):
    """A command was given arguments it cannot use (exit code 2)."""


def _journal_dir(args: argparse.Namespace) -> Path:
    """The journal directory of DIR: DIR itself, or DIR/<--journal> of a processor dir."""
    d = Path(args.dir)
    if not d.is_dir():
        raise UsageError(f"{d}: no such directory (give a journal or processor directory)")
    sub = getattr(args, "journal", None) or "input"
    if not any(d.glob("*.seg")) and (d / sub).is_dir():
        return d / sub
    if not any(d.glob("*.seg")) and not (d / "LOCK").exists():
        raise UsageError(f"{d} holds no journal segments (*.seg) and no {sub}/ journal")
    return d


def _filter(args: argparse.Namespace) -> Any:
    from .journaltool import Filter, parse_time

    def t(v: str | None) -> int | None:
        return None if v is None else parse_time(v)

    return Filter(from_sequence=getattr(args, "from_seq", None),
                  to_sequence=getattr(args, "to_seq", None),
                  since_ns=t(getattr(args, "since", None)),
                  until_ns=t(getattr(args, "until", None)),
                  types=args.type or [], correlation_id=args.correlation_id,
                  where=args.where or [], limit=getattr(args, "limit", None))


def cmd_journal_info(args: argparse.Namespace) -> int:
    """Segments, ranges, counts by type, sizes, lock holder, snapshots, schema."""
    from . import journaltool

    d = journaltool.info(_journal_dir(args), counts=not args.no_counts)
    print(journaltool.to_json(d) if args.json else journaltool.format_info(d))
    return EXIT_OK


def cmd_journal_dump(args: argparse.Namespace) -> int:
    """Streams records decoded by the journal's own schema, filtered."""
    from . import journaltool

    flt = _filter(args)
    flt.compile()  # a bad --where is a usage error before any output
    journaltool.dump(_journal_dir(args), flt, sys.stdout, as_json=args.json)
    return EXIT_OK


def cmd_journal_verify(args: argparse.Namespace) -> int:
    """Checks every checksum, sequence density, segment order and index; of a processor
    directory, every journal in it unless --journal picks one."""
    from . import journaltool

    d = Path(args.dir)
    if args.journal is None and not any(d.glob("*.seg")) and (d / "input").is_dir():
        paths = [d / j for j in ("input", "output", "dead-letter") if (d / j).is_dir()]
    else:
        paths = [_journal_dir(args)]
    show = args.progress or (sys.stderr.isatty() and not args.json)
    failed = False
    for path in paths:
        res = journaltool.check(path, progress=(lambda i, n, p=path: print(
            f"\rverify {p}: segment {i}/{n}", end="", file=sys.stderr, flush=True))
            if show else None)
        if show:
            print(file=sys.stderr)
        failed |= res.problem is not None
        if args.json:
            print(journaltool.to_json(res))
        elif res.problem is None:
            rate = res.records / res.seconds if res.seconds > 0 else 0.0
            print(f"ok: {res.path}: {res.segments} segment(s), {res.records:,} records, "
                  f"sequences {res.first_sequence}..{res.last_sequence}, {res.bytes:,} bytes "
                  f"in {res.seconds:.3f} s ({rate / 1e6:.1f}M records/s)")
        else:
            p = res.problem
            print(f"{p.kind.upper()}: {p.message}\n  file {p.path}\n  offset {p.offset}\n"
                  f"  sequence {p.sequence}\n  {res.records:,} records before it are intact",
                  file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_journal_tail(args: argparse.Namespace) -> int:
    """Follows a live journal like tail -f."""
    from . import journaltool

    flt = _filter(args)
    flt.compile()
    journaltool.tail(_journal_dir(args), sys.stdout, lines=args.lines,
                     from_sequence=args.from_seq, flt=flt, as_json=args.json,
                     count=args.count, idle_exit=args.idle_exit)
    return EXIT_OK


def cmd_journal_repair(args: argparse.Namespace) -> int:
    """Truncates a torn tail (or, with --force, cuts the journal at mid-file damage)."""
    from . import journaltool
    from .errors import JournalCorruptError

    path = _journal_dir(args)
    try:
        plan = journaltool.plan_repair(path, force=args.force)
    except JournalCorruptError as e:
        print(f"refusing: {e}", file=sys.stderr)
        return EXIT_FAILED
    if plan is None:
        print(f"{path}: clean, nothing to repair")
        return EXIT_OK
    print(plan.describe())
    if args.dry_run:
        return EXIT_FAILED
    if not args.yes:
        try:
            answer = input("repair? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing changed", file=sys.stderr)
            return EXIT_FAILED
    side = journaltool.apply_repair(path, plan, args.side_dir)
    print(f"repaired; removed bytes and segments are kept in {side}")
    return EXIT_OK


def _replayer(args: argparse.Namespace) -> Any:
    from .replay import Replayer, make_breaker, make_handler

    if not Path(args.dir).is_dir():
        raise UsageError(f"{args.dir}: no such directory (give a processor directory)")
    from .processor import read_manifest

    # what the processor ran with (processor.json), unless the flags say otherwise
    ran = read_manifest(args.dir)
    spec = args.breaker if args.breaker is not None else (ran and ran.breaker)
    try:
        handler = make_handler(args.handler)
        breaker = make_breaker(None if spec == "none" else spec)
    except ValueError as e:
        raise UsageError(str(e)) from e
    dedup = args.dedup or bool(ran and ran.config.dedup)
    dead_letter = args.dead_letter or bool(ran and ran.config.exception_policy == "dead_letter")
    return Replayer(args.dir, handler, breaker=breaker, dedup=dedup, dead_letter=dead_letter)


def _target(args: argparse.Namespace, rp: Any) -> int | None:
    from .journaltool import parse_time

    if getattr(args, "until", None) is not None:
        return int(rp.sequence_at(parse_time(args.until)))
    return getattr(args, "to_seq", None)


def cmd_replay(args: argparse.Namespace) -> int:
    """Rebuilds state from a snapshot + the input journal; optionally verifies outputs."""
    from .journaltool import to_json
    from .replay import Progress

    rp = _replayer(args)
    snap: int | str = args.snapshot
    if snap not in ("latest", "none"):
        if not str(snap).lstrip("-").isdigit():
            raise UsageError(f"--snapshot {snap!r}: give a snapshot sequence (see `ringlog "
                             "snapshot list`), latest or none")
        snap = int(snap)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    res = rp.run(_target(args, rp), snapshot=snap, verify=args.verify,
                 progress=Progress(0, sys.stderr) if show else None)
    if args.dump_state:
        doc = rp.state_document(res, args.handler)
        with open(args.dump_state, "w") as f:
            f.write(to_json(doc))
            f.write("\n")
    if args.json:
        print(to_json(res))
    else:
        rate = res.replayed / res.seconds if res.seconds > 0 else 0.0
        start = "no snapshot" if res.snapshot_sequence < 0 else (
            f"snapshot {res.snapshot_sequence}")
        print(f"replayed {res.replayed:,} events ({res.first_sequence}..{res.last_sequence}) "
              f"from {start} in {res.seconds:.3f} s ({rate:,.0f} events/s); "
              f"{res.outputs:,} outputs")
        if args.verify:
            print(f"verified {res.verified_outputs:,} outputs against the output journal"
                  + (f"; {res.unrecorded_outputs:,} past its end (lost in a crash; a restart "
                     "journals them)" if res.unrecorded_outputs else ""))
    if res.divergence is not None:
        d = res.divergence
        print(f"DIVERGENCE at input sequence {d.input_sequence} (output #{d.output_index}):\n"
              f"  recorded: {d.expected}\n  replayed: {d.actual}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_snapshot_list(args: argparse.Namespace) -> int:
    """Lists snapshots: sequence, time, size, validity."""
    from .journaltool import format_time, to_json
    from .snapshot import SnapshotStore

    d = Path(args.dir) / "snapshots"
    if not d.is_dir():
        raise UsageError(f"{args.dir} has no snapshots/ directory")
    rows = SnapshotStore(d).list()
    for r in rows:
        r["created"] = format_time(_created_ns(r["path"]))
    if args.json:
        for r in rows:
            print(to_json(r))
        return EXIT_OK
    print(f"{'SEQUENCE':>12}  {'CREATED (UTC)':30}  {'BYTES':>12}  VALID")
    for r in rows:
        print(f"{r['sequence']:>12}  {r['created']:30}  {r['bytes']:>12,}  "
              f"{'yes' if r['valid'] else 'NO: ' + r['error']}")
    return EXIT_OK if all(r["valid"] for r in rows) else EXIT_FAILED


def _created_ns(path: str) -> int:
    import struct

    with open(path, "rb") as f:
        head = f.read(32)
    return struct.unpack_from("<q", head, 24)[0] if len(head) == 32 else 0


def cmd_snapshot_take(args: argparse.Namespace) -> int:
    """Replays (read-only) to a sequence and writes a snapshot there."""
    rp = _replayer(args)
    res = rp.run(_target(args, rp))
    path = rp.take_snapshot()
    print(f"snapshot at sequence {res.last_sequence} written to {path}")
    return EXIT_OK


def cmd_snapshot_verify(args: argparse.Namespace) -> int:
    """Checks every snapshot; with --handler, that replay reproduces each one."""
    from .errors import SnapshotError
    from .snapshot import SnapshotStore

    d = Path(args.dir) / "snapshots"
    if not d.is_dir():
        raise UsageError(f"{args.dir} has no snapshots/ directory")
    store = SnapshotStore(d)
    bad = 0
    prev: int | str = "none"
    for seq in store.sequences():
        try:
            snap = store.load(seq)
        except SnapshotError as e:
            print(f"{seq:>12}  DAMAGED: {e}")
            bad += 1
            continue
        if args.handler:
            rp = _replayer(args)
            rp.run(seq, snapshot=prev)
            same = rp.snapshot_bytes() == snap.data
            print(f"{seq:>12}  ok, {'replay reproduces it' if same else 'REPLAY DIFFERS'}")
            bad += not same
        else:
            print(f"{seq:>12}  ok ({len(snap.data):,} bytes)")
        prev = seq
    return EXIT_OK if bad == 0 else EXIT_FAILED


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
    from .gateway.session import GatewayConfigError, load_config
    from .loadgen import LoadConfig, run_load

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
                        warmup=args.warmup, pattern=args.pattern, tick_us=args.tick_us)
    except ValueError as e:
        print(f"ringlog load: {e}", file=sys.stderr)
        return EXIT_USAGE
    from .client import GatewayError

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
    s.add_argument("--pattern", choices=["mixed", "ioc", "rest_cancel"], default="mixed",
                   help="mixed: the engine's mixed flow on symbols 1..4 (default)")
    s.add_argument("--tick-us", type=int, default=100,
                   help="the sender wakes at most this often (us); due orders go in one write")
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
    _add_journal_parsers(sub)
    _add_replay_parser(sub)
    _add_snapshot_parsers(sub)
    _add_serve(sub)
    _add_load(sub)
    return p


def _parser(sub: Any, name: str, help: str, examples: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                          epilog="examples:\n" + examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--type", action="append", metavar="ID|NAME",
                   help="only this type (repeatable): a type id or a schema/control name")
    p.add_argument("--correlation-id", type=int, metavar="N", help="only this correlation id")
    p.add_argument("--where", action="append", metavar="EXPR",
                   help="field predicate, repeatable: price>100, account=7, side!=1 "
                        "(payload or header fields)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of the table")


def _add_journal_parsers(sub: Any) -> None:
    j = sub.add_parser("journal", help="inspect, verify, follow or repair a journal",
                       description="Journal tools. DIR is a journal directory or a processor "
                                   "directory (then --journal picks input, output or "
                                   "dead-letter).")
    j.set_defaults(group_help=j.format_help)
    jsub = j.add_subparsers(dest="action", metavar="ACTION")
    p = _parser(jsub, "info", "segments, ranges, counts by type, sizes, snapshots, schema",
                "  ringlog journal info ./proc\n  ringlog journal info ./proc/output --json")
    p.add_argument("--no-counts", action="store_true", help="skip counting records by type")
    p.add_argument("--json", action="store_true", help="one JSON document")
    p = _parser(jsub, "dump", "records decoded by the journal's own schema",
                "  ringlog journal dump ./proc --from 1000 --to 1010\n"
                "  ringlog journal dump ./proc --type NEW --where 'price>100' --json | jq .\n"
                "  ringlog journal dump ./proc --since 2026-11-24T12:00:00Z "
                "--until 2026-11-24T12:05:00Z")
    p.add_argument("--from", dest="from_seq", type=int, metavar="SEQ", help="first sequence")
    p.add_argument("--to", dest="to_seq", type=int, metavar="SEQ", help="last sequence")
    p.add_argument("--since", metavar="TIME", help="event time from (ns or ISO-8601, UTC)")
    p.add_argument("--until", metavar="TIME", help="event time up to, inclusive")
    p.add_argument("--limit", type=int, metavar="N", help="stop after N records")
    _add_filters(p)
    p = _parser(jsub, "verify", "check every checksum, sequence density, segment order",
                "  ringlog journal verify ./proc && echo clean\n"
                "  ringlog journal verify ./proc/output --json\n"
                "exit codes: 0 clean, 1 corruption (first problem: file, offset, sequence), "
                "2 usage error")
    p.add_argument("--json", action="store_true", help="the result as JSON")
    p.add_argument("--progress", action="store_true", help="progress on stderr (default on "
                   "a terminal)")
    p = _parser(jsub, "tail", "follow a live journal like tail -f",
                "  ringlog journal tail ./proc\n  ringlog journal tail ./proc/output -n 0 "
                "--json --type trade")
    p.add_argument("-n", "--lines", type=int, default=10, help="start with the last N records")
    p.add_argument("--from", dest="from_seq", type=int, metavar="SEQ",
                   help="start at this sequence instead")
    p.add_argument("--count", type=int, metavar="N", help="exit after N records")
    p.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="exit when nothing new arrives for this long")
    _add_filters(p)
    p = _parser(jsub, "repair", "truncate a torn tail (asks first); --force cuts at damage",
                "  ringlog journal repair ./proc --dry-run\n"
                "  ringlog journal repair ./proc --yes --side-dir /tmp/removed\n"
                "exit codes: 0 repaired or clean, 1 refused/declined, 2 usage error")
    p.add_argument("--yes", action="store_true", help="do not ask (for scripts)")
    p.add_argument("--force", action="store_true",
                   help="also cut mid-journal damage: drops every record from it on (listed)")
    p.add_argument("--dry-run", action="store_true", help="say what would be done, change "
                   "nothing (exit 1 if something needs repair)")
    p.add_argument("--side-dir", metavar="PATH", help="where removed bytes and segments go "
                   "(default DIR/repair-<time>/)")
    for name in ("info", "dump", "verify", "tail", "repair"):
        jsub.choices[name].add_argument("dir", metavar="DIR")
        jsub.choices[name].add_argument("--journal", choices=["input", "output", "dead-letter"],
                                        help="which journal of a processor directory "
                                        "(default input; verify: all of them)")


def _add_handler_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="processor directory (input/ output/ snapshots/)")
    p.add_argument("--handler", required=True, metavar="MODULE:CLASS",
                   help="the handler class (or factory) the processor ran")
    p.add_argument("--breaker", metavar="CONFIG.json|MODULE:ATTR|none",
                   help="the breaker the processor ran with (default: the one recorded in "
                        "DIR/processor.json; none: replay without a breaker)")
    p.add_argument("--dedup", action="store_true", help="the processor ran with dedup=True "
                   "(default: as recorded in DIR/processor.json)")
    p.add_argument("--dead-letter", action="store_true",
                   help="the processor ran with exception_policy='dead_letter' (default: as "
                        "recorded in DIR/processor.json)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--to", dest="to_seq", type=int, metavar="SEQ", help="stop after this "
                   "input sequence (default: the end)")
    g.add_argument("--until", metavar="TIME", help="stop after the last event at or before "
                   "this event time (ns or ISO-8601)")


def _add_replay_parser(sub: Any) -> None:
    p = _parser(sub, "replay", "rebuild handler state from a snapshot and the input journal",
                "  ringlog replay ./proc --handler myapp:Book --to 120000 --dump-state book.json"
                "\n  ringlog replay ./proc --handler myapp:Book --snapshot none --verify\n"
                "read-only: nothing in DIR is written. exit codes: 0 ok, 1 divergence, "
                "2 usage error")
    _add_handler_args(p)
    p.add_argument("--snapshot", default="latest", metavar="SEQ|latest|none",
                   help="start from this snapshot (default: newest at or before the target)")
    p.add_argument("--verify", action="store_true",
                   help="compare outputs with the recorded output journal (exit 1 on the "
                        "first divergence)")
    p.add_argument("--dump-state", metavar="FILE", help="write the state as JSON "
                   "(handler.dump_state(), else on_snapshot() bytes in base64)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p.add_argument("--json", action="store_true", help="the result as JSON")


def _add_snapshot_parsers(sub: Any) -> None:
    s = sub.add_parser("snapshot", help="list, take or verify snapshots",
                       description="Snapshots of a processor directory.")
    s.set_defaults(group_help=s.format_help)
    ssub = s.add_subparsers(dest="action", metavar="ACTION")
    p = _parser(ssub, "list", "list snapshots with sequence, time, size, validity",
                "  ringlog snapshot list ./proc --json")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--json", action="store_true", help="JSON lines")
    p = _parser(ssub, "take", "replay to a sequence (read-only) and write a snapshot there",
                "  ringlog snapshot take ./proc --handler myapp:Book --to 500000")
    _add_handler_args(p)
    p = _parser(ssub, "verify", "check snapshot checksums; with --handler, that a replay "
                "reproduces each snapshot byte for byte",
                "  ringlog snapshot verify ./proc\n"
                "  ringlog snapshot verify ./proc --handler myapp:Book")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--handler", metavar="MODULE:CLASS")
    p.add_argument("--breaker", metavar="CONFIG.json|MODULE:ATTR")
    p.add_argument("--dedup", action="store_true")
    p.add_argument("--dead-letter", action="store_true")


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "bench": cmd_bench,
    "serve": cmd_serve,
    "load": cmd_load,
}
COMMANDS.update({
    "journal info": cmd_journal_info, "journal dump": cmd_journal_dump,
    "journal verify": cmd_journal_verify, "journal tail": cmd_journal_tail,
    "journal repair": cmd_journal_repair, "replay": cmd_replay,
    "snapshot list": cmd_snapshot_list, "snapshot take": cmd_snapshot_take,
    "snapshot verify": cmd_snapshot_verify,
})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ringlog`` and ``python -m ringlog``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the report's command line
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    key = " ".join(filter(None, (args.command, getattr(args, "action", None))))
    if key not in COMMANDS:  # a command group without its action: show the group's help
        print(args.group_help(), file=sys.stderr)
        return EXIT_USAGE
    from .errors import JournalCorruptError, RingLogError

    try:
        return COMMANDS[key](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (| head): stop quietly, and keep the interpreter's final
        # flush of stdout from raising again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except JournalCorruptError as e:
        print(f"ringlog {key}: corrupt journal: {e}", file=sys.stderr)
        return EXIT_FAILED
    except (UsageError, ValueError) as e:
        print(f"ringlog {key}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except RingLogError as e:
        print(f"ringlog {key}: {e}", file=sys.stderr)
        return EXIT_FAILED
