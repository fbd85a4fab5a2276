"""The governed Binance REST client: every call is admitted, signed, timed, classified.

Order of operations for one call: circuit breaker (per endpoint group) -> weighted limiter
(request weight + order count, cancels first) -> sign -> send over the pooled session to the
fastest healthy base URL -> correct the limiter from ``X-MBX-USED-WEIGHT-*`` /
``X-MBX-ORDER-COUNT-*`` -> map the answer to a result or a classified error.

What is retried, and what never is:

- a connect failure (the request never left this host) is retried for every endpoint, on
  the next base URL;
- a timeout, a dropped connection or a 5xx is retried only for idempotent queries; on an
  order or a cancel it raises ``OrderOutcomeUnknownError`` and the request is never re-sent
  (the adapter settles it by client order id);
- ``-1021`` (our clock is off) resynchronizes the clock offset from ``/time``, re-signs and
  re-sends once: Binance rejected the first request, so nothing can be doubled;
- a 429 blocks the limiter for ``Retry-After`` seconds, so no request goes out until then
  and Binance never escalates to a 418 ban; a 418 blocks it for the ban's duration.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import msgspec
import orjson

from hftkit.codec.decode import DECODE_FAILURES
from hftkit.core.bounded import BoundedCounter
from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.secrets import Secret
from hftkit.core.types import Instrument, Side
from hftkit.resilience import (
    BreakerRegistry,
    CircuitBreaker,
    Priority,
    RetryPolicy,
)
from hftkit.transport.endpoints import EndpointSelector
from hftkit.transport.http import (
    HttpConfig,
    HttpResponse,
    HttpSession,
    HttpTransport,
    TransportError,
)
from hftkit.transport.http1 import LeanHttpPool, OrderPool, OrderPoolFactory
from hftkit.venues.base import (
    OrderNotFoundError,
    OrderOutcomeUnknownError,
    OrderRejectedError,
    OrderRequest,
    RateLimitedError,
    VenueError,
)
from hftkit.venues.binance import codec
from hftkit.venues.binance.auth import BinanceCredentials
from hftkit.venues.binance.build import ClockOffset, RequestBuilder, SignedRequest, encode_value
from hftkit.venues.binance.endpoints import (
    ENDPOINTS,
    RATE_LIMITS,
    SPOT_REST_URLS,
    USDM_MAX_BATCH_ORDERS,
    USDM_REST_URLS,
    Endpoint,
    Market,
    account_limiter,
    request_weights,
    window_header,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# -- errors ---------------------------------------------------------------------------------


class BinanceApiError(VenueError):
    """Binance answered with an error body that is not an order verdict (``code``/``msg``, HTTP status)."""

    def __init__(self, message: str, *, venue: str = "", code: int | None = None, status: int = 0) -> None:
        super().__init__(message, venue=venue, code=code)
        self.status = status


class BinanceAuthenticationError(BinanceApiError):
    """Bad key, bad signature or missing permission (-1002, -1022, -2014, -2015, HTTP 401)."""


class ListenKeyInvalidError(BinanceApiError):
    """The listenKey does not exist (-1125): create a new one."""


class VenueServerError(BinanceApiError):
    """HTTP 5xx on a query: the venue failed; safe to retry because nothing changes state."""


class VenueUnavailableError(VenueError):
    """The request was NOT sent: every base URL refused the connection or the breaker is open."""

    def __init__(self, message: str, *, venue: str = "", retry_after_s: float = 0.0) -> None:
        super().__init__(message, venue=venue)
        self.retry_after_s = retry_after_s


class TimestampRejectedError(BinanceApiError):
    """-1021: the request's timestamp fell outside recvWindow (handled by a resync and one retry)."""


# Codes that decide an order request definitively without creating anything.
NOT_FOUND_CODES = frozenset({-2011, -2013})
AUTHENTICATION_CODES = frozenset({-1002, -1022, -2014, -2015})
RATE_LIMIT_CODES = frozenset({-1003, -1015})
# The engine may or may not have acted: "execution status unknown".
UNKNOWN_OUTCOME_CODES = frozenset({-1000, -1001, -1006, -1007})

_error_decoder = msgspec.json.Decoder(codec.ErrorResponse)
_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_book_ticker_decoder = msgspec.json.Decoder(codec.RestBookTicker)
_book_tickers_decoder = msgspec.json.Decoder(list[codec.RestBookTicker])
_price_decoder = msgspec.json.Decoder(codec.RestPrice)
_prices_decoder = msgspec.json.Decoder(list[codec.RestPrice])
_ticker_24h_decoder = msgspec.json.Decoder(codec.Ticker24h)
_tickers_24h_decoder = msgspec.json.Decoder(list[codec.Ticker24h])
_order_decoder = msgspec.json.Decoder(codec.OrderResponse)
_orders_decoder = msgspec.json.Decoder(list[codec.OrderResponse])
_time_decoder = msgspec.json.Decoder(codec.ServerTime)
_info_decoder = msgspec.json.Decoder(codec.ExchangeInfo)
_depth_decoder = msgspec.json.Decoder(codec.DepthSnapshot)
_account_decoder = msgspec.json.Decoder(codec.SpotAccount)
_futures_balances_decoder = msgspec.json.Decoder(list[codec.FuturesBalanceEntry])
_positions_decoder = msgspec.json.Decoder(list[codec.PositionRisk])
_listen_key_decoder = msgspec.json.Decoder(codec.ListenKeyResponse)


# -- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class RestConfig:
    """How one venue's REST side is reached and governed."""

    base_urls: Sequence[str] = ()  # empty: the market's production hosts
    recv_window_ms: int = 5000
    query_timeout_s: float = 5.0
    order_timeout_s: float = 3.0
    # Retries of retryable failures (connect failures; 5xx/timeouts of idempotent queries).
    max_attempts: int = 3
    retry_base_delay_s: float = 0.05
    retry_max_delay_s: float = 1.0
    # A call that would wait longer than this for rate budget is refused with RateLimitedError.
    max_rate_wait_s: float = 2.0
    default_retry_after_s: float = 10.0  # a 429 without Retry-After
    default_ban_s: float = 120.0  # a 418 without Retry-After
    cancel_reserve_fraction: float = 0.1  # share of each window only cancels may use
    reset_guard_ms: int = 500  # treat each venue window reset as happening this much later
    breaker_failure_threshold: int = 5
    breaker_recovery_s: float = 2.0
    http: HttpConfig = field(default_factory=HttpConfig)
    # Warm keep-alive connections that new orders are written on synchronously, the request's
    # bytes built once (0: every order goes through the pooled aiohttp session).
    order_connections: int = 2


@dataclass
class RestStats:
    requests: int = 0
    responses: int = 0
    time_resyncs: int = 0
    rate_limited: int = 0  # 429 answers
    bans: int = 0  # 418 answers
    refused_locally: int = 0  # calls our limiter refused (never sent)
    outcome_unknown: int = 0
    transport_failures: int = 0
    malformed_responses: int = 0
    # keyed by the venue's error code: bounded, the rest fold into "<other>"
    errors_by_code: BoundedCounter[int] = field(default_factory=lambda: BoundedCounter(64))


_GROUPS = {
    "new_order": "orders",
    "batch_orders": "orders",
    "modify_order": "orders",
    "cancel_order": "orders",
    "cancel_all": "orders",
    "query_order": "orders",
    "open_orders": "orders",
    "account": "account",
    "balance": "account",
    "position_risk": "account",
    "create_listen_key": "account",
    "keepalive_listen_key": "account",
    "close_listen_key": "account",
}
_STATE_CHANGING = frozenset({"new_order", "batch_orders", "modify_order", "cancel_order", "cancel_all"})


class _Retryable(Exception):
    """Internal: a failure that a retry may fix (wraps the real error)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class VenueClock:
    """Venue time for the limiter: local wall time plus the measured offset.

    Binance counts weight per minute of *its* clock; reading windows on this clock makes
    them roll when the venue's do, however far the local clock is off.
    """

    __slots__ = ("_clock", "_offset")

    def __init__(self, clock: Clock, offset: ClockOffset) -> None:
        self._clock = clock
        self._offset = offset

    def time_ns(self) -> int:
        return self._clock.time_ns() + self._offset.offset_ms * 1_000_000

    def monotonic_ns(self) -> int:
        return self._clock.monotonic_ns()


class _Unguarded:
    """Stands in for a circuit breaker where none may refuse (cancels)."""

    generation = 0

    def allow(self) -> bool:
        return True

    def open_error(self) -> NoReturn:
        raise AssertionError("an unguarded call is never refused")

    def release(self, generation: int = -1) -> None:
        return None

    record_success = record_failure = release


_UNGUARDED = _Unguarded()


class BinanceRestClient:
    """One venue's (spot or USD-M) REST side: ``async with BinanceRestClient(...) as rest``."""

    def __init__(
        self,
        market: Market,
        credentials: BinanceCredentials | None,
        config: RestConfig | None = None,
        *,
        venue: str = "binance",
        clock: Clock = REAL_CLOCK,
        http: HttpTransport | None = None,
        order_pool: OrderPoolFactory = LeanHttpPool,
    ) -> None:
        """``http`` and ``order_pool`` are the transports (default: the real ones); they are
        fixed here, so the order path calls them directly."""
        self.market = market
        self.venue = venue
        self.config = config = config or RestConfig()
        self.stats = RestStats()
        self._clock = clock
        self.clock_offset = ClockOffset(clock)
        self._endpoints = ENDPOINTS[market]
        self._builder = (
            RequestBuilder(
                market, credentials, recv_window_ms=config.recv_window_ms, clock_offset=self.clock_offset
            )
            if credentials is not None
            else None
        )
        self._api_key = credentials.api_key if credentials is not None else Secret("")
        urls = tuple(config.base_urls) or (SPOT_REST_URLS if market is Market.SPOT else USDM_REST_URLS)
        self.selector = EndpointSelector(urls, clock=clock)
        self._market = market
        self.limiter = account_limiter(
            market,
            VenueClock(clock, self.clock_offset),
            cancel_reserve_fraction=config.cancel_reserve_fraction,
            reset_guard_ns=config.reset_guard_ms * 1_000_000,
        )
        windows = RATE_LIMITS[market]
        self._weight_window = next(window.header for window in windows if window.kind == "REQUEST_WEIGHT")
        self._window_headers = tuple(window.header for window in windows)
        self._in_flight = dict.fromkeys(self._window_headers, 0)
        self._costs_cache: dict[tuple[int, int], Any] = {}
        self._weights_cache: dict[tuple[str, int], Mapping[str, int]] = {}
        self._request_costs_cache: dict[str, tuple[Any, Priority]] = {}
        self.breakers = BreakerRegistry(
            lambda name: CircuitBreaker(
                f"{venue}:{name}",
                failure_threshold=config.breaker_failure_threshold,
                error_rate_threshold=None,
                recovery_timeout=config.breaker_recovery_s,
                is_failure=_is_health_failure,
                clock=clock,
            )
        )
        self._query_retry = RetryPolicy(
            max_attempts=config.max_attempts,
            base_delay=config.retry_base_delay_s,
            max_delay=config.retry_max_delay_s,
            retryable=lambda error: isinstance(error, _Retryable),
            name=f"{venue}:rest",
        )
        self._owns_http = http is None
        self.http: HttpTransport = http or HttpSession(config.http)
        self._order_pool_factory = order_pool
        self._time_lock = asyncio.Lock()
        self._degraded = False
        self.closed = False
        self._lean: OrderPool | None = None
        self.on_recovered: Callable[[], None] | None = None
        """Called once when a response arrives after transport failures (the adapter reconciles)."""

    def __repr__(self) -> str:
        # never the API key (tracebacks and debuggers print objects whole)
        signed = "signed" if self._builder is not None else "public"
        return f"BinanceRestClient({self.venue}, {self.market.value}, {signed})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> BinanceRestClient:
        await self.http.open()
        if self.config.order_connections > 0 and self._builder is not None:
            self._lean = self._order_pool_factory(
                self.selector.current(),
                size=self.config.order_connections,
                connect_timeout_s=self.config.http.connect_timeout_s,
                request_timeout_s=self.config.order_timeout_s,
            )
            await self._lean.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        self.closed = True
        if self._lean is not None:
            await self._lean.close()
        if self._owns_http:
            await self.http.close()

    # -- typed endpoints ---------------------------------------------------------------------

    async def server_time(self) -> int:
        return _decode(_time_decoder, await self.call("time"), self).server_time

    async def sync_time(self, *, unless_synced_since: int | None = None) -> int:
        """Measure the venue clock and update the offset used for timestamps; returns it (ms).

        ``unless_synced_since`` (a ``stats.time_resyncs`` value read before a -1021) skips the
        measurement when another caller resynced meanwhile: a burst of rejected requests costs
        one ``/time`` call, not one each.
        """
        async with self._time_lock:
            if unless_synced_since is not None and self.stats.time_resyncs != unless_synced_since:
                return self.clock_offset.offset_ms
            self.clock_offset.reset()
            sent = self._clock.time_ns()
            server_ms = await self.server_time()
            self.clock_offset.observe(server_ms, sent, self._clock.time_ns())
            self.stats.time_resyncs += 1
            return self.clock_offset.offset_ms

    async def exchange_info(self) -> codec.ExchangeInfo:
        return _decode(_info_decoder, await self.call("exchange_info"), self)

    async def depth(self, symbol: str, limit: int = 1000) -> codec.DepthSnapshot:
        body = await self.call("depth", {"symbol": symbol, "limit": str(limit)})
        return _decode(_depth_decoder, body, self)

    async def new_order(
        self,
        instrument: Instrument,
        request: OrderRequest,
        *,
        max_rate_wait_s: float | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> codec.OrderResponse:
        """Place an order; OrderOutcomeUnknownError when it may or may not exist (never re-sent).

        ``on_sent`` gets ``time.monotonic_ns()`` once the request's bytes were written."""
        builder = self._signing_builder()

        def build() -> SignedRequest:
            return builder.new_order(
                instrument,
                request.client_order_id,
                request.side,
                request.order_type,
                request.quantity,
                request.price,
                request.time_in_force,
                reduce_only=request.reduce_only,
            )

        body = await self._execute(
            self._endpoints["new_order"],
            build,
            request.client_order_id,
            max_rate_wait_s=max_rate_wait_s,
            on_sent=on_sent,
        )
        return self._decode_order_answer(body, "new_order", request.client_order_id)

    async def cancel_order(self, instrument: Instrument, client_order_id: str) -> codec.OrderResponse:
        builder = self._signing_builder()
        body = await self._execute(
            self._endpoints["cancel_order"],
            lambda: builder.cancel_order(instrument, client_order_id=client_order_id),
            client_order_id,
        )
        return self._decode_order_answer(body, "cancel_order", client_order_id)

    async def modify_order(
        self, instrument: Instrument, client_order_id: str, side: Side, price: int, quantity: int
    ) -> codec.OrderResponse:
        """USD-M: a resting order's new price and total quantity (a refusal leaves it as it was)."""
        builder = self._signing_builder()
        body = await self._execute(
            self._endpoints["modify_order"],
            lambda: builder.modify_order(instrument, client_order_id, side, price, quantity),
            client_order_id,
        )
        return self._decode_order_answer(body, "modify_order", client_order_id)

    async def batch_orders(
        self,
        orders: Sequence[tuple[Instrument, OrderRequest]],
        *,
        on_sent: Callable[[int], None] | None = None,
    ) -> list[codec.OrderResponse | VenueError]:
        """USD-M ``batchOrders`` (at most 5): one answer per order, in order, each the venue's order
        or the error that refused that order alone. A failure of the request itself raises as for a
        single order (``OrderOutcomeUnknownError``: every order of it may exist)."""
        if not 1 <= len(orders) <= USDM_MAX_BATCH_ORDERS:
            raise ValueError(f"a batch carries 1 to {USDM_MAX_BATCH_ORDERS} orders, not {len(orders)}")
        builder = self._signing_builder()
        first = orders[0][1].client_order_id
        body = await self._execute(
            self._endpoints["batch_orders"], lambda: builder.batch_orders(orders), first, on_sent=on_sent
        )
        try:
            answers = _batch_decoder.decode(body)
        except DECODE_FAILURES:
            answers = []
        if len(answers) != len(orders):
            self.stats.outcome_unknown += 1
            raise OrderOutcomeUnknownError(
                f"batch_orders: 2xx without one answer per order ({len(answers)} for {len(orders)})",
                venue=self.venue,
                client_order_id=first,
            )
        results: list[codec.OrderResponse | VenueError] = []
        for (_, request), answer in zip(orders, answers, strict=True):
            client_order_id = request.client_order_id
            error = _decode_error(answer)
            if error is not None:
                self.stats.errors_by_code.add(error.code)
                results.append(self._batch_item_error(error, client_order_id))
                continue
            try:
                results.append(self._decode_order_answer(answer, "batch_orders", client_order_id))
            except OrderOutcomeUnknownError as unknown:
                results.append(unknown)
        return results

    def _batch_item_error(self, error: codec.ErrorResponse, client_order_id: str) -> VenueError:
        """One order's refusal inside a batch, sorted like a single order's answer would be."""
        text = f"batch_orders {client_order_id}: code {error.code}: {error.msg}"
        if error.code in UNKNOWN_OUTCOME_CODES:
            self.stats.outcome_unknown += 1
            return OrderOutcomeUnknownError(text, venue=self.venue, client_order_id=client_order_id)
        if error.code in RATE_LIMIT_CODES:
            return RateLimitedError(text, venue=self.venue, retry_after_s=self.config.default_retry_after_s)
        return OrderRejectedError(text, venue=self.venue, code=error.code)

    def _decode_order_answer(self, body: bytes, name: str, client_order_id: str) -> codec.OrderResponse:
        """A 2xx to an order or a cancel means the venue acted; an answer we cannot read does not
        undo that: the outcome is unknown (settled by client order id), never a reject."""
        try:
            return _decode(_order_decoder, body, self)
        except BinanceApiError as error:
            self.stats.outcome_unknown += 1
            raise OrderOutcomeUnknownError(
                f"{name} {client_order_id}: 2xx with an unreadable answer: {error}",
                venue=self.venue,
                client_order_id=client_order_id,
            ) from None

    async def query_order(self, instrument: Instrument, client_order_id: str) -> codec.OrderResponse | None:
        """The venue's view of one order by client id; None when it does not know it."""
        builder = self._signing_builder()
        try:
            body = await self._execute(
                self._endpoints["query_order"],
                lambda: builder.query_order(instrument, client_order_id=client_order_id),
                client_order_id,
            )
        except OrderNotFoundError:
            return None
        return _decode(_order_decoder, body, self)

    # many symbols' market data in one request -------------------------------------------------
    async def book_tickers(self, symbols: Sequence[str]) -> list[codec.RestBookTicker]:
        """Best bid/ask of every symbol named, in one request."""
        return await self._market_rows("book_ticker", symbols, _book_tickers_decoder, _book_ticker_decoder)

    async def prices(self, symbols: Sequence[str]) -> list[codec.RestPrice]:
        """Last price of every symbol named, in one request."""
        return await self._market_rows("ticker_price", symbols, _prices_decoder, _price_decoder)

    async def tickers_24h(self, symbols: Sequence[str]) -> list[codec.Ticker24h]:
        """Rolling 24 h statistics of every symbol named, in one request."""
        return await self._market_rows("ticker_24h", symbols, _tickers_24h_decoder, _ticker_24h_decoder)

    async def _market_rows(self, name: str, symbols: Sequence[str], many: Any, one: Any) -> list[Any]:
        """Spot takes ``symbols=["A","B"]``; USD-M takes one ``symbol`` or none (every symbol, then
        filtered here): either way one request, in the order the symbols were named."""
        wanted = list(dict.fromkeys(symbols))
        if not wanted:
            return []
        if len(wanted) == 1:
            rows = [_decode(one, await self.call(name, {"symbol": wanted[0]}), self)]
        elif self.market is Market.SPOT:
            listed = orjson.dumps(wanted).decode()
            rows = _decode(many, await self.call(name, {"symbols": listed}), self)
        else:
            rows = _decode(many, await self.call(name), self)
        by_symbol = {row.symbol: row for row in rows}
        return [by_symbol[symbol] for symbol in wanted if symbol in by_symbol]

    async def open_orders(self, symbol: str | None = None) -> list[codec.OrderResponse]:
        params = {"symbol": symbol} if symbol else {}
        return _decode(_orders_decoder, await self.call("open_orders", params), self)

    async def cancel_all(self, symbol: str) -> list[codec.OrderResponse]:
        """Cancel every open order of ``symbol``; spot returns the cancelled orders, USD-M none."""
        try:
            body = await self.call("cancel_all", {"symbol": symbol})
        except OrderNotFoundError:
            return []  # spot answers -2011 when nothing was open
        if self.market is Market.SPOT:
            return _decode(_orders_decoder, body, self)
        return []

    async def spot_account(self) -> codec.SpotAccount:
        return _decode(_account_decoder, await self.call("account"), self)

    async def futures_balances(self) -> list[codec.FuturesBalanceEntry]:
        return _decode(_futures_balances_decoder, await self.call("balance"), self)

    async def position_risk(self) -> list[codec.PositionRisk]:
        return _decode(_positions_decoder, await self.call("position_risk"), self)

    async def create_listen_key(self) -> str:
        return _decode(_listen_key_decoder, await self.call("create_listen_key"), self).listen_key

    async def keepalive_listen_key(self) -> None:
        """USD-M keepalive (no parameters: it extends the account's current key)."""
        await self.call("keepalive_listen_key")

    async def close_listen_key(self) -> None:
        await self.call("close_listen_key")

    # -- generic call ------------------------------------------------------------------------

    async def call(self, name: str, params: Mapping[str, str] | None = None) -> bytes:
        """Any endpoint of this market by name (see ``endpoints.py``); returns the raw body."""
        endpoint = self._endpoints[name]
        query_params = dict(params or {})
        if endpoint.signed:
            builder = self._signing_builder()
            return await self._execute(endpoint, lambda: builder.request(name, query_params), "")
        query = "&".join(f"{key}={encode_value(value)}" for key, value in query_params.items())
        headers = {"X-MBX-APIKEY": self._api_key.reveal()} if endpoint.api_key else {}
        weight = endpoint.weight_for(query_params)
        request = SignedRequest(endpoint, query, headers, weight)
        return await self._execute(endpoint, lambda: request, "")

    def used_weight(self) -> int:
        """Request weight used in the current minute, as far as we know."""
        return self.limiter.used(self._weight_window)

    # -- the governed pipeline ---------------------------------------------------------------

    def _signing_builder(self) -> RequestBuilder:
        if self._builder is None:
            raise BinanceAuthenticationError("this endpoint needs API credentials", venue=self.venue)
        return self._builder

    async def _execute(
        self,
        endpoint: Endpoint,
        build: Callable[[], SignedRequest],
        client_order_id: str,
        *,
        max_rate_wait_s: float | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> bytes:
        idempotent = endpoint.name not in _STATE_CHANGING
        try:
            return await self._query_retry.call(
                lambda: self._attempt(endpoint, build, client_order_id, idempotent, max_rate_wait_s, on_sent)
            )
        except _Retryable as wrapped:
            raise wrapped.error from None

    async def _attempt(
        self,
        endpoint: Endpoint,
        build: Callable[[], SignedRequest],
        client_order_id: str,
        idempotent: bool,
        max_rate_wait_s: float | None,
        on_sent: Callable[[int], None] | None = None,
    ) -> bytes:
        resyncs = self.stats.time_resyncs
        try:
            return await self._send_governed(
                endpoint, build(), client_order_id, idempotent, max_rate_wait_s, on_sent
            )
        except TimestampRejectedError:
            if endpoint.name == "time" or not endpoint.signed:
                raise
            # Rejected before execution: resync the clock, re-sign, send once more.
            await self.sync_time(unless_synced_since=resyncs)
            try:
                return await self._send_governed(
                    endpoint, build(), client_order_id, idempotent, max_rate_wait_s, on_sent
                )
            except TimestampRejectedError as again:
                if endpoint.name == "new_order":
                    raise OrderRejectedError(str(again), venue=self.venue, code=again.code) from again
                raise

    async def _send_governed(
        self,
        endpoint: Endpoint,
        request: SignedRequest,
        client_order_id: str,
        idempotent: bool,
        max_rate_wait_s: float | None,
        on_sent: Callable[[int], None] | None = None,
    ) -> bytes:
        if self.closed:
            raise VenueUnavailableError(f"{endpoint.name}: client closed; not sent", venue=self.venue)
        # Cancels are never refused by a breaker: removing risk is always worth an attempt.
        breaker: CircuitBreaker | _Unguarded = (
            _UNGUARDED if endpoint.is_cancel else self.breakers.get(_GROUPS.get(endpoint.name, "market_data"))
        )
        if not breaker.allow():
            error = breaker.open_error()
            raise VenueUnavailableError(str(error), venue=self.venue, retry_after_s=error.retry_after)
        generation = breaker.generation
        try:
            await self._admit(endpoint, request.weight, max_rate_wait_s)
        except BaseException:
            breaker.release(generation)
            raise
        url = self.selector.current()
        timeout = self.config.query_timeout_s if idempotent else self.config.order_timeout_s
        costs = self._weights(endpoint, request.weight)
        for name, weight in costs.items():
            self._in_flight[name] += weight
        self.stats.requests += 1
        try:
            response = await self.http.request(
                endpoint.method,
                url + endpoint.path,
                query=request.query,
                headers=request.headers,
                timeout_s=timeout,
                on_sent=on_sent,
            )
        except asyncio.CancelledError:
            breaker.release(generation)
            raise
        except TransportError as error:
            self.stats.transport_failures += 1
            self._degraded = True
            breaker.record_failure(generation)
            if not error.maybe_sent:
                self.selector.record_error(url)
                raise _Retryable(
                    VenueUnavailableError(f"{endpoint.name}: {error}", venue=self.venue)
                ) from error
            if idempotent:
                raise _Retryable(VenueServerError(f"{endpoint.name}: {error}", venue=self.venue)) from error
            self.stats.outcome_unknown += 1
            raise OrderOutcomeUnknownError(
                f"{endpoint.name} {client_order_id}: {error}",
                venue=self.venue,
                client_order_id=client_order_id,
            ) from error
        finally:
            for name, weight in costs.items():
                self._in_flight[name] -= weight
        return self._receive(endpoint, url, response, client_order_id, idempotent, breaker, generation)

    def _receive(
        self,
        endpoint: Endpoint,
        url: str,
        response: HttpResponse,
        client_order_id: str,
        idempotent: bool,
        breaker: CircuitBreaker | _Unguarded,
        generation: int,
    ) -> bytes:
        """A response, whichever way it came: usage, health, and the body or the classified error."""
        self.stats.responses += 1
        self.selector.record_latency(url, response.elapsed_ns)
        self._observe_usage(response.headers)
        if self._degraded:
            self._degraded = False
            if self.on_recovered is not None:
                self.on_recovered()
        try:
            body = self._classify(endpoint, response, client_order_id, idempotent)
        except (VenueServerError, OrderOutcomeUnknownError) as error:
            breaker.record_failure(generation)
            if idempotent and isinstance(error, VenueServerError):
                raise _Retryable(error) from None
            raise
        except BaseException:
            breaker.record_success(generation)  # a definitive answer: the venue is healthy
            raise
        breaker.record_success(generation)
        return body

    def new_order_now(
        self,
        instrument: Instrument,
        request: OrderRequest,
        on_answer: Callable[[codec.OrderResponse | VenueError], None],
        *,
        on_sent: Callable[[int], None] | None = None,
    ) -> bool:
        """Write a new order before returning, on a warm keep-alive connection with its request
        bytes built once; ``on_answer`` hears the venue's order or the classified error, once.
        False (nothing sent): no such connection idle, the breaker open, or no rate budget now:
        ``new_order`` queues, retries and reports instead."""
        pool = self._lean
        if pool is None or self.closed or not pool.idle_connections:
            return False
        endpoint = self._endpoints["new_order"]
        breaker = self.breakers.get(_GROUPS.get(endpoint.name, "market_data"))
        if not breaker.allow():
            return False
        generation = breaker.generation
        if not self.admit_now("new_order"):
            breaker.release(generation)
            return False
        client_order_id = request.client_order_id
        signed = self._signing_builder().new_order(
            instrument,
            client_order_id,
            request.side,
            request.order_type,
            request.quantity,
            request.price,
            request.time_in_force,
            reduce_only=request.reduce_only,
        )
        costs = self._weights(endpoint, signed.weight)

        def answered(answer: HttpResponse | TransportError) -> None:
            for name, weight in costs.items():
                self._in_flight[name] -= weight
            if isinstance(answer, TransportError):
                self.stats.transport_failures += 1
                self._degraded = True
                breaker.record_failure(generation)
                self.stats.outcome_unknown += 1
                text = f"new_order {client_order_id}: {answer}"
                on_answer(OrderOutcomeUnknownError(text, venue=self.venue, client_order_id=client_order_id))
                return
            try:
                origin = pool.origin
                body = self._receive(endpoint, origin, answer, client_order_id, False, breaker, generation)
                on_answer(self._decode_order_answer(body, "new_order", client_order_id))
            except VenueError as error:
                on_answer(error)

        for name, weight in costs.items():
            self._in_flight[name] += weight
        data = pool.request_bytes(endpoint.method, f"{endpoint.path}?{signed.query}", signed.headers)
        if not pool.write_now(data, answered):
            for name, weight in costs.items():
                self._in_flight[name] -= weight
            breaker.release(generation)
            return False
        if on_sent is not None:
            on_sent(time.monotonic_ns())
        self.stats.requests += 1
        return True

    async def _admit(self, endpoint: Endpoint, weight: int, max_rate_wait_s: float | None) -> None:
        """Take the call's weight (and order count) from the limiter, or refuse without sending."""
        costs = self._costs(endpoint, weight)
        priority = Priority.HIGH if endpoint.is_cancel else Priority.NORMAL
        limit = self.config.max_rate_wait_s if max_rate_wait_s is None else max_rate_wait_s
        if self.limiter.try_acquire(costs, priority):
            return
        wait = self.limiter.time_until_available(costs, priority)
        if wait > limit:
            self.stats.refused_locally += 1
            raise RateLimitedError(
                f"{endpoint.name}: rate budget exhausted for {wait:.3f} s",
                venue=self.venue,
                retry_after_s=wait,
            )
        try:
            await asyncio.wait_for(self.limiter.acquire(costs, priority), timeout=limit + 0.001)
        except TimeoutError:
            self.stats.refused_locally += 1
            raise RateLimitedError(
                f"{endpoint.name}: no rate budget within {limit:.3f} s",
                venue=self.venue,
                retry_after_s=self.limiter.time_until_available(costs, priority),
            ) from None

    def _weights(self, endpoint: Endpoint, weight: int) -> Mapping[str, int]:
        """Read-only and shared: one per (endpoint, weight), not built again for every order."""
        key = (endpoint.name, weight)
        weights = self._weights_cache.get(key)
        if weights is None:
            weights = self._weights_cache[key] = request_weights(self._market, endpoint, weight)
        return weights

    def _costs(self, endpoint: Endpoint, weight: int) -> Any:
        key = (weight, endpoint.orders)
        costs = self._costs_cache.get(key)
        if costs is None:
            costs = self._costs_cache[key] = self.limiter.costs(self._weights(endpoint, weight))
        return costs

    # -- the shared budget, for requests that go another way (the WebSocket API) -----------
    def admit_now(self, name: str) -> bool:
        """Take one ``name`` request's weight and order count from the account's windows now;
        False when it would wait. The WebSocket API draws from the same windows as REST."""
        costs, priority = self._request_costs(name)
        return self.limiter.try_acquire(costs, priority)

    def affordable(self, name: str) -> int:
        """How many ``name`` requests the account's windows could pay now (taking nothing)."""
        costs, priority = self._request_costs(name)
        return self.limiter.affordable(costs, priority)

    def affordable_in_s(self, name: str) -> float:
        """Seconds until the account's windows could pay one more ``name`` request."""
        costs, priority = self._request_costs(name)
        return self.limiter.time_until_available(costs, priority)

    def _request_costs(self, name: str) -> tuple[Any, Priority]:
        """One ``name`` request's costs in the windows (its weight without params) and its
        priority (cancels draw on their reserve), resolved once per window sizing."""
        found = self._request_costs_cache.get(name)
        if found is None:
            endpoint = self._endpoints[name]
            priority = Priority.HIGH if endpoint.is_cancel else Priority.NORMAL
            found = (self._costs(endpoint, endpoint.weight_for({})), priority)
            self._request_costs_cache[name] = found
        return found

    async def admit(self, name: str) -> None:
        """``admit_now``, waiting up to ``max_rate_wait_s``; RateLimitedError beyond it."""
        endpoint = self._endpoints[name]
        await self._admit(endpoint, endpoint.weight_for({}), None)

    def adopt_limits(self, limits: Sequence[codec.RateLimitUsage]) -> list[str]:
        """Size the windows to the limits the venue states for this account (exchangeInfo's
        ``rateLimits``): a VIP or market-maker account has more than the published defaults.
        Returns the windows resized."""
        resized = []
        for limit in limits:
            header = window_header(limit.rate_limit_type, limit.interval, limit.interval_num)
            if header in self._in_flight and limit.limit > 0:
                self.limiter.set_limit(header, limit.limit)
                self._costs_cache.clear()
                self._request_costs_cache.clear()
                resized.append(header)
        return resized

    def observe_window_counts(self, counts: Mapping[str, int]) -> None:
        """The venue's counts by window (named as the REST headers name them) from another path."""
        known = {name: value for name, value in counts.items() if name in self._in_flight}
        if known:
            self.limiter.observe_usage(known, in_flight=self._in_flight)

    def _observe_usage(self, headers: Mapping[str, str]) -> None:
        observed: dict[str, int] = {}
        for name in self._window_headers:
            value = _usage_count(headers.get(name))
            if value is not None:
                observed[name] = value
        if observed:
            self.limiter.observe_usage(observed, in_flight=self._in_flight)

    def _classify(
        self, endpoint: Endpoint, response: HttpResponse, client_order_id: str, idempotent: bool
    ) -> bytes:
        status = response.status
        if 200 <= status < 300:
            return response.body
        error = _decode_error(response.body)
        code = error.code if error is not None else None
        message = error.msg if error is not None else response.body[:200].decode(errors="replace")
        if code is not None:
            self.stats.errors_by_code.add(code)
        text = f"{endpoint.name}: HTTP {status} code {code}: {message}"
        retry_after = 0.0
        if status in (418, 429) or code in RATE_LIMIT_CODES:
            told = _retry_after(response.headers)
            if status == 418:
                self.stats.bans += 1
                retry_after = told if told is not None else self.config.default_ban_s
            else:
                self.stats.rate_limited += 1
                retry_after = told if told is not None else self.config.default_retry_after_s
            self.limiter.block_for(retry_after)
            log.warning("%s: %s; sending nothing for %.1f s", self.venue, text, retry_after)
        failure = classify_answer(
            endpoint.name,
            status,
            code,
            text,
            venue=self.venue,
            client_order_id=client_order_id,
            idempotent=idempotent,
            retry_after_s=retry_after,
        )
        if isinstance(failure, OrderOutcomeUnknownError):
            self.stats.outcome_unknown += 1
        raise failure


def classify_answer(
    name: str,
    status: int,
    code: int | None,
    text: str,
    *,
    venue: str,
    client_order_id: str = "",
    idempotent: bool = False,
    retry_after_s: float = 0.0,
) -> VenueError:
    """What a refusal from Binance means, for REST and the WebSocket API alike (both carry the
    same HTTP-like status and the same error codes): the one place this rule is written."""
    if status in (418, 429) or code in RATE_LIMIT_CODES:
        return RateLimitedError(text, venue=venue, retry_after_s=retry_after_s)
    if status >= 500 or code in UNKNOWN_OUTCOME_CODES:
        if idempotent:
            return VenueServerError(text, venue=venue, code=code, status=status)
        return OrderOutcomeUnknownError(text, venue=venue, client_order_id=client_order_id)
    if code == -1021:
        return TimestampRejectedError(text, venue=venue, code=code, status=status)
    if code in NOT_FOUND_CODES:
        return OrderNotFoundError(text, venue=venue, code=code)
    if code in AUTHENTICATION_CODES or status == 401:
        return BinanceAuthenticationError(text, venue=venue, code=code, status=status)
    if code == -1125:
        return ListenKeyInvalidError(text, venue=venue, code=code, status=status)
    if name in ("new_order", "batch_orders", "modify_order"):
        # 4xx on a new order is the caller's fault and final: no order was created (a refused
        # modify leaves the order as it was).
        return OrderRejectedError(text, venue=venue, code=code)
    return BinanceApiError(text, venue=venue, code=code, status=status)


def _is_health_failure(error: BaseException) -> bool:
    return isinstance(error, TransportError | VenueServerError | OrderOutcomeUnknownError)


def _decode_error(body: bytes) -> codec.ErrorResponse | None:
    try:
        return _error_decoder.decode(body)
    except DECODE_FAILURES:
        return None


# Binance: "Bans scale 2 min -> 3 days" (../shared/protocols/binance.md, 418 + Retry-After; the
# venue's "LIMITS" docs say the same): no honest Retry-After asks for longer.
MAX_RETRY_AFTER_S = 3 * 24 * 3600.0
_MAX_USAGE_DIGITS = 12  # a window's count fits in 12 digits many times over


def _usage_count(value: str | None) -> int | None:
    """A usage header's count: ASCII digits only, bounded length (``int()`` would take ``'١٢'``, and
    fail on ``'²'`` or on thousands of digits); anything else is ignored."""
    if value is None or not 0 < len(value) <= _MAX_USAGE_DIGITS or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds: finite, >= 0, at most the longest ban; None when unusable."""
    value = headers.get("Retry-After")
    if value is None or len(value) > 32:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_S)


def _decode(decoder: msgspec.json.Decoder[_T], body: bytes, client: BinanceRestClient) -> _T:
    try:
        return decoder.decode(body)
    except DECODE_FAILURES as error:  # RecursionError too: nesting no venue answer has
        client.stats.malformed_responses += 1
        raise BinanceApiError(f"malformed response: {error}", venue=client.venue) from error
