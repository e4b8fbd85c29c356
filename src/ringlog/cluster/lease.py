"""Leadership of a shard: a lease held as a key of a JetStream key-value bucket whose
entries expire ``lease_ttl`` after their last write (the stream's max age, on the servers'
clock).

::

    standby ── create(shard-N, me) ──► bucket RL_<name>_LEASE (R=3, ttl)   ok: leader
    leader  ── update(shard-N, me, last=revision) every ttl/4 ──►          ok: still leader
                                      (a compare-and-set: a lease someone else took fails)

A standby polls with a create alone: it reads the key (to take over a key that names it,
written by its previous process or its own earlier term) only while the key may name it,
i.e. until a read shows another holder, and again after its own write.

The leader trusts its lease only until ``sent + 3/4 ttl`` by its own monotonic clock, where
``sent`` is when it sent the write that the server stamped later: the server cannot expire
the entry, and no one else can create it, before the leader stops trusting it. A leader that
was paused (SIGSTOP) or cut off wakes to a lease it no longer trusts and publishes nothing
until a renewal succeeds, which fails once another replica holds the key.

Not thread-safe: one event loop owns a Lease.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

__all__ = ["Lease"]

TRUST = 0.75  # share of the ttl a leader trusts a renewal for


class Lease:
    """One replica's view of a shard's lease (see the module docstring)."""

    def __init__(self, kv: Any, key: str, holder: str, ttl: float) -> None:
        self.kv = kv
        self.key = key
        self.holder = holder
        self.ttl = ttl
        self.revision = 0
        self.valid_until = 0.0  # monotonic time the lease is trusted until
        self.acquired_at = 0.0  # wall time of the last acquisition (for failover reports)
        # whether the key may name this holder without this object knowing: at first (a
        # previous process) and after each write of ours; a read naming another clears it
        self._may_be_mine = True

    def held(self) -> bool:
        """True while the last successful write is recent enough to trust."""
        return time.monotonic() < self.valid_until

    async def current_holder(self) -> str | None:
        """The replica the bucket names as leader, None if the key is absent or expired."""
        from nats.js.errors import KeyNotFoundError

        try:
            entry = await self.kv.get(self.key)
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    async def try_acquire(self) -> bool:
        """Creates the key if no one holds it; True if this replica now leads. A key that
        already names this replica (written by its previous process) is taken over. Any
        trouble (no quorum, a timeout) leaves it a standby: False."""
        sent = time.monotonic()
        try:
            revision = await self._create_or_take_over()
        except Exception:
            self._may_be_mine = True  # (a write whose answer was lost may have landed)
            return False  # no quorum, timeout: still a standby
        if revision is None:
            return False
        self.revision = revision
        self.valid_until = sent + self.ttl * TRUST
        self.acquired_at = time.time()
        return True

    async def _create_or_take_over(self) -> int | None:
        """The revision this replica now holds the key at, None if another holds it."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        try:
            revision = int(await self.kv.create(self.key, self.holder.encode()))
            self._may_be_mine = True
            return revision
        except KeyWrongLastSequenceError:
            if not self._may_be_mine:
                return None  # held by another (a standby's poll: one request, not two)
        try:
            entry = await self.kv.get(self.key)
        except KeyNotFoundError:
            return None  # expired meanwhile: the next try creates it
        if entry.value != self.holder.encode():
            self._may_be_mine = False
            return None
        try:
            return int(await self.kv.update(self.key, self.holder.encode(),
                                            last=entry.revision))
        except KeyWrongLastSequenceError:
            return None

    async def renew(self) -> bool:
        """Extends the lease with a compare-and-set on the last revision; False (and the
        lease no longer trusted) if another replica took it or the write failed."""
        from nats.js.errors import KeyWrongLastSequenceError

        sent = time.monotonic()
        self._may_be_mine = True  # (a write of ours may land even if its answer does not)
        try:
            self.revision = await self.kv.update(self.key, self.holder.encode(),
                                                 last=self.revision)
        except KeyWrongLastSequenceError:
            self.valid_until = 0.0
            return False
        except Exception:
            return self.held()  # a failed write: trust what is left, try again soon
        self.valid_until = sent + self.ttl * TRUST
        return True

    async def release(self) -> None:
        """Gives the lease up at once (a clean shutdown), so a standby need not wait for it
        to expire."""
        if self.revision and self.held():
            self.valid_until = 0.0
            with contextlib.suppress(Exception):  # if not deleted, it expires by itself
                await self.kv.delete(self.key, last=self.revision)
