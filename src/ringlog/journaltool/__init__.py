"""Journal tools: ``ringlog journal info|dump|verify|tail|repair`` over any journal directory.

Everything here reads a journal without the application's code: payloads are decoded by the
schema descriptor each segment carries in its header (docs/journal-format.md), and control
events by their reserved names. Reading never writes; only ``repair`` changes files, and it
takes the journal's appender lock first so it can never race a live appender.

Verification runs the Cython record scanner (``Segment.scan``: CRC32C and sequence density
without the GIL) segment by segment; dumping streams records and unmaps each segment once
read, so memory stays flat on a journal larger than RAM.

One module per command, on one of the reading basics::

    decode   times (ISO-8601 or ns), payloads by the segment's schema, JSON
      |-- dump     dump, tail: records through a Filter, as a table or JSON lines
      |-- info     info: segments, sequences, counts by type; who holds the lock
      |     `-- verify   verify: scan, index, hints; the first Problem
      |           `-- repair   repair: a plan past the durable end, applied under the lock
"""

from __future__ import annotations

from .decode import PayloadDecoder, b64, format_time, parse_time, to_json
from .dump import TABLE_HEADER, Filter, dump, format_row, last_sequence, select, tail, write_rows
from .info import format_info, info, lock_holder
from .repair import RepairPlan, apply_repair, plan_repair
from .verify import CheckResult, Problem, check

__all__ = [
    "TABLE_HEADER",
    "CheckResult",
    "Filter",
    "PayloadDecoder",
    "Problem",
    "RepairPlan",
    "apply_repair",
    "b64",
    "check",
    "dump",
    "format_info",
    "format_row",
    "format_time",
    "info",
    "last_sequence",
    "lock_holder",
    "parse_time",
    "plan_repair",
    "select",
    "tail",
    "to_json",
    "write_rows",
]
