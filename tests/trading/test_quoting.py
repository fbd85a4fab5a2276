from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.core import (
    ContractKind,
    Fill,
    Instrument,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Quote,
    Side,
    SimulatedClock,
    TimeInForce,
)
from hftkit.trading.quoting import (
    AmendOrder,
    AmendSupport,
    CancelOrder,
    OpenOrder,
    QuoteAction,
    QuoteTarget,
    QuotingPolicy,
    QuotingService,
    QuotingShell,
    normalize_ladder,
    plan_quotes,
)
from hftkit.trading.state import OrderStateTracker


def quote_order(*, price: int, quantity: int, level: int, side: Side = Side.BUY) -> OrderIntent:
    """A quote the planner places: a post-only GTC order on one rung of the ladder."""
    return OrderIntent(
        venue="sim",
        symbol="XY",
        side=side,
        quantity=quantity,
        price=price,
        order_type=OrderType.LIMIT_MAKER,
        time_in_force=TimeInForce.GTC,
        level=level,
    )


BUY, SELL = Side.BUY, Side.SELL
S = OrderStatus
PLAIN = Instrument("sim", "XY", "X", "Y", "1", "1")  # one tick = 1, one lot = 1, no minimums
SPOT = Instrument("binance", "BTCUSDT", "BTC", "USDT", "0.01", "0.00001", min_notional="5")


def ladder(side: Side, prices: Sequence[int], size: int = 10) -> list[Quote]:
    return [Quote(side, price, size, level) for level, price in enumerate(prices)]


def resting(side: Side, prices: Sequence[int], size: int = 10, prefix: str = "") -> list[OpenOrder]:
    tag = prefix or side.value
    return [
        OpenOrder(client_order_id=f"{tag}{index}", side=side, price=price, quantity=size)
        for index, price in enumerate(prices)
    ]


def test_nothing_to_do_when_the_ladder_is_already_resting() -> None:
    desired = ladder(BUY, [100, 99, 98]) + ladder(SELL, [101, 102, 103])
    orders = resting(BUY, [100, 99, 98]) + resting(SELL, [101, 102, 103])
    plan = plan_quotes(PLAIN, desired, orders, QuotingPolicy())
    assert plan.actions == [] and plan.kept == 6


def test_moved_levels_cost_a_cancel_and_a_place_each_without_amend() -> None:
    desired = ladder(BUY, [100, 99, 97]) + ladder(SELL, [101, 102, 104])
    orders = resting(BUY, [100, 99, 98]) + resting(SELL, [101, 102, 103])
    plan = plan_quotes(PLAIN, desired, orders, QuotingPolicy())
    assert {(a.side, a.price) for a in plan.cancels} == {(BUY, 98), (SELL, 103)}
    assert {(a.side, a.price) for a in plan.places} == {(BUY, 97), (SELL, 104)}
    assert plan.actions[:2] == plan.cancels  # cancels go first


def test_moved_levels_become_amends_when_the_venue_can_amend() -> None:
    desired = ladder(BUY, [100, 99, 97])
    orders = resting(BUY, [100, 99, 98])
    plan = plan_quotes(PLAIN, desired, orders, QuotingPolicy(amend=AmendSupport.FULL))
    assert plan.actions == [
        AmendOrder(venue="sim", symbol="XY", client_order_id="buy2", side=BUY, price=97, size=10, quantity=10)
    ]


def test_size_down_at_the_same_price_is_an_amend_that_keeps_priority() -> None:
    orders = [OpenOrder(client_order_id="a", side=SELL, price=105, quantity=10, filled=2)]
    plan = plan_quotes(PLAIN, [Quote(SELL, 105, 5)], orders, QuotingPolicy(amend=AmendSupport.SIZE_DOWN))
    assert plan.actions == [
        AmendOrder(
            venue="sim",
            symbol="XY",
            client_order_id="a",
            side=SELL,
            price=105,
            size=5,
            quantity=7,  # new total = filled + wanted remaining (volume-safe amend)
            keeps_priority=True,
        )
    ]
    size_up = plan_quotes(PLAIN, [Quote(SELL, 105, 12)], orders, QuotingPolicy(amend=AmendSupport.SIZE_DOWN))
    assert [type(action) for action in size_up.actions] == [CancelOrder, OrderIntent]


def test_duplicate_orders_on_one_level_keep_one_and_cancel_the_rest() -> None:
    orders = resting(BUY, [100, 100, 100])
    plan = plan_quotes(PLAIN, [Quote(BUY, 100, 10)], orders, QuotingPolicy())
    assert plan.kept == 1 and len(plan.cancels) == 2 and not plan.places


def test_tolerances_keep_orders_close_enough() -> None:
    orders = [OpenOrder(client_order_id="a", side=BUY, price=99, quantity=104)]
    policy = QuotingPolicy(price_tolerance=1, size_tolerance_bps=500)
    assert plan_quotes(PLAIN, [Quote(BUY, 100, 100)], orders, policy).actions == []
    tight = QuotingPolicy(price_tolerance=1, size_tolerance_bps=300)
    assert len(plan_quotes(PLAIN, [Quote(BUY, 100, 100)], orders, tight).actions) == 2
    by_lots = QuotingPolicy(price_tolerance=1, size_tolerance_lots=4)
    assert plan_quotes(PLAIN, [Quote(BUY, 100, 100)], orders, by_lots).actions == []


def test_pending_new_covers_its_level_and_pending_cancel_does_not() -> None:
    orders = [
        OpenOrder(client_order_id="new", side=BUY, price=100, quantity=3, status=S.PENDING_NEW),
        OpenOrder(client_order_id="going", side=BUY, price=99, quantity=10, status=S.PENDING_CANCEL),
        OpenOrder(client_order_id="unsure", side=BUY, price=50, quantity=10, status=S.UNKNOWN),
    ]
    plan = plan_quotes(PLAIN, ladder(BUY, [100, 99]), orders, QuotingPolicy())
    assert plan.actions == [quote_order(price=99, quantity=10, level=1)]
    assert plan.kept == 1  # the locked UNKNOWN order is neither counted live nor cancelled


def test_an_order_being_amended_covers_its_target_level() -> None:
    tracker = OrderStateTracker(clock=SimulatedClock())
    tracker.submit(
        Order(
            client_order_id="a",
            venue="sim",
            symbol="XY",
            side=BUY,
            order_type=OrderType.LIMIT,
            price=98,
            quantity=10,
        )
    )
    tracker.acknowledge("a", "V1")
    tracker.request_amend("a", 100, 10)
    plan = plan_quotes(PLAIN, [Quote(BUY, 100, 10)], tracker.quoting_view("sim", "XY"), QuotingPolicy())
    assert plan.actions == [] and plan.kept == 1


def test_plans_driven_by_the_tracker_never_place_a_level_twice() -> None:
    tracker = OrderStateTracker(clock=SimulatedClock())
    service = QuotingService()
    desired = tuple(ladder(BUY, [100, 99]) + ladder(SELL, [101]))

    def plan():  # type: ignore[no-untyped-def]
        return service.plan(
            PLAIN, desired, tracker.quoting_view("sim", "XY"), tracker.state_version("sim", "XY")
        )

    first = plan()
    assert len(first.places) == 3
    for index, place in enumerate(first.places):
        tracker.submit(
            Order(
                client_order_id=f"q{index}",
                venue="sim",
                symbol="XY",
                side=place.side,
                order_type=OrderType.LIMIT_MAKER,
                price=place.price,
                quantity=place.quantity,
            )
        )
    assert plan().actions == []  # pending-new orders cover their levels before any ack
    assert plan().unchanged  # nothing moved since: early exit
    tracker.acknowledge("q0", "V0")
    tracker.apply_fill(
        Fill(
            venue="sim",
            symbol="XY",
            client_order_id="q0",
            venue_order_id="V0",
            trade_id="t1",
            side=BUY,
            price=100,
            quantity=10,
        )
    )
    refill = plan()
    assert not refill.unchanged and refill.places == [quote_order(price=100, quantity=10, level=0)]


def test_ladder_is_normalized_to_the_grid_merged_and_filtered_by_minimums() -> None:
    policy = QuotingPolicy(price_increment=5, size_increment=100)
    desired = [
        Quote(BUY, 5_000_003, 250),  # -> 5_000_000, 200
        Quote(BUY, 5_000_001, 150),  # same rounded price: merged -> 300
        Quote(SELL, 5_000_006, 99),  # size rounds to 0: dropped
        Quote(SELL, 5_000_006, 1_000),  # -> 5_000_010
        Quote(SELL, 10, 100),  # 0.10 USDT * 0.001 BTC: under the 5 USDT minimum notional
    ]
    bids, asks, dropped = normalize_ladder(SPOT, desired, policy)
    assert bids == {5_000_000: Quote(BUY, 5_000_000, 300, 0)}
    assert asks == {5_000_010: Quote(SELL, 5_000_010, 1_000, 0)}
    assert dropped == 3


@settings(max_examples=300, deadline=None)
@given(price=st.integers(1, 10**9), lots=st.integers(1, 10**7))
def test_the_integer_minimums_equal_the_exact_decimal_notional(price: int, lots: int) -> None:
    for instrument in (
        SPOT,
        Instrument(
            "thalex",
            "BTC-PERPETUAL",
            "BTC",
            "USD",
            "1",
            "0.0001",
            min_notional="0.5",
            min_quantity="0.001",
            max_quantity="100",
        ),
        # a contract size that divides nothing evenly: the threshold is still exact
        Instrument(
            "binance", "X", "X", "USD", "0.7", "0.003", "10", ContractKind.PERPETUAL, contract_size="0.3"
        ),
    ):
        exact = (
            lots >= instrument.min_quantity
            and (instrument.max_quantity is None or lots <= instrument.max_quantity)
            and instrument.notional(price, lots) >= instrument.min_notional
        )
        assert instrument.meets_minimums(price, lots) == exact


def test_rate_budget_sends_cancels_first_then_levels_nearest_the_touch() -> None:
    desired = ladder(BUY, [100, 99, 98, 97])
    orders = resting(BUY, [90, 89])
    plan = plan_quotes(PLAIN, desired, orders, QuotingPolicy(), budget=4)
    assert [type(action) for action in plan.actions] == [CancelOrder, CancelOrder, OrderIntent, OrderIntent]
    assert [action.price for action in plan.places] == [100, 99]
    assert plan.deferred == 2


def test_service_exits_early_only_when_ladder_and_state_are_unchanged() -> None:
    service = QuotingService()
    desired = tuple(ladder(BUY, [100, 99]))
    orders = resting(BUY, [100, 99])
    assert not service.plan(PLAIN, desired, orders, state_version=7).unchanged
    assert service.plan(PLAIN, desired, orders, state_version=7).unchanged
    assert service.plan(PLAIN, list(desired), orders, state_version=7).unchanged  # equal, not identical
    assert not service.plan(PLAIN, desired, orders, state_version=8).unchanged
    moved = tuple(ladder(BUY, [101, 99]))
    first = service.plan(PLAIN, moved, orders, state_version=8)
    assert len(first.actions) == 2
    again = service.plan(PLAIN, moved, orders, state_version=8)  # actions not sent: still planned
    assert again.actions == first.actions and service.skipped == 2


def test_service_reads_open_orders_lazily_only_when_it_must_plan() -> None:
    service = QuotingService()
    desired = tuple(ladder(BUY, [100]))
    reads: list[int] = []

    def view() -> list[OpenOrder]:
        reads.append(1)
        return resting(BUY, [100])

    service.plan(PLAIN, desired, view, state_version=1)
    assert service.plan(PLAIN, desired, view, state_version=1).unchanged
    assert len(reads) == 1


def test_deferred_plans_are_never_cached_as_in_sync() -> None:
    service = QuotingService()
    desired = ladder(BUY, [100])
    assert service.plan(PLAIN, desired, [], state_version=1, budget=0).deferred == 1
    assert len(service.plan(PLAIN, desired, [], state_version=1, budget=1).actions) == 1


async def test_shell_quotes_venues_concurrently_and_isolates_a_failing_venue() -> None:
    sent: dict[str, list[QuoteAction]] = {}
    both_started = asyncio.Event()
    started: set[str] = set()

    def sender(venue: str):  # type: ignore[no-untyped-def]
        async def send(actions: list[QuoteAction]) -> None:
            started.add(venue)
            if len(started) == 2:
                both_started.set()
            await asyncio.wait_for(both_started.wait(), 1)  # proves the two venues overlap
            if venue == "bad":
                raise ConnectionError("venue down")
            sent[venue] = actions

        return send

    good = Instrument("good", "XY", "X", "Y", "1", "1")
    bad = Instrument("bad", "XY", "X", "Y", "1", "1")
    shell = QuotingShell(
        services={"good": QuotingService(), "bad": QuotingService()},
        senders={"good": sender("good"), "bad": sender("bad")},
        open_orders=lambda venue, symbol: [],
    )
    plans = await shell.update(
        {
            "good": [QuoteTarget(good, tuple(ladder(BUY, [100])))],
            "bad": [QuoteTarget(bad, tuple(ladder(SELL, [101])))],
        }
    )
    assert [action.price for action in sent["good"]] == [100]  # type: ignore[union-attr]
    assert len(plans["good"]) == 1 and plans["bad"] == []
    assert shell.send_errors == {"good": 0, "bad": 1}


def test_shell_needs_a_sender_for_every_service() -> None:
    with pytest.raises(ValueError, match="sender"):
        QuotingShell(services={"a": QuotingService()}, senders={}, open_orders=lambda venue, symbol: [])


# property: reconcile any open set into the desired set, minimally ------------------------------

STATUS_WEIGHTS = [S.NEW] * 4 + [S.PARTIALLY_FILLED, S.PENDING_NEW, S.PENDING_CANCEL, S.UNKNOWN]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Quote], list[OpenOrder], QuotingPolicy]:
    amend = draw(st.sampled_from(list(AmendSupport)))
    tolerance = draw(st.integers(0, 2))
    policy = QuotingPolicy(
        price_tolerance=tolerance,
        size_tolerance_lots=draw(st.integers(0, 2)),
        size_tolerance_bps=draw(st.sampled_from([0, 1_000])),
        amend=amend,
    )
    desired: list[Quote] = []
    orders: list[OpenOrder] = []
    for side in (BUY, SELL):
        prices = draw(st.lists(st.integers(90, 100), unique=True, max_size=4))
        desired += [Quote(side, price, draw(st.integers(1, 12)), level) for level, price in enumerate(prices)]
        for index in range(draw(st.integers(0, 4))):
            quantity = draw(st.integers(1, 12))
            status = draw(st.sampled_from(STATUS_WEIGHTS))
            filled = draw(st.integers(0, quantity - 1)) if status is S.PARTIALLY_FILLED else 0
            orders.append(
                OpenOrder(
                    client_order_id=f"{side.value}{index}",
                    side=side,
                    price=draw(st.integers(88, 102)),
                    quantity=quantity,
                    filled=filled,
                    status=status,
                )
            )
    return desired, orders, policy


def locked_coverage(desired: dict[int, int], locked: list[OpenOrder], tolerance: int) -> dict[int, int]:
    """Quoting's rule for in-flight orders: each covers its own price, else the nearest one."""
    uncovered = dict(desired)
    for order in locked:
        for candidate in [order.price] + [
            price
            for offset in range(1, tolerance + 1)
            for price in (order.price - offset, order.price + offset)
        ]:
            if candidate in uncovered:
                del uncovered[candidate]
                break
    return uncovered


def brute_force_minimum(desired: dict[int, int], orders: list[OpenOrder], policy: QuotingPolicy) -> int:
    """Try every keep/amend/cancel choice per order; count actions of the best."""
    levels = list(desired.items())
    best = len(orders) + len(levels)
    choices_per_order = []
    for order in orders:
        remaining = order.quantity - order.filled
        options: list[tuple[str, int | None]] = [("cancel", None)]
        for index, (price, size) in enumerate(levels):
            if abs(order.price - price) <= policy.price_tolerance and policy.size_matches(remaining, size):
                options.append(("keep", index))
            if policy.amend is AmendSupport.FULL or (
                policy.amend is AmendSupport.SIZE_DOWN and order.price == price and size < remaining
            ):
                options.append(("amend", index))
        choices_per_order.append(options)
    for choice in itertools.product(*choices_per_order):
        used = [index for _, index in choice if index is not None]
        if len(used) != len(set(used)):
            continue
        cost = sum(1 for kind, _ in choice if kind != "keep") + len(levels) - len(used)
        best = min(best, cost)
    return best


@settings(max_examples=400, deadline=None)
@given(scenario=scenarios())
def test_plan_turns_any_open_set_into_the_desired_set_with_minimal_actions(
    scenario: tuple[list[Quote], list[OpenOrder], QuotingPolicy],
) -> None:
    desired, orders, policy = scenario
    plan = plan_quotes(PLAIN, desired, orders, policy)
    by_id = {order.client_order_id: order for order in orders}
    for side in (BUY, SELL):
        wanted = {quote.price: quote.size for quote in desired if quote.side is side}
        side_orders = [order for order in orders if order.side is side]
        locked = [o for o in side_orders if o.status in (S.PENDING_NEW, S.UNKNOWN, S.PENDING_AMEND)]
        actionable = [o for o in side_orders if o.status in (S.NEW, S.PARTIALLY_FILLED)]
        uncovered = locked_coverage(wanted, locked, policy.price_tolerance)
        side_actions = [action for action in plan.actions if action.side is side]
        # never act on an order that is not live and settled
        for action in side_actions:
            if not isinstance(action, OrderIntent):
                assert by_id[action.client_order_id].status in (S.NEW, S.PARTIALLY_FILLED)
        # apply the actions to the open set
        live = {order.client_order_id: (order.price, order.quantity - order.filled) for order in actionable}
        placed = []
        for action in side_actions:
            if isinstance(action, CancelOrder):
                del live[action.client_order_id]
            elif isinstance(action, AmendOrder):
                assert action.quantity == by_id[action.client_order_id].filled + action.size
                live[action.client_order_id] = (action.price, action.size)
            else:
                placed.append((action.price, action.quantity))
        final = list(live.values()) + placed
        # exactly the uncovered levels remain, each matched by one distinct order: no duplicates
        assert len(final) == len(uncovered)
        targets = list(uncovered.items())
        assert any(
            all(
                abs(price - targets[index][0]) <= policy.price_tolerance
                and policy.size_matches(size, targets[index][1])
                for (price, size), index in zip(final, permutation, strict=True)
            )
            for permutation in itertools.permutations(range(len(targets)))
        ), (final, targets)
        if policy.amend is AmendSupport.SIZE_DOWN and policy.price_tolerance:
            continue  # documented: maximum keep set first, amends among the rest (may be one above)
        assert len(side_actions) == brute_force_minimum(uncovered, actionable, policy)


def test_a_plan_starved_by_the_budget_is_reused_until_the_budget_or_the_inputs_change() -> None:
    service = QuotingService()
    desired = tuple(ladder(BUY, [100, 99]))
    budget_reads: list[int] = []
    budget_now = 0

    def budget() -> int:
        budget_reads.append(budget_now)
        return budget_now

    first = service.plan(PLAIN, desired, [], state_version=3, budget=budget)
    assert first.deferred == 2 and not first.actions and service.plans == 1
    again = service.plan(PLAIN, desired, [], state_version=3, budget=budget)
    assert again.deferred == 2 and not again.actions and again.unchanged  # counted again, not re-planned
    assert service.plans == 1 and service.skipped == 1 and len(budget_reads) == 2
    budget_now = 1  # one request affordable now: planned afresh, the best level goes out
    refilled = service.plan(PLAIN, desired, [], state_version=3, budget=budget)
    assert [action.price for action in refilled.places] == [100] and refilled.deferred == 1
    assert service.plans == 2 and len(budget_reads) == 3  # the budget was read once for that plan
    budget_now = 0
    service.plan(PLAIN, desired, [], state_version=4, budget=budget)  # starved again, new state
    moved = tuple(ladder(BUY, [101, 99]))
    assert service.plan(PLAIN, moved, [], state_version=4, budget=budget).deferred == 2
    assert service.plans == 4  # another ladder is another plan
    assert service.plan(PLAIN, moved, [], state_version=5, budget=budget).deferred == 2
    assert service.plans == 5  # and so is another order state
