"""Kline history from the first second: minute candles built from a recording's trades.

A replay starts with an empty trade history, so a client that asks for the last 100 klines at
start (every historical-kline helper does) would get none. At start the simulator reads the
trades of the recording it is about to replay and lays them out as the minutes just before
now, as if the recorded session had happened up to the start; the replay then continues the
candles live. Sans-I/O: ``recorded_candles`` is a pure function over the files (run it in a
worker thread); ``SimVenue.backfill_candles`` takes the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hftkit.core.types import Instrument, Side
from hftkit.sim.engine.venue import MINUTE_NS, Candle
from hftkit.venues.binance.recording import RecordedTrade, RecordingDecoder, read_recording


def recorded_candles(paths: Sequence[str | Path], instrument: Instrument, end_ns: int) -> list[Candle]:
    """One-minute candles of the recording's trades, shifted so the last trade falls just before
    ``end_ns``; the minute of ``end_ns`` itself is left to the live replay."""
    trades: list[tuple[int, RecordedTrade]] = [
        (data_ns, message)
        for data_ns, message in read_recording(paths, RecordingDecoder(instrument))
        if isinstance(message, RecordedTrade)
    ]
    if not trades:
        return []
    current_minute = end_ns - end_ns % MINUTE_NS
    shift = current_minute - 1 - trades[-1][0]
    candles: list[Candle] = []
    for data_ns, trade in trades:
        time_ns = data_ns + shift
        minute = time_ns - time_ns % MINUTE_NS
        candle = candles[-1] if candles else None
        if candle is None or candle.open_time_ns != minute:
            candle = Candle(minute, trade.price, trade.price, trade.price, trade.price)
            candles.append(candle)
        candle.high = max(candle.high, trade.price)
        candle.low = min(candle.low, trade.price)
        candle.close = trade.price
        candle.volume += trade.quantity
        candle.quote_volume += trade.price * trade.quantity
        candle.trades += 1
        if trade.aggressor is Side.BUY:
            candle.taker_buy_volume += trade.quantity
            candle.taker_buy_quote_volume += trade.price * trade.quantity
    return candles


__all__ = ["recorded_candles"]
