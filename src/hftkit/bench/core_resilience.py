"""Resilience figures: token bucket and weighted limiter admission, breaker + retry overhead.

What is measured, and why it is fair:

* ``TokenBucket.try_acquire`` (admitting path, real monotonic clock) against a minimal float
  token bucket written inline below: the cost of exact integer credits and of validating
  ``n`` over the least a Python bucket can do.
* against ``aiolimiter.AsyncLimiter`` (when installed): its only synchronous check,
  ``has_capacity()``, needs a running loop, so both sides run as a loop of calls inside one
  coroutine (``time_per_item``); ours also *takes* the token, aiolimiter's only looks. The
  admission path proper, ``await limiter.acquire()`` with capacity to spare, is compared the
  same way against ``await TokenBucket.acquire()``.
* ``WeightedLimiter.try_acquire`` for a Binance order (weight 1 + 1 order in 10 s + 1 order
  in 1 day: three windows checked, then three charged).
* breaker + retry overhead: a trivial successful call wrapped as
  ``policy.call_sync(breaker.call_sync, fn)`` minus the bare ``fn()`` (the sync core path,
  target <= 1 us), and the async path ``await policy.call(lambda: breaker.call(fn))`` minus
  ``await fn()`` (informational).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from hftkit.bench.harness import (
    BenchOptions,
    BenchResult,
    compare,
    optional_import,
    time_per_call,
    time_per_item,
)
from hftkit.resilience import CircuitBreaker, RateWindow, RetryPolicy, TokenBucket, WeightedLimiter

PEERS = ("aiolimiter",)

_HUGE_RATE = 10**9  # tokens per second: the admitting path never runs dry during a timing loop
_HUGE_CAPACITY = 10**9
_LOOP_ITEMS = 20_000


class PlainTokenBucket:
    """The least a Python token bucket can do (float tokens, no validation): the baseline."""

    __slots__ = ("capacity", "last", "rate", "tokens")

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.last = time.monotonic()

    def try_acquire(self, n: float = 1.0) -> bool:
        now = time.monotonic()
        tokens = self.tokens + (now - self.last) * self.rate
        if tokens > self.capacity:
            tokens = self.capacity
        self.last = now
        if tokens >= n:
            self.tokens = tokens - n
            return True
        self.tokens = tokens
        return False


def _in_loop(
    make_batch: Callable[[int], Awaitable[int]], options: BenchOptions, loop: asyncio.AbstractEventLoop
) -> float:
    """Median ns per item of an async batch run on the suite's event loop."""
    items = 2_000 if options.quick else _LOOP_ITEMS
    return time_per_item(lambda: loop.run_until_complete(make_batch(items)), options)


def _token_bucket_rows(options: BenchOptions, loop: asyncio.AbstractEventLoop) -> list[BenchResult]:
    bucket = TokenBucket(_HUGE_RATE, _HUGE_CAPACITY)
    plain = PlainTokenBucket(_HUGE_RATE, _HUGE_CAPACITY)
    ours = time_per_call(bucket.try_acquire, options)
    baseline = time_per_call(plain.try_acquire, options)
    rows = [
        compare(
            "TokenBucket.try_acquire (admitting)",
            ours,
            "ns",
            baseline="minimal float bucket (inline)",
            baseline_value=baseline,
            target="<= 200 ns",
            met=ours <= 200,
        )
    ]
    empty = TokenBucket(1, 1)
    empty.try_acquire()
    rows.append(
        compare("TokenBucket.try_acquire (refusing)", time_per_call(empty.try_acquire, options), "ns")
    )

    aiolimiter = optional_import("aiolimiter")
    if aiolimiter is None:
        return rows
    peer = aiolimiter.AsyncLimiter(_HUGE_RATE, 1)
    async_bucket = TokenBucket(_HUGE_RATE, _HUGE_CAPACITY)

    async def ours_sync_check(count: int) -> int:
        try_acquire = async_bucket.try_acquire
        for _ in range(count):
            try_acquire()
        return count

    async def peer_sync_check(count: int) -> int:
        has_capacity = peer.has_capacity
        for _ in range(count):
            has_capacity()
        return count

    async def ours_acquire(count: int) -> int:
        acquire = async_bucket.acquire
        for _ in range(count):
            await acquire()
        return count

    async def peer_acquire(count: int) -> int:
        acquire = peer.acquire
        for _ in range(count):
            await acquire()
        return count

    ours_check = _in_loop(ours_sync_check, options, loop)
    peer_check = _in_loop(peer_sync_check, options, loop)
    rows.append(
        compare(
            "TokenBucket.try_acquire in a coroutine",
            ours_check,
            "ns",
            baseline="aiolimiter AsyncLimiter.has_capacity (check only)",
            baseline_value=peer_check,
            target="<= 200 ns",
            met=ours_check <= 200,
        )
    )
    ours_wait = _in_loop(ours_acquire, options, loop)
    peer_wait = _in_loop(peer_acquire, options, loop)
    rows.append(
        compare(
            "await TokenBucket.acquire (capacity to spare)",
            ours_wait,
            "ns",
            baseline="await aiolimiter AsyncLimiter.acquire",
            baseline_value=peer_wait,
        )
    )
    return rows


def _weighted_rows(options: BenchOptions) -> list[BenchResult]:
    limiter = WeightedLimiter(
        [
            RateWindow.of("REQUEST_WEIGHT", 10**12, "1M"),
            RateWindow.of("ORDERS_10S", 10**12, "10S"),
            RateWindow.of("ORDERS_1D", 10**12, "1D"),
        ]
    )
    order = limiter.costs({"REQUEST_WEIGHT": 1, "ORDERS_10S": 1, "ORDERS_1D": 1})
    cancel = limiter.costs({"REQUEST_WEIGHT": 1})
    order_ns = time_per_call(lambda: limiter.try_acquire(order), options)
    cancel_ns = time_per_call(lambda: limiter.try_acquire(cancel), options)
    return [
        compare("WeightedLimiter.try_acquire (order: 3 windows)", order_ns, "ns"),
        compare("WeightedLimiter.try_acquire (cancel: 1 window)", cancel_ns, "ns"),
    ]


def _breaker_retry_rows(options: BenchOptions, loop: asyncio.AbstractEventLoop) -> list[BenchResult]:
    breaker = CircuitBreaker("bench")
    policy = RetryPolicy(max_attempts=3, retryable=lambda error: isinstance(error, ConnectionError))

    def bare() -> int:
        return 1

    call_sync = policy.call_sync
    breaker_call = breaker.call_sync
    bare_ns = time_per_call(bare, options)
    wrapped_ns = time_per_call(lambda: call_sync(breaker_call, bare), options)
    breaker_only_ns = time_per_call(lambda: breaker_call(bare), options)
    overhead = max(0.0, wrapped_ns - bare_ns)
    rows = [
        compare(
            "breaker + retry overhead, sync core (successful call)",
            overhead,
            "ns",
            target="<= 1 us",
            met=overhead <= 1000,
            bare_call_ns=bare_ns,
            wrapped_call_ns=wrapped_ns,
        ),
        compare("breaker overhead alone, sync (successful call)", max(0.0, breaker_only_ns - bare_ns), "ns"),
    ]

    async def bare_async() -> int:
        return 1

    async def bare_batch(count: int) -> int:
        for _ in range(count):
            await bare_async()
        return count

    async def wrapped_batch(count: int) -> int:
        call = policy.call
        guarded = breaker.call

        def attempt() -> Awaitable[int]:
            return guarded(bare_async)

        for _ in range(count):
            await call(attempt)
        return count

    bare_async_ns = _in_loop(bare_batch, options, loop)
    wrapped_async_ns = _in_loop(wrapped_batch, options, loop)
    rows.append(
        compare(
            "breaker + retry overhead, async (informational)",
            max(0.0, wrapped_async_ns - bare_async_ns),
            "ns",
            bare_call_ns=bare_async_ns,
            wrapped_call_ns=wrapped_async_ns,
        )
    )
    return rows


def run(options: BenchOptions) -> list[BenchResult]:
    # One loop for every async figure: aiolimiter binds to the first loop it meets.
    loop = asyncio.new_event_loop()
    try:
        return [
            *_token_bucket_rows(options, loop),
            *_weighted_rows(options),
            *_breaker_retry_rows(options, loop),
        ]
    finally:
        loop.close()
