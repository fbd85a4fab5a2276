"""BatchingWriter: flush by size, time and close; bounded buffer with counted drops; retries and breaker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from hftkit.resilience import CircuitBreaker, RetryPolicy
from hftkit.storage.writer import BatchingWriter, OverflowPolicy, Sink

pytestmark = pytest.mark.timeout(20)


class ListSink:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.opened = False
        self.closed = False

    async def open(self) -> None:
        self.opened = True

    async def write(self, batch: Sequence[int]) -> None:
        self.batches.append(list(batch))

    async def close(self) -> None:
        self.closed = True

    @property
    def items(self) -> list[int]:
        return [item for batch in self.batches for item in batch]


class FlakySink(ListSink):
    """Fails the first ``failures`` writes, then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    async def write(self, batch: Sequence[int]) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError(f"down (attempt {self.attempts})")
        await super().write(batch)


class SlowSink(ListSink):
    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def write(self, batch: Sequence[int]) -> None:
        await asyncio.sleep(self.delay)
        await super().write(batch)


def fast_retry(attempts: int = 3) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, base_delay=0.001, max_delay=0.002, name="test.retry")


def test_sinks_satisfy_the_protocol() -> None:
    assert isinstance(ListSink(), Sink)


def test_block_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="never blocks"):
        BatchingWriter(ListSink(), overflow="block")
    with pytest.raises(ValueError, match="larger than"):
        BatchingWriter(ListSink(), capacity=10, batch_size=11)


async def test_flushes_when_a_batch_is_full_without_waiting_for_the_interval() -> None:
    sink = ListSink()
    writer: BatchingWriter[int] = BatchingWriter(sink, batch_size=10, capacity=100, flush_interval_s=60)
    await writer.start()
    assert sink.opened
    for item in range(25):
        assert writer.put(item)
    for _ in range(100):
        await asyncio.sleep(0.001)
        if len(sink.batches) >= 2:
            break
    assert sink.batches[:2] == [list(range(10)), list(range(10, 20))]
    assert writer.buffered == 5  # the tail waits for the interval or close
    await writer.close()
    assert sink.items == list(range(25)) and sink.closed
    status = writer.status()
    assert status.written == 25 and status.dropped == 0 and status.healthy and not status.running


async def test_flushes_on_the_interval() -> None:
    sink = ListSink()
    writer: BatchingWriter[int] = BatchingWriter(sink, batch_size=1000, flush_interval_s=0.02)
    async with writer:
        writer.put(1)
        writer.put(2)
        await asyncio.sleep(0.1)
        assert sink.batches == [[1, 2]]


async def test_drop_oldest_keeps_the_newest_and_counts() -> None:
    sink = ListSink()
    writer: BatchingWriter[int] = BatchingWriter(
        sink, capacity=5, batch_size=5, overflow=OverflowPolicy.DROP_OLDEST
    )
    results = [writer.put(item) for item in range(8)]  # not started: nothing drains
    assert all(results)
    assert writer.dropped_overflow == 3
    assert not writer.status().healthy  # dropping now
    await writer.close()
    assert sink.items == [3, 4, 5, 6, 7]
    status = writer.status()
    assert status.dropped == 3 and status.healthy  # the count stays; a later good write heals health


async def test_drop_newest_refuses_and_counts() -> None:
    sink = ListSink()
    writer: BatchingWriter[int] = BatchingWriter(sink, capacity=5, batch_size=5, overflow="drop_newest")
    results = [writer.put(item) for item in range(8)]
    assert results == [True] * 5 + [False] * 3
    await writer.close()
    assert sink.items == [0, 1, 2, 3, 4]
    assert writer.status().dropped_overflow == 3


async def test_put_never_waits_on_a_slow_sink() -> None:
    sink = SlowSink(0.05)
    writer: BatchingWriter[int] = BatchingWriter(sink, capacity=50, batch_size=10, overflow="drop_oldest")
    await writer.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    for item in range(200):
        writer.put(item)
        if item % 10 == 0:
            await asyncio.sleep(0)  # let the flusher take a batch
    assert loop.time() - started < 0.05  # 200 puts did not wait for one 50 ms write
    await writer.close(timeout_s=5)
    status = writer.status()
    assert status.written + status.dropped == 200
    assert status.dropped_overflow > 0  # the slow sink could not keep up: counted, not blocked
    assert sink.items == sorted(sink.items)  # order kept within what was written


async def test_flaky_sink_is_retried_and_nothing_is_lost() -> None:
    sink = FlakySink(failures=2)
    writer: BatchingWriter[int] = BatchingWriter(sink, batch_size=3, retry=fast_retry(3))
    await writer.start()
    for item in range(3):
        writer.put(item)
    assert await writer.flush(timeout_s=5)
    await writer.close()
    assert sink.items == [0, 1, 2]
    status = writer.status()
    assert status.retries == 2 and status.failed_batches == 0 and status.dropped == 0 and status.healthy


async def test_a_dead_sink_drops_failed_batches_counted_and_opens_the_breaker() -> None:
    sink = FlakySink(failures=10**9)
    breaker = CircuitBreaker("dead", failure_threshold=2, error_rate_threshold=None, recovery_timeout=60)
    writer: BatchingWriter[int] = BatchingWriter(
        sink, batch_size=2, flush_interval_s=0.01, retry=fast_retry(2), breaker=breaker
    )
    await writer.start()
    for item in range(4):
        writer.put(item)
    for _ in range(200):
        await asyncio.sleep(0.005)
        if writer.failed_batches >= 1:
            break
    await asyncio.sleep(0.05)
    status = writer.status()
    assert status.failed_batches == 1 and status.dropped_failed == 2
    assert status.breaker_state == "open" and not status.healthy
    assert status.last_error is not None and "ConnectionError" in status.last_error
    # The open breaker spares the sink: the second batch waits for the recovery time, untried.
    assert sink.attempts == 2 and status.buffered == 2
    await writer.close(timeout_s=0.2)
    assert writer.status().dropped == 4 and writer.status().dropped_on_close == 2


async def test_keep_failed_puts_the_batch_back_and_writes_it_once_the_sink_heals() -> None:
    sink = FlakySink(failures=4)
    breaker = CircuitBreaker("heal", failure_threshold=10, error_rate_threshold=None, recovery_timeout=0.01)
    writer: BatchingWriter[int] = BatchingWriter(
        sink, batch_size=3, flush_interval_s=0.01, keep_failed=True, retry=fast_retry(2), breaker=breaker
    )
    await writer.start()
    for item in range(3):
        writer.put(item)
    for _ in range(400):
        await asyncio.sleep(0.005)
        if writer.written == 3:
            break
    await writer.close()
    assert sink.items == [0, 1, 2]  # once, in order, nothing dropped
    status = writer.status()
    assert status.failed_batches == 2 and status.dropped == 0 and status.written == 3


async def test_close_with_a_dead_sink_counts_what_is_left_and_returns_in_time() -> None:
    sink = SlowSink(10.0)
    writer: BatchingWriter[int] = BatchingWriter(
        sink, batch_size=5, write_timeout_s=None, retry=fast_retry(1)
    )
    await writer.start()
    for item in range(12):
        writer.put(item)
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await writer.close(timeout_s=0.1)
    assert loop.time() - started < 1.0
    status = writer.status()
    assert status.written == 0
    assert status.dropped_on_close == 12  # the batch in flight went back and is counted too
    assert not writer.put(99) and writer.status().dropped_on_close == 13


async def test_write_timeout_counts_as_a_failure() -> None:
    sink = SlowSink(1.0)
    writer: BatchingWriter[int] = BatchingWriter(
        sink, batch_size=1, write_timeout_s=0.01, retry=fast_retry(1)
    )
    await writer.start()
    writer.put(1)
    for _ in range(100):
        await asyncio.sleep(0.005)
        if writer.failed_batches:
            break
    assert writer.failed_batches == 1 and writer.dropped_failed == 1
    assert "timed out" in (writer.last_error or "")
    await writer.close(timeout_s=0.1)


async def test_a_sink_that_cannot_open_is_counted_and_written_once_it_heals() -> None:
    class LateSink(ListSink):
        up = False

        async def open(self) -> None:
            raise ConnectionRefusedError("not yet")

        async def write(self, batch: Sequence[int]) -> None:
            if not self.up:
                raise ConnectionRefusedError("not yet")
            await super().write(batch)

    sink = LateSink()
    breaker = CircuitBreaker("late", failure_threshold=50, error_rate_threshold=None, recovery_timeout=0.01)
    writer: BatchingWriter[int] = BatchingWriter(
        sink, batch_size=2, flush_interval_s=0.01, keep_failed=True, retry=fast_retry(2), breaker=breaker
    )
    await writer.start()  # does not raise: the node must start without its database
    assert writer.status().open_failures == 1 and not writer.status().healthy
    writer.put(1)
    writer.put(2)
    await asyncio.sleep(0.05)
    sink.up = True
    assert await writer.flush(timeout_s=5)
    await writer.close()
    assert sink.items == [1, 2] and writer.status().healthy
