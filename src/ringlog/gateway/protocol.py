"""The gateway's wire protocol (docs/protocol.md): length-prefixed msgspec frames.

A frame is a 4-byte big-endian body length and a body; a body is one message, a msgspec
tagged union encoded as a msgpack array (``[tag, field, ...]``) or, for debugging, as JSON.
``FrameDecoder`` turns a byte stream into messages and names what is wrong with a bad frame
without ever raising past its caller: a malformed frame becomes a ``ProtocolError`` value.
"""

from __future__ import annotations

import re
import struct
from typing import Annotated, Literal

import msgspec

__all__ = [
    "MAX_FRAME",
    "Ack",
    "Cancel",
    "ClientMessage",
    "Error",
    "ErrorCode",
    "FrameDecoder",
    "FrameEncoder",
    "Halted",
    "Heartbeat",
    "Logon",
    "LogonAck",
    "LogonReject",
    "Logout",
    "MarketData",
    "MassCancel",
    "Modify",
    "NewOrder",
    "OpenOrders",
    "OpenOrdersEnd",
    "OrderInfo",
    "OrderStatus",
    "ProtocolError",
    "Report",
    "ServerMessage",
    "Subscribe",
    "encode_frame",
]

MAX_FRAME = 64 * 1024
_LEN = struct.Struct(">I")

# Field ranges are checked at decode time, so a value that cannot fit the engine's binary
# command record (records.COMMAND_DTYPE) is a bad_message naming the field, never a wrap-around.
Seq = Annotated[int, msgspec.Meta(ge=1, lt=1 << 40)]
OrderId = Annotated[int, msgspec.Meta(ge=1, lt=1 << 32)]  # per account; see docs/protocol.md
U32 = Annotated[int, msgspec.Meta(ge=0, lt=1 << 32)]
U8 = Annotated[int, msgspec.Meta(ge=0, lt=1 << 8)]
I64 = Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)]


class _Msg(msgspec.Struct, array_like=True, tag_field="tag", frozen=True):
    """A message. msgspec subclasses inherit ``frozen``; each subclass still says
    ``frozen=True`` because type checkers (PEP 681 dataclass_transform) do not inherit it."""


class _ClientMsg(_Msg, forbid_unknown_fields=True, frozen=True):
    """A client message: a flat array of scalars with nothing after its last field, so a
    typed decode never descends into a nested value (a nested or extra element is a
    bad_message at once, whatever its depth)."""


# -- client -> server ------------------------------------------------------------------------
class Logon(_ClientMsg, tag=1, frozen=True):
    """Opens a session: the token is bound to one account in the server's config.

    ``reports_after`` >= 0 asks for the account's execution reports after that report seq
    (-1: none); ``drop_copy`` subscribes to every report of the account, also those of
    sibling sessions; ``cancel_on_disconnect_ms`` >= 0 cancels the account's orders that
    long after this connection is lost (-1: never). See docs/protocol.md."""

    seq: Annotated[int, msgspec.Meta(ge=0, lt=1 << 40)]  # highest seq the client saw acked
    token: str
    heartbeat_ms: Annotated[int, msgspec.Meta(ge=0, lt=1 << 31)] = 0
    reports_after: Annotated[int, msgspec.Meta(ge=-1, lt=1 << 62)] = -1
    drop_copy: bool = False
    cancel_on_disconnect_ms: Annotated[int, msgspec.Meta(ge=-1, lt=1 << 31)] = -1


class Logout(_ClientMsg, tag=2, frozen=True):
    """Closes the session after the server has answered everything before it."""

    seq: Seq


class Heartbeat(_ClientMsg, tag=3, frozen=True):
    """Keeps an idle session alive; answered with an Ack."""

    seq: Seq


class NewOrder(_ClientMsg, tag=4, frozen=True):
    """A new order; enums are the engine's integer values (docs/matching.md)."""

    seq: Seq
    order_id: OrderId
    symbol: U32
    side: U8
    qty: I64
    price: I64 = 0
    order_type: U8 = 0
    tif: U8 = 0
    post_only: bool = False
    stp: U8 = 0


class Cancel(_ClientMsg, tag=5, frozen=True):
    """Cancels a live order of this session's account."""

    seq: Seq
    order_id: OrderId


class Modify(_ClientMsg, tag=6, frozen=True):
    """Changes price and/or open quantity (reduce at the same price keeps priority)."""

    seq: Seq
    order_id: OrderId
    new_price: I64
    new_qty: I64


class MassCancel(_ClientMsg, tag=7, frozen=True):
    """Cancels every live order of the account (on one symbol, or all with symbol 0)."""

    seq: Seq
    symbol: U32 = 0


class OrderStatus(_ClientMsg, tag=8, frozen=True):
    """Asks for one order's state."""

    seq: Seq
    order_id: OrderId


class OpenOrders(_ClientMsg, tag=9, frozen=True):
    """Lists the account's live orders (one symbol, or all with symbol 0)."""

    seq: Seq
    symbol: U32 = 0


class Subscribe(_ClientMsg, tag=10, frozen=True):
    """Market data: depth 1 is L1, N is L2 to depth N, 0 unsubscribes."""

    seq: Seq
    symbol: U32
    depth: Annotated[int, msgspec.Meta(ge=0, le=64)] = 1


ClientMessage = (Logon | Logout | Heartbeat | NewOrder | Cancel | Modify | MassCancel
                 | OrderStatus | OpenOrders | Subscribe)


# -- server -> client ------------------------------------------------------------------------
class LogonAck(_Msg, tag=64, frozen=True):
    """Logon accepted. ``session_seq``: the highest client seq the server has taken (a
    client without history continues after it); ``acked``: the highest with every answer
    sent; ``report_seq``: the account's execution-report stream position (the next report
    has a higher seq)."""

    session_seq: int
    account: int
    acked: int = 0
    report_seq: int = 0


class LogonReject(_Msg, tag=65, frozen=True):
    """Logon refused (unknown token, already logged on, server recovering)."""

    reason: str


class Ack(_Msg, tag=66, frozen=True):
    """The highest client seq the server has processed."""

    seq: int


class Report(_Msg, tag=67, frozen=True):
    """An execution report: accepted, rejected, trade, rested, cancelled or modified."""

    seq: int
    kind: str
    order_id: int
    reason: str = ""
    price: int = 0
    qty: int = 0
    remaining: int = 0
    maker_id: int = 0
    taker_id: int = 0
    symbol: int = 0
    rseq: int = 0  # its place in the account's execution-report stream (0: none)


class ErrorCode:
    """Error frame codes (docs/protocol.md)."""

    BAD_FRAME = 1
    BAD_MESSAGE = 2
    NOT_LOGGED_ON = 3
    SEQUENCE_GAP = 4
    RATE_LIMITED = 5
    FORBIDDEN = 6
    LIMIT_EXCEEDED = 7  # a per-session limit other than the rate (open orders)
    SLOW_CONSUMER = 8  # the session's unread output passed its limit; the session closes
    TIMEOUT = 9  # no logon, no message or a partial frame for too long; the connection closes
    CONNECTION_LIMIT = 10  # too many connections (in total or from one address); it closes
    REPORTS_GONE = 11  # the report stream asked for starts before the journal's retention
    MEMORY_LIMIT = 12  # an answer too large to keep for resends (ask again)


class Error(_Msg, tag=68, frozen=True):
    """An error frame: nothing was applied for the message it answers."""

    code: int
    message: str
    seq: int = 0


class Halted(_Msg, tag=69, frozen=True):
    """The circuit breaker is open: the message was not applied; retry after a reset."""

    seq: int
    reason: str


class MarketData(_Msg, tag=70, frozen=True):
    """One level of a symbol's book (level 0 = best) after a change."""

    symbol: int
    level: int
    bid_price: int
    bid_qty: int
    ask_price: int
    ask_qty: int


class OrderInfo(_Msg, tag=71, frozen=True):
    """One order's state, in answer to OrderStatus or OpenOrders."""

    seq: int
    order_id: int
    symbol: int
    side: int
    price: int
    open_qty: int
    status: str


class OpenOrdersEnd(_Msg, tag=72, frozen=True):
    """Ends an OpenOrders answer."""

    seq: int
    count: int


ServerMessage = (LogonAck | LogonReject | Ack | Report | Error | Halted | MarketData
                 | OrderInfo | OpenOrdersEnd)

Codec = Literal["msgpack", "json"]

_encoders: dict[Codec, msgspec.msgpack.Encoder | msgspec.json.Encoder] = {
    "msgpack": msgspec.msgpack.Encoder(), "json": msgspec.json.Encoder()}


def encode_frame(msg: msgspec.Struct, codec: Codec = "msgpack") -> bytes:
    """One frame: the 4-byte big-endian length, then the encoded message."""
    body = _encoders[codec].encode(msg)
    return _LEN.pack(len(body)) + body


class FrameEncoder:
    """Appends frames to a reusable buffer (one encoder per codec; no copy of the body).

    ``append(buf, msg)`` writes the length prefix and the body at the end of ``buf``, so a
    batch of answers becomes one ``transport.write``. Not thread-safe.
    """

    def __init__(self, codec: Codec = "msgpack") -> None:
        self.codec = codec
        self._enc = msgspec.json.Encoder() if codec == "json" else msgspec.msgpack.Encoder()

    def append(self, buf: bytearray, msg: msgspec.Struct) -> None:
        """Appends one frame of ``msg`` to ``buf``."""
        pos = len(buf)
        buf += b"\0\0\0\0"
        self._enc.encode_into(msg, buf, pos + 4)
        _LEN.pack_into(buf, pos, len(buf) - pos - 4)


class ProtocolError(msgspec.Struct, frozen=True):
    """A frame that could not be turned into a message: the error code and what was wrong."""

    code: int
    message: str
    fatal: bool = False  # the stream cannot be resynchronised (the session must close)


class FrameDecoder:
    """Splits a byte stream into messages of ``message_type``; one per session.

    ``feed(data)`` returns the messages and ProtocolErrors of every complete frame, in order;
    ``keep(data)`` then ``next()`` decode one frame at a time (a reader that may pause between
    frames keeps the rest as bytes, and may take whole frames itself: ``view``, ``consume``).
    An oversize length is fatal (the stream cannot be trusted to resynchronise); a body that is
    not a valid message is an error for that frame only. Not thread-safe.
    """

    def __init__(self, message_type: object = ClientMessage, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self.codec: Codec | None = None  # the codec of the first valid frame
        self._buf = bytearray()
        self._pos = 0  # bytes of _buf already decoded or taken
        self._mp = msgspec.msgpack.Decoder(message_type)
        self._js = msgspec.json.Decoder(message_type)

    def feed(self, data: bytes | bytearray | memoryview) -> list[msgspec.Struct | ProtocolError]:
        """Adds bytes; returns every complete frame's message (or error) in order."""
        self.keep(data)
        out: list[msgspec.Struct | ProtocolError] = []
        while (msg := self.next()) is not None:
            out.append(msg)
        return out

    def keep(self, data: bytes | bytearray | memoryview) -> None:
        """Adds bytes without decoding them (``next`` decodes one frame at a time)."""
        self._buf += data
        if self._pos > 1 << 16 and self._pos * 2 > len(self._buf):  # drop what was read
            del self._buf[:self._pos]
            self._pos = 0

    def next(self) -> msgspec.Struct | ProtocolError | None:
        """The message (or error) of the next complete frame; None if there is none."""
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < 4:
            return None
        (n,) = _LEN.unpack_from(buf, pos)
        if n == 0 or n > self.max_frame:
            self.clear()
            return ProtocolError(ErrorCode.BAD_FRAME,
                                 f"frame length {n} is outside 1..{self.max_frame}", fatal=True)
        if len(buf) - pos - 4 < n:
            return None
        body = memoryview(buf)[pos + 4:pos + 4 + n]
        msg = self._decode(body)
        body.release()
        self.consume(4 + n)
        return msg

    def view(self) -> memoryview:
        """The bytes kept and not yet taken (complete frames first, then a partial one), for
        a reader that takes whole frames itself (``consume``). Release it before ``keep``."""
        return memoryview(self._buf)[self._pos:]

    def consume(self, n: int) -> None:
        """Marks the first ``n`` bytes of ``view()`` taken."""
        self._pos += n
        if self._pos == len(self._buf):
            self._new()  # a new buffer: a view of the old one may still be alive

    def complete(self) -> bool:
        """True if a whole frame (or a bad length, which ``next`` reports) is waiting."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 4:
            return False
        (n,) = _LEN.unpack_from(buf, pos)
        return n == 0 or n > self.max_frame or len(buf) - pos - 4 >= n

    def waiting(self) -> int:
        """How many complete frames are kept and not yet decoded."""
        buf, pos, k = self._buf, self._pos, 0
        while len(buf) - pos >= 4:
            (n,) = _LEN.unpack_from(buf, pos)
            if len(buf) - pos - 4 < n:
                break
            pos += 4 + n
            k += 1
        return k

    @property
    def buffered(self) -> int:
        """Bytes kept and not yet decoded (an incomplete frame waiting for the rest, and while
        its reader is paused the complete frames of one read)."""
        return len(self._buf) - self._pos

    def clear(self) -> None:
        """Drops everything kept (the connection closed, or its stream is lost)."""
        self._new()

    def _new(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def _decode(self, body: memoryview) -> msgspec.Struct | ProtocolError:
        is_json = body[0] in (0x5B, 0x7B)  # '[' or '{': never a valid msgpack message
        try:
            msg = (self._js if is_json else self._mp).decode(body)
        except msgspec.ValidationError as e:
            return ProtocolError(ErrorCode.BAD_MESSAGE,
                                 f"invalid message: {_name_fields(str(e), body, is_json)}")
        except msgspec.DecodeError as e:
            return ProtocolError(ErrorCode.BAD_FRAME,
                                 f"body is not valid {'JSON' if is_json else 'msgpack'}: {e}")
        except RecursionError:
            # messages are flat arrays of scalars, so a typed decode stops at the first
            # nested value; only skipping extra trailing elements descends, and msgspec bounds
            # that by the interpreter's recursion limit (it raises, it never overflows)
            return ProtocolError(ErrorCode.BAD_MESSAGE, _TOO_DEEP)
        if self.codec is None:
            self.codec = "json" if is_json else "msgpack"
        return msg


_FIELDS = {cls.__struct_config__.tag: (cls.__name__, cls.__struct_fields__)
           for cls in (*ClientMessage.__args__, *ServerMessage.__args__)}  # type: ignore[attr-defined]
_POS = re.compile(r"`\$\[(\d+)\]`")
_TOO_DEEP = "invalid message: nested too deep (messages are flat arrays of scalars)"


def _name_fields(error: str, body: memoryview, is_json: bool) -> str:
    """Adds the message and field name to msgspec's positional error (``$[3]``)."""
    mod = msgspec.json if is_json else msgspec.msgpack
    try:  # only the tag is decoded: the other elements stay raw (they may be invalid)
        raw = mod.decode(body, type=list[msgspec.Raw])
        tag = mod.decode(raw[0], type=int) if raw else None
    except (msgspec.DecodeError, ValueError):
        return error
    except RecursionError:  # an element nested past the recursion limit: name no field
        return f"{error} (nested too deep)"
    if tag not in _FIELDS:
        return error
    name, fields = _FIELDS[tag]

    def label(m: re.Match[str]) -> str:
        i = int(m.group(1))
        return f"{m.group(0)} ({name}.{fields[i - 1]})" if 0 < i <= len(fields) else m.group(0)

    return _POS.sub(label, error)
