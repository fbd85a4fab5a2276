"""The background-liquidity and queue-position model (see the hftkit.sim.engine.matching docstring)."""

from __future__ import annotations

from hftkit.core.types import OrderStatus, OrderType, Side
from hftkit.sim.engine.accounts import MARKET_ACCOUNT
from hftkit.sim.engine.matching import NO_ORDER_ID, MatchingEngine

BUY, SELL = Side.BUY, Side.SELL
SYMBOL = "BTCUSDT"
PRICE = 5_000_000


def rest(engine: MatchingEngine, account: str, side: Side, quantity: int, price: int = PRICE):
    order = engine.place(account, SYMBOL, side, OrderType.LIMIT, quantity, price).order
    assert order is not None and order.level is not None
    return order


def test_a_new_order_queues_behind_all_background_at_its_price(engine: MatchingEngine) -> None:
    engine.set_background(SYMBOL, BUY, PRICE, 30)
    order = rest(engine, "alice", BUY, 10)
    assert engine.volume_ahead(order) == 30
    assert engine.best_bid(SYMBOL) == (PRICE, 40)
    assert engine.background_size(SYMBOL, BUY, PRICE) == 30


def test_background_growth_joins_behind_our_order(engine: MatchingEngine) -> None:
    engine.set_background(SYMBOL, BUY, PRICE, 30)
    order = rest(engine, "alice", BUY, 10)
    update = engine.set_background(SYMBOL, BUY, PRICE, 50).book_update
    assert engine.volume_ahead(order) == 30
    assert update is not None and update.bids == [(PRICE, 60)]
    later = rest(engine, "bob", BUY, 5)
    assert engine.volume_ahead(later) == 50
    assert engine.orders_ahead(later) == 10


def test_background_shrink_comes_from_the_back_and_clamps_volume_ahead(engine: MatchingEngine) -> None:
    engine.set_background(SYMBOL, BUY, PRICE, 30)
    first = rest(engine, "alice", BUY, 10)
    engine.set_background(SYMBOL, BUY, PRICE, 50)  # 20 behind first
    second = rest(engine, "bob", BUY, 10)
    engine.set_background(SYMBOL, BUY, PRICE, 60)  # 10 behind second
    assert (engine.volume_ahead(first), engine.volume_ahead(second)) == (30, 50)
    engine.set_background(SYMBOL, BUY, PRICE, 45)  # tail 10 gone, then 5 of the 20 between
    assert (engine.volume_ahead(first), engine.volume_ahead(second)) == (30, 45)
    engine.set_background(SYMBOL, BUY, PRICE, 12)
    assert (engine.volume_ahead(first), engine.volume_ahead(second)) == (12, 12)
    engine.set_background(SYMBOL, BUY, PRICE, 0)
    assert (engine.volume_ahead(first), engine.volume_ahead(second)) == (0, 0)
    assert engine.best_bid(SYMBOL) == (PRICE, 20)
    assert engine.audit() == []


def test_cancelling_an_order_keeps_the_background_between_in_place(engine: MatchingEngine) -> None:
    engine.set_background(SYMBOL, SELL, PRICE, 10)
    first = rest(engine, "alice", SELL, 5)
    engine.set_background(SYMBOL, SELL, PRICE, 25)
    second = rest(engine, "bob", SELL, 5)
    engine.cancel("alice", SYMBOL, order_id=first.order_id)
    assert engine.volume_ahead(second) == 25
    assert engine.audit() == []


def test_replayed_trade_consumes_volume_ahead_before_filling_us(engine: MatchingEngine) -> None:
    engine.set_background(SYMBOL, BUY, PRICE, 30)
    order = rest(engine, "alice", BUY, 10)
    first = engine.apply_market_trade(SYMBOL, PRICE, 20, SELL)
    assert first.executions == [] and engine.volume_ahead(order) == 10
    assert [(trade.quantity, trade.buy_order_id) for trade in first.trades] == [(20, NO_ORDER_ID)]
    second = engine.apply_market_trade(SYMBOL, PRICE, 14, SELL)
    assert [(execution.quantity, execution.is_maker) for execution in second.executions] == [(4, True)]
    assert order.filled == 4 and engine.volume_ahead(order) == 0
    # the trade prints add up to the real trade: our 4 plus the 10 of background
    assert sorted(trade.quantity for trade in second.trades) == [4, 10]
    assert engine.best_bid(SYMBOL) == (PRICE, 6)
    market = engine.accounts.get(MARKET_ACCOUNT)
    assert market.balance("BTC").free == -4 * 100_000  # the market sold us 0.004 BTC


def test_replayed_trade_at_our_price_is_shared_front_to_back(engine: MatchingEngine) -> None:
    engine.set_background(SYMBOL, SELL, PRICE, 5)
    first = rest(engine, "alice", SELL, 10)
    engine.set_background(SYMBOL, SELL, PRICE, 8)
    second = rest(engine, "bob", SELL, 10)
    result = engine.apply_market_trade(SYMBOL, PRICE, 20, BUY)
    # 5 background, first's 10, 3 background, then 2 of second's
    assert (first.filled, second.filled) == (10, 2)
    assert first.status is OrderStatus.FILLED
    assert sum(execution.quantity for execution in result.executions) == 12
    assert engine.best_ask(SYMBOL) == (PRICE, 8)


def test_replayed_trade_through_our_price_fills_us_fully(engine: MatchingEngine) -> None:
    engine.set_background(SYMBOL, SELL, PRICE, 50)
    ours = rest(engine, "alice", SELL, 10)
    engine.set_background(SYMBOL, SELL, PRICE + 5, 40)
    result = engine.apply_market_trade(SYMBOL, PRICE + 5, 1, BUY)
    assert ours.status is OrderStatus.FILLED
    assert [(execution.price, execution.quantity) for execution in result.executions] == [(PRICE, 10)]
    # the swept level is gone (background included) and the trade at PRICE+5 took 1 of 40
    assert engine.best_ask(SYMBOL) == (PRICE + 5, 39)
    assert engine.audit() == []


def test_replayed_trade_does_not_touch_the_other_side(engine: MatchingEngine) -> None:
    bid = rest(engine, "alice", BUY, 10, PRICE - 10)
    engine.apply_market_trade(SYMBOL, PRICE, 5, BUY)
    assert bid.filled == 0 and engine.best_bid(SYMBOL) == (PRICE - 10, 10)


def test_our_taker_takes_background_ahead_of_a_resting_order_first(engine: MatchingEngine) -> None:
    engine.set_background(SYMBOL, SELL, PRICE, 6)
    maker = rest(engine, "alice", SELL, 10)
    result = engine.place("bob", SYMBOL, BUY, OrderType.LIMIT, 8, PRICE)
    assert [(execution.order.account, execution.quantity) for execution in result.executions] == [
        ("bob", 6),
        ("bob", 2),
        ("alice", 2),
    ]
    assert maker.filled == 2 and engine.volume_ahead(maker) == 0
    assert engine.background_size(SYMBOL, SELL, PRICE) == 0


def test_depth_diff_that_crosses_our_bid_fills_it_as_maker_at_its_price(engine: MatchingEngine) -> None:
    engine.set_background(SYMBOL, BUY, PRICE, 20)
    ours = rest(engine, "alice", BUY, 10)
    result = engine.apply_depth(SYMBOL, [], [(PRICE - 3, 4)])
    # the stale background bid is dropped; the new ask trades 4 with us at our price and is used up
    assert [(execution.price, execution.quantity, execution.is_maker) for execution in result.executions] == [
        (PRICE, 4, True)
    ]
    assert ours.filled == 4
    assert engine.best_bid(SYMBOL) == (PRICE, 6) and engine.best_ask(SYMBOL) is None
    assert result.book_update is not None
    assert result.book_update.bids == [(PRICE, 6)] and result.book_update.asks == [(PRICE - 3, 0)]
    assert engine.audit() == []


def test_depth_diff_that_crosses_only_background_drops_the_stale_side(engine: MatchingEngine) -> None:
    engine.apply_depth(SYMBOL, [(PRICE, 5), (PRICE - 1, 5)], [(PRICE + 1, 5)])
    engine.apply_depth(SYMBOL, [], [(PRICE, 7)])
    assert engine.best_bid(SYMBOL) == (PRICE - 1, 5)
    assert engine.best_ask(SYMBOL) == (PRICE, 7)


def test_replace_background_drops_levels_absent_from_the_snapshot(engine: MatchingEngine) -> None:
    engine.apply_depth(SYMBOL, [(PRICE, 5), (PRICE - 1, 5)], [(PRICE + 1, 5)])
    ours = rest(engine, "alice", BUY, 3, PRICE - 1)
    result = engine.replace_background(SYMBOL, [(PRICE - 2, 9)], [(PRICE + 2, 4)])
    snapshot = engine.depth(SYMBOL)
    assert snapshot.bids == [(PRICE - 1, 3), (PRICE - 2, 9)]
    assert snapshot.asks == [(PRICE + 2, 4)]
    assert engine.volume_ahead(ours) == 0
    assert result.book_update is not None and snapshot.update_id == result.book_update.update_id


def test_each_depth_diff_is_one_batch_with_one_update_id(engine: MatchingEngine) -> None:
    first = engine.apply_depth(SYMBOL, [(PRICE, 1), (PRICE - 1, 2)], [(PRICE + 1, 3)]).book_update
    unchanged = engine.apply_depth(SYMBOL, [(PRICE, 1)], []).book_update
    second = engine.apply_depth(SYMBOL, [(PRICE, 0)], []).book_update
    assert first is not None and second is not None and unchanged is None
    assert (first.update_id, second.update_id) == (1, 2)
    assert first.bids == [(PRICE, 1), (PRICE - 1, 2)] and first.asks == [(PRICE + 1, 3)]
    assert second.bids == [(PRICE, 0)]
