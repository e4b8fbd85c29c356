"""Routing by symbol: commands reach their symbol's shard, commands about an order follow it,
commands over every symbol go to every shard; two shards of real replicas give the states a
one-shard engine gives per symbol set."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringlog.cluster.shard import ShardedPublisher, ShardRouter, split_by_shard
from ringlog.engine import Command, cancel, mass_cancel, new_order, open_orders
from ringlog.engine.flow import demo_engine, mixed_flow
from ringlog.errors import RingLogError

from .helpers import Shard


def _new(order_id: int, symbol: int) -> bytes:
    return new_order(order_id, account=1, symbol=symbol, side=1, price=10_000, qty=1)


def test_router_sends_orders_by_symbol_and_their_cancels_after_them() -> None:
    r = ShardRouter(2, {7: 0})
    assert r.route(Command.NEW, _new(1, 3)) == [1]
    assert r.route(Command.NEW, _new(2, 7)) == [0]  # the explicit map wins over symbol % 2
    assert r.route(Command.CANCEL, cancel(1, account=1)) == [1]
    assert r.route(Command.CANCEL, cancel(2, account=1)) == [0]
    assert r.route(Command.CANCEL, cancel(99, account=1)) == [0]  # unknown: rejected there
    assert r.route(Command.MASS_CANCEL, mass_cancel(1)) == [0, 1]
    assert r.route(Command.MASS_CANCEL, mass_cancel(1, symbol=3)) == [1]
    assert r.route(Command.OPEN_ORDERS, open_orders(1)) == [0, 1]


def test_router_rejects_a_symbol_mapped_outside_the_shards() -> None:
    with pytest.raises(RingLogError, match="symbol 5 is assigned to shard 3"):
        ShardRouter(2, {5: 3})


@given(st.integers(1, 4), st.lists(st.integers(0, 1000), min_size=1, max_size=50))
def test_router_every_new_order_lands_on_exactly_one_shard_in_range(
        shards: int, symbols: list[int]) -> None:
    r = ShardRouter(shards)
    for i, s in enumerate(symbols):
        got = r.route(Command.NEW, _new(i + 1, s))
        assert got == [s % shards]


def test_two_shards_of_replicas_match_per_shard_engines(cluster_config: Any,
                                                        tmp_path: Any) -> None:
    async def scenario() -> None:
        cfg = cluster_config(shards=2)
        cmds, types = mixed_flow(1500, symbols=4)
        want = split_by_shard(cmds, types, ShardRouter(2))
        hashes = []
        for part in want:
            e = demo_engine()
            for ty, pl in part:
                e.apply(ty, pl)
            hashes.append(e.state_hash())
        async with Shard(cfg, tmp_path) as s0:
            from ringlog.cluster.stream import ensure_shard
            from ringlog.cluster.trial import ReplicaProcess, stop_all

            await ensure_shard(s0.js, cfg, 1)
            reps = [ReplicaProcess(cfg, "r", tmp_path / f"s{k}", shard=k).start()
                    for k in range(2)]
            try:
                pub = ShardedPublisher(s0.js, cfg)
                for i in range(len(cmds)):
                    await pub.publish(int(types[i]), cmds[i].tobytes())
                lasts = await pub.flush()
                await pub.close()
                from ringlog.cluster.trial import ShardWatch

                for k in range(2):
                    w = ShardWatch(s0.js, cfg, k)
                    async def done(w: ShardWatch = w, k: int = k) -> Any:
                        st_ = await w.status("r")
                        return st_ if st_ and st_.hash_seq >= lasts[k] else None
                    got = await w.wait(done, f"shard {k}", 60)
                    assert got.state_hash == hashes[k]
                assert hashes[0] != hashes[1]
                assert np.all([len(p) for p in want])
            finally:
                stop_all(reps)
    asyncio.run(asyncio.wait_for(scenario(), 120))
