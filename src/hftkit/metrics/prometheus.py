"""Prometheus text exposition of a MetricsRegistry through ``prometheus-client``.

A custom Collector turns our metrics into metric families at scrape time, so recording never
touches prometheus-client (whose ``observe`` takes a lock and costs several times our
``record``). Histograms are exposed as summaries with quantile samples (default) or as
Prometheus histograms with ``le`` buckets; values stay in the nanoseconds they were recorded
in, and a ``<name>_max`` gauge carries the exact maximum, the figure a latency budget is about.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Literal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from hftkit.metrics.histogram import STANDARD_PERCENTILES, HistogramSnapshot
from hftkit.metrics.registry import MetricKey, MetricsRegistry

DEFAULT_BUCKETS_NS: tuple[float, ...] = (
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
)
"""1 us .. 1 s in 1-2.5-5 steps: the range of an in-process hot path up to a venue round trip."""

HistogramStyle = Literal["summary", "histogram"]


def _quantile_label(percent: float) -> str:
    return format(percent / 100.0, ".10g")  # 0.999, not 0.9990000000000001


class PrometheusCollector:
    """Collector for ``prometheus_client.CollectorRegistry.register``; reads the registry at scrape."""

    def __init__(
        self,
        registry: MetricsRegistry,
        histograms_as: HistogramStyle = "summary",
        percentiles: Sequence[float] = STANDARD_PERCENTILES,
        buckets_ns: Sequence[float] = DEFAULT_BUCKETS_NS,
    ) -> None:
        if histograms_as not in ("summary", "histogram"):
            raise ValueError(f"histograms_as must be 'summary' or 'histogram', got {histograms_as!r}")
        self._registry = registry
        self._style = histograms_as
        self._percentiles = tuple(percentiles)
        self._buckets = tuple(sorted(float(bound) for bound in buckets_ns))

    def describe(self) -> list[Metric]:
        """Nothing up front: names are read at scrape time (keeps ``register`` from collecting)."""
        return []

    def collect(self) -> Iterator[Metric]:
        snapshot = self._registry.snapshot()
        descriptions = snapshot.descriptions
        yield from _counter_families(snapshot.counters, descriptions)
        yield from _gauge_families(snapshot.gauges, descriptions)
        by_name: dict[str, list[tuple[MetricKey, HistogramSnapshot]]] = {}
        for key, histogram in snapshot.histograms.items():
            by_name.setdefault(key.name, []).append((key, histogram))
        for name, series in sorted(by_name.items()):
            documentation = descriptions.get(name) or f"{name} (nanoseconds)"
            if self._style == "summary":
                yield self._summary(name, documentation, series)
            else:
                yield self._histogram(name, documentation, series)
            maximum = Metric(f"{name}_max", f"largest value recorded in {name} (nanoseconds)", "gauge")
            for key, histogram in series:
                value = float(histogram.maximum) if histogram.count else math.nan
                maximum.samples.append(Sample(f"{name}_max", key.label_dict, value))
            yield maximum

    def _summary(
        self, name: str, documentation: str, series: list[tuple[MetricKey, HistogramSnapshot]]
    ) -> Metric:
        family = Metric(name, documentation, "summary")
        for key, histogram in series:
            labels = key.label_dict
            values = histogram.percentiles(self._percentiles) if histogram.count else None
            for position, percent in enumerate(self._percentiles):
                value = float(values[position]) if values is not None else math.nan
                family.samples.append(Sample(name, {**labels, "quantile": _quantile_label(percent)}, value))
            family.samples.append(Sample(f"{name}_count", labels, float(histogram.count)))
            family.samples.append(Sample(f"{name}_sum", labels, float(histogram.total)))
        return family

    def _histogram(
        self, name: str, documentation: str, series: list[tuple[MetricKey, HistogramSnapshot]]
    ) -> Metric:
        family = Metric(name, documentation, "histogram")
        for key, histogram in series:
            labels = key.label_dict
            for bound in self._buckets:
                cumulative = float(histogram.count_at_or_below(bound))
                family.samples.append(
                    Sample(f"{name}_bucket", {**labels, "le": _bound_label(bound)}, cumulative)
                )
            family.samples.append(Sample(f"{name}_bucket", {**labels, "le": "+Inf"}, float(histogram.count)))
            family.samples.append(Sample(f"{name}_count", labels, float(histogram.count)))
            family.samples.append(Sample(f"{name}_sum", labels, float(histogram.total)))
        return family


def _bound_label(bound: float) -> str:
    return repr(float(bound))


def _counter_families(
    counters: Mapping[MetricKey, int | float], descriptions: Mapping[str, str]
) -> Iterable[Metric]:
    by_name: dict[str, list[tuple[MetricKey, int | float]]] = {}
    for key, value in counters.items():
        by_name.setdefault(key.name, []).append((key, value))
    for name, series in sorted(by_name.items()):
        family_name = name.removesuffix("_total")
        family = Metric(family_name, descriptions.get(name) or name, "counter")
        for key, value in series:
            family.samples.append(Sample(f"{family_name}_total", key.label_dict, float(value)))
        yield family


def _gauge_families(gauges: Mapping[MetricKey, float], descriptions: Mapping[str, str]) -> Iterable[Metric]:
    by_name: dict[str, list[tuple[MetricKey, float]]] = {}
    for key, value in gauges.items():
        by_name.setdefault(key.name, []).append((key, value))
    for name, series in sorted(by_name.items()):
        family = Metric(name, descriptions.get(name) or name, "gauge")
        for key, value in series:
            family.samples.append(Sample(name, key.label_dict, float(value)))
        yield family


def prometheus_text(
    registry: MetricsRegistry,
    histograms_as: HistogramStyle = "summary",
    percentiles: Sequence[float] = STANDARD_PERCENTILES,
    buckets_ns: Sequence[float] = DEFAULT_BUCKETS_NS,
) -> bytes:
    """The registry in Prometheus text exposition format (what a ``/metrics`` endpoint serves)."""
    collector_registry = CollectorRegistry(auto_describe=False)
    collector_registry.register(PrometheusCollector(registry, histograms_as, percentiles, buckets_ns))
    return generate_latest(collector_registry)
