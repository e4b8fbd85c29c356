"""Where each thread's CPU went, from a ``perf record -g`` profile, by category.

::

    perf record -e cpu-clock -F 10000 -g -o F -- python bench/build_ab.py --child 2000000
    perf script -i F -F comm,ip,sym,dso | python bench/perf_categories.py [--min N]
    perf script -i F -F comm,ip,sym,dso | python bench/perf_categories.py --functions COMM
        [--ns-per-sample NS]

Each sample goes to the first category any frame of its stack names (pwrite, sched_yield,
futex, page fault, fdatasync), else to where its leaf frame is (the Python interpreter,
ringlog's C modules, the engine, other kernel or user code); one line per thread name with
at least ``--min`` samples (default 100). ``perf report --children --comm X`` can credit a
thread with stacks of others (it showed 20% sched_yield on the loop thread where its own
samples hold 0.2%); counting the samples of ``perf script`` is exact.

``--functions COMM``: instead, the leaf functions of thread ``COMM``'s samples (its own time
per function), with ``--ns-per-sample`` (the sampling period over the events of the run,
e.g. 200000 / 2000000 = 0.1 for -F 5000 over 2M commands) as ns per event.
"""

from __future__ import annotations

import collections
import sys

# a sample is in the first category any of its frames names
BY_FRAME = (("pwrite", "__libc_pwrite"), ("sched_yield", "sched_yield"), ("futex", "futex"),
            ("page fault", "asm_exc_page_fault"), ("fdatasync", "fdatasync"))
# else by the leaf frame's object
BY_LEAF = (("python interpreter", "libpython"), ("engine", "/engine/"),
           ("ringlog C", "ringlog/_"), ("other kernel", "kernel"))


def category(frames: list[str]) -> str:
    """The category of one sample (its frames, leaf first)."""
    for name, key in BY_FRAME:
        if any(key in f for f in frames):
            return name
    leaf = frames[0] if frames else ""
    return next((name for name, key in BY_LEAF if key in leaf), "other user")


def samples(lines: list[str]) -> list[tuple[str, list[str]]]:
    """(thread name, frames leaf first) of each sample of ``perf script -F comm,ip,sym,dso``."""
    out: list[tuple[str, list[str]]] = []
    comm, frames = None, []
    for line in [*lines, ""]:
        if line.strip() and not line[0].isspace():  # a sample's first line: its comm
            comm, frames = line.split()[0], []
        elif line.strip():
            frames.append(line.strip())
        elif comm is not None:
            out.append((comm, frames))
            comm = None
    return out


def count(lines: list[str]) -> dict[str, collections.Counter[str]]:
    """Samples per thread name and category."""
    per: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for comm, frames in samples(lines):
        per[comm][category(frames)] += 1
    return per


def _symbol(frame: str) -> str:
    """``ADDRESS SYMBOL (OBJECT)`` -> ``SYMBOL`` (the frame as it is without a symbol)."""
    parts = frame.split(None, 1)
    return parts[1].split(" (")[0] if len(parts) > 1 else frame


def functions(lines: list[str], comm: str) -> collections.Counter[str]:
    """Samples of thread ``comm`` per leaf function (its symbol, without the address)."""
    return collections.Counter(_symbol(f[0]) for c, f in samples(lines) if c == comm and f)


def _usage(why: str) -> None:
    print(f"perf_categories.py: {why}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str]) -> None:
    if "--functions" in argv:
        i = argv.index("--functions")
        try:
            comm = argv[i + 1]
            ns = float(argv[argv.index("--ns-per-sample") + 1]) \
                if "--ns-per-sample" in argv else 0.0
        except (IndexError, ValueError):
            _usage("--functions COMM [--ns-per-sample NS] (a number)")
        got = functions(sys.stdin.read().splitlines(), comm)
        total = sum(got.values())
        if not total:
            _usage(f"no samples of thread {comm!r} in the input")
        print(f"{comm}: {total} samples")
        for fn, k in got.most_common(30):
            print(f"  {100 * k / total:5.1f}%" + (f" {k * ns:7.1f} ns" if ns else "") + f"  {fn}")
        return
    least = int(argv[argv.index("--min") + 1]) if "--min" in argv else 100
    for comm, c in sorted(count(sys.stdin.read().splitlines()).items(),
                          key=lambda kv: -sum(kv[1].values())):
        total = sum(c.values())
        if total >= least:
            print(f"{comm} {total} samples: " + ", ".join(
                f"{k} {v * 100 / total:.1f}%" for k, v in c.most_common()))


if __name__ == "__main__":
    main(sys.argv[1:])
