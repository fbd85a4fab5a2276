"""Console table of a snapshot with ``rich``: what an operator reads in a terminal or a log."""

from __future__ import annotations

import io
import math

from rich.console import Console
from rich.table import Table

from hftkit.metrics.registry import MetricKey, MetricsRegistry, MetricsSnapshot

_DURATION_UNITS = ((1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "µs"))


def format_duration(nanoseconds: float) -> str:
    """Human duration with 3 significant figures: ``812 ns``, ``12.4 µs``, ``3.05 ms``, ``1.20 s``."""
    if nanoseconds != nanoseconds:
        return "-"
    for scale, unit in _DURATION_UNITS:
        if abs(nanoseconds) >= scale:
            return f"{_three_figures(nanoseconds / scale)} {unit}"
    return f"{nanoseconds:.0f} ns"


def _three_figures(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _format_number(value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.4g}"


def _labels(key: MetricKey) -> str:
    return ",".join(f"{label}={value}" for label, value in key.labels)


def render_table(snapshot: MetricsSnapshot | MetricsRegistry, title: str = "hftkit metrics") -> Table:
    """A rich Table: one row per series; latency columns are empty for counters and gauges."""
    if isinstance(snapshot, MetricsRegistry):
        snapshot = snapshot.snapshot()
    if snapshot.interval_ns is not None:
        title = f"{title} (last {format_duration(snapshot.interval_ns)})"
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("labels")
    table.add_column("count/value", justify="right")
    for column in ("p50", "p90", "p99", "p99.9", "p99.99", "max", "mean"):
        table.add_column(column, justify="right")
    for key, histogram in sorted(snapshot.histograms.items()):
        if histogram.count:
            figures = [format_duration(value) for value in histogram.percentiles()]
            figures += [format_duration(histogram.maximum), format_duration(histogram.mean)]
        else:
            figures = ["-"] * 7
        table.add_row(key.name, _labels(key), f"{histogram.count:,}", *figures)
    for key, value in sorted(snapshot.counters.items()):
        table.add_row(key.name, _labels(key), _format_number(value), *[""] * 7)
    for key, value in sorted(snapshot.gauges.items()):
        table.add_row(key.name, _labels(key), _format_number(value), *[""] * 7)
    return table


def format_table(
    snapshot: MetricsSnapshot | MetricsRegistry, title: str = "hftkit metrics", width: int = 160
) -> str:
    """The table as plain text (no colour codes), for logs and tests."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False)
    console.print(render_table(snapshot, title))
    return buffer.getvalue()
