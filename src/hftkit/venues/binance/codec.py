"""Binance wire schemas and parsers (sans-I/O).

One ``msgspec.Struct`` per payload, named after Binance's own message, with Binance's
one-letter field names mapped to full words through ``rename``. Prices and quantities stay
strings here; conversion to ticks and lots happens in ``parse_*`` with an Instrument's grids.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

PriceLevel = tuple[str, str]

MessageT = TypeVar("MessageT")


class DepthUpdate(
    msgspec.Struct,
    frozen=True,
    rename={
        "event_type": "e",
        "event_time": "E",
        "transaction_time": "T",
        "symbol": "s",
        "first_update_id": "U",
        "last_update_id": "u",
        "previous_update_id": "pu",
        "bids": "b",
        "asks": "a",
    },
):
    """``depthUpdate``: spot ``<symbol>@depth[@100ms]``; USD-M adds ``T`` and ``pu``."""

    event_time: int
    symbol: str
    first_update_id: int
    last_update_id: int
    bids: list[PriceLevel]
    asks: list[PriceLevel]
    event_type: str = "depthUpdate"
    transaction_time: int = 0
    previous_update_id: int = -1


class DepthSnapshot(
    msgspec.Struct,
    frozen=True,
    rename={
        "last_update_id": "lastUpdateId",
        "event_time": "E",
        "transaction_time": "T",
    },
):
    """REST ``GET /api/v3/depth`` (and ``/fapi/v1/depth``, which adds ``E`` and ``T``)."""

    last_update_id: int
    bids: list[PriceLevel]
    asks: list[PriceLevel]
    event_time: int = 0
    transaction_time: int = 0


class TradeEvent(
    msgspec.Struct,
    frozen=True,
    rename={
        "event_type": "e",
        "event_time": "E",
        "symbol": "s",
        "trade_id": "t",
        "price": "p",
        "quantity": "q",
        "trade_time": "T",
        "buyer_is_maker": "m",
        "best_match": "M",
        "order_kind": "X",
    },
):
    """``trade`` stream. ``buyer_is_maker`` true means the aggressor sold."""

    event_time: int
    symbol: str
    trade_id: int
    price: str
    quantity: str
    trade_time: int
    buyer_is_maker: bool
    event_type: str = "trade"
    best_match: bool = True
    order_kind: str = "MARKET"


class AggregateTradeEvent(
    msgspec.Struct,
    frozen=True,
    rename={
        "event_type": "e",
        "event_time": "E",
        "symbol": "s",
        "aggregate_trade_id": "a",
        "price": "p",
        "quantity": "q",
        "first_trade_id": "f",
        "last_trade_id": "l",
        "trade_time": "T",
        "buyer_is_maker": "m",
        "best_match": "M",
    },
):
    """``aggTrade`` stream."""

    event_time: int
    symbol: str
    aggregate_trade_id: int
    price: str
    quantity: str
    first_trade_id: int
    last_trade_id: int
    trade_time: int
    buyer_is_maker: bool
    event_type: str = "aggTrade"
    best_match: bool = True


class BookTickerEvent(
    msgspec.Struct,
    frozen=True,
    rename={
        "update_id": "u",
        "symbol": "s",
        "bid_price": "b",
        "bid_quantity": "B",
        "ask_price": "a",
        "ask_quantity": "A",
        "event_type": "e",
        "event_time": "E",
        "transaction_time": "T",
    },
):
    """``bookTicker`` stream: best bid/ask with the depth update id it reflects."""

    update_id: int
    symbol: str
    bid_price: str
    bid_quantity: str
    ask_price: str
    ask_quantity: str
    event_type: str = "bookTicker"
    event_time: int = 0
    transaction_time: int = 0


class CombinedStreamMessage(msgspec.Struct, Generic[MessageT], frozen=True):
    """The ``/stream?streams=`` envelope: ``{"stream": name, "data": payload}``."""

    stream: str
    data: MessageT


MarketEvent = DepthUpdate | TradeEvent | AggregateTradeEvent | BookTickerEvent

# Stream-name suffix (after "<symbol>@") -> payload type.
STREAM_KINDS: dict[str, type] = {
    "depth": DepthUpdate,
    "trade": TradeEvent,
    "aggTrade": AggregateTradeEvent,
    "bookTicker": BookTickerEvent,
}
