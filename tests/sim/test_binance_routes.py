"""USD-M stream routing (/public, /market, /private), the private subscription and ``events=``
filter, and the venue's answers to unknown paths and methods."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from hftkit.sim.binance.streams import parse_stream, usdm_route
from hftkit.testing.binance_simulator import API_KEY, SYMBOL, BinanceSimHarness

TIMEOUT = 3.0
QUIET_S = 0.4


@pytest.fixture
async def sim():
    harness = await BinanceSimHarness().start()
    yield harness
    await harness.stop()


async def receive(socket: aiohttp.ClientWebSocketResponse, timeout: float = TIMEOUT) -> Any:
    message = await socket.receive(timeout=timeout)
    assert message.type is aiohttp.WSMsgType.TEXT, message
    return orjson.loads(message.data)


async def silent(socket: aiohttp.ClientWebSocketResponse) -> bool:
    try:
        await socket.receive(timeout=QUIET_S)
    except TimeoutError:
        return True
    return False


async def trade_usdm(sim: BinanceSimHarness) -> None:
    status, body, _ = await sim.request(
        "POST",
        "/fapi/v1/order",
        {"symbol": SYMBOL, "side": "BUY", "type": "MARKET", "quantity": "0.01"},
        signed=True,
    )
    assert status == 200, body


@pytest.mark.parametrize(
    ("name", "route"),
    [
        ("btcusdt@depth", "public"),
        ("btcusdt@depth@100ms", "public"),
        ("btcusdt@depth5@100ms", "public"),
        ("btcusdt@bookTicker", "public"),
        ("!bookTicker", "public"),
        ("btcusdt@aggTrade", "market"),
        ("btcusdt@markPrice@1s", "market"),
        ("!markPrice@arr", "market"),
        ("btcusdt@kline_1m", "market"),
        ("btcusdt@miniTicker", "market"),
        ("btcusdt@ticker", "market"),
        ("!ticker@arr", "market"),
    ],
)
def test_every_usdm_stream_has_the_venues_route(name, route):
    assert usdm_route(parse_stream(name, spot=False)) == route


async def test_a_stream_on_its_own_path_delivers_and_on_the_other_stays_silent(sim):
    ws = sim.urls["ws"]
    async with (
        sim.session.ws_connect(f"{ws}/market/stream?streams=btcusdt@aggTrade") as market,
        sim.session.ws_connect(f"{ws}/public/stream?streams=btcusdt@aggTrade") as public_wrong,
        sim.session.ws_connect(f"{ws}/public/ws/btcusdt@depth@0ms") as public,
        sim.session.ws_connect(f"{ws}/market/ws/btcusdt@depth@0ms") as market_wrong,
    ):
        await asyncio.sleep(0.05)
        await trade_usdm(sim)
        aggregate = await receive(market)
        assert aggregate["stream"] == "btcusdt@aggTrade" and aggregate["data"]["e"] == "aggTrade"
        depth = await receive(public)
        assert depth["e"] == "depthUpdate" and "pu" in depth
        assert await silent(public_wrong) and await silent(market_wrong)
        # the wrong-path subscription is accepted and listed, as the venue does
        await market_wrong.send_str('{"method":"LIST_SUBSCRIPTIONS","id":7}')
        assert await receive(market_wrong) == {"result": ["btcusdt@depth@0ms"], "id": 7}


async def test_live_subscribe_follows_the_route_too(sim):
    async with sim.session.ws_connect(f"{sim.urls['ws']}/public/ws") as socket:
        await socket.send_str(
            '{"method":"SUBSCRIBE","params":["btcusdt@aggTrade","btcusdt@bookTicker"],"id":1}'
        )
        assert await receive(socket) == {"result": None, "id": 1}
        await trade_usdm(sim)
        first = await receive(socket)
        assert first["e"] == "bookTicker"  # the aggTrade never comes on /public
        while True:
            try:
                message = await receive(socket, QUIET_S)
            except TimeoutError:
                break
            assert message["e"] == "bookTicker"


async def test_futures_only_server_serves_public_streams_on_root_paths():
    harness = BinanceSimHarness()
    harness.server = type(harness.server)(
        None, harness.usdm, api_keys=harness.server.api_keys, clock=harness.clock
    )
    await harness.start()
    try:
        async with (
            harness.session.ws_connect(f"{harness.urls['ws']}/ws/btcusdt@depth@0ms") as depth,
            harness.session.ws_connect(f"{harness.urls['ws']}/ws/btcusdt@aggTrade") as aggregate,
        ):
            await asyncio.sleep(0.05)
            await trade_usdm(harness)
            assert (await receive(depth))["e"] == "depthUpdate"
            assert await silent(aggregate)
    finally:
        await harness.stop()


async def test_spot_streams_on_the_shared_root_are_not_routed(sim):
    async with sim.session.ws_connect(f"{sim.urls['ws']}/ws/btcusdt@aggTrade") as socket:
        await asyncio.sleep(0.05)
        status, _, _ = await sim.request(
            "POST",
            "/api/v3/order",
            {"symbol": SYMBOL, "side": "BUY", "type": "MARKET", "quantity": "0.01"},
            signed=True,
        )
        assert status == 200
        event = await receive(socket)
    assert event["e"] == "aggTrade" and event["p"] == "50000.01000000"  # spot's price format


async def test_futures_stream_host_serves_usdm_on_its_root_paths():
    """With a separate fstream-like host, its root /ws carries USD-M /public streams, never spot."""
    harness = await BinanceSimHarness(usdm_stream_port=0).start()
    try:
        host = harness.urls["usdm_stream"]
        assert host != harness.urls["ws"]
        async with (
            harness.session.ws_connect(f"{host}/ws/btcusdt@depth@0ms") as depth,
            harness.session.ws_connect(f"{host}/ws/btcusdt@aggTrade") as wrong_path,
            harness.session.ws_connect(f"{host}/market/ws/btcusdt@aggTrade") as aggregate,
        ):
            await asyncio.sleep(0.05)
            await trade_usdm(harness)
            update = await receive(depth)
            assert update["e"] == "depthUpdate" and "pu" in update  # a futures diff, not spot's
            assert (await receive(aggregate))["p"] == "50000.1"
            assert await silent(wrong_path)
        async with harness.session.get(f"{host.replace('ws://', 'http://')}/api/v3/ping") as response:
            assert response.status == 404  # a stream host only
    finally:
        await harness.stop()


# /private --------------------------------------------------------------------------------------------------


async def listen_key(sim: BinanceSimHarness) -> str:
    status, body, _ = await sim.request("POST", "/fapi/v1/listenKey", key=API_KEY)
    assert status == 200
    return body["listenKey"]


async def test_private_stream_opens_without_a_key_and_takes_a_subscribe(sim):
    """The official SDK opens /market, /public and /private at once, then subscribes its key."""
    key = await listen_key(sim)
    async with sim.session.ws_connect(f"{sim.urls['ws']}/private/stream") as socket:
        await socket.send_str(orjson.dumps({"method": "SUBSCRIBE", "params": [key], "id": 1}).decode())
        assert await receive(socket) == {"result": None, "id": 1}
        await socket.send_str('{"method":"LIST_SUBSCRIPTIONS","id":2}')
        assert await receive(socket) == {"result": [key], "id": 2}
        await trade_usdm(sim)
        event = await receive(socket)
        assert event["stream"] == key and event["data"]["e"] in ("ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE")
        await socket.send_str(orjson.dumps({"method": "UNSUBSCRIBE", "params": [key], "id": 3}).decode())
        # events already queued may still arrive; after the answer, nothing more
        while (await receive(socket)).get("id") != 3:
            pass
        await trade_usdm(sim)
        assert await silent(socket)
        await socket.send_str('{"method":"SUBSCRIBE","params":["nokey!"],"id":4}')
        assert (await receive(socket))["code"] == 2


async def test_private_events_filter_delivers_only_the_named_events(sim):
    key = await listen_key(sim)
    url = f"{sim.urls['ws']}/private/ws?listenKey={key}&events=ACCOUNT_UPDATE"
    async with sim.session.ws_connect(url) as socket:
        await asyncio.sleep(0.05)
        await trade_usdm(sim)
        event = await receive(socket)
        assert event["e"] == "ACCOUNT_UPDATE"
        assert await silent(socket)
    async with sim.session.ws_connect(f"{sim.urls['ws']}/private/ws/{key}") as socket:
        await asyncio.sleep(0.05)
        await trade_usdm(sim)
        kinds = [(await receive(socket))["e"]]
        while kinds[-1] != "ACCOUNT_UPDATE":
            kinds.append((await receive(socket))["e"])
        assert kinds[0] == "ORDER_TRADE_UPDATE"  # without a filter every event type comes


async def test_private_with_an_unknown_key_is_minus_1125(sim):
    async with sim.session.get(f"{sim.urls['ws']}/private/ws?listenKey=nope") as response:
        assert response.status == 400
        assert await response.json() == {"code": -1125, "msg": "This listenKey does not exist."}


# unknown paths and methods ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v3/nothing"),
        ("PATCH", "/api/v3/order"),
        ("PUT", "/api/v3/time"),
        ("POST", "/api/v3/depth"),
        ("GET", "/api/v9/ping"),
        ("POST", "/fapi/v1/time"),
        ("GET", "/fapi/v9/order"),
        ("PATCH", "/fapi/v1/order"),
        ("DELETE", "/sapi/v1/system/status"),
        ("GET", "/nowhere/ws"),
        ("GET", "/"),
    ],
)
async def test_unknown_paths_and_methods_get_the_venues_404_page(sim, method, path):
    async with sim.session.request(method, f"{sim.base}{path}") as response:
        body = await response.text()
        assert response.status == 404
        assert response.content_type == "text/html"
        assert "<title>Binance</title>" in body and "404" in body
    assert "X-MBX-USED-WEIGHT-1M" not in response.headers  # not a routed request: nothing weighed


async def test_known_paths_still_answer_json_and_404s_are_counted(sim):
    before = sim.server.not_found_answers
    async with sim.session.put(f"{sim.base}/fapi/v1/order") as response:
        assert response.status == 401 and (await response.json())["code"] == -2014  # no API key
    async with sim.session.get(f"{sim.base}/api/v3/ping") as response:
        assert response.status == 200 and await response.json() == {}
    async with sim.session.get(f"{sim.base}/api/v3/unknown") as response:
        assert response.status == 404
    assert sim.server.not_found_answers == before + 1
    assert sim.server.snapshot()["not_found_answers"] == before + 1
