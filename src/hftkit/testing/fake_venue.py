"""``FakeVenue``: an in-memory venue implementing the ``VenueAdapter`` protocol.

For tests of anything above the adapters (strategies, the strategy manager, execution, risk
wiring) without sockets or a simulator process. It keeps a public L2 book per symbol that the
test sets, matches marketable orders against it at once (IOC and market orders fill what the
book holds up to their limit; post-only orders that would cross are rejected), rests the rest,
and fills resting orders when the test moves the book through them. Every order change reaches
the listeners as ``OrderUpdate`` + ``Fill`` events, synchronously, as a real adapter would.

Failures are scripted per request kind (``fail_next``): a definitive reject, a rate limit, an
ambiguous outcome where the order was placed (or was not), a transport error, or a hang that
only the caller's own timeout ends. Acks can be delayed by ``latency_s`` (an ``asyncio.sleep``
before the venue acts).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from hftkit.book.order_book import Level, OrderBook
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
)
from hftkit.venues.base import (
    AmendRequest,
    EventListener,
    MassQuote,
    MassQuoteReport,
    OrderAnswer,
    OrderNotFoundError,
    OrderOutcomeUnknownError,
    OrderRejectedError,
    OrderRequest,
    RateLimitedError,
    VenueCapabilities,
    VenueError,
    VenueEvent,
    VenueStatus,
    place_one_by_one,
)

__all__ = ["FAKE_CAPABILITIES", "FailureKind", "FakeVenue", "RequestKind"]

FAKE_CAPABILITIES = VenueCapabilities(
    amend=True,
    amend_keeps_priority_on_size_down=False,
    native_mass_quote=False,
    cancel_on_disconnect=False,
    post_only_reprices=False,
    positions=True,
)


class FailureKind(enum.Enum):
    REJECT = "reject"  # OrderRejectedError; nothing happens at the venue
    UNKNOWN_PLACED = "unknown_placed"  # OrderOutcomeUnknownError, but the request took effect
    UNKNOWN_LOST = "unknown_lost"  # OrderOutcomeUnknownError and the request never arrived
    HANG = "hang"  # never answers (the caller's timeout must end it); the request is lost
    TRANSPORT_ERROR = "transport_error"  # ConnectionError before the request left: it is lost
    RATE_LIMITED = "rate_limited"  # RateLimitedError: refused, nothing happens


class RequestKind(enum.Enum):
    PLACE = "place"
    CANCEL = "cancel"
    CANCEL_ALL = "cancel_all"
    AMEND = "amend"
    QUERY = "query"


class _RestingOrder:
    __slots__ = (
        "client_order_id",
        "filled",
        "price",
        "quantity",
        "side",
        "status",
        "symbol",
        "venue_order_id",
    )

    def __init__(self, request: OrderRequest, venue_order_id: str) -> None:
        self.client_order_id = request.client_order_id
        self.symbol = request.symbol
        self.side = request.side
        self.price = request.price
        self.quantity = request.quantity
        self.filled = 0
        self.status = OrderStatus.NEW
        self.venue_order_id = venue_order_id


class FakeVenue:
    """An in-memory ``VenueAdapter`` with a settable book, instant matching and scripted faults.

    ``latency_s`` delays every request before the venue acts on it; ``hang_s`` is how long a
    HANG failure sleeps (default: an hour, i.e. until the caller gives up). ``requests`` logs
    every request in arrival order as ``(kind, payload)`` for assertions. ``writes_now``: new
    orders and cancels also go the way of a synchronous transport (``place_order_now``,
    ``cancel_order_now``), answered later and bounded by ``request_timeout_s`` as a real
    adapter's own request timeout bounds them.
    """

    def __init__(
        self,
        name: str,
        instruments: Iterable[Instrument],
        *,
        latency_s: float = 0.0,
        hang_s: float = 3600.0,
        capabilities: VenueCapabilities = FAKE_CAPABILITIES,
        balances: Mapping[str, Decimal | str | int] | None = None,
        consume_liquidity: bool = True,
        writes_now: bool = False,
        request_timeout_s: float = 5.0,
    ) -> None:
        self.name = name
        self.writes_now = writes_now
        self.request_timeout_s = request_timeout_s
        self._answering: set[asyncio.Task[None]] = set()
        self.capabilities = capabilities
        self.order_written: Callable[[str, int], None] | None = None
        self.batches: list[list[str]] = []  # client order ids of each place_orders request
        self._instruments = {instrument.symbol: instrument for instrument in instruments}
        for instrument in self._instruments.values():
            if instrument.venue != name:
                raise ValueError(
                    f"instrument {instrument!r} belongs to venue {instrument.venue!r}, not {name!r}"
                )
        self.latency_s = latency_s
        self.hang_s = hang_s
        self.consume_liquidity = consume_liquidity
        self.books: dict[str, OrderBook] = {symbol: OrderBook(symbol) for symbol in self._instruments}
        self._synced: set[str] = set()  # books a snapshot set and no disconnect has lost since
        self._listeners: list[EventListener] = []
        self._orders: dict[str, _RestingOrder] = {}
        self._closed: dict[str, OrderUpdate] = {}
        self._failures: dict[RequestKind, deque[FailureKind]] = {kind: deque() for kind in RequestKind}
        self._venue_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._update_ids = itertools.count(1)
        self.balances_by_asset: dict[str, Decimal] = {
            asset: Decimal(str(amount)) for asset, amount in (balances or {}).items()
        }
        self.positions_by_symbol: dict[str, int] = dict.fromkeys(self._instruments, 0)
        self.subscribed: set[str] = set()
        self.requests: list[tuple[RequestKind, object]] = []
        self.connected = False
        self.fills: list[Fill] = []

    # context manager --------------------------------------------------------------------------
    async def __aenter__(self) -> FakeVenue:
        self.connected = True
        self._emit(ConnectionEvent(venue=self.name, stream="session", state="connected"))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.connected = False
        self._emit(ConnectionEvent(venue=self.name, stream="session", state="disconnected"))

    @property
    def instruments(self) -> Mapping[str, Instrument]:
        return self._instruments

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    # scripting --------------------------------------------------------------------------------
    def fail_next(self, failure: FailureKind, kind: RequestKind = RequestKind.PLACE, count: int = 1) -> None:
        """Make the next ``count`` requests of ``kind`` fail as ``failure``."""
        self._failures[kind].extend([failure] * count)

    def set_book(self, symbol: str, bids: Sequence[Level], asks: Sequence[Level]) -> None:
        """Replace the public book (a snapshot event) and fill resting orders it crosses."""
        book = self._book(symbol)
        book.apply_snapshot(bids, asks, next(self._update_ids))
        self._synced.add(symbol)
        self._emit(
            BookDelta(
                venue=self.name,
                symbol=symbol,
                bids=list(book.bids()),
                asks=list(book.asks()),
                last_update_id=book.last_update_id,
                is_snapshot=True,
            )
        )
        self._fill_crossed(symbol)

    def update_book(self, symbol: str, bids: Sequence[Level] = (), asks: Sequence[Level] = ()) -> None:
        """Change levels (size 0 deletes), emit the diff and fill resting orders it crosses."""
        book = self._book(symbol)
        book.apply_delta(bids, asks)
        update_id = next(self._update_ids)
        book.last_update_id = update_id
        self._emit(
            BookDelta(
                venue=self.name,
                symbol=symbol,
                bids=list(bids),
                asks=list(asks),
                first_update_id=update_id,
                last_update_id=update_id,
            )
        )
        self._fill_crossed(symbol)

    def fill_resting(
        self, client_order_id: str, quantity: int | None = None, price: int | None = None
    ) -> Fill:
        """A taker hits one of our resting orders (all of it unless ``quantity`` says less)."""
        order = self._orders.get(client_order_id)
        if order is None:
            raise OrderNotFoundError(f"no open order {client_order_id!r}", venue=self.name)
        lots = order.quantity - order.filled if quantity is None else quantity
        if not 0 < lots <= order.quantity - order.filled:
            raise ValueError(f"cannot fill {lots} lots of {client_order_id!r}")
        return self._execute(order, lots, order.price if price is None else price, is_maker=True)

    def disconnect(self, reason: str = "test") -> None:
        """Report a lost market-data session (consumers must stop trusting books)."""
        self._synced.clear()
        self._emit(ConnectionEvent(venue=self.name, stream="market", state="disconnected", reason=reason))

    @property
    def open_order_ids(self) -> list[str]:
        return list(self._orders)

    # VenueAdapter -----------------------------------------------------------------------------
    async def subscribe(self, symbols: Sequence[str], *, books: bool = True, trades: bool = True) -> None:
        for symbol in symbols:
            self._instrument(symbol)
            self.subscribed.add(symbol)
            book = self.books[symbol]
            if books and len(book):
                self._emit(
                    BookDelta(
                        venue=self.name,
                        symbol=symbol,
                        bids=list(book.bids()),
                        asks=list(book.asks()),
                        last_update_id=book.last_update_id,
                        is_snapshot=True,
                    )
                )

    async def place_orders(self, requests: Sequence[OrderRequest]) -> list[OrderUpdate | VenueError]:
        """In chunks of ``capabilities.max_batch_orders`` (each chunk recorded in ``batches``)."""
        size = max(1, self.capabilities.max_batch_orders)
        results: list[OrderUpdate | VenueError] = []
        for start in range(0, len(requests), size):
            chunk = list(requests[start : start + size])
            self.batches.append([request.client_order_id for request in chunk])
            results.extend(await place_one_by_one(self.place_order, chunk))
        return results

    def place_order_now(self, request: OrderRequest, on_answer: OrderAnswer) -> bool:
        """With ``writes_now``: the order is on the wire when this returns; its answer comes later."""
        if not self.writes_now:
            return False
        self.requests.append((RequestKind.PLACE, request))
        written = self.order_written
        if written is not None:
            written(request.client_order_id, time.monotonic_ns())
        self._answer_later(self._place(request), request.client_order_id, on_answer)
        return True

    def cancel_order_now(self, symbol: str, client_order_id: str, on_answer: OrderAnswer) -> bool:
        """With ``writes_now``: the cancel is on the wire when this returns; its answer comes later."""
        if not self.writes_now:
            return False
        self.requests.append((RequestKind.CANCEL, (symbol, client_order_id)))
        self._answer_later(self._cancel(symbol, client_order_id), client_order_id, on_answer)
        return True

    def _answer_later(
        self, request: Coroutine[Any, Any, OrderUpdate], client_order_id: str, on_answer: OrderAnswer
    ) -> None:
        """A request written now: its answer (or refusal, or unknown outcome after the adapter's
        own timeout or a transport failure) told to ``on_answer`` exactly once by a task, never
        inside the caller's call."""

        async def answer() -> None:
            try:
                outcome: OrderUpdate | VenueError = await asyncio.wait_for(request, self.request_timeout_s)
            except VenueError as error:
                outcome = error
            except TimeoutError:
                outcome = OrderOutcomeUnknownError(
                    "no answer in time", venue=self.name, client_order_id=client_order_id
                )
            except Exception as error:  # a transport failure: a real adapter's outcome is unknown too
                outcome = OrderOutcomeUnknownError(
                    f"transport failed: {error!r}", venue=self.name, client_order_id=client_order_id
                )
            on_answer(outcome)

        task = asyncio.get_running_loop().create_task(answer())
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def place_order(self, request: OrderRequest) -> OrderUpdate:
        self.requests.append((RequestKind.PLACE, request))
        written = self.order_written
        if written is not None:  # in memory, "on the wire" is the moment the request arrives
            written(request.client_order_id, time.monotonic_ns())
        return await self._place(request)

    async def _place(self, request: OrderRequest) -> OrderUpdate:
        failure = await self._before(RequestKind.PLACE)
        if failure is FailureKind.REJECT:
            raise OrderRejectedError("scripted reject", venue=self.name, code=-2010)
        if failure is FailureKind.UNKNOWN_LOST:
            raise OrderOutcomeUnknownError(
                "scripted unknown outcome", venue=self.name, client_order_id=request.client_order_id
            )
        update = self._accept(request)
        if failure is FailureKind.UNKNOWN_PLACED:
            raise OrderOutcomeUnknownError(
                "scripted unknown outcome (placed)", venue=self.name, client_order_id=request.client_order_id
            )
        return update

    async def amend_order(self, request: AmendRequest) -> OrderUpdate:
        self.requests.append((RequestKind.AMEND, request))
        return await self._amend(request)

    def amend_order_now(self, request: AmendRequest, on_answer: OrderAnswer) -> bool:
        """With ``writes_now``: the amend is on the wire when this returns; its answer comes later."""
        if not self.writes_now:
            return False
        self.requests.append((RequestKind.AMEND, request))
        self._answer_later(self._amend(request), request.client_order_id, on_answer)
        return True

    async def _amend(self, request: AmendRequest) -> OrderUpdate:
        failure = await self._before(RequestKind.AMEND)
        self._raise_for(failure, request.client_order_id)
        order = self._orders.get(request.client_order_id)
        if order is None:
            raise OrderNotFoundError(f"no open order {request.client_order_id!r}", venue=self.name)
        if request.quantity <= order.filled:
            return self._close(order, OrderStatus.CANCELED, "amended to <= filled")
        order.price = request.price
        order.quantity = request.quantity
        update = self._update(order)
        self._emit(update)
        self._fill_crossed(order.symbol)
        return self._closed.get(order.client_order_id) or self._update(order)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderUpdate:
        self.requests.append((RequestKind.CANCEL, (symbol, client_order_id)))
        return await self._cancel(symbol, client_order_id)

    async def _cancel(self, symbol: str, client_order_id: str) -> OrderUpdate:
        failure = await self._before(RequestKind.CANCEL)
        self._raise_for(failure, client_order_id)
        order = self._orders.get(client_order_id)
        if order is None or order.symbol != symbol:
            raise OrderNotFoundError(f"no open order {client_order_id!r}", venue=self.name)
        return self._close(order, OrderStatus.CANCELED, "canceled")

    async def cancel_all(self, symbol: str | None = None) -> int:
        self.requests.append((RequestKind.CANCEL_ALL, symbol))
        failure = await self._before(RequestKind.CANCEL_ALL)
        self._raise_for(failure, "")
        doomed = [order for order in self._orders.values() if symbol is None or order.symbol == symbol]
        for order in doomed:
            self._close(order, OrderStatus.CANCELED, "cancel_all")
        return len(doomed)

    async def mass_quote(self, quotes: Sequence[MassQuote]) -> MassQuoteReport:
        """Emulated: each side given replaces our resting orders of that side."""
        succeeded = failed = 0
        errors: list[str] = []
        for quote in quotes:
            for side, levels in ((Side.BUY, quote.bids), (Side.SELL, quote.asks)):
                if levels is None:
                    continue
                for order in [
                    o for o in self._orders.values() if o.symbol == quote.symbol and o.side is side
                ]:
                    self._close(order, OrderStatus.CANCELED, "mass quote replace")
                for level in levels:
                    if level.size <= 0:
                        continue
                    request = OrderRequest(
                        client_order_id=f"mq-{next(self._venue_ids)}",
                        symbol=quote.symbol,
                        side=side,
                        quantity=level.size,
                        price=level.price,
                        order_type=OrderType.LIMIT_MAKER,
                    )
                    try:
                        self._accept(request)
                        succeeded += 1
                    except OrderRejectedError as error:
                        failed += 1
                        errors.append(str(error))
        return MassQuoteReport(succeeded, failed, errors)

    async def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        return [self._update(o) for o in self._orders.values() if symbol is None or o.symbol == symbol]

    async def query_order(self, symbol: str, client_order_id: str) -> OrderUpdate | None:
        self.requests.append((RequestKind.QUERY, (symbol, client_order_id)))
        failure = await self._before(RequestKind.QUERY)
        self._raise_for(failure, client_order_id)
        order = self._orders.get(client_order_id)
        if order is not None:
            return self._update(order) if order.symbol == symbol else None
        closed = self._closed.get(client_order_id)
        return closed if closed is not None and closed.symbol == symbol else None

    async def balances(self) -> list[BalanceUpdate]:
        return [BalanceUpdate(venue=self.name, asset=a, free=v) for a, v in self.balances_by_asset.items()]

    async def positions(self) -> list[PositionUpdate]:
        return [
            PositionUpdate(venue=self.name, symbol=symbol, quantity=quantity, entry_price=Decimal(0))
            for symbol, quantity in self.positions_by_symbol.items()
        ]

    # matching -----------------------------------------------------------------------------------
    def _accept(self, request: OrderRequest) -> OrderUpdate:
        book = self._book(request.symbol)
        if request.quantity <= 0 or (request.order_type is not OrderType.MARKET and request.price <= 0):
            raise OrderRejectedError(f"invalid order {request!r}", venue=self.name, code=-1013)
        if request.client_order_id in self._orders or request.client_order_id in self._closed:
            raise OrderRejectedError("duplicate client order id", venue=self.name, code=-2010)
        order = _RestingOrder(request, str(next(self._venue_ids)))
        marketable = self._marketable(book, request)
        if request.order_type is OrderType.LIMIT_MAKER and marketable:
            raise OrderRejectedError("post-only order would take liquidity", venue=self.name, code=-2010)
        self._orders[order.client_order_id] = order
        self._emit(self._update(order))
        if marketable:
            self._take(book, order, request)
        if order.client_order_id in self._orders:
            taker_only = (
                request.time_in_force is not TimeInForce.GTC or request.order_type is OrderType.MARKET
            )
            if taker_only:
                status = (
                    OrderStatus.EXPIRED
                    if request.time_in_force is not TimeInForce.GTC
                    else OrderStatus.CANCELED
                )
                return self._close(order, status, "unfilled remainder of a taker order")
            return self._update(order)
        return self._closed[order.client_order_id]

    @staticmethod
    def _marketable(book: OrderBook, request: OrderRequest) -> bool:
        if request.side is Side.BUY:
            best = book.best_ask()
            return best is not None and (request.order_type is OrderType.MARKET or request.price >= best[0])
        best = book.best_bid()
        return best is not None and (request.order_type is OrderType.MARKET or request.price <= best[0])

    def _take(self, book: OrderBook, order: _RestingOrder, request: OrderRequest) -> None:
        is_market = request.order_type is OrderType.MARKET
        levels = book.asks() if order.side is Side.BUY else book.bids()
        if request.time_in_force is TimeInForce.FOK:
            reachable = sum(
                size
                for price, size in levels
                if is_market or (price <= order.price if order.side is Side.BUY else price >= order.price)
            )
            if reachable < order.quantity:
                return
        changes: list[Level] = []
        for price, size in levels:
            remaining = order.quantity - order.filled
            if remaining <= 0:
                break
            if not is_market and (price > order.price if order.side is Side.BUY else price < order.price):
                break
            take = min(size, remaining)
            changes.append((price, size - take))
            self._execute(order, take, price, is_maker=False)
        if changes and self.consume_liquidity:
            if order.side is Side.BUY:
                self.update_book(order.symbol, asks=changes)
            else:
                self.update_book(order.symbol, bids=changes)

    def _fill_crossed(self, symbol: str) -> None:
        """Resting orders the public book now trades through are filled at their own price."""
        book = self.books[symbol]
        best_bid, best_ask = book.best_bid(), book.best_ask()
        for order in list(self._orders.values()):
            if order.symbol != symbol or order.client_order_id not in self._orders:
                continue
            if order.side is Side.BUY:
                crossed = best_ask is not None and best_ask[0] <= order.price
            else:
                crossed = best_bid is not None and best_bid[0] >= order.price
            if crossed:
                self._execute(order, order.quantity - order.filled, order.price, is_maker=True)

    def _execute(self, order: _RestingOrder, lots: int, price: int, *, is_maker: bool) -> Fill:
        order.filled += lots
        instrument = self._instruments[order.symbol]
        self.positions_by_symbol[order.symbol] += order.side.sign * lots
        if instrument.base and instrument.quote:
            base = instrument.lots.to_decimal(lots) * instrument.contract_size
            quote = instrument.ticks.to_decimal(price) * base
            balances = self.balances_by_asset
            sign = order.side.sign
            balances[instrument.base] = balances.get(instrument.base, Decimal(0)) + sign * base
            balances[instrument.quote] = balances.get(instrument.quote, Decimal(0)) - sign * quote
        fill = Fill(
            venue=self.name,
            symbol=order.symbol,
            client_order_id=order.client_order_id,
            venue_order_id=order.venue_order_id,
            trade_id=f"{self.name}-{next(self._trade_ids)}",
            side=order.side,
            price=price,
            quantity=lots,
            is_maker=is_maker,
        )
        self.fills.append(fill)
        if order.filled >= order.quantity:
            self._close(order, OrderStatus.FILLED, "")
        else:
            order.status = OrderStatus.PARTIALLY_FILLED
            self._emit(self._update(order))
        self._emit(fill)
        return fill

    def _close(self, order: _RestingOrder, status: OrderStatus, reason: str) -> OrderUpdate:
        self._orders.pop(order.client_order_id, None)
        order.status = status
        update = self._update(order, reason)
        self._closed[order.client_order_id] = update
        self._emit(update)
        return update

    def _update(self, order: _RestingOrder, reason: str = "") -> OrderUpdate:
        return OrderUpdate(
            venue=self.name,
            symbol=order.symbol,
            client_order_id=order.client_order_id,
            venue_order_id=order.venue_order_id,
            status=order.status,
            side=order.side,
            price=order.price,
            quantity=order.quantity,
            filled=order.filled,
            reason=reason,
        )

    # internals --------------------------------------------------------------------------------
    async def _before(self, kind: RequestKind) -> FailureKind | None:
        failures = self._failures[kind]
        failure = failures.popleft() if failures else None
        if failure is FailureKind.HANG:
            await asyncio.sleep(self.hang_s)
            raise OrderOutcomeUnknownError("scripted hang ended", venue=self.name)
        if failure is FailureKind.TRANSPORT_ERROR:
            raise ConnectionError("scripted transport error")
        if failure is FailureKind.RATE_LIMITED:
            raise RateLimitedError("scripted rate limit", venue=self.name, retry_after_s=1.0)
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        return failure

    def _raise_for(self, failure: FailureKind | None, client_order_id: str) -> None:
        if failure is FailureKind.REJECT:
            raise OrderRejectedError("scripted reject", venue=self.name)
        if failure is FailureKind.UNKNOWN_LOST or failure is FailureKind.UNKNOWN_PLACED:
            raise OrderOutcomeUnknownError(
                "scripted unknown outcome", venue=self.name, client_order_id=client_order_id
            )

    def _instrument(self, symbol: str) -> Instrument:
        instrument = self._instruments.get(symbol)
        if instrument is None:
            raise OrderRejectedError(f"unknown symbol {symbol!r}", venue=self.name, code=-1121)
        return instrument

    def book(self, symbol: str) -> OrderBook | None:
        """The venue's book of ``symbol`` (the one owner; trust it only while ``book_synced``)."""
        return self.books.get(symbol)

    def book_synced(self, symbol: str) -> bool:
        return symbol in self._synced

    def status(self) -> VenueStatus:
        return VenueStatus({}, {})

    def _book(self, symbol: str) -> OrderBook:
        self._instrument(symbol)
        return self.books[symbol]

    def _emit(self, event: VenueEvent) -> None:
        for listener in self._listeners:
            listener(event)
