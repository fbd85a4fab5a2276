"""Kline history from the first second: a replay's recording laid out as the minutes before now."""

from __future__ import annotations

import asyncio
import itertools
import time

import aiohttp
import pytest

from hftkit.core.types import Side
from hftkit.datasets import shared_data_dir
from hftkit.sim.config import config_from_mapping
from hftkit.sim.engine.backfill import recorded_candles
from hftkit.sim.engine.venue import MINUTE_NS, Candle, SimVenue
from hftkit.sim.runner import Simulator
from hftkit.venues.binance.recording import RecordedTrade, RecordingDecoder, read_recording

from .conftest import make_engine, spot_instrument


@pytest.fixture(autouse=True)
def _recordings() -> None:
    shared_data_dir()


def spot_recording() -> tuple[list, object]:
    simulator = Simulator(config_from_mapping({"venues": ["binance-spot"], "symbols": ["BTCUSDT"]}))
    driver = next(iter(simulator.drivers.values()))
    return driver.paths, driver.instrument


def test_recorded_candles_end_just_before_now_and_hold_every_trade():
    paths, instrument = spot_recording()
    now = 1_800_000_000_000_000_000 + 17 * 10**9
    candles = recorded_candles(paths, instrument, now)
    trades = [
        m for _, m in read_recording(paths, RecordingDecoder(instrument)) if isinstance(m, RecordedTrade)
    ]
    assert candles and len(trades) == sum(candle.trades for candle in candles)
    assert sum(candle.volume for candle in candles) == sum(trade.quantity for trade in trades)
    assert candles[-1].open_time_ns == now - now % MINUTE_NS - MINUTE_NS  # the minute before now's
    assert candles[-1].close == trades[-1].price
    assert all(earlier.open_time_ns < later.open_time_ns for earlier, later in itertools.pairwise(candles))
    assert all(candle.open_time_ns % MINUTE_NS == 0 and candle.low <= candle.high for candle in candles)


def test_backfill_goes_before_the_live_minutes_only():
    venue = SimVenue("binance", make_engine())
    symbol = spot_instrument().symbol
    venue.apply_depth(symbol, [(4_999_000, 1000)], [(5_001_000, 1000)])
    venue.apply_market_trade(symbol, 5_001_000, 10, Side.BUY)  # a live minute
    live = venue.candles(symbol)[0].open_time_ns
    history = [
        Candle(live + offset * MINUTE_NS, 100, 101, 99, 100, volume=1, trades=1) for offset in range(-5, 2)
    ]
    assert venue.backfill_candles(symbol, history) == 5  # the 5 minutes before; the live ones stay
    minutes = [(candle.open_time_ns - live) // MINUTE_NS for candle in venue.candles(symbol)]
    assert minutes == [-5, -4, -3, -2, -1, 0] and venue.candles(symbol)[-1].volume == 10


async def test_klines_have_history_right_after_start():
    config = config_from_mapping({"venues": ["binance-spot"], "symbols": ["BTCUSDT"], "speed": 1})
    async with Simulator(config) as simulator:
        started_ms = time.time() * 1000
        url = simulator.urls["binance_rest"] + "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1000"
        async with aiohttp.ClientSession() as session:
            rows: list = []
            for _ in range(100):
                async with session.get(url) as response:
                    rows = await response.json()
                if len([row for row in rows if row[0] < started_ms - 60_000]) >= 2:
                    break
                await asyncio.sleep(0.05)
    history = [row for row in rows if row[0] < started_ms - 60_000]
    assert len(history) >= 2 and all(float(row[5]) > 0 for row in history)
