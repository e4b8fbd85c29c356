"""Replay: rebuild a handler's state at any sequence from a snapshot and the input journal.

``ringlog replay`` and ``ringlog snapshot`` use this. A processor directory holds ``input/``,
``output/`` and ``snapshots/`` (see ``ringlog.processor``). Replay loads a snapshot (the
newest at or before the target, a chosen one, or none), restores the loop, handler and
breaker state from it, and feeds the input journal through the same compiled loop the live
processor runs (``LogicCore.replay_segment`` over each mapped segment, batch ends as
journaled), so state and outputs come out as they did live.

Replay is read-only: journals are mapped read-only and nothing is written into the
directory (``Processor.recover`` is not used because opening a processor takes the appender
locks, truncates torn tails and journals missing outputs: right for a restart, wrong for an
inspection tool that may run beside the live process). Only ``snapshot take`` writes, and
only a new snapshot file, atomically.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import msgspec

from ._journal import ScanStatus
from .errors import HandlerSpecError, JournalError, SnapshotError, StateError
from .journal import JournalReader
from .logic import InputEvent, LogicLoop, OutputRecord
from .processor import _same_output, _Snapshot
from .snapshot import Snapshot, SnapshotStore

__all__ = ["Divergence", "Progress", "ReplayResult", "Replayer", "load_object", "make_handler"]


def load_object(spec: str) -> Any:
    """The object named by ``module:attr`` (or ``path/to/file.py:attr``; ``attr`` may be
    dotted); the current directory is importable, as with ``python -m``. Every way the spec
    can be wrong is a HandlerSpecError saying which part (an exception raised while importing
    the user's module is reported with its type)."""
    mod_name, sep, attr = spec.rpartition(":")
    if not sep or not mod_name or not attr:
        raise HandlerSpecError(f"{spec!r}: expected module:Class or file.py:Class (e.g. "
                               "myapp.handlers:Book)")
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.is_file():
                raise HandlerSpecError(f"{spec!r}: no file {path}")
            modspec = importlib.util.spec_from_file_location(path.stem, path)
            assert modspec is not None and modspec.loader is not None
            module = importlib.util.module_from_spec(modspec)
            sys.modules[path.stem] = module
            modspec.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(mod_name)
    except HandlerSpecError:
        raise
    except Exception as e:  # the user's module failed to import: say how
        raise HandlerSpecError(f"{spec!r}: importing {mod_name} failed: "
                               f"{type(e).__name__}: {e}") from e
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise HandlerSpecError(f"{spec!r}: {mod_name} has no attribute {attr!r}") from None
    return obj


def make_handler(spec: str) -> Any:
    """A handler instance from ``module:Class`` (or a factory function taking no args)."""
    obj = load_object(spec)
    try:
        handler = obj() if isinstance(obj, type) or (
            callable(obj) and not hasattr(obj, "on_event")) else obj
    except TypeError as e:
        raise HandlerSpecError(f"{spec!r} cannot be built without arguments ({e}): give a factory "
                         "function module:function that returns the handler as the processor "
                         "ran it (for the demo engine: ringlog.engine.flow:demo_engine)") from e
    if not hasattr(handler, "on_event"):
        raise HandlerSpecError(f"{spec!r} is not an event handler (no on_event method)")
    return handler


def make_breaker(spec: str | dict[str, Any] | None) -> Any | None:
    """The breaker a processor ran with: a BreakerConfig JSON file, ``module:attr`` (a
    Breaker, a BreakerConfig/dict, or a factory) or a config dict (from processor.json).
    None without a spec."""
    if not spec:
        return None
    from .breaker import Breaker

    if isinstance(spec, dict):
        return Breaker(spec)

    if spec.endswith(".json"):
        try:
            return Breaker(msgspec.json.decode(Path(spec).read_bytes()))
        except OSError as e:
            raise HandlerSpecError(f"--breaker {spec}: {e}") from e
    obj = load_object(spec)
    if isinstance(obj, Breaker):
        return obj
    if callable(obj) and not isinstance(obj, type):
        obj = obj()
    return obj if isinstance(obj, Breaker) else Breaker(obj)


class Divergence(msgspec.Struct, frozen=True):
    """The first output that differs from the recorded output journal."""

    input_sequence: int  # the input event whose handling produced it
    output_index: int  # its place in the output journal
    expected: dict[str, Any] | None  # the recorded output (None: the journal has none)
    actual: dict[str, Any] | None  # what the replay produced (None: it produced none)


class ReplayResult(msgspec.Struct):
    """What a replay did: where it started, how far it went, and the verification."""

    snapshot_sequence: int  # -1: from the start of the journal
    first_sequence: int
    last_sequence: int
    replayed: int
    outputs: int
    verified_outputs: int
    unrecorded_outputs: int  # outputs past the end of the output journal (lost in a crash)
    divergence: Divergence | None
    seconds: float


def _out_dict(o: Any) -> dict[str, Any]:
    if isinstance(o, OutputRecord):
        return {"type_id": o.type_id, "cause": o.cause, "payload_hex": o.payload.hex()}
    return {"type_id": o.type_id, "cause": o.producer_seq, "payload_hex": bytes(o.payload).hex(),
            "output_sequence": o.sequence}


class _Reached(Exception):
    """The replay reached its target sequence (ends the segment walk early)."""


class Progress:
    """A one-line progress bar with events/s and ETA on a terminal stream (redrawn at most
    five times a second)."""

    def __init__(self, total: int, stream: TextIO, label: str = "replay") -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.label = label
        self.t0 = time.monotonic()
        self._next = 0.0

    def update(self, done: int, final: bool = False) -> None:
        """Redraws for ``done`` of ``total`` events."""
        now = time.monotonic()
        if not final and now < self._next:
            return
        self._next = now + 0.2
        dt = max(now - self.t0, 1e-9)
        rate = done / dt
        frac = min(done / self.total, 1.0)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        bar = "#" * int(frac * 30)
        self.stream.write(f"\r{self.label} [{bar:<30}] {frac:6.1%} {done:,}/{self.total:,} "
                          f"{_si(rate)} ev/s ETA {int(eta) // 60}:{int(eta) % 60:02d}  ")
        if final:
            self.stream.write("\n")
        self.stream.flush()


def _si(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


class Replayer:
    """Rebuilds ``handler`` (and ``breaker``) state from a processor directory, read-only.

    ``directory`` is a processor directory (``input/``, ``output/``, ``snapshots/``) or a
    bare journal directory (then there are no snapshots and nothing to verify against).
    Not thread-safe: one replay at a time on one handler.
    """

    def __init__(self, directory: str | Path, handler: Any, *, breaker: Any | None = None,
                 dedup: bool = False, dead_letter: bool = False) -> None:
        d = Path(directory)
        if not d.is_dir():
            raise JournalError(f"{d} is not a directory")
        self.directory = d
        self.input_path = d / "input" if (d / "input").is_dir() else d
        self.output_path = d / "output" if (d / "output").is_dir() else None
        snaps = d / "snapshots"
        # SnapshotStore creates its directory: only open one that exists (read-only tool)
        self.snapshots = SnapshotStore(snaps) if snaps.is_dir() else None
        self.handler = handler
        self.breaker = breaker
        self.input = JournalReader(self.input_path)
        self.loop = LogicLoop(handler, breaker, reread=self._reread,
                              dead_letter=(lambda ev, seq, tb: None) if dead_letter else None,
                              dedup=dedup)
        self.loop.replaying = True  # snapshot requests are not acted on during a replay

    def _reread(self, lo: int, hi: int) -> Iterator[tuple[int, InputEvent]]:
        for rec in JournalReader(self.input_path).records(lo, to_sequence=hi):
            yield rec.sequence, rec

    # -- choosing the range ---------------------------------------------------------------
    def end_sequence(self) -> int:
        """The last committed input sequence."""
        from .journaltool import last_sequence

        return last_sequence(self.input_path)

    def sequence_at(self, until_ns: int) -> int:
        """The last sequence whose timestamp is at or before ``until_ns`` (event time)."""
        after = self.input.locate_time(until_ns + 1)
        return self.end_sequence() if after < 0 else after - 1

    def choose_snapshot(self, to_sequence: int, which: int | str = "latest"
                        ) -> Snapshot | None:
        """``latest`` (the newest valid one at or before ``to_sequence``), ``none``, or a
        snapshot sequence. A damaged chosen snapshot is an error, never silently swapped."""
        if which == "none" or self.snapshots is None:
            if which not in ("none", "latest"):
                raise SnapshotError(f"{self.directory} has no snapshots/ directory")
            return None
        if which == "latest":
            return self.snapshots.latest(at_or_before=to_sequence)
        assert isinstance(which, int)
        if which > to_sequence:
            raise SnapshotError(f"snapshot {which} is after the replay target {to_sequence}")
        return self.snapshots.load(which)

    # -- running --------------------------------------------------------------------------
    def restore(self, snap: Snapshot | None) -> int:
        """Loads ``snap`` into the loop, handler and breaker; returns its sequence (-1)."""
        if snap is None:
            return -1
        try:
            parts = msgspec.msgpack.decode(snap.data, type=_Snapshot)
        except msgspec.DecodeError as e:
            raise SnapshotError(f"{snap.path}: not a processor snapshot ({e})") from e
        self.loop.state = parts.loop
        self.handler.on_restore(parts.handler)
        if parts.breaker:
            if self.breaker is None:
                raise SnapshotError(f"{snap.path} holds breaker state: pass the breaker the "
                                    "processor ran with (--breaker), or outputs will differ")
            self.breaker.restore(parts.breaker)
        return snap.sequence

    def run(self, to_sequence: int | None = None, *, snapshot: int | str = "latest",
            verify: bool = False, progress: Progress | None = None,
            stop_at_divergence: bool = False) -> ReplayResult:
        """Restores a snapshot and replays the input journal up to ``to_sequence`` (default:
        its end); with ``verify`` compares every output with the recorded output journal."""
        t0 = time.perf_counter()
        end = self.end_sequence()
        to = end if to_sequence is None else to_sequence
        if to > end:
            raise JournalError(f"the input journal ends at sequence {end}; cannot replay to "
                               f"{to}")
        snap = self.choose_snapshot(to, snapshot)
        snap_seq = self.restore(snap)
        loop = self.loop
        start = snap_seq + 1
        segs = self.input.segments()
        if segs and start < segs[0][0]:
            raise JournalError(f"replay must start at sequence {start} but the journal's first "
                               f"retained sequence is {segs[0][0]}: choose a later snapshot")
        recorded: Iterator[Any] = iter(())
        journaled = 0
        if verify:
            if self.output_path is None:
                raise JournalError(f"{self.directory} has no output/ journal to verify "
                                   "against")
            from .journaltool import last_sequence

            journaled = last_sequence(self.output_path) + 1
            if loop.published < journaled:
                recorded = JournalReader(self.output_path).records(loop.published)
        verified = unrecorded = 0
        divergence: Divergence | None = None

        def on_output(out: OutputRecord) -> None:
            nonlocal verified, unrecorded, divergence
            index = loop.published - 1  # this output's place in the output journal
            if index >= journaled:
                unrecorded += 1
                return
            want = next(recorded, None)
            if divergence is None and (want is None or not _same_output(out, want)):
                divergence = Divergence(out.cause, index,
                                        None if want is None else _out_dict(want), _out_dict(out))
            verified += 1

        # unverified outputs are suppressed inside the compiled loop (no record is built)
        loop.sink = on_output if verify else None
        loop.replay_quiet = 0 if verify else 1 << 62
        outputs0 = loop.outputs
        done = 0
        replay = loop.replay_segment
        chunk = (1 << 18) if progress is not None else (1 << 62)
        if progress is not None:
            progress.total = max(to - snap_seq, 1)

        def read(seg: Any, off: int, seq: int) -> tuple[int, int, int, int]:
            """One segment through the compiled loop, in chunks (progress) up to ``to``."""
            nonlocal done
            count = 0
            while True:
                try:
                    st, off, seq, n = replay(seg, off, seq, True, min(to, seq + chunk - 1))
                except Exception as e:  # the handler's bug, reported where it happened
                    raise StateError(
                        f"the handler raised at input sequence {loop.last_sequence}: {e!r}; "
                        "replay stops here (a processor run with --dead-letter continues)"
                    ) from e
                count += n
                done += n
                if progress is not None:
                    progress.update(done)
                if seq > to:
                    raise _Reached
                if st != ScanStatus.SCAN_OK or n == 0:
                    return st, off, seq, count

        self.handler.on_start()
        try:
            self.input.walk(start, read)
        except _Reached:
            pass
        finally:
            loop.replay_done()
            loop.sink = None
        if verify and divergence is None and to == end and loop.published < journaled:
            # the replay produced fewer outputs than were recorded: the next recorded one
            want = next(recorded, None)
            if want is not None:
                divergence = Divergence(want.producer_seq, loop.published, _out_dict(want),
                                        None)
        if progress is not None:
            progress.update(done, final=True)
        return ReplayResult(snap_seq, start, loop.last_sequence, done, loop.outputs - outputs0,
                            verified, unrecorded, divergence, time.perf_counter() - t0)

    # -- state out ------------------------------------------------------------------------
    def state_document(self, result: ReplayResult, handler_spec: str) -> dict[str, Any]:
        """The handler's state as JSON-able data: ``dump_state()`` if it has one, else its
        ``on_snapshot()`` bytes in base64."""
        doc: dict[str, Any] = {"sequence": result.last_sequence,
                               "snapshot_sequence": result.snapshot_sequence,
                               "handler": handler_spec}
        dump_state: Callable[[], Any] | None = getattr(self.handler, "dump_state", None)
        if dump_state is not None:
            doc["state"] = dump_state()
        else:
            import base64

            doc["state_base64"] = base64.b64encode(bytes(self.handler.on_snapshot())).decode()
        return doc

    def snapshot_bytes(self) -> bytes:
        """The snapshot a processor would write at this point (same layout)."""
        b = self.breaker
        return msgspec.msgpack.encode(_Snapshot(loop=self.loop.state,
                                                handler=self.handler.on_snapshot(),
                                                breaker=b.snapshot() if b is not None else b""))

    def take_snapshot(self) -> Path:
        """Writes the current state as a snapshot of the directory (atomic). Refuses when
        the output journal lacks outputs the snapshot would count as published: a recovery
        from it would never regenerate them."""
        if self.output_path is not None:
            from .journaltool import last_sequence

            journaled = last_sequence(self.output_path) + 1
            if self.loop.state.published > journaled:
                raise StateError(
                    f"the output journal holds {journaled} outputs but the state at sequence "
                    f"{self.loop.state.last_sequence} has published "
                    f"{self.loop.state.published}: start the processor once (its recovery "
                    "journals the missing outputs), then take the snapshot")
        store = self.snapshots or SnapshotStore(self.directory / "snapshots")
        return store.write(self.loop.state.last_sequence, self.snapshot_bytes(),
                           {"taken_by": "ringlog snapshot take"})
