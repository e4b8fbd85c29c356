"""Each bench target runs end to end in smoke mode and returns well-formed rows."""

import pytest

from ringlog.bench import runner


@pytest.mark.parametrize("target", ["ring", "journal", "processor", "breaker"])
def test_bench_target_smoke_run_returns_rows(target):
    mod = runner.load_target(target)
    rows = mod.run(runs=1, smoke=True, peers={})
    assert rows
    for r in rows:
        assert r["target"] == target and r["unit"]
        assert r["median"] > 0 or (r["unit"] == "bytes" and r["median"] >= 0)
        assert r["min"] <= r["median"] <= r["max"] and len(r["runs"]) >= 1
