"""Binance wire schemas and parsers (sans-I/O).

One ``msgspec.Struct`` per payload, named after Binance's own message, with Binance's
one-letter field names mapped to full words through ``rename``. Prices and quantities stay
strings here; conversion to ticks and lots happens in ``parse_*`` with an Instrument's grids.
"""

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

import msgspec

PriceLevel = tuple[str, str]

Amount = Annotated[str, msgspec.Meta(pattern=r"\A[0-9]{1,40}(?:\.[0-9]{1,40})?\Z", max_length=64)]
"""A non-negative plain ASCII decimal, as Binance writes every quantity, price and balance.

Checked by msgspec while decoding account data, so "NaN", "Infinity", "1e999999", Unicode
digits and negative balances are a classified schema error at their JSON path, never a
Decimal or float that reaches the tracker."""
SignedAmount = Annotated[str, msgspec.Meta(pattern=r"\A-?[0-9]{1,40}(?:\.[0-9]{1,40})?\Z", max_length=64)]
"""A plain ASCII decimal that may be negative: position amounts, PnL, commissions (rebates)."""
OrderSide = Literal["BUY", "SELL"]

MessageT = TypeVar("MessageT")


_DEPTH_UPDATE_FIELDS = {
    "event_type": "e",
    "event_time": "E",
    "transaction_time": "T",
    "symbol": "s",
    "first_update_id": "U",
    "last_update_id": "u",
    "previous_update_id": "pu",
    "bids": "b",
    "asks": "a",
}


class DepthUpdate(msgspec.Struct, frozen=True, rename=_DEPTH_UPDATE_FIELDS):
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


class RawDepthUpdate(msgspec.Struct, frozen=True, rename=_DEPTH_UPDATE_FIELDS):
    """``depthUpdate`` with its level arrays left as raw JSON, for the stream hot path.

    Building two Python strings per level only to convert them to integers is half the cost
    of a depth message; ``BinanceParser.raw_depth_update`` converts the raw arrays directly
    (and decodes them as ``list[PriceLevel]``, with msgspec's validation, when they are not
    plain string pairs).
    """

    event_time: int
    symbol: str
    first_update_id: int
    last_update_id: int
    bids: msgspec.Raw
    asks: msgspec.Raw
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


class RestBookTicker(
    msgspec.Struct,
    frozen=True,
    rename={
        "bid_price": "bidPrice",
        "bid_quantity": "bidQty",
        "ask_price": "askPrice",
        "ask_quantity": "askQty",
        "update_id": "lastUpdateId",
    },
):
    """``GET ticker/bookTicker`` row (USD-M adds ``time`` and ``lastUpdateId``)."""

    symbol: str
    bid_price: str
    bid_quantity: str
    ask_price: str
    ask_quantity: str
    update_id: int = -1
    time: int = 0


class RestPrice(msgspec.Struct, frozen=True):
    """``GET ticker/price`` row: the last traded price."""

    symbol: str
    price: str
    time: int = 0


class Ticker24h(
    msgspec.Struct,
    frozen=True,
    rename={
        "price_change": "priceChange",
        "price_change_percent": "priceChangePercent",
        "weighted_average_price": "weightedAvgPrice",
        "last_price": "lastPrice",
        "open_price": "openPrice",
        "high_price": "highPrice",
        "low_price": "lowPrice",
        "quote_volume": "quoteVolume",
        "open_time": "openTime",
        "close_time": "closeTime",
        "trade_count": "count",
    },
):
    """``GET ticker/24hr`` row: rolling 24-hour statistics (decimal strings as the venue sends)."""

    symbol: str
    price_change: str
    price_change_percent: str
    weighted_average_price: str
    last_price: str
    open_price: str
    high_price: str
    low_price: str
    volume: str
    quote_volume: str
    open_time: int
    close_time: int
    trade_count: int


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


# -- user data (spot WebSocket API subscription and futures listenKey streams) --------------


class ExecutionReport(
    msgspec.Struct,
    frozen=True,
    tag_field="e",
    tag="executionReport",
    rename={
        "event_time": "E",
        "symbol": "s",
        "client_order_id": "c",
        "side": "S",
        "order_type": "o",
        "time_in_force": "f",
        "quantity": "q",
        "price": "p",
        "original_client_order_id": "C",
        "execution_type": "x",
        "status": "X",
        "reject_reason": "r",
        "order_id": "i",
        "last_quantity": "l",
        "cumulative_quantity": "z",
        "last_price": "L",
        "commission": "n",
        "commission_asset": "N",
        "transaction_time": "T",
        "trade_id": "t",
        "is_on_book": "w",
        "is_maker": "m",
        "created_time": "O",
        "cumulative_quote": "Z",
    },
):
    """Spot ``executionReport``: one order event (new, trade, cancel, reject, expire, amend)."""

    event_time: int
    symbol: str
    client_order_id: str
    side: OrderSide
    order_type: str
    time_in_force: str
    quantity: Amount
    price: Amount
    execution_type: str
    status: str
    order_id: int
    last_quantity: Amount
    cumulative_quantity: Amount
    last_price: Amount
    transaction_time: int
    trade_id: int = -1
    original_client_order_id: str = ""
    reject_reason: str = "NONE"
    commission: SignedAmount = "0"
    commission_asset: str | None = None
    is_on_book: bool = False
    is_maker: bool = False
    created_time: int = 0
    cumulative_quote: Amount = "0"


class AssetBalance(msgspec.Struct, frozen=True, rename={"asset": "a", "free": "f", "locked": "l"}):
    asset: str
    free: Amount
    locked: Amount


class OutboundAccountPosition(
    msgspec.Struct,
    frozen=True,
    tag_field="e",
    tag="outboundAccountPosition",
    rename={"event_time": "E", "last_update_time": "u", "balances": "B"},
):
    """Spot balances of the assets an event changed."""

    event_time: int
    last_update_time: int
    balances: list[AssetBalance]


class BalanceUpdate(
    msgspec.Struct,
    frozen=True,
    tag_field="e",
    tag="balanceUpdate",
    rename={"event_time": "E", "asset": "a", "delta": "d", "clear_time": "T"},
):
    event_time: int
    asset: str
    delta: SignedAmount
    clear_time: int


class FuturesOrderUpdate(
    msgspec.Struct,
    frozen=True,
    rename={
        "symbol": "s",
        "client_order_id": "c",
        "side": "S",
        "order_type": "o",
        "time_in_force": "f",
        "quantity": "q",
        "price": "p",
        "average_price": "ap",
        "execution_type": "x",
        "status": "X",
        "order_id": "i",
        "last_quantity": "l",
        "cumulative_quantity": "z",
        "last_price": "L",
        "commission_asset": "N",
        "commission": "n",
        "trade_time": "T",
        "trade_id": "t",
        "is_maker": "m",
        "reduce_only": "R",
        "position_side": "ps",
        "realized_profit": "rp",
    },
):
    """The ``o`` object of a USD-M ``ORDER_TRADE_UPDATE``."""

    symbol: str
    client_order_id: str
    side: OrderSide
    order_type: str
    time_in_force: str
    quantity: Amount
    price: Amount
    execution_type: str
    status: str
    order_id: int
    last_quantity: Amount
    cumulative_quantity: Amount
    last_price: Amount
    trade_time: int
    trade_id: int = 0
    average_price: Amount = "0"
    commission_asset: str | None = None
    commission: SignedAmount = "0"
    is_maker: bool = False
    reduce_only: bool = False
    position_side: str = "BOTH"
    realized_profit: SignedAmount = "0"


class OrderTradeUpdate(
    msgspec.Struct,
    frozen=True,
    tag_field="e",
    tag="ORDER_TRADE_UPDATE",
    rename={"event_time": "E", "transaction_time": "T", "order": "o"},
):
    event_time: int
    transaction_time: int
    order: FuturesOrderUpdate


class FuturesBalance(
    msgspec.Struct, frozen=True, rename={"asset": "a", "wallet_balance": "wb", "cross_wallet_balance": "cw"}
):
    asset: str
    wallet_balance: Amount
    cross_wallet_balance: Amount = "0"


class FuturesPosition(
    msgspec.Struct,
    frozen=True,
    rename={
        "symbol": "s",
        "position_amount": "pa",
        "entry_price": "ep",
        "unrealized_pnl": "up",
        "position_side": "ps",
        "accumulated_realized": "cr",
    },
):
    symbol: str
    position_amount: SignedAmount
    entry_price: Amount
    unrealized_pnl: SignedAmount = "0"
    position_side: str = "BOTH"
    accumulated_realized: SignedAmount = "0"


class AccountUpdateData(
    msgspec.Struct, frozen=True, rename={"reason": "m", "balances": "B", "positions": "P"}
):
    reason: str
    balances: list[FuturesBalance] = []
    positions: list[FuturesPosition] = []


class AccountUpdate(
    msgspec.Struct,
    frozen=True,
    tag_field="e",
    tag="ACCOUNT_UPDATE",
    rename={"event_time": "E", "transaction_time": "T", "data": "a"},
):
    event_time: int
    transaction_time: int
    data: AccountUpdateData


class ListenKeyExpired(
    msgspec.Struct,
    frozen=True,
    tag_field="e",
    tag="listenKeyExpired",
    rename={"event_time": "E", "listen_key": "listenKey"},
):
    event_time: int
    listen_key: str = ""


class UserDataEnvelope(msgspec.Struct, frozen=True, rename="camel"):
    """Spot WebSocket-API push: ``{"subscriptionId": 0, "event": {...}}``."""

    subscription_id: int
    event: msgspec.Raw


class EventTypeProbe(msgspec.Struct, frozen=True, rename={"event_type": "e"}):
    """Reads only ``e`` so the right typed decoder can be chosen (msgspec skips the rest fast)."""

    event_type: str = ""


UserEvent = (
    ExecutionReport
    | OutboundAccountPosition
    | BalanceUpdate
    | OrderTradeUpdate
    | AccountUpdate
    | ListenKeyExpired
)
"""Every user-data event, one tagged union on ``e``: decoded in a single pass."""


class UserDataPush(msgspec.Struct, frozen=True, rename="camel"):
    """Spot WebSocket-API push with its event decoded by type."""

    subscription_id: int
    event: UserEvent


USER_EVENT_KINDS: dict[str, type] = {
    "executionReport": ExecutionReport,
    "outboundAccountPosition": OutboundAccountPosition,
    "balanceUpdate": BalanceUpdate,
    "ORDER_TRADE_UPDATE": OrderTradeUpdate,
    "ACCOUNT_UPDATE": AccountUpdate,
    "listenKeyExpired": ListenKeyExpired,
}


# -- REST responses -------------------------------------------------------------------------


class ErrorResponse(msgspec.Struct, frozen=True):
    """Binance's error body: ``{"code": -1121, "msg": "Invalid symbol."}``."""

    code: int
    msg: str


class RateLimitUsage(msgspec.Struct, frozen=True, rename="camel"):
    """One window's count in a WebSocket API answer (``rateLimits``)."""

    rate_limit_type: str = ""
    interval: str = ""
    interval_num: int = 0
    limit: int = 0
    count: int = 0


class WebSocketApiResponse(msgspec.Struct, frozen=True, rename={"rate_limits": "rateLimits"}):
    """A WebSocket API answer: ``{"id", "status", "result" | "error", "rateLimits"}``; the result
    stays raw until its owner decodes it with the request's own type (empty when absent)."""

    id: int | str | None = None
    status: int = 0
    result: msgspec.Raw = msgspec.Raw()
    error: ErrorResponse | None = None
    rate_limits: list[RateLimitUsage] | None = None


class OrderFill(msgspec.Struct, frozen=True, rename="camel"):
    price: Amount
    qty: Amount
    commission: SignedAmount = "0"
    commission_asset: str = ""
    trade_id: int = -1


class OrderResponse(msgspec.Struct, frozen=True, rename="camel"):
    """Spot and USD-M order responses (ACK/RESULT/FULL, GET /order, DELETE /order, openOrders)."""

    symbol: str
    order_id: int
    client_order_id: str
    price: Amount = "0"
    orig_qty: Amount = "0"
    executed_qty: Amount = "0"
    status: str = ""
    time_in_force: str = ""
    type: str = ""
    side: str = ""
    transact_time: int = 0
    update_time: int = 0
    time: int = 0
    cummulative_quote_qty: Amount = "0"
    cum_quote: Amount = "0"
    avg_price: Amount = "0"
    reduce_only: bool = False
    orig_client_order_id: str = ""
    fills: list[OrderFill] = []


class SpotBalance(msgspec.Struct, frozen=True):
    asset: str
    free: Amount
    locked: Amount


class SpotAccount(msgspec.Struct, frozen=True, rename="camel"):
    balances: list[SpotBalance]
    can_trade: bool = True
    update_time: int = 0


class FuturesBalanceEntry(msgspec.Struct, frozen=True, rename="camel"):
    asset: str
    balance: SignedAmount
    available_balance: SignedAmount = "0"


class PositionRisk(msgspec.Struct, frozen=True, rename="camel"):
    symbol: str
    position_amt: SignedAmount
    entry_price: Amount = "0"
    mark_price: Amount = "0"
    un_realized_profit: SignedAmount = "0"
    position_side: str = "BOTH"


class SymbolFilter(msgspec.Struct, frozen=True, rename="camel"):
    """One exchangeInfo filter; fields absent from a filter type stay None."""

    filter_type: str
    min_price: str | None = None
    max_price: str | None = None
    tick_size: str | None = None
    min_qty: str | None = None
    max_qty: str | None = None
    step_size: str | None = None
    min_notional: str | None = None
    notional: str | None = None


class SymbolInfo(msgspec.Struct, frozen=True, rename="camel"):
    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    filters: list[SymbolFilter]
    contract_type: str | None = None


class ExchangeInfo(msgspec.Struct, frozen=True, rename="camel"):
    symbols: list[SymbolInfo]
    server_time: int = 0
    rate_limits: list[RateLimitUsage] = []  # this account's windows, as the venue states them


class ListenKeyResponse(msgspec.Struct, frozen=True, rename="camel"):
    listen_key: str


class ServerTime(msgspec.Struct, frozen=True, rename="camel"):
    server_time: int
