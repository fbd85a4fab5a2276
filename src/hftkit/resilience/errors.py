"""Errors raised by the resilience layer, each naming what was refused and why."""

from __future__ import annotations

from hftkit.core.errors import HftkitError


class ResilienceError(HftkitError):
    """Base class of the resilience layer's errors."""


class CapacityExceededError(ResilienceError, ValueError):
    """A request that can never be admitted: it asks for more than the limiter can ever hold."""


class UnknownWindowError(ResilienceError, KeyError):
    """A cost or usage observation names a rate window the limiter does not have."""

    def __str__(self) -> str:  # KeyError quotes its argument; a sentence reads better
        return str(self.args[0]) if self.args else "unknown rate window"


class UnknownEndpointError(ResilienceError, KeyError):
    """An endpoint missing from a limiter registry's table (a call that would go ungoverned)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown endpoint"


class CircuitOpenError(ResilienceError):
    """A call refused by an open (or saturated half-open) circuit breaker.

    ``retry_after`` is the number of seconds until the breaker lets a probe through, so a
    retry policy can wait exactly that long instead of hammering a dependency that is down.
    """

    def __init__(self, name: str, state: str, retry_after: float) -> None:
        super().__init__(f"circuit {name!r} is {state}; next probe allowed in {retry_after:.3f} s")
        self.name = name
        self.state = state
        self.retry_after = retry_after


class OperationTimeoutError(ResilienceError, TimeoutError):
    """An awaited operation that did not finish within its time budget."""

    def __init__(self, operation: str, seconds: float) -> None:
        super().__init__(f"{operation} timed out after {seconds:g} s")
        self.operation = operation
        self.seconds = seconds


class BatchResultMismatchError(ResilienceError):
    """A batch function returned a number of results different from the number of inputs."""


class DuplicateTaskError(ResilienceError, ValueError):
    """A supervised task started under a name that is already running."""
