"""Execution engine and order gateway on a FakeVenue: budgets, outcomes, TWAP."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hftkit.core.types import Fill, Instrument, Order, OrderStatus, OrderType, OrderUpdate, Side, TimeInForce
from hftkit.metrics import MetricsRegistry
from hftkit.testing import FailureKind, FakeVenue, RequestKind
from hftkit.trading.execution import (
    BudgetPolicy,
    ExecutionConfig,
    ExecutionEngine,
    OrderGateway,
    OrderIntent,
    TrackerExposure,
    TwapOrder,
    twap_schedule,
)
from hftkit.trading.risk import InstrumentLimits, RiskGate
from hftkit.trading.state import OrderStateTracker
from hftkit.venues.base import AmendRequest, OrderRejectedError, OrderRequest

SYMBOL = "BTCUSDT"


def make_engine(
    config: ExecutionConfig | None = None, *, timeout_s: float = 1.0, limits: InstrumentLimits | None = None
) -> tuple[ExecutionEngine, FakeVenue, OrderStateTracker]:
    instrument = Instrument("fake", SYMBOL, "BTC", "USDT", "0.01", "0.001")
    venue = FakeVenue("fake", [instrument])
    venue.set_book(
        SYMBOL, [(4_999_990, 100), (4_999_980, 100)], [(5_000_000, 10), (5_000_010, 10), (5_000_100, 100)]
    )
    tracker = OrderStateTracker()

    def to_tracker(event: object) -> None:
        if isinstance(event, OrderUpdate):
            tracker.apply_report(event)
        elif isinstance(event, Fill):
            tracker.apply_fill(event)

    venue.add_listener(to_tracker)
    gate = RiskGate(TrackerExposure(tracker))
    gate.add_instrument(instrument, limits)
    gateway = OrderGateway({"fake": venue}, tracker, gate, request_timeout_s=timeout_s)
    return ExecutionEngine(gateway, config or ExecutionConfig(latency_budget_us=None)), venue, tracker


def make_gateway(
    *, writes_now: bool = False, metrics: MetricsRegistry | None = None, request_timeout_s: float = 5.0
) -> tuple[OrderGateway, FakeVenue, OrderStateTracker]:
    """A gateway over one FakeVenue with a one-level book; only answers reach the tracker."""
    instrument = Instrument("fake", SYMBOL, "BTC", "USDT", "0.01", "0.001")
    venue = FakeVenue("fake", [instrument], writes_now=writes_now)
    venue.set_book(SYMBOL, [(4_999_990, 100)], [(5_000_000, 10)])
    tracker = OrderStateTracker()
    gate = RiskGate(TrackerExposure(tracker))
    gate.add_instrument(instrument)
    gateway = OrderGateway(
        {"fake": venue}, tracker, gate, metrics=metrics, request_timeout_s=request_timeout_s
    )
    return gateway, venue, tracker


def buy(quantity: int, price: int = 5_000_010, **extra: object) -> OrderIntent:
    return OrderIntent(venue="fake", symbol=SYMBOL, side=Side.BUY, quantity=quantity, price=price, **extra)  # type: ignore[arg-type]


async def test_ioc_fills_against_the_book_and_records_execution_latency() -> None:
    engine, _venue, tracker = make_engine()
    report = await engine.execute(buy(15), time.perf_counter_ns())
    assert report.sent and report.filled == 15 and report.status is OrderStatus.FILLED
    assert tracker.position("fake", SYMBOL).quantity == 15
    assert engine.execution_latency["fake"].count == 1
    assert engine.gateway.round_trip["fake"].count == 1
    assert engine.gateway.decision_to_send.count == 1


async def test_ioc_remainder_beyond_the_limit_expires() -> None:
    engine, venue, _tracker = make_engine()
    report = await engine.execute(buy(50, price=5_000_010))
    assert report.filled == 20 and report.status is OrderStatus.EXPIRED
    assert all(fill.price <= 5_000_010 for fill in venue.fills)


async def test_budget_overrun_drops_the_order_and_is_counted() -> None:
    engine, venue, tracker = make_engine(ExecutionConfig(latency_budget_us=100.0, policy=BudgetPolicy.DROP))
    stale = time.perf_counter_ns() - 5_000_000  # decided 5 ms ago
    report = await engine.execute(buy(5), stale)
    assert not report.sent and report.budget_overrun and report.filled == 0
    assert engine.budget_overruns == 1 and engine.counters["dropped_over_budget"] == 1
    assert not venue.requests and tracker.active_count == 0


async def test_budget_overrun_with_send_flagged_policy_sends_and_flags() -> None:
    engine, _, _ = make_engine(ExecutionConfig(latency_budget_us=100.0, policy=BudgetPolicy.SEND_FLAGGED))
    report = await engine.execute(buy(5), time.perf_counter_ns() - 5_000_000)
    assert report.sent and report.budget_overrun and report.filled == 5
    assert engine.budget_overruns == 1 and engine.counters["sent_over_budget"] == 1


async def test_within_budget_is_not_an_overrun() -> None:
    engine, _, _ = make_engine(ExecutionConfig(latency_budget_us=1e6))
    report = await engine.execute(buy(5), time.perf_counter_ns())
    assert report.sent and not report.budget_overrun and engine.budget_overruns == 0


async def test_definitive_reject_settles_the_order_as_rejected() -> None:
    engine, venue, tracker = make_engine()
    venue.fail_next(FailureKind.REJECT)
    report = await engine.execute(buy(5))
    assert report.sent and report.status is OrderStatus.REJECTED and report.filled == 0
    assert tracker.get(report.client_order_id).status is OrderStatus.REJECTED  # type: ignore[union-attr]
    assert not [kind for kind, _ in venue.requests if kind is RequestKind.QUERY]


async def test_unknown_outcome_of_a_placed_order_is_settled_by_query() -> None:
    engine, venue, tracker = make_engine()
    venue.fail_next(FailureKind.UNKNOWN_PLACED)
    report = await engine.execute(buy(5))
    assert engine.gateway.counters["outcome_unknown"] == 1
    assert [payload for kind, payload in venue.requests if kind is RequestKind.QUERY] == [
        (SYMBOL, report.client_order_id)
    ]
    assert report.filled == 5 and report.status is OrderStatus.FILLED
    assert tracker.position("fake", SYMBOL).quantity == 5


async def test_unknown_outcome_of_a_lost_order_settles_as_lost() -> None:
    engine, venue, tracker = make_engine()
    venue.fail_next(FailureKind.UNKNOWN_LOST)
    report = await engine.execute(buy(5))
    order = tracker.get(report.client_order_id)
    assert order is not None and order.status is OrderStatus.REJECTED and order.filled == 0
    assert tracker.counters["settled_not_found"] == 1


async def test_transport_errors_are_ambiguous_and_rate_limits_definitive() -> None:
    engine, venue, tracker = make_engine()
    venue.fail_next(FailureKind.TRANSPORT_ERROR)
    lost = await engine.execute(buy(5))
    assert engine.gateway.counters["outcome_unknown"] == 1 and engine.gateway.counters["queries"] == 1
    assert tracker.get(lost.client_order_id).status is OrderStatus.REJECTED  # type: ignore[union-attr]
    venue.fail_next(FailureKind.RATE_LIMITED)
    limited = await engine.execute(buy(5))
    assert limited.status is OrderStatus.REJECTED and engine.gateway.counters["queries"] == 1
    assert engine.gateway.counters["venue_rejects"] == 1


async def test_a_hung_request_times_out_and_stays_unknown_when_the_query_fails_too() -> None:
    engine, venue, tracker = make_engine(timeout_s=0.02)
    venue.fail_next(FailureKind.HANG)
    venue.fail_next(FailureKind.HANG, RequestKind.QUERY)
    report = await engine.execute(buy(5))
    order = tracker.get(report.client_order_id)
    assert order is not None and order.status is OrderStatus.UNKNOWN  # in flight until reconciled
    assert engine.gateway.counters["query_failures"] == 1
    assert report.status is OrderStatus.UNKNOWN


async def test_risk_rejects_are_never_sent() -> None:
    engine, venue, _tracker = make_engine(limits=InstrumentLimits(max_order_quantity="0.002"))
    report = await engine.execute(buy(5))
    assert not report.sent and report.reason.startswith("risk: order_size")
    engine.gateway.risk.trip(detail="test")
    report = await engine.execute(buy(1))
    assert not report.sent and "kill_switch" in report.reason
    assert not venue.requests and engine.counters["risk_rejects"] == 2


async def test_gtc_limit_orders_are_refused_by_the_execution_engine() -> None:
    engine, _, _ = make_engine()
    with pytest.raises(ValueError, match="taker"):
        await engine.execute(buy(1, time_in_force=TimeInForce.GTC))
    engine.gateway.risk.update_mid("fake", SYMBOL, 4_999_990, 5_000_000)  # market orders need a mid
    report = await engine.execute(buy(1, order_type=OrderType.MARKET, price=0, time_in_force=TimeInForce.GTC))
    assert report.filled == 1


@given(quantity=st.integers(0, 10**9), slices=st.integers(1, 500))
def test_twap_schedule_sums_to_the_parent_and_is_even(quantity: int, slices: int) -> None:
    schedule = twap_schedule(quantity, slices)
    assert len(schedule) == slices and sum(schedule) == quantity
    assert max(schedule) - min(schedule) <= 1


async def test_twap_slices_fill_the_parent_with_child_iocs() -> None:
    engine, _venue, tracker = make_engine()
    report = await engine.twap(
        TwapOrder(
            venue="fake",
            symbol=SYMBOL,
            side=Side.BUY,
            quantity=40,
            slices=4,
            interval_s=0.001,
            limit_price=5_000_100,
        )
    )
    assert report.complete and report.filled == 40 and report.planned == [10, 10, 10, 10]
    assert sum(child.filled for child in report.children) == 40
    assert all(child.requested <= 40 for child in report.children)
    assert tracker.position("fake", SYMBOL).quantity == 40


async def test_twap_never_pays_through_its_limit_and_catches_up_later() -> None:
    engine, venue, _ = make_engine()
    report = await engine.twap(
        TwapOrder(
            venue="fake",
            symbol=SYMBOL,
            side=Side.BUY,
            quantity=30,
            slices=3,
            interval_s=0.0,
            limit_price=5_000_010,
        )
    )
    assert report.filled == 20 and not report.complete  # only 20 lots at or under the limit
    assert all(fill.price <= 5_000_010 for fill in venue.fills)
    assert [child.requested for child in report.children] == [10, 10, 10]  # the 3rd catches up nothing


async def test_twap_stops_on_the_kill_switch() -> None:
    engine, venue, _ = make_engine()
    engine.gateway.risk.trip(detail="test")
    report = await engine.twap(
        TwapOrder(
            venue="fake",
            symbol=SYMBOL,
            side=Side.BUY,
            quantity=30,
            slices=3,
            interval_s=0.0,
            limit_price=5_000_100,
        )
    )
    assert report.stopped == "kill switch" and report.filled == 0 and not venue.requests


# the FakeVenue these tests stand on ----------------------------------------------------------
async def test_fake_venue_rejects_crossing_post_only_and_fills_fok_only_in_full() -> None:
    _, venue, _ = make_engine()
    with pytest.raises(OrderRejectedError, match="post-only"):
        await venue.place_order(
            OrderRequest(
                client_order_id="pm",
                symbol=SYMBOL,
                side=Side.BUY,
                quantity=1,
                price=5_000_000,
                order_type=OrderType.LIMIT_MAKER,
            )
        )
    too_big = await venue.place_order(
        OrderRequest(
            client_order_id="fok1",
            symbol=SYMBOL,
            side=Side.BUY,
            quantity=25,
            price=5_000_010,
            time_in_force=TimeInForce.FOK,
        )
    )
    assert too_big.filled == 0 and too_big.status is OrderStatus.EXPIRED
    fits = await venue.place_order(
        OrderRequest(
            client_order_id="fok2",
            symbol=SYMBOL,
            side=Side.BUY,
            quantity=20,
            price=5_000_010,
            time_in_force=TimeInForce.FOK,
        )
    )
    assert fits.filled == 20 and fits.status is OrderStatus.FILLED
    assert venue.books[SYMBOL].best_ask() == (5_000_100, 100)  # the liquidity taken is gone
    assert venue.balances_by_asset["BTC"] == Decimal("0.020")


async def test_fake_venue_rests_amends_fills_on_cross_and_answers_queries() -> None:
    _, venue, _ = make_engine()
    resting = await venue.place_order(
        OrderRequest(client_order_id="r1", symbol=SYMBOL, side=Side.BUY, quantity=5, price=4_999_000)
    )
    assert resting.status is OrderStatus.NEW and venue.open_order_ids == ["r1"]
    amended = await venue.amend_order(
        AmendRequest(client_order_id="r1", symbol=SYMBOL, price=4_999_500, quantity=7)
    )
    assert (amended.price, amended.quantity) == (4_999_500, 7)
    venue.set_book(SYMBOL, [(4_999_000, 10)], [(4_999_400, 10)])  # the market trades through our bid
    assert venue.open_order_ids == [] and venue.fills[-1].quantity == 7 and venue.fills[-1].is_maker
    queried = await venue.query_order(SYMBOL, "r1")
    assert queried is not None and queried.status is OrderStatus.FILLED
    assert await venue.query_order(SYMBOL, "never") is None
    assert (await venue.positions())[0].quantity == 7


class SettlingVenue(FakeVenue):
    """A venue adapter that settles unknown outcomes itself, as the Binance and Thalex adapters do."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.settling: list[str] = []

    def unresolved(self) -> list[str]:
        return list(self.settling)

    async def place_order(self, request: OrderRequest) -> OrderUpdate:
        self.settling.append(request.client_order_id)
        return await super().place_order(request)


async def test_an_unknown_outcome_the_adapter_settles_is_left_to_its_events() -> None:
    instrument = Instrument("fake", SYMBOL, "BTC", "USDT", "0.01", "0.001")
    venue = SettlingVenue("fake", [instrument])
    tracker = OrderStateTracker()
    venue.add_listener(lambda event: isinstance(event, OrderUpdate) and tracker.apply_report(event))
    gate = RiskGate(TrackerExposure(tracker))
    gate.add_instrument(instrument, InstrumentLimits())
    gateway = OrderGateway({"fake": venue}, tracker, gate, request_timeout_s=1.0)
    venue.fail_next(FailureKind.UNKNOWN_LOST)  # not at the venue yet: it may still arrive
    order = gateway.prepare(
        OrderIntent(venue="fake", symbol=SYMBOL, side=Side.BUY, quantity=5, price=4_000_000)
    )
    assert isinstance(order, Order)
    assert await gateway.send(order) is None
    assert tracker.get(order.client_order_id).status is OrderStatus.UNKNOWN  # type: ignore[union-attr]
    assert not [kind for kind, _ in venue.requests if kind is RequestKind.QUERY]  # one owner asks
    # the adapter's settlement finds it after all: the tracker consumes that event
    venue.settling.clear()
    venue._emit(
        OrderUpdate(
            venue="fake",
            symbol=SYMBOL,
            client_order_id=order.client_order_id,
            venue_order_id="v1",
            status=OrderStatus.NEW,
            side=Side.BUY,
            price=4_000_000,
            quantity=5,
            filled=0,
        )
    )
    assert tracker.get(order.client_order_id).status is OrderStatus.NEW  # type: ignore[union-attr]
    assert gateway.counters["settled_by_adapter"] == 1


async def test_an_order_written_inside_the_callback_is_stamped_at_every_stage_and_exported() -> None:
    from hftkit.metrics.prometheus import prometheus_text

    registry = MetricsRegistry()
    gateway, venue, tracker = make_gateway(writes_now=True, metrics=registry)
    frame_ns = time.monotonic_ns()
    decided_ns = time.monotonic_ns()
    order = gateway.prepare(buy(1, price=4_999_000))
    assert isinstance(order, Order)
    answered: list[OrderUpdate | None] = []
    assert gateway.send_now(order, decided_ns, frame_ns, answered.append)
    assert venue.requests[-1][0] is RequestKind.PLACE  # on the wire before send_now returned
    for _ in range(100):
        if answered:
            break
        await asyncio.sleep(0.001)
    # an IOC under the touch: the venue's answer (expired, unfilled) is the tracker's view
    assert answered and answered[0] is not None and answered[0].status is OrderStatus.EXPIRED
    assert tracker.get(order.client_order_id).status is OrderStatus.EXPIRED  # type: ignore[union-attr]
    for stage in (
        "frame_to_decision",
        "decision_to_send_by_venue",
        "send_to_written",
        "tick_to_trade",
        "round_trip",
    ):
        assert getattr(gateway, stage)["fake"].count == 1, stage
    text = prometheus_text(registry).decode()
    for name in ("frame_to_decision_ns", "decision_to_send_ns", "send_to_written_ns", "tick_to_trade_ns"):
        assert f"{name}" in text and 'venue="fake"' in text, name


async def test_a_venue_that_cannot_write_now_leaves_the_order_to_the_awaited_path() -> None:
    engine, venue, _tracker = make_engine()  # a FakeVenue without writes_now
    order = engine.gateway.prepare(buy(1, price=4_999_000))
    assert isinstance(order, Order)
    assert not engine.gateway.send_now(order, time.monotonic_ns(), 0, None)
    assert venue.requests == [] and engine.gateway.counters["orders_sent"] == 0
    assert (await engine.gateway.send(order)) is not None  # the awaited path still sends it


CANCEL_SCRIPTS = [
    None,
    FailureKind.REJECT,
    FailureKind.RATE_LIMITED,
    FailureKind.UNKNOWN_LOST,
    FailureKind.TRANSPORT_ERROR,
    "already_gone",
]


async def _scripted_resting_order(
    script: FailureKind | str | None, kind: RequestKind
) -> tuple[OrderGateway, FakeVenue, OrderStateTracker, str]:
    """One resting order; the next ``kind`` request on it meets ``script`` (or the order is gone)."""
    gateway, venue, tracker = make_gateway(request_timeout_s=1.0)
    order = gateway.prepare(buy(1, price=4_000_000, time_in_force=TimeInForce.GTC))
    assert isinstance(order, Order)
    assert (await gateway.send(order)) is not None
    if script == "already_gone":  # closed at the venue, its end not yet told to the tracker
        venue._orders.pop(order.client_order_id)
    elif isinstance(script, FailureKind):
        venue.fail_next(script, kind)
    return gateway, venue, tracker, order.client_order_id


async def _the_one_outcome(outcomes: list[bool]) -> bool:
    """A request written now is told its outcome later, never inside the call, exactly once."""
    assert not outcomes
    for _ in range(200):
        if outcomes:
            break
        await asyncio.sleep(0.005)
    assert len(outcomes) == 1
    return outcomes[0]


async def _cancel_outcome(written_now: bool, script: FailureKind | str | None) -> tuple[object, ...]:
    """One resting order, one scripted cancel, by the awaited path or written inside the call."""
    gateway, venue, tracker, client_order_id = await _scripted_resting_order(script, RequestKind.CANCEL)
    if written_now:
        venue.writes_now = True
        tracker.request_cancel(client_order_id)
        outcomes: list[bool] = []
        assert gateway.cancel_now("fake", SYMBOL, client_order_id, outcomes.append)
        assert venue.requests[-1] == (RequestKind.CANCEL, (SYMBOL, client_order_id))  # before it returned
        result = await _the_one_outcome(outcomes)
    else:
        result = await gateway.cancel("fake", SYMBOL, client_order_id)
    tracked = tracker.get(client_order_id)
    assert tracked is not None
    counted = {
        name: gateway.counters[name]
        for name in ("cancels_sent", "cancel_rejects", "cancel_outcome_unknown", "queries")
    }
    counted["cancel_round_trips"] = gateway.cancel_round_trip["fake"].count  # answers, not failures
    return result, tracked.status, tracked.filled, counted


@pytest.mark.parametrize("script", CANCEL_SCRIPTS, ids=lambda script: str(getattr(script, "value", script)))
async def test_a_cancel_written_inside_the_call_ends_exactly_as_the_awaited_cancel(
    script: FailureKind | str | None,
) -> None:
    awaited = await _cancel_outcome(False, script)
    written_now = await _cancel_outcome(True, script)
    assert written_now == awaited
    expected = {
        None: (True, OrderStatus.CANCELED),
        FailureKind.REJECT: (False, OrderStatus.NEW),
        FailureKind.RATE_LIMITED: (False, OrderStatus.NEW),
        FailureKind.UNKNOWN_LOST: (False, OrderStatus.NEW),  # settled by a query: still resting
        FailureKind.TRANSPORT_ERROR: (False, OrderStatus.NEW),
        "already_gone": (False, OrderStatus.CANCELED),  # the query says the venue closed it
    }[script]
    assert awaited[:2] == expected
    assert awaited[3]["cancel_round_trips"] == (1 if script is None else 0)


async def _amend_outcome(written_now: bool, script: FailureKind | str | None) -> tuple[object, ...]:
    """One resting order, one scripted amend (new price, new total), awaited or written now."""
    gateway, venue, tracker, client_order_id = await _scripted_resting_order(script, RequestKind.AMEND)
    if written_now:
        venue.writes_now = True
        assert tracker.request_amend(client_order_id, 3_999_000, 2)
        outcomes: list[bool] = []
        assert gateway.amend_now("fake", SYMBOL, client_order_id, 3_999_000, 2, outcomes.append)
        assert venue.requests[-1][0] is RequestKind.AMEND  # written before it returned
        result = await _the_one_outcome(outcomes)
    else:
        result = await gateway.amend("fake", SYMBOL, client_order_id, 3_999_000, 2)
    tracked = tracker.get(client_order_id)
    assert tracked is not None
    counted = {
        name: gateway.counters[name] for name in ("amends_sent", "amend_rejects", "amend_outcome_unknown")
    }
    counted["amend_round_trips"] = gateway.amend_round_trip["fake"].count  # answers, not failures
    return result, tracked.status, tracked.price, tracked.quantity, counted


@pytest.mark.parametrize("script", CANCEL_SCRIPTS, ids=lambda script: str(getattr(script, "value", script)))
async def test_an_amend_written_inside_the_call_ends_exactly_as_the_awaited_amend(
    script: FailureKind | str | None,
) -> None:
    awaited = await _amend_outcome(False, script)
    written_now = await _amend_outcome(True, script)
    assert written_now == awaited
    expected = {
        None: (True, OrderStatus.NEW, 3_999_000, 2),
        FailureKind.REJECT: (False, OrderStatus.NEW, 4_000_000, 1),
        FailureKind.RATE_LIMITED: (False, OrderStatus.NEW, 4_000_000, 1),
        FailureKind.UNKNOWN_LOST: (False, OrderStatus.NEW, 4_000_000, 1),  # the query: unchanged
        FailureKind.TRANSPORT_ERROR: (False, OrderStatus.NEW, 4_000_000, 1),
        "already_gone": (False, OrderStatus.CANCELED, 4_000_000, 1),  # the query: the venue closed it
    }[script]
    assert awaited[:4] == expected
    assert awaited[4]["amend_round_trips"] == (1 if script is None else 0)


async def test_a_venue_that_cannot_cancel_now_leaves_the_cancel_to_the_awaited_path() -> None:
    engine, venue, tracker = make_engine()  # a FakeVenue without writes_now
    gateway = engine.gateway
    order = gateway.prepare(buy(1, price=4_000_000, time_in_force=TimeInForce.GTC))
    assert isinstance(order, Order) and (await gateway.send(order)) is not None
    tracker.request_cancel(order.client_order_id)
    assert not gateway.cancel_now("fake", SYMBOL, order.client_order_id, None)
    assert venue.requests[-1][0] is RequestKind.PLACE and gateway.counters["cancels_sent"] == 0
    assert await gateway.cancel("fake", SYMBOL, order.client_order_id, requested=True)
