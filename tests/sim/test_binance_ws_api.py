"""WebSocket API breadth on the Binance simulator: spot market data methods, session.logon with
Ed25519 keys, USD-M userDataStream.* and v2 account queries, with the documented weights."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import aiohttp
import orjson
import pytest

from hftkit.sim.binance.ws_api import websocket_payload
from hftkit.testing.binance_simulator import (
    API_KEY,
    API_SECRET,
    ED25519_KEY,
    ED25519_PRIVATE_KEY,
    SYMBOL,
    BinanceSimHarness,
)
from hftkit.venues.binance.auth import HmacSigner
from hftkit.venues.binance.endpoints import Market

TIMEOUT = 3.0


@pytest.fixture
async def sim():
    harness = await BinanceSimHarness().start()
    yield harness
    await harness.stop()


def hmac_signed(sim: BinanceSimHarness, **params: Any) -> dict[str, Any]:
    full = {"apiKey": API_KEY, "timestamp": sim.server_ms(), **params}
    full["signature"] = HmacSigner(API_SECRET).sign_websocket_params(full)
    return full


def ed25519_signed(sim: BinanceSimHarness, **params: Any) -> dict[str, Any]:
    full = {"apiKey": ED25519_KEY, "timestamp": sim.server_ms(), **params}
    signature = ED25519_PRIVATE_KEY.sign(websocket_payload(full).encode())
    full["signature"] = base64.b64encode(signature).decode()
    return full


async def ask(
    socket: aiohttp.ClientWebSocketResponse, method: str, params: dict[str, Any] | None = None
) -> Any:
    request: dict[str, Any] = {"id": method, "method": method}
    if params is not None:
        request["params"] = params
    await socket.send_str(orjson.dumps(request).decode())
    while True:
        message = await socket.receive(timeout=TIMEOUT)
        assert message.type is aiohttp.WSMsgType.TEXT, message
        answer = orjson.loads(message.data)
        if answer.get("id") == method:
            return answer


def weight_used(answer: dict[str, Any]) -> int:
    return next(item["count"] for item in answer["rateLimits"] if item["rateLimitType"] == "REQUEST_WEIGHT")


async def trade(sim: BinanceSimHarness, path: str = "/api/v3/order") -> None:
    status, body, _ = await sim.request(
        "POST", path, {"symbol": SYMBOL, "side": "BUY", "type": "MARKET", "quantity": "0.01"}, signed=True
    )
    assert status == 200, body


@pytest.mark.parametrize(
    ("method", "params", "weight"),
    [
        ("klines", {"symbol": SYMBOL, "interval": "1m"}, 2),
        ("uiKlines", {"symbol": SYMBOL, "interval": "1m"}, 2),
        ("avgPrice", {"symbol": SYMBOL}, 2),
        ("trades.historical", {"symbol": SYMBOL}, 25),
        ("trades.aggregate", {"symbol": SYMBOL}, 4),
        ("ticker", {"symbol": SYMBOL}, 4),
        ("ticker", {"symbols": f'["{SYMBOL}"]', "windowSize": "2h", "type": "MINI"}, 4),
        ("ticker.tradingDay", {"symbol": SYMBOL, "timeZone": "8"}, 4),
        ("ticker.price", {"symbol": SYMBOL}, 2),
        ("ticker.price", {}, 4),
        ("ticker.book", {"symbol": SYMBOL}, 2),
        ("ticker.24hr", {"symbol": SYMBOL}, 2),
        ("depth", {"symbol": SYMBOL, "limit": 5000}, 250),
    ],
)
async def test_spot_market_data_methods_answer_and_weigh_as_documented(sim, method, params, weight):
    await trade(sim)
    async with sim.session.ws_connect(sim.urls["spot_ws_api"]) as socket:
        first = await ask(socket, "time")
        answer = await ask(socket, method, params)
    assert answer["status"] == 200, answer
    assert weight_used(answer) - weight_used(first) == weight
    assert answer["result"]


async def test_spot_market_data_results_match_rest(sim):
    await trade(sim)
    await trade(sim)
    async with sim.session.ws_connect(sim.urls["spot_ws_api"]) as socket:
        klines = (await ask(socket, "klines", {"symbol": SYMBOL, "interval": "1m"}))["result"]
        trades = (await ask(socket, "trades.historical", {"symbol": SYMBOL, "fromId": 1, "limit": 1}))[
            "result"
        ]
        rolling = (await ask(socket, "ticker", {"symbol": SYMBOL, "windowSize": "15m"}))["result"]
        mini = (await ask(socket, "ticker", {"symbol": SYMBOL, "type": "MINI"}))["result"]
        bad_window = await ask(socket, "ticker", {"symbol": SYMBOL, "windowSize": "8d"})
        no_symbol = await ask(socket, "ticker", {})
    _, rest_klines, _ = await sim.request("GET", "/api/v3/klines", {"symbol": SYMBOL, "interval": "1m"})
    assert klines == rest_klines and klines[-1][5] == "0.02000000"
    assert [row["id"] for row in trades] == [1]
    assert (rolling["volume"], rolling["count"], rolling["lastPrice"]) == ("0.02000000", 2, "50000.01000000")
    assert rolling["lastId"] - rolling["firstId"] == 1
    assert "priceChange" not in mini and mini["volume"] == "0.02000000"
    assert (bad_window["status"], bad_window["error"]["code"]) == (400, -1100)
    assert no_symbol["error"]["code"] == -1102
    status, body, _ = await sim.request("GET", "/api/v3/ticker", {"symbol": SYMBOL, "windowSize": "15m"})
    assert status == 200 and body["volume"] == rolling["volume"]
    status, day, _ = await sim.request("GET", "/api/v3/ticker/tradingDay", {"symbol": SYMBOL})
    assert status == 200 and day["volume"] == "0.02000000" and day["openTime"] % 86_400_000 == 0
    status, body, _ = await sim.request(
        "GET", "/api/v3/ticker/tradingDay", {"symbol": SYMBOL, "timeZone": "15"}
    )
    assert (status, body["code"]) == (400, -1100)


async def test_session_logon_takes_ed25519_keys_only_and_signs_later_requests(sim):
    async with sim.session.ws_connect(sim.urls["spot_ws_api"]) as socket:
        status = await ask(socket, "session.status")
        assert status["result"]["apiKey"] is None and status["result"]["authorizedSince"] is None
        refused = await ask(socket, "session.logon", hmac_signed(sim))
        assert (refused["status"], refused["error"]["code"]) == (400, -1002)
        bad = ed25519_signed(sim)
        bad["signature"] = base64.b64encode(b"x" * 64).decode()
        assert (await ask(socket, "session.logon", bad))["error"]["code"] == -1022
        logon = await ask(socket, "session.logon", ed25519_signed(sim))
        assert logon["status"] == 200 and logon["result"]["apiKey"] == ED25519_KEY
        order = {"symbol": SYMBOL, "side": "BUY", "type": "MARKET", "quantity": "0.01"}
        placed = await ask(socket, "order.place", {**order, "timestamp": sim.server_ms()})
        assert placed["status"] == 200 and placed["result"]["status"] == "FILLED"
        assert sim.spot.engine.get_order(ED25519_KEY, order_id=placed["result"]["orderId"]) is not None
        subscribed = await ask(socket, "userDataStream.subscribe")
        assert subscribed["status"] == 200
        assert (await ask(socket, "session.status"))["result"]["userDataStream"] is True
        logout = await ask(socket, "session.logout")
        assert logout["result"]["apiKey"] is None
        unsigned = await ask(socket, "order.place", {**order, "timestamp": sim.server_ms()})
        assert unsigned["status"] in (400, 401) and unsigned["error"]["code"] == -2014
        # a request signed with the Ed25519 key itself works without a session
        signed = await ask(socket, "order.place", ed25519_signed(sim, **order))
        assert signed["status"] == 200


async def test_usdm_user_data_stream_methods_and_v2_account_queries(sim):
    async with sim.session.ws_connect(sim.urls["usdm_ws_api"]) as socket:
        started = await ask(socket, "userDataStream.start", {"apiKey": API_KEY})
        key = started["result"]["listenKey"]
        pinged = await ask(socket, "userDataStream.ping", {"apiKey": API_KEY})
        assert pinged["result"] == {"listenKey": key}
        assert sim.server.state(Market.USDM).active_listen_key(key) is not None
        no_key = await ask(socket, "userDataStream.start", {})
        assert no_key["error"]["code"] == -2014
        stopped = await ask(socket, "userDataStream.stop", {"apiKey": API_KEY})
        assert stopped["status"] == 200 and stopped["result"] == {}
        account_v2 = (await ask(socket, "v2/account.status", hmac_signed(sim)))["result"]
        account = (await ask(socket, "account.status", hmac_signed(sim)))["result"]
        positions_v2 = (await ask(socket, "v2/account.position", hmac_signed(sim)))["result"]
        balances = (await ask(socket, "v2/account.balance", hmac_signed(sim)))["result"]
    assert "feeTier" in account and "feeTier" not in account_v2
    assert account_v2["totalWalletBalance"] == "100000.00000000"
    assert positions_v2 == []  # v3 shape: only symbols with a position or open orders
    assert balances[0]["asset"] == "USDT"
    status, body, _ = await sim.request("PUT", "/fapi/v1/listenKey", {"listenKey": key}, key=API_KEY)
    assert (status, body["code"]) == (400, -1125)


async def test_order_methods_report_the_accounts_order_counts(sim):
    # the order windows turn on the wall clock: start clear of the 10 s window's turn, or the
    # second order lands in a fresh window and counts 1 (seen in CI)
    left_s = 10 - time.time() % 10
    if left_s < 5:
        await asyncio.sleep(left_s + 0.05)
    async with sim.session.ws_connect(sim.urls["spot_ws_api"]) as socket:
        order = {"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
        first = await ask(socket, "order.place", hmac_signed(sim, **order, price="49000", quantity="0.01"))
        second = await ask(socket, "order.place", hmac_signed(sim, **order, price="48000", quantity="0.01"))
        market_data = await ask(socket, "time")
    assert [limit["rateLimitType"] for limit in first["rateLimits"]] == ["REQUEST_WEIGHT", "ORDERS", "ORDERS"]
    orders = [(item["interval"], item["intervalNum"], item["count"]) for item in second["rateLimits"][1:]]
    assert orders == [("SECOND", 10, 2), ("DAY", 1, 2)]
    assert [limit["rateLimitType"] for limit in market_data["rateLimits"]] == ["REQUEST_WEIGHT"]
    async with sim.session.ws_connect(sim.urls["spot_ws_api"]) as socket:
        counts = (await ask(socket, "account.rateLimits.orders", hmac_signed(sim)))["result"]
        commission = (await ask(socket, "account.commission", hmac_signed(sim, symbol=SYMBOL)))["result"]
    assert [(row["intervalNum"], row["count"]) for row in counts] == [(10, 2), (1, 2)]
    assert commission["standardCommission"]["taker"] == "0.00100000"
    async with sim.session.ws_connect(sim.urls["usdm_ws_api"]) as socket:
        futures_placed = await ask(
            socket, "order.place", hmac_signed(sim, **order, price="49000", quantity="0.010")
        )
    assert [
        (item["interval"], item["intervalNum"], item["limit"]) for item in futures_placed["rateLimits"][1:]
    ] == [
        ("SECOND", 10, 300),
        ("MINUTE", 1, 1200),
    ]
