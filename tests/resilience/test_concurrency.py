"""gather_bounded keeps order and its bound; with_timeout names what timed out."""

from __future__ import annotations

import asyncio

import pytest

from hftkit.resilience import (
    OperationTimeoutError,
    default_timeout,
    gather_bounded,
    set_default_timeout,
    with_timeout,
)

# A broken limiter or scheduler would hang its waiters: fail fast instead of at the global timeout.
pytestmark = pytest.mark.timeout(20)


@pytest.mark.parametrize(("limit", "count"), [(1, 5), (3, 10), (8, 4), (4, 40)])
async def test_gather_bounded_preserves_order_and_never_exceeds_the_bound(limit: int, count: int) -> None:
    running = 0
    peak = 0

    async def job(index: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * ((index * 7) % 3))
        running -= 1
        return index * 10

    results = await gather_bounded(limit, *(lambda i=i: job(i) for i in range(count)))
    assert results == [i * 10 for i in range(count)]
    assert peak <= limit
    assert peak == min(limit, count)


async def test_gather_bounded_accepts_coroutines_and_returns_exceptions_in_place() -> None:
    async def ok(value: int) -> int:
        return value

    async def boom() -> None:
        raise KeyError("x")

    results = await gather_bounded(2, ok(1), boom, ok(3), return_exceptions=True)
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], KeyError)
    assert await gather_bounded(3) == []


async def test_first_error_cancels_the_rest_and_closes_unstarted_coroutines() -> None:
    cancelled = 0

    async def slow() -> None:
        nonlocal cancelled
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled += 1
            raise

    async def fail() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    never_started = slow()
    with pytest.raises(RuntimeError, match="boom"):
        await gather_bounded(2, slow(), fail(), never_started)
    assert cancelled == 1
    assert never_started.cr_frame is None  # closed, so no "never awaited" warning


async def test_gather_bounded_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        await gather_bounded(0)
    with pytest.raises(TypeError, match="argument 0"):
        await gather_bounded(1, 42)  # type: ignore[arg-type]


async def test_with_timeout_names_the_operation() -> None:
    async def fetch_depth() -> None:
        await asyncio.sleep(10)

    with pytest.raises(OperationTimeoutError, match=r"fetch_depth timed out after 0\.01 s") as caught:
        await with_timeout(fetch_depth(), 0.01)
    assert isinstance(caught.value, TimeoutError)
    with pytest.raises(OperationTimeoutError, match="GET /api/v3/depth"):
        await with_timeout(asyncio.sleep(10), 0.01, operation="GET /api/v3/depth")
    assert await with_timeout(asyncio.sleep(0, result=5), 1.0) == 5


async def test_with_timeout_uses_the_module_default() -> None:
    previous = default_timeout()
    try:
        set_default_timeout(0.01)
        with pytest.raises(OperationTimeoutError) as caught:
            await with_timeout(asyncio.sleep(10))
        assert caught.value.seconds == 0.01
        with pytest.raises(ValueError):
            set_default_timeout(0)
    finally:
        set_default_timeout(previous)
