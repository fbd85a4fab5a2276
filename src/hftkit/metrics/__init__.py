"""Metrics: O(1) latency histograms, counters, gauges, probes, exporters and a periodic reporter.

Recording is pure Python and cheap (a histogram ``record`` is one bit_length, a shift and a
list increment); every figure is computed only when a snapshot is read. No I/O here except the
reporter's asyncio task.

    registry = MetricsRegistry()
    apply_ns = registry.histogram("book_apply_ns", venue="binance", symbol="BTCUSDT")
    apply_ns.record(elapsed_ns)                      # hot path: keep the object, not the lookup
    send = registry.probe("order_send_ns", venue="binance")

    @send                                            # or: async with send.measure(): ...
    async def place(order): ...

    reporter = MetricsReporter(registry, [PercentileAbove("book_apply_ns", 99.0, 50_000)],
                               interval_s=10, on_alert=page_someone)
    prometheus_text(registry); snapshot_to_json(registry); format_table(registry)
"""

from typing import TYPE_CHECKING

from hftkit.core.lazy import lazy_exports
from hftkit.metrics.errors import (
    IncompatibleSnapshotError,
    InvalidMeasurementError,
    InvalidMetricNameError,
    MetricTypeConflictError,
)
from hftkit.metrics.histogram import (
    BUCKET_COUNT,
    HIGHEST_NS,
    LOWEST_NS,
    RELATIVE_ERROR_BOUND,
    STANDARD_PERCENTILES,
    HistogramSnapshot,
    LatencyHistogram,
)
from hftkit.metrics.instruments import Counter, Gauge
from hftkit.metrics.probe import Measurement, Probe
from hftkit.metrics.registry import (
    MetricKey,
    MetricKind,
    MetricsRegistry,
    MetricsSnapshot,
    counter,
    default_registry,
    gauge,
    histogram,
    probe,
)

if TYPE_CHECKING:  # the exporters and the console load on first use: recording needs none of them
    from hftkit.metrics.alerts import (
        Alert,
        AlertKind,
        AlertRule,
        ErrorRateAbove,
        GaugeOutside,
        PercentileAbove,
        evaluate_rules,
    )
    from hftkit.metrics.console import (
        format_duration,
        format_table,
        render_table,
    )
    from hftkit.metrics.json_snapshot import (
        snapshot_to_dict,
        snapshot_to_json,
    )
    from hftkit.metrics.prometheus import (
        PrometheusCollector,
        prometheus_text,
    )
    from hftkit.metrics.reporter import (
        MetricsReporter,
    )

_LAZY = {
    "Alert": "hftkit.metrics.alerts",
    "AlertKind": "hftkit.metrics.alerts",
    "AlertRule": "hftkit.metrics.alerts",
    "ErrorRateAbove": "hftkit.metrics.alerts",
    "GaugeOutside": "hftkit.metrics.alerts",
    "PercentileAbove": "hftkit.metrics.alerts",
    "evaluate_rules": "hftkit.metrics.alerts",
    "format_duration": "hftkit.metrics.console",
    "format_table": "hftkit.metrics.console",
    "render_table": "hftkit.metrics.console",
    "snapshot_to_dict": "hftkit.metrics.json_snapshot",
    "snapshot_to_json": "hftkit.metrics.json_snapshot",
    "PrometheusCollector": "hftkit.metrics.prometheus",
    "prometheus_text": "hftkit.metrics.prometheus",
    "MetricsReporter": "hftkit.metrics.reporter",
}


__getattr__ = lazy_exports(__name__, _LAZY)  # exporters, alerts, reporter, console: on first use


__all__ = [
    "BUCKET_COUNT",
    "HIGHEST_NS",
    "LOWEST_NS",
    "RELATIVE_ERROR_BOUND",
    "STANDARD_PERCENTILES",
    "Alert",
    "AlertKind",
    "AlertRule",
    "Counter",
    "ErrorRateAbove",
    "Gauge",
    "GaugeOutside",
    "HistogramSnapshot",
    "IncompatibleSnapshotError",
    "InvalidMeasurementError",
    "InvalidMetricNameError",
    "LatencyHistogram",
    "Measurement",
    "MetricKey",
    "MetricKind",
    "MetricTypeConflictError",
    "MetricsRegistry",
    "MetricsReporter",
    "MetricsSnapshot",
    "PercentileAbove",
    "Probe",
    "PrometheusCollector",
    "counter",
    "default_registry",
    "evaluate_rules",
    "format_duration",
    "format_table",
    "gauge",
    "histogram",
    "probe",
    "prometheus_text",
    "render_table",
    "snapshot_to_dict",
    "snapshot_to_json",
]
