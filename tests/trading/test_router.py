"""Smart order router on hand-built books: split, costs, limits, explanation, optimality."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.book.order_book import OrderBook
from hftkit.core.types import Instrument, Side
from hftkit.metrics import LatencyHistogram
from hftkit.trading.router import (
    RouteCandidate,
    RouterConfig,
    SmartOrderRouter,
    latency_ms_from_histogram,
)


def instrument(venue: str, **extra: str) -> Instrument:
    return Instrument(venue, "BTCUSDT", "BTC", "USDT", "0.01", "0.001", **extra)


def book(bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> OrderBook:
    result = OrderBook("BTCUSDT")
    result.apply_snapshot(bids, asks)
    return result


def candidate(venue: str, asks: list[tuple[int, int]], **options: object) -> RouteCandidate:
    bids = [(asks[0][0] - 10, 1_000)] if asks else []
    return RouteCandidate(instrument(venue), book(bids, asks), **options)  # type: ignore[arg-type]


def test_buy_takes_the_cheapest_levels_across_venues() -> None:
    cheap_thin = candidate("a", [(5_000_000, 3), (5_000_050, 100)])
    deep = candidate("b", [(5_000_010, 100)])
    decision = SmartOrderRouter().route(Side.BUY, "0.010", [cheap_thin, deep])
    by_venue = {allocation.venue: allocation for allocation in decision.allocations}
    assert by_venue["a"].lots == 3 and by_venue["a"].limit_price == 5_000_000
    assert by_venue["b"].lots == 7 and by_venue["b"].limit_price == 5_000_010
    assert decision.filled == Decimal("0.010") and decision.unfilled == 0
    assert decision.best_single_venue == "b"
    assert decision.saving_vs_single is not None and decision.saving_vs_single > 0
    text = decision.explain()
    assert "a:BTCUSDT" in text and "b:BTCUSDT" in text and "split" in decision.reason


def test_fees_move_the_order_to_the_cheaper_venue_after_fees() -> None:
    a = candidate("a", [(5_000_000, 100)], fee_bps=10.0)  # 50.00 + 10 bps = 50.05
    b = candidate("b", [(5_000_010, 100)], fee_bps=0.0)  # 50.00.10
    decision = SmartOrderRouter().route(Side.BUY, "0.050", [a, b])
    assert [allocation.venue for allocation in decision.allocations] == ["b"]
    assessment = {item.venue: item for item in decision.assessments}
    assert assessment["a"].excluded == "" and assessment["a"].cost_alone is not None
    assert assessment["a"].cost_alone > assessment["b"].cost_alone  # type: ignore[operator]


def test_latency_is_priced_as_an_adverse_move() -> None:
    slow_cheap = candidate("slow", [(5_000_000, 100)], latency_ms=50.0)
    fast = candidate("fast", [(5_000_005, 100)], latency_ms=1.0)
    no_latency_cost = SmartOrderRouter(RouterConfig(adverse_bps_per_ms=0.0))
    assert no_latency_cost.route(Side.BUY, "0.010", [slow_cheap, fast]).allocations[0].venue == "slow"
    priced = SmartOrderRouter(RouterConfig(adverse_bps_per_ms=0.01))  # 50 ms = 0.5 bps = 2.5 USDT/BTC
    decision = priced.route(Side.BUY, "0.010", [slow_cheap, fast])
    assert [allocation.venue for allocation in decision.allocations] == ["fast"]
    assert decision.allocations[0].latency_cost > 0


def test_sell_goes_to_the_highest_bid() -> None:
    a = RouteCandidate(instrument("a"), book([(5_000_000, 100)], [(5_000_100, 1)]))
    b = RouteCandidate(instrument("b"), book([(5_000_020, 4), (4_999_000, 100)], [(5_000_100, 1)]))
    decision = SmartOrderRouter().route(Side.SELL, "0.010", [a, b])
    by_venue = {allocation.venue: allocation.lots for allocation in decision.allocations}
    assert by_venue == {"b": 4, "a": 6}
    assert decision.total_cost < 0  # selling receives cash


def test_available_quantity_caps_a_venue() -> None:
    a = candidate("a", [(5_000_000, 100)], available=Decimal("0.004"))
    b = candidate("b", [(5_000_010, 100)])
    decision = SmartOrderRouter().route(Side.BUY, "0.010", [a, b])
    assert {allocation.venue: allocation.lots for allocation in decision.allocations} == {"a": 4, "b": 6}
    nothing = candidate("c", [(4_000_000, 100)], available=Decimal(0))
    decision = SmartOrderRouter().route(Side.BUY, "0.010", [nothing, b])
    assert [allocation.venue for allocation in decision.allocations] == ["b"]
    assert "nothing available" in next(item.excluded for item in decision.assessments if item.venue == "c")


def test_child_below_a_venue_minimum_is_dropped_and_the_split_redone() -> None:
    picky = RouteCandidate(
        instrument("a", min_quantity="0.005"), book([(4_999_990, 10)], [(5_000_000, 2), (5_000_100, 100)])
    )
    other = candidate("b", [(5_000_010, 100)])
    decision = SmartOrderRouter().route(Side.BUY, "0.006", [picky, other])
    assert [allocation.venue for allocation in decision.allocations] == ["b"]
    assert "minimum" in next(item.excluded for item in decision.assessments if item.venue == "a")


def test_insufficient_depth_reports_the_shortfall() -> None:
    decision = SmartOrderRouter().route(Side.BUY, "1", [candidate("a", [(5_000_000, 5)])])
    assert decision.filled == Decimal("0.005") and decision.unfilled == Decimal("0.995")
    assert decision.best_single_venue is None and "only" in decision.reason


def test_bad_requests_are_refused() -> None:
    router = SmartOrderRouter()
    with pytest.raises(ValueError):
        router.route(Side.BUY, "0", [candidate("a", [(5_000_000, 5)])])
    with pytest.raises(ValueError):
        router.route(Side.BUY, "1", [candidate("a", [(5_000_000, 5)]), candidate("a", [(5_000_000, 5)])])
    with pytest.raises(ValueError):
        RouterConfig(max_levels=0)


def test_latency_comes_from_a_histogram_percentile() -> None:
    histogram = LatencyHistogram()
    assert latency_ms_from_histogram(histogram) is None
    for value in (1_000_000, 2_000_000, 3_000_000):
        histogram.record(value)
    assert latency_ms_from_histogram(histogram) == pytest.approx(2.0, rel=0.01)


levels = st.lists(st.tuples(st.integers(1, 200), st.integers(1, 50)), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    venues=st.lists(
        st.tuples(levels, st.floats(0, 20), st.floats(0, 20)),  # ask offsets/sizes, fee bps, latency ms
        min_size=1,
        max_size=3,
    ),
    side=st.sampled_from([Side.BUY, Side.SELL]),
    fraction=st.floats(0.01, 1.0),
    adverse=st.floats(0, 0.05),
)
def test_split_fills_the_parent_and_never_costs_more_than_the_best_single_venue(
    venues: list[tuple[list[tuple[int, int]], float, float]],
    side: Side,
    fraction: float,
    adverse: float,
) -> None:
    candidates = []
    for index, (offsets, fee, latency) in enumerate(venues):
        prices: dict[int, int] = {}
        for offset, size in offsets:
            prices[offset] = prices.get(offset, 0) + size
        if side is Side.BUY:
            side_levels = [(5_000_000 + offset, size) for offset, size in prices.items()]
            the_book = book([(4_999_000, 1)], side_levels)
        else:
            side_levels = [(5_000_000 - offset, size) for offset, size in prices.items()]
            the_book = book(side_levels, [(5_001_000, 1)])
        candidates.append(RouteCandidate(instrument(f"v{index}"), the_book, fee_bps=fee, latency_ms=latency))
    total_lots = sum(size for offsets, _, _ in venues for _, size in offsets)
    lots = max(1, int(total_lots * fraction))
    quantity = Decimal(lots) * Decimal("0.001")
    decision = SmartOrderRouter(RouterConfig(adverse_bps_per_ms=adverse)).route(side, quantity, candidates)
    assert sum(allocation.lots for allocation in decision.allocations) == lots
    assert decision.filled == quantity
    if decision.best_single_cost is not None:
        scale = max(1.0, abs(decision.best_single_cost))
        assert decision.total_cost <= decision.best_single_cost + 1e-9 * scale


class CountingBook:
    """A book that records how deep the router read it."""

    def __init__(self, inner: OrderBook) -> None:
        self.inner = inner
        self.reads: list[int] = []

    def asks(self, n: int | None = None) -> list[tuple[int, int]]:
        self.reads.append(-1 if n is None else n)
        return self.inner.asks(n)

    def bids(self, n: int | None = None) -> list[tuple[int, int]]:
        self.reads.append(-1 if n is None else n)
        return self.inner.bids(n)

    def best_bid(self) -> tuple[int, int] | None:
        return self.inner.best_bid()

    def best_ask(self) -> tuple[int, int] | None:
        return self.inner.best_ask()


def test_a_deep_book_is_read_only_as_deep_as_the_parent_needs() -> None:
    # reading a hundred levels of a real USD-M book sorts the side (the book's window holds
    # fewer): a hedge of a few lots reads the first levels, a larger one doubles until it fits
    deep = book([(4_999_000, 1)], [(5_000_000 + step, 1) for step in range(500)])
    router = SmartOrderRouter()
    small = CountingBook(deep)
    decision = router.route(Side.BUY, "0.003", [RouteCandidate(instrument("a"), small)])  # type: ignore[arg-type]
    assert small.reads == [16] and decision.filled == Decimal("0.003")
    large = CountingBook(deep)
    decision = router.route(Side.BUY, "0.040", [RouteCandidate(instrument("a"), large)])  # type: ignore[arg-type]
    assert large.reads == [16, 32, 64] and decision.allocations[0].limit_price == 5_000_039
    beyond = CountingBook(deep)
    decision = router.route(Side.BUY, "1", [RouteCandidate(instrument("a"), beyond)])  # type: ignore[arg-type]
    assert beyond.reads == [16, 32, 64, 100] and decision.filled == Decimal("0.100")  # max_levels


class WholeBook(CountingBook):
    """A book that hands over the same levels (all of them) however few are asked for."""

    def __init__(self, inner: OrderBook, levels: list[tuple[int, int]]) -> None:
        super().__init__(inner)
        self.levels = levels

    def asks(self, n: int | None = None) -> list[tuple[int, int]]:
        return self.levels

    def bids(self, n: int | None = None) -> list[tuple[int, int]]:
        return self.levels


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5), min_size=1, max_size=150),
    other=st.lists(st.integers(1, 5), min_size=1, max_size=150),
    lots=st.integers(1, 400),
    side=st.sampled_from([Side.BUY, Side.SELL]),
)
def test_reading_only_the_levels_needed_routes_as_reading_them_all(
    sizes: list[int], other: list[int], lots: int, side: Side
) -> None:
    def levels(offset: int, values: list[int]) -> list[tuple[int, int]]:
        sign = 1 if side is Side.BUY else -1
        return [(5_000_000 + sign * (offset + 2 * index), size) for index, size in enumerate(values)]

    def candidates(whole: bool) -> list[RouteCandidate]:
        made = []
        for name, offset, values in (("a", 0, sizes), ("b", 1, other)):
            taken = levels(offset, values)
            the_book = book([(4_000_000, 1)], taken) if side is Side.BUY else book(taken, [(6_000_000, 1)])
            reader: OrderBook | WholeBook = the_book
            if whole:  # a book that always hands over every level it holds up to max_levels
                reader = WholeBook(the_book, the_book.asks(100) if side is Side.BUY else the_book.bids(100))
            made.append(RouteCandidate(instrument(name), reader, fee_bps=1.0))  # type: ignore[arg-type]
        return made

    quantity = Decimal(lots) * Decimal("0.001")
    shallow = SmartOrderRouter().route(side, quantity, candidates(False))
    everything = SmartOrderRouter().route(side, quantity, candidates(True))
    assert shallow.allocations == everything.allocations
    assert shallow.total_cost == everything.total_cost
    assert shallow.best_single_venue == everything.best_single_venue
    assert shallow.best_single_cost == everything.best_single_cost
