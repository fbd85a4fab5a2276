"""``SimulatedVenue``: a ``VenueAdapter`` over the simulator's in-process matching engine.

The same class serves backtests and paper trading; only what feeds it differs (recordings on a
simulated clock, or a real adapter's live book). Two views of each instrument exist, as at a real
venue:

* the **venue's** book: the simulator's ``MatchingEngine`` (background liquidity from the data,
  our resting orders with their queue positions, partial fills, fees in the simulator's
  ``Accounts``, the venue's filters and error codes from ``hftkit.sim.engine.errors``);
* the **strategy's** book: an ``OrderBook`` this adapter owns, updated from the engine's published
  level batches after the market-data latency, exactly as a live adapter keeps the book a venue
  streams (our own orders included, as the venue shows them).

Requests travel the ``LatencyModel``: a request reaches the matching engine ``order_entry`` after
it was sent, and its answer and every private event it caused (acks, fills, cancels) reach the
strategy ``ack`` later. Fills caused by market data (a replayed trade through our quote) are
private events too. Time comes from a ``Scheduler``: ``SimulatedLoop`` in a backtest (no
sleeps), the running event loop in paper trading.

What the trading engine relies on here is the ``VenueAdapter`` protocol only: listeners get
events synchronously; requests are coroutines that finish when the answer arrives; a refusal is
``OrderRejectedError`` (with the venue's own code), an unknown order ``OrderNotFoundError``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal, Protocol

import msgspec

from hftkit.backtest.latency import Lane, LatencyModel
from hftkit.backtest.rate import OrderRate
from hftkit.backtest.results import Journal
from hftkit.book.order_book import OrderBook
from hftkit.core.clock import Clock
from hftkit.core.types import (
    BalanceUpdate,
    BookDelta,
    ConnectionEvent,
    Fill,
    Instrument,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionUpdate,
    Side,
    TimeInForce,
    Trade,
)
from hftkit.resilience.weighted import UNBOUNDED
from hftkit.sim.binance.wire import merge_updates
from hftkit.sim.engine.accounts import Accounts, FeeSchedule
from hftkit.sim.engine.errors import RejectReason, binance_error, thalex_error
from hftkit.sim.engine.matching import (
    BookUpdate,
    Execution,
    MarketResult,
    MatchingEngine,
    OrderResult,
    SimOrder,
)
from hftkit.venues.base import (
    AmendRequest,
    EventListener,
    MassQuote,
    MassQuoteReport,
    OrderAnswer,
    OrderNotFoundError,
    OrderRejectedError,
    OrderRequest,
    VenueCapabilities,
    VenueError,
    VenueEvent,
    VenueStatus,
)

__all__ = ["ACCOUNT", "RealTimeScheduler", "Scheduler", "SimulatedVenue"]

ACCOUNT = "simulated"
_log = logging.getLogger(__name__)
_BUY = Side.BUY
ErrorStyle = Literal["binance", "thalex"]


class Scheduler(Protocol):
    """Time and deferred calls: ``SimulatedLoop`` (backtest) or ``RealTimeScheduler`` (paper)."""

    def now_ns(self) -> int: ...

    def call_at_ns(self, when_ns: int, callback: Callable[..., object], *args: Any) -> object: ...

    def schedule_ns(self, when_ns: int, callback: Callable[..., object], *args: Any) -> None:
        """As ``call_at_ns``, for a call nobody cancels (the venue's deliveries): may be cheaper."""
        ...


class RealTimeScheduler:
    """The running loop's monotonic time, for paper trading against a live book."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop

    @staticmethod
    def now_ns() -> int:
        return time.monotonic_ns()

    def call_at_ns(self, when_ns: int, callback: Callable[..., object], *args: Any) -> object:
        loop = self._loop or asyncio.get_running_loop()
        delay = when_ns - time.monotonic_ns()
        if delay <= 0:
            return loop.call_soon(callback, *args)
        return loop.call_later(delay / 1e9, callback, *args)

    def schedule_ns(self, when_ns: int, callback: Callable[..., object], *args: Any) -> None:
        self.call_at_ns(when_ns, callback, *args)


class _WallClock:
    """The matching engine's clock: the scheduler's time on the venue's wall-clock axis."""

    __slots__ = ("_now", "_offset", "_scheduler")

    def __init__(self, scheduler: Scheduler, wall_offset_ns: int) -> None:
        self._scheduler = scheduler
        self._now = scheduler.now_ns
        self._offset = wall_offset_ns

    def monotonic_ns(self) -> int:
        return self._now()

    def time_ns(self) -> int:
        return self._now() + self._offset


class SimulatedVenue:
    """See the module docstring. ``name`` is the configured venue; ``instruments`` its markets."""

    def __init__(
        self,
        name: str,
        instruments: Iterable[Instrument],
        *,
        scheduler: Scheduler,
        capabilities: VenueCapabilities,
        latency: LatencyModel | None = None,
        fees: FeeSchedule | None = None,
        balances: Mapping[str, str] | None = None,
        error_style: ErrorStyle = "binance",
        wall_offset_ns: int = 0,
        journal: Journal | None = None,
        publish_market: bool = True,
        depth_interval_ns: int = 0,
        order_rate: Callable[[Clock], OrderRate] | None = None,
    ) -> None:
        self.name = name
        self.publish_market = publish_market  # paper: the strategy reads the live book instead
        self.depth_interval_ns = depth_interval_ns  # 0: every book batch on its own (@depth@0ms)
        self._depth_pending: dict[str, list[BookUpdate]] = {}
        self.capabilities = capabilities
        self.order_written: Callable[[str, int], None] | None = None
        self._instruments = {instrument.symbol: instrument for instrument in instruments}
        self.scheduler = scheduler
        self._schedule = scheduler.schedule_ns
        self._now = scheduler.now_ns
        self.clock: Clock = _WallClock(scheduler, wall_offset_ns)
        self.wall_offset_ns = wall_offset_ns
        self.accounts = Accounts(fees=fees or FeeSchedule(), keep_ledger=True)
        self.matching = MatchingEngine(self.accounts, clock=self.clock)
        for instrument in self._instruments.values():
            self.matching.add_instrument(instrument)
        for asset, amount in (balances or {}).items():
            self.accounts.deposit(ACCOUNT, asset, self.accounts.to_units(asset, amount))
        self.account = self.accounts.get(ACCOUNT)
        # the live adapter's rate budget on this venue's clock (None: unlimited)
        self.order_rate = None if order_rate is None else order_rate(self.clock)
        self.error_style = error_style
        self.journal = journal
        model = latency or LatencyModel.zero()
        samples = journal.latency if journal is not None else None
        self.market_lane = Lane(
            "market_data", model.market_data, None if samples is None else samples["market_data"]
        )
        self.entry_lane = Lane(
            "order_entry", model.order_entry, None if samples is None else samples["order_entry"]
        )
        self.ack_lane = Lane("ack", model.ack, None if samples is None else samples["ack"])
        self._round_trips = None if samples is None else samples["order_round_trip"]
        self._books = {symbol: OrderBook(symbol) for symbol in self._instruments}
        self._keys = {symbol: (name, symbol) for symbol in self._instruments}
        self._synced: set[str] = set()
        self._book_subscribed: set[str] = set()
        self._trade_subscribed: set[str] = set()
        self._listeners: list[EventListener] = []
        self.counters: Counter[str] = Counter()
        self.requests = 0  # every request that reached the simulated venue (orders never leave)

    # context manager and protocol basics ----------------------------------------------------------
    async def __aenter__(self) -> SimulatedVenue:
        self._emit(ConnectionEvent(venue=self.name, stream="session", state="connected"))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    @property
    def instruments(self) -> Mapping[str, Instrument]:
        return self._instruments

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def book(self, symbol: str) -> OrderBook | None:
        return self._books.get(symbol)

    def book_synced(self, symbol: str) -> bool:
        return symbol in self._synced

    def status(self) -> VenueStatus:
        return VenueStatus({}, {})

    async def subscribe(self, symbols: Sequence[str], *, books: bool = True, trades: bool = True) -> None:
        for symbol in symbols:
            if symbol not in self._instruments:
                raise OrderRejectedError(f"unknown symbol {symbol!r}", venue=self.name)
            if books:
                self._book_subscribed.add(symbol)
                book = self._books[symbol]
                if symbol in self._synced:
                    self._emit(
                        BookDelta(
                            venue=self.name,
                            symbol=symbol,
                            bids=book.bids(),
                            asks=book.asks(),
                            last_update_id=book.last_update_id,
                            is_snapshot=True,
                            receive_ns=self._now(),
                        )
                    )
            if trades:
                self._trade_subscribed.add(symbol)

    # the venue's side: market data in ---------------------------------------------------------------
    def seed(self, symbol: str, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]) -> None:
        """Replace the background book (a snapshot)."""
        self._after_market(symbol, self.matching.replace_background(symbol, bids, asks))

    def depth(self, symbol: str, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]) -> None:
        """Apply one depth diff (absolute sizes, 0 deletes)."""
        self._after_market(symbol, self.matching.apply_depth(symbol, bids, asks))

    def trade(self, symbol: str, price: int, quantity: int, aggressor: Side) -> None:
        """Replay one public trade: it fills our orders it reaches (see ``hftkit.sim.engine.matching``)."""
        self._after_market(symbol, self.matching.apply_market_trade(symbol, price, quantity, aggressor))

    def _after_market(self, symbol: str, result: MarketResult) -> None:
        if result.executions:
            self._private(self._execution_events(result.executions))
        self._publish(symbol, result.book_update, result.trades)

    def _publish(self, symbol: str, update: BookUpdate | None, trades: list[Any] | None) -> None:
        """The venue publishes a book batch (and trades): to the strategy ``market_data`` later;
        with ``depth_interval_ns`` the book batches of one window go out as one merged diff at
        its end (Binance ``@depth@100ms``), trades at once."""
        if not self.publish_market:
            return
        if symbol not in self._trade_subscribed:
            trades = None
        if update is not None and self.depth_interval_ns:
            pending = self._depth_pending.get(symbol)
            if pending is None:
                self._depth_pending[symbol] = [update]
                interval = self.depth_interval_ns
                window_end = (self._now() // interval + 1) * interval
                self._schedule(window_end, self._flush_depth, symbol)
            else:
                pending.append(update)
            update = None
        if update is None and not trades:
            return
        lane = self.market_lane
        if lane.immediate():
            self._deliver_market(symbol, update, trades)
        else:
            self._schedule(lane.deliver_at(self._now()), self._deliver_market, symbol, update, trades)

    def _flush_depth(self, symbol: str) -> None:
        pending = self._depth_pending.pop(symbol, None)
        if not pending:
            return
        bids, asks = merge_updates(pending)
        last = pending[-1]
        merged = BookUpdate(
            symbol=symbol, update_id=last.update_id, bids=bids, asks=asks, time_ns=last.time_ns
        )
        if self.market_lane.immediate():
            self._deliver_market(symbol, merged, None)
        else:
            due = self.market_lane.deliver_at(self._now())
            self._schedule(due, self._deliver_market, symbol, merged, None)

    def _deliver_market(self, symbol: str, update: BookUpdate | None, trades: list[Any] | None) -> None:
        """The strategy's side: the venue's published batch reaches this adapter's book."""
        now = self._now()
        if update is not None:
            book = self._books[symbol]
            bids, asks, update_id = update.bids, update.asks, update.update_id
            book.apply_delta(bids, asks)
            book.last_update_id = update_id
            if symbol not in self._synced:
                if book.best_bid() is None or book.best_ask() is None:
                    return
                self._synced.add(symbol)
            if symbol in self._book_subscribed and self._listeners:
                delta = BookDelta(
                    venue=self.name,
                    symbol=symbol,
                    bids=bids,
                    asks=asks,
                    first_update_id=update_id,
                    last_update_id=update_id,
                    event_time_ms=update.time_ns // 1_000_000,
                    receive_ns=now,
                )
                for listener in self._listeners:
                    listener(delta)
        if trades:
            for printed in trades:
                self._emit(
                    Trade(
                        venue=self.name,
                        symbol=symbol,
                        trade_id=printed.trade_id,
                        price=printed.price,
                        size=printed.quantity,
                        aggressor=printed.aggressor,
                        event_time_ms=printed.time_ns // 1_000_000,
                        receive_ns=now,
                    )
                )

    def mid_ticks(self, symbol: str) -> float | None:
        """The venue's mid now (our own resting orders included, as the venue shows them)."""
        matching = self.matching
        bid, ask = matching.best_bid(symbol), matching.best_ask(symbol)
        if bid is None or ask is None:
            return None
        return (bid[0] + ask[0]) / 2

    def tops(self) -> dict[tuple[str, str], tuple[int | None, int | None, int | None, int | None]]:
        """(bid, ask, our best bid, our best ask) ticks per instrument at the venue now."""
        result = {}
        matching = self.matching
        mine = matching.open_orders(ACCOUNT)
        for symbol in self._instruments:
            bid, ask = matching.best_bid(symbol), matching.best_ask(symbol)
            bids = [order.price for order in mine if order.symbol == symbol and order.is_buy]
            asks = [order.price for order in mine if order.symbol == symbol and not order.is_buy]
            result[(self.name, symbol)] = (
                None if bid is None else bid[0],
                None if ask is None else ask[0],
                max(bids) if bids else None,
                min(asks) if asks else None,
            )
        return result

    # private events -----------------------------------------------------------------------------------
    def _update(self, order: SimOrder, status: OrderStatus | None = None, reason: str = "") -> OrderUpdate:
        return OrderUpdate(
            venue=self.name,
            symbol=order.symbol,
            client_order_id=order.client_order_id or "",
            venue_order_id=str(order.order_id),
            status=status or order.status,
            side=order.side,
            price=order.price,
            quantity=order.quantity,
            filled=order.filled,
            reason=reason or (order.close_reason.value if order.close_reason is not None else ""),
            event_time_ms=order.updated_ns // 1_000_000,
        )

    def _execution_events(self, executions: Sequence[Execution]) -> list[VenueEvent]:
        events: list[VenueEvent] = []
        journal = self.journal
        for execution in executions:
            order = execution.order
            if order.account != ACCOUNT:
                continue
            events.append(self._update(order, execution.status))
            fee = float(Decimal(self.accounts.to_text(execution.fee_asset, execution.fee)))
            fill = Fill(
                venue=self.name,
                symbol=order.symbol,
                client_order_id=order.client_order_id or "",
                venue_order_id=str(order.order_id),
                trade_id=f"{order.symbol}-{execution.trade_id}",
                side=order.side,
                price=execution.price,
                quantity=execution.quantity,
                fee=fee,
                fee_asset=execution.fee_asset,
                is_maker=execution.is_maker,
                event_time_ms=execution.time_ns // 1_000_000,
            )
            events.append(fill)
            if journal is not None:
                key = self._keys[order.symbol]
                journal.fill(
                    self._now() + self.wall_offset_ns,
                    0,
                    key,
                    fill.client_order_id,
                    fill.trade_id,
                    1 if order.is_buy else -1,
                    execution.price,
                    execution.quantity,
                    fee,
                    execution.fee_asset,
                    execution.is_maker,
                    self.mid_ticks(order.symbol),
                )
                if order.status is OrderStatus.FILLED:
                    self._journal_order(order, "filled")
        return events

    def _private(self, events: list[VenueEvent], then: Callable[[], None] | None = None) -> None:
        """Deliver private events (and then ``then``) ``ack`` later, in order."""
        lane = self.ack_lane
        if lane.immediate():
            self._deliver_private(events, then)
            return
        due = lane.deliver_at(self._now())
        self._schedule(due, self._deliver_private, events, then)

    def _deliver_private(self, events: list[VenueEvent], then: Callable[[], None] | None) -> None:
        now = self._now()
        listeners = self._listeners
        for event in events:
            if type(event) is Fill:
                event = _with_receive(event, now)
                if self.journal is not None:
                    self.journal.received(event.trade_id, now + self.wall_offset_ns)
            for listener in listeners:
                listener(event)
        if then is not None:
            then()

    def _journal_order(self, order: SimOrder, event: str, reason: str = "") -> None:
        journal = self.journal
        if journal is None:
            return
        journal.order_event(
            self._now() + self.wall_offset_ns,
            self._keys[order.symbol],
            order.client_order_id or "",
            event,
            order.side._value_,  # an Enum's value property is a Python call
            order.order_type._value_,
            order.price,
            order.quantity,
            order.filled,
            reason or (order.close_reason.value if order.close_reason is not None else ""),
        )

    # requests: strategy -> venue -> strategy --------------------------------------------------------------
    async def _request(self, operation: Callable[[], tuple[list[VenueEvent], Any]]) -> Any:
        """Run ``operation`` at the venue ``order_entry`` after now; its events and its answer
        (a value, or an exception to raise) arrive ``ack`` after that."""
        entry, ack = self.entry_lane, self.ack_lane
        if entry.constant == 0 and ack.constant == 0:  # no latency: the answer is immediate
            sent = self._now()
            entry.immediate()
            ack.immediate()
            self.requests += 1
            events, answer = operation()
            for event in events:
                self._emit(event)
            if self._round_trips is not None:
                self._round_trips.append(self._now() - sent)
        else:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._request_now(operation, functools.partial(_resolve, future))
            answer = await future
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _request_now(
        self, operation: Callable[[], tuple[list[VenueEvent], Any]], on_answer: Callable[[Any], None]
    ) -> None:
        """A request written inside the caller's callback (no task, no future): ``operation``
        runs at the venue ``order_entry`` after now, its events and then its answer reach the
        strategy ``ack`` after that. With no latency at all it runs at the next step of this
        instant, never inside the caller's call (``on_answer`` is always told later)."""
        sent = self._now()
        self._schedule(self.entry_lane.deliver_at(sent), self._arrive, operation, on_answer, sent)

    def _arrive(
        self,
        operation: Callable[[], tuple[list[VenueEvent], Any]],
        on_answer: Callable[[Any], None],
        sent: int,
    ) -> None:
        """A request reaches the venue: run it; its events, then its answer, go back ``ack`` later."""
        self.requests += 1
        try:
            events, answer = operation()
        except Exception as error:  # a bug at the venue: the request's answer is the error
            events, answer = [], error
        self._schedule(
            self.ack_lane.deliver_at(self._now()), self._deliver_answer, events, on_answer, answer, sent
        )

    def _deliver_answer(
        self, events: list[VenueEvent], on_answer: Callable[[Any], None], answer: Any, sent: int
    ) -> None:
        """A request's events reach the strategy, then its answer (``_deliver_private``'s order)."""
        self._deliver_private(events, None)
        if self._round_trips is not None:
            self._round_trips.append(self._now() - sent)
        try:
            on_answer(answer)
        except Exception:
            self.counters["answer_owner_errors"] += 1
            _log.exception("%s: the owner of a request failed on its answer", self.name)

    def _refusal(self, reason: RejectReason, *, cancel: bool = False) -> VenueError:
        code: int | None
        message: str
        if reason is RejectReason.UNKNOWN_ORDER:
            code, message = (
                binance_error(reason) if self.error_style == "binance" else (thalex_error(reason) or (1, ""))
            )
            return OrderNotFoundError(message, venue=self.name, code=code)
        if self.error_style == "binance":
            code, message = binance_error(reason)
        else:
            found = thalex_error(reason)
            code, message = (
                found if found is not None else (None, "post-only order would take (immediate_cancel)")
            )
        return OrderRejectedError(message, venue=self.name, code=code)

    async def place_order(self, request: OrderRequest) -> OrderUpdate:
        await self._spend(cancel=False)
        self._written(request)
        return await self._request(lambda: self._place(request))

    def place_order_now(self, request: OrderRequest, on_answer: OrderAnswer) -> bool:
        """The live WebSocket adapters' path (``WritesOrdersNow``): sent before returning, the
        answer told ``order_entry`` + ``ack`` later, as ``place_order`` would return or raise it.
        False, nothing sent, when the rate budget would make it wait, as live."""
        if self.order_rate is not None and not self.order_rate.take_now(False):
            return False
        self._written(request)
        self._request_now(lambda: self._place(request), on_answer)
        return True

    def _written(self, request: OrderRequest) -> None:
        """A new order leaves the strategy: its tick-to-trade ends here, the journal says sent."""
        if request.symbol not in self._instruments:
            raise self._refusal(RejectReason.UNKNOWN_SYMBOL)
        written = self.order_written
        if written is not None:
            written(request.client_order_id, self._now())
        if self.journal is not None:
            self.journal.order_event(
                self._now() + self.wall_offset_ns,
                self._keys[request.symbol],
                request.client_order_id,
                "sent",
                request.side.value,
                request.order_type.value,
                request.price,
                request.quantity,
                0,
            )

    def _place(self, request: OrderRequest) -> tuple[list[VenueEvent], Any]:
        if request.reduce_only and not self._reduces(request):
            self.counters["reduce_only_rejects"] += 1
            return [], OrderRejectedError("ReduceOnly Order is rejected.", venue=self.name, code=-2022)
        result: OrderResult = self.matching.place(
            ACCOUNT,
            request.symbol,
            request.side,
            request.order_type,
            request.quantity,
            request.price,
            request.time_in_force,
            request.client_order_id,
            self.capabilities.post_only_reprices,
        )
        if not result.accepted or result.order is None:
            reason = result.reason or RejectReason.PRICE_OUT_OF_RANGE
            self.counters[f"rejects_{reason.value}"] += 1
            if self.journal is not None:
                self.journal.order_event(
                    self._now() + self.wall_offset_ns,
                    self._keys[request.symbol],
                    request.client_order_id,
                    "rejected",
                    request.side.value,
                    request.order_type.value,
                    request.price,
                    request.quantity,
                    0,
                    reason.value,
                )
            return [], self._refusal(reason)
        order = result.order
        self._journal_order(order, "accepted")
        events: list[VenueEvent] = [self._update(order, OrderStatus.NEW)]
        events.extend(self._execution_events(result.executions))
        events.extend(
            self._update(update.order, update.status)
            for update in result.updates
            if update.order.account == ACCOUNT
        )
        if not order.is_open and order.status is not OrderStatus.FILLED:
            self._journal_order(order, order.status.value)
            events.append(self._update(order))
        self._after_book(order.symbol, result)
        return events, self._update(order)

    def _reduces(self, request: OrderRequest) -> bool:
        position = self.account.positions.get(request.symbol)
        held = 0 if position is None else position.quantity
        return (held < 0 and request.side is _BUY and request.quantity <= -held) or (
            held > 0 and request.side is not _BUY and request.quantity <= held
        )

    def _after_book(self, symbol: str, result: OrderResult) -> None:
        """Our request changed the venue's book: publish the batch like market data."""
        self._publish(symbol, result.book_update, result.trades)

    async def place_orders(self, requests: Sequence[OrderRequest]) -> list[OrderUpdate | VenueError]:
        """One request per batch of ``max_batch_orders`` (each order judged on its own, and
        counted in the rate budget as one order)."""
        size = max(1, self.capabilities.max_batch_orders)
        results: list[OrderUpdate | VenueError] = []
        for start in range(0, len(requests), size):
            chunk = list(requests[start : start + size])
            for _ in chunk:
                await self._spend(cancel=False)
            written = self.order_written
            for request in chunk:
                if written is not None:
                    written(request.client_order_id, self._now())
                if self.journal is not None and request.symbol in self._keys:
                    self.journal.order_event(
                        self._now() + self.wall_offset_ns,
                        self._keys[request.symbol],
                        request.client_order_id,
                        "sent",
                        request.side.value,
                        request.order_type.value,
                        request.price,
                        request.quantity,
                        0,
                    )

            def batch(chunk: list[OrderRequest] = chunk) -> tuple[list[VenueEvent], Any]:
                events: list[VenueEvent] = []
                answers: list[OrderUpdate | VenueError] = []
                for request in chunk:
                    if request.symbol not in self._instruments:
                        answers.append(self._refusal(RejectReason.UNKNOWN_SYMBOL))
                        continue
                    produced, answer = self._place(request)
                    events.extend(produced)
                    answers.append(answer)
                return events, answers

            results.extend(await self._request(batch))
        return results

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderUpdate:
        await self._spend(cancel=True)
        return await self._request(functools.partial(self._cancel, symbol, client_order_id))

    def cancel_order_now(self, symbol: str, client_order_id: str, on_answer: OrderAnswer) -> bool:
        """``CancelsOrdersNow``, as the live WebSocket adapters cancel (see ``place_order_now``)."""
        if self.order_rate is not None and not self.order_rate.take_now(True):
            return False
        self._request_now(functools.partial(self._cancel, symbol, client_order_id), on_answer)
        return True

    def _cancel(self, symbol: str, client_order_id: str) -> tuple[list[VenueEvent], Any]:
        result = self.matching.cancel(ACCOUNT, symbol, client_order_id=client_order_id)
        if not result.accepted or result.order is None:
            return [], self._refusal(result.reason or RejectReason.UNKNOWN_ORDER)
        order = result.order
        self._journal_order(order, "canceled")
        self._after_book(symbol, result)
        update = self._update(order)
        return [update], update

    async def _spend(self, cancel: bool) -> None:
        """Wait for one request's cost in the rate budget, as the live adapter's awaited path does."""
        if self.order_rate is not None:
            await self.order_rate.acquire(cancel)

    def order_budget(self) -> int:
        """``BudgetsOrders``: new orders the modelled rate budget lets out now."""
        return UNBOUNDED if self.order_rate is None else self.order_rate.budget()

    def order_budget_wait_s(self) -> float:
        return 0.0 if self.order_rate is None else self.order_rate.wait_s()

    async def cancel_all(self, symbol: str | None = None) -> int:
        await self._spend(cancel=True)

        def cancel_all() -> tuple[list[VenueEvent], Any]:
            result = self.matching.cancel_all(ACCOUNT, symbol)
            events: list[VenueEvent] = []
            for order in result.orders:
                self._journal_order(order, "canceled")
                events.append(self._update(order))
            for update in result.book_updates:
                self._publish(update.symbol, update, None)
            return events, len(result.orders)

        return await self._request(cancel_all)

    async def amend_order(self, request: AmendRequest) -> OrderUpdate:
        await self._spend(cancel=False)
        return await self._request(functools.partial(self._amend, request))

    def amend_order_now(self, request: AmendRequest, on_answer: OrderAnswer) -> bool:
        """``AmendsOrdersNow``, as the live WebSocket adapters amend (see ``place_order_now``)."""
        if self.order_rate is not None and not self.order_rate.take_now(False):
            return False
        self._request_now(functools.partial(self._amend, request), on_answer)
        return True

    def _amend(self, request: AmendRequest) -> tuple[list[VenueEvent], Any]:
        result = self.matching.amend(
            ACCOUNT,
            request.symbol,
            price=request.price,
            quantity=request.quantity,
            client_order_id=request.client_order_id,
        )
        if not result.accepted or result.order is None:
            return [], self._refusal(result.reason or RejectReason.UNKNOWN_ORDER)
        order = result.order
        self._journal_order(order, "amended" if order.is_open else order.status.value)
        events: list[VenueEvent] = [self._update(order)]
        events.extend(self._execution_events(result.executions))
        self._after_book(request.symbol, result)
        return events, self._update(order)

    async def mass_quote(self, quotes: Sequence[MassQuote]) -> MassQuoteReport:
        """Emulated: each side given replaces our resting orders of that side (cancel, then place)."""
        succeeded = failed = 0
        errors: list[str] = []
        for quote in quotes:
            for side, levels in ((Side.BUY, quote.bids), (Side.SELL, quote.asks)):
                if levels is None:
                    continue
                for order in list(self.matching.open_orders(ACCOUNT, quote.symbol)):
                    if order.side is side and order.client_order_id:
                        await self.cancel_order(quote.symbol, order.client_order_id)
                for level in levels:
                    if level.size <= 0:
                        continue
                    self.counters["mass_quote_orders"] += 1
                    try:
                        await self.place_order(
                            OrderRequest(
                                client_order_id=f"mq-{self.counters['mass_quote_orders']}",
                                symbol=quote.symbol,
                                side=side,
                                quantity=level.size,
                                price=level.price,
                                order_type=OrderType.LIMIT_MAKER,
                                time_in_force=TimeInForce.GTC,
                            )
                        )
                        succeeded += 1
                    except VenueError as error:
                        failed += 1
                        errors.append(str(error))
        return MassQuoteReport(succeeded, failed, errors)

    async def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        return await self._request(
            lambda: ([], [self._update(order) for order in self.matching.open_orders(ACCOUNT, symbol)])
        )

    async def query_order(self, symbol: str, client_order_id: str) -> OrderUpdate | None:
        def query() -> tuple[list[VenueEvent], Any]:
            order = self.matching.get_order(ACCOUNT, client_order_id=client_order_id)
            return [], None if order is None or order.symbol != symbol else self._update(order)

        return await self._request(query)

    async def balances(self) -> list[BalanceUpdate]:
        def balances() -> tuple[list[VenueEvent], Any]:
            return [], [
                BalanceUpdate(
                    venue=self.name,
                    asset=asset,
                    free=Decimal(self.accounts.to_text(asset, balance.free)),
                    locked=Decimal(self.accounts.to_text(asset, balance.locked)),
                )
                for asset, balance in sorted(self.account.balances.items())
            ]

        return await self._request(balances)

    async def positions(self) -> list[PositionUpdate]:
        def positions() -> tuple[list[VenueEvent], Any]:
            answer = []
            for symbol, position in sorted(self.account.positions.items()):
                instrument = self._instruments[symbol]
                entry = position.entry_price
                answer.append(
                    PositionUpdate(
                        venue=self.name,
                        symbol=symbol,
                        quantity=position.quantity,
                        entry_price=Decimal(0)
                        if entry is None
                        else Decimal(entry.numerator) / Decimal(entry.denominator) * instrument.tick_size,
                    )
                )
            return [], answer

        return await self._request(positions)

    # helpers ----------------------------------------------------------------------------------------------
    def _emit(self, event: VenueEvent) -> None:
        for listener in self._listeners:
            listener(event)


def _with_receive(fill: Fill, receive_ns: int) -> Fill:
    """The fill as the strategy hears it (the receive stamp is when it reached this side)."""
    return msgspec.structs.replace(fill, receive_ns=receive_ns)


def _resolve(future: asyncio.Future[Any], answer: Any) -> None:
    """An awaited request's answer, unless its caller gave up waiting (its future is done)."""
    if not future.done():
        future.set_result(answer)
