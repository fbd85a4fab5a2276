"""One simulated venue: a matching engine plus what its servers publish and answer from.

``SimVenue`` is the seam between the pure engine and the protocol servers. Every operation
(ours or the replayed market's) goes through it; it returns the engine's result and fans the
result out as ``SimEvent`` values to listeners, in the order a real venue would publish
them: the order's acceptance, its executions, its closing, the public trades and the book
batch. A Binance-compatible and a Thalex-compatible server each register a listener and
turn these events into their own wire messages. Sans-I/O: listeners are plain callables.

It also keeps what the servers' REST/RPC market-data endpoints answer from: recent public
trades, rolling 24 h statistics and one-minute candles per symbol.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from hftkit.core.types import Instrument, OrderStatus, OrderType, Side, TimeInForce
from hftkit.sim.engine.errors import CloseReason
from hftkit.sim.engine.matching import (
    BookUpdate,
    CancelAllResult,
    DepthSnapshot,
    Execution,
    MarketResult,
    MatchingEngine,
    OrderResult,
    OrderUpdate,
    SimOrder,
    TradePrint,
)

logger = logging.getLogger(__name__)

DAY_NS = 86_400 * 1_000_000_000
MINUTE_NS = 60 * 1_000_000_000
# Trades kept one by one for the 24 h ticker; older minutes of the day come from the minute
# candles. Unbounded, a day of trades at replay rates is millions of records.
DAY_TRADES_KEPT = 4096


class OrderEventKind(enum.Enum):
    ACCEPTED = "accepted"  # a new order entered the engine (before any of its executions)
    AMENDED = "amended"  # price and/or size changed in place (Thalex amend)
    CLOSED = "closed"  # left the engine without a final fill: canceled, expired, STP
    FILLED = "filled"  # closed by its last execution (after that Execution event)


class OrderEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A change to one of an account's orders that is not itself an execution."""

    kind: OrderEventKind
    order: SimOrder
    status: OrderStatus
    close_reason: CloseReason | None
    repriced: bool = False  # post-only moved one tick away (Thalex)
    time_ns: int


SimEvent = OrderEvent | Execution | TradePrint | BookUpdate
SimListener = Callable[[SimEvent], None]


@dataclass
class TickerStatistics:
    """Rolling 24 h figures of one symbol, from public trades (for ticker endpoints)."""

    symbol: str
    open_price: int = 0
    high_price: int = 0
    low_price: int = 0
    last_price: int = 0
    last_quantity: int = 0
    volume: int = 0  # lots
    quote_volume: int = 0  # ticks * lots
    count: int = 0
    first_trade_id: int = -1
    last_trade_id: int = -1
    open_time_ns: int = 0
    close_time_ns: int = 0


@dataclass
class Candle:
    """One-minute OHLCV candle (prices in ticks, volumes in lots and ticks*lots)."""

    open_time_ns: int
    open: int
    high: int
    low: int
    close: int
    volume: int = 0
    quote_volume: int = 0
    trades: int = 0
    taker_buy_volume: int = 0
    taker_buy_quote_volume: int = 0
    first_trade_id: int = -1
    last_trade_id: int = -1


@dataclass
class _SymbolState:
    trades: deque[TradePrint] = field(default_factory=lambda: deque(maxlen=1000))
    day: deque[TradePrint] = field(default_factory=lambda: deque(maxlen=DAY_TRADES_KEPT))
    candles: deque[Candle] = field(default_factory=lambda: deque(maxlen=1440))


class SimVenue:
    """A venue of the simulator: engine, accounts, event fan-out and market statistics."""

    def __init__(self, name: str, engine: MatchingEngine, *, keep_trades: int = 1000) -> None:
        self.name = name
        self.engine = engine
        self.accounts = engine.accounts
        self._listeners: list[SimListener] = []
        self._symbols: dict[str, _SymbolState] = {}
        self._keep_trades = keep_trades
        self.listener_errors = 0
        for symbol in engine.instruments:
            self._state(symbol)

    # set-up ------------------------------------------------------------------------------
    def add_instrument(self, instrument: Instrument) -> None:
        self.engine.add_instrument(instrument)
        self._state(instrument.symbol)

    @property
    def instruments(self) -> dict[str, Instrument]:
        return self.engine.instruments

    def add_listener(self, listener: SimListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: SimListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _state(self, symbol: str) -> _SymbolState:
        state = self._symbols.get(symbol)
        if state is None:
            state = self._symbols[symbol] = _SymbolState(trades=deque(maxlen=self._keep_trades))
        return state

    # orders ------------------------------------------------------------------------------
    def place(
        self,
        account: str,
        symbol: str,
        side: Side,
        order_type: OrderType,
        quantity: int,
        price: int = 0,
        time_in_force: TimeInForce = TimeInForce.GTC,
        client_order_id: str | None = None,
        reprice_post_only: bool = False,
        order_id: int | None = None,
    ) -> OrderResult:
        result = self.engine.place(
            account,
            symbol,
            side,
            order_type,
            quantity,
            price,
            time_in_force,
            client_order_id,
            reprice_post_only,
            order_id=order_id,
        )
        if result.accepted and result.order is not None:
            order = result.order
            events: list[SimEvent] = [
                OrderEvent(
                    kind=OrderEventKind.ACCEPTED,
                    order=order,
                    status=OrderStatus.NEW,
                    close_reason=None,
                    repriced=result.repriced,
                    time_ns=order.created_ns,
                )
            ]
            self._publish_order_result(result, events)
        return result

    def cancel(
        self, account: str, symbol: str, *, order_id: int | None = None, client_order_id: str | None = None
    ) -> OrderResult:
        result = self.engine.cancel(account, symbol, order_id=order_id, client_order_id=client_order_id)
        if result.accepted and result.order is not None:
            self._publish_order_result(result, [])
        return result

    def cancel_all(self, account: str, symbol: str | None = None) -> CancelAllResult:
        result = self.engine.cancel_all(account, symbol)
        events: list[SimEvent] = [
            OrderEvent(
                kind=OrderEventKind.CLOSED,
                order=order,
                status=order.status,
                close_reason=order.close_reason,
                time_ns=order.updated_ns,
            )
            for order in result.orders
        ]
        events.extend(result.book_updates)
        self._emit(events)
        return result

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
        result = self.engine.amend(
            account,
            symbol,
            price=price,
            quantity=quantity,
            order_id=order_id,
            client_order_id=client_order_id,
            keep_priority=keep_priority,
        )
        if result.accepted and result.order is not None:
            order = result.order
            events: list[SimEvent] = []
            if order.is_open or result.executions:
                events.append(
                    OrderEvent(
                        kind=OrderEventKind.AMENDED,
                        order=order,
                        status=order.status if order.is_open else OrderStatus.NEW,
                        close_reason=None,
                        repriced=result.repriced,
                        time_ns=order.updated_ns,
                    )
                )
            self._publish_order_result(result, events)
        return result

    def _publish_order_result(self, result: OrderResult, events: list[SimEvent]) -> None:
        order = result.order
        assert order is not None
        _add_executions(events, result.executions, operated=order)
        events.extend(
            OrderEvent(
                kind=OrderEventKind.CLOSED,
                order=update.order,
                status=update.status,
                close_reason=update.close_reason,
                time_ns=update.time_ns,
            )
            for update in result.updates
        )
        if not order.is_open:
            filled_last = bool(result.executions) and order.status is OrderStatus.FILLED
            events.append(
                OrderEvent(
                    kind=OrderEventKind.FILLED if filled_last else OrderEventKind.CLOSED,
                    order=order,
                    status=order.status,
                    close_reason=order.close_reason,
                    time_ns=order.updated_ns,
                )
            )
        events.extend(result.trades)
        if result.book_update is not None:
            events.append(result.book_update)
        self._emit(events)

    # replayed market -----------------------------------------------------------------------
    def apply_depth(
        self, symbol: str, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]
    ) -> MarketResult:
        return self._publish_market(symbol, self.engine.apply_depth(symbol, bids, asks))

    def replace_background(
        self, symbol: str, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]
    ) -> MarketResult:
        return self._publish_market(symbol, self.engine.replace_background(symbol, bids, asks))

    def apply_market_trade(self, symbol: str, price: int, quantity: int, aggressor: Side) -> MarketResult:
        return self._publish_market(
            symbol, self.engine.apply_market_trade(symbol, price, quantity, aggressor)
        )

    def _publish_market(self, symbol: str, result: MarketResult) -> MarketResult:
        events: list[SimEvent] = []
        _add_executions(events, result.executions, operated=None)
        events.extend(result.trades)
        if result.book_update is not None:
            events.append(result.book_update)
        self._emit(events)
        return result

    # queries -----------------------------------------------------------------------------
    def depth(self, symbol: str, limit: int | None = None) -> DepthSnapshot:
        return self.engine.depth(symbol, limit)

    def recent_trades(self, symbol: str, limit: int = 500) -> list[TradePrint]:
        trades = self._state(symbol).trades
        if limit >= len(trades):
            return list(trades)
        return list(trades)[-limit:]

    def ticker(self, symbol: str, now_ns: int) -> TickerStatistics:
        """24 h statistics ending now (trades older than a day are dropped on the way)."""
        state = self._state(symbol)
        day = state.day
        while day and day[0].time_ns < now_ns - DAY_NS:
            day.popleft()
        statistics = TickerStatistics(symbol, open_time_ns=now_ns - DAY_NS, close_time_ns=now_ns)
        if not day:
            last = state.trades[-1] if state.trades else None
            if last is not None:
                statistics.last_price = statistics.open_price = last.price
                statistics.high_price = statistics.low_price = last.price
            return statistics
        first = day[0]
        # minutes of the day older than the trades kept (only once more than DAY_TRADES_KEPT
        # trades happened in the day): their candles, whole minutes inside the window
        older = [
            candle
            for candle in state.candles
            if candle.open_time_ns >= now_ns - DAY_NS and candle.open_time_ns + MINUTE_NS <= first.time_ns
        ]
        statistics.open_price = older[0].open if older else first.price
        statistics.high_price = max([trade.price for trade in day] + [candle.high for candle in older])
        statistics.low_price = min([trade.price for trade in day] + [candle.low for candle in older])
        statistics.last_price = day[-1].price
        statistics.last_quantity = day[-1].quantity
        statistics.volume = sum(trade.quantity for trade in day) + sum(candle.volume for candle in older)
        statistics.quote_volume = sum(trade.price * trade.quantity for trade in day) + sum(
            candle.quote_volume for candle in older
        )
        statistics.count = len(day) + sum(candle.trades for candle in older)
        statistics.first_trade_id = older[0].first_trade_id if older else first.trade_id
        statistics.last_trade_id = day[-1].trade_id
        return statistics

    def backfill_candles(self, symbol: str, candles: Iterable[Candle]) -> int:
        """Put history (``sim.backfill``) before the live candles: only minutes older than the first
        live one, as many as the day kept holds; how many were added."""
        live = self._state(symbol).candles
        first = live[0].open_time_ns if live else None
        older = [candle for candle in candles if first is None or candle.open_time_ns < first]
        room = (live.maxlen or len(older)) - len(live)
        older = older[-room:] if room > 0 else []
        live.extendleft(reversed(older))
        return len(older)

    def candles(self, symbol: str, limit: int = 500) -> list[Candle]:
        candles = self._state(symbol).candles
        return list(candles)[-limit:]

    # fan-out -----------------------------------------------------------------------------
    def _emit(self, events: list[SimEvent]) -> None:
        for event in events:
            if isinstance(event, TradePrint):
                self._record_trade(event)
        listeners = self._listeners
        for event in events:
            for listener in listeners:
                try:
                    listener(event)
                except Exception:
                    self.listener_errors += 1
                    logger.exception("%s: a listener failed on %s", self.name, type(event).__name__)

    def _record_trade(self, trade: TradePrint) -> None:
        state = self._state(trade.symbol)
        state.trades.append(trade)
        day = state.day
        day.append(trade)  # bounded: past DAY_TRADES_KEPT the oldest go, their minutes stay in candles
        while day[0].time_ns < trade.time_ns - DAY_NS:  # and a day's age, even if no ticker is asked
            day.popleft()
        minute = trade.time_ns - trade.time_ns % MINUTE_NS
        candles = state.candles
        candle = candles[-1] if candles else None
        if candle is None or candle.open_time_ns != minute:
            candle = Candle(
                minute, trade.price, trade.price, trade.price, trade.price, first_trade_id=trade.trade_id
            )
            candles.append(candle)
        candle.high = max(candle.high, trade.price)
        candle.low = min(candle.low, trade.price)
        candle.close = trade.price
        candle.volume += trade.quantity
        candle.quote_volume += trade.price * trade.quantity
        candle.trades += 1
        candle.last_trade_id = trade.trade_id
        if trade.aggressor is Side.BUY:
            candle.taker_buy_volume += trade.quantity
            candle.taker_buy_quote_volume += trade.price * trade.quantity


def _add_executions(events: list[SimEvent], executions: list[Execution], operated: SimOrder | None) -> None:
    """Executions in order, each resting order's FILLED right after its last execution.

    The operated order's own closing event is added by the caller, after all its executions.
    """
    for execution in executions:
        events.append(execution)
        order = execution.order
        if order is not operated and execution.filled == order.quantity:
            events.append(
                OrderEvent(
                    kind=OrderEventKind.FILLED,
                    order=order,
                    status=OrderStatus.FILLED,
                    close_reason=CloseReason.FILLED,
                    time_ns=execution.time_ns,
                )
            )


__all__ = [
    "Candle",
    "OrderEvent",
    "OrderEventKind",
    "OrderUpdate",
    "SimEvent",
    "SimListener",
    "SimVenue",
    "TickerStatistics",
]
