"""Leadership of a shard: a lease held as a key of a JetStream key-value bucket whose
entries expire ``lease_ttl`` after their last write (the stream's max age, on the servers'
clock).

::

    standby ── create(shard-N, me) ──► bucket RL_<name>_LEASE (R=3, ttl)   ok: leader
    leader  ── update(shard-N, me, last=revision) every ttl/4 ──►          ok: still leader
                                      (a compare-and-set: a lease someone else took fails)

A standby does not poll: it watches the key (``LeaseWatch``, a KV watch: an ordered
consumer of the bucket's stream) and takes it with one compare-and-set on the revision it
saw last, when that write is ``ttl`` old by its own clock (no renewal followed: the leader
is gone), or at once when the key is released (a delete) or expired by the servers (their
deletion marker, NATS 2.11+: the bucket's ``limit_marker_ttl``)::

    leader  ── renew (rev r) ──► key ──watch──► standby: due at arrival + ttl, no request
    (dies)                       ...  arrival + ttl: update(key, me, last=r)   ok: leader
    (releases / servers expire)  DEL / marker (rev m) ──watch──► update(last=m) at once

Waiting for the servers' expiry cost ~200 ms more per failover (their expiry check runs
every ~250 ms). Taking a write at ``arrival + ttl`` is safe: the write was stamped, and
sent by the leader, before it arrived here, and the leader trusts it for 3/4 ttl from
sending (below); a renewal meanwhile changed the revision, so the compare-and-set fails.
A failed try (another standby first, a renewal the watch had not delivered yet) is followed
by the watch's news, or by a create and a read every ``ttl/8`` (what a standby used to do
all the time). The safety net is the same: a watch silent for a ttl (its consumer's server
died) makes the standby try every ``ttl/8`` until it has news (and is made again after two
ttl of silence while the key stays taken). A try without
a revision is a create and, when the key exists, a read: a key that names this replica (its
previous process, its own earlier term) or whose latest entry is the servers' expiry marker
(no value: nats-py's create does not write over it) is taken with a compare-and-set.

The leader trusts its lease only until ``sent + 3/4 ttl`` by its own monotonic clock, where
``sent`` is when it sent the write that the server stamped later: the server cannot expire
the entry, and no one else can create it or write over it, before the leader stops
trusting it. A leader that
was paused (SIGSTOP) or cut off wakes to a lease it no longer trusts and publishes nothing
until a renewal succeeds, which fails once another replica holds the key.

Not thread-safe: one event loop owns a Lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
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
        ``after`` (the revision of the entry a watch saw last: a deletion marker, or a
        write no renewal followed for a ttl), one compare-and-set on that revision. Any
        trouble (no quorum, a timeout) leaves it a standby: False."""
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

    async def _take_after(self, last: int) -> int | None:
        """The revision this replica now holds the key at, written over the entry at
        revision ``last``; None if the key moved on since (a renewal, another standby)."""
        from nats.js.errors import KeyWrongLastSequenceError

        try:
            return int(await self.kv.update(self.key, self.holder.encode(), last=last))
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
    when a try is due and what it writes over (``after``: the revision of the entry the
    watch saw last, None to create), without a request while a leader renews. ``run()`` is
    its task; ``wait()`` returns when a try is due. Not thread-safe: one event loop."""

    def __init__(self, kv: Any, key: str, holder: str, ttl: float) -> None:
        self.kv = kv
        self.key = key
        self.holder = holder.encode()
        self.ttl = ttl
        self.free = False  # try now (the key absent, a deletion marker, our own key)
        self.revision: int | None = None  # of the entry seen last (None: the key is absent)
        # monotonic: the write seen last is ttl old from then on (at first: the watch's
        # first answer is awaited this long)
        self.free_at = time.monotonic() + ttl / 8
        self.retry_at = 0.0  # monotonic: after a failed try, not before
        self.seen_at = time.monotonic()  # when the watch last delivered something
        self.updates = 0  # entries seen (for tests and the dump)
        self.watches = 0  # watches made (one, unless one failed or went stale)
        self._tried = False  # a try failed since the watch's last news
        self.last_try: dict[str, Any] = {}  # the state the last try was made in
        self._changed = asyncio.Event()
        self._watcher: Any = None
        self._stopping: Any = None  # a stale watcher's stop (kept: a task needs a reference)

    @property
    def after(self) -> int | None:
        """The revision a try writes over (a compare-and-set): the entry the watch saw last,
        if it is a deletion marker, ours, or a ttl old; else None (create, and read what is
        there), as after a failed try (the watch may have missed a renewal)."""
        if self._tried or not (self.free or time.monotonic() >= self.free_at):
            return None
        return self.revision

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
                            self._news(None, free=True)  # nothing: the key is absent
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

    def describe(self) -> dict[str, Any]:
        """Where the watch stands (for a diagnosis: ``Replica.dump``)."""
        now = time.monotonic()
        return {"free": self.free, "revision": self.revision, "tried": self._tried,
                "due_in": round(max(self.free_at, self.retry_at) - now, 3),
                "silent_for": round(now - self.seen_at, 3), "updates": self.updates,
                "watches": self.watches, "last_try": self.last_try}

    def moved(self, kv: Any) -> None:
        """Follows the key through ``kv`` from now on (a new connection's bucket)."""
        self.kv = kv
        self._restart()

    def _restart(self) -> None:
        if self._watcher is not None:
            watcher, self._watcher = self._watcher, None
            self._stopping = asyncio.ensure_future(watcher.stop())  # (ends run()'s loop)

    def _news(self, revision: int | None, free: bool) -> None:
        self.revision, self.free, self._tried = revision, free, False
        self._changed.set()

    def _seen(self, entry: Any) -> None:
        self.updates += 1
        self.seen_at = time.monotonic()
        if entry.operation in ("DEL", "PURGE") or not entry.value:
            self._news(int(entry.revision), free=True)  # released, or the servers' marker
            return
        # a write: it lapses ttl after it arrived here (it was stamped before)
        self.free_at = self.seen_at + self.ttl
        self._news(int(entry.revision), free=entry.value == self.holder)  # ours: take it

    def tried(self) -> None:
        """A try failed: the next one when the watch has news, else after ttl/8 (creating
        and reading). A watch silent for two ttl while the key stays taken missed the
        renewals (its consumer's server died): it is made again."""
        self.free, self._tried = False, True
        self.retry_at = time.monotonic() + self.ttl / 8
        if time.monotonic() - self.seen_at > 2 * self.ttl:
            self.seen_at = time.monotonic()
            self._restart()

    async def take(self, lease: Lease, may: Callable[[], Awaitable[bool]] | None = None
                   ) -> bool:
        """A standby's step: waits until a try is due (``wait``), then, if ``may()``
        allows, tries to take the lease (on the revision the watch saw last, when that is
        free or lapsed). True once ``lease`` is held."""
        await self.wait()
        after = self.after
        # why this try (for the "leader" event: the failovers' diagnosis)
        self.last_try = {"after": after, "free": self.free,
                         "silent_for": round(time.monotonic() - self.seen_at, 3)}
        if (may is None or await may()) and await lease.try_acquire(after):
            return True
        self.tried()
        return False

    async def wait(self) -> None:
        """Returns when a try is due: the key is free, the write seen last is ``ttl`` old
        (no renewal came: the leader is gone, or the watch went silent: the safety net), or
        a failed try's ttl/8 passed. Each renewal the watch sees moves the due time; none
        asks a server."""
        while not self.free:
            until = max(self.free_at, self.retry_at)
            now = time.monotonic()
            if now >= until:
                return
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), until - now)
            except TimeoutError:
                return
