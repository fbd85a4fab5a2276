"""``run_plan``: the node's engine and strategies over recorded data, on a simulated clock.

A ``BacktestPlan`` is everything a run needs, already built; reading a node config into one is
the app layer's (``hftkit.app.backtest_plan``: ``plan_from_config`` and ``run_backtest``).

The run, step by step (everything single-threaded and in simulated time, so deterministic):

1. the timeline's events are applied in timestamp order to each venue's matching engine (the
   venue's view); published book batches reach the strategy's view after the market-data latency;
2. before each event the ``SimulatedLoop`` runs everything due by then: order arrivals and acks
   of the latency model, strategy timers, the engine's send tasks, request timeouts;
3. the engine starts (strategies' ``on_start``, reconciliation, subscriptions) at the range's
   start; events before it only build the books;
4. equity and market rows are sampled every ``equity_interval_ms``; each fill's adverse selection
   is measured at its horizons from the venue's mid;
5. at the end the engine stops like a node does (every order cancelled, the tracker reconciled).
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hftkit.backtest.config import BacktestOptions, DataSource, LatencySettings, TimeRange
from hftkit.backtest.data import DEPTH, SEED, TRADE, LoadedSource, Timeline, load_source, parse_time
from hftkit.backtest.latency import LatencyModel
from hftkit.backtest.loop import SimulatedLoop
from hftkit.backtest.rate import OrderRate
from hftkit.backtest.results import BacktestResult, Journal
from hftkit.backtest.venue import SimulatedVenue
from hftkit.core.clock import Clock, SimulatedClock
from hftkit.core.types import Instrument
from hftkit.metrics import MetricsRegistry
from hftkit.sim.engine.accounts import FeeSchedule
from hftkit.trading.engine import TradingEngine
from hftkit.trading.execution import ExecutionConfig, TrackerExposure
from hftkit.trading.risk import InstrumentLimits, RiskGate, RiskLimits
from hftkit.trading.state import OrderStateTracker
from hftkit.trading.strategy import Strategy
from hftkit.venues.base import VenueCapabilities

__all__ = ["BacktestPlan", "VenueSetup", "run_plan"]


@dataclass
class VenueSetup:
    """One simulated venue: its instruments, what it supports, how it refuses, its fees."""

    name: str
    instruments: list[Instrument]
    capabilities: VenueCapabilities
    error_style: str = "binance"
    fees: FeeSchedule = field(default_factory=FeeSchedule)
    #: the live adapter's rate budget, built on the venue's clock (None: unlimited)
    order_rate: Callable[[Clock], OrderRate] | None = None


@dataclass
class BacktestPlan:
    """Everything a run needs, built (for notebooks; a node config becomes one of these).

    ``sources``: ``DataSource`` settings (read relative to ``directory``) or already loaded
    sources (reused across the runs of a sweep)."""

    strategies: list[Strategy]
    venues: list[VenueSetup]
    sources: Sequence[DataSource | LoadedSource]
    time_range: TimeRange = field(default_factory=TimeRange)
    latency: LatencySettings | LatencyModel = field(default_factory=LatencySettings)
    options: BacktestOptions = field(default_factory=BacktestOptions)
    instrument_limits: Mapping[tuple[str, str], InstrumentLimits] = field(default_factory=dict)
    risk_limits: RiskLimits | None = None
    directory: Path = field(default_factory=Path)
    description: dict[str, Any] = field(default_factory=dict)
    #: (venue, symbol) -> the instrument its recording holds, where not the venue's own one
    recorded: Mapping[tuple[str, str], Instrument] = field(default_factory=dict)


def _instrument(plan: BacktestPlan, venue: str, symbol: str) -> Instrument:
    for setup in plan.venues:
        if setup.name == venue:
            for instrument in setup.instruments:
                if instrument.symbol == symbol:
                    return instrument
    raise ValueError(f"data for {venue}:{symbol}: no such instrument on a configured venue")


@contextlib.contextmanager
def _frozen_before_run() -> Iterator[None]:
    """Everything built before the run (the loaded timeline above all: lists and tuples by the
    hundred thousand, never changed) is left out of the collector's full passes during the run,
    which otherwise scan it again and again for nothing; put back after. A process that froze its
    own objects already (a node's start-up) is left as it is."""
    if gc.get_freeze_count() or not gc.isenabled():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_plan(plan: BacktestPlan) -> BacktestResult:
    """Run a built plan (see the module docstring)."""
    wall_started = time.perf_counter()
    until = parse_time(plan.time_range.end, "end")
    sources = [
        source
        if isinstance(source, LoadedSource)
        else load_source(
            source,
            _instrument(plan, source.venue, source.symbol),
            plan.directory,
            until,
            plan.recorded.get((source.venue, source.symbol)),
        )
        for source in plan.sources
    ]
    timeline = Timeline(sources, plan.time_range)
    origin = timeline.first_ns
    clock = SimulatedClock(start_ns=0, wall_offset_ns=origin)
    loop = SimulatedLoop(clock)
    options = plan.options
    instruments = [instrument for setup in plan.venues for instrument in setup.instruments]
    journal = Journal(instruments, options.markout_horizons_ms)
    model = (
        plan.latency
        if isinstance(plan.latency, LatencyModel)
        else LatencyModel.from_settings(plan.latency, seed=options.seed, directory=plan.directory)
    )
    adapters = {
        setup.name: SimulatedVenue(
            setup.name,
            setup.instruments,
            scheduler=loop,
            capabilities=setup.capabilities,
            latency=model,
            fees=setup.fees,
            balances=options.balances,
            error_style="thalex" if setup.error_style == "thalex" else "binance",
            wall_offset_ns=origin,
            journal=journal,
            depth_interval_ns=options.depth_interval_ms * 1_000_000,
            order_rate=setup.order_rate if options.rate_limits else None,
        )
        for setup in plan.venues
    }
    tracker = OrderStateTracker(clock)
    limits = dict(plan.instrument_limits)
    for strategy in plan.strategies:
        for subscription in strategy.subscriptions():
            for symbol in subscription.symbols:
                limits.setdefault((subscription.venue, symbol), InstrumentLimits())
    engine = TradingEngine.build(
        list(adapters.values()),
        plan.strategies,
        tracker=tracker,
        risk=RiskGate(TrackerExposure(tracker), plan.risk_limits, clock=clock),
        instrument_limits=limits,
        execution=ExecutionConfig(latency_budget_us=None),
        metrics=MetricsRegistry(clock),
        clock=clock,
        manage_adapters=False,
        request_timeout_s=options.request_timeout_s,
        id_prefix="bt-",
    )
    with _frozen_before_run(), loop.active():
        for adapter in adapters.values():
            loop.run_until_complete(adapter.__aenter__())
        # per source: what each kind of event does to its venue (another kind: nothing)
        targets: list[tuple[dict[int, Callable[..., None]], str]] = [
            (
                {
                    SEED: adapters[source.venue].seed,
                    DEPTH: adapters[source.venue].depth,
                    TRADE: adapters[source.venue].trade,
                },
                source.symbol,
            )
            for source in sources
        ]
        trading_start = timeline.trading_start_ns - origin
        interval = max(1, options.equity_interval_ms) * 1_000_000
        next_sample = trading_start
        pending = journal.pending_markouts
        events = 0
        started = False
        advance = loop.advance_to
        run_ready = loop.run_ready

        def sample(at: int) -> None:
            advance(at)
            tops: dict[tuple[str, str], tuple[int | None, int | None, int | None, int | None]] = {}
            for adapter in adapters.values():
                tops.update(adapter.tops())
            journal.sample(at + origin, tops)

        for timestamp, index, kind, payload in timeline:
            now = timestamp - origin
            if not started and now >= trading_start:
                advance(trading_start)
                loop.run_until_complete(engine.start())
                started = True
            if started:
                while next_sample <= now:
                    sample(next_sample)
                    next_sample += interval
                while pending and pending[0][0] <= timestamp:
                    _, fill_index, horizon_index = heapq.heappop(pending)
                    row = journal.fills[fill_index]
                    journal.markout(fill_index, horizon_index, adapters[row[2]].mid_ticks(row[3]))
            advance(now)
            actions, symbol = targets[index]
            action = actions.get(kind)
            if action is not None:
                action(symbol, *payload)
            run_ready()
            events += 1
        end = timeline.last_ns - origin
        if started:
            advance(max(end, clock.monotonic_ns()))
            sample(clock.monotonic_ns())
            loop.run_until_complete(engine.stop("end of backtest"))
    counters: Counter[str] = Counter()
    counters.update({f"engine_{name}": value for name, value in engine.counters.items()})
    counters.update({f"gateway_{name}": value for name, value in engine.gateway.counters.items()})
    for adapter in adapters.values():
        counters.update({f"venue_{name}": value for name, value in adapter.counters.items()})
    for source in sources:
        counters["data_gaps"] += source.gaps
        for problem, count in source.problems.items():
            counters[f"data_{problem}"] += count
    counters["loop_errors"] += len(loop.errors)
    journal.events = events
    journal.book_events = sum(source.book_levels for source in sources)
    description = dict(plan.description)
    description.setdefault("seed", options.seed)
    description.setdefault("data", [file for source in sources for file in source.files])
    result = BacktestResult.from_journal(journal, seed=options.seed, counters=counters, config=description)
    loop.close()
    result.wall_seconds = time.perf_counter() - wall_started
    result.events_per_second = events / result.wall_seconds if result.wall_seconds else 0.0
    return result
