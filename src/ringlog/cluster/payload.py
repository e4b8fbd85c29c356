"""The size of a shard's output batches: one bound for every replica, recorded once, and
checked at every replica's start against the ``max_payload`` of every server it can reach.

::

    replica start ── max_payload of each server ──► nats://n1 (its INFO), nats://n2, ...
        │            (the URLs given and those the servers announce: connect_urls)
        ▼
    RL_<name>_CKPT  key <shard>.output_bound   created once (first writer wins):
        min(output_max_bytes, the smallest max_payload seen) - HEADERS_ROOM
        │
        ├─ every replica cuts its parts under the recorded bound (the same parts everywhere:
        │  a new leader's overlap check compares equal bytes)
        └─ a server whose max_payload is below bound + HEADERS_ROOM: ClusterSetupError at
           start, naming the servers and the values (a leader connected there could not
           publish a full part); a replica whose connection moved to such a server later
           does not take the lease

Before, each replica cut under its own connection's ``max_payload``: servers that disagreed
below ``output_max_bytes`` made replicas cut different parts, and a new leader halted on the
overlap check. A shard recorded before this module existed gets its bound at the first start
of a replica of this version: with servers that agreed (what was required), the same bound
its stream was cut with.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..errors import ClusterSetupError
from .config import ClusterConfig, ShardNames
from .stream import HEADERS_ROOM, until_answered

__all__ = ["OutputBound", "server_max_payloads"]

PROBE_TIMEOUT = 2.0  # seconds to reach one server for its max_payload (a down node is skipped)


def _url(uri: Any) -> str:
    """``nats://host:port`` of a URL string or a parsed URL (nats-py's server pool)."""
    if isinstance(uri, str):
        return uri if "://" in uri else f"nats://{uri}"
    return f"{uri.scheme or 'nats'}://{uri.hostname}:{uri.port or 4222}"


async def _probe(url: str) -> tuple[str, str, int] | None:
    """``(url, server id, max_payload)`` of one server, None if it does not answer."""
    import nats

    async def quiet(e: BaseException) -> None:
        pass

    try:
        nc = await asyncio.wait_for(nats.connect(
            url, allow_reconnect=False, connect_timeout=PROBE_TIMEOUT, error_cb=quiet,
            name="ringlog-probe"), PROBE_TIMEOUT * 2)
    except Exception:  # a node down: what it says is checked when it is up at a start
        return None
    try:
        info = nc._server_info  # (nats-py keeps the server's INFO here)
        return url, str(info.get("server_id", url)), int(nc.max_payload)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def server_max_payloads(nc: Any, cfg: ClusterConfig) -> dict[str, int]:
    """``max_payload`` of every server reachable now, by URL: those of ``cfg.servers`` and
    those the servers announced to ``nc`` (their cluster's client URLs), one entry per
    server; the connected server's from ``nc`` itself."""
    urls = list(dict.fromkeys([*cfg.servers, *(_url(u) for u in nc.discovered_servers)]))
    found = await asyncio.gather(*(_probe(u) for u in urls))
    seen: dict[str, tuple[str, int]] = {}  # server id: (url, max_payload)
    for got in found:
        if got is not None and got[1] not in seen:
            seen[got[1]] = (got[0], got[2])
    here = str(nc._server_info.get("server_id", ""))
    if here not in seen and nc.connected_url is not None:
        seen[here] = (_url(nc.connected_url), int(nc.max_payload))
    return {url: mp for url, mp in seen.values()}


class OutputBound:
    """A shard's output bound: the most bytes of one output batch (a part), the same on
    every replica (see the module docstring)."""

    def __init__(self, bytes_: int, servers: dict[str, int]) -> None:
        self.bytes = bytes_
        self.servers = servers  # max_payload of each server seen at start, by URL

    @property
    def needs(self) -> int:
        """The ``max_payload`` a server must allow for a leader connected to it."""
        return self.bytes + HEADERS_ROOM

    @classmethod
    async def agree(cls, nc: Any, kv: Any, names: ShardNames,
                    cfg: ClusterConfig) -> OutputBound:
        """Reads the shard's recorded bound (records it first if no replica did) and checks
        it against every reachable server: ClusterSetupError naming those below it."""
        servers = await server_max_payloads(nc, cfg)
        want = min(cfg.output_max_bytes, *servers.values()) - HEADERS_ROOM
        key = names.output_bound_key
        if want < HEADERS_ROOM:
            raise ClusterSetupError(
                f"output batches of shard {names.shard}: the servers' max_payload "
                f"({_listed(servers)}) leaves {want} bytes for a batch; give every server "
                f"a max_payload of at least {2 * HEADERS_ROOM} (NATS's default is 1 MiB)")
        recorded = await until_answered(lambda: _record(kv, key, want),
                                        f"the output bound of shard {names.shard}")
        bound = cls(recorded, servers)
        low = {u: mp for u, mp in servers.items() if mp < bound.needs}
        if low:
            raise ClusterSetupError(
                f"output batches of shard {names.shard} are cut under {recorded} bytes "
                f"(recorded in {names.checkpoint_bucket} key {key}), which needs a "
                f"max_payload of {bound.needs} on every server, but {_listed(low)}: give "
                f"those servers max_payload {bound.needs} or more (all servers: "
                f"{_listed(servers)}); or, to cut smaller parts from now on, stop the "
                f"shard's replicas and delete the key and the output streams (or use a new "
                f"--cluster-name)")
        return bound


async def _record(kv: Any, key: str, want: int) -> int:
    """The recorded bound: ``want`` if this call created the key, else the key's value."""
    from nats.js.errors import KeyWrongLastSequenceError

    try:
        await kv.create(key, str(want).encode())
        return want
    except KeyWrongLastSequenceError:
        return int((await kv.get(key)).value)


def _listed(servers: dict[str, int]) -> str:
    return ", ".join(f"{u} has {mp}" for u, mp in sorted(servers.items()))
