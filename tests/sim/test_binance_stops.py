"""Spot conditional orders: STOP_LOSS(_LIMIT) and TAKE_PROFIT(_LIMIT) acknowledged with their final id,
funds locked, triggered by the last trade price into the book, reported and queried as what they are."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from hftkit.core.types import Side
from hftkit.testing.binance_simulator import API_KEY, API_SECRET, SYMBOL, BinanceSimHarness, seed_book
from hftkit.venues.binance.auth import HmacSigner

TIMEOUT = 3.0


@pytest.fixture
async def sim():
    harness = await BinanceSimHarness().start()
    seed_book(harness.spot, SYMBOL, harness.spot.instruments[SYMBOL].price_to_ticks("50000"), levels=3000)
    yield harness
    await harness.stop()


async def call(sim: BinanceSimHarness, method: str, path: str, **params: Any) -> tuple[int, Any]:
    status, body, _ = await sim.request(
        method, path, {"symbol": SYMBOL, **params}, signed=True, in_body=method != "GET"
    )
    return status, body


async def order(sim: BinanceSimHarness, **params: Any) -> dict:
    status, body = await call(sim, "POST", "/api/v3/order", **params)
    assert status == 200, body
    return body


async def market_trade(sim: BinanceSimHarness, price: str, aggressor: Side, quantity: str = "0.001") -> None:
    instrument = sim.spot.instruments[SYMBOL]
    sim.spot.apply_market_trade(
        SYMBOL, instrument.price_to_ticks(price), instrument.quantity_to_lots(quantity), aggressor
    )
    await asyncio.sleep(0.01)


def balance(sim: BinanceSimHarness, asset: str) -> tuple[int, int]:
    held = sim.spot.accounts.get(API_KEY).balance(asset)
    return held.free, held.locked


async def test_stop_loss_limit_waits_locked_then_enters_the_book_under_its_id(sim):
    free_before, _ = balance(sim, "BTC")
    placed = await order(
        sim,
        side="SELL",
        type="STOP_LOSS_LIMIT",
        timeInForce="GTC",
        quantity="0.01",
        price="49995",
        stopPrice="49990",
        newOrderRespType="RESULT",
    )
    assert (placed["type"], placed["status"], placed["stopPrice"], placed["workingTime"]) == (
        "STOP_LOSS_LIMIT",
        "NEW",
        "49990.00000000",
        -1,
    )
    assert balance(sim, "BTC") == (free_before - 1_000_000, 1_000_000)  # 0.01 BTC locked at once
    _, waiting = await call(sim, "GET", "/api/v3/order", orderId=placed["orderId"])
    assert (waiting["type"], waiting["isWorking"], waiting["stopPrice"]) == (
        "STOP_LOSS_LIMIT",
        False,
        "49990.00000000",
    )
    _, open_orders = await call(sim, "GET", "/api/v3/openOrders")
    assert [row["orderId"] for row in open_orders] == [placed["orderId"]]
    assert sim.spot.engine.open_orders(API_KEY) == []  # not in the book yet
    await market_trade(sim, "49995", Side.SELL)
    assert sim.spot.engine.open_orders(API_KEY) == []
    await market_trade(sim, "49990", Side.SELL)
    working = sim.spot.engine.get_order(API_KEY, order_id=placed["orderId"])
    assert working is not None and working.is_open  # the same id, now a limit at 49995 in the book
    _, queried = await call(sim, "GET", "/api/v3/order", orderId=placed["orderId"])
    assert (queried["type"], queried["isWorking"], queried["price"]) == (
        "STOP_LOSS_LIMIT",
        True,
        "49995.00000000",
    )
    assert balance(sim, "BTC")[1] == 1_000_000  # still locked, now by the working order


async def test_stop_loss_market_and_take_profit_fill_when_triggered(sim):
    stop = await order(sim, side="BUY", type="STOP_LOSS", quantity="0.01", stopPrice="50010")
    assert set(stop) == {
        "symbol",
        "orderId",
        "orderListId",
        "clientOrderId",
        "transactTime",
    }  # ACK by default
    profit = await order(sim, side="SELL", type="TAKE_PROFIT", quantity="0.01", stopPrice="50020")
    await market_trade(sim, "50010", Side.BUY)
    _, filled = await call(sim, "GET", "/api/v3/order", orderId=stop["orderId"])
    assert (filled["status"], filled["type"], filled["executedQty"]) == ("FILLED", "STOP_LOSS", "0.01000000")
    _, still = await call(sim, "GET", "/api/v3/order", orderId=profit["orderId"])
    assert still["status"] == "NEW" and still["isWorking"] is False
    await market_trade(sim, "50020", Side.BUY)
    _, sold = await call(sim, "GET", "/api/v3/order", orderId=profit["orderId"])
    assert (sold["status"], sold["type"]) == ("FILLED", "TAKE_PROFIT")


async def test_placement_checks(sim):
    await market_trade(sim, "50000", Side.BUY)
    cases = [
        (
            {"side": "BUY", "type": "STOP_LOSS", "quantity": "0.01", "stopPrice": "49990"},
            -2010,
        ),  # triggers now
        ({"side": "SELL", "type": "TAKE_PROFIT", "quantity": "0.01", "stopPrice": "49990"}, -2010),
        ({"side": "BUY", "type": "STOP_LOSS", "quantity": "0.01"}, -1102),
        ({"side": "BUY", "type": "STOP_LOSS_LIMIT", "quantity": "0.01", "stopPrice": "50100"}, -1102),
        ({"side": "BUY", "type": "STOP_LOSS", "quantity": "0.01", "stopPrice": "50100", "price": "1"}, -1106),
        ({"side": "BUY", "type": "STOP_LOSS", "quantity": "0.00001", "stopPrice": "50100"}, -1013),
        ({"side": "BUY", "type": "STOP_LOSS", "quantity": "9", "stopPrice": "50100"}, -2010),  # 450 000 USDT
    ]
    for params, code in cases:
        status, body = await call(sim, "POST", "/api/v3/order", **params)
        assert (status, body["code"]) == (400, code), (params, body)
    for _ in range(5):
        await order(sim, side="BUY", type="STOP_LOSS", quantity="0.01", stopPrice="50100")
    status, body = await call(
        sim, "POST", "/api/v3/order", side="BUY", type="STOP_LOSS", quantity="0.01", stopPrice="50100"
    )
    assert body == {"code": -1013, "msg": "Filter failure: MAX_NUM_ALGO_ORDERS"}


async def test_cancel_releases_the_funds_and_history_keeps_the_order(sim):
    before = balance(sim, "USDT")
    placed = await order(
        sim,
        side="BUY",
        type="TAKE_PROFIT_LIMIT",
        timeInForce="GTC",
        quantity="0.01",
        price="49900",
        stopPrice="49900",
    )
    assert balance(sim, "USDT")[1] == before[1] + sim.spot.accounts.to_units("USDT", "499")
    status, canceled = await call(sim, "DELETE", "/api/v3/order", orderId=placed["orderId"])
    assert (status, canceled["status"], canceled["type"]) == (200, "CANCELED", "TAKE_PROFIT_LIMIT")
    assert balance(sim, "USDT") == before
    _, history = await call(sim, "GET", "/api/v3/allOrders")
    assert [(row["orderId"], row["status"], row["type"]) for row in history] == [
        (placed["orderId"], "CANCELED", "TAKE_PROFIT_LIMIT")
    ]
    again = await order(sim, side="SELL", type="STOP_LOSS", quantity="0.01", stopPrice="49000")
    status, all_canceled = await call(sim, "DELETE", "/api/v3/openOrders")
    assert [row["orderId"] for row in all_canceled] == [again["orderId"]]


async def test_execution_reports_show_the_conditional_type(sim):
    async with sim.session.ws_connect(sim.urls["spot_ws_api"]) as socket:
        params = {"apiKey": API_KEY, "timestamp": sim.server_ms()}
        params["signature"] = HmacSigner(API_SECRET).sign_websocket_params(params)
        await socket.send_str(
            orjson.dumps({"id": 1, "method": "userDataStream.subscribe.signature", "params": params}).decode()
        )
        assert orjson.loads((await socket.receive(timeout=TIMEOUT)).data)["status"] == 200
        placed = await order(sim, side="BUY", type="STOP_LOSS", quantity="0.01", stopPrice="50010")
        await market_trade(sim, "50010", Side.BUY)
        reports = []
        while not reports or reports[-1]["X"] != "FILLED":
            message = orjson.loads((await socket.receive(timeout=TIMEOUT)).data)
            event = message.get("event", {})
            if event.get("e") == "executionReport":
                reports.append(event)
    assert all(report["i"] == placed["orderId"] and report["o"] == "STOP_LOSS" for report in reports)
    # NEW when acknowledged (not working), NEW again when it enters the book (a market order), then TRADE
    assert [report["x"] for report in reports][:2] == ["NEW", "NEW"] and reports[0]["w"] is False
    assert reports[0]["P"] == "50010.00000000" and reports[-1]["x"] == "TRADE"


async def test_the_control_snapshot_counts_conditional_orders(sim):
    await order(sim, side="BUY", type="STOP_LOSS", quantity="0.01", stopPrice="50010")
    figures = sim.server.snapshot()["spot"]
    assert (figures["stop_orders_waiting"], figures["stop_orders_triggered"]) == (1, 0)
    await market_trade(sim, "50010", Side.BUY)
    figures = sim.server.snapshot()["spot"]
    assert (figures["stop_orders_waiting"], figures["stop_orders_triggered"]) == (0, 1)
    assert sim.server.snapshot()["usdm"]["funding_payments"] == 0
