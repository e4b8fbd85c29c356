"""``ringlog load``: an open-loop load generator for the gateway (the wrk2 model).

::

    plan: engine flow (mixed_flow) ─► per connection: COMMAND_DTYPE records + intended send times
          (start + i / rate, global) ─► _wire.encode_orders: all its frames, one bytes (C)
    _loadgen.drive (C, one thread; GIL released in the wait):
      epoll_pwait2 until an answer arrives or the next send round (at most one a tick)
      readable ─► recv() ─► AnswerScanner._scan (C) ─► done[seq - base] = now
      a send round: frames due by now ─► one send() per connection
      draining: the same, until every order is answered, a connection is lost, or
                drain_timeout
    latency = done - intended   (a stall shows in every message scheduled during it)

Nothing per order or per wake runs in Python. The loop sleeps in epoll until an answer
arrives (stamped then: the answer side adds no tick to a latency) or the next send round;
rounds are at most ``tick_us`` apart and send everything due, one write per connection (an
answer's wake only reads), so a write carries a tick's orders and the cost per order falls
as the rate grows; an order waits at most a tick for its round. The result says what the
generator itself cost (its process CPU per order, the frames' encoding included) and, given
``server_pid``, what the server cost, so every run says which side saturated. The default
flow is the engine's mixed flow (``ringlog.engine.flow.mixed_flow``: resting orders, trades,
cancels, modifies, a few invalid commands), split over the connections by account.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Literal

import msgspec
import numpy as np

from ._loadgen import LOST, drive, frame_ends
from ._wire import AnswerScanner, encode_orders
from .bench.latency import percentiles
from .config import check_fields, config_error
from .engine.records import COMMAND_DTYPE, Command, Side, Tif

__all__ = ["LoadConfig", "LoadPlan", "measure", "plan_load", "run_load", "summarize_load"]

_SAMPLE_NS = 100_000_000  # backlog samples every 100 ms
_CONNECT_S = 10.0


class LoadConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What to offer: ``rate`` messages/s in total over ``connections`` sessions (one token
    each) for ``duration`` seconds; the first ``warmup`` seconds are not measured.

    Patterns: ``mixed`` (the engine's mixed flow over symbols ``1..symbols``: the server's
    engine must list them), ``ioc`` (immediate-or-cancel buys at price 1 on ``symbol``: accepted
    and cancelled), ``rest_cancel`` (a resting order, then its cancel). ``tick_us`` is the
    least time between two send rounds (the orders due in between leave in one write per
    connection; it adds at most that to a latency; answers are stamped as they arrive).
    ``server_pid``, if set, is read for the server's CPU per order. ``stamps``: ``wake``
    stamps an answer when the generator reads it, woken by its arrival; ``kernel`` stamps it
    with the kernel's receive time (SO_TIMESTAMPNS) and reads answers only at the send
    rounds while sending, which spares the generator a wake per answer burst. A kernel
    stamp is the receive time of the last segment of its read, so it is never earlier than
    the answer's arrival; it leaves out how late the generator itself would have woken.
    """

    host: str = "127.0.0.1"
    port: int = 7878
    tokens: list[str]
    rate: float = 10_000.0
    connections: int = 1
    duration: float = 5.0
    warmup: float = 1.0
    pattern: Literal["mixed", "ioc", "rest_cancel"] = "mixed"
    symbols: int = 4
    symbol: int = 1
    seed: int = 1
    tick_us: int = 100
    stamps: Literal["wake", "kernel"] = "wake"
    drain_timeout: float = 10.0
    server_pid: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        if self.connections < 1:
            raise config_error(self, "connections", f"must be >= 1, got {self.connections}")
        if len(self.tokens) < self.connections:
            raise config_error(self, "tokens", f"{self.connections} connections need as many "
                               f"tokens (one session each), got {len(self.tokens)}")
        if not self.rate > 0:
            raise config_error(self, "rate", f"must be > 0, got {self.rate}")
        if not self.duration > 0:
            raise config_error(self, "duration", f"must be > 0, got {self.duration}")
        if not 0 <= self.warmup < self.duration:
            raise config_error(self, "warmup", f"must be in [0, duration), got {self.warmup}")
        if self.symbols < 1 or self.tick_us < 1 or self.drain_timeout < 0:
            raise config_error(self, "symbols" if self.symbols < 1 else "tick_us"
                               if self.tick_us < 1 else "drain_timeout", "out of range")


class LoadPlan(msgspec.Struct):
    """One connection's orders: engine records, their Command type ids, and intended send
    times in ns from the start of the run (sorted)."""

    commands: Any  # np.ndarray of COMMAND_DTYPE
    kinds: Any  # np.ndarray of uint32
    offsets: Any  # np.ndarray of int64


def plan_load(cfg: LoadConfig) -> list[LoadPlan]:
    """The orders of every connection: ``rate * duration`` in all, on one global schedule."""
    n = max(cfg.connections, int(cfg.rate * cfg.duration))
    offsets = (np.arange(n, dtype=np.float64) * (1e9 / cfg.rate)).astype(np.int64)
    if cfg.pattern == "mixed":
        from .engine.flow import mixed_flow

        cmds, kinds = mixed_flow(n, seed=cfg.seed, symbols=cfg.symbols,
                                 accounts=max(50, cfg.connections))
        conn = (cmds["account"].astype(np.int64) - 1) % cfg.connections
    else:
        cmds = np.zeros(n, COMMAND_DTYPE)
        kinds = np.full(n, int(Command.NEW), np.uint32)
        i = np.arange(n)
        conn = i % cfg.connections
        cmds["symbol"] = cfg.symbol
        cmds["side"] = Side.BUY
        cmds["qty"] = 1
        if cfg.pattern == "ioc":  # a buy far below any ask: accepted, then cancelled
            cmds["order_id"] = i // cfg.connections % 0xFFFF_FFFE + 1
            cmds["price"] = 1
            cmds["tif"] = Tif.IOC
        else:  # rest_cancel: per connection, order k rests, then is cancelled
            k = i // cfg.connections
            cmds["order_id"] = (k // 2) % 0xFFFF_FFFE + 1
            cmds["price"] = 1 + (k // 2) % 10
            kinds[k % 2 == 1] = Command.CANCEL
    return [LoadPlan(np.ascontiguousarray(cmds[conn == c]), np.ascontiguousarray(kinds[conn == c]),
                     offsets[conn == c]) for c in range(cfg.connections)]


class _Conn:
    """One session's socket, its pre-encoded frames, its schedule and its answer scanner."""

    def __init__(self, cfg: LoadConfig, token: str, plan: LoadPlan) -> None:
        self.plan = plan
        self.sock = socket.create_connection((cfg.host, cfg.port), timeout=_CONNECT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.base = _logon(self.sock, token)
        self.sock.setblocking(False)
        n = len(plan.kinds)
        cpu0 = time.process_time_ns()  # counted as the run's: the old loop encoded as it sent
        self.frames = encode_orders(plan.commands.view(np.uint8), plan.kinds, 0, n, self.base)
        self.ends = frame_ends(self.frames, n)
        self.encode_cpu_ns = time.process_time_ns() - cpu0
        self.done = np.zeros(n, np.int64)
        self.scanner = AnswerScanner(self.done, self.base)
        self.intended = plan.offsets  # made absolute by start()
        self.next = 0  # orders handed to a send (set by _drive)
        self.sends = 0  # send() calls (set by _drive)
        self.blocked = 0  # sends the socket did not take whole (finished on EPOLLOUT)
        self.lost = ""  # why the server closed or reset this connection mid-run

    def start(self, start_ns: int) -> None:
        self.intended = self.plan.offsets + start_ns


def _logon(sock: socket.socket, token: str) -> int:
    """Logs on (blocking); returns the seq of the session's next message."""
    from .client import GatewayError, LogonRejected
    from .gateway.protocol import Logon, LogonAck, LogonReject, ServerMessage, encode_frame

    sock.sendall(encode_frame(Logon(0, token)))
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
        chunk = sock.recv(65536)
        if not chunk:
            raise GatewayError("the gateway closed the connection during logon")
        buf += chunk
    msg = msgspec.msgpack.decode(buf[4:4 + int.from_bytes(buf[:4], "big")], type=ServerMessage)
    if isinstance(msg, LogonReject):
        raise LogonRejected(f"logon refused: {msg.reason}")
    if not isinstance(msg, LogonAck):
        raise GatewayError(f"the gateway answered the logon with {type(msg).__name__}")
    return msg.session_seq + 1


def _proc_threads(pid: int) -> dict[str, tuple[int, int]]:
    """``{thread: (cpu ns, context switches)}`` of process ``pid`` from ``/proc/PID/task/*``
    (the scheduler's run time, finer than ``stat``'s clock ticks); a thread is ``main`` or
    ``<comm>#<k>`` in thread-creation order. Empty if ``pid`` is 0 or gone."""
    out: dict[str, tuple[int, int]] = {}
    if not pid:
        return out
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for k, t in enumerate(sorted(tasks, key=int)):
        base = f"/proc/{pid}/task/{t}/"
        try:
            with open(base + "schedstat", "rb") as f:
                cpu = int(f.read().split()[0])
            with open(base + "comm", "rb") as f:
                name = f.read().decode(errors="replace").strip()
            with open(base + "status", "rb") as f:
                switches = sum(int(line.split()[1]) for line in f
                               if line.startswith((b"voluntary_ctxt", b"nonvoluntary_ctxt")))
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
        out["main" if int(t) == pid else f"{name}#{k}"] = (cpu, switches)
    return out


def _threads_delta(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
                   ) -> dict[str, tuple[int, int]]:
    return {k: (v[0] - before.get(k, (0, 0))[0], v[1] - before.get(k, (0, 0))[1])
            for k, v in after.items()}


def _drive(cfg: LoadConfig, conns: list[_Conn]) -> dict[str, Any]:
    """The send/receive loop (``_loadgen.drive``, in C); returns run facts (times, CPU,
    backlog samples, the loop's waits) and marks each lost connection."""
    clock = time.monotonic_ns
    start = clock() + 20_000_000
    for c in conns:
        c.start(start)
    cpu0, srv0, wall0 = time.process_time_ns(), _proc_threads(cfg.server_pid), clock()
    samples, ends, wakes = drive([c.sock.fileno() for c in conns], [c.frames for c in conns],
                                 [c.ends for c in conns], [c.intended for c in conns],
                                 [c.scanner for c in conns], cfg.tick_us * 1000,
                                 int(cfg.drain_timeout * 1e9), _SAMPLE_NS, start,
                                 kernel_stamps=cfg.stamps == "kernel")
    wall = clock() - wall0
    for c, (kind, err, sent, sends, blocked) in zip(conns, ends, strict=True):
        c.next, c.sends, c.blocked = sent, sends, blocked
        why = LOST.get(kind)
        if why == "closed":
            c.lost = "the gateway closed the connection"
        elif why:
            c.lost = f"{why}: [Errno {err}] {os.strerror(err)}"
    return {"start": start, "total": sum(len(c.done) for c in conns),
            "cpu_ns": time.process_time_ns() - cpu0 + sum(c.encode_cpu_ns for c in conns),
            "server": _threads_delta(srv0, _proc_threads(cfg.server_pid)) if srv0 else None,
            "wall_ns": wall, "samples": samples, "wakes": wakes}


def summarize_load(intended: np.ndarray, done: np.ndarray, warmup_ns: int
                   ) -> tuple[dict[str, Any], np.ndarray]:
    """Answered count, rate and coordinated-omission-corrected latency of one run: each
    message's latency runs from its *intended* send time (``done`` 0: never answered);
    messages intended in the first ``warmup_ns`` are not measured."""
    first = int(intended.min())
    answered_mask = done > 0
    measured = (intended >= first + warmup_ns) & answered_mask
    answered = int(answered_mask.sum())
    last = int(done.max()) if answered else first
    lat = done[measured] - intended[measured]
    return {"sent": int(intended.size), "answered": answered,
            "missing": int(intended.size) - answered,
            "achieved_rate": answered / max((last - first) / 1e9, 1e-9),
            "latency_ns": percentiles(lat) if lat.size else None}, lat


def measure(cfg: LoadConfig) -> tuple[dict[str, Any], np.ndarray]:
    """Runs the load; returns the result document and the measured latencies (ns, raw)."""
    plans = plan_load(cfg)
    conns: list[_Conn] = []
    try:
        for k in range(cfg.connections):
            conns.append(_Conn(cfg, cfg.tokens[k], plans[k]))
        run = _drive(cfg, conns)
    finally:
        for c in conns:
            c.sock.close()
    intended = np.concatenate([c.intended for c in conns])
    done = np.concatenate([c.done for c in conns])
    doc, lat = summarize_load(intended, done, int(cfg.warmup * 1e9))
    samples = run["samples"]
    third = max(1, len(samples) // 3)
    backlog = [s[1] for s in samples]
    n = max(1, run["total"])
    server = run["server"]
    server_cpu = sum(v[0] for v in server.values()) if server else None
    doc = {"offered_rate": cfg.rate, "connections": cfg.connections, "duration_s": cfg.duration,
           "warmup_s": cfg.warmup, "pattern": cfg.pattern, "tick_us": cfg.tick_us,
           "stamps": cfg.stamps, **doc,
           "halted": sum(c.scanner.halted for c in conns),
           "errors": sum(c.scanner.errors for c in conns),
           "answer_frames": sum(c.scanner.frames for c in conns),
           "connections_lost": [c.lost for c in conns if c.lost],
           "client_cpu_ns_per_order": run["cpu_ns"] / n,
           "client_cpu_share": run["cpu_ns"] / max(run["wall_ns"], 1),
           "client_wakes_per_1k_orders": 1000 * run["wakes"] / n,
           # per order the server finished: under saturation it never saw the rest
           "server_cpu_ns_per_order": server_cpu / max(1, doc["answered"]) if server
           else None,
           "server_cpu_share": server_cpu / max(run["wall_ns"], 1) if server else None,
           "server_threads": {k: {"cpu_ns_per_order": v[0] / max(1, doc["answered"]),
                                  "switches_per_1k_orders": 1000 * v[1] / max(1, doc["answered"])}
                              for k, v in sorted(server.items())} if server else None,
           "send_lag_max_ns": max((s[2] for s in samples), default=0),
           "backlog_first_third": int(np.median(backlog[:third])) if backlog else 0,
           "backlog_last_third": int(np.median(backlog[-third:])) if backlog else 0}
    return doc, lat


def run_load(cfg: LoadConfig) -> dict[str, Any]:
    """Runs the load; returns the result document."""
    return measure(cfg)[0]
