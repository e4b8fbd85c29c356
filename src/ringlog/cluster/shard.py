"""Shards by symbol: every command goes to the input stream of its symbol's shard, so each
shard's engine holds only its symbols' books and the shards run in parallel.

::

    gateway ── ShardedPublisher.publish(type_id, payload)
                  │ ShardRouter.route: symbol → shard (explicit map, else symbol % shards)
                  ├─ NEW (symbol in the payload)            → its shard; order id remembered
                  ├─ CANCEL / MODIFY / ORDER_STATUS         → the shard of that order id
                  └─ MASS_CANCEL / OPEN_ORDERS, symbol 0    → every shard
                  ▼
              InputPublisher per shard ──► RL_<name>_IN_0 … RL_<name>_IN_<n-1>

Per-account limits are a shard's own: an engine enforces them over the orders it holds, i.e.
over the account's orders in the symbols of that shard. An account limited to N open orders
may hold N in every shard; a limit meant for the whole account must be divided among the
shards (or the account's symbols kept in one shard). Orders of different shards are not
ordered with each other: only the commands within one shard are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.records import COMMAND_DTYPE, Command
from ..errors import ClusterError
from .config import ClusterConfig
from .stream import InputPublisher

__all__ = ["ShardRouter", "ShardedPublisher", "split_by_shard"]

_FIELDS: Any = COMMAND_DTYPE.fields or {}
_SYMBOL = int(_FIELDS["symbol"][1])  # byte offset of the symbol in a command
_ORDER = int(_FIELDS["order_id"][1])
_BY_ORDER = (Command.CANCEL, Command.MODIFY, Command.ORDER_STATUS)
_ANY_SYMBOL = (Command.MASS_CANCEL, Command.OPEN_ORDERS)


class ShardRouter:
    """Which shard a symbol (and a known order) belongs to. Not thread-safe: one gateway
    thread routes."""

    def __init__(self, shards: int, assignments: dict[int, int] | None = None) -> None:
        if shards < 1:
            raise ClusterError(f"shards must be >= 1, got {shards}")
        for sym, shard in (assignments or {}).items():
            if not 0 <= shard < shards:
                raise ClusterError(f"symbol {sym} is assigned to shard {shard}, outside "
                                   f"0..{shards - 1}")
        self.shards = shards
        self.assignments = dict(assignments or {})
        self.orders: dict[int, int] = {}  # order id -> shard, learned from NEW orders

    def shard_of(self, symbol: int) -> int:
        """The shard of a symbol."""
        return self.assignments.get(symbol, symbol % self.shards)

    def route(self, type_id: int, payload: bytes) -> list[int]:
        """The shards an engine command goes to (one, or every shard for a command over all
        symbols). A command about an order this router never saw goes to shard 0, which
        rejects it as unknown like a one-machine engine would."""
        symbol = int.from_bytes(payload[_SYMBOL:_SYMBOL + 4], "little")
        if type_id in _ANY_SYMBOL and symbol == 0:
            return list(range(self.shards))
        if type_id in _BY_ORDER:
            order = int.from_bytes(payload[_ORDER:_ORDER + 8], "little")
            return [self.orders.get(order, 0) if symbol == 0 else self.shard_of(symbol)]
        shard = self.shard_of(symbol)
        if type_id == Command.NEW:
            self.orders[int.from_bytes(payload[_ORDER:_ORDER + 8], "little")] = shard
        return [shard]

    def forget(self, order_id: int) -> None:
        """Drops an order that is done (filled, cancelled, rejected) from the map."""
        self.orders.pop(order_id, None)


class ShardedPublisher:
    """One InputPublisher per shard behind a ShardRouter. Use from one event loop."""

    def __init__(self, js: Any, cfg: ClusterConfig, router: ShardRouter | None = None,
                 **kw: Any) -> None:
        self.router = router or ShardRouter(cfg.shards)
        if self.router.shards != cfg.shards:
            raise ClusterError(f"the router has {self.router.shards} shards, the cluster "
                               f"{cfg.shards}")
        self.publishers = [InputPublisher(js, cfg, s, **kw) for s in range(cfg.shards)]

    async def publish(self, type_id: int, payload: bytes, **kw: Any) -> list[int]:
        """Publishes an engine command to its shard(s); returns them."""
        shards = self.router.route(type_id, payload)
        for s in shards:
            await self.publishers[s].publish(type_id, payload, **kw)
        return shards

    async def flush(self) -> list[int]:
        """Flushes every shard; returns each input stream's last sequence."""
        return [await p.flush() for p in self.publishers]

    async def close(self) -> None:
        """Flushes and stops every shard's publisher."""
        for p in self.publishers:
            await p.close()


def split_by_shard(commands: np.ndarray, type_ids: np.ndarray,
                   router: ShardRouter) -> list[list[tuple[int, bytes]]]:
    """Engine commands (a COMMAND_DTYPE array and its type ids) split per shard in order, as
    the ShardedPublisher would route them (for tests and benchmarks)."""
    out: list[list[tuple[int, bytes]]] = [[] for _ in range(router.shards)]
    for i in range(len(commands)):
        payload = commands[i].tobytes()
        for s in router.route(int(type_ids[i]), payload):
            out[s].append((int(type_ids[i]), payload))
    return out
