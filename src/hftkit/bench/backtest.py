"""``hftkit bench backtest``: a backtest's throughput over the recorded USD-M BTCUSDT day.

The shipped example (``examples/backtest_maker.yaml``: the Avellaneda-Stoikov market maker
deciding on every book update, through the node's engine, quoting, risk and tracker, with the
example's latency model) runs over the whole recording. Two figures:

* end to end: reading and decoding the recording (JSON lines to exact ticks and lots) plus the
  run, per book-level event (each price level changed by a snapshot or diff, plus each trade:
  the unit hftbacktest and NautilusTrader count);
* the run alone (data decoded beforehand, as a sweep reuses it), per book-level event and per
  market message.

The peers' figures are the issue's (NautilusTrader's BacktestEngine about 310,000 quote events/s
on this machine; hftbacktest's numba loop about 11 million events/s), quoted, not measured here.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from hftkit.bench.harness import BenchOptions, BenchResult, compare

if TYPE_CHECKING:
    from hftkit.backtest.config import DataSource
    from hftkit.backtest.runner import BacktestPlan

PEERS: tuple[str, ...] = ()

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "backtest_maker.yaml"
TARGET = 1_000_000.0
NAUTILUS_QUOTE_EVENTS_PER_S = 310_000.0
_QUOTED = "NautilusTrader BacktestEngine (issue's figure, not measured here)"


def _plan(quick: bool) -> BacktestPlan:
    from hftkit.app.backtest_plan import plan_from_config
    from hftkit.backtest.config import TimeRange

    plan = plan_from_config(EXAMPLE)
    # the whole recording (quick: its first minute); strategies start once the book is built
    plan.time_range = TimeRange(end="2024-08-08T23:55:15Z") if quick else TimeRange()
    return plan


def run(options: BenchOptions) -> list[BenchResult]:
    from hftkit.backtest.data import load_source, parse_time
    from hftkit.backtest.runner import _instrument, run_plan

    logging.getLogger("hftkit.trading.engine").setLevel(logging.ERROR)  # the stop's warning per run
    repeats = 1 if options.quick else max(1, min(options.repeat, 3))
    end_to_end: list[float] = []
    run_only: list[float] = []
    messages = levels = decisions = fills = orders = 0
    for _ in range(repeats):
        plan = _plan(options.quick)
        until = parse_time(plan.time_range.end, "end")
        started = time.perf_counter()
        # a plan read from a config holds source settings, none loaded yet
        settings = cast("Sequence[DataSource]", plan.sources)
        sources = [
            load_source(source, _instrument(plan, source.venue, source.symbol), plan.directory, until)
            for source in settings
        ]
        loaded = time.perf_counter()
        plan.sources = sources
        result = run_plan(plan)
        finished = time.perf_counter()
        levels = sum(source.book_levels for source in sources) + sum(
            1 for source in sources for event in source.events if event[1] == 2
        )
        messages = result.summary["events"]
        decisions = sum(strategy.decisions for strategy in plan.strategies if hasattr(strategy, "decisions"))
        fills = result.summary["fills"]
        orders = result.summary["orders_sent"]
        end_to_end.append(finished - started)
        run_only.append(finished - loaded)
    whole = statistics.median(end_to_end)
    alone = statistics.median(run_only)
    detail: dict[str, Any] = {
        "book_level_events": levels,
        "market_messages": messages,
        "strategy_decisions": decisions,
        "orders_sent": orders,
        "fills": fills,
        "seconds_end_to_end": round(whole, 3),
        "seconds_run_only": round(alone, 3),
        "repeats": repeats,
        "quick": options.quick,
    }
    rate = levels / whole
    rate_alone = levels / alone
    return [
        compare(
            "backtest USD-M BTCUSDT day, maker decides every book update: book-level events/s end to end",
            rate,
            "events/s",
            _QUOTED,
            NAUTILUS_QUOTE_EVENTS_PER_S,
            target=">= 1,000,000 book-level events/s",
            met=rate >= TARGET,
            **detail,
        ),
        compare(
            "the same, data decoded beforehand (run only): book-level events/s",
            rate_alone,
            "events/s",
            _QUOTED,
            NAUTILUS_QUOTE_EVENTS_PER_S,
            target=">= 1,000,000 book-level events/s",
            met=rate_alone >= TARGET,
            **detail,
        ),
        compare("the same, run only: market messages (diffs, trades)/s", messages / alone, "msg/s", **detail),
        compare("the same, run only: strategy decisions/s", decisions / alone, "decisions/s", **detail),
    ]
