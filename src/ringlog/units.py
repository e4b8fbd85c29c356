"""One spelling of rates and sizes everywhere: ``50k``, ``1.5M``, ``64KiB``, ``1GiB``.

    parse_rate("50k")    -> 50000.0      events (or messages) per second
    parse_size("64KiB")  -> 65536        bytes (or slots, entries)
    parse_size("1M")     -> 1000000      k, M, G are powers of 1000; KiB, MiB, GiB of 1024

The CLI, configuration files and the bench harness all read quantities through these two
functions, so a value written one way is accepted everywhere.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_rate", "parse_size"]

_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9,
          "kib": 2**10, "mib": 2**20, "gib": 2**30}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.I)


def _split(text: str, what: str, examples: str) -> tuple[float, int]:
    m = _QUANTITY.match(str(text))
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _SCALE:
        raise ValueError(f"not a {what}: {text!r} (e.g. {examples}; suffixes k, M, G "
                         "= 1000s, KiB, MiB, GiB = 1024s)")
    return float(m.group(1)), _SCALE[unit]


def parse_rate(text: str | float) -> float:
    """A positive rate per second: ``2500``, ``10k``, ``1.5M``."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        number, scale = _split(text, "rate", "2500, 10k, 1.5M")
        value = number * scale
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"a rate must be above 0 per second, not {text!r}")
    return value


def parse_size(text: str | int) -> int:
    """A whole positive size: ``4096``, ``64KiB``, ``1M``, ``2GiB``."""
    if isinstance(text, int):
        value: float = text
    else:
        number, scale = _split(text, "size", "4096, 64KiB, 1M")
        value = number * scale
    if not math.isfinite(value) or value != int(value) or value <= 0:
        raise ValueError(f"a size must be a whole number above 0, not {text!r}")
    return int(value)
