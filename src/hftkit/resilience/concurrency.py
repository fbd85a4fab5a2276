"""Bounded gather and timeouts with defaults: the small asyncio tools every shell needs."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from hftkit.resilience.errors import OperationTimeoutError

_T = TypeVar("_T")

DEFAULT_TIMEOUT_SECONDS = 10.0
"""The timeout ``with_timeout`` uses when given none; change it with ``set_default_timeout``."""

_default_timeout = DEFAULT_TIMEOUT_SECONDS


def set_default_timeout(seconds: float) -> None:
    """Set the process-wide default for ``with_timeout`` (e.g. from configuration at start-up)."""
    global _default_timeout
    if seconds <= 0:
        raise ValueError("the default timeout must be positive seconds")
    _default_timeout = seconds


def default_timeout() -> float:
    return _default_timeout


def _describe(awaitable: object) -> str:
    name = getattr(awaitable, "__qualname__", None)
    if isinstance(name, str):
        return name
    return type(awaitable).__name__


async def with_timeout(
    awaitable: Awaitable[_T], seconds: float | None = None, *, operation: str | None = None
) -> _T:
    """Await with a time budget; on expiry raise ``OperationTimeoutError`` naming the operation."""
    budget = _default_timeout if seconds is None else seconds
    if budget <= 0:
        raise ValueError(f"timeout must be positive seconds, got {budget!r}")
    name = operation or _describe(awaitable)
    try:
        async with asyncio.timeout(budget):
            return await awaitable
    except TimeoutError as error:
        if isinstance(error, OperationTimeoutError):
            raise
        raise OperationTimeoutError(name, budget) from error


AwaitableOrFactory = Awaitable[Any] | Callable[[], Awaitable[Any]]


async def gather_bounded(
    max_concurrency: int, *items: AwaitableOrFactory, return_exceptions: bool = False
) -> list[Any]:
    """Run awaitables (or zero-argument factories of them) at most ``max_concurrency`` at a time.

    Results come back in argument order. Factories are preferred: a coroutine made up front
    already exists even while it waits for a slot; a factory is called only when its slot
    opens. Without ``return_exceptions`` the first error cancels the rest (unlike
    ``asyncio.gather``, nothing is left running behind the caller's back) and is raised;
    coroutines that never started are closed so nothing warns "never awaited".
    """
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")
    for index, item in enumerate(items):
        if not (inspect.isawaitable(item) or callable(item)):
            raise TypeError(f"argument {index} is neither awaitable nor a factory: {item!r}")
    results: list[Any] = [None] * len(items)
    if not items:
        return results
    next_index = iter(range(len(items)))
    started = [False] * len(items)

    async def worker() -> None:
        for index in next_index:
            started[index] = True
            item = items[index]
            awaitable = item if inspect.isawaitable(item) else item()
            try:
                results[index] = await awaitable
            except Exception as error:
                if not return_exceptions:
                    raise
                results[index] = error

    workers = [asyncio.ensure_future(worker()) for _ in range(min(max_concurrency, len(items)))]
    try:
        _done, pending = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
        failed = next((task for task in workers if task.done() and task.exception() is not None), None)
        if failed is not None:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            raise failed.exception()  # type: ignore[misc]
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        _close_unstarted(items, started)
        raise
    return results


def _close_unstarted(items: tuple[AwaitableOrFactory, ...], started: list[bool]) -> None:
    for index, item in enumerate(items):
        if not started[index] and isinstance(item, Coroutine):
            item.close()
