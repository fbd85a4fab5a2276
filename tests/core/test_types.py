"""Instrument conversions, order/event values and clocks."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from hftkit.core import (
    BookDelta,
    ContractKind,
    Fill,
    Instrument,
    Order,
    OrderStatus,
    OrderType,
    Rounding,
    Side,
    SimulatedClock,
    Trade,
)
from hftkit.core.clock import REAL_CLOCK, Clock


def btcusdt() -> Instrument:
    return Instrument("binance", "BTCUSDT", "BTC", "USDT", "0.01000000", "0.00001000", "5.00000000")


def test_instrument_converts_wire_strings_both_ways():
    instrument = btcusdt()
    assert instrument.price_to_ticks("61837.63000000") == 6183763
    assert instrument.ticks_to_price(6183763) == "61837.63"
    assert instrument.quantity_to_lots("3.78826000") == 378826
    assert instrument.lots_to_quantity(378826) == "3.78826"
    assert instrument.price_to_ticks("61837.639", Rounding.DOWN) == 6183763


def test_notional_and_minimums_are_exact():
    instrument = btcusdt()
    assert instrument.notional(6183763, 100) == Decimal("61.8376300")
    assert instrument.meets_minimums(6183763, 100)
    assert not instrument.meets_minimums(6183763, 8)  # 4.95 USDT < 5


def test_instrument_round_trips_through_its_dictionary_form():
    instrument = Instrument(
        "binance",
        "BTCUSDT",
        "BTC",
        "USDT",
        "0.10",
        "0.001",
        "100",
        ContractKind.PERPETUAL,
        min_quantity="0.001",
        max_quantity="1000",
    )
    assert Instrument.from_dict(instrument.to_dict()) == instrument
    assert instrument.max_quantity == 1_000_000


def test_side_helpers():
    assert Side.BUY.opposite is Side.SELL
    assert Side.SELL.sign == -1


def test_status_classification():
    assert OrderStatus.FILLED.is_terminal
    assert not OrderStatus.UNKNOWN.is_terminal
    assert OrderStatus.PARTIALLY_FILLED.is_open
    assert not OrderStatus.PENDING_NEW.is_open


def test_events_are_frozen_and_encode_to_json():
    trade = Trade(venue="binance", symbol="BTCUSDT", trade_id=1, price=10, size=2, aggressor=Side.BUY)
    with pytest.raises(AttributeError):
        trade.price = 11  # type: ignore[misc]
    decoded = msgspec.json.decode(msgspec.json.encode(trade), type=Trade)
    assert decoded == trade
    delta = BookDelta(venue="binance", symbol="BTCUSDT", bids=[(1, 2)], asks=[])
    assert msgspec.json.decode(msgspec.json.encode(delta), type=BookDelta) == delta
    fill = Fill(
        venue="binance",
        symbol="BTCUSDT",
        client_order_id="a",
        venue_order_id=None,
        trade_id="7",
        side=Side.SELL,
        price=1,
        quantity=1,
    )
    assert hash(fill) == hash(msgspec.structs.replace(fill))


def test_order_remaining_tracks_fills():
    order = Order(
        client_order_id="c1",
        venue="binance",
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        price=100,
        quantity=10,
    )
    order.filled = 4
    assert order.remaining == 6


def test_simulated_clock_moves_only_forward():
    clock = SimulatedClock(start_ns=5)
    assert isinstance(clock, Clock)
    clock.advance(10)
    assert clock.monotonic_ns() == 15
    assert clock.time_ns() - clock.monotonic_ns() > 0
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(3)


def test_real_clock_is_monotonic():
    first = REAL_CLOCK.monotonic_ns()
    assert REAL_CLOCK.monotonic_ns() >= first
    assert isinstance(REAL_CLOCK, Clock)
