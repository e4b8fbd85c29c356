"""A three-node NATS cluster (JetStream, file storage in a temp directory, loopback ports)
shared by the cluster tests, and the failover times they report at the end of the run.

Each test names its own cluster (``ClusterConfig.name``) so its streams and buckets are its
own; a test that kills a NATS node brings it back before it ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

nats = pytest.importorskip("nats", reason="the cluster extra (nats-py) is not installed")

from ringlog.cluster import ClusterConfig  # noqa: E402
from ringlog.cluster.natsserver import NatsCluster  # noqa: E402

from .helpers import running_nats  # noqa: E402

REPORT: list[str] = []


@pytest.fixture(scope="session")
def nats_cluster() -> Iterator[NatsCluster]:
    """Three nats-server processes with JetStream, clustered; stopped after the session."""
    with running_nats(3, "ringlog-nats-") as cluster:
        yield cluster


@pytest.fixture
def cluster_config(nats_cluster: NatsCluster) -> Any:
    """A factory of ClusterConfigs with a name of their own on the shared NATS cluster."""
    def make(**kw: Any) -> ClusterConfig:
        kw.setdefault("name", "t" + uuid.uuid4().hex[:10])
        kw.setdefault("lease_ttl", 0.5)
        kw.setdefault("checkpoint_every", 20)
        kw.setdefault("batch_max_commands", 50)
        kw.setdefault("batch_linger", 0.005)
        return ClusterConfig(servers=nats_cluster.urls, **kw)
    return make


@pytest.fixture
def cluster_report() -> list[str]:
    """Lines a test wants printed in the run's summary (failover times)."""
    return REPORT


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.section("cluster")
        for line in REPORT:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """The hundred-failover run belongs to ``make stress`` (``-m stress``) alone: deselected
    from a run that did not ask for stress tests (``make test`` runs the 20-trial form)."""
    if "stress" in (config.getoption("-m") or ""):
        return
    here = str(__file__).rsplit("/", 1)[0]
    drop = [i for i in items if i.get_closest_marker("stress") and str(i.fspath).startswith(here)]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [i for i in items if i not in drop]
