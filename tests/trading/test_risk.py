"""Risk gate and kill switch: limits as laws over random order/fill streams, each trip source."""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from dataclasses import dataclass, replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.core import Instrument, Order, OrderType, Side, SimulatedClock
from hftkit.trading.risk import (
    ACCEPTED,
    BookHealthPolicy,
    InstrumentLimits,
    KillSwitchAction,
    KillSwitchShell,
    RejectReason,
    RiskConfigError,
    RiskExposure,
    RiskGate,
    RiskInputError,
    RiskLimits,
    TripSource,
)

BTC = Instrument("binance", "BTCUSDT", "BTC", "USDT", "0.01", "0.00001")
ETH = Instrument("binance", "ETHUSDT", "ETH", "USDT", "0.01", "0.0001")
FINE = Instrument("binance", "FINEUSDT", "FINE", "USDT", "0.0001", "0.000001")
INSTRUMENTS = (BTC, ETH)
START_MIDS = {BTC.symbol: (6_000_000, 6_000_002), ETH.symbol: (300_000, 300_002)}  # bid, ask ticks
MS = 1_000_000


@dataclass
class OpenOrder:
    symbol: str
    side: Side
    remaining: int


class ModelExposure:
    """The test's own order and position model: what a state tracker would report."""

    def __init__(self) -> None:
        self.positions: dict[str, int] = {}
        self.orders: list[OpenOrder] = []

    def position(self, venue: str, symbol: str) -> int:
        return self.positions.get(symbol, 0)

    def open_quantity(self, venue: str, symbol: str, side: Side) -> int:
        return sum(o.remaining for o in self.orders if o.symbol == symbol and o.side is side)

    def open_order_count(self, venue: str, symbol: str) -> int:
        return sum(1 for o in self.orders if o.symbol == symbol)

    def total_open_order_count(self) -> int:
        return len(self.orders)

    def fill(self, index: int, lots: int) -> None:
        order = self.orders[index]
        lots = min(lots, order.remaining)
        self.positions[order.symbol] = self.positions.get(order.symbol, 0) + order.side.sign * lots
        order.remaining -= lots
        if order.remaining == 0:
            del self.orders[index]


def make_gate(
    clock: SimulatedClock,
    exposure: ModelExposure | None = None,
    limits: RiskLimits | None = None,
    **instrument_limits: object,
) -> tuple[RiskGate, ModelExposure]:
    exposure = exposure or ModelExposure()
    gate = RiskGate(exposure, limits or RiskLimits(), clock)
    for instrument in INSTRUMENTS:
        gate.add_instrument(instrument, InstrumentLimits(**instrument_limits))  # type: ignore[arg-type]
        gate.update_mid(instrument.venue, instrument.symbol, *START_MIDS[instrument.symbol])
    return gate, exposure


def buy(gate: RiskGate, price: int = 6_000_000, lots: int = 1000, symbol: str = "BTCUSDT"):
    return gate.check("binance", symbol, Side.BUY, price, lots)


def test_model_implements_the_exposure_protocol() -> None:
    assert isinstance(ModelExposure(), RiskExposure)


# the law: no accepted order ever takes exposure past a limit ------------------------------------
GLOBAL = RiskLimits(max_total_notional="12000", max_total_open_orders=6, max_orders_per_window=8)
PER_INSTRUMENT = dict(
    max_position="0.5",
    max_order_quantity="0.2",
    max_order_notional="10000",
    max_open_orders=4,
    max_orders_per_window=6,
    collar_bps=30,
    max_mid_age_ms=500,
)
MAX_LOTS = {"BTCUSDT": 50_000, "ETHUSDT": 5_000}
MAX_ORDER_LOTS = {"BTCUSDT": 20_000, "ETHUSDT": 2_000}
PRICE_STEP = {"BTCUSDT": 500, "ETHUSDT": 30}  # 40 steps reach past the 30 bps collar
MULTIPLIER = {"BTCUSDT": 1, "ETHUSDT": 10}  # ticks*lots -> 1e-7 USDT (tick 0.01 x lot 1e-5 / 1e-4)

operation = st.tuples(
    st.sampled_from(["submit", "submit", "submit", "submit", "fill", "fill", "cancel", "wait", "mid"]),
    st.sampled_from(["BTCUSDT", "ETHUSDT"]),
    st.booleans(),
    st.integers(-40, 40),
    st.sampled_from([1_000, 5_000, 10_000, 11_000, 15_000, 19_000, 25_000]) | st.integers(1, 25_000),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(operation, min_size=20, max_size=120),
    st.sampled_from([None, Side.BUY, Side.SELL]),
    st.booleans(),
)
def test_accepted_orders_never_take_exposure_past_any_limit(
    operations: list, only_side: Side | None, with_total_notional: bool
) -> None:
    clock = SimulatedClock(10**12)
    limits = GLOBAL if with_total_notional else replace(GLOBAL, max_total_notional=None)
    gate, model = make_gate(clock, limits=limits, **PER_INSTRUMENT)
    assert gate.notional_decimals == 7
    mids = {symbol: sum(bid_ask) for symbol, bid_ask in START_MIDS.items()}  # mid2
    mid_times = dict.fromkeys(mids, clock.monotonic_ns())
    accepted_times: list[int] = []
    accepted_by_symbol: dict[str, list[int]] = {symbol: [] for symbol in mids}
    for kind, symbol, flag, offset, amount in operations:
        if kind == "submit":
            side = only_side or (Side.BUY if flag else Side.SELL)  # one-sided streams pile up exposure
            market = offset == 0
            price = mids[symbol] // 2 + offset * PRICE_STEP[symbol]
            amount = amount if symbol == "BTCUSDT" else amount // 6 + 1
            before = gross_lots(model, symbol)
            if market:
                decision = gate.check("binance", symbol, side, 0, amount, OrderType.MARKET)
            else:
                decision = gate.check("binance", symbol, side, price, amount)
            if not decision.accepted:
                assert decision.reason is not None and decision.reason is not RejectReason.KILL_SWITCH
                continue
            assert decision is ACCEPTED
            now = clock.monotonic_ns()
            assert now - mid_times[symbol] <= 500 * MS  # a fresh mid anchored the check
            if not market:
                assert abs(2 * price - mids[symbol]) * 10_000 <= 30 * mids[symbol]  # collar
            assert amount <= MAX_ORDER_LOTS[symbol]
            reference2 = mids[symbol] if market else 2 * price
            assert reference2 * amount * MULTIPLIER[symbol] <= 2 * 10_000 * 10**7  # order notional
            model.orders.append(OpenOrder(symbol, side, amount))
            accepted_times.append(now)
            accepted_by_symbol[symbol].append(now)
            if with_total_notional and gross_lots(model, symbol) > before:  # grew the aggregate: must fit
                total2 = sum(gross_lots(model, s) * mids[s] * MULTIPLIER[s] for s in mids)
                assert total2 <= 2 * 12_000 * 10**7
        elif kind == "fill" and model.orders:
            model.fill(amount % len(model.orders), amount)
        elif kind == "cancel" and model.orders:
            del model.orders[amount % len(model.orders)]
        elif kind == "wait":
            clock.advance(amount * 10_000)  # up to 250 ms
        elif kind == "mid":
            bid = mids[symbol] // 2 + offset * PRICE_STEP[symbol] // 4
            gate.update_mid("binance", symbol, bid, bid + 2)
            mids[symbol] = 2 * bid + 2
            mid_times[symbol] = clock.monotonic_ns()
        # invariants hold after every step, fills and cancels included
        for s in mids:
            position = model.positions.get(s, 0)
            assert position + model.open_quantity("binance", s, Side.BUY) <= MAX_LOTS[s]
            assert position - model.open_quantity("binance", s, Side.SELL) >= -MAX_LOTS[s]
            assert model.open_order_count("binance", s) <= 4
        assert model.total_open_order_count() <= 6
    assert_window_law(accepted_times, 8, 1000 * MS)
    for times in accepted_by_symbol.values():
        assert_window_law(times, 6, 1000 * MS)
    assert gate.accepted_count == len(accepted_times)


def gross_lots(model: ModelExposure, symbol: str) -> int:
    position = model.positions.get(symbol, 0)
    long_side = position + model.open_quantity("binance", symbol, Side.BUY)
    short_side = position - model.open_quantity("binance", symbol, Side.SELL)
    return max(long_side, -short_side, 0)


def assert_window_law(times: list[int], limit: int, window_ns: int) -> None:
    """No half-open window of ``window_ns`` holds more than ``limit`` accepted orders."""
    for index in range(len(times) - limit):
        assert times[index + limit] - times[index] >= window_ns


# rate limit ---------------------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 400), min_size=1, max_size=200), st.integers(1, 10))
def test_rate_limit_never_exceeded_in_any_window_and_rejects_only_when_full(gaps_ms, per_second) -> None:
    clock = SimulatedClock(10**12)
    gate, _ = make_gate(clock, limits=RiskLimits(max_orders_per_window=per_second))
    accepted: list[int] = []
    for gap in gaps_ms:
        clock.advance(gap * MS)
        decision = buy(gate)
        now = clock.monotonic_ns()
        in_window = sum(1 for t in accepted if now - t < 1000 * MS)
        if decision.accepted:
            assert in_window < per_second
            accepted.append(now)
        else:
            assert decision.reason is RejectReason.ORDER_RATE and decision.limit == "total"
            assert in_window == per_second  # never rejects with room left
    assert_window_law(accepted, per_second, 1000 * MS)


@pytest.mark.parametrize("scope", ["total", "instrument"])
def test_a_rate_slot_frees_exactly_one_window_after_the_order_that_took_it(scope: str) -> None:
    clock = SimulatedClock(10**12)
    if scope == "total":
        gate, _ = make_gate(clock, limits=RiskLimits(max_orders_per_window=3, rate_window_ms=250))
    else:
        gate, _ = make_gate(clock, limits=RiskLimits(rate_window_ms=250), max_orders_per_window=3)
    first = clock.monotonic_ns()
    for _ in range(3):
        assert buy(gate)
        clock.advance(1)
    clock.set(first + 250 * MS - 1)
    rejected = buy(gate)
    assert rejected.reason is RejectReason.ORDER_RATE and rejected.limit == scope
    clock.set(first + 250 * MS)
    assert buy(gate)
    assert buy(gate).reason is RejectReason.ORDER_RATE  # the second slot frees 1 ns later
    clock.advance(1)
    assert buy(gate)


def test_rejected_orders_do_not_consume_rate_slots() -> None:
    clock = SimulatedClock(10**12)
    gate, _ = make_gate(clock, limits=RiskLimits(max_orders_per_window=2), max_order_quantity="0.01")
    for _ in range(5):
        assert buy(gate, lots=5000).reason is RejectReason.ORDER_SIZE
    assert buy(gate)
    assert buy(gate)
    third = buy(gate)
    assert third.reason is RejectReason.ORDER_RATE
    clock.advance(1000 * MS)
    assert buy(gate)


def test_per_instrument_rate_is_separate_from_other_instruments() -> None:
    clock = SimulatedClock(10**12)
    gate, _ = make_gate(clock, max_orders_per_window=1)
    assert buy(gate)
    assert buy(gate).limit == "instrument"
    assert buy(gate, price=300_000, symbol="ETHUSDT")


# price collar and mid freshness -----------------------------------------------------------------
def test_collar_in_bps_accepts_the_bound_and_rejects_one_tick_beyond() -> None:
    clock = SimulatedClock(10**12)
    gate, _ = make_gate(clock, collar_bps=10)
    gate.update_mid("binance", "BTCUSDT", 5_999_999, 6_000_001)  # mid 6_000_000 ticks
    assert buy(gate, price=6_006_000)  # +10 bps exactly
    assert gate.check("binance", "BTCUSDT", Side.SELL, 5_994_000, 100)
    beyond = buy(gate, price=6_006_001)
    assert beyond.reason is RejectReason.PRICE_COLLAR
    assert (beyond.limit, beyond.value, beyond.bound, beyond.unit) == ("collar_bps", 10, 10, "bps")
    assert gate.check("binance", "BTCUSDT", Side.SELL, 5_993_999, 100).reason is RejectReason.PRICE_COLLAR


def test_collar_in_ticks_handles_a_half_tick_mid() -> None:
    clock = SimulatedClock(10**12)
    gate, _ = make_gate(clock, collar_ticks=5)
    gate.update_mid("binance", "BTCUSDT", 6_000_000, 6_000_001)  # mid 6_000_000.5
    assert buy(gate, price=6_000_005)  # 4.5 ticks away
    assert buy(gate, price=5_999_996)  # 4.5 ticks away
    assert buy(gate, price=6_000_006).reason is RejectReason.PRICE_COLLAR  # 5.5 ticks
    assert buy(gate, price=5_999_995).reason is RejectReason.PRICE_COLLAR


def test_collar_needs_a_fresh_mid() -> None:
    clock = SimulatedClock(10**12)
    gate = RiskGate(ModelExposure(), clock=clock)
    gate.add_instrument(BTC, InstrumentLimits(collar_bps=50, max_mid_age_ms=200))
    assert buy(gate).reason is RejectReason.NO_MID
    gate.update_mid("binance", "BTCUSDT", 6_000_000, 6_000_002)
    clock.advance(200 * MS)
    assert buy(gate)
    clock.advance(1)
    stale = buy(gate)
    assert stale.reason is RejectReason.STALE_MID and stale.bound == 200


def test_market_orders_need_a_mid_and_are_valued_at_it() -> None:
    clock = SimulatedClock(10**12)
    gate = RiskGate(ModelExposure(), clock=clock)
    gate.add_instrument(BTC, InstrumentLimits(max_order_notional="600"))
    market = ("binance", "BTCUSDT", Side.BUY, 0, 1000, OrderType.MARKET)
    assert gate.check(*market).reason is RejectReason.NO_MID
    gate.update_mid("binance", "BTCUSDT", 6_000_000, 6_000_000 + 2)  # 60000.01
    assert gate.check("binance", "BTCUSDT", Side.BUY, 0, 999, OrderType.MARKET)  # 599.4000999
    too_big = gate.check("binance", "BTCUSDT", Side.BUY, 0, 1000, OrderType.MARKET)  # 600.0001
    assert too_big.reason is RejectReason.ORDER_NOTIONAL
    assert gate.notional_to_decimal(too_big.value) == Decimal("600.0001")


# position, open orders, reduce-only ---------------------------------------------------------------
def test_position_limit_counts_open_orders_on_the_same_side_only() -> None:
    clock = SimulatedClock(10**12)
    gate, model = make_gate(clock, max_position="0.1")  # 10_000 lots
    model.positions["BTCUSDT"] = 4_000
    model.orders = [OpenOrder("BTCUSDT", Side.BUY, 5_000), OpenOrder("BTCUSDT", Side.SELL, 9_000)]
    assert buy(gate, lots=1_000)
    rejected = buy(gate, lots=1_001)
    assert rejected.reason is RejectReason.POSITION_LIMIT
    assert (rejected.value, rejected.bound, rejected.unit) == (10_001, 10_000, "lots")
    # short side: 4_000 - 9_000 = -5_000, room for 5_000 more
    assert gate.check("binance", "BTCUSDT", Side.SELL, 6_000_000, 5_000)
    assert gate.check("binance", "BTCUSDT", Side.SELL, 6_000_000, 5_001).reason is RejectReason.POSITION_LIMIT


def test_open_order_limits_per_instrument_and_overall() -> None:
    clock = SimulatedClock(10**12)
    gate, model = make_gate(clock, limits=RiskLimits(max_total_open_orders=3), max_open_orders=2)
    model.orders = [OpenOrder("BTCUSDT", Side.BUY, 1), OpenOrder("BTCUSDT", Side.BUY, 1)]
    assert buy(gate).reason is RejectReason.OPEN_ORDERS
    assert buy(gate, price=300_000, symbol="ETHUSDT")
    model.orders.append(OpenOrder("ETHUSDT", Side.BUY, 1))
    assert buy(gate, price=300_000, symbol="ETHUSDT").reason is RejectReason.TOTAL_OPEN_ORDERS


@settings(max_examples=200, deadline=None)
@given(
    st.integers(-50_000, 50_000),
    st.integers(0, 20_000),
    st.integers(0, 20_000),
    st.booleans(),
    st.integers(1, 60_000),
)
def test_reduce_only_accepts_exactly_the_orders_that_cannot_grow_or_flip_the_position(
    position, open_buys, open_sells, is_buy, lots
) -> None:
    clock = SimulatedClock(10**12)
    gate, model = make_gate(clock, limits=RiskLimits(reduce_only=True))
    model.positions["BTCUSDT"] = position
    model.orders = [OpenOrder("BTCUSDT", Side.BUY, open_buys), OpenOrder("BTCUSDT", Side.SELL, open_sells)]
    side = Side.BUY if is_buy else Side.SELL
    decision = gate.check("binance", "BTCUSDT", side, 6_000_000, lots)
    if is_buy:
        reduces = position < 0 and position + open_buys + lots <= 0
    else:
        reduces = position > 0 and position - open_sells - lots >= 0
    assert decision.accepted is reduces
    if not reduces:
        assert decision.reason is RejectReason.REDUCE_ONLY


def test_reduce_only_per_instrument_and_per_order_flag() -> None:
    clock = SimulatedClock(10**12)
    gate, model = make_gate(clock)
    gate.set_reduce_only(True, "binance", "BTCUSDT")
    assert buy(gate).reason is RejectReason.REDUCE_ONLY
    assert buy(gate, price=300_000, symbol="ETHUSDT")
    gate.set_reduce_only(False, "binance", "BTCUSDT")
    order = Order(
        client_order_id="a",
        venue="binance",
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        price=6_000_000,
        quantity=10,
        reduce_only=True,
    )
    assert gate.check_order(order).reason is RejectReason.REDUCE_ONLY
    model.positions["BTCUSDT"] = -10
    assert gate.check_order(order)


# aggregate notional -------------------------------------------------------------------------------
def test_total_notional_is_exact_across_grids_added_later() -> None:
    clock = SimulatedClock(10**12)
    model = ModelExposure()
    gate = RiskGate(model, RiskLimits(max_total_notional="1000"), clock)
    gate.add_instrument(BTC)
    assert gate.notional_decimals == 7
    gate.update_mid("binance", "BTCUSDT", 5_999_999, 6_000_001)  # 60000.00
    assert buy(gate, lots=1_000)  # 0.01 BTC = 600 USDT
    model.orders.append(OpenOrder("BTCUSDT", Side.BUY, 1_000))
    gate.add_instrument(FINE)  # tick 1e-4 x lot 1e-6: notional units become 1e-10 USDT
    assert gate.notional_decimals == 10
    gate.update_mid("binance", "FINEUSDT", 9_999, 10_001)  # 1.0000
    fine = ("binance", "FINEUSDT", Side.SELL, 10_000)
    rejected = gate.check(*fine, 400_000_001)  # 600 + 400.000001
    assert rejected.reason is RejectReason.TOTAL_NOTIONAL
    assert gate.notional_to_decimal(rejected.bound) == 1000
    assert gate.notional_to_decimal(rejected.value) == Decimal("1000.000001")
    assert gate.check(*fine, 400_000_000)  # exactly at the bound
    model.orders.append(OpenOrder("FINEUSDT", Side.SELL, 400_000_000))
    assert gate.total_notional == 1000
    # a cancel frees headroom once exposure is re-read
    model.orders.pop(0)
    gate.refresh_exposure()
    assert gate.total_notional == 400
    assert buy(gate, lots=1_000)
    assert gate.check(*fine, 1).reason is RejectReason.TOTAL_NOTIONAL


def test_orders_that_do_not_grow_the_aggregate_pass_even_when_prices_pushed_it_over() -> None:
    clock = SimulatedClock(10**12)
    gate, model = make_gate(clock, limits=RiskLimits(max_total_notional="1000"))
    model.positions["BTCUSDT"] = 1_500  # 900 USDT at 60000
    gate.refresh_exposure()
    gate.update_mid("binance", "BTCUSDT", 7_999_999, 8_000_001)  # now 1200 USDT
    assert buy(gate, price=8_000_000, lots=1).reason is RejectReason.TOTAL_NOTIONAL
    assert gate.check("binance", "BTCUSDT", Side.SELL, 8_000_000, 1_500)  # flattening is allowed


def test_aggregate_refuses_to_grow_while_an_exposed_instrument_has_no_mark() -> None:
    clock = SimulatedClock(10**12)
    model = ModelExposure()
    model.positions["ETHUSDT"] = 10
    gate = RiskGate(model, RiskLimits(max_total_notional="1000000"), clock)
    gate.add_instrument(BTC)
    gate.add_instrument(ETH)
    gate.update_mid("binance", "BTCUSDT", 6_000_000, 6_000_002)
    rejected = buy(gate)
    assert rejected.reason is RejectReason.NO_MID and rejected.limit == "total_notional"
    gate.update_mid("binance", "ETHUSDT", 300_000, 300_002)
    assert buy(gate)


# kill switch -------------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["BTCUSDT", "ETHUSDT", "XRPUSDT"]), st.booleans(), st.integers(1, 99)))
)
def test_tripped_switch_blocks_every_order_but_never_a_cancel(orders) -> None:
    clock = SimulatedClock(10**12)
    gate, _ = make_gate(clock)
    assert gate.trip(TripSource.MANUAL, "operator pressed the button")
    for symbol, is_buy, lots in orders:
        side = Side.BUY if is_buy else Side.SELL
        decision = gate.check("binance", symbol, side, 300_000, lots)
        assert not decision and decision.reason is RejectReason.KILL_SWITCH
        assert gate.check_cancel("binance", symbol) is ACCEPTED
    assert gate.rejection_counts.get(RejectReason.KILL_SWITCH, 0) == len(orders)
    gate.reset("checked positions, resuming")
    assert buy(gate)


def test_trip_and_reset_are_audited_and_reset_needs_a_reason(caplog) -> None:
    clock = SimulatedClock(10**12)
    gate, _ = make_gate(clock)
    caplog.set_level(logging.WARNING, logger="hftkit.trading.risk")
    assert gate.trip(TripSource.MANUAL, "first")
    clock.advance(5 * MS)
    assert not gate.trip(TripSource.BREAKER, "second")  # already tripped: audited, not re-fired
    with pytest.raises(RiskInputError):
        gate.reset("  ")
    assert gate.tripped
    gate.reset("all clear")
    audit = gate.audit
    assert [(e.action, e.source, e.first) for e in audit] == [
        (KillSwitchAction.TRIP, TripSource.MANUAL, True),
        (KillSwitchAction.TRIP, TripSource.BREAKER, False),
        (KillSwitchAction.RESET, None, True),
    ]
    assert audit[1].monotonic_ns - audit[0].monotonic_ns == 5 * MS
    assert audit[0].time_ns == 10**12 + 1_700_000_000_000_000_000
    assert "all clear" in caplog.text and "first" in caplog.text
    assert [event.detail for event in gate.take_cancel_requests()] == ["first"]
    assert gate.take_cancel_requests() == []


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@pytest.mark.parametrize("state", ["open", "OPEN", BreakerState.OPEN])
def test_an_opening_breaker_trips(state) -> None:
    gate, _ = make_gate(SimulatedClock(10**12))
    gate.on_breaker_state_change("binance-orders", BreakerState.HALF_OPEN)
    gate.on_breaker_state_change("binance-orders", "closed")
    assert not gate.tripped
    gate.on_breaker_state_change("binance-orders", state)
    assert gate.tripped
    assert gate.audit[-1].source is TripSource.BREAKER and "binance-orders" in gate.audit[-1].detail
    gate.on_breaker_state_change("binance-orders", "closed")
    assert gate.tripped  # closing again does not re-arm: reset is manual


def test_real_circuit_breaker_opening_trips_the_gate() -> None:
    from hftkit.resilience import breaker as breaker_module

    clock = SimulatedClock(10**12)
    gate, _ = make_gate(clock)
    breaker = breaker_module.CircuitBreaker("thalex-rpc", failure_threshold=2, clock=clock)
    breaker.add_listener(gate.breaker_listener)
    breaker.record_failure()
    assert not gate.tripped
    breaker.record_failure()
    assert gate.tripped and "thalex-rpc" in gate.audit[-1].detail


def test_book_losing_sync_trips_but_a_book_not_yet_synced_only_blocks_its_instrument() -> None:
    clock = SimulatedClock(10**12)
    gate, _ = make_gate(clock, max_book_age_ms=100)
    now = clock.monotonic_ns()
    gate.report_book("binance", "BTCUSDT", False, now)
    assert buy(gate).reason is RejectReason.BOOK_UNSYNCED
    assert not gate.tripped
    gate.report_book("binance", "BTCUSDT", True, now)
    gate.report_book("binance", "ETHUSDT", True, now)
    assert buy(gate)
    gate.report_book("binance", "BTCUSDT", False, now)
    assert gate.tripped and gate.audit[-1].source is TripSource.BOOK
    assert buy(gate, price=300_000, symbol="ETHUSDT").reason is RejectReason.KILL_SWITCH


def test_stale_book_found_by_an_order_check_trips() -> None:
    clock = SimulatedClock(10**12)
    gate, _ = make_gate(clock, max_book_age_ms=100)
    gate.report_book("binance", "BTCUSDT", True, clock.monotonic_ns())
    clock.advance(100 * MS)
    assert buy(gate)
    clock.advance(1 * MS)
    stale = buy(gate)
    assert stale.reason is RejectReason.BOOK_STALE and (stale.value, stale.bound) == (101, 100)
    assert gate.tripped and "stale" in gate.audit[-1].detail


def test_reject_policy_blocks_only_the_unhealthy_instrument() -> None:
    clock = SimulatedClock(10**12)
    gate, _ = make_gate(clock, max_book_age_ms=100, book_health=BookHealthPolicy.REJECT)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        gate.report_book("binance", symbol, True, clock.monotonic_ns())
    clock.advance(200 * MS)
    gate.report_book("binance", "ETHUSDT", True, clock.monotonic_ns())
    assert buy(gate).reason is RejectReason.BOOK_STALE
    assert buy(gate, price=300_000, symbol="ETHUSDT")
    gate.report_book("binance", "ETHUSDT", False, clock.monotonic_ns())
    assert buy(gate, price=300_000, symbol="ETHUSDT").reason is RejectReason.BOOK_UNSYNCED
    assert not gate.tripped
    assert gate.check_books() == [("binance", "BTCUSDT")]
    assert not gate.tripped


def test_periodic_book_sweep_trips_on_a_stale_book() -> None:
    clock = SimulatedClock(10**12)
    gate, _ = make_gate(clock, max_book_age_ms=100)
    gate.report_book("binance", "BTCUSDT", True, clock.monotonic_ns())
    assert gate.check_books() == []
    clock.advance(101 * MS)
    assert gate.check_books() == [("binance", "BTCUSDT")]
    assert gate.tripped


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=40), st.floats(1, 5e3))
def test_drawdown_trips_exactly_when_peak_to_trough_exceeds_the_bound(pnls, bound) -> None:
    gate, _ = make_gate(SimulatedClock(10**12), limits=RiskLimits(max_drawdown=bound))
    peak = -math.inf
    expected_trip_at = None
    for index, pnl in enumerate(pnls):
        peak = max(peak, pnl)
        gate.update_pnl(pnl)
        if expected_trip_at is None and peak - pnl > bound:
            expected_trip_at = index
        assert gate.tripped is (expected_trip_at is not None)
    drawdown_trips = [e for e in gate.audit if e.source is TripSource.DRAWDOWN]
    assert len(drawdown_trips) == (expected_trip_at is not None)


def test_reset_rebases_the_drawdown_peak() -> None:
    gate, _ = make_gate(SimulatedClock(10**12), limits=RiskLimits(max_drawdown=100.0))
    gate.update_pnl(500.0)
    gate.update_pnl(350.0)
    assert gate.tripped
    gate.reset("accepting the loss")
    gate.update_pnl(300.0)
    assert not gate.tripped and gate.drawdown == 50.0
    gate.update_pnl(249.0)
    assert gate.tripped


# shell: cancel-all hooks -------------------------------------------------------------------------
async def test_shell_runs_sync_and_async_hooks_and_logs_failures_without_stopping(caplog) -> None:
    gate, _ = make_gate(SimulatedClock(10**12))
    shell = KillSwitchShell(gate)
    calls: list[str] = []

    def cancel_binance(event) -> None:
        calls.append(f"sync:{event.detail}")

    async def cancel_thalex(event) -> None:
        await asyncio.sleep(0)
        calls.append(f"async:{event.source.value}")

    def broken(event) -> None:
        raise ConnectionError("venue down")

    async def broken_async(event) -> None:
        raise TimeoutError("no ack")

    for hook in (broken, cancel_binance, broken_async, cancel_thalex):
        shell.add_cancel_all_hook(hook)
    caplog.set_level(logging.ERROR, logger="hftkit.trading.risk")
    gate.update_pnl(0.0)
    gate.on_breaker_state_change("x", "open")
    assert calls == ["sync:circuit breaker 'x' opened"]  # sync hooks ran inside the trip
    await shell.flush()
    assert calls[-1] == "async:breaker"
    assert sorted(f.error for f in shell.failures) == ["ConnectionError: venue down", "TimeoutError: no ack"]
    assert caplog.text.count("cancel-all hook") == 2
    assert shell.pending == 0


async def _async_cancel_all(calls: list[str]) -> None:
    calls.append("async")


def test_trip_without_an_event_loop_defers_async_hooks_to_flush() -> None:
    gate, _ = make_gate(SimulatedClock(10**12))
    shell = KillSwitchShell(gate)
    calls: list[str] = []
    shell.add_cancel_all_hook(lambda event: _async_cancel_all(calls))
    shell.add_cancel_all_hook(lambda event: calls.append("sync"))
    gate.trip(TripSource.MANUAL, "no loop here")
    assert calls == ["sync"] and shell.pending == 1
    asyncio.run(shell.flush())
    assert calls == ["sync", "async"] and shell.pending == 0


# bad input and configuration ------------------------------------------------------------------------
def test_invalid_orders_and_unknown_instruments_are_rejected_and_counted() -> None:
    gate, _ = make_gate(SimulatedClock(10**12))
    assert buy(gate, lots=0).reason is RejectReason.INVALID_ORDER
    assert buy(gate, price=0).reason is RejectReason.INVALID_ORDER
    assert buy(gate, symbol="DOGEUSDT").reason is RejectReason.UNKNOWN_INSTRUMENT
    assert gate.rejection_counts == {RejectReason.INVALID_ORDER: 2, RejectReason.UNKNOWN_INSTRUMENT: 1}


@pytest.mark.parametrize(
    ("bid", "ask", "symbol"),
    [(6_000_002, 6_000_000, "BTCUSDT"), (0, 5, "BTCUSDT"), (5, 5, "BTCUSDT"), (1, 2, "NOPE")],
)
def test_unusable_mid_reports_raise_a_counted_input_error(bid, ask, symbol) -> None:
    gate, _ = make_gate(SimulatedClock(10**12))
    with pytest.raises(RiskInputError):
        gate.update_mid("binance", symbol, bid, ask)
    assert gate.input_error_count == 1


@pytest.mark.parametrize("pnl", [math.nan, math.inf, "12"])
def test_unusable_pnl_raises_a_counted_input_error(pnl) -> None:
    gate, _ = make_gate(SimulatedClock(10**12), limits=RiskLimits(max_drawdown=1.0))
    with pytest.raises(RiskInputError):
        gate.update_pnl(pnl)
    assert gate.input_error_count == 1 and not gate.tripped


@pytest.mark.parametrize(
    "build",
    [
        lambda: InstrumentLimits(max_open_orders=0),
        lambda: InstrumentLimits(collar_bps=-1),
        lambda: InstrumentLimits(max_mid_age_ms=0),
        lambda: RiskLimits(max_drawdown=math.nan),
        lambda: RiskLimits(max_orders_per_window=True),
        lambda: RiskGate(ModelExposure(), RiskLimits(max_total_notional="-5")),
        lambda: RiskGate(ModelExposure()).add_instrument(BTC, InstrumentLimits(max_position="abc")),
    ],
)
def test_unenforceable_limits_are_refused_at_configuration(build) -> None:
    with pytest.raises(RiskConfigError):
        build()


def test_stream_of_rejections_is_counted_per_reason() -> None:
    clock = SimulatedClock(10**12)
    gate, _ = make_gate(clock, max_order_quantity="0.001", collar_bps=5)
    reasons = [
        buy(gate, lots=101).reason,
        buy(gate, price=7_000_000, lots=100).reason,
        gate.check("binance", "BTCUSDT", Side.SELL, 5_000_000, 100).reason,
    ]
    assert reasons == [RejectReason.ORDER_SIZE, RejectReason.PRICE_COLLAR, RejectReason.PRICE_COLLAR]
    assert gate.rejection_counts == {RejectReason.ORDER_SIZE: 1, RejectReason.PRICE_COLLAR: 2}
    assert gate.accepted_count == 0


def test_a_failing_trip_listener_never_breaks_the_order_path(caplog) -> None:
    clock = SimulatedClock(10**12)
    gate, _ = make_gate(clock, max_book_age_ms=100)
    gate.report_book("binance", "BTCUSDT", True, clock.monotonic_ns())

    def broken_listener(event) -> None:
        raise RuntimeError("shell bug")

    gate.set_trip_listener(broken_listener)
    clock.advance(200 * MS)
    assert buy(gate).reason is RejectReason.BOOK_STALE  # the trip happened inside the check
    assert gate.tripped and gate.listener_error_count == 1
    assert [event.source for event in gate.take_cancel_requests()] == [TripSource.BOOK]
    assert "trip listener failed" in caplog.text
