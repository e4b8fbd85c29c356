"""Replicas joining and leaving: from an empty directory (the newest snapshot, then the stream
after it, whose beginning is gone), after kill -9
(the local journal, then the stream), and one whose state diverges (halted at the first
checkpoint that differs, saying where); a leader's term that ends stops renewing its lease
even when a renewal swallows its cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from ringlog.cluster.snapshot import fetch_snapshot

from .helpers import Load, Shard, check_outputs


def test_replica_from_an_empty_directory_starts_from_a_snapshot_and_takes_over(
        cluster_config: Any, tmp_path: Any) -> None:
    async def scenario() -> None:
        # a snapshot every 50 messages: faster than a loaded machine reads one back (which
        # starved the joining replica for a whole minute before it pinned what it reads)
        cfg = cluster_config(snapshot_every=50)
        async with Shard(cfg, tmp_path) as shard:
            a = shard.start("a")
            assert await shard.leader(timeout=60) == "a"
            load = Load(shard, rate=3000).start()
            pins = await shard.js.key_value(shard.watch.names.status_bucket)

            async def shipped() -> Any:
                return await fetch_snapshot(shard.js, shard.watch.names, "test", pins)
            snap = await shard.watch.wait(shipped, "a snapshot shipped", 60)
            # the input stream no longer holds its beginning: only a snapshot can help
            await shard.js.purge_stream(shard.watch.names.input_stream,
                                        seq=snap.stream_seq + 1)
            joined = shard.start("z")  # empty directory, joins while input flows
            await shard.caught_up("z", snap.stream_seq + 1, timeout=60)
            seeded = joined.events("seeded")
            assert seeded and seeded[0]["stream_seq"] >= snap.stream_seq
            assert joined.events("started")[0]["next_seq"] == seeded[0]["stream_seq"] + 1
            # z has no batches before its seed: it may lead only once the output stream holds
            # them (a loaded leader can lag that far behind its input)
            await shard.published("a", seeded[0]["stream_seq"])
            a.kill()
            assert await shard.leader(not_="a") == "z"
            await shard.published("z", 1)
            last = await load.stop()
            batches = await shard.all_outputs(last, timeout=60)
            want = check_outputs(batches, load.commands[:load.sent], last)
            st = await shard.caught_up("z", last, timeout=60)
            assert st.state_hash == want
            assert {h["Ringlog-Replica"] for _, _, h in batches} == {"a", "z"}
    asyncio.run(asyncio.wait_for(scenario(), 180))


async def _standby_b_under_load(shard: Shard) -> tuple[Any, Load]:
    """Replica a leading, b its standby, input flowing at 3,000 commands/s, b past input 20."""
    shard.start("a")
    assert await shard.leader(timeout=60) == "a"
    b = shard.start("b")
    load = Load(shard, rate=3000).start()
    await shard.caught_up("b", 20, timeout=60)
    return b, load


def _last_start(replica: Any) -> dict[str, Any]:
    """The replica process's last "started" event (where it resumed: ``next_seq``)."""
    return json.loads([ln for ln in replica.output().splitlines() if '"started"' in ln][-1])


def test_replica_killed_mid_stream_recovers_from_its_journal_then_the_stream(
        cluster_config: Any, tmp_path: Any) -> None:
    async def scenario() -> None:
        cfg = cluster_config(checkpoint_every=5)
        async with Shard(cfg, tmp_path) as shard:
            b, load = await _standby_b_under_load(shard)
            b.kill()
            gone = await shard.watch.last_input_seq()
            async def moved_on() -> bool:  # the stream moves on without b
                return await shard.watch.last_input_seq() >= gone + 10
            await shard.watch.wait(moved_on, "input after b died", 60)
            b = shard.start("b")
            last = await load.stop()
            st = await shard.caught_up("b", last, timeout=60)
            started = _last_start(b)
            assert started["next_seq"] > 1  # resumed from its journal, not from the start
            batches = await shard.all_outputs(last, timeout=60)
            want = check_outputs(batches, load.commands[:load.sent], last)
            assert st.state_hash == want
    asyncio.run(asyncio.wait_for(scenario(), 180))


def test_replica_restarted_with_everything_in_its_journal_hashes_its_state(
        cluster_config: Any, tmp_path: Any) -> None:
    """A replica killed after it applied the whole stream restarts from its journal alone (no
    new input reaches it): its status still carries the state hash of what it recovered."""
    async def scenario() -> None:
        cfg = cluster_config()
        async with Shard(cfg, tmp_path) as shard:
            b, load = await _standby_b_under_load(shard)
            last = await load.stop()
            before = await shard.caught_up("b", last, timeout=60)
            b.kill()
            b = shard.start("b")

            async def hashed() -> Any:  # by the new process (the old one's status lingers)
                st = await shard.watch.status("b")
                return st if st and st.pid == b.pid and st.hash_seq >= last else None
            st = await shard.watch.wait(hashed, "the restarted b's state hash", 60)
            started = _last_start(b)
            assert started["next_seq"] == last + 1  # all of it from its journal
            assert st.state_hash == before.state_hash
    asyncio.run(asyncio.wait_for(scenario(), 180))


def test_replica_whose_state_diverges_halts_at_the_first_checkpoint_naming_it(
        cluster_config: Any, tmp_path: Any) -> None:
    async def scenario() -> None:
        cfg = cluster_config(checkpoint_every=5)
        async with Shard(cfg, tmp_path) as shard:
            shard.start("a")
            assert await shard.leader(timeout=60) == "a"
            load = Load(shard, rate=3000).start()
            await shard.caught_up("a", 10, timeout=60)
            bad = shard.start("bad", handler="tests.cluster.handlers:skewed_engine")
            assert bad.proc is not None
            code = await asyncio.get_running_loop().run_in_executor(None, bad.proc.wait, 60)
            assert code == 3
            events = [json.loads(ln) for ln in bad.output().splitlines()
                      if ln.startswith("{")]
            div = [e for e in events if e["event"] == "diverged"]
            assert div and div[0]["stream_seq"] == 5 and div[0]["by"] == "a"
            assert div[0]["mine"] != div[0]["recorded"]
            st = await shard.watch.status("bad")
            assert st is not None and st.role == "diverged"
            assert "input stream sequence 5" in st.error
            last = await load.stop()
            batches = await shard.all_outputs(last, timeout=60)
            check_outputs(batches, load.commands[:load.sent], last)
    asyncio.run(asyncio.wait_for(scenario(), 180))


def test_a_term_ends_even_when_a_renewal_swallows_its_cancellation() -> None:
    """Python 3.11's asyncio.wait_for (inside nats-py's request) can swallow a cancellation
    when the reply lands at the same time; the renewing task then went on renewing the lease
    of an ended term for ever, and the leader published nothing while holding it."""
    from ringlog.cluster.config import ClusterConfig
    from ringlog.cluster.replica import Replica, ReplicaConfig, end_term

    class SwallowingLease:
        """Trusted for ever; each renewal waits, and returns normally when cancelled."""

        def __init__(self) -> None:
            self.renewals = 0
            self.inside = asyncio.Event()
            self.trusted = True

        def held(self) -> bool:
            return self.trusted

        async def renew(self) -> bool:
            self.renewals += 1
            self.inside.set()
            with contextlib.suppress(asyncio.CancelledError):  # the reply "landed": the
                await asyncio.Event().wait()                     # cancellation is lost
            return True

    async def scenario() -> None:
        cfg = ClusterConfig(servers=["nats://127.0.0.1:4222"], lease_ttl=0.1)  # never reached
        r = Replica(ReplicaConfig(cluster=cfg, replica_id="a", directory="unused"))
        lease, term = SwallowingLease(), asyncio.Event()
        renew = asyncio.ensure_future(r._renew(lease, term))  # type: ignore[arg-type]
        await lease.inside.wait()
        ended = asyncio.ensure_future(end_term(renew, term))
        done, _ = await asyncio.wait([ended], timeout=10)  # (immediate; 10 s: a safety net)
        lease.trusted = False  # a renewing task that outlived its term stops: the test ends
        assert ended in done, "the term's renewals went on after it ended"
        assert renew.done() and lease.renewals == 1
    asyncio.run(asyncio.wait_for(scenario(), 30))
