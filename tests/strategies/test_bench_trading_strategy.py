"""The market-maker decision benchmark runs in quick mode and reports its rows."""

from __future__ import annotations

from hftkit.bench import trading_strategy
from hftkit.bench.harness import BenchOptions


def test_quick_run_reports_p50_and_p99_rows_against_the_published_figure() -> None:
    results = trading_strategy.run(BenchOptions(quick=True))
    assert [result.name.rsplit(", ", 1)[-1] for result in results] == ["p50", "p99"]
    p50, p99 = results
    assert 0 < p50.value <= p99.value and p50.unit == p99.unit == "us"
    for result in results:
        assert result.baseline is not None and "published" in result.baseline
        assert result.baseline_value == trading_strategy.PUBLISHED_STRATEGY_RUN_US
        assert result.ratio is not None and result.ratio > 0
        assert result.target is not None and result.met is not None
        assert result.detail["decisions"] == trading_strategy.QUICK_DIFFS
        assert result.detail["actions_per_decision"] > 0


def test_replay_decodes_the_recording_onto_the_real_grid_and_keeps_the_book_sane() -> None:
    events = trading_strategy.load_book_events(limit=50)
    assert len(events.diffs) == 50 and events.snapshot_bids and events.snapshot_asks
    assert events.instrument.ticks_to_price(events.snapshot_bids[0][0]) == "61837.63"
    result = trading_strategy.replay_decisions(events)
    assert len(result.timings_ns) == 50 and result.actions > 0
