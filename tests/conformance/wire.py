"""The conformance suite's only view of the gateway: raw frames over TCP (docs/protocol.md).

Messages are plain lists ``[tag, field, ...]`` encoded with msgpack (or JSON); nothing here
imports ringlog, so the suite tests any server that speaks the protocol (the Python gateway,
a compiled one, a gateway in its own process).
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any

import msgspec

# client tags
LOGON, LOGOUT, HEARTBEAT, NEW_ORDER, CANCEL, MODIFY, MASS_CANCEL, ORDER_STATUS, \
    OPEN_ORDERS, SUBSCRIBE = range(1, 11)
# server tags
LOGON_ACK, LOGON_REJECT, ACK, REPORT, ERROR, HALTED, MARKET_DATA, ORDER_INFO, \
    OPEN_ORDERS_END = range(64, 73)
# error codes
BAD_FRAME, BAD_MESSAGE, NOT_LOGGED_ON, SEQUENCE_GAP, RATE_LIMITED, FORBIDDEN, \
    LIMIT_EXCEEDED, SLOW_CONSUMER, TIMEOUT, CONNECTION_LIMIT, REPORTS_GONE, \
    MEMORY_LIMIT = range(1, 13)
BUY, SELL = 1, 2
IOC = 1

_LEN = struct.Struct(">I")


def body_frame(body: bytes) -> bytes:
    """A frame around any body (a correct length prefix)."""
    return _LEN.pack(len(body)) + body


def frame(*fields: Any, codec: str = "msgpack") -> bytes:
    """One message ``[tag, field, ...]`` as a frame."""
    body = json.dumps(list(fields)).encode() if codec == "json" else \
        msgspec.msgpack.encode(list(fields))
    return body_frame(body)


def logon(seq: int, token: str, heartbeat_ms: int = 0, reports_after: int = -1,
          drop_copy: bool = False, cancel_on_disconnect_ms: int = -1) -> bytes:
    return frame(LOGON, seq, token, heartbeat_ms, reports_after, drop_copy,
                 cancel_on_disconnect_ms)


def new_order(seq: int, order_id: int, symbol: int, side: int, qty: int, price: int,
              tif: int = 0) -> bytes:
    return frame(NEW_ORDER, seq, order_id, symbol, side, qty, price, 0, tif)


class Peer:
    """A blocking TCP peer: sends bytes, reads server messages (lists) with deadlines."""

    opened: list[Peer] = []  # closed after each test (conftest)

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        Peer.opened.append(self)
        self.buf = bytearray()
        self.eof = False

    def send(self, *frames: bytes) -> None:
        self.sock.sendall(b"".join(frames))

    def _fill(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def next(self, timeout: float = 10.0) -> list[Any] | None:
        """The next message, or None if the server closed; TimeoutError if none came."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                (n,) = _LEN.unpack_from(self.buf)
                if len(self.buf) >= 4 + n:
                    body = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    return json.loads(body) if body[:1] == b"[" else msgspec.msgpack.decode(body)
            if self.eof:
                return None
            if not self._fill(deadline) and not self.eof:
                raise TimeoutError(f"no message within {timeout}s")

    def read(self, n: int, timeout: float = 10.0) -> list[list[Any]]:
        out = []
        for _ in range(n):
            m = self.next(timeout)
            if m is None:
                break
            out.append(m)
        return out

    def until(self, pred: Any, timeout: float = 10.0) -> list[list[Any]]:
        """Messages up to and including the first that ``pred`` accepts."""
        out = []
        while True:
            m = self.next(timeout)
            if m is None:
                raise ConnectionError(f"closed before the expected message; got {out}")
            out.append(m)
            if pred(m):
                return out

    def until_ack(self, seq: int, timeout: float = 10.0) -> list[list[Any]]:
        """Messages up to an Ack covering ``seq``."""
        return self.until(lambda m: m[0] == ACK and m[1] >= seq, timeout)

    def closed(self, timeout: float = 10.0) -> bool:
        """True once the server closes (messages before the close are dropped)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            self.buf.clear()
            if not self._fill(deadline) and not self.eof:
                return False
        return True

    def close(self) -> None:
        self.sock.close()


def reports(msgs: list[list[Any]], seq: int | None = None) -> list[list[Any]]:
    """The Report messages (of one seq if given)."""
    return [m for m in msgs if m[0] == REPORT and (seq is None or m[1] == seq)]
