"""A digest of every output the matching engine produces over a set of flows: run it under two
builds (``PYTHONPATH=OLD_SRC`` / ``NEW_SRC``) and compare the lines, so a change to the engine's
internals can be shown to leave every output byte (and the final state) as it was.

::

    python bench/engine_digest.py [commands]     # one line per flow: name, digest, live orders

Flows: the mixed flow under several configurations (L2 depth 1/5/10/20, one symbol, STP none,
a 5,000-order pool, market data off), then passive adds, random cancels and matches at L2
depth 5 and 30. Each output's type, length and bytes and the final ``state_hash`` go in.
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np

from ringlog.engine import Command, Engine
from ringlog.engine.flow import adds_flow, cancels_flow, demo_config, matches_flow, mixed_flow


def _feed(e: Engine, h: hashlib.blake2b, type_ids: list[int], cmds: np.ndarray) -> None:
    raw = cmds.tobytes()
    for i in range(len(cmds)):
        for t, b in e.apply(type_ids[i], raw[i * 48:(i + 1) * 48]):
            h.update(t.to_bytes(4, "little") + len(b).to_bytes(4, "little") + b)


def main(n: int) -> None:
    mixed = [("d5", {}, 1, 4), ("d1", {"l2_depth": 1}, 2, 4), ("d10", {"l2_depth": 10}, 3, 2),
             ("d5s1", {}, 4, 1), ("stp_none", {"stp": 1}, 5, 4), ("d20", {"l2_depth": 20}, 6, 4),
             ("pool5000", {"max_orders": 5000}, 7, 4), ("no_md", {"market_data": False}, 8, 4)]
    for name, kw, seed, symbols in mixed:
        e = Engine(demo_config(**kw))
        cmds, types = mixed_flow(n, seed=seed, symbols=symbols)
        h = hashlib.blake2b(digest_size=16)
        _feed(e, h, [int(t) for t in types], cmds)
        h.update(e.state_hash().encode())
        print(name, h.hexdigest(), e.stats()["live_orders"], flush=True)
    for depth in (5, 30):
        e = Engine(demo_config(l2_depth=depth))
        adds = adds_flow(n // 2, symbols=2)
        matches = matches_flow(n // 4)
        matches["order_id"] += 10**9
        h = hashlib.blake2b(digest_size=16)
        for type_id, arr in ((Command.NEW, adds), (Command.CANCEL, cancels_flow(adds)),
                             (Command.NEW, matches)):
            _feed(e, h, [int(type_id)] * len(arr), arr)
        h.update(e.state_hash().encode())
        print(f"adds_cancels_matches_d{depth}", h.hexdigest(), e.stats()["live_orders"],
              flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
