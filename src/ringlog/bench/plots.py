"""PNG plots of a results document (matplotlib, no display needed).

    <target>_throughput.png  each throughput row of a target (median, min-max whisker) beside
                             the peers measured in the same run, log scale
    <target>_<series>_latency.png  latency percentile curves (p50 ... p99.99, max), one curve
                             per offered rate, percentiles spaced by their nines as
                             HdrHistogram's plotter does

Latency rows are found by their ``latency`` field (``{"series", "rate_per_s", "percentile"}``)
or, for rows without one, by the name ``latency_<rate>[k|M]_per_s_<series>_<pNN|max>``. Every plot
states the machine and the run count in its title.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

__all__ = ["latency_series", "plot_all", "plot_latency", "plot_throughput"]

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
    """Bars of ``target``'s rate rows and their same-run peers; False if it has none."""
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
    ax.set_yticks(ys, [b[0] for b in bars], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(f"{unit} (log scale; grey: peers measured in the same run)")
    ax.set_title(f"{target}: throughput against peers\n"
                 f"{_subtitle(doc, 'whiskers min-max')}", fontsize=8)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return True


def _nines(label: str) -> float:
    """x position of a percentile: 90% -> 1, 99% -> 2, 99.9% -> 3 (max after the last)."""
    if label == "max":
        return math.inf
    p = float(label[1:])
    return -math.log10(1 - p / 100) if p < 100 else math.inf


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


def plot_latency(doc: dict[str, Any], target: str, series: str,
                 curves: dict[float, dict[str, float]], path: Path) -> None:
    """Percentile curves of one series, one per offered rate, log latency axis."""
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    ticks: dict[float, str] = {}
    for rate in sorted(curves):
        pts = sorted(curves[rate].items(), key=lambda kv: _nines(kv[0]))
        finite = [_nines(k) for k, _ in pts if k != "max" and math.isfinite(_nines(k))]
        last = max(finite, default=0.0)
        xs = [_nines(k) if math.isfinite(_nines(k)) else last + 0.7 for k, _ in pts]
        ys = [v / 1000 for _, v in pts]
        ax.plot(xs, ys, marker="o", label=f"{rate:,.0f} events/s")
        for (k, _), x in zip(pts, xs, strict=True):
            ticks[x] = k
    ax.set_xticks(list(ticks), list(ticks.values()))
    ax.set_yscale("log")
    ax.set_ylabel("latency from intended send time (us, log scale)")
    ax.set_xlabel("percentile")
    ax.set_title(f"{target} {series}: latency by offered rate (open loop, coordinated omission "
                 f"corrected)\n{_subtitle(doc, 'spread in the report table')}", fontsize=8)
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def plot_all(doc: dict[str, Any], out_dir: str | Path) -> list[tuple[str, str, Path]]:
    """Every plot of ``doc`` into ``out_dir``: ``[(target, title, path)]`` in report order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made: list[tuple[str, str, Path]] = []
    targets = list(dict.fromkeys(r["target"] for r in doc["results"]))
    lat = latency_series(doc)
    for t in targets:
        path = out / f"{t}_throughput.png"
        if plot_throughput(doc, t, path):
            made.append((t, f"{t}: throughput against peers", path))
        for (target, series), curves in lat.items():
            if target == t:
                slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", series)
                path = out / f"{t}_{slug}_latency.png"
                plot_latency(doc, t, series, curves, path)
                made.append((t, f"{t} {series}: latency percentiles by offered rate", path))
    return made
