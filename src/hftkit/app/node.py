"""The trading node: one composition root that wires a node from its config and runs it.

``TradingNode.from_config(loaded)`` is the only place that builds a node: the simulator (for
``environment: sim`` venues, in-process, replaying the real recordings), the venue adapters
(``hftkit.app.venues`` for testnet/mainnet, ``hftkit.app.sim_wiring`` for the simulator), the
strategies named by import path, the risk gate with the config's limits, the order tracker and
the engine that runs them. ``run()`` trades until its time is up or a stop is asked for
(SIGINT/SIGTERM), then shuts down safe and proves the session:

1. every open order is cancelled and the venue's acks awaited (bounded);
2. books equal the venue's level by level (simulator venues: the market is paused first);
3. every order is accounted for: nothing open at the venue, nothing in flight in the tracker;
4. positions equal the venue's;
5. PnL and fees recomputed from the venue's own fill ledger equal the node's.

The verdict and a summary per venue and instrument (fills, orders sent/acked/rejected,
position, realized/unrealized PnL, fees, tick-to-trade) come back as ``NodeSummary``; ``hftkit
run`` exits 0 only when the verdict holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hftkit.app import config as node_config
from hftkit.app.config import BinanceVenue, ConfigError, LoadedConfig, ThalexVenue
from hftkit.app.operations import Health, OperationsServer
from hftkit.app.runtime import (
    GcMonitor,
    freeze_after_start,
    freeze_started,
    install_stop_signals,
    remove_stop_signals,
)
from hftkit.app.venues import build_adapter
from hftkit.core.types import BookDelta, ConnectionEvent, Fill, Instrument, Order, OrderStatus, Side, Trade
from hftkit.metrics import Counter as MetricsCounter
from hftkit.metrics import MetricsRegistry
from hftkit.trading.engine import TradingEngine
from hftkit.trading.execution import ExecutionConfig, TrackerExposure
from hftkit.trading.positions import Position, ticks_lots_to_money
from hftkit.trading.risk import InstrumentLimits, RiskGate, TripSource
from hftkit.trading.state import OrderStateTracker
from hftkit.trading.strategy import Strategy
from hftkit.venues.base import RateLimitedError, VenueAdapter

if TYPE_CHECKING:  # loaded where used: a node without them never imports them (start-up time)
    from hftkit.app.node_storage import NodeMarketStorage
    from hftkit.sim.config import SimConfig
    from hftkit.sim.runner import Simulator
    from hftkit.storage.node_journal import NodeJournal

_log = logging.getLogger(__name__)

InstrumentKey = tuple[str, str]
_T = TypeVar("_T")


def simulator_venue(venue: node_config.VenueConfig) -> str:
    """The simulator venue that serves a configured venue (by kind and market)."""
    from hftkit.sim.config import BINANCE_SPOT, BINANCE_USDM, THALEX

    if isinstance(venue, ThalexVenue):
        return THALEX
    return BINANCE_SPOT if venue.market == "spot" else BINANCE_USDM


# the summary ----------------------------------------------------------------------------------------
@dataclass
class InstrumentSummary:
    """What one instrument did this session, in the instrument's quote currency."""

    venue: str
    symbol: str
    fills: int = 0
    orders_sent: int = 0
    orders_acked: int = 0
    orders_rejected: int = 0
    position: str = "0"  # base units
    realized_pnl: str = "0"
    unrealized_pnl: str = "0"
    fees: dict[str, float] = field(default_factory=dict)
    tick_to_trade_p50_us: float | None = None
    tick_to_trade_p99_us: float | None = None

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Verdict:
    """The proof at the end of a session: each check and the problems that failed it."""

    checks: dict[str, bool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(self.checks.values()) and not self.problems

    def record(self, name: str, problems: list[str]) -> None:
        self.checks[name] = self.checks.get(name, True) and not problems
        self.problems.extend(problems)

    def as_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": self.checks, "problems": self.problems, "notes": self.notes}


@dataclass
class NodeSummary:
    instruments: list[InstrumentSummary] = field(default_factory=list)
    verdict: Verdict = field(default_factory=Verdict)
    data: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    stopped_by: str = "time"
    loop: str = "asyncio"

    def as_json(self) -> dict[str, Any]:
        return {
            "elapsed_s": round(self.elapsed_s, 3),
            "stopped_by": self.stopped_by,
            "loop": self.loop,
            "data": self.data,
            "instruments": [item.as_json() for item in self.instruments],
            "verdict": self.verdict.as_json(),
        }


# the node --------------------------------------------------------------------------------------------
class TradingNode:
    """A node wired from one config (see the module docstring); build it with ``from_config``."""

    def __init__(
        self,
        loaded: LoadedConfig,
        strategies: list[Strategy],
        limits: dict[InstrumentKey, InstrumentLimits],
        risk_limits: Any,
        *,
        seconds: float | None = None,
        metrics_port: int | None = None,
        simulator: Simulator | None = None,
    ) -> None:
        self.loaded = loaded
        self.config = loaded.node
        self.strategies = strategies
        self.limits = limits
        self.risk_limits = risk_limits
        self.seconds = seconds if seconds is not None else self.config.seconds
        self.metrics_port = self.config.metrics.port if metrics_port is None else metrics_port
        self.metrics = MetricsRegistry()
        self.sim: Simulator | None = None
        self._given_sim = simulator  # a simulator that outlives this node (restart tests)
        self.journal: NodeJournal | None = None
        self.market_storage: NodeMarketStorage | None = None  # recorder: and influx: sections
        self.bus_link: Any = None  # hftkit.app.node_bus.NodeBusLink with ``bus.enabled``
        self.adapters: dict[str, VenueAdapter] = {}
        self.engine: TradingEngine | None = None
        self.operations: OperationsServer | None = None
        self.summary = NodeSummary()
        self.phase = "starting"
        self.started = 0.0
        self.stop_requested: asyncio.Event | None = None  # made by run(), on its loop
        self._stop_reason = "time"
        self._connection_state: dict[str, bool] = {}
        self._fills: Counter[InstrumentKey] = Counter()
        self._fill_counters: dict[InstrumentKey, MetricsCounter] = {}
        self._on_tick: list[Callable[[], None]] = []
        self._exported_counts: dict[tuple[str, str], int] = {}  # engine counts already on /metrics
        self._final_rows: tuple[list[tuple[str, ...]], list[tuple[str, ...]]] | None = None

    # building ---------------------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        loaded: LoadedConfig,
        *,
        live: bool = False,
        seconds: float | None = None,
        metrics_port: int | None = None,
        simulator: Simulator | None = None,
    ) -> TradingNode:
        """Validate everything that can be validated without connecting, then build the node."""
        node_config.check_live(loaded, live_flag=live)
        if loaded.node.environment == "backtest":
            raise ConfigError(
                "`environment: backtest` runs with `hftkit backtest --config FILE`, not as a node",
                file=loaded.file,
                path="environment",
            )
        sim_venues = sorted(name for name, venue in loaded.node.venues.items() if venue.environment == "sim")
        if loaded.node.market_data == "bus" and sim_venues and simulator is None:
            raise ConfigError(
                f"`market_data: bus` with `environment: sim` venue(s) {', '.join(sim_venues)}: this node's "
                "own simulator would take the orders while the books come from the feed's market; point "
                "the venue at the feed's venue (testnet/mainnet, or `hftkit sim` by url)",
                file=loaded.file,
                path="market_data",
            )
        strategies = node_config.build_strategies(loaded)
        if not strategies:
            raise ConfigError("no strategies: a node needs at least one", file=loaded.file, path="strategies")
        limits = node_config.instrument_limits(loaded)
        risk_limits = node_config.risk_limits(loaded)
        for strategy in strategies:
            for subscription in strategy.subscriptions():
                if subscription.venue not in loaded.node.venues:
                    raise ConfigError(
                        f"strategy {strategy.name!r} trades on `{subscription.venue}`, which is not a "
                        "configured venue"
                        + node_config.suggest(subscription.venue, list(loaded.node.venues)),
                        file=loaded.file,
                        path="strategies",
                    )
        return cls(
            loaded,
            strategies,
            limits,
            risk_limits,
            seconds=seconds,
            metrics_port=metrics_port,
            simulator=simulator,
        )

    def instruments(self) -> dict[str, list[str]]:
        """Symbols per venue: what the strategies subscribe to and what the risk section names."""
        wanted: dict[str, list[str]] = {name: [] for name in self.config.venues}
        for strategy in self.strategies:
            for subscription in strategy.subscriptions():
                for symbol in subscription.symbols:
                    if symbol not in wanted[subscription.venue]:
                        wanted[subscription.venue].append(symbol)
        for venue, symbol in self.limits:
            if venue in wanted and symbol not in wanted[venue]:
                wanted[venue].append(symbol)
        return wanted

    def simulator_config(self) -> SimConfig | None:
        """The simulator the ``sim`` venues need: each served venue with the symbols traded there."""
        venues: dict[str, dict[str, Any]] = {}
        served: dict[str, str] = {}
        for name, venue in self.config.venues.items():
            if venue.environment != "sim":
                continue
            sim_venue = simulator_venue(venue)
            if sim_venue in served:
                raise ConfigError(
                    f"venues `{served[sim_venue]}` and `{name}` are both the simulator's {sim_venue}",
                    file=self.loaded.file,
                    path=f"venues.{name}",
                )
            served[sim_venue] = name
            symbols = self.instruments()[name]
            if symbols:
                venues[sim_venue] = {"symbols": symbols}
                fees = self.config.simulator.fees.get(name)
                if fees is not None:
                    venues[sim_venue]["fees"] = {"maker_bp": fees.maker_bp, "taker_bp": fees.taker_bp}
        if not venues:
            return None
        from hftkit.sim.config import config_from_mapping

        settings = self.config.simulator
        return config_from_mapping(
            {"venues": venues, "speed": settings.speed, "seed": settings.seed, "faults": settings.faults},
            self.loaded.file,
        )

    def _sim_adapter(self, name: str, venue: node_config.VenueConfig, sim: Simulator) -> VenueAdapter:
        from hftkit.app.sim_wiring import binance_config, binance_credentials, thalex_config

        if isinstance(venue, BinanceVenue):
            from hftkit.venues.binance.adapter import BinanceAdapter
            from hftkit.venues.binance.endpoints import Market

            market = Market.SPOT if venue.market == "spot" else Market.USDM
            return BinanceAdapter(
                binance_credentials(sim),
                binance_config(sim, market, name=name, order_transport=venue.order_transport),
                metrics=self.metrics,
            )
        from hftkit.venues.thalex.adapter import ThalexAdapter

        return ThalexAdapter(
            thalex_config(sim, venue=name, cancel_on_disconnect_s=venue.cancel_on_disconnect_s),
            metrics=self.metrics,
        )

    def _engine(self, id_prefix: str | None = None) -> TradingEngine:
        """The engine with the config's risk: one tracker, a gate holding the configured limits
        (every traded instrument registered, with default limits where none are named); the
        gateway, execution and quoting parts are the engine's standard ones."""
        tracker = OrderStateTracker()
        limits = dict(self.limits)
        for venue, symbols in self.instruments().items():
            for symbol in symbols:
                limits.setdefault((venue, symbol), InstrumentLimits())
        return TradingEngine.build(
            list(self.adapters.values()),
            self.strategies,
            tracker=tracker,
            risk=RiskGate(TrackerExposure(tracker), self.risk_limits),
            instrument_limits=limits,
            execution=ExecutionConfig(latency_budget_us=None),
            metrics=self.metrics,
            manage_adapters=False,
            id_prefix=id_prefix,
        )

    # persistence: the event journal (hftkit.storage.node_journal) --------------------------------------
    async def _open_journal(self, stack: contextlib.AsyncExitStack) -> str | None:
        """Open the configured journal and start this session; returns its client-order-id
        prefix (None: no journal, the gateway's own time-based prefix). Closed by ``stack``."""
        settings = self.config.journal
        if not settings.enabled:
            return None
        from hftkit.storage.journal import EventJournal, JournalStore

        store: JournalStore
        if settings.backend == "postgres":
            from hftkit.storage.journal_postgres import PostgresJournalStore

            assert settings.dsn is not None  # the config check requires it
            store = PostgresJournalStore(settings.dsn.reveal(), table=settings.table)
        else:
            from hftkit.storage.journal_sqlite import SqliteJournalStore

            path = Path(settings.path.replace("{node_id}", settings.node_id))
            if not path.is_absolute():
                path = self.loaded.directory / path
            store = SqliteJournalStore(path, synchronous=settings.synchronous)
        journal = EventJournal(
            store,
            settings.node_id,
            capacity=settings.buffer_records,
            batch_size=settings.batch_size,
            flush_interval_s=settings.flush_interval_s,
        )
        from hftkit.storage.node_journal import NodeJournal

        self.journal = node_journal = NodeJournal(journal, id_prefix_base=settings.id_prefix)
        await node_journal.start()
        stack.push_async_callback(node_journal.close)
        return node_journal.id_prefix

    def _attach_journal(self, engine: TradingEngine) -> None:
        """Seed the tracker from the journal (the start-up reconciliation then settles it with
        the venues), carry a tripped kill switch over, and journal from here on."""
        node_journal = self.journal
        if node_journal is None or node_journal.recovered is None:
            return
        from hftkit.storage.recovery import restore_into

        recovered = node_journal.recovered
        restore_into(recovered, engine.tracker)
        node_journal.attach(engine.tracker)
        engine.kill_switch.add_cancel_all_hook(node_journal.on_kill_switch)
        for name, adapter in self.adapters.items():
            adapter.add_listener(node_journal.venue_listener(name))
        if recovered.kill_switch_tripped:
            engine.risk.trip(TripSource.MANUAL, f"tripped before the restart: {recovered.kill_switch_detail}")

    def journal_line(self) -> str:
        """The journal's state in one line for the dashboard ("" without a journal)."""
        if self.journal is None:
            return ""
        status = self.journal.journal.status()
        writer = status.writer
        state = "ok" if status.healthy else f"DEGRADED ({writer.last_error or 'dropping'})"
        return (
            f"journal {state}: {status.committed_sequence} committed, {writer.buffered} buffered, "
            f"{writer.dropped} dropped, {writer.failed_batches} failed writes"
        )

    def storage_line(self) -> str:
        """The recorder's and InfluxDB's state in one line for the dashboard ("" with neither)."""
        if self.market_storage is None:
            return ""
        parts = []
        for name, status in self.market_storage.status().items():
            healthy = bool(status.get("healthy", True))
            state = "ok" if healthy else f"DEGRADED ({status.get('last_error') or 'dropping'})"
            parts.append(f"{name} {state}: {status.get('dropped', 0)} dropped")
        return "; ".join(parts)

    # the bus: reports, firm-wide kill switch, books from a feed node (hftkit.app.node_bus) ----------
    async def _open_bus(self, stack: contextlib.AsyncExitStack) -> None:
        """Start the bus link (closed by ``stack`` after the adapters); with ``market_data: bus``
        each venue's books come from the bus while its orders still go to the venue."""
        if not self.config.bus.enabled:
            return
        from hftkit.app.node_bus import NodeBusLink, bus_market_adapters

        self.bus_link = link = NodeBusLink(self.config.bus, self.metrics, role="strategy")
        await link.start()
        stack.push_async_callback(link.close)
        if self.config.market_data == "bus":
            self.adapters = bus_market_adapters(self.adapters, link.bus, self.config.bus)

    def _bind_bus(self, engine: TradingEngine) -> None:
        """A firm-wide trip trips this node's kill switch; reports carry its positions and PnL."""
        link = self.bus_link
        if link is None:
            return
        from hftkit.bus.messages import PositionFigure

        link.on_kill(lambda reason: engine.risk.trip(TripSource.MANUAL, reason))
        if self.config.bus.publish_account:
            for adapter in self.adapters.values():
                adapter.add_listener(link.account_listener())

        def figures() -> list[PositionFigure]:
            if self.engine is None:
                return []
            figures = self._position_figures()
            result = []
            for venue, symbol, instrument in self._traded():
                quantity, realized, unrealized = figures[(venue, symbol)]
                base = Decimal(quantity) * instrument.lot_size * instrument.contract_size
                result.append(
                    PositionFigure(
                        venue, symbol, instrument.base, str(base.normalize()), str(realized), str(unrealized),
                        instrument.quote,
                    )
                )  # fmt: skip
            return result

        link.report_with(figures, lambda: engine.risk.tripped)

    def bus_line(self) -> str:
        """The bus in one line for the dashboard ("" without a bus)."""
        if self.bus_link is None:
            return ""
        from hftkit.app.node_bus import bus_line

        return bus_line(self.bus_link.bus)

    def _paper_adapters(self, adapters: dict[str, VenueAdapter]) -> dict[str, VenueAdapter]:
        """``environment: paper``: each venue's real adapter keeps the market data; its orders go
        to an in-process matching engine mirroring that live book (``hftkit.backtest.paper``)."""
        from hftkit.app.backtest_plan import order_rate_for
        from hftkit.backtest.latency import LatencyModel
        from hftkit.backtest.paper import PaperVenue
        from hftkit.sim.engine.accounts import FeeSchedule

        config = self.config
        latency = LatencyModel.from_settings(
            config.latency, seed=config.backtest.seed, directory=self.loaded.directory
        )
        paper: dict[str, VenueAdapter] = {}
        for name, adapter in adapters.items():
            fees = config.simulator.fees.get(name)
            paper[name] = PaperVenue(
                adapter,
                latency=latency,
                fees=None if fees is None else FeeSchedule.from_basis_points(fees.maker_bp, fees.taker_bp),
                balances=config.backtest.balances,
                error_style="thalex" if isinstance(config.venues[name], ThalexVenue) else "binance",
                order_rate=order_rate_for(config.venues[name]) if config.backtest.rate_limits else None,
            )
        return paper

    # running ----------------------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        """Stop at the next step (signal handlers and the dashboard call this)."""
        self._stop_reason = reason
        if self.stop_requested is not None:
            self.stop_requested.set()

    def add_tick(self, callback: Callable[[], None]) -> None:
        """Called every tick of the run loop (the dashboard's refresh)."""
        self._on_tick.append(callback)

    async def run(self, tick_s: float = 0.05) -> NodeSummary:
        """Trade until the time is up or a stop is requested, then shut down safe and verify."""
        loop = asyncio.get_running_loop()
        self.stop_requested = asyncio.Event()
        self.started = time.monotonic()
        self.summary = summary = NodeSummary(loop=type(loop).__module__.split(".")[0])
        monitor = GcMonitor(self.metrics)
        monitor.install()
        installed_signals = install_stop_signals(loop, self.request_stop)
        try:
            async with contextlib.AsyncExitStack() as stack:
                sim_config = self.simulator_config()
                if sim_config is not None:
                    from hftkit.datasets import describe_source
                    from hftkit.sim.runner import Simulator

                    if self._given_sim is not None:
                        self.sim = sim = self._given_sim
                    else:
                        # the end-of-run verdict recomputes PnL from the whole fill ledger
                        self.sim = sim = await stack.enter_async_context(
                            Simulator(sim_config, ledger_limit=None)
                        )
                    await sim.wait_seeded()
                    summary.data = sorted({describe_source(path) for path in sim_config_files(sim)})
                for name, venue in self.config.venues.items():
                    if venue.environment == "sim":
                        if self.sim is None:
                            continue  # a sim venue no strategy trades
                        adapter = self._sim_adapter(name, venue, self.sim)
                    else:
                        adapter = build_adapter(name, venue, self.loaded, metrics=self.metrics)
                    self.adapters[name] = adapter
                if self.config.environment == "paper":
                    self.adapters = self._paper_adapters(self.adapters)
                await self._open_bus(stack)  # bus: section (hftkit.app.node_bus)
                id_prefix = await self._open_journal(stack)
                self.engine = engine = self._engine(id_prefix)
                self._bind_bus(engine)
                # side paths: market-data recorder and InfluxDB (closed after the adapters) --------
                market_storage = None
                if self.config.recorder.enabled or self.config.influx.enabled:
                    from hftkit.app.node_storage import NodeMarketStorage

                    self.market_storage = market_storage = NodeMarketStorage(self.loaded, self.metrics)
                    await market_storage.open(stack)
                for name, adapter in self.adapters.items():
                    await stack.enter_async_context(adapter)
                    adapter.add_listener(self._listener(name))
                    if market_storage is not None:
                        market_storage.attach(name, adapter)
                    self._connection_state[name] = True
                self._attach_journal(engine)
                if self.config.metrics.enabled:
                    self.operations = await stack.enter_async_context(
                        OperationsServer(
                            self.metrics, self.health, host=self.config.metrics.host, port=self.metrics_port
                        )
                    )
                engine.tracker.add_fill_listener(self._on_fill)
                if market_storage is not None:
                    market_storage.bind(engine)
                if self.config.runtime.gc_freeze:  # the full collection before any quote: no order waits
                    monitor.freeze(freeze_after_start)
                await engine.start()
                if self.journal is not None:  # the positions start-up reconciliation settled on
                    self.journal.record_positions(engine.tracker, "reconciled")
                if self.config.runtime.gc_freeze:  # and what trading's start made: a young collection
                    monitor.freeze(freeze_started)
                self.phase = "running"
                watchdog = asyncio.create_task(self._watchdog(), name="node:watchdog")
                try:
                    await self._wait(tick_s)
                finally:
                    watchdog.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watchdog
                self.phase = "stopping"
                await self._await_connections()
                await engine.stop(f"end of run ({self._stop_reason})")
                self.phase = "verifying"
                await self._verify(summary.verdict)
                summary.instruments = self._instrument_summaries()
                if self.journal is not None:
                    self.journal.record_positions(engine.tracker, "shutdown")
                    self.journal.record_kill_switch(engine.risk.tripped, "state at shutdown")
        finally:
            remove_stop_signals(loop, installed_signals)
            monitor.uninstall()
        summary.elapsed_s = time.monotonic() - self.started
        summary.stopped_by = self._stop_reason
        self.phase = "done"
        return summary

    async def _await_connections(self, timeout_s: float = 10.0) -> None:
        """A venue down at stop time can neither cancel nor answer the checks: give it a bounded
        chance to come back (the adapters reconnect on their own) before shutting down."""
        deadline = time.monotonic() + timeout_s
        while not all(self._connection_state.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        down = sorted(name for name, up in self._connection_state.items() if not up)
        if down:
            _log.warning(
                "stopping with %s still down after %.0fs: cancels and checks may fail", down, timeout_s
            )

    async def _wait(self, tick_s: float) -> None:
        assert self.stop_requested is not None
        deadline = None if self.seconds is None else time.monotonic() + self.seconds
        while not self.stop_requested.is_set():
            timeout = tick_s if deadline is None else min(tick_s, max(0.0, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), timeout)
            for callback in self._on_tick:
                callback()
            if deadline is not None and time.monotonic() >= deadline:
                self._stop_reason = "time"
                return

    async def _watchdog(self, period_s: float = 0.05) -> None:
        """Book staleness sweep and the readiness gauges, beside the strategies."""
        assert self.engine is not None
        ready = self.metrics.gauge("node_ready", "1 when every venue is synced and the kill switch clear")
        tripped = self.metrics.gauge("kill_switch_tripped", "1 while the kill switch halts trading")
        rounds = 0
        while True:
            self.engine.risk.check_books()
            health = self.health()
            ready.set(1.0 if health.ready else 0.0)
            tripped.set(1.0 if self.engine.risk.tripped else 0.0)
            if rounds % 10 == 0:  # the slower figures: positions, PnL, rate budget, breakers
                self._export_positions()
                self._export_venue_status()
                self._export_engine_counters()
                self._export_journal_status()
                self._storage_tick()
            rounds += 1
            await asyncio.sleep(period_s)

    def _export_engine_counters(self) -> None:
        """The engine's and the order gateway's event counts (risk rejects, quote actions the
        rate budget deferred, orders a venue could not take now, ...) as Prometheus counters."""
        engine = self.engine
        if engine is None:
            return
        exported = self._exported_counts
        for family, counts in (
            ("engine_events_total", engine.counters),
            ("gateway_events_total", engine.gateway.counters),
        ):
            for event, value in counts.items():
                key = (family, event)
                added = value - exported.get(key, 0)
                if added > 0:
                    self.metrics.counter(family, "engine and order gateway events", event=event).inc(added)
                    exported[key] = value

    def _export_venue_status(self) -> None:
        for venue, adapter in self.adapters.items():
            status = adapter.status()
            for window, used in status.rate_budget_used.items():
                self.metrics.gauge(
                    "rate_limit_used_ratio",
                    "fraction of a venue rate window used",
                    venue=venue,
                    window=window,
                ).set(used)
            for dependency, state in status.breakers.items():
                self.metrics.gauge(
                    "breaker_open", "1 while a circuit breaker is open", venue=venue, dependency=dependency
                ).set(0.0 if state == "closed" else 1.0)

    def _storage_tick(self) -> None:
        """The recorder's and InfluxDB's periodic work: positions/PnL/latency points, gauges."""
        storage, engine = self.market_storage, self.engine
        if storage is None or not storage.active or engine is None:
            return
        figures = self._position_figures()
        rows = []
        for venue, symbol, instrument in self._traded():
            quantity, realized, unrealized = figures[(venue, symbol)]
            average = engine.tracker.positions.get(venue, symbol).average_price
            rows.append((venue, symbol, instrument, quantity, average, realized, unrealized))
        storage.tick(rows)

    def _export_journal_status(self) -> None:
        if self.journal is None:
            return
        status = self.journal.journal.status()
        writer = status.writer
        for name, value, help_text in (
            ("journal_committed_sequence", status.committed_sequence, "highest durably committed record"),
            ("journal_buffered", writer.buffered, "records waiting for the store"),
            ("journal_dropped", writer.dropped, "records lost: buffer full or shutdown timeout"),
            ("journal_failed_batches", writer.failed_batches, "store writes failed after retries"),
            ("journal_healthy", 1.0 if status.healthy else 0.0, "1 while the journal keeps up"),
        ):
            self.metrics.gauge(name, help_text).set(float(value))

    def _listener(self, venue: str) -> Callable[[Any], None]:
        """Per venue: decode latency (frame received -> event here) and the connection's state."""
        failures = self.metrics.counter("connection_failures_total", "connections lost", venue=venue)
        reconnects = self.metrics.counter("reconnects_total", "connections re-established", venue=venue)
        resyncs = self.metrics.counter("book_resyncs_total", "books resynchronized", venue=venue)
        decode = self.metrics.histogram("node_decode_ns", "frame received -> normalized event", venue=venue)
        state = self._connection_state
        monotonic_ns = time.monotonic_ns

        def listener(event: Any) -> None:
            kind = type(event)
            if kind is BookDelta or kind is Trade:
                if event.receive_ns:
                    decode.record(monotonic_ns() - event.receive_ns)
                return
            if kind is not ConnectionEvent:
                return
            if event.state == "disconnected":
                failures.inc()
                state[venue] = False
            elif event.state == "resyncing":
                resyncs.inc()
                state[venue] = False
            elif event.state == "synced":
                if not state.get(venue, True):
                    reconnects.inc()
                state[venue] = True

        return listener

    def _on_fill(self, fill: Fill, position: Position) -> None:
        key = (fill.venue, fill.symbol)
        self._fills[key] += 1
        counter = self._fill_counters.get(key)
        if counter is None:  # a registry lookup checks labels and builds keys: once per instrument
            counter = self._fill_counters[key] = self.metrics.counter(
                "fills_total", "fills of our orders", venue=fill.venue, symbol=fill.symbol
            )
        counter.inc()

    def health(self) -> Health:
        """Ready = every venue connected and synced, and the kill switch clear."""
        reasons = [
            f"{name}: not connected or not synced" for name, up in self._connection_state.items() if not up
        ]
        engine = self.engine
        switch = "clear"
        if engine is not None and engine.risk.tripped:
            switch = "tripped"
            reasons.append("kill switch tripped")
        if self.phase not in ("running",):
            reasons.append(f"node is {self.phase}")
        if self.bus_link is not None and not self.bus_link.bus.status().connected:
            reasons.append("bus unreachable: the firm-wide kill switch cannot reach this node")
        storage = {} if self.journal is None else {"journal": self.journal.status()}
        if self.market_storage is not None:
            storage.update(self.market_storage.status())
        return Health(not reasons, tuple(reasons), dict(self._connection_state), switch, storage)

    def _export_positions(self) -> None:
        engine = self.engine
        if engine is None:
            return
        for key, item in self._position_figures().items():
            venue, symbol = key
            self.metrics.gauge("position_lots", "signed position", venue=venue, symbol=symbol).set(item[0])
            self.metrics.gauge("pnl_realized", "realized PnL, quote units", venue=venue, symbol=symbol).set(
                float(item[1])
            )
            self.metrics.gauge("pnl_unrealized", "unrealized PnL at the mid", venue=venue, symbol=symbol).set(
                float(item[2])
            )
            fees = engine.tracker.positions.get(venue, symbol).fees
            for asset, paid in fees.items():
                self.metrics.gauge("fees_paid", "fees paid", venue=venue, symbol=symbol, asset=asset).set(
                    paid
                )

    def _traded(self) -> list[tuple[str, str, Instrument]]:
        """Every (venue, symbol, instrument) the node trades whose adapter knows the instrument."""
        traded = []
        for venue, symbols in self.instruments().items():
            adapter = self.adapters.get(venue)
            for symbol in symbols:
                instrument = None if adapter is None else adapter.instruments.get(symbol)
                if instrument is not None:
                    traded.append((venue, symbol, instrument))
        return traded

    def _position_figures(self) -> dict[InstrumentKey, tuple[int, Decimal, Decimal]]:
        engine = self.engine
        assert engine is not None
        figures: dict[InstrumentKey, tuple[int, Decimal, Decimal]] = {}
        for venue, symbol, instrument in self._traded():
            position = engine.tracker.positions.get(venue, symbol)
            realized = ticks_lots_to_money(position.realized, instrument)
            mid = self._mid(venue, symbol)
            unrealized = (
                ticks_lots_to_money(position.unrealized(mid), instrument) if mid is not None else Decimal(0)
            )
            figures[(venue, symbol)] = (position.quantity, realized, unrealized)
        return figures

    def _mid(self, venue: str, symbol: str) -> Fraction | None:
        engine = self.engine
        if engine is None:
            return None
        book = engine.book(venue, symbol)
        if book is None:
            return None
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            return None
        return Fraction(bid[0] + ask[0], 2)

    # what the dashboard reads ------------------------------------------------------------------------
    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started if self.started else 0.0

    def instrument_rows(self) -> list[tuple[str, ...]]:
        """One row per traded instrument: top of book, our best quotes, position, PnL, fees, orders."""
        if self._final_rows is not None:
            return self._final_rows[0]
        engine = self.engine
        if engine is None:
            return []
        figures = self._position_figures()
        counts: dict[InstrumentKey, list[int]] = {}
        for order in engine.tracker.all_orders():
            tally = counts.setdefault((order.venue, order.symbol), [0, 0, 0])
            tally[0] += 1
            tally[1] += order.venue_order_id is not None
            tally[2] += order.status is OrderStatus.REJECTED
        rows: list[tuple[str, ...]] = []
        for venue, symbol, instrument in self._traded():
            book = engine.book(venue, symbol)
            bid = book.best_bid_price() if book is not None else None
            ask = book.best_ask_price() if book is not None else None
            open_orders = engine.tracker.open_orders(venue, symbol)
            our_bid = max((o.price for o in open_orders if o.side is Side.BUY), default=None)
            our_ask = min((o.price for o in open_orders if o.side is Side.SELL), default=None)
            quantity, realized, unrealized = figures.get((venue, symbol), (0, Decimal(0), Decimal(0)))
            fees = engine.tracker.positions.get(venue, symbol).fees
            sent, acked, rejected = counts.get((venue, symbol), [0, 0, 0])

            def price(ticks: int | None, instrument: Instrument = instrument) -> str:
                return "-" if ticks is None else str(instrument.ticks_to_price(ticks))

            rows.append(
                (
                    venue,
                    symbol,
                    price(bid),
                    price(ask),
                    price(our_bid),
                    price(our_ask),
                    str((Decimal(quantity) * instrument.lot_size * instrument.contract_size).normalize()),
                    f"{realized:.4f}",
                    f"{unrealized:.4f}",
                    ", ".join(f"{value:.4f} {asset}" for asset, value in fees.items()) or "0",
                    str(self._fills[(venue, symbol)]),
                    f"{sent}/{acked}/{rejected}",
                )
            )
        return rows

    def venue_rows(self) -> list[tuple[str, ...]]:
        """One row per venue: connection, reconnects and resyncs, rate budget, breakers."""
        if self._final_rows is not None:
            return self._final_rows[1]
        rows: list[tuple[str, ...]] = []
        snapshot = self.metrics.snapshot()
        for venue in self.adapters:
            reconnects = snapshot.counter("reconnects_total", venue=venue) or 0
            resyncs = snapshot.counter("book_resyncs_total", venue=venue) or 0
            budget = [
                f"{key.label_dict.get('window', '')} {value:.0%}"
                for key, value in snapshot.gauges.items()
                if key.name == "rate_limit_used_ratio" and key.label_dict.get("venue") == venue
            ]
            breakers = [
                f"{key.label_dict.get('dependency', '')} {'open' if value else 'closed'}"
                for key, value in snapshot.gauges.items()
                if key.name == "breaker_open" and key.label_dict.get("venue") == venue
            ]
            rows.append(
                (
                    venue,
                    "yes" if self._connection_state.get(venue) else "NO",
                    f"{reconnects:.0f}",
                    f"{resyncs:.0f}",
                    ", ".join(budget) or "-",
                    ", ".join(breakers) or "-",
                )
            )
        return rows

    # verdict ----------------------------------------------------------------------------------------
    async def _verify(self, verdict: Verdict) -> None:
        engine = self.engine
        assert engine is not None
        await self._verify_orders(verdict)
        await self._verify_positions(verdict)
        # what the end-of-run tables show: every order settled, the books and sessions still up
        # (the book check below pauses the market)
        self._final_rows = (self.instrument_rows(), self.venue_rows())
        if self.sim is not None:
            await self._verify_books(verdict)
            if self.config.environment == "paper":
                verdict.notes.append(
                    "paper trading: fills come from the in-process matching, not the venue's ledger"
                )
            else:
                self._verify_ledger(verdict)
        else:
            verdict.notes.append("books and fill ledger are checked against the simulator only")

    async def _verify_orders(self, verdict: Verdict) -> None:
        engine = self.engine
        assert engine is not None
        problems: list[str] = []
        for venue, symbols in self.instruments().items():
            adapter = self.adapters.get(venue)
            if adapter is None:
                continue
            for symbol in symbols:
                try:
                    still_open = await _within_rate_limits(functools.partial(adapter.open_orders, symbol))
                except Exception as error:
                    problems.append(f"{venue}:{symbol}: open orders unavailable at the end: {error!r}")
                    continue
                if still_open:
                    problems.append(f"{venue}:{symbol}: {len(still_open)} orders still open at the venue")
        if self.sim is not None:
            from hftkit.app.sim_wiring import sim_account

            account = sim_account(self.sim)
            for name, venue_config in self.config.venues.items():
                sim_venue = self.sim.venues.get(simulator_venue(venue_config))
                if venue_config.environment == "sim" and sim_venue is not None:
                    resting = sim_venue.engine.open_orders(account)
                    if resting:
                        problems.append(f"{name}: {len(resting)} orders rest in the simulator's engine")
        unsettled = [order for order in engine.tracker.all_orders() if not order.status.is_terminal]
        if unsettled:
            problems.append(
                "orders not accounted for: "
                + ", ".join(f"{order.client_order_id} ({order.status.value})" for order in unsettled[:10])
            )
        verdict.record("no order resting, every order accounted for", problems)

    async def _verify_positions(self, verdict: Verdict) -> None:
        engine = self.engine
        assert engine is not None
        problems: list[str] = []
        for venue, adapter in self.adapters.items():
            if not adapter.capabilities.positions:
                continue
            try:
                answered = await _within_rate_limits(adapter.positions)
                reported = {update.symbol: update.quantity for update in answered}
            except Exception as error:
                problems.append(f"{venue}: positions unavailable at the end: {error!r}")
                continue
            for symbol in self.instruments()[venue]:
                ours = engine.tracker.positions.get(venue, symbol).quantity
                theirs = reported.get(symbol, 0)
                if ours != theirs:
                    problems.append(f"{venue}:{symbol}: position {ours} lots, venue says {theirs}")
        verdict.record("positions equal the venue's", problems)

    async def _verify_books(self, verdict: Verdict, timeout_s: float = 5.0) -> None:
        """Pause the market, let the feeds drain, compare every book level by level."""
        sim, engine = self.sim, self.engine
        assert sim is not None and engine is not None
        from hftkit.app.sim_wiring import PAUSED_SPEED

        for venue in sim.venues:
            sim.set_speed(venue, PAUSED_SPEED)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            problems = self._compare_books()
            if not problems or loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
        verdict.record("books equal the venue's level by level", problems)

    def _compare_books(self, levels: int = 50) -> list[str]:
        sim, engine = self.sim, self.engine
        assert sim is not None and engine is not None
        problems = []
        for name, venue in self.config.venues.items():
            if venue.environment != "sim":
                continue
            matching = sim.venues[simulator_venue(venue)].engine
            for symbol in self.instruments()[name]:
                book = engine.book(name, symbol)
                if book is None:
                    problems.append(f"{name}:{symbol}: book not synced")
                    continue
                depth = matching.depth(symbol, levels)
                theirs_bids = [tuple(level) for level in depth.bids]
                theirs_asks = [tuple(level) for level in depth.asks]
                for side, ours, theirs in (
                    ("bids", book.bids(levels), theirs_bids),
                    ("asks", book.asks(levels), theirs_asks),
                ):
                    if list(ours) != theirs:
                        first = next(
                            (index for index, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
                            min(len(ours), len(theirs)),
                        )
                        problems.append(f"{name}:{symbol}: {side} differ from level {first}")
        return problems

    def _verify_ledger(self, verdict: Verdict) -> None:
        """Realized PnL and fees recomputed from the simulator's own fill ledger equal the node's."""
        sim, engine = self.sim, self.engine
        assert sim is not None and engine is not None
        from hftkit.app.sim_wiring import sim_account

        account = sim_account(sim)
        problems: list[str] = []
        for name, venue in self.config.venues.items():
            if venue.environment != "sim":
                continue
            sim_venue = sim.venues[simulator_venue(venue)]
            accounts = sim_venue.accounts
            for symbol in self.instruments()[name]:
                replayed = Position(name, symbol)
                fees: Counter[str] = Counter()
                entries = sorted(
                    (e for e in accounts.ledger if e.account == account and e.symbol == symbol),
                    key=lambda entry: entry.trade_id,
                )
                for entry in entries:
                    replayed.apply(entry.side, entry.price, entry.quantity)
                    fees[entry.fee_asset] += entry.fee
                ours = engine.tracker.positions.get(name, symbol)
                if replayed.quantity != ours.quantity or replayed.realized != ours.realized:
                    problems.append(
                        f"{name}:{symbol}: venue ledger gives {replayed.quantity} lots, realized "
                        f"{float(replayed.realized):.6g}; node has {ours.quantity} lots, realized "
                        f"{float(ours.realized):.6g} (ticks*lots)"
                    )
                for asset, units in fees.items():
                    venue_fee = float(Decimal(accounts.to_text(asset, units)))
                    node_fee = ours.fees.get(asset, 0.0)
                    if abs(venue_fee - node_fee) > 1e-9 * max(1.0, abs(venue_fee)):
                        problems.append(
                            f"{name}:{symbol}: fees {asset} venue {venue_fee:.10g}, node {node_fee:.10g}"
                        )
                if len(entries) != self._fills[(name, symbol)]:
                    problems.append(
                        f"{name}:{symbol}: venue ledger has {len(entries)} fills, "
                        f"node saw {self._fills[(name, symbol)]}"
                    )
        verdict.record("PnL and fees from the venue's fill ledger equal the node's", problems)

    # summary ----------------------------------------------------------------------------------------
    def _instrument_summaries(self) -> list[InstrumentSummary]:
        engine = self.engine
        assert engine is not None
        orders: dict[InstrumentKey, list[Order]] = {}
        for order in engine.tracker.all_orders():
            orders.setdefault((order.venue, order.symbol), []).append(order)
        figures = self._position_figures()
        result = []
        for venue, symbol, instrument in self._traded():
            mine = orders.get((venue, symbol), [])
            quantity, realized, unrealized = figures.get((venue, symbol), (0, Decimal(0), Decimal(0)))
            position = engine.tracker.positions.get(venue, symbol)
            base = Decimal(quantity) * instrument.lot_size * instrument.contract_size
            tick_to_trade = self.metrics.histogram("tick_to_trade_ns", venue=venue)
            counted = tick_to_trade.count > 0
            result.append(
                InstrumentSummary(
                    venue=venue,
                    symbol=symbol,
                    fills=self._fills[(venue, symbol)],
                    orders_sent=len(mine),
                    orders_acked=sum(1 for order in mine if order.venue_order_id is not None),
                    orders_rejected=sum(1 for order in mine if order.status is OrderStatus.REJECTED),
                    position=str(base.normalize()),
                    realized_pnl=f"{realized:.8f}",
                    unrealized_pnl=f"{unrealized:.8f}",
                    fees=dict(position.fees),
                    tick_to_trade_p50_us=tick_to_trade.percentile(50) / 1000 if counted else None,
                    tick_to_trade_p99_us=tick_to_trade.percentile(99) / 1000 if counted else None,
                )
            )
        return result


async def _within_rate_limits(query: Callable[[], Awaitable[_T]], attempts: int = 3) -> _T:
    """A closing check's query, asked again after the venue's own backoff when it is throttled
    (the session's last orders and cancels may have spent its message budget a moment ago)."""
    for attempt in range(attempts):
        try:
            return await query()
        except RateLimitedError as error:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(min(max(error.retry_after_s, 0.1), 5.0))
    raise AssertionError("unreachable")


def sim_config_files(sim: Simulator) -> list[Any]:
    """The recordings the simulator replays (for 'which data ran')."""
    files: list[Any] = []
    for driver in sim.drivers.values():
        files.extend(getattr(driver, "paths", ()) or ())
    return files


def builtin_config() -> LoadedConfig:
    """The default node: the Avellaneda-Stoikov maker on Thalex BTC-PERPETUAL, hedged on Binance
    USD-M BTCUSDT, against the simulator replaying the real recorded market."""
    from importlib import resources

    text = (resources.files("hftkit.app") / "templates" / "default.yaml").read_text(encoding="utf-8")
    return node_config.load_text(text, "<built-in default>")


__all__ = [
    "InstrumentSummary",
    "NodeSummary",
    "TradingNode",
    "Verdict",
    "builtin_config",
    "simulator_venue",
]
