"""kill -9 of the NATS node that leads the input stream, under load: JetStream elects another
stream leader, no command is lost or doubled (the publisher retries with the same message
ids), the service continues, and the node comes back and catches up."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .helpers import Load, Shard, check_outputs


def test_killing_the_stream_leaders_nats_node_loses_no_command_and_service_continues(
        cluster_config: Any, nats_cluster: Any, tmp_path: Any,
        cluster_report: list[str]) -> None:
    async def scenario() -> None:
        cfg = cluster_config()
        async with Shard(cfg, tmp_path) as shard:
            shard.start("a")
            shard.start("b")
            await shard.leader(timeout=60)
            load = Load(shard, rate=1500).start()
            mark = await shard.watch.last_output_seq()
            async def moved(n: int) -> bool:
                return await shard.watch.last_output_seq() >= n
            await shard.watch.wait(lambda: moved(mark + 5), "outputs", 30)
            info = await shard.js.stream_info(shard.watch.names.input_stream)
            node = int(info.cluster.leader.lstrip("n"))
            killed_at = await shard.watch.last_output_seq()
            acked = load.pub.last_seq
            t0 = time.monotonic()
            nats_cluster.kill_node(node)
            try:
                async def accepting() -> bool:
                    return load.pub.last_seq > acked + 1
                await shard.watch.wait(accepting, "the input stream accepting again", 60)
                reelected = time.monotonic() - t0
                await shard.watch.wait(lambda: moved(killed_at + 20),
                                       "outputs after the node died", 60)
                resumed = time.monotonic() - t0
            finally:
                nats_cluster.start_node(node)
            async def current() -> bool:
                si = await shard.js.stream_info(shard.watch.names.input_stream)
                peers = si.cluster.replicas or []
                return len(peers) == 2 and all(p.current for p in peers)
            await shard.watch.wait(current, f"node n{node} caught up", 60)
            last = await load.stop()
            batches = await shard.all_outputs(last, timeout=60)
            want = check_outputs(batches, load.commands[:load.sent], last)
            for rid in ("a", "b"):
                st = await shard.caught_up(rid, last, timeout=60)
                assert st.state_hash == want
            cluster_report.append(
                f"NATS node n{node} (input stream leader) killed: input stream acknowledging "
                f"again after {reelected * 1e3:.0f} ms (JetStream re-election), 20 more "
                f"output batches after {resumed * 1e3:.0f} ms; the publisher retried "
                f"{load.pub.retries} times; no command lost or doubled")
    asyncio.run(asyncio.wait_for(scenario(), 240))


def test_killing_the_market_data_streams_node_pauses_only_market_data(
        cluster_config: Any, nats_cluster: Any, tmp_path: Any,
        cluster_report: list[str]) -> None:
    """The market data stream has one replica (the default): kill -9 of its node under load
    stops market data until the node is back, reports go on meanwhile, and after it the
    market data stream holds every update exactly once (docs/cluster.md)."""
    async def scenario() -> None:
        cfg = cluster_config()
        assert cfg.market_data_replicas == 1
        async with Shard(cfg, tmp_path) as shard:
            shard.start("a")
            shard.start("b")
            await shard.leader(timeout=60)
            load = Load(shard, rate=1500).start()
            names = shard.watch.names

            async def moved(n: int) -> bool:
                return await shard.watch.last_output_seq() >= n
            await shard.watch.wait(lambda: moved(5), "outputs", 30)
            md_info = await shard.js.stream_info(names.market_data_stream)
            node = int(md_info.cluster.leader.lstrip("n"))
            killed_at = await shard.watch.last_output_seq()
            t0 = time.monotonic()
            nats_cluster.kill_node(node)
            try:
                await shard.watch.wait(lambda: moved(killed_at + 20),
                                       "reports while the market data node is down", 60)
                reports_after = time.monotonic() - t0
            finally:
                nats_cluster.start_node(node)
            last = await load.stop()
            batches = await shard.all_outputs(last, timeout=60)
            want = check_outputs(batches, load.commands[:load.sent], last)
            t1 = time.monotonic()
            md = await shard.market_data(last, timeout=90)
            check_outputs(md, load.commands[:load.sent], last, market_data=True)
            for rid in ("a", "b"):
                st = await shard.caught_up(rid, last, timeout=60)
                assert st.state_hash == want
            cluster_report.append(
                f"NATS node n{node} (the R=1 market data stream's) killed: 20 more report "
                f"batches after {reports_after * 1e3:.0f} ms; market data complete "
                f"{time.monotonic() - t1:.1f} s after the reports, with the node back; "
                f"nothing lost or doubled")
    asyncio.run(asyncio.wait_for(scenario(), 240))
