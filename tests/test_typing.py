"""The typed API and the error hierarchy: mypy --strict sees every top-level name with its real
type (so a misspelt Literal is caught before the program runs), configuration errors name the
field path at construction, and every error ringlog defines is a RingLogError and the builtin
a Python user would catch."""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ringlog
from ringlog import errors
from ringlog.errors import ConfigError, RingLogError


def test_mypy_strict_catches_misspelt_configuration_and_types_the_lazy_names(tmp_path):
    snippet = tmp_path / "user_code.py"
    snippet.write_text(textwrap.dedent("""\
        from ringlog import Limit, ProcessorConfig, Ring, Journal

        good = ProcessorConfig(durability="sync", wait="yielding")
        capacity: int = Ring(64, producer="multi").capacity
        cfg = ProcessorConfig(durability="fast")
        lim = Limit(per="account", max_count=5, window_ns=10)
        ring = Ring(64, producer="mutli")
        name: str = Ring(64).capacity
        Journal("j", durability="always")
        """))
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                        "--cache-dir", str(tmp_path / "cache"), str(snippet)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    lines = {int(m) for m in re.findall(r"user_code\.py:(\d+): error:", r.stdout)}
    # the good lines type-check; each bad one is an error (none is Any)
    assert r.returncode == 1 and lines == {5, 6, 7, 8, 9}, r.stdout + r.stderr
    assert "Literal['fast']" in r.stdout and "Literal['mutli']" in r.stdout


def test_the_type_checking_imports_list_every_lazy_name():
    tree = ast.parse(Path(ringlog.__file__).read_text())
    typed = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.If)
             and getattr(n.test, "id", "") == "TYPE_CHECKING"
             for imp in n.body if isinstance(imp, ast.ImportFrom) for a in imp.names}
    assert typed == set(ringlog._LAZY)


def _ringlog_modules():
    """Every module of the installed package, compiled ones included (the ``__main__``
    entry points run a program when imported: left out)."""
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(ringlog.__path__, "ringlog."):
        if not info.name.endswith("__main__"):
            yield importlib.import_module(info.name)


def _error_classes():
    found = {c for m in (errors, *_ringlog_modules())
             for _, c in inspect.getmembers(m, inspect.isclass)
             if issubclass(c, BaseException) and c.__module__.startswith("ringlog")
             and c is not RingLogError and not c.__name__.startswith("_")}
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__name__}")  # (_private: flow)


def test_the_error_classes_found_include_every_part():
    names = {c.__name__ for c in _error_classes()}
    assert {"CountersError", "CountersFileError", "AdminError", "AdminSocketError",
            "GatewayError", "GatewayTimeout", "LogonRejected", "Divergence",
            "JournalCorruptError", "EngineConfigError"} <= names


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_is_a_ringlog_error_and_a_builtin(cls):
    assert issubclass(cls, RingLogError)
    builtins = [b for b in cls.__mro__ if b.__module__ == "builtins"
                and b not in (Exception, BaseException, object)]
    assert builtins, f"{cls.__name__} derives from no builtin a user would catch"


# (the error, the builtin it is, the builtins it must not be: one kind of failure each)
@pytest.mark.parametrize(("cls", "kind", "not_kinds"), [
    ("ringlog._counters:CountersError", ValueError, (OSError, RuntimeError)),
    ("ringlog._counters:CountersFileError", OSError, (ValueError, RuntimeError)),
    ("ringlog._counters:CountersMissingError", FileNotFoundError, (ValueError,)),
    ("ringlog.admin:AdminError", RuntimeError, (OSError, ValueError)),
    ("ringlog.admin:AdminSocketError", ConnectionError, (RuntimeError, ValueError)),
    ("ringlog.client:GatewayError", ConnectionError, (RuntimeError, ValueError)),
    ("ringlog.client:GatewayTimeout", TimeoutError, (ValueError,)),
    ("ringlog.client:LogonRejected", PermissionError, (ValueError,)),
    ("ringlog.cluster.checkpoint:Divergence", RuntimeError, (OSError, ValueError)),
], ids=lambda v: v.rpartition(":")[2] if isinstance(v, str) else "")
def test_each_error_is_the_one_kind_of_failure_it_reports(cls, kind, not_kinds):
    import pkgutil

    c = pkgutil.resolve_name(cls)
    assert issubclass(c, kind) and issubclass(c, RingLogError)
    assert not [k.__name__ for k in not_kinds if issubclass(c, k)]


def test_counters_errors_name_the_file_and_keep_the_errno(tmp_path):
    import errno

    from ringlog._counters import CountersFileError, CountersMissingError, CountersReader

    with pytest.raises(CountersMissingError) as e:
        CountersReader(tmp_path / "nope")
    assert e.value.errno == errno.ENOENT and e.value.path == str(tmp_path / "nope")
    assert isinstance(e.value, FileNotFoundError)
    (tmp_path / "locked").mkdir(mode=0o000)
    try:
        with pytest.raises(CountersFileError) as e:
            CountersReader(tmp_path / "locked" / "counters")
        if os.geteuid() != 0:  # root passes the permission check and finds no file
            assert e.value.errno == errno.EACCES
    finally:
        (tmp_path / "locked").chmod(0o755)


@pytest.mark.parametrize(("build", "field", "error"), [
    (lambda: ringlog.ProcessorConfig(durability="fast"), "ProcessorConfig.durability",
     ConfigError),
    (lambda: ringlog.Limit(per="account", max_count=5, window_ns=10), "Limit.per",
     ringlog.BreakerConfigError),
    (lambda: ringlog.Limit(max_count="5", window_ns=10), "Limit.max_count",
     ringlog.BreakerConfigError),
    (lambda: ringlog.RatioLimit(max_ratio=1.0, window_ns="x"), "RatioLimit.window_ns",
     ringlog.BreakerConfigError),
    (lambda: ringlog.BreakerConfig(limits=[ringlog.Limit(max_count=1, window_ns=1),
                                           ringlog.Limit(max_count=0, window_ns=1)]),
     "BreakerConfig.limits[1].max_count", ringlog.BreakerConfigError),
    (lambda: ringlog.Breaker({"limits": [{"max_count": 1, "window_ns": "soon"}]}),
     "BreakerConfig.limits[0].window_ns", ringlog.BreakerConfigError),
    (lambda: ringlog.EngineConfig(symbols=[]), "EngineConfig.symbols",
     ringlog.EngineConfigError),
    (lambda: ringlog.SymbolSpec(symbol=1, max_price=10, band_pct=150), "SymbolSpec.band_pct",
     ringlog.EngineConfigError),
])
def test_configuration_errors_name_the_field_path_at_construction(build, field, error):
    with pytest.raises(error) as e:
        build()
    assert isinstance(e.value, ConfigError) and isinstance(e.value, ValueError)
    assert e.value.field == field and str(e.value).startswith(field + ": ")


def test_a_misspelt_ring_producer_fails_at_construction_naming_the_choices():
    with pytest.raises(ringlog.RingError, match="'single' or 'multi', got 'mutli'") as e:
        ringlog.Ring(64, producer="mutli")
    assert isinstance(e.value, ValueError)


# Where ringlog still raises a bare builtin, and why that is the contract there; anything
# else raised anywhere in the package must be a RingLogError subclass (test below).
BARE_BUILTINS_ALLOWED = {
    ("__init__.py", "AttributeError"): "module __getattr__ protocol",
    ("__main__.py", "SystemExit"): "entry point",
    ("bench/__main__.py", "SystemExit"): "entry point",
    ("demo.py", "SystemExit"): "entry point",
    ("bench/peers/limits.py", "SystemExit"): "a script's entry point",
    ("handler.py", "NotImplementedError"): "abstract method",
    ("cli/common.py", "ValueError"): "argparse types: argparse makes them usage errors",
    ("units.py", "ValueError"): "parsers used as argparse types and by config readers",
    ("journaltool/decode.py", "ValueError"): "time parsing (the CLI makes it exit 2) and a "
                                             "payload its decoder cannot read (shown as hex)",
    ("journaltool/dump.py", "ValueError"): "CLI filter parsing: the CLI makes it exit 2",
    ("journal.py", "ValueError"): "a damaged .idx, caught where raised (rebuilt by a scan)",
    ("gateway/session.py", "TypeError"): "a programming error: not an engine command",
    ("gateway/session.py", "KeyError"): "the Mapping protocol (AnswersView.__getitem__)",
    ("bench/latency.py", "ValueError"): "benchmark harness internals",
    ("bench/results.py", "ValueError"): "benchmark harness internals",
    ("bench/stats.py", "ValueError"): "benchmark harness internals",
    ("bench/cpu.py", "RuntimeError"): "benchmark harness internals",
    ("bench/echo.py", "TimeoutError"): "benchmark peer process",
    ("bench/pipeline.py", "RuntimeError"): "benchmark harness internals",
}


def test_no_module_raises_a_bare_builtin_or_bare_ringlog_error_outside_the_known_places():
    import builtins

    kinds = {n for n in dir(builtins) if isinstance(getattr(builtins, n), type)
             and issubclass(getattr(builtins, n), BaseException)} | {"RingLogError"}
    root = Path(ringlog.__file__).parent
    found = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                f = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(f, ast.Name) and f.id in kinds:
                    found.add((path.relative_to(root).as_posix(), f.id))
    assert found - set(BARE_BUILTINS_ALLOWED) == set()
