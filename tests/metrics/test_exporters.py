"""Exporters: Prometheus text parses back, JSON round-trips, the console table shows the figures."""

from __future__ import annotations

import math

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hftkit.metrics import (
    MetricsRegistry,
    PrometheusCollector,
    format_duration,
    format_table,
    prometheus_text,
    render_table,
    snapshot_to_dict,
    snapshot_to_json,
)


@pytest.fixture
def registry() -> MetricsRegistry:
    registry = MetricsRegistry()
    latency = registry.histogram(
        "book_apply_ns", "time to apply one depth diff", venue="binance", symbol="BTCUSDT"
    )
    latency.record_many(range(1_000, 101_000, 10))  # 10,000 values, 1 us .. 101 us
    registry.histogram("book_apply_ns", venue="thalex", symbol="BTC-PERP")  # empty series
    registry.counter("orders_sent_total", "orders written to a socket", venue="binance").inc(42)
    registry.counter("order_rejects", venue="binance").inc(3)
    registry.gauge("feed_queue_depth", feed="depth").set(17)
    return registry


def families(text: bytes) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(text.decode())}


def samples_of(family: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value for sample in family.samples}  # type: ignore[attr-defined]


def test_prometheus_summary_exposition_parses_back_with_our_figures(registry: MetricsRegistry) -> None:
    collector_registry = CollectorRegistry()
    collector_registry.register(PrometheusCollector(registry))
    parsed = families(generate_latest(collector_registry))
    summary = parsed["book_apply_ns"]
    assert summary.type == "summary"  # type: ignore[attr-defined]
    assert summary.documentation == "time to apply one depth diff"  # type: ignore[attr-defined]
    values = samples_of(summary)
    labels = (("symbol", "BTCUSDT"), ("venue", "binance"))
    snapshot = registry.histogram("book_apply_ns", venue="binance", symbol="BTCUSDT").snapshot()
    for quantile, percent in (
        ("0.5", 50.0),
        ("0.9", 90.0),
        ("0.99", 99.0),
        ("0.999", 99.9),
        ("0.9999", 99.99),
    ):
        key = ("book_apply_ns", tuple(sorted((*labels, ("quantile", quantile)))))
        assert values[key] == snapshot.percentile(percent)
    assert values[("book_apply_ns_count", labels)] == 10_000
    assert values[("book_apply_ns_sum", labels)] == snapshot.total
    empty_labels = (("symbol", "BTC-PERP"), ("venue", "thalex"))
    assert math.isnan(values[("book_apply_ns", tuple(sorted((*empty_labels, ("quantile", "0.99")))))])
    assert values[("book_apply_ns_count", empty_labels)] == 0
    maximum = samples_of(parsed["book_apply_ns_max"])
    assert maximum[("book_apply_ns_max", labels)] == 100_990


def test_prometheus_counters_and_gauges_parse_back(registry: MetricsRegistry) -> None:
    parsed = families(prometheus_text(registry))
    assert parsed["orders_sent"].type == "counter"  # type: ignore[attr-defined]
    assert samples_of(parsed["orders_sent"])[("orders_sent_total", (("venue", "binance"),))] == 42
    assert samples_of(parsed["order_rejects"])[("order_rejects_total", (("venue", "binance"),))] == 3
    assert parsed["feed_queue_depth"].type == "gauge"  # type: ignore[attr-defined]
    assert samples_of(parsed["feed_queue_depth"])[("feed_queue_depth", (("feed", "depth"),))] == 17


def test_prometheus_histogram_style_has_cumulative_le_buckets(registry: MetricsRegistry) -> None:
    text = prometheus_text(registry, histograms_as="histogram", buckets_ns=(10_000, 50_000, 1_000_000))
    histogram = families(text)["book_apply_ns"]
    assert histogram.type == "histogram"  # type: ignore[attr-defined]
    labels = (("symbol", "BTCUSDT"), ("venue", "binance"))
    values = samples_of(histogram)

    def bucket(le: str) -> float:
        return values[("book_apply_ns_bucket", tuple(sorted((*labels, ("le", le)))))]

    # exact counts: 901 values <= 10 us, 4,901 <= 50 us; bucket resolution allows < 1% off
    assert abs(bucket("10000.0") - 901) <= 901 / 128
    assert abs(bucket("50000.0") - 4_901) <= 4_901 / 128
    assert bucket("1000000.0") == bucket("+Inf") == 10_000
    assert bucket("10000.0") <= bucket("50000.0") <= bucket("1000000.0")


def test_unknown_histogram_style_is_refused(registry: MetricsRegistry) -> None:
    with pytest.raises(ValueError):
        PrometheusCollector(registry, histograms_as="gauge")  # type: ignore[arg-type]


def test_json_snapshot_round_trips_with_figures_and_buckets(registry: MetricsRegistry) -> None:
    document = orjson.loads(snapshot_to_json(registry, include_buckets=True))
    assert document == snapshot_to_dict(registry.snapshot(), include_buckets=True) | {
        "taken_at_ns": document["taken_at_ns"]
    }
    by_series = {
        (entry["name"], tuple(sorted(entry["labels"].items()))): entry for entry in document["metrics"]
    }
    busy = by_series[("book_apply_ns", (("symbol", "BTCUSDT"), ("venue", "binance")))]
    snapshot = registry.histogram("book_apply_ns", venue="binance", symbol="BTCUSDT").snapshot()
    assert busy["type"] == "histogram"
    assert busy["count"] == 10_000 and busy["min"] == 1_000 and busy["max"] == 100_990
    assert busy["p99"] == snapshot.p99 and busy["p99_9"] == snapshot.p999
    assert sum(count for _, _, count in busy["buckets"]) == 10_000
    empty = by_series[("book_apply_ns", (("symbol", "BTC-PERP"), ("venue", "thalex")))]
    assert empty["count"] == 0 and empty["p50"] is None and empty["max"] is None
    assert by_series[("orders_sent_total", (("venue", "binance"),))]["value"] == 42
    assert by_series[("feed_queue_depth", (("feed", "depth"),))]["value"] == 17
    assert document["interval_ns"] is None and document["schema"] == 1


def test_json_snapshot_writes_an_unreadable_gauge_as_null() -> None:
    registry = MetricsRegistry()
    registry.gauge("broken").set_function(lambda: 1 / 0)
    document = orjson.loads(snapshot_to_json(registry))
    assert document["metrics"][0]["value"] is None


def test_console_table_shows_every_series_with_human_durations(registry: MetricsRegistry) -> None:
    text = format_table(registry, title="node metrics")
    assert "node metrics" in text
    assert "symbol=BTCUSDT,venue=binance" in text
    assert "10,000" in text
    snapshot = registry.histogram("book_apply_ns", venue="binance", symbol="BTCUSDT").snapshot()
    assert format_duration(snapshot.p99) in text
    assert format_duration(snapshot.maximum) in text
    assert "orders_sent_total" in text and "42" in text
    assert "feed_queue_depth" in text and "17" in text
    assert render_table(registry).row_count == 5


def test_format_duration_picks_units() -> None:
    assert format_duration(812) == "812 ns"
    assert format_duration(12_400) == "12.4 µs"
    assert format_duration(3_050_000) == "3.05 ms"
    assert format_duration(99_997) == "100 µs"
    assert format_duration(1_200_000_000) == "1.2 s"
    assert format_duration(math.nan) == "-"
