"""USD-M conditional orders on the algo-order endpoints: placement checks, triggers on last and
mark price, trailing stops, the placed order, queries, cancels and ALGO_UPDATE events."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from hftkit.core.types import Side
from hftkit.testing.binance_simulator import API_KEY, API_SECRET, SYMBOL, BinanceSimHarness, seed_book
from hftkit.venues.binance.auth import HmacSigner

TIMEOUT = 3.0


@pytest.fixture
async def sim():
    harness = await BinanceSimHarness().start()
    # 40 USDT of book each side (400 ticks), so trades around the triggers leave liquidity behind
    seed_book(harness.usdm, SYMBOL, harness.usdm.instruments[SYMBOL].price_to_ticks("50000"), levels=400)
    yield harness
    await harness.stop()


async def call(sim: BinanceSimHarness, method: str, path: str, **params: Any) -> tuple[int, Any]:
    status, body, _ = await sim.request(
        method, path, {"symbol": SYMBOL, **params}, signed=True, in_body=method != "GET"
    )
    return status, body


async def new_algo(sim: BinanceSimHarness, **params: Any) -> dict:
    status, body = await call(sim, "POST", "/fapi/v1/algoOrder", algoType="CONDITIONAL", **params)
    assert status == 200, body
    return body


def ticks(sim: BinanceSimHarness, price: str) -> int:
    return sim.usdm.instruments[SYMBOL].price_to_ticks(price)


def lots(sim: BinanceSimHarness, quantity: str) -> int:
    return sim.usdm.instruments[SYMBOL].quantity_to_lots(quantity)


async def market_trade(sim: BinanceSimHarness, price: str, aggressor: Side = Side.SELL) -> None:
    """Someone else trades at ``price`` (the last price moves); let the trigger check run."""
    sim.usdm.apply_market_trade(SYMBOL, ticks(sim, price), lots(sim, "0.001"), aggressor)
    await asyncio.sleep(0.01)


async def test_stop_market_closes_a_long_when_the_last_price_falls(sim):
    await call(sim, "POST", "/fapi/v1/order", side="BUY", type="MARKET", quantity="0.010")
    stop = await new_algo(
        sim, side="SELL", type="STOP_MARKET", triggerPrice="49990", quantity="0.010", reduceOnly="true"
    )
    assert (stop["algoStatus"], stop["orderType"], stop["triggerPrice"], stop["workingType"]) == (
        "NEW",
        "STOP_MARKET",
        "49990.0",
        "CONTRACT_PRICE",
    )
    await market_trade(sim, "49995")
    _, still = await call(sim, "GET", "/fapi/v1/algoOrder", algoId=stop["algoId"])
    assert still["algoStatus"] == "NEW" and still["actualOrderId"] == ""
    await market_trade(sim, "49990")
    _, done = await call(sim, "GET", "/fapi/v1/algoOrder", algoId=stop["algoId"])
    assert done["algoStatus"] == "FINISHED" and done["actualOrderId"]
    assert (done["actualType"], done["actualQty"]) == ("MARKET", "0.010")
    position = sim.usdm.accounts.get(API_KEY).positions.get(SYMBOL)
    assert position is None or position.quantity == 0
    _, placed = await call(sim, "GET", "/fapi/v1/order", orderId=done["actualOrderId"])
    assert (placed["status"], placed["side"], placed["reduceOnly"]) == ("FILLED", "SELL", True)


async def test_an_order_that_would_trigger_at_once_is_refused(sim):
    await market_trade(sim, "50000")
    cases = [
        {"side": "BUY", "type": "STOP_MARKET", "triggerPrice": "49999", "quantity": "0.01"},
        {"side": "SELL", "type": "STOP_MARKET", "triggerPrice": "50001", "quantity": "0.01"},
        {"side": "BUY", "type": "TAKE_PROFIT_MARKET", "triggerPrice": "50001", "quantity": "0.01"},
        {
            "side": "SELL",
            "type": "TAKE_PROFIT",
            "triggerPrice": "49999",
            "price": "49999",
            "quantity": "0.01",
        },
        {
            "side": "BUY",
            "type": "TRAILING_STOP_MARKET",
            "activatePrice": "50010",
            "callbackRate": "1",
            "quantity": "0.01",
        },
    ]
    for params in cases:
        status, body = await call(sim, "POST", "/fapi/v1/algoOrder", algoType="CONDITIONAL", **params)
        assert (status, body) == (400, {"code": -2021, "msg": "Order would immediately trigger."}), params


async def test_placement_checks_get_the_venues_codes(sim):
    base = {"algoType": "CONDITIONAL", "side": "BUY", "quantity": "0.01"}
    cases = [
        ({**base, "type": "LIMIT", "triggerPrice": "51000"}, -1116),
        ({**base, "algoType": "VP", "type": "STOP_MARKET", "triggerPrice": "51000"}, -1100),
        ({**base, "type": "STOP_MARKET"}, -1102),  # no triggerPrice
        ({**base, "type": "STOP", "triggerPrice": "51000"}, -1102),  # STOP needs a price
        ({**base, "type": "STOP_MARKET", "triggerPrice": "51000.05"}, -1111),
        ({**base, "type": "STOP_MARKET", "triggerPrice": "51000", "workingType": "INDEX"}, -1100),
        ({**base, "type": "TRAILING_STOP_MARKET", "callbackRate": "11"}, -2007),
        ({"algoType": "CONDITIONAL", "side": "SELL", "type": "STOP", "closePosition": "true",
          "triggerPrice": "49000", "price": "49000"}, -4136),
    ]  # fmt: skip
    for params, code in cases:
        status, body = await call(sim, "POST", "/fapi/v1/algoOrder", **params)
        assert (status, body["code"]) == (400, code), (params, body)
    status, body = await call(
        sim, "POST", "/fapi/v1/order", side="BUY", type="STOP_MARKET", stopPrice="51000"
    )
    assert body["code"] == -4120  # the plain order endpoint points at the algo endpoints


async def test_take_profit_limit_places_a_resting_order_and_finishes_when_it_fills(sim):
    take_profit = await new_algo(
        sim, side="BUY", type="TAKE_PROFIT", triggerPrice="49990", price="49980", quantity="0.010"
    )
    await market_trade(sim, "49990")
    _, triggered = await call(sim, "GET", "/fapi/v1/algoOrder", algoId=take_profit["algoId"])
    assert triggered.get("algoStatus") == "TRIGGERED" and triggered["actualType"] == "LIMIT", triggered
    _, open_orders = await call(sim, "GET", "/fapi/v1/openOrders")
    assert [(row["orderId"], row["price"]) for row in open_orders] == [
        (int(triggered["actualOrderId"]), "49980.0")
    ]
    sim.usdm.apply_market_trade(SYMBOL, ticks(sim, "49980"), lots(sim, "2"), Side.SELL)  # through the queue
    await asyncio.sleep(0.01)
    _, finished = await call(sim, "GET", "/fapi/v1/algoOrder", algoId=take_profit["algoId"])
    assert finished["algoStatus"] == "FINISHED"


async def test_mark_price_working_type_follows_the_book_mid(sim):
    stop = await new_algo(
        sim, side="BUY", type="STOP_MARKET", triggerPrice="50005", quantity="0.010", workingType="MARK_PRICE"
    )
    await market_trade(sim, "50010", Side.BUY)  # the last price passes the trigger, the mark does not
    _, still = await call(sim, "GET", "/fapi/v1/algoOrder", algoId=stop["algoId"])
    assert still["algoStatus"] == "NEW"
    bids = [(ticks(sim, "50009.9") - index, lots(sim, "0.5")) for index in range(5)]
    asks = [(ticks(sim, "50010.1") + index, lots(sim, "0.5")) for index in range(5)]
    sim.usdm.replace_background(SYMBOL, bids, asks)  # mid 50010
    await asyncio.sleep(0.01)
    _, done = await call(sim, "GET", "/fapi/v1/algoOrder", algoId=stop["algoId"])
    assert done["algoStatus"] == "FINISHED"


async def test_trailing_stop_follows_the_high_and_triggers_on_the_callback(sim):
    await market_trade(sim, "50000")
    trailing = await new_algo(
        sim, side="SELL", type="TRAILING_STOP_MARKET", callbackRate="1", quantity="0.010"
    )
    assert trailing["callbackRate"] == "1" and trailing["activatePrice"] == "50000.0"
    for price in ("50200", "50500", "50100"):
        await market_trade(sim, price, Side.BUY)
    _, still = await call(sim, "GET", "/fapi/v1/algoOrder", algoId=trailing["algoId"])
    assert still["algoStatus"] == "NEW"  # 50100 is less than 1 % under the 50500 high
    await market_trade(sim, "49995")  # 1 % under 50500
    _, done = await call(sim, "GET", "/fapi/v1/algoOrder", algoId=trailing["algoId"])
    assert done["algoStatus"] in ("TRIGGERED", "FINISHED") and done["actualOrderId"]


async def test_close_position_with_nothing_to_close_expires(sim):
    stop = await new_algo(sim, side="SELL", type="STOP_MARKET", triggerPrice="49990", closePosition="true")
    assert stop["closePosition"] is True and stop["quantity"] == "0.000"
    await market_trade(sim, "49990")
    _, expired = await call(sim, "GET", "/fapi/v1/algoOrder", algoId=stop["algoId"])
    assert expired["algoStatus"] == "EXPIRED"


async def test_queries_and_cancels(sim):
    first = await new_algo(
        sim, side="BUY", type="STOP_MARKET", triggerPrice="51000", quantity="0.01", clientAlgoId="a1"
    )
    second = await new_algo(sim, side="BUY", type="STOP_MARKET", triggerPrice="52000", quantity="0.01")
    duplicate = {
        "side": "BUY",
        "type": "STOP_MARKET",
        "triggerPrice": "53000",
        "quantity": "0.01",
        "clientAlgoId": "a1",
    }
    status, body = await call(sim, "POST", "/fapi/v1/algoOrder", algoType="CONDITIONAL", **duplicate)
    assert body["code"] == -4116
    _, open_rows = await call(sim, "GET", "/fapi/v1/openAlgoOrders")
    assert [row["algoId"] for row in open_rows] == [first["algoId"], second["algoId"]]
    status, canceled = await call(sim, "DELETE", "/fapi/v1/algoOrder", clientAlgoId="a1")
    assert (status, canceled) == (
        200,
        {"algoId": first["algoId"], "clientAlgoId": "a1", "code": "200", "msg": "success"},
    )
    status, again = await call(sim, "DELETE", "/fapi/v1/algoOrder", algoId=first["algoId"])
    assert (status, again["code"]) == (400, -2011)
    status, body = await call(sim, "DELETE", "/fapi/v1/algoOpenOrders")
    assert body == {"code": 200, "msg": "The operation of cancel all open order is done."}
    _, every = await call(sim, "GET", "/fapi/v1/allAlgoOrders")
    assert [(row["algoId"], row["algoStatus"]) for row in every] == [
        (first["algoId"], "CANCELED"),
        (second["algoId"], "CANCELED"),
    ]
    status, missing = await call(sim, "GET", "/fapi/v1/algoOrder", algoId=999)
    assert (status, missing["code"]) == (400, -2013)


async def test_algo_updates_on_the_private_stream_and_the_websocket_api(sim):
    _, key, _ = await sim.request("POST", "/fapi/v1/listenKey", key=API_KEY)
    url = f"{sim.urls['ws']}/private/ws?listenKey={key['listenKey']}&events=ALGO_UPDATE"
    async with sim.session.ws_connect(url) as private, sim.session.ws_connect(sim.urls["usdm_ws_api"]) as api:
        await asyncio.sleep(0.05)
        order = {"algoType": "CONDITIONAL", "side": "BUY", "type": "STOP_MARKET", "triggerPrice": "50010"}
        params = {
            "apiKey": API_KEY,
            "timestamp": sim.server_ms(),
            "symbol": SYMBOL,
            "quantity": "0.010",
            **order,
        }
        params["signature"] = HmacSigner(API_SECRET).sign_websocket_params(params)
        await api.send_str(orjson.dumps({"id": 1, "method": "algoOrder.place", "params": params}).decode())
        placed = orjson.loads((await api.receive(timeout=TIMEOUT)).data)
        assert placed["status"] == 200 and placed["result"]["algoStatus"] == "NEW"
        await market_trade(sim, "50010", Side.BUY)
        statuses = []
        while not statuses or statuses[-1] != "FINISHED":
            message = await private.receive(timeout=TIMEOUT)
            assert message.type is aiohttp.WSMsgType.TEXT
            event = orjson.loads(message.data)
            assert event["e"] == "ALGO_UPDATE" and event["o"]["aid"] == placed["result"]["algoId"]
            statuses.append(event["o"]["X"])
    assert statuses == ["NEW", "TRIGGERED", "FINISHED"]
    assert event["o"]["ai"] and event["o"]["act"] == "MARKET" and event["o"]["aq"] == "0.010"
