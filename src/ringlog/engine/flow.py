"""Seeded synthetic order flow for the demo, the benchmarks and the tests.

``mixed_flow`` is a realistic stream: per symbol a mid price random-walks; most commands are
passive limit orders a few ticks from the mid, then cancels and modifies of recent orders,
aggressive IOC / limit / market / FOK orders that trade, post-only orders, and a small share
of invalid commands (zero quantity, unknown symbol, another account's order, a price outside
the band). It is generated with numpy in one pass, so millions of commands take well under a
second. ``adds_flow``, ``cancels_flow`` and ``matches_flow`` isolate one operation each.
"""

from __future__ import annotations

import numpy as np

from ._engine import Engine
from .config import EngineConfig, SymbolSpec
from .records import COMMAND_DTYPE, FLAG_POST_ONLY, Command, OrderType, Side, Tif

__all__ = ["adds_flow", "cancels_flow", "demo_config", "demo_engine", "matches_flow",
           "mixed_flow"]

# share of each kind of new order in the mixed stream; cancels and modifies come on top
_KINDS = ("limit", "ioc", "market", "fok", "post_only", "invalid")
_SHARES = (0.72, 0.11, 0.05, 0.03, 0.07, 0.02)
_CANCEL, _MODIFY = 0.55, 0.15      # share of resting orders later cancelled / modified


def demo_config(symbols: int = 4, **kw: object) -> EngineConfig:
    """The demo's and benchmarks' engine: ``symbols`` books around 10_000 ticks, a 10% band,
    L2 of depth 5 (``kw`` overrides any EngineConfig field)."""
    kw.setdefault("l2_depth", 5)
    specs = [SymbolSpec(symbol=s + 1, min_price=1, max_price=20_000, reference_price=10_000,
                        band_pct=10.0) for s in range(symbols)]
    return EngineConfig(symbols=specs, **kw)  # type: ignore[arg-type]


def demo_engine() -> Engine:
    """The engine exactly as ``make demo`` runs it: a factory for the tools
    (``ringlog replay demo-journal --handler ringlog.engine.flow:demo_engine``)."""
    return Engine(demo_config(max_orders=1 << 20))


def mixed_flow(n: int, seed: int = 1, symbols: int = 4, accounts: int = 50,
               start_id: int = 1, mid: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """``(commands, type_ids)``: ``n`` commands of the realistic mix described above.

    New orders come one per time step; a resting (limit or post-only) order is later cancelled
    or modified by its owner with the shares above, after a geometric delay (a few dozen
    steps), so a cancel only misses when the order traded first."""
    rng = np.random.default_rng(seed)
    m = n                                               # new orders generated (enough)
    kind = rng.choice(len(_KINDS), size=m, p=_SHARES)
    sym = rng.integers(0, symbols, size=m)
    walk = mid + np.cumsum(rng.integers(-1, 2, size=(m // 8 + 1, symbols)), axis=0)
    mids = np.repeat(walk, 8, axis=0)[:m][np.arange(m), sym]   # one step per 8 orders
    side = rng.integers(1, 3, size=m)
    sign = np.where(side == Side.BUY, -1, 1)             # passive: buys below, sells above
    new = np.zeros(m, COMMAND_DTYPE)
    new["order_id"] = start_id + np.arange(m)
    new["symbol"] = sym + 1
    new["side"] = side
    new["qty"] = rng.integers(1, 100, size=m)
    new["account"] = rng.integers(1, accounts + 1, size=m)
    new["price"] = mids + sign * rng.geometric(0.15, size=m)
    k = {name: kind == i for i, name in enumerate(_KINDS)}
    cross = k["ioc"] | k["fok"]                          # aggressive: through the mid
    new["price"][cross] = (mids - sign * rng.integers(1, 4, size=m))[cross]
    new["tif"] = np.select([k["ioc"] | k["market"], k["fok"]], [Tif.IOC, Tif.FOK], Tif.GTC)
    new["order_type"][k["market"]] = OrderType.MARKET
    new["price"][k["market"]] = 0
    new["flags"][k["post_only"]] = FLAG_POST_ONLY
    bad = np.flatnonzero(k["invalid"])                   # zero qty, unknown symbol, far price
    which = rng.integers(0, 3, size=len(bad))
    new["qty"][bad[which == 0]] = 0
    new["symbol"][bad[which == 1]] = symbols + 1000
    new["price"][bad[which == 2]] = mids[bad[which == 2]] * 2
    # follow-ups of resting orders: cancel, modify (new price near the mid, new qty), or a
    # cancel by another account (rejected NOT_OWNER)
    rest = np.flatnonzero(k["limit"] | k["post_only"])
    fate = rng.random(len(rest))
    follow = rest[fate < _CANCEL + _MODIFY + 0.005]
    fate = fate[fate < _CANCEL + _MODIFY + 0.005]
    up = np.zeros(len(follow), COMMAND_DTYPE)
    up["order_id"] = new["order_id"][follow]
    up["account"] = new["account"][follow]
    up_types = np.where(fate < _CANCEL, Command.CANCEL, Command.MODIFY).astype(np.uint32)
    mod = up_types == Command.MODIFY
    up["price"][mod] = (mids + sign * rng.geometric(0.15, size=m))[follow][mod]
    up["qty"][mod] = rng.integers(1, 100, size=len(follow))[mod]
    thief = fate >= _CANCEL + _MODIFY
    up_types[thief] = Command.CANCEL
    up["account"][thief] = accounts + 1
    when = follow + rng.geometric(1 / 40, size=len(follow)) + 0.5
    order = np.argsort(np.concatenate([np.arange(m, dtype=float), when]), kind="stable")[:n]
    cmds = np.concatenate([new, up])[order]
    types = np.concatenate([np.full(m, int(Command.NEW), np.uint32), up_types])[order]
    return cmds, types


def adds_flow(n: int, seed: int = 1, symbols: int = 1, mid: int = 10_000) -> np.ndarray:
    """``n`` passive GTC limit orders (buys below the mid, sells above): nothing trades."""
    rng = np.random.default_rng(seed)
    cmds = np.zeros(n, COMMAND_DTYPE)
    side = rng.integers(1, 3, size=n)
    cmds["order_id"] = np.arange(1, n + 1)
    cmds["account"] = rng.integers(1, 51, size=n)
    cmds["symbol"] = rng.integers(1, symbols + 1, size=n)
    cmds["side"] = side
    cmds["price"] = mid + np.where(side == Side.BUY, -1, 1) * rng.integers(1, 200, size=n)
    cmds["qty"] = rng.integers(1, 100, size=n)
    return cmds


def cancels_flow(adds: np.ndarray, seed: int = 2) -> np.ndarray:
    """Cancels of every order of ``adds`` in random order, each by its own account."""
    rng = np.random.default_rng(seed)
    cmds = np.zeros(len(adds), COMMAND_DTYPE)
    pick = rng.permutation(len(adds))
    cmds["order_id"] = adds["order_id"][pick]
    cmds["account"] = adds["account"][pick]
    return cmds


def matches_flow(n: int, seed: int = 3, mid: int = 10_000) -> np.ndarray:
    """Pairs: a sell rests at a price near the mid, then an IOC buy takes it entirely (one
    trade each pair); ``n`` commands."""
    rng = np.random.default_rng(seed)
    cmds = np.zeros(n, COMMAND_DTYPE)
    cmds["order_id"] = np.arange(1, n + 1)
    cmds["symbol"] = 1
    cmds["qty"] = np.repeat(rng.integers(1, 100, size=(n + 1) // 2), 2)[:n]
    cmds["price"] = np.repeat(mid + rng.integers(-50, 50, size=(n + 1) // 2), 2)[:n]
    maker = np.arange(n) % 2 == 0
    cmds["side"] = np.where(maker, Side.SELL, Side.BUY)
    cmds["tif"] = np.where(maker, Tif.GTC, Tif.IOC)
    cmds["account"] = np.where(maker, 1, 2)
    return cmds
