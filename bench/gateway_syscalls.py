"""System calls of the gateway's thread per order: one run of ``ringlog serve`` under the load
generator with ``perf stat`` counting the syscall tracepoints of the server's main thread
(the gateway's event loop) for 5 s of the run. Needs ``perf`` and the syscalls tracepoints.

    python bench/gateway_syscalls.py [durable|immediate] [CONNECTIONS] [RATE] [SECONDS]

Per system call: the count per second and per 1,000 orders (socket writes and reads, the
journals' pwrite(), epoll iterations, futex calls), and the orders answered per second.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_gateway as bg

CALLS = ("write", "writev", "sendmsg", "pwrite64", "read", "recvfrom", "epoll_pwait",
         "futex")
SECONDS = 5


def main() -> None:
    """Runs once and prints the gateway thread's system calls per second and per order."""
    a = bg.scenario_args(__doc__, 10.0, SECONDS + 2)
    events = ",".join(f"syscalls:sys_enter_{c}" for c in CALLS)
    doc, text = bg.record_under(a, lambda pid, out: [
        "sh", "-c", f"sleep 2; exec perf stat -x, -e {events} -t {pid} -o {out} -- sleep "
        f"{SECONDS}"], Path.read_text)
    rate = doc["achieved_rate"] or 1.0
    print(f"{rate:.0f} orders/s answered; the gateway thread's system calls over {SECONDS} s:")
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_") and parts[0].isdigit():
            per_s = int(parts[0]) / SECONDS
            print(f"  {parts[2][len('syscalls:sys_enter_'):]:12s} {per_s:10.0f}/s "
                  f"{1000 * per_s / rate:8.1f} per 1,000 orders")


if __name__ == "__main__":
    main()
