"""Stub of ringlog._emit: output batches cut from a processor's journals in C."""

from pathlib import Path
from typing import Any

class JournalCursor:
    next_sequence: int
    def __init__(self, path: str | Path, from_sequence: int, verify: bool = True) -> None: ...
    def close(self) -> None: ...

class OpenMessage:
    seq: int
    commands: int
    mark: int
    seen: int
    end: int
    def __init__(self, seq: int, commands: int, mark: int) -> None: ...

class BatchCutter:
    start_seq: int
    first_output: int
    max_bytes: int
    start_output: int
    open_messages: list[OpenMessage]
    collected: int
    input_tail: int
    output_tail: int
    def __init__(self, processor: Any, start_seq: int, in_from: int, out_from: int,
                 max_bytes: int = ..., types: tuple[int, ...] | list[int] = ...,
                 exclude: bool = ..., start_output: int = ...) -> None: ...
    def poll(self) -> list[tuple[int, int, int, bytes]]: ...
    def close(self) -> None: ...
