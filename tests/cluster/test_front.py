"""``ringlog serve --cluster`` nodes take orders over TCP and put them on the shard's input
stream; reports come back from the node's own replica. A client whose node (the leader) is
killed logs on at another node, resends, and every order is applied exactly once; a session
is logged on at one node at a time."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from ringlog.client import AsyncClient, LogonRejected
from ringlog.cluster.front import SessionLeases
from ringlog.engine import Engine
from ringlog.gateway.protocol import NewOrder
from ringlog.gateway.session import encode_command, load_config

from .helpers import Shard, apply_once, stream_commands

TOKEN = "token-of-one"
CONFIG = ("port = 0\n[[sessions]]\nid = 1\ntoken = \"token-of-one\"\naccount = 101\n"
          "[limits]\nmax_open_orders = 100000\n[engine]\n" +
          "".join(f"[[engine.symbols]]\nsymbol = {s}\nmax_price = 100000\n" for s in (1, 3)))


async def _address(shard: Shard, rid: str) -> tuple[str, int]:
    """Where node ``rid``'s gateway listens (its "listening" event)."""
    async def listening() -> Any:
        ev = shard.replicas[rid].events("listening")
        return (ev[0]["host"], ev[0]["port"]) if ev else None
    return tuple(await shard.watch.wait(listening, f"{rid}'s gateway listening", 60))


def _order(i: int) -> tuple[Any, ...]:
    """Order i: resting buys and sells on two symbols that never cross."""
    side = 1 + i % 2
    return (i, (1, 3)[i % 3 == 0], side, 1 + i % 4, 100 + i % 7 if side == 1 else 500 + i % 7)


def test_gateway_orders_go_through_the_stream_and_survive_their_nodes_death(
        cluster_config: Any, tmp_path: Any) -> None:
    gw = tmp_path / "gw.toml"
    gw.write_text(CONFIG)

    async def scenario() -> None:
        cfg = cluster_config()
        async with Shard(cfg, tmp_path) as shard:
            shard.start("g1", gateway_config=gw)
            assert await shard.leader(timeout=60) == "g1"
            shard.start("g2", gateway_config=gw)
            h1, p1 = await _address(shard, "g1")
            h2, p2 = await _address(shard, "g2")
            client = await AsyncClient.connect(h1, p1, TOKEN, timeout=30)
            first = [client.new_order(*_order(i)) for i in range(1, 41)]
            answers = [await client.answers(s, timeout=60) for s in first]
            assert all(any(getattr(a, "kind", "") == "accepted" for a in ans)
                       for ans in answers), answers
            with pytest.raises(LogonRejected, match="logged on at node g1"):  # the same session
                await AsyncClient.connect(h2, p2, TOKEN, timeout=30)
            # more orders in flight, then the client's node (the leader) dies
            more = [client.new_order(*_order(i)) for i in range(41, 81)]
            shard.replicas["g1"].kill()
            await client.reconnect(30, host=h2, port=p2)  # resends what was not acked
            tail = [client.new_order(*_order(i)) for i in range(81, 101)]
            for s in more + tail:
                await client.answers(s, timeout=60)
            assert client.acked == 100
            client.close()
            assert await shard.leader(not_="g1") == "g2"
            last = await shard.watch.last_input_seq()
            st = await shard.caught_up("g2", last, timeout=60)
            cmds = await stream_commands(shard, last)
            # each order entered the stream at least once (resends may repeat it) and the
            # replicas applied each exactly once: the engine fed the first copy of each
            engine = Engine(load_config(str(gw)).engine)
            _, seen = apply_once(engine, cmds)
            assert {seq for producer, seq in seen if producer == 1} == set(range(1, 101))
            assert st.state_hash == engine.state_hash()
            want = [encode_command(NewOrder(i, *_order(i)), 101) for i in (1, 100)]
            assert [(ty, pl) for p_, s_, ty, pl in cmds if p_ == 1 and s_ in (1, 100)][:2] \
                == want
    asyncio.run(asyncio.wait_for(scenario(), 180))


class _Bucket:
    """The calls a Lease makes of a JetStream key-value bucket, in memory; ``expire(key)`` is
    the servers' ttl passing over a key no one renewed."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[bytes, int]] = {}
        self.revision = 0
        self.away = False  # no answer (a NATS node's re-election)

    def __getattribute__(self, name: str) -> Any:
        if name in ("create", "get", "update", "delete") and object.__getattribute__(
                self, "away"):
            raise TimeoutError("nats: timeout")
        return object.__getattribute__(self, name)

    def _put(self, key: str, value: bytes) -> int:
        self.revision += 1
        self.entries[key] = (value, self.revision)
        return self.revision

    async def create(self, key: str, value: bytes) -> int:
        if key in self.entries:
            raise KeyWrongLastSequenceError()
        return self._put(key, value)

    async def get(self, key: str) -> Any:
        if key not in self.entries:
            raise KeyNotFoundError()
        value, revision = self.entries[key]
        return SimpleNamespace(value=value, revision=revision)

    async def update(self, key: str, value: bytes, last: int) -> int:
        if key not in self.entries or self.entries[key][1] != last:
            raise KeyWrongLastSequenceError()
        return self._put(key, value)

    async def delete(self, key: str, last: int | None = None) -> None:
        if key in self.entries and last in (None, self.entries[key][1]):
            del self.entries[key]

    def expire(self, key: str, marker: bool = False) -> None:
        """The ttl passed: the key is gone, or (``marker``) replaced by the servers'
        deletion marker, an entry with no value (NATS 2.11+)."""
        if marker:
            self._put(key, b"")
        else:
            del self.entries[key]


def test_a_session_is_leased_to_one_node_at_a_time_and_a_node_that_lost_it_drops_it() -> None:
    async def scenario() -> None:
        bucket, lost = _Bucket(), []
        a = SessionLeases(lambda: bucket, "a", 60.0, lambda sid: lost.append(("a", sid)))
        b = SessionLeases(lambda: bucket, "b", 60.0, lambda sid: lost.append(("b", sid)))
        assert await a.acquire(1) is None
        assert await a.acquire(1) is None  # again at the same node (a restarted process)
        refused = await b.acquire(1, wait=0)
        assert refused is not None and "session 1 is logged on at node a" in refused
        assert await b.acquire(2, wait=0) is None  # another session: its own lease
        a.release(1)
        await a.released()
        assert await b.acquire(1, wait=0) is None
        await b.renew_all()
        assert lost == [] and set(b.held) == {1, 2}
        bucket.away = True  # the bucket does not answer past b's trust in its leases
        b.held[1].valid_until = b.held[2].valid_until = 0.0
        await b.renew_all()
        assert lost == [] and set(b.held) == {1, 2}  # its sessions stay
        bucket.away = False
        bucket.expire("session-2")  # lapsed meanwhile: b takes it again
        await b.renew_all()
        assert lost == [] and bucket.entries["session-2"][0] == b"b" and b.held[2].held()
        bucket.expire("session-1")  # b paused past the ttl, and a took the session
        assert await a.acquire(1, wait=0) is None
        await b.renew_all()
        assert lost == [("b", 1)] and set(b.held) == {2}
    asyncio.run(asyncio.wait_for(scenario(), 30))


class _CountingBucket(_Bucket):
    """A _Bucket that counts the calls made of it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        if name in ("create", "get", "update", "delete"):
            object.__getattribute__(self, "calls").append(name)
        return super().__getattribute__(name)


def test_a_lease_is_taken_over_a_deletion_marker_and_from_a_previous_process() -> None:
    """A try is a create and, when the key exists, a read: another's key is left alone; one
    naming this holder (its previous process) or whose latest entry is the servers' expiry
    marker (no value: nats-py's create does not write over it) is taken with one
    compare-and-set; with the marker's revision from a watch, the compare-and-set alone."""
    from ringlog.cluster.lease import Lease

    async def scenario() -> None:
        bucket = _CountingBucket()
        leader, standby = Lease(bucket, "shard-0", "a", 60.0), Lease(bucket, "shard-0", "b",
                                                                     60.0)
        assert await leader.try_acquire()
        bucket.calls.clear()
        for _ in range(3):
            assert not await standby.try_acquire()
        assert bucket.calls == ["create", "get"] * 3
        again = Lease(bucket, "shard-0", "a", 60.0)  # the leader's process restarted
        assert await again.try_acquire() and bucket.entries["shard-0"][0] == b"a"
        bucket.expire("shard-0", marker=True)
        bucket.calls.clear()
        assert await standby.try_acquire() and bucket.entries["shard-0"][0] == b"b"
        assert bucket.calls == ["create", "get", "update"]
        bucket.expire("shard-0", marker=True)
        marker = bucket.entries["shard-0"][1]
        bucket.calls.clear()
        assert not await again.try_acquire(after=marker - 1)  # (a stale marker: lost)
        assert await again.try_acquire(after=marker) and bucket.calls == ["update", "update"]
    asyncio.run(asyncio.wait_for(scenario(), 30))
