"""``ringlog snapshot list|take|verify``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import EXIT_FAILED, EXIT_OK, UsageError, _parser
from .replay import _add_handler_args, _replayer, _target


def cmd_snapshot_list(args: argparse.Namespace) -> int:
    """Lists snapshots: sequence, time, size, validity."""
    from ..journaltool import format_time, to_json
    from ..snapshot import SnapshotStore

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
    from ..errors import SnapshotError
    from ..snapshot import SnapshotStore

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



def add_parsers(sub: Any) -> None:
    """Registers ``snapshot``."""
    s = sub.add_parser("snapshot", help="list, take or verify snapshots",
                       description="Snapshots of a processor directory.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n"
                              "  ringlog snapshot list ./proc\n"
                              "  ringlog snapshot take ./proc --handler myapp:Book --to 500000\n"
                              "  ringlog snapshot verify ./proc --handler myapp:Book\n"
                              "`ringlog snapshot ACTION --help` shows an action's options")
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



COMMANDS = {
    "snapshot list": cmd_snapshot_list, "snapshot take": cmd_snapshot_take,
    "snapshot verify": cmd_snapshot_verify,
}
