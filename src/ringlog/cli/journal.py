"""``ringlog journal info|dump|verify|tail|repair``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import EXIT_FAILED, EXIT_OK, UsageError, _parser, count, seconds, sequence, whole
from .filters import check_filter, check_range


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


def _verify_progress(path: Path) -> Callable[[int, int], None]:
    """``verify``'s progress line on stderr for the journal at ``path``."""
    return lambda i, n: print(f"\rverify {path}: segment {i}/{n}", end="", file=sys.stderr,
                              flush=True)


def _filter(args: argparse.Namespace, path: Path) -> Any:
    """The Filter of dump/tail, checked against the journal at ``path`` before any output."""
    from ..journaltool import Filter, parse_time

    def t(v: str | None) -> int | None:
        return None if v is None else parse_time(v)

    check_range(getattr(args, "from_seq", None), getattr(args, "to_seq", None), "--from/--to")
    check_range(t(getattr(args, "since", None)), t(getattr(args, "until", None)),
                "--since/--until")
    check_filter(path, args.type or [], args.where or [])
    flt = Filter(from_sequence=getattr(args, "from_seq", None),
                  to_sequence=getattr(args, "to_seq", None),
                  since_ns=t(getattr(args, "since", None)),
                  until_ns=t(getattr(args, "until", None)),
                  types=args.type or [], correlation_id=args.correlation_id,
                  where=args.where or [], limit=getattr(args, "limit", None))
    flt.compile()  # the Filter's own checks, too, before any output
    return flt


def cmd_journal_info(args: argparse.Namespace) -> int:
    """Segments, ranges, counts by type, sizes, lock holder, snapshots, schema."""
    from .. import journaltool

    d = journaltool.info(_journal_dir(args), counts=not args.no_counts)
    print(journaltool.to_json(d) if args.json else journaltool.format_info(d))
    return EXIT_OK


def cmd_journal_dump(args: argparse.Namespace) -> int:
    """Streams records decoded by the journal's own schema, filtered."""
    from .. import journaltool

    path = _journal_dir(args)
    journaltool.dump(path, _filter(args, path), sys.stdout, as_json=args.json)
    return EXIT_OK


def cmd_journal_verify(args: argparse.Namespace) -> int:
    """Checks every checksum, sequence density, segment order and index; of a processor
    directory, every journal in it unless --journal picks one."""
    from .. import journaltool

    d = Path(args.dir)
    if args.journal is None and not any(d.glob("*.seg")) and (d / "input").is_dir():
        paths = [d / j for j in ("input", "output", "dead-letter") if (d / j).is_dir()]
    else:
        paths = [_journal_dir(args)]
    show = args.progress or (sys.stderr.isatty() and not args.json)
    failed = False
    for path in paths:
        res = journaltool.check(path, progress=_verify_progress(path) if show else None)
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
    from .. import journaltool

    path = _journal_dir(args)
    journaltool.tail(path, sys.stdout, lines=args.lines,
                     from_sequence=args.from_seq, flt=_filter(args, path), as_json=args.json,
                     count=args.count, idle_exit=args.idle_exit)
    return EXIT_OK


def _check_side_dir(side: Path) -> None:
    """--side-dir must be a directory, or a new one whose nearest existing parent is one."""
    if side.exists() and not side.is_dir():
        raise UsageError(f"--side-dir {side}: exists and is not a directory")
    parent = side
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--side-dir {side}: {parent} is not a directory")


def cmd_journal_repair(args: argparse.Namespace) -> int:
    """Truncates a torn tail (or, with --force, cuts the journal at mid-file damage)."""
    from .. import journaltool
    from ..errors import JournalCorruptError

    path = _journal_dir(args)
    if args.side_dir is not None:
        _check_side_dir(Path(args.side_dir))
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



def cmd_journal_prune(args: argparse.Namespace) -> int:
    """Drops snapshots and segments older than the retention keeps (ringlog.retention)."""
    from ..retention import cmd_journal_prune as run

    return run(args)


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--type", action="append", metavar="ID|NAME",
                   help="only this type (repeatable): a type id or a schema/control name")
    p.add_argument("--correlation-id", type=whole(0, 2**64 - 1, "correlation id"),
                   metavar="N", help="only this correlation id")
    p.add_argument("--where", action="append", metavar="EXPR",
                   help="field predicate, repeatable: price>100, account=7, side!=1 "
                        "(payload or header fields)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of the table")


def add_parsers(sub: Any) -> None:
    """Registers ``journal``."""
    j = sub.add_parser("journal", help="inspect, verify, follow or repair a journal",
                       description="Journal tools. DIR is a journal directory or a processor "
                                   "directory (then --journal picks input, output or "
                                   "dead-letter).",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n"
                              "  ringlog journal verify ./proc && echo clean\n"
                              "  ringlog journal info ./proc --journal output\n"
                              "  ringlog journal dump ./proc --type NEW --where 'price>100'\n"
                              "  ringlog journal tail ./proc -n 0 --json\n"
                              "  ringlog journal repair ./proc --dry-run\n"
                              "`ringlog journal ACTION --help` shows an action's options")
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
    p.add_argument("--from", dest="from_seq", type=sequence, metavar="SEQ", help="first sequence")
    p.add_argument("--to", dest="to_seq", type=sequence, metavar="SEQ", help="last sequence")
    p.add_argument("--since", metavar="TIME", help="event time from (ns or ISO-8601, UTC)")
    p.add_argument("--until", metavar="TIME", help="event time up to, inclusive")
    p.add_argument("--limit", type=count, metavar="N", help="stop after N records")
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
    p.add_argument("-n", "--lines", type=whole(0, what="lines"), default=10,
                   help="start with the last N records")
    p.add_argument("--from", dest="from_seq", type=sequence, metavar="SEQ",
                   help="start at this sequence instead")
    p.add_argument("--count", type=count, metavar="N", help="exit after N records")
    p.add_argument("--idle-exit", type=seconds(0, strict=True), metavar="SECONDS",
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
    from ..retention import add_prune_parser  # logic in ringlog.retention

    add_prune_parser(jsub)
    for name in ("info", "dump", "verify", "tail", "repair"):
        jsub.choices[name].add_argument("dir", metavar="DIR")
        jsub.choices[name].add_argument("--journal", choices=["input", "output", "dead-letter"],
                                        help="which journal of a processor directory "
                                        "(default input; verify: all of them)")



COMMANDS = {
    "journal info": cmd_journal_info, "journal dump": cmd_journal_dump,
    "journal verify": cmd_journal_verify, "journal tail": cmd_journal_tail,
    "journal repair": cmd_journal_repair, "journal prune": cmd_journal_prune,
}
