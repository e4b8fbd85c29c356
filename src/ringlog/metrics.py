"""Metrics: the gateway's figures into the counters file, and a Prometheus endpoint over it.

::

    loop / journaller / output threads ─┐ release stores
    gateway event loop (GatewayCounters,├──────────────► DIR/counters
      every 100 ms, its own thread)    ─┘                     │ read at each scrape
                                                              ▼ (read-only, no lock)
    GET http://127.0.0.1:PORT/metrics ◄── prometheus_client ◄── CountersCollector
        ringlog_<stage>_<name>{_total}        counters (TOTAL) and gauges (the rest)
        ringlog_<lag>                         derived lags (logic_lag, output_lag, ...)
        ringlog_logic_age_seconds_bucket      the loop's event-age histogram
        ringlog_writer_up                     1 while the writer runs

A scrape reads the counters file like ``ringlog stat`` does: it never touches the
processor's threads. ``prometheus_client`` comes with the ``metrics`` extra
(``pip install ringlog[metrics]``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._counters import BUCKET, GAUGE, TOTAL
from .errors import ListenError, MissingExtraError
from .stat import derive, histograms, open_reader, sample

__all__ = ["CountersCollector", "GatewayCounters", "MetricsServer", "serve_metrics"]

PREFIX = "ringlog_"
_BAD = re.compile(r"[^a-zA-Z0-9_]")


def _name(label: str) -> str:
    return PREFIX + _BAD.sub("_", label)


class CountersCollector:
    """A prometheus_client collector over a processor directory's counters file, read at
    each scrape (a scrape before the file exists shows only ``ringlog_writer_up 0``)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._reader: Any = None

    def collect(self) -> Iterator[Any]:
        """The metrics of one scrape."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        if self._reader is None:
            try:
                self._reader = open_reader(self.directory)
            except FileNotFoundError:
                yield GaugeMetricFamily(PREFIX + "writer_up", "1 while the processor runs",
                                        value=0)
                return
        s = sample(self._reader)
        d = derive(None, s)
        yield GaugeMetricFamily(PREFIX + "writer_up", "1 while the processor runs",
                                value=1 if s.writer == "running" else 0)
        yield GaugeMetricFamily(PREFIX + "writer_heartbeat_age_seconds",
                                "seconds since the writer's last heartbeat",
                                value=max(0.0, (s.time_ns - s.heartbeat_ns) / 1e9))
        for label, v in s.values.items():
            t = s.types[label]
            if t == BUCKET:
                continue
            doc = f"ringlog counter {label}"
            if t == TOTAL:
                yield CounterMetricFamily(_name(label), doc, value=v)
            else:
                kind = "gauge" if t == GAUGE else "position or state"
                yield GaugeMetricFamily(_name(label), f"{doc} ({kind})", value=v)
        for lag, v in d["lags"].items():
            if lag not in s.values:  # derived from two sequences
                yield GaugeMetricFamily(_name(lag), f"{lag}: upstream minus own sequence",
                                        value=v)
        for name, buckets in histograms(s.values, s.types).items():
            cum, rows = 0, []
            for bound, n in buckets:
                cum += n
                rows.append(("+Inf" if bound == float("inf") else repr(bound / 1e9), cum))
            base = _name(name.removesuffix("_ns")) + "_seconds"
            yield HistogramMetricFamily(base, f"{name}: age of the last event of each batch "
                                        "when the loop handled it", buckets=rows)


class MetricsServer:
    """The Prometheus endpoint: an HTTP server thread of prometheus_client serving
    ``/metrics`` from a CountersCollector. ``close()`` stops it."""

    def __init__(self, directory: str | Path, port: int, host: str = "127.0.0.1") -> None:
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise MissingExtraError("metrics need prometheus_client: pip install "
                                    "'ringlog[metrics]'") from None
        self.registry = CollectorRegistry()
        self.registry.register(CountersCollector(directory))  # type: ignore[arg-type]
        try:
            self._server, self._thread = start_http_server(port, host, self.registry)
        except OSError as e:
            raise ListenError(e.errno, f"cannot serve metrics: {e.strerror or e}",
                              f"{host}:{port}") from e
        self.address: tuple[str, int] = self._server.server_address[:2]  # type: ignore[assignment]

    def close(self) -> None:
        """Stops the HTTP server."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def serve_metrics(directory: str | Path, port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Starts the Prometheus endpoint for the processor directory ``directory``."""
    return MetricsServer(directory, port, host)


class GatewayCounters:
    """Copies a gateway's figures (GatewayMetrics and its open connections) into the
    processor's counters file as ``gateway.<name>``, every ``interval`` seconds, from the
    gateway's event loop: the thread that owns those figures is the only writer."""

    def __init__(self, gateway: Any, loop: Any, interval: float = 0.1) -> None:
        import msgspec

        self.gateway = gateway
        self.loop = loop
        self.interval = interval
        mgr = getattr(gateway.processor, "counters", None)
        self._fields = list(msgspec.structs.asdict(gateway.metrics))
        self._counters: dict[str, Any] = {}
        if mgr is not None:
            for f in self._fields:
                self._counters[f] = mgr.allocate(f"gateway.{f}",
                                                 GAUGE if f.endswith("_peak") else TOTAL)
            self._counters["sessions"] = mgr.allocate("gateway.sessions", GAUGE)
        self._timer: Any = None
        if self._counters:
            self._timer = loop.call_soon(self._store)

    def _store(self) -> None:
        m = self.gateway.metrics
        for f in self._fields:
            self._counters[f].set(getattr(m, f))
        self._counters["sessions"].set(len(self.gateway.connections))
        self._timer = self.loop.call_later(self.interval, self._store)

    def close(self) -> None:
        """Stores the last figures and stops."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            m = self.gateway.metrics
            for f in self._fields:
                self._counters[f].set(getattr(m, f))
            self._counters["sessions"].set(len(self.gateway.connections))
