"""The periodic reporter shell: hooks (sync and async), resilience to failing hooks, scheduling."""

from __future__ import annotations

import asyncio
import contextlib

from hftkit.core.clock import SimulatedClock
from hftkit.metrics import Alert, MetricsRegistry, MetricsReporter, MetricsSnapshot, PercentileAbove


def slow_rule() -> PercentileAbove:
    return PercentileAbove("apply_ns", 99.0, threshold_ns=10_000)


async def test_report_once_calls_async_and_sync_hooks_with_interval_figures() -> None:
    registry = MetricsRegistry()
    latency = registry.histogram("apply_ns")
    latency.record_many([1_000_000] * 10)  # before the reporter exists: not in its first interval
    alerts: list[Alert] = []
    reports: list[MetricsSnapshot] = []

    async def on_alert(alert: Alert) -> None:
        await asyncio.sleep(0)
        alerts.append(alert)

    reporter = MetricsReporter(
        registry, [slow_rule()], interval_s=60, on_alert=on_alert, on_report=reports.append
    )
    assert await reporter.report_once() == []
    latency.record_many([50_000] * 10)
    returned = await reporter.report_once()
    assert len(returned) == 1 and alerts == returned
    assert [report.histogram("apply_ns").count for report in reports] == [0, 10]  # type: ignore[union-attr]
    assert reporter.alerts_raised.value == 1
    assert reporter.last_alerts == returned and reporter.last_interval is reports[-1]


async def test_failing_hooks_are_logged_and_counted_and_never_stop_the_reporter(caplog: object) -> None:
    registry = MetricsRegistry()
    latency = registry.histogram("apply_ns")

    def broken_alert_hook(alert: Alert) -> None:
        raise RuntimeError("pager down")

    async def broken_report_hook(interval: MetricsSnapshot) -> None:
        raise ValueError("disk full")

    reporter = MetricsReporter(
        registry, [slow_rule()], interval_s=60, on_alert=broken_alert_hook, on_report=broken_report_hook
    )
    for _ in range(3):
        latency.record(1_000_000)
        alerts = await reporter.report_once()
        assert len(alerts) == 1
    assert reporter.hook_errors.value == 6
    assert registry.counter("metrics_reporter_hook_errors").value == 6
    assert "pager down" in caplog.text  # type: ignore[attr-defined]


async def test_running_loop_reports_every_short_interval_and_stops_with_a_final_report() -> None:
    registry = MetricsRegistry()
    latency = registry.histogram("apply_ns")
    reports: list[MetricsSnapshot] = []
    reporter = MetricsReporter(registry, [slow_rule()], interval_s=0.01, on_report=reports.append)
    async with reporter:
        assert reporter.running
        latency.record(1_000_000)
        while len(reports) < 3:
            await asyncio.sleep(0.005)
    assert not reporter.running
    assert sum(report.histogram("apply_ns").count for report in reports) == 1  # type: ignore[union-attr]
    assert reporter.alerts_raised.value == 1
    assert all(report.interval_ns is not None and report.interval_ns > 0 for report in reports)


async def test_loop_keeps_absolute_deadlines_with_an_injected_clock_and_sleep() -> None:
    clock = SimulatedClock()
    registry = MetricsRegistry(clock=clock)
    registry.histogram("apply_ns")
    sleeps: list[float] = []
    reports: list[MetricsSnapshot] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(round(seconds * 1e9))
        if len(sleeps) == 3:
            clock.advance(25_000_000_000)  # the loop was blocked for 2.5 intervals
        if len(sleeps) > 5:
            raise asyncio.CancelledError
        await asyncio.sleep(0)

    reporter = MetricsReporter(
        registry, interval_s=10.0, clock=clock, sleep=fake_sleep, on_report=reports.append
    )
    task = reporter.start()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert sleeps[:3] == [10.0, 10.0, 10.0]
    assert sleeps[3] == 5.0  # back on the grid: 2 deadlines skipped, not replayed in a burst
    assert reporter.skipped_intervals.value == 2
    assert [report.interval_ns for report in reports[:4]] == [10 * 10**9, 10 * 10**9, 35 * 10**9, 5 * 10**9]


async def test_a_failing_cycle_is_counted_and_the_loop_carries_on() -> None:
    registry = MetricsRegistry()
    registry.histogram("apply_ns")
    calls = 0
    reporter = MetricsReporter(registry, interval_s=0.005)
    original = reporter.report_once

    async def flaky() -> list[Alert]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("snapshot failed")
        return await original()

    reporter.report_once = flaky  # type: ignore[method-assign]
    reporter.start()
    while calls < 3:
        await asyncio.sleep(0.005)
    await reporter.stop(final_report=False)
    assert reporter.cycle_errors.value == 1


async def test_reset_mode_reports_exact_interval_extremes() -> None:
    registry = MetricsRegistry()
    latency = registry.histogram("apply_ns")
    reporter = MetricsReporter(registry, interval_s=60, reset_histograms=True)
    latency.record_many([500, 90_000])
    await reporter.report_once()
    latency.record_many([700, 1_234])
    await reporter.report_once()
    interval = reporter.last_interval
    assert interval is not None
    histogram = interval.histogram("apply_ns")
    assert histogram is not None and (histogram.minimum, histogram.maximum, histogram.count) == (
        700,
        1_234,
        2,
    )
    assert latency.count == 0
