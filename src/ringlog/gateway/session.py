"""Gateway sessions: configuration, per-session sequencing and limits, commands and reports.

A session is one configured token bound to one account, identified by a stable ``id`` that
survives reconnects and restarts. The id is the processor's dedup key: every command a session
sends is published with ``producer_id = id`` and ``producer_seq = seq`` and routed back by its
``correlation_id = id << 40 | seq``, so a resent command is journaled but never applied twice
and its reports find their session again after a restart (rebuilt from the output journal).

Order ids are per account on the wire: the engine sees ``account << 32 | order_id``, so one
account can neither address nor probe another's orders (docs/protocol.md, "Isolation").
Nothing here does I/O; ``ringlog.gateway.server`` owns the sockets and the processor.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec

from .._gateway import (
    ANSWER_COST,
    SEQ_COST,
    OrderSet,
    ResendStore,
    Router,
    SessionCore,
    complete_through,
    order_command,
    published,
    settle,
)
from ..engine.config import EngineConfig
from ..engine.records import Command
from ..errors import RingLogError
from .protocol import (
    Cancel,
    MassCancel,
    Modify,
    NewOrder,
    OpenOrders,
    OrderStatus,
    ServerMessage,
    encode_frame,
)

__all__ = [
    "ANSWER_COST",
    "SEQ_BITS",
    "SEQ_COST",
    "GatewayConfig",
    "GatewayConfigError",
    "Limits",
    "Session",
    "SessionEntry",
    "SessionTable",
    "correlation",
    "encode_command",
    "load_config",
    "report_seq",
    "split_correlation",
]

SEQ_BITS = 40  # correlation_id = session id << SEQ_BITS | seq
SEQ_MASK = (1 << SEQ_BITS) - 1
MAX_SESSION_ID = (1 << 23) - 1  # keeps the correlation id a positive int64
ORDER_BITS = 32  # engine order id = account << ORDER_BITS | client order id
ORDER_MASK = (1 << ORDER_BITS) - 1

# Binary layouts of records.py as struct formats (a test checks them against the dtypes).
COMMAND = struct.Struct("<QqqIIBBBBB3xQ")
REPORT = struct.Struct("<QIIqqqBBB5x")
TRADE = struct.Struct("<QQIIIB3xqqqq")
L1 = struct.Struct("<I4xqqqq")
L2_HEAD = struct.Struct("<IHHH6x")  # then depth bid levels and depth ask levels (<qq each)


class GatewayConfigError(RingLogError, ValueError):
    """The gateway's configuration file is missing, unreadable or invalid."""


class SessionEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One configured session: its stable id, its logon token and the account it trades for."""

    id: int
    token: str
    account: int

    def __post_init__(self) -> None:
        if not 0 < self.id <= MAX_SESSION_ID:
            raise GatewayConfigError(f"session id must be in 1..{MAX_SESSION_ID}, got {self.id}")
        if not 0 < self.account < 1 << 32:
            raise GatewayConfigError(f"account must be in 1..2^32-1, got {self.account}")
        if len(self.token) < 8:
            raise GatewayConfigError(f"session {self.id}: a token needs at least 8 characters")


class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-session limits; beyond them an error frame, and repeated abuse closes the session."""

    max_frame: int = 4096  # bytes of one frame's body
    rate: float = 20_000.0  # messages per second (token bucket refill)
    burst: int = 2_000  # messages allowed at once (token bucket size)
    max_open_orders: int = 10_000  # live + in-flight new orders per account
    max_errors: int = 50  # consecutive error frames before the session is closed
    resend_window: int = 4_096  # answered seqs per session kept for resends
    max_inflight: int = 1_024  # commands awaiting the engine before the session's reading pauses
    high_water: int = 256 << 10  # unsent bytes above which the session's reading pauses
    low_water: int = 64 << 10  # ... and below which it resumes
    max_buffered: int = 8 << 20  # unsent bytes beyond which the session is closed
    socket_buffer: int = 0  # SO_SNDBUF of each connection; 0 = the kernel's default
    heartbeat_grace: float = 2.0  # a session silent for grace x its heartbeat is closed
    logon_timeout: float = 10.0  # seconds a connection may stay without a successful logon
    idle_timeout: float = 300.0  # seconds a session without heartbeat_ms may stay silent
    frame_timeout: float = 10.0  # seconds a started frame may stay incomplete
    max_connections: int = 1_024  # open connections in total (logged on or not)
    max_connections_per_peer: int = 64  # ... from one peer address
    session_memory: int = 4 << 20  # bytes of answers kept for resends per session

    def __post_init__(self) -> None:
        for name in ("max_frame", "burst", "max_open_orders", "max_errors", "resend_window",
                     "max_inflight", "high_water", "max_buffered", "max_connections",
                     "max_connections_per_peer", "session_memory"):
            if getattr(self, name) < 1:
                raise GatewayConfigError(f"limits.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("rate", "logon_timeout", "idle_timeout", "frame_timeout",
                     "heartbeat_grace"):
            if not getattr(self, name) > 0:
                raise GatewayConfigError(f"limits.{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.low_water <= self.high_water <= self.max_buffered:
            raise GatewayConfigError("limits need 0 <= low_water <= high_water <= max_buffered")
        if self.max_frame > 1 << 20:
            raise GatewayConfigError(f"limits.max_frame must be <= 1 MiB, got {self.max_frame}")


class GatewayConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The server's configuration (a JSON or TOML file; docs/protocol.md, "Configuration").
    ``engine`` is the matching engine's (symbols, bands, account limits, STP, market data):
    ``ringlog serve`` builds ``ringlog.engine.Engine(engine)`` from it."""

    host: str = "127.0.0.1"
    port: int = 7878
    sessions: list[SessionEntry] = msgspec.field(default_factory=list)
    limits: Limits = msgspec.field(default_factory=Limits)
    answer_scan: int = 200_000  # output journal records read at start to rebuild answers
    engine: EngineConfig | None = None

    def __post_init__(self) -> None:
        ids: set[int] = set()
        tokens: set[str] = set()
        for s in self.sessions:
            if s.id in ids:
                raise GatewayConfigError(f"session id {s.id} appears twice")
            if s.token in tokens:
                raise GatewayConfigError(f"session {s.id}: its token is already used by "
                                         "another session")
            ids.add(s.id)
            tokens.add(s.token)
        if not 0 <= self.port < 1 << 16:
            raise GatewayConfigError(f"port must be in 0..65535, got {self.port}")


def load_config(path: str | Path) -> GatewayConfig:
    """Reads a JSON (``.json``) or TOML (any other suffix) gateway configuration file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise GatewayConfigError(f"cannot read the gateway config {p}: {e.strerror}") from e
    try:
        if p.suffix == ".json":
            return msgspec.json.decode(data, type=GatewayConfig)
        return msgspec.toml.decode(data, type=GatewayConfig)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise GatewayConfigError(f"invalid gateway config {p}: {e}") from e


def report_seq(out_seq: int) -> int:
    """The report seq of the first report made by output journal record ``out_seq`` (a
    trade's second, the maker's, is one more): deterministic from the output journal, the
    same after a restart and on every replica (docs/protocol.md, "Execution reports")."""
    return 2 * out_seq + 1


def correlation(session_id: int, seq: int) -> int:
    """The correlation id of a session's command: routes its reports back to it."""
    return session_id << SEQ_BITS | seq


def split_correlation(corr: int) -> tuple[int, int]:
    """``(session id, seq)`` of a correlation id (``(0, x)``: not a session's command)."""
    return corr >> SEQ_BITS, corr & SEQ_MASK


def encode_command(msg: Any, account: int) -> tuple[int, bytes]:
    """``(type id, COMMAND_DTYPE payload)`` of an engine-bound client message. NewOrder,
    Cancel and Modify go through the compiled decoder of the fast path (one mapping of their
    fields to the record: ``ringlog._gateway``), the queries are packed here."""
    t = type(msg)
    if t is NewOrder or t is Cancel or t is Modify:
        return order_command(encode_frame(msg), account)
    if t is MassCancel:
        return Command.MASS_CANCEL, COMMAND.pack(0, 0, 0, account, msg.symbol, 0, 0, 0, 0, 0,
                                                 msg.seq)
    if t is OrderStatus:
        eid = account << ORDER_BITS | msg.order_id
        return Command.ORDER_STATUS, COMMAND.pack(eid, 0, 0, account, 0, 0, 0, 0, 0, 0, msg.seq)
    if t is OpenOrders:
        return Command.OPEN_ORDERS, COMMAND.pack(0, 0, 0, account, msg.symbol, 0, 0, 0, 0, 0,
                                                 msg.seq)
    raise TypeError(f"{t.__name__} is not an engine command")


ENGINE_MESSAGES = (NewOrder, Cancel, Modify, MassCancel, OrderStatus, OpenOrders)

_decode_frame = msgspec.msgpack.Decoder(ServerMessage).decode


def decode_frames(frames: bytes) -> list[msgspec.Struct]:
    """The messages of consecutive msgpack frames (the compiled path's output, for the rare
    callers that want Structs: a JSON session, the report replay, tests)."""
    out: list[msgspec.Struct] = []
    pos = 0
    mv = memoryview(frames)
    while pos < len(frames):
        n = int.from_bytes(frames[pos:pos + 4], "big")
        out.append(_decode_frame(mv[pos + 4:pos + 4 + n]))
        pos += 4 + n
    return out


class AnswersView(Mapping[int, list[msgspec.Struct]]):
    """A read-only view of a session's resend store as messages: ``seq -> [answers]``."""

    def __init__(self, store: ResendStore) -> None:
        self._store = store

    def __getitem__(self, seq: int) -> list[msgspec.Struct]:
        if seq not in self._store:
            raise KeyError(seq)
        return decode_frames(self._store.get(seq))

    def __iter__(self) -> Iterator[int]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, seq: object) -> bool:
        return seq in self._store


class Session(SessionCore):
    """One configured session's state; it outlives connections. Not thread-safe (the loop's).

    What the compiled router reads per delivery (``id``, ``account``, ``store``, ``conn``
    and its connection's output batch, ``inflight``, ``causes``, ``news``, ``depth``, the
    account's ``live`` orders) are C fields of ``ringlog._gateway.SessionCore``.

    ``last_seen`` is the highest client seq taken (answered or in flight); ``acked`` the
    highest below which everything is answered; ``errors`` the error frames in a row;
    ``tokens`` and ``token_time`` the rate limit's bucket (``take_token``, ``take_tokens``);
    these are C fields of ``SessionCore`` too (the compiled read path takes order frames
    under the same rules); ``inflight`` the engine-bound seqs waiting for
    their first report; ``store`` the recent answers kept for resends (frames, compiled:
    ``ringlog._gateway.ResendStore``), ``answers`` a view of them as messages.
    """

    __slots__ = ("token_digest",)

    def __init__(self, entry: SessionEntry, limits: Limits) -> None:
        super().__init__(entry.id, entry.account,
                         ResendStore(limits.resend_window, limits.session_memory))
        self.token_digest = hashlib.sha256(entry.token.encode()).digest()
        self.last_seen = 0
        self.acked = 0
        self.errors = 0
        self.tokens = float(limits.burst)
        self.token_time = time.monotonic()

    def record(self, seq: int, msg: msgspec.Struct) -> None:
        """Keeps an answer to ``seq`` for resends (``ResendStore.record``: within the window
        of seqs and the byte budget)."""
        self.store.record(seq, encode_frame(msg))

    @property
    def answers(self) -> AnswersView:
        """The answers kept for resends, as messages (decoded: not for the hot path)."""
        return AnswersView(self.store)

    @property
    def kept(self) -> int:
        """Bytes of kept answers by the server's accounting (``session_memory`` at most)."""
        return self.store.kept

    @property
    def evicted(self) -> int:
        """Seqs dropped from the resend store (window or budget)."""
        return self.store.evicted

    @property
    def overflowed(self) -> set[int]:
        """Kept seqs whose answers alone passed the budget (a memory_limit error kept)."""
        return self.store.overflowed

    def complete_through(self, seq: int) -> int:
        """Marks in-flight seqs up to ``seq`` answered (reports of a session arrive in seq
        order, so a later seq's report completes earlier silent ones); returns how many
        new orders left flight (compiled: ``ringlog._gateway.complete_through``)."""
        return complete_through(self, seq)


class SessionTable:
    """Every configured session, by id, by token and by account; routes engine reports.

    ``route(record)`` turns one output record into ``(session, seq, message)`` deliveries:
    an order's reports go to the session that sent the command (with its seq), a trade also to
    the maker's account (seq 0: unsolicited), market data to subscribers. It also keeps each
    account's live orders for the open-orders limit. The rules are compiled
    (``ringlog._gateway.Router``, which writes the frames; ``router.drain`` is the gateway's
    hot path). Not thread-safe (the event loop's).
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.by_id = {e.id: Session(e, config.limits) for e in config.sessions}
        self.by_account: dict[int, list[Session]] = {}
        for s in self.by_id.values():
            self.by_account.setdefault(s.account, []).append(s)
        self.live: dict[int, OrderSet] = {a: OrderSet() for a in self.by_account}
        for s in self.by_id.values():  # the router reaches the requester's without a lookup
            s.live = self.live[s.account]
        self.pending_new: dict[int, int] = dict.fromkeys(self.by_account, 0)
        self.subscribers: dict[int, set[Session]] = {}
        self.rebuilding: set[int] = set()  # accounts whose open-orders query is unanswered
        self.unsettled: set[Session] = set()  # sessions with commands in flight
        self.copiers: dict[int, set[Session]] = {}  # account -> drop-copy sessions
        self.router = Router(self)  # shares the dicts above (never rebind them)

    def authenticate(self, token: str) -> Session | None:
        """The session of ``token``. The token is hashed first and the digests compared in
        constant time against every session's, so the cost depends neither on where a guess
        differs nor on the length of what a client sends (beyond hashing it once)."""
        d = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found = None
        for s in self.by_id.values():
            if hmac.compare_digest(s.token_digest, d):
                found = s
        return found

    def open_orders(self, account: int) -> int:
        """Live plus in-flight new orders of an account (the open-orders limit counts both)."""
        return len(self.live.get(account, ())) + self.pending_new.get(account, 0)

    def subscribe(self, s: Session, symbol: int, depth: int) -> None:
        """Sets (depth > 0) or clears a session's market-data subscription to a symbol."""
        if depth:
            s.depth[symbol] = depth
            self.subscribers.setdefault(symbol, set()).add(s)
        else:
            s.depth.pop(symbol, None)
            self.subscribers.get(symbol, set()).discard(s)

    def unsubscribe_all(self, s: Session) -> None:
        """Drops every subscription of a session (its connection closed)."""
        for symbol in list(s.depth):
            self.subscribe(s, symbol, 0)

    def order_room(self, account: int) -> int:
        """New orders the account may still send (the open-orders limit: live + in flight)."""
        return self.config.limits.max_open_orders - self.open_orders(account)

    def published(self, s: Session, seq: int, cause: int, n: int = 1) -> None:
        """Commands ``seq .. seq + n - 1`` of ``s`` are in the input ring from journal
        sequence ``cause`` on (one each, in order)."""
        published(s, seq, n, cause, self.unsettled)

    def settle(self, done: int) -> list[Session]:
        """Completes in-flight commands whose input (journal sequence) is at or below
        ``done``: the loop finished them and every output they made has been routed (so a
        command that makes no report, a mass cancel with nothing to cancel, completes too).
        Returns the sessions whose Ack may move (compiled: ``ringlog._gateway.settle``)."""
        return settle(self.unsettled, self.pending_new, done)  # type: ignore[return-value]

    def route(self, type_id: int, payload: bytes, corr: int, cause: int = -1, rseq: int = 0,
              effects: bool = True) -> list[tuple[Session, int, msgspec.Struct]]:
        """Deliveries of one engine output as messages (``cause``: the journal sequence of the
        input that made it; ``rseq``: the report seq of its first report,
        ``report_seq(out_seq)``); with ``effects`` also updates live orders and in-flight
        seqs (without: a replay of the journal, which must change nothing)."""
        return [(s, seq, _decode_frame(memoryview(frame)[4:]))
                for s, seq, frame in self.router.route(type_id, payload, corr, rseq, effects)]

    def route_frames(self, type_id: int, payload: bytes, corr: int, rseq: int = 0,
                     effects: bool = True) -> list[tuple[Session, int, bytes]]:
        """``route`` with each message as its msgpack frame (what the gateway sends)."""
        return self.router.route(type_id, payload, corr, rseq, effects)

    def set_drop_copy(self, s: Session, on: bool) -> None:
        """Subscribes (or not) a session to every report of its account (drop copy)."""
        copiers = self.copiers.setdefault(s.account, set())
        if on:
            copiers.add(s)
        else:
            copiers.discard(s)
        if not copiers:
            del self.copiers[s.account]
