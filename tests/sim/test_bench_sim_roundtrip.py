"""The simulator round-trip benchmark runs in quick mode and yields its rows (no timing asserted)."""

from __future__ import annotations

import math

import pytest

from hftkit.bench import sim_roundtrip
from hftkit.bench.harness import BenchOptions
from hftkit.datasets import shared_data_dir


@pytest.mark.timeout(60)
def test_quick_run_measures_rest_and_websocket_round_trips_without_failures() -> None:
    shared_data_dir()  # required: fails with where it looked
    results = sim_roundtrip.run(BenchOptions(quick=True))
    names = [result.name for result in results]
    assert len(names) == 6 and len(set(names)) == 6
    throughput = [result for result in results if result.unit == "orders/s"]
    assert [result.detail["orders"] for result in throughput] == [50, 50]
    assert all(result.detail["failures"] == 0 for result in throughput)
    assert all(result.baseline == sim_roundtrip.BASELINE for result in throughput)
    for result in results:
        assert result.value > 0 and math.isfinite(result.value)
        assert result.ratio is not None
