"""kill -9 a processor at random points; the recovered state equals a reference replay of
the input journal and no event acknowledged as durable is lost."""

import os
import random
import select
import struct
import threading

import pytest
from test_processor import Summer

from ringlog._benchhandlers import SumHandler
from ringlog._journal import write_behind_min
from ringlog._release import SlotSink
from ringlog.events import FLAG_CONTROL
from ringlog.journal import JournalReader
from ringlog.processor import Processor, ProcessorConfig

from .killer import run_and_kill

# cython_nogil: handled without the GIL by the loop thread (nogil_events; automatic snapshots
# taken with it), by the pump with the GIL (driven)
HANDLERS = {"python": Summer, "cython": SumHandler,
            "cython_nogil": lambda: SumHandler(nogil=True)}
# (topology, output_journaller, a SlotSink listener): inline with the outputs journaled by an
# output thread from the output ring or by the loop thread itself, staged (always an output
# thread); with a SlotSink (the gateway's listener) inline "loop" has the loop thread append
# and hand over (no output thread); driven: the publishing thread pumps (no loop thread);
# the last field: ProcessorConfig.output_io
STAGES = {"inline": ("inline", "loop", False, "buffered"),
          "inline-output-thread": ("inline", "thread", False, "buffered"),
          "staged": ("staged", "loop", False, "buffered"),
          "inline-slot-sink": ("inline", "loop", True, "buffered"),
          "driven": ("driven", "loop", False, "buffered"),
          "driven-slot-sink": ("driven", "loop", True, "buffered"),
          # inline, every output journal flush handed to its writer thread (write-behind):
          # a kill loses what is still in its buffers, which recovery must journal again
          "inline-write-behind": ("inline", "loop", False, "buffered"),
          # the output journal written with O_DIRECT from a lingering stage (as `ringlog
          # serve` runs it: driven, a SlotSink): a kill loses what is staged
          "inline-direct-io": ("inline", "loop", False, "direct"),
          "driven-slot-sink-direct-io": ("driven", "loop", True, "direct")}
LOSE_STAGED = ("write-behind", "direct-io")  # variants whose kills must catch outputs


def _drain_forever(sink):
    while True:  # the gateway's side: take what the eventfd announces
        select.select([sink.fd], [], [], 0.05)
        sink.take()


def _child(path, policy, kind, stages, wfd):
    topology, outputs, slots, output_io = STAGES[stages]
    if stages.endswith("write-behind"):
        write_behind_min(0)
    cfg = ProcessorConfig(ring_capacity=256, output_capacity=256, segment_size=1 << 16,
                          durability=policy, snapshot_every=97, topology=topology,
                          output_journaller=outputs, output_io=output_io)
    p = Processor(HANDLERS[kind](), path, cfg)
    if slots:
        sink = SlotSink()
        p.add_output_listener(sink, batch="slots")
        threading.Thread(target=_drain_forever, args=(sink,), daemon=True).start()
    p.start()
    v = 0
    while True:
        p.publish(struct.pack("<q", v), 5, timestamp_ns=v)
        v += 1
        if topology == "driven" and v % 8 == 0:  # the owner's pump (a full ring pumps too)
            p.pump()
        if v % 16 == 0:
            os.write(wfd, struct.pack("<q", p.input.durable_sequence))


@pytest.mark.crash
@pytest.mark.parametrize("topology", list(STAGES))
@pytest.mark.parametrize("kind", ["python", "cython", "cython_nogil"])
@pytest.mark.parametrize("policy", ["sync", "group"])
def test_processor_recovers_exactly_after_kill_9(tmp_path, policy, kind, topology):
    rnd = random.Random(policy + kind + topology)
    path = str(tmp_path)
    acked, restored = -1, 0
    for _ in range(int(os.environ.get("RINGLOG_CRASH_CYCLES", "12"))):
        reported = run_and_kill(lambda w: _child(path, policy, kind, topology, w),
                                rnd.uniform(0.02, 0.15))
        acked = max([acked, *reported])
        h = HANDLERS[kind]()
        p = Processor(h, path, ProcessorConfig(segment_size=1 << 16, durability="none"))
        rep = p.recover(verify=True)
        published = p._loop.published
        p.stop()
        assert rep.first_divergence is None
        restored += rep.outputs_restored
        # every published output is in the output journal (missing ones restored)
        assert len(list(JournalReader(f"{path}/output"))) == published
        records = list(JournalReader(f"{path}/input"))
        # business events; a crash that cut a batch short leaves a no-op batch marker
        values = [struct.unpack("<q", r.payload)[0] for r in records
                  if not r.flags & FLAG_CONTROL]
        assert rep.last_sequence == len(records) - 1 >= acked  # nothing durable was lost
        assert (h.count, h.total) == (len(values), sum(values))  # equals a reference replay
    if topology.endswith(LOSE_STAGED):  # the kills did catch outputs in its buffers
        assert restored > 0
