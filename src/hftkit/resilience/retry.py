"""Retry with exponential backoff and full jitter, bounded by attempts, delay and a deadline.

Full jitter (``uniform(0, min(max_delay, base * 2**attempt))``) spreads the retries of many
clients that failed together, so a recovering venue does not meet them all at once. Only
errors the predicate accepts are retried: an order rejection retried blindly could double a
position. An exception carrying ``retry_after`` (seconds, e.g. from a 429's Retry-After or
an open circuit breaker) is honoured: the wait is at least that long.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, ParamSpec, TypeVar

from hftkit.core.clock import REAL_CLOCK, Clock

_T = TypeVar("_T")
_P = ParamSpec("_P")
_NS_PER_SECOND = 1_000_000_000

log = logging.getLogger(__name__)


def retry_after_hint(error: BaseException) -> float | None:
    """Seconds the error asks us to wait (its ``retry_after`` attribute), if it carries one."""
    hint = getattr(error, "retry_after", None)
    if isinstance(hint, int | float) and not isinstance(hint, bool) and hint >= 0:
        return float(hint)
    return None


def _retry_everything(error: BaseException) -> bool:
    return True


class RetryPolicy:
    """How to retry one kind of call. Stateless apart from counters, so one policy is shared."""

    def __init__(
        self,
        *,
        max_attempts: int = 5,
        base_delay: float = 0.05,
        max_delay: float = 5.0,
        deadline: float | None = None,
        retryable: Callable[[BaseException], bool] = _retry_everything,
        uniform: Callable[[float, float], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        sync_sleep: Callable[[float], object] = time.sleep,
        clock: Clock = REAL_CLOCK,
        name: str = "retry",
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts counts the first call and must be at least 1")
        if base_delay < 0 or max_delay < 0:
            raise ValueError("delays must not be negative")
        if deadline is not None and deadline <= 0:
            raise ValueError("deadline must be positive seconds (or None for no deadline)")
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.deadline = deadline
        self.retryable = retryable
        self._uniform = uniform if uniform is not None else random.Random().uniform
        self._sleep = sleep
        self._sync_sleep = sync_sleep
        self._now = clock.monotonic_ns
        self.name = name
        self.calls = 0
        self.retries = 0
        self.give_ups = 0
        self.not_retryable = 0

    # -- sans-I/O schedule ------------------------------------------------------------------

    def backoff_ceiling(self, attempt: int) -> float:
        """The upper bound of the jittered delay after failed attempt number ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError("attempt numbers start at 0")
        if self.base_delay == 0:
            return 0.0
        # Cap the exponent so 2**attempt never overflows a float for absurd attempt numbers.
        exponent = min(attempt, 1024)
        try:
            ceiling = self.base_delay * 2.0**exponent
        except OverflowError:
            return self.max_delay
        return min(self.max_delay, ceiling)

    def next_delay(self, attempt: int, error: BaseException | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt``; at least the error's ``retry_after``."""
        delay = self._uniform(0.0, self.backoff_ceiling(attempt))
        if error is not None:
            hint = retry_after_hint(error)
            if hint is not None and hint > delay:
                return hint
        return delay

    def delays(self) -> Iterator[float]:
        """The jittered delays between the ``max_attempts`` attempts, in order."""
        for attempt in range(self.max_attempts - 1):
            yield self.next_delay(attempt)

    def _decide(self, attempt: int, error: Exception, started_ns: int) -> float | None:
        # ``started_ns`` is only read when a deadline is set (the sync shell skips the clock otherwise).
        """The delay before the next attempt, or None to give up (and re-raise ``error``)."""
        if not self.retryable(error):
            self.not_retryable += 1
            return None
        if attempt + 1 >= self.max_attempts:
            self.give_ups += 1
            error.add_note(f"{self.name}: gave up after {attempt + 1} attempts")
            return None
        delay = self.next_delay(attempt, error)
        if self.deadline is not None:
            elapsed = (self._now() - started_ns) / _NS_PER_SECOND
            if elapsed + delay > self.deadline:
                self.give_ups += 1
                error.add_note(
                    f"{self.name}: gave up after {attempt + 1} attempts; next wait {delay:.3f} s "
                    f"would pass the {self.deadline:g} s deadline"
                )
                return None
        self.retries += 1
        log.debug("%s: attempt %d failed with %r; retrying in %.3f s", self.name, attempt + 1, error, delay)
        return delay

    # -- async shell ------------------------------------------------------------------------

    async def call(self, function: Callable[[], Awaitable[_T]]) -> _T:
        """Await ``function()`` until it succeeds, the predicate refuses, or the budget ends."""
        self.calls += 1
        started = self._now() if self.deadline is not None else 0
        attempt = 0
        while True:
            try:
                return await function()
            except Exception as error:
                delay = self._decide(attempt, error, started)
                if delay is None:
                    raise
            await self._sleep(delay)
            attempt += 1

    async def run(self, function: Callable[_P, Awaitable[_T]], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``call`` for a coroutine function with arguments (a fresh coroutine per attempt)."""
        return await self.call(lambda: function(*args, **kwargs))

    # -- sync shell -------------------------------------------------------------------------

    def call_sync(self, function: Callable[..., _T], *args: Any) -> _T:
        """The blocking variant, for tools and start-up code outside the event loop."""
        self.calls += 1
        started = self._now() if self.deadline is not None else 0
        try:
            return function(*args)
        except Exception as error:
            first_error = error
        return self._retry_sync(function, args, first_error, started)

    def _retry_sync(
        self, function: Callable[..., _T], args: tuple[Any, ...], error: Exception, started: int
    ) -> _T:
        attempt = 0
        while True:
            delay = self._decide(attempt, error, started)
            if delay is None:
                raise error
            self._sync_sleep(delay)
            attempt += 1
            try:
                return function(*args)
            except Exception as next_error:
                error = next_error

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(name={self.name!r}, max_attempts={self.max_attempts}, "
            f"base_delay={self.base_delay:g}, max_delay={self.max_delay:g}, deadline={self.deadline})"
        )
