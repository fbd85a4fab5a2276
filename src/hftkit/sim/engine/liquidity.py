"""The background-liquidity model: the replayed real market inside the simulator's books.

Depth diffs and snapshots set each level's *background* size (absolute, owned by no
account); replayed trades consume levels front to back; a diff that crosses our resting
orders fills them as makers. The queue rules (growth joins the tail, shrinking is taken from
the back, takers consume from the front) are the ``matching`` module docstring's. Kept apart
from ``MatchingEngine`` so the order path and the market path each read on their own; both
work on the same ``book`` structures, and the engine lends this model the three operations
it owns (book a trade, close an order, close the change batch) as bound methods, so nothing
here adds a call to the order path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from hftkit.core.clock import Clock
from hftkit.core.native import NATIVE
from hftkit.core.types import OrderStatus, Side
from hftkit.sim.engine.book import (
    NO_ORDER_ID,
    NO_QUEUE,
    Book,
    BookUpdate,
    Execution,
    Level,
    MarketResult,
    SimOrder,
    TradePrint,
)
from hftkit.sim.engine.errors import CloseReason, SimulatorInputError

_BUY = Side.BUY
_SELL = Side.SELL
_FILLED = OrderStatus.FILLED
# the easy levels of a depth diff in C (``hftkit._native.set_background``), the rest in Python
_SET_BACKGROUND = None if NATIVE is None else NATIVE.set_background

# The engine's operations this model uses (see MatchingEngine._execute / _finish / _flush).
TradeRecorder = Callable[
    [Book, int, int, SimOrder | None, SimOrder | None, bool, int, list[Execution], list[TradePrint]], None
]
OrderCloser = Callable[[SimOrder, OrderStatus, CloseReason, int], None]
BatchCloser = Callable[[Book, int], BookUpdate | None]


class BackgroundLiquidity:
    """The replayed market's volume in the books of one ``MatchingEngine``.

    ``books`` is the engine's own symbol -> book mapping (shared, not copied); ``trade``,
    ``close`` and ``flush`` are the engine's settlement, order-closing and batch-closing steps.
    """

    __slots__ = ("_books", "_clock", "_close", "_flush", "_trade")

    def __init__(
        self,
        books: Mapping[str, Book],
        clock: Clock,
        trade: TradeRecorder,
        close: OrderCloser,
        flush: BatchCloser,
    ) -> None:
        self._books = books
        self._clock = clock
        self._trade = trade
        self._close = close
        self._flush = flush

    def _book(self, symbol: str) -> Book:
        book = self._books.get(symbol)
        if book is None:
            raise SimulatorInputError(f"unknown symbol {symbol!r}")
        return book

    def background_size(self, symbol: str, side: Side, price: int) -> int:
        """Background lots at one level (our own orders there excluded)."""
        book = self._book(symbol)
        level = (book.bids if side is _BUY else book.asks).levels.get(price)
        return 0 if level is None else level.background

    def set_background(self, symbol: str, side: Side, price: int, size: int) -> MarketResult:
        """Set the background size at one level (absolute; 0 removes it): one batch."""
        level = [(price, size)]
        return self.apply_depth(symbol, level if side is _BUY else (), level if side is _SELL else ())

    def apply_depth(
        self, symbol: str, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]
    ) -> MarketResult:
        """Apply one depth diff (absolute background sizes, 0 deletes) as one batch."""
        book = self._book(symbol)
        now = self._clock.time_ns()
        executions: list[Execution] = []
        trades: list[TradePrint] = []
        self._set_side(book, True, bids, now, executions, trades)
        self._set_side(book, False, asks, now, executions, trades)
        return MarketResult(executions=executions, trades=trades, book_update=self._flush(book, now))

    def replace_background(
        self, symbol: str, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]
    ) -> MarketResult:
        """Replace all background with a snapshot (levels absent from it drop to 0): one batch."""
        book = self._book(symbol)
        bid_levels = dict(bids)
        ask_levels = dict(asks)
        for price, level in book.bids.levels.items():
            if level.background and price not in bid_levels:
                bid_levels[price] = 0
        for price, level in book.asks.levels.items():
            if level.background and price not in ask_levels:
                ask_levels[price] = 0
        # apply removals first so a moved market does not look crossed against stale levels
        return self.apply_depth(
            symbol,
            sorted(bid_levels.items(), key=lambda item: item[1] != 0),
            sorted(ask_levels.items(), key=lambda item: item[1] != 0),
        )

    def apply_market_trade(self, symbol: str, price: int, quantity: int, aggressor: Side) -> MarketResult:
        """Replay a real trade: it consumes the queue at ``price`` and fills us (see module doc)."""
        book = self._book(symbol)
        if price <= 0 or quantity <= 0:
            raise SimulatorInputError(f"{symbol}: trade of {quantity} lots at {price} ticks")
        now = self._clock.time_ns()
        executions: list[Execution] = []
        trades: list[TradePrint] = []
        taker_is_buy = aggressor is _BUY
        makers = book.asks if taker_is_buy else book.bids
        changed = book.changed_asks if taker_is_buy else book.changed_bids
        for level_price in makers.prices_through(price, False):
            level = makers.levels[level_price]
            if level.background:
                self._shrink(level, level.background)
                level.background = 0
            if level.own:
                self._market_hits(book, level, level_price, level.own, taker_is_buy, now, executions, trades)
            makers.remove(level_price)
            changed.add(level_price)
        ours = 0
        at_price = makers.levels.get(price)
        if at_price is not None:
            ours = self._market_hits(book, at_price, price, quantity, taker_is_buy, now, executions, trades)
            changed.add(price)
            if not at_price.queue and not at_price.background:
                makers.remove(price)
        if quantity > ours:
            trade_id = book.next_trade_id
            book.next_trade_id = trade_id + 1
            trades.append(
                TradePrint(
                    symbol=book.symbol,
                    trade_id=trade_id,
                    price=price,
                    quantity=quantity - ours,
                    aggressor=aggressor,
                    buy_order_id=NO_ORDER_ID,
                    sell_order_id=NO_ORDER_ID,
                    time_ns=now,
                )
            )
        return MarketResult(executions=executions, trades=trades, book_update=self._flush(book, now))

    def _set_side(
        self,
        book: Book,
        is_bid: bool,
        levels: Iterable[tuple[int, int]],
        now: int,
        executions: list[Execution],
        trades: list[TradePrint],
    ) -> None:
        """Set the background of one side's levels: with the C loop built, it sets every level
        with no order of ours queued that does not cross, and hands each other level to
        ``_set_levels`` (the reference, which runs them all on the pure path)."""
        native = _SET_BACKGROUND
        if native is None:
            self._set_levels(book, is_bid, levels, now, executions, trades)
            return
        if not isinstance(levels, (tuple, list)):
            levels = tuple(levels)
        side, opposite = (book.bids, book.asks) if is_bid else (book.asks, book.bids)
        changed = book.changed_bids if is_bid else book.changed_asks
        by_price, keys, opposite_keys = side.levels, side.keys, opposite.keys
        count = len(levels)
        index = 0
        while True:
            index = native(by_price, keys, changed, levels, index, is_bid, opposite_keys, Level, NO_QUEUE)
            if index >= count:
                return
            self._set_levels(book, is_bid, levels[index : index + 1], now, executions, trades)
            index += 1

    def _set_levels(
        self,
        book: Book,
        is_bid: bool,
        levels: Iterable[tuple[int, int]],
        now: int,
        executions: list[Execution],
        trades: list[TradePrint],
    ) -> None:
        """Set the background of one side's levels (the pure path's hot loop: kept flat, no calls
        per level unless a level is new, emptied, shrunk behind our orders or crossing)."""
        side, opposite = (book.bids, book.asks) if is_bid else (book.asks, book.bids)
        changed = book.changed_bids if is_bid else book.changed_asks
        get = side.levels.get
        opposite_keys = opposite.keys  # best last; asks are keyed by -price
        for price, size in levels:
            if price <= 0 or size < 0:
                raise SimulatorInputError(f"{book.symbol}: background level {size} lots at {price} ticks")
            level = get(price)
            if level is None:
                if not size:
                    continue
                level = side.add(price)
                level.background = level.tail = size
            else:
                old = level.background
                if size == old:
                    continue
                if size > old:
                    level.tail += size - old
                else:
                    tail = level.tail
                    if tail >= old - size:
                        level.tail = tail - (old - size)
                    else:
                        self._shrink(level, old - size)
                level.background = size
                if not size and not level.queue:
                    side.remove(price)
            changed.add(price)
            if not size or not opposite_keys:
                continue
            if (-opposite_keys[-1] <= price) if is_bid else (opposite_keys[-1] >= price):
                self._resolve_cross(book, is_bid, price, now, executions, trades)

    @staticmethod
    def _shrink(level: Level, amount: int) -> None:
        """Remove background from the back of the queue (tail first); caller fixes ``background``."""
        tail = level.tail
        if tail >= amount:
            level.tail = tail - amount
            return
        amount -= tail
        level.tail = 0
        for order in reversed(level.queue):
            gap = order.gap
            if gap >= amount:
                order.gap = gap - amount
                return
            order.gap = 0
            amount -= gap

    def _resolve_cross(
        self,
        book: Book,
        is_bid: bool,
        price: int,
        now: int,
        executions: list[Execution],
        trades: list[TradePrint],
    ) -> None:
        """New background at ``price`` crossing the other side: drop stale background, fill us."""
        opposite = book.asks if is_bid else book.bids
        best = opposite.best()
        if best is None or ((best > price) if is_bid else (best < price)):
            return
        side = book.bids if is_bid else book.asks
        incoming = side.levels[price]
        changed = book.changed_asks if is_bid else book.changed_bids
        for level_price in opposite.prices_through(price, True):
            level = opposite.levels[level_price]
            changed.add(level_price)
            if level.background:
                self._shrink(level, level.background)
                level.background = 0
            budget = incoming.background
            if level.own and budget:
                traded = self._market_hits(book, level, level_price, budget, is_bid, now, executions, trades)
                incoming.background -= traded
                incoming.tail -= traded
            if not level.queue:
                opposite.remove(level_price)
        if not incoming.background and not incoming.queue:
            side.remove(price)

    def _market_hits(
        self,
        book: Book,
        level: Level,
        price: int,
        budget: int,
        taker_is_buy: bool,
        now: int,
        executions: list[Execution],
        trades: list[TradePrint],
    ) -> int:
        """The replayed market takes up to ``budget`` lots from ``level`` front to back.

        Background it meets is removed; our orders it meets are filled as makers. Returns the
        lots filled on our orders.
        """
        queue = level.queue
        ours = 0
        while budget and queue:
            head = queue[0]
            gap = head.gap
            if gap:
                if gap >= budget:
                    head.gap = gap - budget
                    level.background -= budget
                    return ours
                head.gap = 0
                level.background -= gap
                budget -= gap
            size = head.quantity - head.filled
            if size > budget:
                size = budget
            if taker_is_buy:
                self._trade(book, price, size, None, head, True, now, executions, trades)
            else:
                self._trade(book, price, size, head, None, False, now, executions, trades)
            level.own -= size
            ours += size
            budget -= size
            if head.filled == head.quantity:
                queue.popleft()
                head.level = None
                self._close(head, _FILLED, CloseReason.FILLED, now)
        if budget and level.tail:
            taken = budget if budget < level.tail else level.tail
            level.tail -= taken
            level.background -= taken
        return ours


__all__ = ["BackgroundLiquidity", "BatchCloser", "OrderCloser", "TradeRecorder"]
