"""PNG plots of a results document (matplotlib, no display needed).

    <target>_throughput.png  each throughput row of a target (median, min-max whisker) beside
                             the peers measured in the same run, linear from zero, labelled
    <target>_<series>_latency.png  HdrHistogram percentile curves, one per offered rate: x is
                             1/(1-p) on a log axis (50%, 90%, 99%, 99.9% ... one step per
                             nine), y µs; the whole distribution from the run's .hlog where
                             it is there, else through the percentile rows; past capacity
                             dashed

Latency rows are found by their ``latency`` field (``{"series", "rate_per_s", "percentile"}``)
or, for rows without one, by the name ``latency_<rate>[k|M]_per_s_<series>_<pNN|max>``. Every plot
states the machine and the run count in its title.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

__all__ = ["hdr_curve", "latency_extras", "latency_series", "plot_all", "plot_latency",
           "plot_throughput"]

_LATENCY_NAME = re.compile(r"^latency_(?P<rate>[\d.]+)(?P<k>[kM]?)_per_s_(?P<series>.+)_"
                           r"(?P<p>p[\d.]+|max)$")
OURS, PEER = "#1f5fa8", "#9a9a9a"


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)  # a canvas of its own: no pyplot state, no display
    return fig


def _subtitle(doc: dict[str, Any], spread: str) -> str:
    m = doc.get("machine", {})
    return (f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores; median of "
            f"{doc.get('config', {}).get('runs', '?')} runs, {spread}; {doc.get('created', '')}")


def plot_throughput(doc: dict[str, Any], target: str, path: Path) -> bool:
    """Bars of ``target``'s rate rows and their same-run peers from a zero origin, each
    labelled with its value; False if it has none."""
    from .stats import fmt_value

    bars: list[tuple[str, float, float, float, bool]] = []
    rows = [r for r in doc["results"] if r["target"] == target and r["unit"].endswith("/s")
            and r.get("median")]
    # a row's peer figure that is also a peer row of its own is drawn once
    seen: set[Any] = {r["median"] for r in rows if r["name"].startswith("peer_")}
    for r in rows:
        is_peer = r["name"].startswith("peer_")
        bars.append((r["name"], r["median"], r.get("min") or r["median"],
                     r.get("max") or r["median"], is_peer))
        seen.add(r["name"])
        for peer, value in (r.get("peers") or {}).items():
            if isinstance(value, int | float) and value > 0 and not {peer, value} & seen:
                seen |= {peer, value}
                bars.append((f"peer: {peer}", float(value), float(value), float(value), True))
    if not bars:
        return False
    unit = rows[0]["unit"]
    fig = _figure(9, 1.2 + 0.32 * len(bars))
    ax = fig.add_subplot()
    ys = list(range(len(bars)))[::-1]
    med = [b[1] for b in bars]
    err = [[b[1] - b[2] for b in bars], [b[3] - b[1] for b in bars]]
    ax.barh(ys, med, xerr=err, color=[PEER if b[4] else OURS for b in bars], capsize=2)
    for y, b in zip(ys, bars, strict=True):  # the value: short bars stay readable
        ax.annotate(fmt_value(b[1], unit), (b[3], y), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=6)
    ax.set_yticks(ys, [b[0] for b in bars], fontsize=7)
    ax.set_xlim(0, max(b[3] for b in bars) * 1.25)  # the origin is zero: lengths compare
    has_peers = any(b[4] for b in bars)
    ax.set_xlabel(unit + ("; grey: peers measured in the same run" if has_peers else ""))
    ax.set_title(f"{target}: throughput{' against peers' if has_peers else ''}\n"
                 f"{_subtitle(doc, 'whiskers min-max')}", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return True


def _nines(label: str) -> float:
    """x of a percentile on the 1/(1-p) axis: 50% -> 2, 90% -> 10, 99.9% -> 1000."""
    if label == "max":
        return math.inf
    p = float(label[1:])
    return 1.0 / (1.0 - p / 100.0) if p < 100 else math.inf


def latency_series(doc: dict[str, Any]) -> dict[tuple[str, str], dict[float, dict[str, float]]]:
    """``{(target, series): {rate: {percentile: median ns}}}`` of every latency row."""
    out: dict[tuple[str, str], dict[float, dict[str, float]]] = {}
    for r in doc["results"]:
        if r.get("unit") != "ns" or r.get("median") is None:
            continue
        meta = r.get("latency")
        if meta is None:
            m = _LATENCY_NAME.match(r["name"])
            if m is None:
                continue
            rate = float(m["rate"]) * {"k": 1e3, "M": 1e6}.get(m["k"], 1)
            meta = {"series": m["series"], "rate_per_s": rate, "percentile": m["p"]}
        key = (r["target"], meta["series"])
        out.setdefault(key, {}).setdefault(float(meta["rate_per_s"]), {})[
            meta["percentile"]] = float(r["median"])
    return out


def latency_extras(doc: dict[str, Any]) -> dict[tuple[str, str], dict[float, dict[str, Any]]]:
    """``{(target, series): {rate: {"log": hdr_log, "past_capacity": bool}}}`` of the latency
    rows that carry an HdrHistogram log or are marked past capacity."""
    out: dict[tuple[str, str], dict[float, dict[str, Any]]] = {}
    for r in doc["results"]:
        meta = r.get("latency")
        if meta is None or not (r.get("hdr_log") or r.get("past_capacity")):
            continue
        d = out.setdefault((r["target"], meta["series"]), {}).setdefault(
            float(meta["rate_per_s"]), {"log": None, "past_capacity": False})
        d["log"] = d["log"] or r.get("hdr_log")
        d["past_capacity"] |= bool(r.get("past_capacity"))
    return out


_X_TICKS = {2: "50%", 10: "90%", 100: "99%", 1e3: "99.9%", 1e4: "99.99%", 1e5: "99.999%",
            1e6: "99.9999%"}


def hdr_curve(path: Path) -> tuple[list[float], list[float]]:
    """(1/(1-p), latency µs) along the whole HdrHistogram in ``path``, as HdrHistogram's
    plotter draws it: dense in the tail, up to the last recorded value."""
    import numpy as np

    from .latency import read_hdr_log

    hist = read_hdr_log(path)
    n = max(int(hist.get_total_count()), 2)
    xs = np.logspace(0, math.log10(n / 2), 160)[1:].tolist()  # 1/(1-p), p below 100%
    ys = [hist.get_value_at_percentile(100.0 * (1 - 1 / x)) / 1000 for x in xs]
    return [*xs, float(n)], [*ys, hist.get_max_value() / 1000]


def plot_latency(doc: dict[str, Any], target: str, series: str,
                 curves: dict[float, dict[str, float]], path: Path,
                 extras: dict[float, dict[str, Any]] | None = None,
                 logs_base: Path | None = None) -> None:
    """Percentile curves of one series, one per offered rate, on HdrHistogram's axes: x is
    1/(1-p) on a log scale (each nine one step), y the latency in µs (log scale). A rate with
    an HdrHistogram log is drawn along its whole distribution, else through its percentile
    rows; a rate past the system's capacity is dashed and says so."""
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    extras = extras or {}
    right = 10.0
    for rate in sorted(curves):
        info = extras.get(rate, {})
        past = bool(info.get("past_capacity"))
        label = f"{rate:,.0f} events/s" + (" (past capacity)" if past else "")
        log = logs_base / info["log"] if info.get("log") and logs_base else None
        if log is not None and log.exists():
            xs, ys = hdr_curve(log)
            marker = None
        else:
            pts = sorted(curves[rate].items(), key=lambda kv: _nines(kv[0]))
            finite = [_nines(k) for k, _ in pts if math.isfinite(_nines(k))]
            last = max(finite, default=10.0)
            xs = [_nines(k) if math.isfinite(_nines(k)) else last * 3 for k, _ in pts]
            ys = [v / 1000 for _, v in pts]
            marker = "o"
        right = max(right, max(xs))
        ax.plot(xs, ys, marker=marker, markersize=3, linestyle="--" if past else "-",
                label=label)
    ax.set_xscale("log")
    ticks = {x: s for x, s in _X_TICKS.items() if x <= right * 1.01}
    ax.set_xticks(list(ticks), list(ticks.values()))
    ax.minorticks_off()
    ax.set_xlim(1.5, right * 1.2)
    ax.set_yscale("log")
    ax.set_ylabel("latency from intended send time (µs, log scale)")
    ax.set_xlabel("percentile (log 1/(1-p) scale, HdrHistogram style; the right end is the max)")
    ax.set_title(f"{target} {series}: latency by offered rate (open loop, coordinated omission "
                 f"corrected)\n{_subtitle(doc, 'spread in the report table')}", fontsize=8)
    ax.grid(which="major", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def plot_all(doc: dict[str, Any], out_dir: str | Path,
             logs_base: str | Path | None = None) -> list[tuple[str, str, Path]]:
    """Every plot of ``doc`` into ``out_dir``: ``[(target, title, path)]`` in report order.
    ``logs_base`` is the folder of the results JSON (row ``hdr_log`` paths are relative to
    it): latency curves then follow the whole HdrHistogram."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made: list[tuple[str, str, Path]] = []
    targets = list(dict.fromkeys(r["target"] for r in doc["results"]))
    lat = latency_series(doc)
    extras = latency_extras(doc)
    base = Path(logs_base) if logs_base is not None else None
    for t in targets:
        path = out / f"{t}_throughput.png"
        if plot_throughput(doc, t, path):
            made.append((t, f"{t}: throughput against peers", path))
        for (target, series), curves in lat.items():
            if target == t:
                slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", series)
                path = out / f"{t}_{slug}_latency.png"
                plot_latency(doc, t, series, curves, path, extras.get((target, series)), base)
                made.append((t, f"{t} {series}: latency percentiles by offered rate", path))
    return made
