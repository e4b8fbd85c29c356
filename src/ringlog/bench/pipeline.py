"""A user's handler measured through the whole pipeline: ``ringlog bench --handler mod:Class``.

::

    producer ──publish──► INPUT RING ──► journaller ──► handler (the loop thread)
        ──emit──► OUTPUT RING ──► output journal ──► listener: completion time recorded here

Throughput: the producer publishes flat out (``publish_many`` in chunks) for ``duration``
seconds, then the processor drains; events per second from the first publish to the last
output journaled. The same pipeline around a no-op handler is measured in the same run as the
peer, so the ratio is the cost of the user's handler on this machine today.

Latency: an open-loop producer publishes event ``i`` at its intended time on a fixed-rate
schedule with ``correlation_id = i + 1``; the output listener records the time an output for
each correlation id arrives into a preallocated array (off the hot path) and latency is
measured from the intended send time (coordinated omission corrected). Outputs leave in input
order, so an event that emits nothing is complete when the first output of a later event
arrives; events after the last output are not sampled (a handler that never emits gets
throughput only, with a note).

Only the public ``Processor`` API is used, so the measurement holds whatever the loop is made of.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import msgspec
import numpy as np

from ..config import check_fields, config_error
from ..errors import HandlerSpecError
from ..events import HEADER_SIZE
from ..handler import EventHandler
from . import latency
from .stats import summarize

__all__ = ["HandlerSpecError", "PipelineOptions", "load_handler", "run_handler"]

CHUNK = 256  # events per publish_many call of the flat-out producer
_NO_OUTPUT = np.iinfo(np.int64).max


class PipelineOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the handler's pipeline is built and loaded; errors name the option."""

    event_size: int = 64  # payload bytes per input event (the 48-byte header comes on top)
    ring_size: int = 1 << 14  # input and output ring capacity (a power of two)
    wait: Literal["blocking", "busy_spin", "yielding", "sleeping"] = "blocking"
    durability: Literal["none", "group", "sync"] = "group"
    rates: tuple[float, ...] = (1_000.0, 10_000.0)  # offered rates (events/s) for latency
    duration: float = 5.0  # seconds of each throughput run and of each latency rate
    runs: int = 3

    def __post_init__(self) -> None:
        check_fields(self)
        if self.event_size < 0:
            raise config_error(self, "event_size", f"must be >= 0 bytes, got {self.event_size}")
        if not all(r > 0 and math.isfinite(r) for r in self.rates):
            raise config_error(self, "rates", "every offered rate must be a positive number, "
                               f"got {self.rates}")
        if not self.duration > 0:
            raise config_error(self, "duration", f"must be > 0 seconds, got {self.duration}")
        if self.runs < 1:
            raise config_error(self, "runs", f"must be >= 1, got {self.runs}")
        if self.ring_size < 2 or self.ring_size & (self.ring_size - 1):
            raise config_error(self, "ring_size", "must be a power of two >= 2, got "
                               f"{self.ring_size}")

    @property
    def slot_size(self) -> int:
        """The ring slot that holds the header and an ``event_size`` payload (8-aligned)."""
        return max(HEADER_SIZE + 8, (HEADER_SIZE + self.event_size + 7) & ~7)

    def processor_config(self) -> Any:
        """The ProcessorConfig these options describe."""
        from ..processor import ProcessorConfig

        return ProcessorConfig(ring_capacity=self.ring_size, output_capacity=self.ring_size,
                               slot_size=self.slot_size, wait=self.wait,
                               durability=self.durability)


def load_handler(spec: str) -> Callable[[], Any]:
    """The handler factory named by ``module:Class`` or ``path/to/file.py:Class``.

    The factory is called with no arguments for each run, so each run starts from a fresh
    handler. Every way the spec can be wrong is a HandlerSpecError saying which part."""
    from ..replay import load_object

    try:
        factory = load_object(spec)
    except HandlerSpecError as e:
        raise HandlerSpecError(f"--handler {e}") from e.__cause__
    if not callable(factory):
        raise HandlerSpecError(f"--handler {spec!r}: {spec.rpartition(':')[2]} is a "
                               f"{type(factory).__name__}, not a class or factory")
    return factory  # type: ignore[no-any-return]


def _payloads(factory: Any, opts: PipelineOptions) -> list[bytes]:
    """The payloads the producer cycles through: the handler class's ``bench_payloads(size)``
    if it has one (a handler that parses its input needs valid input), else zero bytes."""
    make = getattr(factory, "bench_payloads", None)
    if make is None:
        return [bytes(opts.event_size)]
    got = [bytes(p) for p in make(opts.event_size)]
    room = opts.slot_size - HEADER_SIZE
    if not got or any(len(p) > room for p in got):
        raise HandlerSpecError(f"{getattr(factory, '__name__', factory)}.bench_payloads"
                               f"({opts.event_size}) must return payloads of at most {room} "
                               f"bytes, got {len(got)} with sizes up to "
                               f"{max((len(p) for p in got), default=0)}")
    return got


class _Noop(EventHandler):
    """The peer: the same pipeline around a handler that does nothing."""

    def on_event(self, event: Any, sequence: int, end_of_batch: bool) -> None:
        pass


def _processor(factory: Callable[[], Any], opts: PipelineOptions, workdir: str,
               on_output: Callable[[Any], None] | None = None) -> Any:
    from ..processor import Processor

    d = tempfile.mkdtemp(prefix="ringlog-bench-handler-", dir=workdir)
    return Processor(factory(), d, opts.processor_config(), on_output=on_output)


@contextlib.contextmanager
def _stopped_on_error(p: Any) -> Iterator[None]:
    """Stops the processor if publishing fails: a handler that raised halts the loop and
    closes the ring, and ``stop()`` raises the processor's error naming the handler's
    exception, which says more than the closed ring the producer ran into."""
    try:
        yield
    except BaseException:
        try:
            p.stop()
        finally:
            shutil.rmtree(p.directory, ignore_errors=True)
        raise


def _finish(p: Any, published: int, timeout: float) -> Any:
    """Drains, checks that every event was handled, removes the directory; the metrics."""
    try:
        p.drain(timeout=timeout)
        m = p.metrics
    finally:
        p.stop()
        shutil.rmtree(p.directory, ignore_errors=True)
    if m.processed != published:
        raise RuntimeError(f"the handler processed {m.processed} of {published} published "
                           "events (did the breaker halt the processor?)")
    return m


def _throughput_once(factory: Callable[[], Any], opts: PipelineOptions, payloads: list[bytes],
                     workdir: str) -> float:
    chunk = (payloads * (CHUNK // len(payloads) + 1))[:CHUNK]
    p = _processor(factory, opts, workdir)
    p.start()
    n = 0
    publish_many = p.publish_many
    clock = time.perf_counter
    t0 = clock()
    deadline = t0 + opts.duration
    with _stopped_on_error(p):
        while clock() < deadline:
            publish_many(chunk)
            n += CHUNK
    _finish(p, n, timeout=max(60.0, opts.duration * 20))
    return n / (clock() - t0)


def _latency_once(factory: Callable[[], Any], opts: PipelineOptions, payloads: list[bytes],
                  rate: float, workdir: str) -> tuple[np.ndarray, int, float]:
    """Latencies (ns) of the events an output completed, how many events were sent, and the
    rate the sender achieved (below the offered rate when it fell behind the schedule)."""
    count = max(1, int(rate * opts.duration))
    done = np.zeros(count, dtype=np.int64)
    clock = time.perf_counter_ns

    def on_output(rec: Any) -> None:
        k = rec.correlation_id - 1
        if 0 <= k < count and not done[k]:
            done[k] = clock()

    p = _processor(factory, opts, workdir, on_output)
    p.start()
    publish = p.publish
    m = len(payloads)
    with _stopped_on_error(p):
        intended = latency.open_loop(lambda i: publish(payloads[i % m], correlation_id=i + 1),
                                     rate, count, clock)
        sent_rate = count / max(clock() - intended[0], 1) * 1e9
    _finish(p, count, timeout=max(60.0, opts.duration * 20))
    # outputs leave in input order: an event without an output of its own is complete when
    # the first output of a later event arrives
    first_after = np.minimum.accumulate(np.where(done > 0, done, _NO_OUTPUT)[::-1])[::-1]
    measured = first_after != _NO_OUTPUT
    return (first_after[measured] - intended[measured]), count, sent_rate


def run_handler(spec: str, opts: PipelineOptions, *, smoke: bool = False,
                limits: dict[str, Any] | None = None,
                progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Result rows for the handler ``spec``: throughput (median of ``opts.runs``) with the
    no-op pipeline as peer, and latency percentiles at each offered rate (with the
    HdrHistogram log of each rate where ``latency.hdr_logs_in`` names a folder)."""
    from .progress import Progress

    factory = load_handler(spec)
    name = getattr(factory, "__name__", "handler")
    if smoke:  # checks the harness, not the handler: a fraction of a second per phase
        opts = msgspec.structs.replace(opts, duration=min(opts.duration, 0.2))
    payloads = _payloads(factory, opts)
    tag = f"{opts.event_size}b_{opts.durability}_{opts.wait}"
    workdir = tempfile.mkdtemp(prefix="ringlog-bench-", dir=".")
    steps = opts.runs * (2 + len(opts.rates))
    prog = Progress(steps, progress, prefix=f"handler {name}")
    rows: list[dict[str, Any]] = []
    try:
        tput, base = [], []
        for i in range(opts.runs):
            with prog.step(f"throughput run {i + 1}/{opts.runs}"):
                tput.append(_throughput_once(factory, opts, payloads, workdir))
            with prog.step(f"no-op peer run {i + 1}/{opts.runs}"):
                base.append(_throughput_once(_Noop, opts, payloads, workdir))
        peer = {"target": "handler", "name": f"peer_noop_handler_throughput_{tag}",
                "unit": "events/s", **summarize(base)}
        row = {"target": "handler", "name": f"{name}_throughput_{tag}", "unit": "events/s",
               **summarize(tput), "peers": {"noop_handler": peer["median"]},
               "ratios": {"noop_handler": summarize(tput)["median"] / peer["median"]}}
        call_ns = (limits or {}).get("python_call_ns")
        if call_ns:
            row["peers"]["python_call_ceiling"] = 1e9 / call_ns
            row["ratios"]["python_call_ceiling"] = row["median"] * call_ns / 1e9
        rows += [row, peer]
        for rate in opts.rates:
            samples, sent, achieved = [], 0, []
            for i in range(opts.runs):
                with prog.step(f"latency at {latency.rate_label(rate)}/s run {i + 1}/{opts.runs}"):
                    lat, n, r = _latency_once(factory, opts, payloads, rate, workdir)
                samples.append(lat)
                sent += n
                achieved.append(r)
            measured = sum(s.size for s in samples)
            behind = ""
            if latency.past_capacity(rate, achieved):  # the sender's backlog is in them
                behind = (f"; the sender fell behind the schedule (achieved "
                          f"{min(achieved):,.0f} events/s): the latencies include its backlog")
            rows += latency.latency_rows(
                "handler", f"{name}_{tag}", rate, samples,
                note=f"open loop at {rate:g} events/s from the intended send time; "
                     f"{measured} of {sent} events sampled{behind}",
                missing="the handler emitted no output in a run (latency is measured to "
                        "the output an event causes)", achieved=achieved)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows
