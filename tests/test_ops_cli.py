"""``ringlog admin`` and ``ringlog stat`` against a processor running in another process; the
live view in a real terminal (tmux)."""

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ringlog.engine import Report
from ringlog.engine.codec import decode
from ringlog.engine.records import CancelReason, RejectReason
from ringlog.journal import Journal

SERVER = """
    import sys, threading, time
    from ringlog import Processor, ProcessorConfig
    from ringlog.engine import Command, Engine, Side, new_order
    from ringlog.engine.flow import demo_config
    cfg = demo_config(1, market_data=False)
    p = Processor(Engine(cfg), sys.argv[1], ProcessorConfig(
        slot_size=cfg.min_slot_size, durability="none", segment_size=1 << 20))
    p.start()
    print("ready", flush=True)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    i = 0
    while not stop.is_set():  # accounts 1 and 2 rest buy orders, one each 5 ms
        p.publish(new_order(i + 1, account=1 + i % 2, symbol=1, side=Side.BUY,
                            price=9_600 + i % 300, qty=1), Command.NEW)
        i += 1
        time.sleep(0.005)
    p.drain(timeout=30)
    p.stop()
"""


def ringlog(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "ringlog", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def running_processor(directory):
    """A processor (the matching engine, steady order flow) in another process."""
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SERVER), str(directory)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
        yield p
        _, err = p.communicate(timeout=60)  # closes stdin: the flow stops, the processor drains
        assert p.returncode == 0, err
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


def stat_json(directory, count=1, interval=0.1):
    r = ringlog("stat", directory, "--json", "--count", count, "--interval", interval)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_admin_kill_and_enable_reach_a_running_processor_through_the_journal(tmp_path):
    with running_processor(tmp_path):
        r = ringlog("admin", "kill", tmp_path, "--account", 1)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("kill account 1: journaled at input sequence ")
        kill_seq = int(r.stdout.split()[-1])
        deadline = time.monotonic() + 30
        while stat_json(tmp_path)[0]["counters"]["logic.kills"] != 1:
            assert time.monotonic() < deadline, "the kill never reached the loop"
        time.sleep(0.1)  # account 1's orders are refused for a while
        r = ringlog("admin", "enable", tmp_path, "--account", 1, "--json")
        assert r.returncode == 0, r.stderr
        enable_seq = json.loads(r.stdout)["sequence"]
        time.sleep(0.1)
    with Journal(tmp_path / "output") as j:
        reps = [(r.producer_seq, decode(r.type_id, r.payload)) for r in j.reader(0)
                if Report.ACCEPTED <= r.type_id <= Report.RESTED]
    killed = [d for s, d in reps if d["type"] == Report.CANCELLED
              and d["reason"] == CancelReason.KILL]
    assert killed and {d["account"] for d in killed} == {1}
    assert all(s == kill_seq for s, d in reps if d in killed)
    refused = [s for s, d in reps if d["type"] == Report.REJECTED
               and d["reason"] == RejectReason.ACCOUNT_DISABLED]
    assert refused and all(kill_seq < s < enable_seq for s in refused)
    # after the re-enable account 1 rests orders again
    assert any(s > enable_seq and d["account"] == 1 and d["type"] == Report.RESTED
               for s, d in reps)


def test_admin_usage_errors_are_one_line_and_exit_2(tmp_path):
    r = ringlog("admin", "kill", tmp_path, "--account", 1)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "no running processor at" in r.stderr
    with running_processor(tmp_path):
        r = ringlog("admin", "kill", tmp_path)
        assert r.returncode == 2 and "--account N or --all" in r.stderr
        r = ringlog("admin", "enable", tmp_path, "--account", "-3")
        assert r.returncode == 2 and "an account is 0.." in r.stderr
        r = ringlog("admin", "reset", tmp_path)  # no breaker: harmless, journaled
        assert r.returncode == 0 and "reset: journaled at input sequence" in r.stdout


def test_admin_without_a_running_processor_exits_2_with_one_line_for_each_way(tmp_path):
    missing = tmp_path / "never-made"
    stale = tmp_path / "killed"
    stale.mkdir()
    # a processor killed -9 leaves its socket file behind: nobody listens on it
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale / "admin.sock"))
    for directory in (tmp_path, missing, stale):
        for args in (("kill", directory, "--all"), ("reset", directory)):
            r = ringlog("admin", *args)
            assert r.returncode == 2, (args, r.stderr)
            assert r.stderr.count("\n") == 1 and r.stdout == ""
            assert f"no running processor at {directory}" in r.stderr
            assert "Traceback" not in r.stderr


def test_admin_against_a_processor_that_never_answers_says_so(tmp_path):
    from ringlog.admin import AdminSocketError, send_admin

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as hung:
        hung.bind(str(tmp_path / "admin.sock"))
        hung.listen(1)  # accepts (the kernel does) and never reads nor answers
        with pytest.raises(AdminSocketError, match=r"did not answer .*no answer within 0\.2s") \
                as e:
            send_admin(tmp_path, "reset", timeout=0.2)
    assert isinstance(e.value, ConnectionError)


def test_stat_json_prints_one_line_per_interval_with_rates_and_lags(tmp_path):
    with running_processor(tmp_path) as p:
        lines = stat_json(tmp_path, count=3, interval=0.2)
        assert len(lines) == 3
        for doc in lines:
            assert doc["writer"] == "running" and doc["pid"] == p.pid
            assert doc["breaker"] == "none"  # no breaker configured
            assert {"logic.lag", "journal.durable_lag", "output.lag"} <= set(doc["lags"])
        assert lines[-1]["counters"]["logic.sequence"] > lines[0]["counters"]["logic.sequence"]
        assert lines[-1]["rates"]["logic.processed"] > 0  # orders keep arriving
    done = stat_json(tmp_path)[0]
    assert done["writer"] == "stopped"  # closed cleanly: the last figures stay


def test_stat_without_a_counters_file_exits_2_with_one_line(tmp_path):
    r = ringlog("stat", tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "no counters file at" in r.stderr
    r = ringlog("stat", tmp_path, "--interval", "0")
    assert r.returncode == 2 and "--interval must be > 0" in r.stderr


@pytest.mark.skipif(shutil.which("tmux") is None,
                    reason="needs tmux (.ci/run installs it: apt-get install tmux)")
def test_stat_redraws_in_place_in_a_real_terminal(tmp_path):
    session = f"ringlog-stat-{tmp_path.name}"[:60]
    sock = str(tmp_path / "tmux.sock")

    def tmux(*args):
        return subprocess.run(["tmux", "-S", sock, *args], capture_output=True, text=True,
                              timeout=30)

    with running_processor(tmp_path) as p:
        cmd = f"{sys.executable} -m ringlog stat {tmp_path} --interval 0.2"
        assert tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40",
                    cmd).returncode == 0
        try:
            screens = []
            deadline = time.monotonic() + 30
            while len(screens) < 2:
                assert time.monotonic() < deadline, f"no live view: {screens}"
                screen = tmux("capture-pane", "-p", "-t", session).stdout
                lines = screen.splitlines()
                if lines and "logic.sequence" in screen and (not screens
                                                            or screen != screens[-1]):
                    screens.append(screen)
                time.sleep(0.1)
            for screen in screens:
                lines = screen.splitlines()
                # redrawn in place: the header stays on the first line, nothing scrolls
                assert lines[0] == f"ringlog stat {tmp_path}"[:100]
                assert f"writer pid {p.pid}: running" in lines[1]
                assert sum("logic.sequence" in line for line in lines) == 1

            def seq(screen):
                (row,) = [x for x in screen.splitlines() if x.startswith("logic.sequence")]
                return int(row.split()[1].replace(",", ""))

            assert seq(screens[1]) > seq(screens[0])  # the figures move
        finally:
            tmux("kill-server")


def test_stat_follows_a_restarted_processor(tmp_path):
    with running_processor(tmp_path) as p1:
        first = p1.pid
    with running_processor(tmp_path) as p2:
        docs = stat_json(tmp_path, count=1)
        assert docs[0]["pid"] == p2.pid != first
    assert Path(tmp_path / "counters").is_file()
