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
from typing import Any, Protocol

import orjson

from hftkit.core.numbers import Rounding
from hftkit.core.types import Instrument
from hftkit.sim.binance_params import BinanceApiError, Params, illegal, mandatory
from hftkit.sim.binance_state import ListenKey, MarketState
from hftkit.sim.binance_wire import (
    Formats,
    book_ticker_fields,
    kline_row,
    merge_candles,
    ms,
    pad,
    rest_aggregate_trade,
    rest_ticker,
    rest_trade,
)
from hftkit.sim.matching import DepthSnapshot

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


class ServerView(Protocol):
    """What handlers may ask of the server beyond their own market."""

    def depth_snapshot(self, state: MarketState, symbol: str, limit: int) -> DepthSnapshot: ...

    def listen_key_closed(self, state: MarketState, listen_key: ListenKey) -> None: ...

    def market_states(self) -> list[MarketState]: ...


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
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "amendAllowed": False,
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
        "orderTypes": ["LIMIT", "MARKET"],
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


def _best(state: MarketState, symbol: str) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    return state.engine.best_bid(symbol), state.engine.best_ask(symbol)


def _symbols_or_all(call: Call) -> tuple[list[str], bool]:
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
    symbols, single = _symbols_or_all(call)
    now = state.clock.time_ns()
    rows = []
    for symbol in symbols:
        bid, ask = _best(state, symbol)
        rows.append(rest_ticker(state.venue.ticker(symbol, now), state.formats(symbol), bid, ask))
    return rows[0] if single else rows


async def ticker_price(call: Call) -> Any:
    state = call.state
    symbols, single = _symbols_or_all(call)
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
    symbols, single = _symbols_or_all(call)
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


async def premium_index(call: Call) -> Any:
    state = call.state
    symbols, single = _symbols_or_all(call)
    now = ms(state.clock.time_ns())
    hours8 = 8 * 3_600_000
    rows = []
    for symbol in symbols:
        formats = state.formats(symbol)
        mark = formats.price(mark_price(state, symbol))
        rows.append(
            {
                "symbol": symbol,
                "markPrice": mark,
                "indexPrice": mark,
                "estimatedSettlePrice": mark,
                "lastFundingRate": "0.00010000",
                "interestRate": "0.00010000",
                "nextFundingTime": now - now % hours8 + hours8,
                "time": now,
            }
        )
    return rows[0] if single else rows


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
