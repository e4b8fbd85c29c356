"""The load generator: its frames decode to the intended commands, answers are matched to
their seqs, latency is corrected for coordinated omission, and a run against an echo peer
answers everything."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringlog import _wire
from ringlog.bench.echo import EchoServer
from ringlog.engine.flow import mixed_flow
from ringlog.engine.records import COMMAND_DTYPE, FLAG_POST_ONLY, Command
from ringlog.errors import ConfigError
from ringlog.gateway.protocol import (
    Ack,
    Cancel,
    Error,
    FrameDecoder,
    FrameEncoder,
    Halted,
    MarketData,
    Modify,
    NewOrder,
    OpenOrdersEnd,
    OrderInfo,
    Report,
)
from ringlog.loadgen import LoadConfig, measure, plan_load, summarize_load


def _decode(frames: bytes) -> list:
    out = FrameDecoder().feed(frames)
    assert all(type(m).__name__ != "ProtocolError" for m in out), out
    return out


def _expected(cmd: np.void, kind: int, seq: int) -> object:
    if kind == Command.NEW:
        return NewOrder(seq, int(cmd["order_id"]), int(cmd["symbol"]), int(cmd["side"]),
                        int(cmd["qty"]), int(cmd["price"]), int(cmd["order_type"]),
                        int(cmd["tif"]), bool(cmd["flags"] & FLAG_POST_ONLY), int(cmd["stp"]))
    if kind == Command.CANCEL:
        return Cancel(seq, int(cmd["order_id"]))
    return Modify(seq, int(cmd["order_id"]), int(cmd["price"]), int(cmd["qty"]))


def test_encode_orders_of_the_mixed_flow_decode_to_the_intended_messages():
    cmds, kinds = mixed_flow(3000, seed=5)
    assert {int(k) for k in kinds} == {Command.NEW, Command.CANCEL, Command.MODIFY}
    frames = _wire.encode_orders(cmds.view(np.uint8), kinds, 100, 2900, 77)
    got = _decode(frames)
    assert got == [_expected(cmds[i], kinds[i], 77 + i - 100) for i in range(100, 2900)]


def test_encode_orders_tags_match_the_protocol():
    assert (NewOrder.__struct_config__.tag, Cancel.__struct_config__.tag,
            Modify.__struct_config__.tag) == (4, 5, 6)
    assert [c.__struct_config__.tag for c in (Ack, Report, Error, Halted, OrderInfo,
                                              OpenOrdersEnd)] == [66, 67, 68, 69, 71, 72]


_i64 = st.integers(-(1 << 63), (1 << 63) - 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([101, 102, 103]), st.integers(1, (1 << 32) - 1),
                          _i64, _i64, st.integers(0, (1 << 32) - 1), st.integers(0, 255),
                          st.integers(0, 255), st.booleans()), min_size=1, max_size=20),
       st.integers(1, (1 << 40) - 100))
def test_encode_orders_write_every_integer_width_as_msgspec_reads_it(rows, seq):
    cmds = np.zeros(len(rows), COMMAND_DTYPE)
    kinds = np.array([r[0] for r in rows], np.uint32)
    for i, (_, oid, price, qty, sym, side, tif, post) in enumerate(rows):
        cmds[i] = (oid, price, qty, 0, sym, side, 0, tif, FLAG_POST_ONLY if post else 0, side,
                   b"\0\0\0", 0)
    got = FrameDecoder().feed(_wire.encode_orders(cmds.view(np.uint8), kinds, 0, len(rows),
                                                  seq))
    assert got == [_expected(cmds[i], kinds[i], seq + i) for i in range(len(rows))]


def test_encode_orders_names_a_command_that_is_no_order_message():
    cmds = np.zeros(3, COMMAND_DTYPE)
    kinds = np.array([101, 105, 101], np.uint32)
    with pytest.raises(ValueError, match="command 1 has type 105"):
        _wire.encode_orders(cmds.view(np.uint8), kinds, 0, 3, 1)
    with pytest.raises(ValueError, match="outside"):
        _wire.encode_orders(cmds.view(np.uint8), kinds, 2, 5, 1)


def _answers() -> tuple[bytes, dict[int, int]]:
    """Server frames of every kind; the seqs they answer (first answer wins) -> frame index."""
    enc = FrameEncoder()
    msgs = [Ack(3), Report(12, "accepted", 5), MarketData(1, 0, 1, 2, 3, 4),
            Error(2, "bad \u00e9" * 40, 13), Report(12, "rested", 5, price=-5),
            Halted(14, "breaker"), OrderInfo(15, 1, 1, 1, 10, 1, "open"), Ack(15),
            OpenOrdersEnd(16, 0), Report(0, "trade", 7), Error(1, "no seq"),
            Report(1 << 39, "accepted", 1), Cancel(17, 9)]
    buf = bytearray()
    for m in msgs:
        enc.append(buf, m)
    return bytes(buf), {12: 1, 13: 3, 14: 5, 15: 6, 16: 8, 17: 12}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2000), max_size=6))
def test_answer_scanner_marks_the_first_answer_of_each_seq_across_any_split(cuts):
    data, first = _answers()
    done = np.zeros(8, np.int64)
    sc = _wire.AnswerScanner(done, 10)  # seqs 10..17
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    for k, (a, b) in enumerate(itertools.pairwise(bounds)):
        sc.feed(data[a:b], 1000 + k)
    assert sc.frames == 13 and sc.bad == 0 and sc.acked == 15
    assert sc.answered == 6 and sc.halted == 1 and sc.errors == 1
    assert done[0] == done[1] == 0 and all(done[s - 10] > 0 for s in first)


def test_answer_scanner_times_each_answer_by_the_read_that_completed_it():
    data, _ = _answers()
    done = np.zeros(8, np.int64)
    sc = _wire.AnswerScanner(done, 10)
    cut = data.index(b"\x93\x45\x0e")  # inside the Halted(14) frame
    sc.feed(data[:cut + 1], 5)
    sc.feed(data[cut + 1:], 9)
    assert done[2] == 5 and done[4] == 9  # seq 12 completed in the first read, 14 later


def test_summarize_load_corrects_for_coordinated_omission():
    # 1000 messages at 1 kHz; a 100 ms stall at 500 ms: everything scheduled during it is
    # answered when it ends. From the send time a closed loop would see ~0.1 ms for all.
    intended = np.arange(1000, dtype=np.int64) * 1_000_000
    done = intended + 100_000
    stalled = (intended >= 500_000_000) & (intended < 600_000_000)
    done[stalled] = 600_000_000 + 100_000
    done[999] = 0  # never answered
    doc, lat = summarize_load(intended, done, warmup_ns=0)
    assert doc["sent"] == 1000 and doc["answered"] == 999 and doc["missing"] == 1
    assert lat.size == 999
    assert doc["latency_ns"]["p50"] == 100_000
    assert doc["latency_ns"]["p99"] >= 90_000_000  # the stall, seen by 10% of the messages
    assert doc["latency_ns"]["max"] == 100_100_000
    doc2, lat2 = summarize_load(intended, done, warmup_ns=600_000_000)
    assert lat2.size == 399 and doc2["latency_ns"]["max"] == 100_000


def test_plan_load_splits_the_mixed_flow_by_account_and_keeps_every_command_once():
    cfg = LoadConfig(tokens=["a", "b", "c"], connections=3, rate=10_000, duration=0.5,
                     warmup=0.1)
    plans = plan_load(cfg)
    cmds, _kinds = mixed_flow(5000, seed=1, symbols=4)
    assert sum(len(p.kinds) for p in plans) == 5000
    for k, p in enumerate(plans):
        assert ((p.commands["account"].astype(int) - 1) % 3 == k).all()
        assert (np.diff(p.offsets) > 0).all()
        ids = set(p.commands["order_id"][p.kinds == Command.NEW].tolist())
        mine = p.commands["account"] <= 50  # a cancel by its owner targets this connection
        follow = p.commands["order_id"][(p.kinds != Command.NEW) & mine]
        assert set(follow.tolist()) <= ids
    got = np.sort(np.concatenate([p.commands["order_id"] for p in plans]))
    assert (got == np.sort(cmds["order_id"])).all()


def test_load_config_names_the_bad_field():
    with pytest.raises(ConfigError) as e:
        LoadConfig(tokens=["a"], connections=2)
    assert e.value.field == "LoadConfig.tokens"
    with pytest.raises(ConfigError) as e:
        LoadConfig(tokens=["a"], rate=0)
    assert e.value.field == "LoadConfig.rate"
    with pytest.raises(ConfigError) as e:
        LoadConfig(tokens=["a"], pattern="burst")  # type: ignore[arg-type]
    assert e.value.field == "LoadConfig.pattern"


@pytest.mark.parametrize("pattern", ["mixed", "ioc", "rest_cancel"])
def test_a_run_against_the_echo_peer_answers_every_order(pattern):
    srv = EchoServer()
    port = srv.start()
    try:
        doc, lat = measure(LoadConfig(port=port, tokens=["t", "u"], connections=2,
                                      rate=20_000, duration=0.25, warmup=0.05,
                                      pattern=pattern, drain_timeout=20))
    finally:
        srv.stop()
    assert doc["sent"] == 5000 and doc["answered"] == 5000 and doc["missing"] == 0
    assert doc["answer_frames"] == 5000 and doc["errors"] == doc["halted"] == 0
    assert lat.size == doc["latency_ns"]["count"] > 0 and (lat > 0).all()
    assert doc["client_cpu_ns_per_order"] > 0 and doc["server_cpu_ns_per_order"] is None


def test_output_slots_yield_every_record_of_a_ring_batch_and_skip_unwatched_market_data():
    from ringlog import Ring
    from ringlog.engine.records import Report as R

    ring = Ring(64, 128, producer="single")
    c = ring.consumer()
    sent = [(R.ACCEPTED, b"a" * 48, 7 << 40 | 3, 11), (R.L1, (5).to_bytes(4, "little") + b"x" * 36,
             0, 12), (R.TRADE, b"t" * 64, 9, 13), (R.L2, (6).to_bytes(4, "little") + b"y" * 12,
                                                      0, 14), (R.REJECTED, b"", 1, 15)]
    for type_id, payload, corr, cause in sent:
        ring.publish(payload, type_id, correlation_id=corr, producer_seq=cause)
    batch = c.poll(timeout=1.0)
    assert len(batch) == 5
    block = batch.array.tobytes()
    slots = _wire.OutputSlots(block, 128, {6: {"a session"}, 5: set()})
    got = list(slots)
    assert got == [(i, int(t), p, corr, cause) for i, (t, p, corr, cause) in enumerate(sent)
                   if t != R.L1]
    assert slots.count == 5 and slots.skipped == 1
    with pytest.raises(ValueError, match="whole slots"):
        _wire.OutputSlots(block[:-1], 128, {})


def test_a_slots_listener_gets_every_output_of_the_processor_in_order(tmp_path):
    from ringlog import Processor, ProcessorConfig
    from ringlog.engine import Engine, EngineConfig, SymbolSpec
    from ringlog.gateway.protocol import OpenOrders
    from ringlog.gateway.session import encode_command

    proc = Processor(Engine(EngineConfig(symbols=[SymbolSpec(symbol=1, max_price=100)])),
                     tmp_path, ProcessorConfig(dedup=True, durability="none",
                                               segment_size=1 << 20))
    got: list[tuple[int, int, bytes, int, int]] = []
    done = __import__("threading").Event()

    def on_slots(block: bytes, slot_size: int) -> None:
        got.extend(_wire.OutputSlots(block, slot_size, {}))
        if len(got) >= 4:
            done.set()

    proc.add_output_listener(on_slots, batch="slots")
    proc.start()
    try:
        for seq, acct in enumerate((7, 8, 9, 10), 1):
            t, p = encode_command(OpenOrders(seq), acct)
            proc.publish(p, t, correlation_id=acct << 40 | seq)
        assert done.wait(30)
    finally:
        proc.stop()
    assert [(g[1], g[3]) for g in got] == [(208, a << 40 | s)
                                          for s, a in enumerate((7, 8, 9, 10), 1)]
    assert [g[4] for g in got] == sorted(g[4] for g in got)  # causes: input journal seqs


def test_a_connection_the_server_drops_is_reported_lost_and_its_orders_missing():
    import socket
    import threading

    from ringlog.gateway.protocol import LogonAck, encode_frame

    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]

    def serve() -> None:  # logs the session on, reads a little, then hangs up
        conn, _ = lsock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(encode_frame(LogonAck(0, 1)))
            conn.recv(100)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        doc, _ = measure(LoadConfig(port=port, tokens=["t"], rate=20_000, duration=0.2,
                                    warmup=0.0, pattern="ioc", drain_timeout=5))
    finally:
        t.join(10)
        lsock.close()
    assert len(doc["connections_lost"]) == 1
    assert doc["sent"] == 4000 and doc["answered"] == 0 and doc["missing"] == 4000


_RESULT_FIELDS = {  # the result document's fields (measure / run_load), as before issue #16
    "offered_rate", "connections", "duration_s", "warmup_s", "pattern", "tick_us", "sent",
    "answered", "missing", "achieved_rate", "latency_ns", "halted", "errors", "answer_frames",
    "connections_lost", "client_cpu_ns_per_order", "client_cpu_share", "server_cpu_ns_per_order",
    "server_cpu_share", "server_threads", "send_lag_max_ns", "backlog_first_third",
    "backlog_last_third", "stamps", "client_wakes_per_1k_orders"}


def _dropping_echo(drop_every: int, orders: int, rcvbuf: int = 0):
    """A one-session server that logs on, then echoes each order frame back except those whose
    seq is a multiple of ``drop_every``, each batch written in two parts cut mid-frame, and
    closes the connection after ``orders`` (so the run ends without waiting for its drain
    timeout); ``rcvbuf``, if set, is its socket's receive buffer (set before listen, so the
    window it offers is that small). Returns (port, thread, listening socket)."""
    import socket
    import threading

    import msgspec

    from ringlog.gateway.protocol import LogonAck, encode_frame

    lsock = socket.socket()
    if rcvbuf:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()

    def serve() -> None:
        conn, _ = lsock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(encode_frame(LogonAck(0, 1)))
            buf, seen = b"", 0
            while seen < orders and (chunk := conn.recv(65536)):
                buf += chunk
                out = bytearray()
                while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
                    end = 4 + int.from_bytes(buf[:4], "big")
                    if msgspec.msgpack.decode(buf[4:end])[1] % drop_every:
                        out += buf[:end]
                    buf = buf[end:]
                    seen += 1
                cut = len(out) // 2 + 1  # mid-frame: the scanner keeps the partial one
                conn.sendall(out[:cut])
                conn.sendall(out[cut:])

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return lsock.getsockname()[1], t, lsock


@pytest.mark.parametrize("precise_wait,stamps", [(True, "wake"), (False, "wake"),
                                                 (True, "kernel")],
                         ids=["epoll_pwait2", "fallback", "kernel_stamps"])
def test_answered_and_unanswered_orders_are_counted_exactly_against_a_dropping_peer(
        precise_wait, stamps, monkeypatch):
    import functools

    from ringlog import _loadgen, loadgen

    # the fallback of a kernel without epoll_pwait2: epoll_wait for waits of 1 ms or more
    # (the drain), ppoll on the epoll fd for shorter ones (the rounds)
    monkeypatch.setattr(loadgen, "drive", functools.partial(_loadgen.drive,
                                                            precise_wait=precise_wait))
    port, t, lsock = _dropping_echo(3, 3000)
    try:  # the drain timeout is a safety net: the server hangs up after the last order
        doc, lat = measure(LoadConfig(port=port, tokens=["t"], rate=20_000, duration=0.15,
                                      warmup=0.0, pattern="ioc", drain_timeout=60,
                                      stamps=stamps))
    finally:
        lsock.close()
    t.join(10)
    assert doc["stamps"] == stamps
    seqs = np.arange(3000) + 2  # the session's next seq after LogonAck(0, 1)
    dropped = int((seqs % 3 == 0).sum())
    assert set(doc) == _RESULT_FIELDS
    assert doc["sent"] == 3000 and doc["missing"] == dropped
    assert doc["answered"] == doc["answer_frames"] == 3000 - dropped == lat.size
    assert doc["connections_lost"] == ["the gateway closed the connection"]
    assert (lat > 0).all()


def _drive_one(port: int, sndbuf: int = 0, **load: object):
    """One connection driven by the loop itself (no summary): its _Conn and the run facts;
    ``sndbuf``, if set, is the socket's send buffer (fixed: no autotuning)."""
    import socket

    from ringlog.loadgen import _Conn, _drive

    cfg = LoadConfig(port=port, tokens=["t"], warmup=0.0, pattern="ioc", drain_timeout=60,
                     **load)  # type: ignore[arg-type]
    conn = _Conn(cfg, "t", plan_load(cfg)[0])
    try:
        if sndbuf:
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        run = _drive(cfg, [conn])
    finally:
        conn.sock.close()
    return conn, run


def test_a_send_the_socket_cannot_take_whole_goes_on_when_it_is_writable():
    # 10,000 orders due within 10 ms, a 100 ms tick: the second round hands ~250 KB to one
    # send against a 4 KiB send buffer and a peer offering a 4 KiB window: the send stops
    # short and the rest leaves on EPOLLOUT (dozens of sends), not a little more at each of
    # the later rounds (at most one per tick of the run's wall time)
    port, t, lsock = _dropping_echo(1 << 40, 10_000, rcvbuf=4096)
    tick_us = 100_000
    try:
        conn, run = _drive_one(port, sndbuf=4096, rate=1_000_000, duration=0.01,
                               tick_us=tick_us)
    finally:
        lsock.close()
    t.join(10)
    assert conn.next == 10_000 and conn.scanner.answered == 10_000 and (conn.done > 0).all()
    assert conn.blocked >= 1
    assert conn.sends > run["wall_ns"] / (tick_us * 1000) + 1


def test_sends_go_in_rounds_at_least_a_tick_apart_not_on_every_answer():
    # the peer answers every write at once (in two parts): sending on an answer's wake would
    # make several writes a tick; rounds make at most one (+1 for the round at the start)
    port, t, lsock = _dropping_echo(1 << 40, 5000)
    tick_us, duration = 5000, 0.25
    try:
        conn, run = _drive_one(port, rate=20_000, duration=duration, tick_us=tick_us)
    finally:
        lsock.close()
    t.join(10)
    assert conn.scanner.answered == 5000 and conn.blocked == 0
    assert conn.sends <= duration * 1e6 / tick_us + 1
    assert run["wakes"] >= conn.sends  # each round is a wake; answers wake it too


def _timing_echo(orders: int):
    """A one-session server that answers each order frame with itself, one write each, and
    records the monotonic clock just before and just after each write (``times[i]`` for the
    i-th order); it hangs up after ``orders``. Returns (port, thread, listening socket,
    times)."""
    import socket
    import threading
    import time

    from ringlog.gateway.protocol import LogonAck, encode_frame

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    times: list[tuple[int, int]] = []

    def serve() -> None:
        conn, _ = lsock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(encode_frame(LogonAck(0, 1)))
            buf = b""
            while len(times) < orders and (chunk := conn.recv(65536)):
                buf += chunk
                while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
                    end = 4 + int.from_bytes(buf[:4], "big")
                    before = time.monotonic_ns()
                    conn.sendall(buf[:end])
                    times.append((before, time.monotonic_ns()))
                    buf = buf[end:]

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return lsock.getsockname()[1], t, lsock, times


def test_kernel_stamps_are_each_answers_arrival_not_the_round_that_reads_it():
    # orders due at 0, 100 and 200 ms and a 300 ms tick: order 0 leaves in the first round,
    # its answer comes back at once and is read at the next wake (the 100 ms backlog
    # sample); its stamp is the kernel's receive time, so it lies within the server's write
    # of it (a stamp taken at the read would be ~100 ms past it; one never errs early)
    port, t, lsock, times = _timing_echo(3)
    try:
        conn, _ = _drive_one(port, rate=10, duration=0.3, tick_us=300_000,
                             stamps="kernel")
    finally:
        lsock.close()
    t.join(10)
    assert conn.scanner.answered == 3 and len(times) == 3
    for stamp, (before, after) in zip(conn.done.tolist(), times, strict=True):
        assert before <= stamp <= after + 1_000_000  # the clocks' conversion errs late
    assert conn.sends == 2  # order 0, then orders 1 and 2 in the round a tick later


@pytest.mark.parametrize("stamps", ["wake", "kernel"])
def test_signals_during_the_waits_run_their_handlers_and_the_run_goes_on(stamps):
    # an interval timer's SIGALRM every 2 ms interrupts the loop's waits (epoll, or the
    # rounds' sleep under kernel stamps): each is EINTR, its Python handler runs, nothing
    # is lost
    import signal

    caught = []
    old = signal.signal(signal.SIGALRM, lambda *_: caught.append(1))
    port, t, lsock = _dropping_echo(1 << 40, 2000)
    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
    try:
        conn, _ = _drive_one(port, rate=10_000, duration=0.2, tick_us=1000, stamps=stamps)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
        lsock.close()
    t.join(10)
    assert conn.scanner.answered == 2000 and (conn.done > 0).all()  # then it hangs up
    assert len(caught) >= 10


def test_the_tick_and_the_connection_count_are_checked_by_name():
    for field, kw in (("tick_us", {"tick_us": 0}), ("connections", {"connections": 0}),
                      ("drain_timeout", {"drain_timeout": -1.0}), ("stamps", {"stamps": "nic"})):
        with pytest.raises(ConfigError) as e:
            LoadConfig(tokens=["a"], **kw)
        assert e.value.field == f"LoadConfig.{field}"


def test_frame_ends_finds_every_frame_and_rejects_a_short_buffer():
    from ringlog._loadgen import frame_ends

    cmds, kinds = mixed_flow(200, seed=3, symbols=2, accounts=5)
    frames = _wire.encode_orders(cmds.view(np.uint8), kinds, 0, 200, 1)
    ends = frame_ends(frames, 200)
    assert ends[-1] == len(frames) and (np.diff(ends) > 4).all()
    with pytest.raises(ValueError):
        frame_ends(frames[:-1], 200)
