"""Unit tests of the matching engine: rejects, order types, priority, amend, cancel-all, events."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hftkit.core.types import Instrument, OrderStatus, OrderType, Side, TimeInForce
from hftkit.sim.engine.accounts import FeeSchedule
from hftkit.sim.engine.errors import CloseReason, RejectReason, SimulatorInputError, binance_error
from hftkit.sim.engine.matching import NO_ORDER_ID, MatchingEngine, SelfTradePrevention

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, MAKER = OrderType.LIMIT, OrderType.MARKET, OrderType.LIMIT_MAKER
PRICE = 5_000_000  # 50,000.00
SYMBOL = "BTCUSDT"
PERP = "BTC-PERPETUAL"
EngineFactory = Callable[..., MatchingEngine]


def limit(engine: MatchingEngine, account: str, side: Side, price: int, quantity: int, **kwargs):
    return engine.place(account, SYMBOL, side, LIMIT, quantity, price, **kwargs)


# rejects ---------------------------------------------------------------------------------


def test_unknown_symbol_is_rejected_with_its_reason(engine: MatchingEngine) -> None:
    result = engine.place("alice", "NOPE", BUY, LIMIT, 1, PRICE)
    assert not result.accepted
    assert result.reason is RejectReason.UNKNOWN_SYMBOL
    assert binance_error(result.reason) == (-1121, "Invalid symbol.")


def test_non_positive_limit_price_fails_the_price_filter(engine: MatchingEngine) -> None:
    for price in (0, -5):
        result = limit(engine, "alice", BUY, price, 1)
        assert result.reason is RejectReason.PRICE_OUT_OF_RANGE
    assert binance_error(RejectReason.PRICE_OUT_OF_RANGE) == (-1013, "Filter failure: PRICE_FILTER")


def test_quantity_outside_min_and_max_fails_lot_size(engine: MatchingEngine) -> None:
    assert limit(engine, "alice", BUY, PRICE, 0).reason is RejectReason.QUANTITY_OUT_OF_RANGE
    assert limit(engine, "alice", BUY, PRICE, 1_000_001).reason is RejectReason.QUANTITY_OUT_OF_RANGE
    assert limit(engine, "alice", BUY, PRICE, 1_000_000).accepted is False  # 1000 BTC: too little USDT
    assert binance_error(RejectReason.QUANTITY_OUT_OF_RANGE)[1] == "Filter failure: LOT_SIZE"


def test_notional_below_minimum_fails_the_notional_filter(engine: MatchingEngine) -> None:
    # 1 lot (0.001) at 4,999.99 = 4.99999 USDT < 5
    assert limit(engine, "alice", BUY, 499_999, 1).reason is RejectReason.MIN_NOTIONAL
    assert limit(engine, "alice", BUY, 500_000, 1).accepted
    assert binance_error(RejectReason.MIN_NOTIONAL)[1] == "Filter failure: NOTIONAL"


def test_buy_beyond_free_quote_is_rejected_and_locks_nothing(engine: MatchingEngine) -> None:
    balance = engine.accounts.get("alice").balance("USDT")
    before = (balance.free, balance.locked)
    result = limit(engine, "alice", BUY, PRICE, 21_000)  # 21 BTC * 50k > 1M USDT
    assert result.reason is RejectReason.INSUFFICIENT_BALANCE
    assert (balance.free, balance.locked) == before
    assert binance_error(result.reason) == (-2010, "Account has insufficient balance for requested action.")


def test_sell_beyond_free_base_is_rejected(engine: MatchingEngine) -> None:
    assert limit(engine, "alice", SELL, PRICE, 10_001).reason is RejectReason.INSUFFICIENT_BALANCE
    assert limit(engine, "alice", SELL, PRICE, 10_000).accepted


def test_cancel_of_unknown_closed_or_foreign_order_is_unknown_order(engine: MatchingEngine) -> None:
    placed = limit(engine, "alice", BUY, PRICE, 10)
    assert placed.order is not None
    order_id = placed.order.order_id
    assert engine.cancel("alice", SYMBOL, order_id=999).reason is RejectReason.UNKNOWN_ORDER
    assert engine.cancel("bob", SYMBOL, order_id=order_id).reason is RejectReason.UNKNOWN_ORDER
    assert engine.cancel("alice", PERP, order_id=order_id).reason is RejectReason.UNKNOWN_ORDER
    assert engine.cancel("alice", SYMBOL, order_id=order_id).status is OrderStatus.CANCELED
    again = engine.cancel("alice", SYMBOL, order_id=order_id)
    assert again.reason is RejectReason.UNKNOWN_ORDER
    assert binance_error(again.reason) == (-2011, "Unknown order sent.")
    assert binance_error(again.reason, query=True) == (-2013, "Order does not exist.")


def test_duplicate_client_order_id_is_rejected_only_while_the_first_is_open(engine: MatchingEngine) -> None:
    assert limit(engine, "alice", BUY, PRICE, 10, client_order_id="q1").accepted
    duplicate = limit(engine, "alice", BUY, PRICE - 1, 10, client_order_id="q1")
    assert duplicate.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    assert binance_error(duplicate.reason) == (-2010, "Duplicate order sent.")
    assert limit(engine, "bob", BUY, PRICE, 10, client_order_id="q1").accepted  # other account
    assert engine.cancel("alice", SYMBOL, client_order_id="q1").accepted
    assert limit(engine, "alice", BUY, PRICE, 10, client_order_id="q1").accepted


def test_limit_maker_that_would_take_is_rejected_without_an_order(engine: MatchingEngine) -> None:
    limit(engine, "bob", SELL, PRICE, 10)
    result = engine.place("alice", SYMBOL, BUY, MAKER, 10, PRICE)
    assert result.reason is RejectReason.WOULD_TAKE and result.order is None
    assert binance_error(result.reason) == (-2010, "Order would immediately match and take.")
    engine.set_background(SYMBOL, SELL, PRICE - 5, 3)
    assert engine.place("alice", SYMBOL, BUY, MAKER, 10, PRICE - 5).reason is RejectReason.WOULD_TAKE
    assert engine.place("alice", SYMBOL, BUY, MAKER, 10, PRICE - 6).status is OrderStatus.NEW


def test_post_only_reprice_rests_one_tick_away_from_the_opposite_best(engine: MatchingEngine) -> None:
    limit(engine, "bob", SELL, PRICE, 10)
    result = engine.place("alice", SYMBOL, BUY, MAKER, 10, PRICE + 50, reprice_post_only=True)
    assert result.accepted and result.repriced and result.filled == 0
    assert result.order is not None and result.order.price == PRICE - 1
    assert engine.best_bid(SYMBOL) == (PRICE - 1, 10)
    # the lock follows the repriced (lower) price exactly
    assert result.order.reserved == (PRICE - 1) * 10 * 1000


def test_post_only_with_ioc_is_an_invalid_time_in_force(engine: MatchingEngine) -> None:
    result = engine.place("alice", SYMBOL, BUY, MAKER, 10, PRICE, TimeInForce.IOC)
    assert result.reason is RejectReason.INVALID_TIME_IN_FORCE


# priority and order types ----------------------------------------------------------------


def test_earlier_order_at_the_same_price_fills_first(engine: MatchingEngine) -> None:
    first = limit(engine, "alice", SELL, PRICE, 10).order
    second = limit(engine, "bob", SELL, PRICE, 10).order
    result = limit(engine, "carol", BUY, PRICE, 15)
    makers = [(execution.order, execution.quantity) for execution in result.executions if execution.is_maker]
    assert makers == [(first, 10), (second, 5)]
    assert second is not None and second.status is OrderStatus.PARTIALLY_FILLED


def test_better_price_fills_before_an_earlier_worse_price(engine: MatchingEngine) -> None:
    worse = limit(engine, "alice", SELL, PRICE + 1, 10).order
    better = limit(engine, "bob", SELL, PRICE, 10).order
    result = limit(engine, "carol", BUY, PRICE + 1, 20)
    assert [execution.order for execution in result.executions if execution.is_maker] == [better, worse]
    assert [trade.price for trade in result.trades] == [PRICE, PRICE + 1]
    assert result.quote_filled == PRICE * 10 + (PRICE + 1) * 10


def test_ioc_remainder_expires_and_never_rests(engine: MatchingEngine) -> None:
    limit(engine, "bob", SELL, PRICE, 4)
    result = limit(engine, "alice", BUY, PRICE, 10, time_in_force=TimeInForce.IOC)
    assert result.status is OrderStatus.EXPIRED and result.filled == 4
    assert result.order is not None and result.order.close_reason is CloseReason.EXPIRED
    assert engine.best_bid(SYMBOL) is None
    assert engine.accounts.get("alice").balance("USDT").locked == 0


def test_fok_without_enough_liquidity_expires_without_any_fill(engine: MatchingEngine) -> None:
    limit(engine, "bob", SELL, PRICE, 4)
    engine.set_background(SYMBOL, SELL, PRICE + 1, 5)
    update_id = engine.update_id(SYMBOL)
    result = limit(engine, "alice", BUY, PRICE + 1, 10, time_in_force=TimeInForce.FOK)
    assert result.status is OrderStatus.EXPIRED and result.filled == 0 and not result.executions
    assert result.book_update is None and engine.update_id(SYMBOL) == update_id
    assert engine.accounts.get("alice").balance("USDT").locked == 0


def test_fok_fills_fully_across_levels_when_liquidity_suffices(engine: MatchingEngine) -> None:
    limit(engine, "bob", SELL, PRICE, 4)
    engine.set_background(SYMBOL, SELL, PRICE + 1, 6)
    result = limit(engine, "alice", BUY, PRICE + 1, 10, time_in_force=TimeInForce.FOK)
    assert result.status is OrderStatus.FILLED and result.filled == 10


def test_market_buy_sweeps_levels_locks_the_exact_cost_and_expires_the_rest(engine: MatchingEngine) -> None:
    engine.apply_depth(SYMBOL, [], [(PRICE, 3), (PRICE + 10, 4)])
    usdt = engine.accounts.get("alice").balance("USDT")
    before = usdt.free
    result = engine.place("alice", SYMBOL, BUY, MARKET, 10)
    assert result.status is OrderStatus.EXPIRED and result.filled == 7
    cost_units = (PRICE * 3 + (PRICE + 10) * 4) * 1000
    assert before - usdt.free == cost_units and usdt.locked == 0
    assert engine.best_ask(SYMBOL) is None


def test_market_order_on_an_empty_book_expires_unfilled(engine: MatchingEngine) -> None:
    result = engine.place("alice", SYMBOL, SELL, MARKET, 10)
    assert result.accepted and result.status is OrderStatus.EXPIRED and result.filled == 0
    assert engine.accounts.get("alice").balance("BTC").locked == 0


# amend -----------------------------------------------------------------------------------


def _makers(result) -> list:
    return [execution.order for execution in result.executions if execution.is_maker]


def test_amend_size_down_at_the_same_price_keeps_priority(engine: MatchingEngine) -> None:
    first = limit(engine, "alice", SELL, PRICE, 10).order
    second = limit(engine, "bob", SELL, PRICE, 10).order
    assert first is not None
    amended = engine.amend("alice", SYMBOL, order_id=first.order_id, price=PRICE, quantity=6)
    assert amended.accepted and first.quantity == 6
    assert engine.best_ask(SYMBOL) == (PRICE, 16)
    assert amended.book_update is not None and amended.book_update.asks == [(PRICE, 16)]
    assert _makers(limit(engine, "carol", BUY, PRICE, 6)) == [first]
    assert second is not None and second.filled == 0


def test_amend_size_up_loses_priority(engine: MatchingEngine) -> None:
    first = limit(engine, "alice", SELL, PRICE, 10).order
    second = limit(engine, "bob", SELL, PRICE, 10).order
    assert first is not None
    assert engine.amend("alice", SYMBOL, order_id=first.order_id, price=PRICE, quantity=12).accepted
    assert _makers(limit(engine, "carol", BUY, PRICE, 10)) == [second]


def test_amend_price_change_loses_priority(engine: MatchingEngine) -> None:
    first = limit(engine, "alice", SELL, PRICE, 10).order
    second = limit(engine, "bob", SELL, PRICE, 10).order
    assert first is not None
    engine.amend("alice", SYMBOL, order_id=first.order_id, price=PRICE + 1, quantity=10)
    engine.amend("alice", SYMBOL, order_id=first.order_id, price=PRICE, quantity=10)
    assert _makers(limit(engine, "carol", BUY, PRICE, 10)) == [second]


def test_amend_to_at_most_the_filled_quantity_closes_the_order(engine: MatchingEngine) -> None:
    order = limit(engine, "alice", SELL, PRICE, 10).order
    assert order is not None
    limit(engine, "bob", BUY, PRICE, 4)
    result = engine.amend("alice", SYMBOL, order_id=order.order_id, price=PRICE, quantity=3)
    assert result.status is OrderStatus.CANCELED and order.close_reason is CloseReason.AMENDED_TO_FILLED
    assert order.quantity == order.filled == 4
    assert engine.best_ask(SYMBOL) is None
    assert engine.accounts.get("alice").balance("BTC").locked == 0


def test_amend_through_the_opposite_best_trades_as_taker(engine: MatchingEngine) -> None:
    limit(engine, "bob", SELL, PRICE, 5)
    order = limit(engine, "alice", BUY, PRICE - 10, 8).order
    assert order is not None
    result = engine.amend("alice", SYMBOL, order_id=order.order_id, price=PRICE, quantity=8)
    assert result.filled == 5 and result.status is OrderStatus.PARTIALLY_FILLED
    assert engine.best_bid(SYMBOL) == (PRICE, 3)
    assert not result.executions[0].is_maker


def test_amend_that_needs_more_quote_than_free_is_refused_and_changes_nothing(engine: MatchingEngine) -> None:
    order = limit(engine, "alice", BUY, PRICE, 10_000).order  # 500k of 1M USDT
    assert order is not None
    result = engine.amend("alice", SYMBOL, order_id=order.order_id, price=PRICE, quantity=30_000)
    assert result.reason is RejectReason.INSUFFICIENT_BALANCE
    assert order.quantity == 10_000 and engine.best_bid(SYMBOL) == (PRICE, 10_000)


def test_amend_of_a_post_only_order_into_the_opposite_side_is_refused(engine: MatchingEngine) -> None:
    limit(engine, "bob", SELL, PRICE, 5)
    order = engine.place("alice", SYMBOL, BUY, MAKER, 5, PRICE - 2).order
    assert order is not None
    result = engine.amend("alice", SYMBOL, order_id=order.order_id, price=PRICE, quantity=5)
    assert result.reason is RejectReason.WOULD_TAKE and order.price == PRICE - 2


# self-trade, cancel-all ------------------------------------------------------------------


def test_self_trade_expires_the_resting_order_by_default(engine: MatchingEngine) -> None:
    own = limit(engine, "alice", SELL, PRICE, 5).order
    other = limit(engine, "bob", SELL, PRICE, 5).order
    result = limit(engine, "alice", BUY, PRICE, 5)
    assert own is not None and own.status is OrderStatus.EXPIRED
    assert own.close_reason is CloseReason.SELF_TRADE_PREVENTION
    assert [update.order for update in result.updates] == [own]
    assert _makers(result) == [other] and result.status is OrderStatus.FILLED
    assert engine.accounts.get("alice").balance("BTC").locked == 0


def test_self_trade_expire_taker_stops_the_incoming_order(engine_factory: EngineFactory) -> None:
    engine = engine_factory(self_trade_prevention=SelfTradePrevention.EXPIRE_TAKER)
    engine.set_background(SYMBOL, SELL, PRICE, 2)
    own = limit(engine, "alice", SELL, PRICE, 5).order
    result = limit(engine, "alice", BUY, PRICE, 10)
    assert result.filled == 2 and result.status is OrderStatus.EXPIRED
    assert result.order is not None and result.order.close_reason is CloseReason.SELF_TRADE_PREVENTION
    assert own is not None and own.status is OrderStatus.NEW


def test_cancel_all_cancels_one_accounts_orders_optionally_per_symbol(engine: MatchingEngine) -> None:
    limit(engine, "alice", BUY, PRICE, 10)
    limit(engine, "alice", SELL, PRICE + 5, 10)
    engine.place("alice", PERP, BUY, LIMIT, 10, 50_000)
    kept = limit(engine, "bob", BUY, PRICE, 10).order
    result = engine.cancel_all("alice", SYMBOL)
    assert len(result.orders) == 2
    assert all(order.close_reason is CloseReason.BULK_CANCELED for order in result.orders)
    assert [update.symbol for update in result.book_updates] == [SYMBOL]
    assert len(engine.open_orders("alice")) == 1
    assert len(engine.cancel_all("alice").orders) == 1
    assert engine.open_orders("bob") == [kept]
    assert engine.cancel_all("nobody").orders == []
    assert engine.accounts.get("alice").balance("USDT").locked == 0


# events ----------------------------------------------------------------------------------


def test_book_updates_carry_consecutive_ids_and_the_changed_levels(engine: MatchingEngine) -> None:
    first = limit(engine, "alice", BUY, PRICE, 10).book_update
    second = limit(engine, "bob", SELL, PRICE + 1, 7).book_update
    third = limit(engine, "carol", BUY, PRICE + 1, 3).book_update
    assert first is not None and second is not None and third is not None
    assert [first.update_id, second.update_id, third.update_id] == [1, 2, 3]
    assert (first.bids, first.asks) == ([(PRICE, 10)], [])
    assert (third.bids, third.asks) == ([], [(PRICE + 1, 4)])
    snapshot = engine.depth(SYMBOL)
    assert snapshot.update_id == 3 and snapshot.bids == [(PRICE, 10)] and snapshot.asks == [(PRICE + 1, 4)]
    assert limit(engine, "alice", BUY, -1, 1).book_update is None
    assert engine.update_id(SYMBOL) == 3


def test_trade_ids_increase_by_one_per_trade_and_per_symbol(engine: MatchingEngine) -> None:
    limit(engine, "bob", SELL, PRICE, 5)
    limit(engine, "bob", SELL, PRICE + 1, 5)
    result = limit(engine, "alice", BUY, PRICE + 1, 10)
    assert [trade.trade_id for trade in result.trades] == [1, 2]
    engine.place("bob", PERP, SELL, LIMIT, 5, 50_000)
    perp = engine.place("alice", PERP, BUY, LIMIT, 5, 50_000)
    assert [trade.trade_id for trade in perp.trades] == [1]
    assert [trade.trade_id for trade in limit(engine, "carol", SELL, PRICE, 3).trades] == []
    assert [trade.trade_id for trade in limit(engine, "alice", BUY, PRICE, 3).trades] == [3]


def test_executions_carry_fees_cumulative_state_and_maker_flags(engine_factory: EngineFactory) -> None:
    engine = engine_factory(fees=FeeSchedule.from_basis_points("1", "5"))
    maker = limit(engine, "bob", SELL, PRICE, 10).order
    result = limit(engine, "alice", BUY, PRICE, 4)
    taker_execution, maker_execution = result.executions
    assert taker_execution.order is result.order and not taker_execution.is_maker
    assert maker_execution.order is maker and maker_execution.is_maker
    # the buyer pays 5 bp in BTC: 4 lots = 400,000 units -> 200; the seller 1 bp of 200 USDT in USDT
    assert (taker_execution.fee, taker_execution.fee_asset) == (200, "BTC")
    assert (maker_execution.fee, maker_execution.fee_asset) == (2_000_000, "USDT")
    assert (maker_execution.filled, maker_execution.status) == (4, OrderStatus.PARTIALLY_FILLED)
    assert maker_execution.quote_filled == PRICE * 4
    trade = result.trades[0]
    assert trade.aggressor is BUY and not trade.buyer_is_maker
    assert (trade.buy_order_id, trade.sell_order_id) == (result.order.order_id, maker.order_id)  # type: ignore[union-attr]


def test_get_order_finds_open_and_closed_orders_by_either_id(engine: MatchingEngine) -> None:
    order = limit(engine, "alice", BUY, PRICE, 10, client_order_id="mine").order
    assert order is not None
    assert engine.get_order("alice", order_id=order.order_id) is order
    assert engine.get_order("alice", client_order_id="mine") is order
    assert engine.get_order("bob", order_id=order.order_id) is None
    engine.cancel("alice", SYMBOL, order_id=order.order_id)
    assert engine.get_order("alice", client_order_id="mine") is order
    assert engine.get_order("alice", order_id=order.order_id, client_order_id="other") is None


def test_closed_order_history_is_bounded(engine: MatchingEngine) -> None:
    engine.order_history_limit = 3
    ids = []
    for _ in range(5):
        order = limit(engine, "alice", BUY, PRICE, 1_000).order
        assert order is not None
        ids.append(order.order_id)
        engine.cancel("alice", SYMBOL, order_id=order.order_id)
    assert engine.get_order("alice", order_id=ids[0]) is None
    assert engine.get_order("alice", order_id=ids[-1]) is not None


def test_engine_refuses_a_second_listing_and_bad_market_data(
    engine: MatchingEngine, listed_spot_instrument: Instrument
) -> None:
    with pytest.raises(SimulatorInputError):
        engine.add_instrument(listed_spot_instrument)
    with pytest.raises(SimulatorInputError):
        engine.apply_depth("NOPE", [(1, 1)], [])
    with pytest.raises(SimulatorInputError):
        engine.apply_depth(SYMBOL, [(PRICE, -1)], [])
    with pytest.raises(SimulatorInputError):
        engine.apply_market_trade(SYMBOL, PRICE, 0, BUY)
    assert NO_ORDER_ID == -1
    assert engine.audit() == []


def test_generated_client_ids_never_collide_with_chosen_ones(engine: MatchingEngine) -> None:
    chosen = limit(engine, "alice", BUY, PRICE, 10, client_order_id="sim-2").order
    generated = limit(engine, "alice", BUY, PRICE, 10).order
    assert chosen is not None and generated is not None
    assert generated.client_order_id != "sim-2"
    assert engine.get_order("alice", client_order_id="sim-2") is chosen
    assert engine.get_order("alice", client_order_id=generated.client_order_id) is generated


def test_post_only_reprice_on_amend_and_refusal_when_no_tick_is_left(engine: MatchingEngine) -> None:
    limit(engine, "bob", SELL, PRICE, 10)
    order = engine.place("alice", SYMBOL, BUY, MAKER, 10, PRICE - 5, reprice_post_only=True).order
    assert order is not None
    result = engine.amend("alice", SYMBOL, order_id=order.order_id, price=PRICE + 5, quantity=10)
    assert result.repriced and order.price == PRICE - 1 and order.filled == 0
    engine.set_background(SYMBOL, SELL, 1, 100)  # an ask at the lowest tick: no bid can sit below it
    refused = engine.place("carol", SYMBOL, BUY, MAKER, 10, 500_000, reprice_post_only=True)
    assert refused.reason is RejectReason.WOULD_TAKE


def test_market_order_notional_is_checked_at_the_opposite_best(engine: MatchingEngine) -> None:
    engine.set_background(SYMBOL, BUY, 100, 1_000)  # bid at 1.00
    assert engine.place("alice", SYMBOL, SELL, MARKET, 1).reason is RejectReason.MIN_NOTIONAL
    assert engine.place("alice", SYMBOL, SELL, MARKET, 4_999).reason is RejectReason.MIN_NOTIONAL
    result = engine.place("alice", SYMBOL, SELL, MARKET, 5_000)  # 5 BTC at 1.00 = 5 USDT
    assert result.filled == 1_000 and result.status is OrderStatus.EXPIRED


def test_market_buy_by_quote_amount_takes_the_most_lots_within_budget(engine: MatchingEngine) -> None:
    engine.apply_depth(SYMBOL, [], [(PRICE, 3), (PRICE + 100, 10)])
    budget = PRICE * 3 + (PRICE + 100) * 2 + 7  # three at the best, two (and a bit) at the next level
    result = engine.place_market_by_quote("alice", SYMBOL, BUY, budget)
    assert result.filled == 5 and result.quote_filled <= budget
    assert result.quote_filled == PRICE * 3 + (PRICE + 100) * 2
    assert engine.place_market_by_quote("alice", SYMBOL, BUY, 10).reason is RejectReason.MIN_NOTIONAL


def test_market_sell_by_quote_amount_skips_own_orders_it_would_expire(engine: MatchingEngine) -> None:
    own = limit(engine, "alice", BUY, PRICE, 4).order
    limit(engine, "bob", BUY, PRICE, 4)
    result = engine.place_market_by_quote("alice", SYMBOL, SELL, PRICE * 3)
    assert result.filled == 3 and own is not None and own.status is OrderStatus.EXPIRED
