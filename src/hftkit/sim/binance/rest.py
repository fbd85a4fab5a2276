"""REST endpoints of the Binance-compatible simulator: general, market data, listen keys, ``/sapi``.

Each handler takes a ``Call`` (checked params, the authenticated account, the market state)
and returns the JSON value Binance would answer, or raises ``BinanceApiError``. Routing,
weights, signatures and faults live in ``binance_server``; order entry and queries in
``binance_orders``; balances and positions in ``binance_accounts``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import orjson

from hftkit.core.numbers import Rounding
from hftkit.core.types import Instrument
from hftkit.sim.binance.params import BinanceApiError, Params, illegal, mandatory
from hftkit.sim.binance.state import ListenKey, MarketState
from hftkit.sim.binance.wire import (
    Formats,
    book_ticker_fields,
    kline_row,
    merge_candles,
    ms,
    pad,
    rest_aggregate_trade,
    rest_ticker,
    rest_trade,
    ticker_figures,
)
from hftkit.sim.engine.matching import DepthSnapshot
from hftkit.sim.engine.venue import Candle, TickerStatistics

KLINE_INTERVALS_MS = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}
PERPETUAL_DELIVERY_MS = 4_133_404_800_000


ComponentT = TypeVar("ComponentT")


class ServerView(Protocol):
    """What handlers may ask of the server beyond their own market."""

    def depth_snapshot(self, state: MarketState, symbol: str, limit: int) -> DepthSnapshot: ...

    def listen_key_closed(self, state: MarketState, listen_key: ListenKey) -> None: ...

    def market_states(self) -> list[MarketState]: ...

    def component(self, state: MarketState, kind: type[ComponentT]) -> ComponentT | None:
        """The market's part of type ``kind`` (``AlgoOrders``, ``FuturesMargin``, ``SpotStops``).

        Looked up by type so that this module, which those parts build on, never names them.
        """
        ...


@dataclass
class Call:
    """One authenticated, rate-checked request as the handlers see it."""

    params: Params
    state: MarketState
    account: str | None
    api_key: str | None
    server: ServerView
    headers: dict[str, str] = field(default_factory=dict)

    def require_account(self) -> str:
        assert self.account is not None, "a signed route always has an account"
        return self.account


Handler = Callable[[Call], Awaitable[Any]]


# general -----------------------------------------------------------------------------------


async def ping(call: Call) -> Any:
    return {}


async def server_time(call: Call) -> Any:
    return {"serverTime": ms(call.state.clock.time_ns())}


def _symbol_list(call: Call) -> list[str] | None:
    params = call.params
    if "symbol" in params:
        return [params.symbol()]
    raw = params.get("symbols")
    if raw is None:
        return None
    try:
        symbols = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise illegal("symbols", '^\\["[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}\\]$') from None
    if not isinstance(symbols, list) or not all(isinstance(item, str) for item in symbols):
        raise illegal("symbols", '^\\["[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}\\]$')
    return symbols


def _maxima(instrument: Instrument, default_max_quantity: str) -> tuple[int, int]:
    """LOT_SIZE maxQty and PRICE_FILTER maxPrice in lots and ticks (on the grids, at least one step)."""
    max_lots = instrument.max_quantity
    if max_lots is None:
        max_lots = max(1, instrument.lots.to_steps(default_max_quantity, Rounding.DOWN))
    max_price = max(1, instrument.ticks.to_steps("10000000", Rounding.DOWN))
    return max_lots, max_price


def _spot_symbol_info(state: MarketState, instrument: Instrument) -> dict[str, Any]:
    formats = state.formats(instrument.symbol)
    max_lots, max_price = _maxima(instrument, "9000000")
    notional_text = pad(f"{instrument.min_notional.normalize():f}", 8)
    return {
        "symbol": instrument.symbol,
        "status": "TRADING",
        "baseAsset": instrument.base,
        "baseAssetPrecision": formats.quantity_scale,
        "quoteAsset": instrument.quote,
        "quotePrecision": formats.price_scale,
        "quoteAssetPrecision": formats.price_scale,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": [
            "LIMIT",
            "LIMIT_MAKER",
            "MARKET",
            "STOP_LOSS",
            "STOP_LOSS_LIMIT",
            "TAKE_PROFIT",
            "TAKE_PROFIT_LIMIT",
        ],
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": formats.price(1),
                "maxPrice": formats.price(max_price),
                "tickSize": formats.price(1),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": formats.quantity(instrument.min_quantity),
                "maxQty": formats.quantity(max_lots),
                "stepSize": formats.quantity(1),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": formats.zero_quantity(),
                "maxQty": formats.quantity(max_lots),
                "stepSize": formats.zero_quantity(),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": notional_text,
                "applyMinToMarket": True,
                "maxNotional": "9000000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": state.max_num_orders},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_MAKER"],
    }


def _futures_symbol_info(state: MarketState, instrument: Instrument) -> dict[str, Any]:
    formats = state.formats(instrument.symbol)
    max_lots, max_price = _maxima(instrument, "1000000")
    return {
        "symbol": instrument.symbol,
        "pair": instrument.symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": PERPETUAL_DELIVERY_MS,
        "onboardDate": 1_569_398_400_000,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": instrument.base,
        "quoteAsset": instrument.quote,
        "marginAsset": instrument.quote,
        "pricePrecision": formats.price_precision,
        "quantityPrecision": formats.quantity_precision,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": formats.price(1),
                "maxPrice": formats.price(max_price),
                "tickSize": formats.price(1),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": formats.quantity(instrument.min_quantity),
                "maxQty": formats.quantity(max_lots),
                "stepSize": formats.quantity(1),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": formats.quantity(instrument.min_quantity),
                "maxQty": formats.quantity(max_lots),
                "stepSize": formats.quantity(1),
            },
            {"filterType": "MAX_NUM_ORDERS", "limit": state.max_num_orders},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": f"{instrument.min_notional.normalize():f}"},
            {
                "filterType": "PERCENT_PRICE",
                "multiplierUp": "1.0500",
                "multiplierDown": "0.9500",
                "multiplierDecimal": "4",
            },
        ],
        # the conditional types are taken on the algo-order endpoints (POST /fapi/v1/algoOrder)
        "orderTypes": [
            "LIMIT",
            "MARKET",
            "STOP",
            "STOP_MARKET",
            "TAKE_PROFIT",
            "TAKE_PROFIT_MARKET",
            "TRAILING_STOP_MARKET",
        ],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }


async def exchange_info(call: Call) -> Any:
    state = call.state
    symbols = _symbol_list(call)
    instruments = state.venue.instruments
    if symbols is not None:
        for symbol in symbols:
            if symbol not in instruments:
                raise BinanceApiError(-1121, "Invalid symbol.")
        listed = [instruments[symbol] for symbol in symbols]
    else:
        listed = list(instruments.values())
    body: dict[str, Any] = {
        "timezone": "UTC",
        "serverTime": ms(state.clock.time_ns()),
        "rateLimits": state.limits.exchange_info(),
        "exchangeFilters": [],
    }
    if state.is_spot:
        body["symbols"] = [_spot_symbol_info(state, instrument) for instrument in listed]
    else:
        body["futuresType"] = "U_MARGINED"
        assets = sorted({instrument.quote for instrument in listed})
        body["assets"] = [
            {"asset": asset, "marginAvailable": True, "autoAssetExchange": "0"} for asset in assets
        ]
        body["symbols"] = [_futures_symbol_info(state, instrument) for instrument in listed]
    return body


# market data -------------------------------------------------------------------------------


def _market_symbol(call: Call) -> tuple[str, Formats]:
    symbol = call.params.symbol()
    return symbol, call.state.formats(symbol)


async def depth(call: Call) -> Any:
    symbol, formats = _market_symbol(call)
    limit = call.params.limit(100 if call.state.is_spot else 500, 5000 if call.state.is_spot else 1000)
    snapshot = call.server.depth_snapshot(call.state, symbol, limit)
    body: dict[str, Any] = {"lastUpdateId": snapshot.update_id}
    if not call.state.is_spot:
        now = ms(call.state.clock.time_ns())
        body["E"] = now
        body["T"] = now
    body["bids"] = formats.levels(snapshot.bids)
    body["asks"] = formats.levels(snapshot.asks)
    return body


async def trades(call: Call) -> Any:
    symbol, formats = _market_symbol(call)
    limit = call.params.limit(500, 1000)
    return [rest_trade(trade, formats) for trade in call.state.venue.recent_trades(symbol, limit)]


async def historical_trades(call: Call) -> Any:
    """``historicalTrades`` / WS ``trades.historical``: from ``fromId`` on, else the latest."""
    symbol, formats = _market_symbol(call)
    limit = call.params.limit(500, 1000)
    from_id = call.params.optional_integer("fromId")
    rows = call.state.venue.recent_trades(symbol, 1 << 30)
    if from_id is None:
        selected = rows[-limit:]
    else:
        selected = [trade for trade in rows if trade.trade_id >= from_id][:limit]
    return [rest_trade(trade, formats) for trade in selected]


async def aggregate_trades(call: Call) -> Any:
    symbol, formats = _market_symbol(call)
    params = call.params
    limit = params.limit(500, 1000)
    from_id = params.optional_integer("fromId")
    start = params.optional_integer("startTime")
    end = params.optional_integer("endTime")
    rows = call.state.venue.recent_trades(symbol, 1 << 30)
    selected = [
        trade
        for trade in rows
        if (from_id is None or trade.trade_id >= from_id)
        and (start is None or ms(trade.time_ns) >= start)
        and (end is None or ms(trade.time_ns) <= end)
    ]
    selected = selected[:limit] if from_id is not None or start is not None else selected[-limit:]
    return [rest_aggregate_trade(trade, formats) for trade in selected]


async def klines(call: Call) -> Any:
    symbol, formats = _market_symbol(call)
    params = call.params
    interval = params.text("interval")
    interval_ms = KLINE_INTERVALS_MS.get(interval)
    if interval_ms is None:
        raise BinanceApiError(-1120, "Invalid interval.")
    limit = params.limit(500, 1500 if not call.state.is_spot else 1000)
    start = params.optional_integer("startTime")
    end = params.optional_integer("endTime")
    candles = merge_candles(call.state.venue.candles(symbol, 1440), interval_ms)
    selected = [
        candle
        for candle in candles
        if (start is None or ms(candle.open_time_ns) >= start)
        and (end is None or ms(candle.open_time_ns) <= end)
    ]
    selected = selected[:limit] if start is not None else selected[-limit:]
    return [kline_row(candle, formats, interval_ms) for candle in selected]


_WINDOW_UNITS_MINUTES = {"m": (1, 59), "h": (60, 23), "d": (1440, 7)}


def _window_minutes(text: str) -> int:
    """``windowSize``: 1m..59m, 1h..23h, 1d..7d (the venue's accepted range)."""
    unit = _WINDOW_UNITS_MINUTES.get(text[-1:])
    if unit is None or not text[:-1].isdigit() or not 1 <= int(text[:-1]) <= unit[1]:
        raise BinanceApiError(-1100, "Invalid windowSize.")
    return int(text[:-1]) * unit[0]


async def rolling_ticker(call: Call) -> Any:
    """``GET /api/v3/ticker`` / WS ``ticker``: rolling-window statistics from the minute candles.

    Candles start at whole minutes, so the window is the minutes that overlap it; the
    simulator keeps one day of candles, so windows over 1d report that day."""
    minutes = _window_minutes(call.params.get("windowSize") or "1d")
    now = call.state.clock.time_ns()
    return _window_tickers(call, now - minutes * 60 * 10**9, now)


async def trading_day_ticker(call: Call) -> Any:
    """``GET /api/v3/ticker/tradingDay`` / WS ``ticker.tradingDay``: since 00:00 of the day in
    ``timeZone`` (hours, default 0 = UTC)."""
    text = call.params.get("timeZone") or "0"
    try:
        hours = int(text)
    except ValueError:
        raise BinanceApiError(-1100, "Invalid timeZone.") from None
    if not -12 <= hours <= 14:
        raise BinanceApiError(-1100, "Invalid timeZone.")
    now = call.state.clock.time_ns()
    local = now + hours * 3_600 * 10**9
    return _window_tickers(call, local - local % (86_400 * 10**9) - hours * 3_600 * 10**9, now)


def _window_tickers(call: Call, start: int, now: int) -> Any:
    state = call.state
    params = call.params
    if "symbol" not in params and "symbols" not in params:
        raise BinanceApiError(-1102, "Param 'symbol' or 'symbols' must be sent, but both were empty/null!")
    symbols, single = symbols_or_all(call)
    response_type = params.get("type") or "FULL"
    if response_type not in ("FULL", "MINI"):
        raise illegal("type", "FULL, MINI")
    rows = []
    for symbol in symbols:
        formats = state.formats(symbol)
        candles = [
            candle for candle in state.venue.candles(symbol, 1440) if candle.open_time_ns + 60 * 10**9 > start
        ]
        statistics = _window_statistics(symbol, candles, start, now)
        figures = ticker_figures(statistics, formats)
        row: dict[str, Any] = {"symbol": symbol}
        if response_type == "FULL":
            row.update(
                priceChange=figures["priceChange"],
                priceChangePercent=figures["priceChangePercent"],
                weightedAvgPrice=figures["weightedAvgPrice"],
            )
        row.update(
            openPrice=figures["openPrice"],
            highPrice=figures["highPrice"],
            lowPrice=figures["lowPrice"],
            lastPrice=figures["lastPrice"],
            volume=figures["volume"],
            quoteVolume=figures["quoteVolume"],
            openTime=ms(statistics.open_time_ns),
            closeTime=ms(statistics.close_time_ns),
            firstId=statistics.first_trade_id,
            lastId=statistics.last_trade_id,
            count=statistics.count,
        )
        rows.append(row)
    return rows[0] if single else rows


def _window_statistics(symbol: str, candles: list[Candle], start_ns: int, now_ns: int) -> TickerStatistics:
    if not candles:
        return TickerStatistics(symbol, open_time_ns=start_ns, close_time_ns=now_ns)
    traded = [candle for candle in candles if candle.trades]
    return TickerStatistics(
        symbol,
        open_price=candles[0].open,
        high_price=max(candle.high for candle in candles),
        low_price=min(candle.low for candle in candles),
        last_price=candles[-1].close,
        volume=sum(candle.volume for candle in candles),
        quote_volume=sum(candle.quote_volume for candle in candles),
        count=sum(candle.trades for candle in candles),
        first_trade_id=traded[0].first_trade_id if traded else -1,
        last_trade_id=traded[-1].last_trade_id if traded else -1,
        open_time_ns=start_ns,
        close_time_ns=now_ns,
    )


def _best(state: MarketState, symbol: str) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    return state.engine.best_bid(symbol), state.engine.best_ask(symbol)


def symbols_or_all(call: Call) -> tuple[list[str], bool]:
    symbols = _symbol_list(call)
    instruments = call.state.venue.instruments
    if symbols is None:
        return list(instruments), False
    for symbol in symbols:
        if symbol not in instruments:
            raise BinanceApiError(-1121, "Invalid symbol.")
    return symbols, "symbol" in call.params


async def ticker_24h(call: Call) -> Any:
    state = call.state
    symbols, single = symbols_or_all(call)
    now = state.clock.time_ns()
    rows = []
    for symbol in symbols:
        bid, ask = _best(state, symbol)
        rows.append(rest_ticker(state.venue.ticker(symbol, now), state.formats(symbol), bid, ask))
    return rows[0] if single else rows


async def ticker_price(call: Call) -> Any:
    state = call.state
    symbols, single = symbols_or_all(call)
    now = state.clock.time_ns()
    rows = []
    for symbol in symbols:
        statistics = state.venue.ticker(symbol, now)
        row: dict[str, Any] = {"symbol": symbol, "price": state.formats(symbol).price(statistics.last_price)}
        if not state.is_spot:
            row["time"] = ms(now)
        rows.append(row)
    return rows[0] if single else rows


async def book_ticker(call: Call) -> Any:
    state = call.state
    symbols, single = symbols_or_all(call)
    rows = []
    for symbol in symbols:
        bid, ask = _best(state, symbol)
        row: dict[str, Any] = {"symbol": symbol}
        row.update(book_ticker_fields(state.formats(symbol), bid, ask))
        if not state.is_spot:
            row["time"] = ms(state.clock.time_ns())
            row["lastUpdateId"] = state.engine.update_id(symbol)
        rows.append(row)
    return rows[0] if single else rows


async def average_price(call: Call) -> Any:
    symbol, formats = _market_symbol(call)
    state = call.state
    now = state.clock.time_ns()
    window = [trade for trade in state.venue.recent_trades(symbol) if trade.time_ns >= now - 300 * 10**9]
    volume = sum(trade.quantity for trade in window)
    quote = sum(trade.price * trade.quantity for trade in window)
    price = (
        formats.average(quote, volume)
        if volume
        else formats.price(state.venue.ticker(symbol, now).last_price)
    )
    return {"mins": 5, "price": price, "closeTime": ms(now)}


def mark_price(state: MarketState, symbol: str) -> int:
    """Mid of the best bid/ask in ticks (rounded down), else the last trade price."""
    bid, ask = _best(state, symbol)
    if bid is not None and ask is not None:
        return (bid[0] + ask[0]) // 2
    last = state.venue.ticker(symbol, state.clock.time_ns()).last_price
    if last:
        return last
    return (bid or ask or (0, 0))[0]


# listen keys -------------------------------------------------------------------------------


async def create_listen_key(call: Call) -> Any:
    return {"listenKey": call.state.create_listen_key(call.require_account()).key}


async def keepalive_listen_key(call: Call) -> Any:
    state = call.state
    key = call.params.get("listenKey")
    account = call.require_account()
    if key is None:
        if state.is_spot:
            raise mandatory("listenKey")
        found = next((item for item in state.listen_keys.values() if item.account == account), None)
        if found is None:
            raise BinanceApiError(-1125, "This listenKey does not exist.")
        key = found.key
    listen_key = state.keepalive(key, account)
    return {} if state.is_spot else {"listenKey": listen_key.key}


async def close_listen_key(call: Call) -> Any:
    state = call.state
    key = call.params.get("listenKey")
    account = call.require_account()
    if key is None:
        if state.is_spot:
            raise mandatory("listenKey")
        found = next((item for item in state.listen_keys.values() if item.account == account), None)
        if found is None:
            return {}
        key = found.key
    listen_key = state.close_listen_key(key, account)
    call.server.listen_key_closed(state, listen_key)
    return {}


# /sapi: what ccxt's load_markets calls with keys set ----------------------------------------


async def capital_config(call: Call) -> Any:
    """``/sapi/v1/capital/config/getall``: one entry per asset the simulator knows."""
    account = call.require_account()
    assets: set[str] = set()
    for state in call.server.market_states():
        for instrument in state.venue.instruments.values():
            assets.add(instrument.base)
            assets.add(instrument.quote)
    spot = call.state
    holder = spot.accounts.get(account)
    rows = []
    for asset in sorted(assets):
        balance = holder.balances.get(asset)
        decimals = spot.accounts.decimals(asset)
        multiple = pad(f"{Decimal(1).scaleb(-decimals):f}", 8)
        rows.append(
            {
                "coin": asset,
                "depositAllEnable": True,
                "withdrawAllEnable": True,
                "name": asset,
                "free": spot.asset_text(asset, balance.free if balance else 0),
                "locked": spot.asset_text(asset, balance.locked if balance else 0),
                "freeze": "0",
                "withdrawing": "0",
                "ipoing": "0",
                "ipoable": "0",
                "storage": "0",
                "isLegalMoney": False,
                "trading": True,
                "networkList": [
                    {
                        "network": asset,
                        "coin": asset,
                        "withdrawIntegerMultiple": multiple,
                        "isDefault": True,
                        "depositEnable": True,
                        "withdrawEnable": True,
                        "depositDesc": "",
                        "withdrawDesc": "",
                        "specialTips": "",
                        "name": asset,
                        "resetAddressStatus": False,
                        "addressRegex": "",
                        "memoRegex": "",
                        "withdrawFee": "0",
                        "withdrawMin": multiple,
                        "withdrawMax": "9999999999.99999999",
                        "minConfirm": 1,
                        "unLockConfirm": 0,
                        "sameAddress": False,
                        "estimatedArrivalTime": 1,
                        "busy": False,
                        "contractAddressUrl": "",
                        "contractAddress": "",
                    }
                ],
            }
        )
    return rows


async def empty_list(call: Call) -> Any:
    """Margin pair lists: the simulator offers no margin trading."""
    return []


async def system_status(call: Call) -> Any:
    return {"status": 0, "msg": "normal"}


async def inverse_exchange_info(call: Call) -> Any:
    """``/dapi/v1/exchangeInfo``: the simulator lists no coin-margined contracts."""
    return {
        "timezone": "UTC",
        "serverTime": ms(call.state.clock.time_ns()),
        "rateLimits": [],
        "exchangeFilters": [],
        "symbols": [],
    }
