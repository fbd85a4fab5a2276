"""Probes: sync and async, decorator and context manager, exceptions counted and re-raised."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from hftkit.metrics import LatencyHistogram, MetricsRegistry, Probe


class StepClock:
    """A nanosecond clock that advances a fixed step on every read: durations become known."""

    def __init__(self, step_ns: int) -> None:
        self.now = 0
        self.step_ns = step_ns

    def __call__(self) -> int:
        self.now += self.step_ns
        return self.now


def make_probe(step_ns: int = 1_000) -> Probe:
    return Probe(LatencyHistogram(), clock=StepClock(step_ns))


def test_context_manager_records_one_duration() -> None:
    probe = make_probe(1_500)
    with probe.measure() as measurement:
        pass
    assert measurement.elapsed_ns == 1_500
    assert probe.histogram.count == 1 and probe.histogram.maximum == 1_500
    assert probe.errors.value == 0


def test_context_manager_counts_and_reraises_exceptions() -> None:
    probe = make_probe()
    with pytest.raises(KeyError), probe.measure():
        raise KeyError("missing order")
    assert probe.errors.value == 1
    assert probe.histogram.count == 1  # a failed call still took time


def test_decorated_function_keeps_its_result_name_and_exceptions() -> None:
    probe = make_probe(2_000)

    @probe
    def apply(delta: int, *, scale: int = 1) -> int:
        """Apply a delta."""
        if delta < 0:
            raise ValueError("negative")
        return delta * scale

    assert apply(3, scale=2) == 6
    assert apply.__name__ == "apply" and apply.__doc__ == "Apply a delta."
    with pytest.raises(ValueError, match="negative"):
        apply(-1)
    assert probe.histogram.count == 2
    assert probe.histogram.total == 4_000
    assert probe.errors.value == 1


async def test_decorated_coroutine_is_measured_and_exceptions_counted() -> None:
    probe = make_probe(3_000)

    @probe
    async def send(ok: bool) -> str:
        await asyncio.sleep(0)
        if not ok:
            raise ConnectionError("reset by peer")
        return "sent"

    assert asyncio.iscoroutinefunction(send)
    assert await send(True) == "sent"
    with pytest.raises(ConnectionError):
        await send(False)
    assert probe.histogram.count == 2 and probe.errors.value == 1


async def test_async_context_manager_records_and_counts() -> None:
    probe = make_probe()
    async with probe.measure():
        await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        async with probe.measure():
            raise TimeoutError
    assert probe.histogram.count == 2 and probe.errors.value == 1


async def test_concurrent_tasks_each_get_their_own_timer() -> None:
    histogram = LatencyHistogram()
    probe = Probe(histogram)  # the real clock
    release = asyncio.Event()

    async def hold(order: int) -> int:
        async with probe.measure() as measurement:
            await release.wait()
            await asyncio.sleep(0)
        assert measurement.elapsed_ns is not None
        return order

    tasks = [asyncio.create_task(hold(order)) for order in range(5)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*tasks) == [0, 1, 2, 3, 4]
    assert histogram.count == 5
    assert histogram.minimum > 0


async def test_cancellation_is_neither_timed_nor_counted_as_an_error() -> None:
    probe = make_probe()

    @probe
    async def wait_forever() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(wait_forever())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert probe.errors.value == 0 and probe.histogram.count == 0


def test_generator_functions_are_refused() -> None:
    probe = make_probe()

    def numbers() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        probe(numbers)


def test_registry_probe_uses_a_histogram_and_an_errors_counter_with_the_same_labels() -> None:
    registry = MetricsRegistry()
    probe = registry.probe("order_send_ns", venue="binance", clock=StepClock(10))

    @probe
    def fail() -> None:
        raise RuntimeError

    with pytest.raises(RuntimeError):
        fail()
    assert registry.histogram("order_send_ns", venue="binance").count == 1
    assert registry.counter("order_send_ns_errors", venue="binance").value == 1
