"""The benchmark harness: repeated runs, peers in the same run, latency percentiles, reports.

Parts: ``stats`` (median/min/max of runs), ``latency`` (open-loop schedules and percentiles
measured from the intended send time), ``peers`` (the Java LMAX Disruptor and the machine limits,
both runners shipped in ``peers/``), ``results`` (the JSON document and regression compare),
``report`` (docs/benchmarks.md), ``plots`` (PNG plots embedded in it), ``pipeline`` (a user's
handler through the full pipeline: ``ringlog bench --handler module:Class``), ``progress``
(step, ETA).
The measuring functions of each part live in the repository's ``bench/`` directory as
``bench_<target>.py`` with a ``run(runs, smoke, peers) -> list[dict]`` entry point.
"""
