"""State-hash checkpoints: at every ``checkpoint_every``-th input stream sequence each
replica hashes its state and compares it with the shard's reference for that sequence.

::

    replica ── stream seq s (s % checkpoint_every == 0), loop idle at s ── hash(state) ──►
        bucket RL_<name>_CKPT  key <shard>.<s>
            absent  → create it {hash, replica}: the reference (first to get there)
            present → compare: equal, go on; different → this replica halts: Divergence

The reference is whoever reached ``s`` first; a replica whose hash differs stops consuming
and says where (the stream sequence, both hashes, who wrote the reference). With one
deterministic handler and one input stream a difference means a bug, a different handler
or configuration, or a damaged journal.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from ..errors import RingLogError

__all__ = ["Checkpoint", "Divergence", "record_checkpoint", "state_hash"]


class Checkpoint(msgspec.Struct, frozen=True):
    """The reference state hash of a shard at one input stream sequence."""

    stream_seq: int
    state_hash: str
    replica: str


class Divergence(RingLogError, RuntimeError):
    """This replica's state differs from the shard's reference checkpoint."""

    def __init__(self, stream_seq: int, mine: str, recorded: Checkpoint) -> None:
        super().__init__(f"state diverged at input stream sequence {stream_seq}: this "
                         f"replica's hash is {mine}, the checkpoint written by replica "
                         f"{recorded.replica!r} says {recorded.state_hash}")
        self.stream_seq = stream_seq
        self.mine = mine
        self.recorded = recorded


def state_hash(handler: Any) -> str:
    """The handler's state hash: its own ``state_hash()`` if it has one (the matching engine
    does), otherwise the SHA-256 of its snapshot bytes. Call it only while the loop is idle."""
    fn = getattr(handler, "state_hash", None)
    if fn is not None:
        return str(fn())
    return hashlib.sha256(handler.on_snapshot()).hexdigest()


async def record_checkpoint(kv: Any, key: str, cp: Checkpoint) -> Checkpoint:
    """Writes ``cp`` as the reference if none exists; returns the reference (``cp`` or the
    one already there). Raises Divergence when the reference's hash differs."""
    import asyncio

    from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

    try:
        await kv.create(key, msgspec.json.encode(cp))
        return cp
    except (KeyWrongLastSequenceError, KeyNotFoundError):
        pass  # (nats-py's create reads the key back, and a follower may not have it yet)
    for attempt in range(100):  # reads may go to a follower that lags: retry a moment
        try:
            entry = await kv.get(key)
            break
        except KeyNotFoundError:
            if attempt == 99:
                raise
            await asyncio.sleep(0.05)
    ref = msgspec.json.decode(entry.value, type=Checkpoint)
    if ref.state_hash != cp.state_hash:
        raise Divergence(cp.stream_seq, cp.state_hash, ref)
    return ref
