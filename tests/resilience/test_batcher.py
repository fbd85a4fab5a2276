"""RequestBatcher: batches by size or delay, fans results and errors back to each caller."""

from __future__ import annotations

import asyncio

import pytest

from hftkit.resilience import BatchResultMismatchError, RequestBatcher

# A broken limiter or scheduler would hang its waiters: fail fast instead of at the global timeout.
pytestmark = pytest.mark.timeout(20)


async def test_results_and_per_item_errors_reach_their_own_callers() -> None:
    batches: list[list[int]] = []

    async def place_orders(items: list[int]) -> list[object]:
        batches.append(items)
        return [ValueError(f"rejected {item}") if item % 3 == 0 else item * 2 for item in items]

    async with RequestBatcher(place_orders, max_items=5, max_delay=0.001) as batcher:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(1, 13)), return_exceptions=True)
    for item, result in zip(range(1, 13), results, strict=True):
        if item % 3 == 0:
            assert isinstance(result, ValueError) and str(result) == f"rejected {item}"
        else:
            assert result == item * 2
    assert [len(batch) for batch in batches] == [5, 5, 2]
    assert sorted(x for batch in batches for x in batch) == list(range(1, 13))
    assert batcher.item_failures == 4 and batcher.batches == 3


async def test_a_batch_wide_error_goes_to_every_caller() -> None:
    async def broken(items: list[str]) -> list[str]:
        raise ConnectionError("batch endpoint down")

    batcher = RequestBatcher(broken, max_items=10, max_delay=0.001)
    results = await asyncio.gather(*(batcher.submit(s) for s in "abc"), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)
    assert batcher.batch_failures == 1


async def test_a_short_result_list_is_a_classified_error_for_everyone() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    batcher = RequestBatcher(short, max_items=3, max_delay=0.001)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(result, BatchResultMismatchError) for result in results)


async def test_a_partial_batch_is_sent_after_max_delay() -> None:
    sizes: list[int] = []

    async def echo(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return items

    batcher = RequestBatcher(echo, max_items=100, max_delay=0.002)
    assert await asyncio.gather(batcher.submit(1), batcher.submit(2)) == [1, 2]
    assert sizes == [2]


async def test_cancelled_callers_are_dropped_from_the_batch() -> None:
    seen: list[list[int]] = []

    async def echo(items: list[int]) -> list[int]:
        seen.append(items)
        return items

    batcher = RequestBatcher(echo, max_items=10, max_delay=0.002)
    gone = asyncio.ensure_future(batcher.submit(1))
    kept = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept == 2
    assert seen == [[2]] and batcher.dropped_cancelled == 1


async def test_closed_batcher_refuses_new_items_and_validates_settings() -> None:
    async def echo(items: list[int]) -> list[int]:
        return items

    batcher = RequestBatcher(echo)
    await batcher.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await batcher.submit(1)
    with pytest.raises(ValueError):
        RequestBatcher(echo, max_items=0)


async def test_concurrent_batches_are_bounded() -> None:
    running = 0
    peak = 0

    async def slow(items: list[int]) -> list[int]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        return items

    batcher = RequestBatcher(slow, max_items=1, max_concurrent_batches=2)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(6))) == list(range(6))
    assert peak == 2
