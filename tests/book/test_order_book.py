"""OrderBook: levels, depth views, book walks, trimming, own-order overlay, and model laws."""

from __future__ import annotations

import contextlib
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.book import DuplicateOwnOrderError, OrderBook, UnknownOwnOrderError
from hftkit.book import order_book as order_book_module
from hftkit.core import Side


def make_book(**kwargs) -> OrderBook:
    book = OrderBook("BTCUSDT", **kwargs)
    book.apply_snapshot(
        bids=[(100, 5), (99, 7), (97, 1)],
        asks=[(101, 2), (102, 4), (105, 9)],
        update_id=10,
    )
    return book


def test_snapshot_sets_best_levels_and_update_id():
    book = make_book()
    assert book.best_bid() == (100, 5)
    assert book.best_ask() == (101, 2)
    assert book.last_update_id == 10
    assert book.spread_ticks() == 1
    assert book.mid_ticks2() == 201
    assert len(book) == 6


def test_empty_book_has_no_top():
    book = OrderBook()
    assert book.best_bid() is None and book.best_ask() is None
    assert book.best_bid_price() is None and book.best_ask_price() is None
    assert book.spread_ticks() is None and book.mid_ticks2() is None
    assert not book.is_crossed()
    assert book.bids(5) == [] and book.asks(5) == []


def test_snapshot_ignores_zero_sizes_and_replaces_previous_levels():
    book = make_book()
    book.apply_snapshot([(50, 1), (49, 0)], [(60, 0), (61, 3)], update_id=11)
    assert book.bids() == [(50, 1)]
    assert book.asks() == [(61, 3)]


def test_delta_updates_inserts_and_deletes_levels():
    book = make_book()
    book.apply_delta(bids=[(100, 6), (98, 3), (97, 0)], asks=[(101, 0), (103, 1)])
    assert book.bids() == [(100, 6), (99, 7), (98, 3)]
    assert book.asks() == [(102, 4), (103, 1), (105, 9)]
    assert book.best_ask() == (102, 4)


def test_deleting_an_absent_level_is_harmless():
    book = make_book()
    book.apply_delta(bids=[(42, 0)], asks=[(4242, 0)])
    assert book.bids() == [(100, 5), (99, 7), (97, 1)]
    assert book.asks() == [(101, 2), (102, 4), (105, 9)]


def test_new_best_levels_move_the_top():
    book = make_book()
    book.apply_delta(bids=[(100, 0)], asks=[(100, 0)])
    assert book.best_bid() == (99, 7)
    book.apply_level(Side.SELL, 100, 8)
    assert book.best_ask() == (100, 8)
    book.apply_level(Side.BUY, 99, 0)
    assert book.best_bid() == (97, 1)


def test_depth_views_are_best_first_and_bounded():
    book = make_book()
    assert book.bids(2) == [(100, 5), (99, 7)]
    assert book.asks(2) == [(101, 2), (102, 4)]
    assert book.bids(0) == [] and book.asks(-1) == []
    assert book.bids(10) == book.bids()
    assert book.depth(Side.SELL, 1) == [(101, 2)]
    assert book.cumulative_depth(Side.BUY) == [(100, 5), (99, 12), (97, 13)]
    assert book.cumulative_depth(Side.SELL, 2) == [(101, 2), (102, 6)]
    assert book.total_size(Side.SELL) == 15
    assert book.level_count(Side.BUY) == 3


def test_size_at_price():
    book = make_book()
    assert book.size_at(Side.BUY, 99) == 7
    assert book.size_at(Side.SELL, 105) == 9
    assert book.size_at(Side.SELL, 104) == 0


def test_walk_prices_a_taker_order_through_several_levels():
    book = make_book()
    walk = book.walk(Side.BUY, 5)
    assert (walk.filled, walk.worst_price, walk.levels_consumed) == (5, 102, 2)
    assert walk.notional == 2 * 101 + 3 * 102
    assert walk.average_price == pytest.approx((2 * 101 + 3 * 102) / 5)
    assert walk.complete
    sell = book.walk(Side.SELL, 6)
    assert (sell.filled, sell.notional, sell.worst_price) == (6, 5 * 100 + 99, 99)


def test_walk_reports_partial_fill_when_the_book_is_too_thin():
    book = make_book()
    walk = book.walk(Side.BUY, 100)
    assert walk.filled == 15 and not walk.complete
    assert walk.worst_price == 105 and walk.levels_consumed == 3
    empty = OrderBook().walk(Side.SELL, 3)
    assert empty.filled == 0 and empty.average_price is None and empty.worst_price is None
    assert book.walk(Side.BUY, 0).filled == 0


def test_crossed_book_is_detected():
    book = make_book()
    assert not book.is_crossed()
    book.apply_delta(bids=[(101, 1)], asks=[])
    assert book.is_crossed()


def test_max_depth_trims_the_worst_levels():
    book = make_book(max_depth=2)
    assert book.bids() == [(100, 5), (99, 7)]
    assert book.asks() == [(101, 2), (102, 4)]
    book.apply_delta(bids=[(100, 0), (98, 2)], asks=[(100, 1)])
    assert book.bids() == [(99, 7), (98, 2)]
    assert book.asks() == [(100, 1), (101, 2)]
    with pytest.raises(ValueError):
        OrderBook(max_depth=0)


def test_clear_forgets_levels():
    book = make_book()
    book.clear()
    assert len(book) == 0 and book.last_update_id == -1


def test_own_orders_are_excluded_from_the_others_view():
    book = make_book()
    book.add_own_order("a", Side.BUY, 100, 5)  # the whole best bid is ours
    book.add_own_order("b", Side.SELL, 101, 1)
    assert book.best_bid_excluding_own() == (99, 7)
    assert book.best_ask_excluding_own() == (101, 1)
    assert book.bids_excluding_own(2) == [(99, 7), (97, 1)]
    assert book.asks_excluding_own() == [(101, 1), (102, 4), (105, 9)]
    assert book.depth_excluding_own(Side.BUY, 0) == []
    assert book.own_size_at(Side.BUY, 100) == 5
    # the public book itself is untouched
    assert book.best_bid() == (100, 5)


def test_own_order_amend_and_remove():
    book = make_book()
    book.add_own_order("a", Side.BUY, 100, 2)
    book.add_own_order("b", Side.BUY, 100, 1)
    assert book.own_size_at(Side.BUY, 100) == 3
    book.amend_own_order("a", price=99, size=4)
    assert book.own_size_at(Side.BUY, 100) == 1
    assert book.own_size_at(Side.BUY, 99) == 4
    assert book.bids_excluding_own(2) == [(100, 4), (99, 3)]
    removed = book.remove_own_order("b")
    assert removed.size == 1 and book.own_size_at(Side.BUY, 100) == 0
    book.amend_own_order("a", size=0)
    assert book.own_orders() == []
    with pytest.raises(UnknownOwnOrderError):
        book.remove_own_order("a")
    with pytest.raises(UnknownOwnOrderError):
        book.amend_own_order("zzz", size=1)


def test_own_order_errors_are_classified():
    book = make_book()
    book.add_own_order("a", Side.SELL, 101, 1)
    with pytest.raises(DuplicateOwnOrderError):
        book.add_own_order("a", Side.SELL, 101, 1)
    with pytest.raises(ValueError):
        book.add_own_order("b", Side.SELL, 101, 0)


def test_own_size_larger_than_public_size_is_clamped_away():
    book = make_book()
    book.add_own_order("a", Side.SELL, 101, 10)  # our ack arrived before the depth update
    assert book.best_ask_excluding_own() == (102, 4)


# laws ------------------------------------------------------------------------------------

PRICES = st.integers(min_value=1, max_value=60)
SIZES = st.integers(min_value=0, max_value=5)
LEVELS = st.lists(st.tuples(PRICES, SIZES), max_size=8)


def _model_walk(levels: list[tuple[int, int]], quantity: int) -> tuple[int, int, int | None]:
    filled = notional = 0
    worst = None
    for price, size in levels:
        if filled == quantity:
            break
        take = min(size, quantity - filled)
        filled += take
        notional += take * price
        worst = price
    return filled, notional, worst


# Small windows force every trim/refill/edge path on small books; None keeps the defaults.
SMALL_WINDOWS = {"WINDOW_MIN": 2, "WINDOW_TARGET": 4, "WINDOW_MAX": 8}


@pytest.mark.parametrize("windows", [None, SMALL_WINDOWS], ids=["default-window", "small-window"])
@settings(max_examples=100, deadline=None)
@given(
    snapshot=st.tuples(LEVELS, LEVELS),
    updates=st.lists(st.tuples(LEVELS, LEVELS), max_size=30),
    depth=st.integers(1, 70),
    quantity=st.integers(1, 40),
)
def test_book_equals_a_reference_dict_model_after_any_updates(windows, snapshot, updates, depth, quantity):
    with contextlib.ExitStack() as stack:
        for name, value in (windows or {}).items():
            stack.enter_context(mock.patch.object(order_book_module, name, value))
        book = OrderBook()
        book.apply_snapshot(*snapshot)
        model_bids = {price: size for price, size in snapshot[0] if size}
        model_asks = {price: size for price, size in snapshot[1] if size}
        for bids, asks in updates:
            book.apply_delta(bids, asks)
            for model, levels in ((model_bids, bids), (model_asks, asks)):
                for price, size in levels:
                    if size:
                        model[price] = size
                    else:
                        model.pop(price, None)
            assert book.best_bid() == (max(model_bids.items()) if model_bids else None)
            assert book.best_ask() == (min(model_asks.items()) if model_asks else None)
        sorted_bids = sorted(model_bids.items(), reverse=True)
        sorted_asks = sorted(model_asks.items())
        assert book.bids() == sorted_bids
        assert book.asks() == sorted_asks
        assert book.bids(depth) == sorted_bids[:depth]
        assert book.asks(depth) == sorted_asks[:depth]
        assert book.level_count(Side.BUY) == len(model_bids)
        for price in range(1, 61):
            assert book.size_at(Side.BUY, price) == model_bids.get(price, 0)
            assert book.size_at(Side.SELL, price) == model_asks.get(price, 0)
        for side, levels in ((Side.SELL, sorted_bids), (Side.BUY, sorted_asks)):
            walk = book.walk(side, quantity)
            assert (walk.filled, walk.notional, walk.worst_price) == _model_walk(levels, quantity)
        # a view without ourselves equals the model minus our order
        if sorted_bids:
            price, size = sorted_bids[-1]  # our order rests at the worst bid
            book.add_own_order("own", Side.BUY, price, size)
            expected = [level for level in sorted_bids if level[0] != price]
            assert book.bids_excluding_own() == expected
            assert book.bids_excluding_own(depth) == expected[:depth]


@st.composite
def consistent_updates(draw):
    """Updates from a model market whose bids stay below a moving mid and asks above it."""
    steps = []
    for _ in range(draw(st.integers(1, 25))):
        mid = draw(st.integers(20, 80))
        bids = draw(st.lists(st.tuples(st.integers(1, mid - 1), st.integers(1, 9)), max_size=6))
        asks = draw(st.lists(st.tuples(st.integers(mid + 1, 120), st.integers(1, 9)), max_size=6))
        steps.append((mid, bids, asks))
    return steps


@settings(max_examples=100, deadline=None)
@given(steps=consistent_updates())
def test_book_is_never_crossed_after_valid_updates(steps):
    # A venue that moves its mid removes the levels that would cross it in the same update;
    # the model does the same, so every update it emits is a valid one.
    book = OrderBook()
    model_bids: dict[int, int] = {}
    model_asks: dict[int, int] = {}
    for mid, bids, asks in steps:
        removals_bids = [(price, 0) for price in model_bids if price >= mid]
        removals_asks = [(price, 0) for price in model_asks if price <= mid]
        for price, _ in removals_bids:
            del model_bids[price]
        for price, _ in removals_asks:
            del model_asks[price]
        model_bids.update(bids)
        model_asks.update(asks)
        book.apply_delta(removals_bids + bids, removals_asks + asks)
        assert not book.is_crossed()
        spread = book.spread_ticks()
        assert spread is None or spread > 0


def test_deep_book_stays_exact_while_the_market_eats_through_thousands_of_levels():
    book = OrderBook()
    book.apply_snapshot([(price, 1) for price in range(1, 3001)], [(price, 1) for price in range(3001, 6001)])
    for price in range(3000, 1000, -1):  # sell-off: the best bid is taken 2,000 times
        book.apply_delta([(price, 0)], [(price, 2)])
        assert book.best_bid() == (price - 1, 5 if price - 1 <= 1000 else 1)
        assert book.best_ask() == (price, 2)
        far = price - 2000  # churn far from the top on both sides meanwhile
        book.apply_delta([(far, 5)] if far >= 1 else [], [(9000 + price, 3)])
    assert book.window_refills > 2  # the top window was refilled from the full side
    assert book.bids(3) == [(1000, 5), (999, 5), (998, 5)]
    asks = book.asks()
    assert asks[:2] == [(1001, 2), (1002, 2)] and asks[-1] == (12000, 3)
    assert len(asks) == book.level_count(Side.SELL) == 7000
    assert [price for price, _ in asks] == sorted(price for price, _ in asks)
