"""CPU placement: ProcessorConfig.loop_cpus / background_cpus pin the loop thread and the
background threads (stages, the journals' group-commit threads), a CPU this process may not
use fails start() naming the field, and a bad set fails at construction."""

import os

import pytest
from test_processor import CFG, Summer, ev

from ringlog.errors import ConfigError
from ringlog.processor import Processor, ProcessorConfig

ALLOWED = sorted(os.sched_getaffinity(0))


def _cfg(**kw):
    return ProcessorConfig(**{**{f: getattr(CFG, f) for f in CFG.__struct_fields__}, **kw})


def _affinity(thread):
    return frozenset(os.sched_getaffinity(thread.native_id))


@pytest.mark.parametrize("topology", ["inline", "staged"])
def test_threads_are_pinned_as_configured(tmp_path, topology):
    loop, background = frozenset({ALLOWED[-1]}), frozenset({ALLOWED[0]})
    outs = []
    p = Processor(Summer(), tmp_path, _cfg(topology=topology, loop_cpus=loop,
                                            background_cpus=background), on_output=outs.append)
    p.start()
    try:
        by_name = {t.name: t for t in p._threads}
        assert _affinity(by_name["ringlog-loop"]) == loop
        others = [t for n, t in by_name.items() if n != "ringlog-loop"]
        assert others  # staged: the journaller and the output stage; inline: the output stage
        assert len(p.output.threads) == 2  # its group commit and its write-behind writer
        for t in [*others, *p.input.threads, *p.output.threads]:
            assert _affinity(t) == background, t.name
        assert os.sched_getaffinity(0) == set(ALLOWED)  # the caller's thread is left alone
        for v in range(20):
            p.publish(ev(v), 5)
        p.drain(timeout=30)
        assert p.handler.count == 20 and len(outs) == 20
    finally:
        p.stop()


def test_no_placement_leaves_threads_where_the_os_puts_them(tmp_path):
    p = Processor(Summer(), tmp_path, _cfg())
    p.start()
    try:
        for t in [*p._threads, *p.input.threads, *p.output.threads]:
            assert _affinity(t) == frozenset(ALLOWED), t.name
    finally:
        p.stop()


def test_a_cpu_this_process_may_not_use_fails_start_naming_the_field(tmp_path):
    missing = max(ALLOWED) + 1000
    p = Processor(Summer(), tmp_path, _cfg(background_cpus=frozenset({ALLOWED[0], missing})))
    with pytest.raises(ConfigError) as e:
        p.start()
    assert "ProcessorConfig.background_cpus" in str(e.value) and str(missing) in str(e.value)
    assert p.state == "recovered" and not p._threads  # nothing started
    p.stop()
    # the directory is free again: a processor without the bad CPU starts in it
    q = Processor(Summer(), tmp_path, _cfg())
    q.start()
    q.stop()


@pytest.mark.parametrize("value, word", [(frozenset(), "non-empty"), (frozenset({-1}), ">= 0"),
                                         ([0.5], "int")])
def test_a_bad_cpu_set_fails_at_construction(value, word):
    with pytest.raises(ConfigError) as e:
        ProcessorConfig(loop_cpus=value)
    assert "ProcessorConfig.loop_cpus" in str(e.value) and word in str(e.value)
