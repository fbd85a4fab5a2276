"""RetryPolicy: bounded full-jitter delays, predicate respected, deadline, retry_after hints."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.core.clock import SimulatedClock
from hftkit.resilience import RetryPolicy, retry_after_hint

# A broken limiter or scheduler would hang its waiters: fail fast instead of at the global timeout.
pytestmark = pytest.mark.timeout(20)


class Transient(Exception):
    pass


class Fatal(Exception):
    pass


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"429, retry after {retry_after}")
        self.retry_after = retry_after


@given(
    base=st.floats(min_value=0.0, max_value=10.0),
    maximum=st.floats(min_value=0.0, max_value=60.0),
    attempts=st.integers(min_value=1, max_value=40),
    seed=st.integers(min_value=0, max_value=2**32),
)
@settings(max_examples=200, deadline=None)
def test_delays_stay_within_the_full_jitter_bounds(
    base: float, maximum: float, attempts: int, seed: int
) -> None:
    policy = RetryPolicy(
        max_attempts=attempts, base_delay=base, max_delay=maximum, uniform=random.Random(seed).uniform
    )
    delays = list(policy.delays())
    assert len(delays) == attempts - 1
    for attempt, delay in enumerate(delays):
        assert 0.0 <= delay <= min(maximum, base * 2.0**attempt) + 1e-12


def test_ceilings_double_then_cap() -> None:
    policy = RetryPolicy(max_attempts=7, base_delay=0.1, max_delay=1.0, uniform=lambda low, high: high)
    assert list(policy.delays()) == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert policy.backoff_ceiling(10_000) == 1.0


def test_retry_after_hint_reads_only_sane_values() -> None:
    assert retry_after_hint(RateLimited(3)) == 3.0
    assert retry_after_hint(Transient()) is None
    error = Transient()
    error.retry_after = "soon"  # type: ignore[attr-defined]
    assert retry_after_hint(error) is None


def make_policy(clock: SimulatedClock, slept: list[float], **overrides: object) -> RetryPolicy:
    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance_seconds(seconds)

    settings_ = {
        "max_attempts": 5,
        "base_delay": 0.1,
        "max_delay": 2.0,
        "retryable": lambda error: isinstance(error, Transient | RateLimited),
        "uniform": lambda low, high: high,
        "sleep": sleep,
        "clock": clock,
    }
    settings_.update(overrides)
    return RetryPolicy(**settings_)  # type: ignore[arg-type]


async def test_retries_transient_errors_until_success() -> None:
    clock, slept = SimulatedClock(), []
    policy = make_policy(clock, slept)
    outcomes = [Transient(), Transient(), "ok"]

    async def flaky() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert await policy.call(flaky) == "ok"
    assert slept == pytest.approx([0.1, 0.2])
    assert policy.retries == 2


async def test_never_retries_what_the_predicate_rejects() -> None:
    clock, slept = SimulatedClock(), []
    policy = make_policy(clock, slept)
    count = 0

    async def reject() -> None:
        nonlocal count
        count += 1
        raise Fatal("order rejected")

    with pytest.raises(Fatal):
        await policy.call(reject)
    assert count == 1
    assert slept == []
    assert policy.not_retryable == 1


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    clock, slept = SimulatedClock(), []
    policy = make_policy(clock, slept, max_attempts=3)
    count = 0

    async def always_fails(tag: str) -> None:
        nonlocal count
        count += 1
        raise Transient(f"{tag} {count}")

    with pytest.raises(Transient, match="x 3") as caught:
        await policy.run(always_fails, "x")
    assert count == 3
    assert "gave up after 3 attempts" in "".join(caught.value.__notes__)
    assert policy.give_ups == 1


async def test_deadline_stops_retries_that_would_overrun_it() -> None:
    clock, slept = SimulatedClock(), []
    policy = make_policy(clock, slept, max_attempts=100, deadline=1.0)

    async def always_fails() -> None:
        raise Transient()

    with pytest.raises(Transient):
        await policy.call(always_fails)
    # 0.1 + 0.2 + 0.4 = 0.7 s; the next 0.8 s wait would pass 1.0 s.
    assert slept == pytest.approx([0.1, 0.2, 0.4])


async def test_retry_after_hint_is_honoured() -> None:
    clock, slept = SimulatedClock(), []
    policy = make_policy(clock, slept)
    outcomes: list[object] = [RateLimited(1.5), "ok"]

    async def limited() -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert await policy.call(limited) == "ok"
    assert slept == [1.5]


async def test_cancellation_is_never_retried() -> None:
    clock, slept = SimulatedClock(), []
    policy = make_policy(clock, slept, retryable=lambda error: True)
    count = 0

    async def cancelled() -> None:
        nonlocal count
        count += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await policy.call(cancelled)
    assert count == 1


def test_call_sync_retries_and_respects_the_predicate() -> None:
    clock = SimulatedClock()
    slept: list[float] = []
    policy = RetryPolicy(
        max_attempts=4,
        base_delay=0.01,
        retryable=lambda error: isinstance(error, Transient),
        uniform=lambda low, high: high,
        sync_sleep=slept.append,
        clock=clock,
    )
    outcomes: list[object] = [Transient(), Transient(), 42]

    def flaky(offset: int) -> int:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome + offset  # type: ignore[operator]

    assert policy.call_sync(flaky, 1) == 43
    assert slept == pytest.approx([0.01, 0.02])

    def fatal() -> None:
        raise Fatal

    with pytest.raises(Fatal):
        policy.call_sync(fatal)


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"base_delay": -1}, {"deadline": 0}])
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
