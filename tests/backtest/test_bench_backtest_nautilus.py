"""NautilusTrader's BacktestEngine beside ``hftkit bench backtest``: the same slice, the same unit,
and a baseline label that says whether the peer was measured in the run or only quoted.

The runs of NautilusTrader itself need ``nautilus_trader``, a benchmark peer the main
environment does not install: they are in ``tests/peers``, run by ``make bench-peers``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hftkit.bench import backtest as backtest_suite
from hftkit.bench import backtest_nautilus
from hftkit.bench.harness import BenchOptions
from hftkit.datasets import hftbacktest_file, iter_recording

QUOTED_LABEL = (
    "NautilusTrader BacktestEngine (issue's figure, not measured here: nautilus_trader not installed)"
)
MEASURED_LABEL = "NautilusTrader BacktestEngine (measured, same data)"
END_TO_END_ROW = "backtest USD-M BTCUSDT day, maker decides every book update: book-level events/s end to end"
RUN_ONLY_ROW = "the same, data decoded beforehand (run only): book-level events/s"
BUSY_ROW = "the same, run only, vs a maker re-quoting every book update: book-level events/s"


def _recording() -> Path:
    return hftbacktest_file("usdm", "btcusdt_20240808.gz")


def _tiny_slice_end(path: Path, seconds: int = 5) -> int:
    first_ns, _ = next(iter(iter_recording(path)))
    return first_ns + seconds * 1_000_000_000


def test_quick_run_without_nautilus_quotes_the_issue_figure_and_says_so(monkeypatch):
    monkeypatch.setattr(backtest_nautilus, "available", lambda: False)
    results = backtest_suite.run(BenchOptions(quick=True))
    by_name = {result.name: result for result in results}
    for name in (END_TO_END_ROW, RUN_ONLY_ROW):
        row = by_name[name]
        assert row.baseline == QUOTED_LABEL
        assert row.baseline_value == backtest_suite.NAUTILUS_QUOTE_EVENTS_PER_S
        assert row.ratio == pytest.approx(row.value / backtest_suite.NAUTILUS_QUOTE_EVENTS_PER_S)
        assert not any(key.startswith("nautilus_") for key in row.detail)
    assert BUSY_ROW not in by_name
    assert "nautilus_trader" in backtest_suite.PEERS


def test_quick_run_whose_nautilus_run_fails_quotes_the_figure_with_the_reason(monkeypatch):
    def broken(*arguments: object) -> None:
        raise AttributeError("an API that moved")

    monkeypatch.setattr(backtest_nautilus, "available", lambda: True)
    monkeypatch.setattr(backtest_nautilus, "measure", broken)
    row = backtest_suite.run(BenchOptions(quick=True))[0]
    assert row.baseline == (
        "NautilusTrader BacktestEngine (issue's figure, not measured here: its run failed: AttributeError)"
    )
    assert row.baseline_value == backtest_suite.NAUTILUS_QUOTE_EVENTS_PER_S
