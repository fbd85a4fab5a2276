"""TokenBucket: exact refill against a Fraction reference model, window bound, FIFO waits."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.core.clock import SimulatedClock
from hftkit.resilience import CapacityExceededError, TokenBucket

# A broken limiter or scheduler would hang its waiters: fail fast instead of at the global timeout.
pytestmark = pytest.mark.timeout(20)

NS = 1_000_000_000

rates = st.sampled_from(
    [Fraction(1), Fraction(10), Fraction(1, 3), Fraction(250), Fraction(7, 2), Fraction(1000)]
)
steps = st.lists(
    st.tuples(st.integers(min_value=0, max_value=2 * NS), st.integers(min_value=1, max_value=5)),
    min_size=1,
    max_size=120,
)


@given(rate=rates, capacity=st.integers(min_value=1, max_value=8), steps=steps)
@settings(max_examples=150, deadline=None)
def test_try_acquire_matches_exact_reference_and_never_exceeds_any_window(
    rate: Fraction, capacity: int, steps: list[tuple[int, int]]
) -> None:
    clock = SimulatedClock()
    bucket = TokenBucket(rate, capacity, clock)
    tokens = Fraction(capacity)
    admitted: list[tuple[int, int]] = []
    for advance, n in steps:
        clock.advance(advance)
        tokens = min(Fraction(capacity), tokens + rate * Fraction(advance, NS))
        if n > capacity:
            with pytest.raises(CapacityExceededError):
                bucket.try_acquire(n)
            continue
        expected = tokens >= n
        assert bucket.try_acquire(n) is expected
        if expected:
            tokens -= n
            admitted.append((clock.monotonic_ns(), n))
    # Any interval [t_i, t_j] holds at most capacity + rate * (t_j - t_i) admitted tokens.
    for i, (start, _) in enumerate(admitted):
        total = 0
        for end, n in admitted[i:]:
            total += n
            assert total <= capacity + rate * Fraction(end - start, NS)


def test_time_until_available_is_exact_in_nanoseconds() -> None:
    clock = SimulatedClock()
    bucket = TokenBucket(4, 2, clock)  # one token per 250 ms
    assert bucket.try_acquire(2)
    assert bucket.time_until_available_ns(1) == 250_000_000
    assert bucket.time_until_available(2) == pytest.approx(0.5)
    clock.advance(249_999_999)
    assert not bucket.try_acquire()
    clock.advance(1)
    assert bucket.try_acquire()
    assert bucket.rejected == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_token_counts_raise_clear_errors(bad: object) -> None:
    bucket = TokenBucket(10, 5, SimulatedClock())
    with pytest.raises(ValueError):
        bucket.time_until_available(bad)  # type: ignore[arg-type]


def test_more_than_capacity_is_refused_with_a_clear_error() -> None:
    bucket = TokenBucket(10, 5, SimulatedClock())
    with pytest.raises(CapacityExceededError, match="capacity 5"):
        bucket.try_acquire(6)
    with pytest.raises(CapacityExceededError):
        asyncio.run(bucket.acquire(6))


@pytest.mark.parametrize(
    ("rate", "capacity", "initial"), [(0, 1, None), (-1, 1, None), (1, 0, None), (1, 2, 3), (1, 2, -1)]
)
def test_invalid_construction_is_refused(rate: float, capacity: int, initial: int | None) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, capacity, SimulatedClock(), initial_tokens=initial)


async def test_async_waiters_are_served_fifo_each_sleeping_exactly_once() -> None:
    clock = SimulatedClock()
    sleeps: list[float] = []

    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    bucket = TokenBucket(10, 1, clock, sleep=record_sleep)
    await asyncio.gather(*(bucket.acquire() for _ in range(4)))
    # First is immediate; the k-th waits k * 100 ms, computed once at arrival.
    assert sleeps == pytest.approx([0.1, 0.2, 0.3])
    assert not bucket.try_acquire()  # reservations are honoured: no jumping the queue
    clock.advance(300_000_000)
    assert bucket.tokens == pytest.approx(0)
    clock.advance(100_000_000)
    assert bucket.try_acquire()


async def test_cancelled_waiter_returns_its_tokens() -> None:
    clock = SimulatedClock()
    bucket = TokenBucket(10, 2, clock)  # real asyncio.sleep: the waiter below would wait 100 ms
    assert bucket.try_acquire(2)
    waiter = asyncio.ensure_future(bucket.acquire(1))
    await asyncio.sleep(0)
    assert bucket.tokens == pytest.approx(-1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bucket.tokens == pytest.approx(0)
    clock.advance(100_000_000)
    assert bucket.try_acquire()


async def test_acquire_with_real_clock_waits_for_refill() -> None:
    bucket = TokenBucket(2000, 1)  # 0.5 ms per token
    for _ in range(5):
        await bucket.acquire()
    assert bucket.tokens <= 1
