"""`ringlog serve` and `ringlog load` end to end: subprocess server, real TCP, restart."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ringlog.cli import main
from ringlog.client import Client
from ringlog.engine.records import Side
from ringlog.gateway.protocol import MarketData, NewOrder, OpenOrders, Subscribe
from ringlog.processor import resolve_topology

# the real matching engine (`ringlog serve`'s default): the symbols the tests trade
ENGINE = "[engine]\n" + "".join(f"[[engine.symbols]]\nsymbol = {s}\nmax_price = 100000\n"
                                 for s in (1, 3, 7))


def _config(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text("port = 0\n" + "".join(
        f'[[sessions]]\nid = {i}\ntoken = "load-token-{i}"\naccount = {100 + i}\n'
        for i in (1, 2)) + ENGINE)
    return cfg


def _serve(tmp_path, cfg, *extra):
    proc = subprocess.Popen([sys.executable, "-m", "ringlog", "serve", str(tmp_path / "data"),
                             "--config", str(cfg), "--durability", "none", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise AssertionError(f"serve did not start: {proc.stderr.read()}")
    return proc, json.loads(line)


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()


def test_serve_then_load_then_restart_recovers_the_orders(tmp_path, capsys):
    cfg = _config(tmp_path)
    proc, ready = _serve(tmp_path, cfg)
    try:
        assert ready["event"] == "listening" and ready["host"] == "127.0.0.1"
        port = str(ready["port"])
        out = tmp_path / "load.json"
        rc = main(["load", "--config", str(cfg), "--port", port, "--connections", "2",
                   "--rate", "2000", "--duration", "0.5", "--warmup", "0.1",
                   "--pattern", "rest_cancel", "--stamps", "kernel", "--json", str(out)])
        doc = json.loads(out.read_text())
        assert rc == 0 and doc["sent"] == doc["answered"] == 1000 and doc["missing"] == 0
        assert doc["stamps"] == "kernel"
        assert doc["latency_ns"]["count"] > 0 and doc["latency_ns"]["p50"] > 0
        with Client("127.0.0.1", ready["port"], "load-token-1") as c:
            c.new_order(4_000_000, 7, Side.BUY, 3, 50)
            assert c.request(OpenOrders, 7)[-1].count == 1
    finally:
        _stop(proc)
    proc, ready = _serve(tmp_path, cfg)
    try:
        assert ready["recovered"]["replayed"] > 1000
        with Client("127.0.0.1", ready["port"], "load-token-1") as c:
            got = c.request(OpenOrders, 7)
            assert [(m.order_id, m.open_qty) for m in got[:-1]] == [(4_000_000, 3)]
    finally:
        _stop(proc)


def test_the_readmes_config_serves_the_readmes_load_over_8_connections(tmp_path):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"cat > gateway.toml <<'EOF'\n(.*?)\n +EOF\n", readme, re.S).group(1)
    cfg = tmp_path / "gateway.toml"
    cfg.write_text("\n".join(line[4:] for line in block.splitlines()) + "\n")
    command = re.search(r"`(ringlog load --config gateway.toml [^`]*)`", readme).group(1)
    assert "--connections 8" in command and "--rate 50k" in command
    args = command.split()[1:]
    args[args.index("--rate") + 1] = "4k"  # the README's command, gentler on a shared machine
    args[args.index("--config") + 1] = str(cfg)
    proc = subprocess.Popen([sys.executable, "-m", "ringlog", "serve", str(tmp_path / "data"),
                             "--config", str(cfg), "--port", "0", "--durability", "none"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    try:
        out = tmp_path / "load.json"
        rc = main([*args, "--port", str(json.loads(line)["port"]), "--duration", "1",
                   "--warmup", "0.2", "--json", str(out)])
        doc = json.loads(out.read_text())
        assert rc == 0 and doc["connections"] == 8
        assert doc["sent"] == doc["answered"] == 4000 and doc["missing"] == 0
    finally:
        _stop(proc)


def test_serve_with_l2_runs_the_engine_with_slots_that_fit_its_records(tmp_path):
    cfg = _config(tmp_path)
    cfg.write_text(cfg.read_text().replace("[engine]\n", "[engine]\nl2_depth = 2\n"))
    proc, ready = _serve(tmp_path, cfg)
    try:
        with Client("127.0.0.1", ready["port"], "load-token-1") as a, \
                Client("127.0.0.1", ready["port"], "load-token-2") as b:
            b.request(Subscribe, 3, 2)
            a.request(NewOrder, 1, 3, Side.BUY, 2, 50)
            a.request(NewOrder, 2, 3, Side.BUY, 1, 49)
            assert [b.next_event(5) for _ in range(4)] == \
                [MarketData(3, 0, 50, 2, 0, 0), MarketData(3, 1, 0, 0, 0, 0),
                 MarketData(3, 0, 50, 2, 0, 0), MarketData(3, 1, 49, 1, 0, 0)]
    finally:
        _stop(proc)


def test_serve_with_a_bad_config_exits_2_naming_the_field(tmp_path, capsys):
    bad = tmp_path / "gw.toml"
    bad.write_text("[[sessions]]\nid = 1\ntoken = 'short'\naccount = 1\n")
    assert main(["serve", str(tmp_path / "d"), "--config", str(bad)]) == 2
    assert "8 characters" in capsys.readouterr().err


def test_serve_with_a_bad_engine_section_exits_2_naming_the_field(tmp_path, capsys):
    bad = tmp_path / "gw.toml"
    bad.write_text("[engine]\n[[engine.symbols]]\nsymbol = 1\nmax_price = 100\n"
                   "band_pct = 200.0\n")
    assert main(["serve", str(tmp_path / "d"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "band_pct" in err and "engine.symbols[0]" in err
    none = tmp_path / "none.toml"
    none.write_text("port = 0\n")
    assert main(["serve", str(tmp_path / "d"), "--config", str(none)]) == 2
    assert "no [engine] section" in capsys.readouterr().err


def test_serve_breaker_options_build_a_per_account_limit():
    from ringlog.cli import build_parser
    from ringlog.cli.serve import _serve_breaker

    args = build_parser().parse_args(["serve", "d", "--config", "c", "--breaker-max", "7",
                                      "--breaker-window-ms", "20", "--breaker-per-account"])
    (limit,) = _serve_breaker(args).config.limits
    assert (limit.max_count, limit.window_ns, limit.per) == (7, 20 * 10**6, "key")
    args = build_parser().parse_args(["serve", "d", "--config", "c"])
    assert _serve_breaker(args) is None


def test_serve_pins_the_processor_threads_to_the_cpus_given(tmp_path):
    cpus = sorted(os.sched_getaffinity(0))
    loop, background = str(cpus[-1]), str(cpus[0])
    proc, _ = _serve(tmp_path, _config(tmp_path), "--loop-cpus", loop,
                     "--background-cpus", background)
    try:
        placed = {}
        for task in Path(f"/proc/{proc.pid}/task").iterdir():
            name = (task / "comm").read_text().strip()
            status = (task / "status").read_text()
            if task.name == str(proc.pid):
                name = "main"  # the event loop's thread
            placed[name] = re.search(r"Cpus_allowed_list:\s*(\S+)", status).group(1)
        # driven (serve's default on few CPUs) has no loop thread: the event loop's thread
        # runs the engine and is placed as the loop
        driven = resolve_topology("auto", driver=True) == "driven"
        assert placed["main" if driven else "rl-loop"] == loop
        assert placed["rl-sync-input"] == placed["rl-sync-output"] == background
    finally:
        _stop(proc)


@pytest.mark.parametrize("flag, value, says", [
    ("--loop-cpus", "1-0", "not a CPU range"), ("--loop-cpus", "a", "not a CPU list"),
    ("--background-cpus", "4096", "[4096] are not among those this process may use")])
def test_serve_with_bad_cpus_exits_2_naming_the_flag(tmp_path, capsys, flag, value, says):
    assert main(["serve", str(tmp_path / "d"), "--config", str(_config(tmp_path)),
                 flag, value]) == 2
    err = capsys.readouterr().err
    assert flag in err and says in err


def test_serve_with_a_bad_topology_exits_2_naming_the_flag(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "d"), "--config", str(_config(tmp_path)),
                 "--topology", "threads"]) == 2
    err = capsys.readouterr().err
    assert "--topology" in err and "threads" in err


def test_serve_runs_the_topology_asked_for(tmp_path):
    from ringlog.processor import read_manifest

    for topology in ("inline", "driven"):
        d = tmp_path / topology
        d.mkdir()
        proc, _ = _serve(d, _config(d), "--topology", topology)
        _stop(proc)
        assert read_manifest(d / "data").config.topology == topology


def test_serve_writes_the_output_journal_as_asked(tmp_path):
    from ringlog.processor import read_manifest

    for name, args, want in (
            ("auto", ("--topology", "driven"), "auto"),
            ("buffered", ("--output-io", "buffered"), "buffered"),
            ("staged", ("--topology", "staged"), "auto")):  # written buffered: the
        # processor's rule for auto under staged (tests/test_journal_direct.py)
        d = tmp_path / name
        d.mkdir()
        proc, _ = _serve(d, _config(d), *args)
        _stop(proc)
        assert read_manifest(d / "data").config.output_io == want


def test_serve_with_a_bad_output_io_exits_2_naming_the_flag(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "d"), "--config", str(_config(tmp_path)),
                 "--output-io", "mmap"]) == 2
    err = capsys.readouterr().err
    assert "--output-io" in err and "mmap" in err


def test_load_without_enough_tokens_is_a_usage_error(capsys):
    assert main(["load", "--token", "x" * 10, "--connections", "2"]) == 2
    assert "needs 2 session tokens" in capsys.readouterr().err
    assert main(["load", "--token", "x" * 10, "--stamps", "nic"]) == 2
    err = capsys.readouterr().err
    assert "--stamps" in err and "nic" in err


def test_kill_9_mid_stream_then_resend_applies_every_order_exactly_once(tmp_path):
    cfg = _config(tmp_path)
    proc, ready = _serve(tmp_path, cfg)
    c = Client("127.0.0.1", ready["port"], "load-token-2")
    try:
        for i in range(1, 301):  # resting orders, not awaited
            c.new_order(i, 3, Side.SELL, 1, 1000 + i)
        c.answers(100)  # some are surely processed, others may be in flight
        proc.kill()  # SIGKILL: no drain, no goodbye
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
        proc, ready = _serve(tmp_path, cfg)
        # resends every unacked order: each is applied now or answered again
        c.reconnect(port=ready["port"])
        got = c.request(OpenOrders, 3, timeout=20)
        assert [m.order_id for m in got[:-1]] == list(range(1, 301))
        assert c.acked == 301 and not c.unacked
    finally:
        c.close()
        _stop(proc)
