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
from functools import partial

from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.native import NATIVE
from hftkit.resilience.errors import CapacityExceededError

_NS_PER_SECOND = 1_000_000_000
_MAX_RATE_DENOMINATOR = 1_000_000


class _Credits:
    """The bucket's balance in exact credits: the pure twin of ``hftkit._native.Credits``."""

    __slots__ = ("capacity", "check", "credits", "last_ns", "max_credits", "now", "rate", "rejected", "unit")

    def __init__(
        self,
        credits: int,
        max_credits: int,
        rate: int,
        unit: int,
        capacity: int,
        now: Callable[[], int],
        check: Callable[[int], None],
    ) -> None:
        self.credits = credits
        self.max_credits = max_credits
        self.rate = rate
        self.unit = unit
        self.capacity = capacity
        self.now = now
        self.check = check
        self.last_ns = now()
        self.rejected = 0

    def refill(self) -> int:
        now = self.now()
        credits = self.credits + (now - self.last_ns) * self.rate
        if credits > self.max_credits:
            credits = self.max_credits
        self.credits = credits
        self.last_ns = now
        return credits

    def take(self, n: int = 1) -> bool:
        # refill() inlined: this is try_acquire on a machine without the C balance
        now = self.now()
        credits = self.credits + (now - self.last_ns) * self.rate
        if credits > self.max_credits:
            credits = self.max_credits
        self.last_ns = now
        self.credits = credits
        if type(n) is int and 0 < n <= self.capacity:
            need = n * self.unit
            if need <= credits:
                self.credits = credits - need
                return True
        else:
            self.check(n)
        self.rejected += 1
        return False


def _check_count(capacity: int, n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"token count must be a positive integer, got {n!r}")
    if n > capacity:
        raise CapacityExceededError(
            f"cannot take {n} tokens from a bucket of capacity {capacity}: it would wait forever"
        )


# The C balance keeps int64 credits (a Python int only while queued reservations hold it
# below int64): it is used whenever a full bucket and the per-ns rate fit.
_INT64_MAX = (1 << 63) - 1


class TokenBucket:
    """Admit up to ``rate_per_second`` tokens per second with bursts of up to ``capacity``.

    ``try_acquire(n=1) -> bool`` takes ``n`` tokens now if they are there and never waits;
    it is the balance's own ``take`` (C when ``hftkit._native`` is built), bound per bucket so
    the hot path is one call. ``rejected`` counts refused calls (a cheap sign of pressure;
    admissions are not counted, to keep the hot path to a handful of integer operations).
    """

    __slots__ = (
        "_check",
        "_core",
        "_max_credits",
        "_rate_credits_per_ns",
        "_sleep",
        "_unit",
        "capacity",
        "rate_per_second",
        "try_acquire",
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
        self._check = partial(_check_count, capacity)
        fits = self._max_credits <= _INT64_MAX and rate.numerator <= _INT64_MAX
        balance = NATIVE.Credits if NATIVE is not None and fits else _Credits
        self._core = balance(
            start * self._unit,
            self._max_credits,
            rate.numerator,
            self._unit,
            capacity,
            clock.monotonic_ns,
            self._check,
        )
        self.try_acquire: Callable[..., bool] = self._core.take
        self._sleep = sleep

    @property
    def rejected(self) -> int:
        """Refused ``try_acquire`` calls."""
        return int(self._core.rejected)

    def time_until_available_ns(self, n: int = 1) -> int:
        """Nanoseconds until ``n`` tokens are there (0 if now), counting waiters already queued."""
        self._check(n)
        credits = self._core.refill()
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
        return self._core.refill() / self._unit

    async def acquire(self, n: int = 1) -> None:
        """Wait until ``n`` tokens are ours: reserve now, sleep once for exactly the shortfall."""
        self._check(n)
        core = self._core
        credits = core.refill()
        need = n * self._unit
        core.credits = credits - need
        if credits >= need:
            return
        wait_ns = -(-(need - credits) // self._rate_credits_per_ns)
        try:
            await self._sleep(wait_ns / _NS_PER_SECOND)
        except BaseException:
            # A cancelled waiter never used its tokens: give them back (capped, so never a gain).
            core.credits = min(self._max_credits, core.refill() + need)
            raise

    def __repr__(self) -> str:
        return (
            f"TokenBucket(rate_per_second={self.rate_per_second:g}, capacity={self.capacity}, "
            f"tokens={self.tokens:.3f})"
        )
