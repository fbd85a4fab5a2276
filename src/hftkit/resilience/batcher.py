"""A request batcher: many callers, one batch call, each caller gets its own result or error.

Calls are collected until ``max_items`` are waiting or ``max_delay`` seconds have passed
since the first one, then one batch call runs (for example Binance's batch orders endpoint, or
one database write). The batch function returns one entry per input, aligned with the inputs;
an entry that is an exception is raised to that caller only, and an exception raised by the
batch function itself reaches every caller of the batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from hftkit.resilience.errors import BatchResultMismatchError

_I = TypeVar("_I")
_R = TypeVar("_R")

log = logging.getLogger(__name__)


class RequestBatcher(Generic[_I, _R]):
    """Collect ``submit(item)`` calls into batches of up to ``max_items`` or ``max_delay`` seconds."""

    def __init__(
        self,
        batch_function: Callable[[list[_I]], Awaitable[Sequence[_R | BaseException]]],
        *,
        max_items: int = 100,
        max_delay: float = 0.005,
        max_concurrent_batches: int | None = None,
        name: str = "batcher",
    ) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        if max_delay < 0:
            raise ValueError("max_delay must not be negative")
        if max_concurrent_batches is not None and max_concurrent_batches < 1:
            raise ValueError("max_concurrent_batches must be at least 1 (or None)")
        self._batch_function = batch_function
        self.max_items = max_items
        self.max_delay = max_delay
        self.name = name
        self._pending: list[tuple[_I, asyncio.Future[_R]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_concurrent_batches) if max_concurrent_batches else None
        self._closed = False
        self.batches = 0
        self.items = 0
        self.batch_failures = 0
        self.item_failures = 0
        self.dropped_cancelled = 0

    async def submit(self, item: _I) -> _R:
        """Queue ``item`` for the next batch and wait for its own result."""
        if self._closed:
            raise RuntimeError(f"batcher {self.name!r} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_R] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_items:
            self.flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_delay, self.flush)
        return await future

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        """Send what is waiting now, without waiting for the batch to fill."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            chunk, self._pending = self._pending[: self.max_items], self._pending[self.max_items :]
            live = [(item, future) for item, future in chunk if not future.done()]
            self.dropped_cancelled += len(chunk) - len(live)
            if not live:
                continue
            task = asyncio.get_running_loop().create_task(self._run_batch(live))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run_batch(self, batch: list[tuple[_I, asyncio.Future[_R]]]) -> None:
        if self._slots is not None:
            async with self._slots:
                await self._execute(batch)
        else:
            await self._execute(batch)

    async def _execute(self, batch: list[tuple[_I, asyncio.Future[_R]]]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            results = await self._batch_function([item for item, _ in batch])
            if len(results) != len(batch):
                raise BatchResultMismatchError(
                    f"batcher {self.name!r}: batch function returned {len(results)} results "
                    f"for {len(batch)} inputs"
                )
        except asyncio.CancelledError:
            for _, future in batch:
                if not future.done():
                    future.cancel()
            raise
        except Exception as error:
            self.batch_failures += 1
            log.warning("batcher %s: batch of %d failed: %r", self.name, len(batch), error)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                self.item_failures += 1
                future.set_exception(result)
            else:
                future.set_result(result)

    async def aclose(self) -> None:
        """Send what is waiting and wait for every batch in flight; refuse new items."""
        self._closed = True
        self.flush()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def __aenter__(self) -> RequestBatcher[_I, _R]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
