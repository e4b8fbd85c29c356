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
            # the watches' first answer (the leader's entry) before the standby's loop: a
            # loaded machine can take longer than the ttl/8 a new watch waits for it, and
            # the standby would then ask (create, get) as it should without one
            async def first_answers() -> None:
                while any(w.updates < 1 for w in watches):
                    await asyncio.sleep(0.01)
            await asyncio.wait_for(first_answers(), 10 * ttl)
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


def test_a_lease_bucket_made_without_expiry_markers_gets_them(cluster_config: Any) -> None:
    """A cluster's lease bucket from before (no markers): ensure_shard turns them on, so a
    standby's watch sees the servers expire a key."""
    from nats.js.api import KeyValueConfig, StorageType

    async def scenario() -> None:
        cfg = cluster_config()
        names = cfg.names(0)
        nc = await nats.connect(cfg.servers)
        try:
            js = nc.jetstream()
            await js.create_key_value(KeyValueConfig(
                bucket=names.lease_bucket, history=1, ttl=cfg.lease_ttl,
                replicas=cfg.replicas, storage=StorageType.FILE))
            stream = f"KV_{names.lease_bucket}"
            assert not (await js.stream_info(stream)).config.subject_delete_marker_ttl
            await ensure_shard(js, cfg, 0)
            assert (await js.stream_info(stream)).config.subject_delete_marker_ttl == 1.0
            kv = await js.key_value(names.lease_bucket)
            watch = LeaseWatch(kv, names.lease_key, "b", cfg.lease_ttl)
            task = asyncio.ensure_future(watch.run())
            try:
                assert await Lease(kv, names.lease_key, "a", cfg.lease_ttl).try_acquire()
                async def expired() -> None:  # the servers' marker, no renewal after it
                    while not (watch.free and watch.revision):
                        await asyncio.sleep(0.01)  # (polling a condition, with a deadline)
                await asyncio.wait_for(expired(), 30)
                assert await Lease(kv, names.lease_key, "b", cfg.lease_ttl).try_acquire(
                    watch.after)
            finally:
                task.cancel()
        finally:
            await nc.close()
    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_lease_bucket_is_made_without_markers_where_they_are_not_supported() -> None:
    """Servers before 2.11 (or a nats-py without ``limit_marker_ttl``) refuse the markers:
    the bucket is made as before."""
    from nats.js.errors import BucketNotFoundError

    from ringlog.cluster.stream import ensure_bucket

    made: list[dict[str, Any]] = []

    class JetStream:
        async def key_value(self, bucket: str) -> Any:
            if not made:
                raise BucketNotFoundError()
            return made[-1]

        async def create_key_value(self, config: Any) -> Any:
            if config.limit_marker_ttl:
                raise RuntimeError("limit markers not supported by the server")
            made.append({"ttl": config.ttl, "markers": config.limit_marker_ttl})
            return made[-1]

        async def stream_info(self, stream: str) -> Any:
            raise RuntimeError("not reached")

    kv = asyncio.run(ensure_bucket(JetStream(), "RL_t_LEASE", 3, ttl=0.5, markers=True))
    assert kv == {"ttl": 0.5, "markers": None}
