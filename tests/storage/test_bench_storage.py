"""``hftkit bench storage`` runs and reports its figures with same-run baselines (no speed claims here)."""

from __future__ import annotations

import pytest

from hftkit.bench.harness import BenchOptions
from hftkit.bench.storage import encoding_figures, journal_figures, recorder_figures


@pytest.mark.slow
def test_storage_bench_figures_carry_baselines() -> None:
    options = BenchOptions(quick=True)
    results = [*journal_figures(options), *encoding_figures(options), *recorder_figures(options)]
    names = [result.name for result in results]
    assert any(name.startswith("journal") for name in names)
    assert any(name.startswith("line protocol") for name in names)
    assert any(name.startswith("recorder") for name in names)
    for result in results:
        assert result.value > 0 and result.baseline_value is not None and result.baseline_value > 0, result
        assert result.met is not None
    recorder = results[-1]
    assert recorder.detail["taps_ns_per_frame"] > 0 and 0 < recorder.detail["event_loop_cpu_share_kept"] < 1
