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

from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Parser, UsageError

__all__ = ["COMMANDS", "FAMILIES", "build_parser", "main"]

# the command families, in the order `ringlog --help` lists them
FAMILIES = ("demo", "bench", "journal", "replay", "snapshot", "serve", "admin", "stat")


def _families() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{name}") for name in FAMILIES]


def build_parser() -> argparse.ArgumentParser:
    """The one parser of every subcommand."""
    from .._version import __version__

    p = Parser(
        prog="ringlog", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Tools of ringlog, a single-writer event processor: inspect "
        "and repair journals, replay and snapshot a processor's state, serve the matching engine "
        "behind its TCP gateway, offer it load, and benchmark.",
        epilog="examples:\n"
               "  ringlog demo --dir /tmp/ringlog-demo\n"
               "  ringlog journal verify ./proc && echo clean\n"
               "  ringlog journal dump ./proc --type NEW --where 'price>100' --limit 20\n"
               "  ringlog replay ./proc --handler myapp:Book --verify\n"
               "  ringlog bench --handler myapp:Book --rate 10k --runs 5\n"
               "`ringlog COMMAND --help` shows a command's options and examples. exit codes: "
               "0 ok, 1 the check failed (corruption, divergence, regression), 2 usage error "
               "or a path the system refused")
    p.add_argument("--version", action="version", version=f"ringlog {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for family in _families():
        family.add_parsers(sub)
    return p


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    key: fn for family in _families() for key, fn in family.COMMANDS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ringlog`` and ``python -m ringlog``."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, a usage error: an exit code, not an exception
        return e.code if isinstance(e.code, int) else EXIT_USAGE
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
        # an OSError kind built like an OSError (errno, strerror, filename): one line with
        # the path and the errno's name, as for the builtin below
        text = os_error(e) if isinstance(e, OSError) and e.strerror else str(e)
        print(f"ringlog {key}: {text}", file=sys.stderr)
        # a journal or snapshot the system refused (EACCES, ENOENT...) is the operator's
        # path, not a failed check
        return EXIT_USAGE if isinstance(e, OSError) and e.errno else EXIT_FAILED
    except OSError as e:  # a path the user named that the system refused: one line, no trace
        print(f"ringlog {key}: {os_error(e)}", file=sys.stderr)
        return EXIT_USAGE


def os_error(e: OSError) -> str:
    """``PATH: Permission denied (errno 13, EACCES)`` from an OSError."""
    import errno

    where = ": ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    code = f" (errno {e.errno}, {errno.errorcode.get(e.errno, '?')})" if e.errno else ""
    return f"{where + ': ' if where else ''}{e.strerror or e}{code}"
