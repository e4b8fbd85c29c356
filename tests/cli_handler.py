"""Deterministic handlers for the replay CLI tests (loaded by path: --handler FILE:Class)."""

import struct

import msgspec

from ringlog.handler import EventHandler


class Book(EventHandler):
    """Positions per account from (account, qty) events; emits (sequence, account, position).

    ``history``, when a test sets it to a dict, records ``dump_state()`` after every sequence:
    the live state the replay must reproduce.
    """

    history: dict | None = None

    def __init__(self):
        self.positions: dict[int, int] = {}
        self.count = 0

    def on_event(self, event, sequence, end_of_batch):
        account, qty = struct.unpack("<qq", event.payload)
        qty = self.adjust(sequence, qty)
        self.positions[account] = self.positions.get(account, 0) + qty
        self.count += 1
        self.emit(struct.pack("<qqq", sequence, account, self.positions[account]), type_id=7,
                  key=account)
        if Book.history is not None:
            Book.history[sequence] = self.dump_state()

    def adjust(self, sequence, qty):
        return qty

    def dump_state(self):
        return {"count": self.count,
                "positions": {str(k): v for k, v in sorted(self.positions.items())}}

    def on_snapshot(self):
        return msgspec.msgpack.encode([self.count, sorted(self.positions.items())])

    def on_restore(self, data):
        count, items = msgspec.msgpack.decode(data)
        self.count = count
        self.positions = {a: q for a, q in items}


class DivergentBook(Book):
    """The same logic with a bug from sequence 250 on: its outputs diverge there."""

    def adjust(self, sequence, qty):
        return qty + 1 if sequence >= 250 else qty


class Counter(EventHandler):
    """A handler without dump_state: its state is dumped as on_snapshot bytes in base64."""

    def __init__(self):
        self.n = 0

    def on_event(self, event, sequence, end_of_batch):
        self.n += 1

    def on_snapshot(self):
        return struct.pack("<q", self.n)

    def on_restore(self, data):
        (self.n,) = struct.unpack("<q", data)


class Crashy(Book):
    """Raises on sequence 123: the replay names the sequence instead of a traceback."""

    def adjust(self, sequence, qty):
        if sequence == 123:
            raise KeyError("no such account")
        return qty


def engine():
    """The matching engine as the replay handler (a factory: Engine needs its config)."""
    from ringlog.engine import Engine
    from ringlog.engine.flow import demo_config

    return Engine(demo_config(2, max_orders=1 << 14))
