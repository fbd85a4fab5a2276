"""Async TTL cache: single flight, errors not cached, expiry, LRU bound, stats."""

from __future__ import annotations

import asyncio

import pytest

from hftkit.core.clock import SimulatedClock
from hftkit.resilience import AsyncTTLCache, ttl_cache

# A broken limiter or scheduler would hang its waiters: fail fast instead of at the global timeout.
pytestmark = pytest.mark.timeout(20)


async def test_concurrent_callers_of_a_missing_key_share_one_load() -> None:
    loads = 0
    gate = asyncio.Event()

    @ttl_cache(ttl=60)
    async def exchange_info(symbol: str) -> dict[str, str]:
        nonlocal loads
        loads += 1
        await gate.wait()
        return {"symbol": symbol}

    callers = [asyncio.ensure_future(exchange_info("BTCUSDT")) for _ in range(20)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*callers)
    assert loads == 1
    assert all(result == {"symbol": "BTCUSDT"} for result in results)
    assert await exchange_info("BTCUSDT") is results[0]
    stats = exchange_info.cache.stats  # type: ignore[attr-defined]
    assert (stats.loads, stats.misses, stats.joined, stats.hits) == (1, 20, 19, 1)


async def test_an_error_reaches_every_waiter_and_is_not_cached() -> None:
    attempts = 0
    gate = asyncio.Event()

    @ttl_cache(ttl=60)
    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        await gate.wait()
        if attempts == 1:
            raise ConnectionError("venue down")
        return "ok"

    callers = [asyncio.ensure_future(flaky()) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)
    assert await flaky() == "ok"
    assert attempts == 2
    assert flaky.cache.stats.load_failures == 1  # type: ignore[attr-defined]


async def test_entries_expire_after_ttl_and_lru_evicts_beyond_max_size() -> None:
    clock = SimulatedClock()
    loads: list[int] = []

    @ttl_cache(ttl=1.0, max_size=2, clock=clock)
    async def square(x: int) -> int:
        loads.append(x)
        return x * x

    assert await square(2) == 4
    assert await square(3) == 9
    assert await square(2) == 4  # hit, now most recently used
    assert await square(4) == 16  # evicts 3 (least recently used)
    assert await square(2) == 4
    assert await square(3) == 9
    assert loads == [2, 3, 4, 3]
    clock.advance_seconds(1.0)
    assert await square(3) == 9
    assert loads == [2, 3, 4, 3, 3]
    stats = square.cache.stats  # type: ignore[attr-defined]
    assert stats.evictions >= 2 and stats.expirations == 1


async def test_one_cancelled_caller_does_not_cancel_the_shared_load() -> None:
    cache: AsyncTTLCache[str] = AsyncTTLCache(ttl=60)
    gate = asyncio.Event()

    async def load() -> str:
        await gate.wait()
        return "value"

    impatient = asyncio.ensure_future(cache.get_or_load("k", load))
    patient = asyncio.ensure_future(cache.get_or_load("k", load))
    await asyncio.sleep(0)
    impatient.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await patient == "value"
    assert impatient.cancelled()
    assert cache.peek("k") == (True, "value")


async def test_invalidate_during_a_load_does_not_store_the_old_result() -> None:
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=60)
    gate = asyncio.Event()

    async def load() -> int:
        await gate.wait()
        return 1

    waiter = asyncio.ensure_future(cache.get_or_load("k", load))
    await asyncio.sleep(0)
    cache.invalidate("k")
    gate.set()
    assert await waiter == 1
    assert cache.peek("k") == (False, None)


async def test_unhashable_arguments_raise_a_clear_type_error() -> None:
    @ttl_cache(ttl=1)
    async def by_list(values: list[int]) -> int:
        return sum(values)

    with pytest.raises(TypeError, match="by_list"):
        await by_list([1, 2])

    @ttl_cache(ttl=1, key=lambda values: tuple(values))
    async def keyed(values: list[int]) -> int:
        return sum(values)

    assert await keyed([1, 2]) == 3


def test_invalid_cache_settings() -> None:
    with pytest.raises(ValueError):
        AsyncTTLCache(ttl=0)
    with pytest.raises(ValueError):
        AsyncTTLCache(ttl=1, max_size=0)
