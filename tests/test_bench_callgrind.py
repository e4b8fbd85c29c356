"""ringlog.bench.callgrind: per-thread instruction totals from callgrind's profiles."""

import pytest

from ringlog.bench import callgrind
from ringlog.errors import RingLogError


def _profile(total):
    return (f"# callgrind format\nversion: 1\ncmd: python -c ...\npart: 1\n\nevents: Ir\n"
            f"fn=(1) main\n0 {total}\n\nsummary: {total}\n\n\ntotals: {total}\n").encode()


def test_thread_totals_reads_each_threads_profile_and_skips_the_empty_bare_file():
    got = callgrind.thread_totals({"cg.out.41": b"", "cg.out.41-01": _profile(900),
                                   "cg.out.41-02": _profile(7), "cg.out.41-03": _profile(350)})
    assert got == {1: 900, 2: 7, 3: 350}
    assert callgrind.busiest_thread(got) == (3, 350)  # the main thread (1) is not a candidate


@pytest.mark.parametrize("profiles", [{"cg.out.41-01": b"events: Ir\n"},
                                      {"cg.out.41": _profile(3)}])
def test_a_profile_without_totals_or_thread_number_is_an_error_naming_it(profiles):
    with pytest.raises(callgrind.CallgrindError, match=r"cg\.out\.41") as e:
        callgrind.thread_totals(profiles)
    assert isinstance(e.value, RingLogError) and isinstance(e.value, RuntimeError)


def test_a_run_with_only_the_main_thread_has_no_busiest_thread():
    with pytest.raises(callgrind.CallgrindError, match="no thread besides the main one"):
        callgrind.busiest_thread({1: 100})


@pytest.mark.skipif(not callgrind.available(), reason="needs valgrind")
def test_a_threads_instructions_are_counted_apart_from_the_main_threads():
    code = ("import threading, sys\n"
            "n = int(sys.argv[1])\n"
            "t = threading.Thread(target=lambda: sum(range(n)))\n"
            "t.start(); t.join(); print('done')\n")
    small, out = callgrind.run_threads(code, ["10000"], timeout=600)
    large, _ = callgrind.run_threads(code, ["1010000"], timeout=600)
    assert out.strip() == "done"
    (ts, s), (tl, big) = callgrind.busiest_thread(small), callgrind.busiest_thread(large)
    assert ts == tl == 2
    # a million more additions in the thread; the main thread's count hardly moves
    assert big - s > 10_000_000
    assert abs(large[1] - small[1]) < 0.05 * small[1]


@pytest.mark.parametrize(("diff", "rel", "ns", "says"), [
    ([-1.0, 3.0, 0.5, -0.2, 1.0], [-0.03, 0.1, 0.02, -0.01, 0.03], False, "met"),
    ([30.0, 31.0, 29.0, 30.0, 30.5], [1.5, 1.6, 1.4, 1.5, 1.5], True, "NOT met"),  # > 10 ns
    ([-91.0, 216.0, -309.0, 10.0, 5.0], [-5.6, 19.6, -21.9, 0.8, 0.4], True, "not resolved"),
])
def test_the_counters_goal_is_judged_only_where_the_pairs_resolve_it(diff, rel, ns, says,
                                                                      monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "bench"))
    import bench_counters

    assert bench_counters.goal(diff, rel, ns).startswith(says)
