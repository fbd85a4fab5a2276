"""Commands -> signed Binance REST requests (sans-I/O).

Built by string concatenation over values that are already canonical (tick/lot grids render
exact decimals), so a signed order costs a few microseconds, not a urlencode pass over a dict.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import orjson

from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.numbers import DecimalGrid
from hftkit.core.secrets import REDACTED
from hftkit.core.types import Instrument, OrderType, Side, TimeInForce
from hftkit.venues.base import OrderRequest
from hftkit.venues.binance.auth import BinanceCredentials, HmacSigner
from hftkit.venues.binance.endpoints import ENDPOINTS, Endpoint, Market

_SECRET_PARAMS = frozenset({"signature", "apiKey"})
_SECRET_HEADERS = frozenset({"x-mbx-apikey"})
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
# keyed by the members' values (``side._value_``): a member hashes through Enum's Python __hash__
_SIDES = {Side.BUY._value_: "BUY", Side.SELL._value_: "SELL"}
_TIME_IN_FORCE = {
    TimeInForce.GTC._value_: "GTC",
    TimeInForce.IOC._value_: "IOC",
    TimeInForce.FOK._value_: "FOK",
}


def order_params(market: Market, instrument: Instrument, request: OrderRequest) -> dict[str, str]:
    """One new order's parameters as strings, as USD-M ``batchOrders`` and the WebSocket API's
    ``order.place`` carry them (the same fields as the REST query of a single order)."""
    order = {
        "symbol": instrument.symbol,
        "side": _SIDES[request.side._value_],
        "quantity": instrument.lots.to_text(request.quantity),
        "newClientOrderId": request.client_order_id,
        "newOrderRespType": "RESULT",
    }
    if request.order_type is OrderType.MARKET:
        order["type"] = "MARKET"
    elif request.order_type is OrderType.LIMIT_MAKER and market is Market.SPOT:
        order["type"] = "LIMIT_MAKER"
        order["price"] = instrument.ticks.to_text(request.price)
    else:
        maker = request.order_type is OrderType.LIMIT_MAKER
        order["type"] = "LIMIT"
        order["timeInForce"] = "GTX" if maker else _TIME_IN_FORCE[request.time_in_force._value_]
        order["price"] = instrument.ticks.to_text(request.price)
    if request.reduce_only and market is Market.USDM:
        order["reduceOnly"] = "true"
    return order


def order_shape(request: OrderRequest) -> tuple[object, ...]:
    """What fixes every param of ``order_params`` but those of ``order_variables`` (the market is
    fixed per adapter): the key of an order's signed frame template (``SignedFrames``)."""
    # the members' values, not the members: an enum hashes through a Python-level __hash__
    return (
        "order.place",
        request.symbol,
        request.side._value_,
        request.order_type._value_,
        request.time_in_force._value_,
        request.reduce_only,
    )


def order_variables(instrument: Instrument, request: OrderRequest) -> dict[str, str]:
    """The params of ``order_params`` that change between orders of one ``order_shape`` (a
    market order has no price: its template ignores it)."""
    lots, ticks = instrument.lots, instrument.ticks
    return {
        "newClientOrderId": request.client_order_id,
        "quantity": _text(lots, request.quantity),
        "price": _text(ticks, request.price),
    }


@functools.lru_cache(maxsize=65_536)
def _text(grid: DecimalGrid, steps: int) -> str:
    """``grid.to_text(steps)`` for recent quantities and prices: a hit is one C call, where
    formatting is two Python calls (a grid hashes by identity)."""
    return grid.to_text(steps)


def modify_params(
    instrument: Instrument, client_order_id: str, side: Side, price: int, quantity: int
) -> dict[str, str]:
    """A USD-M modify's parameters (REST ``PUT /fapi/v1/order`` and WS API ``order.modify``)."""
    return {
        "symbol": instrument.symbol,
        "origClientOrderId": client_order_id,
        "side": _SIDES[side._value_],
        "quantity": instrument.lots.to_text(quantity),
        "price": instrument.ticks.to_text(price),
    }


def redact_query(query: str) -> str:
    """A query string with the value of ``signature`` (and any ``apiKey``) replaced."""
    parts = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        parts.append(f"{name}={REDACTED}" if equals and name in _SECRET_PARAMS else part)
    return "&".join(parts)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: REDACTED if name.lower() in _SECRET_HEADERS else value for name, value in headers.items()}


def encode_value(value: str) -> str:
    """Percent-encode a query value only when it needs it (ids and decimals rarely do)."""
    return value if _SAFE.issuperset(value) else quote(value, safe="")


@dataclass(frozen=True, slots=True)
class SignedRequest:
    endpoint: Endpoint
    query: str  # exactly what goes after '?', signature last
    headers: dict[str, str]
    weight: int

    def __repr__(self) -> str:
        # a signed query is replayable within recvWindow and the header carries the API key
        return (
            f"SignedRequest({self.endpoint.method} {self.endpoint.path}, query={redact_query(self.query)!r}, "
            f"headers={redact_headers(self.headers)!r}, weight={self.weight})"
        )

    __str__ = __repr__

    @property
    def redacted_url_path(self) -> str:
        """Path and query with the signature redacted: what may go into a log line or an error."""
        query = redact_query(self.query)
        return f"{self.endpoint.path}?{query}" if query else self.endpoint.path

    @property
    def method(self) -> str:
        return self.endpoint.method

    @property
    def path(self) -> str:
        return self.endpoint.path


class ClockOffset:
    """Keeps our timestamps in step with the venue's clock (Binance rejects >1 s ahead: -1021).

    ``observe(server_ms, sent_ns, received_ns)`` takes a /time answer and assumes the server
    read its clock halfway through the round trip; the smallest round trip seen wins,
    because it bounds the error best.
    """

    __slots__ = ("_best_round_trip_ns", "_clock", "offset_ms")

    def __init__(self, clock: Clock = REAL_CLOCK) -> None:
        self._clock = clock
        self.offset_ms = 0
        self._best_round_trip_ns: int | None = None

    def observe(self, server_time_ms: int, sent_wall_ns: int, received_wall_ns: int) -> None:
        round_trip = received_wall_ns - sent_wall_ns
        if round_trip < 0:
            return
        if self._best_round_trip_ns is not None and round_trip > self._best_round_trip_ns * 2:
            return  # a slow sample says little; keep the sharper estimate
        midpoint_ms = (sent_wall_ns + round_trip // 2) // 1_000_000
        self.offset_ms = server_time_ms - midpoint_ms
        if self._best_round_trip_ns is None or round_trip < self._best_round_trip_ns:
            self._best_round_trip_ns = round_trip

    def reset(self) -> None:
        """Forget the estimate, e.g. after a -1021 said it is wrong."""
        self._best_round_trip_ns = None

    def now_ms(self) -> int:
        return self._clock.time_ns() // 1_000_000 + self.offset_ms


class RequestBuilder:
    """Builds signed requests for one market (spot or USD-M) and one account."""

    def __init__(
        self,
        market: Market,
        credentials: BinanceCredentials,
        *,
        recv_window_ms: int = 5000,
        clock_offset: ClockOffset | None = None,
    ) -> None:
        if not 0 < recv_window_ms <= 60_000:
            raise ValueError("recvWindow must be in (0, 60000] ms")
        self.market = market
        self._endpoints = ENDPOINTS[market]
        self._signer = HmacSigner(credentials.secret)
        self._api_key_header = {"X-MBX-APIKEY": credentials.api_key.reveal()}
        self._recv_window = f"&recvWindow={recv_window_ms}"
        self.clock_offset = clock_offset or ClockOffset()

    def endpoint(self, name: str) -> Endpoint:
        return self._endpoints[name]

    def request(self, name: str, params: dict[str, str] | None = None) -> SignedRequest:
        """Any endpoint by name; signs it when the endpoint is signed."""
        endpoint = self._endpoints[name]
        params = params or {}
        query = "&".join(f"{key}={encode_value(value)}" for key, value in params.items())
        if endpoint.signed:
            return self._sign(endpoint, query, endpoint.weight_for(params))
        headers = self._api_key_header if endpoint.api_key else {}
        return SignedRequest(endpoint, query, headers, endpoint.weight_for(params))

    def new_order(
        self,
        instrument: Instrument,
        client_order_id: str,
        side: Side,
        order_type: OrderType,
        quantity: int,
        price: int = 0,
        time_in_force: TimeInForce = TimeInForce.GTC,
        *,
        reduce_only: bool = False,
    ) -> SignedRequest:
        """A new order; price in ticks and quantity in lots of ``instrument``."""
        parts = [
            "symbol=",
            instrument.symbol,
            "&side=",
            _SIDES[side._value_],
            "&quantity=",
            _text(instrument.lots, quantity),
            "&newClientOrderId=",
            encode_value(client_order_id),
        ]
        if order_type is OrderType.MARKET:
            parts.append("&type=MARKET")
        elif order_type is OrderType.LIMIT_MAKER:
            if self.market is Market.SPOT:
                parts.append("&type=LIMIT_MAKER&price=")
            else:
                parts.append("&type=LIMIT&timeInForce=GTX&price=")
            parts.append(instrument.ticks.to_text(price))
        else:
            parts += ["&type=LIMIT&timeInForce=", _TIME_IN_FORCE[time_in_force._value_], "&price="]
            parts.append(instrument.ticks.to_text(price))
        if self.market is Market.USDM:
            if reduce_only:
                parts.append("&reduceOnly=true")
            parts.append("&newOrderRespType=RESULT")
        else:
            parts.append("&newOrderRespType=RESULT")
        endpoint = self._endpoints["new_order"]
        return self._sign(endpoint, "".join(parts), 1)

    def batch_orders(self, orders: Sequence[tuple[Instrument, OrderRequest]]) -> SignedRequest:
        """USD-M ``batchOrders``: each order as a JSON object of strings, the list percent-encoded."""
        if self.market is not Market.USDM:
            raise ValueError("batch orders are a USD-M endpoint")
        objects = [order_params(Market.USDM, instrument, request) for instrument, request in orders]
        query = "batchOrders=" + quote(orjson.dumps(objects).decode(), safe="")
        return self._sign(self._endpoints["batch_orders"], query, 5)

    def cancel_order(
        self, instrument: Instrument, *, client_order_id: str | None = None, venue_order_id: str | None = None
    ) -> SignedRequest:
        if venue_order_id is not None:
            query = f"symbol={instrument.symbol}&orderId={venue_order_id}"
        elif client_order_id is not None:
            query = f"symbol={instrument.symbol}&origClientOrderId={encode_value(client_order_id)}"
        else:
            raise ValueError("cancel_order needs a client or a venue order id")
        return self._sign(self._endpoints["cancel_order"], query, 1)

    def modify_order(
        self, instrument: Instrument, client_order_id: str, side: Side, price: int, quantity: int
    ) -> SignedRequest:
        """USD-M ``PUT /fapi/v1/order``: the order's new price and total quantity."""
        params = modify_params(instrument, client_order_id, side, price, quantity)
        query = "&".join(f"{key}={encode_value(value)}" for key, value in params.items())
        return self._sign(self._endpoints["modify_order"], query, 0)

    def query_order(self, instrument: Instrument, *, client_order_id: str) -> SignedRequest:
        query = f"symbol={instrument.symbol}&origClientOrderId={encode_value(client_order_id)}"
        endpoint = self._endpoints["query_order"]
        return self._sign(endpoint, query, endpoint.weight_for({}))

    def _sign(self, endpoint: Endpoint, query: str, weight: int) -> SignedRequest:
        timestamp = self.clock_offset.now_ms()
        prefix = f"{query}&" if query else ""
        unsigned = f"{prefix}timestamp={timestamp}{self._recv_window}"
        signature = self._signer.sign(unsigned.encode())
        return SignedRequest(endpoint, f"{unsigned}&signature={signature}", self._api_key_header, weight)
