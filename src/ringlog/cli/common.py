"""What every command family shares: exit codes, the usage error, the parser helper."""

from __future__ import annotations

import argparse
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _rate(text: str) -> float:
    """An offered rate: ``2500``, ``10k``, ``1.5M`` events per second."""
    scale = {"k": 1e3, "m": 1e6}.get(text[-1:].lower(), 1.0)
    try:
        return float(text[:-1] if scale != 1.0 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a rate: {text!r} (e.g. 2500, 10k, 1.5M)") from None


class UsageError(ValueError):
    """A command was given arguments it cannot use (exit code 2)."""



def _parser(sub: Any, name: str, help: str, examples: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                          epilog="examples:\n" + examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)

