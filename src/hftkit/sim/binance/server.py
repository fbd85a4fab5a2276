"""The Binance-compatible exchange server: spot and USD-M REST, market streams, user data, on one port.

Real third-party clients (ccxt, python-binance, binance-connector) trade against it unmodified:
every request is weighed per IP (``X-MBX-USED-WEIGHT-1M``; 429 then escalating 418 bans),
signed requests are verified exactly as sent, errors are Binance's JSON bodies and statuses,
and unexpected failures become ``-1000`` JSON answers, never a stack trace or a dropped
connection. Faults come from each market's ``FaultInjector``, consulted where a real venue
misbehaves.

Paths (one port): spot ``/api/v3/*``, ``/sapi/*``; USD-M ``/fapi/v1|v2|v3/*``; spot market
streams ``/ws[/<stream>]`` and ``/stream[?streams=a/b]``; USD-M streams routed as the venue
routes them: ``/public`` (depth, bookTicker), ``/market`` (aggTrade, markPrice, klines,
tickers), a stream on the wrong path accepted and silent; USD-M user data on ``/private``
(listenKey in the URL or by SUBSCRIBE, ``events=`` filter; legacy ``/ws/<listenKey>`` too);
spot WebSocket API ``/ws-api/v3``, USD-M ``/ws-fapi/v1``. ``start(usdm_stream_port=...)`` adds
a futures stream host whose root paths carry USD-M ``/public`` streams (fstream.binance.com).
Paths and methods the venue does not route answer its HTML 404 page. docs/simulator.md has
the full table, with what is not modelled.

Spot listenKeys (``/api/v3/userDataStream``) were removed by Binance on 2026-02-20; the
simulator still serves them (same semantics as USD-M keys, events on ``/ws/<listenKey>``)
because older clients (binance-connector, python-binance's listen-key helpers) still call them.

Deliberate limits (a real venue would accept these; the simulator says so with a real error):
trailing stops (conditional orders are served: spot ``binance_stops``, USD-M on the algo-order
endpoints ``binance_algo``), OCO,
hedge mode (``-4061``), isolated margin and liquidation (USD-M cross margin and funding are
modelled in ``binance_margin``), ``1s``/``1M`` klines (``-1120``). Unknown extra parameters are ignored rather
than answered with ``-1104``, so clients that add their own params keep working. Fees come
from the venues' ``Accounts`` (``FeeSchedule`` per account).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.sim.binance import accounts as accounts
from hftkit.sim.binance import algo as algo
from hftkit.sim.binance import amend as amend
from hftkit.sim.binance import margin as margin
from hftkit.sim.binance import orders as orders
from hftkit.sim.binance import rest as rest
from hftkit.sim.binance.algo import AlgoOrders
from hftkit.sim.binance.limits import (
    SPOT_LIMITS,
    USDM_LIMITS,
    RateLimitSettings,
    Weight,
    endpoint_weight,
    per_symbol_capped,
    per_symbols,
    weight_of,
    with_symbol,
)
from hftkit.sim.binance.margin import FuturesMargin
from hftkit.sim.binance.params import (
    API_KEY,
    INTERNAL_ERROR,
    NONE,
    SEND_STATUS_UNKNOWN,
    SIGNED,
    UNKNOWN_ERROR,
    BinanceApiError,
    Params,
    check_api_key,
    check_timestamp,
    verify_signature,
)
from hftkit.sim.binance.rest import Call, ComponentT
from hftkit.sim.binance.state import ListenKey, MarketState
from hftkit.sim.binance.stops import SpotStops
from hftkit.sim.binance.streams import (
    MARKET,
    PUBLIC,
    InvalidStream,
    MarketStreams,
    Outbox,
    Subscriber,
    UserData,
    parse_stream,
)
from hftkit.sim.binance.wire import ms
from hftkit.sim.binance.ws_api import ApiSession
from hftkit.sim.engine.faults import FaultInjector
from hftkit.sim.engine.matching import DepthSnapshot
from hftkit.sim.engine.venue import SimVenue
from hftkit.sim.websocket import SimWebSocketResponse, open_connections
from hftkit.venues.binance.endpoints import Market

logger = logging.getLogger(__name__)

CONTROL_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: rest.Handler
    market: Market
    weight: Weight
    security: str = NONE
    places_order: bool = False
    order_counts: tuple[int, ...] | None = None  # per order window; None: 1 in each

    def weight_for(self, params: Params) -> int:
        return weight_of(self.weight, params)


SPOT, USDM = Market.SPOT, Market.USDM

ROUTES: tuple[Route, ...] = (
    # spot: general and market data
    Route("GET", "/api/v3/ping", rest.ping, SPOT, 1),
    Route("GET", "/api/v3/time", rest.server_time, SPOT, 1),
    Route("GET", "/api/v3/exchangeInfo", rest.exchange_info, SPOT, 20),
    Route("GET", "/api/v3/depth", rest.depth, SPOT, endpoint_weight(SPOT, "depth")),
    Route("GET", "/api/v3/trades", rest.trades, SPOT, 25),
    Route("GET", "/api/v3/historicalTrades", rest.historical_trades, SPOT, 25, API_KEY),
    Route("GET", "/api/v3/aggTrades", rest.aggregate_trades, SPOT, 4),
    Route("GET", "/api/v3/klines", rest.klines, SPOT, 2),
    Route("GET", "/api/v3/uiKlines", rest.klines, SPOT, 2),
    Route("GET", "/api/v3/avgPrice", rest.average_price, SPOT, 2),
    Route("GET", "/api/v3/ticker/24hr", rest.ticker_24h, SPOT, per_symbols(2, 40, 80)),
    Route("GET", "/api/v3/ticker", rest.rolling_ticker, SPOT, per_symbol_capped(4, 200)),
    Route("GET", "/api/v3/ticker/tradingDay", rest.trading_day_ticker, SPOT, per_symbol_capped(4, 200)),
    Route("GET", "/api/v3/ticker/price", rest.ticker_price, SPOT, with_symbol(2, 4)),
    Route("GET", "/api/v3/ticker/bookTicker", rest.book_ticker, SPOT, endpoint_weight(SPOT, "book_ticker")),
    # spot: trading and account
    Route("POST", "/api/v3/order", orders.new_order, SPOT, 1, SIGNED, places_order=True),
    Route("POST", "/api/v3/order/test", orders.order_test, SPOT, 1, SIGNED),
    Route("POST", "/api/v3/order/cancelReplace", amend.cancel_replace, SPOT, 1, SIGNED, places_order=True),
    Route("PUT", "/api/v3/order/amend/keepPriority", amend.amend_keep_priority, SPOT, 4, SIGNED),
    Route("GET", "/api/v3/order/amendments", amend.spot_order_amendments, SPOT, 4, SIGNED),
    Route("DELETE", "/api/v3/order", orders.cancel_order, SPOT, 1, SIGNED),
    Route("GET", "/api/v3/order", orders.query_order, SPOT, 4, SIGNED),
    Route(
        "GET", "/api/v3/openOrders", orders.open_orders, SPOT, endpoint_weight(SPOT, "open_orders"), SIGNED
    ),
    Route("DELETE", "/api/v3/openOrders", orders.cancel_open_orders, SPOT, 1, SIGNED),
    Route("GET", "/api/v3/allOrders", orders.all_orders, SPOT, 20, SIGNED),
    Route(
        "GET",
        "/api/v3/myTrades",
        orders.my_trades,
        SPOT,
        lambda params: 5 if "orderId" in params else 20,
        SIGNED,
    ),
    Route("GET", "/api/v3/account", accounts.spot_account, SPOT, 20, SIGNED),
    Route("GET", "/api/v3/account/commission", accounts.spot_commission, SPOT, 20, SIGNED),
    Route("GET", "/api/v3/rateLimit/order", accounts.spot_order_rate_limits, SPOT, 40, SIGNED),
    Route("POST", "/api/v3/userDataStream", rest.create_listen_key, SPOT, 2, API_KEY),
    Route("PUT", "/api/v3/userDataStream", rest.keepalive_listen_key, SPOT, 2, API_KEY),
    Route("DELETE", "/api/v3/userDataStream", rest.close_listen_key, SPOT, 2, API_KEY),
    # wallet / margin calls ccxt makes while loading markets with keys set
    Route("GET", "/sapi/v1/system/status", rest.system_status, SPOT, 1),
    Route("GET", "/sapi/v1/capital/config/getall", rest.capital_config, SPOT, 10, SIGNED),
    Route("GET", "/sapi/v1/margin/allPairs", rest.empty_list, SPOT, 1, API_KEY),
    Route("GET", "/sapi/v1/margin/isolated/allPairs", rest.empty_list, SPOT, 10, SIGNED),
    # USD-M
    Route("GET", "/fapi/v1/ping", rest.ping, USDM, 1),
    Route("GET", "/fapi/v1/time", rest.server_time, USDM, 1),
    Route("GET", "/fapi/v1/exchangeInfo", rest.exchange_info, USDM, 1),
    Route("GET", "/fapi/v1/depth", rest.depth, USDM, endpoint_weight(USDM, "depth")),
    Route("GET", "/fapi/v1/trades", rest.trades, USDM, 5),
    Route("GET", "/fapi/v1/aggTrades", rest.aggregate_trades, USDM, 20),
    Route("GET", "/fapi/v1/klines", rest.klines, USDM, 5),
    Route("GET", "/fapi/v1/ticker/24hr", rest.ticker_24h, USDM, with_symbol(1, 40)),
    Route("GET", "/fapi/v1/ticker/price", rest.ticker_price, USDM, with_symbol(1, 2)),
    Route("GET", "/fapi/v2/ticker/price", rest.ticker_price, USDM, with_symbol(1, 2)),
    Route("GET", "/fapi/v1/ticker/bookTicker", rest.book_ticker, USDM, endpoint_weight(USDM, "book_ticker")),
    Route("GET", "/fapi/v1/premiumIndex", margin.premium_index, USDM, with_symbol(1, 10)),
    Route("GET", "/fapi/v1/fundingRate", margin.funding_rate_history, USDM, 1),
    Route("GET", "/fapi/v1/fundingInfo", margin.funding_info, USDM, 1),
    Route("GET", "/fapi/v1/openInterest", margin.open_interest, USDM, 1),
    Route("GET", "/fapi/v1/income", margin.income_history, USDM, 30, SIGNED),
    Route("POST", "/fapi/v1/order", orders.new_order, USDM, 1, SIGNED, places_order=True),
    Route(
        "POST",
        "/fapi/v1/batchOrders",
        orders.batch_orders,
        USDM,
        5,
        SIGNED,
        places_order=True,
        order_counts=(5, 1),
    ),
    # modify: IP weight 0, one order in each order window (documented)
    Route("PUT", "/fapi/v1/order", amend.modify_order, USDM, 0, SIGNED, places_order=True),
    Route(
        "PUT",
        "/fapi/v1/batchOrders",
        amend.batch_modify_orders,
        USDM,
        5,
        SIGNED,
        places_order=True,
        order_counts=(5, 1),
    ),
    Route("GET", "/fapi/v1/orderAmendment", amend.order_amendments, USDM, 1, SIGNED),
    Route("DELETE", "/fapi/v1/order", orders.cancel_order, USDM, 1, SIGNED),
    # conditional orders: the algo-order endpoints (new algo order: IP weight 0, order windows 1)
    Route("POST", "/fapi/v1/algoOrder", algo.new_algo_order, USDM, 0, SIGNED, places_order=True),
    Route("DELETE", "/fapi/v1/algoOrder", algo.cancel_algo_order, USDM, 1, SIGNED),
    Route("DELETE", "/fapi/v1/algoOpenOrders", algo.cancel_all_algo_orders, USDM, 1, SIGNED),
    Route("GET", "/fapi/v1/algoOrder", algo.query_algo_order, USDM, 1, SIGNED),
    Route("GET", "/fapi/v1/openAlgoOrders", algo.open_algo_orders, USDM, with_symbol(1, 40), SIGNED),
    Route("GET", "/fapi/v1/allAlgoOrders", algo.all_algo_orders, USDM, 5, SIGNED),
    Route("GET", "/fapi/v1/order", orders.query_order, USDM, 1, SIGNED),
    Route(
        "GET", "/fapi/v1/openOrders", orders.open_orders, USDM, endpoint_weight(USDM, "open_orders"), SIGNED
    ),
    Route("DELETE", "/fapi/v1/allOpenOrders", orders.cancel_open_orders, USDM, 1, SIGNED),
    Route("GET", "/fapi/v1/allOrders", orders.all_orders, USDM, 5, SIGNED),
    Route("GET", "/fapi/v1/userTrades", orders.my_trades, USDM, 5, SIGNED),
    Route("GET", "/fapi/v2/account", accounts.futures_account(2), USDM, 5, SIGNED),
    Route("GET", "/fapi/v3/account", accounts.futures_account(3), USDM, 5, SIGNED),
    Route("GET", "/fapi/v2/balance", accounts.futures_balance, USDM, 5, SIGNED),
    Route("GET", "/fapi/v3/balance", accounts.futures_balance, USDM, 5, SIGNED),
    Route("GET", "/fapi/v2/positionRisk", accounts.position_risk(2), USDM, 5, SIGNED),
    Route("GET", "/fapi/v3/positionRisk", accounts.position_risk(3), USDM, 5, SIGNED),
    Route("POST", "/fapi/v1/leverage", accounts.leverage, USDM, 1, SIGNED),
    Route("POST", "/fapi/v1/marginType", accounts.margin_type, USDM, 1, SIGNED),
    Route("GET", "/fapi/v1/positionSide/dual", accounts.position_mode, USDM, 30, SIGNED),
    Route("POST", "/fapi/v1/positionSide/dual", accounts.set_position_mode, USDM, 1, SIGNED),
    Route("GET", "/fapi/v1/leverageBracket", accounts.leverage_bracket, USDM, 1, SIGNED),
    Route("GET", "/fapi/v1/commissionRate", accounts.commission_rate, USDM, 20, SIGNED),
    Route("POST", "/fapi/v1/listenKey", rest.create_listen_key, USDM, 1, API_KEY),
    Route("PUT", "/fapi/v1/listenKey", rest.keepalive_listen_key, USDM, 1, API_KEY),
    Route("DELETE", "/fapi/v1/listenKey", rest.close_listen_key, USDM, 1, API_KEY),
)


class _Market:
    """A configured market: its state, its market-data and user-data publishers, its algo orders."""

    def __init__(self, state: MarketState, server: BinanceSimServer) -> None:
        self.state = state
        self.streams = MarketStreams(state)
        self.user_data = UserData(state)
        self.algo = AlgoOrders(state, server, self.user_data.publish)
        self.margin = FuturesMargin(state) if not state.is_spot else None
        self.streams.margin = self.margin
        self.stops = SpotStops(state, self.user_data.on_event) if state.is_spot else None


class BinanceSimServer:
    """Spot and/or USD-M simulated Binance on one aiohttp application.

    ``api_keys`` maps API key -> secret; ``account_for_key`` maps an API key to the account
    name in the venues' ``Accounts`` (default: the key itself).
    """

    def __init__(
        self,
        spot_venue: SimVenue | None = None,
        usdm_venue: SimVenue | None = None,
        *,
        api_keys: Mapping[str, str],
        account_for_key: Mapping[str, str] | None = None,
        faults_spot: FaultInjector | None = None,
        faults_usdm: FaultInjector | None = None,
        clock: Clock = REAL_CLOCK,
        spot_limits: RateLimitSettings = SPOT_LIMITS,
        usdm_limits: RateLimitSettings = USDM_LIMITS,
        ping_interval_s: float = 20.0,
        listen_key_validity_s: float = 3600.0,
        stream_tick_s: float = 0.1,
        max_num_orders: int = 200,
        incoming_messages_per_s: Mapping[Market, int] | None = None,
        ed25519_keys: Mapping[str, str | bytes] | None = None,
    ) -> None:
        if spot_venue is None and usdm_venue is None:
            raise ValueError("a Binance simulator needs a spot venue, a USD-M venue, or both")
        self.api_keys = dict(api_keys)
        # API key -> Ed25519 public key (PEM): the WebSocket API's signatures and session.logon
        self.ed25519_keys: dict[str, Ed25519PublicKey] = {
            key: _ed25519_public_key(pem) for key, pem in (ed25519_keys or {}).items()
        }
        self.account_for_key = dict(account_for_key or {})
        self.clock = clock
        self.ping_interval_s = ping_interval_s
        self.stream_tick_s = stream_tick_s
        # Binance cuts a market-stream connection that sends more than 5 (spot) / 10 (USD-M)
        # messages per second; 0 disables the check
        self.incoming_messages_per_s = {SPOT: 5, USDM: 10, **dict(incoming_messages_per_s or {})}
        self.message_limit_disconnects = 0
        self.slow_client_disconnects = 0  # clients that stopped reading: their queue or a send ran over
        self.unmasked_frame_disconnects = 0  # clients that sent an unmasked frame (RFC 6455: close 1002)
        self.markets: dict[Market, _Market] = {}
        for market, venue, faults, limits in (
            (SPOT, spot_venue, faults_spot, spot_limits),
            (USDM, usdm_venue, faults_usdm, usdm_limits),
        ):
            if venue is None:
                continue
            state = MarketState(
                market,
                venue,
                faults or FaultInjector(clock=clock),
                limits,
                clock,
                max_num_orders=max_num_orders,
                listen_key_validity_s=listen_key_validity_s,
            )
            self.markets[market] = _Market(state, self)
        self.internal_errors = 0
        self.client_resets = 0  # clients gone mid-answer (counted, not errors)
        self.not_found_answers = 0  # requests for paths or methods the venue does not serve
        self._listen_key_sinks: dict[str, list[tuple[Outbox, Callable[[dict[str, Any]], None]]]] = {}
        self._sockets: set[web.WebSocketResponse] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._stream_runner: web.AppRunner | None = None  # the optional futures stream host
        self.port: int | None = None  # bound by start()
        self.app = self._build_app()

    # public helpers -----------------------------------------------------------------------
    def market_states(self) -> list[MarketState]:
        return [market.state for market in self.markets.values()]

    def state(self, market: Market) -> MarketState:
        return self.markets[market].state

    @property
    def open_connections(self) -> int:
        return len(self._sockets)

    def snapshot(self) -> dict[str, Any]:
        """Connection and protection figures, for the simulator's control endpoint."""
        figures: dict[str, Any] = {
            "open": self.open_connections,
            "internal_errors": self.internal_errors,
            "client_resets": self.client_resets,
            "not_found_answers": self.not_found_answers,
            "message_limit_disconnects": self.message_limit_disconnects,
            "slow_client_disconnects": self.slow_client_disconnects,
            "unmasked_frame_disconnects": self.unmasked_frame_disconnects,
        }
        for market, entry in self.markets.items():
            state = entry.state
            figures[market.value] = {
                "weight_rejections": state.weights.rejected,
                "ban_answers": state.weights.banned,
                "order_rate_rejections": state.order_limits.rejected,
                "listen_keys": len(state.listen_keys),
                "stream_subscribers": len(entry.streams.subscribers),
                "depth_events_published": entry.streams.published,
                "algo_orders_open": len(entry.algo.open),
                "algo_orders_triggered": entry.algo.triggered,
                "stop_orders_waiting": len(entry.stops.waiting) if entry.stops is not None else 0,
                "stop_orders_triggered": entry.stops.triggered if entry.stops is not None else 0,
                "funding_payments": entry.margin.funding_payments if entry.margin is not None else 0,
            }
        return figures

    def account_of(self, api_key: str) -> str:
        return self.account_for_key.get(api_key, api_key)

    def depth_snapshot(self, state: MarketState, symbol: str, limit: int) -> DepthSnapshot:
        """A REST snapshot at a stream event boundary: close open depth windows first.

        Every depth stream has then published up to the engine's update id, so
        ``lastUpdateId`` equals the ``u`` of the last diff sent and the next diff starts at
        ``lastUpdateId + 1`` (what python-binance's DepthCacheManager insists on).
        """
        state.instrument(symbol)
        self.markets[state.market].streams.flush_symbol(symbol)
        return state.engine.depth(symbol, limit)

    def component(self, state: MarketState, kind: type[ComponentT]) -> ComponentT | None:
        """The market's algo orders, margin or stops, by type (what ``rest.ServerView`` asks)."""
        market = self.markets[state.market]
        for part in (market.algo, market.margin, market.stops):
            if isinstance(part, kind):
                return part
        return None

    def algo_orders(self, state: MarketState) -> AlgoOrders:
        return self.markets[state.market].algo

    def margin(self, state: MarketState) -> FuturesMargin | None:
        return self.markets[state.market].margin

    def stops(self, state: MarketState) -> SpotStops | None:
        return self.markets[state.market].stops

    def listen_key_closed(self, state: MarketState, listen_key: ListenKey) -> None:
        for outbox, sink in self._listen_key_sinks.pop(listen_key.key, []):
            self.markets[state.market].user_data.remove(listen_key.account, sink)
            outbox.close()

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        usdm_stream_port: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> dict[str, str]:
        """Serve on ``host:port`` (0 = any free port); return the base URLs by purpose.

        On the shared port the root ``/ws`` and ``/stream`` are spot's (stream.binance.com).
        ``usdm_stream_port`` (0 = any) adds a futures stream host (fstream.binance.com) whose
        root paths, as on the venue, carry USD-M ``/public`` streams: its base is ``usdm_stream``.
        ``ssl_context``: serve https / wss (``hftkit sim --tls``).
        """
        http_scheme, ws_scheme = ("https", "wss") if ssl_context is not None else ("http", "ws")
        if usdm_stream_port is not None and USDM in self.markets:
            self._stream_runner = web.AppRunner(
                self._build_futures_stream_app(), access_log=None, handler_cancellation=True
            )
            await self._stream_runner.setup()
            await web.TCPSite(self._stream_runner, host, usdm_stream_port, ssl_context=ssl_context).start()
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        bound = int(self._runner.addresses[0][1])
        http = f"{http_scheme}://{host}:{bound}"
        ws = f"{ws_scheme}://{host}:{bound}"
        self.port = bound
        return {
            "rest": http,
            "spot_rest": f"{http}/api/v3",
            "usdm_rest": f"{http}/fapi/v1",
            "spot_ws": f"{ws}/ws",
            "spot_stream": f"{ws}/stream",
            "usdm_ws": f"{ws}/public/ws",
            "usdm_market_ws": f"{ws}/market/ws",
            "usdm_private_ws": f"{ws}/private/ws",
            "spot_ws_api": f"{ws}/ws-api/v3",
            "usdm_ws_api": f"{ws}/ws-fapi/v1",
            "ws": ws,
            **(
                {"usdm_stream": f"{ws_scheme}://{host}:{int(self._stream_runner.addresses[0][1])}"}
                if self._stream_runner is not None
                else {}
            ),
        }

    async def drop_connections(self) -> int:
        """Close every WebSocket connection of both markets (streams, WS API, user data); how many."""
        sockets = list(self._sockets)
        for socket in sockets:
            with contextlib.suppress(Exception):
                await socket.close(code=WSCloseCode.GOING_AWAY, message=b"dropped")
        return len(sockets)

    def connections(self) -> int:
        """Open client connections of both markets (REST keep-alive, streams, WS API)."""
        return open_connections(self._runner, self._stream_runner)

    async def stop(self) -> None:
        for socket in list(self._sockets):
            with contextlib.suppress(Exception):
                await socket.close()
        if self._stream_runner is not None:
            await self._stream_runner.cleanup()
            self._stream_runner = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # application ---------------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._error_middleware])
        for route in ROUTES:
            app.router.add_route(route.method, route.path, self._rest_handler(route))
        fallback = SPOT if SPOT in self.markets else USDM
        app.router.add_route(
            "GET",
            "/dapi/v1/exchangeInfo",
            self._rest_handler(
                Route("GET", "/dapi/v1/exchangeInfo", rest.inverse_exchange_info, fallback, 1)
            ),
        )
        self._add_stream_routes(app, root_market=fallback)
        app.router.add_get("/ws-api/v3", self._websocket_api(SPOT))
        app.router.add_get("/ws-fapi/v1", self._websocket_api(USDM))
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    def _add_stream_routes(self, app: web.Application, root_market: Market) -> None:
        """Root ``/ws`` ``/stream`` for ``root_market`` (USD-M roots carry /public streams),
        USD-M ``/public`` and ``/market``, and ``/private`` user data."""
        for prefix, market, route in (
            ("", root_market, None),
            ("/public", USDM, PUBLIC),
            ("/market", USDM, MARKET),
        ):
            app.router.add_get(f"{prefix}/ws", self._market_socket(market, False, route))
            app.router.add_get(f"{prefix}/ws/{{name:.*}}", self._market_socket(market, False, route))
            app.router.add_get(f"{prefix}/stream", self._market_socket(market, True, route))
        app.router.add_get("/private/ws", self._private_socket(combined=False))
        app.router.add_get("/private/ws/{name:.*}", self._private_socket(combined=False))
        app.router.add_get("/private/stream", self._private_socket(combined=True))

    def _build_futures_stream_app(self) -> web.Application:
        """fstream.binance.com: USD-M streams only, the root paths routed as /public."""
        app = web.Application(middlewares=[self._error_middleware])
        self._add_stream_routes(app, root_market=USDM)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._spawn(self._ticker())

    async def _on_shutdown(self, app: web.Application) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        # Wait for them: a stopped server leaves no task behind.
        await asyncio.gather(*tasks, return_exceptions=True)
        for socket in list(self._sockets):
            with contextlib.suppress(Exception):
                await socket.close()

    def _spawn(self, coroutine: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _ticker(self) -> None:
        """Periodic streams and listen-key expiry."""
        while True:
            await asyncio.sleep(self.stream_tick_s)
            for market in self.markets.values():
                try:
                    if market.margin is not None:
                        market.margin.settle_funding(
                            ms(self.clock.time_ns()), market.user_data.account_update
                        )
                    market.streams.tick()
                    for listen_key in market.state.expired_listen_keys():
                        self._expire_listen_key(market, listen_key)
                except Exception:
                    self.internal_errors += 1
                    logger.exception("stream tick failed")

    def _expire_listen_key(self, market: _Market, listen_key: ListenKey) -> None:
        now = ms(self.clock.time_ns())
        for outbox, sink in self._listen_key_sinks.pop(listen_key.key, []):
            market.user_data.remove(listen_key.account, sink)
            outbox.send_json({"e": "listenKeyExpired", "E": now, "listenKey": listen_key.key})
            outbox.close()

    @web.middleware
    async def _error_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            # the venue's gateway answers a path or method it does not route with its HTML 404 page
            self.not_found_answers += 1
            return _not_found()
        except web.HTTPException:
            raise
        except asyncio.CancelledError:
            raise
        except ConnectionResetError:
            # the client left while we answered (a WebSocket handshake it dropped): not our error,
            # and nobody is left to answer; aiohttp closes the connection quietly
            self.client_resets += 1
            raise
        except Exception:
            self.internal_errors += 1
            logger.exception("unexpected error answering %s %s", request.method, request.path)
            code, message = UNKNOWN_ERROR
            return _json_response({"code": code, "msg": message}, 500)

    # REST ----------------------------------------------------------------------------------
    def _rest_handler(self, route: Route) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            market = self.markets.get(route.market)
            if market is None:
                return _not_found()
            return await self._serve(route, market.state, request)

        return handle

    async def _serve(self, route: Route, state: MarketState, request: web.Request) -> web.StreamResponse:
        ip = request.remote or "unknown"
        headers: dict[str, str] = {}
        try:
            query = request.rel_url.raw_query_string
            body = ""
            if request.method != "GET" and request.can_read_body:
                body = (await request.read()).decode("utf-8", "replace")
            params = Params.from_request(query, body)
            verdict = state.weights.charge(ip, route.weight_for(params))
            if verdict.status:
                raise BinanceApiError(
                    verdict.code, verdict.message, verdict.status, {"Retry-After": str(verdict.retry_after_s)}
                )
            fault = state.faults.request()
            if fault.delay_s and not fault.timeout:
                await asyncio.sleep(fault.delay_s)
            if fault.status == 429:
                raise BinanceApiError(
                    -1003,
                    f"Too much request weight used; current limit is {state.limits.request_weight} request "
                    "weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling "
                    "the API.",
                    429,
                    {"Retry-After": str(state.faults.storm_retry_after_s())},
                )
            account, api_key = self._authenticate(
                route.security, request.headers.get("X-MBX-APIKEY"), params, query, body, state
            )
            call = Call(params, state, account, api_key, self, headers)
            if route.places_order:
                assert account is not None
                verdict = state.order_limits.charge(account, route.order_counts)
                headers.update(self._order_count_headers(state, account))
                if verdict.status:
                    raise BinanceApiError(
                        verdict.code,
                        verdict.message,
                        verdict.status,
                        {"Retry-After": str(verdict.retry_after_s)},
                    )
            if fault.timeout:
                if route.places_order:
                    with contextlib.suppress(BinanceApiError):
                        await route.handler(call)  # the order may well exist: that is the point
                await asyncio.sleep(fault.delay_s)
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=504)
            if fault.status >= 500:
                if route.places_order:
                    with contextlib.suppress(BinanceApiError):
                        await route.handler(call)
                    raise BinanceApiError(-1007, SEND_STATUS_UNKNOWN, fault.status)
                raise BinanceApiError(-1001, INTERNAL_ERROR, fault.status)
            result = await route.handler(call)
            if route.places_order:
                delay = state.faults.ack_delay()
                if delay:
                    await asyncio.sleep(delay)
            response = _json_response(result, 200)
        except BinanceApiError as error:
            headers.update(error.headers)
            response = _json_response(error.body(), error.status)
        response.headers[state.limits.weight_header] = str(state.weights.used(ip))
        response.headers.update(headers)
        return response

    def _order_count_headers(self, state: MarketState, account: str) -> dict[str, str]:
        counts = state.order_limits.counts(account)
        return dict(zip(state.limits.order_headers(), (str(count) for count in counts), strict=True))

    def _authenticate(
        self, security: str, api_key: str | None, params: Params, query: str, body: str, state: MarketState
    ) -> tuple[str | None, str | None]:
        if security == NONE:
            return None, None
        secret = check_api_key(api_key, self.api_keys)
        assert api_key is not None
        if security == SIGNED:
            verify_signature(secret, query, body)
            check_timestamp(params, ms(self.clock.time_ns()))
        return self.account_of(api_key), api_key

    # market streams ------------------------------------------------------------------------
    async def _open_socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = SimWebSocketResponse(
            heartbeat=self.ping_interval_s or None,
            autoping=True,
            max_msg_size=1 << 20,
            on_unmasked=self._count_unmasked,
        )
        await socket.prepare(request)
        self._sockets.add(socket)
        return socket

    def _count_unmasked(self) -> None:
        self.unmasked_frame_disconnects += 1

    def _count_slow(self) -> None:
        self.slow_client_disconnects += 1

    def _outbox(self, socket: web.WebSocketResponse, faults: FaultInjector, coalesce: bool = False) -> Outbox:
        """``coalesce``: market streams write a burst of events at once; replies go out at once."""
        return Outbox(socket, faults, on_slow=self._count_slow, coalesce=coalesce)

    def _disconnect_timer(self, faults: FaultInjector, outbox: Outbox) -> asyncio.Task[None] | None:
        after = faults.disconnect_after_s()
        if after is None:
            return None

        async def drop() -> None:
            await asyncio.sleep(after)
            if not outbox.closed:
                faults.count_disconnect()
                outbox.close()

        return self._spawn(drop())

    def _market_socket(
        self, market_kind: Market, combined: bool, route: str | None = None
    ) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            name = request.match_info.get("name", "")
            # a listen key on /ws/<key>: user data (spot legacy or USD-M)
            for listening in self.markets.values():
                if name and listening.state.active_listen_key(name) is not None:
                    return await self._user_socket(request, listening, name)
            market = self.markets.get(market_kind)
            if market is None:
                return _not_found()
            streams_param = request.query.get("streams", "")
            if combined and streams_param:
                keys = [part for part in streams_param.split("/") if part]
                key_market = next(
                    (m for m in self.markets.values() for key in keys if m.state.active_listen_key(key)), None
                )
                if key_market is not None:
                    return await self._user_socket(request, key_market, keys[0], combined=True)
            # a USD-M connection always has a route: no routed path means /public
            stream_route = route or (PUBLIC if market_kind is USDM else None)
            return await self._serve_market_socket(
                request, market, combined, name, streams_param, stream_route
            )

        return handle

    async def _serve_market_socket(
        self,
        request: web.Request,
        market: _Market,
        combined: bool,
        name: str,
        streams_param: str,
        route: str | None = None,
    ) -> web.StreamResponse:
        socket = await self._open_socket(request)
        state = market.state
        outbox = self._outbox(socket, state.faults, coalesce=True)
        subscriber = Subscriber(outbox, combined, route)
        streams = market.streams
        streams.subscribers.add(subscriber)
        initial = (
            [part for part in streams_param.split("/") if part] if combined else ([name] if name else [])
        )
        for stream_name in initial:
            try:
                streams.subscribe(subscriber, parse_stream(stream_name, state.is_spot))
            except InvalidStream:
                continue  # ccxt.pro opens /ws/0, /ws/1 ...: a path suffix that is no stream is tolerated
        outbox.start()
        timer = self._disconnect_timer(state.faults, outbox)
        limit = self.incoming_messages_per_s.get(state.market, 0)
        second = -1
        received = 0
        try:
            async for message in socket:
                if message.type is WSMsgType.TEXT:
                    now_second = self.clock.monotonic_ns() // 1_000_000_000
                    if now_second != second:
                        second, received = now_second, 0
                    received += 1
                    if limit and received > limit:
                        self.message_limit_disconnects += 1
                        logger.info("market stream client sent over %d messages/s: disconnecting", limit)
                        break
                    self._control(message.data, subscriber, market)
                elif message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
                if outbox.closed:
                    break
        finally:
            streams.drop(subscriber)
            outbox.close()
            await outbox.wait_closed()
            if timer is not None:
                timer.cancel()
            self._sockets.discard(socket)
        return socket

    def _control(self, text: str, subscriber: Subscriber, market: _Market) -> None:
        outbox = subscriber.outbox
        request = _control_request(text, outbox)
        if request is None:
            return
        request_id, method, params = request
        streams = market.streams
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(item, str) for item in params):
                outbox.send_json(
                    {
                        "code": 2,
                        "msg": "Invalid request: invalid type: expected a sequence of strings",
                        "id": request_id,
                    }
                )
                return
            specs = []
            for name in params:
                if method == "UNSUBSCRIBE":
                    continue
                try:
                    specs.append(parse_stream(name, market.state.is_spot))
                except InvalidStream:
                    outbox.send_json(
                        {"code": 2, "msg": f"Invalid request: invalid stream name `{name}`", "id": request_id}
                    )
                    return
            if method == "SUBSCRIBE":
                if len(subscriber.streams) + len(specs) > 1024:
                    outbox.send_json(
                        {"code": 2, "msg": "Invalid request: too many streams (limit 1024)", "id": request_id}
                    )
                    return
                for spec in specs:
                    streams.subscribe(subscriber, spec)
            else:
                for name in params:
                    streams.unsubscribe(subscriber, name)
            outbox.send_json({"result": None, "id": request_id})
        elif method == "LIST_SUBSCRIPTIONS":
            outbox.send_json({"result": list(subscriber.streams), "id": request_id})
        elif method == "SET_PROPERTY":
            if not isinstance(params, list) or len(params) != 2 or params[0] != "combined":
                outbox.send_json({"code": 0, "msg": "Unknown property", "id": request_id})
                return
            if not isinstance(params[1], bool):
                outbox.send_json({"code": 1, "msg": "Invalid value type: expected Boolean", "id": request_id})
                return
            subscriber.combined = params[1]
            outbox.send_json({"result": None, "id": request_id})
        else:  # GET_PROPERTY
            if not isinstance(params, list) or params != ["combined"]:
                outbox.send_json({"code": 0, "msg": "Unknown property", "id": request_id})
                return
            outbox.send_json({"result": subscriber.combined, "id": request_id})

    # user data over listen keys ------------------------------------------------------------
    def _private_socket(self, combined: bool) -> Callable[[web.Request], Any]:
        """USD-M ``/private``: user data by listenKey in the URL or by live SUBSCRIBE.

        ``/private/ws/<key>``, ``/private/ws?listenKey=<key>``, ``/private/stream?streams=<key>``,
        or no key at all and ``SUBSCRIBE ["<key>"]`` later (the official SDK opens /public,
        /market and /private at start, then subscribes its key). ``events=A/B`` (or ``A,B``)
        delivers only those event types. A key in the URL that is not active: 400 ``-1125``.
        """

        async def handle(request: web.Request) -> web.StreamResponse:
            market = self.markets.get(USDM)
            if market is None:
                return _not_found()
            keys = [request.query.get("listenKey") or request.match_info.get("name", "")]
            keys += request.query.get("streams", "").split("/")
            keys = [key for key in keys if key]
            for key in keys:
                if market.state.active_listen_key(key) is None:
                    return _json_response({"code": -1125, "msg": "This listenKey does not exist."}, 400)
            raw_events = request.query.get("events", "").replace(",", "/")
            events = frozenset(part for part in raw_events.split("/") if part) or None
            return await self._serve_private(request, market, keys, combined, events)

        return handle

    async def _serve_private(
        self,
        request: web.Request,
        market: _Market,
        keys: list[str],
        combined: bool,
        events: frozenset[str] | None,
    ) -> web.StreamResponse:
        socket = await self._open_socket(request)
        state = market.state
        outbox = self._outbox(socket, state.faults)
        attached: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {}
        silent: list[str] = []  # market streams asked for on /private: listed, never delivered

        def attach(key: str) -> bool:
            listen_key = state.active_listen_key(key)
            if listen_key is None:
                return False
            if key in attached:
                return True

            def sink(event: dict[str, Any]) -> None:
                if events is None or event.get("e") in events:
                    outbox.send_json({"stream": key, "data": event} if combined else event)

            market.user_data.add(listen_key.account, sink)
            self._listen_key_sinks.setdefault(key, []).append((outbox, sink))
            attached[key] = (listen_key.account, sink)
            return True

        def detach(key: str) -> None:
            found = attached.pop(key, None)
            if found is None:
                return
            account, sink = found
            market.user_data.remove(account, sink)
            sinks = self._listen_key_sinks.get(key)
            if sinks is not None and (outbox, sink) in sinks:
                sinks.remove((outbox, sink))

        for key in keys:
            attach(key)
        outbox.start()
        timer = self._disconnect_timer(state.faults, outbox)
        try:
            async for message in socket:
                if message.type is WSMsgType.TEXT:
                    self._private_control(message.data, outbox, attach, detach, attached, silent)
                elif message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
                if outbox.closed:
                    break
        finally:
            for key in list(attached):
                detach(key)
            outbox.close()
            await outbox.wait_closed()
            if timer is not None:
                timer.cancel()
            self._sockets.discard(socket)
        return socket

    def _private_control(
        self,
        text: str,
        outbox: Outbox,
        attach: Callable[[str], bool],
        detach: Callable[[str], None],
        attached: Mapping[str, object],
        silent: list[str],
    ) -> None:
        """SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS with listenKeys as the stream names."""
        request = _control_request(text, outbox)
        if request is None:
            return
        request_id, method, params = request
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(item, str) for item in params):
                outbox.send_json(
                    {
                        "code": 2,
                        "msg": "Invalid request: invalid type: expected a sequence of strings",
                        "id": request_id,
                    }
                )
                return
            for name in params:
                if method == "UNSUBSCRIBE":
                    detach(name)
                    if name in silent:
                        silent.remove(name)
                    continue
                if attach(name):
                    continue
                try:
                    parse_stream(name, spot=False)
                except InvalidStream:
                    outbox.send_json(
                        {"code": 2, "msg": f"Invalid request: invalid stream name `{name}`", "id": request_id}
                    )
                    return
                if name not in silent:
                    silent.append(name)
            outbox.send_json({"result": None, "id": request_id})
        elif method == "LIST_SUBSCRIPTIONS":
            outbox.send_json({"result": [*attached, *silent], "id": request_id})
        else:  # SET_PROPERTY / GET_PROPERTY: the envelope is fixed by the path on /private
            outbox.send_json({"code": 0, "msg": "Unknown property", "id": request_id})

    async def _user_socket(
        self, request: web.Request, market: _Market, key: str, combined: bool = False
    ) -> web.StreamResponse:
        listen_key = market.state.active_listen_key(key)
        assert listen_key is not None
        socket = await self._open_socket(request)
        outbox = self._outbox(socket, market.state.faults)

        def sink(event: dict[str, Any]) -> None:
            outbox.send_json({"stream": key, "data": event} if combined else event)

        market.user_data.add(listen_key.account, sink)
        self._listen_key_sinks.setdefault(key, []).append((outbox, sink))
        outbox.start()
        timer = self._disconnect_timer(market.state.faults, outbox)
        try:
            async for message in socket:
                if message.type in (WSMsgType.ERROR, WSMsgType.CLOSE) or outbox.closed:
                    break
        finally:
            market.user_data.remove(listen_key.account, sink)
            sinks = self._listen_key_sinks.get(key)
            if sinks is not None and (outbox, sink) in sinks:
                sinks.remove((outbox, sink))
            outbox.close()
            await outbox.wait_closed()
            if timer is not None:
                timer.cancel()
            self._sockets.discard(socket)
        return socket

    # WebSocket API -------------------------------------------------------------------------
    def _websocket_api(self, market_kind: Market) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            market = self.markets.get(market_kind)
            if market is None:
                return _not_found()
            socket = await self._open_socket(request)
            outbox = self._outbox(socket, market.state.faults)
            session = ApiSession(self, market.state, market.user_data, outbox, request.remote or "unknown")
            session.outbox.start()
            timer = self._disconnect_timer(market.state.faults, session.outbox)
            try:
                async for message in socket:
                    if message.type is WSMsgType.TEXT:
                        await session.handle(message.data)
                    elif message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                        break
                    if session.outbox.closed:
                        break
            finally:
                session.close()
                await session.outbox.wait_closed()
                if timer is not None:
                    timer.cancel()
                self._sockets.discard(socket)
            return socket

        return handle


# What the venue's gateway serves for a path or method it does not route: its HTML error page
# with status 404 (clients see a 404 text/html answer, as from api.binance.com / fapi.binance.com).
NOT_FOUND_PAGE = (
    '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="UTF-8">\n<title>Binance</title>\n</head>\n'
    '<body>\n<div class="info"><h3>404 Not Found</h3>\n'
    "<p>Sorry! The page you are looking for cannot be found.</p></div>\n</body>\n</html>\n"
)


def _not_found() -> web.Response:
    return web.Response(status=404, text=NOT_FOUND_PAGE, content_type="text/html")


def _ed25519_public_key(pem: str | bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("an Ed25519 API key needs an Ed25519 public key (PEM)")
    return key


def _control_request(text: str, outbox: Outbox) -> tuple[Any, str, Any] | None:
    """A stream control message's (id, method, params), or None after answering its error."""
    try:
        request = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        outbox.send_json({"code": 3, "msg": f"Invalid JSON: {error}", "id": None})
        return None
    if not isinstance(request, dict):
        outbox.send_json({"code": 3, "msg": "Invalid JSON: expected an object", "id": None})
        return None
    request_id = request.get("id")
    if not (
        request_id is None
        or (isinstance(request_id, int) and not isinstance(request_id, bool) and request_id >= 0)
        or (isinstance(request_id, str) and len(request_id) <= 36)
    ):
        outbox.send_json(
            {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer", "id": None}
        )
        return None
    method = request.get("method")
    if method not in CONTROL_METHODS:
        outbox.send_json(
            {
                "code": 2,
                "msg": f"Invalid request: unknown variant `{method}`, expected one of `SUBSCRIBE`, "
                "`UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`",
                "id": request_id,
            }
        )
        return None
    return request_id, method, request.get("params", [])


def _json_response(body: Any, status: int) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


__all__ = ["ROUTES", "BinanceSimServer", "Route"]
