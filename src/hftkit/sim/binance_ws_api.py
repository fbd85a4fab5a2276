"""The Binance WebSocket API of the simulator (``/ws-api/v3``, ``/ws-fapi/v1``): one session per socket.

Requests ``{"id", "method", "params"}`` answer ``{"id", "status", "result" | "error",
"rateLimits"}``. Methods reuse the REST handlers, so ``order.place`` returns exactly the REST
order response (what ccxt.pro's ``create_order_ws`` parses). Signed methods carry ``apiKey``,
``timestamp`` and ``signature`` (HMAC over the params sorted by name).
``userDataStream.subscribe.signature`` attaches the account's user-data events to the socket,
wrapped as ``{"subscriptionId": N, "event": {...}}``. Request faults apply as over REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from hftkit.sim import binance_accounts as accounts
from hftkit.sim import binance_orders as orders
from hftkit.sim import binance_rest as rest
from hftkit.sim.binance_params import (
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
from hftkit.sim.binance_rest import Call
from hftkit.sim.binance_state import MarketState
from hftkit.sim.binance_streams import Outbox, UserData
from hftkit.sim.binance_wire import ms
from hftkit.venues.binance.auth import HmacSigner
from hftkit.venues.binance.endpoints import Market

if TYPE_CHECKING:
    from hftkit.sim.binance_server import BinanceSimServer

logger = logging.getLogger(__name__)

SPOT, USDM = Market.SPOT, Market.USDM
subscription_ids = itertools.count(0)


# WebSocket API methods: (REST handler, weight, security); the spot and USD-M APIs differ in account calls
_COMMON_WEBSOCKET_METHODS: dict[str, tuple[rest.Handler, int, str]] = {
    "ping": (rest.ping, 1, NONE),
    "time": (rest.server_time, 1, NONE),
    "exchangeInfo": (rest.exchange_info, 20, NONE),
    "depth": (rest.depth, 5, NONE),
    "trades.recent": (rest.trades, 25, NONE),
    "ticker.price": (rest.ticker_price, 2, NONE),
    "ticker.book": (rest.book_ticker, 2, NONE),
    "ticker.24hr": (rest.ticker_24h, 2, NONE),
    "order.place": (orders.new_order, 1, SIGNED),
    "order.cancel": (orders.cancel_order, 1, SIGNED),
    "order.status": (orders.query_order, 4, SIGNED),
    "openOrders.status": (orders.open_orders, 6, SIGNED),
    "openOrders.cancelAll": (orders.cancel_open_orders, 1, SIGNED),
    "allOrders": (orders.all_orders, 20, SIGNED),
    "myTrades": (orders.my_trades, 20, SIGNED),
}
WEBSOCKET_METHODS: dict[Market, dict[str, tuple[rest.Handler, int, str]]] = {
    SPOT: {
        **_COMMON_WEBSOCKET_METHODS,
        "order.test": (orders.order_test, 1, SIGNED),
        "account.status": (accounts.spot_account, 20, SIGNED),
    },
    USDM: {
        **_COMMON_WEBSOCKET_METHODS,
        "account.status": (accounts.futures_account(2), 5, SIGNED),
        "account.balance": (accounts.futures_balance, 5, SIGNED),
        "account.position": (accounts.position_risk(2), 5, SIGNED),
    },
}


class ApiSession:
    """One WebSocket API connection: request/response methods and user-data subscriptions."""

    def __init__(
        self, server: BinanceSimServer, state: MarketState, user_data: UserData, outbox: Outbox, ip: str
    ) -> None:
        self.server = server
        self.user_data = user_data
        self.state = state
        self.outbox = outbox
        self.ip = ip
        self.subscriptions: dict[int, tuple[str, Callable[[dict[str, Any]], None]]] = {}

    def close(self) -> None:
        for account, sink in self.subscriptions.values():
            self.user_data.remove(account, sink)
        self.subscriptions.clear()
        self.outbox.close()

    def _rate_limits(self) -> list[dict[str, Any]]:
        limits = self.state.limits
        return [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": limits.request_weight,
                "count": self.state.weights.used(self.ip),
            }
        ]

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
        try:
            if method == "userDataStream.subscribe.signature":
                result = self._subscribe(params)
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
        api_key = params.get("apiKey")
        secret = check_api_key(api_key if isinstance(api_key, str) else None, self.server.api_keys)
        signature = params.get("signature")
        if not isinstance(signature, str) or not signature:
            raise BinanceApiError(
                -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
            )
        expected = HmacSigner(secret).sign_websocket_params(params)
        # constant time, and over bytes: compare_digest refuses str with non-ASCII characters
        if not hmac.compare_digest(expected.encode(), signature.lower().encode("utf-8", "replace")):
            raise BinanceApiError(-1022, "Signature for this request is not valid.")
        check_timestamp(_wire_params(params), ms(self.server.clock.time_ns()))
        assert isinstance(api_key, str)
        return self.server.account_of(api_key)

    def _charge(self, weight: int) -> None:
        verdict = self.state.weights.charge(self.ip, weight)
        if verdict.status:
            raise BinanceApiError(
                verdict.code, verdict.message, verdict.status, {"Retry-After": str(verdict.retry_after_s)}
            )

    def _subscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        self._charge(2)
        account = self._verify(params)
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
        self._charge(weight)
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
            api_key = params.get("apiKey")
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
        places_order = handler is orders.new_order
        if places_order:
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
