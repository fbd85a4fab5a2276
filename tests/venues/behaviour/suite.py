"""The behaviours every venue adapter shows against ``hftkit.sim`` over real loopback sockets.

Written once; each ``test_<venue>.py`` subclasses ``VenueBehaviourSuite`` and supplies its
``VenueCase`` through the ``case`` fixture. The simulator runs a synthetic book that moves
only when the suite moves it (``MarketMover``), so "the adapter's book equals the venue's"
is checked at a quiescent moment instead of racing a live feed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal

from cases import Adapter, VenueCase

from hftkit.core.numbers import Rounding
from hftkit.core.types import (
    BalanceUpdate,
    BookDelta,
    ConnectionEvent,
    Fill,
    Instrument,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionUpdate,
    Side,
    TimeInForce,
)
from hftkit.sim.config import config_from_mapping
from hftkit.sim.engine.matching import SimOrder
from hftkit.sim.engine.venue import OrderEvent, OrderEventKind, SimVenue
from hftkit.sim.runner import Simulator
from hftkit.venues.base import AmendRequest, OrderAnswer, OrderNotFoundError, OrderRequest, VenueAdapter
from hftkit.venues.binance.adapter import UnsupportedOperationError

DEPTH = 10  # levels compared between the adapter's book and the simulator's
WAIT_S = 8.0  # every condition wait has this deadline (loaded CI machines included)

Levels = list[tuple[int, int]]


async def wait_until(
    predicate: Callable[[], bool],
    what: str,
    *,
    timeout_s: float = WAIT_S,
    between: Callable[[], object] | None = None,
) -> None:
    """Poll ``predicate`` until true; ``between`` runs between polls (e.g. move the market)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        if between is not None:
            between()
        await asyncio.sleep(0.01)


def simulator_for(case: VenueCase, *, seed: int = 11) -> Simulator:
    """One venue, one symbol, a seeded synthetic book that moves only when a test moves it."""
    config = config_from_mapping(
        {
            "source": "synthetic",
            "seed": seed,
            "venues": {case.sim_venue: {"symbols": [case.symbol]}},
            "synthetic": {case.symbol: {"levels": 25, "min_size_lots": 50, "max_size_lots": 400}},
        }
    )
    return Simulator(config, max_synthetic_operations=0)


class Recorder:
    """Every event an adapter emitted, in order, with the latest state per client order id."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.orders: dict[str, OrderUpdate] = {}
        self.hooks: list[Callable[[object], None]] = []

    def __call__(self, event: object) -> None:
        self.events.append(event)
        if isinstance(event, OrderUpdate):
            self.orders[event.client_order_id] = event
        for hook in self.hooks:
            hook(event)

    def of(self, kind: type, **fields: object) -> list:
        return [
            event
            for event in self.events
            if isinstance(event, kind) and all(getattr(event, key) == value for key, value in fields.items())
        ]

    def status(self, client_order_id: str) -> OrderStatus | None:
        update = self.orders.get(client_order_id)
        return None if update is None else update.status


class EventBook:
    """A book built only from the adapter's ``BookDelta`` events (what a strategy sees)."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.snapshots = 0
        self.deltas = 0

    def __call__(self, event: object) -> None:
        if not isinstance(event, BookDelta) or event.symbol != self.symbol:
            return
        if event.is_snapshot:
            self.snapshots += 1
            self.bids = {price: size for price, size in event.bids if size}
            self.asks = {price: size for price, size in event.asks if size}
            return
        self.deltas += 1
        for side, levels in ((self.bids, event.bids), (self.asks, event.asks)):
            for price, size in levels:
                if size:
                    side[price] = size
                else:
                    side.pop(price, None)

    def top(self, depth: int) -> tuple[Levels, Levels]:
        bids = sorted(self.bids.items(), reverse=True)[:depth]
        asks = sorted(self.asks.items())[:depth]
        return bids, asks


class MarketMover:
    """Seeded depth changes on the simulator venue: never crossing, never touching our orders.

    Bids change at or below the best bid and asks at or above the best ask, so nothing
    trades; each step is one engine batch (one depth update on the wire).
    """

    def __init__(self, venue: SimVenue, symbol: str, seed: int = 1) -> None:
        self.venue = venue
        self.symbol = symbol
        self.random = random.Random(seed)
        self.steps = 0
        touch_bid, touch_ask = venue.engine.best_bid(symbol), venue.engine.best_ask(symbol)
        assert touch_bid is not None and touch_ask is not None, "the simulator's book is not seeded"
        self.anchor_bid, self.anchor_ask = touch_bid[0], touch_ask[0]
        self._task: asyncio.Task[None] | None = None

    def step(self) -> None:
        engine = self.venue.engine
        depth = engine.depth(self.symbol, 40)
        if depth.bids:
            self.anchor_bid = depth.bids[0][0]
        if depth.asks:
            self.anchor_ask = depth.asks[0][0]
        is_bid = self.random.random() < 0.5
        levels = depth.bids if is_bid else depth.asks
        size = self.random.randrange(50, 400)
        if len(levels) < 15:
            # thinned out (orders swept it): deepen the side behind its last level
            last = levels[-1][0] if levels else (self.anchor_bid if is_bid else self.anchor_ask)
            gap = self.random.randrange(0 if not levels else 1, 3)
            price = last - gap if is_bid else last + gap
        else:
            offset = self.random.randrange(0, 15)
            price = levels[0][0] - offset if is_bid else levels[0][0] + offset
            if offset and self.random.random() < 0.3:
                side = Side.BUY if is_bid else Side.SELL
                if engine.background_size(self.symbol, side, price):
                    size = 0  # remove a level behind the touch
        change = [(price, size)]
        self.venue.apply_depth(self.symbol, change if is_bid else (), () if is_bid else change)
        self.steps += 1

    async def run(self, interval_s: float = 0.01) -> None:
        while True:
            self.step()
            await asyncio.sleep(interval_s)

    def start(self, interval_s: float = 0.01) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(interval_s), name="market-mover")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class SimOrderLog:
    """Orders the simulator accepted for our account, by our client order id.

    It proves nothing was placed twice, and finds our orders in the simulator whatever id
    the venue keeps for them (Thalex stores ``<session>:<wire number>``).
    """

    def __init__(self, venue: SimVenue, account: str, ours: Callable[[str], str | None]) -> None:
        self.account = account
        self.orders: dict[str, list[SimOrder]] = {}  # our client order id -> orders accepted for it
        self.by_order_id: dict[int, str] = {}
        self._ours = ours
        venue.add_listener(self)

    def __call__(self, event: object) -> None:
        if isinstance(event, OrderEvent) and event.kind is OrderEventKind.ACCEPTED:
            order = event.order
            if order.account == self.account:
                # translated at acceptance, while the adapter still maps the venue's id to ours
                key = self._ours(order.client_order_id) or f"venue:{order.client_order_id}"
                self.orders.setdefault(key, []).append(order)
                self.by_order_id[order.order_id] = key

    def accepted(self, client_order_id: str) -> int:
        return len(self.orders.get(client_order_id, ()))


class Harness:
    """One venue case against one running simulator: the adapter, its events, the market."""

    def __init__(self, case: VenueCase, sim: Simulator) -> None:
        self.case = case
        self.sim = sim
        self.symbol = case.symbol
        self.venue: SimVenue = sim.venues[case.sim_venue]
        assert sim.credentials is not None
        self.account = sim.credentials.account
        self.instrument: Instrument = self.venue.instruments[case.symbol]
        self.recorder = Recorder()
        self.event_book = EventBook(case.symbol)
        self.mover = MarketMover(self.venue, case.symbol)
        self.sim_orders = SimOrderLog(self.venue, self.account, self._ours)
        self.adapter: Adapter = None
        self.unknown: list[str] = []  # client order ids whose placement outcome was unknown
        self._ids = 0

    async def start(self, *, subscribe: bool = True) -> Adapter:
        adapter = self.case.make_adapter(self.sim)
        adapter.add_listener(self.recorder)
        adapter.add_listener(self.event_book)
        await adapter.__aenter__()
        self.adapter = adapter
        if subscribe:
            await adapter.subscribe([self.symbol])
            await self.wait_synced()
        return adapter

    async def close(self) -> None:
        await self.mover.stop()
        if self.adapter is not None:
            await self.adapter.__aexit__(None, None, None)
            self.adapter = None

    # -- market ------------------------------------------------------------------------------
    def synced(self) -> bool:
        return self.case.book_synced(self.adapter, self.symbol)

    async def wait_synced(self) -> None:
        # Binance syncs on the first diff after its snapshot: keep the market moving until then.
        await wait_until(self.synced, f"{self.case.name} book synced", between=self.mover.step)

    def sim_top(self) -> tuple[Levels, Levels]:
        depth = self.venue.depth(self.symbol, DEPTH)
        return list(depth.bids), list(depth.asks)

    def adapter_top(self) -> tuple[Levels, Levels]:
        book = self.case.book(self.adapter, self.symbol)
        if book is None:
            return [], []
        return list(book.bids(DEPTH)), list(book.asks(DEPTH))

    def books_agree(self) -> bool:
        sim_top = self.sim_top()
        return self.synced() and self.adapter_top() == sim_top and self.event_book.top(DEPTH) == sim_top

    async def settle_book(self) -> None:
        """Stop moving the market, then wait until the adapter's book is the simulator's.

        A book that lost sync (a gap, a reconnect) needs a fresh diff to resync on Binance,
        so the market moves one step whenever the book is not synced.
        """
        await self.mover.stop()

        def nudge() -> None:
            if not self.synced():
                self.mover.step()

        await wait_until(self.books_agree, f"{self.case.name} book equal to the simulator's", between=nudge)

    # -- orders ------------------------------------------------------------------------------
    def client_order_id(self, tag: str) -> str:
        self._ids += 1
        return f"bt{tag}{self._ids}x{id(self) % 10_000}"

    def quantity(self) -> int:
        """Lots worth ``order_notional`` at the touch, rounded up to the grid (above every minimum)."""
        best_ask = self.venue.engine.best_ask(self.symbol)
        assert best_ask is not None
        price = self.instrument.ticks_to_price(best_ask[0])
        quantity = Decimal(self.case.order_notional) / Decimal(price)
        return max(self.instrument.quantity_to_lots(str(quantity), Rounding.UP), self.instrument.min_quantity)

    async def place(self, request: OrderRequest) -> OrderUpdate:
        """A new order the way the case sends it: written inside the call (``place_order_now``,
        answered later) for an immediate case, else awaited (``place_order``)."""
        adapter = self.adapter
        if not self.case.immediate:
            return await adapter.place_order(request)
        return await self._written_now(lambda answer: adapter.place_order_now(request, answer), "order")

    async def _written_now(
        self, write: Callable[[OrderAnswer], bool], what: str, told_later: bool = False
    ) -> OrderUpdate:
        """A request written inside the call by the case's own immediate transport (one write on
        it), its answer awaited; ``told_later``: also checked not told inside the call."""
        answered: asyncio.Future[OrderUpdate | Exception] = asyncio.get_running_loop().create_future()
        writes = self.case.immediate_writes(self.adapter)
        assert write(answered.set_result), f"the immediate path did not write the {what}"
        assert self.case.immediate_writes(self.adapter) == writes + 1, f"another transport carried the {what}"
        if told_later:
            assert not answered.done()  # told later, never inside the call
        outcome = await asyncio.wait_for(answered, 10)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def cancel(self, client_order_id: str) -> OrderUpdate:
        """A cancel the way the case sends it: written inside the call (``cancel_order_now``,
        answered later) where the case's transport can, else awaited (``cancel_order``)."""
        adapter = self.adapter
        if not self.case.immediate:
            return await adapter.cancel_order(self.symbol, client_order_id)
        answered: asyncio.Future[OrderUpdate | Exception] = asyncio.get_running_loop().create_future()
        if not self.case.cancels_now:  # it declines, with nothing sent: the awaited path carries it
            writes = self.case.immediate_writes(adapter)
            assert not adapter.cancel_order_now(self.symbol, client_order_id, answered.set_result)
            assert self.case.immediate_writes(adapter) == writes and not answered.done()
            return await adapter.cancel_order(self.symbol, client_order_id)
        return await self._written_now(
            lambda answer: adapter.cancel_order_now(self.symbol, client_order_id, answer), "cancel", True
        )

    async def amend(self, request: AmendRequest) -> OrderUpdate:
        """An amend the way the case sends it: written inside the call (``amend_order_now``,
        answered later) where the case's transport can, else awaited (``amend_order``)."""
        adapter = self.adapter
        if not (self.case.immediate and self.case.amends_now):
            return await adapter.amend_order(request)
        return await self._written_now(lambda answer: adapter.amend_order_now(request, answer), "amend", True)

    def resting(self, tag: str, side: Side = Side.BUY, ticks_away: int = 20) -> OrderRequest:
        """A limit order well behind the touch: it rests and nothing the mover does fills it."""
        engine = self.venue.engine
        if side is Side.BUY:
            best = engine.best_bid(self.symbol)
            price = (best[0] if best is not None else self.mover.anchor_bid) - ticks_away
        else:
            best = engine.best_ask(self.symbol)
            price = (best[0] if best is not None else self.mover.anchor_ask) + ticks_away
        return OrderRequest(
            client_order_id=self.client_order_id(tag),
            symbol=self.symbol,
            side=side,
            quantity=self.quantity(),
            price=price,
        )

    def marketable(self, tag: str, side: Side = Side.BUY) -> OrderRequest | None:
        """An IOC limit priced through enough levels to fill completely now (None: book too thin)."""
        quantity = self.quantity()
        depth = self.venue.depth(self.symbol)
        levels = depth.asks if side is Side.BUY else depth.bids
        remaining = quantity
        price = 0
        for level_price, size in levels:
            remaining -= size
            if remaining <= 0:
                price = level_price  # the deepest level the order needs
                break
        if remaining > 0:
            return None
        return OrderRequest(
            client_order_id=self.client_order_id(tag),
            symbol=self.symbol,
            side=side,
            quantity=quantity,
            price=price,
            order_type=OrderType.LIMIT,
            time_in_force=TimeInForce.IOC,
        )

    def _ours(self, venue_id: str) -> str | None:
        return None if self.adapter is None else self.case.from_venue_id(self.adapter, venue_id)

    def sim_order(self, client_order_id: str) -> SimOrder | None:
        """The simulator's order for one of our client order ids (its live state, open or closed)."""
        orders = self.sim_orders.orders.get(client_order_id)
        return orders[-1] if orders else None

    def sim_open(self) -> dict[str, SimOrder]:
        """The simulator's open orders of our account, by our client order id."""
        known = self.sim_orders.by_order_id
        return {
            known.get(order.order_id, f"venue:{order.order_id}"): order
            for order in self.venue.engine.open_orders(self.account)
        }

    def adapter_open(self) -> dict[str, OrderUpdate]:
        """Orders the adapter last reported open (from answers, pushes and reconciliation)."""
        return {cid: update for cid, update in self.recorder.orders.items() if update.status.is_open}

    def agrees_with_sim(self, update: OrderUpdate | None, order: SimOrder) -> bool:
        return (
            update is not None
            and update.status is order.status
            and update.filled == order.filled
            and update.quantity == order.quantity
            and (order.order_type is OrderType.MARKET or update.price == order.price)
        )

    # -- account -----------------------------------------------------------------------------
    def sim_balance(self, asset: str) -> tuple[Decimal, Decimal]:
        accounts = self.venue.engine.accounts
        balance = accounts.get(self.account).balance(asset)
        return Decimal(accounts.to_text(asset, balance.free)), Decimal(
            accounts.to_text(asset, balance.locked)
        )

    def sim_position(self) -> int:
        position = self.venue.engine.accounts.get(self.account).positions.get(self.symbol)
        return 0 if position is None else position.quantity


async def expect_error(call: Awaitable[object], kind: type[BaseException]) -> BaseException:
    try:
        await call
    except kind as error:
        return error
    raise AssertionError(f"expected {kind.__name__}")


def quote_assets(instrument: Instrument) -> Iterable[str]:
    return (instrument.base, instrument.quote)


class VenueBehaviourSuite:
    """Subclass per venue with a ``case`` fixture; the ``harness`` fixture (conftest) does the rest."""

    async def test_subscribe_and_stay_in_sync(self, harness: Harness) -> None:
        adapter = await harness.start()
        assert isinstance(adapter, VenueAdapter)
        before = harness.event_book.deltas
        # diffs flow: the adapter applies them one by one and its events keep a book in step too
        await wait_until(
            lambda: harness.event_book.deltas >= before + 5,
            "incremental book deltas after the snapshot",
            between=harness.mover.step,
        )
        await harness.settle_book()
        assert harness.mover.steps > 0 and harness.event_book.snapshots >= 1
        # and again after more changes: in sync is a state it stays in, not a moment
        for _ in range(20):
            harness.mover.step()
        await harness.settle_book()
        assert harness.adapter_top() == harness.sim_top()

    async def test_place_amend_cancel_and_cancel_all(self, harness: Harness) -> None:
        adapter = await harness.start()
        request = harness.resting("r")
        placed = await harness.place(request)
        assert placed.status is OrderStatus.NEW and placed.client_order_id == request.client_order_id
        order = harness.sim_order(request.client_order_id)
        assert order is not None and order.is_open
        assert (order.price, order.quantity, order.side) == (request.price, request.quantity, request.side)
        # the resting order is visible in the venue's book, and so in the adapter's
        await harness.settle_book()

        amend = AmendRequest(
            client_order_id=request.client_order_id,
            symbol=harness.symbol,
            price=request.price - 1,
            quantity=request.quantity * 2,
        )
        if harness.case.amend:
            amended = await harness.amend(amend)
            assert (amended.price, amended.quantity) == (amend.price, amend.quantity)
            assert (order.price, order.quantity) == (amend.price, amend.quantity)
            assert order.is_open
        else:
            await expect_error(adapter.amend_order(amend), UnsupportedOperationError)
            assert (order.price, order.quantity) == (request.price, request.quantity)  # nothing sent

        cancelled = await harness.cancel(request.client_order_id)
        assert cancelled.status is OrderStatus.CANCELED
        assert not order.is_open and request.client_order_id not in harness.sim_open()
        await expect_error(harness.cancel(request.client_order_id), OrderNotFoundError)

        others = [harness.resting("a", ticks_away=20 + index) for index in range(3)]
        others.append(harness.resting("s", side=Side.SELL))
        for other in others:
            assert (await harness.place(other)).status is OrderStatus.NEW
        assert set(harness.sim_open()) == {other.client_order_id for other in others}
        assert await adapter.cancel_all(harness.symbol) == len(others)
        assert harness.sim_open() == {}
        await wait_until(lambda: not harness.adapter_open(), "the adapter to see every order closed")
        assert await adapter.open_orders(harness.symbol) == []
        await harness.settle_book()

    async def test_fills_reach_orders_balances_and_positions(self, harness: Harness) -> None:
        adapter = await harness.start()
        request = harness.marketable("m")
        assert request is not None, "the simulator's book is too thin for a test order"
        result = await harness.place(request)
        cid = request.client_order_id
        order = harness.sim_order(cid)
        assert order is not None and order.status is OrderStatus.FILLED
        assert result.status is OrderStatus.FILLED and result.filled == request.quantity
        await wait_until(lambda: harness.recorder.status(cid) is OrderStatus.FILLED, "OrderUpdate(FILLED)")
        await wait_until(
            lambda: (
                sum(fill.quantity for fill in harness.recorder.of(Fill, client_order_id=cid))
                == request.quantity
            ),
            "Fill events adding up to the order",
        )
        fills = harness.recorder.of(Fill, client_order_id=cid)
        assert all(fill.side is Side.BUY and fill.symbol == harness.symbol for fill in fills)
        assert harness.recorder.orders[cid].filled == order.filled == request.quantity

        if harness.case.positions:
            assert harness.sim_position() == request.quantity
            positions = {position.symbol: position for position in await adapter.positions()}
            assert positions[harness.symbol].quantity == harness.sim_position()
        else:
            balances = {balance.asset: balance for balance in await adapter.balances()}
            for asset in quote_assets(harness.instrument):
                free, locked = harness.sim_balance(asset)
                assert (balances[asset].free, balances[asset].locked) == (free, locked), asset
        # the venue's balances and positions, as the adapter reports them, equal the simulator's
        balances = {balance.asset: balance for balance in await adapter.balances()}
        free, locked = harness.sim_balance(harness.instrument.quote)
        reported = balances[harness.instrument.quote]
        assert reported.free + reported.locked == free + locked
        assert isinstance(reported, BalanceUpdate)
        await harness.settle_book()

    async def test_reconnect_recovers_book_and_reconciles_orders(self, harness: Harness) -> None:
        case = harness.case
        sim = harness.sim
        # every connection opened now is dropped by the venue after the same delay
        # (long enough that start, subscribe and the orders below are done before the drop)
        sim.set_faults(case.sim_venue, {"disconnect_every_s": 2.0})
        adapter = await harness.start()
        sim.set_faults(case.sim_venue, "none")  # the reconnections stay up
        engine = harness.venue.engine
        # widen the spread so one order of ours can be the best bid alone
        best_ask = engine.best_ask(harness.symbol)
        assert best_ask is not None
        harness.venue.apply_depth(harness.symbol, (), [(best_ask[0] + offset, 0) for offset in range(4)])
        kept = harness.resting("k")
        cancelled = harness.resting("c", ticks_away=25)
        best_bid = engine.best_bid(harness.symbol)
        assert best_bid is not None
        filled = OrderRequest(
            client_order_id=harness.client_order_id("f"),
            symbol=harness.symbol,
            side=Side.BUY,
            quantity=harness.quantity(),
            price=best_bid[0] + 1,
        )
        for request in (kept, cancelled, filled):
            assert (await harness.place(request)).status is OrderStatus.NEW
        await wait_until(
            lambda: all(
                harness.recorder.status(r.client_order_id) is OrderStatus.NEW for r in (kept, filled)
            ),
            "order updates of the placed orders",
        )
        acted: list[str] = []

        def while_disconnected(event: object) -> None:
            """The venue acts while the account stream is down: the adapter misses these pushes."""
            if acted or not isinstance(event, ConnectionEvent):
                return
            if event.stream != case.account_stream or event.state != "disconnected":
                return
            acted.append(event.reason)
            order = harness.sim_order(cancelled.client_order_id)
            assert order is not None
            harness.venue.cancel(harness.account, harness.symbol, order_id=order.order_id)
            harness.venue.apply_market_trade(harness.symbol, filled.price, filled.quantity, Side.SELL)
            for _ in range(10):
                harness.mover.step()

        harness.recorder.hooks.append(while_disconnected)
        faults = sim.faults[case.sim_venue]
        await wait_until(
            lambda: faults.snapshot()["disconnect"] >= case.connections and bool(acted),
            "the venue to drop every connection",
        )
        assert harness.sim_order(cancelled.client_order_id).status is OrderStatus.CANCELED
        assert harness.sim_order(filled.client_order_id).status is OrderStatus.FILLED
        await wait_until(
            lambda: case.reconnects(adapter) >= case.connections and adapter.is_ready,
            "the adapter to reconnect and reconcile",
        )
        await harness.settle_book()
        # reconciliation: the kept order still open as it was, the others with their final state
        await wait_until(
            lambda: (
                harness.recorder.status(cancelled.client_order_id) is OrderStatus.CANCELED
                and harness.recorder.status(filled.client_order_id) is OrderStatus.FILLED
            ),
            "final states of the orders closed during the disconnect",
        )
        kept_order = harness.sim_order(kept.client_order_id)
        assert kept_order is not None and kept_order.is_open
        assert harness.agrees_with_sim(harness.recorder.orders[kept.client_order_id], kept_order)
        assert set(harness.adapter_open()) == set(harness.sim_open()) == {kept.client_order_id}
        venue_view = {update.client_order_id: update for update in await adapter.open_orders(harness.symbol)}
        assert set(venue_view) == {kept.client_order_id}
        assert case.reconnects(adapter) == faults.snapshot()["disconnect"]
        if case.positions:
            await wait_until(
                lambda: any(
                    position.quantity == harness.sim_position()
                    for position in harness.recorder.of(PositionUpdate, symbol=harness.symbol)
                ),
                "a reconciled position equal to the simulator's",
            )
