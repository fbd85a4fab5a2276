"""The Binance-compatible server's REST side over loopback sockets: shapes, auth, errors, limits, faults."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from urllib.parse import urlencode

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.core.clock import SimulatedClock
from hftkit.sim.binance.limits import RateLimitSettings
from hftkit.sim.binance.params import BinanceApiError, Params, verify_signature
from hftkit.sim.binance.wire import Formats
from hftkit.sim.engine.faults import FaultInjector, FaultKind, FaultProfile
from hftkit.testing.binance_simulator import (
    API_KEY,
    API_SECRET,
    OTHER_KEY,
    OTHER_SECRET,
    SYMBOL,
    BinanceSimHarness,
    spot_instrument,
    usdm_instrument,
)
from hftkit.venues.binance.auth import HmacSigner
from hftkit.venues.binance.endpoints import Market

ORDER = "/api/v3/order"


@pytest.fixture
async def sim():
    harness = await BinanceSimHarness().start()
    yield harness
    await harness.stop()


def minute_aligned_clock() -> SimulatedClock:
    now_ns = time.time_ns()
    minute = 60 * 10**9
    return SimulatedClock(start_ns=0, wall_offset_ns=now_ns - now_ns % minute + minute)


async def place(sim: BinanceSimHarness, **params: str) -> tuple[int, dict]:
    status, body, _ = await sim.request(
        "POST", ORDER, {"symbol": SYMBOL, **params}, signed=True, in_body=True
    )
    return status, body


# general and market data ---------------------------------------------------------------------


async def test_ping_time_and_every_response_carries_the_used_weight(sim):
    status, body, headers = await sim.request("GET", "/api/v3/ping")
    assert (status, body, headers["X-MBX-USED-WEIGHT-1M"]) == (200, {}, "1")
    status, body, headers = await sim.request("GET", "/api/v3/time")
    assert status == 200 and abs(body["serverTime"] - time.time() * 1000) < 5000
    assert headers["X-MBX-USED-WEIGHT-1M"] == "2"
    status, body, headers = await sim.request("GET", "/api/v3/exchangeInfo")
    assert headers["X-MBX-USED-WEIGHT-1M"] == "22"


async def test_exchange_info_lists_real_filter_objects_and_rate_limits(sim):
    status, body, _ = await sim.request("GET", "/api/v3/exchangeInfo", {"symbol": SYMBOL})
    assert status == 200
    assert body["rateLimits"][0] == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 6000,
    }
    (info,) = body["symbols"]
    filters = {item["filterType"]: item for item in info["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"] == {
        "filterType": "LOT_SIZE",
        "minQty": "0.00001000",
        "maxQty": "9000.00000000",
        "stepSize": "0.00001000",
    }
    assert filters["NOTIONAL"]["minNotional"] == "5.00000000"
    assert {"MARKET_LOT_SIZE", "MAX_NUM_ORDERS"} <= set(filters)
    assert (info["status"], info["baseAsset"], info["quoteAsset"]) == ("TRADING", "BTC", "USDT")
    status, body, _ = await sim.request("GET", "/api/v3/exchangeInfo", {"symbols": '["BTCUSDT"]'})
    assert [item["symbol"] for item in body["symbols"]] == [SYMBOL]
    status, body, _ = await sim.request("GET", "/api/v3/exchangeInfo", {"symbol": "NOPE"})
    assert (status, body) == (400, {"code": -1121, "msg": "Invalid symbol."})


async def test_depth_is_sorted_and_weighted_by_limit(sim):
    status, body, headers = await sim.request("GET", "/api/v3/depth", {"symbol": SYMBOL, "limit": 3})
    assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "5"
    assert body["lastUpdateId"] == sim.spot.engine.update_id(SYMBOL)
    assert body["bids"] == [
        ["49999.99000000", "0.50000000"],
        ["49999.98000000", "0.50000000"],
        ["49999.97000000", "0.50000000"],
    ]
    assert [level[0] for level in body["asks"]] == ["50000.01000000", "50000.02000000", "50000.03000000"]
    _, _, headers = await sim.request("GET", "/api/v3/depth", {"symbol": SYMBOL, "limit": 1000})
    assert headers["X-MBX-USED-WEIGHT-1M"] == "55"
    status, body, _ = await sim.request("GET", "/api/v3/depth", {})
    assert (status, body["code"]) == (400, -1102)
    assert body["msg"] == "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."


async def test_trades_agg_trades_klines_and_tickers_follow_a_fill(sim):
    status, _ = await place(sim, side="BUY", type="MARKET", quantity="0.01")
    assert status == 200
    _, trades, _ = await sim.request("GET", "/api/v3/trades", {"symbol": SYMBOL})
    assert trades[-1]["price"] == "50000.01000000" and trades[-1]["qty"] == "0.01000000"
    assert trades[-1]["isBuyerMaker"] is False and trades[-1]["quoteQty"] == "500.00010000"
    _, aggregate, _ = await sim.request("GET", "/api/v3/aggTrades", {"symbol": SYMBOL})
    assert set(aggregate[-1]) == {"a", "p", "q", "f", "l", "T", "m", "M"}
    _, klines, _ = await sim.request("GET", "/api/v3/klines", {"symbol": SYMBOL, "interval": "1m"})
    assert len(klines[-1]) == 12 and klines[-1][4] == "50000.01000000"
    status, body, _ = await sim.request("GET", "/api/v3/klines", {"symbol": SYMBOL, "interval": "7m"})
    assert (status, body) == (400, {"code": -1120, "msg": "Invalid interval."})
    _, ticker, _ = await sim.request("GET", "/api/v3/ticker/24hr", {"symbol": SYMBOL})
    assert ticker["lastPrice"] == "50000.01000000" and ticker["count"] == 1
    assert ticker["bidPrice"] == "49999.99000000" and ticker["askPrice"] == "50000.01000000"
    _, tickers, _ = await sim.request("GET", "/api/v3/ticker/24hr")
    assert isinstance(tickers, list) and tickers[0]["symbol"] == SYMBOL
    _, price, _ = await sim.request("GET", "/api/v3/ticker/price", {"symbol": SYMBOL})
    assert price == {"symbol": SYMBOL, "price": "50000.01000000"}
    _, book, _ = await sim.request("GET", "/api/v3/ticker/bookTicker", {"symbol": SYMBOL})
    assert book == {
        "symbol": SYMBOL,
        "bidPrice": "49999.99000000",
        "bidQty": "0.50000000",
        "askPrice": "50000.01000000",
        "askQty": "0.49000000",
    }
    _, average, _ = await sim.request("GET", "/api/v3/avgPrice", {"symbol": SYMBOL})
    assert average["price"] == "50000.01000000"


# authentication -------------------------------------------------------------------------------


async def test_signed_request_without_or_with_unknown_key_is_refused(sim):
    status, body, _ = await sim.request("GET", "/api/v3/account", signed=True, key=None)
    assert (status, body) == (401, {"code": -2014, "msg": "API-key format invalid."})
    status, body, _ = await sim.request("GET", "/api/v3/account", signed=True, key="unknownkey")
    assert (status, body) == (401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})


async def test_bad_signature_and_stale_or_future_timestamps_get_exact_errors(sim):
    status, body, _ = await sim.request("GET", "/api/v3/account", signed=True, secret="wrong")
    assert (status, body) == (400, {"code": -1022, "msg": "Signature for this request is not valid."})
    stale = {"timestamp": sim.server_ms() - 10_000}
    status, body, _ = await sim.request("GET", "/api/v3/account", stale, signed=True)
    assert body == {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
    status, body, _ = await sim.request(
        "GET", "/api/v3/account", {**stale, "recvWindow": 20_000}, signed=True
    )
    assert status == 200
    ahead = {"timestamp": sim.server_ms() + 5_000}
    status, body, _ = await sim.request("GET", "/api/v3/account", ahead, signed=True)
    assert body == {"code": -1021, "msg": "Timestamp for this request was 1000ms ahead of the server's time."}
    status, body, _ = await sim.request("GET", "/api/v3/account", {"recvWindow": 70_000}, signed=True)
    assert body["code"] == -1131
    query = urlencode({"recvWindow": 5000})
    signature = HmacSigner(API_SECRET).sign_rest(query)
    status, body, _ = await sim.request("GET", f"/api/v3/account?{query}&signature={signature}", key=None)
    assert (status, body["code"]) == (401, -2014)
    status, body, _ = await sim.request("GET", f"/api/v3/account?{query}&signature={signature}")
    assert body == {
        "code": -1102,
        "msg": "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
    }
    status, body, _ = await sim.request("GET", "/api/v3/account", {"timestamp": sim.server_ms()}, key=API_KEY)
    assert body == {
        "code": -1102,
        "msg": "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
    }


async def test_signatures_over_query_body_or_both_are_accepted(sim):
    """ccxt signs the body, binance-connector the query, some clients split params across both."""
    signer = HmacSigner(API_SECRET)
    base = {"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001"}
    for index, placement in enumerate(("query", "body", "split")):
        params = {**base, "price": f"4900{index}", "timestamp": sim.server_ms()}
        headers = {"X-MBX-APIKEY": API_KEY, "Content-Type": "application/x-www-form-urlencoded"}
        if placement == "query":
            query = urlencode(params)
            url, data = f"{sim.base}{ORDER}?{query}&signature={signer.sign_rest(query)}", None
        elif placement == "body":
            body = urlencode(params)
            url, data = f"{sim.base}{ORDER}", f"{body}&signature={signer.sign_rest('', body)}"
        else:
            query = urlencode({"symbol": SYMBOL, "side": "BUY"})
            body = urlencode({key: value for key, value in params.items() if key not in ("symbol", "side")})
            url = f"{sim.base}{ORDER}?{query}"
            data = f"{body}&signature={signer.sign_rest(query, body)}"
        async with sim.session.post(url, data=data, headers=headers) as response:
            assert response.status == 200, (placement, await response.text())
            assert (await response.json())["status"] == "NEW"


async def test_signature_over_unencoded_values_is_accepted_like_binance(sim):
    """python-binance signs raw values and then form-encodes them: the decoded fallback applies."""
    params = {
        "newClientOrderId": "my:order/1",
        "price": "49000",
        "quantity": "0.001",
        "side": "BUY",
        "symbol": SYMBOL,
        "timeInForce": "GTC",
        "timestamp": sim.server_ms(),
        "type": "LIMIT",
    }
    raw = "&".join(f"{key}={value}" for key, value in params.items())
    signature = HmacSigner(API_SECRET).sign(raw.encode())
    body = urlencode({**params, "signature": signature})
    headers = {"X-MBX-APIKEY": API_KEY, "Content-Type": "application/x-www-form-urlencoded"}
    async with sim.session.post(f"{sim.base}{ORDER}", data=body, headers=headers) as response:
        answer = await response.json()
    assert response.status == 200, answer
    assert answer["clientOrderId"] == "my:order/1"


async def test_query_value_wins_over_body_and_duplicates_are_refused(sim):
    signer = HmacSigner(API_SECRET)
    query = urlencode({"symbol": SYMBOL, "side": "SELL"})
    body = urlencode(
        {
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.001",
            "price": "60000",
            "timestamp": sim.server_ms(),
        }
    )
    headers = {"X-MBX-APIKEY": API_KEY, "Content-Type": "application/x-www-form-urlencoded"}
    async with sim.session.post(
        f"{sim.base}{ORDER}?{query}",
        data=f"{body}&signature={signer.sign_rest(query, body)}",
        headers=headers,
    ) as response:
        assert (await response.json())["side"] == "SELL"
    status, body_json, _ = await sim.request("GET", "/api/v3/depth?symbol=BTCUSDT&symbol=ETHUSDT")
    assert (status, body_json) == (400, {"code": -1101, "msg": "Duplicate values for a parameter detected."})


# parameter validation and filters -------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        (
            {"type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001", "price": "49000"},
            -1102,
            "Mandatory parameter 'side' was not sent, was empty/null, or malformed.",
        ),
        ({"side": "HOLD", "type": "LIMIT"}, -1117, "Invalid side."),
        ({"side": "BUY", "type": "BEST"}, -1116, "Invalid orderType."),
        (
            {"side": "BUY", "type": "LIMIT", "quantity": "0.001", "price": "49000"},
            -1102,
            "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
        ),
        (
            {"side": "BUY", "type": "LIMIT", "timeInForce": "GTD", "quantity": "0.001", "price": "49000"},
            -1115,
            "Invalid timeInForce.",
        ),
        (
            {"side": "BUY", "type": "MARKET", "timeInForce": "GTC", "quantity": "0.001"},
            -1106,
            "Parameter 'timeInForce' sent when not required.",
        ),
        (
            {"side": "BUY", "type": "MARKET", "price": "1", "quantity": "0.001"},
            -1106,
            "Parameter 'price' sent when not required.",
        ),
        (
            {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0,001", "price": "49000"},
            -1100,
            "Illegal characters found in parameter 'quantity'; legal range is "
            "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
        ),
        (
            {
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": "0.001",
                "price": "49000.000000001",
            },
            -1111,
            "Parameter 'price' has too much precision.",
        ),
        (
            {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001", "price": "49000.005"},
            -1013,
            "Filter failure: PRICE_FILTER",
        ),
        (
            {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.000015", "price": "49000"},
            -1013,
            "Filter failure: LOT_SIZE",
        ),
        (
            {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.00001", "price": "49000"},
            -1013,
            "Filter failure: NOTIONAL",
        ),
        (
            {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "9001", "price": "1"},
            -1013,
            "Filter failure: LOT_SIZE",
        ),
        (
            {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "10", "price": "49000"},
            -2010,
            "Account has insufficient balance for requested action.",
        ),
        (
            {"side": "BUY", "type": "LIMIT_MAKER", "quantity": "0.001", "price": "50000.01"},
            -2010,
            "Order would immediately match and take.",
        ),
        (
            {"side": "BUY", "type": "MARKET"},
            -1102,
            "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
        ),
        (  # conditional orders are served (test_binance_stops.py); trailing stops are not
            {"side": "BUY", "type": "STOP_LOSS", "quantity": "0.001", "trailingDelta": "100"},
            -1106,
            "Parameter 'trailingDelta' sent when not required.",
        ),
    ],
)
async def test_bad_orders_get_binance_codes_and_messages(sim, params, code, message):
    status, body = await place(sim, **params)
    assert (status, body) == (400, {"code": code, "msg": message})
    assert sim.spot.engine.open_orders(API_KEY) == []
    assert sim.spot.engine.audit() == []


async def test_unknown_symbol_and_duplicate_client_order_id(sim):
    status, body, _ = await sim.request(
        "POST", ORDER, {"symbol": "ETHBTC", "side": "BUY", "type": "MARKET", "quantity": "1"}, signed=True
    )
    assert (status, body) == (400, {"code": -1121, "msg": "Invalid symbol."})
    limit = {
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.001",
        "price": "49000",
        "newClientOrderId": "dup-1",
    }
    assert (await place(sim, **limit))[0] == 200
    status, body = await place(sim, **limit)
    assert body == {"code": -2010, "msg": "Duplicate order sent."}


async def test_max_num_orders_filter():
    sim = await BinanceSimHarness(server_options={"max_num_orders": 2}).start()
    try:
        for price in ("49000", "49001"):
            assert (
                await place(sim, side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.001", price=price)
            )[0] == 200
        _status, body = await place(
            sim, side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.001", price="49002"
        )
        assert body == {"code": -1013, "msg": "Filter failure: MAX_NUM_ORDERS"}
    finally:
        await sim.stop()


# order lifecycle -------------------------------------------------------------------------------


async def test_new_order_response_levels_ack_result_full(sim):
    common = {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001", "price": "49000"}
    _, ack = await place(sim, **common, newOrderRespType="ACK")
    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    _, result = await place(sim, **common, newOrderRespType="RESULT")
    assert result["status"] == "NEW" and result["price"] == "49000.00000000" and "fills" not in result
    assert result["origQty"] == "0.00100000" and result["executedQty"] == "0.00000000"
    assert result["workingTime"] == result["transactTime"]
    _, full = await place(sim, side="SELL", type="LIMIT", timeInForce="IOC", quantity="0.6", price="49999.98")
    assert full["status"] == "FILLED" and full["executedQty"] == "0.60000000"
    assert [(fill["price"], fill["qty"]) for fill in full["fills"]] == [
        ("49999.99000000", "0.50000000"),
        ("49999.98000000", "0.10000000"),
    ]
    assert full["fills"][0]["commissionAsset"] == "USDT"
    assert full["fills"][0]["commission"] == "24.99999500"  # 0.1 % of 24 999.995 USDT
    assert full["cummulativeQuoteQty"] == str(Decimal("24999.995") + Decimal("4999.998")).ljust(14, "0")


async def test_ioc_remainder_expires_and_market_order_sweeps(sim):
    _, ioc = await place(sim, side="BUY", type="LIMIT", timeInForce="IOC", quantity="1", price="50000.01")
    assert ioc["status"] == "EXPIRED" and ioc["executedQty"] == "0.50000000"
    _, fok = await place(sim, side="BUY", type="LIMIT", timeInForce="FOK", quantity="1.2", price="50000.03")
    assert fok["status"] == "EXPIRED" and fok["executedQty"] == "0.00000000" and fok["fills"] == []
    _, market = await place(sim, side="BUY", type="MARKET", quoteOrderQty="100")
    assert market["status"] == "FILLED"
    assert Decimal(market["cummulativeQuoteQty"]) <= 100
    assert Decimal(market["executedQty"]) == Decimal("0.00199")


async def test_query_cancel_open_all_orders_and_my_trades(sim):
    _, first = await place(
        sim,
        side="BUY",
        type="LIMIT",
        timeInForce="GTC",
        quantity="0.001",
        price="49000",
        newClientOrderId="first",
    )
    _, second = await place(sim, side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.001", price="49001")
    status, order, headers = await sim.request(
        "GET", ORDER, {"symbol": SYMBOL, "orderId": first["orderId"]}, signed=True
    )
    assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"]
    assert order["status"] == "NEW" and order["isWorking"] is True and order["clientOrderId"] == "first"
    assert set(order) >= {"stopPrice", "icebergQty", "time", "updateTime", "origQuoteOrderQty"}
    _, by_client, _ = await sim.request(
        "GET", ORDER, {"symbol": SYMBOL, "origClientOrderId": "first"}, signed=True
    )
    assert by_client["orderId"] == first["orderId"]
    _, open_orders, _ = await sim.request("GET", "/api/v3/openOrders", {"symbol": SYMBOL}, signed=True)
    assert [row["orderId"] for row in open_orders] == [first["orderId"], second["orderId"]]
    status, canceled, _ = await sim.request(
        "DELETE",
        ORDER,
        {"symbol": SYMBOL, "orderId": first["orderId"], "newClientOrderId": "cancel-1"},
        signed=True,
    )
    assert status == 200 and canceled["status"] == "CANCELED"
    assert (canceled["origClientOrderId"], canceled["clientOrderId"]) == ("first", "cancel-1")
    status, body, _ = await sim.request(
        "DELETE", ORDER, {"symbol": SYMBOL, "orderId": first["orderId"]}, signed=True
    )
    assert (status, body) == (400, {"code": -2011, "msg": "Unknown order sent."})
    status, body, _ = await sim.request("DELETE", ORDER, {"symbol": SYMBOL}, signed=True)
    assert body == {
        "code": -1102,
        "msg": "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
    }
    status, body, _ = await sim.request("GET", ORDER, {"symbol": SYMBOL, "orderId": 999_999}, signed=True)
    assert (status, body) == (400, {"code": -2013, "msg": "Order does not exist."})
    _, closed, _ = await sim.request(
        "GET", ORDER, {"symbol": SYMBOL, "orderId": first["orderId"]}, signed=True
    )
    assert closed["status"] == "CANCELED"
    status, canceled_all, _ = await sim.request(
        "DELETE", "/api/v3/openOrders", {"symbol": SYMBOL}, signed=True
    )
    assert [row["orderId"] for row in canceled_all] == [second["orderId"]]
    status, body, _ = await sim.request("DELETE", "/api/v3/openOrders", {"symbol": SYMBOL}, signed=True)
    assert body == {"code": -2011, "msg": "Unknown order sent."}
    await place(sim, side="SELL", type="MARKET", quantity="0.2")
    _, history, _ = await sim.request("GET", "/api/v3/allOrders", {"symbol": SYMBOL}, signed=True)
    assert [row["status"] for row in history] == ["CANCELED", "CANCELED", "FILLED"]
    _, mine, _ = await sim.request("GET", "/api/v3/myTrades", {"symbol": SYMBOL}, signed=True)
    assert [(row["price"], row["qty"], row["isBuyer"], row["isMaker"]) for row in mine] == [
        ("49999.99000000", "0.20000000", False, False)
    ]
    # another account sees none of it
    _, other, _ = await sim.request(
        "GET",
        "/api/v3/allOrders",
        {"symbol": SYMBOL},
        signed=True,
        key=OTHER_KEY,
        secret=OTHER_SECRET,
    )
    assert other == []


async def test_account_balances_move_with_orders_and_fills(sim):
    _, before, _ = await sim.request("GET", "/api/v3/account", signed=True)
    assert before["accountType"] == "SPOT" and before["commissionRates"]["taker"] == "0.00100000"
    balances = {row["asset"]: row for row in before["balances"]}
    assert balances["USDT"] == {"asset": "USDT", "free": "100000.00000000", "locked": "0.00000000"}
    await place(sim, side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01", price="40000")
    await place(sim, side="BUY", type="MARKET", quantity="0.1")
    _, after, _ = await sim.request("GET", "/api/v3/account", signed=True)
    balances = {row["asset"]: row for row in after["balances"]}
    assert balances["USDT"]["locked"] == "400.00000000"
    assert balances["BTC"]["free"] == "2.09990000"  # 0.1 bought, 0.1 % fee in BTC
    assert Decimal(balances["USDT"]["free"]) == Decimal("100000") - Decimal("400") - Decimal("5000.001")


async def test_order_test_endpoint_validates_without_placing(sim):
    status, body, _ = await sim.request(
        "POST",
        "/api/v3/order/test",
        {
            "symbol": SYMBOL,
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.001",
            "price": "49000",
        },
        signed=True,
    )
    assert (status, body) == (200, {})
    status, body, _ = await sim.request(
        "POST",
        "/api/v3/order/test",
        {
            "symbol": SYMBOL,
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.00001",
            "price": "49000",
        },
        signed=True,
    )
    assert body == {"code": -1013, "msg": "Filter failure: NOTIONAL"}
    assert sim.spot.engine.open_orders(API_KEY) == []


# rate limits ---------------------------------------------------------------------------------------


async def test_weight_over_the_limit_answers_429_then_418_with_escalating_bans():
    clock = minute_aligned_clock()
    limits = RateLimitSettings(request_weight=25, ban_initial_s=120, order_windows=((10, 3), (86_400, 100)))
    sim = await BinanceSimHarness(clock=clock, spot_limits=limits).start()
    try:
        _, _, headers = await sim.request("GET", "/api/v3/exchangeInfo")
        assert headers["X-MBX-USED-WEIGHT-1M"] == "20"
        status, body, headers = await sim.request("GET", "/api/v3/depth", {"symbol": SYMBOL})
        assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "25"
        status, body, headers = await sim.request("GET", "/api/v3/ping")
        assert status == 429 and body["code"] == -1003
        assert body["msg"].startswith(
            "Too much request weight used; current limit is 25 request weight per 1 MINUTE."
        )
        assert headers["Retry-After"] == "60"
        clock.advance_seconds(1)
        status, body, headers = await sim.request("GET", "/api/v3/ping")
        assert (
            status == 418
            and body["code"] == -1003
            and body["msg"].startswith("Way too much request weight used; IP banned until")
        )
        assert headers["Retry-After"] == "120"
        clock.advance_seconds(60)
        status, _, headers = await sim.request("GET", "/api/v3/ping")
        assert status == 418 and headers["Retry-After"] == "60"
        clock.advance_seconds(61)  # ban over, new window
        status, _, headers = await sim.request("GET", "/api/v3/exchangeInfo")
        assert status == 200
        await sim.request("GET", "/api/v3/exchangeInfo")  # 40 > 25: 429 again
        status, _, headers = await sim.request("GET", "/api/v3/ping")
        assert status == 418 and headers["Retry-After"] == "240"  # second ban: twice as long
        assert sim.server.state(Market.SPOT).weights.banned == 3  # three 418 answers, two bans
        figures = sim.server.snapshot()
        assert figures["spot"]["ban_answers"] == 3 and figures["spot"]["weight_rejections"] == 2
    finally:
        await sim.stop()


async def test_order_counts_are_reported_and_limited():
    clock = minute_aligned_clock()
    limits = RateLimitSettings(order_windows=((10, 2), (86_400, 100)))
    sim = await BinanceSimHarness(clock=clock, spot_limits=limits).start()
    try:
        order = {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001", "price": "49000"}
        for expected in ("1", "2"):
            status, body, headers = await sim.request("POST", ORDER, {"symbol": SYMBOL, **order}, signed=True)
            assert status == 200
            assert (
                headers["X-MBX-ORDER-COUNT-10S"] == expected and headers["X-MBX-ORDER-COUNT-1D"] == expected
            )
        status, body, headers = await sim.request("POST", ORDER, {"symbol": SYMBOL, **order}, signed=True)
        assert status == 429 and body == {
            "code": -1015,
            "msg": "Too many new orders; current limit is 2 orders per 10 SECOND.",
        }
        assert int(headers["Retry-After"]) <= 10
        _, _, headers = await sim.request("GET", "/api/v3/openOrders", {"symbol": SYMBOL}, signed=True)
        assert "X-MBX-ORDER-COUNT-10S" not in headers
        clock.advance_seconds(10)
        status, _, headers = await sim.request("POST", ORDER, {"symbol": SYMBOL, **order}, signed=True)
        assert (
            status == 200
            and headers["X-MBX-ORDER-COUNT-10S"] == "1"
            and headers["X-MBX-ORDER-COUNT-1D"] == "3"
        )
    finally:
        await sim.stop()


# faults ------------------------------------------------------------------------------------------------


async def test_5xx_on_new_order_places_it_and_reports_unknown_status():
    faults = FaultInjector(FaultProfile(http_error_probability=1.0), seed=3)
    sim = await BinanceSimHarness(faults_spot=faults).start()
    try:
        status, body = await place(
            sim,
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.001",
            price="49000",
            newClientOrderId="lost-1",
        )
        assert status in (500, 502, 503)
        assert body == {
            "code": -1007,
            "msg": "Timeout waiting for response from backend server. Send status unknown; "
            "execution status unknown.",
        }
        faults.set_profile(FaultProfile())
        status, order, _ = await sim.request(
            "GET", ORDER, {"symbol": SYMBOL, "origClientOrderId": "lost-1"}, signed=True
        )
        assert status == 200 and order["status"] == "NEW"
        assert faults.counts[FaultKind.HTTP_ERROR] == 1
        faults.set_profile(FaultProfile(http_error_probability=1.0))
        status, body, _ = await sim.request("GET", "/api/v3/ping")
        assert status >= 500 and body["code"] == -1001
    finally:
        await sim.stop()


async def test_request_timeout_drops_the_connection_but_the_order_exists():
    faults = FaultInjector(FaultProfile(request_timeout_probability=1.0, request_timeout_s=0.05))
    sim = await BinanceSimHarness(faults_spot=faults).start()
    try:
        with pytest.raises(aiohttp.ClientError):
            await place(
                sim,
                side="BUY",
                type="LIMIT",
                timeInForce="GTC",
                quantity="0.001",
                price="49000",
                newClientOrderId="t-1",
            )
        faults.set_profile(FaultProfile())
        _, order, _ = await sim.request(
            "GET", ORDER, {"symbol": SYMBOL, "origClientOrderId": "t-1"}, signed=True
        )
        assert order["status"] == "NEW"
        assert faults.counts[FaultKind.REQUEST_TIMEOUT] == 1
    finally:
        await sim.stop()


async def test_rate_limit_storm_and_latency_and_delayed_ack():
    faults = FaultInjector(FaultProfile(rate_limit_probability=1.0, rate_limit_storm_s=3))
    sim = await BinanceSimHarness(faults_spot=faults).start()
    try:
        status, body, headers = await sim.request("GET", "/api/v3/ping")
        assert status == 429 and body["code"] == -1003 and 1 <= int(headers["Retry-After"]) <= 3
        faults.set_profile(FaultProfile(request_latency_s=0.01, ack_delay_s=0.01, ack_delay_probability=1.0))
        status, body = await place(sim, side="BUY", type="MARKET", quantity="0.001")
        assert status == 200 and body["status"] == "FILLED"
        assert faults.counts[FaultKind.DELAYED_ACK] == 1 and faults.counts[FaultKind.REQUEST_LATENCY] >= 1
    finally:
        await sim.stop()


async def test_unexpected_exception_becomes_a_minus_1000_json_answer(sim, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(sim.spot, "recent_trades", broken)
    status, body, _ = await sim.request("GET", "/api/v3/trades", {"symbol": SYMBOL})
    assert (status, body) == (
        500,
        {"code": -1000, "msg": "An unknown error occurred while processing the request."},
    )
    assert sim.server.internal_errors == 1
    status, body, _ = await sim.request("GET", "/api/v3/ping")
    assert (status, body) == (200, {})


async def test_unknown_path_is_404_and_garbage_params_never_crash(sim):
    status, _, _ = await sim.request("GET", "/api/v3/nothing")
    assert status == 404
    for raw in (
        "symbol=%ZZ&limit=abc",
        "limit=-5&symbol=BTCUSDT",
        "symbol=BTCUSDT&limit=99999999999999999999999",
    ):
        status, body, _ = await sim.request("GET", f"/api/v3/depth?{raw}")
        assert status in (200, 400) and isinstance(body, dict)


# USD-M ------------------------------------------------------------------------------------------------


async def fplace(sim: BinanceSimHarness, **params: str) -> tuple[int, dict]:
    status, body, _headers = await sim.request(
        "POST", "/fapi/v1/order", {"symbol": SYMBOL, **params}, signed=True, in_body=True
    )
    return status, body


async def test_usdm_exchange_info_depth_and_tickers(sim):
    status, info, headers = await sim.request("GET", "/fapi/v1/exchangeInfo")
    assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "1"
    (symbol,) = info["symbols"]
    assert (symbol["contractType"], symbol["pricePrecision"], symbol["quantityPrecision"]) == (
        "PERPETUAL",
        1,
        3,
    )
    filters = {item["filterType"]: item for item in symbol["filters"]}
    assert filters["MIN_NOTIONAL"] == {"filterType": "MIN_NOTIONAL", "notional": "100"}
    assert "GTX" in symbol["timeInForce"]
    _, depth, _ = await sim.request("GET", "/fapi/v1/depth", {"symbol": SYMBOL, "limit": 5})
    assert {"lastUpdateId", "E", "T", "bids", "asks"} == set(depth)
    assert depth["bids"][0] == ["49999.9", "0.500"]
    _, premium, _ = await sim.request("GET", "/fapi/v1/premiumIndex", {"symbol": SYMBOL})
    assert premium["markPrice"] == "50000.0" and premium["nextFundingTime"] > premium["time"]
    _, book, _ = await sim.request("GET", "/fapi/v1/ticker/bookTicker", {"symbol": SYMBOL})
    assert book["askPrice"] == "50000.1" and "time" in book
    _, price, _ = await sim.request("GET", "/fapi/v2/ticker/price", {"symbol": SYMBOL})
    assert price["symbol"] == SYMBOL


async def test_usdm_orders_positions_and_balances(sim):
    status, ack = await fplace(
        sim, side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01", price="49000"
    )
    assert (
        status == 200
        and ack["status"] == "NEW"
        and ack["price"] == "49000.0"
        and ack["positionSide"] == "BOTH"
    )
    status, filled = await fplace(sim, side="BUY", type="MARKET", quantity="0.01", newOrderRespType="RESULT")
    assert (
        filled["status"] == "FILLED" and filled["avgPrice"] == "50000.1" and filled["cumQuote"] == "500.0010"
    )
    status, body = await fplace(
        sim, side="BUY", type="LIMIT", timeInForce="GTX", quantity="0.01", price="50000.1"
    )
    assert body["code"] == -5022
    status, body = await fplace(
        sim, side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.001", price="49000"
    )
    assert body == {
        "code": -4164,
        "msg": "Order's notional must be no smaller than 100 (unless you choose reduce only).",
    }
    status, body = await fplace(sim, side="BUY", type="MARKET", quantity="0.01", reduceOnly="true")
    assert body == {"code": -2022, "msg": "ReduceOnly Order is rejected."}
    status, body = await fplace(
        sim, side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01", price="49000.05"
    )
    assert body == {"code": -1111, "msg": "Precision is over the maximum defined for this asset."}
    status, reduce = await fplace(
        sim, side="SELL", type="MARKET", quantity="0.004", reduceOnly="true", newOrderRespType="RESULT"
    )
    assert reduce["status"] == "FILLED" and reduce["reduceOnly"] is True
    _, risk, _ = await sim.request("GET", "/fapi/v2/positionRisk", {"symbol": SYMBOL}, signed=True)
    assert (
        risk[0]["positionAmt"] == "0.006"
        and risk[0]["entryPrice"] == "50000.1"
        and risk[0]["leverage"] == "20"
    )
    _, risk3, _ = await sim.request("GET", "/fapi/v3/positionRisk", signed=True)
    assert [row["positionAmt"] for row in risk3] == ["0.006"]
    _, balance, _ = await sim.request("GET", "/fapi/v2/balance", signed=True)
    usdt = next(row for row in balance if row["asset"] == "USDT")
    fees = Decimal("0.500001") + Decimal("0.1999996")  # 0.1 % taker, both fills
    realized = (Decimal("49999.9") - Decimal("50000.1")) * Decimal("0.004")
    assert Decimal(usdt["balance"]) == Decimal("100000") - fees + realized
    _, account, _ = await sim.request("GET", "/fapi/v3/account", signed=True)
    assert account["positions"][0]["positionAmt"] == "0.006" and account["assets"][0]["asset"] == "USDT"
    _, open_orders, _ = await sim.request("GET", "/fapi/v1/openOrders", {"symbol": SYMBOL}, signed=True)
    assert [row["orderId"] for row in open_orders] == [ack["orderId"]] and "time" in open_orders[0]
    status, canceled, _ = await sim.request(
        "DELETE", "/fapi/v1/order", {"symbol": SYMBOL, "orderId": ack["orderId"]}, signed=True
    )
    assert canceled["status"] == "CANCELED"
    status, body, _ = await sim.request("DELETE", "/fapi/v1/allOpenOrders", {"symbol": SYMBOL}, signed=True)
    assert body == {"code": 200, "msg": "The operation of cancel all open order is done."}
    _, trades, _ = await sim.request("GET", "/fapi/v1/userTrades", {"symbol": SYMBOL}, signed=True)
    assert [(row["side"], row["realizedPnl"]) for row in trades] == [("BUY", "0.0000"), ("SELL", "-0.0008")]


async def test_listen_keys_create_keepalive_close(sim):
    status, body, _ = await sim.request("POST", "/fapi/v1/listenKey")
    key = body["listenKey"]
    assert status == 200 and len(key) == 64
    _, again, _ = await sim.request("POST", "/fapi/v1/listenKey")
    assert again["listenKey"] == key
    status, body, _ = await sim.request("PUT", "/fapi/v1/listenKey")
    assert (status, body) == (200, {"listenKey": key})
    status, body, _ = await sim.request("DELETE", "/fapi/v1/listenKey")
    assert (status, body) == (200, {})
    status, body, _ = await sim.request("PUT", "/fapi/v1/listenKey")
    assert body == {"code": -1125, "msg": "This listenKey does not exist."}
    status, body, _ = await sim.request("POST", "/api/v3/userDataStream", key=None)
    assert status == 401
    _, spot, _ = await sim.request("POST", "/api/v3/userDataStream")
    status, body, _ = await sim.request("PUT", "/api/v3/userDataStream", {"listenKey": spot["listenKey"]})
    assert (status, body) == (200, {})


async def test_sapi_calls_ccxt_makes_on_load_markets(sim):
    status, coins, _ = await sim.request("GET", "/sapi/v1/capital/config/getall", signed=True)
    assert status == 200 and {coin["coin"] for coin in coins} == {"BTC", "USDT"}
    btc = next(coin for coin in coins if coin["coin"] == "BTC")
    assert btc["free"] == "2.00000000" and btc["networkList"][0]["withdrawIntegerMultiple"] == "0.00000001"
    status, pairs, _ = await sim.request("GET", "/sapi/v1/margin/allPairs", signed=True)
    assert (status, pairs) == (200, [])
    status, info, _ = await sim.request("GET", "/dapi/v1/exchangeInfo")
    assert status == 200 and info["symbols"] == []


async def test_requests_from_another_task_interleave_safely(sim):
    order = {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001"}
    results = await asyncio.gather(*(place(sim, **order, price=str(48000 + index)) for index in range(20)))
    assert all(status == 200 for status, _ in results)
    assert len(sim.spot.engine.open_orders(API_KEY)) == 20
    assert sim.spot.engine.audit() == []


# laws, sans-I/O ------------------------------------------------------------------------------------

param_values = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
param_names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10
)


@settings(max_examples=150, deadline=None)
@given(params=st.dictionaries(param_names, param_values, max_size=6), split=st.integers(0, 6))
def test_signature_over_any_params_split_between_query_and_body_verifies(params, split):
    params = {name: value for name, value in params.items() if name != "signature"}
    items = list(params.items())
    query, body = urlencode(items[:split]), urlencode(items[split:])
    signer = HmacSigner(API_SECRET)
    signature = signer.sign_rest(query, body)
    if body:
        verify_signature(API_SECRET, query, f"{body}&signature={signature}")
    else:
        verify_signature(
            API_SECRET, f"{query}&signature={signature}" if query else f"signature={signature}", ""
        )
    raw = "&".join(f"{name}={value}" for name, value in items)  # python-binance signs unencoded values
    verify_signature(API_SECRET, "", f"{urlencode(items)}&signature={signer.sign(raw.encode())}")
    with pytest.raises(BinanceApiError) as refused:
        verify_signature(OTHER_SECRET, query, f"{body}&signature={signature}")
    assert refused.value.code == -1022


@settings(max_examples=200, deadline=None)
@given(ticks=st.integers(1, 10**10), lots=st.integers(1, 10**9), spot=st.booleans())
def test_every_price_and_quantity_the_server_prints_parses_back_to_the_same_steps(ticks, lots, spot):
    instrument = spot_instrument() if spot else usdm_instrument()
    formats = Formats(instrument)
    params = Params({"price": formats.price(ticks), "quantity": formats.quantity(lots)})
    price_scale = formats.price_scale if spot else formats.price_precision
    quantity_scale = formats.quantity_scale if spot else formats.quantity_precision
    assert params.decimal_steps("price", instrument.ticks, price_scale, "PRICE_FILTER") == ticks
    assert params.decimal_steps("quantity", instrument.lots, quantity_scale, "LOT_SIZE") == lots


async def test_historical_trades_need_an_api_key_but_no_signature(sim):
    status, body, _ = await sim.request("GET", "/api/v3/historicalTrades", {"symbol": SYMBOL}, key=None)
    assert (status, body["code"]) == (401, -2014)
    status, body, _ = await sim.request("GET", "/api/v3/historicalTrades", {"symbol": SYMBOL})
    assert (status, body) == (200, [])
    status, body, _ = await sim.request("GET", "/api/v3/depth", {"symbol": "btcusdt"})
    assert body == {
        "code": -1100,
        "msg": "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'.",
    }
