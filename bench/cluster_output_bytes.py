"""Output stream bytes per engine command, without NATS: the batches a leader's emitters cut
from a processor's journals for the engine's mixed flow, in input messages of ``--batch``
commands with real event times, per stream (reports, market data, or everything in one when
the build has no market data stream: an older build through ``PYTHONPATH``).

    InputBatch(time_ns, commands) ──publish_message──► Processor (demo engine) ──► journals
        ──OutputEmitter(types)──► batch bytes summed per stream / commands

Run: ``python bench/cluster_output_bytes.py [--commands N] [--batch K]``; with
``PYTHONPATH=<src of another build>`` it measures that build's format. Prints one JSON line.
The count is deterministic (the same flow and seeds), so one run is the figure.
"""

from __future__ import annotations

import argparse
import inspect
import json
import tempfile
import time
from typing import Any

import msgspec

from ringlog import Processor, ProcessorConfig
from ringlog._feed import publish_message
from ringlog.cluster.outputs import OutputEmitter
from ringlog.cluster.stream import Command, InputBatch
from ringlog.cluster.trial import engine_commands
from ringlog.engine.flow import demo_engine

MARKET_DATA = (210, 211)  # the engine's L1 and L2 records


def _drain(em: OutputEmitter, messages: int) -> int:
    """The bytes of every batch of ``messages`` input messages."""
    seen, total = 0, 0
    deadline = time.monotonic() + 120
    while seen < messages:
        for b in em.poll():
            total += len(b[-1])
            seen += len(b) == 2 or b[1] == b[2] - 1  # (an older build: (seq, bytes))
        if time.monotonic() > deadline:
            raise TimeoutError(f"{seen} of {messages} batches")
        time.sleep(0.001)
    return total


def measure(n: int, batch: int) -> dict[str, Any]:
    """Bytes per command of the input and of each output stream."""
    cmds = engine_commands(n)
    enc = msgspec.msgpack.Encoder()
    with tempfile.TemporaryDirectory(prefix="ringlog-out-bytes-") as d:
        e = demo_engine()
        p = Processor(e, d, ProcessorConfig(slot_size=max(128, e.config.min_slot_size),
                                            segment_size=1 << 26, dedup=True))
        p.start()
        try:
            msgs = [cmds[i:i + batch] for i in range(0, n, batch)]
            in_bytes = 0
            for k, m in enumerate(msgs, 1):
                data = enc.encode(InputBatch(time.time_ns(), [Command(t, pl) for t, pl in m]))
                in_bytes += len(data)
                publish_message(p.input_ring, data, k, 0, True, [])
            out = {"commands": n, "batch": batch, "input_bytes_per_command": in_bytes / n}
            if "types" not in inspect.signature(OutputEmitter).parameters:
                out["one_stream_bytes_per_command"] = _drain(OutputEmitter(p, 1), len(msgs)) / n
                return out
            for name, types, exclude in (("one_stream", (), True),
                                         ("reports", MARKET_DATA, True),
                                         ("market_data", MARKET_DATA, False)):
                em = OutputEmitter(p, 1, 1 << 62, types, exclude)
                out[f"{name}_bytes_per_command"] = _drain(em, len(msgs)) / n
                em.close()
            return out
        finally:
            p.stop()


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--commands", type=int, default=20_000)
    a.add_argument("--batch", type=int, default=1000, help="commands per input message")
    args = a.parse_args()
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v
                      for k, v in measure(args.commands, args.batch).items()}))


if __name__ == "__main__":
    main()
