"""Snapshot transfer: the leader ships its state at a stream message boundary to a JetStream
object store; a replica that starts from an empty directory begins from the newest one and
reads the stream after it, so the input stream need not keep its beginning.

::

    leader feeder, every snapshot_every input messages (loop idle after message s):
        Processor.request_snapshot ─► local snapshot at journal seq J (loop + engine state)
        ShardSnapshot(s, J, published outputs P, bytes) ─► object RL_<name>_SNAP / shard-<k>
                                                           (put replaces the previous one)
    empty directory, at start:
        get shard-<k> ─► DIR/snapshots/<J>.snap   input journal from J+1   output journal from P
                         DIR/cluster-seed.json {"stream_seq": s}
        Processor.recover() = that snapshot; the replica reads the stream from s+1

The input journal of the seeded replica starts at J+1 and its output journal at P, so its
journal sequences, output indices and therefore output batches are those of the replica that
took the snapshot. A seeded replica has no batches before s+1: it does not take the lease
while the output stream is behind s (another replica must publish up to there first).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from ..errors import ClusterError

__all__ = ["SEED_FILE", "ShardSnapshot", "ensure_snapshot_store", "fetch_snapshot", "is_empty",
           "read_seed", "seed_directory", "ship_snapshot"]

SEED_FILE = "cluster-seed.json"


class ShardSnapshot(msgspec.Struct, array_like=True, frozen=True):
    """The state of a shard after input stream message ``stream_seq``: the processor's
    snapshot bytes (``data``, as its SnapshotStore holds them) tagged with the journal
    sequence ``journal_seq`` of the replica that took it, and its count of outputs."""

    stream_seq: int
    journal_seq: int
    published_outputs: int
    data: bytes


async def ensure_snapshot_store(js: Any, bucket: str, replicas: int) -> Any:
    """The object store ``bucket``, created if missing."""
    from nats.js.api import ObjectStoreConfig, StorageType

    try:
        return await js.object_store(bucket)
    except Exception:  # (nats-py raises NotFoundError or a bucket error)
        pass
    try:
        return await js.create_object_store(bucket, ObjectStoreConfig(
            bucket=bucket, replicas=replicas, storage=StorageType.FILE))
    except Exception:  # created by another replica meanwhile
        return await js.object_store(bucket)


async def ship_snapshot(js: Any, bucket: str, name: str, snap: ShardSnapshot) -> None:
    """Stores ``snap`` as object ``name`` (replacing the previous one)."""
    store = await js.object_store(bucket)
    await store.put(name, msgspec.msgpack.encode(snap))


async def fetch_snapshot(js: Any, bucket: str, name: str, timeout: float = 60.0
                         ) -> ShardSnapshot | None:
    """The newest shipped snapshot of a shard, None if there is none. Retries while JetStream
    does not answer (a bucket just created has no stream leader yet; a node is down) for up
    to ``timeout`` seconds, then raises RingLogError: starting from the stream's beginning
    instead could only meet a gap."""
    from nats.js.errors import NotFoundError, ObjectNotFoundError

    from .stream import until_answered

    async def get() -> Any:
        try:
            return await (await js.object_store(bucket)).get(name)
        except (NotFoundError, ObjectNotFoundError):
            return None
    res = await until_answered(get, f"the snapshot store {bucket}", timeout)
    if res is None:
        return None
    if res.data is None:
        return None
    return msgspec.msgpack.decode(res.data, type=ShardSnapshot)


def is_empty(directory: str | Path) -> bool:
    """True when ``directory`` holds no processor journal yet (a replica starting afresh)."""
    d = Path(directory)
    return not any((d / "input").glob("*")) if (d / "input").is_dir() else True


def seed_directory(directory: str | Path, snap: ShardSnapshot, segment_size: int) -> None:
    """Lays out an empty replica directory so that its processor recovers ``snap``: the
    snapshot file, journals that start after it, and the seed file naming its stream
    sequence (see the module docstring)."""
    from ..journal import Journal
    from ..snapshot import SnapshotStore

    d = Path(directory)
    if not is_empty(d):
        raise ClusterError(f"{d}: not empty; a snapshot seeds only a new replica directory")
    d.mkdir(parents=True, exist_ok=True)
    SnapshotStore(d / "snapshots").write(snap.journal_seq, snap.data)
    (d / SEED_FILE).write_text(json.dumps({"stream_seq": snap.stream_seq}))
    # the input journal last: until it exists the directory counts as empty (a crash here
    # seeds it again)
    for sub, first in (("output", snap.published_outputs), ("input", snap.journal_seq + 1)):
        Journal(d / sub, segment_size=segment_size, durability="none",
                first_sequence=first).close()


def read_seed(directory: str | Path) -> int:
    """The stream sequence a seeded directory started after (0: not seeded)."""
    p = Path(directory) / SEED_FILE
    if not p.exists():
        return 0
    return int(json.loads(p.read_text())["stream_seq"])
