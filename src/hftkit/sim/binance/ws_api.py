"""The Binance WebSocket API of the simulator (``/ws-api/v3``, ``/ws-fapi/v1``): one session per socket.

Requests ``{"id", "method", "params"}`` answer ``{"id", "status", "result" | "error",
"rateLimits"}``. Methods reuse the REST handlers, so ``order.place`` returns exactly the REST
order response (what ccxt.pro's ``create_order_ws`` parses). Signed methods carry ``apiKey``,
``timestamp`` and ``signature`` over the params sorted by name: HMAC-SHA256 (hex) for HMAC
keys, Ed25519 (base64) for the server's ``ed25519_keys``. ``session.logon`` (Ed25519 keys only,
as on the venue) authenticates the connection, after which signed methods may omit ``apiKey``
and ``signature``; ``session.status`` / ``session.logout`` report and end it. Weights follow
the venue's tables (per-symbol and per-limit weights shared with REST via ``binance_limits``).
``userDataStream.subscribe.signature`` attaches the account's user-data events to the socket,
wrapped as ``{"subscriptionId": N, "event": {...}}``. Request faults apply as over REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hftkit.core.clock import Clock
from hftkit.sim.binance import accounts as accounts
from hftkit.sim.binance import algo as algo
from hftkit.sim.binance import amend as amend
from hftkit.sim.binance import orders as orders
from hftkit.sim.binance import rest as rest
from hftkit.sim.binance.limits import (
    Weight,
    endpoint_weight,
    interval_name,
    per_symbol_capped,
    per_symbols,
    weight_of,
    with_symbol,
)
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
)
from hftkit.sim.binance.rest import Call, ServerView
from hftkit.sim.binance.signatures import ed25519_matches, hmac_matches, websocket_payload
from hftkit.sim.binance.state import MarketState
from hftkit.sim.binance.streams import Outbox, UserData
from hftkit.sim.binance.wire import ms
from hftkit.venues.binance.endpoints import Market

logger = logging.getLogger(__name__)

SPOT, USDM = Market.SPOT, Market.USDM
subscription_ids = itertools.count(0)


# WebSocket API methods: (REST handler, weight, security); weights as the venue documents them
Method = tuple[rest.Handler, Weight, str]
_COMMON_WEBSOCKET_METHODS: dict[str, Method] = {
    "ping": (rest.ping, 1, NONE),
    "time": (rest.server_time, 1, NONE),
    "exchangeInfo": (rest.exchange_info, 20, NONE),
    "trades.recent": (rest.trades, 25, NONE),
    "ticker.24hr": (rest.ticker_24h, per_symbols(2, 40, 80), NONE),
    "order.place": (orders.new_order, 1, SIGNED),
    "order.cancel": (orders.cancel_order, 1, SIGNED),
    "order.status": (orders.query_order, 4, SIGNED),
    "openOrders.status": (orders.open_orders, 6, SIGNED),
    "openOrders.cancelAll": (orders.cancel_open_orders, 1, SIGNED),
    "allOrders": (orders.all_orders, 20, SIGNED),
    "myTrades": (orders.my_trades, 20, SIGNED),
}
WEBSOCKET_METHODS: dict[Market, dict[str, Method]] = {
    SPOT: {
        **_COMMON_WEBSOCKET_METHODS,
        "depth": (rest.depth, endpoint_weight(SPOT, "depth"), NONE),
        "trades.historical": (rest.historical_trades, 25, NONE),
        "trades.aggregate": (rest.aggregate_trades, 4, NONE),
        "klines": (rest.klines, 2, NONE),
        "uiKlines": (rest.klines, 2, NONE),
        "avgPrice": (rest.average_price, 2, NONE),
        "ticker": (rest.rolling_ticker, per_symbol_capped(4, 200), NONE),
        "ticker.tradingDay": (rest.trading_day_ticker, per_symbol_capped(4, 200), NONE),
        "ticker.price": (rest.ticker_price, with_symbol(2, 4), NONE),
        "ticker.book": (rest.book_ticker, with_symbol(2, 4), NONE),
        "order.test": (orders.order_test, 1, SIGNED),
        "order.cancelReplace": (amend.cancel_replace, 1, SIGNED),
        "order.amend.keepPriority": (amend.amend_keep_priority, 4, SIGNED),
        "order.amendments": (amend.spot_order_amendments, 4, SIGNED),
        "account.status": (accounts.spot_account, 20, SIGNED),
        "account.commission": (accounts.spot_commission, 20, SIGNED),
        "account.rateLimits.orders": (accounts.spot_order_rate_limits, 40, SIGNED),
    },
    USDM: {
        **_COMMON_WEBSOCKET_METHODS,
        "depth": (rest.depth, endpoint_weight(USDM, "depth"), NONE),
        "ticker.price": (rest.ticker_price, with_symbol(1, 2), NONE),
        "ticker.book": (rest.book_ticker, with_symbol(2, 5), NONE),
        "order.modify": (amend.modify_order, 0, SIGNED),
        "algoOrder.place": (algo.new_algo_order, 0, SIGNED),
        "algoOrder.cancel": (algo.cancel_algo_order, 1, SIGNED),
        "account.status": (accounts.futures_account(2), 5, SIGNED),
        "account.balance": (accounts.futures_balance, 5, SIGNED),
        "account.position": (accounts.position_risk(2), 5, SIGNED),
        "v2/account.status": (accounts.futures_account(3), 5, SIGNED),
        "v2/account.balance": (accounts.futures_balance, 5, SIGNED),
        "v2/account.position": (accounts.position_risk(3), 5, SIGNED),
        "userDataStream.start": (rest.create_listen_key, 1, API_KEY),
        "userDataStream.ping": (rest.keepalive_listen_key, 1, API_KEY),
        "userDataStream.stop": (rest.close_listen_key, 1, API_KEY),
    },
}
SESSION_METHODS = ("session.logon", "session.status", "session.logout")


# methods that count in the ORDERS windows (a new order, a modify, a cancel-replace)
ORDER_COUNTED: frozenset[rest.Handler] = frozenset(
    {orders.new_order, amend.modify_order, amend.cancel_replace, algo.new_algo_order}
)


class ApiServer(ServerView, Protocol):
    """What a WebSocket API session asks of the server that accepted it (``BinanceSimServer``)."""

    internal_errors: int

    @property
    def clock(self) -> Clock: ...

    @property
    def api_keys(self) -> Mapping[str, str]:
        """HMAC API key -> secret."""
        ...

    @property
    def ed25519_keys(self) -> Mapping[str, Ed25519PublicKey]:
        """Ed25519 API key -> public key."""
        ...

    def account_of(self, api_key: str) -> str: ...


class ApiSession:
    """One WebSocket API connection: request/response methods and user-data subscriptions."""

    def __init__(
        self, server: ApiServer, state: MarketState, user_data: UserData, outbox: Outbox, ip: str
    ) -> None:
        self.server = server
        self.user_data = user_data
        self.state = state
        self.outbox = outbox
        self.ip = ip
        self.subscriptions: dict[int, tuple[str, Callable[[dict[str, Any]], None]]] = {}
        self.connected_since = ms(server.clock.time_ns())
        self.session_key: str | None = None  # the API key of session.logon (Ed25519 only)
        self.authorized_since: int | None = None
        self._order_account: str | None = None  # set while answering an order-counting request

    def close(self) -> None:
        for account, sink in self.subscriptions.values():
            self.user_data.remove(account, sink)
        self.subscriptions.clear()
        self.outbox.close()

    def _rate_limits(self) -> list[dict[str, Any]]:
        """REQUEST_WEIGHT of the IP; after an order-counting method, the account's ORDERS too."""
        limits = self.state.limits
        interval, number = interval_name(limits.request_window_s)
        answer: list[dict[str, Any]] = [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": interval,
                "intervalNum": number,
                "limit": limits.request_weight,
                "count": self.state.weights.used(self.ip),
            }
        ]
        if self._order_account is not None:
            counts = self.state.order_limits.counts(self._order_account)
            for (seconds, limit), count in zip(limits.order_windows, counts, strict=True):
                interval, number = interval_name(seconds)
                answer.append(
                    {
                        "rateLimitType": "ORDERS",
                        "interval": interval,
                        "intervalNum": number,
                        "limit": limit,
                        "count": count,
                    }
                )
        return answer

    def _answer(self, request_id: Any, result: Any, with_limits: bool) -> None:
        body: dict[str, Any] = {"id": request_id, "status": 200, "result": result}
        if with_limits:
            body["rateLimits"] = self._rate_limits()
        self.outbox.send_json(body)

    def _fail(self, request_id: Any, error: BinanceApiError, with_limits: bool = True) -> None:
        body: dict[str, Any] = {"id": request_id, "status": error.status, "error": error.body()}
        if error.headers.get("Retry-After"):
            body["error"]["data"] = {"retryAfter": int(error.headers["Retry-After"])}
        if with_limits:
            body["rateLimits"] = self._rate_limits()
        self.outbox.send_json(body)

    async def handle(self, text: str) -> None:
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._fail(None, BinanceApiError(-1000, "Malformed request: not valid JSON."))
            return
        if not isinstance(request, dict):
            self._fail(None, BinanceApiError(-1000, "Malformed request: expected a JSON object."))
            return
        request_id = request.get("id")
        method = request.get("method")
        params = request.get("params") or {}
        if not isinstance(method, str) or not isinstance(params, dict):
            self._fail(
                request_id, BinanceApiError(-1000, "Malformed request: method and params are required.")
            )
            return
        if method.startswith("v3/"):
            method = method[3:]
        with_limits = params.get("returnRateLimits", True) is not False
        self._order_account = None
        try:
            if method in SESSION_METHODS:
                result = self._session(method, params, with_limits)
            elif method == "userDataStream.subscribe.signature":
                result = self._subscribe(params)
            elif method == "userDataStream.subscribe":
                result = self._subscribe_session()
            elif method == "userDataStream.unsubscribe":
                result = self._unsubscribe(params)
            else:
                result = await self._call(method, params)
        except BinanceApiError as error:
            self._fail(request_id, error, with_limits)
            return
        except _NoAnswer:
            return
        except Exception:
            self.server.internal_errors += 1
            logger.exception("WebSocket API method %s failed", method)
            self._fail(request_id, BinanceApiError(*UNKNOWN_ERROR, status=500), with_limits)
            return
        self._answer(request_id, result, with_limits)

    def _verify(self, params: dict[str, Any]) -> str:
        """The account of a signed request: its own HMAC / Ed25519 signature, else the session's key."""
        api_key = params.get("apiKey")
        signature = params.get("signature")
        if api_key is None and signature is None and self.session_key is not None:
            check_timestamp(_wire_params(params), ms(self.server.clock.time_ns()))
            return self.server.account_of(self.session_key)
        if not isinstance(api_key, str) or api_key not in self.server.ed25519_keys:
            secret = check_api_key(api_key if isinstance(api_key, str) else None, self.server.api_keys)
        else:
            secret = None
        if not isinstance(signature, str) or not signature:
            raise BinanceApiError(
                -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
            )
        assert isinstance(api_key, str)
        if secret is None:
            if not ed25519_matches(self.server.ed25519_keys[api_key], websocket_payload(params), signature):
                raise BinanceApiError(-1022, "Signature for this request is not valid.")
        elif not hmac_matches(secret, websocket_payload(params), signature):
            raise BinanceApiError(-1022, "Signature for this request is not valid.")
        check_timestamp(_wire_params(params), ms(self.server.clock.time_ns()))
        return self.server.account_of(api_key)

    def _api_key_only(self, params: dict[str, Any]) -> tuple[str, str]:
        """USER_STREAM methods: an API key (the request's or the session's), no signature."""
        api_key = params.get("apiKey")
        if api_key is None and self.session_key is not None:
            api_key = self.session_key
        if not (isinstance(api_key, str) and api_key in self.server.ed25519_keys):
            check_api_key(api_key if isinstance(api_key, str) else None, self.server.api_keys)
        assert isinstance(api_key, str)
        return self.server.account_of(api_key), api_key

    def _session(self, method: str, params: dict[str, Any], with_limits: bool) -> dict[str, Any]:
        """``session.logon`` / ``status`` / ``logout``: authenticate the connection (Ed25519 keys only)."""
        self._charge(2)
        if method == "session.logon":
            api_key = params.get("apiKey")
            if isinstance(api_key, str) and api_key in self.server.api_keys:
                raise BinanceApiError(-1002, "You are not authorized to execute this request.")
            self._verify({**params, **({} if "apiKey" in params else {"apiKey": None})})
            assert isinstance(api_key, str)
            self.session_key = api_key
            self.authorized_since = ms(self.server.clock.time_ns())
        elif method == "session.logout":
            self.session_key = None
            self.authorized_since = None
        return {
            "apiKey": self.session_key,
            "authorizedSince": self.authorized_since,
            "connectedSince": self.connected_since,
            "returnRateLimits": with_limits,
            "serverTime": ms(self.server.clock.time_ns()),
            "userDataStream": bool(self.subscriptions),
        }

    def _charge(self, weight: int) -> None:
        verdict = self.state.weights.charge(self.ip, weight)
        if verdict.status:
            raise BinanceApiError(
                verdict.code, verdict.message, verdict.status, {"Retry-After": str(verdict.retry_after_s)}
            )

    def _subscribe_session(self) -> dict[str, Any]:
        """``userDataStream.subscribe``: the logged-on session's account (session.logon first)."""
        if self.session_key is None:
            self._charge(2)
            raise BinanceApiError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        return self._attach(self.server.account_of(self.session_key))

    def _subscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        self._charge(2)
        return self._attach(self._verify(params))

    def _attach(self, account: str) -> dict[str, Any]:
        subscription_id = next(subscription_ids)
        outbox = self.outbox

        def sink(event: dict[str, Any]) -> None:
            outbox.send_json({"subscriptionId": subscription_id, "event": event})

        self.subscriptions[subscription_id] = (account, sink)
        self.user_data.add(account, sink)
        return {"subscriptionId": subscription_id}

    def _unsubscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        self._charge(2)
        wanted = params.get("subscriptionId")
        ids = list(self.subscriptions) if wanted is None else [wanted]
        now = ms(self.server.clock.time_ns())
        for subscription_id in ids:
            found = self.subscriptions.pop(subscription_id, None)
            if found is None:
                raise BinanceApiError(-2, "Invalid subscriptionId.")
            account, sink = found
            self.user_data.remove(account, sink)
            self.outbox.send_json(
                {"subscriptionId": subscription_id, "event": {"e": "eventStreamTerminated", "E": now}}
            )
        return {}

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        entry = WEBSOCKET_METHODS[self.state.market].get(method)
        if entry is None:
            raise BinanceApiError(-1000, f"Unknown method: '{method}'.", 400)
        handler, weight, security = entry
        self._charge(weight_of(weight, _wire_params(params)))
        faults = self.state.faults
        fault = faults.request()
        if fault.delay_s and not fault.timeout:
            await asyncio.sleep(fault.delay_s)
        if fault.status == 429:
            raise BinanceApiError(
                -1003,
                f"Too much request weight used; current limit is {self.state.limits.request_weight} "
                "request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid "
                "polling the API.",
                429,
                {"Retry-After": str(faults.storm_retry_after_s())},
            )
        account = None
        api_key = None
        if security == SIGNED:
            account = self._verify(params)
            api_key = params.get("apiKey", self.session_key)
        elif security == API_KEY:
            account, api_key = self._api_key_only(params)
        call_params = _wire_params(
            {
                name: value
                for name, value in params.items()
                if name not in ("apiKey", "signature", "returnRateLimits")
            }
        )
        call = Call(
            call_params, self.state, account, api_key if isinstance(api_key, str) else None, self.server
        )
        places_order = handler in ORDER_COUNTED
        if places_order:
            self._order_account = account or ""
            verdict = self.state.order_limits.charge(account or "")
            if verdict.status:
                raise BinanceApiError(verdict.code, verdict.message, verdict.status)
        if fault.timeout:
            if places_order:
                with contextlib.suppress(BinanceApiError):
                    await handler(call)
            await asyncio.sleep(fault.delay_s)
            raise _NoAnswer
        if fault.status >= 500:
            if places_order:
                with contextlib.suppress(BinanceApiError):
                    await handler(call)
                raise BinanceApiError(-1007, SEND_STATUS_UNKNOWN, fault.status)
            raise BinanceApiError(-1001, INTERNAL_ERROR, fault.status)
        result = await handler(call)
        if places_order:
            delay = faults.ack_delay()
            if delay:
                await asyncio.sleep(delay)
        return result


class _NoAnswer(Exception):
    """A request the fault injector swallowed: the client never gets a response."""


def _wire_params(params: Mapping[str, Any]) -> Params:
    values: dict[str, str] = {}
    for name, value in params.items():
        if isinstance(value, bool):
            values[name] = "true" if value else "false"
        elif isinstance(value, list):
            values[name] = orjson.dumps(value).decode()
        elif value is not None:
            values[name] = str(value)
    return Params(values)
