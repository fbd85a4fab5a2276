"""JSON snapshot of a registry: one document a dashboard, a log line or a file can carry."""

from __future__ import annotations

import math
from typing import Any

import orjson

from hftkit.metrics.registry import MetricsRegistry, MetricsSnapshot

SCHEMA_VERSION = 1


def snapshot_to_dict(
    snapshot: MetricsSnapshot | MetricsRegistry, include_buckets: bool = False
) -> dict[str, Any]:
    """Plain-data form: ``{"taken_at_ns", "interval_ns", "metrics": [{name, type, labels, ...}]}``.

    Histogram figures are integer ns (None when empty); ``include_buckets`` adds the non-empty
    buckets as ``[lower_ns, upper_ns, count]`` so a reader can merge or re-derive percentiles.
    """
    if isinstance(snapshot, MetricsRegistry):
        snapshot = snapshot.snapshot()
    metrics: list[dict[str, Any]] = []
    for key, value in sorted(snapshot.counters.items()):
        metrics.append({"name": key.name, "type": "counter", "labels": key.label_dict, "value": value})
    for key, value in sorted(snapshot.gauges.items()):
        finite = value if isinstance(value, int) or math.isfinite(value) else None
        metrics.append({"name": key.name, "type": "gauge", "labels": key.label_dict, "value": finite})
    for key, histogram in sorted(snapshot.histograms.items()):
        entry: dict[str, Any] = {"name": key.name, "type": "histogram", "labels": key.label_dict}
        entry.update(histogram.as_dict())
        entry["extremes_exact"] = histogram.extremes_exact
        if include_buckets:
            entry["buckets"] = [list(bucket) for bucket in histogram.nonzero_buckets()]
        metrics.append(entry)
    return {
        "schema": SCHEMA_VERSION,
        "taken_at_ns": snapshot.taken_at_ns,
        "interval_ns": snapshot.interval_ns,
        "metrics": metrics,
    }


def snapshot_to_json(snapshot: MetricsSnapshot | MetricsRegistry, include_buckets: bool = False) -> bytes:
    """The same document as compact JSON bytes (orjson)."""
    return orjson.dumps(snapshot_to_dict(snapshot, include_buckets))
