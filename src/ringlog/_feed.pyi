"""Stub of ringlog._feed: a replica's input stream message into the ring, in C."""

from typing import Any

def publish_message(ring: Any, data: bytes, stream_seq: int, skip: int, mark: bool,
                    sessions: list[tuple[int, int, int]],
                    timeout_ns: int = -1) -> tuple[int, int]: ...
