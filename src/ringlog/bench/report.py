"""Renders a results document as docs/benchmarks.md: tables of medians, spreads and ratios."""

from __future__ import annotations

from typing import Any

__all__ = ["APART", "evaluate_targets", "fmt", "kept_section", "peer_value", "render", "table"]

PAST = " (past capacity)"  # marks a figure taken at an offered rate a run did not sustain
# Figures measured by their own scripts (bench/bench_counters.py, bench/pipeline_ab.py ...),
# each with its command: written under this heading by hand, kept when the report is rewritten
APART = "## Measured apart"


def kept_section(text: str) -> str:
    """The part of an existing report that a rewrite keeps: from the ``APART`` heading to the
    end ("" where there is none)."""
    at = text.find("\n" + APART + "\n")
    return text[at + 1:] if at >= 0 else ""


def fmt(value: float | None, unit: str = "") -> str:
    """A figure with an SI suffix for large rates (12.3M), plain otherwise."""
    if value is None:
        return "-"
    a = abs(value)
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div and unit.endswith("/s"):
            return f"{value / div:.2f}{suf}"
    return f"{value:.3g}" if a < 1000 else f"{value:,.0f}"


def peer_value(name: str, value: Any) -> str:
    """A peer figure with its unit read from its name (``..._ns``, ``..._us``, ``..._per_s``),
    a ``{p50: .., p99: ..}`` dict as ``p50 1.2 µs, p99 3.4 µs``."""
    from .stats import fmt_value

    if name.endswith("_ns"):
        scale, unit = 1.0, "ns"
    elif name.endswith("_us"):
        scale, unit = 1000.0, "ns"  # shown in the one time format: µs
    elif name.endswith("_gb_per_s"):
        scale, unit = 1.0, "GB/s"
    elif name.endswith("_ops_per_s") or name.endswith("_per_s"):
        scale, unit = 1.0, "ops/s"
    else:
        scale, unit = 1.0, ""
    if isinstance(value, dict):
        return ", ".join(f"{k} {peer_value(name, v)}" for k, v in value.items())
    if isinstance(value, int | float):
        return fmt_value(value * scale, unit)
    return str(value)


def _shown(r: dict[str, Any]) -> str:
    from .stats import fmt_value

    return fmt_value(r.get("median"), r["unit"]) + (PAST if r.get("past_capacity") else "")


def table(doc: dict[str, Any]) -> str:
    """The results for people on a terminal: one line a figure, median with its unit, spread
    over the runs, ratios to peers of the same run; skipped and failed steps after."""
    from .stats import fmt_value

    lines = [f"{'target':10} {'benchmark':52} {'median':>18} {'min - max':>27}  vs peers"]
    for r in doc["results"]:
        spread = (f"{fmt_value(r.get('min'), r['unit'])} - {fmt_value(r.get('max'), r['unit'])}"
                  if r.get("median") is not None else "")
        ratios = ", ".join(f"{k} {v:.2f}x" for k, v in (r.get("ratios") or {}).items())
        lines.append(f"{r['target']:10} {r['name']:52} {_shown(r):>18} {spread:>27}  {ratios}")
    for s in doc.get("skipped") or []:  # failures go to stderr, with their hint
        if not s.get("failed"):
            lines.append(f"skipped: {s['name']}: {s['reason']}")
    runs = doc.get("config", {}).get("runs")
    lines.append(f"{len(doc['results'])} figures, median of {runs} runs each; latencies from "
                 "each event's intended send time (open loop)")
    return "\n".join(lines)


def evaluate_targets(doc: dict[str, Any], targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target against the document: the measured value (a median, or its ratio to a
    peer from the same run), met or missed, by how much, and why where missed.

    A target is ``{"goal", "row", "min" | "max", "ratio" (optional peer name), "why"}``."""
    rows = {(r["target"], r["name"]): r for r in doc["results"]}
    out = []
    for t in targets:
        r = rows.get((t["target"], t["row"]))
        value = None
        if r is not None:
            value = r.get("ratios", {}).get(t["ratio"]) if t.get("ratio") else r["median"]
        if r is None or value is None:
            out.append({**t, "value": None, "met": None, "by": "not measured in this run"})
            continue
        bound = t.get("min", t.get("max"))
        met = value >= bound if "min" in t else value <= bound
        by = value / bound if bound else float("inf")
        out.append({**t, "value": value, "met": met, "by": f"{by:.2f}x the goal",
                    "unit": "" if t.get("ratio") else r.get("unit", "")})
    return out


def _machine(m: dict[str, Any]) -> str:
    """A results document's machine in one line: CPU, cores, memory, kernel, Python."""
    return (f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
            f"Python {m['python']}")


def _cpu(m: dict[str, Any] | None) -> tuple[str, int] | None:
    return (m["cpu"], m["cores"]) if m else None


def render(doc: dict[str, Any], command: str, intro: str = "",
           targets: list[dict[str, Any]] | None = None,
           images: list[tuple[str, str, str]] | None = None, kept: str = "") -> str:
    """The markdown report for ``doc``; ``command`` is the command that produced it.
    ``images`` are ``(target, title, path relative to the report)``, embedded under their
    target's table; ``kept`` (``kept_section`` of the previous report) goes last, as it was."""
    machine = _machine(doc["machine"])
    runs = doc["config"].get("runs")
    lines = [
        "# ringlog benchmarks",
        "",
        "Generated by `" + command + "` (do not edit by hand; `make bench` rewrites it).",
        "",
        f"- machine: {machine}",
        f"- date: {doc['created']}; runs per figure: {runs} (median, with min-max spread)",
        *(f"- re-measured {m['created']}"
          # a fold on another CPU says which (the kind's machines vary: AMD, Intel)
          + (f" on {m['machine']['cpu']}, {m['machine']['cores']} cores"
             if _cpu(m.get("machine")) not in (None, _cpu(doc["machine"])) else "")
          + f": {', '.join(m['targets'])} ({m['runs']} runs per figure; these rows replace "
          "that run's)"
          + (f"; {', '.join(m['failed'])} failed in it and kept the older rows"
             if m.get("failed") else "") for m in doc.get("merged", [])),
        "- these machines are shared and noisy: read the ratios against peers measured in the "
        "same run, not the absolute figures.",
        "- throughput: events per second of each run; latency (ns, µs, ms as they fit): an "
        "open-loop load at a fixed offered rate, measured from each event's intended send "
        "time (coordinated omission corrected), raw nanoseconds summarised as HdrHistogram "
        "percentiles; each percentile is the median over the runs. A rate marked "
        f"*{PAST.strip()}* offered more than the system could take: its latencies measure the "
        "queue that grew.",
        "",
    ]
    if intro:
        lines += [intro, ""]
    peers = doc.get("peers", {})
    if peers:
        lines += ["## Peers and machine limits (same run)", "", "| figure | value |", "|---|---|"]
        for group, figures in peers.items():
            if not isinstance(figures, dict):
                continue
            for k, v in figures.items():
                lines.append(f"| {group}: {k} | {peer_value(k, v)} |")
        lines.append("")
    if targets:
        from .stats import fmt_value

        lines += ["## Targets", "", "| goal | measured | met | | why, where missed |",
                  "|---|---|---|---|---|"]
        for t in evaluate_targets(doc, targets):
            v = t["value"]
            shown = "-" if v is None else (f"{v:.2f}x" if t.get("ratio") else
                                           fmt_value(v, t.get("unit") or "/s"))
            met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
            why = "" if t["met"] else t.get("why", "")
            lines.append(f"| {t['goal']} | {shown} | {met} | {t['by']} | {why} |")
        lines.append("")
    by_target: dict[str, list[dict[str, Any]]] = {}
    for r in doc["results"]:
        by_target.setdefault(r["target"], []).append(r)
    for target, rows in by_target.items():
        from .stats import fmt_value

        lines += [f"## {target}", "", "| benchmark | median | min - max | vs peers |",
                  "|---|---|---|---|"]
        for r in rows:
            ratios = ", ".join(f"{k}: {v:.2f}x" for k, v in r.get("ratios", {}).items())
            spread = (f"{fmt_value(r.get('min'), r['unit'])} - "
                      f"{fmt_value(r.get('max'), r['unit'])}")
            lines.append(f"| {r['name']} | {_shown(r)} | {spread} | {ratios} |")
        notes = [f"- {r['name']}: {r['note']}" for r in rows if r.get("note")]
        logs = sorted({r["hdr_log"] for r in rows if r.get("hdr_log")})
        if logs:
            notes.append("- HdrHistogram logs (next to the JSON): "
                         + ", ".join(f"`{x}`" for x in logs))
        lines += ["", *notes, ""] if notes else [""]
        for img_target, title, rel in images or []:
            if img_target == target:
                lines += [f"![{title}]({rel})", ""]
    skipped = doc.get("skipped") or []
    if skipped:
        lines += ["## Skipped in this run", ""]
        lines += [f"- {s['name']}: {s['reason']}" for s in skipped]
        lines.append("")
    return "\n".join(lines) + "\n" + kept
