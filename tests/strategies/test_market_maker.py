"""The Avellaneda-Stoikov market maker: model laws (hypothesis) and the strategy's events."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.book.microstructure import MidTape
from hftkit.book.order_book import OrderBook
from hftkit.core.types import Instrument, Order, Side
from hftkit.metrics import LatencyHistogram
from hftkit.strategies.market_maker import (
    VOLATILITY_TIMER,
    AvellanedaStoikovModel,
    MarketMaker,
    MarketMakerConfig,
    volatility_per_sqrt_second,
)

INSTRUMENT = Instrument("venue", "BTCUSDT", "BTC", "USDT", "0.01", "0.001")


def config(**overrides: object) -> MarketMakerConfig:
    values: dict[str, object] = {
        "venue": "venue",
        "symbol": "BTCUSDT",
        "size_per_level": 10,
        "max_position": 100,
        "gamma": 0.05,
        "kappa": 2.0,
        "levels": 3,
        "initial_volatility": 2.0,
    }
    values.update(overrides)
    return MarketMakerConfig(**values)  # type: ignore[arg-type]


books = st.tuples(
    st.integers(1_000, 10_000_000),  # best bid
    st.integers(1, 50),  # spread ticks
    st.integers(1, 10_000),  # bid size
    st.integers(1, 10_000),  # ask size
)


@settings(max_examples=300, deadline=None)
@given(
    book=books,
    inventory=st.integers(-100, 100),
    sigma=st.floats(0, 50),
    gamma=st.floats(0.001, 5),
    kappa=st.floats(0.01, 50),
    levels=st.integers(1, 5),
    spacing=st.integers(1, 5),
)
def test_ladder_never_crosses_itself_or_the_opposite_best(
    book: tuple[int, int, int, int],
    inventory: int,
    sigma: float,
    gamma: float,
    kappa: float,
    levels: int,
    spacing: int,
) -> None:
    best_bid, spread, bid_size, ask_size = book
    best_ask = best_bid + spread
    model = AvellanedaStoikovModel(
        config(
            gamma=gamma, kappa=kappa, levels=levels, level_spacing_ticks=spacing, initial_volatility=sigma
        ),
        INSTRUMENT,
    )
    fair = (best_bid * ask_size + best_ask * bid_size) / (bid_size + ask_size)
    ladder = model.quotes(best_bid, best_ask, fair, inventory)
    bids = [quote for quote in ladder if quote.side is Side.BUY]
    asks = [quote for quote in ladder if quote.side is Side.SELL]
    if bids and asks:
        assert max(quote.price for quote in bids) < min(quote.price for quote in asks)
    assert all(quote.price < best_ask for quote in bids)  # post-only safe
    assert all(quote.price > best_bid for quote in asks)
    assert all(quote.size > 0 and isinstance(quote.price, int) for quote in ladder)
    # filling every quote of a side never takes the position past the maximum
    assert inventory + sum(quote.size for quote in bids) <= 100
    assert inventory - sum(quote.size for quote in asks) >= -100
    assert len({quote.price for quote in bids}) == len(bids)
    assert len({quote.price for quote in asks}) == len(asks)


@settings(max_examples=200, deadline=None)
@given(
    mid=st.floats(1_000, 1e7),
    lower=st.integers(-100, 100),
    higher=st.integers(-100, 100),
    sigma=st.floats(0.01, 50),
)
def test_more_long_inventory_means_a_lower_reservation_price(
    mid: float, lower: int, higher: int, sigma: float
) -> None:
    model = AvellanedaStoikovModel(config(initial_volatility=sigma), INSTRUMENT)
    if lower == higher:
        assert model.reservation_price(mid, lower) == model.reservation_price(mid, higher)
        return
    low, high = sorted((lower, higher))
    assert model.reservation_price(mid, high) < model.reservation_price(mid, low)


def test_spread_and_reservation_follow_the_closed_form_in_price_units() -> None:
    gamma, kappa, sigma, tau = 0.05, 2.0, 3.0, 2.0
    model = AvellanedaStoikovModel(
        config(gamma=gamma, kappa=kappa, initial_volatility=sigma, horizon_s=tau), INSTRUMENT
    )
    expected_spread = gamma * sigma**2 * tau + (2 / gamma) * math.log(1 + gamma / kappa)  # price units
    assert model.spread() * 0.01 == pytest.approx(expected_spread)
    mid_price = 50_000.0
    expected_reservation = mid_price - 0.5 * gamma * sigma**2 * tau
    assert model.reservation_price(mid_price / 0.01, 50) * 0.01 == pytest.approx(expected_reservation)
    assert model.volatility == pytest.approx(sigma)


def test_no_bids_at_max_long_and_no_asks_at_max_short() -> None:
    model = AvellanedaStoikovModel(config(size_skew=0.0), INSTRUMENT)
    at_max_long = model.quotes(5_000_000, 5_000_010, 5_000_005.0, 100)
    assert at_max_long and all(quote.side is Side.SELL for quote in at_max_long)
    at_max_short = model.quotes(5_000_000, 5_000_010, 5_000_005.0, -100)
    assert at_max_short and all(quote.side is Side.BUY for quote in at_max_short)


def test_long_inventory_shrinks_bids_and_grows_asks() -> None:
    model = AvellanedaStoikovModel(config(size_per_level=10, max_position=1_000), INSTRUMENT)
    ladder = model.quotes(5_000_000, 5_000_010, 5_000_005.0, 500)
    bid_sizes = [quote.size for quote in ladder if quote.side is Side.BUY]
    ask_sizes = [quote.size for quote in ladder if quote.side is Side.SELL]
    assert bid_sizes == [5, 5, 5] and ask_sizes == [15, 15, 15]
    flat = model.quotes(5_000_000, 5_000_010, 5_000_005.0, 0)
    assert {quote.size for quote in flat} == {10}


def test_quotes_are_rounded_outward_to_the_grid() -> None:
    # sigma 0: the spread is (2/gamma) ln(1 + gamma/kappa) = 0.9756 price units = 97.56 ticks
    model = AvellanedaStoikovModel(config(initial_volatility=0.0, levels=1), INSTRUMENT)
    ladder = model.quotes(4_999_000, 5_001_000, 5_000_000.0, 0)
    bid, ask = ladder
    half = model.spread() / 2
    assert bid.price == math.floor(5_000_000 - half) and ask.price == math.ceil(5_000_000 + half)


def test_one_sided_or_crossed_books_quote_nothing() -> None:
    model = AvellanedaStoikovModel(config(), INSTRUMENT)
    book = OrderBook("BTCUSDT")
    book.apply_snapshot([(5_000_000, 10)], [])
    assert model.quotes_for_book(book, 0) == ()


def test_invalid_configuration_names_the_field() -> None:
    with pytest.raises(ValueError, match="gamma"):
        config(gamma=0.0)
    with pytest.raises(ValueError, match="max_position"):
        config(max_position=0)
    with pytest.raises(ValueError, match="size_skew"):
        config(size_skew=1.5)


def test_volatility_estimate_recovers_a_known_random_walk_sigma() -> None:
    rng = np.random.default_rng(7)
    sigma_ticks_per_sqrt_s = 40.0
    interval_s = 0.1
    steps = rng.normal(0, sigma_ticks_per_sqrt_s * math.sqrt(interval_s), size=2_000)
    mids = 5_000_000 + np.cumsum(steps)
    tape = MidTape(4_096)
    for index, mid in enumerate(mids):
        tape.add(int(index * interval_s * 1e9), float(mid))
    estimate = volatility_per_sqrt_second(tape, 2_000, 20)
    assert estimate is not None
    assert estimate == pytest.approx(sigma_ticks_per_sqrt_s, rel=0.1)
    assert volatility_per_sqrt_second(MidTape(8), 8, 2) is None


class FakeContext:
    """A StrategyContext of fixed values: the strategy is tested without any event loop."""

    def __init__(self, book: OrderBook, position: int = 0, aggregate: Decimal = Decimal(0)) -> None:
        self._book = book
        self.position_lots = position
        self.aggregate = aggregate
        self.now = 0

    def now_ns(self) -> int:
        return self.now

    def instrument(self, venue: str, symbol: str) -> Instrument:
        return INSTRUMENT

    def book(self, venue: str, symbol: str) -> OrderBook | None:
        return self._book

    def position(self, venue: str, symbol: str) -> int:
        return self.position_lots

    def aggregate_position(self, group: str) -> Decimal:
        return self.aggregate

    def open_orders(self, venue: str, symbol: str) -> list[Order]:
        return []

    def order_latency(self, venue: str) -> LatencyHistogram | None:
        return None

    @property
    def trading_halted(self) -> bool:
        return False


def started_maker(book: OrderBook, **overrides: object) -> tuple[MarketMaker, FakeContext]:
    maker = MarketMaker(config(**overrides))
    context = FakeContext(book)
    maker.bind(context)
    start = maker.on_start()
    assert start is not None and start.timers[0].name == VOLATILITY_TIMER
    return maker, context


def test_strategy_answers_a_book_event_with_its_ladder_and_reuses_an_unchanged_one() -> None:
    book = OrderBook("BTCUSDT")
    book.apply_snapshot([(5_000_000, 100)], [(5_000_010, 100)])
    maker, _ = started_maker(book)
    first = maker.on_book("venue", "BTCUSDT", book)
    second = maker.on_book("venue", "BTCUSDT", book)
    assert first is not None and second is not None
    ladder = first.quotes[("venue", "BTCUSDT")]
    assert len(ladder) == 6
    assert second.quotes[("venue", "BTCUSDT")] is ladder  # identity: quoting skips it cheaply
    assert maker.on_book("venue", "ETHUSDT", book) is None


def test_strategy_leans_on_the_aggregate_position_when_told_to() -> None:
    book = OrderBook("BTCUSDT")
    book.apply_snapshot([(5_000_000, 100)], [(5_000_010, 100)])
    maker, context = started_maker(book, inventory_group="BTC", size_skew=0.0)
    context.position_lots = -100  # this venue short, but the group is max long: no bids
    context.aggregate = Decimal("0.100")  # 100 lots of 0.001
    decision = maker.on_book("venue", "BTCUSDT", book)
    assert decision is not None
    assert all(quote.side is Side.SELL for quote in decision.quotes[("venue", "BTCUSDT")])


def test_volatility_timer_refreshes_sigma_from_sampled_mids() -> None:
    book = OrderBook("BTCUSDT")
    book.apply_snapshot([(5_000_000, 100)], [(5_000_010, 100)])
    maker, context = started_maker(book, min_volatility_samples=10, volatility_sample_interval_ms=100)
    rng = np.random.default_rng(3)
    price = 5_000_000
    for step in range(200):
        context.now = step * 100_000_000
        price += int(rng.integers(-50, 51))
        book.apply_snapshot([(price, 100)], [(price + 10, 100)])
        maker.on_book("venue", "BTCUSDT", book)
    assert len(maker.tape) == 200
    decision = maker.on_timer(VOLATILITY_TIMER)
    assert decision is not None and decision.timers[0].name == VOLATILITY_TIMER
    assert maker.model is not None and maker.model.volatility > 0
    assert maker.model.volatility != pytest.approx(2.0)  # no longer the initial guess
