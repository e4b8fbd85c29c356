"""The cluster's command-line options, shared by ``ringlog serve --cluster`` and
``python -m ringlog.cluster``; imports nothing heavy (``ringlog --help`` stays
instant).

::

    ringlog serve DIR --config gw.toml --cluster nats://h1:4222,nats://h2:4222 --replica-id a
        └─ cmd_serve_cluster: the engine of gw.toml's [engine] section as a replica of its
           shard (leader or standby, decided by the lease), and gw.toml's TCP gateway in
           front of it, its commands into the shard's input stream (ringlog.cluster.front)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_cluster_options", "cluster_config_from_args", "cmd_serve_cluster"]


def add_cluster_options(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    """Adds the options of a replica of a cluster (docs/cluster.md) to ``p``."""
    g = p.add_argument_group("cluster (docs/cluster.md)")
    g.add_argument("--cluster", dest="cluster", action="append", required=required,
                   metavar="URL", help="run as a replica of a shard on these NATS servers "
                   "(nats://host:port; repeat or comma-separate)")
    g.add_argument("--replica-id", help="this replica's name, unique in its shard")
    g.add_argument("--cluster-name", default="ringlog", help="prefix of the streams")
    g.add_argument("--shard", type=int, default=0, help="the shard this replica runs")
    g.add_argument("--shards", type=int, default=1, help="shards of the cluster")
    g.add_argument("--replicas", type=int, default=3,
                   help="JetStream replicas of each stream (1 for a single NATS server)")
    g.add_argument("--lease-ttl", type=float, default=2.0,
                   help="seconds a silent leader keeps the lease (about the failover time)")
    g.add_argument("--checkpoint-every", type=int, default=1000,
                   help="input stream messages between state-hash checkpoints")
    g.add_argument("--cluster-snapshot-every", type=int, default=10_000,
                   help="input messages between the snapshots the leader ships (a new "
                   "replica starts from the newest); 0: none")
    g.add_argument("--market-data-types", default="210,211", metavar="IDS",
                   help="output type ids published to the market data stream of their own, "
                   "comma-separated (default: the engine's L1 and L2; empty: none)")
    g.add_argument("--market-data-replicas", type=int, default=1,
                   help="JetStream replicas of the market data stream (default 1: it can "
                   "be rebuilt from the input log; see docs/cluster.md)")
    g.add_argument("--standby-only", action="store_true", help="never take the lease")
    g.add_argument("--connect-timeout", type=float, default=10.0,
                   help="seconds to reach a NATS server at start before giving up (exit 2)")


def cluster_config_from_args(args: argparse.Namespace, directory: str, handler: str,
                             processor: Any) -> Any:
    """The ReplicaConfig the options describe (ConfigError names a wrong value)."""
    from ..errors import ConfigError
    from .config import ClusterConfig
    from .replica import ReplicaConfig

    if not args.replica_id:
        raise ConfigError("--replica-id", "a replica needs a name unique in its shard")
    servers = [u.strip() for s in args.cluster for u in s.split(",") if u.strip()]
    try:
        md_types = [int(t) for t in args.market_data_types.split(",") if t.strip()]
    except ValueError:
        raise ConfigError("--market-data-types", f"{args.market_data_types!r}: comma-"
                          f"separated integers") from None
    cluster = ClusterConfig(servers=servers, name=args.cluster_name, shards=args.shards,
                            replicas=args.replicas, lease_ttl=args.lease_ttl,
                            checkpoint_every=args.checkpoint_every,
                            snapshot_every=args.cluster_snapshot_every,
                            connect_timeout=args.connect_timeout,
                            market_data_types=md_types,
                            market_data_replicas=args.market_data_replicas)
    return ReplicaConfig(cluster=cluster, replica_id=args.replica_id, directory=directory,
                         shard=args.shard, handler=handler, processor=processor,
                         standby_only=args.standby_only)


def cmd_serve_cluster(args: argparse.Namespace) -> int:
    """``ringlog serve --cluster``: the engine of the gateway config as a replica of its
    shard, with the gateway in front, until SIGINT/SIGTERM. Exit 2 for a bad option, 3 when
    the state diverged."""
    import pkgutil

    import msgspec

    from ..errors import RingLogError
    from ..gateway.session import GatewayConfigError, load_config
    from ..processor import ProcessorConfig
    from .front import GatewayFront
    from .replica import run_replica

    try:
        gw = load_config(args.config)
    except GatewayConfigError as e:
        print(e, file=sys.stderr)
        return 2
    over = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if over:
        gw = msgspec.structs.replace(gw, **over)
    try:
        factory = pkgutil.resolve_name(args.engine)
    except (ImportError, AttributeError, ValueError) as e:
        print(f"cannot load the engine {args.engine!r}: {e}", file=sys.stderr)
        return 2
    if gw.engine is not None:
        engine_cfg = gw.engine
        make = lambda: factory(engine_cfg)  # noqa: E731
        slot = max(engine_cfg.min_slot_size, 128)
    else:
        make, slot = factory, 128
    try:
        cfg = cluster_config_from_args(
            args, args.directory, args.engine,
            ProcessorConfig(durability=args.durability, slot_size=slot,
                            snapshot_every=args.snapshot_every, loop_cpus=args.loop_cpus,
                            background_cpus=args.background_cpus))
    except RingLogError as e:
        print(f"ringlog serve: {e}", file=sys.stderr)
        return 2
    return run_replica(cfg, make, front=GatewayFront(gw))
