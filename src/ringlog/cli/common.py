"""What every command family shares: exit codes, the usage error, argument types, the parser
class that reports a bad argument in one line, the helper that adds a subcommand with examples.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any, NoReturn

from ..config import cpus_not_allowed
from ..errors import RingLogError
from ..units import parse_rate, parse_size

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_SEQUENCE = 2**63 - 1  # sequences are signed 64-bit in the journal


class UsageError(RingLogError, ValueError):
    """A command was given arguments it cannot use (exit code 2)."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line: ``ringlog journal dump: argument
    --to: ... (see ringlog journal dump --help)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        """Prints the problem in one line and exits with 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see: {self.prog} --help)\n")


def _arg_type(name: str, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = name  # argparse names the type in its messages
    return parse


def whole(low: int = 0, high: int = MAX_SEQUENCE, what: str = "number") -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""

    def convert(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise ValueError(f"not a whole number: {text!r}") from None
        if v < low:
            raise ValueError(f"{what} must be {low} or more, not {text}")
        if v > high:
            raise ValueError(f"{what} {text} is too large (at most {high})")
        return v

    return _arg_type(what.replace(" ", "_"), convert)


def seconds(low: float = 0.0, strict: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds, >= low (> low when strict)."""

    def convert(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"not a number of seconds: {text!r}") from None
        if not math.isfinite(v) or v < low or (strict and v == low):
            raise ValueError(f"seconds must be {'above' if strict else 'at least'} {low:g}, "
                             f"not {text}")
        return v

    return _arg_type("seconds", convert)


def parse_cpus(text: str) -> frozenset[int]:
    """A CPU list as taskset(1) takes it (``0,2-3``), each CPU one this process may use."""
    out: set[int] = set()
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi if dash else lo)
        except ValueError:
            raise ValueError(f"not a CPU list like 0,2-3: {text!r}") from None
        if first < 0 or last < first:
            raise ValueError(f"not a CPU range: {part.strip()!r} in {text!r}")
        out.update(range(first, last + 1))
    why = cpus_not_allowed(frozenset(out))
    if why is not None:
        raise ValueError(why)
    return frozenset(out)


sequence = whole(0, MAX_SEQUENCE, "sequence")
count = whole(1, MAX_SEQUENCE, "count")
port = whole(0, 65535, "port")
rate = _arg_type("rate", parse_rate)
size = _arg_type("size", parse_size)
cpus = _arg_type("cpus", parse_cpus)


def _parser(sub: Any, name: str, help: str, examples: str) -> argparse.ArgumentParser:
    """A subcommand whose description is its help and whose epilog is its examples."""
    return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                          epilog="examples:\n" + examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
