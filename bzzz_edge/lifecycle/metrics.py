"""The node's Prometheus registry: process metrics, health, and what components add.
Does I/O when scraped.

One ``CollectorRegistry`` per node (not the library's global one), so several nodes can live in
one test process. Components add their own metrics with ``Metrics.callback_*`` (values they
keep, read at scrape time) or ``Metrics.counter/gauge/histogram``.

prometheus_client is imported at the first scrape (or the first ``counter/gauge/histogram``),
not with the node: the package loads its HTTP server, WSGI, urllib and email modules with it,
about 1.5 MB resident, which a node nobody scrapes would keep for nothing. Until then the
registrations wait in a list, in order, so the output is the same as if they had been made at
once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.core import Metric

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NAMESPACE = "bzzz_edge"


class _CallbackCollector:
    """Gauges read at scrape time from a callback (health status, uptime...)."""

    def __init__(self, name: str, doc: str, labels: list[str],
                 read: Callable[[], Iterable[tuple[list[str], float]]]) -> None:
        self._name, self._doc, self._labels, self._read = name, doc, labels, read

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.core import GaugeMetricFamily  # scraping: loaded by then

        family = GaugeMetricFamily(self._name, self._doc, labels=self._labels)
        for label_values, value in self._read():
            family.add_metric(label_values, value)
        yield family


class _CounterCollector:
    """Counters a component keeps itself, read at scrape time; known names start at zero, so
    the series exist (for dashboards and alerts) before the first event."""

    def __init__(self, name: str, doc: str, label: str, read: Callable[[], Mapping[str, int]],
                 known: Iterable[str]) -> None:
        self._name, self._doc, self._label, self._read = name, doc, label, read
        self._known = tuple(known)

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(self._name, self._doc, labels=[self._label])
        values = dict.fromkeys(self._known, 0)
        values.update(self._read())
        for key in sorted(values):
            family.add_metric([key], float(values[key]))
        yield family


class _LabelledCounterCollector:
    """Counters with several labels (per topic and event...), read at scrape time."""

    def __init__(self, name: str, doc: str, labels: list[str],
                 read: Callable[[], Iterable[tuple[list[str], float]]]) -> None:
        self._name, self._doc, self._labels, self._read = name, doc, labels, read

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(self._name, self._doc, labels=self._labels)
        for label_values, value in self._read():
            family.add_metric(label_values, value)
        yield family


class _HistogramCollector:
    """A histogram a component keeps itself: cumulative buckets and the sum, read when scraped."""

    def __init__(self, name: str, doc: str,
                 read: Callable[[], tuple[list[tuple[str, float]], float]]) -> None:
        self._name, self._doc, self._read = name, doc, read

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.core import HistogramMetricFamily

        buckets, total = self._read()
        family = HistogramMetricFamily(self._name, self._doc)
        family.add_metric([], buckets, total)
        yield family


_Collector = _CallbackCollector | _CounterCollector | _LabelledCounterCollector | \
    _HistogramCollector


class Metrics:
    """A per-node registry with the standard process collectors in it (see the module doc)."""

    def __init__(self) -> None:
        self._registry: CollectorRegistry | None = None
        self._waiting: list[_Collector] = []

    @property
    def registry(self) -> CollectorRegistry:
        """The prometheus_client registry, made (with what waits) when first needed."""
        if self._registry is None:
            from prometheus_client import (
                CollectorRegistry,
                GCCollector,
                PlatformCollector,
                ProcessCollector,
            )

            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
            for collector in self._waiting:
                registry.register(collector)
            self._waiting.clear()
            self._registry = registry
        return self._registry

    def counter(self, name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
        from prometheus_client import Counter

        return Counter(f"{NAMESPACE}_{name}", doc, list(labels), registry=self.registry)

    def gauge(self, name: str, doc: str, labels: Iterable[str] = ()) -> Gauge:
        from prometheus_client import Gauge

        return Gauge(f"{NAMESPACE}_{name}", doc, list(labels), registry=self.registry)

    def histogram(self, name: str, doc: str, labels: Iterable[str] = (), **kw: Any) -> Histogram:
        from prometheus_client import Histogram

        return Histogram(f"{NAMESPACE}_{name}", doc, list(labels), registry=self.registry, **kw)

    def _register(self, collector: _Collector) -> None:
        if self._registry is None:
            self._waiting.append(collector)
        else:
            self._registry.register(collector)

    def callback_gauge(self, name: str, doc: str, labels: list[str],
                       read: Callable[[], Iterable[tuple[list[str], float]]]) -> None:
        self._register(_CallbackCollector(f"{NAMESPACE}_{name}", doc, labels, read))

    def callback_counters(self, name: str, doc: str, label: str,
                          read: Callable[[], Mapping[str, int]], known: Iterable[str] = ()) -> None:
        """A family of counters (``<name>_total{<label>=...}``) kept by a component."""
        self._register(_CounterCollector(f"{NAMESPACE}_{name}", doc, label, read, known))

    def callback_counter_family(self, name: str, doc: str, labels: list[str],
                                read: Callable[[], Iterable[tuple[list[str], float]]]) -> None:
        """Counters with several labels (``<name>_total{a=...,b=...}``) kept by a component."""
        self._register(_LabelledCounterCollector(f"{NAMESPACE}_{name}", doc, labels, read))

    def callback_histogram(self, name: str, doc: str,
                           read: Callable[[], tuple[list[tuple[str, float]], float]]) -> None:
        """A histogram kept by a component: ``read`` gives ``([(le, cumulative count)], sum)``."""
        self._register(_HistogramCollector(f"{NAMESPACE}_{name}", doc, read))

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
