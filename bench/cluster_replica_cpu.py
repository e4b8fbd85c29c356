"""Where a cluster leader's CPU per command goes, without NATS: the feeder's work (a stream
message's mark and commands into the processor's ring, ringlog._feed) and the output emitter's
(tail the journals, cut and encode one output batch per message), each timed on this thread,
and the whole process's CPU (the processor's loop and journal threads too). The emitter polls
after each message, as the leader does; the last messages are polled once the loop has drained
(polling while it catches up would time the wait, not the work).

    InputBatch bytes (1024 engine commands) ─► publish_message ─► Processor
                                          (feeder: mark + commands)      │ journals
                                   OutputEmitter.poll ◄──────────────────┘
                                     (emitter: one OutputBatch per message)

Run: ``python bench/cluster_replica_cpu.py [--commands N] [--runs R]``; prints one JSON line
per run and the medians (us of CPU per command).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import msgspec

from ringlog import Processor, ProcessorConfig
from ringlog._feed import publish_message
from ringlog.cluster.outputs import OutputEmitter
from ringlog.cluster.stream import Command, InputBatch
from ringlog.cluster.trial import engine_commands
from ringlog.engine.flow import demo_engine


def one_run(n: int, per_message: int = 1024) -> dict[str, float]:
    """Feeds ``n`` commands as messages of ``per_message`` through a processor and an emitter;
    returns CPU us per command: feeder, emitter (this thread) and process."""
    cmds = engine_commands(n)
    enc = msgspec.msgpack.Encoder()
    msgs = [enc.encode(InputBatch(1, [Command(t, p) for t, p in cmds[i:i + per_message]]))
            for i in range(0, n, per_message)]
    engine = demo_engine()
    with tempfile.TemporaryDirectory(prefix="ringlog-replica-cpu-") as d:
        p = Processor(engine, d, ProcessorConfig(
            slot_size=max(128, engine.config.min_slot_size), segment_size=256 << 20,
            dedup=True))
        p.start()
        try:
            em = OutputEmitter(p, 1)
            ring = p.input_ring
            feed = emit = 0.0
            got = 0
            proc0 = time.process_time()
            for k, data in enumerate(msgs):
                t0 = time.thread_time()
                publish_message(ring, data, k + 1, 0, True, [])  # the replica's feeder
                t1 = time.thread_time()
                got += len(em.poll())
                emit += time.thread_time() - t1
                feed += t1 - t0
            # the rest once the loop is done with it (not timed: polling an emitter while the
            # loop catches up measures how long that takes, not the emitter's work)
            p.drain(60)
            while got < len(msgs):
                t1 = time.thread_time()
                got += len(em.poll())
                emit += time.thread_time() - t1
            process = time.process_time() - proc0
            em.close()
        finally:
            p.stop()
    return {"feeder_us": feed / n * 1e6, "emitter_us": emit / n * 1e6,
            "process_us": process / n * 1e6}


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--commands", type=int, default=100_000)
    a.add_argument("--runs", type=int, default=3)
    args = a.parse_args()
    runs = []
    for _ in range(args.runs):
        r = one_run(args.commands)
        runs.append(r)
        print(json.dumps(r))
    print(json.dumps({k: {"median": statistics.median(r[k] for r in runs),
                          "min": min(r[k] for r in runs), "max": max(r[k] for r in runs)}
                      for k in runs[0]}))


if __name__ == "__main__":
    main()
