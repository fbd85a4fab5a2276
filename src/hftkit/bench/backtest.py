"""``hftkit bench backtest``: a backtest's throughput over the recorded USD-M BTCUSDT day.

The shipped example (``examples/backtest_maker.yaml``: the Avellaneda-Stoikov market maker
deciding on every book update, through the node's engine, quoting, risk and tracker, with the
example's latency model) runs over the whole recording. Two figures:

* end to end: reading and decoding the recording (JSON lines to exact ticks and lots) plus the
  run, per book-level event (each price level changed by a snapshot or diff, plus each trade:
  the unit hftbacktest and NautilusTrader count);
* the run alone (data decoded beforehand, as a sweep reuses it), per book-level event and per
  market message.

Their baseline is NautilusTrader's BacktestEngine on the same data in the same run when
``nautilus_trader`` is installed (``make bench-peers``; ``hftkit.bench.backtest_nautilus``:
the same slice read by hftkit's reader, an L2 venue, a minimal maker deciding on every book
update, re-quoting when the mid moves), each repeat timed right after ours so both see the same
machine load. A third row sets our run beside the same maker re-quoting on every book update:
an order flow the size of ours, which is most of either engine's work. Without Nautilus the
baseline is the issue's quoted figure (about 310,000 events/s on this machine), and the label
says it was not measured. hftbacktest's numba loop (about 11 million events/s) is not run here.
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
    from hftkit.bench.backtest_nautilus import NautilusFigure

PEERS: tuple[str, ...] = ("nautilus_trader",)

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "backtest_maker.yaml"
TARGET = 1_000_000.0
NAUTILUS_QUOTE_EVENTS_PER_S = 310_000.0
_QUOTED = "NautilusTrader BacktestEngine (issue's figure, not measured here)"
_MEASURED = "NautilusTrader BacktestEngine (measured, same data)"
_MEASURED_BUSY = "NautilusTrader BacktestEngine (measured, same data, re-quoting every book update)"
logger = logging.getLogger(__name__)


def _plan(quick: bool) -> BacktestPlan:
    from hftkit.app.backtest_plan import plan_from_config
    from hftkit.backtest.config import TimeRange

    plan = plan_from_config(EXAMPLE)
    # the whole recording (quick: its first minute); strategies start once the book is built
    plan.time_range = TimeRange(end="2024-08-08T23:55:15Z") if quick else TimeRange()
    return plan


def _quoted_label(reason: str) -> str:
    return f"NautilusTrader BacktestEngine (issue's figure, not measured here: {reason})"


def run(options: BenchOptions) -> list[BenchResult]:
    from hftkit.backtest.data import load_source, parse_time, resolve_file
    from hftkit.backtest.runner import _instrument, run_plan
    from hftkit.bench import backtest_nautilus

    logging.getLogger("hftkit.trading.engine").setLevel(logging.ERROR)  # the stop's warning per run
    repeats = 1 if options.quick else max(1, min(options.repeat, 3))
    end_to_end: list[float] = []
    run_only: list[float] = []
    cpu_run_only: list[float] = []
    peer_figures: list[NautilusFigure] = []
    busy_figures: list[NautilusFigure] = []  # its maker re-quoting on every update, as many orders as ours
    peer_error = "nautilus_trader not installed" if not backtest_nautilus.available() else ""
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
        cpu_loaded = time.process_time()
        plan.sources = sources
        result = run_plan(plan)
        cpu_run_only.append(time.process_time() - cpu_loaded)
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
        if not peer_error:  # the peer on the same slice, right after ours: the same machine load
            source = settings[0]
            paths = [resolve_file(name, plan.directory) for name in source.files]
            instrument = _instrument(plan, source.venue, source.symbol)
            try:
                peer_figures.append(backtest_nautilus.measure(paths, instrument, until))
                busy_figures.append(
                    backtest_nautilus.measure(paths, instrument, until, requote_every_update=True)
                )
            except Exception as error:  # a peer whose API moved is reported, never a failed suite
                logger.warning("NautilusTrader backtest failed, quoting the issue's figure: %r", error)
                peer_error = f"its run failed: {type(error).__name__}"
                peer_figures.clear()
                busy_figures.clear()
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
        "cpu_seconds_run_only": round(statistics.median(cpu_run_only), 3),
        "repeats": repeats,
        "quick": options.quick,
    }
    if peer_figures:
        baseline = _MEASURED
        peer_whole = statistics.median(figure.events_per_second_end_to_end for figure in peer_figures)
        peer_alone = statistics.median(figure.events_per_second_run for figure in peer_figures)
        detail.update(_peer_detail(peer_figures))
        detail["nautilus_every_update_orders_sent"] = busy_figures[-1].orders_sent
        detail["nautilus_every_update_seconds_run"] = round(
            statistics.median(figure.seconds_run for figure in busy_figures), 3
        )
    else:
        baseline = _quoted_label(peer_error)
        peer_whole = peer_alone = NAUTILUS_QUOTE_EVENTS_PER_S
    rate = levels / whole
    rate_alone = levels / alone
    busy: list[BenchResult] = []
    if busy_figures:  # the same run-only figure against a peer sending an order flow the size of ours
        busy.append(
            compare(
                "the same, run only, vs a maker re-quoting every book update: book-level events/s",
                rate_alone,
                "events/s",
                _MEASURED_BUSY,
                statistics.median(figure.events_per_second_run for figure in busy_figures),
                **detail,
            )
        )
    return [
        compare(
            "backtest USD-M BTCUSDT day, maker decides every book update: book-level events/s end to end",
            rate,
            "events/s",
            baseline,
            peer_whole,
            target=">= 1,000,000 book-level events/s",
            met=rate >= TARGET,
            **detail,
        ),
        compare(
            "the same, data decoded beforehand (run only): book-level events/s",
            rate_alone,
            "events/s",
            baseline,
            peer_alone,
            target=">= 1,000,000 book-level events/s",
            met=rate_alone >= TARGET,
            **detail,
        ),
        *busy,
        compare("the same, run only: market messages (diffs, trades)/s", messages / alone, "msg/s", **detail),
        compare("the same, run only: strategy decisions/s", decisions / alone, "decisions/s", **detail),
    ]


def _peer_detail(figures: Sequence[NautilusFigure]) -> dict[str, Any]:
    """The Nautilus run's counts and stage times (medians), beside ours in every row's detail."""
    last = figures[-1]

    def median(stage: str) -> float:
        return round(statistics.median(getattr(figure, stage) for figure in figures), 3)

    return {
        "nautilus_book_level_events": last.book_level_events,
        "nautilus_market_messages": last.market_messages,
        "nautilus_strategy_decisions": last.decisions,
        "nautilus_orders_sent": last.orders_sent,
        "nautilus_fills": last.fills,
        "nautilus_seconds_convert": median("seconds_convert"),
        "nautilus_seconds_setup": median("seconds_setup"),
        "nautilus_seconds_run": median("seconds_run"),
        "nautilus_cpu_seconds_run": median("cpu_seconds_run"),
        "nautilus_seconds_end_to_end": median("seconds_end_to_end"),
        "nautilus_version": last.version,
        "issue_quoted_nautilus_events_per_s": NAUTILUS_QUOTE_EVENTS_PER_S,
    }
