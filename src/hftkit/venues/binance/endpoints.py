"""Binance hosts, rate limits and endpoint weights, as data.

A reader finds the venue's whole budget here. Weights are Binance's published values
(see shared/protocols/binance.md §2 and §8); an endpoint whose weight depends on a
parameter declares a function of the params.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from hftkit.core.clock import Clock
from hftkit.resilience.weighted import Priority, RateWindow, WeightedLimiter


class Market(Enum):
    SPOT = "spot"
    USDM = "usdm"


@dataclass(frozen=True)
class RateLimitWindow:
    """One of the venue's limits: ``limit`` units of ``kind`` per ``seconds``."""

    kind: str  # REQUEST_WEIGHT or ORDERS
    seconds: int
    limit: int
    header: str  # the response header that reports our usage of this window


_INTERVAL_SUFFIXES = {"SECOND": "s", "MINUTE": "m", "HOUR": "h", "DAY": "d"}


# cached: every answer names the same few windows (a peer's made-up ones stay bounded)
@functools.lru_cache(maxsize=64)
def window_header(rate_limit_type: str, interval: str, interval_num: int) -> str | None:
    """The response header that counts a window the venue describes as ``rateLimits`` do
    (exchangeInfo, WebSocket API answers): REQUEST_WEIGHT/MINUTE/1 -> ``x-mbx-used-weight-1m``."""
    suffix = _INTERVAL_SUFFIXES.get(interval)
    if suffix is None:
        return None
    if rate_limit_type == "REQUEST_WEIGHT":
        return f"x-mbx-used-weight-{interval_num}{suffix}"
    if rate_limit_type == "ORDERS":
        return f"x-mbx-order-count-{interval_num}{suffix}"
    return None


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    weight: int | Callable[[Mapping[str, str]], int]
    orders: int = 0  # counts against the ORDERS windows
    signed: bool = False
    api_key: bool = False  # needs X-MBX-APIKEY even if unsigned
    is_cancel: bool = False  # cancels get priority when the budget is short

    def weight_for(self, params: Mapping[str, str]) -> int:
        weight = self.weight
        return weight(params) if callable(weight) else weight


SPOT_REST_URLS = ("https://api.binance.com", "https://api1.binance.com", "https://api2.binance.com")
SPOT_STREAM_URL = "wss://stream.binance.com:9443"
SPOT_WEBSOCKET_API_URL = "wss://ws-api.binance.com:443/ws-api/v3"
USDM_REST_URLS = ("https://fapi.binance.com",)
USDM_STREAM_URL = "wss://fstream.binance.com"
USDM_WEBSOCKET_API_URL = "wss://ws-fapi.binance.com/ws-fapi/v1"

# Testnets (shared/protocols/binance.md §1): same paths and payloads, separate keys and balances.
SPOT_TESTNET_REST_URLS = ("https://testnet.binance.vision",)
SPOT_TESTNET_STREAM_URL = "wss://stream.testnet.binance.vision"
SPOT_TESTNET_WEBSOCKET_API_URL = "wss://ws-api.testnet.binance.vision/ws-api/v3"
USDM_TESTNET_REST_URLS = ("https://testnet.binancefuture.com",)
USDM_TESTNET_STREAM_URL = "wss://fstream.binancefuture.com"
USDM_TESTNET_WEBSOCKET_API_URL = "wss://testnet.binancefuture.com/ws-fapi/v1"


@dataclass(frozen=True)
class VenueUrls:
    """Where one market of one environment lives: REST bases, stream base, WebSocket API."""

    rest: tuple[str, ...]
    stream: str
    websocket_api: str  # requests and answers (orders; spot user data too)
    # user data over a listen key: spot on ``/ws/<key>``, USD-M on ``/private/ws?listenKey=``
    listen_key_path: str


#: The venue's published endpoints per (market, environment): a config names the environment,
#: and overrides a URL only when it must (a proxy, a colocated gateway).
PUBLISHED_URLS: dict[tuple[Market, str], VenueUrls] = {
    (Market.SPOT, "mainnet"): VenueUrls(SPOT_REST_URLS, SPOT_STREAM_URL, SPOT_WEBSOCKET_API_URL, "ws"),
    (Market.SPOT, "testnet"): VenueUrls(
        SPOT_TESTNET_REST_URLS, SPOT_TESTNET_STREAM_URL, SPOT_TESTNET_WEBSOCKET_API_URL, "ws"
    ),
    (Market.USDM, "mainnet"): VenueUrls(USDM_REST_URLS, USDM_STREAM_URL, USDM_WEBSOCKET_API_URL, "private"),
    (Market.USDM, "testnet"): VenueUrls(
        USDM_TESTNET_REST_URLS, USDM_TESTNET_STREAM_URL, USDM_TESTNET_WEBSOCKET_API_URL, "private"
    ),
}

#: Binance USD-M ``POST /fapi/v1/batchOrders`` takes at most this many orders per request.
USDM_MAX_BATCH_ORDERS = 5

SPOT_RATE_LIMITS = (
    RateLimitWindow("REQUEST_WEIGHT", 60, 6000, "x-mbx-used-weight-1m"),
    RateLimitWindow("ORDERS", 10, 100, "x-mbx-order-count-10s"),
    RateLimitWindow("ORDERS", 86_400, 200_000, "x-mbx-order-count-1d"),
)
USDM_RATE_LIMITS = (
    RateLimitWindow("REQUEST_WEIGHT", 60, 2400, "x-mbx-used-weight-1m"),
    RateLimitWindow("ORDERS", 10, 300, "x-mbx-order-count-10s"),
    RateLimitWindow("ORDERS", 60, 1200, "x-mbx-order-count-1m"),
)


def _spot_depth_weight(params: Mapping[str, str]) -> int:
    limit = int(params.get("limit", "100"))
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def _usdm_depth_weight(params: Mapping[str, str]) -> int:
    limit = int(params.get("limit", "500"))
    if limit <= 50:
        return 2
    if limit <= 100:
        return 5
    if limit <= 500:
        return 10
    return 20


def _spot_ticker_24h_weight(params: Mapping[str, str]) -> int:
    """Spot ``ticker/24hr``: 2 for one symbol or a list of up to 20, 40 up to 100, else 80."""
    if "symbol" in params:
        return 2
    listed = params.get("symbols")
    if listed is None:
        return 80
    count = listed.count(",") + 1
    return 2 if count <= 20 else 40 if count <= 100 else 80


def _with_or_without_symbol(with_symbol: int, without: int) -> Callable[[Mapping[str, str]], int]:
    return lambda params: with_symbol if "symbol" in params else without


_SPOT = (
    Endpoint("ping", "GET", "/api/v3/ping", 1),
    Endpoint("time", "GET", "/api/v3/time", 1),
    Endpoint("exchange_info", "GET", "/api/v3/exchangeInfo", 20),
    Endpoint("depth", "GET", "/api/v3/depth", _spot_depth_weight),
    Endpoint("trades", "GET", "/api/v3/trades", 25),
    Endpoint("aggregate_trades", "GET", "/api/v3/aggTrades", 4),
    Endpoint("book_ticker", "GET", "/api/v3/ticker/bookTicker", _with_or_without_symbol(2, 4)),
    Endpoint("ticker_price", "GET", "/api/v3/ticker/price", _with_or_without_symbol(2, 4)),
    Endpoint("ticker_24h", "GET", "/api/v3/ticker/24hr", _spot_ticker_24h_weight),
    Endpoint("new_order", "POST", "/api/v3/order", 1, orders=1, signed=True),
    Endpoint("cancel_order", "DELETE", "/api/v3/order", 1, signed=True, is_cancel=True),
    Endpoint("cancel_all", "DELETE", "/api/v3/openOrders", 1, signed=True, is_cancel=True),
    Endpoint("query_order", "GET", "/api/v3/order", 4, signed=True),
    Endpoint("open_orders", "GET", "/api/v3/openOrders", _with_or_without_symbol(6, 80), signed=True),
    Endpoint("account", "GET", "/api/v3/account", 20, signed=True),
    Endpoint("my_trades", "GET", "/api/v3/myTrades", 20, signed=True),
)
_USDM = (
    Endpoint("ping", "GET", "/fapi/v1/ping", 1),
    Endpoint("time", "GET", "/fapi/v1/time", 1),
    Endpoint("exchange_info", "GET", "/fapi/v1/exchangeInfo", 1),
    Endpoint("depth", "GET", "/fapi/v1/depth", _usdm_depth_weight),
    Endpoint("book_ticker", "GET", "/fapi/v1/ticker/bookTicker", _with_or_without_symbol(2, 5)),
    Endpoint("ticker_price", "GET", "/fapi/v1/ticker/price", _with_or_without_symbol(1, 2)),
    Endpoint("ticker_24h", "GET", "/fapi/v1/ticker/24hr", _with_or_without_symbol(1, 40)),
    Endpoint("new_order", "POST", "/fapi/v1/order", 1, orders=1, signed=True),
    # up to 5 orders; weight 5, counted as 5 in the 10 s order window (and 1 in the minute's: we
    # count 5 in every order window, never less than the venue does)
    Endpoint("batch_orders", "POST", "/fapi/v1/batchOrders", 5, orders=5, signed=True),
    Endpoint("cancel_order", "DELETE", "/fapi/v1/order", 1, signed=True, is_cancel=True),
    # a new price and/or quantity for a resting LIMIT order: weight 0, one order in each order
    # window; every accepted modify loses queue priority (docs/simulator.md §2)
    Endpoint("modify_order", "PUT", "/fapi/v1/order", 0, orders=1, signed=True),
    Endpoint("cancel_all", "DELETE", "/fapi/v1/allOpenOrders", 1, signed=True, is_cancel=True),
    Endpoint("query_order", "GET", "/fapi/v1/order", 1, signed=True),
    Endpoint("open_orders", "GET", "/fapi/v1/openOrders", _with_or_without_symbol(1, 40), signed=True),
    Endpoint("account", "GET", "/fapi/v2/account", 5, signed=True),
    Endpoint("balance", "GET", "/fapi/v2/balance", 5, signed=True),
    Endpoint("position_risk", "GET", "/fapi/v2/positionRisk", 5, signed=True),
    Endpoint("create_listen_key", "POST", "/fapi/v1/listenKey", 1, api_key=True),
    Endpoint("keepalive_listen_key", "PUT", "/fapi/v1/listenKey", 1, api_key=True),
    Endpoint("close_listen_key", "DELETE", "/fapi/v1/listenKey", 1, api_key=True),
)

ENDPOINTS: dict[Market, dict[str, Endpoint]] = {
    Market.SPOT: {endpoint.name: endpoint for endpoint in _SPOT},
    Market.USDM: {endpoint.name: endpoint for endpoint in _USDM},
}
RATE_LIMITS: dict[Market, tuple[RateLimitWindow, ...]] = {
    Market.SPOT: SPOT_RATE_LIMITS,
    Market.USDM: USDM_RATE_LIMITS,
}


def account_limiter(
    market: Market, clock: Clock, *, cancel_reserve_fraction: float = 0.1, reset_guard_ns: int = 0
) -> WeightedLimiter:
    """The account's budget as one limiter over the market's windows, a share of each kept for
    cancels (``Priority.HIGH``): the REST client's, and the backtest's model of the same."""
    return WeightedLimiter(
        [
            RateWindow(window.header, window.limit, window.seconds * 1_000_000_000, cancel_reserve_fraction)
            for window in RATE_LIMITS[market]
        ],
        clock,
        reset_guard_ns=reset_guard_ns,
        reserve_priority=Priority.HIGH,
    )


def request_weights(market: Market, endpoint: Endpoint, weight: int) -> dict[str, int]:
    """What one request to ``endpoint`` costs in each window of ``market`` (header -> units)."""
    weights: dict[str, int] = {}
    for window in RATE_LIMITS[market]:
        if window.kind == "REQUEST_WEIGHT":
            weights[window.header] = weight
        elif endpoint.orders:
            weights[window.header] = endpoint.orders
    return weights
