"""Why each thread of the gateway's server sleeps: one run of ``ringlog serve`` under the load
generator with ``perf record -e sched:sched_switch -g`` on the server, then per thread the
context switches grouped by state and by the C function the thread was in (libc's
``__futex_abstimed_wait_common`` is CPython's GIL wait, ``syscall`` the rings' and the
journal's raw futex waits, ``__sched_yield`` a ring wait's yield, ``fdatasync`` the disk,
``epoll_pwait`` the event loop idle). Needs ``perf`` (software events work in this VM).

    python bench/gateway_switches.py [durable|immediate] [CONNECTIONS] [RATE] [SECONDS]
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_gateway as bg

HEAD = re.compile(r"prev_comm=(\S+) .*prev_state=(\S+)")


def _why(script: str) -> dict[str, collections.Counter[tuple[str, str]]]:
    """``thread -> Counter((state, first user-space function))`` of ``perf script`` text."""
    out: dict[str, collections.Counter[tuple[str, str]]] = collections.defaultdict(
        collections.Counter)
    for block in script.split("\n\n"):
        lines = block.strip().splitlines()
        m = HEAD.search(lines[0]) if lines else None
        if not m:
            continue
        user = [ln.split()[1].split("+")[0] for ln in lines[1:]
                if "kernel.kallsyms" not in ln and len(ln.split()) > 1]
        out[m.group(1)][(m.group(2), user[0] if user else "(kernel)")] += 1
    return out


def main() -> None:
    """Runs once and prints the switches per 1,000 answered orders by thread and reason."""
    a = bg.scenario_args(__doc__, 10.0, 2)
    # recorded over the run less its first and last second (start-up, drain)
    doc, script = bg.record_under(a, lambda pid, data: [
        "perf", "record", "-q", "-e", "sched:sched_switch", "-g", "-p", str(pid), "-o",
        str(data), "--", "sleep", str(a.seconds - 1)], lambda data: subprocess.run(
            ["perf", "script", "-i", str(data)], capture_output=True, text=True,
            check=True).stdout)
    orders = a.rate * (a.seconds - 1) / 1000  # thousands of orders in the recorded window
    lat = doc["latency_ns"] or {}
    print(f"p50 {lat.get('p50', 0) / 1e6:.2f} ms, p99 {lat.get('p99', 0) / 1e6:.2f} ms; "
          "switches per 1,000 orders by thread, state and function:")
    for thread, c in sorted(_why(script).items(), key=lambda kv: -sum(kv[1].values())):
        print(f"{thread}: {sum(c.values()) / orders:.0f}")
        for (state, fn), n in c.most_common(6):
            print(f"    {n / orders:6.1f}  {state:3s} {fn}")


if __name__ == "__main__":
    main()
