"""A seeded frame fuzz with an oracle (black box: frames and answers only).

Each round sends up to 40 frames that must be rejected or answered without the engine, then
one valid Heartbeat that takes the next seq, in one write. Every frame has one documented
answer, in order (docs/protocol.md): an error frame with its code and seq, or ``Ack(seq)`` for a
resend; the round ends with ``Ack`` of the heartbeat. Rejected frames include engine commands
(new orders with a wrong seq or a bad field) that would change the engine's state if one got
through.
"""

from __future__ import annotations

import random
from typing import Any

from .wire import (
    ACK,
    BAD_FRAME,
    BAD_MESSAGE,
    ERROR,
    HEARTBEAT,
    NEW_ORDER,
    SEQUENCE_GAP,
    Peer,
    body_frame,
    frame,
)

ROUND = 40  # < max_errors (50): a round's errors never close the session
_ARRAY_FIRST = set(range(0x90, 0xA0)) | {0xDC, 0xDD, 0x5B, 0x7B}
_NOT_ARRAY_FIRST = [b for b in range(256) if b not in _ARRAY_FIRST]
BAD_BODY = {BAD_FRAME, BAD_MESSAGE}
_BAD: dict[int, list[Any]] = {  # per NewOrder field: values its type or range refuses
    1: [-1, 0, "x", 1 << 40, [1], None],  # seq
    2: [0, -1, 1 << 32, "x", [1]],  # order_id
    3: [-1, 1 << 32, "x"],  # symbol
    4: [256, -1, "x"],  # side
    5: ["x", [1], (1 << 64) - 1],  # qty
    6: ["x", {"a": 1}, 1.5],  # price
}


class Fuzz:
    """The generator and its oracle for one logged-on session whose next seq is R + 1."""

    def __init__(self, seed: int, received: int, token: str, symbol: int) -> None:
        self.rng = random.Random(seed)
        self.received = received
        self.token = token
        self.symbol = symbol
        self.sent = 0

    def _bad_field(self) -> tuple[bytes, Any]:
        """A NewOrder with the right seq and one field of the wrong type or out of range."""
        r = self.rng
        msg: list[Any] = [NEW_ORDER, self.received + 1, r.randrange(1, 1000), self.symbol, 1, 1,
                          100]
        i = r.randrange(1, len(msg))
        msg[i] = r.choice(_BAD[i])
        return frame(*msg), (ERROR, {BAD_MESSAGE}, 0)

    def one(self) -> tuple[bytes, Any]:
        """One frame and its answer: ``(ERROR, codes, seq)`` or ``(ACK, seq)``."""
        r = self.rng
        k = r.randrange(8)
        if k == 0:  # garbage that cannot be an array
            body = bytes([r.choice(_NOT_ARRAY_FIRST)]) + r.randbytes(r.randrange(0, 40))
            return body_frame(body), (ERROR, BAD_BODY, 0)
        if k == 1:  # an unknown tag
            tag = r.choice([0, *range(11, 64), *range(73, 200)])
            return frame(tag, self.received + 1), (ERROR, {BAD_MESSAGE}, 0)
        if k == 2:
            return self._bad_field()
        if k == 3:  # nesting, as a message or inside one
            d = r.choice([2, 10, 100, 1000, 5000])
            nest = b"\x91" * d + b"\x01"
            body = nest if r.random() < 0.5 else b"\x93\x03\x01" + nest
            return body_frame(body), (ERROR, {BAD_MESSAGE}, 0)
        if k == 4:  # a jump: heartbeat or new order
            seq = self.received + 2 + r.randrange(0, 1 << 20)
            if r.random() < 0.5:
                return frame(HEARTBEAT, seq), (ERROR, {SEQUENCE_GAP}, seq)
            return frame(NEW_ORDER, seq, 1, self.symbol, 1, 1, 100), (ERROR, {SEQUENCE_GAP}, seq)
        if k == 5 and self.received:  # a resend of a heartbeat: its Ack again
            seq = r.randrange(1, self.received + 1)
            return frame(HEARTBEAT, seq), (ACK, seq)
        if k == 6:  # JSON garbage
            body = b"[" + r.randbytes(r.randrange(0, 20)).replace(b"]", b"") + b"}"
            return body_frame(body), (ERROR, BAD_BODY, 0)
        # a logon on a logged-on connection
        return frame(1, 0, self.token), (ERROR, {BAD_MESSAGE}, 0)

    def round(self) -> tuple[bytes, list[Any]]:
        """A round's bytes and its expected answers in order."""
        frames, expect = [], []
        for _ in range(self.rng.randrange(0, ROUND + 1)):
            f, e = self.one()
            frames.append(f)
            expect.append(e)
        self.received += 1
        frames.append(frame(HEARTBEAT, self.received))
        expect.append((ACK, self.received))
        self.sent += len(frames)
        return b"".join(frames), expect


def check(got: list[Any], expect: list[Any]) -> str:
    """'' if the answers match the oracle, else what differs."""
    if len(got) != len(expect):
        return f"{len(got)} answers for {len(expect)} frames: {got} vs {expect}"
    for i, (m, e) in enumerate(zip(got, expect, strict=True)):
        if e[0] == ACK:
            if m != [ACK, e[1]]:
                return f"frame {i}: {m}, expected Ack({e[1]})"
        elif m[0] != ERROR or m[1] not in e[1] or m[3] != e[2]:
            return f"frame {i}: {m}, expected an error with code in {e[1]} and seq {e[2]}"
    return ""


def run(peer: Peer, fuzz: Fuzz, frames: int) -> int:
    """Sends rounds until ``frames`` frames went out; asserts every answer; returns rounds."""
    rounds = 0
    while fuzz.sent < frames:
        data, expect = fuzz.round()
        peer.send(data)
        got = peer.until(lambda m, want=fuzz.received: m == [ACK, want], timeout=30)
        problem = check(got, expect)
        assert not problem, f"round {rounds}: {problem}"
        rounds += 1
    return rounds

