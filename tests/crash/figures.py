"""The integrity figures of docs/journal-format.md: damage trials by kind and simulated power
losses per policy. Run from the repository root:

    .venv/bin/python tests/crash/figures.py [--trials 40] [--crashes 1000]

Damage trials: a 3-segment journal (all records durable) gets one kind of damage at a random
place; `journal verify` must name it (detected), open must refuse corruption (refused) and
repair must fix hint/index/torn damage without dropping an intact record (rebuilt). "silent"
counts trials where verify passed yet records were missing: it must stay 0.
"""

from __future__ import annotations

import argparse
import random
import shutil
import struct
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from crash.test_power_loss import simulate  # noqa: E402
from ringlog import JournalCorruptError  # noqa: E402
from ringlog._journal import HEADER_SIZE  # noqa: E402
from ringlog.journal import Journal, JournalReader, list_segments  # noqa: E402
from ringlog.journaltool import apply_repair, check, plan_repair  # noqa: E402

N, SEG = 3000, 1 << 16


def _make(d: Path, durability: str = "group") -> None:
    with Journal(d, segment_size=SEG, first_segment_size=SEG, durability=durability) as j:
        for i in range(N):
            j.append(struct.pack("<q", i) * (1 + i % 4), 1)


def _offsets(seg: Path) -> list[int]:
    return [r.offset for r in JournalReader(seg.parent) if r.segment.path == str(seg)]


def _flip(p: Path, pos: int) -> None:
    raw = bytearray(p.read_bytes())
    raw[pos] ^= 1 << random.randrange(8)
    p.write_bytes(raw)


def damage(d: Path, kind: str, rnd: random.Random) -> str:
    """Applies one damage of ``kind``; returns the kind of problem expected."""
    segs = [p for _, p in list_segments(d)]
    if kind == "record_bit_flip":
        seg = rnd.choice(segs)
        offs = _offsets(seg)
        i = rnd.randrange(len(offs))
        _flip(seg, rnd.randrange(offs[i], offs[i] + 64))
        return "corrupt"
    if kind == "zeroed_range_64k_active":  # issue item 1: a lost write in the last segment
        seg = segs[-1]
        offs = _offsets(seg)
        start = offs[rnd.randrange(len(offs) // 2)]
        raw = bytearray(seg.read_bytes())
        raw[start:start + 65536] = bytes(min(65536, len(raw) - start))
        seg.write_bytes(raw)
        return "corrupt"
    if kind == "durable_mark_flip":
        _flip(rnd.choice(segs), rnd.randrange(HEADER_SIZE - 16, HEADER_SIZE))
        return "hint"
    if kind == "index_flip":
        idx = rnd.choice([p.with_suffix(".idx") for p in segs[:-1]])
        _flip(idx, rnd.randrange(idx.stat().st_size))
        return "index"
    if kind == "header_flip":
        _flip(rnd.choice(segs), rnd.randrange(0, 48))
        return "header"
    if kind == "missing_segment":
        segs[rnd.randrange(1, len(segs) - 1)].unlink()
        return "gap"
    raise ValueError(kind)


KINDS = ["record_bit_flip", "zeroed_range_64k_active", "durable_mark_flip", "index_flip",
         "header_flip", "missing_segment"]


def damage_trials(trials: int, seed: int = 13) -> list[dict[str, object]]:
    rnd = random.Random(seed)
    random.seed(seed)
    tmp = Path(tempfile.mkdtemp())
    pristine = tmp / "pristine"
    _make(pristine)
    rows = []
    for kind in KINDS:
        row = {"kind": kind, "trials": 0, "detected": 0, "refused": 0, "rebuilt": 0,
               "silent": 0}
        for t in range(trials):
            d = tmp / f"{kind}-{t}"
            shutil.copytree(pristine, d)
            expect = damage(d, kind, rnd)
            row["trials"] += 1
            problem = check(d, live=False).problem
            if problem is not None and (problem.kind == expect or
                                        (expect == "header" and problem.kind == "corrupt")):
                row["detected"] += 1
            if expect in ("hint", "index"):
                apply_repair(d, plan_repair(d, live=False), tmp / "side" / f"{kind}-{t}")
                if check(d, live=False).problem is None and \
                        sum(1 for _ in JournalReader(d)) == N:
                    row["rebuilt"] += 1
            else:
                try:
                    Journal(d, segment_size=SEG).close()
                except JournalCorruptError:
                    row["refused"] += 1
                else:
                    if problem is None:
                        row["silent"] += 1
            shutil.rmtree(d)
        rows.append(row)
    shutil.rmtree(tmp)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=40, help="damage trials per kind")
    ap.add_argument("--crashes", type=int, default=1000, help="power losses per policy")
    args = ap.parse_args()
    print("| damage | trials | detected by verify | refused by open | rebuilt by repair | "
          "silent |")
    print("|---|---|---|---|---|---|")
    for r in damage_trials(args.trials):
        print(f"| {r['kind']} | {r['trials']} | {r['detected']} | {r['refused']} | "
              f"{r['rebuilt']} | {r['silent']} |")
    print()
    print("| policy | simulated power losses | crash points (append/roll/snapshot/prune) | "
          "failures |")
    print("|---|---|---|---|")
    for policy in ("sync", "group"):
        tmp = Path(tempfile.mkdtemp())
        done, failures, counts = simulate(tmp, policy, args.crashes, seed=5)
        pts = "/".join(str(counts.get(k, 0)) for k in ("append", "roll", "snapshot", "prune"))
        print(f"| {policy} | {done} | {pts} | {len(failures)} |")
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
