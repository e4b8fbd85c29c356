"""Snapshot transfer: the leader ships its state at a stream message boundary to a JetStream
object store; a replica that starts from an empty directory begins from the newest one and
reads the stream after it, so the input stream need not keep its beginning.

::

    leader feeder, every snapshot_every input messages (loop idle after message s):
        Processor.request_snapshot ─► local snapshot at journal seq J (loop + engine state)
        ShardSnapshot(s, J, published outputs P, bytes) ─► object RL_<name>_SNAP /
            shard-<k>-<s>, then the shard's objects older than the newest two are deleted,
            except those pinned by a reader
    empty directory, at start:
        pin the newest (status bucket: <k>.reading.<replica> = its name), read it, unpin
        shard-<k>-<s> ─► DIR/snapshots/<J>.snap   input journal from J+1   output journal from P
                         DIR/cluster-seed.json {"stream_seq": s}
        Processor.recover() = that snapshot; the replica reads the stream from s+1

The input journal of the seeded replica starts at J+1 and its output journal at P, so its
journal sequences, output indices and therefore output batches are those of the replica that
took the snapshot. A seeded replica has no batches before s+1: it does not take the lease
while the output stream is behind s (another replica must publish up to there first).

A joining replica's read cannot starve however fast snapshots are shipped: the object it
reads is pinned (a replaced object used to be deleted under a reader that was slower than the
next upload, again and again). A reader that dies leaves its pin until the status bucket's
ttl (5 minutes) expires it; the object stays that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path
from typing import Any

import msgspec

from ..errors import ClusterError
from .config import ShardNames

__all__ = ["KEEP_SNAPSHOTS", "SEED_FILE", "ShardSnapshot", "ensure_snapshot_store",
           "fetch_snapshot", "is_empty", "pick_snapshot", "read_seed", "read_snapshot",
           "seed_directory", "ship_snapshot", "snapshot_name"]

SEED_FILE = "cluster-seed.json"
KEEP_SNAPSHOTS = 2  # the shard's newest snapshot objects kept (and any a reader has pinned)
CHUNK = 128 << 10  # nats-py's object chunk size: the largest a snapshot is shipped in


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


def snapshot_name(names: ShardNames, stream_seq: int) -> str:
    """The object of the shard's snapshot after input message ``stream_seq`` (names sort by
    sequence)."""
    return f"{names.snapshot_object}-{stream_seq:020d}"


def _seq_of(names: ShardNames, name: str) -> int | None:
    head = f"{names.snapshot_object}-"
    tail = name[len(head):]
    return int(tail) if name.startswith(head) and tail.isdigit() else None


async def _shipped(store: Any, names: ShardNames) -> list[str]:
    """The shard's snapshot objects in the store, oldest first."""
    from nats.js.errors import NotFoundError

    try:
        infos = await store.list(ignore_deletes=True)
    except NotFoundError:  # (an empty store)
        return []
    found = [(seq, i.name) for i in infos if not i.deleted
             and (seq := _seq_of(names, i.name)) is not None]
    return [n for _, n in sorted(found)]


async def _pinned(kv: Any, names: ShardNames) -> set[str]:
    """The objects joining replicas are reading (their pins in the status bucket): the
    bucket stream's subjects that hold a pin, then each pin's value. (A KV watch's "initial
    values done" marker can come before a value already on its way to the client, which
    once let a shipper delete a pinned snapshot.)"""
    from nats.js.errors import KeyNotFoundError  # (nats: the cluster extra, not the core)

    pre = kv._pre  # the bucket's subject prefix ("$KV.<bucket>.")
    info = await kv._js.stream_info(kv._stream,
                                    subjects_filter=pre + names.snapshot_pin_key("*"))
    pins = set()
    for subject in (info.state.subjects or {}):
        try:
            entry = await kv.get(subject[len(pre):])
        except KeyNotFoundError:  # unpinned (deleted) since the listing
            continue
        if entry.value:
            pins.add(entry.value.decode())
    return pins


async def ship_snapshot(js: Any, names: ShardNames, snap: ShardSnapshot,
                        pins: Any, chunk: int = CHUNK) -> None:
    """Stores ``snap`` as a new object (in chunks of at most ``chunk`` bytes: the shard's
    output bound, when servers take less than nats-py's 128 KiB), then deletes the shard's
    objects older than the newest KEEP_SNAPSHOTS, except those a joining replica reads
    (pinned in the key-value bucket ``pins``)."""
    from nats.js.api import ObjectMeta, ObjectMetaOptions

    store = await js.object_store(names.snapshot_bucket)
    name = snapshot_name(names, snap.stream_seq)
    await store.put(name, msgspec.msgpack.encode(snap), meta=ObjectMeta(
        name=name, options=ObjectMetaOptions(max_chunk_size=min(chunk, CHUNK))))
    shipped = await _shipped(store, names)
    if len(shipped) <= KEEP_SNAPSHOTS:
        return
    pinned = await asyncio.wait_for(_pinned(pins, names), 30)
    for name in shipped[:-KEEP_SNAPSHOTS]:
        if name not in pinned:
            await store.delete(name)


async def pick_snapshot(js: Any, names: ShardNames, reader: str, pins: Any) -> str | None:
    """Pins the newest snapshot object for ``reader`` and returns its name (None: there is
    none). The pin is written before the object is checked again: from then on no shipper
    deletes it (one that listed the pins earlier may have: then the next newest is taken)."""
    from nats.js.errors import NotFoundError, ObjectNotFoundError

    store = await js.object_store(names.snapshot_bucket)
    while True:
        shipped = await _shipped(store, names)
        if not shipped:
            return None
        name = shipped[-1]
        await pins.put(names.snapshot_pin_key(reader), name.encode())
        try:
            await store.get_info(name)
            return name
        except (NotFoundError, ObjectNotFoundError):
            continue  # deleted between the listing and the pin


async def read_snapshot(js: Any, names: ShardNames, name: str, reader: str,
                        pins: Any) -> ShardSnapshot:
    """The snapshot object ``name`` (pinned by ``pick_snapshot``); unpins it."""
    store = await js.object_store(names.snapshot_bucket)
    buf = io.BytesIO()  # (nats-py's default joins the chunks by bytes +=: quadratic)
    try:
        await store.get(name, writeinto=buf)
    finally:
        with contextlib.suppress(Exception):
            await pins.delete(names.snapshot_pin_key(reader))
    return msgspec.msgpack.decode(buf.getvalue(), type=ShardSnapshot)


async def fetch_snapshot(js: Any, names: ShardNames, reader: str, pins: Any,
                         timeout: float = 60.0) -> ShardSnapshot | None:
    """The newest shipped snapshot of a shard, None if there is none (pinned while it is read:
    however fast snapshots are shipped, the one being read stays). Retries while JetStream
    does not answer (a bucket just created has no stream leader yet; a node is down) for up
    to ``timeout`` seconds, then raises ClusterTimeoutError: starting from the stream's
    beginning instead could only meet a gap."""
    from .stream import until_answered

    async def get() -> ShardSnapshot | None:
        name = await pick_snapshot(js, names, reader, pins)
        if name is None:
            return None
        return await read_snapshot(js, names, name, reader, pins)
    return await until_answered(get, f"the snapshot store {names.snapshot_bucket}",  # type: ignore[no-any-return]
                                timeout)


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
