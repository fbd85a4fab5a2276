"""Orders over Binance's WebSocket API: the signed session, and what each answer means.

The session runs against a scripted WebSocket server on loopback (what it writes, what it does
with late, unknown, malformed answers and a dropped connection); the adapter's reading of the
answers is checked answer by answer, classified by the same rule as REST's."""

from __future__ import annotations

import asyncio

import msgspec
import orjson
import pytest
from aiohttp import WSMsgType, web

from hftkit.core.types import Instrument, OrderStatus, OrderType, OrderUpdate, Side, TimeInForce
from hftkit.venues.base import OrderOutcomeUnknownError, OrderRejectedError, OrderRequest, RateLimitedError
from hftkit.venues.binance import codec
from hftkit.venues.binance.adapter import BinanceAdapter, BinanceConfig
from hftkit.venues.binance.auth import BinanceCredentials, HmacSigner, SignedFrames
from hftkit.venues.binance.build import ClockOffset, order_params, order_shape, order_variables
from hftkit.venues.binance.endpoints import Market
from hftkit.venues.binance.rest import OrderNotFoundError
from hftkit.venues.binance.ws_api import (
    SessionLostError,
    SessionNotReadyError,
    WebSocketApiConfig,
    WebSocketApiSession,
    rate_usage,
)

CREDENTIALS = BinanceCredentials("key-1", "secret-1")


class ScriptedApi:
    """A WebSocket API that records requests and answers as the test says."""

    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []
        self.answer: object = "ok"  # "ok", "silent", "drop", or raw bytes to send
        self.sockets: list[web.WebSocketResponse] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self.sockets.append(socket)
        async for message in socket:
            if message.type is not WSMsgType.TEXT:
                continue
            frame = orjson.loads(message.data)
            self.requests.append(frame)
            if self.answer == "ok":
                await socket.send_str(
                    orjson.dumps(
                        {"id": frame["id"], "status": 200, "result": {"echo": frame["method"]}}
                    ).decode()
                )
            elif self.answer == "drop":
                await socket.close()
            elif isinstance(self.answer, bytes):
                await socket.send_str(self.answer.decode())
        return socket

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ws-api/v3", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}/ws-api/v3"


@pytest.fixture
async def api():
    server = ScriptedApi()
    await server.start()
    yield server
    for socket in server.sockets:
        await socket.close()
    assert server.runner is not None
    await server.runner.cleanup()


async def session_for(server: ScriptedApi, timeout_s: float = 2.0) -> WebSocketApiSession:
    session = WebSocketApiSession(
        CREDENTIALS,
        WebSocketApiConfig(urls=(server.url,), request_timeout_s=timeout_s),
        clock_offset=ClockOffset(),
    )
    session.start()
    await session.wait_connected(5)
    return session


async def test_a_request_is_signed_over_its_sorted_params_and_its_answer_reaches_the_receiver(api) -> None:
    session = await session_for(api)
    try:
        answer = await session.request(
            "order.place", {"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.001"}
        )
        assert answer.status == 200 and msgspec.json.decode(answer.result) == {"echo": "order.place"}
        (frame,) = api.requests
        params = dict(frame["params"])  # type: ignore[arg-type]
        assert frame["method"] == "order.place" and params["apiKey"] == "key-1"
        assert {"timestamp", "recvWindow", "signature"} <= set(params)
        signature = params.pop("signature")
        assert HmacSigner("secret-1").sign_websocket_params(params) == signature
    finally:
        await session.close()


def test_shaped_order_frames_are_byte_for_byte_the_frames_built_from_the_params() -> None:
    """Every order shape the adapter sends, through a template cache smaller than the shapes (so
    it clears), equals the frame built from ``order_params``'s dict, and its signature checks."""
    instrument = Instrument("binance", "BTCUSDT", "BTC", "USDT", "0.01", "0.00001", "5")
    made = 0
    for market in (Market.SPOT, Market.USDM):
        frames = SignedFrames(HmacSigner("secret-1"), "key-1", "5000", capacity=3)  # one per adapter
        for order_type in (OrderType.LIMIT, OrderType.MARKET, OrderType.LIMIT_MAKER):
            for time_in_force in (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK):
                for side in (Side.BUY, Side.SELL):
                    for reduce_only in (False, True):
                        for number, (price, quantity) in enumerate(((6_100_012, 100), (6_100_000, 12_345))):
                            request = OrderRequest(
                                symbol="BTCUSDT",
                                side=side,
                                order_type=order_type,
                                quantity=quantity,
                                price=price,
                                time_in_force=time_in_force,
                                client_order_id=f"hk-{made}-{number}",
                                reduce_only=reduce_only,
                            )
                            params = order_params(market, instrument, request)
                            timestamp = str(1_733_580_000_000 + made)
                            shaped = frames.shaped_frame(
                                order_shape(request),
                                made,
                                "order.place",
                                order_variables(instrument, request),
                                timestamp,
                                lambda params=params: params,
                            )
                            assert shaped == frames.frame(made, "order.place", params, timestamp)
                            decoded = orjson.loads(shaped)["params"]
                            signature = decoded.pop("signature")
                            assert HmacSigner("secret-1").sign_websocket_params(decoded) == signature
                            made += 1
    assert made == 144
    odd = {"symbol": "BTC%USDT", "quantity": "1"}  # a percent sign in a constant value
    assert frames.shaped_frame("odd", 9, "x", {"quantity": "2"}, "3", lambda: odd) == frames.frame(
        9, "x", {**odd, "quantity": "2"}, "3"
    )
    with pytest.raises(ValueError, match="string params"):
        frames.shaped_frame("bool", 9, "x", {}, "3", lambda: {"reduceOnly": True})


async def test_a_dropped_connection_leaves_the_request_in_flight_unknown_never_resent(api) -> None:
    session = await session_for(api)
    api.answer = "drop"
    try:
        with pytest.raises(SessionLostError):
            await session.request("order.place", {"symbol": "BTCUSDT"})
        assert session.stats.lost_in_flight == 1 and len(api.requests) == 1
    finally:
        await session.close()


async def test_no_answer_in_time_is_unknown_and_a_late_answer_is_counted_not_delivered(api) -> None:
    session = await session_for(api, timeout_s=0.1)
    api.answer = "silent"
    try:
        with pytest.raises(SessionLostError, match="no answer within"):
            await session.request("order.place", {"symbol": "BTCUSDT"})
        assert session.stats.timeouts == 1
        for socket in api.sockets:  # the venue answers after all
            await socket.send_str('{"id":1,"status":200,"result":{}}')
        await asyncio.sleep(0.05)
        assert session.stats.unmatched == 1
    finally:
        await session.close()


async def test_malformed_and_unknown_answers_are_counted_and_the_session_goes_on(api) -> None:
    session = await session_for(api)
    try:
        for junk in (b"not json", b'{"id": "x", "status": "two hundred"}', b'{"id": 999, "status": 200}'):
            api.answer = junk
            session.request_now("ping", {}, asyncio.get_running_loop().create_future())
            await asyncio.sleep(0.05)
        assert session.stats.malformed == 2 and session.stats.unmatched == 1
        api.answer = "ok"
        assert (await session.request("ping", {})).status == 200
    finally:
        await session.close()


async def test_nothing_is_written_while_not_connected() -> None:
    session = WebSocketApiSession(
        CREDENTIALS, WebSocketApiConfig(urls=("ws://127.0.0.1:1/x",)), clock_offset=ClockOffset()
    )
    with pytest.raises(SessionNotReadyError):
        session.request_now("order.place", {}, asyncio.get_running_loop().create_future())


# -- what an answer means ------------------------------------------------------------------------

INSTRUMENT = Instrument("binance", "BTCUSDT", "BTC", "USDT", "0.01", "0.00001", "5")
REQUEST = OrderRequest(
    symbol="BTCUSDT",
    client_order_id="c-1",
    side=Side.BUY,
    quantity=100,
    price=6_000_000,
    order_type=OrderType.LIMIT,
    time_in_force=TimeInForce.IOC,
)


def adapter() -> BinanceAdapter:
    venue = BinanceAdapter(
        CREDENTIALS, BinanceConfig(order_transport="websocket_api", order_api_urls=("ws://127.0.0.1:1/x",))
    )
    venue._instruments = {"BTCUSDT": INSTRUMENT}
    return venue


def answer(
    status: int, *, result: object = None, code: int | None = None, limits: object = ()
) -> codec.WebSocketApiResponse:
    body: dict[str, object] = {"id": 1, "status": status, "rateLimits": list(limits)}  # type: ignore[arg-type]
    if result is not None:
        body["result"] = result
    if code is not None:
        body["error"] = {"code": code, "msg": f"code {code}"}
    return msgspec.json.decode(orjson.dumps(body), type=codec.WebSocketApiResponse)


def test_an_accepted_order_is_the_venues_view_of_it() -> None:
    venue = adapter()
    result = {
        "symbol": "BTCUSDT",
        "orderId": 7,
        "clientOrderId": "c-1",
        "price": "60000.00",
        "origQty": "0.00100",
        "executedQty": "0",
        "status": "EXPIRED",
        "side": "BUY",
        "type": "LIMIT",
        "transactTime": 1,
    }
    update = venue._api_answer(INSTRUMENT, REQUEST, "new_order", answer(200, result=result))
    assert isinstance(update, OrderUpdate)
    assert (update.status, update.price, update.quantity, update.venue_order_id) == (
        OrderStatus.EXPIRED,
        6_000_000,
        100,
        "7",
    )


async def test_refusals_are_classified_by_the_same_rule_as_rest() -> None:
    venue = adapter()
    cases = [
        (answer(400, code=-2010), OrderRejectedError),
        (answer(400, code=-1013), OrderRejectedError),
        (answer(429, code=-1003), RateLimitedError),
        (answer(503, code=-1001), OrderOutcomeUnknownError),
        (answer(400, code=-1007), OrderOutcomeUnknownError),
        (answer(200, result="not an order"), OrderOutcomeUnknownError),
    ]
    for response, expected in cases:
        assert type(venue._api_answer(INSTRUMENT, REQUEST, "new_order", response)) is expected
    not_found = venue._api_answer(INSTRUMENT, REQUEST, "cancel_order", answer(400, code=-2011))
    assert isinstance(not_found, OrderNotFoundError)
    # a clock refusal placed nothing: a plain reject for the caller, the clock resynced behind it
    stale = venue._api_answer(INSTRUMENT, REQUEST, "new_order", answer(400, code=-1021))
    assert type(stale) is OrderRejectedError
    for task in list(venue._tasks):
        task.cancel()


def test_the_answers_window_counts_correct_the_shared_limiter() -> None:
    venue = adapter()
    limits = [
        {
            "rateLimitType": "REQUEST_WEIGHT",
            "interval": "MINUTE",
            "intervalNum": 1,
            "limit": 6000,
            "count": 4321,
        },
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100, "count": 42},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000, "count": 1},
    ]
    response = answer(400, code=-2010, limits=limits)
    assert rate_usage(response) == {"x-mbx-used-weight-1m": 4321, "x-mbx-order-count-10s": 42}
    venue._api_answer(INSTRUMENT, REQUEST, "new_order", response)
    assert venue.rest.limiter.used("x-mbx-used-weight-1m") == 4321
    assert venue.rest.limiter.used("x-mbx-order-count-10s") == 42


def test_exchange_info_limits_resize_the_windows_to_the_accounts_own() -> None:
    venue = adapter()
    limits = [
        codec.RateLimitUsage("ORDERS", "SECOND", 10, 5000, 0),
        codec.RateLimitUsage("REQUEST_WEIGHT", "MINUTE", 1, 12000, 0),
        codec.RateLimitUsage("RAW_REQUESTS", "MINUTE", 5, 61000, 0),
    ]
    assert sorted(venue.rest.adopt_limits(limits)) == ["x-mbx-order-count-10s", "x-mbx-used-weight-1m"]
    budgets = {window.name: window.limit for window in venue.rest.limiter.usage()}
    assert budgets["x-mbx-order-count-10s"] == 5000 and budgets["x-mbx-used-weight-1m"] == 12000


def test_the_websocket_api_transport_needs_its_urls() -> None:
    with pytest.raises(ValueError, match="order_api_urls"):
        BinanceConfig(order_transport="websocket_api")
    with pytest.raises(ValueError, match="order_transport"):
        BinanceConfig(order_transport="carrier pigeon")
