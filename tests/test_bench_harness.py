"""The benchmark harness's own logic: percentiles, open-loop latency, JSON, compare, report."""

import json

import numpy as np
import pytest

from ringlog.bench import latency, peers, report, results, stats


def test_percentiles_of_uniform_1_to_10000_are_exact():
    p = latency.percentiles(np.arange(1, 10001))
    assert p["p50"] == 5000 and p["p99"] == 9900 and p["p99.9"] == 9990
    assert p["max"] == 10000 and p["count"] == 10000


def test_percentiles_of_empty_sample_is_an_error():
    with pytest.raises(ValueError, match="no latencies"):
        latency.percentiles(np.array([], dtype=np.int64))


def test_intended_times_follow_the_rate():
    t = latency.intended_times(1000, 10_000, 5)
    assert t.tolist() == [1000, 101000, 201000, 301000, 401000]
    with pytest.raises(ValueError):
        latency.intended_times(0, 0, 3)


def _serve(intended, service_ns, stall_at_ns, stall_ns):
    """A one-server queue: each event starts when sent and the server is free."""
    done = np.empty_like(intended)
    free = 0
    for i, t in enumerate(intended.tolist()):
        start = max(t, free)
        if start <= stall_at_ns < start + service_ns or (i and done[i - 1] <= stall_at_ns < start):
            start = max(start, stall_at_ns + stall_ns)
        free = start + service_ns
        done[i] = free
    return done


def test_open_loop_latency_shows_a_100ms_stall_at_10k_per_s_in_p99():
    intended = latency.intended_times(0, 10_000, 20_000)  # 2 s of load
    done = _serve(intended, 10_000, 1_000_000_000, 100_000_000)
    open_loop = latency.percentiles(done - intended)
    assert open_loop["p99"] >= 50_000_000  # the stall is visible
    # A closed-loop view (latency from the moment the server took the event) hides it.
    started = done - 10_000
    closed = latency.percentiles(done - np.maximum(started, intended))
    assert closed["p99"] < 1_000_000


def test_summarize_gives_median_min_max_runs():
    s = stats.summarize([3.0, 1.0, 2.0])
    assert s == {"median": 2.0, "min": 1.0, "max": 3.0, "runs": [3.0, 1.0, 2.0]}
    with pytest.raises(ValueError):
        stats.summarize([])


def _doc(median, unit="events/s"):
    doc = results.new_document({"runs": 3})
    doc["results"].append({"target": "ring", "name": "x", "unit": unit, **stats.summarize(
        [median, median * 0.9, median * 1.1])})
    return doc


def test_results_document_round_trips_through_json(tmp_path):
    doc = _doc(100.0)
    results.save(doc, tmp_path / "a.json")
    assert results.load(tmp_path / "a.json") == json.loads(json.dumps(doc))


def test_load_rejects_a_foreign_json(tmp_path):
    (tmp_path / "b.json").write_text('{"x": 1}')
    with pytest.raises(ValueError, match="not a ringlog results document"):
        results.load(tmp_path / "b.json")


def test_compare_flags_a_20_percent_throughput_regression():
    rows = results.compare(_doc(100.0), _doc(79.0), threshold=0.1)
    assert rows[0]["regression"] and rows[0]["change"] == pytest.approx(-0.21)
    assert not results.compare(_doc(100.0), _doc(95.0), threshold=0.1)[0]["regression"]


def test_compare_treats_latency_increase_as_regression():
    assert results.compare(_doc(100.0, "ns"), _doc(125.0, "ns"), 0.2)[0]["regression"]
    assert not results.compare(_doc(100.0, "ns"), _doc(50.0, "ns"), 0.2)[0]["regression"]


def test_anchor_lines_parse_values_and_key_values():
    text = ("disruptor_1p1c_busyspin_ops_per_s 61234567  # median of 3, min 1, max 2\n"
            "disruptor_latency_busyspin_100k_per_s_ns p50=100 p99=2000 p99.9=5000 max=9000\n"
            "garbage\n")
    got = peers.parse_anchor_lines(text)
    assert got["disruptor_1p1c_busyspin_ops_per_s"] == 61234567.0
    assert got["disruptor_latency_busyspin_100k_per_s_ns"]["p99"] == 2000.0
    assert "garbage" not in got


def test_report_states_machine_runs_and_spread():
    doc = _doc(2_000_000.0)
    doc["results"][0]["ratios"] = {"queue.Queue": 50.0}
    md = report.render(doc, "make bench")
    assert "runs per figure: 3" in md and "cores" in md
    assert "| x | 2.00M | 1.80M - 2.20M | events/s | queue.Queue: 50.00x |" in md


def test_hdr_log_is_written_in_the_standard_format(tmp_path):
    path = tmp_path / "h.hlog"
    latency.to_hdr_log(np.array([100, 200, 300, 100_000]), str(path), tag="t")
    text = path.read_text()
    assert "#[Histogram log format version" in text and "\"StartTimestamp\"" in text


def test_targets_are_met_or_missed_by_how_much_with_the_reason():
    doc = _doc(2_000_000.0)
    doc["results"][0]["ratios"] = {"peer": 0.5}
    goals = [{"target": "ring", "goal": "rate", "row": "x", "min": 1e6, "why": "slow"},
             {"target": "ring", "goal": "ratio", "row": "x", "ratio": "peer", "min": 1.0,
              "why": "because"},
             {"target": "ring", "goal": "lat", "row": "x", "max": 1e6},
             {"target": "ring", "goal": "absent", "row": "nope", "min": 1}]
    got = report.evaluate_targets(doc, goals)
    assert [g["met"] for g in got] == [True, False, False, None]
    assert got[1]["by"] == "0.50x the goal" and got[3]["by"] == "not measured in this run"
    md = report.render(doc, "make bench", targets=goals)
    assert "| ratio | 0.50x | **no** | 0.50x the goal | because |" in md
