from __future__ import annotations

from hftkit.bench import trading
from hftkit.bench.harness import BenchOptions, BenchResult


def test_trading_suite_runs_quickly_and_reports_oms_rows_against_published_figures() -> None:
    results = trading.run(BenchOptions(quick=True))
    names = [result.name for result in results]
    assert any(name.startswith("quoting reconcile") for name in names)
    assert any(name.startswith("state tracker order updates") for name in names)
    assert any(name.startswith("smart order router") for name in names)
    for result in results:
        assert result.value > 0
    for result in results:
        if result.name.startswith(("quoting reconcile", "state tracker")):
            assert result.ratio is not None and result.ratio > 0
            assert result.baseline is not None and "published" in result.baseline


def test_run_concatenates_whatever_row_producers_are_registered(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def extra(options: BenchOptions) -> list[BenchResult]:
        return [BenchResult("extra row", 1.0, "us")]

    monkeypatch.setattr(trading, "ROW_PRODUCERS", [extra])
    assert [result.name for result in trading.run(BenchOptions(quick=True))] == ["extra row"]
