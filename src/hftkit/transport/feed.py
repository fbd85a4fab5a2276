"""A bounded feed queue with a named overflow policy, and a micro-batching consumer.

The queue sits between a producer (a socket reader) and its consumers on one event loop. It is
a ``collections.deque`` plus waiter futures rather than ``asyncio.Queue``: a put that finds no
waiting consumer costs a deque append and a clock read, and a full queue does what its policy
says instead of always blocking:

- ``block``: ``put`` waits for room; ``put_nowait`` raises :class:`QueueFullError`.
- ``drop_oldest``: the oldest item makes room (the usual choice for market data: stale data is
  worth less than fresh).
- ``drop_newest``: the incoming item is refused (``put``/``put_nowait`` return False).

Every drop is counted by :class:`DropReason`. Each item is stamped with the queue clock's
monotonic ns at enqueue, so a consumer can measure how long items waited.

:class:`MicroBatcher` drains a queue in batches of up to N items, waiting at most T (1 ms by
default) after the first item of a batch arrived, and hands each batch to a handler. Handler
exceptions are logged (once per exception type) and counted; they never stop the consumer.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.errors import HftkitError
from hftkit.metrics import LatencyHistogram

__all__ = [
    "NULL_RECORDER",
    "DropReason",
    "FeedQueue",
    "LatencyRecorder",
    "MicroBatcher",
    "NullRecorder",
    "OverflowPolicy",
    "QueueClosedError",
    "QueueEmptyError",
    "QueueFullError",
]

T = TypeVar("T")

logger = logging.getLogger(__name__)


class OverflowPolicy(enum.Enum):
    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"


class DropReason(enum.Enum):
    OLDEST_EVICTED = "oldest_evicted"  # drop_oldest: a queued item made room for a new one
    NEWEST_REJECTED = "newest_rejected"  # drop_newest: the incoming item was refused
    FULL = "full"  # block: put_nowait on a full queue (raised QueueFullError)
    CLOSED = "closed"  # put after close(), or discarded by close(drain=False)


class QueueFullError(HftkitError):
    """``put_nowait`` on a full queue whose policy is ``block``: use ``await put()`` to wait."""


class QueueClosedError(HftkitError):
    """The queue is closed: no more puts; gets raise it once the queue is drained."""


class QueueEmptyError(HftkitError):
    """``get_nowait`` on an empty (open) queue."""


class LatencyRecorder(Protocol):
    """Anything that records a duration in ns: a ``LatencyHistogram``, a test double, a no-op."""

    def record(self, value_ns: int, /) -> None: ...


class NullRecorder:
    """Discards every value: the default when no histogram is wired in."""

    __slots__ = ()

    def record(self, value_ns: int, /) -> None:
        return None


NULL_RECORDER = NullRecorder()


def _wake_first(waiters: deque[asyncio.Future[None]]) -> None:
    """Resolve the first waiter still waiting (cancelled or timed-out ones are skipped)."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class FeedQueue(Generic[T]):
    """A bounded single-loop queue with an overflow policy, drop counters and a high-water mark."""

    def __init__(
        self,
        capacity: int,
        policy: OverflowPolicy | str = OverflowPolicy.DROP_OLDEST,
        *,
        name: str = "feed",
        clock: Clock = REAL_CLOCK,
    ) -> None:
        if not isinstance(capacity, int) or capacity <= 0:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        self.name = name
        self.capacity = capacity
        self.policy = OverflowPolicy(policy)
        self._now = clock.monotonic_ns
        self._items: deque[tuple[int, T]] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._limit = capacity  # put_nowait's fast-path bound: 0 once closed
        self._high_water = 0
        self._discarded_at_close = 0
        self._dequeued = 0
        self._drops = dict.fromkeys(DropReason, 0)

    # state -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def high_water_mark(self) -> int:
        """The largest size the queue has reached."""
        return self._high_water

    @property
    def enqueued(self) -> int:
        """Items accepted (an item evicted later by drop_oldest still counts here)."""
        return (
            self._dequeued
            + len(self._items)
            + self._drops[DropReason.OLDEST_EVICTED]
            + self._discarded_at_close
        )

    @property
    def dequeued(self) -> int:
        return self._dequeued

    @property
    def drops(self) -> dict[DropReason, int]:
        return dict(self._drops)

    @property
    def dropped(self) -> int:
        return sum(self._drops.values())

    def stats(self) -> dict[str, int | str]:
        """A flat snapshot for metrics exporters and dashboards."""
        flat: dict[str, int | str] = {
            "name": self.name,
            "policy": self.policy.value,
            "size": len(self._items),
            "capacity": self.capacity,
            "high_water_mark": self._high_water,
            "enqueued": self.enqueued,
            "dequeued": self._dequeued,
        }
        for reason, count in self._drops.items():
            flat[f"dropped_{reason.value}"] = count
        return flat

    # producer side -----------------------------------------------------------------------
    def put_nowait(self, item: T) -> bool:
        """Enqueue without waiting. True if ``item`` was queued, False if the policy refused it.

        Raises :class:`QueueFullError` on a full ``block`` queue and :class:`QueueClosedError`
        after ``close()``; both are counted as drops.
        """
        items = self._items
        size = len(items)
        if size >= self._limit:  # full, or closed (the limit drops to 0 on close)
            if not self._make_room():
                return False
            size = len(items)
        items.append((self._now(), item))
        size += 1
        if size > self._high_water:
            self._high_water = size
        if self._getters:
            _wake_first(self._getters)
        return True

    def _make_room(self) -> bool:
        """The overflow path of ``put_nowait``: apply the policy, count the drop."""
        if self._closed:
            self._drops[DropReason.CLOSED] += 1
            raise QueueClosedError(f"queue {self.name!r} is closed")
        policy = self.policy
        if policy is OverflowPolicy.DROP_OLDEST:
            self._items.popleft()
            self._drops[DropReason.OLDEST_EVICTED] += 1
            return True
        if policy is OverflowPolicy.DROP_NEWEST:
            self._drops[DropReason.NEWEST_REJECTED] += 1
            return False
        self._drops[DropReason.FULL] += 1
        raise QueueFullError(f"queue {self.name!r} is full ({self.capacity} items, policy block)")

    async def put(self, item: T) -> bool:
        """Enqueue; on a full ``block`` queue wait for room. Other policies never wait."""
        if self.policy is OverflowPolicy.BLOCK:
            while len(self._items) >= self.capacity and not self._closed:
                await self._wait(self._putters, None)
        return self.put_nowait(item)

    def close(self, *, drain: bool = True) -> None:
        """No more puts. With ``drain`` consumers still get the queued items, then a clean end;
        without it the queued items are discarded (counted as CLOSED drops)."""
        if self._closed:
            return
        self._closed = True
        self._limit = 0
        if not drain:
            self._discarded_at_close = len(self._items)
            self._drops[DropReason.CLOSED] += len(self._items)
            self._items.clear()
        for waiters in (self._getters, self._putters):
            while waiters:
                _release(waiters.popleft())

    # consumer side -----------------------------------------------------------------------
    def get_nowait(self) -> T:
        items = self._items
        if items:
            self._dequeued += 1
            entry = items.popleft()
            if self._putters:
                _wake_first(self._putters)
            return entry[1]
        if self._closed:
            raise QueueClosedError(f"queue {self.name!r} is closed and drained")
        raise QueueEmptyError(f"queue {self.name!r} is empty")

    async def get(self) -> T:
        """The oldest item, waiting for one; raises :class:`QueueClosedError` at the clean end."""
        while not self._items:
            if self._closed:
                raise QueueClosedError(f"queue {self.name!r} is closed and drained")
            await self._wait(self._getters, None)
        return self.get_nowait()

    async def get_batch(self, max_items: int, max_delay_s: float = 0.0) -> list[tuple[int, T]]:
        """Up to ``max_items`` (enqueue_ns, item) entries, oldest first.

        Waits for a first item, then for more until ``max_items`` are in hand or ``max_delay_s``
        has passed since that first item was enqueued, whichever comes first. Raises
        :class:`QueueClosedError` only when closed and empty, so a consumer sees every item.
        """
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        while not self._items:
            if self._closed:
                raise QueueClosedError(f"queue {self.name!r} is closed and drained")
            await self._wait(self._getters, None)
        batch = self._take(max_items, [])
        if len(batch) < max_items and max_delay_s > 0 and not self._closed:
            deadline_ns = batch[0][0] + int(max_delay_s * 1e9)
            while len(batch) < max_items and not self._closed:
                remaining_ns = deadline_ns - self._now()
                if remaining_ns <= 0:
                    break
                await self._wait(self._getters, remaining_ns / 1e9)
                if not self._items:
                    break  # timed out (or closed)
                self._take(max_items - len(batch), batch)
        return batch

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        while True:
            try:
                item = await self.get()
            except QueueClosedError:
                return
            yield item

    # internals ---------------------------------------------------------------------------
    def _take(self, count: int, into: list[tuple[int, T]]) -> list[tuple[int, T]]:
        items = self._items
        taken = 0
        popleft = items.popleft
        append = into.append
        while items and taken < count:
            append(popleft())
            taken += 1
        self._dequeued += taken
        if taken and self._putters:
            for _ in range(taken):
                _wake_first(self._putters)
        return into

    async def _wait(self, waiters: deque[asyncio.Future[None]], timeout_s: float | None) -> None:
        """Park until woken, closed, or ``timeout_s`` passes; pass a wake-up on if cancelled."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        waiters.append(waiter)
        timer = loop.call_later(timeout_s, _release, waiter) if timeout_s is not None else None
        try:
            await waiter
        except BaseException:
            woken = waiter.done() and not waiter.cancelled()
            waiter.cancel()
            if woken:  # leaving anyway: hand the wake-up on so no item or slot goes unnoticed
                _wake_first(waiters)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if waiter in waiters:
                waiters.remove(waiter)


class MicroBatcher(Generic[T]):
    """Consume a :class:`FeedQueue` in batches: up to ``max_batch_size`` items, or whatever has
    arrived ``max_delay_s`` after the batch's first item was enqueued.

    Batching amortizes per-call costs (a storage write, a bus publish) over many items while
    bounding the added delay. ``queue_wait`` records each item's enqueue-to-dequeue ns;
    ``batch_latency`` records each handler call's ns: each is a new
    :class:`~hftkit.metrics.LatencyHistogram` unless one is passed (``NULL_RECORDER`` turns
    recording off). The handler may be sync or async.
    """

    def __init__(
        self,
        queue: FeedQueue[T],
        handler: Callable[[list[T]], Awaitable[object] | object],
        *,
        max_batch_size: int = 256,
        max_delay_s: float = 0.001,
        queue_wait: LatencyRecorder | None = None,
        batch_latency: LatencyRecorder | None = None,
        clock: Clock = REAL_CLOCK,
        name: str | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_delay_s < 0:
            raise ValueError(f"max_delay_s must be >= 0, got {max_delay_s}")
        self.queue = queue
        self.handler = handler
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.queue_wait: LatencyRecorder = LatencyHistogram() if queue_wait is None else queue_wait
        self.batch_latency: LatencyRecorder = LatencyHistogram() if batch_latency is None else batch_latency
        self.name = name or f"{queue.name}-batcher"
        self._now = clock.monotonic_ns
        self.batches = 0
        self.items = 0
        self.handler_errors = 0
        self.errors_by_type: dict[str, int] = {}
        self.last_error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Deliver batches until the queue is closed and drained."""
        queue = self.queue
        now = self._now
        record_wait = self.queue_wait.record
        record_batch = self.batch_latency.record
        while True:
            try:
                entries = await queue.get_batch(self.max_batch_size, self.max_delay_s)
            except QueueClosedError:
                return
            dequeued_ns = now()
            batch: list[T] = []
            append = batch.append
            for enqueued_ns, item in entries:
                record_wait(dequeued_ns - enqueued_ns)
                append(item)
            started_ns = now()
            try:
                result = self.handler(batch)
                if inspect.isawaitable(result):
                    await result
            except Exception as error:  # a bad batch never stops the feed
                self._count_error(error)
            record_batch(now() - started_ns)
            self.batches += 1
            self.items += len(batch)

    def _count_error(self, error: Exception) -> None:
        self.handler_errors += 1
        self.last_error = error
        kind = type(error).__qualname__
        seen = self.errors_by_type.get(kind, 0)
        self.errors_by_type[kind] = seen + 1
        if seen == 0:
            logger.error("%s: handler raised %s (logged once per type)", self.name, kind, exc_info=error)
        else:
            logger.debug("%s: handler raised %s again: %s", self.name, kind, error)

    def start(self) -> asyncio.Task[None]:
        """Run in a background task (on the running loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name=self.name)
        return self._task

    async def stop(self, *, drain: bool = True) -> None:
        """Close the queue and wait for the consumer to finish (after the queued items if
        ``drain``)."""
        self.queue.close(drain=drain)
        if self._task is not None:
            await self._task
