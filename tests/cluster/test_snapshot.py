"""Snapshot transfer through the object store: each snapshot is an object of its own, the
newest two are kept, and one a joining replica reads stays however many are shipped meanwhile
(its pin), so the read cannot starve."""

from __future__ import annotations

import asyncio
from typing import Any

from ringlog.cluster.snapshot import (
    ShardSnapshot,
    fetch_snapshot,
    pick_snapshot,
    read_snapshot,
    ship_snapshot,
    snapshot_name,
)

from .helpers import Shard


def _snap(seq: int) -> ShardSnapshot:
    return ShardSnapshot(seq, 10 * seq, 3 * seq, bytes([seq % 256]) * 300_000)


def test_a_pinned_snapshot_outlives_the_shipping_of_newer_ones(cluster_config: Any,
                                                              tmp_path: Any) -> None:
    async def scenario() -> None:
        async with Shard(cluster_config(), tmp_path) as shard:
            names = shard.watch.names
            pins = await shard.js.key_value(names.status_bucket)
            store = await shard.js.object_store(names.snapshot_bucket)

            async def objects() -> list[str]:
                return sorted(i.name for i in await store.list(ignore_deletes=True)
                              if not i.deleted)
            assert await fetch_snapshot(shard.js, names, "z", pins) is None
            for seq in (5, 10, 20):  # (no pin yet)
                await ship_snapshot(shard.js, names, _snap(seq), pins)
            assert await objects() == [snapshot_name(names, s) for s in (10, 20)]
            picked = await pick_snapshot(shard.js, names, "z", pins)  # a reader starts
            assert picked == snapshot_name(names, 20)
            for seq in (30, 40, 50):  # shipped faster than it reads
                await ship_snapshot(shard.js, names, _snap(seq), pins)
            assert await objects() == [snapshot_name(names, s) for s in (20, 40, 50)]
            assert await read_snapshot(shard.js, names, picked, "z", pins) == _snap(20)
            await ship_snapshot(shard.js, names, _snap(60), pins)  # unpinned: 20 goes
            assert await objects() == [snapshot_name(names, s) for s in (50, 60)]
            assert await fetch_snapshot(shard.js, names, "z", pins) == _snap(60)
    asyncio.run(asyncio.wait_for(scenario(), 120))
