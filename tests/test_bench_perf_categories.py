"""bench/perf_categories.py: each sample counted once, in the first category its stack
names (a syscall under the interpreter is the syscall's), per thread name."""

from pathlib import Path

SCRIPT = """\
rl-loop
\tffffffff8 copy_folio_from_iter_atomic ([kernel.kallsyms])
\tffffffff9 __x64_sys_pwrite64 ([kernel.kallsyms])
\t7f01 __libc_pwrite (/usr/lib/libc.so.6)
\t7f02 _PyEval_EvalFrameDefault (/usr/lib/libpython3.11.so.1.0)

rl-loop
\t13c80 __pyx_f_7ringlog_5_loop_9LogicCore__business_run (/x/src/ringlog/_loop.cpython.so)

rl-loop
\t2000 __pyx_f_book (/x/src/ringlog/engine/_book.cpython.so)

python
\tffffffff1 do_sched_yield ([kernel.kallsyms])
\t7f03 __sched_yield (/usr/lib/libc.so.6)
"""


def test_samples_are_counted_per_thread_in_their_first_category(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "bench"))
    import perf_categories

    got = perf_categories.count(SCRIPT.splitlines())
    assert dict(got["rl-loop"]) == {"pwrite": 1, "ringlog C": 1, "engine": 1}
    assert dict(got["python"]) == {"sched_yield": 1}


def test_functions_counts_one_thread_by_leaf_function(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "bench"))
    import perf_categories

    got = perf_categories.functions(SCRIPT.splitlines(), "rl-loop")
    assert dict(got) == {"copy_folio_from_iter_atomic": 1, "__pyx_f_book": 1,
                         "__pyx_f_7ringlog_5_loop_9LogicCore__business_run": 1}
    assert not perf_categories.functions(SCRIPT.splitlines(), "nobody")
