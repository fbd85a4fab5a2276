"""Periodic reporter: every interval, diff the registry, evaluate alert rules, call hooks.

The thin asyncio shell around ``MetricsSnapshot.since`` and ``evaluate_rules``. It never dies
from a hook: a hook that raises is logged and counted in ``metrics_reporter_hook_errors``, and
a cycle that fails for any other reason is counted in ``metrics_reporter_cycle_errors``.
Reports are scheduled on absolute deadlines so a slow cycle does not make the next one drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any

from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.errors import OutOfRangeError
from hftkit.metrics.alerts import Alert, AlertRule, evaluate_rules
from hftkit.metrics.registry import MetricsRegistry, MetricsSnapshot

_log = logging.getLogger(__name__)

AlertHook = Callable[[Alert], Any]
"""Called once per alert; may be sync or return an awaitable."""
ReportHook = Callable[[MetricsSnapshot], Any]
"""Called once per interval with the interval's figures; may be sync or return an awaitable."""
Sleep = Callable[[float], Awaitable[Any]]


class MetricsReporter:
    """Reports a registry every ``interval_s`` seconds.

    By default histograms are not reset: each report is the difference of two cumulative
    snapshots, which keeps Prometheus counts monotonic (the interval's min and max are then
    bucket-accurate unless they set a new lifetime extreme). ``reset_histograms=True`` resets
    them each interval instead (exact interval min/max; use when nothing else reads them).
    Its own counters (``metrics_reporter_*``) live in the registry it reports, so they are
    exported with everything else.
    """

    def __init__(
        self,
        registry: MetricsRegistry,
        rules: Iterable[AlertRule] = (),
        interval_s: float = 10.0,
        on_alert: AlertHook | None = None,
        on_report: ReportHook | None = None,
        reset_histograms: bool = False,
        clock: Clock = REAL_CLOCK,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not interval_s > 0:
            raise OutOfRangeError(f"interval_s must be > 0, got {interval_s!r}")
        self._registry = registry
        self._rules = tuple(rules)
        self._interval_ns = round(interval_s * 1e9)
        self._on_alert = on_alert
        self._on_report = on_report
        self._reset = reset_histograms
        self._clock = clock
        self._sleep = sleep
        self._previous: MetricsSnapshot = registry.snapshot()
        self._task: asyncio.Task[None] | None = None
        self.hook_errors = registry.counter(
            "metrics_reporter_hook_errors", "alert/report hooks that raised (the reporter carried on)"
        )
        self.cycle_errors = registry.counter(
            "metrics_reporter_cycle_errors", "reporting cycles that failed (the reporter carried on)"
        )
        self.alerts_raised = registry.counter("metrics_reporter_alerts", "alerts raised by the reporter")
        self.skipped_intervals = registry.counter(
            "metrics_reporter_skipped_intervals", "deadlines missed because the loop was blocked"
        )
        self.last_interval: MetricsSnapshot | None = None
        self.last_alerts: list[Alert] = []

    async def report_once(self) -> list[Alert]:
        """One cycle: diff against the previous report, evaluate rules, call hooks."""
        current = self._registry.snapshot(reset_histograms=self._reset)
        interval = current.since(self._previous)
        self._previous = current
        alerts = evaluate_rules(self._rules, interval)
        self.last_interval = interval
        self.last_alerts = alerts
        if self._on_report is not None:
            await self._call_hook(self._on_report, interval)
        for alert in alerts:
            self.alerts_raised.inc()
            _log.warning("metrics alert [%s]: %s", alert.rule, alert.message)
            if self._on_alert is not None:
                await self._call_hook(self._on_alert, alert)
        return alerts

    async def _call_hook(self, hook: Callable[[Any], Any], argument: Any) -> None:
        try:
            result = hook(argument)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.hook_errors.inc()
            _log.exception("metrics reporter hook %r failed; carrying on", hook)

    async def run(self) -> None:
        """Report every interval until cancelled."""
        interval = self._interval_ns
        deadline = self._clock.monotonic_ns() + interval
        while True:
            await self._sleep(max(0, deadline - self._clock.monotonic_ns()) / 1e9)
            try:
                await self.report_once()
            except Exception:
                self.cycle_errors.inc()
                _log.exception("metrics report cycle failed; carrying on")
            deadline += interval
            now = self._clock.monotonic_ns()
            if deadline <= now:  # the loop was blocked for more than an interval: skip, don't burst
                missed = (now - deadline) // interval + 1
                self.skipped_intervals.inc(missed)
                deadline += missed * interval

    def start(self) -> asyncio.Task[None]:
        if self._task is not None and not self._task.done():
            raise RuntimeError("the metrics reporter is already running")
        self._task = asyncio.get_running_loop().create_task(self.run(), name="hftkit-metrics-reporter")
        return self._task

    async def stop(self, final_report: bool = True) -> None:
        """Stop the loop; by default report the last partial interval so nothing goes unseen."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if final_report:
            try:
                await self.report_once()
            except Exception:
                self.cycle_errors.inc()
                _log.exception("final metrics report failed")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def __aenter__(self) -> MetricsReporter:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
