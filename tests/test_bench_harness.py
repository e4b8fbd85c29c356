"""The benchmark harness's own logic: percentiles, open-loop latency, HdrHistogram logs, JSON,
compare, peers, progress, plots, report and --handler through the pipeline."""

import json
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from ringlog import cli
from ringlog.bench import latency, peers, pipeline, plots, report, results, runner, stats
from ringlog.bench.progress import Progress


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


def _doc(median, unit="events/s", spread=0.1, name="x"):
    doc = results.new_document({"runs": 3})
    doc["results"].append({"target": "ring", "name": name, "unit": unit, **stats.summarize(
        [median, median * (1 - spread), median * (1 + spread)])})
    return doc


def test_results_document_round_trips_through_json(tmp_path):
    doc = _doc(100.0)
    results.save(doc, tmp_path / "a.json")
    assert results.load(tmp_path / "a.json") == json.loads(json.dumps(doc))


def test_merge_replaces_only_the_rerun_targets_rows_in_place_and_says_so(tmp_path):
    def doc(targets, rows):
        d = results.new_document({"runs": 3, "targets": targets})
        d["results"] = [{"target": t, "name": n, "unit": "events/s",
                         **stats.summarize([v])} for t, n, v in rows]
        return d

    base = doc(["ring", "processor", "engine"], [("ring", "r", 1.0), ("processor", "p1", 1.0),
                                                 ("processor", "p2", 1.0), ("engine", "e", 1.0)])
    new = doc(["processor"], [("processor", "p1", 2.0), ("processor", "p3", 3.0)])
    out = results.merge(base, new)
    assert [(r["name"], r["median"]) for r in out["results"]] == [
        ("r", 1.0), ("p1", 2.0), ("p3", 3.0), ("e", 1.0)]
    assert out["merged"][0]["targets"] == ["processor"] and base["results"][1]["median"] == 1.0
    results.save(out, tmp_path / "m.json")  # still a valid document
    text = report.render(results.load(tmp_path / "m.json"), "make bench")
    assert f"re-measured {new['created']}: processor (3 runs per figure" in text
    # a fold from another machine says which; one from the document's own machine does not
    other = doc(["engine"], [("engine", "e", 5.0)])
    other["machine"] = dict(other["machine"], cpu="Other CPU", cores=64)
    text = report.render(results.merge(out, other), "make bench")
    assert f"re-measured {other['created']} on Other CPU, 64 cores" in text
    assert f"re-measured {new['created']}: processor" in text



def test_merge_keeps_the_old_rows_of_a_target_that_failed_in_the_rerun(tmp_path):
    def doc(targets, rows):
        d = results.new_document({"runs": 3, "targets": targets})
        d["results"] = [{"target": t, "name": n, "unit": "events/s",
                         **stats.summarize([v])} for t, n, v in rows]
        return d

    base = doc(["gateway", "engine"], [("gateway", "g", 1.0), ("engine", "e", 1.0)])
    new = doc(["gateway", "engine"], [("engine", "e", 2.0)])  # the gateway target raised
    out = results.merge(base, new)
    assert [(r["name"], r["median"]) for r in out["results"]] == [("g", 1.0), ("e", 2.0)]
    assert out["merged"][0]["targets"] == ["engine"]
    assert out["merged"][0]["failed"] == ["gateway"]
    results.save(out, tmp_path / "m.json")
    text = report.render(results.load(tmp_path / "m.json"), "make bench")
    assert "gateway failed in it and kept the older rows" in text

def test_load_rejects_a_foreign_json(tmp_path):
    (tmp_path / "b.json").write_text('{"x": 1}')
    with pytest.raises(ValueError, match="not a ringlog results document"):
        results.load(tmp_path / "b.json")


def test_compare_flags_a_20_percent_throughput_regression():
    rows = results.compare(_doc(100.0, spread=0.02), _doc(79.0, spread=0.02), threshold=0.1)
    assert rows[0]["regression"] and rows[0]["change"] == pytest.approx(-0.21)
    assert rows[0]["verdict"] == "regression"
    small = results.compare(_doc(100.0, spread=0.01), _doc(95.0, spread=0.01), threshold=0.1)
    assert not small[0]["regression"] and small[0]["verdict"] == "within threshold"


def test_compare_treats_latency_increase_as_regression():
    assert results.compare(_doc(100.0, "ns", 0.02), _doc(125.0, "ns", 0.02), 0.2)[0][
        "regression"]
    better = results.compare(_doc(100.0, "ns", 0.02), _doc(50.0, "ns", 0.02), 0.2)[0]
    assert not better["regression"] and better["verdict"] == "improvement"


def test_compare_does_not_call_a_change_within_the_noise_a_regression():
    # 3 runs spread +-30%: a 21% lower median is not significant (Welch's t-test)
    rows = results.compare(_doc(100.0, spread=0.3), _doc(79.0, spread=0.3), threshold=0.1)
    assert rows[0]["verdict"] == "not significant" and not rows[0]["regression"]
    one_run = _doc(79.0)
    one_run["results"][0]["runs"] = [79.0]
    assert results.compare(_doc(100.0), one_run)[0]["verdict"] == "too few runs"


def test_compare_leaves_out_the_rows_of_peer_libraries():
    old, new = _doc(100.0, spread=0.01), _doc(50.0, spread=0.01)
    for d, v in ((old, 100.0), (new, 50.0)):  # queue.Queue got slower: not our regression
        d["results"] += _doc(v, spread=0.01, name="peer_queue.Queue_1p1c")["results"]
    rows = results.compare(old, new)
    assert [r["name"] for r in rows] == ["x"]


def test_welch_t_test_against_known_values():
    # by hand: means 2.5 and 5, s^2/n 5/12 and 1/2; t = 2.5 / sqrt(11/12) = 2.611,
    # df = (11/12)^2 / ((5/12)^2/3 + (1/2)^2/4) = 6.98 -> critical t(6) = 2.447
    t = stats.t_test([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0, 7.0])
    assert t.t == pytest.approx(2.6112, abs=1e-3) and t.df == pytest.approx(6.98, abs=0.01)
    assert t.significant
    assert not stats.t_test([1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0, 6.0]).significant
    assert stats.t_test([5.0, 5.0], [5.0, 5.0]) == (0.0, 2.0, False)
    assert stats.t_test([1.0], [2.0, 3.0]) is None


def test_figures_are_shown_with_their_units():
    assert stats.fmt_value(850, "ns") == "850 ns"
    assert stats.fmt_value(12_345, "ns") == "12.3 µs"
    assert stats.fmt_value(4.56e6, "ns") == "4.56 ms"
    assert stats.fmt_value(2.5e6, "events/s") == "2.5 M events/s"
    assert stats.fmt_value(65536, "bytes") == "64 KiB"
    assert stats.fmt_value(None, "ns") == "-"


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
    assert ("| x | 2 M events/s | 1.8 M events/s - 2.2 M events/s | queue.Queue: 50.00x |"
            in md)


def test_a_rewritten_report_keeps_the_figures_measured_apart():
    doc = _doc(2_000_000.0)
    apart = (f"{report.APART}\n\n### Counters' cost\n\n`python bench/bench_counters.py`: "
             "+0.1% (5 pairs)\n")
    old = report.render(doc, "make bench") + apart
    assert report.kept_section(old) == apart
    new = report.render(_doc(3_000_000.0), "make bench", kept=report.kept_section(old))
    assert new.endswith(apart) and "3 M events/s" in new and "2 M events/s" not in new
    assert report.kept_section(report.render(doc, "make bench")) == ""


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


# -- percentiles against known distributions ---------------------------------------------------

def test_percentiles_of_an_exponential_sample_match_its_quantiles():
    mean = 10_000.0
    x = np.random.default_rng(7).exponential(mean, 400_000).astype(np.int64)
    p = latency.percentiles(x)
    for q in (50, 90, 99):
        assert p[f"p{q}"] == pytest.approx(-mean * np.log(1 - q / 100), rel=0.03)


def test_percentiles_of_a_bimodal_sample_land_in_the_right_mode():
    # 99% at 1 us, 1% at 1 ms: p99 is still the fast mode, p99.9 the slow one
    x = np.concatenate([np.full(9900, 1_000), np.full(100, 1_000_000)])
    p = latency.percentiles(np.random.default_rng(1).permutation(x))
    assert (p["p50"], p["p99"], p["p99.9"], p["max"]) == (1_000, 1_000, 1_000_000, 1_000_000)


def test_hdr_histogram_percentiles_agree_with_the_exact_ones_to_its_precision():
    x = np.random.default_rng(3).lognormal(10, 1.5, 100_000).astype(np.int64)
    exact, hdr = latency.percentiles(x), latency.hdr_percentiles(latency.hdr_histogram(x))
    assert hdr["count"] == exact["count"] == x.size
    for k in ("p50", "p90", "p99", "p99.9", "p99.99", "max"):
        assert hdr[k] == pytest.approx(exact[k], rel=2e-3)  # 3 significant digits


# -- open loop: coordinated omission ---------------------------------------------------------

class _FakeClock:
    """Time that moves only when the system under test works or the sender sleeps."""

    def __init__(self):
        self.now = 0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += int(seconds * 1e9) if seconds > 0 else 5_000  # a yield: 5 us pass


def test_open_loop_sender_records_a_100ms_stall_at_10k_per_s_in_p99():
    clock = _FakeClock()
    done = np.zeros(20_000, dtype=np.int64)
    sent = []

    def send(i):
        sent.append(i)
        clock.now += 100_000_000 if i == 10_000 else 5_000  # one 100 ms stall, else 5 us
        done[i] = clock.now

    intended = latency.open_loop(send, 10_000, 20_000, clock=clock, sleep=clock.sleep)
    assert sent == list(range(20_000))  # late events are sent at once, none skipped
    p = latency.percentiles(done - intended)
    # the 1000 events scheduled during the stall waited up to 100 ms: 5% of the sample
    assert p["p50"] == 5_000 and p["p99"] >= 50_000_000 and p["max"] >= 100_000_000
    # measured from the actual send time instead, the stall is one slow event: p99 hides it
    actual = np.concatenate([[intended[0]], done[:-1]])
    closed = latency.percentiles(done - np.maximum(intended, actual))
    assert closed["p99"] == 5_000


def test_open_loop_sends_on_schedule_when_the_system_keeps_up():
    clock = _FakeClock()
    at = []
    latency.open_loop(lambda i: at.append(clock.now), 1_000, 5, clock=clock, sleep=clock.sleep)
    assert at == [0, 1_000_000, 2_000_000, 3_000_000, 4_000_000]


# -- HdrHistogram log ------------------------------------------------------------------------

def test_hdr_log_round_trips_counts_and_percentiles(tmp_path):
    x = np.random.default_rng(5).exponential(50_000, 20_000).astype(np.int64) + 1
    path = tmp_path / "lat.hlog"
    latency.to_hdr_log(x, path, tag="round trip", seconds=2.0)
    back = latency.hdr_percentiles(latency.read_hdr_log(path))
    exact = latency.percentiles(x)
    assert back["count"] == x.size
    for k in ("p50", "p99", "p99.9", "max"):
        assert back[k] == pytest.approx(exact[k], rel=2e-3)


def test_hdr_log_without_an_interval_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "empty.hlog"
    path.write_text("#[Histogram log format version 1.2]\n")
    with pytest.raises(ValueError, match=r"empty\.hlog: no interval histogram"):
        latency.read_hdr_log(path)


# -- results schema and compare --------------------------------------------------------------

def test_results_schema_names_the_wrong_field(tmp_path):
    doc = _doc(100.0)
    doc["results"][0]["median"] = "fast"
    with pytest.raises(ValueError, match=r"\$\.results\[0\]\.median"):
        results.save(doc, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()
    (tmp_path / "nojson.json").write_text("{")
    with pytest.raises(ValueError, match=r"nojson\.json: not JSON"):
        results.load(tmp_path / "nojson.json")


def test_results_document_with_latency_rows_and_extra_fields_round_trips(tmp_path):
    doc = _doc(100.0)
    doc["results"].append({"target": "handler", "name": "h_latency_1k_per_s_p99", "unit": "ns",
                           **stats.summarize([5.0, 7.0]), "hdr_log": "r-hlog/h.hlog",
                           "latency": {"series": "h", "rate_per_s": 1000.0,
                                       "percentile": "p99"}, "extra": [1, 2]})
    doc["skipped"] = [{"name": "peer disruptor", "reason": "Java is absent"}]
    results.save(doc, tmp_path / "a.json")
    assert results.load(tmp_path / "a.json") == json.loads(json.dumps(doc))
    assert "Document" in results.json_schema()["$defs"]


def _save_pair(tmp_path, old, new):
    results.save(_doc(old, spread=0.02), tmp_path / "old.json")
    results.save(_doc(new, spread=0.02), tmp_path / "new.json")
    return [str(tmp_path / "old.json"), str(tmp_path / "new.json")]


def test_cli_compare_flags_a_20_percent_regression_with_exit_code_1(tmp_path, capsys):
    assert cli.main(["bench", "compare", *_save_pair(tmp_path, 100.0, 80.0)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "100 events/s" in out and "-20.0%" in out
    assert cli.main(["bench", "compare", *_save_pair(tmp_path, 100.0, 95.0)]) == 0
    assert "REGRESSION" not in capsys.readouterr().out
    assert cli.main(["bench", "--format", "json", "compare",
                     *_save_pair(tmp_path, 100.0, 80.0)]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["verdict"] == "regression" and rows[0]["old"] == 100.0


# -- peers and failures ----------------------------------------------------------------------

def test_a_failing_peer_is_a_noted_skip(tmp_path, monkeypatch):
    script = tmp_path / "run.sh"
    script.write_text("echo 'the Disruptor peer needs Java' >&2\nexit 3\n")
    monkeypatch.setattr(peers, "DISRUPTOR", script)
    assert peers.run_disruptor(1000, 1) == {
        "skipped": "disruptor/run.sh exited with 3: the Disruptor peer needs Java"}


def test_the_peers_ship_in_the_package():
    here = Path(peers.__file__).parent
    java = (here / "disruptor" / "DisruptorPeer.java").read_text()
    assert "import com.lmax.disruptor.dsl.Disruptor;" in java
    for figure in ("disruptor_1p1c_busyspin_ops_per_s", "disruptor_1p1c_busyspin_batch64",
                   "disruptor_latency_%s_100k_per_s_ns"):  # the names bench_ring reads
        assert figure in java
    assert "libdisruptor-java" in (here / "disruptor" / "run.sh").read_text()


def test_machine_limits_measure_each_figure(tmp_path):
    from ringlog.bench.peers import limits

    assert limits.memcpy_gb_per_s(1 << 20) > 0
    assert limits.mmap_write_gb_per_s(str(tmp_path), size=1 << 20) > 0
    assert limits.mmap_write_gb_per_s(str(tmp_path), msync=True, size=1 << 20) > 0
    p50, p99 = limits.fdatasync_us(str(tmp_path), calls=5)
    assert 0 < p50 <= p99
    assert limits.python_call_ns(20_000) >= 0
    assert list(tmp_path.iterdir()) == []  # its files are gone


def _disruptor_installable() -> bool:
    """The jars are there, or run.sh can install them (as root, with apt-get)."""
    return Path("/usr/share/java/disruptor.jar").exists() or (
        os.geteuid() == 0 and shutil.which("apt-get") is not None)


@pytest.mark.stress
@pytest.mark.skipif(not _disruptor_installable(),
                    reason="Debian's libdisruptor-java is not installed and this user cannot "
                           "apt-get install it")
def test_the_disruptor_peer_compiles_and_prints_every_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    got = peers.run_disruptor(64_000, 1, timeout=600)
    assert got["disruptor_1p1c_busyspin_ops_per_s"] > 0
    assert set(got["disruptor_latency_busyspin_100k_per_s_ns"]) == {"p50", "p99", "p99.9",
                                                                     "max"}


def test_a_failing_target_is_recorded_and_the_run_goes_on(monkeypatch):
    class Broken:
        @staticmethod
        def run(runs, smoke, peers):
            raise RuntimeError("no such device")

    class Fine:
        @staticmethod
        def run(runs, smoke, peers, progress):
            progress("run 1/1 of x")
            return [{"name": "x", "unit": "events/s", **stats.summarize([1.0])}]

    monkeypatch.setattr(runner, "load_target", {"ring": Broken, "journal": Fine}.get)
    lines = []
    doc = runner.run_all(["ring", "journal", "gateway"], runs=1, with_peers=False,
                         progress=lines.append)
    assert [r["target"] for r in doc["results"]] == ["journal"]
    assert doc["skipped"] == [
        {"name": "gateway", "reason": "no bench/bench_gateway.py yet"},
        {"name": "ring", "reason": "RuntimeError: no such device", "failed": True}]
    assert any("ring: FAILED" in s for s in lines) and "journal: run 1/1 of x" in lines
    results.validate(doc)


# -- progress ---------------------------------------------------------------------------------

def test_progress_reports_step_count_and_eta():
    lines = []
    prog = Progress(3, lines.append, prefix="t", estimates=[10.0, 20.0, 30.0])
    with prog.step("a"):
        pass
    prog.elapsed[-1] = 4.0  # pretend the first step took 4 s
    with prog.step("b"):
        pass
    assert lines[0] == "t: [1/3] a (about 1 min 00 s left)"  # from the estimates
    assert lines[1] == "t: [2/3] b (about 50 s left)"  # estimates of the steps left
    assert Progress(2, lines.append).eta() is None


def test_progress_beats_while_a_long_step_runs():
    lines = []
    beat = threading.Event()

    def emit(s):
        lines.append(s)
        if "..." in s:
            beat.set()

    with Progress(1, emit, heartbeat=0.01).step("slow"):
        assert beat.wait(10)
    assert lines[0] == "[1/1] slow" and "... slow:" in lines[1]


# -- plots and report -------------------------------------------------------------------------

def _plot_doc():
    doc = _doc(2e6)
    doc["results"][0]["peers"] = {"queue.Queue": 1e5}
    doc["results"].append({"target": "ring", "name": "peer_queue.Queue", "unit": "events/s",
                           **stats.summarize([1e5])})
    for rate in ("10k", "1.5M"):
        for p, v in (("p50", 1e3), ("p99", 5e4), ("max", 1e6)):
            doc["results"].append({"target": "ring", "name": f"latency_{rate}_per_s_spin_{p}",
                                   "unit": "ns", **stats.summarize([v * 0.9, v, v * 1.2])})
    return doc


def test_latency_rows_are_grouped_into_curves_by_series_and_rate():
    curves = plots.latency_series(_plot_doc())
    assert curves == {("ring", "spin"): {
        10_000.0: {"p50": 1e3, "p99": 5e4, "max": 1e6},
        1_500_000.0: {"p50": 1e3, "p99": 5e4, "max": 1e6}}}


def test_plots_are_png_files_and_the_report_embeds_them(tmp_path):
    doc = _plot_doc()
    made = plots.plot_all(doc, tmp_path / "img")
    assert [p.name for _, _, p in made] == ["ring_throughput.png", "ring_spin_latency.png"]
    for _, _, p in made:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    md = report.render(doc, "make bench",
                       images=[(t, title, f"img/{p.name}") for t, title, p in made])
    assert "![ring: throughput against peers](img/ring_throughput.png)" in md
    assert "(img/ring_spin_latency.png)" in md


# -- --handler through the full pipeline ------------------------------------------------------

HANDLERS = '''
from ringlog import EventHandler


class Echo(EventHandler):
    """One output per event."""

    def on_event(self, event, sequence, end_of_batch):
        self.emit(b"ok", 1)


class EveryFourth(EventHandler):
    """An output for events 0, 4, 8, ... (by correlation id, which the bench numbers)."""

    def on_event(self, event, sequence, end_of_batch):
        if (event.correlation_id - 1) % 4 == 0:
            self.emit(b"ok", 1)

    @staticmethod
    def bench_payloads(size):
        return [bytes([i]) * size for i in range(3)]


NOT_A_CLASS = 3
'''


@pytest.fixture
def handlers(tmp_path):
    path = tmp_path / "myhandlers.py"
    path.write_text(HANDLERS)
    return path


def test_cli_handler_smoke_run_writes_rows_hdr_logs_plots_and_report(tmp_path, handlers,
                                                                     capsys):
    out = tmp_path / "out" / "new"  # folders that do not exist yet
    rc = cli.main(["bench", "--handler", f"{handlers}:Echo", "--smoke", "--runs", "1",
                   "--rate", "2k", "--no-peers", "--durability", "none", "--event-size", "100",
                   "--json", str(out / "r.json"), "--report", str(out / "r.md")])
    assert rc == 0
    doc = results.load(out / "r.json")
    assert doc["config"]["handler"]["event_size"] == 100
    assert doc["config"]["targets"] == []
    rows = {r["name"]: r for r in doc["results"]}
    tput = rows["Echo_throughput_100b_none_blocking"]
    assert tput["median"] > 0 and tput["ratios"]["noop_handler"] > 0
    assert rows["peer_noop_handler_throughput_100b_none_blocking"]["median"] > 0
    p99 = rows["Echo_100b_none_blocking_latency_2k_per_s_p99"]
    assert p99["latency"] == {"series": "Echo_100b_none_blocking", "rate_per_s": 2000.0,
                              "percentile": "p99"}
    assert "400 of 400 events sampled" in rows["Echo_100b_none_blocking_latency_2k_per_s_p50"][
        "note"]
    hist = latency.read_hdr_log(out / p99["hdr_log"])
    assert hist.get_total_count() == 400
    md = (out / "r.md").read_text()
    assert f"Generated by `ringlog bench --handler {handlers}:Echo --smoke" in md
    assert "(img/handler_Echo_100b_none_blocking_latency.png)" in md
    assert (out / "img" / "handler_throughput.png").stat().st_size > 0
    err = capsys.readouterr().err
    assert "[1/1] handler" in err and "latency at 2k/s run 1/1" in err


def test_handler_that_emits_for_some_events_is_sampled_up_to_its_last_output(handlers):
    rows = pipeline.run_handler(f"{handlers}:EveryFourth",
                                pipeline.PipelineOptions(runs=1, rates=(2000.0,)),
                                smoke=True, progress=lambda s: None)
    note = next(r["note"] for r in rows if r["name"].endswith("_p50"))
    # 400 events sent; outputs at 0, 4, ..., 396: the 3 events after the last are not sampled
    assert "397 of 400 events sampled" in note


@pytest.mark.parametrize(("spec", "message"), [
    ("nocolon", "expected module:Class"),
    ("no_such_module_xyz:Foo", "importing no_such_module_xyz failed: ModuleNotFoundError"),
    ("{handlers}:Missing", "has no attribute 'Missing'"),
    ("{handlers}:NOT_A_CLASS", "NOT_A_CLASS is a int, not a class or factory"),
    ("/nonexistent/h.py:Echo", "no file /nonexistent/h.py"),
])
def test_a_wrong_handler_spec_is_a_usage_error_saying_what_is_wrong(spec, message, handlers,
                                                                    capsys):
    assert cli.main(["bench", "--handler", spec.format(handlers=handlers), "--smoke"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--ring-size", "1000"], "PipelineOptions.ring_size: must be a power of two"),
    (["--duration", "0"], "argument --duration: seconds must be above 0"),
    (["--event-size", "-1"], "argument --event-size: not a size: '-1'"),
    (["--event-size", "0"], "argument --event-size: a size must be a whole number above 0"),
])
def test_wrong_pipeline_options_are_usage_errors_naming_the_option(args, message, handlers,
                                                                   capsys):
    assert cli.main(["bench", "--handler", f"{handlers}:Echo", *args]) == 2
    assert message in capsys.readouterr().err


def test_pipeline_slot_size_holds_the_event_size():
    assert pipeline.PipelineOptions(event_size=0).slot_size == 56
    assert pipeline.PipelineOptions(event_size=100).slot_size == 152
    with pytest.raises(ValueError, match="offered rate"):
        pipeline.PipelineOptions(rates=(0.0,))


def test_latency_rows_summarise_runs_and_save_one_log_for_all_of_them(tmp_path):
    runs = [np.arange(1, 1001), np.arange(1, 1001) * 3]
    with latency.hdr_logs_in(tmp_path / "r-hlog"):
        rows = latency.latency_rows("ring", "spin", 10_000, runs, note="n")
    by = {r["name"]: r for r in rows}
    assert list(by) == [f"spin_latency_10k_per_s_{p}" for p in
                        ("p50", "p90", "p99", "p99.9", "p99.99", "max")]
    assert by["spin_latency_10k_per_s_p50"]["runs"] == [500.0, 1500.0]
    assert by["spin_latency_10k_per_s_max"]["median"] == 2000.0
    assert rows[0]["note"] == "n" and rows[0]["hdr_log"] == "r-hlog/ring_spin_10k.hlog"
    assert latency.read_hdr_log(tmp_path / rows[0]["hdr_log"]).get_total_count() == 2000
    empty = latency.latency_rows("ring", "spin", 500, [np.arange(3), np.array([])],
                                 missing="no output")
    assert empty == [{"target": "ring", "name": "spin_latency_500_per_s", "unit": "ns",
                      "median": None, "min": None, "max": None, "runs": [],
                      "note": "not measured: no output"}]


def test_a_handler_that_raises_fails_the_run_with_its_error(tmp_path, handlers, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("from ringlog import EventHandler\n\n\nclass Boom(EventHandler):\n"
                   "    def on_event(self, event, sequence, end_of_batch):\n"
                   "        if sequence == 10:\n"
                   "            raise KeyError('account 42')\n")
    rc = cli.main(["bench", "--handler", f"{bad}:Boom", "--smoke", "--runs", "1", "--rate",
                   "1k", "--no-peers", "--json", str(tmp_path / "r.json")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "the processor halted" in err and "account 42" in err
    doc = results.load(tmp_path / "r.json")
    assert doc["skipped"][0]["failed"] and doc["results"] == []


def test_a_sender_behind_its_schedule_is_said_in_the_note(handlers):
    # 5M events/s is far beyond a Python sender: the note must say the latencies hold its backlog
    rows = pipeline.run_handler(f"{handlers}:Echo",
                                pipeline.PipelineOptions(runs=1, rates=(5e6,), duration=0.02),
                                progress=lambda s: None)
    note = next(r["note"] for r in rows if r["name"].endswith("_5M_per_s_p50"))
    assert "100000 of 100000 events sampled; the sender fell behind the schedule" in note
    past = [r for r in rows if "_5M_per_s_" in r["name"]]
    assert len(past) == 6 and all(r.get("past_capacity") for r in past)
    assert not any(r.get("past_capacity") for r in rows if "_latency_" not in r["name"])
    shown = report.table({"results": past, "config": {"runs": 1}}).splitlines()[1:-1]
    assert len(shown) == 6 and all(report.PAST in line for line in shown)


def _gateway_docs(achieved):
    return [({"missing": 0, "connections_lost": [], "achieved_rate": a, "answered": 100,
              "sent": 100, "server_cpu_ns_per_order": 1.0, "client_cpu_ns_per_order": 1.0,
              "backlog_last_third": 0, "backlog_first_third": 0}, np.arange(1, 101))
            for a in achieved]


@pytest.mark.parametrize(("achieved", "past"), [((199_000.0, 200_500.0), False),
                                                 ((199_000.0, 150_000.0), True)])
def test_every_gateway_row_of_runs_past_capacity_is_marked(achieved, past, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "bench"))
    import bench_gateway

    rows = bench_gateway._rows("gateway_8conn", 200_000.0, _gateway_docs(achieved))
    assert len(rows) == 5 + 6  # the run's figures and the latency percentiles
    assert all(bool(r.get("past_capacity")) is past for r in rows)
    assert latency.past_capacity(200_000.0, list(achieved)) is past


# -- a user's first run: outside a checkout, missing extras, the README's handler -------------

def test_targets_outside_a_checkout_are_a_usage_error_naming_the_way_out(monkeypatch, capsys):
    monkeypatch.setattr(runner, "bench_dir", lambda: None)
    assert cli.main(["bench", "ring", "--smoke"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "from a clone" in err and "--handler" in err


@pytest.mark.parametrize(("args", "absent", "says"), [
    (["--smoke", "ring"], "hdrh", "needs hdrh"),
    (["--smoke", "ring", "--report", "r.md"], "matplotlib", "needs matplotlib"),
])
def test_missing_extras_are_found_before_the_run_with_the_pip_command(args, absent, says,
                                                                      monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == absent else real(name, *a))
    assert cli.main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert says in err and "pip install 'ringlog[bench]'" in err


README_HANDLER = '''
import struct
from ringlog import EventHandler

class Balances(EventHandler):
    def __init__(self):
        self.balance = {}

    def on_event(self, event, sequence, end_of_batch):
        account, amount = struct.unpack("<qq", event.payload)
        self.balance[account] = self.balance.get(account, 0) + amount
        self.emit(struct.pack("<qq", account, self.balance[account]), type_id=1, key=account)
'''


def test_the_readme_handler_runs_with_its_event_size_and_says_so_when_it_does_not(
        tmp_path, capsys):
    (tmp_path / "readme_app.py").write_text(README_HANDLER)
    spec = f"{tmp_path / 'readme_app.py'}:Balances"
    common = ["--smoke", "--runs", "1", "--rate", "1k", "--no-peers", "--durability", "none"]
    assert cli.main(["bench", "--handler", spec, *common]) == 1
    err = capsys.readouterr().err
    assert "unpack requires a buffer of 16 bytes" in err and "--event-size 64" in err
    assert cli.main(["bench", "--handler", spec, *common, "--event-size", "16"]) == 0
    out = capsys.readouterr().out  # a table for people, not JSON
    # the row, with a rate in a unit for people (k or M: the speed is the machine's)
    row = next(line for line in out.splitlines() if "Balances_throughput_16b_none_blocking" in line)
    assert re.search(r"\d events/s|\d [kMG] events/s", row), row
    assert not out.lstrip().startswith("{")


def test_latency_plot_follows_the_hdr_log_and_dashes_a_rate_past_capacity(tmp_path):
    doc = results.new_document({"runs": 2})
    samples = [np.arange(1, 20_001) * 100, np.arange(1, 20_001) * 120]
    with latency.hdr_logs_in(tmp_path / "r-hlog"):
        doc["results"] += latency.latency_rows("ring", "spin", 10_000, samples)
        doc["results"] += latency.latency_rows("ring", "spin", 1e6, samples,
                                               achieved=[6e5, 6.2e5])
    assert not any(r.get("past_capacity") for r in doc["results"][:6])
    assert all(r["past_capacity"] for r in doc["results"][6:])
    xs, ys = plots.hdr_curve(tmp_path / doc["results"][0]["hdr_log"])
    assert len(xs) > 100 and xs == sorted(xs) and ys == sorted(ys)  # the whole distribution
    assert ys[-1] == pytest.approx(2_400_000 / 1000, rel=1e-3)  # ends at the max, in µs
    made = plots.plot_all(doc, tmp_path / "img", logs_base=tmp_path)
    assert [p.name for _, _, p in made] == ["ring_spin_latency.png"]
    md = report.render(doc, "make bench")
    assert "(past capacity)" in md and " ms |" in md and " us" not in md
    assert "spin_latency_1M_per_s_p99" in report.table(doc)
