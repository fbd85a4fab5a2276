"""Acceptance: ccxt ``edit_order`` (spot cancelReplace, USD-M modify) and ccxt.pro ``edit_order_ws``,
``fetch_trades_ws`` and ``fetch_ohlcv_ws`` against the simulator, only the URLs overridden."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import ccxt
import pytest

from hftkit.testing.binance_simulator import API_KEY, API_SECRET, SYMBOL, BinanceSimHarness, ccxt_urls

OPTIONS = {"fetchCurrencies": False, "fetchMargins": False}


@pytest.fixture
async def sim():
    harness = await BinanceSimHarness().start()
    yield harness
    await harness.stop()


def make_client(sim: BinanceSimHarness) -> Any:
    return ccxt.binance(
        {
            "apiKey": API_KEY,
            "secret": API_SECRET,
            "enableRateLimit": False,
            "timeout": 5000,
            "options": dict(OPTIONS),
            "urls": {"api": ccxt_urls(sim.base)},
        }
    )


async def in_thread(function: Callable[[], Any]) -> Any:
    return await asyncio.to_thread(function)


async def test_edit_order_on_spot_cancels_and_replaces(sim):
    exchange = make_client(sim)
    await in_thread(exchange.load_markets)
    order = await in_thread(lambda: exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 49000))
    edited = await in_thread(
        lambda: exchange.edit_order(order["id"], "BTC/USDT", "limit", "buy", 0.002, 48500)
    )
    assert edited["id"] != order["id"]  # cancel-replace: a new order
    assert (edited["status"], edited["price"], edited["amount"]) == ("open", 48500.0, 0.002)
    open_orders = await in_thread(lambda: exchange.fetch_open_orders("BTC/USDT"))
    assert [item["id"] for item in open_orders] == [edited["id"]]
    old = await in_thread(lambda: exchange.fetch_order(order["id"], "BTC/USDT"))
    assert old["status"] == "canceled"
    with pytest.raises(ccxt.ExchangeError):  # STOP_ON_FAILURE: the old order is gone, -2022
        await in_thread(lambda: exchange.edit_order(order["id"], "BTC/USDT", "limit", "buy", 0.002, 48000))


async def test_edit_order_on_usdm_modifies_in_place(sim):
    exchange = make_client(sim)
    await in_thread(exchange.load_markets)
    order = await in_thread(lambda: exchange.create_order("BTC/USDT:USDT", "limit", "buy", 0.01, 49000))
    edited = await in_thread(
        lambda: exchange.edit_order(order["id"], "BTC/USDT:USDT", "limit", "buy", 0.02, 49100.5)
    )
    assert edited["id"] == order["id"]  # modify: the same order
    assert (edited["status"], edited["price"], edited["amount"]) == ("open", 49100.5, 0.02)
    fetched = await in_thread(lambda: exchange.fetch_order(order["id"], "BTC/USDT:USDT"))
    assert (fetched["price"], fetched["amount"]) == (49100.5, 0.02)


async def test_ccxt_pro_edit_order_ws_fetch_trades_ws_and_fetch_ohlcv_ws(sim):
    import ccxt.pro as pro

    ws = sim.urls["ws"]
    api: dict[str, Any] = ccxt_urls(sim.base)
    api["ws"] = {
        "spot": f"{ws}/ws",
        "margin": f"{ws}/ws",
        "future": f"{ws}/ws",
        "ws-api": {"spot": f"{ws}/ws-api/v3", "linear": f"{ws}/ws-fapi/v1"},
    }
    exchange = pro.binance(
        {
            "apiKey": API_KEY,
            "secret": API_SECRET,
            "enableRateLimit": False,
            "options": dict(OPTIONS),
            "urls": {"api": api},
        }
    )
    try:
        await exchange.load_markets()
        await exchange.create_order("BTC/USDT", "market", "buy", 0.01)
        trades = await asyncio.wait_for(exchange.fetch_trades_ws("BTC/USDT"), 5)
        assert [(trade["price"], trade["amount"]) for trade in trades] == [(50000.01, 0.01)]
        candles = await asyncio.wait_for(exchange.fetch_ohlcv_ws("BTC/USDT", "1m"), 5)
        assert candles[-1][4] == 50000.01 and candles[-1][5] == 0.01
        spot = await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 49000)
        edited = await asyncio.wait_for(
            exchange.edit_order_ws(spot["id"], "BTC/USDT", "limit", "buy", 0.001, 48000), 5
        )
        assert edited["price"] == 48000.0 and edited["id"] != spot["id"]
        linear = await exchange.create_order("BTC/USDT:USDT", "limit", "buy", 0.01, 49000)
        modified = await asyncio.wait_for(
            exchange.edit_order_ws(linear["id"], "BTC/USDT:USDT", "limit", "buy", 0.02, 49200), 5
        )
        assert (modified["id"], modified["price"], modified["amount"]) == (linear["id"], 49200.0, 0.02)
        order = sim.usdm.engine.get_order(API_KEY, order_id=int(linear["id"]))
        assert order is not None and order.price == sim.usdm.instruments[SYMBOL].price_to_ticks("49200")
    finally:
        await exchange.close()


async def test_ccxt_pro_linear_streams_use_the_routed_paths(sim):
    """ccxt.pro rewrites its linear ``/ws`` to ``/public/ws`` (book, trades), ``/market/ws`` (klines)
    and ``/private/ws?listenKey=`` (orders): each gets its data from the simulator."""
    import ccxt.pro as pro

    ws = sim.urls["ws"]
    api: dict[str, Any] = ccxt_urls(sim.base)
    api["ws"] = {"spot": f"{ws}/ws", "margin": f"{ws}/ws", "linear": f"{ws}/ws"}
    exchange = pro.binance(
        {
            "apiKey": API_KEY,
            "secret": API_SECRET,
            "enableRateLimit": False,
            "options": {**OPTIONS, "defaultType": "future"},
            "urls": {"api": api},
        }
    )
    try:
        await exchange.load_markets()
        book = await asyncio.wait_for(exchange.watch_order_book("BTC/USDT:USDT"), 5)
        assert book["bids"][0] == [49999.9, 0.5]
        trades = asyncio.create_task(exchange.watch_trades("BTC/USDT:USDT"))
        candles = asyncio.create_task(exchange.watch_ohlcv("BTC/USDT:USDT", "1m"))
        orders = asyncio.create_task(exchange.watch_orders("BTC/USDT:USDT"))
        await asyncio.sleep(0.5)  # every subscription is live
        placed = await exchange.create_order("BTC/USDT:USDT", "market", "buy", 0.01)
        assert [(trade["price"], trade["amount"]) for trade in await asyncio.wait_for(trades, 5)] == [
            (50000.1, 0.01)
        ]
        assert (await asyncio.wait_for(candles, 5))[-1][4] == 50000.1
        watched = await asyncio.wait_for(orders, 5)
        assert watched[-1]["id"] == placed["id"]
    finally:
        await exchange.close()
