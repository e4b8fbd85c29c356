"""``ringlog replay``: rebuild handler state from a snapshot and the input journal."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_FAILED, EXIT_OK, UsageError, _parser, sequence


def _replayer(args: argparse.Namespace) -> Any:
    from ..replay import Replayer, make_breaker, make_handler

    if not Path(args.dir).is_dir():
        raise UsageError(f"{args.dir}: no such directory (give a processor directory)")
    from ..processor import read_manifest

    # what the processor ran with (processor.json), unless the flags say otherwise
    ran = read_manifest(args.dir)
    spec = args.breaker if args.breaker is not None else (ran.breaker if ran else None)
    try:
        handler = make_handler(args.handler)
        breaker = make_breaker(None if spec == "none" else spec)
    except ValueError as e:
        raise UsageError(str(e)) from e
    dedup = args.dedup or bool(ran and ran.config.dedup)
    dead_letter = args.dead_letter or bool(ran and ran.config.exception_policy == "dead_letter")
    return Replayer(args.dir, handler, breaker=breaker, dedup=dedup, dead_letter=dead_letter)


def _target(args: argparse.Namespace, rp: Any) -> int | None:
    from ..journaltool import parse_time

    if getattr(args, "until", None) is not None:
        return int(rp.sequence_at(parse_time(args.until)))
    return getattr(args, "to_seq", None)


def _check_snapshot(directory: Path, seq: int) -> None:
    """--snapshot SEQ must name a snapshot that exists (the valid ones are listed)."""
    from ..snapshot import SnapshotStore

    d = directory / "snapshots"
    have = SnapshotStore(d).sequences() if d.is_dir() else []
    if seq not in have:
        shown = (" or one of " + ", ".join(str(s) for s in have[-10:])
                 + (" (the newest 10)" if len(have) > 10 else "")) if have else \
            " (this directory has no snapshots)"
        raise UsageError(f"--snapshot {seq}: no such snapshot; choose latest, none{shown}")


def cmd_replay(args: argparse.Namespace) -> int:
    """Rebuilds state from a snapshot + the input journal; optionally verifies outputs."""
    from ..journaltool import to_json
    from ..replay import Progress

    rp = _replayer(args)
    snap: int | str = args.snapshot
    if snap not in ("latest", "none"):
        if not str(snap).lstrip("-").isdigit():
            raise UsageError(f"--snapshot {snap!r}: give a snapshot sequence (see `ringlog "
                             "snapshot list`), latest or none")
        snap = int(snap)
        _check_snapshot(Path(args.dir), snap)
    if args.dump_state and not Path(args.dump_state).resolve().parent.is_dir():
        raise UsageError(f"--dump-state {args.dump_state}: no directory "
                         f"{Path(args.dump_state).resolve().parent} to write it in")
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
    g.add_argument("--to", dest="to_seq", type=sequence, metavar="SEQ", help="stop after this "
                   "input sequence (default: the end)")
    g.add_argument("--until", metavar="TIME", help="stop after the last event at or before "
                   "this event time (ns or ISO-8601)")


def add_parsers(sub: Any) -> None:
    """Registers ``replay``."""
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



COMMANDS = {"replay": cmd_replay}
