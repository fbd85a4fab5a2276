"""The Binance venue adapter (spot or USD-M futures): one class, parameterized by ``Market``.

It wires the governed REST client, the market-stream session and the user-data stream
behind the ``VenueAdapter`` protocol, and owns the two pieces of state that keep trading
honest:

- **Reconciliation.** After the user stream (re)connects, or the REST side recovers from
  transport failures, events may have been missed. The adapter then fetches open orders,
  balances and (USD-M) positions, settles every order it thought open or whose outcome was
  unknown, emits the results as events, and only then emits ``ConnectionEvent(stream="account",
  state="synced")``. Until that point ``place_order`` **waits** (up to ``ready_timeout_s``)
  and then **refuses** with ``VenueUnavailableError`` without sending anything; cancels are
  never held back, because removing risk is always allowed.
- **Unknown outcomes.** A new order that timed out, lost its connection or met a 5xx raises
  ``OrderOutcomeUnknownError`` and is never re-sent. The adapter settles it by client order
  id: a user-data event, a ``GET /order`` query, or, once the request's recvWindow has passed
  at the venue without the order appearing, a REJECTED update (Binance refuses any request
  older than its recvWindow, so it can no longer be created).

``mass_quote`` is emulated: cancels of the instrument-side's previous quotes first (high
priority in the limiter), then post-only placements that run only if the rate budget admits
them now; every item that fails is reported in ``MassQuoteReport.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec

from hftkit.book import OrderBook
from hftkit.codec.decode import DECODE_FAILURES
from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.types import (
    BalanceUpdate,
    BookTicker,
    ConnectionEvent,
    Instrument,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionUpdate,
    Side,
)
from hftkit.metrics import MetricsRegistry
from hftkit.transport.http import TransportError
from hftkit.transport.transports import REAL_TRANSPORTS, Transports
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
    VenueCapabilities,
    VenueError,
    VenueEvent,
    VenueStatus,
    place_one_by_one,
)
from hftkit.venues.binance import codec
from hftkit.venues.binance.auth import BinanceCredentials
from hftkit.venues.binance.build import modify_params, order_params, order_shape, order_variables
from hftkit.venues.binance.endpoints import USDM_MAX_BATCH_ORDERS, Market
from hftkit.venues.binance.rest import (
    BinanceRestClient,
    RestConfig,
    TimestampRejectedError,
    VenueUnavailableError,
    classify_answer,
)
from hftkit.venues.binance.streams import MarketStreamSession, StreamConfig
from hftkit.venues.binance.user_data import (
    SIDES,
    STATUSES,
    UserDataParser,
    UserEvent,
    instruments_from_exchange_info,
)
from hftkit.venues.binance.user_stream import FuturesUserStream, SpotUserStream, UserStreamConfig
from hftkit.venues.binance.ws_api import (
    SessionNotReadyError,
    WebSocketApiConfig,
    WebSocketApiSession,
    rate_usage,
)

log = logging.getLogger(__name__)

_order_decoder = msgspec.json.Decoder(codec.OrderResponse)
# a tuple: membership by identity, where a set would hash the member through Enum's Python __hash__
_OPEN_STATUSES = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_NEW)
_TERMINAL_MEMORY = 4096


def binance_capabilities(market: Market) -> VenueCapabilities:
    """What a Binance market supports through this adapter (the backtest's simulated venue too)."""
    usdm = market is Market.USDM
    return VenueCapabilities(
        amend=usdm,  # USD-M order.modify / PUT /fapi/v1/order; spot only cuts size (keepPriority)
        amend_keeps_priority_on_size_down=False,  # every USD-M modify loses queue priority
        native_mass_quote=False,
        cancel_on_disconnect=False,
        post_only_reprices=False,
        positions=usdm,
        max_batch_orders=USDM_MAX_BATCH_ORDERS if usdm else 1,
    )


class UnsupportedOperationError(VenueError):
    """The venue has no such operation (see ``capabilities``)."""


@dataclass(frozen=True)
class BinanceConfig:
    market: Market = Market.SPOT
    name: str = ""  # empty: "binance" (spot) or "binance_usdm"
    rest: RestConfig = field(default_factory=RestConfig)
    streams: StreamConfig = field(default_factory=StreamConfig)
    user_stream: UserStreamConfig = field(default_factory=UserStreamConfig)
    user_data: bool = True  # with credentials: run the user stream and reconcile
    ready_timeout_s: float = 5.0  # how long place_order waits for reconciliation before refusing
    start_timeout_s: float = 10.0  # how long __aenter__ waits for the first reconciliation
    resolve_interval_s: float = 0.25  # first wait before settling an unknown outcome; doubles per attempt
    resolve_max_interval_s: float = 2.0  # the backoff's bound: settlement never stops until known
    resolve_margin_ms: int = 1000  # beyond recvWindow before an absent order counts as never created
    reconcile_retry_max_s: float = 2.0
    client_order_prefix: str = "hk"
    # Shut down safe: on close, cancel by client id every order this adapter placed that may rest
    # (open or of unknown outcome), waiting at most exit_timeout_s for the answers (as Thalex does).
    cancel_on_exit: bool = True
    exit_timeout_s: float = 3.0
    # How new orders and cancels go out: "rest", or "websocket_api", the venue's low-latency path
    # (one persistent signed session, one frame per order, written inside the decision's
    # callback); while that session is down they go over REST. ``order_api_urls``: its URLs.
    order_transport: str = "rest"
    order_api_urls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.order_transport not in ("rest", "websocket_api"):
            raise ValueError(
                f"order_transport must be 'rest' or 'websocket_api', got {self.order_transport!r}"
            )
        if self.order_transport == "websocket_api" and not self.order_api_urls:
            raise ValueError("order_transport 'websocket_api' needs order_api_urls")

    @property
    def venue(self) -> str:
        return self.name or ("binance" if self.market is Market.SPOT else "binance_usdm")


@dataclass
class _Unresolved:
    request: OrderRequest
    instrument: Instrument
    deadline_ms: int  # venue time after which the order can no longer be created
    cancel: bool = False  # a cancel's outcome is unknown: only a terminal state settles it


@dataclass
class AdapterStats:
    listener_errors: int = 0
    reconciliations: int = 0
    reconcile_failures: int = 0
    resolved_by_event: int = 0
    resolved_by_query: int = 0
    resolved_as_absent: int = 0
    resolved_by_cancel: int = 0
    closed_unknown_to_venue: int = 0  # open in our view, unknown to the venue at reconciliation
    cancelled_on_exit: int = 0
    exit_cancel_failures: int = 0
    refused_unsynced: int = 0
    local_rejects: int = 0


class BinanceAdapter:
    """``async with BinanceAdapter(credentials, BinanceConfig(market=Market.USDM)) as venue``."""

    def __init__(
        self,
        credentials: BinanceCredentials | None,
        config: BinanceConfig | None = None,
        *,
        clock: Clock = REAL_CLOCK,
        metrics: MetricsRegistry | None = None,
        transports: Transports = REAL_TRANSPORTS,
    ) -> None:
        """``transports``: where REST, order and WebSocket bytes go (default: the network); an
        in-memory venue from ``hftkit.testing`` passes its own. Fixed here, never per request."""
        self.config = config = config or BinanceConfig()
        self.transports = transports
        self.market = config.market
        self.name = config.venue
        self.order_written: Callable[[str, int], None] | None = None
        self.metrics = metrics  # when given: book_apply_ns{venue} per depth update
        self.capabilities = binance_capabilities(config.market)
        self.stats = AdapterStats()
        self._credentials = credentials
        self.rest = BinanceRestClient(
            config.market,
            credentials,
            config.rest,
            venue=self.name,
            clock=clock,
            http=transports.http,
            order_pool=transports.order_pool,
        )
        self.rest.on_recovered = lambda: self._schedule_reconcile("rest recovered")
        self._instruments: dict[str, Instrument] = {}
        self._listeners: list[EventListener] = []
        self.streams: MarketStreamSession | None = None
        self.user_stream: SpotUserStream | FuturesUserStream | None = None
        self.order_api: WebSocketApiSession | None = None
        self._ready = asyncio.Event()
        self._reconcile_task: asyncio.Task[None] | None = None
        self._reconcile_again = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._open: dict[str, OrderUpdate] = {}  # client id -> last update of an order believed open
        self._unresolved: dict[str, _Unresolved] = {}
        self._terminal: dict[str, None] = {}  # recently closed client ids, oldest first (bounded)
        self._quotes: dict[tuple[str, Side], list[str]] = {}
        # the account's texts -> steps: user-data reports and order answers (rebuilt at start,
        # with the instruments of exchangeInfo)
        self._user_data = UserDataParser(self.name, self._instruments)
        self._ids = itertools.count(1)
        self._session_tag = _base36(time.time_ns() // 1_000_000)[-7:]
        self._closed = False

    def __repr__(self) -> str:
        # never the credentials: tracebacks and debuggers print objects whole
        return f"BinanceAdapter({self.name}, credentials={'set' if self._credentials else 'none'})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> BinanceAdapter:
        await self.rest.__aenter__()
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _start(self) -> None:
        config = self.config
        # the account's own limits first: every later answer's usage counts against them
        info = await self.rest.exchange_info()
        self._instruments = instruments_from_exchange_info(self.name, info)
        self._user_data = UserDataParser(self.name, self._instruments)
        self.rest.adopt_limits(info.rate_limits)
        if self._credentials is not None:
            await self.rest.sync_time()
        self.streams = MarketStreamSession(
            self.market,
            self.rest,
            self._instruments,
            self._emit,
            config.streams,
            venue=self.name,
            connect=self.transports.websocket,
        )
        if self.metrics is not None:
            self.streams.book_apply = self.metrics.histogram("book_apply_ns", venue=self.name)
        if self._credentials is None:
            return
        if config.order_transport == "websocket_api":
            await self._start_order_api(self._credentials)
        if not config.user_data:
            return
        parser = self._user_data
        if self.market is Market.SPOT:
            self.user_stream = SpotUserStream(
                self._credentials,
                self.rest,
                parser,
                self._on_user_events,
                self._on_user_ready,
                self._on_user_lost,
                config.user_stream,
                connect=self.transports.websocket,
            )
        else:
            self.user_stream = FuturesUserStream(
                self.rest,
                parser,
                self._on_user_events,
                self._on_user_ready,
                self._on_user_lost,
                config.user_stream,
                connect=self.transports.websocket,
            )
        await self.user_stream.start()
        try:
            await asyncio.wait_for(self._ready.wait(), config.start_timeout_s)
        except TimeoutError:
            raise VenueUnavailableError(
                f"user stream and reconciliation not ready within {config.start_timeout_s} s", venue=self.name
            ) from None

    async def _start_order_api(self, credentials: BinanceCredentials) -> None:
        config = self.config
        self.order_api = WebSocketApiSession(
            credentials,
            WebSocketApiConfig(
                urls=config.order_api_urls,
                request_timeout_s=config.rest.order_timeout_s,
                recv_window_ms=config.rest.recv_window_ms,
            ),
            clock_offset=self.rest.clock_offset,
            name=f"{self.name}/ws-api-orders",
            connect=self.transports.websocket,
        )
        self.order_api.start()
        try:
            await self.order_api.wait_connected(config.start_timeout_s)
        except TimeoutError:
            log.warning("%s: WebSocket API not connected yet; orders go over REST until it is", self.name)

    async def close(self) -> None:
        if not self._closed and self.config.cancel_on_exit and self._credentials is not None:
            await self._cancel_everything_on_exit()
        self._closed = True
        self._ready.clear()
        tasks = [*self._tasks]
        if self._reconcile_task is not None:
            tasks.append(self._reconcile_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.user_stream is not None:
            await self.user_stream.close()
        if self.order_api is not None:
            await self.order_api.close()
        if self.streams is not None:
            await self.streams.close()
        await self.rest.close()

    # -- events ------------------------------------------------------------------------------

    @property
    def instruments(self) -> Mapping[str, Instrument]:
        return self._instruments

    @property
    def is_ready(self) -> bool:
        """True when the account is reconciled and orders may go out."""
        return self._ready.is_set()

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def _emit(self, event: VenueEvent) -> None:
        if type(event) is OrderUpdate:
            self._track(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                self.stats.listener_errors += 1
                log.exception("%s: listener failed on %r", self.name, type(event).__name__)

    def _track(self, update: OrderUpdate) -> None:
        client_order_id = update.client_order_id
        entry = self._unresolved.get(client_order_id)
        if (
            entry is not None
            and update.status is not OrderStatus.UNKNOWN
            and (update.status.is_terminal or not entry.cancel)
        ):
            del self._unresolved[client_order_id]
            self.stats.resolved_by_event += 1
        if update.status in _OPEN_STATUSES:
            # A REST answer can arrive after the user-data event that already closed the order.
            if client_order_id not in self._terminal:
                self._open[client_order_id] = update
        elif update.status is not OrderStatus.UNKNOWN:
            self._open.pop(client_order_id, None)
            terminal = self._terminal
            terminal[client_order_id] = None
            if len(terminal) > _TERMINAL_MEMORY:
                del terminal[next(iter(terminal))]

    def _on_user_events(self, events: list[UserEvent]) -> None:
        for event in events:
            self._emit(event)

    def _on_user_ready(self) -> None:
        self._emit(ConnectionEvent(venue=self.name, stream="user", state="connected"))
        self._schedule_reconcile("user stream connected")

    def _on_user_lost(self, reason: str) -> None:
        self._ready.clear()
        self._emit(ConnectionEvent(venue=self.name, stream="user", state="disconnected", reason=reason))

    # -- market data -------------------------------------------------------------------------

    async def subscribe(self, symbols: Sequence[str], *, books: bool = True, trades: bool = True) -> None:
        if self.streams is None:
            raise VenueError("adapter not started: use 'async with'", venue=self.name)
        await self.streams.subscribe(symbols, books=books, trades=trades)

    def book(self, symbol: str) -> OrderBook | None:
        """The synchronized book of a subscribed symbol (trust it only while ``book_synced``)."""
        return self.streams.book(symbol) if self.streams is not None else None

    def book_synced(self, symbol: str) -> bool:
        sync = self.streams.synchronizer(symbol) if self.streams is not None else None
        return sync is not None and sync.is_synced

    def status(self) -> VenueStatus:
        """The REST weight and order windows used (as the venue's headers corrected them), breakers."""
        budget = {
            window.name: (window.used / window.limit if window.limit else 0.0)
            for window in self.rest.limiter.usage()
        }
        breakers = {name: state.value for name, state in self.rest.breakers.states().items()}
        return VenueStatus(budget, breakers)

    # -- orders ------------------------------------------------------------------------------

    def _instrument(self, symbol: str) -> Instrument:
        instrument = self._instruments.get(symbol)
        if instrument is None:
            raise OrderRejectedError(f"unknown symbol {symbol!r}", venue=self.name)
        return instrument

    async def _wait_ready(self) -> None:
        if self._ready.is_set():
            return
        if self._credentials is None or not self.config.user_data:
            return  # no user stream: nothing to reconcile against
        try:
            await asyncio.wait_for(self._ready.wait(), self.config.ready_timeout_s)
        except TimeoutError:
            self.stats.refused_unsynced += 1
            raise VenueUnavailableError(
                "account not reconciled since the last reconnect; order not sent", venue=self.name
            ) from None

    def new_client_order_id(self) -> str:
        """A client order id unique to this session (Binance allows 36 chars of [A-Za-z0-9_.:/-])."""
        return f"{self.config.client_order_prefix}{self._session_tag}{next(self._ids)}"

    def _check(self, instrument: Instrument, request: OrderRequest) -> None:
        """Refuse locally what Binance would reject by filter: it saves rate budget and a round trip."""
        problem = ""
        if request.quantity <= 0:
            problem = "quantity must be positive"
        elif request.order_type is not OrderType.MARKET:
            if request.price <= 0:
                problem = "price must be positive"
            elif not instrument.meets_minimums(request.price, request.quantity):
                problem = "below the minimum quantity or notional (or above the maximum quantity)"
        if problem:
            self.stats.local_rejects += 1
            raise OrderRejectedError(f"{request.client_order_id}: {problem}; not sent", venue=self.name)

    def place_order_now(self, request: OrderRequest, on_answer: OrderAnswer) -> bool:
        """``order.place`` on the WebSocket API session, written before returning; the answer goes
        to ``on_answer`` from the frame that carries it. False (nothing sent): no session, the
        account not reconciled, or no rate budget now: ``place_order`` waits or uses REST."""
        if not self._orders_ready():
            return False
        instrument = self._instrument(request.symbol)
        self._check(instrument, request)
        api = self.order_api
        if api is not None and api.ready:
            if not self.rest.admit_now("new_order"):
                return False
            try:
                self._place_over_api(api, instrument, request, on_answer)
            except SessionNotReadyError:
                return False
            return True
        written = self.order_written
        client_order_id = request.client_order_id

        def answered(answer: codec.OrderResponse | VenueError) -> None:
            if isinstance(answer, codec.OrderResponse):
                update = self._order_update(instrument, answer, request.side)
                self._track(update)
                outcome: OrderUpdate | VenueError = update
            else:
                outcome = self._refusal(answer)
            self._tell_owner(instrument, request, "new_order", outcome, on_answer)

        return self.rest.new_order_now(
            instrument,
            request,
            answered,
            on_sent=None if written is None else lambda sent_ns: written(client_order_id, sent_ns),
        )

    def order_budget(self) -> int:
        """``BudgetsOrders``: new orders the account's rate windows let out now (cancels draw on
        a reserve of their own)."""
        return self.rest.affordable("new_order")

    def order_budget_wait_s(self) -> float:
        return self.rest.affordable_in_s("new_order")

    def _orders_ready(self) -> bool:
        return self._ready.is_set() or self._credentials is None or not self.config.user_data

    def _place_over_api(
        self,
        api: WebSocketApiSession,
        instrument: Instrument,
        request: OrderRequest,
        on_answer: OrderAnswer,
    ) -> None:
        written = self.order_written
        client_order_id = request.client_order_id
        api.shaped_request_now(
            order_shape(request),
            "order.place",
            order_variables(instrument, request),
            lambda: order_params(self.market, instrument, request),
            _ApiAnswer(self, instrument, request, "new_order", on_answer),
            on_sent=None if written is None else lambda sent_ns: written(client_order_id, sent_ns),
        )

    async def _awaited_over_api(
        self,
        send: Callable[[OrderAnswer], None],
        instrument: Instrument,
        request: OrderRequest,
        name: str,
    ) -> OrderUpdate | None:
        """One order request on the WebSocket API session (``send`` writes it), awaited: the
        venue's order, or its refusal raised; None when the session went down before the write
        (the caller uses REST). A wait cancelled by the caller leaves the outcome unknown."""
        answered: asyncio.Future[OrderUpdate | VenueError] = asyncio.get_running_loop().create_future()
        try:
            send(answered.set_result)
        except SessionNotReadyError:
            return None
        try:
            outcome = await answered
        except asyncio.CancelledError:
            self._outcome_unknown(instrument, request, name)
            raise
        if isinstance(outcome, VenueError):
            raise outcome
        return outcome

    def _api_answer(
        self, instrument: Instrument, request: OrderRequest, name: str, answer: codec.WebSocketApiResponse
    ) -> OrderUpdate | VenueError:
        """One WebSocket API order answer as ``place_order``/``cancel_order`` would return or raise it."""
        client_order_id = request.client_order_id
        usage = rate_usage(answer)
        if usage:
            self.rest.observe_window_counts(usage)
        if answer.status == 200 and answer.result:
            try:
                response = _order_decoder.decode(answer.result)
            except DECODE_FAILURES as error:
                self.rest.stats.outcome_unknown += 1
                return OrderOutcomeUnknownError(
                    f"{name} {client_order_id}: 200 with an unreadable answer: {error}",
                    venue=self.name,
                    client_order_id=client_order_id,
                )
            update = self._order_update(instrument, response, request.side)
            self._track(update)
            return update
        code = answer.error.code if answer.error is not None else None
        message = answer.error.msg if answer.error is not None else "no error object"
        retry_after = 0.0
        if answer.status in (418, 429):
            retry_after = (
                self.config.rest.default_ban_s
                if answer.status == 418
                else self.config.rest.default_retry_after_s
            )
            self.rest.limiter.block_for(retry_after)
        failure = classify_answer(
            name,
            answer.status,
            code,
            f"{name} over the WebSocket API: status {answer.status} code {code}: {message}",
            venue=self.name,
            client_order_id=client_order_id,
            retry_after_s=retry_after,
        )
        return self._refusal(failure)

    def _refusal(self, error: VenueError) -> VenueError:
        """A refusal of an order written inside a callback (no second attempt there)."""
        if isinstance(error, TimestampRejectedError):
            # refused before execution: nothing was placed; the clock is resynced for the next
            self._spawn(self._resync_time(), "resync time")
            return OrderRejectedError(str(error), venue=self.name, code=error.code)
        return error

    def _tell_owner(
        self,
        instrument: Instrument,
        request: OrderRequest,
        name: str,
        outcome: OrderUpdate | VenueError,
        on_answer: OrderAnswer,
    ) -> None:
        if isinstance(outcome, OrderOutcomeUnknownError):
            self._outcome_unknown(instrument, request, name)
        try:
            on_answer(outcome)
        except Exception:
            log.exception("%s: the owner of %s failed on its answer", self.name, request.client_order_id)

    def _outcome_unknown(self, instrument: Instrument, request: OrderRequest, name: str) -> None:
        """A request that may or may not have acted: settled by client id, never re-sent."""
        if name == "new_order":
            self._register_unknown(instrument, request)
        elif name == "cancel_order":
            self._register_unknown_cancel(instrument, request.client_order_id)
        # a modify of unknown outcome: the order exists either way; its stream and the next
        # reconciliation say which price and size it has

    async def _resync_time(self) -> None:
        with contextlib.suppress(VenueError, TransportError):
            await self.rest.sync_time()

    async def place_order(self, request: OrderRequest) -> OrderUpdate:
        instrument = self._instrument(request.symbol)
        self._check(instrument, request)
        await self._wait_ready()
        api = self.order_api
        if api is not None and api.ready:
            await self.rest.admit("new_order")
            send = functools.partial(self._place_over_api, api, instrument, request)
            placed = await self._awaited_over_api(send, instrument, request, "new_order")
            if placed is not None:
                return placed  # else the session went down before the write: REST below
        written = self.order_written
        client_order_id = request.client_order_id
        try:
            response = await self.rest.new_order(
                instrument,
                request,
                on_sent=None if written is None else lambda sent_ns: written(client_order_id, sent_ns),
            )
        except (OrderOutcomeUnknownError, asyncio.CancelledError):
            # cancelled by the caller (its own timeout) while the request may be out: unknown too
            self._register_unknown(instrument, request)
            raise
        update = self._order_update(instrument, response, request.side)
        self._track(update)
        return update

    async def book_tickers(self, symbols: Sequence[str]) -> list[BookTicker]:
        """Best bid/ask of many symbols in one request, on each instrument's grids."""
        tickers = []
        for row in await self.rest.book_tickers(symbols):
            instrument = self._instrument(row.symbol)
            tickers.append(
                BookTicker(
                    venue=self.name,
                    symbol=row.symbol,
                    update_id=row.update_id,
                    bid_price=instrument.ticks.to_steps(row.bid_price),
                    bid_size=instrument.lots.to_steps(row.bid_quantity),
                    ask_price=instrument.ticks.to_steps(row.ask_price),
                    ask_size=instrument.lots.to_steps(row.ask_quantity),
                    event_time_ms=row.time,
                )
            )
        return tickers

    async def prices(self, symbols: Sequence[str]) -> dict[str, int]:
        """Last traded price of many symbols in one request, in ticks."""
        return {
            row.symbol: self._instrument(row.symbol).ticks.to_steps(row.price)
            for row in await self.rest.prices(symbols)
        }

    async def tickers_24h(self, symbols: Sequence[str]) -> list[codec.Ticker24h]:
        """Rolling 24 h statistics of many symbols in one request (decimal strings)."""
        return await self.rest.tickers_24h(symbols)

    async def place_orders(self, requests: Sequence[OrderRequest]) -> list[OrderUpdate | VenueError]:
        """USD-M: ``batchOrders`` in chunks of 5 (one request each); spot: one by one. A batch whose
        request failed with an unknown outcome puts every order of it under settlement."""
        if self.capabilities.max_batch_orders <= 1:
            return await place_one_by_one(self.place_order, requests)
        results: list[OrderUpdate | VenueError] = []
        size = self.capabilities.max_batch_orders
        for start in range(0, len(requests), size):
            results.extend(await self._place_batch(list(requests[start : start + size])))
        return results

    async def _place_batch(self, requests: list[OrderRequest]) -> list[OrderUpdate | VenueError]:
        checked: list[tuple[Instrument, OrderRequest]] = []
        refused: dict[int, VenueError] = {}
        for index, request in enumerate(requests):
            try:
                instrument = self._instrument(request.symbol)
                self._check(instrument, request)
            except VenueError as error:
                refused[index] = error
                continue
            checked.append((instrument, request))
        answers: list[codec.OrderResponse | VenueError] = []
        if checked:
            await self._wait_ready()
            written = self.order_written
            ids = [request.client_order_id for _, request in checked]

            def sent(sent_ns: int) -> None:
                if written is not None:
                    for client_order_id in ids:
                        written(client_order_id, sent_ns)

            try:
                answers = await self.rest.batch_orders(checked, on_sent=sent)
            except asyncio.CancelledError:
                for instrument, request in checked:  # the request may be out: settle every order
                    self._register_unknown(instrument, request)
                raise
            except OrderOutcomeUnknownError as error:
                answers = [error] * len(checked)  # each is put under settlement below
        results: list[OrderUpdate | VenueError] = []
        answered = iter(zip(checked, answers, strict=True))
        for index in range(len(requests)):
            if index in refused:
                results.append(refused[index])
                continue
            (instrument, request), answer = next(answered)
            if isinstance(answer, OrderOutcomeUnknownError):
                self._register_unknown(instrument, request)
                results.append(answer)
            elif isinstance(answer, VenueError):
                results.append(answer)
            else:
                update = self._order_update(instrument, answer, request.side)
                self._track(update)
                results.append(update)
        return results

    def _register_unknown(
        self, instrument: Instrument, request: OrderRequest, *, cancel: bool = False
    ) -> None:
        client_order_id = request.client_order_id
        if self._closed or client_order_id in self._unresolved:
            return
        deadline = (
            self.rest.clock_offset.now_ms() + self.config.rest.recv_window_ms + self.config.resolve_margin_ms
        )
        self._unresolved[client_order_id] = _Unresolved(request, instrument, deadline, cancel)
        self._spawn(self._resolve(client_order_id), f"resolve:{client_order_id}")

    def _register_unknown_cancel(self, instrument: Instrument, client_order_id: str) -> None:
        """A cancel whose outcome is unknown: settled by sending it again (cancels are idempotent)."""
        last = self._open.get(client_order_id)
        entry = self._unresolved.get(client_order_id)
        if entry is not None:
            entry.cancel = True
            return
        if last is None:
            return  # not open in our view: nothing can rest
        request = OrderRequest(
            client_order_id=client_order_id,
            symbol=last.symbol,
            side=last.side,
            quantity=last.quantity,
            price=last.price,
        )
        self._register_unknown(instrument, request, cancel=True)

    async def _resolve(self, client_order_id: str) -> None:
        """Settle an order of unknown outcome by client order id until it is known (bounded backoff)."""
        delay = self.config.resolve_interval_s
        while not self._closed:
            await asyncio.sleep(delay)
            delay = min(delay * 2, max(self.config.resolve_max_interval_s, self.config.resolve_interval_s))
            entry = self._unresolved.get(client_order_id)
            if entry is None:
                return  # an event or a reconciliation settled it
            if await self._settle(client_order_id, entry):
                return

    async def _settle(self, client_order_id: str, entry: _Unresolved) -> bool:
        if entry.cancel:
            return await self._settle_by_cancel(client_order_id, entry)
        try:
            response = await self.rest.query_order(entry.instrument, client_order_id)
        except (VenueError, TransportError) as error:
            log.info("%s: query of %s failed (%s); will retry", self.name, client_order_id, error)
            return False
        if client_order_id not in self._unresolved:
            return True
        if response is not None:
            del self._unresolved[client_order_id]
            self.stats.resolved_by_query += 1
            self._emit(self._order_update(entry.instrument, response, entry.request.side))
            return True
        if self.rest.clock_offset.now_ms() < entry.deadline_ms:
            return False  # it may still be on its way to the matching engine
        del self._unresolved[client_order_id]
        self.stats.resolved_as_absent += 1
        request = entry.request
        self._emit(
            OrderUpdate(
                venue=self.name,
                symbol=request.symbol,
                client_order_id=client_order_id,
                venue_order_id=None,
                status=OrderStatus.REJECTED,
                side=request.side,
                price=request.price,
                quantity=request.quantity,
                filled=0,
                reason="absent at the venue after its recvWindow: never created",
            )
        )
        return True

    async def _settle_by_cancel(self, client_order_id: str, entry: _Unresolved) -> bool:
        """Send the cancel again: an answer closes the order; "unknown order" sends us to the query."""
        try:
            response = await self.rest.cancel_order(entry.instrument, client_order_id)
        except OrderNotFoundError:
            response = None  # closed meanwhile (or purged): the query tells how it ended
        except (VenueError, TransportError) as error:
            log.info("%s: cancel of %s failed (%s); will retry", self.name, client_order_id, error)
            return False
        if client_order_id not in self._unresolved:
            return True
        if response is not None:
            del self._unresolved[client_order_id]
            self.stats.resolved_by_cancel += 1
            self._emit(self._order_update(entry.instrument, response, entry.request.side))
            return True
        try:
            found = await self.rest.query_order(entry.instrument, client_order_id)
        except (VenueError, TransportError) as error:
            log.info("%s: query of %s failed (%s); will retry", self.name, client_order_id, error)
            return False
        if client_order_id not in self._unresolved:
            return True
        del self._unresolved[client_order_id]
        self.stats.resolved_by_query += 1
        if found is not None:
            self._emit(self._order_update(entry.instrument, found, entry.request.side))
            return True
        last = self._open.get(client_order_id)
        if last is not None:
            self._emit_gone(last, "unknown to the venue after a cancel: closed")
        return True

    def _emit_gone(self, last: OrderUpdate, reason: str) -> None:
        """An order we hold open that the venue no longer knows: close it in every view, with why.

        Binance keeps no record of some closed orders (cancelled or expired without fills, after a
        while), so the order ended without further fills we could learn of: CANCELED.
        """
        self.stats.closed_unknown_to_venue += 1
        log.warning("%s: %s: %s", self.name, last.client_order_id, reason)
        self._emit(
            msgspec.structs.replace(
                last,
                status=OrderStatus.CANCELED,
                reason=reason,
                event_time_ms=self.rest.clock_offset.now_ms(),
                receive_ns=0,
            )
        )

    async def _cancel_everything_on_exit(self) -> None:
        """Shut down safe: cancel by client id every order that may rest (open or of unknown
        outcome), emit what the venue answers, within ``exit_timeout_s``; logged, never raised."""
        targets: dict[str, tuple[Instrument, Side]] = {}
        for client_order_id, last in self._open.items():
            instrument = self._instruments.get(last.symbol)
            if instrument is not None:
                targets[client_order_id] = (instrument, last.side)
        for client_order_id, entry in self._unresolved.items():
            targets[client_order_id] = (entry.instrument, entry.request.side)
        if not targets or self.rest.closed:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.exit_timeout_s
        attempt = 0
        try:
            async with asyncio.timeout_at(deadline):
                while targets:
                    results = await asyncio.gather(
                        *(
                            self._cancel_on_exit(client_order_id, instrument, side)
                            for client_order_id, (instrument, side) in targets.items()
                        )
                    )
                    for client_order_id, done in zip(list(targets), results, strict=True):
                        if done:
                            del targets[client_order_id]
                    if targets:
                        attempt += 1
                        await asyncio.sleep(min(0.5, 0.02 * 2**attempt))
        except TimeoutError:
            pass
        if targets:
            self.stats.exit_cancel_failures += len(targets)
            log.error(
                "%s: cancel on exit unconfirmed within %.1f s for %s",
                self.name,
                self.config.exit_timeout_s,
                sorted(targets),
            )

    async def _cancel_on_exit(self, client_order_id: str, instrument: Instrument, side: Side) -> bool:
        """One order's cancel on exit; True when its end is known (cancelled, or closed already)."""
        try:
            response = await self.rest.cancel_order(instrument, client_order_id)
        except OrderNotFoundError:
            response = None
        except (VenueError, TransportError) as error:
            log.info("%s: cancel of %s on exit failed (%s)", self.name, client_order_id, error)
            return False
        if response is not None:
            self.stats.cancelled_on_exit += 1
            self._unresolved.pop(client_order_id, None)
            self._emit(self._order_update(instrument, response, side))
            return True
        # nothing to cancel: learn how it ended (filled, cancelled, or never created)
        entry = self._unresolved.get(client_order_id)
        if entry is not None and self.rest.clock_offset.now_ms() < entry.deadline_ms:
            return False  # it may still reach the matching engine: cancel it again
        try:
            if entry is not None:
                return await self._settle(client_order_id, entry)
            found = await self.rest.query_order(instrument, client_order_id)
        except (VenueError, TransportError):
            return False
        last = self._open.get(client_order_id)
        if found is not None:
            self._emit(self._order_update(instrument, found, side))
        elif last is not None:
            self._emit_gone(last, "unknown to the venue on exit: closed")
        return True

    def unresolved(self) -> list[str]:
        """Client ids of orders whose outcome is still unknown."""
        return list(self._unresolved)

    async def amend_order(self, request: AmendRequest) -> OrderUpdate:
        """USD-M: a new price and total quantity in place (``order.modify`` on the WebSocket API
        session, else ``PUT /fapi/v1/order``); the order loses its queue priority. Spot has no such
        amend (only a size cut, keepPriority): cancel and place there."""
        instrument, last = self._amendable(request)
        await self._wait_ready()
        api = self.order_api
        if api is not None and api.ready:
            await self.rest.admit("modify_order")

            def modify(on_answer: OrderAnswer) -> None:
                self._modify_over_api(api, instrument, request, last.side, on_answer)

            as_request = self._modify_request(request, last.side)
            amended = await self._awaited_over_api(modify, instrument, as_request, "modify_order")
            if amended is not None:
                return amended  # else the session went down before the write: REST below
        response = await self.rest.modify_order(
            instrument, request.client_order_id, last.side, request.price, request.quantity
        )
        update = self._order_update(instrument, response, last.side)
        self._track(update)
        return update

    def amend_order_now(self, request: AmendRequest, on_answer: OrderAnswer) -> bool:
        """USD-M ``order.modify`` on the WebSocket API session, written before returning; the
        answer goes to ``on_answer`` from the frame that carries it. False (nothing sent): no
        session, the account not reconciled, or no rate budget now: ``amend_order`` waits or
        uses REST."""
        instrument, last = self._amendable(request)
        api = self.order_api
        if not self._orders_ready() or api is None or not api.ready:
            return False
        if not self.rest.admit_now("modify_order"):
            return False
        try:
            self._modify_over_api(api, instrument, request, last.side, on_answer)
        except SessionNotReadyError:
            return False
        return True

    def _amendable(self, request: AmendRequest) -> tuple[Instrument, OrderUpdate]:
        """The instrument and the open order an amend names, or the refusal that ends it here."""
        if self.market is not Market.USDM:
            raise UnsupportedOperationError(
                "Binance spot does not amend price and size (capabilities.amend is False): cancel and place",
                venue=self.name,
            )
        instrument = self._instrument(request.symbol)
        last = self._open.get(request.client_order_id)
        if last is None:
            raise OrderNotFoundError(f"no open order {request.client_order_id!r} to amend", venue=self.name)
        if request.quantity <= 0 or request.price <= 0:
            raise OrderRejectedError("amend needs a positive price and quantity", venue=self.name)
        return instrument, last

    @staticmethod
    def _modify_request(request: AmendRequest, side: Side) -> OrderRequest:
        """The request a modify's answer is read against."""
        return OrderRequest(
            symbol=request.symbol,
            client_order_id=request.client_order_id,
            side=side,
            quantity=request.quantity,
            price=request.price,
        )

    def _modify_over_api(
        self,
        api: WebSocketApiSession,
        instrument: Instrument,
        request: AmendRequest,
        side: Side,
        on_answer: OrderAnswer,
    ) -> None:
        params = modify_params(instrument, request.client_order_id, side, request.price, request.quantity)
        answer = _ApiAnswer(self, instrument, self._modify_request(request, side), "modify_order", on_answer)
        api.request_now("order.modify", params, answer)

    def cancel_order_now(self, symbol: str, client_order_id: str, on_answer: OrderAnswer) -> bool:
        """``order.cancel`` on the WebSocket API session, written before returning; the answer goes
        to ``on_answer`` from the frame that carries it. False (nothing sent): no session, or no
        rate budget now: ``cancel_order`` waits or uses REST."""
        instrument = self._instrument(symbol)
        api = self.order_api
        if api is None or not api.ready or not self.rest.admit_now("cancel_order"):
            return False
        try:
            self._cancel_over_api(api, instrument, self._cancel_request(symbol, client_order_id), on_answer)
        except SessionNotReadyError:
            return False
        return True

    def _cancel_request(self, symbol: str, client_order_id: str) -> OrderRequest:
        """The request a cancel's answer is read against: the side is the order's own when known."""
        last = self._open.get(client_order_id)
        return OrderRequest(
            symbol=symbol,
            client_order_id=client_order_id,
            side=last.side if last is not None else Side.BUY,
            quantity=0,
        )

    def _cancel_over_api(
        self,
        api: WebSocketApiSession,
        instrument: Instrument,
        request: OrderRequest,
        on_answer: OrderAnswer,
    ) -> None:
        api.request_now(
            "order.cancel",
            {"symbol": request.symbol, "origClientOrderId": request.client_order_id},
            _ApiAnswer(self, instrument, request, "cancel_order", on_answer),
        )

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderUpdate:
        instrument = self._instrument(symbol)
        api = self.order_api
        if api is not None and api.ready:
            await self.rest.admit("cancel_order")
            request = self._cancel_request(symbol, client_order_id)
            cancel = functools.partial(self._cancel_over_api, api, instrument, request)
            cancelled = await self._awaited_over_api(cancel, instrument, request, "cancel_order")
            if cancelled is not None:
                return cancelled  # else the session went down before the write: REST below
        try:
            response = await self.rest.cancel_order(instrument, client_order_id)
        except (OrderOutcomeUnknownError, asyncio.CancelledError):
            self._register_unknown_cancel(instrument, client_order_id)
            raise
        update = self._order_update(instrument, response, SIDES.get(response.side, Side.BUY))
        self._track(update)
        return update

    async def cancel_all(self, symbol: str | None = None) -> int:
        """Cancel every open order (of ``symbol``); returns how many were open."""
        if symbol is not None:
            symbols = [symbol]
            self._instrument(symbol)
        else:
            symbols = sorted({order.symbol for order in await self.rest.open_orders()})
        count = 0
        for name in symbols:
            if self.market is Market.SPOT:
                cancelled = await self.rest.cancel_all(name)
            else:
                cancelled = await self.rest.open_orders(name)
                await self.rest.cancel_all(name)
            count += len(cancelled)
            for client_order_id, last in list(self._open.items()):
                if last.symbol == name:
                    del self._open[client_order_id]
            for key in [key for key in self._quotes if key[0] == name]:
                del self._quotes[key]
        return count

    async def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        updates = []
        for response in await self.rest.open_orders(symbol):
            instrument = self._instruments.get(response.symbol)
            if instrument is not None:
                updates.append(self._order_update(instrument, response, SIDES.get(response.side, Side.BUY)))
        return updates

    async def query_order(self, symbol: str, client_order_id: str) -> OrderUpdate | None:
        instrument = self._instrument(symbol)
        response = await self.rest.query_order(instrument, client_order_id)
        if response is None:
            return None
        return self._order_update(instrument, response, SIDES.get(response.side, Side.BUY))

    async def balances(self) -> list[BalanceUpdate]:
        if self.market is Market.SPOT:
            account = await self.rest.spot_account()
            return [
                BalanceUpdate(
                    venue=self.name,
                    asset=balance.asset,
                    free=_decimal(balance.free),
                    locked=_decimal(balance.locked),
                    event_time_ms=account.update_time,
                )
                for balance in account.balances
            ]
        return [
            BalanceUpdate(
                venue=self.name,
                asset=entry.asset,
                free=_decimal(entry.available_balance),
                locked=_decimal(entry.balance) - _decimal(entry.available_balance),
            )
            for entry in await self.rest.futures_balances()
        ]

    async def positions(self) -> list[PositionUpdate]:
        if self.market is Market.SPOT:
            return []
        updates = []
        for risk in await self.rest.position_risk():
            instrument = self._instruments.get(risk.symbol)
            if instrument is None:
                continue
            updates.append(
                PositionUpdate(
                    venue=self.name,
                    symbol=risk.symbol,
                    quantity=instrument.lots.to_steps(risk.position_amt),
                    entry_price=_decimal(risk.entry_price),
                )
            )
        return updates

    # -- mass quote (emulated) ---------------------------------------------------------------

    async def mass_quote(self, quotes: Sequence[MassQuote]) -> MassQuoteReport:
        errors: list[str] = []
        cancels: list[tuple[Instrument, tuple[str, Side], str]] = []
        placements: list[tuple[Instrument, OrderRequest]] = []
        for quote in quotes:
            instrument = self._instruments.get(quote.symbol)
            if instrument is None:
                errors.append(f"{quote.symbol}: unknown symbol")
                continue
            for side, levels in ((Side.BUY, quote.bids), (Side.SELL, quote.asks)):
                if levels is None:
                    continue
                key = (quote.symbol, side)
                # quotes known to be closed (filled, cancelled) need no cancel
                cancels += [
                    (instrument, key, cid)
                    for cid in self._quotes.pop(key, [])
                    if cid in self._open or cid in self._unresolved
                ]
                for level in levels:
                    if level.size > 0:
                        request = OrderRequest(
                            client_order_id=self.new_client_order_id(),
                            symbol=quote.symbol,
                            side=side,
                            quantity=level.size,
                            price=level.price,
                            order_type=OrderType.LIMIT_MAKER,
                        )
                        placements.append((instrument, request))
        failed = len(errors)
        succeeded = 0
        # Cancels first: they have priority in the limiter and free the book for the new quotes.
        results = await asyncio.gather(
            *(self.rest.cancel_order(instrument, cid) for instrument, _, cid in cancels),
            return_exceptions=True,
        )
        for (instrument, key, cid), result in zip(cancels, results, strict=True):
            if isinstance(result, OrderNotFoundError) or not isinstance(result, BaseException):
                succeeded += 1
                self._open.pop(cid, None)
                if not isinstance(result, BaseException):
                    self._track(self._order_update(instrument, result, key[1]))
            else:
                failed += 1
                self._quotes.setdefault(key, []).append(cid)  # still ours: the next quote cancels it
                if isinstance(result, OrderOutcomeUnknownError):
                    self._register_unknown_cancel(instrument, cid)
                errors.append(f"cancel {key[0]} {key[1].value} {cid}: {_describe(result)}")
        if placements:
            try:
                await self._wait_ready()
            except VenueUnavailableError as error:
                failed += len(placements)
                errors += [
                    f"place {request.client_order_id}: {_describe(error)}" for _, request in placements
                ]
                return MassQuoteReport(succeeded, failed, errors)
        results = await asyncio.gather(
            *(self._place_quote(instrument, request) for instrument, request in placements),
            return_exceptions=True,
        )
        for (instrument, request), result in zip(placements, results, strict=True):
            key = (request.symbol, request.side)
            if isinstance(result, BaseException):
                failed += 1
                errors.append(
                    f"place {request.symbol} {request.side.value} {request.quantity}@{request.price}: "
                    f"{_describe(result)}"
                )
                if isinstance(result, OrderOutcomeUnknownError):
                    self._quotes.setdefault(key, []).append(request.client_order_id)
                    self._register_unknown(instrument, request)
                continue
            succeeded += 1
            self._quotes.setdefault(key, []).append(request.client_order_id)
            self._track(self._order_update(instrument, result, request.side))
        return MassQuoteReport(succeeded, failed, errors)

    async def _place_quote(self, instrument: Instrument, request: OrderRequest) -> codec.OrderResponse:
        self._check(instrument, request)
        # only what the budget admits now: a quote that has to wait is stale when it lands
        return await self.rest.new_order(instrument, request, max_rate_wait_s=0.0)

    # -- reconciliation ----------------------------------------------------------------------

    def _schedule_reconcile(self, reason: str) -> None:
        if self._closed or self._credentials is None or not self.config.user_data:
            return
        if self.user_stream is None or not self.user_stream.ready:
            return  # the user stream's next connection triggers it
        if self._reconcile_task is not None and not self._reconcile_task.done():
            self._reconcile_again = True
            return
        self._ready.clear()
        self._reconcile_task = asyncio.get_running_loop().create_task(
            self._reconcile_loop(reason), name=f"{self.name}:reconcile"
        )

    async def _reconcile_loop(self, reason: str) -> None:
        attempt = 0
        while not self._closed:
            self._reconcile_again = False
            self._emit(ConnectionEvent(venue=self.name, stream="account", state="resyncing", reason=reason))
            try:
                await self.reconcile()
            except (VenueError, TransportError) as error:
                self.stats.reconcile_failures += 1
                log.warning("%s: reconciliation failed (%s); retrying", self.name, error)
                attempt += 1
                await asyncio.sleep(min(self.config.reconcile_retry_max_s, 0.05 * 2**attempt))
                continue
            if self._reconcile_again:
                continue
            if self.user_stream is not None and not self.user_stream.ready:
                return  # lost again meanwhile: the next connection reconciles
            self._emit(ConnectionEvent(venue=self.name, stream="account", state="synced", reason=reason))
            self._ready.set()
            return

    async def reconcile(self) -> None:
        """Bring local order, balance and position views in line with the venue, as events."""
        self.stats.reconciliations += 1
        responses = await self.rest.open_orders()
        open_now: set[str] = set()
        for response in responses:
            instrument = self._instruments.get(response.symbol)
            if instrument is None:
                continue
            open_now.add(response.client_order_id)
            self._emit(self._order_update(instrument, response, SIDES.get(response.side, Side.BUY)))
        # orders we believed open that are not: learn how they ended (filled, cancelled, expired)
        for client_order_id, last in list(self._open.items()):
            if client_order_id in open_now:
                continue
            instrument = self._instruments[last.symbol]
            queried = await self.rest.query_order(instrument, client_order_id)
            if client_order_id not in self._open:
                continue  # an event closed it meanwhile
            if queried is not None:
                self._emit(self._order_update(instrument, queried, last.side))
            else:
                self._emit_gone(last, "unknown to the venue at reconciliation: closed while unobserved")
        for client_order_id, entry in list(self._unresolved.items()):
            await self._settle(client_order_id, entry)
        for balance in await self.balances():
            self._emit(balance)
        for position in await self.positions():
            self._emit(position)

    # -- conversions -------------------------------------------------------------------------

    def _order_update(self, instrument: Instrument, response: codec.OrderResponse, side: Side) -> OrderUpdate:
        price = response.price
        parser = self._user_data.parser(instrument)
        return OrderUpdate(
            venue=self.name,
            symbol=response.symbol,
            client_order_id=response.orig_client_order_id or response.client_order_id,
            venue_order_id=str(response.order_id),
            status=STATUSES.get(response.status, OrderStatus.UNKNOWN),
            side=SIDES.get(response.side, side),
            price=0 if response.type == "MARKET" or _is_zero(price) else parser.price_steps(price),
            quantity=parser.size_steps(response.orig_qty),
            filled=parser.size_steps(response.executed_qty),
            event_time_ms=response.update_time or response.transact_time or response.time,
        )

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _is_zero(text: str) -> bool:
    return not text.strip("0.")


def _decimal(text: str) -> Decimal:
    return Decimal(text)  # accounting values only, never on the hot path


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while value:
        value, remainder = divmod(value, 36)
        text = digits[remainder] + text
    return text or "0"


class _ApiAnswer:
    """The answer to one WebSocket API order request, converted and handed on inside the frame
    that carried it, with the outcomes the REST path has (a lost answer: outcome unknown, settled
    by client order id, never re-sent)."""

    __slots__ = ("_adapter", "_done", "_instrument", "_name", "_on_answer", "_request")

    def __init__(
        self,
        adapter: BinanceAdapter,
        instrument: Instrument,
        request: OrderRequest,
        name: str,
        on_answer: OrderAnswer,
    ) -> None:
        self._adapter = adapter
        self._instrument = instrument
        self._request = request
        self._name = name
        self._on_answer = on_answer
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: codec.WebSocketApiResponse) -> None:
        self._done = True
        self._tell(self._adapter._api_answer(self._instrument, self._request, self._name, result))

    def set_exception(self, exception: BaseException) -> None:
        self._done = True
        self._tell(
            OrderOutcomeUnknownError(
                f"{self._name} {self._request.client_order_id} over the WebSocket API: {exception}",
                venue=self._adapter.name,
                client_order_id=self._request.client_order_id,
            )
        )

    def _tell(self, answer: OrderUpdate | VenueError) -> None:
        self._adapter._tell_owner(self._instrument, self._request, self._name, answer, self._on_answer)
