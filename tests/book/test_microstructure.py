"""Microstructure analytics: hand-computed values and the laws they must keep on any book."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.book.microstructure import (
    NANOSECONDS_PER_YEAR,
    BookReader,
    MidTape,
    OnlineVwap,
    RollingTradeStats,
    TradeTape,
    book_imbalance,
    estimate_impact,
    microprice,
    mid_price,
    realized_volatility,
    spread_ticks,
    trade_flow,
    vwap,
)
from hftkit.book.order_book import OrderBook
from hftkit.core.types import Side, Trade

Levels = Sequence[tuple[int, int]]


class FakeBook:
    """The smallest book with the read API the analytics use."""

    def __init__(self, bids: Levels, asks: Levels) -> None:
        self._bids = sorted(bids, reverse=True)
        self._asks = sorted(asks)
        self.depth_requests: list[int] = []

    def best_bid(self) -> tuple[int, int] | None:
        return self._bids[0] if self._bids else None

    def best_ask(self) -> tuple[int, int] | None:
        return self._asks[0] if self._asks else None

    def bids(self, n: int) -> list[tuple[int, int]]:
        self.depth_requests.append(n)
        return list(self._bids[:n])

    def asks(self, n: int) -> list[tuple[int, int]]:
        self.depth_requests.append(n)
        return list(self._asks[:n])


def real_book(bids: Levels, asks: Levels) -> BookReader:
    book = OrderBook("TEST")
    book.apply_snapshot(list(bids), list(asks))
    return book


@pytest.fixture(params=["fake", "order_book"])
def make_book(request) -> Callable[[Levels, Levels], BookReader]:
    return FakeBook if request.param == "fake" else real_book


BIDS = [(100, 5), (99, 10), (98, 20)]
ASKS = [(102, 3), (103, 7), (105, 10)]


# --- top of book --------------------------------------------------------------------------------


def test_top_of_book_figures_by_hand(make_book) -> None:
    book = make_book(BIDS, ASKS)
    assert spread_ticks(book) == 2
    assert mid_price(book) == 101.0
    assert microprice(book) == pytest.approx((100 * 3 + 102 * 5) / 8)  # 101.25: leans to the ask
    assert book_imbalance(book, 1) == pytest.approx((5 - 3) / 8)
    assert book_imbalance(book, 2) == pytest.approx((15 - 10) / 25)
    assert book_imbalance(book, 10) == pytest.approx((35 - 20) / 55)


def test_one_sided_and_empty_books_give_none_not_nan(make_book) -> None:
    bids_only = make_book(BIDS, [])
    assert spread_ticks(bids_only) is None
    assert mid_price(bids_only) is None
    assert microprice(bids_only) is None
    assert book_imbalance(bids_only, 3) == 1.0
    empty = make_book([], [])
    assert book_imbalance(empty, 1) is None
    impact = estimate_impact(empty, Side.BUY, 5)
    assert impact.filled == 0 and impact.average_price is None and not impact.sufficient_depth


def test_imbalance_needs_at_least_one_level() -> None:
    with pytest.raises(ValueError):
        book_imbalance(FakeBook(BIDS, ASKS), 0)


# --- market impact ------------------------------------------------------------------------------


def test_buy_impact_walks_the_asks_by_hand(make_book) -> None:
    impact = estimate_impact(make_book(BIDS, ASKS), Side.BUY, 5)
    assert impact.filled == 5 and impact.sufficient_depth and impact.unfilled == 0
    assert impact.notional == 3 * 102 + 2 * 103
    assert impact.average_price == pytest.approx(102.4)
    assert (impact.levels_consumed, impact.worst_price) == (2, 103)
    assert impact.reference_mid == 101.0
    assert impact.slippage_ticks == pytest.approx(1.4)
    assert impact.slippage_bps == pytest.approx(1.4 / 101 * 10_000)
    assert impact.touch_slippage_ticks == pytest.approx(0.4)


def test_sell_larger_than_the_book_reports_insufficient_depth(make_book) -> None:
    impact = estimate_impact(make_book(BIDS, ASKS), Side.SELL, 40)
    assert (impact.filled, impact.unfilled, impact.sufficient_depth) == (35, 5, False)
    assert impact.notional == 500 + 990 + 1960
    assert impact.average_price == pytest.approx(3450 / 35)
    assert impact.slippage_ticks == pytest.approx(101 - 3450 / 35)  # a cost, so positive
    assert (impact.levels_consumed, impact.worst_price) == (3, 98)


def test_impact_reads_deep_books_in_growing_chunks_and_respects_max_levels() -> None:
    asks = [(1000 + level, 1) for level in range(200)]
    book = FakeBook([(999, 1)], asks)
    impact = estimate_impact(book, Side.BUY, 30)
    assert (impact.filled, impact.levels_consumed, impact.worst_price) == (30, 30, 1029)
    assert book.depth_requests == [8, 32]  # a small order never reads the whole book
    capped = estimate_impact(book, Side.BUY, 30, max_levels=10)
    assert (capped.filled, capped.levels_consumed, capped.sufficient_depth) == (10, 10, False)


@pytest.mark.parametrize("size", [0, -3])
def test_impact_refuses_non_positive_sizes(size: int) -> None:
    with pytest.raises(ValueError):
        estimate_impact(FakeBook(BIDS, ASKS), Side.BUY, size)


# --- laws on any book ---------------------------------------------------------------------------


@st.composite
def books(draw) -> FakeBook:
    best_bid = draw(st.integers(1, 10_000))
    gap = draw(st.integers(1, 50))
    bid_offsets = draw(st.lists(st.integers(0, 200), min_size=1, max_size=15, unique=True))
    ask_offsets = draw(st.lists(st.integers(0, 200), min_size=1, max_size=15, unique=True))
    bids = [(best_bid - offset, draw(st.integers(1, 1_000))) for offset in bid_offsets]
    asks = [(best_bid + gap + offset, draw(st.integers(1, 1_000))) for offset in ask_offsets]
    bids = [(price, size) for price, size in bids if price > 0] or [(best_bid, 1)]
    return FakeBook(bids, asks)


@settings(max_examples=200, deadline=None)
@given(book=books(), levels=st.integers(1, 20))
def test_microprice_lies_between_bid_and_ask_and_imbalance_within_unit_interval(book, levels) -> None:
    bid, ask = book.best_bid(), book.best_ask()
    assert bid[0] <= microprice(book) <= ask[0]
    assert bid[0] < mid_price(book) < ask[0]
    assert -1.0 <= book_imbalance(book, levels) <= 1.0


@settings(max_examples=150, deadline=None)
@given(
    book=books(),
    side=st.sampled_from([Side.BUY, Side.SELL]),
    sizes=st.lists(st.integers(1, 20_000), min_size=2, max_size=6),
)
def test_impact_is_monotone_in_order_size(book, side, sizes) -> None:
    previous = None
    for size in sorted(sizes):
        impact = estimate_impact(book, side, size)
        assert impact.filled <= size
        assert impact.slippage_ticks >= -1e-9  # walking the book never beats the mid
        if previous is not None:
            assert impact.filled >= previous.filled
            assert impact.levels_consumed >= previous.levels_consumed
            assert impact.slippage_ticks >= previous.slippage_ticks - 1e-9
            if side is Side.BUY:
                assert impact.average_price >= previous.average_price - 1e-9
            else:
                assert impact.average_price <= previous.average_price + 1e-9
        previous = impact


# --- trades -------------------------------------------------------------------------------------

trade_rows = st.lists(
    st.tuples(st.integers(1, 10**7), st.integers(1, 10**6), st.sampled_from([Side.BUY, Side.SELL])),
    min_size=1,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(rows=trade_rows)
def test_vwap_lies_within_the_traded_prices_and_flow_imbalance_within_unit_interval(rows) -> None:
    prices = [price for price, _, _ in rows]
    sizes = [size for _, size, _ in rows]
    value = vwap(prices, sizes)
    assert min(prices) - 1e-6 <= value <= max(prices) + 1e-6
    flow = trade_flow(sizes, [1 if side is Side.BUY else -1 for _, _, side in rows])
    assert flow.buy_volume + flow.sell_volume == sum(sizes)
    assert -1.0 <= flow.imbalance <= 1.0


def test_vwap_of_no_volume_is_none() -> None:
    assert vwap([], []) is None
    assert vwap([100], [0]) is None
    assert trade_flow([], []).imbalance is None


def tape_with(rows: list[tuple[int, int, int, Side]], capacity: int = 16) -> TradeTape:
    tape = TradeTape(capacity)
    for timestamp, price, size, side in rows:
        tape.add(timestamp, price, size, side)
    return tape


def test_trade_tape_count_and_time_windows_by_hand() -> None:
    second = 1_000_000_000
    tape = tape_with(
        [
            (0, 100, 1, Side.BUY),
            (1 * second, 110, 2, Side.SELL),
            (2 * second, 99, 3, Side.BUY),
        ]
    )
    assert tape.vwap(last=2) == pytest.approx((110 * 2 + 99 * 3) / 5)
    assert tape.vwap(since_ns=0) == pytest.approx((100 + 220 + 297) / 6)
    assert tape.vwap(since_ns=3 * second) is None
    flow = tape.flow(since_ns=1 * second)
    assert (flow.buy_volume, flow.sell_volume, flow.trade_count) == (3, 2, 2)
    assert flow.imbalance == pytest.approx(0.2) and flow.net_volume == 1

    window_variance = math.log(1.1) ** 2 + math.log(0.9) ** 2
    assert tape.realized_volatility(last=3) == pytest.approx(math.sqrt(window_variance))
    annualized = tape.realized_volatility(last=3, annualize=True)
    assert annualized == pytest.approx(math.sqrt(window_variance * NANOSECONDS_PER_YEAR / (2 * second)))
    assert tape.realized_volatility(last=1) is None
    with pytest.raises(ValueError):
        tape.vwap()
    with pytest.raises(ValueError):
        tape.vwap(last=1, since_ns=0)


def test_realized_volatility_needs_timestamps_to_annualize_and_positive_prices() -> None:
    with pytest.raises(ValueError):
        realized_volatility([100, 101], annualize=True)
    with pytest.raises(ValueError):
        realized_volatility([100, 0, 101])
    assert realized_volatility([100, 101], [5, 5], annualize=True) is None
    assert realized_volatility(np.full(10, 100.0)) == 0.0


def test_add_trade_uses_receive_time_then_event_time() -> None:
    tape = TradeTape(4)
    common = {"venue": "binance", "symbol": "BTCUSDT", "trade_id": 1, "price": 7, "size": 2}
    tape.add_trade(Trade(**common, aggressor=Side.SELL, event_time_ms=5))
    tape.add_trade(Trade(**common, aggressor=Side.BUY, event_time_ms=5, receive_ns=9_000_000))
    assert list(tape.ring.latest().rows()) == [(5_000_000, 7, 2, -1), (9_000_000, 7, 2, 1)]


@settings(max_examples=100, deadline=None)
@given(rows=trade_rows, count=st.integers(1, 10))
def test_online_vwap_equals_the_batch_vwap_of_the_last_count_trades(rows, count) -> None:
    online = OnlineVwap(count)
    tape = TradeTape(64)
    for timestamp, (price, size, side) in enumerate(rows):
        online.update(price, size)
        tape.add(timestamp, price, size, side)
        assert online.value == pytest.approx(tape.vwap(last=count), rel=1e-12)
    assert len(online) == min(count, len(rows))


@settings(max_examples=100, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 50), min_size=1, max_size=40),
    rows=trade_rows,
    window=st.integers(1, 200),
)
def test_rolling_trade_stats_match_the_tape_over_the_same_time_window(gaps, rows, window) -> None:
    stats = RollingTradeStats(window)
    tape = TradeTape(64)
    now = 0
    for gap, (price, size, side) in zip(gaps, rows, strict=False):
        now += gap
        stats.update(now, price, size, side)
        tape.add(now, price, size, side)
        # the rolling window is (now - window, now]; the tape's since() is inclusive
        expected_vwap = tape.vwap(since_ns=now - window + 1)
        assert stats.vwap(now) == pytest.approx(expected_vwap, rel=1e-12)
        assert stats.flow(now) == tape.flow(since_ns=now - window + 1)
    later = now + window
    assert stats.vwap(later) is None
    assert stats.flow(later).trade_count == 0


def test_mid_tape_samples_two_sided_books_only_and_measures_mid_volatility(make_book) -> None:
    tape = MidTape(8)
    assert tape.sample(0, make_book([(100, 1)], [(102, 1)])) == 101.0
    assert tape.sample(1, make_book([(100, 1)], [])) is None  # a one-sided book has no mid
    assert tape.sample(2, make_book([(101, 1)], [(102, 1)])) == 101.5
    tape.add(3, 100.0)
    assert len(tape) == 3
    expected = math.sqrt(math.log(101.5 / 101) ** 2 + math.log(100 / 101.5) ** 2)
    assert tape.realized_volatility(since_ns=0) == pytest.approx(expected)
    assert tape.realized_volatility(last=3, annualize=True) == pytest.approx(
        math.sqrt(expected**2 * NANOSECONDS_PER_YEAR / 3)
    )
    assert tape.realized_volatility(since_ns=3) is None
