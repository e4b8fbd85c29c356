"""Cluster configuration: a wrong value fails at construction naming its field."""

from __future__ import annotations

import pytest

from ringlog.cluster import ClusterConfig
from ringlog.cluster.replica import ReplicaConfig
from ringlog.errors import ConfigError

URL = ["nats://127.0.0.1:4222"]


@pytest.mark.parametrize(("kw", "field"), [
    ({"servers": []}, "ClusterConfig.servers"),
    ({"servers": ["127.0.0.1:4222"]}, "ClusterConfig.servers"),
    ({"name": "a.b"}, "ClusterConfig.name"),
    ({"replicas": 2}, "ClusterConfig.replicas"),
    ({"shards": 0}, "ClusterConfig.shards"),
    ({"lease_ttl": 0.01}, "ClusterConfig.lease_ttl"),
    ({"batch_max_bytes": 10 << 20}, "ClusterConfig.batch_max_bytes"),
    ({"checkpoint_every": "often"}, "ClusterConfig.checkpoint_every"),
    ({"replicas": 1, "market_data_replicas": 3}, "ClusterConfig.market_data_replicas"),
    ({"market_data_types": list(range(9))}, "ClusterConfig.market_data_types"),
    ({"output_max_bytes": 1024}, "ClusterConfig.output_max_bytes"),
])
def test_cluster_config_with_a_bad_value_names_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        ClusterConfig(**{"servers": URL, **kw})
    assert e.value.field == field


def test_names_are_per_cluster_and_shard() -> None:
    n = ClusterConfig(servers=URL, name="x", shards=2).names(1)
    assert (n.input_stream, n.output_subject, n.lease_key) == ("RL_x_IN_1", "rl.x.out.1",
                                                               "shard-1")
    assert (n.market_data_stream, n.market_data_subject) == ("RL_x_MD_1", "rl.x.md.1")
    with pytest.raises(ConfigError, match=r"shard 2 is outside 0\.\.1"):
        ClusterConfig(servers=URL, shards=2).names(2)


def test_replica_config_rejects_a_shard_the_cluster_lacks_and_bad_ids() -> None:
    c = ClusterConfig(servers=URL)
    with pytest.raises(ConfigError, match="shard 1"):
        ReplicaConfig(cluster=c, replica_id="a", directory="d", shard=1)
    with pytest.raises(ConfigError) as e:
        ReplicaConfig(cluster=c, replica_id="a/b", directory="d")
    assert e.value.field == "ReplicaConfig.replica_id"
