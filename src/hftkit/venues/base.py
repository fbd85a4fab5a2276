"""The one protocol every venue adapter implements, and the outcomes of order requests.

An adapter is an async context manager. Market and account events reach listeners
synchronously from the socket callback (no queue hop on the hot path); order requests are
coroutines whose failures say whether the outcome is known:

- ``OrderRejectedError``: the venue said no. Nothing exists; safe to decide again.
- ``OrderOutcomeUnknownError``: timeout, disconnect, 5xx. The order may exist; it stays
  in flight and is settled by client order id (event, query or reconciliation), never
  re-sent blindly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import msgspec

from hftkit.book.order_book import OrderBook
from hftkit.core.errors import HftkitError
from hftkit.core.types import (
    BalanceUpdate,
    BookDelta,
    BookTicker,
    ConnectionEvent,
    FeeCharge,
    Fill,
    Instrument,
    OrderType,
    OrderUpdate,
    PositionUpdate,
    Side,
    TimeInForce,
    Trade,
)

VenueEvent = (
    BookDelta
    | Trade
    | BookTicker
    | OrderUpdate
    | Fill
    | FeeCharge
    | BalanceUpdate
    | PositionUpdate
    | ConnectionEvent
)
EventListener = Callable[[VenueEvent], None]


class VenueError(HftkitError):
    """Base of adapter errors; ``venue`` names the adapter."""

    def __init__(self, message: str, *, venue: str = "", code: int | None = None) -> None:
        super().__init__(message)
        self.venue = venue
        self.code = code


class OrderRejectedError(VenueError):
    """A definitive reject: no order exists at the venue."""


class OrderNotFoundError(VenueError):
    """Cancel or amend of an order the venue does not have (already closed or never existed)."""


class OrderOutcomeUnknownError(VenueError):
    """The request may or may not have reached the venue; reconcile by client order id."""

    def __init__(self, message: str, *, venue: str = "", client_order_id: str = "") -> None:
        super().__init__(message, venue=venue)
        self.client_order_id = client_order_id


class RateLimitedError(VenueError):
    """The venue (or our limiter on its behalf) refused for rate; ``retry_after_s`` says how long."""

    def __init__(self, message: str, *, venue: str = "", retry_after_s: float = 0.0) -> None:
        super().__init__(message, venue=venue)
        self.retry_after_s = retry_after_s


class OrderRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A new order in integer ticks/lots of its instrument."""

    client_order_id: str
    symbol: str
    side: Side
    quantity: int
    price: int = 0
    order_type: OrderType = OrderType.LIMIT
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False


class AmendRequest(msgspec.Struct, frozen=True, kw_only=True):
    client_order_id: str
    symbol: str
    price: int
    quantity: int  # new total size, as Thalex defines it


class QuoteLevel(msgspec.Struct, frozen=True):
    price: int
    size: int  # 0 removes the side


class MassQuote(msgspec.Struct, frozen=True, kw_only=True):
    """Replace one instrument's quotes: each side given replaces that side atomically."""

    symbol: str
    bids: list[QuoteLevel] | None = None
    asks: list[QuoteLevel] | None = None


class MassQuoteReport(msgspec.Struct, frozen=True):
    succeeded: int
    failed: int
    errors: list[str] = []


@dataclass(frozen=True)
class VenueCapabilities:
    """What a venue supports natively; the quoting service and router adapt to it."""

    amend: bool
    amend_keeps_priority_on_size_down: bool
    native_mass_quote: bool
    cancel_on_disconnect: bool
    post_only_reprices: bool  # Thalex: post-only reprices one tick away instead of rejecting
    positions: bool  # derivatives: the venue reports positions
    max_batch_orders: int = 1  # new orders one request may carry (Binance USD-M batchOrders: 5)


@dataclass(frozen=True)
class VenueStatus:
    """What an operator watches of a venue connection: rate budget used, circuit breakers.

    ``rate_budget_used``: each of the venue's rate windows (by its name) -> the fraction of its
    limit used now (1.0 = exhausted); ``breakers``: dependency -> ``closed``/``open``/``half_open``.
    """

    rate_budget_used: Mapping[str, float]
    breakers: Mapping[str, str]


async def place_one_by_one(
    place: Callable[[OrderRequest], Awaitable[OrderUpdate]], requests: Sequence[OrderRequest]
) -> list[OrderUpdate | VenueError]:
    """``place_orders`` for a venue with no batch endpoint: each order on its own request, each
    failure reported in its place."""
    results: list[OrderUpdate | VenueError] = []
    for request in requests:
        try:
            results.append(await place(request))
        except VenueError as error:
            results.append(error)
    return results


OrderAnswer = Callable[[OrderUpdate | VenueError], None]
"""Told a new order's answer: the venue's ``OrderUpdate``, or the ``VenueError`` that says what
became of it (``OrderRejectedError``/``RateLimitedError``: nothing was placed;
``OrderOutcomeUnknownError``: the adapter settles it by client order id)."""


@runtime_checkable
class WritesOrdersNow(Protocol):
    """An adapter whose transport writes synchronously (picows WebSockets, a raw keep-alive HTTP
    connection): the order's bytes leave inside the caller's frame callback, with no task and no
    loop iteration between the decision and the socket."""

    def place_order_now(self, request: OrderRequest, on_answer: OrderAnswer) -> bool:
        """Write the order before returning (True) and tell ``on_answer`` exactly once, later and
        never from inside this call, bounded by the adapter's own request timeout. False, with
        nothing sent, when it cannot be written without waiting (not ready, rate budget, no idle
        connection): use ``place_order``. A request refused locally raises its ``VenueError``."""
        ...


@runtime_checkable
class CancelsOrdersNow(Protocol):
    """An adapter that writes a cancel inside the caller's callback, as ``WritesOrdersNow`` does
    a new order: a market maker's re-quote pulls its stale order with no task hop either."""

    def cancel_order_now(self, symbol: str, client_order_id: str, on_answer: OrderAnswer) -> bool:
        """Write the cancel before returning (True) and tell ``on_answer`` exactly once, later and
        never from inside this call, what ``cancel_order`` would have returned or raised (the
        closed order; ``OrderNotFoundError`` when the venue no longer has it; an unknown outcome
        the adapter settles). False, with nothing sent, when it cannot be written without waiting:
        use ``cancel_order``. A cancel refused locally raises its ``VenueError``."""
        ...


@runtime_checkable
class AmendsOrdersNow(Protocol):
    """An adapter that writes an amend inside the caller's callback, as ``WritesOrdersNow`` does
    a new order: a re-quote moves its order in one request with no task hop."""

    def amend_order_now(self, request: AmendRequest, on_answer: OrderAnswer) -> bool:
        """Write the amend before returning (True) and tell ``on_answer`` exactly once, later and
        never from inside this call, what ``amend_order`` would have returned or raised. False,
        with nothing sent, when it cannot be written without waiting: use ``amend_order``. An
        amend refused locally raises its ``VenueError``."""
        ...


@runtime_checkable
class BudgetsOrders(Protocol):
    """An adapter that knows how many order requests its rate budget lets out now: a plan sends
    no more than that and re-plans the rest when the budget allows, instead of queueing quotes
    that would be stale by the time the budget lets them out."""

    def order_budget(self) -> int:
        """Order requests (new orders, cancels) that could be sent now without waiting: 0 while
        a throttle pause holds or requests already wait for the budget."""
        ...

    def order_budget_wait_s(self) -> float:
        """Seconds until the budget lets one more order request out (0.0: now)."""
        ...


@runtime_checkable
class VenueAdapter(Protocol):
    """What the trading core needs from a venue."""

    name: str
    capabilities: VenueCapabilities
    #: set by the order gateway: called with (client order id, ``time.monotonic_ns()``) as soon as
    #: a new order's bytes have been handed to the socket (where tick-to-trade ends)
    order_written: Callable[[str, int], None] | None

    async def __aenter__(self) -> VenueAdapter: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    @property
    def instruments(self) -> Mapping[str, Instrument]: ...

    def add_listener(self, listener: EventListener) -> None:
        """Receive every normalized event, synchronously, in arrival order."""
        ...

    async def subscribe(self, symbols: Sequence[str], *, books: bool = True, trades: bool = True) -> None: ...

    def book(self, symbol: str) -> OrderBook | None:
        """The one synchronized book of ``symbol``, kept by this adapter (read-only to others)."""
        ...

    def book_synced(self, symbol: str) -> bool:
        """Whether ``book(symbol)`` is in sync with the venue now (a BookDelta follows every apply)."""
        ...

    def status(self) -> VenueStatus:
        """Rate budget and breakers now (read at the dashboard's pace, never on the hot path)."""
        ...

    async def place_order(self, request: OrderRequest) -> OrderUpdate: ...

    async def place_orders(self, requests: Sequence[OrderRequest]) -> list[OrderUpdate | VenueError]:
        """Several new orders, in as few requests as the venue allows (``max_batch_orders``).

        One result per request, in order: its ``OrderUpdate``, or the ``VenueError`` that refused
        it, or an ``OrderOutcomeUnknownError`` (the adapter settles that order by client order id,
        like a single one; when a whole batch request's outcome is unknown, every order of it)."""
        ...

    async def amend_order(self, request: AmendRequest) -> OrderUpdate: ...

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderUpdate: ...

    async def cancel_all(self, symbol: str | None = None) -> int: ...

    async def mass_quote(self, quotes: Sequence[MassQuote]) -> MassQuoteReport: ...

    async def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]: ...

    async def query_order(self, symbol: str, client_order_id: str) -> OrderUpdate | None:
        """The venue's view of one order, or None when it has no such order."""
        ...

    async def balances(self) -> list[BalanceUpdate]: ...

    async def positions(self) -> list[PositionUpdate]: ...
