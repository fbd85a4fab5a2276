"""A token bucket in exact integer arithmetic: O(1) ``try_acquire``, FIFO async ``acquire``.

Tokens are kept as integer *credits* so refill never drifts: with the rate written as the
fraction ``p / q`` tokens per second, one nanosecond adds ``p`` credits and one token costs
``q * 1e9`` credits. The bucket can therefore never admit more than ``capacity + rate * T``
tokens in any interval of ``T`` seconds, whatever the float rounding of the rate would have done.

Async waiters *reserve* their tokens at once (the balance goes negative) and sleep exactly
until the balance would have reached zero: one computed sleep per waiter, first come first
served, and ``try_acquire`` cannot jump ahead of them while they wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from fractions import Fraction

from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.resilience.errors import CapacityExceededError

_NS_PER_SECOND = 1_000_000_000
_MAX_RATE_DENOMINATOR = 1_000_000


class TokenBucket:
    """Admit up to ``rate_per_second`` tokens per second with bursts of up to ``capacity``."""

    __slots__ = (
        "_credits",
        "_last_ns",
        "_max_credits",
        "_now",
        "_rate_credits_per_ns",
        "_sleep",
        "_unit",
        "capacity",
        "rate_per_second",
        "rejected",
    )

    def __init__(
        self,
        rate_per_second: float | Fraction,
        capacity: int,
        clock: Clock = REAL_CLOCK,
        *,
        initial_tokens: int | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        rate = Fraction(rate_per_second).limit_denominator(_MAX_RATE_DENOMINATOR)
        if rate <= 0:
            raise ValueError(f"rate_per_second must be positive, got {rate_per_second!r}")
        start = capacity if initial_tokens is None else initial_tokens
        if not 0 <= start <= capacity:
            raise ValueError(f"initial_tokens must be within 0..{capacity}, got {initial_tokens!r}")
        self.rate_per_second = float(rate)
        self.capacity = capacity
        self._rate_credits_per_ns = rate.numerator
        self._unit = rate.denominator * _NS_PER_SECOND
        self._max_credits = capacity * self._unit
        self._credits = start * self._unit
        self._now = clock.monotonic_ns
        self._last_ns = self._now()
        self._sleep = sleep
        self.rejected = 0
        """Refused ``try_acquire`` calls (a cheap sign of pressure; admissions are not counted
        on the hot path to keep it to a handful of integer operations)."""

    def try_acquire(self, n: int = 1) -> bool:
        """Take ``n`` tokens now if they are there; never waits."""
        now = self._now()
        credits = self._credits + (now - self._last_ns) * self._rate_credits_per_ns
        if credits > self._max_credits:
            credits = self._max_credits
        self._last_ns = now
        need = n * self._unit
        if 0 < need <= credits:
            self._credits = credits - need
            return True
        self._credits = credits
        if need <= 0 or n > self.capacity:
            self._check(n)
        self.rejected += 1
        return False

    def time_until_available_ns(self, n: int = 1) -> int:
        """Nanoseconds until ``n`` tokens are there (0 if now), counting waiters already queued."""
        self._check(n)
        credits = self._refill()
        missing = n * self._unit - credits
        if missing <= 0:
            return 0
        return -(-missing // self._rate_credits_per_ns)

    def time_until_available(self, n: int = 1) -> float:
        """Seconds until ``n`` tokens are there (0.0 if now)."""
        return self.time_until_available_ns(n) / _NS_PER_SECOND

    @property
    def tokens(self) -> float:
        """Tokens in the bucket now (negative while async waiters hold reservations)."""
        return self._refill() / self._unit

    async def acquire(self, n: int = 1) -> None:
        """Wait until ``n`` tokens are ours: reserve now, sleep once for exactly the shortfall."""
        self._check(n)
        credits = self._refill()
        need = n * self._unit
        self._credits = credits - need
        if credits >= need:
            return
        wait_ns = -(-(need - credits) // self._rate_credits_per_ns)
        try:
            await self._sleep(wait_ns / _NS_PER_SECOND)
        except BaseException:
            # A cancelled waiter never used its tokens: give them back (capped, so never a gain).
            self._credits = min(self._max_credits, self._refill() + need)
            raise

    def _refill(self) -> int:
        now = self._now()
        credits = self._credits + (now - self._last_ns) * self._rate_credits_per_ns
        if credits > self._max_credits:
            credits = self._max_credits
        self._credits = credits
        self._last_ns = now
        return credits

    def _check(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"token count must be a positive integer, got {n!r}")
        if n > self.capacity:
            raise CapacityExceededError(
                f"cannot take {n} tokens from a bucket of capacity {self.capacity}: it would wait forever"
            )

    def __repr__(self) -> str:
        return (
            f"TokenBucket(rate_per_second={self.rate_per_second:g}, capacity={self.capacity}, "
            f"tokens={self.tokens:.3f})"
        )
