"""``hftkit bench trading``: quoting reconcile latency, order-state-tracker throughput, a route.

The baselines are figures a reference system publishes (8.7 ms per reconcile, 1,500 state
updates/s); they are quoted, not measured here, and every row says so. Rows come from the
producers in ``ROW_PRODUCERS``: append a function ``(BenchOptions) -> list[BenchResult]`` to
add rows (market-maker decision, risk gate) without touching ``run``.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

from hftkit.bench import trading_risk, trading_router, trading_strategy
from hftkit.bench.harness import BenchOptions, BenchResult, compare, time_per_call
from hftkit.core import REAL_CLOCK, Fill, Instrument, Order, OrderType, Quote, Side
from hftkit.trading.quoting import AmendSupport, QuotingPolicy, QuotingService, plan_quotes
from hftkit.trading.state import OrderStateTracker

PEERS: tuple[str, ...] = ()

PUBLISHED_RECONCILE_US = 8_700.0
PUBLISHED_STATE_UPDATES_PER_S = 1_500.0
_PUBLISHED = "published, not measured"

LEVELS_PER_SIDE = 20
MOVED_LEVELS = frozenset({(Side.BUY, 3), (Side.SELL, 1), (Side.SELL, 7)})  # each moves one tick outwards


def _ladder_case() -> tuple[Instrument, OrderStateTracker, tuple[Quote, ...]]:
    """20 bids + 20 asks resting (acknowledged) on BTCUSDT in a state tracker; the desired
    ladder moves 3 of the 40 levels."""
    instrument = Instrument("binance", "BTCUSDT", "BTC", "USDT", "0.01", "0.00001", min_notional="5")
    tracker = OrderStateTracker(clock=REAL_CLOCK)
    mid = 5_000_000  # 50,000.00 USDT in ticks
    size = 200  # 0.002 BTC in lots (10 USDT notional: above the minimum)
    desired: list[Quote] = []
    for level in range(LEVELS_PER_SIDE):
        for side, price in ((Side.BUY, mid - 1 - 2 * level), (Side.SELL, mid + 1 + 2 * level)):
            client_order_id = f"{side.value}-{level}"
            tracker.submit(
                Order(
                    client_order_id=client_order_id,
                    venue=instrument.venue,
                    symbol=instrument.symbol,
                    side=side,
                    order_type=OrderType.LIMIT_MAKER,
                    price=price,
                    quantity=size,
                )
            )
            tracker.acknowledge(client_order_id, f"V{client_order_id}")
            shift = -side.sign if (side, level) in MOVED_LEVELS else 0
            desired.append(Quote(side, price + shift, size, level))
    return instrument, tracker, tuple(desired)


def reconcile_rows(options: BenchOptions) -> list[BenchResult]:
    """Time the production path: read the tracker's quoting view, then plan against it."""
    instrument, tracker, desired = _ladder_case()
    venue, symbol = instrument.key
    view = tracker.quoting_view
    rows = []
    for label, policy in (
        ("cancel+place", QuotingPolicy()),
        ("amend", QuotingPolicy(amend=AmendSupport.FULL)),
    ):
        plan = plan_quotes(instrument, desired, view(venue, symbol), policy)
        expected = 3 if policy.amend is AmendSupport.FULL else 6
        if len(plan.actions) != expected or plan.kept != 2 * LEVELS_PER_SIDE - 3:
            raise AssertionError(f"reconcile benchmark case broken: {plan}")

        def reconcile(policy: QuotingPolicy = policy) -> object:
            return plan_quotes(instrument, desired, view(venue, symbol), policy)

        microseconds = time_per_call(reconcile, options) / 1_000
        rows.append(
            compare(
                f"quoting reconcile, {LEVELS_PER_SIDE} levels/side, 3 moved ({label})",
                microseconds,
                "us",
                baseline=f"reference 8.7 ms ({_PUBLISHED})",
                baseline_value=PUBLISHED_RECONCILE_US,
                target="<= 30 us",
                met=microseconds <= 30,
                actions=len(plan.actions),
                levels=2 * LEVELS_PER_SIDE,
            )
        )
    in_sync = QuotingService()
    resting = tuple(Quote(order.side, order.price, order.quantity, 0) for order in view(venue, symbol))
    version = tracker.state_version(venue, symbol)

    def early_exit() -> object:
        return in_sync.plan(
            instrument, resting, lambda: view(venue, symbol), tracker.state_version(venue, symbol)
        )

    in_sync.plan(instrument, resting, view(venue, symbol), version)
    if not early_exit().unchanged:  # type: ignore[attr-defined]
        raise AssertionError("early-exit benchmark case broken")
    microseconds = time_per_call(early_exit, options) / 1_000
    rows.append(
        compare(
            "quoting early exit (same ladder, same order-state version)",
            microseconds,
            "us",
            baseline=f"reference 8.7 ms ({_PUBLISHED})",
            baseline_value=PUBLISHED_RECONCILE_US,
            levels=2 * LEVELS_PER_SIDE,
        )
    )
    return rows


def _order_flow(prefix: str, count: int) -> list[tuple[Order, str, Fill, Fill]]:
    """Inputs for ``count`` orders, built before timing: the order, its venue id, two fills."""
    flow = []
    for index in range(count):
        client_order_id = f"{prefix}{index}"
        side = Side.BUY if index % 4 < 2 else Side.SELL
        price = 5_000_000 + (index % 7) - 3
        order = Order(
            client_order_id=client_order_id,
            venue="binance",
            symbol="BTCUSDT",
            side=side,
            order_type=OrderType.LIMIT,
            price=price,
            quantity=100,
        )
        venue_order_id = f"V{prefix}{index}"
        fills = tuple(
            Fill(
                venue="binance",
                symbol="BTCUSDT",
                client_order_id=client_order_id,
                venue_order_id=venue_order_id,
                trade_id=f"T{prefix}{index}-{part}",
                side=side,
                price=price,
                quantity=lots,
                fee=0.01,
                fee_asset="USDT",
                is_maker=True,
            )
            for part, lots in enumerate((40, 60))
        )
        flow.append((order, venue_order_id, fills[0], fills[1]))
    return flow


def _run_flow(tracker: OrderStateTracker, flow: list[tuple[Order, str, Fill, Fill]]) -> int:
    """A realistic mix: every order is submitted and acknowledged; half then fill in two parts,
    half are cancelled (request + ack). Four state updates per order."""
    submit = tracker.submit
    acknowledge = tracker.acknowledge
    apply_fill = tracker.apply_fill
    request_cancel = tracker.request_cancel
    cancel_acknowledged = tracker.cancel_acknowledged
    for index, (order, venue_order_id, first, second) in enumerate(flow):
        submit(order)
        client_order_id = order.client_order_id
        acknowledge(client_order_id, venue_order_id)
        if index & 1:
            request_cancel(client_order_id)
            cancel_acknowledged(client_order_id)
        else:
            apply_fill(first)
            apply_fill(second)
    return 4 * len(flow)


def state_rows(options: BenchOptions) -> list[BenchResult]:
    scaled = options.scaled()
    orders_per_batch = 500 if scaled.quick else 5_000
    tracker = OrderStateTracker(clock=REAL_CLOCK)
    _run_flow(tracker, _order_flow("warm", orders_per_batch))
    samples = []
    for repeat in range(scaled.repeat):
        flow = _order_flow(f"r{repeat}-", orders_per_batch)
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            updates = _run_flow(tracker, flow)
            elapsed = time.perf_counter_ns() - start
        finally:
            if gc_was_enabled:
                gc.enable()
        samples.append(elapsed / updates)
    if tracker.illegal_transition_count or tracker.active_count:
        raise AssertionError("state benchmark flow left illegal transitions or open orders")
    nanoseconds = statistics.median(samples)
    rate = 1e9 / nanoseconds
    return [
        compare(
            "state tracker order updates (ack, partial fills, fills, cancels)",
            rate,
            "updates/s",
            baseline=f"reference 1,500/s ({_PUBLISHED})",
            baseline_value=PUBLISHED_STATE_UPDATES_PER_S,
            target=">= 500,000 updates/s",
            met=rate >= 500_000,
            ns_per_update=round(nanoseconds, 1),
            best_updates_per_s=round(1e9 / min(samples)),  # the least-disturbed repeat, for context
            terminal_lru=tracker.terminal_count,
        )
    ]


ROW_PRODUCERS: list[Callable[[BenchOptions], list[BenchResult]]] = [
    reconcile_rows,
    state_rows,
    trading_risk.run,
    trading_strategy.market_maker_rows,
    trading_router.route_rows,
]
"""Row producers run in order: the OMS and quoting rows here, the risk gate's in its module."""


def run(options: BenchOptions) -> list[BenchResult]:
    results: list[BenchResult] = []
    for producer in ROW_PRODUCERS:
        results.extend(producer(options))
    return results
