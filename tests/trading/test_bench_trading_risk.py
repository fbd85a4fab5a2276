"""The risk/signal benchmark rows run and carry their targets (speed is not asserted here)."""

from __future__ import annotations

from hftkit.bench import trading_risk
from hftkit.bench.harness import BenchOptions


def test_trading_risk_quick_run_produces_every_row_with_positive_figures() -> None:
    results = trading_risk.run(BenchOptions(quick=True))
    by_name = {result.name: result for result in results}
    for name in (
        "risk gate check, pass path (all limits on)",
        "risk gate check, reject path (price collar)",
        "risk gate check_order(Order), pass path",
        "risk gate check, kill switch tripped",
        "signal upsert (one, validated)",
        "signal query_many (50 symbols), per symbol",
        "sqlite save_many (200 signals, one WAL transaction), per signal",
    ):
        assert name in by_name, name
    for result in results:
        assert result.value > 0 and result.unit == "ns", result.name
    passing = by_name["risk gate check, pass path (all limits on)"]
    assert passing.target == "<= 2 us" and passing.met is not None
    assert passing.baseline and passing.baseline_value and passing.ratio
    assert by_name["risk gate check, reject path (price collar)"].met is not None


def test_bench_gate_passes_its_pass_case_and_rejects_its_reject_case() -> None:
    gate = trading_risk.build_gate()
    side = trading_risk.Side
    assert gate.check(trading_risk.VENUE, trading_risk.SYMBOL, side.BUY, 6_000_000, 100)
    assert not gate.check(trading_risk.VENUE, trading_risk.SYMBOL, side.SELL, 5_000_000, 100)
