"""The batching writer every sink sits behind: the hot path appends, a background task writes.

``put`` is a deque append and two comparisons: it never awaits and never blocks the event loop.
A background task takes up to ``batch_size`` items when that many are waiting, or whatever is
waiting every ``flush_interval_s``, and awaits the sink's ``write``. Only that task waits on the
sink, so a slow or dead sink costs the hot path nothing; what it does cost is room in the buffer,
and a full buffer does what the named :class:`OverflowPolicy` says (``block`` is not offered:
waiting for a database on the hot path is the thing this module exists to prevent). Every item
that does not reach the sink is counted by reason.

A failed write is retried with backoff (``hftkit.resilience.RetryPolicy``) through a circuit
breaker (``hftkit.resilience.CircuitBreaker``): a sink that keeps failing is left alone until
the breaker lets a probe through, instead of being hammered by every batch. A batch whose
retries are exhausted is dropped and counted (``keep_failed=False``, right for metrics and
time series) or put back at the head of the buffer to be tried again (``keep_failed=True``,
right for a journal: the buffer's bound and overflow policy still cap the memory it takes).

``status()`` is a snapshot for the dashboard and ``/health``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import msgspec

from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.errors import HftkitError
from hftkit.resilience.breaker import CircuitBreaker
from hftkit.resilience.concurrency import with_timeout
from hftkit.resilience.errors import CircuitOpenError
from hftkit.resilience.retry import RetryPolicy

__all__ = [
    "BatchingWriter",
    "OverflowPolicy",
    "Sink",
    "WriterClosedError",
    "WriterStatus",
]

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

log = logging.getLogger(__name__)


class OverflowPolicy(enum.Enum):
    """What a full buffer does with one more item (both are O(1) and never wait)."""

    DROP_OLDEST = "drop_oldest"  # the oldest buffered item makes room (fresh data is worth more)
    DROP_NEWEST = "drop_newest"  # the incoming item is refused (what was accepted keeps its order)

    @classmethod
    def parse(cls, value: OverflowPolicy | str) -> OverflowPolicy:
        if isinstance(value, OverflowPolicy):
            return value
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(policy.value for policy in cls)
            hint = " (a writer never blocks the event loop)" if value == "block" else ""
            raise ValueError(f"unknown overflow policy {value!r}{hint}; choose one of {choices}") from None


@runtime_checkable
class Sink(Protocol[T_contra]):
    """Where batches go. ``open()`` and ``close()`` (both async, both optional) are called if present."""

    async def write(self, batch: Sequence[T_contra]) -> None: ...


class WriterClosedError(HftkitError):
    """The writer was closed: it takes no more items."""


class WriterStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One writer's health, as the dashboard and ``/health`` show it."""

    name: str
    running: bool
    healthy: bool  # breaker closed, nothing failed or dropped since the last successful write
    buffered: int
    capacity: int
    written: int  # items the sink accepted
    batches: int  # successful writes
    dropped: int  # every item that never reached the sink (sum of the three below)
    dropped_overflow: int
    dropped_failed: int  # in batches whose retries were exhausted (keep_failed=False)
    dropped_on_close: int  # still buffered when the shutdown flush ran out of time
    failed_batches: int  # writes that failed after all retries
    retries: int
    breaker_state: str
    last_error: str | None
    last_write_ns: int  # wall clock of the last successful write (0: none yet)
    open_failures: int = 0  # the sink's ``open`` failed at start (the writer ran on regardless)


class BatchingWriter(Generic[T]):
    """A bounded buffer in front of a :class:`Sink`, flushed by size, by time and on close."""

    def __init__(
        self,
        sink: Sink[T],
        *,
        name: str = "writer",
        capacity: int = 100_000,
        batch_size: int = 1000,
        flush_interval_s: float = 2.0,
        overflow: OverflowPolicy | str = OverflowPolicy.DROP_OLDEST,
        keep_failed: bool = False,
        write_timeout_s: float | None = 30.0,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        if capacity < 1 or batch_size < 1:
            raise ValueError("capacity and batch_size must be at least 1")
        if batch_size > capacity:
            raise ValueError(f"batch_size {batch_size} is larger than the buffer's capacity {capacity}")
        if flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be positive seconds")
        if write_timeout_s is not None and write_timeout_s <= 0:
            raise ValueError("write_timeout_s must be positive seconds (or None)")
        self.sink = sink
        self.name = name
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.overflow = OverflowPolicy.parse(overflow)
        self.keep_failed = keep_failed
        self.write_timeout_s = write_timeout_s
        self.retry = retry or RetryPolicy(
            max_attempts=4, base_delay=0.1, max_delay=2.0, retryable=_worth_retrying, name=f"{name}.retry"
        )
        self.breaker = breaker or CircuitBreaker(
            f"{name}.sink",
            failure_threshold=3,
            error_rate_threshold=None,
            recovery_timeout=2.0,
            is_failure=_worth_retrying,
            clock=clock,
        )
        self._clock = clock
        self._buffer: deque[T] = deque()
        self._drop_oldest = self.overflow is OverflowPolicy.DROP_OLDEST
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._in_flight = 0
        # counters
        self.accepted = 0
        self.written = 0
        self.batches = 0
        self.dropped_overflow = 0
        self.dropped_failed = 0
        self.dropped_on_close = 0
        self.failed_batches = 0
        self.open_failures = 0
        self.last_error: str | None = None
        self.last_write_ns = 0
        self._trouble = False

    # -- the hot path ------------------------------------------------------------------------

    def put(self, item: T) -> bool:
        """Buffer ``item``; False when it was refused (closed writer, or full under drop_newest)."""
        buffer = self._buffer
        if self._closing:
            self.dropped_on_close += 1
            return False
        if len(buffer) + self._in_flight >= self.capacity:  # a batch in flight still holds its room
            self._trouble = True
            self.dropped_overflow += 1
            if not self._drop_oldest or not buffer:  # what is in flight cannot be evicted
                return False
            buffer.popleft()
        buffer.append(item)
        self.accepted += 1
        if len(buffer) == self.batch_size:
            self._wake.set()
        return True

    def put_many(self, items: Sequence[T]) -> int:
        """``put`` each item; returns how many were accepted."""
        put = self.put
        return sum(1 for item in items if put(item))

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def dropped(self) -> int:
        return self.dropped_overflow + self.dropped_failed + self.dropped_on_close

    @property
    def retries(self) -> int:
        return self.retry.retries

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the sink (if it has ``open``) and start the background flusher.

        A sink that fails to open is counted (``open_failures``) and the writer starts anyway:
        its writes fail, are retried behind the breaker and counted, and succeed once the sink
        is back (a sink is expected to (re)connect in ``write``).
        """
        if self._task is not None:
            return
        if self._closed:
            raise WriterClosedError(f"writer {self.name!r} is closed")
        opener = getattr(self.sink, "open", None)
        if opener is not None:
            try:
                await opener()
            except Exception as error:  # a sink down at start is a sink down: counted, retried by writes
                self.open_failures += 1
                self._trouble = True
                self.last_error = _describe(error)
                log.warning("writer %s: opening the sink failed: %s", self.name, self.last_error)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"writer:{self.name}")

    async def flush(self, timeout_s: float | None = 10.0) -> bool:
        """Write everything buffered now; True when the buffer and the sink emptied in time.

        For tests, tools and checkpoints (not the hot path): it polls every millisecond.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._buffer or self._in_flight:
            if self._task is None or self._task.done():
                await self._drain_once()
                if self._buffer and self.breaker.state.value != "closed":
                    return False
                continue
            self._wake.set()
            await asyncio.sleep(0.001)
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop taking items, flush what is buffered within ``timeout_s``, close the sink.

        Items still buffered when the time is up are counted in ``dropped_on_close``.
        """
        if self._closed:
            return
        self._closing = True
        task = self._task
        if task is not None:
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout_s)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except Exception:
                log.exception("writer %s: the flusher failed", self.name)
        elif self._buffer:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drain_all(), timeout_s)
        if self._buffer:
            self.dropped_on_close += len(self._buffer)
            log.warning("writer %s: %d items not written at shutdown", self.name, len(self._buffer))
            self._buffer.clear()
        self._closed = True
        closer = getattr(self.sink, "close", None)
        if closer is not None:
            try:
                await closer()
            except Exception as error:
                self.last_error = _describe(error)
                log.warning("writer %s: closing the sink failed: %s", self.name, self.last_error)

    async def __aenter__(self) -> BatchingWriter[T]:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the background side -----------------------------------------------------------------

    async def _run(self) -> None:
        wake = self._wake
        while True:
            if len(self._buffer) < self.batch_size and not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.flush_interval_s)
            wake.clear()
            if self._closing:
                await self._drain_all()
                return
            await self._drain_once()
            if self._buffer and self.breaker.state.value == "open":
                # Nothing will get through before the breaker's recovery time: wait for it (or close).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), max(self.breaker.retry_after(), 0.01))

    async def _drain_all(self) -> None:
        while self._buffer:
            if self._closing and self.breaker.state.value == "open":
                return  # the sink is known down: shutting down does not wait for its recovery
            before = self.failed_batches
            await self._drain_once()
            if self.failed_batches != before and self.keep_failed:
                return  # the sink is down: close() counts what is left rather than spin on it

    async def _drain_once(self) -> None:
        """Write one batch (at most ``batch_size`` items from the head of the buffer)."""
        buffer = self._buffer
        if not buffer:
            return
        count = min(len(buffer), self.batch_size)
        batch = [buffer.popleft() for _ in range(count)]
        self._in_flight = count
        try:
            await self._write(batch)
        except asyncio.CancelledError:
            self._put_back(batch)
            raise
        except Exception as error:
            self.failed_batches += 1
            self._trouble = True
            if not isinstance(error, CircuitOpenError) or self.last_error is None:
                self.last_error = _describe(error)
            log.warning(
                "writer %s: a batch of %d failed after retries: %s", self.name, len(batch), self.last_error
            )
            if self.keep_failed:
                self._put_back(batch)  # at shutdown, close() counts what is left as dropped_on_close
            else:
                self.dropped_failed += len(batch)
        else:
            self.written += count
            self.batches += 1
            self._trouble = False
            self.last_write_ns = self._clock.time_ns()
        finally:
            self._in_flight = 0

    def _put_back(self, batch: list[T]) -> None:
        """Return a batch to the head of the buffer, dropping by policy what no longer fits."""
        buffer = self._buffer
        room = self.capacity - len(buffer)
        if room < len(batch):
            excess = len(batch) - room
            self.dropped_overflow += excess
            if self._drop_oldest:
                batch = batch[excess:]  # the batch is older than anything buffered
            else:
                for _ in range(excess):
                    buffer.pop()  # the newest buffered items give way to the older batch
        buffer.extendleft(reversed(batch))

    async def _write(self, batch: list[T]) -> None:
        breaker = self.breaker
        write = self.sink.write
        timeout = self.write_timeout_s

        async def guarded() -> None:
            try:
                if timeout is None:
                    await write(batch)
                else:
                    await with_timeout(write(batch), timeout, operation=f"{self.name} write")
            except Exception as error:
                self.last_error = _describe(error)  # the sink's own words, not the breaker's
                raise

        async def attempt() -> None:
            await breaker.call(guarded)

        await self.retry.call(attempt)

    # -- reporting ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def status(self) -> WriterStatus:
        breaker_state = self.breaker.state.value
        return WriterStatus(
            name=self.name,
            running=self.running,
            healthy=breaker_state == "closed" and not self._trouble,
            buffered=len(self._buffer),
            capacity=self.capacity,
            written=self.written,
            batches=self.batches,
            dropped=self.dropped,
            dropped_overflow=self.dropped_overflow,
            dropped_failed=self.dropped_failed,
            dropped_on_close=self.dropped_on_close,
            failed_batches=self.failed_batches,
            retries=self.retry.retries,
            breaker_state=breaker_state,
            last_error=self.last_error,
            last_write_ns=self.last_write_ns,
            open_failures=self.open_failures,
        )

    def status_dict(self) -> dict[str, Any]:
        """``status()`` as builtins (for JSON bodies and dashboards)."""
        return msgspec.to_builtins(self.status())


def _worth_retrying(error: BaseException) -> bool:
    """Every ordinary failure of a sink is worth another try; programming errors are not."""
    if isinstance(error, CircuitOpenError):
        return True
    return isinstance(error, Exception) and not isinstance(error, TypeError | AttributeError | NameError)


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__
