"""Alert rules and their evaluation over one reporting interval: pure functions, no asyncio.

A rule names a metric and an optional label filter (a subset match: ``venue="binance"`` picks
every binance series), so one rule watches every symbol. ``evaluate_rules`` returns one Alert
per breaching series; the reporter decides what to do with them.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hftkit.core.errors import OutOfRangeError
from hftkit.metrics.console import format_duration
from hftkit.metrics.registry import MetricKey, MetricsSnapshot


class AlertKind(enum.Enum):
    LATENCY = "latency"
    ERROR_RATE = "error_rate"
    GAUGE = "gauge"


@dataclass(frozen=True)
class PercentileAbove:
    """Fire when a histogram's ``percentile`` over the interval exceeds ``threshold_ns``.

    ``min_count`` keeps a quiet interval (three events, one slow) from paging anyone.
    """

    histogram: str
    percentile: float
    threshold_ns: int
    labels: Mapping[str, str] = field(default_factory=dict)
    min_count: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        if not 0.0 < self.percentile <= 100.0:
            raise OutOfRangeError(f"percentile must be in (0, 100], got {self.percentile!r}")
        if self.threshold_ns < 0 or self.min_count < 1:
            raise OutOfRangeError("threshold_ns must be >= 0 and min_count >= 1")

    @property
    def title(self) -> str:
        return self.name or f"{self.histogram} p{self.percentile:g} > {format_duration(self.threshold_ns)}"


@dataclass(frozen=True)
class ErrorRateAbove:
    """Fire when ``errors`` / ``total`` over the interval exceeds ``threshold`` (a fraction).

    ``total`` may name a counter or a histogram (its count: a probe's histogram counts calls,
    its ``<name>_errors`` counter the failures). Series pair up by identical labels.
    """

    errors: str
    total: str
    threshold: float
    labels: Mapping[str, str] = field(default_factory=dict)
    min_total: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise OutOfRangeError(f"an error-rate threshold is a fraction in [0, 1], got {self.threshold!r}")
        if self.min_total < 1:
            raise OutOfRangeError("min_total must be >= 1")

    @property
    def title(self) -> str:
        return self.name or f"{self.errors}/{self.total} > {self.threshold:.2%}"


@dataclass(frozen=True)
class GaugeOutside:
    """Fire when a gauge at the end of the interval is below ``low`` or above ``high``."""

    gauge: str
    low: float | None = None
    high: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if self.low is None and self.high is None:
            raise OutOfRangeError("a gauge rule needs a low bound, a high bound or both")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise OutOfRangeError(f"low bound {self.low} above high bound {self.high}")

    @property
    def title(self) -> str:
        return self.name or f"{self.gauge} outside [{self.low}, {self.high}]"


AlertRule = PercentileAbove | ErrorRateAbove | GaugeOutside


@dataclass(frozen=True)
class Alert:
    """One breach: which rule, which series, the observed figure and the bound it crossed."""

    rule: str
    kind: AlertKind
    metric: str
    labels: Mapping[str, str]
    value: float
    threshold: float
    sample_count: int | None
    interval_ns: int | None
    taken_at_ns: int
    message: str


def evaluate_rules(rules: Iterable[AlertRule], interval: MetricsSnapshot) -> list[Alert]:
    """Every breach of every rule in ``interval`` (normally ``current.since(previous)``)."""
    alerts: list[Alert] = []
    for rule in rules:
        if isinstance(rule, PercentileAbove):
            alerts.extend(_percentile_alerts(rule, interval))
        elif isinstance(rule, ErrorRateAbove):
            alerts.extend(_error_rate_alerts(rule, interval))
        elif isinstance(rule, GaugeOutside):
            alerts.extend(_gauge_alerts(rule, interval))
        else:
            raise TypeError(f"unknown alert rule {rule!r}")
    return alerts


def _over(interval: MetricsSnapshot) -> str:
    return f" over {format_duration(interval.interval_ns)}" if interval.interval_ns is not None else ""


def _percentile_alerts(rule: PercentileAbove, interval: MetricsSnapshot) -> Iterable[Alert]:
    for key, histogram in sorted(interval.histograms.items()):
        if not key.matches(rule.histogram, rule.labels) or histogram.count < rule.min_count:
            continue
        value = histogram.percentile(rule.percentile)
        if value > rule.threshold_ns:
            yield Alert(
                rule=rule.title,
                kind=AlertKind.LATENCY,
                metric=rule.histogram,
                labels=key.label_dict,
                value=float(value),
                threshold=float(rule.threshold_ns),
                sample_count=histogram.count,
                interval_ns=interval.interval_ns,
                taken_at_ns=interval.taken_at_ns,
                message=(
                    f"p{rule.percentile:g} of {key} is {format_duration(value)} > "
                    f"{format_duration(rule.threshold_ns)}{_over(interval)} (n={histogram.count})"
                ),
            )


def _total_for(rule: ErrorRateAbove, key: MetricKey, interval: MetricsSnapshot) -> int | float | None:
    total_key = MetricKey(rule.total, key.labels)
    counter_total = interval.counters.get(total_key)
    if counter_total is not None:
        return counter_total
    histogram = interval.histograms.get(total_key)
    return histogram.count if histogram is not None else None


def _error_rate_alerts(rule: ErrorRateAbove, interval: MetricsSnapshot) -> Iterable[Alert]:
    for key, errors in sorted(interval.counters.items()):
        if not key.matches(rule.errors, rule.labels):
            continue
        total = _total_for(rule, key, interval)
        if total is None or total < rule.min_total:
            continue
        rate = errors / total
        if rate > rule.threshold:
            yield Alert(
                rule=rule.title,
                kind=AlertKind.ERROR_RATE,
                metric=rule.errors,
                labels=key.label_dict,
                value=rate,
                threshold=rule.threshold,
                sample_count=int(total),
                interval_ns=interval.interval_ns,
                taken_at_ns=interval.taken_at_ns,
                message=(
                    f"error rate {key}/{rule.total} is {rate:.2%} ({errors:g}/{total:g}) > "
                    f"{rule.threshold:.2%}{_over(interval)}"
                ),
            )


def _gauge_alerts(rule: GaugeOutside, interval: MetricsSnapshot) -> Iterable[Alert]:
    for key, value in sorted(interval.gauges.items()):
        if not key.matches(rule.gauge, rule.labels):
            continue
        if isinstance(value, float) and math.isnan(value):
            continue  # an unreadable gauge is counted by the gauge itself, not alerted on
        if rule.low is not None and value < rule.low:
            bound, side = rule.low, "below"
        elif rule.high is not None and value > rule.high:
            bound, side = rule.high, "above"
        else:
            continue
        yield Alert(
            rule=rule.title,
            kind=AlertKind.GAUGE,
            metric=rule.gauge,
            labels=key.label_dict,
            value=float(value),
            threshold=float(bound),
            sample_count=None,
            interval_ns=interval.interval_ns,
            taken_at_ns=interval.taken_at_ns,
            message=f"{key} is {value:g}, {side} {bound:g}",
        )
