"""Feed queue policies, close semantics and the micro-batching consumer."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.core.clock import SimulatedClock
from hftkit.metrics import LatencyHistogram
from hftkit.transport.feed import (
    NULL_RECORDER,
    DropReason,
    FeedQueue,
    MicroBatcher,
    OverflowPolicy,
    QueueClosedError,
    QueueEmptyError,
    QueueFullError,
)

LIVENESS_S = 5.0  # an upper bound for "eventually", never a speed claim


class RecordingHistogram:
    def __init__(self) -> None:
        self.values: list[int] = []

    def record(self, value_ns: int) -> None:
        self.values.append(value_ns)


# --- overflow policies --------------------------------------------------------------------------


def test_drop_oldest_keeps_the_newest_items_and_counts_evictions() -> None:
    queue: FeedQueue[int] = FeedQueue(3, OverflowPolicy.DROP_OLDEST)
    assert all(queue.put_nowait(item) for item in range(5))
    assert [queue.get_nowait() for _ in range(3)] == [2, 3, 4]
    assert queue.drops[DropReason.OLDEST_EVICTED] == 2
    assert queue.dropped == 2
    assert (queue.enqueued, queue.dequeued, queue.high_water_mark) == (5, 3, 3)


def test_drop_newest_refuses_incoming_items_and_counts_them() -> None:
    queue: FeedQueue[int] = FeedQueue(3, "drop_newest")
    assert [queue.put_nowait(item) for item in range(5)] == [True, True, True, False, False]
    assert [queue.get_nowait() for _ in range(3)] == [0, 1, 2]
    assert queue.drops[DropReason.NEWEST_REJECTED] == 2
    assert queue.enqueued == 3


async def test_block_policy_put_nowait_raises_and_put_waits_for_room() -> None:
    queue: FeedQueue[int] = FeedQueue(2, OverflowPolicy.BLOCK)
    await queue.put(0)
    await queue.put(1)
    with pytest.raises(QueueFullError):
        queue.put_nowait(99)
    assert queue.drops[DropReason.FULL] == 1
    blocked = asyncio.ensure_future(queue.put(2))
    await asyncio.sleep(0)
    assert not blocked.done()
    assert await queue.get() == 0
    assert await asyncio.wait_for(blocked, LIVENESS_S) is True
    assert [queue.get_nowait(), queue.get_nowait()] == [1, 2]
    assert queue.dropped == 1  # the refused put_nowait only


@pytest.mark.parametrize("policy", list(OverflowPolicy))
@settings(max_examples=60, deadline=None)
@given(operations=st.lists(st.booleans(), max_size=80), capacity=st.integers(1, 6))
def test_every_policy_matches_a_reference_model(policy, operations, capacity) -> None:
    """True = put the next number, False = get; the queue must behave like the model."""
    queue: FeedQueue[int] = FeedQueue(capacity, policy)
    model: deque[int] = deque()
    drops = dict.fromkeys(DropReason, 0)
    next_item = 0
    for is_put in operations:
        if is_put:
            full = len(model) == capacity
            if full and policy is OverflowPolicy.BLOCK:
                with pytest.raises(QueueFullError):
                    queue.put_nowait(next_item)
                drops[DropReason.FULL] += 1
            elif full and policy is OverflowPolicy.DROP_NEWEST:
                assert queue.put_nowait(next_item) is False
                drops[DropReason.NEWEST_REJECTED] += 1
            else:
                if full:
                    model.popleft()
                    drops[DropReason.OLDEST_EVICTED] += 1
                assert queue.put_nowait(next_item) is True
                model.append(next_item)
            next_item += 1
        elif model:
            assert queue.get_nowait() == model.popleft()
        else:
            with pytest.raises(QueueEmptyError):
                queue.get_nowait()
        assert len(queue) == len(model)
        assert queue.drops == drops
        assert queue.high_water_mark <= capacity


def test_policy_names_are_validated() -> None:
    with pytest.raises(ValueError):
        FeedQueue(4, "drop_random")
    with pytest.raises(ValueError):
        FeedQueue(0)


# --- close --------------------------------------------------------------------------------------


async def test_close_lets_consumers_drain_then_ends_them_cleanly() -> None:
    queue: FeedQueue[int] = FeedQueue(8)
    for item in range(3):
        queue.put_nowait(item)
    queue.close()
    with pytest.raises(QueueClosedError):
        queue.put_nowait(3)
    assert queue.drops[DropReason.CLOSED] == 1
    assert [item async for item in queue] == [0, 1, 2]
    with pytest.raises(QueueClosedError):
        await queue.get()
    with pytest.raises(QueueClosedError):
        queue.get_nowait()


async def test_close_without_drain_discards_and_counts_the_queued_items() -> None:
    queue: FeedQueue[int] = FeedQueue(8)
    for item in range(4):
        queue.put_nowait(item)
    queue.get_nowait()
    queue.close(drain=False)
    assert len(queue) == 0
    assert queue.drops[DropReason.CLOSED] == 3
    assert queue.enqueued == 4


async def test_close_releases_waiting_consumers_and_blocked_producers() -> None:
    empty: FeedQueue[int] = FeedQueue(1)
    consumer = asyncio.ensure_future(empty.get())
    full: FeedQueue[int] = FeedQueue(1, OverflowPolicy.BLOCK)
    full.put_nowait(0)
    producer = asyncio.ensure_future(full.put(1))
    await asyncio.sleep(0)
    empty.close()
    full.close()
    with pytest.raises(QueueClosedError):
        await asyncio.wait_for(consumer, LIVENESS_S)
    with pytest.raises(QueueClosedError):
        await asyncio.wait_for(producer, LIVENESS_S)
    assert full.drops[DropReason.CLOSED] == 1


async def test_a_cancelled_consumer_passes_its_wakeup_on() -> None:
    queue: FeedQueue[str] = FeedQueue(4)
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("only item")  # wakes the first consumer ...
    first.cancel()  # ... which is cancelled before it runs
    assert await asyncio.wait_for(second, LIVENESS_S) == "only item"
    assert first.cancelled()


async def test_items_are_stamped_with_the_queue_clock() -> None:
    clock = SimulatedClock(start_ns=1_000)
    queue: FeedQueue[str] = FeedQueue(4, clock=clock)
    queue.put_nowait("a")
    clock.advance(500)
    queue.put_nowait("b")
    queue.close()
    assert await queue.get_batch(10) == [(1_000, "a"), (1_500, "b")]
    stats = queue.stats()
    assert (
        stats["enqueued"] == 2 and stats["dropped_oldest_evicted"] == 0 and stats["policy"] == "drop_oldest"
    )


# --- micro-batching -----------------------------------------------------------------------------


async def test_batches_are_cut_at_the_size_limit() -> None:
    queue: FeedQueue[int] = FeedQueue(64)
    batches: list[list[int]] = []
    two_full_batches = asyncio.Event()

    def handle(batch: list[int]) -> None:
        batches.append(batch)
        if len(batches) == 2:
            two_full_batches.set()

    batcher = MicroBatcher(queue, handle, max_batch_size=3, max_delay_s=30.0)
    batcher.start()
    for item in range(7):
        queue.put_nowait(item)
    await asyncio.wait_for(two_full_batches.wait(), LIVENESS_S)  # long before the 30 s delay
    assert batches == [[0, 1, 2], [3, 4, 5]]
    await batcher.stop()
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]
    assert (batcher.batches, batcher.items) == (3, 7)


async def test_a_partial_batch_is_delivered_after_the_delay() -> None:
    queue: FeedQueue[int] = FeedQueue(64)
    delivered = asyncio.Queue()
    batcher = MicroBatcher(queue, delivered.put_nowait, max_batch_size=100, max_delay_s=0.003)
    batcher.start()
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert await asyncio.wait_for(delivered.get(), LIVENESS_S) == [1, 2]
    queue.put_nowait(3)
    assert await asyncio.wait_for(delivered.get(), LIVENESS_S) == [3]
    await batcher.stop()


async def test_handler_errors_are_counted_logged_once_per_type_and_never_stop_the_consumer(caplog) -> None:
    queue: FeedQueue[str] = FeedQueue(64)
    delivered: list[list[str]] = []

    async def handle(batch: list[str]) -> None:
        if "bad" in batch:
            raise ValueError("cannot handle 'bad'")
        if "worse" in batch:
            raise KeyError("worse")
        delivered.append(batch)

    batcher = MicroBatcher(queue, handle, max_batch_size=1, max_delay_s=0)
    for item in ["ok", "bad", "bad", "worse", "fine"]:
        queue.put_nowait(item)
    queue.close()
    with caplog.at_level(logging.ERROR, logger="hftkit.transport.feed"):
        await asyncio.wait_for(batcher.run(), LIVENESS_S)
    assert delivered == [["ok"], ["fine"]]
    assert batcher.handler_errors == 3
    assert batcher.errors_by_type == {"ValueError": 2, "KeyError": 1}
    assert isinstance(batcher.last_error, KeyError)
    assert len([record for record in caplog.records if record.levelno == logging.ERROR]) == 2


async def test_queue_wait_and_batch_latency_are_recorded_per_item_and_per_batch() -> None:
    clock = SimulatedClock(start_ns=1_000)
    queue: FeedQueue[int] = FeedQueue(64, clock=clock)
    for item in range(3):
        queue.put_nowait(item)
    clock.advance(4_000)
    queue.close()
    queue_wait = RecordingHistogram()
    batch_latency = RecordingHistogram()

    def handle(batch: list[int]) -> None:
        clock.advance(250 * len(batch))

    batcher = MicroBatcher(
        queue, handle, max_batch_size=2, queue_wait=queue_wait, batch_latency=batch_latency, clock=clock
    )
    await asyncio.wait_for(batcher.run(), LIVENESS_S)
    assert queue_wait.values == [4_000, 4_000, 4_500]  # the third item waited for the first batch too
    assert batch_latency.values == [500, 250]


async def test_batcher_records_into_latency_histograms_by_default() -> None:
    queue: FeedQueue[int] = FeedQueue(64)
    for item in range(5):
        queue.put_nowait(item)
    queue.close()
    batcher = MicroBatcher(queue, len, max_batch_size=2)
    assert isinstance(batcher.queue_wait, LatencyHistogram)
    await asyncio.wait_for(batcher.run(), LIVENESS_S)
    assert batcher.queue_wait.snapshot().count == 5
    assert batcher.batch_latency.snapshot().count == 3
    silent = MicroBatcher(FeedQueue(4), len, queue_wait=NULL_RECORDER, batch_latency=NULL_RECORDER)
    assert silent.queue_wait is NULL_RECORDER


def test_batcher_arguments_are_validated() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(FeedQueue(4), print, max_batch_size=0)
    with pytest.raises(ValueError):
        MicroBatcher(FeedQueue(4), print, max_delay_s=-1)
