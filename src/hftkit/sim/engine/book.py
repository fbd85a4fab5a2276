"""The matching engine's data: orders, price levels with their background queue, book sides, results.

A level holds background volume (the replayed market) and our resting orders in one queue,
``[gap] order [gap] order ... [tail]`` (see ``matching``'s module docstring for the rules).
Both the matching core (``matching``) and the background model (``liquidity``) work on these
structures directly, attribute by attribute: they are the hot path and carry no methods of
their own beyond the sorted-key bookkeeping of a side.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import deque
from fractions import Fraction

import msgspec

from hftkit.core.native import NATIVE
from hftkit.core.types import Instrument, OrderStatus, OrderType, Side, TimeInForce
from hftkit.sim.engine.accounts import Account, InstrumentTerms
from hftkit.sim.engine.errors import CloseReason, RejectReason

_BUY = Side.BUY
_SELL = Side.SELL
_NEW = OrderStatus.NEW
_PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
_REJECTED = OrderStatus.REJECTED
NO_ORDER_ID = -1  # the order id of the market's side of a trade


class SimOrder:
    """One order in the engine. Live: the engine mutates it; copy fields out to keep a state."""

    __slots__ = (
        "account",
        "client_order_id",
        "close_reason",
        "created_ns",
        "filled",
        "gap",
        "holder",
        "is_buy",
        "level",
        "order_id",
        "order_type",
        "price",
        "quantity",
        "quote_filled",
        "reprice_post_only",
        "reserve_asset",
        "reserved",
        "side",
        "status",
        "symbol",
        "time_in_force",
        "updated_ns",
    )

    def __init__(
        self,
        order_id: int,
        client_order_id: str,
        holder: Account,
        symbol: str,
        side: Side,
        order_type: OrderType,
        time_in_force: TimeInForce,
        price: int,
        quantity: int,
        time_ns: int,
    ) -> None:
        self.order_id = order_id
        self.client_order_id = client_order_id
        self.holder = holder
        self.account = holder.name
        self.symbol = symbol
        self.side = side
        self.is_buy = side is _BUY
        self.order_type = order_type
        self.time_in_force = time_in_force
        self.price = price  # ticks; 0 for market orders
        self.quantity = quantity  # lots
        self.filled = 0  # lots
        self.quote_filled = 0  # sum of price * quantity over fills, in notional units (tick * lot)
        self.status = _NEW
        self.close_reason: CloseReason | None = None
        self.created_ns = time_ns
        self.updated_ns = time_ns
        self.gap = 0  # background lots queued between the previous order of the level and this one
        self.level: Level | None = None
        self.reserved = 0  # asset units still locked for this order
        self.reserve_asset = ""
        self.reprice_post_only = False

    @property
    def remaining(self) -> int:
        return self.quantity - self.filled

    @property
    def is_open(self) -> bool:
        return self.status is _NEW or self.status is _PARTIALLY_FILLED

    @property
    def average_price(self) -> Fraction | None:
        """Volume-weighted fill price in ticks, exact; None before the first fill."""
        return Fraction(self.quote_filled, self.filled) if self.filled else None

    def __repr__(self) -> str:
        return (
            f"SimOrder(#{self.order_id} {self.client_order_id!r} {self.account} {self.symbol} "
            f"{self.side.value} {self.order_type.value} {self.price}x{self.quantity} "
            f"filled={self.filled} {self.status.value})"
        )


# The shared queue of every level without orders of ours; never appended to (``_rest`` gives a
# level its own deque first). maxlen=0 also keeps it empty should that rule ever be broken, and
# ``audit`` would then report the level's ``own`` out of step with its queue.
NO_QUEUE: deque[SimOrder] = deque(maxlen=0)


class Level:
    __slots__ = ("background", "own", "price", "queue", "tail")

    def __init__(self, price: int) -> None:
        self.price = price
        self.background = 0  # lots of background liquidity at this price (sum of gaps + tail)
        self.tail = 0  # background behind our last order
        self.own = 0  # lots of our resting orders' remaining quantity
        # most levels are background only: they share one empty queue until an order of ours
        # rests there (an empty deque is ~600 bytes, and a replayed book has thousands of levels)
        self.queue: deque[SimOrder] = NO_QUEUE


class BookSide:
    """Levels by price plus the sorted list of their keys, best last (key = price or -price)."""

    __slots__ = ("is_bid", "keys", "levels")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[int, Level] = {}
        self.keys: list[int] = []

    def best(self) -> int | None:
        keys = self.keys
        if not keys:
            return None
        return keys[-1] if self.is_bid else -keys[-1]

    def add(self, price: int) -> Level:
        level = self.levels[price] = Level(price)
        insort(self.keys, price if self.is_bid else -price)
        return level

    def remove(self, price: int) -> None:
        del self.levels[price]
        keys = self.keys
        key = price if self.is_bid else -price
        if keys[-1] == key:
            keys.pop()
        else:
            del keys[bisect_left(keys, key)]

    def prices_best_first(self) -> list[int]:
        if self.is_bid:
            return self.keys[::-1]
        return [-key for key in reversed(self.keys)]

    def prices_through(self, price: int, inclusive: bool) -> list[int]:
        """Prices better than ``price`` (and at it when ``inclusive``), best first.

        What a trade or a crossing level at ``price`` consumes: a bisect and a slice of the
        few levels involved, where ``prices_best_first`` would copy the whole side.
        """
        keys = self.keys
        if self.is_bid:
            start = bisect_left(keys, price) if inclusive else bisect_right(keys, price)
            return keys[: start - 1 : -1] if start else keys[::-1]
        start = bisect_left(keys, -price) if inclusive else bisect_right(keys, -price)
        return [-key for key in reversed(keys[start:])]


def _changed_sizes(changed: set[int], by_price: dict[int, Level], descending: bool) -> list[tuple[int, int]]:
    """``(price, background + own)`` of each changed level (0 where it is gone), sorted by price:
    one side of a change batch's update (the C twin: ``hftkit._native.changed_sizes``)."""
    sizes = []
    for price in sorted(changed, reverse=descending):
        level = by_price.get(price)
        sizes.append((price, 0 if level is None else level.background + level.own))
    return sizes


changed_sizes = _changed_sizes if NATIVE is None else NATIVE.changed_sizes


class Book:
    __slots__ = (
        "asks",
        "bids",
        "changed_asks",
        "changed_bids",
        "instrument",
        "next_trade_id",
        "symbol",
        "terms",
        "update_id",
    )

    def __init__(self, instrument: Instrument, terms: InstrumentTerms) -> None:
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.terms = terms
        self.bids = BookSide(True)
        self.asks = BookSide(False)
        self.update_id = 0
        self.next_trade_id = 1
        self.changed_bids: set[int] = set()
        self.changed_asks: set[int] = set()


# results ---------------------------------------------------------------------------------


class Execution(msgspec.Struct, frozen=True, kw_only=True):
    """One of our orders' part in one trade, with the order's state right after it."""

    order: SimOrder
    trade_id: int
    price: int  # ticks
    quantity: int  # lots
    is_maker: bool
    fee: int  # asset units of fee_asset (negative = rebate)
    fee_asset: str
    filled: int  # cumulative lots after this execution
    quote_filled: int  # cumulative notional units after this execution
    status: OrderStatus
    time_ns: int


class TradePrint(msgspec.Struct, frozen=True, kw_only=True):
    """A public trade (for trade streams); order ids are NO_ORDER_ID for the market's side."""

    symbol: str
    trade_id: int
    price: int
    quantity: int
    aggressor: Side
    buy_order_id: int
    sell_order_id: int
    time_ns: int

    @property
    def buyer_is_maker(self) -> bool:
        return self.aggressor is _SELL


class OrderUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """A change to an order other than the one operated on (a self-trade-prevention expiry)."""

    order: SimOrder
    status: OrderStatus
    close_reason: CloseReason | None
    time_ns: int


class BookUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """One batch of level changes: new total size per changed price (0 = level gone).

    ``update_id`` grows by exactly one per batch, so a server publishes depth diffs with
    consecutive ids (``U == u == update_id``).
    """

    symbol: str
    update_id: int
    bids: list[tuple[int, int]]  # best first
    asks: list[tuple[int, int]]  # best first
    time_ns: int


class OrderResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of place / cancel / amend: a reject reason, or the order and its events."""

    accepted: bool
    reason: RejectReason | None = None
    order: SimOrder | None = None
    status: OrderStatus = _REJECTED
    filled: int = 0
    quote_filled: int = 0
    repriced: bool = False  # post-only order moved one tick away from the opposite best
    executions: list[Execution] = []
    trades: list[TradePrint] = []
    updates: list[OrderUpdate] = []
    book_update: BookUpdate | None = None


class MarketResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of replayed market data: our executions, trades and the book batch."""

    executions: list[Execution] = []
    trades: list[TradePrint] = []
    book_update: BookUpdate | None = None


class CancelAllResult(msgspec.Struct, frozen=True, kw_only=True):
    orders: list[SimOrder]
    book_updates: list[BookUpdate]


class DepthSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    update_id: int  # the update id of the last batch included
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


__all__ = [
    "NO_ORDER_ID",
    "NO_QUEUE",
    "Book",
    "BookSide",
    "BookUpdate",
    "CancelAllResult",
    "DepthSnapshot",
    "Execution",
    "Level",
    "MarketResult",
    "OrderResult",
    "OrderUpdate",
    "SimOrder",
    "TradePrint",
    "changed_sizes",
]
