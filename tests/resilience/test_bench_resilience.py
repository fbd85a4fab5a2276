"""The resilience benchmark suite runs end to end (figures are not asserted: speed is not a test)."""

from __future__ import annotations

import math

from hftkit.bench import core_resilience
from hftkit.bench.harness import BenchOptions


def test_quick_run_produces_every_row_with_finite_values() -> None:
    results = core_resilience.run(BenchOptions(quick=True))
    names = {result.name for result in results}
    assert {
        "TokenBucket.try_acquire (admitting)",
        "WeightedLimiter.try_acquire (order: 3 windows)",
        "breaker + retry overhead, sync core (successful call)",
        "breaker + retry overhead, async (informational)",
    } <= names
    for result in results:
        assert math.isfinite(result.value) and result.value >= 0
        assert result.unit == "ns"
    bucket_row = next(r for r in results if r.name == "TokenBucket.try_acquire (admitting)")
    assert bucket_row.baseline_value is not None and bucket_row.target == "<= 200 ns"
    assert core_resilience.PEERS == ("aiolimiter",)
