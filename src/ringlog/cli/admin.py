"""``ringlog admin kill|enable|reset|release|discard DIR``: journaled operator commands to the
processor running in DIR (through its admin socket, ringlog.admin)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import EXIT_OK, UsageError, _parser

_HELP = {
    "kill": "kill switch: cancel an account's (or everyone's) resting orders and refuse "
            "its new ones until re-enabled",
    "enable": "re-enable an account (or every account) the kill switch disabled",
    "reset": "close the circuit breaker; input held back while it was open is processed",
    "release": "publish the outputs the breaker held",
    "discard": "drop the outputs the breaker held (they stay in the input journal)",
}


def cmd_admin(args: argparse.Namespace) -> int:
    """Sends one operator command; prints the journal sequence it was journaled at."""
    from ..admin import AdminError, AdminSocketError, send_admin

    key = None
    if args.action in ("kill", "enable"):
        if args.account is None and not args.all:
            raise UsageError("say whose: --account N or --all")
        key = args.account
    try:
        seq = send_admin(args.dir, args.action, key)
    except (AdminSocketError, AdminError) as e:
        raise UsageError(str(e)) from None
    whom = "" if args.action not in ("kill", "enable") else \
        (" every account" if key is None else f" account {key}")
    if args.json:
        print(json.dumps({"op": args.action, "key": key, "sequence": seq}))
    else:
        print(f"{args.action}{whom}: journaled at input sequence {seq}")
    return EXIT_OK


def _account(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an account number: {text!r}") from None
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"an account is 0..{2**32 - 1}, got {v}")
    return v


def add_parsers(sub: Any) -> None:
    """Registers ``admin``."""
    a = sub.add_parser("admin", help="operator commands to a running processor (journaled)",
                       description="Operator commands to the processor running in DIR, "
                       "journaled like any input so a replay repeats them.")
    acts = a.add_subparsers(dest="action", metavar="ACTION")
    a.set_defaults(group_help=a.format_help)
    for name, text in _HELP.items():
        s = _parser(acts, name, text, f"  ringlog admin {name} var/engine"
                    + (" --account 7\n  ringlog admin " + name + " var/engine --all\n"
                       if name in ("kill", "enable") else "\n"))
        s.add_argument("dir", help="the processor's directory")
        if name in ("kill", "enable"):
            g = s.add_mutually_exclusive_group()
            g.add_argument("--account", type=_account, help="the account (breaker key)")
            g.add_argument("--all", action="store_true", help="every account")
        s.add_argument("--json", action="store_true", help="one JSON line")


COMMANDS = {f"admin {name}": cmd_admin for name in _HELP}
