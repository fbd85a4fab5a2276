"""The simulator's matching engine: price-time priority over integer ticks and lots, sans-I/O.

One ``MatchingEngine`` holds a book per instrument. Every operation returns a result value
carrying the order's state, the executions it caused (``Execution`` per order per trade,
``TradePrint`` per public trade), side-effect order updates (self-trade expiries) and the
book levels it changed (``BookUpdate``), so a server turns one result into its venue's
responses and stream messages without reading engine internals.

Background liquidity and queue position
---------------------------------------
A book level holds *background* volume (the replayed real market, owned by no account) and
our resting orders. The level's queue is, front to back::

    [gap of order 1] order 1 [gap of order 2] order 2 ... [tail]

where each order's ``gap`` is the background volume queued between it and the order before
it, and ``tail`` is the background that arrived after the last order. So an order's
``volume_ahead`` is the sum of the gaps up to and including its own, and the level's
background is the sum of all gaps plus the tail. The rules, exact in integer lots:

* An order joining a level queues behind everything there: its gap is the current tail.
* Background growing at a level (a depth diff) joins the tail, behind our orders.
* Background shrinking at a level is taken from the back first (tail, then the gaps of the
  last orders): cancellations are assumed to come from behind us (risk averse), which is
  the same as clamping every order's volume ahead to the level's new background size.
* A taker (ours, or a replayed trade) consumes a level strictly front to back: a gap, then
  the order behind it, and so on, then the tail.
* A replayed trade of ``q`` lots at price ``p``: our resting orders at prices strictly better
  than ``p`` for the aggressor (asks below ``p`` for a buy) are filled in full and those levels'
  background is cleared (the real sweep emptied them); the level at ``p`` is consumed front to
  back with a budget of ``q``, so our fills there never exceed the real trade's size.
* A depth diff that crosses the book (a new ask at or below a level holding our bids, or the
  reverse) removes the crossed levels' stale background and fills our crossed orders as makers
  at their own price, up to the new level's size, which shrinks by what it traded.

What we take from background is restored only by the next depth diff for that level: the
replay does not model the market's reaction to us. The data (orders, levels, results) is in
``book``; the replayed market's operations (``apply_depth``, ``replace_background``,
``apply_market_trade``) are in ``liquidity`` and bound onto the engine; the order path is here.

Other rules: post-only (``LIMIT_MAKER``) rejects when it would take, or with
``reprice_post_only`` (Thalex ``post_only`` without ``reject_post_only``) moves one tick away
from the opposite best. FOK checks the whole quantity is available before any fill. MARKET
orders behave as IOC (FOK when asked); ``place_market_by_quote`` sizes one by quote amount
(Binance ``quoteOrderQty``). Self-trade prevention defaults to Binance's ``EXPIRE_MAKER``: our
own resting order met by our own taker is expired and matching goes on (``EXPIRE_TAKER`` and
``NONE`` are the alternatives, per engine). Amend keeps queue priority only for a size
reduction at the same price. Spot orders lock what they can spend (a buy: its limit price
times its quantity; a market buy: the exact cost of the sweep), released on fill, expiry or
cancel. ``audit()`` re-checks every internal invariant (for tests and debugging).

Validation order of ``place`` (the first failure is the reason): unknown symbol, time in
force, price, quantity (LOT_SIZE), notional, duplicate client id, post-only, balance.
"""

from __future__ import annotations

import enum
from collections import deque

from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.types import Instrument, OrderStatus, OrderType, Side, TimeInForce
from hftkit.sim.engine.accounts import Account, Accounts, InstrumentTerms
from hftkit.sim.engine.book import (
    NO_ORDER_ID,
    NO_QUEUE,
    Book,
    BookSide,
    BookUpdate,
    CancelAllResult,
    DepthSnapshot,
    Execution,
    MarketResult,
    OrderResult,
    OrderUpdate,
    SimOrder,
    TradePrint,
    changed_sizes,
)
from hftkit.sim.engine.errors import CloseReason, RejectReason, SimulatorInputError
from hftkit.sim.engine.liquidity import BackgroundLiquidity

_BUY = Side.BUY
_SELL = Side.SELL
_MARKET = OrderType.MARKET
_LIMIT_MAKER = OrderType.LIMIT_MAKER
_GTC = TimeInForce.GTC
_FOK = TimeInForce.FOK
_PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
_FILLED = OrderStatus.FILLED
_CANCELED = OrderStatus.CANCELED
_EXPIRED = OrderStatus.EXPIRED


class SelfTradePrevention(enum.Enum):
    EXPIRE_MAKER = "expire_maker"  # expire our resting order, keep matching (Binance default)
    EXPIRE_TAKER = "expire_taker"  # stop matching, expire the incoming order's remainder
    NONE = "none"  # let the account trade with itself


class _AccountOrders:
    __slots__ = ("by_client_id", "open")

    def __init__(self) -> None:
        self.open: dict[int, SimOrder] = {}
        self.by_client_id: dict[str, SimOrder] = {}


def _execute(
    order: SimOrder,
    trade_id: int,
    price: int,
    quantity: int,
    is_maker: bool,
    fee: int,
    fee_asset: str,
    now: int,
) -> Execution:
    """Book one side of a trade on its order and describe it: the same for buyer and seller."""
    order.filled += quantity
    order.quote_filled += price * quantity
    order.status = _FILLED if order.filled == order.quantity else _PARTIALLY_FILLED
    order.updated_ns = now
    return Execution(
        order=order,
        trade_id=trade_id,
        price=price,
        quantity=quantity,
        is_maker=is_maker,
        fee=fee,
        fee_asset=fee_asset,
        filled=order.filled,
        quote_filled=order.quote_filled,
        status=order.status,
        time_ns=now,
    )


def _reject(reason: RejectReason) -> OrderResult:
    return OrderResult(accepted=False, reason=reason)


class MatchingEngine:
    """Books, orders and matching for any number of instruments, settling into ``Accounts``."""

    def __init__(
        self,
        accounts: Accounts | None = None,
        *,
        clock: Clock = REAL_CLOCK,
        self_trade_prevention: SelfTradePrevention = SelfTradePrevention.EXPIRE_MAKER,
        order_history_limit: int = 20_000,  # closed orders kept for queries (a bounded window)
    ) -> None:
        self.accounts = accounts if accounts is not None else Accounts()
        self.clock = clock
        self.self_trade_prevention = self_trade_prevention
        self.order_history_limit = order_history_limit
        self._books: dict[str, Book] = {}
        self._orders: dict[int, SimOrder] = {}
        self._by_account: dict[str, _AccountOrders] = {}
        self._closed: deque[SimOrder] = deque()
        self._closed_by_client_id: dict[tuple[str, str], SimOrder] = {}
        self.closed_forgotten = 0  # closed orders dropped past order_history_limit
        self._next_order_id = 1
        # The replayed market's side of the books (``liquidity``). Its entry points are bound
        # here as attributes, not wrapped in methods: a depth diff costs no extra call.
        self.liquidity = BackgroundLiquidity(self._books, clock, self._execute, self._finish, self._flush)
        self.apply_depth = self.liquidity.apply_depth
        self.replace_background = self.liquidity.replace_background
        self.set_background = self.liquidity.set_background
        self.apply_market_trade = self.liquidity.apply_market_trade
        self.background_size = self.liquidity.background_size

    # set-up and queries ------------------------------------------------------------------
    def add_instrument(self, instrument: Instrument) -> None:
        if instrument.symbol in self._books:
            raise SimulatorInputError(f"instrument {instrument.symbol} is already listed")
        self._books[instrument.symbol] = Book(instrument, self.accounts.register(instrument))

    @property
    def instruments(self) -> dict[str, Instrument]:
        return {symbol: book.instrument for symbol, book in self._books.items()}

    def update_id(self, symbol: str) -> int:
        return self._book(symbol).update_id

    def best_bid(self, symbol: str) -> tuple[int, int] | None:
        """(price, total size) of the best bid, background included."""
        side = self._book(symbol).bids
        price = side.best()
        if price is None:
            return None
        level = side.levels[price]
        return price, level.background + level.own

    def best_ask(self, symbol: str) -> tuple[int, int] | None:
        side = self._book(symbol).asks
        price = side.best()
        if price is None:
            return None
        level = side.levels[price]
        return price, level.background + level.own

    def depth(self, symbol: str, limit: int | None = None) -> DepthSnapshot:
        """Aggregated levels, best first, consistent with ``update_id`` (a REST snapshot)."""
        book = self._book(symbol)
        return DepthSnapshot(
            symbol=symbol,
            update_id=book.update_id,
            bids=self._side_depth(book.bids, limit),
            asks=self._side_depth(book.asks, limit),
        )

    @staticmethod
    def _side_depth(side: BookSide, limit: int | None) -> list[tuple[int, int]]:
        prices = side.prices_best_first()
        if limit is not None:
            prices = prices[:limit]
        levels = side.levels
        return [(price, levels[price].background + levels[price].own) for price in prices]

    def volume_ahead(self, order: SimOrder) -> int:
        """Background lots queued ahead of a resting order (0 when not resting)."""
        level = order.level
        if level is None:
            return 0
        ahead = 0
        for queued in level.queue:
            ahead += queued.gap
            if queued is order:
                return ahead
        return 0

    def orders_ahead(self, order: SimOrder) -> int:
        """Lots of our other resting orders queued ahead of ``order`` at its level."""
        level = order.level
        if level is None:
            return 0
        ahead = 0
        for queued in level.queue:
            if queued is order:
                return ahead
            ahead += queued.quantity - queued.filled
        return 0

    def get_order(
        self, account: str, *, order_id: int | None = None, client_order_id: str | None = None
    ) -> SimOrder | None:
        """An open or recently closed order of ``account`` by exchange id or client id."""
        if order_id is not None:
            order = self._orders.get(order_id)
            if order is None or order.account != account:
                return None
            if client_order_id is not None and order.client_order_id != client_order_id:
                return None
            return order
        if client_order_id is None:
            return None
        orders = self._by_account.get(account)
        if orders is not None:
            order = orders.by_client_id.get(client_order_id)
            if order is not None:
                return order
        return self._closed_by_client_id.get((account, client_order_id))

    def open_orders(self, account: str, symbol: str | None = None) -> list[SimOrder]:
        orders = self._by_account.get(account)
        if orders is None:
            return []
        return [order for order in orders.open.values() if symbol is None or order.symbol == symbol]

    def audit(self) -> list[str]:
        """Check the engine's internal invariants; return one line per violation (empty = sound).

        Slow (walks everything): for tests and for a server's debug endpoint, never the hot path.
        """
        problems: list[str] = []
        reserved: dict[tuple[str, str], int] = {}
        for symbol, book in self._books.items():
            best_bid, best_ask = book.bids.best(), book.asks.best()
            if best_bid is not None and best_ask is not None and best_bid >= best_ask:
                problems.append(f"{symbol}: crossed book {best_bid} >= {best_ask}")
            for side in (book.bids, book.asks):
                expected = sorted(price if side.is_bid else -price for price in side.levels)
                if side.keys != expected:
                    problems.append(f"{symbol}: level keys out of step with levels")
                for price, level in side.levels.items():
                    gaps = sum(order.gap for order in level.queue)
                    own = sum(order.quantity - order.filled for order in level.queue)
                    if level.background != gaps + level.tail or level.tail < 0:
                        problems.append(f"{symbol}@{price}: background {level.background} != gaps + tail")
                    if level.own != own:
                        problems.append(f"{symbol}@{price}: own {level.own} != {own}")
                    if not level.queue and not level.background:
                        problems.append(f"{symbol}@{price}: empty level kept")
                    for order in level.queue:
                        if order.gap < 0 or not order.is_open or order.level is not level:
                            problems.append(f"{symbol}@{price}: bad resting order {order!r}")
                        if order.is_buy != side.is_bid or order.price != price:
                            problems.append(f"{symbol}@{price}: order on the wrong level {order!r}")
        for account, orders in self._by_account.items():
            for order in orders.open.values():
                if not order.is_open or order.level is None or order.account != account:
                    problems.append(f"open index holds {order!r}")
                if order.reserved:
                    key = (account, order.reserve_asset)
                    reserved[key] = reserved.get(key, 0) + order.reserved
            if len(orders.by_client_id) != len(orders.open):
                problems.append(f"{account}: client id index out of step with open orders")
        for holder in self.accounts:
            for asset, balance in holder.balances.items():
                if balance.locked != reserved.get((holder.name, asset), 0):
                    problems.append(
                        f"{holder.name}/{asset}: locked {balance.locked} != reserved "
                        f"{reserved.get((holder.name, asset), 0)}"
                    )
        return problems

    def _book(self, symbol: str) -> Book:
        book = self._books.get(symbol)
        if book is None:
            raise SimulatorInputError(f"unknown symbol {symbol!r}")
        return book

    # orders ------------------------------------------------------------------------------
    def place(
        self,
        account: str,
        symbol: str,
        side: Side,
        order_type: OrderType,
        quantity: int,
        price: int = 0,
        time_in_force: TimeInForce = _GTC,
        client_order_id: str | None = None,
        reprice_post_only: bool = False,
        order_id: int | None = None,
    ) -> OrderResult:
        """Place an order; the result says whether it was accepted and what it did.

        ``order_id``: one ``reserve_order_id`` handed out earlier (a venue's stop order that
        enters the book when it triggers keeps the id it was acknowledged with)."""
        book = self._books.get(symbol)
        if book is None:
            return _reject(RejectReason.UNKNOWN_SYMBOL)
        if order_id is not None and (order_id >= self._next_order_id or order_id in self._orders):
            raise SimulatorInputError(f"order id {order_id} was not reserved or is already used")
        instrument = book.instrument
        terms = book.terms
        is_market = order_type is _MARKET
        if order_type is _LIMIT_MAKER and time_in_force is not _GTC:
            return _reject(RejectReason.INVALID_TIME_IN_FORCE)
        if is_market:
            price = 0
        elif price <= 0:
            return _reject(RejectReason.PRICE_OUT_OF_RANGE)
        if quantity <= 0 or quantity < instrument.min_quantity:
            return _reject(RejectReason.QUANTITY_OUT_OF_RANGE)
        maximum = instrument.max_quantity
        if maximum is not None and quantity > maximum:
            return _reject(RejectReason.QUANTITY_OUT_OF_RANGE)
        is_buy = side is _BUY
        opposite = book.asks if is_buy else book.bids
        if is_market:
            reference = opposite.best()
            if reference is not None and reference * quantity < terms.min_notional:
                return _reject(RejectReason.MIN_NOTIONAL)
        elif price * quantity < terms.min_notional:
            return _reject(RejectReason.MIN_NOTIONAL)
        orders = self._by_account.get(account)
        if orders is None:
            orders = self._by_account[account] = _AccountOrders()
        elif client_order_id is not None and client_order_id in orders.by_client_id:
            return _reject(RejectReason.DUPLICATE_CLIENT_ORDER_ID)
        holder = self.accounts.get(account)
        repriced = False
        if order_type is _LIMIT_MAKER:
            best = opposite.best()
            if best is not None and (price >= best if is_buy else price <= best):
                if not reprice_post_only:
                    return _reject(RejectReason.WOULD_TAKE)
                price = best - 1 if is_buy else best + 1
                if price <= 0:
                    return _reject(RejectReason.WOULD_TAKE)
                repriced = True
        limit = None if is_market else price
        is_fok = time_in_force is _FOK
        available = quantity
        cost = 0
        if is_fok or (is_market and is_buy and terms.is_spot):
            available, cost = self._available(opposite, is_buy, limit, quantity, holder)
        reserved = 0
        asset = ""
        if terms.is_spot:
            if is_buy:
                asset = terms.quote
                reserved = (cost if is_market else price * quantity) * terms.quote_units_per_notional
            else:
                asset = terms.base
                reserved = quantity * terms.base_units_per_lot
            if not Accounts.reserve(holder, asset, reserved):
                return _reject(RejectReason.INSUFFICIENT_BALANCE)
        now = self.clock.time_ns()
        if order_id is None:
            order_id = self._next_order_id
            self._next_order_id = order_id + 1
        if client_order_id is None:
            client_order_id = f"sim-{order_id}"
            while client_order_id in orders.by_client_id:  # a caller chose an id of this shape
                client_order_id += "+"
        order = SimOrder(
            order_id,
            client_order_id,
            holder,
            symbol,
            side,
            order_type,
            time_in_force,
            price,
            quantity,
            now,
        )
        order.reserved = reserved
        order.reserve_asset = asset
        order.reprice_post_only = reprice_post_only
        self._orders[order_id] = order
        orders.open[order_id] = order
        orders.by_client_id[order.client_order_id] = order
        executions: list[Execution] = []
        trades: list[TradePrint] = []
        updates: list[OrderUpdate] = []
        if is_fok and available < quantity:
            self._finish(order, _EXPIRED, CloseReason.EXPIRED, now)
        else:
            best = opposite.best()
            stopped = False
            if best is not None and (is_market or (price >= best if is_buy else price <= best)):
                stopped = self._take(book, order, limit, now, executions, trades, updates)
            self._conclude(book, order, stopped, not is_market and time_in_force is _GTC, now)
        return self._order_result(book, order, now, repriced, executions, trades, updates)

    def reserve_order_id(self) -> int:
        """An exchange id for an order that enters the book later (``place(order_id=...)``)."""
        order_id = self._next_order_id
        self._next_order_id = order_id + 1
        return order_id

    def place_market_by_quote(
        self,
        account: str,
        symbol: str,
        side: Side,
        quote_quantity: int,
        client_order_id: str | None = None,
    ) -> OrderResult:
        """A MARKET order sized by quote amount (Binance ``quoteOrderQty``), in notional units.

        Walks the book as matching would (self-trade prevention included) and takes the most
        whole lots whose cost (buy) or proceeds (sell) stay within ``quote_quantity``; that
        quantity then goes through ``place`` like any market order.
        """
        book = self._books.get(symbol)
        if book is None:
            return _reject(RejectReason.UNKNOWN_SYMBOL)
        if quote_quantity <= 0 or quote_quantity < book.terms.min_notional:
            return _reject(RejectReason.MIN_NOTIONAL)
        is_buy = side is _BUY
        holder = self.accounts.get(account)
        budget = quote_quantity
        quantity = 0
        stp = self.self_trade_prevention
        opposite = book.asks if is_buy else book.bids
        for key in reversed(opposite.keys):
            price = -key if is_buy else key
            level = opposite.levels[price]
            chunks: list[int] = []
            stopped = False
            for order in level.queue:
                chunks.append(order.gap)
                if order.holder is holder and stp is not SelfTradePrevention.NONE:
                    if stp is SelfTradePrevention.EXPIRE_TAKER:
                        stopped = True
                        break
                    continue
                chunks.append(order.quantity - order.filled)
            if not stopped:
                chunks.append(level.tail)
            for size in chunks:
                affordable = budget // price
                if affordable < size:
                    quantity += affordable
                    return self.place(account, symbol, side, _MARKET, quantity, 0, _GTC, client_order_id)
                quantity += size
                budget -= size * price
            if stopped:
                break
        return self.place(account, symbol, side, _MARKET, quantity, 0, _GTC, client_order_id)

    def cancel(
        self,
        account: str,
        symbol: str,
        *,
        order_id: int | None = None,
        client_order_id: str | None = None,
    ) -> OrderResult:
        """Cancel an open order by exchange id or client id (both given: both must match)."""
        book = self._books.get(symbol)
        if book is None:
            return _reject(RejectReason.UNKNOWN_SYMBOL)
        order = self._open_order(account, symbol, order_id, client_order_id)
        if order is None:
            return _reject(RejectReason.UNKNOWN_ORDER)
        now = self.clock.time_ns()
        self._unlink(book, order)
        self._finish(order, _CANCELED, CloseReason.CANCELED, now)
        return self._order_result(book, order, now)

    def cancel_all(self, account: str, symbol: str | None = None) -> CancelAllResult:
        """Cancel every open order of ``account`` (of one symbol when given): one batch per book."""
        orders = self._by_account.get(account)
        if orders is None or (symbol is not None and symbol not in self._books):
            return CancelAllResult(orders=[], book_updates=[])
        now = self.clock.time_ns()
        canceled = [order for order in orders.open.values() if symbol is None or order.symbol == symbol]
        touched: dict[str, Book] = {}
        for order in canceled:
            book = self._books[order.symbol]
            touched[order.symbol] = book
            self._unlink(book, order)
            self._finish(order, _CANCELED, CloseReason.BULK_CANCELED, now)
        updates = []
        for book in touched.values():
            update = self._flush(book, now)
            if update is not None:
                updates.append(update)
        return CancelAllResult(orders=canceled, book_updates=updates)

    def amend(
        self,
        account: str,
        symbol: str,
        *,
        price: int,
        quantity: int,
        order_id: int | None = None,
        client_order_id: str | None = None,
        keep_priority: bool = True,
    ) -> OrderResult:
        """Change an open order's price and total quantity (Thalex ``amend`` semantics).

        A smaller total at the same price keeps queue priority; a new price or a larger total
        re-queues the order at the back (and may trade, like a new order). A total at or below
        the filled quantity closes the order. A post-only order that would take is refused
        (``WOULD_TAKE``, order unchanged) unless it reprices. ``keep_priority=False`` re-queues
        on every change (Binance USD-M modify: "reordered in the match queue").
        """
        book = self._books.get(symbol)
        if book is None:
            return _reject(RejectReason.UNKNOWN_SYMBOL)
        order = self._open_order(account, symbol, order_id, client_order_id)
        if order is None:
            return _reject(RejectReason.UNKNOWN_ORDER)
        if price <= 0:
            return _reject(RejectReason.PRICE_OUT_OF_RANGE)
        now = self.clock.time_ns()
        if quantity <= order.filled:
            self._unlink(book, order)
            order.quantity = order.filled
            self._finish(order, _CANCELED, CloseReason.AMENDED_TO_FILLED, now)
            return self._order_result(book, order, now)
        instrument = book.instrument
        terms = book.terms
        maximum = instrument.max_quantity
        if quantity < instrument.min_quantity or (maximum is not None and quantity > maximum):
            return _reject(RejectReason.QUANTITY_OUT_OF_RANGE)
        if price * quantity < terms.min_notional:
            return _reject(RejectReason.MIN_NOTIONAL)
        if (
            price == order.price
            and quantity <= order.quantity
            and (keep_priority or quantity == order.quantity)
        ):
            if quantity < order.quantity:
                reduction = order.quantity - quantity
                order.quantity = quantity
                order.updated_ns = now
                level = order.level
                assert level is not None
                level.own -= reduction
                (book.changed_bids if order.is_buy else book.changed_asks).add(price)
                self._adjust_reserve(order, terms, price, quantity)
            return self._order_result(book, order, now)
        is_buy = order.is_buy
        opposite = book.asks if is_buy else book.bids
        repriced = False
        best = opposite.best()
        crosses = best is not None and (price >= best if is_buy else price <= best)
        if crosses and order.order_type is _LIMIT_MAKER:
            assert best is not None
            if not order.reprice_post_only:
                return _reject(RejectReason.WOULD_TAKE)
            price = best - 1 if is_buy else best + 1
            if price <= 0:
                return _reject(RejectReason.WOULD_TAKE)
            crosses = False
            repriced = True
        if not self._adjust_reserve(order, terms, price, quantity):
            return _reject(RejectReason.INSUFFICIENT_BALANCE)
        self._unlink(book, order)
        order.price = price
        order.quantity = quantity
        order.updated_ns = now
        executions: list[Execution] = []
        trades: list[TradePrint] = []
        updates: list[OrderUpdate] = []
        stopped = False
        if crosses:
            stopped = self._take(book, order, price, now, executions, trades, updates)
        self._conclude(book, order, stopped, True, now)
        return self._order_result(book, order, now, repriced, executions, trades, updates)

    def _conclude(self, book: Book, order: SimOrder, stopped: bool, may_rest: bool, now: int) -> None:
        """After taking: filled, expired by self-trade prevention, expired (IOC/FOK/market), or rests."""
        if order.filled == order.quantity:
            self._finish(order, _FILLED, CloseReason.FILLED, now)
        elif stopped:
            self._finish(order, _EXPIRED, CloseReason.SELF_TRADE_PREVENTION, now)
        elif not may_rest:
            self._finish(order, _EXPIRED, CloseReason.EXPIRED, now)
        else:
            self._rest(book, order)

    def _order_result(
        self,
        book: Book,
        order: SimOrder,
        now: int,
        repriced: bool = False,
        executions: list[Execution] | None = None,
        trades: list[TradePrint] | None = None,
        updates: list[OrderUpdate] | None = None,
    ) -> OrderResult:
        """An accepted operation's result, closing the book's change batch."""
        return OrderResult(
            accepted=True,
            order=order,
            status=order.status,
            filled=order.filled,
            quote_filled=order.quote_filled,
            repriced=repriced,
            executions=executions or [],
            trades=trades or [],
            updates=updates or [],
            book_update=self._flush(book, now),
        )

    def _adjust_reserve(self, order: SimOrder, terms: InstrumentTerms, price: int, quantity: int) -> bool:
        """Re-size an open order's lock for a new price/quantity; False when funds are short."""
        if not terms.is_spot:
            return True
        remaining = quantity - order.filled
        if order.is_buy:
            needed = price * remaining * terms.quote_units_per_notional
        else:
            needed = remaining * terms.base_units_per_lot
        delta = needed - order.reserved
        if delta > 0:
            if not Accounts.reserve(order.holder, order.reserve_asset, delta):
                return False
        elif delta < 0:
            Accounts.release(order.holder, order.reserve_asset, -delta)
        order.reserved = needed
        return True

    def _open_order(
        self, account: str, symbol: str, order_id: int | None, client_order_id: str | None
    ) -> SimOrder | None:
        orders = self._by_account.get(account)
        if orders is None:
            return None
        if order_id is not None:
            order = orders.open.get(order_id)
            if order is not None and client_order_id is not None and order.client_order_id != client_order_id:
                return None
        elif client_order_id is not None:
            order = orders.by_client_id.get(client_order_id)
        else:
            return None
        if order is None or order.symbol != symbol:
            return None
        return order

    # matching core -----------------------------------------------------------------------
    def _available(
        self, opposite: BookSide, is_buy: bool, limit: int | None, needed: int, holder: Account
    ) -> tuple[int, int]:
        """Lots (up to ``needed``) and their cost in notional units that a taker would get.

        Mirrors ``_take`` exactly, self-trade prevention included, so FOK and the market-buy
        lock agree with what matching then does.
        """
        got = 0
        cost = 0
        stp = self.self_trade_prevention
        levels = opposite.levels
        for key in reversed(opposite.keys):
            price = -key if is_buy else key
            if limit is not None and (price > limit if is_buy else price < limit):
                break
            level = levels[price]
            for order in level.queue:
                gap = order.gap
                if gap:
                    if got + gap >= needed:
                        return needed, cost + (needed - got) * price
                    got += gap
                    cost += gap * price
                if order.holder is holder:
                    if stp is SelfTradePrevention.EXPIRE_MAKER:
                        continue
                    if stp is SelfTradePrevention.EXPIRE_TAKER:
                        return got, cost
                size = order.quantity - order.filled
                if got + size >= needed:
                    return needed, cost + (needed - got) * price
                got += size
                cost += size * price
            tail = level.tail
            if got + tail >= needed:
                return needed, cost + (needed - got) * price
            got += tail
            cost += tail * price
        return got, cost

    def _take(
        self,
        book: Book,
        order: SimOrder,
        limit: int | None,
        now: int,
        executions: list[Execution],
        trades: list[TradePrint],
        updates: list[OrderUpdate],
    ) -> bool:
        """Match ``order`` as taker against the opposite side; True when self-trade stopped it."""
        is_buy = order.is_buy
        opposite = book.asks if is_buy else book.bids
        keys = opposite.keys
        levels = opposite.levels
        changed = book.changed_asks if is_buy else book.changed_bids
        stp = self.self_trade_prevention
        holder = order.holder
        execute = self._execute
        remaining = order.quantity - order.filled
        while remaining and keys:
            price = -keys[-1] if is_buy else keys[-1]
            if limit is not None and (price > limit if is_buy else price < limit):
                break
            level = levels[price]
            changed.add(price)
            queue = level.queue
            while remaining and queue:
                head = queue[0]
                gap = head.gap
                if gap:
                    taken = gap if gap < remaining else remaining
                    head.gap = gap - taken
                    level.background -= taken
                    remaining -= taken
                    if is_buy:
                        execute(book, price, taken, order, None, True, now, executions, trades)
                    else:
                        execute(book, price, taken, None, order, False, now, executions, trades)
                    if not remaining:
                        break
                if head.holder is holder and stp is not SelfTradePrevention.NONE:
                    if stp is SelfTradePrevention.EXPIRE_TAKER:
                        return True
                    queue.popleft()
                    if queue:
                        queue[0].gap += head.gap
                    else:
                        level.tail += head.gap
                    level.own -= head.quantity - head.filled
                    head.level = None
                    self._finish(head, _EXPIRED, CloseReason.SELF_TRADE_PREVENTION, now)
                    updates.append(
                        OrderUpdate(
                            order=head,
                            status=_EXPIRED,
                            close_reason=CloseReason.SELF_TRADE_PREVENTION,
                            time_ns=now,
                        )
                    )
                    continue
                size = head.quantity - head.filled
                taken = size if size < remaining else remaining
                if is_buy:
                    execute(book, price, taken, order, head, True, now, executions, trades)
                else:
                    execute(book, price, taken, head, order, False, now, executions, trades)
                level.own -= taken
                remaining -= taken
                if taken == size:
                    queue.popleft()
                    head.level = None
                    self._finish(head, _FILLED, CloseReason.FILLED, now)
            if remaining and level.tail:
                tail = level.tail
                taken = tail if tail < remaining else remaining
                level.tail = tail - taken
                level.background -= taken
                remaining -= taken
                if is_buy:
                    execute(book, price, taken, order, None, True, now, executions, trades)
                else:
                    execute(book, price, taken, None, order, False, now, executions, trades)
            if not queue and not level.background:
                keys.pop()
                del levels[price]
        return False

    def _execute(
        self,
        book: Book,
        price: int,
        quantity: int,
        buy_order: SimOrder | None,
        sell_order: SimOrder | None,
        taker_is_buy: bool,
        now: int,
        executions: list[Execution],
        trades: list[TradePrint],
    ) -> None:
        """One trade between two parties (None = the market): settle, update orders, record."""
        trade_id = book.next_trade_id
        book.next_trade_id = trade_id + 1
        terms = book.terms
        accounts = self.accounts
        buyer_release = seller_release = 0
        if buy_order is not None:
            buyer = buy_order.holder
            if terms.is_spot:
                paid = buy_order.price if buy_order.order_type is not _MARKET else price
                buyer_release = paid * quantity * terms.quote_units_per_notional
                buy_order.reserved -= buyer_release
            buy_id = buy_order.order_id
        else:
            buyer = accounts.market
            buy_id = NO_ORDER_ID
        if sell_order is not None:
            seller = sell_order.holder
            if terms.is_spot:
                seller_release = quantity * terms.base_units_per_lot
                sell_order.reserved -= seller_release
            sell_id = sell_order.order_id
        else:
            seller = accounts.market
            sell_id = NO_ORDER_ID
        buyer_fee, seller_fee, buyer_asset, seller_asset = accounts.settle(
            terms,
            trade_id,
            now,
            price,
            quantity,
            buyer,
            seller,
            not taker_is_buy,
            buyer_release,
            seller_release,
            buy_id,
            sell_id,
        )
        if buy_order is not None:
            executions.append(
                _execute(buy_order, trade_id, price, quantity, not taker_is_buy, buyer_fee, buyer_asset, now)
            )
        if sell_order is not None:
            executions.append(
                _execute(sell_order, trade_id, price, quantity, taker_is_buy, seller_fee, seller_asset, now)
            )
        trades.append(
            TradePrint(
                symbol=book.symbol,
                trade_id=trade_id,
                price=price,
                quantity=quantity,
                aggressor=_BUY if taker_is_buy else _SELL,
                buy_order_id=buy_id,
                sell_order_id=sell_id,
                time_ns=now,
            )
        )

    def _rest(self, book: Book, order: SimOrder) -> None:
        price = order.price
        if order.is_buy:
            side = book.bids
            book.changed_bids.add(price)
        else:
            side = book.asks
            book.changed_asks.add(price)
        level = side.levels.get(price)
        if level is None:
            level = side.add(price)
        order.gap = level.tail
        level.tail = 0
        if level.queue is NO_QUEUE:
            level.queue = deque()
        level.queue.append(order)
        level.own += order.quantity - order.filled
        order.level = level

    def _unlink(self, book: Book, order: SimOrder) -> None:
        """Take a resting order out of its level; its gap merges into the order behind it."""
        level = order.level
        if level is None:
            return
        queue = level.queue
        gap = order.gap
        if queue[-1] is order:
            queue.pop()
            level.tail += gap
        elif queue[0] is order:
            queue.popleft()
            queue[0].gap += gap
        else:
            index = queue.index(order)
            del queue[index]
            queue[index].gap += gap
        level.own -= order.quantity - order.filled
        order.level = None
        order.gap = 0
        price = level.price
        if order.is_buy:
            book.changed_bids.add(price)
            if not queue and not level.background:
                book.bids.remove(price)
        else:
            book.changed_asks.add(price)
            if not queue and not level.background:
                book.asks.remove(price)

    def _finish(self, order: SimOrder, status: OrderStatus, reason: CloseReason, now: int) -> None:
        """Close an order: release what it still locks, drop it from the open indexes, archive it."""
        order.status = status
        order.close_reason = reason
        order.updated_ns = now
        if order.reserved:
            Accounts.release(order.holder, order.reserve_asset, order.reserved)
            order.reserved = 0
        orders = self._by_account[order.account]
        del orders.open[order.order_id]
        client_order_id = order.client_order_id
        if orders.by_client_id.get(client_order_id) is order:
            del orders.by_client_id[client_order_id]
        self._closed_by_client_id[(order.account, client_order_id)] = order
        closed = self._closed
        closed.append(order)
        if len(closed) > self.order_history_limit:
            old = closed.popleft()
            self.closed_forgotten += 1
            self._orders.pop(old.order_id, None)
            key = (old.account, old.client_order_id)
            if self._closed_by_client_id.get(key) is old:
                del self._closed_by_client_id[key]

    def _flush(self, book: Book, now: int) -> BookUpdate | None:
        """Close the current change batch: one update id and the new size of each changed level."""
        changed_bids = book.changed_bids
        changed_asks = book.changed_asks
        if not changed_bids and not changed_asks:
            return None
        book.update_id += 1
        bids = changed_sizes(changed_bids, book.bids.levels, True)
        asks = changed_sizes(changed_asks, book.asks.levels, False)
        changed_bids.clear()
        changed_asks.clear()
        return BookUpdate(symbol=book.symbol, update_id=book.update_id, bids=bids, asks=asks, time_ns=now)


__all__ = [
    "NO_ORDER_ID",
    "BookUpdate",
    "CancelAllResult",
    "DepthSnapshot",
    "Execution",
    "MarketResult",
    "MatchingEngine",
    "OrderResult",
    "OrderUpdate",
    "SelfTradePrevention",
    "SimOrder",
    "TradePrint",
]
