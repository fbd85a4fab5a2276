"""WeightedLimiter and LimiterRegistry: every window's limit holds, priorities, header correction."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.core.clock import SimulatedClock
from hftkit.resilience import (
    CapacityExceededError,
    EndpointSpec,
    LimiterRegistry,
    Priority,
    RateWindow,
    UnknownEndpointError,
    UnknownWindowError,
    WeightedLimiter,
    parse_interval_code,
)
from hftkit.resilience.weighted import UNBOUNDED

# A broken limiter or scheduler would hang its waiters: fail fast instead of at the global timeout.
pytestmark = pytest.mark.timeout(20)


NS = 1_000_000_000
MINUTE = 60 * NS


def binance_spot_windows(scale: int = 1) -> list[RateWindow]:
    """Binance spot's limits (§2 of the protocol notes), optionally scaled down for tests."""
    return [
        RateWindow.of("REQUEST_WEIGHT", 6000 // scale, "1M"),
        RateWindow.of("ORDERS_10S", 100 // scale, "10S"),
        RateWindow.of("ORDERS_1D", 200_000 // scale, "1D"),
    ]


ORDER = {"REQUEST_WEIGHT": 1, "ORDERS_10S": 1, "ORDERS_1D": 1}
CANCEL = {"REQUEST_WEIGHT": 1}
DEPTH_1000 = {"REQUEST_WEIGHT": 50}


def test_parse_interval_code() -> None:
    assert parse_interval_code("1M") == MINUTE
    assert parse_interval_code("10s") == 10 * NS
    assert parse_interval_code("1D") == 86_400 * NS
    for bad in ["", "M", "0M", "1X", "-1M", "1.5M"]:
        with pytest.raises(ValueError):
            parse_interval_code(bad)


def test_window_validation() -> None:
    with pytest.raises(ValueError):
        RateWindow("w", 0, NS)
    with pytest.raises(ValueError):
        RateWindow("w", 10, NS, reserve_fraction=1.0)
    with pytest.raises(ValueError):
        WeightedLimiter([RateWindow("w", 1, NS), RateWindow("w", 2, NS)])
    with pytest.raises(ValueError):
        WeightedLimiter([])


def test_an_order_costs_weight_and_order_count_in_three_windows() -> None:
    clock = SimulatedClock(start_ns=0, wall_offset_ns=0)
    limiter = WeightedLimiter(binance_spot_windows(), clock)
    order = limiter.costs(ORDER)
    for _ in range(100):
        assert limiter.try_acquire(order)
    assert not limiter.try_acquire(order)  # ORDERS_10S is full
    assert limiter.try_acquire(CANCEL)  # weight is not
    assert limiter.used("REQUEST_WEIGHT") == 101
    assert limiter.used("ORDERS_1D") == 100
    assert limiter.time_until_available_ns(order) == 10 * NS
    clock.advance(10 * NS)
    assert limiter.try_acquire(order)
    assert limiter.used("ORDERS_10S") == 1
    assert limiter.used("ORDERS_1D") == 101


def test_fixed_windows_reset_on_the_venue_minute_not_on_first_use() -> None:
    clock = SimulatedClock(start_ns=0, wall_offset_ns=59 * NS)  # 1 s before a minute boundary
    limiter = WeightedLimiter([RateWindow.of("REQUEST_WEIGHT", 100, "1M")], clock)
    assert limiter.try_acquire({"REQUEST_WEIGHT": 100})
    assert limiter.time_until_available_ns({"REQUEST_WEIGHT": 1}) == NS
    clock.advance(NS)
    assert limiter.try_acquire({"REQUEST_WEIGHT": 100})


def test_clock_offset_and_reset_guard_delay_the_local_reset() -> None:
    clock = SimulatedClock(start_ns=0, wall_offset_ns=0)
    # Venue clock runs 200 ms behind ours; guard another 50 ms.
    limiter = WeightedLimiter(
        [RateWindow.of("W", 10, 1.0)], clock, clock_offset_ns=-200_000_000, reset_guard_ns=50_000_000
    )
    clock.advance(500_000_000)
    assert limiter.try_acquire({"W": 10})
    clock.advance(500_000_000)  # local t = 1.0 s, venue 0.8 s: the venue window has not reset
    assert not limiter.try_acquire({"W": 1})
    clock.advance(249_999_999)
    assert not limiter.try_acquire({"W": 1})
    clock.advance(1)
    assert limiter.try_acquire({"W": 1})


windows_small = [
    RateWindow.of("REQUEST_WEIGHT", 20, 6.0, reserve_fraction=0.2),
    RateWindow.of("ORDERS_10S", 5, 1.0),
    RateWindow.of("ORDERS_1D", 30, 40.0),
]
calls = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=700_000_000),
        st.sampled_from(["order", "cancel", "depth"]),
        st.sampled_from(list(Priority)),
    ),
    min_size=1,
    max_size=250,
)


@given(calls=calls, start=st.integers(min_value=0, max_value=100 * NS))
@settings(max_examples=120, deadline=None)
def test_no_window_ever_admits_more_than_its_limit(
    calls: list[tuple[int, str, Priority]], start: int
) -> None:
    clock = SimulatedClock(start_ns=0, wall_offset_ns=start)
    limiter = WeightedLimiter(windows_small, clock)
    table = {"order": ORDER, "cancel": CANCEL, "depth": {"REQUEST_WEIGHT": 3}}
    costs = {name: limiter.costs(weights) for name, weights in table.items()}
    used: dict[tuple[str, int], int] = defaultdict(int)
    for advance, kind, priority in calls:
        clock.advance(advance)
        now = clock.time_ns()
        admitted = limiter.try_acquire(costs[kind], priority)
        # Reference: the fixed-window usage this call would push each window to.
        fits = True
        for window in windows_small:
            weight = table[kind].get(window.name, 0)
            if not weight:
                continue
            allowed = window.limit if priority >= Priority.HIGH else window.limit - window.reserved
            if used[(window.name, now // window.interval_ns)] + weight > allowed:
                fits = False
        assert admitted is fits
        if admitted:
            for window in windows_small:
                used[(window.name, now // window.interval_ns)] += table[kind].get(window.name, 0)
    for window in windows_small:
        for (name, _), total in used.items():
            if name == window.name:
                assert total <= window.limit


def test_reserve_fraction_is_kept_for_high_priority() -> None:
    clock = SimulatedClock()
    limiter = WeightedLimiter([RateWindow.of("W", 10, "1M", reserve_fraction=0.3)], clock)
    assert limiter.windows[0].reserved == 3
    assert limiter.try_acquire({"W": 7}, Priority.NORMAL)
    assert not limiter.try_acquire({"W": 1}, Priority.NORMAL)
    assert limiter.try_acquire({"W": 3}, Priority.HIGH)
    assert not limiter.try_acquire({"W": 1}, Priority.CRITICAL)
    with pytest.raises(CapacityExceededError, match="available to priority"):
        limiter.time_until_available_ns({"W": 8}, Priority.NORMAL)


def test_unknown_windows_and_oversized_costs_are_clear_errors() -> None:
    limiter = WeightedLimiter(binance_spot_windows(), SimulatedClock())
    with pytest.raises(UnknownWindowError, match="RAW_REQUESTS"):
        limiter.costs({"RAW_REQUESTS": 1})
    with pytest.raises(CapacityExceededError):
        limiter.costs({"ORDERS_10S": 101})
    with pytest.raises(ValueError):
        limiter.costs({"ORDERS_10S": -1})
    with pytest.raises(UnknownWindowError):
        limiter.observe_usage({"X": 1})


def test_header_correction_raises_usage_and_accounts_for_requests_in_flight() -> None:
    clock = SimulatedClock(start_ns=0, wall_offset_ns=0)
    limiter = WeightedLimiter(binance_spot_windows(), clock)
    for _ in range(3):
        assert limiter.try_acquire(DEPTH_1000)
    assert limiter.used("REQUEST_WEIGHT") == 150
    # The venue saw another process's weight too: X-MBX-USED-WEIGHT-1M: 900.
    limiter.observe_usage({"REQUEST_WEIGHT": 900})
    assert limiter.used("REQUEST_WEIGHT") == 900
    # A lower count (one of ours is still in flight) never lowers local usage by default.
    limiter.observe_usage({"REQUEST_WEIGHT": 100})
    assert limiter.used("REQUEST_WEIGHT") == 900
    # Authoritative: the venue's count plus what is still in flight.
    limiter.observe_usage({"REQUEST_WEIGHT": 100}, in_flight={"REQUEST_WEIGHT": 50}, authoritative=True)
    assert limiter.used("REQUEST_WEIGHT") == 150
    assert limiter.corrections == 2


def test_header_from_a_previous_window_is_ignored() -> None:
    clock = SimulatedClock(start_ns=0, wall_offset_ns=0)
    limiter = WeightedLimiter(binance_spot_windows(), clock)
    clock.advance(MINUTE + NS)
    limiter.observe_usage({"REQUEST_WEIGHT": 5000}, observed_at_ns=MINUTE - NS)
    assert limiter.used("REQUEST_WEIGHT") == 0
    assert limiter.stale_observations == 1
    limiter.observe_usage({"REQUEST_WEIGHT": 5000}, observed_at_ns=MINUTE + NS)
    assert limiter.used("REQUEST_WEIGHT") == 5000


def test_affordable_counts_the_calls_every_window_could_pay_now_and_takes_nothing() -> None:
    clock = SimulatedClock(start_ns=0, wall_offset_ns=0)
    limiter = WeightedLimiter(binance_spot_windows(scale=10), clock)  # weight 600/min, orders 10/10 s
    assert limiter.affordable(ORDER) == 10  # the 10 s order window is the tightest
    assert limiter.affordable(DEPTH_1000) == 12
    for _ in range(7):
        assert limiter.try_acquire(ORDER)
    assert limiter.affordable(ORDER) == 3
    assert limiter.affordable(ORDER) == 3  # reading it took nothing
    assert limiter.affordable({"REQUEST_WEIGHT": 0}) == UNBOUNDED
    clock.advance(10 * NS)  # the order window starts afresh
    assert limiter.affordable(ORDER) == 10
    limiter.block_for(1.0)
    assert limiter.affordable(CANCEL) == 0


def test_affordable_keeps_the_high_priority_reserve() -> None:
    limiter = WeightedLimiter([RateWindow.of("W", 10, "1M", reserve_fraction=0.3)], SimulatedClock())
    assert limiter.affordable({"W": 1}, Priority.NORMAL) == 7
    assert limiter.affordable({"W": 1}, Priority.HIGH) == 10


def test_observed_usage_at_the_limit_blocks_until_the_window_resets() -> None:
    clock = SimulatedClock(start_ns=0, wall_offset_ns=0)
    limiter = WeightedLimiter(binance_spot_windows(), clock)
    limiter.observe_usage({"ORDERS_10S": 100})
    assert not limiter.try_acquire(ORDER, Priority.CRITICAL)
    assert limiter.try_acquire(CANCEL)
    assert len(limiter.usage()) == 3


def test_block_for_retry_after_stops_everything_then_releases() -> None:
    clock = SimulatedClock()
    limiter = WeightedLimiter(binance_spot_windows(), clock)
    limiter.block_for(2.5)
    assert not limiter.try_acquire(CANCEL, Priority.CRITICAL)
    assert limiter.time_until_available_ns(CANCEL) == 2_500_000_000
    limiter.block_until(clock.monotonic_ns() + NS)  # a shorter block never shortens the longer one
    clock.advance(2_500_000_000)
    assert limiter.try_acquire(CANCEL)
    assert limiter.blocks == 1


def sim_sleep(clock: SimulatedClock) -> object:
    async def sleep(seconds: float) -> None:
        clock.advance(math.ceil(seconds * NS))
        await asyncio.sleep(0)

    return sleep


async def test_waiters_are_served_by_priority_then_arrival() -> None:
    clock = SimulatedClock(start_ns=0, wall_offset_ns=0)
    limiter = WeightedLimiter([RateWindow.of("W", 2, 1.0)], clock, sleep=sim_sleep(clock))
    assert limiter.try_acquire({"W": 2})
    served: list[str] = []

    async def call(label: str, priority: Priority) -> None:
        await limiter.acquire({"W": 1}, priority)
        served.append(label)

    tasks = [
        asyncio.ensure_future(call(label, priority))
        for label, priority in [
            ("new-1", Priority.NORMAL),
            ("poll", Priority.LOW),
            ("new-2", Priority.NORMAL),
            ("cancel-1", Priority.HIGH),
            ("cancel-2", Priority.HIGH),
        ]
    ]
    await asyncio.gather(*tasks)
    assert served == ["cancel-1", "cancel-2", "new-1", "new-2", "poll"]
    assert limiter.waiting == 0


async def test_try_acquire_does_not_jump_a_waiter_of_equal_priority() -> None:
    clock = SimulatedClock(start_ns=0, wall_offset_ns=0)
    sleeping = asyncio.Event()

    async def parked_sleep(seconds: float) -> None:
        sleeping.set()
        await asyncio.Event().wait()

    limiter = WeightedLimiter([RateWindow.of("W", 1, 1.0)], clock, sleep=parked_sleep)
    assert limiter.try_acquire({"W": 1})
    waiter = asyncio.ensure_future(limiter.acquire({"W": 1}))
    await sleeping.wait()
    clock.advance(NS)
    assert not limiter.try_acquire({"W": 1})  # the waiter comes first
    assert limiter.try_acquire({"W": 1}, Priority.HIGH) is True  # a higher priority may pass
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.waiting == 0


async def test_authoritative_lower_usage_wakes_waiters_early() -> None:
    clock = SimulatedClock(start_ns=0, wall_offset_ns=0)

    async def parked_sleep(seconds: float) -> None:
        await asyncio.Event().wait()

    limiter = WeightedLimiter([RateWindow.of("W", 5, "1M")], clock, sleep=parked_sleep)
    assert limiter.try_acquire({"W": 5})
    waiter = asyncio.ensure_future(limiter.acquire({"W": 2}))
    await asyncio.sleep(0)
    assert not waiter.done()
    limiter.observe_usage({"W": 1}, authoritative=True)
    await asyncio.wait_for(waiter, 1.0)
    assert limiter.used("W") == 3


async def test_acquire_with_real_time_windows() -> None:
    limiter = WeightedLimiter([RateWindow.of("W", 3, 0.02)])
    for _ in range(7):
        await limiter.acquire({"W": 1})
    assert limiter.admitted == 7


def test_registry_from_a_declarative_table() -> None:
    clock = SimulatedClock()
    ip_limiter = WeightedLimiter([RateWindow.of("REQUEST_WEIGHT", 6000, "1M")], clock)
    account_limiter = WeightedLimiter(
        [RateWindow.of("ORDERS_10S", 100, "10S"), RateWindow.of("ORDERS_1D", 200_000, "1D")], clock
    )
    registry = LimiterRegistry.from_table(
        {"default": ip_limiter, "account": account_limiter},
        {
            "GET /api/v3/depth": {"REQUEST_WEIGHT": 5},
            "POST /api/v3/order:orders": EndpointSpec({"ORDERS_10S": 1, "ORDERS_1D": 1}, limiter="account"),
            "DELETE /api/v3/order": EndpointSpec({"REQUEST_WEIGHT": 1}, priority=Priority.HIGH),
        },
    )
    assert registry.try_acquire("GET /api/v3/depth")
    assert ip_limiter.used("REQUEST_WEIGHT") == 5
    assert registry.try_acquire("POST /api/v3/order:orders")
    assert account_limiter.used("ORDERS_10S") == 1
    assert registry.get("DELETE /api/v3/order").default_priority == Priority.HIGH
    assert "GET /api/v3/depth" in registry
    with pytest.raises(UnknownEndpointError, match="no rate-limit entry"):
        registry.get("GET /api/v3/klines")
    with pytest.raises(ValueError):
        registry.add_endpoint("GET /api/v3/depth", {"REQUEST_WEIGHT": 5})
    with pytest.raises(KeyError):
        registry.add_endpoint("GET /x", {"REQUEST_WEIGHT": 1}, limiter="nope")
    registry.block_for(1.0)
    assert not registry.try_acquire("GET /api/v3/depth")


async def test_registry_acquire_uses_the_endpoint_costs() -> None:
    clock = SimulatedClock()
    registry = LimiterRegistry.from_table(
        WeightedLimiter(binance_spot_windows(), clock), {"POST /api/v3/order": ORDER}
    )
    await registry.acquire("POST /api/v3/order")
    assert registry.limiter().used("ORDERS_1D") == 1


async def test_cancelled_waiters_are_skipped_and_never_charged() -> None:
    clock = SimulatedClock(start_ns=0, wall_offset_ns=0)
    limiter = WeightedLimiter([RateWindow.of("W", 1, 1.0)], clock, sleep=sim_sleep(clock))
    assert limiter.try_acquire({"W": 1})
    doomed = asyncio.ensure_future(limiter.acquire({"W": 1}, Priority.HIGH))
    survivor = asyncio.ensure_future(limiter.acquire({"W": 1}))
    await asyncio.sleep(0)
    doomed.cancel()
    await survivor
    assert doomed.cancelled()
    assert limiter.admitted == 2
    usage = limiter.usage()[0]
    assert (usage.name, usage.used, usage.limit) == ("W", 1, 1)


async def test_aclose_cancels_queued_waiters_and_the_server() -> None:
    clock = SimulatedClock(start_ns=0, wall_offset_ns=0)
    limiter = WeightedLimiter([RateWindow.of("W", 1, "1D")], clock)
    assert limiter.try_acquire({"W": 1})
    waiters = [asyncio.ensure_future(limiter.acquire({"W": 1})) for _ in range(3)]
    await asyncio.sleep(0)
    assert limiter.waiting == 3
    await limiter.aclose()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(result, asyncio.CancelledError) for result in results)
    assert limiter.waiting == 0


def test_a_waiter_on_the_millisecond_loop_clock_sleeps_once_per_window_not_in_a_spin() -> None:
    # uvloop's timers tick in milliseconds and may end a sleep before the window's turn (read
    # from the finer monotonic clock); the server re-checked and slept again until the millisecond
    # turned, a hundred wake-ups and more per wait. A tick past the turn makes it one sleep.
    uvloop = pytest.importorskip("uvloop")
    sleeps = 0

    async def counted_sleep(seconds: float) -> None:
        nonlocal sleeps
        sleeps += 1
        await asyncio.sleep(seconds)

    async def wait_for_three_windows() -> None:
        limiter = WeightedLimiter([RateWindow.of("W", 1, 0.0104)], sleep=counted_sleep)
        assert limiter.try_acquire({"W": 1})
        for _ in range(3):
            await limiter.acquire({"W": 1})

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(wait_for_three_windows())
    assert 1 <= sleeps <= 6, sleeps
