"""Alert rules evaluated as pure functions over interval snapshots (no asyncio)."""

from __future__ import annotations

import contextlib

import pytest

from hftkit.core.clock import SimulatedClock
from hftkit.core.errors import OutOfRangeError
from hftkit.metrics import (
    AlertKind,
    ErrorRateAbove,
    GaugeOutside,
    MetricsRegistry,
    MetricsSnapshot,
    PercentileAbove,
    evaluate_rules,
)


def interval_of(registry: MetricsRegistry, clock: SimulatedClock, fill: object) -> MetricsSnapshot:
    before = registry.snapshot()
    clock.advance(5_000_000_000)
    fill()  # type: ignore[operator]
    return registry.snapshot().since(before)


def test_p99_above_threshold_fires_per_breaching_series_only() -> None:
    clock = SimulatedClock()
    registry = MetricsRegistry(clock=clock)
    slow = registry.histogram("book_apply_ns", venue="binance", symbol="BTCUSDT")
    fast = registry.histogram("book_apply_ns", venue="binance", symbol="ETHUSDT")
    slow.record_many([1_000_000] * 50)  # before the interval: must not count

    def fill() -> None:
        slow.record_many([2_000] * 95 + [900_000] * 5)
        fast.record_many([2_000] * 100)

    interval = interval_of(registry, clock, fill)
    rule = PercentileAbove("book_apply_ns", 99.0, threshold_ns=500_000, labels={"venue": "binance"})
    alerts = evaluate_rules([rule], interval)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.kind is AlertKind.LATENCY
    assert alert.labels == {"venue": "binance", "symbol": "BTCUSDT"}
    assert abs(alert.value - 900_000) <= 900_000 / 256
    assert alert.threshold == 500_000 and alert.sample_count == 100
    assert alert.interval_ns == 5_000_000_000
    assert "p99" in alert.message and "BTCUSDT" in alert.message and "5 s" in alert.message


def test_p99_at_or_below_threshold_and_quiet_intervals_do_not_fire() -> None:
    clock = SimulatedClock()
    registry = MetricsRegistry(clock=clock)
    latency = registry.histogram("rtt_ns")
    interval = interval_of(registry, clock, lambda: latency.record_many([100, 200, 5_000_000]))
    assert evaluate_rules([PercentileAbove("rtt_ns", 99.0, 10_000_000)], interval) == []
    assert evaluate_rules([PercentileAbove("rtt_ns", 99.0, 1_000, min_count=10)], interval) == []
    assert len(evaluate_rules([PercentileAbove("rtt_ns", 99.0, 1_000, min_count=3)], interval)) == 1


def test_error_rate_over_the_interval_uses_counter_deltas() -> None:
    clock = SimulatedClock()
    registry = MetricsRegistry(clock=clock)
    errors = registry.counter("order_errors", venue="binance")
    total = registry.counter("orders", venue="binance")
    errors.inc(50)  # a bad past does not make a bad interval
    total.inc(60)

    def fill() -> None:
        errors.inc(3)
        total.inc(100)

    interval = interval_of(registry, clock, fill)
    assert evaluate_rules([ErrorRateAbove("order_errors", "orders", threshold=0.05)], interval) == []
    alerts = evaluate_rules([ErrorRateAbove("order_errors", "orders", threshold=0.02)], interval)
    assert len(alerts) == 1
    assert alerts[0].kind is AlertKind.ERROR_RATE
    assert alerts[0].value == pytest.approx(0.03)
    assert alerts[0].sample_count == 100
    assert "3.00%" in alerts[0].message


def test_error_rate_can_use_a_probe_histogram_count_as_total() -> None:
    clock = SimulatedClock()
    registry = MetricsRegistry(clock=clock)
    probe = registry.probe("order_send_ns", venue="thalex", clock=iter(range(0, 10**9, 100)).__next__)

    @probe
    def send(ok: bool) -> None:
        if not ok:
            raise ConnectionError

    def fill() -> None:
        for attempt in range(10):
            with contextlib.suppress(ConnectionError):
                send(attempt % 5 != 0)

    interval = interval_of(registry, clock, fill)
    rule = ErrorRateAbove("order_send_ns_errors", "order_send_ns", threshold=0.1, min_total=5)
    alerts = evaluate_rules([rule], interval)
    assert len(alerts) == 1 and alerts[0].value == pytest.approx(0.2)
    assert alerts[0].labels == {"venue": "thalex"}
    assert (
        evaluate_rules([ErrorRateAbove("order_send_ns_errors", "order_send_ns", 0.1, min_total=20)], interval)
        == []
    )


def test_error_rate_without_a_total_series_does_not_fire() -> None:
    registry = MetricsRegistry()
    registry.counter("errors_only").inc(5)
    assert evaluate_rules([ErrorRateAbove("errors_only", "missing", 0.0)], registry.snapshot()) == []


def test_gauge_outside_bounds() -> None:
    registry = MetricsRegistry()
    registry.gauge("inventory_lots", symbol="BTCUSDT").set(120)
    registry.gauge("inventory_lots", symbol="ETHUSDT").set(-5)
    registry.gauge("inventory_lots", symbol="SOLUSDT").set(10)
    registry.gauge("inventory_lots", symbol="XRPUSDT").set_function(lambda: 1 / 0)
    alerts = evaluate_rules([GaugeOutside("inventory_lots", low=0, high=100)], registry.snapshot())
    assert {(alert.labels["symbol"], alert.threshold) for alert in alerts} == {
        ("BTCUSDT", 100),
        ("ETHUSDT", 0),
    }
    assert all(alert.kind is AlertKind.GAUGE for alert in alerts)


def test_rules_validate_their_bounds() -> None:
    with pytest.raises(OutOfRangeError):
        PercentileAbove("x", 0.0, 10)
    with pytest.raises(OutOfRangeError):
        PercentileAbove("x", 99.0, -1)
    with pytest.raises(OutOfRangeError):
        ErrorRateAbove("e", "t", 1.5)
    with pytest.raises(OutOfRangeError):
        GaugeOutside("g")
    with pytest.raises(OutOfRangeError):
        GaugeOutside("g", low=5, high=1)
    with pytest.raises(TypeError):
        evaluate_rules(["not a rule"], MetricsRegistry().snapshot())  # type: ignore[list-item]


def test_rule_titles_default_to_a_readable_description() -> None:
    assert PercentileAbove("book_apply_ns", 99.9, 250_000).title == "book_apply_ns p99.9 > 250 µs"
    assert PercentileAbove("x", 99, 1, name="custom").title == "custom"
    assert ErrorRateAbove("e", "t", 0.01).title == "e/t > 1.00%"
