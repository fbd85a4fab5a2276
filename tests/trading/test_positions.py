from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.core import Fill, Instrument, Side
from hftkit.trading.positions import InvalidFillError, Position, PositionBook, ticks_lots_to_money

BUY, SELL = Side.BUY, Side.SELL


def make_fill(side: Side, price: int, lots: int, trade_id: str = "t", **extra: object) -> Fill:
    values: dict[str, object] = {
        "venue": "binance",
        "symbol": "BTCUSDT",
        "client_order_id": "c",
        "venue_order_id": None,
        "trade_id": trade_id,
        "side": side,
        "price": price,
        "quantity": lots,
    }
    values.update(extra)
    return Fill(**values)  # type: ignore[arg-type]


def test_adding_to_a_long_keeps_an_exact_integer_cost_and_average() -> None:
    position = Position("binance", "BTCUSDT")
    position.apply(BUY, 100, 3)
    position.apply(BUY, 101, 4)
    assert position.quantity == 7
    assert position.open_cost == 100 * 3 + 101 * 4
    assert position.average_price == Fraction(704, 7)
    assert position.realized == 0


def test_partial_reduction_realizes_against_the_average_and_keeps_it() -> None:
    position = Position("binance", "BTCUSDT")
    position.apply(BUY, 100, 3)
    position.apply(BUY, 101, 4)
    position.apply(SELL, 105, 2)
    average = Fraction(704, 7)
    assert position.quantity == 5
    assert position.realized == 2 * (105 - average)
    assert position.average_price == average  # average cost: a reduction never moves it


def test_flip_realizes_the_closed_part_and_opens_the_rest_at_the_fill_price() -> None:
    position = Position("binance", "BTCUSDT")
    position.apply(BUY, 100, 2)
    position.apply(SELL, 90, 5)
    assert position.quantity == -3
    assert position.realized == 2 * (90 - 100)
    assert position.average_price == 90
    assert position.open_cost == -270
    position.apply(BUY, 80, 3)
    assert position.is_flat
    assert position.realized == -20 + 3 * (90 - 80)
    assert position.average_price is None


def test_unrealized_is_signed_by_direction() -> None:
    short = Position("thalex", "BTC-PERPETUAL")
    short.apply(SELL, 200, 4)
    assert short.unrealized(190) == 4 * 10
    long = Position("thalex", "BTC-PERPETUAL")
    long.apply(BUY, 200, 4)
    assert long.unrealized(190) == -40


def test_fees_accumulate_per_asset() -> None:
    book = PositionBook()
    book.apply_fill(make_fill(BUY, 100, 1, fee=0.5, fee_asset="USDT"))
    book.apply_fill(make_fill(SELL, 101, 1, trade_id="u", fee=0.25, fee_asset="USDT"))
    book.apply_fill(make_fill(BUY, 100, 1, trade_id="v", fee=0.001, fee_asset="BNB"))
    assert book.fees() == {"USDT": 0.75, "BNB": 0.001}


@pytest.mark.parametrize(("price", "lots"), [(100, 0), (100, -1), (-1, 1)])
def test_invalid_fill_is_refused_with_a_classified_error(price: int, lots: int) -> None:
    position = Position("binance", "BTCUSDT")
    with pytest.raises(InvalidFillError):
        position.apply(BUY, price, lots)
    assert position.fill_count == 0 and position.quantity == 0


def test_overwrite_records_the_adjustment_and_takes_the_venue_entry_price() -> None:
    position = Position("binance", "BTCUSDT")
    position.apply(BUY, 100, 2)
    assert position.overwrite(5, Fraction(203, 2)) == 3
    assert position.quantity == 5
    assert position.average_price == Fraction(203, 2)
    assert position.adjusted_lots == 3
    position.overwrite(0)
    assert position.is_flat and position.open_cost == 0


def test_aggregate_converts_each_venue_lots_to_base_units() -> None:
    spot = Instrument("binance", "BTCUSDT", "BTC", "USDT", "0.01", "0.00001")
    perpetual = Instrument("thalex", "BTC-PERPETUAL", "BTC", "USD", "1", "0.001")
    book = PositionBook()
    book.register(spot)
    book.register(perpetual)
    book.apply_fill(make_fill(BUY, 5_000_000, 20_000))  # 0.2 BTC at 50000.00
    book.apply_fill(
        make_fill(SELL, 50_010, 150, venue="thalex", symbol="BTC-PERPETUAL", trade_id="x")
    )  # 0.15 BTC short
    book.apply_fill(make_fill(SELL, 5_010_000, 10_000, trade_id="y"))  # sell 0.1 at 50100.00
    groups = book.aggregate()
    assert groups["BTC"].quantity == Decimal("-0.05")  # 0.2 - 0.15 - 0.1
    assert groups["BTC"].realized == Decimal("10.0")  # 0.1 * (50100 - 50000)
    assert len(groups["BTC"].legs) == 2


def test_aggregate_refuses_to_guess_an_unregistered_lot_size() -> None:
    book = PositionBook()
    book.apply_fill(make_fill(BUY, 100, 1))
    with pytest.raises(KeyError, match="binance:BTCUSDT"):
        book.aggregate()


def test_ticks_lots_to_money_is_exact() -> None:
    instrument = Instrument("binance", "BTCUSDT", "BTC", "USDT", "0.01", "0.00001")
    assert ticks_lots_to_money(Fraction(1, 3) * 3, instrument) == Decimal("0.0000001")


fills_strategy = st.lists(
    st.tuples(st.sampled_from([BUY, SELL]), st.integers(1, 1_000), st.integers(1, 50)),
    max_size=60,
)


class ReferenceAverageCost:
    """The obvious average-cost bookkeeping in Fractions, to compare the integer version with."""

    def __init__(self) -> None:
        self.quantity = 0
        self.cost = Fraction(0)
        self.realized = Fraction(0)

    def apply(self, side: Side, price: int, lots: int) -> None:
        sign = side.sign
        if self.quantity == 0 or (self.quantity > 0) == (sign > 0):
            self.cost += sign * price * lots
            self.quantity += sign * lots
            return
        average = self.cost / self.quantity
        direction = 1 if self.quantity > 0 else -1
        closing = min(lots, abs(self.quantity))
        self.realized += closing * (price - average) * direction
        self.cost -= average * closing * direction
        self.quantity -= closing * direction
        if lots > closing:
            self.cost = Fraction(sign * price * (lots - closing))
            self.quantity = sign * (lots - closing)


@settings(max_examples=300, deadline=None)
@given(fills=fills_strategy, mark=st.integers(1, 1_000))
def test_position_is_the_sum_of_fills_and_pnl_is_exact(fills: list[tuple[Side, int, int]], mark: int) -> None:
    position = Position("binance", "BTCUSDT")
    reference = ReferenceAverageCost()
    for side, price, lots in fills:
        position.apply(side, price, lots)
        reference.apply(side, price, lots)
    assert position.quantity == sum(side.sign * lots for side, _, lots in fills)
    assert position.bought_lots - position.sold_lots == position.quantity
    assert position.realized == reference.realized
    assert position.open_cost == reference.cost
    cash = -sum(side.sign * price * lots for side, price, lots in fills)
    assert position.cash == cash
    assert position.total(mark) == cash + position.quantity * mark
    if position.quantity:
        prices = [price for _, price, _ in fills]
        assert min(prices) <= position.average_price <= max(prices)  # type: ignore[operator]
