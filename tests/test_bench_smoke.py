"""Each bench target present in bench/ runs end to end in smoke mode and returns rows that the
results schema accepts (a target lands by adding bench/bench_<target>.py: it is picked up here)."""

import pytest

from ringlog.bench import results, runner

PRESENT = [t for t in runner.TARGETS if (runner.bench_dir() / f"bench_{t}.py").exists()]


def test_the_long_standing_targets_are_present():
    assert {"ring", "journal", "processor", "breaker", "engine"} <= set(PRESENT)


@pytest.mark.parametrize("target", PRESENT)
def test_bench_target_smoke_run_returns_rows(target):
    mod = runner.load_target(target)
    rows = mod.run(runs=1, smoke=True, peers={})
    assert rows
    for r in rows:
        assert r["target"] == target and r["unit"]
        if r.get("median") is not None:
            # a size may be zero and a backlog may shrink; every rate and time is positive
            if r["name"].endswith("_backlog_growth"):
                pass
            elif r["unit"] == "bytes":
                assert r["median"] >= 0
            else:
                assert r["median"] > 0
            assert r["min"] <= r["median"] <= r["max"] and r["runs"]
    doc = results.new_document({"runs": 1, "smoke": True, "targets": [target]})
    doc["results"] = rows
    results.validate(doc)
