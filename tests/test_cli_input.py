"""Bad input to the ``ringlog`` command: every one is exit 2 and one line on stderr naming the
problem (and, where there are a few, the valid choices); never a traceback, never exit 0.
Good spellings of rates and sizes are accepted the same way by every command."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys

import pytest
import test_cli
from test_cli import HANDLERS, make_journal

from ringlog import cli, journaltool
from ringlog.units import parse_rate, parse_size


def run(argv, capsys):
    """(exit code, stderr) of ``ringlog argv`` run in this process."""
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.err, out.out


processor_dir = test_cli.processor_dir  # the fixture: 600 events, snapshots every 100


@pytest.fixture(scope="module")
def small_journal(tmp_path_factory):
    return make_journal(tmp_path_factory.mktemp("bad") / "j", n=50)


J, P = "{j}", "{p}"  # placeholders: the test journal, the test processor directory
H = f"{HANDLERS}:Book"
BAD = [
    # journal dump
    (["journal", "dump", J, "--to", "-5"], "sequence must be 0 or more"),
    (["journal", "dump", J, "--from", "-1"], "sequence must be 0 or more"),
    (["journal", "dump", J, "--to", str(10**30)], "too large"),
    (["journal", "dump", J, "--from", "10", "--to", "5"], "end comes before the start"),
    (["journal", "dump", J, "--since", "2026-01-02", "--until", "2026-01-01"],
     "end comes before the start"),
    (["journal", "dump", J, "--type", "Nope"], "choose a type id or one of"),
    (["journal", "dump", J, "--limit", "-1"], "count must be 1 or more"),
    (["journal", "dump", J, "--limit", "0"], "count must be 1 or more"),
    (["journal", "dump", J, "--limit", "ten"], "not a whole number"),
    (["journal", "dump", J, "--where", "nope>1"], "no field 'nope'"),
    (["journal", "dump", J, "--where", "price>>100"], "comes a value"),
    (["journal", "dump", J, "--where", "price>abc"], "price is a number"),
    (["journal", "dump", J, "--where", "price~1"], "expected FIELD OP VALUE"),
    (["journal", "dump", J, "--where", "price>"], "comes a value"),
    (["journal", "dump", J, "--since", "yesterday"], "ISO-8601"),
    (["journal", "dump", J, "--correlation-id", "-1"], "correlation id must be 0 or more"),
    (["journal", "dump", J, "--journal", "inputs"], "invalid choice"),
    (["journal", "dump", "/nonexistent/dir"], "no such directory"),
    # journal tail
    (["journal", "tail", J, "-n", "-3"], "lines must be 0 or more"),
    (["journal", "tail", J, "--idle-exit", "-1"], "seconds must be above 0"),
    (["journal", "tail", J, "--idle-exit", "nan"], "seconds must be above 0"),
    (["journal", "tail", J, "--count", "0"], "count must be 1 or more"),
    (["journal", "tail", J, "--from", "-2"], "sequence must be 0 or more"),
    (["journal", "tail", J, "--type", "Nope"], "choose a type id or one of"),
    # journal repair
    (["journal", "repair", J, "--side-dir", "{file}"], "is not a directory"),
    (["journal", "repair", J, "--side-dir", "{file}/sub"], "is not a directory"),
    # replay and snapshots
    (["replay", P, "--handler", H, "--to", "-5"], "sequence must be 0 or more"),
    (["replay", P, "--handler", H, "--to", str(10**30)], "too large"),
    (["replay", P, "--handler", H, "--snapshot", "12345"], "no such snapshot; choose latest"),
    (["replay", P, "--handler", H, "--snapshot", "newest"], "give a snapshot sequence"),
    (["replay", P, "--handler", H, "--dump-state", "/nonexistent/dir/state.json"],
     "no directory"),
    (["replay", P, "--handler", "no_such_module:X"], "no_such_module"),
    (["snapshot", "take", P, "--handler", H, "--to", "-1"], "sequence must be 0 or more"),
    (["snapshot", "list", "/nonexistent/dir"], "no snapshots/ directory"),
    # bench
    (["bench", "--runs", "0"], "count must be 1 or more"),
    (["bench", "--handler", H, "--rate", "0"], "rate must be above 0"),
    (["bench", "--handler", H, "--rate", "fast"], "not a rate: 'fast'"),
    (["bench", "--handler", H, "--event-size", "0"], "size must be a whole number above 0"),
    (["bench", "--handler", H, "--event-size", "1.5"], "size must be a whole number"),
    (["bench", "--handler", H, "--duration", "-1"], "seconds must be above 0"),
    (["bench", "nope"], "unknown target(s) nope; choose from ring, journal"),
    (["bench", "compare", "/nonexistent/a.json", "/nonexistent/b.json"],
     "/nonexistent/a.json: No such file or directory (errno 2, ENOENT)"),
    (["bench", "compare", "only-one.json"], "usage: ringlog bench compare"),
    # load (argument checks only: nothing is contacted)
    (["load", "--rate", "-5"], "not a rate"),
    (["load", "--rate", "0"], "rate must be above 0"),
    (["load", "--connections", "0"], "count must be 1 or more"),
    (["load", "--port", "70000"], "port 70000 is too large"),
    (["load", "--duration", "0"], "seconds must be above 0"),
    (["load", "--config", "/nonexistent/gw.toml"], "/nonexistent/gw.toml"),
    (["load", "--connections", "8", "--token", "t1"],
     "needs 8 session tokens (one logon each), 1 given: add 7 [[sessions]]"),
    # serve (argument checks only)
    (["serve", "{tmp}/d", "--config", "/nonexistent/gw.toml"], "/nonexistent/gw.toml"),
    (["serve", "{tmp}/d", "--config", "x.toml", "--port", "-1"], "port must be 0 or more"),
    # the command itself
    (["nope"], "invalid choice: 'nope'"),
    (["journal", "dump"], "required: DIR"),
]


@pytest.mark.parametrize(("argv", "says"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exits_2_with_one_line_naming_it(
        argv, says, small_journal, processor_dir, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    fill = {"j": small_journal, "p": processor_dir[0], "file": a_file, "tmp": tmp_path}
    rc, err, out = run([a.format(**fill) for a in argv], capsys)
    assert rc == 2, (rc, err, out)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], err
    assert "Traceback" not in err
    assert out == ""


def test_the_type_error_lists_the_journal_s_own_type_names(small_journal, capsys):
    rc, err, _ = run(["journal", "dump", small_journal, "--type", "Nope"], capsys)
    assert rc == 2 and "order" in err and "tick" in err and "snapshot" in err


def test_the_field_error_lists_header_and_schema_fields(small_journal, capsys):
    rc, err, _ = run(["journal", "dump", small_journal, "--where", "prise>1"], capsys)
    assert rc == 2
    for field in ("price", "account", "px", "qty", "sequence", "correlation_id"):
        assert field in err


def test_good_filters_still_pass_the_checks(small_journal, capsys):
    for where in ("price>10", "payload.price>=10.5", "sym=AB", "sequence<5", "type=Tick"):
        rc, err, out = run(["journal", "dump", small_journal, "--where", where, "--json"],
                           capsys)
        assert rc == 0 and out.strip(), (where, err)
    rc, _, out = run(["journal", "dump", small_journal, "--type", "2", "--type", "order",
                      "--limit", "3", "--json"], capsys)
    assert rc == 0 and len(out.splitlines()) == 3


def test_the_snapshot_error_lists_the_snapshots_there_are(processor_dir, capsys):
    rc, err, _ = run(["replay", processor_dir[0], "--handler", H, "--snapshot", "150"], capsys)
    assert rc == 2 and "99, 199, 299" in err


@pytest.mark.parametrize("argv", [
    ["journal", "info", J], ["journal", "dump", J], ["journal", "verify", J],
    ["journal", "tail", J, "--count", "1"], ["journal", "repair", J, "--yes"]])
def test_a_refused_path_is_one_line_with_the_path_and_errno(argv, small_journal, monkeypatch,
                                                           capsys):
    # root reads any file here, so the refusal comes from the reader every command opens
    def refuse(path, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    import ringlog.journal

    monkeypatch.setattr(ringlog.journal, "list_segments", refuse)  # the tools call it there
    rc, err, _ = run([a.format(j=small_journal) for a in argv], capsys)
    assert rc == 2, err
    assert err.strip() == (f"ringlog {' '.join(argv[:2])}: {small_journal}: Permission denied "
                           "(errno 13, EACCES)")


def test_serve_on_a_busy_port_is_one_line_with_the_errno(tmp_path):
    from test_gateway_cli import _config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "ringlog", "serve", str(tmp_path / "d"),
                            "--config", str(_config(tmp_path)), "--port", str(busy),
                            "--durability", "none"], capture_output=True, text=True,
                           timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert str(busy) in r.stderr and "EADDRINUSE" in r.stderr


def test_serve_into_a_directory_under_a_file_is_one_line(tmp_path, capsys):
    from test_gateway_cli import _config

    (tmp_path / "f").write_text("x")
    rc, err, _ = run(["serve", tmp_path / "f" / "d", "--config", _config(tmp_path)], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(tmp_path / "f") in err


def test_load_with_more_connections_than_sessions_names_the_config_to_extend(tmp_path, capsys):
    from test_gateway_cli import _config

    cfg = _config(tmp_path)  # two sessions
    rc, err, _ = run(["load", "--config", cfg, "--connections", "8", "--rate", "50k"], capsys)
    assert rc == 2 and f"add 6 [[sessions]] to {cfg}" in err and "--connections 2" in err


def test_version_and_top_level_help(capsys):
    from ringlog import __version__

    rc, _, out = run(["--version"], capsys)
    assert rc == 0 and out.strip() == f"ringlog {__version__}"
    rc, _, out = run(["--help"], capsys)
    assert rc == 0 and "examples:" in out and "journal" in out and "exit codes" in out


@pytest.mark.parametrize("cmd", [
    ["bench"], ["journal"], ["journal", "info"], ["journal", "dump"], ["journal", "verify"],
    ["journal", "tail"], ["journal", "repair"], ["replay"], ["snapshot"], ["snapshot", "list"],
    ["snapshot", "take"], ["snapshot", "verify"], ["serve"], ["load"]])
def test_every_command_and_group_has_help_with_examples(cmd, capsys):
    rc, _, out = run([*cmd, "--help"], capsys)
    assert rc == 0 and "examples:\n  ringlog " + cmd[0] in out, out


def test_one_spelling_of_rates_and_sizes_everywhere():
    assert [parse_rate(t) for t in ("2500", "10k", "1.5M", "50K", "1e3")] == [
        2500.0, 10_000.0, 1_500_000.0, 50_000.0, 1000.0]
    assert [parse_size(t) for t in ("4096", "64KiB", "1M", "2GiB", "1k")] == [
        4096, 65536, 1_000_000, 2 << 30, 1000]
    for bad in ("", "k", "-5", "1.5.5", "10 kb", "1x"):
        with pytest.raises(ValueError, match="not a"):
            parse_rate(bad)
    p = cli.build_parser()
    assert p.parse_args(["load", "--rate", "50k"]).rate == 50_000.0
    assert p.parse_args(["bench", "--rate", "50k"]).rate == [50_000.0]
    args = p.parse_args(["bench", "--event-size", "1KiB", "--ring-size", "16KiB"])
    assert (args.event_size, args.ring_size) == (1024, 16384)


def test_a_journal_error_from_the_system_is_a_usage_exit_with_its_errno(small_journal,
                                                                        monkeypatch, capsys):
    from ringlog.errors import JournalError

    def refuse(*a, **k):
        raise JournalError(f"cannot open journal {small_journal}: Permission denied (errno 13)",
                           errno=13, path=str(small_journal))

    monkeypatch.setattr(journaltool, "info", refuse)
    rc, err, _ = run(["journal", "info", small_journal], capsys)
    assert rc == 2 and err.count("\n") == 1 and "errno 13" in err and str(small_journal) in err
