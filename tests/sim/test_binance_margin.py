"""USD-M margin (leverage, initial and maintenance margin, -2019) and funding (payments in simulated
time, income, fundingRate, ACCOUNT_UPDATE FUNDING_FEE), plus the small account endpoints."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest

from hftkit.core.clock import SimulatedClock
from hftkit.testing.binance_simulator import API_KEY, SYMBOL, BinanceSimHarness

TIMEOUT = 3.0
HOUR_NS = 3_600 * 10**9


@pytest.fixture
async def sim():
    harness = await BinanceSimHarness().start()
    yield harness
    await harness.stop()


async def signed(sim: BinanceSimHarness, method: str, path: str, **params: Any) -> tuple[int, Any]:
    status, body, _ = await sim.request(
        method, path, {"symbol": SYMBOL, **params}, signed=True, in_body=method != "GET"
    )
    return status, body


async def usdt_row(sim: BinanceSimHarness) -> dict[str, Any]:
    _, account = await signed(sim, "GET", "/fapi/v2/account")
    return next(row for row in account["assets"] if row["asset"] == "USDT")


async def test_orders_beyond_the_leverage_get_minus_2019(sim):
    status, body = await signed(sim, "POST", "/fapi/v1/leverage", leverage=1)
    assert (status, body) == (200, {"leverage": 1, "maxNotionalValue": "10000000", "symbol": SYMBOL})
    order = {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": "49000"}
    status, body = await signed(sim, "POST", "/fapi/v1/order", **order, quantity="3")  # 147 000 > 100 000
    assert (status, body) == (400, {"code": -2019, "msg": "Margin is insufficient."})
    status, body = await signed(sim, "POST", "/fapi/v1/order", **order, quantity="2")  # 98 000
    assert status == 200, body
    status, body = await signed(sim, "POST", "/fapi/v1/order", **order, quantity="0.1")  # 4 900 more
    assert body["code"] == -2019
    # a sell against open buys adds no exposure on the larger side: no extra margin
    sell = {"side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "price": "51000", "quantity": "1"}
    status, body = await signed(sim, "POST", "/fapi/v1/order", **sell)
    assert status == 200, body
    status, body = await signed(sim, "POST", "/fapi/v1/leverage", leverage=2)
    status, body = await signed(sim, "POST", "/fapi/v1/order", **order, quantity="1")
    assert status == 200, body
    status, body = await signed(sim, "POST", "/fapi/v1/leverage", leverage=126)
    assert body["code"] == -4028


async def test_account_reports_initial_and_maintenance_margin(sim):
    await signed(sim, "POST", "/fapi/v1/leverage", leverage=10)
    await signed(
        sim,
        "POST",
        "/fapi/v1/order",
        side="BUY",
        type="LIMIT",
        timeInForce="GTC",
        price="49000",
        quantity="1",
    )
    row = await usdt_row(sim)
    assert (row["openOrderInitialMargin"], row["positionInitialMargin"]) == ("4900.00000000", "0.00000000")
    assert Decimal(row["availableBalance"]) == Decimal("100000") - Decimal("4900")
    await signed(sim, "POST", "/fapi/v1/order", side="SELL", type="MARKET", quantity="0.1")
    row = await usdt_row(sim)
    # short 0.1 at the mark 50000 (book mid): 500 position margin at 10x; 0.4 % maintenance
    assert row["positionInitialMargin"] == "500.00000000" and row["maintMargin"] == "20.00000000"
    _, risk = await signed(sim, "GET", "/fapi/v2/positionRisk")
    assert (risk[0]["leverage"], risk[0]["maxNotionalValue"]) == ("10", "10000000")
    _, risk3 = await signed(sim, "GET", "/fapi/v3/positionRisk")
    assert (risk3[0]["initialMargin"], risk3[0]["maintMargin"]) == ("500.00000000", "20.00000000")
    _, account = await signed(sim, "GET", "/fapi/v3/account")
    assert Decimal(account["totalInitialMargin"]) == Decimal(row["initialMargin"])


async def test_reduce_only_orders_need_no_margin(sim):
    await signed(sim, "POST", "/fapi/v1/order", side="BUY", type="MARKET", quantity="1")
    await signed(sim, "POST", "/fapi/v1/leverage", leverage=1)
    status, body = await signed(
        sim,
        "POST",
        "/fapi/v1/order",
        side="BUY",
        type="LIMIT",
        timeInForce="GTC",
        price="49000",
        quantity="2",
    )
    assert body["code"] == -2019  # 50 000 held + 98 000 more > 100 000
    closing = {"side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "price": "52000", "quantity": "1"}
    status, body = await signed(sim, "POST", "/fapi/v1/order", **closing, reduceOnly="true")
    assert status == 200, body


async def test_funding_is_paid_at_the_funding_time_in_simulated_time():
    clock = SimulatedClock(wall_offset_ns=time.time_ns())
    sim = await BinanceSimHarness(clock=clock, server_options={"stream_tick_s": 0.02}).start()
    try:
        _, key, _ = await sim.request("POST", "/fapi/v1/listenKey", key=API_KEY)
        status, _ = await signed(sim, "POST", "/fapi/v1/order", side="BUY", type="MARKET", quantity="0.1")
        assert status == 200
        before = (await usdt_row(sim))["walletBalance"]
        _, premium = await signed(sim, "GET", "/fapi/v1/premiumIndex")
        assert premium["lastFundingRate"] == "0.00010000"
        url = f"{sim.urls['ws']}/private/ws?listenKey={key['listenKey']}&events=ACCOUNT_UPDATE"
        async with sim.session.ws_connect(url) as private:
            await asyncio.sleep(0.05)
            totals = sim.usdm.accounts.totals()
            clock.advance(8 * HOUR_NS)
            while True:
                message = await private.receive(timeout=TIMEOUT)
                assert message.type is aiohttp.WSMsgType.TEXT
                event = orjson.loads(message.data)
                if event["a"]["m"] == "FUNDING_FEE":
                    break
        after = (await usdt_row(sim))["walletBalance"]
        # long 0.1 at the mark 50 000 x 0.0001 = 0.5 USDT paid
        assert Decimal(before) - Decimal(after) == Decimal("0.5")
        assert event["a"]["B"][0]["wb"] == after
        _, income = await signed(sim, "GET", "/fapi/v1/income")
        assert [(row["incomeType"], row["income"]) for row in income] == [("FUNDING_FEE", "-0.50000000")]
        status, history, _ = await sim.request("GET", "/fapi/v1/fundingRate", {"symbol": SYMBOL})
        assert [(row["fundingRate"], row["markPrice"]) for row in history] == [("0.00010000", "50000.0")]
        assert history[0]["fundingTime"] % (8 * 3_600_000) == 0
        assert sim.usdm.accounts.totals() == totals  # booked against the market account: nothing created
    finally:
        await sim.stop()


async def test_open_interest_funding_info_and_spot_commission_and_order_limits(sim):
    await signed(sim, "POST", "/fapi/v1/order", side="BUY", type="MARKET", quantity="0.25")
    status, interest, _ = await sim.request("GET", "/fapi/v1/openInterest", {"symbol": SYMBOL})
    assert (status, interest["openInterest"]) == (200, "0.250")
    status, info, _ = await sim.request("GET", "/fapi/v1/fundingInfo")
    assert info[0]["symbol"] == SYMBOL and info[0]["fundingIntervalHours"] == 8
    status, commission = await signed(sim, "GET", "/api/v3/account/commission")
    assert commission["standardCommission"]["maker"] == "0.00100000"
    await signed(
        sim,
        "POST",
        "/api/v3/order",
        side="BUY",
        type="LIMIT",
        timeInForce="GTC",
        price="49000",
        quantity="0.01",
    )
    status, limits, _ = await sim.request("GET", "/api/v3/rateLimit/order", signed=True)
    assert [(row["interval"], row["count"]) for row in limits] == [("SECOND", 1), ("DAY", 1)]
