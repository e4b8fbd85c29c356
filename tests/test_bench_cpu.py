"""ringlog.bench.cpu: per-thread CPU and context switches from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from ringlog.bench import cpu

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux /proc")


def _burn(ns: int) -> None:
    """Spends about ``ns`` of this thread's own CPU time (not wall time)."""
    end = time.thread_time_ns() + ns
    while time.thread_time_ns() < end:
        pass


def test_cpu_meter_without_polling_reports_an_ended_thread_as_exited():
    t = threading.Thread(target=_burn, args=(60_000_000,), name="burner-x")
    with cpu.CpuMeter(poll=None) as m:
        t.start()
        t.join(30)
    rep = m.report
    assert rep is not None
    assert rep.self_ns >= 60_000_000
    assert "burner-x" not in rep.by_name  # never sampled while it had its name
    # its CPU is still counted: under (exited), or under the OS name if /proc still listed it
    others = rep.threads_ns - rep.by_name["MainThread"].cpu_ns
    assert others >= 40_000_000  # getrusage is coarser than schedstat


def test_cpu_meter_polling_keeps_a_thread_that_ended_inside_the_block():
    stop = threading.Event()
    t = threading.Thread(target=lambda: (_burn(80_000_000), stop.wait(30)), name="burner-y")
    with cpu.CpuMeter(poll=0.01) as m:
        t.start()
        while t.is_alive() and not stop.is_set():
            # wait until the meter has seen the thread's whole burn, then let it end
            seen = [x for x in m._seen.values() if x.name == "burner-y"]
            if seen and seen[0].cpu_ns >= 80_000_000:
                break
            time.sleep(0.005)
        stop.set()
        t.join(30)
    use = m.report.by_name["burner-y"]
    assert use.cpu_ns >= 80_000_000
    assert "cpu-meter" not in m.report.by_name  # the sampler is not measured


def test_cpu_meter_with_a_live_thread_attributes_cpu_to_it_and_not_to_main():
    go, done, release = threading.Event(), threading.Event(), threading.Event()

    def body():
        go.wait(30)
        _burn(50_000_000)
        done.set()
        release.wait(30)  # alive until the meter's end sample

    t = threading.Thread(target=body, name="burner-z")
    t.start()
    with cpu.CpuMeter(poll=None) as m:
        go.set()
        done.wait(30)
    release.set()
    t.join(30)
    per = m.per_event(1000)
    assert per["threads"]["burner-z"]["cpu_ns"] * 1000 >= 50_000_000
    assert per["threads"]["burner-z"]["cpu_ns"] > per["threads"]["MainThread"]["cpu_ns"]
    assert per["cpu_ns_total"] * 1000 >= 50_000_000


def test_name_thread_sets_the_os_name_seen_by_the_sampler():
    names = {}

    def body():
        assert cpu.name_thread("ringlog-test1")
        names["tid"] = threading.get_native_id()
        names["sample"] = cpu.sample()

    t = threading.Thread(target=body)
    t.start()
    t.join(30)
    assert names["sample"].threads[names["tid"]].name == "ringlog-test1"


def test_sleeping_thread_counts_voluntary_context_switches():
    def body():
        for _ in range(20):
            time.sleep(0.001)

    hold = threading.Event()
    t = threading.Thread(target=lambda: (body(), hold.wait(30)), name="sleeper")
    with cpu.CpuMeter(poll=None) as m:
        t.start()
        while t.is_alive() and not _slept(t):
            time.sleep(0.005)
    hold.set()
    t.join(30)
    per = m.per_event(20)
    assert per["threads"]["sleeper"]["vcs_per_1k"] >= 20 * 1000 / 20


def _slept(t: threading.Thread) -> bool:
    s = cpu.thread_cpu(t.native_id)
    return s is not None and s.voluntary >= 20


def test_cpu_report_counts_child_process_cpu():
    code = "import time\nend=time.process_time()+0.05\nwhile time.process_time()<end: pass"
    with cpu.CpuMeter(poll=None) as m:
        subprocess.run([sys.executable, "-c", code], check=True)
    assert m.report.children_ns >= 50_000_000
    assert m.per_event(1)["cpu_ns_children"] >= 50_000_000


def test_per_event_before_the_block_ends_is_an_error():
    m = cpu.CpuMeter(poll=None)
    with pytest.raises(RuntimeError):
        m.per_event(1)
