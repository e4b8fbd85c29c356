"""The standby's lease watch on a real NATS cluster: no request while the leader renews; the
lease taken with one compare-and-set once the last renewal it saw is a ttl old (never while
the leader may still trust it); a released lease taken at once, with one request."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

nats = pytest.importorskip("nats", reason="the cluster extra (nats-py) is not installed")

from ringlog.cluster.lease import Lease, LeaseWatch  # noqa: E402
from ringlog.cluster.stream import ensure_shard  # noqa: E402


class _Counted:
    """A key-value bucket whose requests a test counts (a watch is not one of them)."""

    def __init__(self, kv: Any) -> None:
        self.kv = kv
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name in ("create", "get", "update", "delete"):
            self.calls.append(name)
        return getattr(self.kv, name)


async def _until_taken(watch: LeaseWatch, lease: Lease) -> float:
    """A standby's loop (as ``Replica._lead``): the monotonic time it took the lease."""
    while not await watch.take(lease):
        pass
    return time.monotonic()


def test_a_standby_asks_nothing_while_the_leader_renews_and_takes_a_lapsed_lease(
        cluster_config: Any) -> None:
    async def scenario() -> None:
        cfg = cluster_config(lease_ttl=2.0)  # (renewals every 0.5 s: late ones are rare)
        ttl, key = cfg.lease_ttl, cfg.names(0).lease_key
        nc = await nats.connect(cfg.servers)
        tasks: list[asyncio.Future[Any]] = []
        try:
            js = nc.jetstream()
            await ensure_shard(js, cfg, 0)
            kv = await js.key_value(cfg.names(0).lease_bucket)
            leader = Lease(kv, key, "a", ttl)
            assert await leader.try_acquire()
            b, c = _Counted(kv), _Counted(kv)
            standby = [Lease(b, key, "b", ttl), Lease(c, key, "c", ttl)]
            watches = [LeaseWatch(kv, key, rid, ttl) for rid in ("b", "c")]
            tasks += [asyncio.ensure_future(w.run()) for w in watches]
            taking = asyncio.ensure_future(_until_taken(watches[0], standby[0]))
            for _ in range(8):  # the leader renews every ttl/4, as Replica._renew does
                await asyncio.sleep(ttl / 4)
                assert await leader.renew()
            assert b.calls == [] and not taking.done()
            assert watches[0].updates >= 1
            trusted = leader.valid_until  # the leader stops renewing (dies) here
            taken = await asyncio.wait_for(taking, 10 * ttl)
            assert taken >= trusted  # never while the leader could still trust it
            assert b.calls == ["update"]  # a compare-and-set on the write it saw last
            assert not await leader.renew()  # the old leader's next renewal fails
            # a release: the other standby sees the delete and takes the key at once,
            # with one request
            c.calls.clear()
            taking = asyncio.ensure_future(_until_taken(watches[1], standby[1]))
            await standby[0].release()
            await asyncio.wait_for(taking, 10 * ttl)
            assert c.calls == ["update"]
            assert await standby[1].current_holder() == "c"
        finally:
            for t in tasks:
                t.cancel()
            await nc.close()
    asyncio.run(asyncio.wait_for(scenario(), 120))
