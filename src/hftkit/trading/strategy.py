"""The strategy API: what a strategy hears, what it may read, and what it answers.

A ``Strategy`` is a sans-I/O decision maker: the engine (``hftkit.trading.engine``) calls it on
book, trade, fill, order update, timer and execution events, and it answers with a ``Decision``
(desired quote ladders, taker orders, timers to set) or None. It never awaits and never touches a
socket, so it can be unit-tested by calling its methods. What it may read lives behind
``StrategyContext`` (books, positions, aggregated positions, open orders, measured latency),
which the engine implements and tests may fake.

A strategy that a node config names (``strategies[].path``) declares its params as the class
attribute ``config_type`` (a msgspec Struct or dataclass) and is constructed as
``Class(params, name=name)``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import msgspec

from hftkit.book.order_book import OrderBook
from hftkit.core.types import Fill, Instrument, Order, OrderIntent, Quote, Trade
from hftkit.metrics import LatencyHistogram
from hftkit.trading.execution import ExecutionReport

__all__ = [
    "Decision",
    "InstrumentKey",
    "Strategy",
    "StrategyContext",
    "Subscription",
    "TimerRequest",
]

InstrumentKey = tuple[str, str]


# what a strategy says ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Subscription:
    """The events a strategy wants from one venue: books and/or trades of ``symbols``; with
    ``all_fills`` it also sees fills of orders it does not own (a hedger watching a maker)."""

    venue: str
    symbols: tuple[str, ...]
    books: bool = True
    trades: bool = False
    all_fills: bool = False


class TimerRequest(msgspec.Struct, frozen=True):
    """Call ``on_timer(name)`` after ``delay_s`` (one shot; the same name replaces a pending one)."""

    name: str
    delay_s: float


class Decision(msgspec.Struct, kw_only=True):
    """What a strategy wants now. ``quotes`` replaces the whole ladder of each instrument named
    (an empty tuple pulls every quote); ``orders`` are sent once each."""

    quotes: dict[InstrumentKey, tuple[Quote, ...]] = {}
    orders: list[OrderIntent] = []
    timers: list[TimerRequest] = []
    cancel_all: list[InstrumentKey] = []


class StrategyContext(Protocol):
    """What a strategy may read (the manager implements it; tests may fake it)."""

    def now_ns(self) -> int: ...

    def instrument(self, venue: str, symbol: str) -> Instrument: ...

    def book(self, venue: str, symbol: str) -> OrderBook | None: ...

    def position(self, venue: str, symbol: str) -> int: ...

    def aggregate_position(self, group: str) -> Decimal: ...

    def open_orders(self, venue: str, symbol: str) -> list[Order]: ...

    def order_latency(self, venue: str) -> LatencyHistogram | None: ...

    @property
    def trading_halted(self) -> bool: ...


class Strategy(abc.ABC):
    """Base class: override the callbacks you need; each returns a ``Decision`` or None."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._context: StrategyContext | None = None

    @property
    def context(self) -> StrategyContext:
        if self._context is None:
            raise RuntimeError(f"strategy {self.name!r} is not bound to a context yet")
        return self._context

    def bind(self, context: StrategyContext) -> None:
        self._context = context

    @abc.abstractmethod
    def subscriptions(self) -> Sequence[Subscription]:
        """The (venue, symbols) this strategy hears about; it may only trade these instruments."""

    def on_start(self) -> Decision | None:
        return None

    def on_book(self, venue: str, symbol: str, book: OrderBook) -> Decision | None:
        return None

    def on_trade(self, trade: Trade) -> Decision | None:
        return None

    def on_fill(self, fill: Fill) -> Decision | None:
        return None

    def on_order_update(self, order: Order) -> Decision | None:
        return None

    def on_timer(self, name: str) -> Decision | None:
        return None

    def on_execution(self, report: ExecutionReport) -> Decision | None:
        return None

    def on_stop(self) -> None:
        return None
