"""Binance wire shapes of the simulator's values: orders, fills, book, trades, tickers (sans-I/O).

Everything here turns engine values (integer ticks, lots, asset units) into the JSON objects
Binance sends, with the venue's own decimal formatting: spot pads prices and quantities to
8 decimals (``"50000.01000000"``), USD-M uses the instrument's precision. No I/O, no clock:
callers pass times in.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hftkit.core.numbers import format_scaled
from hftkit.core.types import ContractKind, Instrument, OrderStatus, OrderType, Side, TimeInForce
from hftkit.sim.engine.errors import CloseReason
from hftkit.sim.engine.matching import BookUpdate, Execution, SimOrder, TradePrint
from hftkit.sim.engine.venue import Candle, TickerStatistics

SPOT_DECIMALS = 8
NANOS_PER_MS = 1_000_000

SIDES = {Side.BUY: "BUY", Side.SELL: "SELL"}
ORDER_TYPES = {OrderType.LIMIT: "LIMIT", OrderType.MARKET: "MARKET", OrderType.LIMIT_MAKER: "LIMIT_MAKER"}
TIME_IN_FORCE = {TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK"}


def ms(time_ns: int) -> int:
    return time_ns // NANOS_PER_MS


def _scale_of(step: Decimal) -> int:
    exponent = step.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


class Formats:
    """Decimal text of one instrument's prices, quantities and quote amounts, in Binance style."""

    __slots__ = ("instrument", "notional_scale", "notional_step", "price_scale", "quantity_scale", "spot")

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.spot = instrument.kind is ContractKind.SPOT
        tick_scale = instrument.ticks.decimals
        lot_scale = instrument.lots.decimals
        self.notional_step = instrument.tick_size * instrument.lot_size * instrument.contract_size
        notional_scale = _scale_of(self.notional_step)
        if self.spot:
            self.price_scale = max(SPOT_DECIMALS, tick_scale)
            self.quantity_scale = max(SPOT_DECIMALS, lot_scale)
            self.notional_scale = max(SPOT_DECIMALS, notional_scale)
        else:
            self.price_scale = tick_scale
            self.quantity_scale = lot_scale
            self.notional_scale = notional_scale

    @property
    def price_precision(self) -> int:
        return self.instrument.ticks.decimals

    @property
    def quantity_precision(self) -> int:
        return self.instrument.lots.decimals

    def price(self, ticks: int) -> str:
        return pad(self.instrument.ticks_to_price(ticks), self.price_scale)

    def quantity(self, lots: int) -> str:
        return pad(self.instrument.lots_to_quantity(lots), self.quantity_scale)

    def quote(self, notional_units: int) -> str:
        """Price * quantity amounts (cumulative quote, quote volume) from tick*lot units."""
        return decimal_text(self.notional_step * notional_units, self.notional_scale)

    def average(self, notional_units: int, lots: int) -> str:
        """Average fill price (quote / quantity), to the price scale, rounded half-even."""
        if not lots:
            return pad("0", self.price_scale)
        value = self.notional_step * notional_units / (self.instrument.lot_size * lots)
        value /= self.instrument.contract_size
        return decimal_text(value, self.price_scale)

    def zero_price(self) -> str:
        return pad("0", self.price_scale)

    def zero_quantity(self) -> str:
        return pad("0", self.quantity_scale)

    def levels(self, levels: list[tuple[int, int]]) -> list[list[str]]:
        price, quantity = self.price, self.quantity
        return [[price(level_price), quantity(size)] for level_price, size in levels]


def pad(text: str, scale: int) -> str:
    """Right-pad a plain decimal string with zeros to ``scale`` decimals (never truncates)."""
    whole, _point, fraction = text.partition(".")
    if len(fraction) >= scale:
        return text
    if scale == 0:
        return whole
    return f"{whole}.{fraction.ljust(scale, '0')}"


def decimal_text(value: Decimal, scale: int) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-scale)):f}" if scale else f"{value.quantize(Decimal(1)):f}"


def rate_text(ppm: int) -> str:
    """A fee rate in parts per million as Binance's 8-decimal fraction (``1000 -> "0.00100000"``)."""
    return f"{Decimal(ppm) / Decimal(1_000_000):.8f}"


def units_text(units: int, decimals: int, scale: int = SPOT_DECIMALS) -> str:
    """Asset units (``10**-decimals``) as text with at least ``scale`` decimals."""
    return pad(format_scaled(units, decimals), scale)


# orders ------------------------------------------------------------------------------------


def spot_status(status: OrderStatus, close_reason: CloseReason | None) -> str:
    if close_reason is CloseReason.SELF_TRADE_PREVENTION:
        return "EXPIRED_IN_MATCH"
    return status.name


def futures_status(status: OrderStatus, close_reason: CloseReason | None) -> str:
    if close_reason is CloseReason.SELF_TRADE_PREVENTION:
        return "EXPIRED_IN_MATCH"
    return status.name


def spot_order_ack(order: SimOrder, transact_ms: int) -> dict[str, Any]:
    return {
        "symbol": order.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "transactTime": transact_ms,
    }


def spot_order_result(order: SimOrder, formats: Formats, transact_ms: int) -> dict[str, Any]:
    """The RESULT level of ``POST /api/v3/order`` (ACK plus the order's state)."""
    body = spot_order_ack(order, transact_ms)
    body.update(_spot_order_state(order, formats))
    # a MARKET order never works on the book; a limit order works from its acceptance
    body["workingTime"] = -1 if order.order_type is OrderType.MARKET else ms(order.created_ns)
    body["selfTradePreventionMode"] = "EXPIRE_MAKER"
    return body


def _spot_order_state(order: SimOrder, formats: Formats) -> dict[str, Any]:
    return {
        "price": formats.price(order.price) if order.price else formats.zero_price(),
        "origQty": formats.quantity(order.quantity),
        "executedQty": formats.quantity(order.filled),
        "origQuoteOrderQty": pad("0", formats.notional_scale),
        "cummulativeQuoteQty": formats.quote(order.quote_filled),
        "status": spot_status(order.status, order.close_reason),
        "timeInForce": TIME_IN_FORCE[order.time_in_force],
        "type": ORDER_TYPES[order.order_type],
        "side": SIDES[order.side],
    }


def spot_fill(execution: Execution, formats: Formats, fee_text: str) -> dict[str, Any]:
    return {
        "price": formats.price(execution.price),
        "qty": formats.quantity(execution.quantity),
        "commission": fee_text,
        "commissionAsset": execution.fee_asset,
        "tradeId": execution.trade_id,
    }


def spot_order_query(order: SimOrder, formats: Formats) -> dict[str, Any]:
    """``GET /api/v3/order`` / ``openOrders`` / ``allOrders`` row."""
    body: dict[str, Any] = {
        "symbol": order.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
    }
    state = _spot_order_state(order, formats)
    body["price"] = state["price"]
    body["origQty"] = state["origQty"]
    body["executedQty"] = state["executedQty"]
    body["cummulativeQuoteQty"] = state["cummulativeQuoteQty"]
    body["status"] = state["status"]
    body["timeInForce"] = state["timeInForce"]
    body["type"] = state["type"]
    body["side"] = state["side"]
    body["stopPrice"] = formats.zero_price()
    body["icebergQty"] = formats.zero_quantity()
    body["time"] = ms(order.created_ns)
    body["updateTime"] = ms(order.updated_ns)
    body["isWorking"] = order.is_open or order.order_type is not OrderType.MARKET
    body["workingTime"] = ms(order.created_ns)
    body["origQuoteOrderQty"] = state["origQuoteOrderQty"]
    body["selfTradePreventionMode"] = "EXPIRE_MAKER"
    return body


def spot_cancel(order: SimOrder, formats: Formats, cancel_client_id: str, transact_ms: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "symbol": order.symbol,
        "origClientOrderId": order.client_order_id,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": cancel_client_id,
        "transactTime": transact_ms,
    }
    body.update(_spot_order_state(order, formats))
    body["selfTradePreventionMode"] = "EXPIRE_MAKER"
    return body


def futures_order(
    order: SimOrder,
    formats: Formats,
    *,
    reduce_only: bool,
    time_in_force: str,
    as_new: bool = False,
    with_time: bool = False,
) -> dict[str, Any]:
    """USD-M order object (RESULT / GET / DELETE share it); ``as_new`` renders the ACK state."""
    filled = 0 if as_new else order.filled
    quote_filled = 0 if as_new else order.quote_filled
    status = "NEW" if as_new else futures_status(order.status, order.close_reason)
    order_type = "LIMIT" if order.order_type is OrderType.LIMIT_MAKER else ORDER_TYPES[order.order_type]
    body: dict[str, Any] = {
        "orderId": order.order_id,
        "symbol": order.symbol,
        "status": status,
        "clientOrderId": order.client_order_id,
        "price": formats.price(order.price) if order.price else formats.zero_price(),
        "avgPrice": formats.average(quote_filled, filled),
        "origQty": formats.quantity(order.quantity),
        "executedQty": formats.quantity(filled),
        "cumQty": formats.quantity(filled),
        "cumQuote": formats.quote(quote_filled),
        "timeInForce": time_in_force,
        "type": order_type,
        "reduceOnly": reduce_only,
        "closePosition": False,
        "side": SIDES[order.side],
        "positionSide": "BOTH",
        "stopPrice": formats.zero_price(),
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": order_type,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0,
        "updateTime": ms(order.created_ns if as_new else order.updated_ns),
    }
    if with_time:
        body["time"] = ms(order.created_ns)
    return body


# book, trades, tickers ----------------------------------------------------------------------


def book_ticker_fields(
    formats: Formats, bid: tuple[int, int] | None, ask: tuple[int, int] | None
) -> dict[str, str]:
    zero_price, zero_quantity = formats.zero_price(), formats.zero_quantity()
    return {
        "bidPrice": formats.price(bid[0]) if bid else zero_price,
        "bidQty": formats.quantity(bid[1]) if bid else zero_quantity,
        "askPrice": formats.price(ask[0]) if ask else zero_price,
        "askQty": formats.quantity(ask[1]) if ask else zero_quantity,
    }


def rest_trade(trade: TradePrint, formats: Formats) -> dict[str, Any]:
    return {
        "id": trade.trade_id,
        "price": formats.price(trade.price),
        "qty": formats.quantity(trade.quantity),
        "quoteQty": formats.quote(trade.price * trade.quantity),
        "time": ms(trade.time_ns),
        "isBuyerMaker": trade.buyer_is_maker,
        "isBestMatch": True,
    }


def rest_aggregate_trade(trade: TradePrint, formats: Formats) -> dict[str, Any]:
    """One print = one aggregate trade (the engine prints per maker order, ids stay aligned)."""
    row: dict[str, Any] = {
        "a": trade.trade_id,
        "p": formats.price(trade.price),
        "q": formats.quantity(trade.quantity),
        "f": trade.trade_id,
        "l": trade.trade_id,
        "T": ms(trade.time_ns),
        "m": trade.buyer_is_maker,
    }
    if formats.spot:
        row["M"] = True
    return row


def trade_event(trade: TradePrint, formats: Formats, event_ms: int) -> dict[str, Any]:
    event: dict[str, Any] = {
        "e": "trade",
        "E": event_ms,
        "s": trade.symbol,
        "t": trade.trade_id,
        "p": formats.price(trade.price),
        "q": formats.quantity(trade.quantity),
        "T": ms(trade.time_ns),
        "m": trade.buyer_is_maker,
    }
    if formats.spot:
        event["M"] = True
    else:
        event["X"] = "MARKET"
    return event


def aggregate_trade_event(trade: TradePrint, formats: Formats, event_ms: int) -> dict[str, Any]:
    event: dict[str, Any] = {"e": "aggTrade", "E": event_ms, "s": trade.symbol}
    event.update(rest_aggregate_trade(trade, formats))
    return event


def depth_diff(
    symbol: str,
    formats: Formats,
    first_id: int,
    last_id: int,
    previous_id: int,
    bids: list[tuple[int, int]],
    asks: list[tuple[int, int]],
    event_ms: int,
    transaction_ms: int,
) -> dict[str, Any]:
    event: dict[str, Any] = {"e": "depthUpdate", "E": event_ms}
    if not formats.spot:
        event["T"] = transaction_ms
    event["s"] = symbol
    event["U"] = first_id
    event["u"] = last_id
    if not formats.spot:
        event["pu"] = previous_id
    event["b"] = formats.levels(bids)
    event["a"] = formats.levels(asks)
    return event


def merge_updates(updates: list[BookUpdate]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Net level changes of consecutive batches (last size per price wins), best first."""
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    for update in updates:
        for price, size in update.bids:
            bids[price] = size
        for price, size in update.asks:
            asks[price] = size
    return sorted(bids.items(), reverse=True), sorted(asks.items())


def kline_row(candle: Candle, formats: Formats, interval_ms: int) -> list[Any]:
    open_ms = ms(candle.open_time_ns)
    return [
        open_ms,
        formats.price(candle.open),
        formats.price(candle.high),
        formats.price(candle.low),
        formats.price(candle.close),
        formats.quantity(candle.volume),
        open_ms + interval_ms - 1,
        formats.quote(candle.quote_volume),
        candle.trades,
        formats.quantity(candle.taker_buy_volume),
        formats.quote(candle.taker_buy_quote_volume),
        "0",
    ]


def kline_event(
    symbol: str, interval: str, candle: Candle, formats: Formats, interval_ms: int, event_ms: int, final: bool
) -> dict[str, Any]:
    open_ms = ms(candle.open_time_ns)
    return {
        "e": "kline",
        "E": event_ms,
        "s": symbol,
        "k": {
            "t": open_ms,
            "T": open_ms + interval_ms - 1,
            "s": symbol,
            "i": interval,
            "f": candle.first_trade_id,
            "L": candle.last_trade_id,
            "o": formats.price(candle.open),
            "c": formats.price(candle.close),
            "h": formats.price(candle.high),
            "l": formats.price(candle.low),
            "v": formats.quantity(candle.volume),
            "n": candle.trades,
            "x": final,
            "q": formats.quote(candle.quote_volume),
            "V": formats.quantity(candle.taker_buy_volume),
            "Q": formats.quote(candle.taker_buy_quote_volume),
            "B": "0",
        },
    }


def merge_candles(candles: list[Candle], interval_ms: int) -> list[Candle]:
    """Roll one-minute candles up into ``interval_ms`` candles aligned to the epoch."""
    interval_ns = interval_ms * NANOS_PER_MS
    merged: list[Candle] = []
    for candle in candles:
        start = candle.open_time_ns - candle.open_time_ns % interval_ns
        current = merged[-1] if merged else None
        if current is None or current.open_time_ns != start:
            merged.append(
                Candle(
                    start,
                    candle.open,
                    candle.high,
                    candle.low,
                    candle.close,
                    candle.volume,
                    candle.quote_volume,
                    candle.trades,
                    candle.taker_buy_volume,
                    candle.taker_buy_quote_volume,
                    candle.first_trade_id,
                    candle.last_trade_id,
                )
            )
            continue
        current.high = max(current.high, candle.high)
        current.low = min(current.low, candle.low)
        current.close = candle.close
        current.volume += candle.volume
        current.quote_volume += candle.quote_volume
        current.trades += candle.trades
        current.taker_buy_volume += candle.taker_buy_volume
        current.taker_buy_quote_volume += candle.taker_buy_quote_volume
        current.last_trade_id = candle.last_trade_id
    return merged


def ticker_figures(statistics: TickerStatistics, formats: Formats) -> dict[str, str]:
    """The 24 h numbers shared by REST ticker/24hr and the ticker streams."""
    change = statistics.last_price - statistics.open_price
    if statistics.open_price:
        percent = Decimal(change * 100) / Decimal(statistics.open_price)
        percent_text = decimal_text(percent, 3)
    else:
        percent_text = "0.000"
    if statistics.volume:
        weighted = formats.average(statistics.quote_volume, statistics.volume)
    else:
        weighted = formats.zero_price()
    return {
        "priceChange": formats.price(change),
        "priceChangePercent": percent_text,
        "weightedAvgPrice": weighted,
        "lastPrice": formats.price(statistics.last_price),
        "lastQty": formats.quantity(statistics.last_quantity),
        "openPrice": formats.price(statistics.open_price),
        "highPrice": formats.price(statistics.high_price),
        "lowPrice": formats.price(statistics.low_price),
        "volume": formats.quantity(statistics.volume),
        "quoteVolume": formats.quote(statistics.quote_volume),
    }


# The 24 h ticker's fields in Binance's order: (REST name, stream letter, value, spot only).
# REST ticker/24hr and the <symbol>@ticker stream carry the same figures under these two names.
_TICKER_LAYOUT: tuple[tuple[str, str, str, bool], ...] = (
    ("priceChange", "p", "priceChange", False),
    ("priceChangePercent", "P", "priceChangePercent", False),
    ("weightedAvgPrice", "w", "weightedAvgPrice", False),
    ("prevClosePrice", "x", "openPrice", True),
    ("lastPrice", "c", "lastPrice", False),
    ("lastQty", "Q", "lastQty", False),
    ("bidPrice", "b", "bidPrice", True),
    ("bidQty", "B", "bidQty", True),
    ("askPrice", "a", "askPrice", True),
    ("askQty", "A", "askQty", True),
    ("openPrice", "o", "openPrice", False),
    ("highPrice", "h", "highPrice", False),
    ("lowPrice", "l", "lowPrice", False),
    ("volume", "v", "volume", False),
    ("quoteVolume", "q", "quoteVolume", False),
    ("openTime", "O", "openTime", False),
    ("closeTime", "C", "closeTime", False),
    ("firstId", "F", "firstId", False),
    ("lastId", "L", "lastId", False),
    ("count", "n", "count", False),
)


def _ticker_values(
    statistics: TickerStatistics,
    formats: Formats,
    bid: tuple[int, int] | None,
    ask: tuple[int, int] | None,
) -> dict[str, Any]:
    values: dict[str, Any] = dict(ticker_figures(statistics, formats))
    if formats.spot:
        values.update(book_ticker_fields(formats, bid, ask))
    values["openTime"] = ms(statistics.open_time_ns)
    values["closeTime"] = ms(statistics.close_time_ns)
    values["firstId"] = statistics.first_trade_id
    values["lastId"] = statistics.last_trade_id
    values["count"] = statistics.count
    return values


def _ticker_fields(values: dict[str, Any], spot: bool, stream: bool) -> dict[str, Any]:
    return {
        (letter if stream else name): values[source]
        for name, letter, source, spot_only in _TICKER_LAYOUT
        if spot or not spot_only
    }


def rest_ticker(
    statistics: TickerStatistics,
    formats: Formats,
    bid: tuple[int, int] | None,
    ask: tuple[int, int] | None,
) -> dict[str, Any]:
    values = _ticker_values(statistics, formats, bid, ask)
    return {"symbol": statistics.symbol, **_ticker_fields(values, formats.spot, stream=False)}


def mini_ticker_event(statistics: TickerStatistics, formats: Formats, event_ms: int) -> dict[str, Any]:
    figures = ticker_figures(statistics, formats)
    return {
        "e": "24hrMiniTicker",
        "E": event_ms,
        "s": statistics.symbol,
        "c": figures["lastPrice"],
        "o": figures["openPrice"],
        "h": figures["highPrice"],
        "l": figures["lowPrice"],
        "v": figures["volume"],
        "q": figures["quoteVolume"],
    }


def ticker_event(
    statistics: TickerStatistics,
    formats: Formats,
    bid: tuple[int, int] | None,
    ask: tuple[int, int] | None,
    event_ms: int,
) -> dict[str, Any]:
    values = _ticker_values(statistics, formats, bid, ask)
    return {
        "e": "24hrTicker",
        "E": event_ms,
        "s": statistics.symbol,
        **_ticker_fields(values, formats.spot, stream=True),
    }
