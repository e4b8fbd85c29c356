"""The ``ringlog`` command: one parser, one dispatch table, one module per command family.

    main(argv) -> build_parser()             every family's add_parsers(sub)
               -> COMMANDS["journal dump"]   "command action" -> cmd_<name>(args) -> exit code

A family is a module of this package with ``add_parsers(sub)`` and ``COMMANDS`` (a dict from
"command" or "command action" to a function of the parsed arguments). Registering a new one is
a line in FAMILIES. Imports of the heavy parts happen inside the commands so that
``ringlog --help`` is instant. Exit codes: 0 success, 1 the thing checked failed (corruption,
regression), 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError

__all__ = ["COMMANDS", "FAMILIES", "build_parser", "main"]

# the command families, in the order `ringlog --help` lists them
FAMILIES = ("bench", "journal", "replay", "snapshot", "serve")


def _families() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{name}") for name in FAMILIES]


def build_parser() -> argparse.ArgumentParser:
    """The one parser of every subcommand."""
    p = argparse.ArgumentParser(
        prog="ringlog", description="Tools of ringlog, a single-writer event processor: inspect "
        "and repair journals, replay and snapshot a processor's state, serve the matching engine "
        "behind its TCP gateway, offer it load, and benchmark.",
        epilog="run `ringlog COMMAND --help` for a command's options and examples")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for family in _families():
        family.add_parsers(sub)
    return p


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    key: fn for family in _families() for key, fn in family.COMMANDS.items()}


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
    from ..errors import JournalCorruptError, RingLogError

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
