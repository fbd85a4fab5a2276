"""The metrics benchmark suite runs and produces its figures (speed is not asserted here)."""

from __future__ import annotations

from hftkit.bench import core_metrics
from hftkit.bench.harness import BenchOptions


def test_metrics_bench_quick_run_produces_positive_figures_beside_baselines() -> None:
    results = core_metrics.run(BenchOptions(quick=True))
    names = [result.name for result in results]
    assert "metrics: histogram record" in names
    assert any("probe context manager" in name for name in names)
    assert any("p50..p99.99" in name for name in names)
    for result in results:
        assert result.value > 0, result.name
        assert result.baseline and result.baseline_value is not None and result.baseline_value > 0
        assert result.ratio is not None and result.ratio > 0
    record = results[names.index("metrics: histogram record")]
    assert record.target == "<= 250 ns" and record.met is not None
    assert record.baseline == "prometheus_client Histogram.observe"
