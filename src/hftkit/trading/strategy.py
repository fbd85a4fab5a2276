"""Strategies driven by events, and the manager that runs them across venues.

A ``Strategy`` is a sans-I/O decision maker: the manager calls it on book, trade, fill, order
update, timer and execution events, and it answers with a ``Decision`` (desired quote ladders,
taker orders, timers to set) or None. It never awaits and never touches a socket, so it can be
unit-tested by calling its methods. What it may read lives behind ``StrategyContext`` (books,
positions, aggregated positions, open orders, measured latency), which the manager implements.

``StrategyManager`` is the thin asyncio shell, one event loop for every venue:

* adapter listeners (synchronous, per venue) feed books, the order state tracker and the
  strategies subscribed to each (venue, symbol); nothing polls, timers use ``loop.call_later``;
* desired ladders go through the ``QuotingService`` (minimal actions against the tracker's
  view), every new order through the ``RiskGate`` (a reject is counted and never sent), taker
  orders through the ``ExecutionEngine``; checks and tracker submissions happen synchronously
  in the event, sends are tasks;
* a strategy callback that raises is logged and counted; the manager and the other strategies
  carry on;
* on stop and on a kill switch trip every venue's orders of the managed symbols are cancelled
  (``cancel_all`` per venue and symbol, failures logged) and the tracker is reconciled with what
  the venue says is still open: shut down safe.

Latency is recorded per stage: event -> decision (from the listener's entry: book update and the
strategy's compute), decision -> sent (queueing until the venue call starts), send -> answer per
venue (the order round trip).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import msgspec

from hftkit.book.order_book import OrderBook
from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.types import (
    BalanceUpdate,
    BookDelta,
    BookTicker,
    ConnectionEvent,
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
    report_from_update,
)
from hftkit.trading.positions import Position
from hftkit.trading.quoting import AmendOrder, CancelOrder, PlaceOrder, QuotingPolicy, QuotingService
from hftkit.trading.risk import InstrumentLimits, KillSwitchEvent, KillSwitchShell, RiskGate, RiskInputError
from hftkit.trading.state import OrderStateTracker, VenueSnapshot
from hftkit.venues.base import VenueAdapter, VenueEvent

__all__ = [
    "Decision",
    "Strategy",
    "StrategyContext",
    "StrategyManager",
    "Subscription",
    "TimerRequest",
]

_log = logging.getLogger(__name__)
_perf_ns = time.perf_counter_ns
InstrumentKey = tuple[str, str]


# what a strategy says ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Subscription:
    """The events a strategy wants from one venue: books and/or trades of ``symbols``; with
    ``all_fills`` it also sees fills of orders it does not own (a hedger watching a maker)."""

    venue: str
    symbols: tuple[str, ...]
    books: bool = True
    trades: bool = False
    all_fills: bool = False


class TimerRequest(msgspec.Struct, frozen=True):
    """Call ``on_timer(name)`` after ``delay_s`` (one shot; the same name replaces a pending one)."""

    name: str
    delay_s: float


class Decision(msgspec.Struct, kw_only=True):
    """What a strategy wants now. ``quotes`` replaces the whole ladder of each instrument named
    (an empty tuple pulls every quote); ``orders`` are sent once each."""

    quotes: dict[InstrumentKey, tuple[Quote, ...]] = {}
    orders: list[OrderIntent] = []
    timers: list[TimerRequest] = []
    cancel_all: list[InstrumentKey] = []


class StrategyContext(Protocol):
    """What a strategy may read (the manager implements it; tests may fake it)."""

    def now_ns(self) -> int: ...

    def instrument(self, venue: str, symbol: str) -> Instrument: ...

    def book(self, venue: str, symbol: str) -> OrderBook | None: ...

    def position(self, venue: str, symbol: str) -> int: ...

    def aggregate_position(self, group: str) -> Decimal: ...

    def open_orders(self, venue: str, symbol: str) -> list[Order]: ...

    def order_latency(self, venue: str) -> LatencyHistogram | None: ...

    @property
    def trading_halted(self) -> bool: ...


class Strategy(abc.ABC):
    """Base class: override the callbacks you need; each returns a ``Decision`` or None."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._context: StrategyContext | None = None

    @property
    def context(self) -> StrategyContext:
        if self._context is None:
            raise RuntimeError(f"strategy {self.name!r} is not bound to a context yet")
        return self._context

    def bind(self, context: StrategyContext) -> None:
        self._context = context

    @abc.abstractmethod
    def subscriptions(self) -> Sequence[Subscription]:
        """The (venue, symbols) this strategy hears about; it may only trade these instruments."""

    def on_start(self) -> Decision | None:
        return None

    def on_book(self, venue: str, symbol: str, book: OrderBook) -> Decision | None:
        return None

    def on_trade(self, trade: Trade) -> Decision | None:
        return None

    def on_fill(self, fill: Fill) -> Decision | None:
        return None

    def on_order_update(self, order: Order) -> Decision | None:
        return None

    def on_timer(self, name: str) -> Decision | None:
        return None

    def on_execution(self, report: ExecutionReport) -> Decision | None:
        return None

    def on_stop(self) -> None:
        return None


# the manager -------------------------------------------------------------------------------------
class StrategyManager:
    """Runs strategies across venues on one event loop (see the module docstring).

    ``clock`` must be the tracker's clock when a tracker is passed in (reconciliation compares
    the snapshot time with order submission times). Without a risk gate the manager builds one
    with no limits except the kill switch, and registers every instrument (with
    ``instrument_limits`` where given); with a gate of yours, only the instruments named in
    ``instrument_limits`` are registered by the manager.
    """

    def __init__(
        self,
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
        quote_order_type: OrderType = OrderType.LIMIT_MAKER,
        request_timeout_s: float = 5.0,
        stop_timeout_s: float = 5.0,
        manage_adapters: bool = True,
        cancel_on_disconnect: bool = True,
        id_prefix: str | None = None,
    ) -> None:
        self.adapters: dict[str, VenueAdapter] = {adapter.name: adapter for adapter in adapters}
        if len(self.adapters) != len(adapters):
            raise ValueError("adapter names must be unique")
        names = [strategy.name for strategy in strategies]
        if len(set(names)) != len(names):
            raise ValueError(f"strategy names must be unique, got {names}")
        self.strategies = list(strategies)
        self.clock = clock
        self.tracker = tracker if tracker is not None else OrderStateTracker(clock)
        self._own_gate = risk is None
        self.risk = risk if risk is not None else RiskGate(TrackerExposure(self.tracker), clock=clock)
        self.kill_switch = kill_switch if kill_switch is not None else KillSwitchShell(self.risk)
        self.kill_switch.add_cancel_all_hook(self._on_kill_switch)
        self.metrics = metrics if metrics is not None else MetricsRegistry(clock)
        self.gateway = OrderGateway(
            self.adapters,
            self.tracker,
            self.risk,
            metrics=self.metrics,
            request_timeout_s=request_timeout_s,
            id_prefix=id_prefix,
        )
        self.execution = ExecutionEngine(self.gateway, execution, is_halted=lambda: self.trading_halted)
        policies: dict[str, QuotingPolicy] = {}
        for venue in self.adapters:
            if isinstance(quoting, Mapping):
                policies[venue] = quoting.get(venue, QuotingPolicy())
            else:
                policies[venue] = quoting or QuotingPolicy()
        self.quoting = {venue: QuotingService(policy) for venue, policy in policies.items()}
        self._instrument_limits = dict(instrument_limits or {})
        self.quote_order_type = quote_order_type
        self.stop_timeout_s = stop_timeout_s
        self.manage_adapters = manage_adapters
        self.cancel_on_disconnect = cancel_on_disconnect
        self.books: dict[InstrumentKey, OrderBook] = {}
        self._trusted: set[InstrumentKey] = set()
        self._book_subscribers: dict[InstrumentKey, list[Strategy]] = {}
        self._trade_subscribers: dict[InstrumentKey, list[Strategy]] = {}
        self._fill_watchers: dict[InstrumentKey, list[Strategy]] = {}
        self._managed: dict[str, set[str]] = {venue: set() for venue in self.adapters}
        self._owners: dict[str, Strategy] = {}
        # owners of recently closed orders: a fill may arrive after the order's terminal update
        self._closed_owners: OrderedDict[str, Strategy] = OrderedDict()
        self.closed_owner_capacity = 10_000
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pending_orders: deque[Order] = deque()
        self._pending_fills: deque[Fill] = deque()
        self._draining = False
        self._aggregate_cache: tuple[int, dict[str, Decimal]] | None = None
        self._fill_count = 0
        self._unknown_risk_instruments: set[InstrumentKey] = set()
        self._logged_failures: set[tuple[str, str]] = set()
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._running = False
        self._started = False
        self._event_ns = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.counters: Counter[str] = Counter()
        self.strategy_errors: Counter[str] = Counter()
        self.event_to_decision: dict[str, LatencyHistogram] = {
            strategy.name: self.metrics.histogram("event_to_decision_ns", strategy=strategy.name)
            for strategy in self.strategies
        }
        self.tracker.add_order_listener(self._on_tracked_order)
        self.tracker.add_fill_listener(self._on_tracked_fill)
        self._handlers: dict[type, Callable[[Any], None]] = {
            BookDelta: self._on_book_delta,
            Trade: self._on_trade,
            OrderUpdate: self._on_order_update,
            Fill: self._on_fill,
            BalanceUpdate: self._on_balance,
            PositionUpdate: self._on_position,
            ConnectionEvent: self._on_connection,
            BookTicker: self._on_ticker,
        }

    # lifecycle ---------------------------------------------------------------------------------
    async def __aenter__(self) -> StrategyManager:
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
            raise RuntimeError("a StrategyManager starts once; build a new one to run again")
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
                await self._exit_stack.enter_async_context(adapter)  # type: ignore[arg-type]
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
                    self.books.setdefault(key, OrderBook(symbol))
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
                if self._own_gate or limits is not None:
                    self.risk.add_instrument(instrument, limits)
            adapter.add_listener(self._listener_for(venue))
        self._running = True
        for strategy in self.strategies:
            strategy.bind(self)
            self._dispatch(strategy, strategy.on_start)
        for venue, symbols in wanted.items():
            books = sorted(symbol for symbol, flags in symbols.items() if flags[0])
            trades = sorted(symbol for symbol, flags in symbols.items() if flags[1] and not flags[0])
            if books:
                with_trades = any(symbols[symbol][1] for symbol in books)
                await self.adapters[venue].subscribe(books, books=True, trades=with_trades)
            if trades:
                await self.adapters[venue].subscribe(trades, books=False, trades=True)
        self._drain()

    async def stop(self, reason: str = "stop") -> None:
        """Stop deciding, let in-flight requests finish (bounded), cancel every managed order."""
        if not self._running:
            return
        self._running = False
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
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
        """Wait until every send, cancel and execution task has finished."""
        async with asyncio.timeout(timeout_s):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _settle_tasks(self, timeout_s: float) -> None:
        try:
            await self.wait_idle(timeout_s)
        except TimeoutError:
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
        adapter = self.adapters[venue]
        taken_ns = self.clock.monotonic_ns()
        cancelled = 0
        try:
            cancelled = await adapter.cancel_all(symbol)
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
        report = self.tracker.reconcile(
            VenueSnapshot(
                venue=venue,
                orders=[report_from_update(update) for update in still_open],
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
        key = (venue, symbol)
        return self.books.get(key) if key in self._trusted else None

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
        arrived = self._event_ns  # kept locally: a nested event (a fill during a send) moves it
        key = (delta.venue, delta.symbol)
        book = self.books.get(key)
        if book is None:
            self.counters["unsubscribed_book_events"] += 1
            return
        if delta.is_snapshot:
            book.apply_snapshot(delta.bids, delta.asks, delta.last_update_id)
            self._trusted.add(key)
        elif key in self._trusted:
            book.apply_delta(delta.bids, delta.asks)
            book.last_update_id = delta.last_update_id
        else:
            self.counters["book_deltas_before_snapshot"] += 1
            return
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None:
            if bid[0] >= ask[0]:
                self.counters["crossed_books"] += 1
                return
            self._report_top(key, bid[0], ask[0])
        if not self._running:
            return
        for strategy in self._book_subscribers.get(key, ()):
            self._dispatch(strategy, strategy.on_book, delta.venue, delta.symbol, book, started=arrived)

    def _report_top(self, key: InstrumentKey, bid: int, ask: int) -> None:
        if key in self._unknown_risk_instruments:
            return
        try:
            self.risk.update_mid(key[0], key[1], bid, ask)
            self.risk.report_book(key[0], key[1], True, self.clock.monotonic_ns())
        except RiskInputError:
            self._unknown_risk_instruments.add(key)
            self.counters["books_unknown_to_risk"] += 1

    def _on_trade(self, trade: Trade) -> None:
        if not self._running:
            return
        arrived = self._event_ns
        for strategy in self._trade_subscribers.get((trade.venue, trade.symbol), ()):
            self._dispatch(strategy, strategy.on_trade, trade, started=arrived)

    def _on_order_update(self, update: OrderUpdate) -> None:
        self.tracker.apply_report(report_from_update(update))

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
        lost = [key for key in self._trusted if key[0] == event.venue]
        for key in lost:
            self._trusted.discard(key)
            if key not in self._unknown_risk_instruments:
                with contextlib.suppress(RiskInputError):
                    self.risk.report_book(key[0], key[1], False, self.clock.monotonic_ns())
        self.counters["connection_losses"] += 1
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
                        self._dispatch(owner, owner.on_fill, fill)
                    for watcher in self._fill_watchers.get((fill.venue, fill.symbol), ()):
                        if watcher is not owner and self._running:
                            self._dispatch(watcher, watcher.on_fill, fill)
                while orders:
                    order = orders.popleft()
                    owner = self._owners.get(order.client_order_id)
                    if owner is not None:
                        if order.status.is_terminal:
                            self._retire_owner(order.client_order_id, owner)
                        if self._running:
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
        self, strategy: Strategy, callback: Callable[..., Decision | None], *arguments: Any, started: int = 0
    ) -> None:
        """Run one callback and apply its decision; ``started`` is when the event arrived (the
        listener's entry, so event -> decision includes the book update), else now."""
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
                self._apply(strategy, decision, decided)
            except Exception:
                self.counters["decision_errors"] += 1
                _log.exception("applying a decision of %s failed", strategy.name)

    def _strategy_failed(self, strategy: Strategy, callback: str) -> None:
        self.counters["strategy_errors"] += 1
        self.strategy_errors[strategy.name] += 1
        if (strategy.name, callback) not in self._logged_failures:
            self._logged_failures.add((strategy.name, callback))
            _log.exception("strategy %s raised in %s (counted; logged once)", strategy.name, callback)

    def _apply(self, strategy: Strategy, decision: Decision, decided: int) -> None:
        for timer in decision.timers:
            self._set_timer(strategy, timer)
        for venue, symbol in decision.cancel_all:
            if venue in self.adapters:
                self._spawn(self._cancel_symbol(venue, symbol))
        if (decision.quotes or decision.orders) and self.trading_halted:
            self.counters["decisions_blocked"] += 1
            return
        for (venue, symbol), ladder in decision.quotes.items():
            self._quote(strategy, venue, symbol, ladder, decided)
        for intent in decision.orders:
            if intent.symbol not in self._managed.get(intent.venue, ()):
                self.counters["unmanaged_instrument_decisions"] += 1
                continue
            if intent.time_in_force is TimeInForce.GTC and intent.order_type is not OrderType.MARKET:
                self._place(strategy, intent, decided)
            else:
                self._spawn(self._execute(strategy, intent, decided))

    def _quote(
        self, strategy: Strategy, venue: str, symbol: str, ladder: tuple[Quote, ...], decided: int
    ) -> None:
        adapter = self.adapters.get(venue)
        instrument = None if adapter is None else adapter.instruments.get(symbol)
        if instrument is None or symbol not in self._managed[venue]:
            self.counters["unmanaged_instrument_decisions"] += 1  # stop could not cancel them
            return
        tracker = self.tracker
        plan = self.quoting[venue].plan(
            instrument, ladder, tracker.quoting_view(venue, symbol), tracker.state_version(venue, symbol)
        )
        if plan.dropped:
            self.counters["quote_levels_dropped"] += plan.dropped  # merged or under venue minimums
        order_type = self.quote_order_type
        for action in plan.actions:
            if type(action) is CancelOrder:
                if tracker.request_cancel(action.client_order_id):
                    self._spawn(
                        self._send(self.gateway.cancel(venue, symbol, action.client_order_id, requested=True))
                    )
            elif type(action) is PlaceOrder:
                intent = OrderIntent(
                    venue=venue,
                    symbol=symbol,
                    side=action.side,
                    quantity=action.size,
                    price=action.price,
                    order_type=order_type,
                    time_in_force=TimeInForce.GTC,
                )
                self._place(strategy, intent, decided)
            elif type(action) is AmendOrder:
                self._amend(venue, symbol, action)

    def _place(self, strategy: Strategy, intent: OrderIntent, decided: int) -> None:
        prepared = self.gateway.prepare(intent)
        if not isinstance(prepared, Order):
            self.counters["risk_rejects"] += 1
            return
        self._owners[prepared.client_order_id] = strategy
        self._spawn(self._send(self.gateway.send(prepared, decided)))

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
        if self.tracker.request_amend(action.client_order_id, action.price, action.quantity):
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

    async def _execute(self, strategy: Strategy, intent: OrderIntent, decided: int) -> None:
        def own(order: Order) -> None:
            self._owners[order.client_order_id] = strategy

        try:
            report = await self.execution.execute(intent, decided, own)
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
