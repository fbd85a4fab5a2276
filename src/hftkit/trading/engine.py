"""The trading engine: runs strategies across venues on one event loop.

``TradingEngine`` is the thin asyncio shell between venue adapters and strategies, built from
parts it does not build itself (the composition root, ``hftkit.app.node.TradingNode``, or
``TradingEngine.build`` for tests and notebooks):

* adapter listeners (synchronous, per venue) feed the order state tracker and the strategies
  subscribed to each (venue, symbol); nothing polls, timers use ``loop.call_later``;
* books are the adapters' own synchronized books (one owner per instrument): the engine reads
  them through ``VenueAdapter.book`` and never applies a level itself;
* desired ladders go through the ``QuotingService`` (minimal actions against the tracker's
  view), every new order through the ``RiskGate`` (a reject is counted and never sent), taker
  orders through the ``ExecutionEngine``; checks and tracker submissions happen synchronously
  in the event, sends are tasks;
* a strategy callback that raises is logged and counted; the engine and the other strategies
  carry on;
* on stop and on a kill switch trip every venue's orders of the managed symbols are cancelled
  (``cancel_all`` per venue and symbol, failures logged) and the tracker is reconciled with what
  the venue says is still open: shut down safe. After stop, venue events reach the tracker only.

Latency is recorded per stage: event -> decision (from the listener's entry: the strategy's
compute), decision -> sent (queueing until the venue call starts), send -> answer per venue
(the order round trip), and tick-to-trade per venue: the socket frame that triggered the
decision (its transport receive stamp) to the moment the adapter wrote the order's bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

from hftkit.book.order_book import OrderBook
from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.types import (
    BalanceUpdate,
    BookDelta,
    BookTicker,
    ConnectionEvent,
    FeeCharge,
    Fill,
    Instrument,
    Order,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionUpdate,
    Quote,
    TimeInForce,
    Trade,
)
from hftkit.metrics import LatencyHistogram, MetricsRegistry
from hftkit.trading.execution import (
    ExecutionConfig,
    ExecutionEngine,
    ExecutionReport,
    OrderGateway,
    OrderIntent,
    TrackerExposure,
)
from hftkit.trading.positions import Position
from hftkit.trading.quoting import AmendOrder, CancelOrder, QuotingPolicy, QuotingService, amend_support
from hftkit.trading.risk import InstrumentLimits, KillSwitchEvent, KillSwitchShell, RiskGate, RiskInputError
from hftkit.trading.state import OrderStateTracker, VenuePosition, VenueSnapshot
from hftkit.trading.strategy import Decision, InstrumentKey, Strategy, TimerRequest
from hftkit.venues.base import BudgetsOrders, VenueAdapter, VenueEvent

__all__ = ["TradingEngine"]

#: the soonest a plan the rate budget cut short is re-planned: a budget that says "now" while
#: requests already queue for it is re-asked at this pace, not in a busy loop
REPLAN_FLOOR_S = 0.005
#: a cancel_all that leaves orders open is tried again, this many times in all, growing pauses apart
CANCEL_ALL_ATTEMPTS = 3
CANCEL_ALL_RETRY_S = 0.2
_log = logging.getLogger(__name__)
# the order path's one clock: frames are stamped on receipt with ``time.monotonic_ns()``
_perf_ns = time.monotonic_ns
#: an unchanged top is told to the risk gate at most this often (its freshness), far inside any
#: sane ``max_book_age``; a changed top is told at once
TOP_REFRESH_NS = 10_000_000


# the engine --------------------------------------------------------------------------------------
class TradingEngine:
    """Runs strategies across venues on one event loop (see the module docstring).

    Takes its parts built: ``tracker`` (the one order tracker), ``risk`` with its ``kill_switch``,
    one ``QuotingService`` per venue, the ``gateway`` every order goes through and the
    ``execution`` engine for taker orders. ``instrument_limits`` are registered with the gate at
    start for the instruments they name (``register_all_instruments``: every instrument of every
    adapter, with default limits where none are named). ``clock`` must be the tracker's clock.
    """

    def __init__(
        self,
        adapters: Sequence[VenueAdapter],
        strategies: Sequence[Strategy],
        *,
        tracker: OrderStateTracker,
        risk: RiskGate,
        kill_switch: KillSwitchShell,
        quoting: Mapping[str, QuotingService],
        gateway: OrderGateway,
        execution: ExecutionEngine,
        metrics: MetricsRegistry,
        instrument_limits: Mapping[InstrumentKey, InstrumentLimits] | None = None,
        register_all_instruments: bool = False,
        clock: Clock = REAL_CLOCK,
        quote_order_type: OrderType = OrderType.LIMIT_MAKER,
        stop_timeout_s: float = 5.0,
        manage_adapters: bool = True,
        cancel_on_disconnect: bool = True,
    ) -> None:
        self.adapters: dict[str, VenueAdapter] = {adapter.name: adapter for adapter in adapters}
        if len(self.adapters) != len(adapters):
            raise ValueError("adapter names must be unique")
        names = [strategy.name for strategy in strategies]
        if len(set(names)) != len(names):
            raise ValueError(f"strategy names must be unique, got {names}")
        missing = sorted(set(self.adapters) - set(quoting))
        if missing:
            raise ValueError(f"no quoting service for venues {missing}")
        self.strategies = list(strategies)
        self.clock = clock
        self.tracker = tracker
        self.risk = risk
        self.kill_switch = kill_switch
        self.kill_switch.add_cancel_all_hook(self._on_kill_switch)
        self.metrics = metrics
        self.gateway = gateway
        self.execution = execution
        self.quoting = dict(quoting)
        for service in self.quoting.values():  # quotes are planned as the orders they are sent as
            if service.policy.order_type is not quote_order_type:
                service.policy = dataclasses.replace(service.policy, order_type=quote_order_type)
        self._instrument_limits = dict(instrument_limits or {})
        self._register_all = register_all_instruments
        self.quote_order_type = quote_order_type
        self.stop_timeout_s = stop_timeout_s
        self.manage_adapters = manage_adapters
        self.cancel_on_disconnect = cancel_on_disconnect
        self._book_subscribers: dict[InstrumentKey, list[Strategy]] = {}
        self._trade_subscribers: dict[InstrumentKey, list[Strategy]] = {}
        self._fill_watchers: dict[InstrumentKey, list[Strategy]] = {}
        self._managed: dict[str, set[str]] = {venue: set() for venue in self.adapters}
        self._owners: dict[str, Strategy] = {}
        # owners of recently closed orders: a fill may arrive after the order's terminal update
        self._closed_owners: OrderedDict[str, Strategy] = OrderedDict()
        self.closed_owner_capacity = 10_000
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        # venues whose adapter knows its rate budget now: a plan sends no more than that
        self._order_budgets: dict[str, BudgetsOrders] = {
            venue: adapter for venue, adapter in self.adapters.items() if isinstance(adapter, BudgetsOrders)
        }
        # plans cut short by the budget: the latest ladder per instrument, re-planned by a timer
        self._deferred: dict[InstrumentKey, tuple[Strategy, tuple[Quote, ...]]] = {}
        self._replans: dict[InstrumentKey, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # orders written inside a callback (no task) whose answer has not come back yet
        self._answers_due = 0
        self._idle: asyncio.Future[None] | None = None
        self._pending_orders: deque[Order] = deque()
        self._pending_fills: deque[Fill] = deque()
        self._draining = False
        self._aggregate_cache: tuple[int, dict[str, Decimal]] | None = None
        self._fill_count = 0
        self._unknown_risk_instruments: set[InstrumentKey] = set()
        self._tops: dict[InstrumentKey, tuple[int, int, int]] = {}  # last top told to risk, and when
        self._logged_failures: set[tuple[str, str]] = set()
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._running = False
        self._started = False
        self._stopped = False
        self._event_ns = 0
        self._trigger_ns = 0  # the receive stamp of the frame behind the event being handled
        self._loop: asyncio.AbstractEventLoop | None = None
        self.counters: Counter[str] = Counter()
        self.strategy_errors: Counter[str] = Counter()
        self.event_to_decision: dict[str, LatencyHistogram] = {
            strategy.name: self.metrics.histogram("event_to_decision_ns", strategy=strategy.name)
            for strategy in self.strategies
        }
        # strategies that handle their orders' updates: the base class's handler does nothing, so
        # a strategy that keeps it is not called for each of its orders' updates
        self._hears_order_updates = {
            strategy.name
            for strategy in self.strategies
            if getattr(strategy.on_order_update, "__func__", None) is not Strategy.on_order_update
        }
        self.tracker.add_order_listener(self._on_tracked_order)
        self.tracker.add_fill_listener(self._on_tracked_fill)
        self._handlers: dict[type, Callable[[Any], None]] = {
            BookDelta: self._on_book_delta,
            Trade: self._on_trade,
            OrderUpdate: self._on_order_update,
            Fill: self._on_fill,
            FeeCharge: self.tracker.apply_fee,
            BalanceUpdate: self._on_balance,
            PositionUpdate: self._on_position,
            ConnectionEvent: self._on_connection,
            BookTicker: self._on_ticker,
        }

    @classmethod
    def build(
        cls,
        adapters: Sequence[VenueAdapter],
        strategies: Sequence[Strategy],
        *,
        tracker: OrderStateTracker | None = None,
        risk: RiskGate | None = None,
        kill_switch: KillSwitchShell | None = None,
        quoting: QuotingPolicy | Mapping[str, QuotingPolicy] | None = None,
        instrument_limits: Mapping[InstrumentKey, InstrumentLimits] | None = None,
        execution: ExecutionConfig | None = None,
        metrics: MetricsRegistry | None = None,
        clock: Clock = REAL_CLOCK,
        request_timeout_s: float = 5.0,
        id_prefix: str | None = None,
        **options: Any,
    ) -> TradingEngine:
        """An engine with default parts where none are given: a tracker on ``clock``, a gate with
        no limits but the kill switch (every instrument registered), one quoting service per venue.
        For tests and notebooks; a node is wired by ``TradingNode.from_config``."""
        tracker = tracker if tracker is not None else OrderStateTracker(clock)
        own_gate = risk is None
        risk = risk if risk is not None else RiskGate(TrackerExposure(tracker), clock=clock)
        kill_switch = kill_switch if kill_switch is not None else KillSwitchShell(risk)
        metrics = metrics if metrics is not None else MetricsRegistry(clock)
        by_name = {adapter.name: adapter for adapter in adapters}
        gateway = OrderGateway(
            by_name, tracker, risk, metrics=metrics, request_timeout_s=request_timeout_s, id_prefix=id_prefix
        )
        # the engine's halt state, read when an execution runs (the engine exists by then)
        engine_execution = ExecutionEngine(gateway, execution, is_halted=lambda: engine.trading_halted)
        services = {}
        for venue, adapter in by_name.items():
            policy = quoting.get(venue) if isinstance(quoting, Mapping) else quoting
            # no policy given: the venue's own amend (a re-quote moves an order in one request)
            policy = policy or QuotingPolicy(amend=amend_support(adapter.capabilities))
            services[venue] = QuotingService(policy)
        engine = cls(
            adapters,
            strategies,
            tracker=tracker,
            risk=risk,
            kill_switch=kill_switch,
            quoting=services,
            gateway=gateway,
            execution=engine_execution,
            metrics=metrics,
            instrument_limits=instrument_limits,
            register_all_instruments=own_gate,
            clock=clock,
            **options,
        )
        return engine

    # lifecycle ---------------------------------------------------------------------------------
    async def __aenter__(self) -> TradingEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop("context exit")

    @property
    def running(self) -> bool:
        return self._running

    async def start(self) -> None:
        """Enter the adapters (unless told not to), wire listeners, subscribe, start strategies."""
        if self._started:
            raise RuntimeError("a TradingEngine starts once; build a new one to run again")
        self._started = True
        self._loop = asyncio.get_running_loop()
        if self.manage_adapters:
            self._exit_stack = contextlib.AsyncExitStack()
        try:
            await self._start()
        except BaseException:
            if self._running:  # strategies may have placed orders already
                self._running = False
                await self._settle_tasks(self.stop_timeout_s)
                await self.cancel_everything("start failed")
            if self._exit_stack is not None:
                stack, self._exit_stack = self._exit_stack, None
                await stack.aclose()
            raise

    async def _start(self) -> None:
        if self._exit_stack is not None:
            for adapter in self.adapters.values():
                await self._exit_stack.enter_async_context(adapter)
        wanted: dict[str, dict[str, list[bool]]] = {venue: {} for venue in self.adapters}
        for strategy in self.strategies:
            for subscription in strategy.subscriptions():
                if subscription.venue not in self.adapters:
                    raise ValueError(
                        f"strategy {strategy.name!r} subscribes to unknown venue {subscription.venue!r}"
                    )
                for symbol in subscription.symbols:
                    if symbol not in self.adapters[subscription.venue].instruments:
                        raise ValueError(f"{subscription.venue} has no instrument {symbol!r}")
                    key = (subscription.venue, symbol)
                    self._managed[subscription.venue].add(symbol)
                    flags = wanted[subscription.venue].setdefault(symbol, [False, False])
                    if subscription.books:
                        flags[0] = True
                        self._book_subscribers.setdefault(key, []).append(strategy)
                    if subscription.trades:
                        flags[1] = True
                        self._trade_subscribers.setdefault(key, []).append(strategy)
                    if subscription.all_fills:
                        self._fill_watchers.setdefault(key, []).append(strategy)
        for venue, adapter in self.adapters.items():
            for instrument in adapter.instruments.values():
                self.tracker.positions.register(instrument)
                limits = self._instrument_limits.get(instrument.key)
                if self._register_all or limits is not None:
                    self.risk.add_instrument(instrument, limits)
            adapter.add_listener(self._listener_for(venue))
        # before the first quote: adopt what rests at the venue and take its positions, so a
        # restarted node manages its earlier orders instead of quoting on top of them
        for venue, symbols in self._managed.items():
            if symbols:
                await self._reconcile_at_start(venue, frozenset(symbols))
        self._running = True
        for strategy in self.strategies:
            strategy.bind(self)
            self._dispatch(strategy, strategy.on_start)
        for venue, flags_by_symbol in wanted.items():
            books = sorted(symbol for symbol, flags in flags_by_symbol.items() if flags[0])
            trades = sorted(symbol for symbol, flags in flags_by_symbol.items() if flags[1] and not flags[0])
            if books:
                with_trades = any(flags_by_symbol[symbol][1] for symbol in books)
                await self.adapters[venue].subscribe(books, books=True, trades=with_trades)
            if trades:
                await self.adapters[venue].subscribe(trades, books=False, trades=True)
        self._drain()

    async def _reconcile_at_start(self, venue: str, symbols: frozenset[str]) -> None:
        adapter = self.adapters[venue]
        taken_ns = self.clock.monotonic_ns()
        updates: list[OrderUpdate] = []
        for symbol in sorted(symbols):
            updates.extend(await adapter.open_orders(symbol))
        positions: list[VenuePosition] | None = None
        if adapter.capabilities.positions:
            positions = []
            for reported in await adapter.positions():
                instrument = adapter.instruments.get(reported.symbol)
                if reported.symbol not in symbols or instrument is None:
                    continue
                entry = (
                    Fraction(reported.entry_price) / Fraction(instrument.tick_size)
                    if reported.quantity
                    else None
                )
                positions.append(VenuePosition(reported.symbol, reported.quantity, entry))
        report = self.tracker.reconcile(
            VenueSnapshot(
                venue=venue,
                orders=updates,
                positions=positions,
                symbols=symbols,
                taken_ns=taken_ns,
            )
        )
        self.counters["start_reconciliation_differences"] += len(report.differences)
        if report.differences:
            _log.warning("%s at start: %d differences adopted from the venue", venue, len(report.differences))

    async def stop(self, reason: str = "stop") -> None:
        """Stop deciding, let in-flight requests finish (bounded), cancel every managed order."""
        if not self._running:
            return
        self._running = False
        self._stopped = True
        for handle in (*self._timers.values(), *self._replans.values()):
            handle.cancel()
        self._timers.clear()
        self._replans.clear()
        self._deferred.clear()
        for strategy in self.strategies:
            try:
                strategy.on_stop()
            except Exception:
                self._strategy_failed(strategy, "on_stop")
        await self._settle_tasks(self.stop_timeout_s)
        await self.cancel_everything(reason)
        if self._exit_stack is not None:
            stack, self._exit_stack = self._exit_stack, None
            try:
                await stack.aclose()
            except Exception:
                self.counters["adapter_exit_errors"] += 1
                _log.exception("closing adapters failed")

    async def wait_idle(self, timeout_s: float | None = None) -> None:
        """Wait until every send, cancel and execution has finished (tasks, and orders written
        inside a callback whose answer is still due)."""
        async with asyncio.timeout(timeout_s):
            while self._tasks or self._answers_due:
                if self._tasks:
                    await asyncio.gather(*list(self._tasks), return_exceptions=True)
                else:
                    if self._idle is None or self._idle.done():
                        self._idle = asyncio.get_running_loop().create_future()
                    await self._idle

    async def _settle_tasks(self, timeout_s: float) -> None:
        try:
            await self.wait_idle(timeout_s)
        except TimeoutError:
            # answers still due are bounded by their adapters' request timeouts; the venue's
            # cancel_all and the reconciliation that follow stop stand for them
            self.counters["answers_due_on_stop"] += self._answers_due
            stragglers = list(self._tasks)
            self.counters["tasks_cancelled_on_stop"] += len(stragglers)
            for task in stragglers:
                task.cancel()
            await asyncio.gather(*stragglers, return_exceptions=True)

    async def cancel_everything(self, reason: str) -> int:
        """``cancel_all`` for every managed (venue, symbol), then reconcile the tracker with
        what each venue still reports open. Failures are logged and counted, never raised."""
        _log.warning("cancelling all managed orders: %s", reason)
        results = await asyncio.gather(
            *(
                self._cancel_symbol(venue, symbol)
                for venue, symbols in self._managed.items()
                for symbol in sorted(symbols)
            )
        )
        self._drain()
        return sum(results)

    async def _cancel_symbol(self, venue: str, symbol: str) -> int:
        """``cancel_all`` until the venue reports nothing open (``CANCEL_ALL_ATTEMPTS`` at most),
        then reconcile the tracker with what it reports: a refused or throttled cancel, or an
        order the adapter had lost track of (its ``open_orders`` tracks it again), is retried
        rather than left resting."""
        adapter = self.adapters[venue]
        cancelled = 0
        for attempt in range(1, CANCEL_ALL_ATTEMPTS + 1):
            taken_ns = self.clock.monotonic_ns()
            try:
                cancelled += await adapter.cancel_all(symbol)
                self.counters["cancel_all_calls"] += 1
            except Exception as error:
                self.counters["cancel_all_failures"] += 1
                _log.error("cancel_all %s:%s failed: %r", venue, symbol, error)
            try:
                still_open = await adapter.open_orders(symbol)
            except Exception as error:
                self.counters["reconcile_failures"] += 1
                _log.error("open orders of %s:%s unavailable after cancel_all: %r", venue, symbol, error)
                return cancelled
            if not still_open or attempt == CANCEL_ALL_ATTEMPTS:
                break
            self.counters["cancel_all_retries"] += 1
            _log.warning(
                "%s:%s: %d orders still open after cancel_all; trying again", venue, symbol, len(still_open)
            )
            await asyncio.sleep(CANCEL_ALL_RETRY_S * attempt)
        report = self.tracker.reconcile(
            VenueSnapshot(
                venue=venue,
                orders=still_open,
                symbols=frozenset({symbol}),
                taken_ns=taken_ns,
            )
        )
        if not report.is_clean:
            self.counters["reconcile_differences"] += len(report.differences)
        self._aggregate_cache = None
        quoting = self.quoting[venue]
        quoting.forget(adapter.instruments[symbol])
        return cancelled

    def _on_kill_switch(self, event: KillSwitchEvent) -> Coroutine[Any, Any, int]:
        self.counters["kill_switch_trips"] += 1
        return self.cancel_everything(
            f"kill switch ({event.source.value if event.source else 'manual'}): {event.detail}"
        )

    def reset_kill_switch(self, reason: str) -> None:
        """Re-arm the gate; strategies quote again from their next event."""
        self.risk.reset(reason)
        for venue, symbols in self._managed.items():
            for symbol in symbols:
                self.quoting[venue].forget(self.adapters[venue].instruments[symbol])

    # StrategyContext ---------------------------------------------------------------------------
    def now_ns(self) -> int:
        return self.clock.monotonic_ns()

    def instrument(self, venue: str, symbol: str) -> Instrument:
        return self.adapters[venue].instruments[symbol]

    def book(self, venue: str, symbol: str) -> OrderBook | None:
        """The adapter's synchronized book (the one owner), or None while it is not in sync."""
        adapter = self.adapters.get(venue)
        if adapter is None or not adapter.book_synced(symbol):
            return None
        return adapter.book(symbol)

    def position(self, venue: str, symbol: str) -> int:
        return self.tracker.positions.get(venue, symbol).quantity

    def aggregate_position(self, group: str) -> Decimal:
        """Net base quantity of ``group`` (an asset, by default) across every venue."""
        cached = self._aggregate_cache
        if cached is None or cached[0] != self._fill_count:
            totals = {
                key: aggregate.quantity for key, aggregate in self.tracker.positions.aggregate().items()
            }
            cached = self._aggregate_cache = (self._fill_count, totals)
        return cached[1].get(group, Decimal(0))

    def open_orders(self, venue: str, symbol: str) -> list[Order]:
        return self.tracker.open_orders(venue, symbol)

    def order_latency(self, venue: str) -> LatencyHistogram | None:
        return self.gateway.round_trip.get(venue)

    @property
    def trading_halted(self) -> bool:
        return self.risk.tripped or not self._running

    # event intake --------------------------------------------------------------------------------
    def _listener_for(self, venue: str) -> Callable[[VenueEvent], None]:
        handlers = self._handlers

        def listener(event: VenueEvent) -> None:
            self._event_ns = _perf_ns()
            self._trigger_ns = getattr(event, "receive_ns", 0)
            handler = handlers.get(type(event))
            if handler is None:
                self.counters["unhandled_events"] += 1
                return
            try:
                handler(event)
                if self._pending_orders or self._pending_fills:
                    self._drain()
            except Exception:
                self.counters["event_errors"] += 1
                _log.exception("handling %s from %s failed", type(event).__name__, venue)

        return listener

    def _on_book_delta(self, delta: BookDelta) -> None:
        """The adapter applied this delta to its book already: read it, never apply it again."""
        arrived = self._event_ns  # kept locally: a nested event (a fill during a send) moves it
        key = (delta.venue, delta.symbol)
        subscribers = self._book_subscribers.get(key)
        if subscribers is None:
            self.counters["unsubscribed_book_events"] += 1
            return
        adapter = self.adapters[delta.venue]
        if not adapter.book_synced(delta.symbol):
            self.counters["book_events_while_unsynced"] += 1
            return
        book = adapter.book(delta.symbol)
        if book is None:
            return
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None:
            if bid[0] >= ask[0]:
                self.counters["crossed_books"] += 1
                return
            self._report_top(key, bid[0], ask[0])
        if not self._running:
            return
        trigger = self._trigger_ns
        for strategy in subscribers:
            self._dispatch(
                strategy, strategy.on_book, delta.venue, delta.symbol, book, started=arrived, trigger=trigger
            )

    def _report_top(self, key: InstrumentKey, bid: int, ask: int) -> None:
        """The risk gate's view of the top: on every change of it, and at least every
        ``TOP_REFRESH_NS`` while it holds (the book's freshness), not on every deeper delta."""
        now = self.clock.monotonic_ns()
        last = self._tops.get(key)
        if last is not None and last[0] == bid and last[1] == ask and now - last[2] < TOP_REFRESH_NS:
            return
        if key in self._unknown_risk_instruments:
            return
        self._tops[key] = (bid, ask, now)
        try:
            self.risk.update_mid(key[0], key[1], bid, ask, now)
            self.risk.report_book(key[0], key[1], True, now)
        except RiskInputError:
            self._unknown_risk_instruments.add(key)
            self.counters["books_unknown_to_risk"] += 1

    def _on_trade(self, trade: Trade) -> None:
        if not self._running:
            return
        arrived = self._event_ns
        for strategy in self._trade_subscribers.get((trade.venue, trade.symbol), ()):
            self._dispatch(strategy, strategy.on_trade, trade, started=arrived, trigger=trade.receive_ns)

    def _on_order_update(self, update: OrderUpdate) -> None:
        self.tracker.apply_report(update)

    def _on_fill(self, fill: Fill) -> None:
        self.tracker.apply_fill(fill)

    def _on_balance(self, balance: BalanceUpdate) -> None:
        self.tracker.update_balance(balance.venue, balance.asset, balance.free + balance.locked)

    def _on_position(self, position: PositionUpdate) -> None:
        self.counters["position_reports"] += 1  # settled by reconciliation, not by stream reports

    def _on_ticker(self, ticker: BookTicker) -> None:
        self.counters["book_tickers"] += 1  # the L2 book is the source of truth for the top

    def _on_connection(self, event: ConnectionEvent) -> None:
        if event.state not in ("disconnected", "resyncing"):
            return
        self.counters["connection_losses"] += 1
        if self._stopped:
            return  # after stop the venue's goodbyes are expected: nothing left to protect
        # the adapter owns book sync: a book it no longer has in sync is unhealthy for risk (an
        # account stream's loss leaves every book synced, and so trusted)
        adapter = self.adapters.get(event.venue)
        now = self.clock.monotonic_ns()
        for symbol in sorted(self._managed.get(event.venue, ())):
            key = (event.venue, symbol)
            if (
                adapter is not None
                and not adapter.book_synced(symbol)
                and key not in self._unknown_risk_instruments
            ):
                self._tops.pop(key, None)  # the next top after the resync is told at once
                with contextlib.suppress(RiskInputError):
                    self.risk.report_book(event.venue, symbol, False, now)
        if self._running and self.cancel_on_disconnect and self._managed.get(event.venue):
            _log.warning("%s %s %s: cancelling its orders", event.venue, event.stream, event.state)
            for symbol in sorted(self._managed[event.venue]):
                self._spawn(self._cancel_symbol(event.venue, symbol))

    # tracker notifications (deferred: strategies never run inside the tracker) ------------------
    def _on_tracked_order(self, order: Order, previous: OrderStatus) -> None:
        self._pending_orders.append(order)

    def _on_tracked_fill(self, fill: Fill, position: Position) -> None:
        self._fill_count += 1
        self._pending_fills.append(fill)

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            orders, fills = self._pending_orders, self._pending_fills
            while orders or fills:
                while fills:
                    fill = fills.popleft()
                    owner = self._owner(fill.client_order_id)
                    if self._running and owner is not None:
                        self._dispatch(owner, owner.on_fill, fill, trigger=fill.receive_ns)
                    for watcher in self._fill_watchers.get((fill.venue, fill.symbol), ()):
                        if watcher is not owner and self._running:
                            self._dispatch(watcher, watcher.on_fill, fill, trigger=fill.receive_ns)
                while orders:
                    order = orders.popleft()
                    owner = self._owners.get(order.client_order_id)
                    if owner is not None:
                        if order.status.is_terminal:
                            self._retire_owner(order.client_order_id, owner)
                        if self._running and owner.name in self._hears_order_updates:
                            self._dispatch(owner, owner.on_order_update, order)
        finally:
            self._draining = False

    def _owner(self, client_order_id: str) -> Strategy | None:
        owner = self._owners.get(client_order_id)
        return owner if owner is not None else self._closed_owners.get(client_order_id)

    def _retire_owner(self, client_order_id: str, owner: Strategy) -> None:
        self._owners.pop(client_order_id, None)
        closed = self._closed_owners
        closed[client_order_id] = owner
        if len(closed) > self.closed_owner_capacity:
            closed.popitem(last=False)

    # decisions ----------------------------------------------------------------------------------
    def _dispatch(
        self,
        strategy: Strategy,
        callback: Callable[..., Decision | None],
        *arguments: Any,
        started: int = 0,
        trigger: int = 0,
    ) -> None:
        """Run one callback and apply its decision; ``started`` is when the event arrived (the
        listener's entry), else now; ``trigger`` the receive stamp of the frame behind it (0: a
        timer or start, no frame: no tick-to-trade)."""
        if not started:
            started = _perf_ns()
        try:
            decision = callback(*arguments)
        except Exception:
            self._strategy_failed(strategy, getattr(callback, "__name__", "callback"))
            return
        decided = _perf_ns()
        self.event_to_decision[strategy.name].record(decided - started)
        if decision is not None:
            try:
                self._apply(strategy, decision, decided, trigger)
            except Exception:
                self.counters["decision_errors"] += 1
                _log.exception("applying a decision of %s failed", strategy.name)

    def _strategy_failed(self, strategy: Strategy, callback: str) -> None:
        self.counters["strategy_errors"] += 1
        self.strategy_errors[strategy.name] += 1
        if (strategy.name, callback) not in self._logged_failures:
            self._logged_failures.add((strategy.name, callback))
            _log.exception("strategy %s raised in %s (counted; logged once)", strategy.name, callback)

    def _apply(self, strategy: Strategy, decision: Decision, decided: int, trigger: int = 0) -> None:
        for timer in decision.timers:
            self._set_timer(strategy, timer)
        for venue, symbol in decision.cancel_all:
            if venue in self.adapters:
                self._spawn(self._cancel_symbol(venue, symbol))
        if (decision.quotes or decision.orders) and self.trading_halted:
            self.counters["decisions_blocked"] += 1
            return
        for (venue, symbol), ladder in decision.quotes.items():
            self._quote(strategy, venue, symbol, ladder, decided, trigger)
        for intent in decision.orders:
            if intent.symbol not in self._managed.get(intent.venue, ()):
                self.counters["unmanaged_instrument_decisions"] += 1
                continue
            if intent.time_in_force is TimeInForce.GTC and intent.order_type is not OrderType.MARKET:
                self._place(strategy, intent, decided, trigger)
            else:
                self._execute_now(strategy, intent, decided, trigger)

    def _quote(
        self,
        strategy: Strategy,
        venue: str,
        symbol: str,
        ladder: tuple[Quote, ...],
        decided: int,
        trigger: int = 0,
    ) -> None:
        adapter = self.adapters.get(venue)
        instrument = None if adapter is None else adapter.instruments.get(symbol)
        if instrument is None or symbol not in self._managed[venue]:
            self.counters["unmanaged_instrument_decisions"] += 1  # stop could not cancel them
            return
        tracker = self.tracker
        budgets = self._order_budgets.get(venue)
        # the view only when the plan needs it: an unchanged ladder over unchanged orders (the
        # plan's early exit, a third of a market maker's book updates) builds none
        plan = self.quoting[venue].plan(
            instrument,
            ladder,
            lambda: tracker.quoting_view(venue, symbol),
            tracker.state_version(venue, symbol),
            None if budgets is None else budgets.order_budget,
        )
        if plan.dropped:
            self.counters["quote_levels_dropped"] += plan.dropped  # merged or under venue minimums
        if plan.deferred:
            self._defer(strategy, venue, symbol, ladder, plan.deferred)
        elif self._deferred:
            self._deferred.pop((venue, symbol), None)  # this plan caught up: no re-plan of an older one
        actions = plan.actions
        if not actions:
            return
        # several new orders on a venue that takes them in one request: those its adapter cannot
        # write now go in one batch (after the cancels and amends of this plan went out, as the
        # loop below sends them first); an order written now waits for no request at all
        batch: list[Order] | None = (
            []
            if adapter is not None
            and adapter.capabilities.max_batch_orders > 1
            and list(map(type, actions)).count(OrderIntent) > 1
            else None
        )
        for action in actions:
            if type(action) is CancelOrder:
                if tracker.request_cancel(action.client_order_id):
                    self._cancel(venue, symbol, action.client_order_id)
            elif type(action) is OrderIntent:
                self._place(strategy, action, decided, trigger, batch)
            elif type(action) is AmendOrder:
                self._amend(venue, symbol, action)
        if batch:
            if len(batch) == 1:
                self._spawn(self._send(self.gateway.send(batch[0], decided, trigger)))
            else:
                self._spawn(self._send(self.gateway.send_batch(batch, decided, trigger)))

    def _defer(
        self, strategy: Strategy, venue: str, symbol: str, ladder: tuple[Quote, ...], deferred: int
    ) -> None:
        """The rate budget cut a plan short: re-plan the instrument's latest ladder once the
        budget lets one more request out (an event before then re-plans it anyway)."""
        self.counters["quote_actions_deferred"] += deferred
        key = (venue, symbol)
        self._deferred[key] = (strategy, ladder)
        if key in self._replans or not self._running or self._loop is None:
            return
        wait_s = self._order_budgets[venue].order_budget_wait_s()
        self._replans[key] = self._loop.call_later(max(wait_s, REPLAN_FLOOR_S), self._replan, key)

    def _replan(self, key: InstrumentKey) -> None:
        self._replans.pop(key, None)
        deferred = self._deferred.pop(key, None)
        if deferred is None or not self._running or self.trading_halted:
            return
        strategy, ladder = deferred
        self.counters["quote_replans"] += 1
        self._quote(strategy, key[0], key[1], ladder, _perf_ns())
        self._drain()

    def _place(
        self,
        strategy: Strategy,
        intent: OrderIntent,
        decided: int,
        trigger: int = 0,
        batch: list[Order] | None = None,
    ) -> None:
        """A new order: written inside this callback where the venue allows, else into ``batch``
        (the caller sends it) or by a task of its own."""
        prepared = self.gateway.prepare(intent)
        if not isinstance(prepared, Order):
            self.counters["risk_rejects"] += 1
            return
        self._owners[prepared.client_order_id] = strategy
        self._answers_due += 1  # before the call: a local refusal is answered inside it
        if self.gateway.send_now(prepared, decided, trigger, self._answered):
            return
        self._answers_due -= 1
        if batch is not None:
            batch.append(prepared)
        else:
            self._spawn(self._send(self.gateway.send(prepared, decided, trigger)))

    def _cancel(self, venue: str, symbol: str, client_order_id: str) -> None:
        """A cancel already marked in the tracker: written inside this callback where the venue
        allows, else by a task."""
        self._answers_due += 1
        if not self.gateway.cancel_now(venue, symbol, client_order_id, self._answered):
            self._answers_due -= 1
            self._spawn(self._send(self.gateway.cancel(venue, symbol, client_order_id, requested=True)))

    def _answered(self, outcome: object) -> None:
        """A request written inside a callback has its outcome (applied by the gateway)."""
        self._answer_arrived()
        self._drain()

    def _answer_arrived(self) -> None:
        self._answers_due -= 1
        if not self._answers_due and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def _amend(self, venue: str, symbol: str, action: AmendOrder) -> None:
        order = self.tracker.get(action.client_order_id)
        if order is None:
            return
        added = action.size - (order.quantity - order.filled)
        if added > 0:
            decision = self.risk.check(venue, symbol, action.side, action.price, added)
            if not decision.accepted:
                self.counters["risk_rejects"] += 1
                return
        if not self.tracker.request_amend(action.client_order_id, action.price, action.quantity):
            return
        # written inside this callback where the venue allows, else by a task
        self._answers_due += 1
        if self.gateway.amend_now(
            venue, symbol, action.client_order_id, action.price, action.quantity, self._answered
        ):
            return
        self._answers_due -= 1
        self._spawn(
            self._send(
                self.gateway.amend(
                    venue, symbol, action.client_order_id, action.price, action.quantity, requested=True
                )
            )
        )

    async def _send(self, request: Coroutine[Any, Any, Any]) -> None:
        try:
            await request
        finally:
            self._drain()

    def _execute_now(self, strategy: Strategy, intent: OrderIntent, decided: int, trigger: int = 0) -> None:
        """A taker order: written inside this callback where the venue allows, else by a task."""

        def own(order: Order) -> None:
            self._owners[order.client_order_id] = strategy

        def reported(report: ExecutionReport) -> None:
            self._answer_arrived()
            if self._pending_orders or self._pending_fills:  # a call saved on every answer
                self._drain()
            self._dispatch(strategy, strategy.on_execution, report)
            if self._pending_orders or self._pending_fills:
                self._drain()

        self._answers_due += 1
        rest = self.execution.execute_now(intent, decided, own, trigger, reported)
        if rest is not None:
            self._answers_due -= 1
            self._spawn(self._finish_execution(strategy, rest))

    async def _finish_execution(
        self, strategy: Strategy, execution: Coroutine[Any, Any, ExecutionReport]
    ) -> None:
        try:
            report = await execution
        finally:
            self._drain()
        self._dispatch(strategy, strategy.on_execution, report)
        self._drain()

    def _set_timer(self, strategy: Strategy, timer: TimerRequest) -> None:
        if not self._running or self._loop is None:
            return
        key = (strategy.name, timer.name)
        previous = self._timers.pop(key, None)
        if previous is not None:
            previous.cancel()
        self._timers[key] = self._loop.call_later(
            max(timer.delay_s, 0.0), self._fire_timer, strategy, timer.name
        )

    def _fire_timer(self, strategy: Strategy, name: str) -> None:
        self._timers.pop((strategy.name, name), None)
        if not self._running:
            return
        self._dispatch(strategy, strategy.on_timer, name)
        self._drain()

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.counters["task_errors"] += 1
            _log.error("order task failed: %r", error, exc_info=error)
