"""TradingEngine on FakeVenues: routing, risk, timers, failures, shutdown and kill switch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from hftkit.book.order_book import OrderBook
from hftkit.core.types import Fill, Instrument, Order, OrderStatus, Quote, Side, Trade
from hftkit.testing import FailureKind, FakeVenue, RequestKind
from hftkit.trading.engine import CANCEL_ALL_ATTEMPTS, TradingEngine
from hftkit.trading.execution import ExecutionConfig, ExecutionReport, OrderIntent
from hftkit.trading.quoting import AmendSupport, QuotingPolicy
from hftkit.trading.risk import InstrumentLimits
from hftkit.trading.strategy import Decision, Strategy, Subscription, TimerRequest
from hftkit.venues.base import OrderAnswer, OrderRequest

BTC = "BTCUSDT"
ETH = "ETHUSDT"


def instruments(venue: str) -> list[Instrument]:
    return [
        Instrument(venue, BTC, "BTC", "USDT", "0.01", "0.001"),
        Instrument(venue, ETH, "ETH", "USDT", "0.01", "0.001"),
    ]


WRITES_NOW = [False]


@pytest.fixture(autouse=True, params=["awaited", "written_now"])
def order_path(request: pytest.FixtureRequest) -> str:
    """Every scenario twice: orders sent by a task awaiting the venue, and orders written inside
    the decision's callback (a synchronous transport); what the strategy sees must not differ."""
    WRITES_NOW[0] = request.param == "written_now"
    return str(request.param)


def venue(name: str) -> FakeVenue:
    fake = FakeVenue(name, instruments(name), writes_now=WRITES_NOW[0])
    fake.set_book(BTC, [(5_000_000, 100)], [(5_000_010, 100)])
    fake.set_book(ETH, [(300_000, 100)], [(300_010, 100)])
    return fake


class Recorder(Strategy):
    """Records every callback; quotes a fixed ladder on books when ``ladder`` is set."""

    def __init__(
        self,
        name: str,
        subscriptions: Sequence[Subscription],
        ladder: tuple[Quote, ...] | None = None,
    ) -> None:
        super().__init__(name)
        self._subscriptions = list(subscriptions)
        self.ladder = ladder
        self.books: list[tuple[str, str]] = []
        self.trades: list[Trade] = []
        self.fills: list[Fill] = []
        self.orders: list[tuple[str, OrderStatus]] = []
        self.timers: list[str] = []
        self.executions: list[ExecutionReport] = []
        self.started = self.stopped = False
        self.next_decision: Decision | None = None

    def subscriptions(self) -> list[Subscription]:
        return self._subscriptions

    def on_start(self) -> Decision | None:
        self.started = True
        return None

    def on_book(self, venue: str, symbol: str, book: OrderBook) -> Decision | None:
        self.books.append((venue, symbol))
        if self.next_decision is not None:
            decision, self.next_decision = self.next_decision, None
            return decision
        if self.ladder is not None:
            return Decision(quotes={(venue, symbol): self.ladder})
        return None

    def on_trade(self, trade: Trade) -> Decision | None:
        self.trades.append(trade)
        return None

    def on_fill(self, fill: Fill) -> Decision | None:
        self.fills.append(fill)
        return None

    def on_order_update(self, order: Order) -> Decision | None:
        self.orders.append((order.client_order_id, order.status))
        return None

    def on_timer(self, name: str) -> Decision | None:
        self.timers.append(name)
        return None

    def on_execution(self, report: ExecutionReport) -> Decision | None:
        self.executions.append(report)
        return None

    def on_stop(self) -> None:
        self.stopped = True


class Exploding(Strategy):
    def __init__(self) -> None:
        super().__init__("exploding")
        self.calls = 0

    def subscriptions(self) -> list[Subscription]:
        return [Subscription("a", (BTC,))]

    def on_book(self, venue: str, symbol: str, book: OrderBook) -> Decision | None:
        self.calls += 1
        raise RuntimeError("strategy bug")


LADDER = (Quote(Side.BUY, 4_999_990, 5), Quote(Side.SELL, 5_000_020, 5))
#: two levels a side: four new orders in one plan
TWO_LEVELS = (
    Quote(Side.BUY, 4_999_990, 5),
    Quote(Side.BUY, 4_999_980, 5, level=1),
    Quote(Side.SELL, 5_000_020, 5),
    Quote(Side.SELL, 5_000_030, 5, level=1),
)


def placed(fake: FakeVenue) -> list[object]:
    return [payload for kind, payload in fake.requests if kind is RequestKind.PLACE]


async def test_events_reach_only_the_strategies_subscribed_to_them() -> None:
    a, b = venue("a"), venue("b")
    btc_on_a = Recorder("btc_a", [Subscription("a", (BTC,), books=True, trades=True)])
    eth_on_b = Recorder("eth_b", [Subscription("b", (ETH,), books=True)])
    manager = TradingEngine.build([a, b], [btc_on_a, eth_on_b])
    await manager.start()
    assert btc_on_a.started and btc_on_a.books == [("a", BTC)]  # the snapshot on subscribe
    assert a.subscribed == {BTC} and b.subscribed == {ETH}
    a.update_book(BTC, bids=[(5_000_001, 1)])
    a.update_book(ETH, bids=[(300_001, 1)])  # nobody subscribed: a book the manager does not keep
    b.update_book(ETH, asks=[(300_009, 1)])
    b.update_book(BTC, asks=[(5_000_009, 1)])
    trade = Trade(venue="a", symbol=BTC, trade_id=1, price=5_000_001, size=1, aggressor=Side.SELL)
    a._emit(trade)
    assert btc_on_a.books == [("a", BTC)] * 2 and btc_on_a.trades == [trade]
    assert eth_on_b.books == [("b", ETH)] * 2 and eth_on_b.trades == []
    assert manager.book("a", BTC) is not None and manager.book("a", BTC).best_bid() == (5_000_001, 1)  # type: ignore[union-attr]
    assert manager.event_to_decision["btc_a"].count == 4  # start + 2 books + 1 trade
    await manager.stop()
    assert btc_on_a.stopped


async def test_desired_quotes_become_orders_and_fills_reach_the_owner() -> None:
    a = venue("a")
    maker = Recorder("maker", [Subscription("a", (BTC,))], ladder=LADDER)
    manager = TradingEngine.build([a], [maker])
    await manager.start()
    await manager.wait_idle()
    assert sorted(order.price for order in manager.tracker.open_orders("a", BTC)) == [4_999_990, 5_000_020]
    assert len(a.open_order_ids) == 2
    assert manager.gateway.decision_to_send.count == 2
    resting_bid = next(order for order in manager.tracker.open_orders("a", BTC) if order.side is Side.BUY)
    a.fill_resting(resting_bid.client_order_id, 2)
    assert [fill.quantity for fill in maker.fills] == [2]
    assert (resting_bid.client_order_id, OrderStatus.PARTIALLY_FILLED) in maker.orders
    assert manager.position("a", BTC) == 2
    a.update_book(BTC, bids=[(5_000_000, 50)])  # next book event: the ladder tops the bid back up
    await manager.wait_idle()
    bids = [o for o in manager.tracker.open_orders("a", BTC) if o.side is Side.BUY and o.status.is_open]
    assert [(order.price, order.quantity - order.filled) for order in bids] == [(4_999_990, 5)]
    await manager.stop()


class QuietMaker(Strategy):
    """Quotes LADDER on every book; keeps the base class's do-nothing order-update handler."""

    def subscriptions(self) -> list[Subscription]:
        return [Subscription("a", (BTC,))]

    def on_book(self, venue: str, symbol: str, book: OrderBook) -> Decision | None:
        return Decision(quotes={(venue, symbol): LADDER})


async def test_order_updates_reach_only_strategies_that_handle_them() -> None:
    """The base class's ``on_order_update`` does nothing: a strategy that keeps it is not called
    (nor timed) for each of its orders' updates; one that overrides it hears every one."""
    a = venue("a")
    quiet = QuietMaker("quiet")
    manager = TradingEngine.build([a], [quiet])
    await manager.start()
    await manager.wait_idle()
    assert len(manager.tracker.open_orders("a", BTC)) == 2
    quiet_calls = manager.event_to_decision["quiet"].count  # its start and its book events
    await manager.stop()

    a = venue("a")
    loud = Recorder("loud", [Subscription("a", (BTC,))], ladder=LADDER)
    manager = TradingEngine.build([a], [loud])
    await manager.start()
    await manager.wait_idle()
    assert len(loud.orders) >= 2  # each order's acknowledgement at least
    assert manager.event_to_decision["loud"].count == quiet_calls + len(loud.orders)
    await manager.stop()


async def test_risk_rejects_are_counted_and_never_sent() -> None:
    a = venue("a")
    big = (Quote(Side.BUY, 4_999_990, 50), Quote(Side.SELL, 5_000_020, 1))
    maker = Recorder("maker", [Subscription("a", (BTC,))], ladder=big)
    manager = TradingEngine.build(
        [a], [maker], instrument_limits={("a", BTC): InstrumentLimits(max_order_quantity="0.010")}
    )
    await manager.start()
    await manager.wait_idle()
    sent = placed(a)
    assert len(sent) == 1 and sent[0].side is Side.SELL  # type: ignore[attr-defined]
    assert manager.counters["risk_rejects"] == 1
    assert manager.risk.rejection_counts
    await manager.stop()


async def test_stop_cancels_every_managed_order_and_reconciles() -> None:
    a, b = venue("a"), venue("b")
    maker_a = Recorder("maker_a", [Subscription("a", (BTC,))], ladder=LADDER)
    maker_b = Recorder("maker_b", [Subscription("b", (BTC,))], ladder=LADDER)
    manager = TradingEngine.build([a, b], [maker_a, maker_b])
    await manager.start()
    await manager.wait_idle()
    assert len(a.open_order_ids) == 2 and len(b.open_order_ids) == 2
    await manager.stop()
    assert a.open_order_ids == [] and b.open_order_ids == []
    assert (RequestKind.CANCEL_ALL, BTC) in a.requests and (RequestKind.CANCEL_ALL, BTC) in b.requests
    assert manager.tracker.open_orders() == []
    assert not a.connected and not manager.running


@pytest.mark.parametrize("failures", [1, CANCEL_ALL_ATTEMPTS])
async def test_stop_retries_a_failing_cancel_all_and_survives_one_that_keeps_failing(failures: int) -> None:
    a, b = venue("a"), venue("b")
    manager = TradingEngine.build(
        [a, b],
        [
            Recorder("maker_a", [Subscription("a", (BTC,))], ladder=LADDER),
            Recorder("maker_b", [Subscription("b", (BTC,))], ladder=LADDER),
        ],
    )
    await manager.start()
    await manager.wait_idle()
    a.fail_next(FailureKind.REJECT, RequestKind.CANCEL_ALL, count=failures)
    await manager.stop()
    assert manager.counters["cancel_all_failures"] == failures
    assert manager.counters["cancel_all_retries"] == min(failures, CANCEL_ALL_ATTEMPTS - 1)
    assert b.open_order_ids == []  # the other venue was cleaned up meanwhile
    if failures < CANCEL_ALL_ATTEMPTS:  # refused once (a throttle, a hiccup): tried again, nothing rests
        assert a.open_order_ids == [] and manager.tracker.open_orders("a", BTC) == []
    else:  # refused every time: the tracker still knows what is left open on a
        assert len(a.open_order_ids) == 2
        assert len(manager.tracker.open_orders("a", BTC)) == 2


async def test_a_raising_strategy_is_counted_and_does_not_stop_the_others() -> None:
    a = venue("a")
    exploding = Exploding()
    healthy = Recorder("healthy", [Subscription("a", (BTC,))])
    manager = TradingEngine.build([a], [exploding, healthy])
    await manager.start()
    for step in range(3):
        a.update_book(BTC, bids=[(5_000_001 + step, 1)])
    assert exploding.calls == 4 and len(healthy.books) == 4
    assert manager.strategy_errors["exploding"] == 4 and manager.counters["strategy_errors"] == 4
    await manager.stop()


async def test_timers_fire_through_the_loop_and_the_same_name_replaces_a_pending_one() -> None:
    a = venue("a")
    strategy = Recorder("timed", [Subscription("a", (BTC,))])
    manager = TradingEngine.build([a], [strategy])
    await manager.start()
    strategy.next_decision = Decision(timers=[TimerRequest("slow", 10.0), TimerRequest("fast", 0.001)])
    a.update_book(BTC, bids=[(5_000_001, 1)])
    strategy.next_decision = Decision(timers=[TimerRequest("slow", 0.002)])  # replaces the 10 s one
    a.update_book(BTC, bids=[(5_000_002, 1)])
    await asyncio.sleep(0.05)
    assert sorted(strategy.timers) == ["fast", "slow"]
    await manager.stop()


async def test_taker_orders_of_a_decision_go_through_the_execution_engine() -> None:
    a = venue("a")
    strategy = Recorder("taker", [Subscription("a", (BTC,))])
    manager = TradingEngine.build([a], [strategy], execution=ExecutionConfig(latency_budget_us=None))
    await manager.start()
    strategy.next_decision = Decision(
        orders=[OrderIntent(venue="a", symbol=BTC, side=Side.BUY, quantity=3, price=5_000_010, tag="t1")]
    )
    a.update_book(BTC, bids=[(5_000_001, 1)])
    await manager.wait_idle()
    assert [(report.tag, report.filled) for report in strategy.executions] == [("t1", 3)]
    assert [fill.quantity for fill in strategy.fills] == [3]  # owned through the engine
    assert manager.position("a", BTC) == 3
    await manager.stop()


async def test_kill_switch_cancels_blocks_and_recovers_after_reset() -> None:
    a = venue("a")
    maker = Recorder("maker", [Subscription("a", (BTC,))], ladder=LADDER)
    manager = TradingEngine.build([a], [maker])
    await manager.start()
    await manager.wait_idle()
    assert len(a.open_order_ids) == 2
    manager.risk.trip(detail="test trip")
    await manager.kill_switch.flush()
    assert a.open_order_ids == [] and manager.tracker.open_orders() == []
    a.update_book(BTC, bids=[(5_000_001, 1)])
    await manager.wait_idle()
    assert a.open_order_ids == [] and manager.counters["decisions_blocked"] >= 1
    manager.reset_kill_switch("test over")
    a.update_book(BTC, bids=[(5_000_002, 1)])
    await manager.wait_idle()
    assert len(a.open_order_ids) == 2
    await manager.stop()


async def test_a_lost_market_data_session_untrusts_books_and_cancels_orders() -> None:
    a = venue("a")
    maker = Recorder("maker", [Subscription("a", (BTC,))], ladder=LADDER)
    manager = TradingEngine.build([a], [maker])
    await manager.start()
    await manager.wait_idle()
    a.disconnect("test")
    await manager.wait_idle()
    assert a.open_order_ids == [] and manager.book("a", BTC) is None
    a.update_book(BTC, bids=[(5_000_001, 1)])  # a diff before a new snapshot is not trusted
    assert manager.counters["book_events_while_unsynced"] == 1 and len(maker.books) == 1
    a.set_book(BTC, [(5_000_000, 100)], [(5_000_010, 100)])
    await manager.wait_idle()
    assert len(maker.books) == 2 and len(a.open_order_ids) == 2
    await manager.stop()


async def test_with_full_amend_support_a_moved_ladder_is_amended_not_replaced(order_path: str) -> None:
    a = venue("a")
    maker = Recorder("maker", [Subscription("a", (BTC,))], ladder=LADDER)
    manager = TradingEngine.build([a], [maker], quoting=QuotingPolicy(amend=AmendSupport.FULL))
    await manager.start()
    await manager.wait_idle()
    before = set(a.open_order_ids)
    maker.ladder = (Quote(Side.BUY, 4_999_980, 5), Quote(Side.SELL, 5_000_030, 4))
    a.update_book(BTC, bids=[(5_000_001, 1)])
    if order_path == "written_now":  # both amends out inside the book update's callback: no task ran
        assert len([kind for kind, _ in a.requests if kind is RequestKind.AMEND]) == 2
    await manager.wait_idle()
    assert set(a.open_order_ids) == before  # same orders, moved
    assert len([kind for kind, _ in a.requests if kind is RequestKind.AMEND]) == 2
    resting = sorted((o.side.value, o.price, o.quantity) for o in manager.tracker.open_orders("a", BTC))
    assert resting == [("buy", 4_999_980, 5), ("sell", 5_000_030, 4)]
    await manager.stop()


async def test_a_bad_subscription_fails_start_cleanly_and_a_manager_runs_once() -> None:
    a = venue("a")
    manager = TradingEngine.build([a], [Recorder("lost", [Subscription("nowhere", (BTC,))])])
    with pytest.raises(ValueError, match="unknown venue"):
        await manager.start()
    assert not a.connected and not manager.running
    with pytest.raises(RuntimeError, match="once"):
        await manager.start()


async def test_quotes_in_flight_are_never_placed_twice_while_acks_are_slow() -> None:
    a = FakeVenue("a", instruments("a"), latency_s=0.01)
    a.set_book(BTC, [(5_000_000, 100)], [(5_000_010, 100)])
    maker = Recorder("maker", [Subscription("a", (BTC,))], ladder=LADDER)
    manager = TradingEngine.build([a], [maker])
    await manager.start()
    for step in range(5):  # book events while the first two orders are still pending
        a.update_book(BTC, bids=[(5_000_001 + step, 1)])
    await manager.wait_idle()
    assert len(placed(a)) == 2 and len(a.open_order_ids) == 2
    assert manager.gateway.round_trip["a"].count == 2
    await manager.stop()


async def test_a_decision_can_ask_for_cancel_all() -> None:
    a = venue("a")
    maker = Recorder("maker", [Subscription("a", (BTC,))], ladder=LADDER)
    manager = TradingEngine.build([a], [maker])
    await manager.start()
    await manager.wait_idle()
    maker.ladder = None
    maker.next_decision = Decision(cancel_all=[("a", BTC)])
    a.update_book(BTC, bids=[(5_000_001, 1)])
    await manager.wait_idle()
    assert (RequestKind.CANCEL_ALL, BTC) in a.requests and a.open_order_ids == []
    assert manager.tracker.open_orders("a", BTC) == []
    await manager.stop()


async def test_decisions_for_instruments_outside_the_subscriptions_are_refused() -> None:
    a = venue("a")
    strategy = Recorder("stray", [Subscription("a", (BTC,))])
    manager = TradingEngine.build([a], [strategy])
    await manager.start()
    strategy.next_decision = Decision(
        quotes={("a", ETH): LADDER},
        orders=[OrderIntent(venue="a", symbol=ETH, side=Side.BUY, quantity=1, price=300_010)],
    )
    a.update_book(BTC, bids=[(5_000_001, 1)])
    await manager.wait_idle()
    assert placed(a) == [] and manager.counters["unmanaged_instrument_decisions"] == 2
    await manager.stop()


async def test_start_adopts_what_rests_at_the_venue_and_its_positions_before_the_first_quote() -> None:
    """A restarted node: an order of the previous session rests, a position is open."""
    a = venue("a")
    await a.place_order(
        OrderRequest(client_order_id="old-1", symbol=BTC, side=Side.BUY, quantity=5, price=4_999_000)
    )
    a.positions_by_symbol[BTC] = 7
    maker = Recorder("maker", [Subscription("a", (BTC,))], ladder=LADDER)
    manager = TradingEngine.build([a], [maker])
    await manager.start()
    await manager.wait_idle()
    adopted = manager.tracker.get("old-1")
    assert adopted is not None and manager.counters["start_reconciliation_differences"] >= 2
    assert manager.position("a", BTC) == 7
    # the ladder is planned against what rests: the stale order is moved into it (the venue
    # amends), never quoted beside
    a.update_book(BTC, bids=[(5_000_000, 101)])
    await manager.wait_idle()
    assert len(a.open_order_ids) == len(LADDER) and "old-1" in a.open_order_ids
    resting = sorted(
        (order.side.value, order.price, order.quantity) for order in manager.tracker.open_orders("a", BTC)
    )
    assert resting == sorted((quote.side.value, quote.price, quote.size) for quote in LADDER)
    await manager.stop("test over")


async def test_several_new_quotes_on_a_batching_venue_go_in_one_request(order_path: str) -> None:
    """Awaited: one batch for the ladder. Written now: each order is out inside the decision's
    callback, one request each, and none waits for a batch."""
    from dataclasses import replace

    a = venue("a")
    a.capabilities = replace(a.capabilities, max_batch_orders=5)
    maker = Recorder("maker", [Subscription("a", (BTC,))], ladder=TWO_LEVELS)
    manager = TradingEngine.build([a], [maker])
    await manager.start()
    a.update_book(BTC, bids=[(5_000_000, 101)])
    await manager.wait_idle()
    if order_path == "awaited":
        assert [len(batch) for batch in a.batches] == [4]  # one request for the whole ladder
        assert sorted(a.open_order_ids) == sorted(a.batches[0])
    else:
        assert a.batches == []
        placed = [request.client_order_id for kind, request in a.requests if kind is RequestKind.PLACE]
        assert len(placed) == 4 and sorted(a.open_order_ids) == sorted(placed)
    assert all(order.status is OrderStatus.NEW for order in manager.tracker.open_orders("a", BTC))
    await manager.stop("test over")


class BudgetedVenue(FakeVenue):
    """A FakeVenue whose rate budget the test sets (``BudgetsOrders``)."""

    def __init__(self, name: str, budget: int, wait_s: float = 0.01) -> None:
        super().__init__(name, instruments(name), writes_now=WRITES_NOW[0])
        self.set_book(BTC, [(5_000_000, 100)], [(5_000_010, 100)])
        self.budget = budget
        self.wait_s = wait_s

    def order_budget(self) -> int:
        return self.budget

    def order_budget_wait_s(self) -> float:
        return self.wait_s


async def test_a_plan_sends_no_more_than_the_rate_budget_and_replans_the_rest_when_it_allows() -> None:
    """No quote waits in a local queue for the budget (it would be stale when it went out): the
    plan sends what the budget lets out now, nearest the touch first, and re-plans the rest."""
    a = BudgetedVenue("a", budget=2)
    maker = Recorder("maker", [Subscription("a", (BTC,))], ladder=TWO_LEVELS)
    manager = TradingEngine.build([a], [maker])
    await manager.start()
    await manager.wait_idle()
    prices = sorted(order.price for order in manager.tracker.open_orders("a", BTC))
    assert prices == [4_999_990, 5_000_020]  # the two nearest the touch
    assert manager.counters["quote_actions_deferred"] == 2
    a.budget = 10  # no market event follows: the engine's own re-plan sends the rest
    for _ in range(100):
        if len(manager.tracker.open_orders("a", BTC)) == 4:
            break
        await asyncio.sleep(0.01)
    await manager.wait_idle()
    prices = sorted(order.price for order in manager.tracker.open_orders("a", BTC))
    assert prices == [4_999_980, 4_999_990, 5_000_020, 5_000_030]
    assert manager.counters["quote_replans"] >= 1
    await manager.stop("test over")


async def test_with_a_short_budget_a_requote_cancels_first_and_a_caught_up_plan_drops_the_replan() -> None:
    a = BudgetedVenue("a", budget=10, wait_s=0.3)  # no re-plan before the test's next event
    maker = Recorder("maker", [Subscription("a", (BTC,))], ladder=(Quote(Side.BUY, 4_999_990, 5),))
    # a re-quote by cancel and new order (an amend would move it in one request)
    manager = TradingEngine.build([a], [maker], quoting=QuotingPolicy())
    await manager.start()
    await manager.wait_idle()
    (resting,) = manager.tracker.open_orders("a", BTC)
    a.budget = 1
    maker.ladder = (Quote(Side.BUY, 4_999_980, 5),)
    a.update_book(BTC, bids=[(5_000_000, 101)])
    await manager.wait_idle()
    assert a.requests[-1] == (RequestKind.CANCEL, (BTC, resting.client_order_id))
    assert manager.tracker.open_orders("a", BTC) == []
    assert manager.counters["quote_actions_deferred"] == 1
    a.budget = 10
    maker.ladder = (Quote(Side.BUY, 4_999_970, 5),)
    a.update_book(BTC, bids=[(5_000_000, 102)])  # an event before the re-plan: it plans the latest
    await manager.wait_idle()
    await asyncio.sleep(0.4)  # past the re-plan's time: nothing older is planned again
    await manager.wait_idle()
    assert [order.price for order in manager.tracker.open_orders("a", BTC)] == [4_999_970]
    assert manager.counters["quote_replans"] == 0
    await manager.stop("test over")


@pytest.mark.parametrize(("written_now", "batches"), [(1, [3]), (3, [])])
async def test_orders_a_batching_venue_cannot_write_now_go_in_one_batch(
    written_now: int, batches: list[int]
) -> None:
    """The adapter writes the first orders now and declines the rest (its rate budget, its idle
    connections spent): the rest go in one batch request, or alone when one is left."""
    from dataclasses import replace

    a = FakeVenue("a", instruments("a"), writes_now=True)
    a.set_book(BTC, [(5_000_000, 100)], [(5_000_010, 100)])
    a.capabilities = replace(a.capabilities, max_batch_orders=5)
    budget = [written_now]
    write_now = a.place_order_now

    def limited(request: OrderRequest, on_answer: OrderAnswer) -> bool:
        if not budget[0]:
            return False
        budget[0] -= 1
        return write_now(request, on_answer)

    a.place_order_now = limited  # type: ignore[method-assign]
    maker = Recorder("maker", [Subscription("a", (BTC,))], ladder=TWO_LEVELS)
    manager = TradingEngine.build([a], [maker])
    await manager.start()
    a.update_book(BTC, bids=[(5_000_000, 101)])
    await manager.wait_idle()
    assert [len(batch) for batch in a.batches] == batches
    assert len(a.open_order_ids) == 4
    assert manager.gateway.counters["write_now_deferred"] == 4 - written_now
    assert all(order.status is OrderStatus.NEW for order in manager.tracker.open_orders("a", BTC))
    await manager.stop("test over")


async def test_a_batching_venue_refusing_one_order_of_the_batch_rejects_only_that_one(
    order_path: str,
) -> None:
    from dataclasses import replace

    a = venue("a")
    a.capabilities = replace(a.capabilities, max_batch_orders=5)
    ladder = (Quote(Side.BUY, 4_999_990, 5), Quote(Side.SELL, 5_000_020, 5))
    a.fail_next(FailureKind.REJECT, RequestKind.PLACE)
    maker = Recorder("maker", [Subscription("a", (BTC,))], ladder=ladder)
    manager = TradingEngine.build([a], [maker])
    await manager.start()
    await manager.wait_idle()
    assert [len(batch) for batch in a.batches] == ([2] if order_path == "awaited" else [])
    statuses = sorted(order.status.value for order in manager.tracker.all_orders())
    assert statuses == ["new", "rejected"]
    await manager.stop("test over")
