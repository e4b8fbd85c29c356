"""Prometheus metrics: `ringlog serve --metrics-port` scraped over HTTP on loopback."""

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from ringlog.client import Client
from ringlog.engine.records import Side
from ringlog.gateway.protocol import (
    Ack,
    FrameDecoder,
    Heartbeat,
    Logon,
    LogonAck,
    ServerMessage,
    encode_frame,
)

parser = pytest.importorskip("prometheus_client.parser")  # the metrics extra (make test has it)

CONFIG = ("port = 0\n[[sessions]]\nid = 1\ntoken = \"token-one\"\naccount = 101\n"
          "[engine]\n[[engine.symbols]]\nsymbol = 7\nmax_price = 100000\n")


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    return {s.name: s for f in parser.text_string_to_metric_families(text) for s in f.samples}, \
        text


@pytest.fixture
def served(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(CONFIG)
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-m", "ringlog", "serve", str(data),
                             "--config", str(cfg), "--durability", "none",
                             "--metrics-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        yield {**json.loads(line), "directory": str(data)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def test_metrics_endpoint_exposes_counters_lags_and_the_age_histogram(served):
    port = served["metrics_port"]
    assert isinstance(port, int) and port > 0
    with Client("127.0.0.1", served["port"], "token-one") as c:
        for i in range(5):
            c.new_order(1000 + i, 7, Side.BUY, 1, 500 + i)
        deadline = time.monotonic() + 30
        while True:  # the gateway stores its figures every 100 ms
            samples, text = scrape(port)
            if samples.get("ringlog_gateway_messages_total") and \
                    samples["ringlog_gateway_messages_total"].value >= 6:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
        assert samples["ringlog_gateway_sessions"].value == 1  # open now
    assert samples["ringlog_writer_up"].value == 1
    assert samples["ringlog_logic_processed_total"].value >= 5
    assert samples["ringlog_logic_sequence"].value >= 4
    assert samples["ringlog_gateway_logons_total"].value == 1
    assert "ringlog_logic_lag" in samples and "ringlog_journal_durable_lag" in samples
    assert "# TYPE ringlog_logic_age_seconds histogram" in text
    inf = [s for f in parser.text_string_to_metric_families(text) for s in f.samples
           if s.name == "ringlog_logic_age_seconds_bucket" and s.labels["le"] == "+Inf"]
    assert inf and inf[0].value == samples["ringlog_logic_batches_total"].value


def test_metrics_port_in_use_is_one_line_with_the_errno_and_exit_2(tmp_path, served):
    cfg = tmp_path / "gw2.toml"
    cfg.write_text(CONFIG)
    r = subprocess.run([sys.executable, "-m", "ringlog", "serve", str(tmp_path / "other"),
                        "--config", str(cfg), "--metrics-port", str(served["metrics_port"])],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr  # as serve's own port in use (test_cli_input)
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert f"127.0.0.1:{served['metrics_port']}: cannot serve metrics: " in r.stderr
    assert "EADDRINUSE" in r.stderr


def exchange(port, frames, answers):
    """Sends ``frames`` on one connection and reads until ``answers`` messages came back;
    returns the bytes received (the connection stays open until the caller's check)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"".join(frames))
    dec, got, msgs = FrameDecoder(ServerMessage), 0, []
    while len(msgs) < answers:
        chunk = sock.recv(65536)
        assert chunk, f"the gateway closed the connection after {msgs}"
        got += len(chunk)
        msgs += dec.feed(chunk)
    return sock, got, msgs


def test_gateway_bytes_in_and_out_are_counters_in_prometheus_and_stat(served):
    frames = [encode_frame(Logon(0, "token-one")), encode_frame(Heartbeat(1)),
              encode_frame(Heartbeat(2))]
    sent = sum(map(len, frames))
    sock, received, msgs = exchange(served["port"], frames, answers=2)
    with sock:
        assert type(msgs[0]) is LogonAck and type(msgs[-1]) is Ack and msgs[-1].seq == 2
        deadline = time.monotonic() + 30
        while True:  # stored by the gateway's loop every 100 ms
            samples, text = scrape(served["metrics_port"])
            if samples.get("ringlog_gateway_bytes_in_total") and \
                    samples["ringlog_gateway_bytes_in_total"].value == sent:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
        assert samples["ringlog_gateway_bytes_out_total"].value == received
        r = subprocess.run([sys.executable, "-m", "ringlog", "stat", served["directory"],
                            "--json", "--count", "1"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["counters"]["gateway.bytes_in"] == sent
        assert doc["counters"]["gateway.bytes_out"] == received
        assert {"gateway.bytes_in", "gateway.bytes_out"} <= set(doc["rates"])
