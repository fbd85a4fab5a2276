"""``PaperVenue``: live market data from a real adapter, orders matched in process, never sent.

Paper trading runs the node unchanged against the live market: the real adapter (testnet,
mainnet or the simulator) keeps the books and delivers market events to the engine as always;
every order request goes to a ``SimulatedVenue`` whose matching engine mirrors that live book as
background liquidity (each book delta and trade the real adapter delivers is applied to it as
it arrives). Fills therefore come from the same matching rules as a backtest (queue position
behind the displayed size, partial fills, fees, the venue's filters and error codes), with the
configured order-entry and ack latency on the running event loop. The real adapter's order
methods are never called: nothing reaches the venue.

Events the engine receives: the real adapter's market and connection events, and the simulated
venue's private ones (order updates, fills). The simulated venue's own view of the book is not
published (the strategy reads the real book), and private events of the real account (another
session's orders) are dropped and counted.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from hftkit.backtest.latency import LatencyModel
from hftkit.backtest.rate import OrderRate
from hftkit.backtest.venue import RealTimeScheduler, SimulatedVenue
from hftkit.book.order_book import OrderBook
from hftkit.core.clock import Clock
from hftkit.core.types import (
    BalanceUpdate,
    BookDelta,
    BookTicker,
    ConnectionEvent,
    Instrument,
    OrderUpdate,
    PositionUpdate,
    Trade,
)
from hftkit.sim.engine.accounts import FeeSchedule
from hftkit.sim.engine.errors import SimulatorInputError
from hftkit.venues.base import (
    AmendRequest,
    EventListener,
    MassQuote,
    MassQuoteReport,
    OrderRequest,
    VenueAdapter,
    VenueError,
    VenueEvent,
    VenueStatus,
)

__all__ = ["PaperVenue"]

_MARKET_EVENTS = (BookDelta, Trade, BookTicker, ConnectionEvent)


class PaperVenue:
    """A ``VenueAdapter``: ``market`` for data, an in-process ``SimulatedVenue`` for orders."""

    def __init__(
        self,
        market: VenueAdapter,
        *,
        latency: LatencyModel | None = None,
        fees: FeeSchedule | None = None,
        balances: Mapping[str, str] | None = None,
        error_style: str = "binance",
        order_rate: Callable[[Clock], OrderRate] | None = None,
    ) -> None:
        self.market = market
        self._order_rate = order_rate
        self.name = market.name
        self.capabilities = market.capabilities
        self.counters: Counter[str] = Counter()
        self._listeners: list[EventListener] = []
        self._instruments: dict[str, Instrument] | None = None
        self._latency = latency or LatencyModel.zero()
        self._fees = fees
        self._balances = dict(balances or {})
        self._error_style = "thalex" if error_style == "thalex" else "binance"
        self.simulated: SimulatedVenue | None = None
        self._order_written: Callable[[str, int], None] | None = None
        market.add_listener(self._on_market)

    # the gateway's tick-to-trade hook lives on the venue that "writes" the order
    @property
    def order_written(self) -> Callable[[str, int], None] | None:
        return self._order_written

    @order_written.setter
    def order_written(self, hook: Callable[[str, int], None] | None) -> None:
        self._order_written = hook
        if self.simulated is not None:
            self.simulated.order_written = hook

    async def __aenter__(self) -> PaperVenue:
        await self.market.__aenter__()
        self._build()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.market.__aexit__(*exc_info)

    def _build(self) -> SimulatedVenue:
        if self.simulated is None:
            simulated = SimulatedVenue(
                self.name,
                self.market.instruments.values(),
                scheduler=RealTimeScheduler(asyncio.get_running_loop()),
                capabilities=self.capabilities,
                latency=self._latency,
                fees=self._fees,
                balances=self._balances,
                error_style=self._error_style,  # type: ignore[arg-type]
                publish_market=False,
                order_rate=self._order_rate,
            )
            simulated.order_written = self._order_written
            for listener in self._listeners:
                simulated.add_listener(listener)
            self.simulated = simulated
        return self.simulated

    @property
    def instruments(self) -> Mapping[str, Instrument]:
        return self.market.instruments

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)
        if self.simulated is not None:
            self.simulated.add_listener(listener)

    def book(self, symbol: str) -> OrderBook | None:
        return self.market.book(symbol)

    def book_synced(self, symbol: str) -> bool:
        return self.market.book_synced(symbol)

    def status(self) -> VenueStatus:
        return self.market.status()

    async def subscribe(self, symbols: Sequence[str], *, books: bool = True, trades: bool = True) -> None:
        # the matching engine needs the trades to fill resting orders, whatever the strategy wants
        await self.market.subscribe(symbols, books=books, trades=True)

    # live market -> engine and matching ---------------------------------------------------------
    def _on_market(self, event: VenueEvent) -> None:
        kind = type(event)
        if kind not in _MARKET_EVENTS:
            self.counters["venue_private_events_dropped"] += 1  # the real account: not ours here
            return
        simulated = self.simulated
        if simulated is not None:
            try:
                if kind is BookDelta:
                    if event.is_snapshot:  # type: ignore[union-attr]
                        simulated.seed(event.symbol, event.bids, event.asks)  # type: ignore[union-attr]
                    else:
                        simulated.depth(event.symbol, event.bids, event.asks)  # type: ignore[union-attr]
                elif kind is Trade:
                    simulated.trade(event.symbol, event.price, event.size, event.aggressor)  # type: ignore[union-attr]
            except SimulatorInputError:
                self.counters["market_events_refused"] += 1
        for listener in self._listeners:
            listener(event)

    # orders: the simulated venue, never the real one ----------------------------------------------
    def _venue(self) -> SimulatedVenue:
        return self._build()

    async def place_order(self, request: OrderRequest) -> OrderUpdate:
        return await self._venue().place_order(request)

    async def place_orders(self, requests: Sequence[OrderRequest]) -> list[OrderUpdate | VenueError]:
        return await self._venue().place_orders(requests)

    async def amend_order(self, request: AmendRequest) -> OrderUpdate:
        return await self._venue().amend_order(request)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderUpdate:
        return await self._venue().cancel_order(symbol, client_order_id)

    async def cancel_all(self, symbol: str | None = None) -> int:
        return await self._venue().cancel_all(symbol)

    async def mass_quote(self, quotes: Sequence[MassQuote]) -> MassQuoteReport:
        return await self._venue().mass_quote(quotes)

    async def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        return await self._venue().open_orders(symbol)

    async def query_order(self, symbol: str, client_order_id: str) -> OrderUpdate | None:
        return await self._venue().query_order(symbol, client_order_id)

    async def balances(self) -> list[BalanceUpdate]:
        return await self._venue().balances()

    async def positions(self) -> list[PositionUpdate]:
        return await self._venue().positions()
