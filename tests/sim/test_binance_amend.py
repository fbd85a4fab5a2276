"""Order changes on the Binance simulator: USD-M modify (REST, batch, WS API), spot cancelReplace
(REST, WS API) and amend keepPriority, with the venue's priority rules, codes and events."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from hftkit.testing.binance_simulator import (
    API_KEY,
    API_SECRET,
    OTHER_KEY,
    OTHER_SECRET,
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


async def call(
    sim: BinanceSimHarness,
    method: str,
    path: str,
    key: str = API_KEY,
    secret: str = API_SECRET,
    **params: Any,
) -> tuple[int, Any, Any]:
    return await sim.request(
        method, path, {"symbol": SYMBOL, **params}, signed=True, key=key, secret=secret, in_body=True
    )


async def fplace(sim: BinanceSimHarness, key: str = API_KEY, secret: str = API_SECRET, **params: Any) -> dict:
    status, body, _ = await call(sim, "POST", "/fapi/v1/order", key, secret, **params)
    assert status == 200, body
    return body


async def fmodify(sim: BinanceSimHarness, **params: Any) -> tuple[int, Any, Any]:
    return await call(sim, "PUT", "/fapi/v1/order", **params)


def signed_ws(sim: BinanceSimHarness, **params: Any) -> dict[str, Any]:
    full = {"apiKey": API_KEY, "timestamp": sim.server_ms(), **params}
    full["signature"] = HmacSigner(API_SECRET).sign_websocket_params(full)
    return full


async def receive(socket: aiohttp.ClientWebSocketResponse) -> Any:
    message = await socket.receive(timeout=TIMEOUT)
    assert message.type is aiohttp.WSMsgType.TEXT, message
    return orjson.loads(message.data)


async def receive_until(socket: aiohttp.ClientWebSocketResponse, predicate) -> Any:
    while True:
        message = await receive(socket)
        if predicate(message):
            return message


def limit(price: str, quantity: str, side: str = "BUY", tif: str = "GTC", **extra: Any) -> dict[str, Any]:
    return {"side": side, "type": "LIMIT", "timeInForce": tif, "price": price, "quantity": quantity, **extra}


# USD-M modify over REST ------------------------------------------------------------------------------------


async def test_modify_moves_price_and_size_and_keeps_the_order_id(sim):
    placed = await fplace(sim, **limit("49000", "0.010", newClientOrderId="mm-1"))
    status, body, headers = await fmodify(
        sim, orderId=placed["orderId"], side="BUY", price="49100.5", quantity="0.020"
    )
    assert status == 200, body
    assert (body["orderId"], body["clientOrderId"], body["status"]) == (placed["orderId"], "mm-1", "NEW")
    assert (body["price"], body["origQty"], body["type"], body["timeInForce"]) == (
        "49100.5",
        "0.020",
        "LIMIT",
        "GTC",
    )
    order = sim.usdm.engine.get_order(API_KEY, order_id=placed["orderId"])
    assert order is not None and order.price == sim.usdm.instruments[SYMBOL].price_to_ticks("49100.5")
    # documented weights: IP weight 0, one order in each order window
    assert headers["X-MBX-ORDER-COUNT-1M"] == "2" and headers["X-MBX-ORDER-COUNT-10S"] == "2"
    status, by_client_id, _ = await fmodify(
        sim, origClientOrderId="mm-1", side="BUY", price="49100.5", quantity="0.015"
    )
    assert status == 200 and by_client_id["origQty"] == "0.015"


async def test_modify_loses_priority_even_for_a_pure_size_cut(sim):
    """USD-M: "modified orders will be reordered in the match queue" (unlike spot keepPriority)."""
    first = await fplace(sim, **limit("49000", "0.010"))
    await fplace(sim, OTHER_KEY, OTHER_SECRET, **limit("49000", "0.010"))
    engine = sim.usdm.engine
    order = engine.get_order(API_KEY, order_id=first["orderId"])
    assert order is not None and engine.orders_ahead(order) == 0
    status, body, _ = await fmodify(
        sim, orderId=first["orderId"], side="BUY", price="49000", quantity="0.005"
    )
    assert status == 200 and body["origQty"] == "0.005"
    assert engine.orders_ahead(order) == 10  # behind the other account's 0.010 now


async def test_modify_that_fails_a_filter_leaves_the_order_as_it_was(sim):
    placed = await fplace(sim, **limit("49000", "0.010"))
    ident = {"orderId": placed["orderId"], "side": "BUY"}
    cases = [
        ({"price": "49000.05", "quantity": "0.010"}, -1111),  # more decimals than the precision
        ({"price": "49000", "quantity": "0.0105"}, -1111),
        ({"price": "49000", "quantity": "0.001"}, -4164),  # notional below 100
        ({"price": "49000", "quantity": "0"}, -4003),
        ({"price": "49000", "quantity": "1001"}, -4005),
        ({"price": "49000"}, -1102),
        ({"quantity": "0.010"}, -1102),
        ({"price": "49000", "quantity": "0.010"}, -5027),  # nothing to change
        ({"price": "49000", "quantity": "0.020", "side": "SELL"}, -1117),
        ({"price": "49000", "quantity": "0.020", "priceMatch": "QUEUE"}, -1116),
    ]
    for params, code in cases:
        status, body, _ = await fmodify(sim, **{**ident, **params})
        assert (status, body["code"]) == (400, code), (params, body)
    order = sim.usdm.engine.get_order(API_KEY, order_id=placed["orderId"])
    assert order is not None and order.is_open and order.quantity == 10
    assert order.price == sim.usdm.instruments[SYMBOL].price_to_ticks("49000")


async def test_modify_of_unknown_or_closed_orders_is_minus_2013(sim):
    status, body, _ = await fmodify(sim, orderId=987654, side="BUY", price="49000", quantity="0.01")
    assert (status, body) == (400, {"code": -2013, "msg": "Order does not exist."})
    placed = await fplace(sim, **limit("49000", "0.010"))
    await call(sim, "DELETE", "/fapi/v1/order", orderId=placed["orderId"])
    status, body, _ = await fmodify(
        sim, orderId=placed["orderId"], side="BUY", price="49001", quantity="0.01"
    )
    assert body["code"] == -2013
    status, body, _ = await fmodify(sim, side="BUY", price="49001", quantity="0.01")
    assert body["code"] == -1102


async def test_order_id_wins_over_client_order_id(sim):
    placed = await fplace(sim, **limit("49000", "0.010", newClientOrderId="a"))
    await fplace(sim, **limit("48000", "0.010", newClientOrderId="b"))
    status, body, _ = await fmodify(
        sim, orderId=placed["orderId"], origClientOrderId="b", side="BUY", price="49001", quantity="0.01"
    )
    assert status == 200 and body["clientOrderId"] == "a"


async def test_modify_to_cross_trades_and_gtx_crossing_is_canceled(sim):
    placed = await fplace(sim, **limit("49000", "0.010"))
    status, body, _ = await fmodify(
        sim, orderId=placed["orderId"], side="BUY", price="50000.1", quantity="0.010"
    )
    assert status == 200 and body["status"] == "FILLED" and body["avgPrice"] == "50000.1"
    maker = await fplace(sim, **limit("49000", "0.010", tif="GTX"))
    status, body, _ = await fmodify(
        sim, orderId=maker["orderId"], side="BUY", price="50000.1", quantity="0.010"
    )
    assert status == 200 and body["status"] == "CANCELED" and body["timeInForce"] == "GTX"
    assert sim.usdm.engine.open_orders(API_KEY) == []


async def test_partially_filled_order_modified_to_its_executed_quantity_is_canceled(sim):
    # asks rest 0.5 at 50000.1: a 0.8 buy there fills 0.5 and rests 0.3
    placed = await fplace(sim, **limit("50000.1", "0.800"))
    status, body, _ = await fmodify(
        sim, orderId=placed["orderId"], side="BUY", price="50000.1", quantity="0.500"
    )
    assert status == 200, body
    assert (body["status"], body["executedQty"], body["origQty"]) == ("CANCELED", "0.500", "0.500")


async def test_batch_modify_answers_each_item_in_order(sim):
    first = await fplace(sim, **limit("49000", "0.010"))
    second = await fplace(sim, **limit("48000", "0.010"))
    batch = [
        {"symbol": SYMBOL, "orderId": first["orderId"], "side": "BUY", "price": "49001", "quantity": "0.010"},
        {"symbol": SYMBOL, "orderId": 424242, "side": "BUY", "price": "1", "quantity": "0.010"},
        {
            "symbol": SYMBOL,
            "orderId": second["orderId"],
            "side": "BUY",
            "price": "48001",
            "quantity": "0.020",
        },
    ]
    status, body, headers = await call(
        sim, "PUT", "/fapi/v1/batchOrders", batchOrders=orjson.dumps(batch).decode()
    )
    assert status == 200, body
    assert [item.get("price") or item["code"] for item in body] == ["49001.0", -2013, "48001.0"]
    assert headers["X-MBX-ORDER-COUNT-10S"] == str(2 + 5)  # two places, then 5 for the batch
    too_many = orjson.dumps(batch * 2).decode()
    status, body, _ = await call(sim, "PUT", "/fapi/v1/batchOrders", batchOrders=too_many)
    assert (status, body["code"]) == (400, -1130)


async def test_modify_reports_amendment_on_the_user_data_stream(sim):
    _, key, _ = await sim.request("POST", "/fapi/v1/listenKey", key=API_KEY)
    placed = await fplace(sim, **limit("49000", "0.010"))
    async with sim.session.ws_connect(f"{sim.urls['ws']}/private/ws?listenKey={key['listenKey']}") as socket:
        await asyncio.sleep(0.05)
        status, _, _ = await fmodify(
            sim, orderId=placed["orderId"], side="BUY", price="49002", quantity="0.020"
        )
        assert status == 200
        event = await receive_until(socket, lambda message: message.get("e") == "ORDER_TRADE_UPDATE")
    order = event["o"]
    assert (order["x"], order["X"], order["i"], order["p"], order["q"]) == (
        "AMENDMENT",
        "NEW",
        placed["orderId"],
        "49002.0",
        "0.020",
    )


# USD-M modify over the WebSocket API ------------------------------------------------------------------------


async def test_websocket_api_order_modify(sim):
    async with sim.session.ws_connect(sim.urls["usdm_ws_api"]) as socket:
        place = signed_ws(sim, symbol=SYMBOL, **limit("49000", "0.010"), newOrderRespType="RESULT")
        await socket.send_str(orjson.dumps({"id": "p", "method": "order.place", "params": place}).decode())
        placed = await receive(socket)
        assert placed["status"] == 200, placed
        order_id = placed["result"]["orderId"]
        modify = signed_ws(sim, symbol=SYMBOL, orderId=order_id, side="BUY", price="49100", quantity="0.02")
        await socket.send_str(orjson.dumps({"id": "m", "method": "order.modify", "params": modify}).decode())
        answer = await receive(socket)
        assert (answer["id"], answer["status"]) == ("m", 200), answer
        assert (answer["result"]["orderId"], answer["result"]["price"], answer["result"]["origQty"]) == (
            order_id,
            "49100.0",
            "0.020",
        )
        assert answer["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
        same = signed_ws(sim, symbol=SYMBOL, orderId=order_id, side="BUY", price="49100", quantity="0.02")
        await socket.send_str(
            orjson.dumps({"id": "again", "method": "order.modify", "params": same}).decode()
        )
        refused = await receive(socket)
        assert (refused["status"], refused["error"]) == (
            400,
            {"code": -5027, "msg": "No need to modify the order."},
        )


# spot cancelReplace ---------------------------------------------------------------------------------------


async def splace(sim: BinanceSimHarness, **params: Any) -> dict:
    status, body, _ = await call(sim, "POST", "/api/v3/order", **params)
    assert status == 200, body
    return body


def replace_params(mode: str = "STOP_ON_FAILURE", **extra: Any) -> dict[str, Any]:
    return {"cancelReplaceMode": mode, **limit("48000", "0.01"), **extra}


async def test_cancel_replace_success_answers_both_halves(sim):
    old = await splace(sim, **limit("49000", "0.01", newClientOrderId="old"))
    status, body, headers = await call(
        sim,
        "POST",
        "/api/v3/order/cancelReplace",
        **replace_params(cancelOrderId=old["orderId"], cancelNewClientOrderId="cxl", newClientOrderId="new"),
    )
    assert status == 200, body
    assert (body["cancelResult"], body["newOrderResult"]) == ("SUCCESS", "SUCCESS")
    cancel = body["cancelResponse"]
    assert (cancel["orderId"], cancel["status"], cancel["clientOrderId"], cancel["origClientOrderId"]) == (
        old["orderId"],
        "CANCELED",
        "cxl",
        "old",
    )
    new = body["newOrderResponse"]
    assert (new["clientOrderId"], new["status"], new["price"]) == ("new", "NEW", "48000.00000000")
    assert "fills" in new  # newOrderRespType defaults to FULL for LIMIT
    open_ids = [order.order_id for order in sim.spot.engine.open_orders(API_KEY)]
    assert open_ids == [new["orderId"]]
    assert headers["X-MBX-ORDER-COUNT-10S"] == "2"


async def test_cancel_replace_failures_follow_the_mode(sim):
    path = "/api/v3/order/cancelReplace"
    # cancel fails, STOP_ON_FAILURE: 400 -2022, new order not attempted
    status, body, _ = await call(sim, "POST", path, **replace_params(cancelOrderId=999999))
    assert status == 400
    assert body == {
        "code": -2022,
        "msg": "Order cancel-replace failed.",
        "data": {
            "cancelResult": "FAILURE",
            "newOrderResult": "NOT_ATTEMPTED",
            "cancelResponse": {"code": -2011, "msg": "Unknown order sent."},
            "newOrderResponse": None,
        },
    }
    assert sim.spot.engine.open_orders(API_KEY) == []
    # cancel fails, ALLOW_FAILURE: the new order is placed anyway: 409 -2021
    status, body, _ = await call(sim, "POST", path, **replace_params("ALLOW_FAILURE", cancelOrderId=999999))
    assert (status, body["code"], body["msg"]) == (409, -2021, "Order cancel-replace partially failed.")
    assert (body["data"]["cancelResult"], body["data"]["newOrderResult"]) == ("FAILURE", "SUCCESS")
    assert body["data"]["newOrderResponse"]["status"] == "NEW"
    # cancel succeeds, the new order fails (balance): 409 -2021, the old order is gone
    old = await splace(sim, **limit("49000", "0.01"))
    status, body, _ = await call(
        sim, "POST", path, **replace_params(cancelOrderId=old["orderId"], quantity="5")
    )
    assert (status, body["code"]) == (409, -2021)
    assert (body["data"]["cancelResult"], body["data"]["newOrderResult"]) == ("SUCCESS", "FAILURE")
    assert body["data"]["newOrderResponse"] == {
        "code": -2010,
        "msg": "Account has insufficient balance for requested action.",
    }
    # both fail under ALLOW_FAILURE: 400 -2022
    status, body, _ = await call(
        sim, "POST", path, **replace_params("ALLOW_FAILURE", cancelOrderId=999999, quantity="5")
    )
    assert (status, body["code"]) == (400, -2022)
    assert (body["data"]["cancelResult"], body["data"]["newOrderResult"]) == ("FAILURE", "FAILURE")


async def test_cancel_replace_checks_filters_and_params_before_canceling(sim):
    old = await splace(sim, **limit("49000", "0.01"))
    path = "/api/v3/order/cancelReplace"
    cases = [
        (replace_params(cancelOrderId=old["orderId"], price="48000.001"), -1013),  # PRICE_FILTER
        (replace_params(cancelOrderId=old["orderId"], quantity="0.00001"), -1013),  # NOTIONAL
        (replace_params(cancelOrderId=old["orderId"], cancelReplaceMode="SOMETIMES"), -1100),
        ({**replace_params(cancelOrderId=old["orderId"]), "cancelReplaceMode": ""}, -1102),
        (replace_params(), -1102),  # neither cancelOrderId nor cancelOrigClientOrderId
        (replace_params(cancelOrderId=old["orderId"], cancelRestrictions="NEVER"), -1145),
    ]
    for params, code in cases:
        status, body, _ = await call(sim, "POST", path, **params)
        assert (status, body["code"]) == (400, code), (params, body)
    assert [order.order_id for order in sim.spot.engine.open_orders(API_KEY)] == [old["orderId"]]
    # a restriction the order does not meet fails the cancel half
    status, body, _ = await call(
        sim,
        "POST",
        path,
        **replace_params(cancelOrderId=old["orderId"], cancelRestrictions="ONLY_PARTIALLY_FILLED"),
    )
    assert status == 400 and body["data"]["cancelResponse"] == {
        "code": -2011,
        "msg": "Order was not canceled due to cancel restrictions.",
    }


async def test_websocket_api_cancel_replace_and_its_error_data(sim):
    old = await splace(sim, **limit("49000", "0.01"))
    async with sim.session.ws_connect(sim.urls["spot_ws_api"]) as socket:
        params = signed_ws(
            sim, symbol=SYMBOL, **replace_params(cancelOrderId=old["orderId"]), newOrderRespType="ACK"
        )
        await socket.send_str(
            orjson.dumps({"id": 1, "method": "order.cancelReplace", "params": params}).decode()
        )
        answer = await receive(socket)
        assert answer["status"] == 200, answer
        assert answer["result"]["cancelResult"] == "SUCCESS"
        assert set(answer["result"]["newOrderResponse"]) == {
            "symbol",
            "orderId",
            "orderListId",
            "clientOrderId",
            "transactTime",
        }
        again = signed_ws(sim, symbol=SYMBOL, **replace_params(cancelOrderId=old["orderId"]))
        await socket.send_str(
            orjson.dumps({"id": 2, "method": "order.cancelReplace", "params": again}).decode()
        )
        failed = await receive(socket)
    assert (failed["status"], failed["error"]["code"]) == (400, -2022)
    assert failed["error"]["data"]["newOrderResult"] == "NOT_ATTEMPTED"


# spot amend keepPriority ----------------------------------------------------------------------------------


async def test_amend_keep_priority_cuts_size_in_place(sim):
    first = await splace(sim, **limit("49000", "0.01", newClientOrderId="front"))
    await call(sim, "POST", "/api/v3/order", OTHER_KEY, OTHER_SECRET, **limit("49000", "0.01"))
    engine = sim.spot.engine
    order = engine.get_order(API_KEY, order_id=first["orderId"])
    assert order is not None
    async with sim.session.ws_connect(sim.urls["spot_ws_api"]) as socket:
        subscribe = signed_ws(sim)
        await socket.send_str(
            orjson.dumps(
                {"id": "s", "method": "userDataStream.subscribe.signature", "params": subscribe}
            ).decode()
        )
        assert (await receive(socket))["status"] == 200
        status, body, _ = await call(
            sim, "PUT", "/api/v3/order/amend/keepPriority", orderId=first["orderId"], newQty="0.004"
        )
        assert status == 200, body
        report = await receive_until(
            socket, lambda message: message.get("event", {}).get("e") == "executionReport"
        )
    amended = body["amendedOrder"]
    assert (amended["orderId"], amended["qty"], amended["status"], amended["origClientOrderId"]) == (
        first["orderId"],
        "0.00400000",
        "NEW",
        "front",
    )
    assert engine.orders_ahead(order) == 0  # still first in the queue
    assert (report["event"]["x"], report["event"]["q"]) == ("REPLACED", "0.00400000")
    status, body, _ = await call(
        sim, "PUT", "/api/v3/order/amend/keepPriority", orderId=first["orderId"], newQty="0.02"
    )
    assert (status, body["code"]) == (400, -2038)


# amendment history and the modify limit ------------------------------------------------------------------


async def test_amendment_history_of_usdm_modifies_and_spot_keep_priority(sim):
    placed = await fplace(sim, **limit("49000", "0.010", newClientOrderId="hist"))
    await fmodify(sim, orderId=placed["orderId"], side="BUY", price="49001", quantity="0.010")
    await fmodify(sim, orderId=placed["orderId"], side="BUY", price="49001", quantity="0.020")
    status, rows, _ = await sim.request(
        "GET", "/fapi/v1/orderAmendment", {"symbol": SYMBOL, "origClientOrderId": "hist"}, signed=True
    )
    assert status == 200, rows
    assert [row["amendment"] for row in rows] == [
        {
            "price": {"before": "49000.0", "after": "49001.0"},
            "origQty": {"before": "0.010", "after": "0.010"},
            "count": 1,
        },
        {
            "price": {"before": "49001.0", "after": "49001.0"},
            "origQty": {"before": "0.010", "after": "0.020"},
            "count": 2,
        },
    ]
    assert rows[0]["orderId"] == placed["orderId"] and rows[1]["amendmentId"] > rows[0]["amendmentId"]
    spot = await splace(sim, **limit("49000", "0.01"))
    status, amended, _ = await call(
        sim, "PUT", "/api/v3/order/amend/keepPriority", orderId=spot["orderId"], newQty="0.005"
    )
    status, history, _ = await sim.request(
        "GET", "/api/v3/order/amendments", {"symbol": SYMBOL, "orderId": spot["orderId"]}, signed=True
    )
    assert status == 200 and [(row["origQty"], row["newQty"]) for row in history] == [
        ("0.01000000", "0.00500000")
    ]
    assert history[0]["executionId"] == amended["executionId"]


async def test_the_ten_thousandth_modify_is_the_last(sim):
    placed = await fplace(sim, **limit("49000", "0.010"))
    sim.server.state(Market.USDM).amendment_counts[placed["orderId"]] = 10_000
    status, body, _ = await fmodify(
        sim, orderId=placed["orderId"], side="BUY", price="49001", quantity="0.010"
    )
    assert (status, body) == (400, {"code": -5026, "msg": "Exceed maximum modify order limit."})
