"""Registry: identity by name + labels, kind conflicts, name validation, snapshots and intervals."""

from __future__ import annotations

import math

import pytest

from hftkit.core.clock import SimulatedClock
from hftkit.core.errors import OutOfRangeError
from hftkit.metrics import (
    Counter,
    Gauge,
    InvalidMeasurementError,
    InvalidMetricNameError,
    LatencyHistogram,
    MetricKey,
    MetricKind,
    MetricsRegistry,
    MetricTypeConflictError,
    default_registry,
)
from hftkit.metrics import counter as default_counter
from hftkit.metrics import histogram as default_histogram


def test_same_name_and_labels_return_the_same_object_whatever_the_label_order() -> None:
    registry = MetricsRegistry()
    first = registry.histogram("book_apply_ns", venue="binance", symbol="BTCUSDT")
    again = registry.histogram("book_apply_ns", symbol="BTCUSDT", venue="binance")
    other_symbol = registry.histogram("book_apply_ns", venue="binance", symbol="ETHUSDT")
    assert first is again
    assert first is not other_symbol
    assert isinstance(first, LatencyHistogram)
    assert len(registry) == 2


def test_label_values_are_compared_as_text() -> None:
    registry = MetricsRegistry()
    assert registry.counter("fills", account=3) is registry.counter("fills", account="3")


def test_a_name_keeps_one_kind() -> None:
    registry = MetricsRegistry()
    registry.counter("orders_sent", venue="binance")
    with pytest.raises(MetricTypeConflictError):
        registry.histogram("orders_sent", venue="thalex")
    with pytest.raises(MetricTypeConflictError):
        registry.gauge("orders_sent", venue="binance")
    assert registry.kind_of("orders_sent") is MetricKind.COUNTER


@pytest.mark.parametrize("name", ["", "9lives", "with space", "dash-ed", "é"])
def test_invalid_metric_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidMetricNameError):
        MetricsRegistry().counter(name)


def test_invalid_and_reserved_label_names_are_rejected() -> None:
    registry = MetricsRegistry()
    with pytest.raises(InvalidMetricNameError):
        registry.counter("x", **{"bad-label": "1"})
    with pytest.raises(InvalidMetricNameError):
        registry.counter("x", __internal="1")
    with pytest.raises(InvalidMetricNameError):
        registry.histogram("latency_ns", quantile="0.5")
    with pytest.raises(InvalidMetricNameError):
        registry.histogram("latency_ns", le="10")
    assert len(registry) == 0
    assert registry.kind_of("x") is None


def test_get_never_creates_and_remove_forgets_a_series() -> None:
    registry = MetricsRegistry()
    assert registry.get("queue_depth", feed="depth") is None
    gauge = registry.gauge("queue_depth", feed="depth")
    assert registry.get("queue_depth", feed="depth") is gauge
    assert registry.remove("queue_depth", feed="depth")
    assert not registry.remove("queue_depth", feed="depth")
    assert registry.kind_of("queue_depth") is None
    registry.counter("queue_depth")  # the name is free again


def test_descriptions_are_kept_for_exports() -> None:
    registry = MetricsRegistry()
    registry.histogram("rtt_ns", "order round trip", venue="binance")
    registry.histogram("rtt_ns", venue="thalex")
    assert registry.description("rtt_ns") == "order round trip"
    registry.describe("rtt_ns", "new text")
    assert registry.description("rtt_ns") == "new text"


def test_default_registry_is_shared_by_module_functions() -> None:
    histogram = default_histogram("test_default_registry_probe_ns", case="shared")
    assert default_registry().histogram("test_default_registry_probe_ns", case="shared") is histogram
    assert default_counter("test_default_registry_count") is default_registry().counter(
        "test_default_registry_count"
    )


def test_snapshot_and_since_give_interval_figures() -> None:
    clock = SimulatedClock(start_ns=1_000)
    registry = MetricsRegistry(clock=clock)
    latency = registry.histogram("apply_ns")
    errors = registry.counter("apply_errors")
    depth = registry.gauge("depth")
    latency.record_many([100, 200, 300])
    errors.inc(2)
    depth.set(5)
    first = registry.snapshot()
    clock.advance(10_000_000_000)
    latency.record_many([400, 500])
    errors.inc()
    depth.set(7)
    second = registry.snapshot()
    interval = second.since(first)
    assert interval.interval_ns == 10_000_000_000
    assert first.interval_ns is None
    histogram = interval.histogram("apply_ns")
    assert histogram is not None and histogram.count == 2 and histogram.total == 900
    assert interval.counter("apply_errors") == 1
    assert interval.gauge("depth") == 7
    assert second.counter("apply_errors") == 3
    assert interval.taken_at_ns == clock.time_ns()


def test_reset_snapshots_make_intervals_from_the_reset_contents() -> None:
    registry = MetricsRegistry()
    latency = registry.histogram("apply_ns")
    latency.record_many([100, 200])
    first = registry.snapshot(reset_histograms=True)
    assert latency.count == 0
    latency.record(900)
    second = registry.snapshot(reset_histograms=True)
    histogram = second.since(first).histogram("apply_ns")
    assert histogram is not None and histogram.count == 1 and histogram.minimum == histogram.maximum == 900


def test_a_histogram_reset_by_someone_else_is_reported_as_is() -> None:
    registry = MetricsRegistry()
    latency = registry.histogram("apply_ns")
    latency.record_many([100, 200])
    first = registry.snapshot()
    latency.reset()
    latency.record(50)
    histogram = registry.snapshot().since(first).histogram("apply_ns")
    assert histogram is not None and histogram.count == 1 and histogram.maximum == 50


def test_metric_key_matches_label_subsets() -> None:
    key = MetricKey.of("apply_ns", {"venue": "binance", "symbol": "BTCUSDT"})
    assert key.matches("apply_ns", {})
    assert key.matches("apply_ns", {"venue": "binance"})
    assert not key.matches("apply_ns", {"venue": "thalex"})
    assert not key.matches("other", {})
    assert str(key) == 'apply_ns{symbol="BTCUSDT",venue="binance"}'


def test_counter_only_goes_up_and_rejects_non_finite_increments() -> None:
    counter = Counter()
    counter.inc()
    counter.inc(4)
    assert counter.value == 5
    with pytest.raises(OutOfRangeError):
        counter.inc(-1)
    with pytest.raises(InvalidMeasurementError):
        counter.inc(math.nan)
    with pytest.raises(InvalidMeasurementError):
        counter.inc(math.inf)
    assert counter.value == 5


def test_gauge_set_inc_dec_and_function() -> None:
    gauge = Gauge()
    gauge.set(10)
    gauge.inc(2)
    gauge.dec(5)
    assert gauge.value == 7
    queue: list[int] = [1, 2, 3]
    gauge.set_function(lambda: len(queue))
    assert gauge.value == 3
    queue.append(4)
    assert gauge.value == 4
    gauge.set_function(None)
    assert gauge.value == 7


def test_failing_gauge_function_reads_nan_and_is_counted() -> None:
    gauge = Gauge()

    def broken() -> float:
        raise RuntimeError("socket gone")

    gauge.set_function(broken)
    assert math.isnan(gauge.value)
    assert math.isnan(gauge.value)
    assert gauge.function_errors == 2
