"""Leadership of a shard: a lease held as a key of a JetStream key-value bucket whose
entries expire ``lease_ttl`` after their last write (the stream's max age, on the servers'
clock).

::

    standby ── create(shard-N, me) ──► bucket RL_<name>_LEASE (R=3, ttl)   ok: leader
    leader  ── update(shard-N, me, last=revision) every ttl/4 ──►          ok: still leader
                                      (a compare-and-set: a lease someone else took fails)

A standby does not poll: it watches the key (``LeaseWatch``, a KV watch: an ordered
consumer of the bucket's stream). Each renewal it sees moves the time the key can expire to
``ttl`` after the renewal arrived; a release (a delete) or the servers' expiry of the key (a
delete marker the servers place when the key's max age passes: the bucket's
``limit_marker_ttl``, NATS 2.11+) frees it at once, and the standby takes it with one
compare-and-set on the marker's revision::

    leader  ── renew ──► key ──watch──► standby: free_at = arrival + ttl (no request)
    (dies)             key expires: marker (MaxAge) ──watch──► standby: update(last=marker)

Without a marker (servers before 2.11, a watch that broke) the standby tries when the last
renewal it saw is ``ttl`` old and then every ``ttl/8`` (what it used to do all the time),
and at least every ``ttl`` in any case. A try is a create, and when the key exists a read:
a key that names this replica (its previous process, its own earlier term) or whose latest
entry is the servers' expiry marker (no value: nats-py's create does not write over it) is
taken with a compare-and-set on its revision.

The leader trusts its lease only until ``sent + 3/4 ttl`` by its own monotonic clock, where
``sent`` is when it sent the write that the server stamped later: the server cannot expire
the entry, and no one else can create it, before the leader stops trusting it. A leader that
was paused (SIGSTOP) or cut off wakes to a lease it no longer trusts and publishes nothing
until a renewal succeeds, which fails once another replica holds the key.

Not thread-safe: one event loop owns a Lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

__all__ = ["Lease", "LeaseWatch"]

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

    async def try_acquire(self, after: int | None = None) -> bool:
        """Creates the key if no one holds it; True if this replica now leads. A key that
        already names this replica (written by its previous process) is taken over. With
        ``after`` (the revision of the deletion marker a watch saw: the key was released or
        expired), one compare-and-set on that revision. Any trouble (no quorum, a timeout)
        leaves it a standby: False."""
        sent = time.monotonic()
        try:
            revision = await (self._take_after(after) if after else
                              self._create_or_take_over())
        except Exception:
            return False  # no quorum, timeout: still a standby
        if revision is None:
            return False
        self.revision = revision
        self.valid_until = sent + self.ttl * TRUST
        self.acquired_at = time.time()
        return True

    async def _take_after(self, marker: int) -> int | None:
        """The revision this replica now holds the key at, written over the deletion marker
        at ``marker``; None if another wrote first."""
        from nats.js.errors import KeyWrongLastSequenceError

        try:
            return int(await self.kv.update(self.key, self.holder.encode(), last=marker))
        except KeyWrongLastSequenceError:
            return None

    async def _create_or_take_over(self) -> int | None:
        """The revision this replica now holds the key at, None if another holds it."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        try:
            return int(await self.kv.create(self.key, self.holder.encode()))
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await self.kv.get(self.key)
        except KeyNotFoundError:
            return None  # expired meanwhile: the next try creates it
        if entry.value and entry.value != self.holder.encode():
            return None  # another's
        # this holder's (a previous process), or the servers' expiry marker (an entry with
        # no value, which nats-py's create does not write over): one compare-and-set
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


class LeaseWatch:
    """A standby's view of the lease key through a KV watch (see the module docstring):
    when the key is free (``free``, with the revision of the marker that freed it) or may
    be (``free_at``, monotonic), without a request while a leader renews. ``run()`` is its
    task; ``wait()`` returns when a try is due. Not thread-safe: one event loop."""

    def __init__(self, kv: Any, key: str, holder: str, ttl: float) -> None:
        self.kv = kv
        self.key = key
        self.holder = holder.encode()
        self.ttl = ttl
        self.free = True  # try now (nothing seen yet, or the key deleted / expired)
        self.marker: int | None = None  # revision of the deletion marker that freed it
        self.free_at = 0.0  # monotonic: the last write seen can have expired from then on
        self.seen_at = time.monotonic()  # when the watch last delivered something
        self.updates = 0  # entries seen (for tests and the dump)
        self.watches = 0  # watches made (one, unless one failed or went stale)
        self._changed = asyncio.Event()
        self._watcher: Any = None
        self._stopping: Any = None  # a stale watcher's stop (kept: a task needs a reference)

    async def run(self) -> None:
        """Follows the key until cancelled; a watch that fails or goes stale (``tried``) is
        made again (meanwhile ``wait`` falls back to tries every ttl/8)."""
        while True:
            try:
                self._watcher = await self.kv.watch(self.key)
                self.watches += 1
                self.seen_at = time.monotonic()
                entries = 0
                async for entry in self._watcher:
                    if entry is None:  # the end of what the key holds now
                        if not entries:
                            self._free(None)  # nothing: the key is absent
                        continue
                    entries += 1
                    self._seen(entry)
            except asyncio.CancelledError:
                raise
            except Exception:
                pass
            finally:
                watcher, self._watcher = self._watcher, None
                if watcher is not None:
                    with contextlib.suppress(Exception):
                        await watcher.stop()
            await asyncio.sleep(self.ttl / 8)

    def moved(self, kv: Any) -> None:
        """Follows the key through ``kv`` from now on (a new connection's bucket)."""
        self.kv = kv
        if self._watcher is not None:
            watcher, self._watcher = self._watcher, None
            self._stopping = asyncio.ensure_future(watcher.stop())

    def _free(self, marker: int | None) -> None:
        self.free, self.marker = True, marker
        self._changed.set()

    def _seen(self, entry: Any) -> None:
        self.updates += 1
        self.seen_at = time.monotonic()
        if entry.operation in ("DEL", "PURGE") or not entry.value:
            self._free(int(entry.revision))  # released, or expired (the servers' marker)
            return
        self.free_at = self.seen_at + self.ttl
        self.free = entry.value == self.holder  # (ours: a previous process's, take it)
        self.marker = None
        self._changed.set()

    def tried(self) -> None:
        """A try failed: wait for the watch (another took the key) or the next due time.
        A watch silent for two ttl while the key stays taken missed the renewals (its
        consumer's server died): it is made again."""
        self.free, self.marker = False, None
        if time.monotonic() - self.seen_at > 2 * self.ttl and self._watcher is not None:
            watcher, self._watcher = self._watcher, None
            self.seen_at = time.monotonic()
            self._stopping = asyncio.ensure_future(watcher.stop())  # (ends run()'s loop)

    async def wait(self, safety: float) -> None:
        """Returns when a try is due: the key is free, the last write seen is ``ttl`` old
        (then every ttl/8: the servers' expiry may come later), or ``safety`` seconds
        passed; or when the watch saw something new."""
        if self.free:
            return
        delay = min(safety, max(self.free_at - time.monotonic(), self.ttl / 8))
        self._changed.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), delay)
