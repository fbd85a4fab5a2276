"""The metrics registry: one object per name + labels, snapshots of everything at once.

Components take a registry (injectable, so tests and several nodes in one process keep their
figures apart); code that does not care uses the default one. Look a metric up once, keep the
returned object and record into it: the lookup sorts labels, the record does not.
"""

from __future__ import annotations

import enum
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.metrics.errors import (
    IncompatibleSnapshotError,
    InvalidMetricNameError,
    MetricTypeConflictError,
)
from hftkit.metrics.histogram import HistogramSnapshot, LatencyHistogram
from hftkit.metrics.instruments import Counter, Gauge
from hftkit.metrics.probe import NanosecondClock, Probe

_log = logging.getLogger(__name__)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_HISTOGRAM_RESERVED_LABELS = frozenset({"quantile", "le"})  # used by the Prometheus exposition


class MetricKind(enum.Enum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


Metric = LatencyHistogram | Counter | Gauge
_FACTORIES: dict[MetricKind, Callable[[], Metric]] = {
    MetricKind.COUNTER: Counter,
    MetricKind.GAUGE: Gauge,
    MetricKind.HISTOGRAM: LatencyHistogram,
}


class MetricKey(NamedTuple):
    """A metric's identity: its name and its labels sorted by label name."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, name: str, labels: Mapping[str, object] | None = None) -> MetricKey:
        if not labels:
            return cls(name, ())
        return cls(name, tuple(sorted((label, str(value)) for label, value in labels.items())))

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)

    def matches(self, name: str, label_filter: Mapping[str, str]) -> bool:
        """Same name, and every filter label present with the same value (a subset match)."""
        if self.name != name:
            return False
        own = dict(self.labels)
        return all(own.get(label) == str(value) for label, value in label_filter.items())

    def __str__(self) -> str:
        if not self.labels:
            return self.name
        inner = ",".join(f'{label}="{value}"' for label, value in self.labels)
        return f"{self.name}{{{inner}}}"


def _validate(name: str, labels: Mapping[str, object], kind: MetricKind) -> None:
    if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
        raise InvalidMetricNameError(f"invalid metric name {name!r} (want [a-zA-Z_:][a-zA-Z0-9_:]*)")
    for label in labels:
        if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
            raise InvalidMetricNameError(f"invalid label name {label!r} on metric {name!r}")
        if kind is MetricKind.HISTOGRAM and label in _HISTOGRAM_RESERVED_LABELS:
            raise InvalidMetricNameError(f"label {label!r} is reserved for histogram exposition ({name!r})")


@dataclass(frozen=True)
class MetricsSnapshot:
    """Every metric of a registry at one moment, or (from ``since``) over one interval.

    ``interval_ns`` is None for a point-in-time snapshot and the interval's length for a
    difference. Histograms and counters of an interval hold only that interval's events;
    gauges hold their value at the end of it.
    """

    taken_at_ns: int
    monotonic_ns: int
    histograms: Mapping[MetricKey, HistogramSnapshot]
    counters: Mapping[MetricKey, int | float]
    gauges: Mapping[MetricKey, float]
    descriptions: Mapping[str, str] = field(default_factory=dict)
    histograms_reset: bool = False
    interval_ns: int | None = None

    def since(self, earlier: MetricsSnapshot) -> MetricsSnapshot:
        """What happened between ``earlier`` and this snapshot (the periodic report's interval)."""
        histograms: dict[MetricKey, HistogramSnapshot] = {}
        for key, current in self.histograms.items():
            previous = earlier.histograms.get(key)
            if self.histograms_reset or previous is None:
                histograms[key] = current
                continue
            try:
                histograms[key] = current.since(previous)
            except IncompatibleSnapshotError:
                _log.warning("histogram %s was reset between snapshots; reporting its contents as-is", key)
                histograms[key] = current
        counters: dict[MetricKey, int | float] = {}
        for key, value in self.counters.items():
            previous_value = earlier.counters.get(key, 0)
            counters[key] = value - previous_value if value >= previous_value else value
        return MetricsSnapshot(
            taken_at_ns=self.taken_at_ns,
            monotonic_ns=self.monotonic_ns,
            histograms=histograms,
            counters=counters,
            gauges=dict(self.gauges),
            descriptions=self.descriptions,
            histograms_reset=self.histograms_reset,
            interval_ns=self.monotonic_ns - earlier.monotonic_ns,
        )

    def histogram(self, name: str, /, **labels: object) -> HistogramSnapshot | None:
        return self.histograms.get(MetricKey.of(name, labels))

    def counter(self, name: str, /, **labels: object) -> int | float | None:
        return self.counters.get(MetricKey.of(name, labels))

    def gauge(self, name: str, /, **labels: object) -> float | None:
        return self.gauges.get(MetricKey.of(name, labels))


class MetricsRegistry:
    """Histograms, counters and gauges by name + labels; asking twice returns the same object.

    A name has one kind: asking for ``x`` as a counter after it was made a histogram raises
    ``MetricTypeConflictError``. The keyword ``description`` is reserved (it cannot be a label).
    """

    def __init__(self, clock: Clock = REAL_CLOCK) -> None:
        self._clock = clock
        self._metrics: dict[MetricKey, Metric] = {}
        self._kinds: dict[str, MetricKind] = {}
        self._descriptions: dict[str, str] = {}

    def histogram(self, name: str, /, description: str = "", **labels: object) -> LatencyHistogram:
        metric = self._get_or_create(MetricKind.HISTOGRAM, name, description, labels)
        assert isinstance(metric, LatencyHistogram)
        return metric

    def counter(self, name: str, /, description: str = "", **labels: object) -> Counter:
        metric = self._get_or_create(MetricKind.COUNTER, name, description, labels)
        assert isinstance(metric, Counter)
        return metric

    def gauge(self, name: str, /, description: str = "", **labels: object) -> Gauge:
        metric = self._get_or_create(MetricKind.GAUGE, name, description, labels)
        assert isinstance(metric, Gauge)
        return metric

    def probe(
        self,
        name: str,
        /,
        description: str = "",
        clock: NanosecondClock = time.perf_counter_ns,
        **labels: object,
    ) -> Probe:
        """A probe timing into histogram ``name`` and counting exceptions in ``<name>_errors``.

        The error rate of the probed code is ``<name>_errors`` over the histogram's count.
        """
        histogram = self.histogram(name, description, **labels)
        errors = self.counter(f"{name}_errors", f"exceptions raised out of {name}", **labels)
        return Probe(histogram, errors, clock)

    def _get_or_create(
        self, kind: MetricKind, name: str, description: str, labels: Mapping[str, object]
    ) -> Metric:
        key = MetricKey.of(name, labels)
        metric = self._metrics.get(key)
        if metric is not None and self._kinds[name] is kind:
            return metric
        known = self._kinds.get(name)
        if known is not None and known is not kind:
            raise MetricTypeConflictError(f"metric {name!r} is a {known.value}, not a {kind.value}")
        _validate(name, labels, kind)
        metric = _FACTORIES[kind]()
        self._metrics[key] = metric
        self._kinds[name] = kind
        if description and not self._descriptions.get(name):
            self._descriptions[name] = description
        return metric

    def get(self, name: str, /, **labels: object) -> Metric | None:
        """The metric with exactly this name and labels, or None (never creates one)."""
        return self._metrics.get(MetricKey.of(name, labels))

    def kind_of(self, name: str) -> MetricKind | None:
        return self._kinds.get(name)

    def description(self, name: str) -> str:
        return self._descriptions.get(name, "")

    def describe(self, name: str, description: str) -> None:
        """Set (or replace) the help text shown for ``name`` in exports."""
        self._descriptions[name] = description

    def items(self) -> Iterator[tuple[MetricKey, MetricKind, Metric]]:
        """Every metric, ordered by name then labels (stable exports)."""
        for key in sorted(self._metrics):
            yield key, self._kinds[key.name], self._metrics[key]

    def remove(self, name: str, /, **labels: object) -> bool:
        """Forget one series (a delisted symbol); True when it existed."""
        key = MetricKey.of(name, labels)
        if self._metrics.pop(key, None) is None:
            return False
        if not any(other.name == name for other in self._metrics):
            del self._kinds[name]
        return True

    def __len__(self) -> int:
        return len(self._metrics)

    def snapshot(self, reset_histograms: bool = False) -> MetricsSnapshot:
        """Every metric's figures now; with ``reset_histograms`` the histograms start afresh."""
        histograms: dict[MetricKey, HistogramSnapshot] = {}
        counters: dict[MetricKey, int | float] = {}
        gauges: dict[MetricKey, float] = {}
        for key, kind, metric in self.items():
            if kind is MetricKind.HISTOGRAM:
                assert isinstance(metric, LatencyHistogram)
                histograms[key] = metric.snapshot_and_reset() if reset_histograms else metric.snapshot()
            elif kind is MetricKind.COUNTER:
                assert isinstance(metric, Counter)
                counters[key] = metric.value
            else:
                assert isinstance(metric, Gauge)
                gauges[key] = metric.value
        return MetricsSnapshot(
            taken_at_ns=self._clock.time_ns(),
            monotonic_ns=self._clock.monotonic_ns(),
            histograms=histograms,
            counters=counters,
            gauges=gauges,
            descriptions=dict(self._descriptions),
            histograms_reset=reset_histograms,
        )


_DEFAULT_REGISTRY = MetricsRegistry()


def default_registry() -> MetricsRegistry:
    """The process-wide registry used when a component is given none."""
    return _DEFAULT_REGISTRY


def histogram(name: str, /, description: str = "", **labels: object) -> LatencyHistogram:
    """A histogram of the default registry."""
    return _DEFAULT_REGISTRY.histogram(name, description, **labels)


def counter(name: str, /, description: str = "", **labels: object) -> Counter:
    """A counter of the default registry."""
    return _DEFAULT_REGISTRY.counter(name, description, **labels)


def gauge(name: str, /, description: str = "", **labels: object) -> Gauge:
    """A gauge of the default registry."""
    return _DEFAULT_REGISTRY.gauge(name, description, **labels)


def probe(
    name: str,
    /,
    description: str = "",
    clock: NanosecondClock = time.perf_counter_ns,
    **labels: object,
) -> Probe:
    """A probe of the default registry (histogram ``name``, counter ``<name>_errors``)."""
    return _DEFAULT_REGISTRY.probe(name, description, clock, **labels)
