"""Acceptance: the real ccxt ``binance`` client, default options and API keys, trades against the simulator.

The sync client runs in a worker thread (``asyncio.to_thread``) while the aiohttp server runs
in the test's event loop; only the URLs are overridden, nothing in ccxt is patched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import ccxt
import pytest

from hftkit.core.clock import SimulatedClock
from hftkit.sim.binance.limits import RateLimitSettings
from hftkit.testing.binance_simulator import API_KEY, API_SECRET, SYMBOL, BinanceSimHarness, ccxt_urls


def make_client(base: str) -> Any:
    return ccxt.binance(
        {
            "apiKey": API_KEY,
            "secret": API_SECRET,
            "enableRateLimit": False,
            "timeout": 5000,
            "urls": {"api": ccxt_urls(base)},
        }
    )


@pytest.fixture
async def sim():
    harness = await BinanceSimHarness().start()
    yield harness
    await harness.stop()


async def in_thread(function: Callable[[], Any]) -> Any:
    return await asyncio.to_thread(function)


async def test_load_markets_with_default_options_and_keys(sim):
    exchange = make_client(sim.base)
    markets = await in_thread(exchange.load_markets)
    spot = markets["BTC/USDT"]
    assert (spot["id"], spot["spot"], spot["active"]) == (SYMBOL, True, True)
    assert spot["precision"]["price"] == 0.01 and spot["precision"]["amount"] == 0.00001
    assert spot["limits"]["cost"]["min"] == 5.0 and spot["limits"]["amount"]["min"] == 0.00001
    linear = markets["BTC/USDT:USDT"]
    assert (
        linear["linear"] and linear["precision"]["price"] == 0.1 and linear["limits"]["cost"]["min"] == 100.0
    )
    assert {"BTC", "USDT"} <= set(exchange.currencies)


async def test_market_data_order_book_ticker_trades_ohlcv(sim):
    exchange = make_client(sim.base)
    await in_thread(exchange.load_markets)
    book = await in_thread(lambda: exchange.fetch_order_book("BTC/USDT", 5))
    assert book["bids"][0] == [49999.99, 0.5] and book["asks"][0] == [50000.01, 0.5]
    assert len(book["bids"]) == 5 and book["nonce"] == sim.spot.engine.update_id(SYMBOL)
    await in_thread(lambda: exchange.create_order("BTC/USDT", "market", "buy", 0.02))
    ticker = await in_thread(lambda: exchange.fetch_ticker("BTC/USDT"))
    assert ticker["last"] == 50000.01 and ticker["bid"] == 49999.99 and ticker["baseVolume"] == 0.02
    trades = await in_thread(lambda: exchange.fetch_trades("BTC/USDT"))
    assert [(trade["price"], trade["amount"], trade["side"]) for trade in trades] == [(50000.01, 0.02, "buy")]
    candles = await in_thread(lambda: exchange.fetch_ohlcv("BTC/USDT", "1m"))
    assert candles[-1][4] == 50000.01 and candles[-1][5] == 0.02
    server_time = await in_thread(exchange.fetch_time)
    assert abs(server_time - time.time() * 1000) < 5000


async def test_limit_order_lifecycle(sim):
    exchange = make_client(sim.base)
    await in_thread(exchange.load_markets)
    order = await in_thread(lambda: exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 49000))
    assert (order["status"], order["price"], order["amount"], order["filled"]) == (
        "open",
        49000.0,
        0.001,
        0.0,
    )
    assert order["clientOrderId"].startswith("x-")
    open_orders = await in_thread(lambda: exchange.fetch_open_orders("BTC/USDT"))
    assert [item["id"] for item in open_orders] == [order["id"]]
    fetched = await in_thread(lambda: exchange.fetch_order(order["id"], "BTC/USDT"))
    assert fetched["status"] == "open" and fetched["remaining"] == 0.001
    canceled = await in_thread(lambda: exchange.cancel_order(order["id"], "BTC/USDT"))
    assert canceled["status"] == "canceled"
    assert await in_thread(lambda: exchange.fetch_open_orders("BTC/USDT")) == []
    history = await in_thread(lambda: exchange.fetch_orders("BTC/USDT"))
    assert [(item["id"], item["status"]) for item in history] == [(order["id"], "canceled")]
    with pytest.raises(ccxt.OrderNotFound):
        await in_thread(lambda: exchange.cancel_order(order["id"], "BTC/USDT"))


async def test_market_order_fills_and_moves_the_balance(sim):
    exchange = make_client(sim.base)
    await in_thread(exchange.load_markets)
    before = await in_thread(exchange.fetch_balance)
    assert before["BTC"]["free"] == 2.0 and before["USDT"]["free"] == 100000.0
    order = await in_thread(lambda: exchange.create_order("BTC/USDT", "market", "buy", 0.6))
    assert order["status"] == "closed" and order["filled"] == 0.6
    assert order["average"] == pytest.approx((0.5 * 50000.01 + 0.1 * 50000.02) / 0.6)
    assert order["fee"]["currency"] == "BTC" and order["fee"]["cost"] == pytest.approx(0.0006)
    after = await in_thread(exchange.fetch_balance)
    assert after["BTC"]["free"] == pytest.approx(2.0 + 0.6 - 0.0006)
    assert after["USDT"]["free"] == pytest.approx(100000.0 - order["cost"])
    mine = await in_thread(lambda: exchange.fetch_my_trades("BTC/USDT"))
    assert [trade["amount"] for trade in mine] == [0.5, 0.1] and all(
        trade["takerOrMaker"] == "taker" for trade in mine
    )
    sell = await in_thread(
        lambda: exchange.create_order("BTC/USDT", "limit", "sell", 0.1, 49999.99, {"timeInForce": "IOC"})
    )
    assert sell["status"] == "closed" and sell["filled"] == 0.1


async def test_rejects_map_to_ccxt_exceptions(sim):
    exchange = make_client(sim.base)
    await in_thread(exchange.load_markets)
    with pytest.raises(ccxt.InsufficientFunds):
        await in_thread(lambda: exchange.create_order("BTC/USDT", "limit", "buy", 100, 49000))
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        await in_thread(
            lambda: exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 50001, {"postOnly": True})
        )
    with pytest.raises(ccxt.OrderNotFound):
        await in_thread(lambda: exchange.fetch_order("123456", "BTC/USDT"))
    wrong = make_client(sim.base)
    wrong.secret = "not-the-secret"
    with pytest.raises(ccxt.AuthenticationError):
        await in_thread(wrong.fetch_balance)


async def test_linear_perpetual_orders_positions_and_balance(sim):
    exchange = make_client(sim.base)
    await in_thread(exchange.load_markets)
    order = await in_thread(lambda: exchange.create_order("BTC/USDT:USDT", "market", "buy", 0.01))
    assert order["status"] == "closed" and order["filled"] == 0.01 and order["average"] == 50000.1
    resting = await in_thread(
        lambda: exchange.create_order("BTC/USDT:USDT", "limit", "sell", 0.01, 51000, {"postOnly": True})
    )
    assert resting["status"] == "open" and resting["postOnly"] is True
    assert [item["id"] for item in await in_thread(lambda: exchange.fetch_open_orders("BTC/USDT:USDT"))] == [
        resting["id"]
    ]
    assert (await in_thread(lambda: exchange.cancel_order(resting["id"], "BTC/USDT:USDT")))[
        "status"
    ] == "canceled"
    positions = await in_thread(lambda: exchange.fetch_positions(["BTC/USDT:USDT"]))
    assert positions[0]["contracts"] == 0.01 and positions[0]["side"] == "long"
    assert positions[0]["entryPrice"] == 50000.1
    balance = await in_thread(lambda: exchange.fetch_balance({"type": "future"}))
    # wallet minus the taker fee, plus the unrealized PnL at the mid (50000.0 vs entry 50000.1)
    assert balance["USDT"]["total"] == pytest.approx(100000 - 0.500001 - 0.001, abs=1e-6)
    book = await in_thread(lambda: exchange.fetch_order_book("BTC/USDT:USDT", 5))
    assert book["asks"][0] == [50000.1, 0.49]


async def test_rate_limit_answers_surface_as_ddos_protection():
    clock = SimulatedClock(wall_offset_ns=time.time_ns())
    sim = await BinanceSimHarness(clock=clock, spot_limits=RateLimitSettings(request_weight=28)).start()
    try:
        exchange = make_client(sim.base)
        exchange.options["fetchCurrencies"] = False
        exchange.options["fetchMargins"] = False
        exchange.options["fetchMarkets"] = {"types": ["spot"]}
        await in_thread(exchange.load_markets)  # 20
        await in_thread(lambda: exchange.fetch_order_book("BTC/USDT", 5))  # 25
        with pytest.raises(ccxt.DDoSProtection):
            await in_thread(lambda: exchange.fetch_order_book("BTC/USDT", 5))  # 30 > 28: 429
        with pytest.raises(ccxt.DDoSProtection):
            await in_thread(exchange.fetch_time)  # inside Retry-After: 418
    finally:
        await sim.stop()


async def test_ccxt_pro_watches_the_book_trades_and_orders_and_places_over_the_websocket_api(sim):
    """ccxt.pro: SUBSCRIBE depth@100ms + REST snapshot, trade stream, WS-API user data and order.place."""
    import ccxt.pro as pro

    ws = sim.urls["ws"]
    api: dict[str, Any] = ccxt_urls(sim.base)
    api["ws"] = {"spot": f"{ws}/ws", "margin": f"{ws}/ws", "ws-api": {"spot": f"{ws}/ws-api/v3"}}
    exchange = pro.binance(
        {
            "apiKey": API_KEY,
            "secret": API_SECRET,
            "enableRateLimit": False,
            "options": {"fetchCurrencies": False, "fetchMargins": False, "fetchMarkets": {"types": ["spot"]}},
            "urls": {"api": api},
        }
    )
    try:
        await exchange.load_markets()
        book = await asyncio.wait_for(exchange.watch_order_book("BTC/USDT"), 5)
        assert book["bids"][0] == [49999.99, 0.5] and book["nonce"] == sim.spot.engine.update_id(SYMBOL)
        orders = asyncio.create_task(exchange.watch_orders("BTC/USDT"))
        trades = asyncio.create_task(exchange.watch_trades("BTC/USDT"))
        await asyncio.sleep(0.3)  # both subscriptions are live
        placed = await exchange.create_order_ws("BTC/USDT", "limit", "sell", 0.01, 49999.99)
        assert (placed["status"], placed["filled"]) == ("closed", 0.01)
        watched = await asyncio.wait_for(orders, 5)
        assert [(order["id"], order["status"]) for order in watched][-1] == (placed["id"], "closed")
        assert [(trade["price"], trade["amount"]) for trade in await asyncio.wait_for(trades, 5)] == [
            (49999.99, 0.01)
        ]
        book = await asyncio.wait_for(exchange.watch_order_book("BTC/USDT"), 5)
        assert book["bids"][0] == [49999.99, 0.49] and book["nonce"] == sim.spot.engine.update_id(SYMBOL)
    finally:
        await exchange.close()
