"""The Thalex venue adapter: one WebSocket, one JSON-RPC session, normalized events.

A thin facade over the parts it owns (composition): ``session.ThalexSession`` (connect, login,
cancel-on-disconnect, subscriptions, reconciliation: the connection's life is told there),
``market_data.MarketData`` (instruments, books, tickers, trades) and ``orders.OrderEntry``
(insert/amend/cancel, mass quotes and their protection, late answers, fill dedupe, and the
settlement of orders of unknown outcome: see that module). Its settings are
``config.ThalexConfig``; client order ids are ``ids.ClientOrderIds``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType

import msgspec

from hftkit.book.order_book import OrderBook
from hftkit.book.sync import BookSynchronizer
from hftkit.core.bounded import LruMap
from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.types import BalanceUpdate, Instrument, OrderUpdate, PositionUpdate
from hftkit.metrics import MetricsRegistry
from hftkit.transport.transports import REAL_TRANSPORTS, Transports
from hftkit.transport.websocket import ReconnectingWebSocket
from hftkit.venues.base import (
    AmendRequest,
    EventListener,
    MassQuote,
    MassQuoteReport,
    OrderAnswer,
    OrderRequest,
    VenueError,
    VenueStatus,
)
from hftkit.venues.thalex.codec import ThalexCodec, ThalexTicker
from hftkit.venues.thalex.config import (
    DELAYS,
    PRODUCTION_URL,
    TESTNET_URL,
    THALEX_CAPABILITIES,
    ThalexConfig,
)
from hftkit.venues.thalex.errors import (
    ThalexConnectionError,
    ThalexQueryError,
    ThalexTimeoutError,
    VenueNotReadyError,
)
from hftkit.venues.thalex.ids import ClientOrderIds
from hftkit.venues.thalex.market_data import MarketData
from hftkit.venues.thalex.orders import MAX_MASS_QUOTE_ITEMS, MAX_MASS_QUOTE_LEVELS, ORDER_METHODS, OrderEntry
from hftkit.venues.thalex.rpc import LateResponse, RpcSession
from hftkit.venues.thalex.session import (
    MM_PROTECTION_CHANNEL,
    PRIVATE_CHANNELS,
    ChannelRouter,
    Listeners,
    Queries,
    ThalexSession,
)

__all__ = [
    "DELAYS",
    "MAX_MASS_QUOTE_ITEMS",
    "MAX_MASS_QUOTE_LEVELS",
    "MM_PROTECTION_CHANNEL",
    "ORDER_METHODS",
    "PRIVATE_CHANNELS",
    "PRODUCTION_URL",
    "TESTNET_URL",
    "THALEX_CAPABILITIES",
    "ClientOrderIds",
    "ThalexAdapter",
    "ThalexConfig",
    "ThalexConnectionError",
    "ThalexQueryError",
    "ThalexTimeoutError",
    "VenueNotReadyError",
]


class ThalexAdapter:
    """``VenueAdapter`` for Thalex. Use as ``async with ThalexAdapter(config) as venue``."""

    capabilities = THALEX_CAPABILITIES
    #: ``private/insert`` written before returning, its answer told to ``on_answer`` from the frame
    #: that carries it (``WritesOrdersNow``); False, nothing sent, when the session is not ready or
    #: the message rate would make it wait. The order entry's own bound method: no extra call.
    place_order_now: Callable[[OrderRequest, OrderAnswer], bool]
    #: ``private/cancel`` the same way (``CancelsOrdersNow``): a re-quote's cancel leaves with no
    #: task hop either; it raises ``OrderNotFoundError`` for an order it has no name for.
    cancel_order_now: Callable[[str, str, OrderAnswer], bool]
    #: ``private/amend`` the same way (``AmendsOrdersNow``): a re-quote moves its order at once
    amend_order_now: Callable[[AmendRequest, OrderAnswer], bool]
    #: ``BudgetsOrders``: the session's messages that could go out now, and the wait for one more
    order_budget: Callable[[], int]
    order_budget_wait_s: Callable[[], float]

    def __init__(
        self,
        config: ThalexConfig,
        *,
        metrics: MetricsRegistry | None = None,
        clock: Clock = REAL_CLOCK,
        transports: Transports = REAL_TRANSPORTS,
    ) -> None:
        """``transports``: where the WebSocket's bytes go (default: picows, the network); an
        in-memory venue from ``hftkit.testing`` passes its own. Fixed here, never per request:
        the order path writes straight on the connection it opened."""
        self.config = config
        self.transports = transports
        self.name = config.venue
        self.metrics = metrics if metrics is not None else MetricsRegistry()
        self._clock = clock
        self._instruments: dict[str, Instrument] = {}
        self._products: dict[str, str] = {}
        self._codec = ThalexCodec(config.venue, self._instruments)
        self._listeners = Listeners(self.name, self.metrics)
        self._router = ChannelRouter()
        self._rpc = RpcSession(
            on_notification=self._router.on_notification,
            on_late_response=self._on_late_response,
            venue=config.venue,
            metrics=self.metrics,
            clock=clock,
            default_timeout_s=config.request_timeout_s,
            message_rate=config.default_message_rate,
            throttle_backoff_s=config.throttle_backoff_s,
        )
        self._router.bind(self._rpc)
        self._ids = ClientOrderIds(start=max(1, clock.time_ns() // 1000))
        queries = Queries(self._rpc, self.name, self.metrics)
        emit = self._listeners.emit
        self._market = MarketData(
            config,
            rpc=self._rpc,
            queries=queries,
            codec=self._codec,
            instruments=self._instruments,
            products=self._products,
            handlers=self._router.handlers,
            emit=emit,
            clock=clock,
            metrics=self.metrics,
        )
        self._orders = OrderEntry(
            config,
            rpc=self._rpc,
            queries=queries,
            codec=self._codec,
            ids=self._ids,
            instruments=self._instruments,
            products=self._products,
            emit=emit,
            clock=clock,
            metrics=self.metrics,
        )
        self._session = ThalexSession(
            config,
            rpc=self._rpc,
            queries=queries,
            codec=self._codec,
            emit=emit,
            clock=clock,
            metrics=self.metrics,
            market=self._market,
            orders=self._orders,
            connect=transports.websocket,
        )
        self.place_order_now = self._orders.place_order_now
        self.cancel_order_now = self._orders.cancel_order_now
        self.amend_order_now = self._orders.amend_order_now
        self.order_budget = self._rpc.budget_now
        self.order_budget_wait_s = self._rpc.budget_wait_s
        self._register_private_handlers()
        for symbol in config.symbols:
            self._market.want(symbol, books=True, trades=True)

    def __repr__(self) -> str:
        # never the private key: tracebacks and debuggers print objects whole
        return f"ThalexAdapter({self.name}, {self.config.url})"

    def _register_private_handlers(self) -> None:
        handlers = self._router.handlers
        handlers["session.orders"] = self._orders.on_orders
        handlers["account.orders"] = self._orders.on_orders
        handlers["account.trade_history"] = self._orders.on_trades
        handlers["account.portfolio"] = self._session.on_portfolio
        handlers[MM_PROTECTION_CHANNEL] = self._orders.on_mm_protection
        handlers["system"] = self._session.on_system

    def _on_late_response(self, late: LateResponse) -> None:
        self._orders.on_late_response(late)

    def _on_mm_protection(self, channel: str, payload: msgspec.Raw, receive_ns: int) -> None:
        self._orders.on_mm_protection(channel, payload, receive_ns)

    # -- hooks set by callers ----------------------------------------------------------------
    @property
    def order_written(self) -> Callable[[str, int], None] | None:
        """Called with (client order id, ``time.monotonic_ns()``) once an insert's bytes are written."""
        return self._orders.order_written

    @order_written.setter
    def order_written(self, hook: Callable[[str, int], None] | None) -> None:
        self._orders.order_written = hook

    @property
    def notification_tap(self) -> Callable[[str, msgspec.Raw, int], None] | None:
        """Set by a market-data recorder: (channel, raw notification, receive_ns) of every push."""
        return self._router.tap

    @notification_tap.setter
    def notification_tap(self, tap: Callable[[str, msgspec.Raw, int], None] | None) -> None:
        self._router.tap = tap

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> ThalexAdapter:
        await self._session.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._session.stop()

    @property
    def is_ready(self) -> bool:
        """Logged in, protected, subscribed and reconciled on the current connection."""
        return self._session.is_ready

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        await self._session.wait_ready(timeout_s)

    def reconnect(self) -> None:
        """Drop the connection and go through the whole login/resubscribe/reconcile again."""
        self._session.reconnect()

    @property
    def rpc(self) -> RpcSession:
        return self._rpc

    @property
    def websocket(self) -> ReconnectingWebSocket | None:
        return self._session.websocket

    @property
    def account_number(self) -> str | None:
        return self._session.account_number

    @property
    def last_system_event(self) -> str | None:
        return self._session.last_system_event

    @property
    def reconciled_open_orders(self) -> list[OrderUpdate]:
        return self._session.reconciled_open_orders

    @property
    def reconciled_positions(self) -> list[PositionUpdate]:
        return self._session.reconciled_positions

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.add(listener)

    # -- instruments and market data ---------------------------------------------------------
    @property
    def instruments(self) -> Mapping[str, Instrument]:
        return MappingProxyType(self._instruments)

    def product_of(self, symbol: str) -> str | None:
        return self._products.get(symbol)

    async def load_instruments(self) -> dict[str, Instrument]:
        """``public/instruments``: active outrights (combinations are skipped)."""
        return await self._market.load_instruments()

    async def subscribe(self, symbols: Sequence[str], *, books: bool = True, trades: bool = True) -> None:
        """Book (with its trades) and ticker channels; kept across reconnects."""
        await self._market.subscribe(symbols, books=books, trades=trades)

    def book(self, symbol: str) -> OrderBook | None:
        state = self._market.books.get(symbol)
        return None if state is None else state.book

    def book_synced(self, symbol: str) -> bool:
        state = self._market.books.get(symbol)
        return state is not None and state.sync.is_synced

    def synchronizer(self, symbol: str) -> BookSynchronizer | None:
        """The book's synchronizer: its counters (gaps, crossed books, stalls) are the book's health."""
        state = self._market.books.get(symbol)
        return None if state is None else state.sync

    def ticker(self, symbol: str) -> ThalexTicker | None:
        """The latest ``ticker`` push (mark price, index, funding) for a subscribed symbol."""
        return self._market.tickers.get(symbol)

    def status(self) -> VenueStatus:
        """The session's message-rate bucket used (a one-second burst at the session's rate)."""
        bucket = self._rpc.bucket
        used = 1.0 - max(0.0, bucket.tokens) / bucket.capacity if bucket.capacity else 0.0
        return VenueStatus({"messages_1s": min(1.0, max(0.0, used))}, {})

    # -- orders ------------------------------------------------------------------------------
    @property
    def stats_repeated_updates(self) -> int:
        """Answers and pushes that repeated a state already told (dropped, never emitted twice)."""
        return self._orders.stats_repeated_updates

    @property
    def mm_protection_remaining(self) -> LruMap[str, float]:
        """What the venue last pushed as remaining per protected product (bounded LRU)."""
        return self._orders.mm_protection_remaining

    def live_orders(self) -> list[OrderUpdate]:
        """Orders this adapter believes open (from answers and pushes)."""
        return self._orders.live_orders()

    def unresolved(self) -> list[str]:
        """Client ids of inserts whose outcome is still unknown."""
        return self._orders.unresolved()

    async def place_order(self, request: OrderRequest) -> OrderUpdate:
        """``private/insert``; FOK is not a Thalex time in force and is refused locally."""
        return await self._orders.place_order(request)

    async def place_orders(self, requests: Sequence[OrderRequest]) -> list[OrderUpdate | VenueError]:
        """Thalex has no batch insert for plain orders (mass quotes are the batch): one by one."""
        return await self._orders.place_orders(requests)

    async def amend_order(self, request: AmendRequest) -> OrderUpdate:
        """``private/amend``: new price and new *total* amount (same price, smaller size keeps priority)."""
        return await self._orders.amend_order(request)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderUpdate:
        """``private/cancel``; an order the venue no longer has raises OrderNotFoundError."""
        return await self._orders.cancel_order(symbol, client_order_id)

    async def cancel_all(self, symbol: str | None = None) -> int:
        """Every order (``private/cancel_all``), or this adapter's live orders of one symbol."""
        return await self._orders.cancel_all(symbol)

    async def set_mm_protection(
        self, product: str, trade_amount: str | Decimal, quote_amount: str | Decimal
    ) -> None:
        """``private/set_mm_protection``: required before mass quoting; re-applied after reconnects."""
        await self._orders.set_mm_protection(product, trade_amount, quote_amount)

    async def mass_quote(self, quotes: Sequence[MassQuote]) -> MassQuoteReport:
        """``private/mass_quote``: each given side replaces that side; one level is sent as ``{a, p}``."""
        return await self._orders.mass_quote(quotes)

    async def cancel_mass_quote(self, product: str | None = None) -> None:
        """``private/cancel_mass_quote``: pulls mass quotes (all sessions) and resets protection."""
        await self._orders.cancel_mass_quote(product)

    # -- queries -----------------------------------------------------------------------------
    async def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        return await self._orders.open_orders(symbol)

    async def query_order(self, symbol: str, client_order_id: str) -> OrderUpdate | None:
        """Open orders first, then recent order history of the symbol; None when neither has it."""
        return await self._orders.query_order(symbol, client_order_id)

    async def balances(self) -> list[BalanceUpdate]:
        """``private/account_summary`` cash lines."""
        return await self._session.balances()

    async def positions(self) -> list[PositionUpdate]:
        """``private/portfolio``: one signed position per instrument."""
        return await self._session.positions()
