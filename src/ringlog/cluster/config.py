"""What a cluster deployment is configured with: the NATS servers, the names of its streams
and buckets, and the limits of batches, leases and checkpoints.

Every name derives from ``ClusterConfig.name`` and the shard number, so several clusters (or
test runs) share one NATS deployment without meeting::

    stream  RL_<name>_IN_<shard>    subject rl.<name>.in.<shard>    the input log (commands)
    stream  RL_<name>_OUT_<shard>   subject rl.<name>.out.<shard>   outputs (reports), in
                                                                    input order
    stream  RL_<name>_MD_<shard>    subject rl.<name>.md.<shard>    market data outputs
                                    (market_data_types; R = market_data_replicas)
    bucket  RL_<name>_LEASE         key shard-<shard>               the leader's lease
                                    key session-<id>                a gateway session's node
    bucket  RL_<name>_CKPT          key <shard>.<stream seq>        state-hash checkpoints
                                    key <shard>.output_bound        bytes of an output part
    bucket  RL_<name>_STATUS        key <shard>.<replica>           what each replica is doing
    bucket  RL_<name>_STATUS        key <shard>.reading.<replica>   a snapshot object being read
    objects RL_<name>_SNAP          object shard-<shard>-<seq>      the newest shipped snapshots
"""

from __future__ import annotations

import re

import msgspec

from ..config import check_fields, config_error
from ..engine.records import Report

__all__ = ["ClusterConfig", "ShardNames"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class ClusterConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A cluster: its NATS servers, stream replication and the timing of leases and batches.

    ``servers`` are NATS URLs (``nats://host:port``). ``replicas`` is the JetStream replication
    of every stream and bucket (1 for a single server, 3 for a three-node cluster).
    ``lease_ttl`` is how long a leader that stops renewing keeps its lease (the failover time
    is about this much); it renews every ``lease_ttl / 4``. Batches of commands end at
    ``batch_max_bytes`` or ``batch_max_commands`` or ``batch_linger`` seconds after their
    first command. A checkpoint of the state hash is taken every ``checkpoint_every`` input
    stream messages, and the leader ships a snapshot every ``snapshot_every`` (0: never), from
    which a replica with an empty directory starts. Outputs of the ``market_data_types``
    (the engine's L1 and L2 records; empty: none) go to a stream of their own replicated
    ``market_data_replicas`` times (rebuildable from the input log: docs/cluster.md). An
    output batch is at most ``output_max_bytes`` or the smallest ``max_payload`` of the
    servers, whichever is less (with the headers), as recorded by the shard's first replica
    (``ringlog.cluster.payload``): every replica cuts the same parts.
    """

    servers: list[str]
    name: str = "ringlog"
    shards: int = 1
    replicas: int = 3
    lease_ttl: float = 2.0
    checkpoint_every: int = 1000
    snapshot_every: int = 10_000
    # large batches: NATS's work is much per message (docs/cluster.md, Measurements); a
    # batch still closes batch_linger after its first command, so below saturation they stay
    # small. (The outputs of a large one are cut under max_payload: outputs.py.)
    batch_max_bytes: int = 256 << 10
    batch_max_commands: int = 4096
    batch_linger: float = 0.002
    duplicate_window: float = 120.0
    publish_timeout: float = 5.0
    connect_timeout: float = 10.0
    market_data_types: list[int] = msgspec.field(
        default_factory=lambda: [int(Report.L1), int(Report.L2)])
    market_data_replicas: int = 1
    output_max_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.servers:
            raise config_error(self, "servers", "needs at least one nats:// URL")
        for url in self.servers:
            if not url.startswith(("nats://", "tls://", "ws://", "wss://")):
                raise config_error(self, "servers", f"{url!r} is not a NATS URL "
                                   f"(nats://host:port)")
        if not _NAME.match(self.name):
            raise config_error(self, "name", f"{self.name!r}: use 1-32 letters, digits, "
                               f"'-' or '_' (it is part of stream names)")
        if self.shards < 1:
            raise config_error(self, "shards", f"must be >= 1, got {self.shards}")
        if self.replicas not in (1, 3, 5):
            raise config_error(self, "replicas", f"JetStream replicas are 1, 3 or 5, got "
                               f"{self.replicas}")
        if not 0.1 <= self.lease_ttl <= 600:
            raise config_error(self, "lease_ttl", f"must be 0.1 to 600 seconds, got "
                               f"{self.lease_ttl}")
        if self.checkpoint_every < 1:
            raise config_error(self, "checkpoint_every", f"must be >= 1, got "
                               f"{self.checkpoint_every}")
        if not 64 <= self.batch_max_bytes <= 1 << 20:
            raise config_error(self, "batch_max_bytes", f"must be 64 B to 1 MiB (NATS's "
                               f"default max_payload), got {self.batch_max_bytes}")
        if self.snapshot_every < 0:
            raise config_error(self, "snapshot_every", f"must be >= 0 (0: no snapshots), got "
                               f"{self.snapshot_every}")
        if self.batch_max_commands < 1:
            raise config_error(self, "batch_max_commands", f"must be >= 1, got "
                               f"{self.batch_max_commands}")
        if not 0 <= self.batch_linger <= 1:
            raise config_error(self, "batch_linger", f"must be 0 to 1 second, got "
                               f"{self.batch_linger}")
        if self.duplicate_window <= 0:
            raise config_error(self, "duplicate_window", f"must be > 0 seconds, got "
                               f"{self.duplicate_window}")
        if self.publish_timeout <= 0:
            raise config_error(self, "publish_timeout", f"must be > 0 seconds, got "
                               f"{self.publish_timeout}")
        if len(self.market_data_types) > 8 or not all(
                0 <= t < 1 << 32 for t in self.market_data_types):
            raise config_error(self, "market_data_types", f"up to 8 output type ids (0 to "
                               f"2**32-1), got {self.market_data_types}")
        if self.market_data_replicas not in (1, 3, 5) or \
                self.market_data_replicas > self.replicas:
            raise config_error(self, "market_data_replicas", f"1, 3 or 5 and at most replicas "
                               f"({self.replicas}), got {self.market_data_replicas}")
        if not 4096 <= self.output_max_bytes <= 64 << 20:
            raise config_error(self, "output_max_bytes", f"must be 4 KiB to 64 MiB (NATS's "
                               f"largest max_payload), got {self.output_max_bytes}")
        if self.connect_timeout <= 0:
            raise config_error(self, "connect_timeout", f"must be > 0 seconds, got "
                               f"{self.connect_timeout}")

    def names(self, shard: int) -> ShardNames:
        """The stream, subject and bucket names of one shard."""
        if not 0 <= shard < self.shards:
            raise config_error(self, "shards", f"shard {shard} is outside 0..{self.shards - 1}")
        return ShardNames(self.name, shard)


class ShardNames:
    """Names of one shard's streams, subjects and keys (see the module docstring)."""

    def __init__(self, name: str, shard: int) -> None:
        self.shard = shard
        self.input_stream = f"RL_{name}_IN_{shard}"
        self.input_subject = f"rl.{name}.in.{shard}"
        self.output_stream = f"RL_{name}_OUT_{shard}"
        self.output_subject = f"rl.{name}.out.{shard}"
        self.market_data_stream = f"RL_{name}_MD_{shard}"
        self.market_data_subject = f"rl.{name}.md.{shard}"
        self.lease_bucket = f"RL_{name}_LEASE"
        self.lease_key = f"shard-{shard}"
        self.checkpoint_bucket = f"RL_{name}_CKPT"
        self.status_bucket = f"RL_{name}_STATUS"
        self.snapshot_bucket = f"RL_{name}_SNAP"
        self.snapshot_object = f"shard-{shard}"  # the prefix of its objects' names
        self.output_bound_key = f"{shard}.output_bound"  # in the checkpoint bucket

    def checkpoint_key(self, stream_seq: int) -> str:
        """The key of the shard's reference checkpoint at an input stream sequence."""
        return f"{self.shard}.{stream_seq}"

    def status_key(self, replica: str) -> str:
        """The key of one replica's status."""
        return f"{self.shard}.{replica}"

    def snapshot_pin_key(self, replica: str) -> str:
        """The key naming the snapshot object ``replica`` reads (``*``: every reader's)."""
        return f"{self.shard}.reading.{replica}"
