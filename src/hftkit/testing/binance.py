"""``ScriptedBinance``: an in-memory Binance whose answers a test scripts, reached through the
transports an adapter is built on (``hftkit.transport.transports.Transports``), with no sockets.

It speaks the protocol facts the adapter relies on, and checks them: signed requests are
verified (HMAC over query + body, recvWindow/timestamp rule, API key), the combined market
stream carries ``{"stream","data"}`` envelopes with consecutive update ids, REST snapshots
are taken at event boundaries, the spot WebSocket API verifies
``userDataStream.subscribe.signature`` and futures listenKeys expire on demand.

Tests script faults per endpoint (``inject``): HTTP 429/418/5xx with a Binance error body,
``-1021``, a response that never comes (the request is still executed), a dropped connection.
After a 429 with ``Retry-After`` the venue answers 418 to anything sent before that time
runs out, exactly as Binance escalates, and counts it in ``bans``.

Use::

    async with ScriptedBinance(credentials) as venue:
        config = BinanceConfig(rest=RestConfig(base_urls=[venue.base_url]), ...)  # ws: venue.ws_url
        async with BinanceAdapter(credentials, config, transports=venue.transports) as adapter:
            ...

Any other origin is refused (``ConnectFailedError``; a WebSocket connect raises), as a host
where nothing listens. For the whole venue (matching, accounts, the simulator's fault profiles)
use ``SimulatorHarness`` instead.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from hftkit.testing.sockets import InMemorySocket
from hftkit.transport.http import (
    ConnectFailedError,
    ConnectionLostError,
    HttpResponse,
    RequestTimeoutError,
    TransportError,
)
from hftkit.transport.http1 import Headers, ResponseCallback
from hftkit.transport.transports import Transports
from hftkit.transport.websocket import FrameReceiver, WebSocketConfig
from hftkit.venues.binance.auth import BinanceCredentials, HmacSigner
from hftkit.venues.binance.endpoints import ENDPOINTS, Endpoint, Market

DEFAULT_TIMEOUT_S = 10.0  # a request without its own timeout (HttpConfig's default)


@dataclass
class Fault:
    """One scripted answer: an HTTP error with a Binance body, a stall, or a dropped connection."""

    status: int = 0
    code: int = 0
    msg: str = ""
    retry_after: float | None = None
    stall_s: float = 0.0  # answer only after this long (the client has timed out by then)
    disconnect: bool = False  # close the connection instead of answering
    execute: bool = False  # run the request first (an order that exists although unconfirmed)


@dataclass
class SymbolSpec:
    """One listed symbol and its filters."""

    symbol: str = "BTCUSDT"
    base: str = "BTC"
    quote: str = "USDT"
    tick_size: str = "0.01"
    step_size: str = "0.00001"
    min_notional: str = "5"


@dataclass
class _Book:
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    update_id: int = 1000


_PendingEvent = tuple[dict[str, Any], str]


@dataclass
class _Answer:
    """One HTTP answer; ``event`` is the user-data event the request's execution pushes."""

    status: int
    headers: Headers
    body: bytes
    event: _PendingEvent | None = None


def _headers(values: Mapping[str, str]) -> Headers:
    return Headers({name.lower(): value for name, value in values.items()})


def _origin(url: str) -> tuple[str, str, str]:
    """(scheme://host[:port], path, query) of ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path, parts.query


class ScriptedBinance:
    """``async with ScriptedBinance(credentials) as venue``: URLs are ``venue.base_url`` and
    ``venue.ws_url``, reachable only through ``venue.transports``."""

    def __init__(
        self,
        credentials: BinanceCredentials,
        market: Market = Market.SPOT,
        symbols: tuple[SymbolSpec, ...] = (SymbolSpec(),),
        *,
        host: str = "binance.test",
    ) -> None:
        self.credentials = credentials
        self.market = market
        self.symbols = {spec.symbol: spec for spec in symbols}
        self._signer = HmacSigner(credentials.secret)
        self.time_offset_ms = 0
        self.requests: Counter[tuple[str, str]] = Counter()
        self.log: list[tuple[str, str, str, str]] = []  # (method, path, raw query, body) as received
        self.push_order_events = True  # False: orders change silently (events lost)
        self.refuse_subscriptions = False  # True: the WebSocket API refuses user-data subscriptions
        self.signature_failures = 0
        self.bans = 0
        self.rate_limited = 0
        self.used_weight = 0
        self.order_count = 0
        self._penalty_until = 0.0
        self._faults: dict[tuple[str, str], deque[Fault]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self.books = {symbol: _Book() for symbol in self.symbols}
        self.balances: dict[str, tuple[Decimal, Decimal]] = {"USDT": (Decimal(10_000), Decimal(0))}
        self.positions: dict[str, tuple[Decimal, Decimal]] = {}
        self.market_sockets: list[tuple[InMemorySocket, frozenset[str]]] = []
        self.market_connections = 0
        self._raw_sockets: set[InMemorySocket] = set()
        self.user_sockets: list[tuple[InMemorySocket, int | None]] = []
        self.user_connections = 0
        self.listen_key: str | None = None
        self.listen_keys_created = 0
        self.keepalives = 0
        self._listen_key_ids = itertools.count(1)
        self._subscription_ids = itertools.count(0)
        self._sockets: set[InMemorySocket] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.base_url = f"http://{host}"
        self.ws_url = f"ws://{host}"
        self.http = ScriptedHttp(self)

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> ScriptedBinance:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection and stop the requests still being answered."""
        for socket in list(self._sockets):
            socket.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- transports --------------------------------------------------------------------------

    def order_pool(
        self, base_url: str, *, size: int, connect_timeout_s: float, request_timeout_s: float
    ) -> ScriptedOrderPool:
        """The ``OrderPoolFactory``: warm order connections to this venue."""
        return ScriptedOrderPool(self, base_url, size=size, request_timeout_s=request_timeout_s)

    async def connect(
        self, url: str, receiver: FrameReceiver, config: WebSocketConfig, name: str
    ) -> InMemorySocket:
        """The ``WebSocketConnect``: a connection to one of the venue's WebSocket routes."""
        await asyncio.sleep(0)  # a handshake is never synchronous
        origin, path, raw_query = _origin(url)
        if origin != self.ws_url:
            raise ConnectionRefusedError(f"{url}: nothing listens there")
        query = dict(parse_qsl(raw_query))
        if path == "/ws-api/v3":
            socket = self._open_socket(receiver, self._websocket_api)
            self.user_connections += 1
            return socket
        for prefix in ("/public", "/market", "/private"):
            if path.startswith(prefix + "/"):
                path = path[len(prefix) :]
                break
        if path in ("/stream", "/ws"):
            tail = ""
        elif path.startswith("/ws/"):
            tail = path[len("/ws/") :]
        else:
            raise ConnectionRefusedError(f"{url}: HTTP 404 during the handshake")
        listen_key = query.get("listenKey") or (tail if tail.startswith("lk") else None)
        if listen_key is not None:
            if listen_key != self.listen_key:
                raise ConnectionRefusedError(f"{url}: HTTP 400 invalid listenKey")
            socket = self._open_socket(receiver, None)
            self.user_connections += 1
            self.user_sockets.append((socket, None))
            return socket
        streams = frozenset(filter(None, query.get("streams", tail).split("/")))
        socket = self._open_socket(receiver, None)
        self.market_connections += 1
        self.market_sockets.append((socket, streams))
        if path != "/stream":
            self._raw_sockets.add(socket)  # /ws/<stream>: bare payloads, no envelope
        return socket

    def _open_socket(
        self, receiver: FrameReceiver, on_text: Callable[[InMemorySocket, bytes], None] | None
    ) -> InMemorySocket:
        socket = InMemorySocket(receiver, on_text, on_close=self._forget)
        self._sockets.add(socket)
        return socket

    def _forget(self, socket: InMemorySocket) -> None:
        self._sockets.discard(socket)
        self._raw_sockets.discard(socket)
        self.market_sockets = [entry for entry in self.market_sockets if entry[0] is not socket]
        self.user_sockets = [entry for entry in self.user_sockets if entry[0] is not socket]

    # -- scripting ---------------------------------------------------------------------------

    @property
    def transports(self) -> Transports:
        """What to build an adapter or client on: ``BinanceAdapter(..., transports=venue.transports)``."""
        return Transports(http=self.http, order_pool=self.order_pool, websocket=self.connect)

    def inject(self, method: str, path_suffix: str, *faults: Fault) -> None:
        """Answer the next requests to ``method`` + a path ending in ``path_suffix`` with ``faults``."""
        self._faults.setdefault((method, path_suffix), deque()).extend(faults)

    def count(self, method: str, path_suffix: str) -> int:
        """How many requests to ``method`` + a path ending in ``path_suffix`` arrived."""
        return sum(n for (m, path), n in self.requests.items() if m == method and path.endswith(path_suffix))

    def server_ms(self) -> int:
        """The venue's clock in ms (``time_offset_ms`` ahead of this host's)."""
        return time.time_ns() // 1_000_000 + self.time_offset_ms

    def book_levels(self, symbol: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The venue's book as (price, quantity) text, best first."""
        book = self.books[symbol]
        bids = sorted(book.bids.items(), reverse=True)
        asks = sorted(book.asks.items())
        return [(str(p), str(q)) for p, q in bids], [(str(p), str(q)) for p, q in asks]

    async def publish_depth(
        self,
        symbol: str,
        bids: list[tuple[str, str]] = (),  # type: ignore[assignment]
        asks: list[tuple[str, str]] = (),  # type: ignore[assignment]
        *,
        send: bool = True,
    ) -> None:
        """Change the book by one diff event; ``send=False`` changes it silently (a lost diff)."""
        book = self.books[symbol]
        previous = book.update_id
        first = previous + 1
        last = first + max(0, len(bids) + len(asks) - 1)
        for side, changes in ((book.bids, bids), (book.asks, asks)):
            for price, quantity in changes:
                if Decimal(quantity) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = Decimal(quantity)
        book.update_id = last
        if not send:
            return
        event: dict[str, Any] = {
            "e": "depthUpdate",
            "E": self.server_ms(),
            "s": symbol,
            "U": first,
            "u": last,
            "b": [list(level) for level in bids],
            "a": [list(level) for level in asks],
        }
        if self.market is Market.USDM:
            event["T"] = event["E"]
            event["pu"] = previous
        self._broadcast(symbol, "depth", event)

    async def publish_trade(self, symbol: str, price: str, quantity: str, buyer_is_maker: bool) -> None:
        """One trade on the trade (spot) or aggTrade (USD-M) stream."""
        now = self.server_ms()
        trade_id = next(self._trade_ids)
        if self.market is Market.USDM:
            event = {"e": "aggTrade", "E": now, "s": symbol, "a": trade_id, "p": price, "q": quantity}
            event |= {"f": trade_id, "l": trade_id, "T": now, "m": buyer_is_maker}
            self._broadcast(symbol, "aggTrade", event)
        else:
            event = {"e": "trade", "E": now, "s": symbol, "t": trade_id, "p": price, "q": quantity}
            event |= {"T": now, "m": buyer_is_maker, "M": True}
            self._broadcast(symbol, "trade", event)

    async def publish_book_ticker(self, symbol: str) -> None:
        """The book's top on the bookTicker stream."""
        bids, asks = self.book_levels(symbol)
        book = self.books[symbol]
        event: dict[str, Any] = {"u": book.update_id, "s": symbol, "b": bids[0][0], "B": bids[0][1]}
        event |= {"a": asks[0][0], "A": asks[0][1]}
        self._broadcast(symbol, "bookTicker", event)

    async def send_raw(self, text: str) -> None:
        """Send a frame as is to every market connection (malformed-frame tests)."""
        for socket, _ in list(self.market_sockets):
            socket.send_from_venue(text.encode())

    async def drop_market_connections(self) -> None:
        """Close every market-data connection from the venue's side."""
        sockets, self.market_sockets = self.market_sockets, []
        for socket, _ in sockets:
            socket.close()

    async def drop_user_connections(self) -> None:
        """Close every user-data connection from the venue's side."""
        sockets, self.user_sockets = self.user_sockets, []
        for socket, _ in sockets:
            socket.close()

    async def terminate_user_subscriptions(self) -> None:
        """End every WebSocket-API subscription (``eventStreamTerminated``), as on a server restart."""
        self._push_user({"e": "eventStreamTerminated", "E": self.server_ms()})

    async def expire_listen_key(self) -> None:
        """The key times out: send ``listenKeyExpired`` and forget it (keepalive then fails with -1125)."""
        key = self.listen_key
        self.listen_key = None
        self._push_user({"e": "listenKeyExpired", "E": self.server_ms(), "listenKey": key or ""})

    async def fill_order(self, client_order_id: str, quantity: str) -> None:
        """Execute part or all of a resting order at its price; pushes the user-data events."""
        order = self.orders[client_order_id]
        filled = Decimal(order["executedQty"]) + Decimal(quantity)
        order["executedQty"] = str(filled)
        order["status"] = "FILLED" if filled >= Decimal(order["origQty"]) else "PARTIALLY_FILLED"
        self._push_order_event(order, "TRADE", quantity, next(self._trade_ids))

    # -- market streams ----------------------------------------------------------------------

    def _broadcast(self, symbol: str, kind: str, event: dict[str, Any]) -> None:
        prefix = f"{symbol.lower()}@{kind}"
        for socket, streams in list(self.market_sockets):
            for stream in streams:
                if stream == prefix or stream.startswith(prefix + "@"):
                    raw = socket in self._raw_sockets
                    socket.send_from_venue(orjson.dumps(event if raw else {"stream": stream, "data": event}))

    # -- user data ---------------------------------------------------------------------------

    def _websocket_api(self, socket: InMemorySocket, data: bytes) -> None:
        command = orjson.loads(data)
        method, params, ident = command.get("method"), command.get("params", {}), command.get("id")
        if method == "userDataStream.subscribe.signature":
            error = self._check_websocket_signature(params)
            if self.refuse_subscriptions:
                error = {"code": -1001, "msg": "Internal error; unable to process your request."}
            if error is not None:
                socket.send_from_venue(orjson.dumps({"id": ident, "status": 400, "error": error}))
                return
            subscription = next(self._subscription_ids)
            self.user_sockets.append((socket, subscription))
            reply = {"id": ident, "status": 200, "result": {"subscriptionId": subscription}}
            socket.send_from_venue(orjson.dumps(reply))
        else:
            error = {"code": -1102, "msg": f"Unknown method {method}"}
            socket.send_from_venue(orjson.dumps({"id": ident, "status": 400, "error": error}))

    def _check_websocket_signature(self, params: dict[str, Any]) -> dict[str, Any] | None:
        if params.get("apiKey") != self.credentials.api_key:
            return {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
        if self._signer.sign_websocket_params(params) != str(params.get("signature", "")).lower():
            self.signature_failures += 1
            return {"code": -1022, "msg": "Signature for this request is not valid."}
        if not self._timestamp_ok(int(params.get("timestamp", 0)), int(params.get("recvWindow", 5000))):
            return {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
        return None

    def _push_user(self, event: dict[str, Any]) -> None:
        for socket, subscription in list(self.user_sockets):
            payload = event if subscription is None else {"subscriptionId": subscription, "event": event}
            socket.send_from_venue(orjson.dumps(payload))

    def _push_order_event(
        self, order: dict[str, Any], execution: str, last_quantity: str = "0", trade_id: int = -1
    ) -> None:
        if not self.push_order_events:
            return
        now = self.server_ms()
        if self.market is Market.USDM:
            body = {"s": order["symbol"], "c": order["clientOrderId"], "S": order["side"], "o": order["type"]}
            body |= {"f": order["timeInForce"], "q": order["origQty"], "p": order["price"], "x": execution}
            body |= {
                "X": order["status"],
                "i": order["orderId"],
                "l": last_quantity,
                "z": order["executedQty"],
            }
            body |= {"L": order["price"], "T": now, "t": max(trade_id, 0), "m": True, "N": "USDT", "n": "0"}
            self._push_user({"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": body})
            return
        event = {"e": "executionReport", "E": now, "s": order["symbol"], "c": order["clientOrderId"]}
        event |= {"S": order["side"], "o": order["type"], "f": order["timeInForce"], "q": order["origQty"]}
        event |= {
            "p": order["price"],
            "x": execution,
            "X": order["status"],
            "r": "NONE",
            "i": order["orderId"],
        }
        event |= {"l": last_quantity, "z": order["executedQty"], "L": order["price"], "T": now, "t": trade_id}
        event |= {"n": "0", "N": None, "m": True, "C": ""}
        self._push_user(event)

    # -- REST --------------------------------------------------------------------------------

    async def serve(
        self, method: str, path: str, query: str, body: str, headers: Mapping[str, str]
    ) -> _Answer | None:
        """Answer one REST request (None: the connection drops instead)."""
        self.requests[(method, path)] += 1
        if time.monotonic() < self._penalty_until:
            self.bans += 1
            return self._error(418, -1003, "Way too much request weight used; IP banned.", retry_after=60)
        fault = self._next_fault(method, path)
        self.log.append((method, path, query, body))
        params = dict(parse_qsl(query, keep_blank_values=True))
        params.update({k: v for k, v in parse_qsl(body, keep_blank_values=True) if k not in params})
        endpoint = self._endpoint(method, path)
        self.used_weight += endpoint.weight_for(params) if endpoint is not None else 1
        if fault is not None and not fault.execute:
            return await self._answer_fault(fault)
        needs_key = endpoint is not None and (endpoint.signed or endpoint.api_key)
        api_key = {name.lower(): value for name, value in headers.items()}.get("x-mbx-apikey")
        if needs_key and api_key != self.credentials.api_key:
            return self._error(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if endpoint is not None and endpoint.signed:
            problem = self._check_signature(query, body, params)
            if problem is not None:
                return problem
        answer = self._handle(endpoint.name if endpoint else "", method, params)
        if answer.event is not None:
            self._push_order_event(*answer.event)
        if fault is not None:
            return await self._answer_fault(fault)
        return answer

    def _next_fault(self, method: str, path: str) -> Fault | None:
        for (fault_method, suffix), queue in self._faults.items():
            if fault_method == method and path.endswith(suffix) and queue:
                return queue.popleft()
        return None

    async def _answer_fault(self, fault: Fault) -> _Answer | None:
        if fault.stall_s:
            await asyncio.sleep(fault.stall_s)
        if fault.disconnect:
            return None
        if fault.status in (429, 418) and fault.retry_after:
            self.rate_limited += 1
            self._penalty_until = time.monotonic() + fault.retry_after
        return self._error(fault.status or 500, fault.code, fault.msg, retry_after=fault.retry_after)

    def _error(self, status: int, code: int, msg: str, *, retry_after: float | None = None) -> _Answer:
        headers = {"X-MBX-USED-WEIGHT-1M": str(self.used_weight)}
        if retry_after is not None:
            headers["Retry-After"] = str(int(retry_after) if retry_after == int(retry_after) else retry_after)
        return _Answer(status, _headers(headers), orjson.dumps({"code": code, "msg": msg}))

    def _endpoint(self, method: str, path: str) -> Endpoint | None:
        for endpoint in ENDPOINTS[self.market].values():
            if endpoint.method == method and endpoint.path == path:
                return endpoint
        return None

    def _timestamp_ok(self, timestamp: int, recv_window: int) -> bool:
        server = self.server_ms()
        return timestamp < server + 1000 and server - timestamp <= recv_window

    def _check_signature(self, query: str, body: str, params: dict[str, str]) -> _Answer | None:
        signature = params.get("signature", "")
        marker = "&signature=" if "&signature=" in query else "signature="
        if marker in query:
            query = query[: query.index(marker)]
        elif "signature=" in body:
            body = body[: body.index("signature=")].rstrip("&")
        if not signature or not self._signer.verify_rest(query, body, signature):
            self.signature_failures += 1
            return self._error(400, -1022, "Signature for this request is not valid.")
        if not self._timestamp_ok(int(params.get("timestamp", "0")), int(params.get("recvWindow", "5000"))):
            return self._error(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return None

    def _json(self, payload: Any, *, orders: bool = False) -> _Answer:
        headers = {"X-MBX-USED-WEIGHT-1M": str(self.used_weight)}
        if orders:
            headers["X-MBX-ORDER-COUNT-10S"] = str(self.order_count)
            headers["X-MBX-ORDER-COUNT-1D" if self.market is Market.SPOT else "X-MBX-ORDER-COUNT-1M"] = str(
                self.order_count
            )
        return _Answer(200, _headers(headers), orjson.dumps(payload))

    def _handle(self, name: str, method: str, params: dict[str, str]) -> _Answer:
        if name == "time":
            return self._json({"serverTime": self.server_ms()})
        if name == "exchange_info":
            return self._json(self._exchange_info())
        if name == "depth":
            symbol = params.get("symbol", "")
            if symbol not in self.books:
                return self._error(400, -1121, "Invalid symbol.")
            limit = int(params.get("limit", "100"))
            bids, asks = self.book_levels(symbol)
            return self._json(
                {"lastUpdateId": self.books[symbol].update_id, "bids": bids[:limit], "asks": asks[:limit]}
            )
        if name == "new_order":
            return self._new_order(params)
        if name == "cancel_order":
            return self._cancel_order(params)
        if name == "query_order":
            order = self.orders.get(params.get("origClientOrderId", ""))
            if order is None:
                return self._error(400, -2013, "Order does not exist.")
            return self._json(order)
        if name == "open_orders":
            wanted = params.get("symbol")
            return self._json(
                [o for o in self.orders.values() if _is_open(o) and (wanted is None or o["symbol"] == wanted)]
            )
        if name == "cancel_all":
            cancelled = []
            for order in self.orders.values():
                if _is_open(order) and order["symbol"] == params.get("symbol"):
                    order["status"] = "CANCELED"
                    cancelled.append(dict(order))
            if self.market is Market.USDM:
                return self._json({"code": 200, "msg": "The operation of cancel all open order is done."})
            if not cancelled:
                return self._error(400, -2011, "Unknown order sent.")
            return self._json(cancelled)
        if name == "account":
            balances = [
                {"asset": a, "free": str(f), "locked": str(lk)} for a, (f, lk) in self.balances.items()
            ]
            return self._json({"canTrade": True, "updateTime": self.server_ms(), "balances": balances})
        if name == "balance":
            return self._json(
                [
                    {"asset": a, "balance": str(f + lk), "availableBalance": str(f)}
                    for a, (f, lk) in self.balances.items()
                ]
            )
        if name == "position_risk":
            return self._json(
                [
                    {"symbol": s, "positionAmt": str(q), "entryPrice": str(p), "positionSide": "BOTH"}
                    for s, (q, p) in self.positions.items()
                ]
            )
        if name == "create_listen_key":
            if self.listen_key is None:
                self.listen_key = f"lk{next(self._listen_key_ids):04d}"
                self.listen_keys_created += 1
            return self._json({"listenKey": self.listen_key})
        if name == "keepalive_listen_key":
            self.keepalives += 1
            if self.listen_key is None:
                return self._error(400, -1125, "This listenKey does not exist.")
            return self._json({"listenKey": self.listen_key})
        if name == "close_listen_key":
            self.listen_key = None
            return self._json({})
        return self._error(404, -1000, f"unknown endpoint {method}")

    def _new_order(self, params: dict[str, str]) -> _Answer:
        spec = self.symbols.get(params.get("symbol", ""))
        if spec is None:
            return self._error(400, -1121, "Invalid symbol.")
        client_order_id = params.get("newClientOrderId", f"auto{next(self._order_ids)}")
        existing = self.orders.get(client_order_id)
        if existing is not None and _is_open(existing):
            return self._error(400, -2010, "Duplicate order sent.")
        price = params.get("price", "0")
        if price != "0" and Decimal(price) % Decimal(spec.tick_size) != 0:
            return self._error(400, -1013, "Filter failure: PRICE_FILTER")
        if Decimal(params.get("quantity", "0")) % Decimal(spec.step_size) != 0:
            return self._error(400, -1013, "Filter failure: LOT_SIZE")
        self.order_count += 1
        now = self.server_ms()
        order = {
            "symbol": spec.symbol,
            "orderId": next(self._order_ids),
            "clientOrderId": client_order_id,
            "price": price,
            "origQty": params.get("quantity", "0"),
            "executedQty": "0",
            "status": "NEW",
            "timeInForce": params.get("timeInForce", "GTC"),
            "type": params.get("type", "LIMIT"),
            "side": params.get("side", "BUY"),
            "transactTime": now,
            "updateTime": now,
        }
        self.orders[client_order_id] = order
        answer = self._json(order, orders=True)
        answer.event = (order, "NEW")
        return answer

    def _cancel_order(self, params: dict[str, str]) -> _Answer:
        order = self.orders.get(params.get("origClientOrderId", ""))
        if order is None or not _is_open(order):
            return self._error(400, -2011, "Unknown order sent.")
        order["status"] = "CANCELED"
        order["updateTime"] = self.server_ms()
        answer = self._json(order)
        answer.event = (order, "CANCELED")
        return answer

    def _exchange_info(self) -> dict[str, Any]:
        symbols = []
        for spec in self.symbols.values():
            entry: dict[str, Any] = {
                "symbol": spec.symbol,
                "status": "TRADING",
                "baseAsset": spec.base,
                "quoteAsset": spec.quote,
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": spec.tick_size,
                        "maxPrice": "1000000",
                        "tickSize": spec.tick_size,
                    },
                    {
                        "filterType": "LOT_SIZE",
                        "minQty": spec.step_size,
                        "maxQty": "9000",
                        "stepSize": spec.step_size,
                    },
                    {"filterType": "NOTIONAL", "minNotional": spec.min_notional},
                ],
            }
            if self.market is Market.USDM:
                entry["contractType"] = "PERPETUAL"
            symbols.append(entry)
        return {"timezone": "UTC", "serverTime": self.server_ms(), "rateLimits": [], "symbols": symbols}


class ScriptedHttp:
    """The ``HttpTransport`` of a ``ScriptedBinance``: requests answered in memory.

    A request that times out or is abandoned by its caller still runs to its end at the venue,
    as it would on a real server (an order that exists although unconfirmed)."""

    def __init__(self, venue: ScriptedBinance) -> None:
        self.venue = venue
        self.requests = 0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def request(
        self,
        method: str,
        url: str,
        *,
        query: str = "",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> HttpResponse:
        venue = self.venue
        origin, path, _ = _origin(url)
        if origin != venue.base_url:
            raise ConnectFailedError(f"{method} {url}: cannot connect: refused", method=method, url=url)
        self.requests += 1
        start = time.monotonic_ns()
        if on_sent is not None:
            on_sent(start)
        text = (body or b"").decode()
        task = venue._spawn(venue.serve(method, path, query, text, headers or {}))
        try:
            answer = await asyncio.wait_for(
                asyncio.shield(task), DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
            )
        except TimeoutError:
            raise RequestTimeoutError(f"{method} {url}: timed out", method=method, url=url) from None
        if answer is None:
            raise ConnectionLostError(f"{method} {url}: connection lost", method=method, url=url)
        return HttpResponse(answer.status, answer.headers, answer.body, time.monotonic_ns() - start, url)


class ScriptedOrderPool:
    """The ``OrderPool`` of a ``ScriptedBinance``: ``size`` warm connections, one request each."""

    def __init__(self, venue: ScriptedBinance, base_url: str, *, size: int, request_timeout_s: float) -> None:
        self.venue = venue
        self.origin = _origin(base_url)[0]
        self.size = size
        self._request_timeout_s = request_timeout_s
        self._connected = 0
        self._waiting: dict[int, ResponseCallback] = {}
        self._numbers = itertools.count(1)

    @property
    def idle_connections(self) -> int:
        return max(0, self._connected - len(self._waiting))

    async def open(self) -> None:
        # nothing listens at another origin: no connection opens (as LeanHttpPool logs and goes on)
        self._connected = self.size if self.origin == self.venue.base_url else 0

    async def close(self) -> None:
        self._connected = 0
        waiting, self._waiting = self._waiting, {}
        for callback in waiting.values():
            callback(ConnectionLostError("pool closed"))

    def request_bytes(self, method: str, target: str, headers: dict[str, str]) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.origin.partition('://')[2]}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def write_now(self, request: bytes, on_response: ResponseCallback) -> bool:
        if not self.idle_connections:
            return False
        head = request.decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ", 2)
        headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
        path, _, query = target.partition("?")
        number = next(self._numbers)
        self._waiting[number] = on_response
        self.venue._spawn(self._exchange(number, method, path, query, headers))
        return True

    async def _exchange(
        self, number: int, method: str, path: str, query: str, headers: dict[str, str]
    ) -> None:
        start = time.monotonic_ns()
        task = self.venue._spawn(self.venue.serve(method, path, query, "", headers))
        result: HttpResponse | TransportError
        try:
            answer = await asyncio.wait_for(asyncio.shield(task), self._request_timeout_s)
        except TimeoutError:
            result = RequestTimeoutError(f"no response from {self.origin} in time")
        else:
            if answer is None:
                result = ConnectionLostError(f"connection to {self.origin} lost: closed by peer")
            else:
                elapsed = time.monotonic_ns() - start
                result = HttpResponse(answer.status, answer.headers, answer.body, elapsed, self.origin)
        callback = self._waiting.pop(number, None)
        if callback is not None:
            callback(result)


def _is_open(order: dict[str, Any]) -> bool:
    return order["status"] in ("NEW", "PARTIALLY_FILLED")


__all__ = ["Fault", "ScriptedBinance", "ScriptedHttp", "ScriptedOrderPool", "SymbolSpec"]
