"""Cross-venue hedger as a pure strategy: threshold, routing, no double hedge, cooldown."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hftkit.book.order_book import OrderBook
from hftkit.core.types import Instrument, Order, OrderStatus, Side, TimeInForce
from hftkit.metrics import LatencyHistogram
from hftkit.strategies.hedger import CHECK_TIMER, COOLDOWN_TIMER, CrossVenueHedger, HedgerConfig
from hftkit.trading.execution import ExecutionReport

INSTRUMENTS = {venue: Instrument(venue, "BTCUSDT", "BTC", "USDT", "0.01", "0.001") for venue in ("a", "b")}


class FakeContext:
    def __init__(self) -> None:
        self.books: dict[str, OrderBook] = {}
        for venue, best_bid in (("a", 5_000_000), ("b", 5_000_005)):
            book = OrderBook("BTCUSDT")
            book.apply_snapshot([(best_bid, 10), (best_bid - 10, 100)], [(best_bid + 10, 100)])
            self.books[venue] = book
        self.aggregate = Decimal(0)
        self.now = 0
        self.halted = False
        self.latency = {"a": LatencyHistogram(), "b": LatencyHistogram()}

    def now_ns(self) -> int:
        return self.now

    def instrument(self, venue: str, symbol: str) -> Instrument:
        return INSTRUMENTS[venue]

    def book(self, venue: str, symbol: str) -> OrderBook | None:
        return self.books.get(venue)

    def position(self, venue: str, symbol: str) -> int:
        return 0

    def aggregate_position(self, group: str) -> Decimal:
        return self.aggregate if group == "BTC" else Decimal(0)

    def open_orders(self, venue: str, symbol: str) -> list[Order]:
        return []

    def order_latency(self, venue: str) -> LatencyHistogram | None:
        return self.latency.get(venue)

    @property
    def trading_halted(self) -> bool:
        return self.halted


def hedger(**overrides: object) -> tuple[CrossVenueHedger, FakeContext]:
    values: dict[str, object] = {
        "group": "BTC",
        "hedge_on": (("a", "BTCUSDT"), ("b", "BTCUSDT")),
        "threshold": Decimal("0.005"),
        "watch": (("m", "BTCUSDT"),),
        "cooldown_s": 2.0,
        "slippage_bps": 10.0,
    }
    values.update(overrides)
    strategy = CrossVenueHedger(HedgerConfig(**values))  # type: ignore[arg-type]
    context = FakeContext()
    strategy.bind(context)
    return strategy, context


def report(tag: str, venue: str, filled: int) -> ExecutionReport:
    return ExecutionReport(
        venue=venue,
        symbol="BTCUSDT",
        side=Side.SELL,
        requested=filled,
        filled=filled,
        status=OrderStatus.FILLED,
        sent=True,
        tag=tag,
    )


def test_subscriptions_cover_hedge_books_and_watched_fills() -> None:
    strategy, _ = hedger()
    subscriptions = {
        (item.venue, item.symbols, item.books, item.all_fills) for item in strategy.subscriptions()
    }
    assert subscriptions == {
        ("a", ("BTCUSDT",), True, True),
        ("b", ("BTCUSDT",), True, True),
        ("m", ("BTCUSDT",), False, True),
    }


def test_no_hedge_within_the_threshold() -> None:
    strategy, context = hedger()
    context.aggregate = Decimal("0.005")
    assert strategy.maybe_hedge() is None
    context.aggregate = Decimal("-0.005")
    assert strategy.maybe_hedge() is None


def test_long_exposure_is_sold_across_venues_with_price_protection() -> None:
    strategy, context = hedger()
    context.aggregate = Decimal("0.030")
    decision = strategy.maybe_hedge()
    assert decision is not None and strategy.last_routing is not None
    orders = {order.venue: order for order in decision.orders}
    assert orders["b"].quantity == 20 and orders["a"].quantity == 10  # b bids higher, level by level
    assert all(
        order.side is Side.SELL and order.time_in_force is TimeInForce.IOC for order in orders.values()
    )
    allocation = {item.venue: item for item in strategy.last_routing.allocations}
    for venue, order in orders.items():  # limit: the worst planned level less 10 bps, never higher
        assert order.price < allocation[venue].limit_price
        assert order.price >= allocation[venue].limit_price * (1 - 10 / 10_000) - 1
    assert sum(order.quantity for order in decision.orders) == 30


def test_short_exposure_is_bought_and_max_hedge_caps_it() -> None:
    strategy, context = hedger(max_hedge=Decimal("0.010"))
    context.aggregate = Decimal("-0.050")
    decision = strategy.maybe_hedge()
    assert decision is not None
    assert all(order.side is Side.BUY for order in decision.orders)
    assert sum(order.quantity for order in decision.orders) == 10


def test_no_double_hedge_while_in_flight_then_cooldown() -> None:
    strategy, context = hedger()
    context.aggregate = Decimal("0.030")
    first = strategy.maybe_hedge()
    assert first is not None
    assert strategy.maybe_hedge() is None and strategy.hedges_skipped_in_flight == 1
    for order in first.orders[:-1]:
        assert strategy.on_execution(report(order.tag, order.venue, order.quantity)) is None
    last = first.orders[-1]
    done = strategy.on_execution(report(last.tag, last.venue, last.quantity))
    assert done is not None and done.timers[0].name == COOLDOWN_TIMER
    assert not strategy.in_flight and sum(strategy.hedged_lots_by_venue.values()) == 30
    context.now = 1_000_000_000  # 1 s into a 2 s cooldown: wait, with a timer for its end
    waiting = strategy.maybe_hedge()
    assert waiting is not None and not waiting.orders
    assert waiting.timers[0].delay_s == pytest.approx(1.0)
    context.now = 2_000_000_001
    again = strategy.on_timer(COOLDOWN_TIMER)
    assert again is not None and again.orders and strategy.hedges_started == 2


def test_halted_trading_or_missing_books_means_no_hedge() -> None:
    strategy, context = hedger()
    context.aggregate = Decimal("1")
    context.halted = True
    assert strategy.maybe_hedge() is None
    context.halted = False
    context.books.clear()
    assert strategy.maybe_hedge() is None


def test_check_timer_rearms_itself() -> None:
    strategy, _context = hedger(check_interval_s=0.5)
    start = strategy.on_start()
    assert start is not None and start.timers[0].name == CHECK_TIMER
    tick = strategy.on_timer(CHECK_TIMER)
    assert tick is not None and [timer.name for timer in tick.timers] == [CHECK_TIMER]


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="hedge_on"):
        HedgerConfig(group="BTC", hedge_on=(), threshold=Decimal(1))
    with pytest.raises(ValueError, match="threshold"):
        HedgerConfig(group="BTC", hedge_on=(("a", "X"),), threshold=Decimal(-1))


def test_the_router_s_latency_is_re_read_once_per_refresh_not_per_hedge() -> None:
    # a percentile of a histogram cost about as much as the rest of a hedge's decision
    strategy, context = hedger(cooldown_s=0.0, latency_refresh_s=1.0)
    reads: list[str] = []
    order_latency = context.order_latency

    def counted(venue: str) -> LatencyHistogram | None:
        reads.append(venue)
        return order_latency(venue)

    context.order_latency = counted  # type: ignore[method-assign]
    context.latency["a"].record(40_000_000)  # a: 40 ms, b: unmeasured (the router's default)
    context.aggregate = Decimal("0.030")
    first = strategy.maybe_hedge()
    assert first is not None and sorted(reads) == ["a", "b"]
    a_alone = next(item for item in strategy.last_routing.assessments if item.venue == "a")  # type: ignore[union-attr]
    assert a_alone.latency_ms == pytest.approx(40.0, rel=0.01)
    strategy.in_flight.clear()
    context.now = 500_000_000  # half a second later: the same figures, nothing read
    context.latency["a"].record(1_000_000)
    context.latency["a"].record(1_000_000)
    assert strategy.maybe_hedge() is not None and len(reads) == 2
    strategy.in_flight.clear()
    context.now = 1_000_000_000  # a second after the first read: read again
    assert strategy.maybe_hedge() is not None and len(reads) == 4
    a_now = next(item for item in strategy.last_routing.assessments if item.venue == "a")  # type: ignore[union-attr]
    assert a_now.latency_ms == pytest.approx(1.0, rel=0.01)  # the new median
    with pytest.raises(ValueError, match="latency_refresh_s"):
        HedgerConfig(group="BTC", hedge_on=(("a", "BTCUSDT"),), threshold=Decimal(1), latency_refresh_s=-1.0)
