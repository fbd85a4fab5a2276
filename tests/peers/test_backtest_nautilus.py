"""NautilusTrader's BacktestEngine beside ``hftkit bench backtest``: the same slice, the same unit.

Run by ``make bench-peers`` in the peers' environment, where ``nautilus_trader`` is installed
(``tests/peers/conftest.py`` keeps the main suite from collecting them; here a missing peer fails).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hftkit.backtest.config import DataSource
from hftkit.backtest.data import DEPTH, SEED, TRADE, load_source
from hftkit.bench import backtest as backtest_suite
from hftkit.bench import backtest_nautilus
from hftkit.bench.harness import BenchOptions
from hftkit.datasets import hftbacktest_file, iter_recording


@pytest.fixture(autouse=True)
def _nautilus_installed() -> None:
    assert backtest_nautilus.available(), "nautilus_trader is missing from the peers' environment"


MEASURED_LABEL = "NautilusTrader BacktestEngine (measured, same data)"
END_TO_END_ROW = "backtest USD-M BTCUSDT day, maker decides every book update: book-level events/s end to end"
RUN_ONLY_ROW = "the same, data decoded beforehand (run only): book-level events/s"
BUSY_ROW = "the same, run only, vs a maker re-quoting every book update: book-level events/s"


def _recording() -> Path:
    return hftbacktest_file("usdm", "btcusdt_20240808.gz")


def _tiny_slice_end(path: Path, seconds: int = 5) -> int:
    first_ns, _ = next(iter(iter_recording(path)))
    return first_ns + seconds * 1_000_000_000


def test_nautilus_replays_the_slice_hftkit_loads_and_its_maker_sees_the_same_book():
    path = _recording()
    until = _tiny_slice_end(path)
    instrument = backtest_nautilus.usdm_btcusdt()
    ours = load_source(
        DataSource(venue="binance_usdm", symbol="BTCUSDT", files=[str(path)]), instrument, until_ns=until
    )
    our_trades = sum(1 for event in ours.events if event[1] == TRADE)

    data = backtest_nautilus.convert([path], instrument, until)
    assert data.book_level_events == ours.book_levels + our_trades > 0
    assert len(data.trades) == our_trades
    assert len(data.deltas) == sum(1 for event in ours.events if event[1] != TRADE and any(event[2]))

    engine, strategy = backtest_nautilus.build_engine(data)
    try:
        engine.run()
    finally:
        engine.dispose()
    # every book update is a decision once both sides exist (the snapshot seeds both)
    assert strategy.decisions == len(data.deltas)
    assert strategy.orders_sent >= 2

    # the maker's last view of the top is the book hftkit's own replay ends with
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    for _, kind, payload in ours.events:
        if kind == SEED:
            bids.clear()
            asks.clear()
        if kind in (SEED, DEPTH):
            for side, levels in ((bids, payload[0]), (asks, payload[1])):
                for ticks, lots in levels:
                    if lots:
                        side[ticks] = lots
                    else:
                        side.pop(ticks, None)
    bid, ask = strategy.last_top
    assert bid.as_decimal() == instrument.ticks.to_decimal(max(bids))
    assert ask.as_decimal() == instrument.ticks.to_decimal(min(asks))


def test_measure_times_each_stage_of_the_nautilus_run():
    path = _recording()
    until = _tiny_slice_end(path)
    figure = backtest_nautilus.measure([path], backtest_nautilus.usdm_btcusdt(), until)
    busy = backtest_nautilus.measure(
        [path], backtest_nautilus.usdm_btcusdt(), until, requote_every_update=True
    )
    assert busy.decisions == figure.decisions and busy.orders_sent > figure.orders_sent
    assert figure.book_level_events > 0 and figure.decisions > 0
    assert figure.seconds_convert > 0 and figure.seconds_setup > 0 and figure.seconds_run > 0
    assert figure.seconds_end_to_end > figure.seconds_run
    assert figure.events_per_second_run > figure.events_per_second_end_to_end > 0
    assert figure.version.startswith("1.")


def test_quick_run_measures_nautilus_on_the_same_events():
    results = backtest_suite.run(BenchOptions(quick=True))
    by_name = {result.name: result for result in results}
    for name in (END_TO_END_ROW, RUN_ONLY_ROW):
        row = by_name[name]
        assert row.baseline == MEASURED_LABEL
        assert row.baseline_value is not None and row.baseline_value > 0
        assert row.baseline_value != backtest_suite.NAUTILUS_QUOTE_EVENTS_PER_S
        assert row.detail["nautilus_book_level_events"] == row.detail["book_level_events"]
    run_only = by_name[RUN_ONLY_ROW]
    assert run_only.baseline_value == pytest.approx(
        run_only.detail["nautilus_book_level_events"] / run_only.detail["nautilus_seconds_run"], rel=0.01
    )
    busy = by_name[BUSY_ROW]
    assert busy.value == run_only.value
    assert (
        busy.baseline == "NautilusTrader BacktestEngine (measured, same data, re-quoting every book update)"
    )
    assert busy.detail["nautilus_every_update_orders_sent"] > busy.detail["nautilus_orders_sent"]
