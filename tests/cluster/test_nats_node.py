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
            t0 = time.monotonic()
            nats_cluster.kill_node(node)
            try:
                await shard.watch.wait(lambda: moved(killed_at + 20),
                                       "outputs after the node died", 60)
                resumed = time.monotonic() - t0
                assert load.pub.retries >= 0
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
                f"NATS node n{node} (input stream leader) killed: 20 more output batches "
                f"{resumed * 1e3:.0f} ms later; the publisher retried {load.pub.retries} "
                f"times; no command lost or doubled")
    asyncio.run(asyncio.wait_for(scenario(), 240))
