from __future__ import annotations

import logging
from decimal import Decimal
from fractions import Fraction

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hftkit.core import Fill, Order, OrderStatus, OrderType, OrderUpdate, Side, SimulatedClock
from hftkit.trading.state import (
    IN_FLIGHT_STATUSES,
    TRANSITIONS,
    DifferenceKind,
    DuplicateClientOrderIdError,
    OrderStateTracker,
    RequestKind,
    VenuePosition,
    VenueSnapshot,
)

S = OrderStatus
VENUE, SYMBOL = "binance", "BTCUSDT"


def new_order(client_order_id: str, side: Side = Side.BUY, price: int = 100, quantity: int = 10) -> Order:
    return Order(
        client_order_id=client_order_id,
        venue=VENUE,
        symbol=SYMBOL,
        side=side,
        order_type=OrderType.LIMIT,
        price=price,
        quantity=quantity,
    )


def fill(client_order_id: str, trade_id: str, lots: int, price: int = 100, side: Side = Side.BUY) -> Fill:
    return Fill(
        venue=VENUE,
        symbol=SYMBOL,
        client_order_id=client_order_id,
        venue_order_id=None,
        trade_id=trade_id,
        side=side,
        price=price,
        quantity=lots,
    )


def report(client_order_id: str | None, status: OrderStatus, filled: int = 0, **extra: object) -> OrderUpdate:
    """The venue's word on an order; its terms default to ``new_order``'s (the venue agrees)."""
    terms: dict[str, object] = {"venue_order_id": None, "side": Side.BUY, "price": 100, "quantity": 10}
    terms.update(extra)
    return OrderUpdate(
        venue=VENUE,
        symbol=SYMBOL,
        client_order_id=client_order_id or "",
        status=status,
        filled=filled,
        **terms,  # type: ignore[arg-type]
    )


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


@pytest.fixture
def tracker(clock: SimulatedClock) -> OrderStateTracker:
    return OrderStateTracker(clock=clock)


def test_order_moves_through_ack_partial_fill_and_fill(tracker: OrderStateTracker) -> None:
    order = tracker.submit(new_order("a"))
    assert order.status is S.PENDING_NEW and [o.client_order_id for o in tracker.in_flight()] == ["a"]
    assert tracker.acknowledge("a", "V1")
    assert order.status is S.NEW and tracker.by_venue_order_id(VENUE, "V1") is order
    assert tracker.in_flight() == []
    assert tracker.apply_fill(fill("a", "t1", 4))
    assert order.status is S.PARTIALLY_FILLED and order.filled == 4
    assert tracker.apply_fill(fill("a", "t2", 6))
    assert order.status is S.FILLED and order.filled == 10
    assert tracker.open_orders() == [] and tracker.get("a") is order
    assert tracker.position(VENUE, SYMBOL).quantity == 10
    assert tracker.illegal_transition_count == 0


def test_execution_report_before_the_rest_ack_is_not_an_illegal_transition(
    tracker: OrderStateTracker,
) -> None:
    order = tracker.submit(new_order("a"))
    tracker.apply_report(report("a", S.PARTIALLY_FILLED, 3, venue_order_id="V1"))
    assert order.status is S.PARTIALLY_FILLED and order.filled == 3
    assert not tracker.acknowledge("a", "V1")  # late ack: nothing to change
    assert order.status is S.PARTIALLY_FILLED
    assert tracker.illegal_transition_count == 0
    assert tracker.counters["acknowledgements_after_status"] == 1


def test_fill_before_ack_completes_the_order(tracker: OrderStateTracker) -> None:
    order = tracker.submit(new_order("a", quantity=2))
    tracker.apply_fill(fill("a", "t1", 2))
    assert order.status is S.FILLED
    tracker.acknowledge("a", "V9")  # the ack arrives after the order closed
    assert order.venue_order_id == "V9" and tracker.by_venue_order_id(VENUE, "V9") is order
    assert tracker.illegal_transition_count == 0


def test_fill_while_pending_cancel_then_cancel_reject_restores_partially_filled(
    tracker: OrderStateTracker,
) -> None:
    order = tracker.submit(new_order("a"))
    tracker.acknowledge("a", "V1")
    tracker.request_cancel("a")
    assert tracker.apply_fill(fill("a", "t1", 4))
    assert order.status is S.PENDING_CANCEL and order.filled == 4
    assert tracker.cancel_rejected("a", "order would be filled")
    assert order.status is S.PARTIALLY_FILLED
    assert tracker.illegal_transition_count == 0


def test_fill_completing_a_pending_cancel_then_cancel_reject_is_benign(tracker: OrderStateTracker) -> None:
    order = tracker.submit(new_order("a"))
    tracker.acknowledge("a", "V1")
    tracker.request_cancel("a")
    tracker.apply_fill(fill("a", "t1", 10))
    assert order.status is S.FILLED
    assert not tracker.cancel_rejected("a", "unknown order")
    assert order.status is S.FILLED
    assert tracker.counters["late_cancel_rejects"] == 1
    assert tracker.illegal_transition_count == 0


def test_cancel_requested_before_ack_and_rejected_goes_back_to_pending_new(
    tracker: OrderStateTracker,
) -> None:
    order = tracker.submit(new_order("a"))
    tracker.request_cancel("a")
    tracker.cancel_rejected("a", "unknown order")
    assert order.status is S.PENDING_NEW
    tracker.acknowledge("a", "V1")
    assert order.status is S.NEW


def test_ack_arriving_while_a_cancel_is_pending_is_remembered(tracker: OrderStateTracker) -> None:
    order = tracker.submit(new_order("a"))
    tracker.request_cancel("a")
    tracker.acknowledge("a", "V1")
    assert order.status is S.PENDING_CANCEL
    tracker.cancel_rejected("a")
    assert order.status is S.NEW


def test_cumulative_filled_never_decreases_and_stale_reports_are_ignored(tracker: OrderStateTracker) -> None:
    order = tracker.submit(new_order("a"))
    tracker.apply_report(report("a", S.PARTIALLY_FILLED, 5))
    assert not tracker.apply_report(report("a", S.NEW, 0))
    assert order.filled == 5 and order.status is S.PARTIALLY_FILLED
    assert tracker.counters["stale_reports"] == 1
    # a fill the report already counted does not push filled past the venue's figure
    tracker.apply_fill(fill("a", "t1", 5))
    assert order.filled == 5


def test_duplicate_reports_and_fills_are_idempotent(tracker: OrderStateTracker) -> None:
    order = tracker.submit(new_order("a"))
    tracker.apply_report(report("a", S.NEW, 0, venue_order_id="V1"))
    assert not tracker.apply_report(report("a", S.NEW, 0, venue_order_id="V1"))
    assert tracker.apply_fill(fill("a", "t1", 3))
    assert not tracker.apply_fill(fill("a", "t1", 3))
    assert order.filled == 3 and tracker.position(VENUE, SYMBOL).quantity == 3
    assert tracker.counters["duplicate_fills"] == 1 and tracker.counters["duplicate_reports"] == 1


def test_trade_ids_are_deduplicated_per_symbol_because_binance_numbers_them_per_symbol(
    tracker: OrderStateTracker,
) -> None:
    eth = Fill(
        venue=VENUE,
        symbol="ETHUSDT",
        client_order_id="e",
        venue_order_id=None,
        trade_id="56",
        side=Side.BUY,
        price=3_000,
        quantity=1,
    )
    assert tracker.apply_fill(fill("b", "56", 2))
    assert tracker.apply_fill(eth)
    assert not tracker.apply_fill(eth)
    assert tracker.position(VENUE, SYMBOL).quantity == 2 and tracker.position(VENUE, "ETHUSDT").quantity == 1


def test_illegal_transition_is_counted_per_pair_logged_once_and_not_applied(
    tracker: OrderStateTracker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hftkit.trading.state")
    for name in ("a", "b"):
        tracker.submit(new_order(name, quantity=2))
        tracker.apply_report(report(name, S.FILLED, 2))
        assert not tracker.apply_report(report(name, S.CANCELED, 2))
        assert tracker.get(name).status is S.FILLED  # type: ignore[union-attr]
    assert tracker.illegal_transitions[(S.FILLED, S.CANCELED)] == 2
    assert sum("illegal transition" in record.message for record in caplog.records) == 1


def test_timeout_makes_the_order_unknown_and_in_flight_until_an_event_settles_it(
    tracker: OrderStateTracker,
) -> None:
    order = tracker.submit(new_order("a"))
    assert tracker.request_timed_out("a", RequestKind.NEW)
    assert order.status is S.UNKNOWN and tracker.in_flight() == [order]
    tracker.acknowledge("a", "V1")
    assert order.status is S.NEW and tracker.in_flight() == []


def test_cancel_timeout_then_cancel_reject_restores_the_settled_status(tracker: OrderStateTracker) -> None:
    order = tracker.submit(new_order("a"))
    tracker.acknowledge("a", "V1")
    tracker.apply_fill(fill("a", "t1", 1))
    tracker.request_cancel("a")
    tracker.request_timed_out("a", RequestKind.CANCEL)
    assert order.status is S.UNKNOWN
    tracker.cancel_rejected("a")
    assert order.status is S.PARTIALLY_FILLED


def test_late_timeout_after_the_answer_is_ignored(tracker: OrderStateTracker) -> None:
    order = tracker.submit(new_order("a"))
    tracker.acknowledge("a", "V1")
    assert not tracker.request_timed_out("a")
    assert order.status is S.NEW and tracker.counters["late_timeouts"] == 1


def test_unknown_order_without_venue_trace_is_reported_lost_and_settled_by_not_found(
    tracker: OrderStateTracker, clock: SimulatedClock
) -> None:
    lost = tracker.submit(new_order("lost"))
    tracker.request_timed_out("lost")
    traced = tracker.submit(new_order("traced"))
    tracker.acknowledge("traced", "V2")
    tracker.request_cancel("traced")
    tracker.request_timed_out("traced", RequestKind.CANCEL)
    assert tracker.find_lost_orders(older_than_ns=5_000_000_000) == []
    clock.advance_seconds(6)
    assert tracker.find_lost_orders(older_than_ns=5_000_000_000) == [lost]
    assert tracker.apply_query_result("lost", None)
    assert lost.status is S.REJECTED and tracker.tracked("lost").reason.startswith("lost")  # type: ignore[union-attr]
    assert tracker.apply_query_result("traced", None)
    assert traced.status is S.CANCELED  # it existed, now it is gone
    assert tracker.in_flight() == []


def test_unacknowledged_order_past_the_threshold_is_reported_lost_once_counted(
    tracker: OrderStateTracker, clock: SimulatedClock
) -> None:
    order = tracker.submit(new_order("quiet"))
    clock.advance_seconds(2)
    assert tracker.find_lost_orders(older_than_ns=1_000_000_000) == [order]
    assert tracker.find_lost_orders(older_than_ns=1_000_000_000) == [order]
    assert tracker.counters["suspected_lost"] == 1
    tracker.acknowledge("quiet", "V1")  # a venue trace: no longer a lost candidate
    assert tracker.find_lost_orders(older_than_ns=0) == []


def test_query_result_with_a_report_settles_an_unknown_order(tracker: OrderStateTracker) -> None:
    order = tracker.submit(new_order("a"))
    tracker.request_timed_out("a")
    tracker.apply_query_result("a", report("a", S.PARTIALLY_FILLED, 2, venue_order_id="V1"))
    assert order.status is S.PARTIALLY_FILLED and order.filled == 2 and order.venue_order_id == "V1"


def test_amend_lifecycle_ack_reject_and_amend_to_filled(tracker: OrderStateTracker) -> None:
    order = tracker.submit(new_order("a", price=100, quantity=10))
    tracker.acknowledge("a", "V1")
    assert tracker.request_amend("a", 101, 8)
    assert order.status is S.PENDING_AMEND
    view = tracker.quoting_view(VENUE, SYMBOL)[0]
    assert (view.price, view.quantity) == (101, 8)  # quoting sees the target
    tracker.amend_acknowledged("a")
    assert (order.status, order.price, order.quantity) == (S.NEW, 101, 8)
    tracker.request_amend("a", 99, 8)
    tracker.amend_rejected("a", "post only would cross")
    assert (order.status, order.price) == (S.NEW, 101)
    tracker.apply_fill(fill("a", "t1", 3, price=101))
    tracker.request_amend("a", 101, 3)  # total == filled: the venue deletes the order
    tracker.amend_acknowledged("a")
    assert order.status is S.CANCELED and order.quantity == 3


def test_amend_settled_by_an_order_report_with_the_new_terms(tracker: OrderStateTracker) -> None:
    order = tracker.submit(new_order("a", price=100, quantity=10))
    tracker.acknowledge("a", "V1")
    tracker.request_amend("a", 102, 6)
    tracker.apply_report(report("a", S.NEW, 0, price=102, quantity=6, side=Side.BUY))
    assert (order.status, order.price, order.quantity) == (S.NEW, 102, 6)
    assert tracker.counters["amends_settled_by_report"] == 1


def test_timed_out_amend_is_settled_by_a_late_ack_or_by_the_venue_showing_old_terms(
    tracker: OrderStateTracker,
) -> None:
    order = tracker.submit(new_order("a", price=100, quantity=10))
    tracker.acknowledge("a", "V1")
    tracker.request_amend("a", 101, 8)
    tracker.request_timed_out("a", RequestKind.AMEND)
    assert order.status is S.UNKNOWN and tracker.quoting_view(VENUE, SYMBOL)[0].price == 101
    tracker.amend_acknowledged("a")
    assert (order.status, order.price, order.quantity) == (S.NEW, 101, 8)
    tracker.request_amend("a", 102, 8)
    tracker.request_timed_out("a", RequestKind.AMEND)
    tracker.apply_report(report("a", S.NEW, 0, price=101, quantity=8, side=Side.BUY))
    assert (order.status, order.price) == (S.NEW, 101)
    assert tracker.quoting_view(VENUE, SYMBOL)[0].price == 101  # the abandoned target is forgotten


def test_new_order_rejected_while_its_cancel_is_pending(tracker: OrderStateTracker) -> None:
    order = tracker.submit(new_order("a"))
    tracker.request_cancel("a")
    assert tracker.reject("a", "insufficient balance")
    assert order.status is S.REJECTED and tracker.illegal_transition_count == 0


def test_amend_is_refused_while_a_request_is_in_flight(tracker: OrderStateTracker) -> None:
    tracker.submit(new_order("a"))
    assert not tracker.request_amend("a", 101, 5)
    assert tracker.counters["amends_refused"] == 1


def test_bad_input_is_classified_counted_and_never_crashes(tracker: OrderStateTracker) -> None:
    tracker.submit(new_order("a"))
    with pytest.raises(DuplicateClientOrderIdError):
        tracker.submit(new_order("a"))
    with pytest.raises(ValueError):
        tracker.submit(new_order("b", quantity=0))
    assert not tracker.acknowledge("nope", "V")
    assert not tracker.apply_fill(fill("a", "bad", 0))
    assert not tracker.apply_report(report("a", S.UNKNOWN, 0))
    assert not tracker.apply_report(report("ghost", S.CANCELED, 0))
    counters = tracker.counters
    assert counters["duplicate_client_order_id"] == 1 and counters["invalid_order"] == 1
    assert counters["acknowledge_for_unknown_orders"] == 1 and counters["invalid_fills"] == 1
    assert counters["invalid_reports"] == 1 and counters["reports_for_unknown_orders"] == 1


def test_fill_for_an_untracked_order_still_moves_the_position(tracker: OrderStateTracker) -> None:
    assert tracker.apply_fill(fill("other-session", "t1", 2, side=Side.SELL))
    assert tracker.position(VENUE, SYMBOL).quantity == -2
    assert tracker.counters["fills_for_unknown_orders"] == 1


def test_open_report_for_an_unknown_order_adopts_it(tracker: OrderStateTracker) -> None:
    assert tracker.apply_report(
        report(None, S.NEW, 0, venue_order_id="V7", side=Side.SELL, price=105, quantity=3)
    )
    adopted = tracker.by_venue_order_id(VENUE, "V7")
    assert adopted is not None and adopted.status is S.NEW and adopted.side is Side.SELL


def test_listeners_see_changes_and_a_failing_listener_is_counted(tracker: OrderStateTracker) -> None:
    changes: list[tuple[str, OrderStatus, OrderStatus]] = []
    fills: list[tuple[str, int]] = []
    tracker.add_order_listener(
        lambda order, previous: changes.append((order.client_order_id, previous, order.status))
    )
    tracker.add_fill_listener(lambda fill, position: fills.append((fill.trade_id, position.quantity)))

    def broken(order: Order, previous: OrderStatus) -> None:
        raise RuntimeError("persistence down")

    tracker.add_order_listener(broken)
    tracker.submit(new_order("a"))
    tracker.acknowledge("a", "V1")
    tracker.apply_fill(fill("a", "t1", 10))
    assert changes == [
        ("a", S.PENDING_NEW, S.PENDING_NEW),
        ("a", S.PENDING_NEW, S.NEW),
        ("a", S.NEW, S.FILLED),
    ]
    assert fills == [("t1", 10)]
    assert tracker.counters["listener_errors"] == 3


def test_terminal_orders_live_in_a_bounded_lru_over_a_million_orders() -> None:
    tracker = OrderStateTracker(clock=SimulatedClock(), terminal_capacity=1_000, trade_memory=1_000)
    submit, acknowledge, reject, apply_fill = (
        tracker.submit,
        tracker.acknowledge,
        tracker.reject,
        tracker.apply_fill,
    )
    for index in range(1_000_000):
        client_order_id = f"o{index}"
        submit(
            Order(
                client_order_id=client_order_id,
                venue=VENUE,
                symbol=SYMBOL,
                side=Side.BUY,
                order_type=OrderType.LIMIT,
                price=100,
                quantity=1,
            )
        )
        if index % 100 == 0:
            acknowledge(client_order_id, f"V{index}")
            apply_fill(fill(client_order_id, f"t{index}", 1))
        else:
            reject(client_order_id)
    footprint = tracker.memory_footprint()
    assert footprint["terminal"] == 1_000 and footprint["active"] == 0 and tracker.in_flight() == []
    assert footprint["venue_index"] <= 1_000 and footprint["trades"] <= 1_000
    assert tracker.get("o999999") is not None and tracker.get("o0") is None
    assert tracker.position(VENUE, SYMBOL).quantity == 10_000


# reconciliation -------------------------------------------------------------------------------


def test_reconcile_adopts_closes_settles_and_reports_every_difference(
    tracker: OrderStateTracker, clock: SimulatedClock
) -> None:
    open_local = tracker.submit(new_order("open-local"))
    tracker.acknowledge("open-local", "V1")
    vanished = tracker.submit(new_order("vanished"))
    tracker.acknowledge("vanished", "V2")
    never_arrived = tracker.submit(new_order("never-arrived"))
    unknown = tracker.submit(new_order("unknown"))
    tracker.request_timed_out("unknown")
    clock.advance(1_000)
    taken_ns = clock.monotonic_ns()
    clock.advance(1_000)
    too_new = tracker.submit(new_order("too-new"))
    tracker.update_balance(VENUE, "USDT", Decimal("100"))
    snapshot = VenueSnapshot(
        venue=VENUE,
        taken_ns=taken_ns,
        orders=[
            report("open-local", S.NEW, 0, venue_order_id="V1", side=Side.BUY, price=100, quantity=10),
            report("unknown", S.NEW, 0, venue_order_id="V3", side=Side.BUY, price=100, quantity=10),
            report("foreign", S.NEW, 0, venue_order_id="V4", side=Side.SELL, price=110, quantity=1),
        ],
        balances={"USDT": Decimal("90"), "BTC": Decimal("1")},
        positions=[VenuePosition(SYMBOL, 5, 100)],
    )
    result = tracker.reconcile(snapshot)
    kinds = {difference.kind for difference in result.differences}
    assert kinds == {
        DifferenceKind.ADOPTED,
        DifferenceKind.CLOSED_MISSING,
        DifferenceKind.LOST,
        DifferenceKind.SETTLED_UNKNOWN,
        DifferenceKind.POSITION_OVERWRITTEN,
        DifferenceKind.BALANCE_OVERWRITTEN,
    }
    assert open_local.status is S.NEW
    assert vanished.status is S.CANCELED and result.of_kind(DifferenceKind.CLOSED_MISSING)[0].needs_query
    assert never_arrived.status is S.REJECTED
    assert unknown.status is S.NEW and unknown.venue_order_id == "V3"
    assert too_new.status is S.PENDING_NEW  # sent after the snapshot was requested
    assert tracker.by_venue_order_id(VENUE, "V4") is not None
    assert tracker.position(VENUE, SYMBOL).quantity == 5
    assert tracker.balances[(VENUE, "USDT")] == Decimal("90")
    assert result.count(DifferenceKind.BALANCE_OVERWRITTEN) == 2
    again = tracker.reconcile(
        VenueSnapshot(
            venue=VENUE,
            taken_ns=taken_ns,
            orders=snapshot.orders,
            balances=snapshot.balances,
            positions=snapshot.positions,
        )
    )
    assert again.is_clean, again.differences


def test_reconcile_synthesizes_missing_fills_and_reverses_them_when_real_fills_arrive(
    tracker: OrderStateTracker,
) -> None:
    order = tracker.submit(new_order("a", quantity=10))
    tracker.acknowledge("a", "V1")
    tracker.apply_fill(fill("a", "t1", 2))
    snapshot = VenueSnapshot(
        venue=VENUE,
        orders=[
            report("a", S.PARTIALLY_FILLED, 6, venue_order_id="V1", side=Side.BUY, price=100, quantity=10)
        ],
    )
    result = tracker.reconcile(snapshot)
    assert result.count(DifferenceKind.FILL_ADJUSTED) == 1
    assert [(f.quantity, f.trade_id.startswith("reconcile:")) for f in result.synthetic_fills] == [(4, True)]
    assert order.filled == 6 and tracker.position(VENUE, SYMBOL).quantity == 6
    # the real fills behind the venue's figure arrive late, at a better price than the credit
    tracker.apply_fill(fill("a", "t2", 3, price=99))
    tracker.apply_fill(fill("a", "t3", 1, price=99))
    position = tracker.position(VENUE, SYMBOL)
    assert order.filled == 6 and position.quantity == 6
    assert position.open_cost == 2 * 100 + 4 * 99  # exactly the real fills
    tracker.apply_fill(fill("a", "t4", 4, price=100))
    assert order.status is S.FILLED and position.quantity == 10


def test_reconcile_reopens_an_order_closed_locally_but_open_at_the_venue(tracker: OrderStateTracker) -> None:
    order = tracker.submit(new_order("a"))
    tracker.apply_query_result("a", None)  # wrongly settled as lost
    assert order.status is S.REJECTED
    result = tracker.reconcile(
        VenueSnapshot(
            venue=VENUE,
            orders=[report("a", S.NEW, 0, venue_order_id="V1", side=Side.BUY, price=100, quantity=10)],
        )
    )
    assert result.count(DifferenceKind.REOPENED) == 1
    assert order.status is S.NEW and tracker.open_orders(VENUE, SYMBOL) == [order]


def test_reconcile_keeps_a_pending_cancel_the_snapshot_does_not_contradict(
    tracker: OrderStateTracker,
) -> None:
    order = tracker.submit(new_order("a"))
    tracker.acknowledge("a", "V1")
    tracker.request_cancel("a")
    result = tracker.reconcile(
        VenueSnapshot(
            venue=VENUE,
            orders=[report("a", S.NEW, 0, venue_order_id="V1", side=Side.BUY, price=100, quantity=10)],
        )
    )
    assert result.is_clean and order.status is S.PENDING_CANCEL


def test_reconcile_scope_leaves_other_symbols_alone(tracker: OrderStateTracker) -> None:
    other = Order(
        client_order_id="eth",
        venue=VENUE,
        symbol="ETHUSDT",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        price=10,
        quantity=1,
    )
    tracker.submit(other)
    tracker.acknowledge("eth", "V5")
    result = tracker.reconcile(VenueSnapshot(venue=VENUE, symbols=frozenset({SYMBOL})))
    assert result.is_clean and other.status is S.NEW


def test_reconcile_overwrites_positions_absent_at_the_venue_to_flat(tracker: OrderStateTracker) -> None:
    tracker.apply_fill(fill("x", "t1", 3))
    result = tracker.reconcile(VenueSnapshot(venue=VENUE, positions=[]))
    assert result.count(DifferenceKind.POSITION_OVERWRITTEN) == 1
    assert tracker.position(VENUE, SYMBOL).quantity == 0
    tracker.reconcile(VenueSnapshot(venue=VENUE, positions=[VenuePosition(SYMBOL, -2, Fraction(201, 2))]))
    assert tracker.position(VENUE, SYMBOL).average_price == Fraction(201, 2)


# property: random event sequences ------------------------------------------------------------

ORDER_IDS = ["o0", "o1", "o2"]
event_strategy = st.one_of(
    st.tuples(st.just("submit"), st.sampled_from(ORDER_IDS)),
    st.tuples(st.just("ack"), st.sampled_from(ORDER_IDS)),
    st.tuples(st.just("reject"), st.sampled_from(ORDER_IDS)),
    st.tuples(st.just("fill"), st.sampled_from(ORDER_IDS), st.integers(1, 6), st.integers(0, 8)),
    st.tuples(
        st.just("report"),
        st.sampled_from(ORDER_IDS),
        st.sampled_from([S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED, S.PENDING_CANCEL]),
        st.integers(0, 10),
    ),
    st.tuples(st.just("cancel"), st.sampled_from(ORDER_IDS)),
    st.tuples(st.just("cancel_ack"), st.sampled_from(ORDER_IDS)),
    st.tuples(st.just("cancel_reject"), st.sampled_from(ORDER_IDS)),
    st.tuples(st.just("amend"), st.sampled_from(ORDER_IDS), st.integers(95, 105), st.integers(1, 12)),
    st.tuples(st.just("amend_ack"), st.sampled_from(ORDER_IDS)),
    st.tuples(st.just("amend_reject"), st.sampled_from(ORDER_IDS)),
    st.tuples(st.just("timeout"), st.sampled_from(ORDER_IDS), st.sampled_from(list(RequestKind))),
    st.tuples(st.just("not_found"), st.sampled_from(ORDER_IDS)),
)


@settings(max_examples=400, deadline=None)
@given(events=st.lists(event_strategy, max_size=40))
@example(  # an adopted order filled, evicted as terminal, then its id submitted again
    events=[
        ("submit", "o0"),
        ("submit", "o2"),
        ("report", "o1", S.NEW, 4),
        ("fill", "o1", 6, 0),
        ("report", "o2", S.FILLED, 0),
        ("reject", "o0"),
        ("submit", "o1"),
    ]
)
def test_random_event_sequences_never_take_an_illegal_path(events: list[tuple[object, ...]]) -> None:
    tracker = OrderStateTracker(clock=SimulatedClock(), terminal_capacity=2)
    observed: list[tuple[OrderStatus, OrderStatus]] = []
    tracker.add_order_listener(lambda order, previous: observed.append((previous, order.status)))
    applied_lots = 0
    filled_seen: dict[str, int] = {}
    submitted: set[str] = set()
    for event in events:
        kind, client_order_id = event[0], str(event[1])
        if kind == "submit":
            if client_order_id in submitted or client_order_id in filled_seen:
                # one order per client id in this model: tracked now, or adopted from a report
                # and since forgotten (a terminal order evicted past terminal_capacity; a new
                # order reusing its id is another order, which filled_seen would confuse with it)
                continue
            submitted.add(client_order_id)
            tracker.submit(new_order(client_order_id))
        elif kind == "ack":
            tracker.acknowledge(client_order_id, f"V-{client_order_id}")
        elif kind == "reject":
            tracker.reject(client_order_id)
        elif kind == "fill":
            lots, trade = int(event[2]), int(event[3])  # type: ignore[call-overload]
            if tracker.apply_fill(fill(client_order_id, f"t{trade}", lots)):
                applied_lots += lots
        elif kind == "report":
            tracker.apply_report(report(client_order_id, event[2], int(event[3])))  # type: ignore[arg-type, call-overload]
        elif kind == "cancel":
            tracker.request_cancel(client_order_id)
        elif kind == "cancel_ack":
            tracker.cancel_acknowledged(client_order_id)
        elif kind == "cancel_reject":
            tracker.cancel_rejected(client_order_id)
        elif kind == "amend":
            tracker.request_amend(client_order_id, int(event[2]), int(event[3]))  # type: ignore[call-overload]
        elif kind == "amend_ack":
            tracker.amend_acknowledged(client_order_id)
        elif kind == "amend_reject":
            tracker.amend_rejected(client_order_id)
        elif kind == "timeout":
            tracker.request_timed_out(client_order_id, event[2])  # type: ignore[arg-type]
        elif kind == "not_found":
            tracker.apply_query_result(client_order_id, None)
        for order in tracker.all_orders():
            assert order.filled >= filled_seen.get(order.client_order_id, 0), "cumulative filled went down"
            filled_seen[order.client_order_id] = order.filled
            in_flight = any(candidate is order for candidate in tracker.in_flight())
            is_open = any(candidate is order for candidate in tracker.open_orders())
            assert (order.status in IN_FLIGHT_STATUSES) == in_flight
            assert order.status.is_terminal != is_open
    for previous, status in observed:
        assert previous is status or status in TRANSITIONS[previous], f"{previous} -> {status}"
    assert tracker.position(VENUE, SYMBOL).quantity == applied_lots


def test_a_fee_reported_after_its_fill_is_booked_on_the_position(tracker: OrderStateTracker) -> None:
    from hftkit.core.types import FeeCharge

    charge = FeeCharge(
        venue="thalex", symbol="BTC-PERPETUAL", client_order_id="a", trade_id="t1", fee=1.18, fee_asset="USD"
    )
    tracker.apply_fee(charge)
    tracker.apply_fee(msgspec.structs.replace(charge, trade_id="t2", fee=0.5))
    assert tracker.position("thalex", "BTC-PERPETUAL").fees == {"USD": pytest.approx(1.68)}
