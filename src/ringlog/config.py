"""Validation shared by every configuration Struct: types checked at construction.

msgspec validates types only when it decodes or converts; a Struct built by calling it
(``ProcessorConfig(durability="fast")``) is not checked. ``check_fields`` converts each field's
value against its annotation and raises :class:`~ringlog.errors.ConfigError` naming the field
path, so a wrong type or a value outside a ``Literal`` fails at construction, never later in a
thread.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

from .errors import ConfigError

__all__ = ["ConfigError", "check_fields", "config_error", "cpus_not_allowed"]


def check_fields(obj: msgspec.Struct, path: str | None = None,
                 error: type[ConfigError] = ConfigError) -> None:
    """Raises ``error`` (a ConfigError) for the first field of ``obj`` whose value does not fit
    its type.

    Call it first in ``__post_init__``; ``path`` prefixes the field names (default: the
    class name); ``error`` is the part's own subclass (BreakerConfigError, ...).
    """
    owner = path or type(obj).__name__
    for f in msgspec.structs.fields(obj):
        value = getattr(obj, f.name)
        try:
            msgspec.convert(value, f.type, strict=True)
        except msgspec.ValidationError as e:
            raise error(f"{owner}.{f.name}", _reason(e, value), value) from None


def config_error(obj: msgspec.Struct, field: str, message: str,
                 error: type[ConfigError] = ConfigError) -> ConfigError:
    """A ConfigError (or the ``error`` subclass) for ``field`` of ``obj`` (a value check in
    ``__post_init__``)."""
    return error(f"{type(obj).__name__}.{field}", message, getattr(obj, field, None))


def cpus_not_allowed(cpus: frozenset[int]) -> str | None:
    """Why ``cpus`` cannot be used to pin threads of this process (the CPUs it may not run
    on, ``os.sched_getaffinity``: a container's or taskset's limit counts), or None."""
    allowed = os.sched_getaffinity(0)
    if cpus <= allowed:
        return None
    return (f"CPUs {sorted(cpus - allowed)} are not among those this process may use, "
            f"{sorted(allowed)}")


def _reason(e: msgspec.ValidationError, value: Any) -> str:
    msg = str(e)
    # msgspec says "Expected `int`, got `str`" or "Invalid enum value 'fast'"; a path of an
    # inner value follows as " - at `$[1]`", which we keep.
    return msg if "got" in msg or repr(value) in msg else f"{msg} (got {value!r})"
