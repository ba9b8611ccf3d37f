"""The node's Prometheus registry: process metrics, health, and what components add.
Does I/O when scraped.

One ``CollectorRegistry`` per node (not the library's global one), so several nodes can live in
one test process. Components add their own metrics with ``Metrics.counter/gauge/histogram``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NAMESPACE = "bzzz_edge"


class _CallbackCollector(Collector):
    """Gauges read at scrape time from a callback (health status, uptime...)."""

    def __init__(self, name: str, doc: str, labels: list[str],
                 read: Callable[[], Iterable[tuple[list[str], float]]]) -> None:
        self._name, self._doc, self._labels, self._read = name, doc, labels, read

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self._name, self._doc, labels=self._labels)
        for label_values, value in self._read():
            family.add_metric(label_values, value)
        yield family


class _CounterCollector(Collector):
    """Counters a component keeps itself, read at scrape time; known names start at zero, so
    the series exist (for dashboards and alerts) before the first event."""

    def __init__(self, name: str, doc: str, label: str, read: Callable[[], Mapping[str, int]],
                 known: Iterable[str]) -> None:
        self._name, self._doc, self._label, self._read = name, doc, label, read
        self._known = tuple(known)

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self._name, self._doc, labels=[self._label])
        values = dict.fromkeys(self._known, 0)
        values.update(self._read())
        for key in sorted(values):
            family.add_metric([key], float(values[key]))
        yield family


class _LabelledCounterCollector(Collector):
    """Counters with several labels (per topic and event...), read at scrape time."""

    def __init__(self, name: str, doc: str, labels: list[str],
                 read: Callable[[], Iterable[tuple[list[str], float]]]) -> None:
        self._name, self._doc, self._labels, self._read = name, doc, labels, read

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self._name, self._doc, labels=self._labels)
        for label_values, value in self._read():
            family.add_metric(label_values, value)
        yield family


class _HistogramCollector(Collector):
    """A histogram a component keeps itself: cumulative buckets and the sum, read when scraped."""

    def __init__(self, name: str, doc: str,
                 read: Callable[[], tuple[list[tuple[str, float]], float]]) -> None:
        self._name, self._doc, self._read = name, doc, read

    def collect(self) -> Iterable[Metric]:
        buckets, total = self._read()
        family = HistogramMetricFamily(self._name, self._doc)
        family.add_metric([], buckets, total)
        yield family


class Metrics:
    """A per-node registry with the standard process collectors already in it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def counter(self, name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
        return Counter(f"{NAMESPACE}_{name}", doc, list(labels), registry=self.registry)

    def gauge(self, name: str, doc: str, labels: Iterable[str] = ()) -> Gauge:
        return Gauge(f"{NAMESPACE}_{name}", doc, list(labels), registry=self.registry)

    def histogram(self, name: str, doc: str, labels: Iterable[str] = (), **kw: Any) -> Histogram:
        return Histogram(f"{NAMESPACE}_{name}", doc, list(labels), registry=self.registry, **kw)

    def callback_gauge(self, name: str, doc: str, labels: list[str],
                       read: Callable[[], Iterable[tuple[list[str], float]]]) -> None:
        self.registry.register(_CallbackCollector(f"{NAMESPACE}_{name}", doc, labels, read))

    def callback_counters(self, name: str, doc: str, label: str,
                          read: Callable[[], Mapping[str, int]], known: Iterable[str] = ()) -> None:
        """A family of counters (``<name>_total{<label>=...}``) kept by a component."""
        self.registry.register(_CounterCollector(f"{NAMESPACE}_{name}", doc, label, read, known))

    def callback_counter_family(self, name: str, doc: str, labels: list[str],
                                read: Callable[[], Iterable[tuple[list[str], float]]]) -> None:
        """Counters with several labels (``<name>_total{a=...,b=...}``) kept by a component."""
        self.registry.register(_LabelledCounterCollector(f"{NAMESPACE}_{name}", doc, labels,
                                                         read))

    def callback_histogram(self, name: str, doc: str,
                           read: Callable[[], tuple[list[tuple[str, float]], float]]) -> None:
        """A histogram kept by a component: ``read`` gives ``([(le, cumulative count)], sum)``."""
        self.registry.register(_HistogramCollector(f"{NAMESPACE}_{name}", doc, read))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
