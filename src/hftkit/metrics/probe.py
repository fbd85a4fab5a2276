"""Probes: time a block or a function (sync or async) into a histogram, count its exceptions.

Clock choice: ``time.perf_counter_ns``. It is the highest-resolution monotonic clock on every
platform (on Linux it is the same CLOCK_MONOTONIC as ``time.monotonic_ns``; on Windows with
Python < 3.13 ``monotonic_ns`` ticks only every ~15 ms, useless for microsecond spans). Probes
measure durations only, so the clock's origin never matters. When a span starts at a stamp
taken from a ``Clock`` elsewhere (a frame's receipt time), record
``clock.monotonic_ns() - stamp`` into the histogram directly, or give the probe that clock's
``monotonic_ns`` so both ends read the same clock.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from hftkit.metrics.histogram import LatencyHistogram
from hftkit.metrics.instruments import Counter

NanosecondClock = Callable[[], int]
F = TypeVar("F", bound=Callable[..., Any])


class Probe:
    """Measures calls into ``histogram`` and counts escaping ``Exception``s in ``errors``.

    Failed calls are timed too (a slow failure is still latency). Cancellation, KeyboardInterrupt
    and other BaseExceptions are neither timed nor counted: an interrupted call has no latency.
    Exceptions are always re-raised, never swallowed.
    """

    __slots__ = ("_clock", "errors", "histogram")

    def __init__(
        self,
        histogram: LatencyHistogram,
        errors: Counter | None = None,
        clock: NanosecondClock = time.perf_counter_ns,
    ) -> None:
        self.histogram = histogram
        self.errors = errors if errors is not None else Counter()
        self._clock = clock

    def measure(self) -> Measurement:
        """A fresh timer for one ``with`` / ``async with`` block (safe under concurrent tasks)."""
        return Measurement(self)

    def __call__(self, function: F) -> F:
        """Decorate a function or a coroutine function so that every call is measured."""
        if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
            raise TypeError(
                f"cannot probe generator {function.__qualname__}: its call returns at once; "
                "measure the consumer with probe.measure() instead"
            )
        record = self.histogram.record
        errors = self.errors
        clock = self._clock
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def measured_coroutine(*args: Any, **kwargs: Any) -> Any:
                start = clock()
                try:
                    result = await function(*args, **kwargs)
                except Exception:
                    record(clock() - start)
                    errors.inc()
                    raise
                record(clock() - start)
                return result

            return measured_coroutine  # type: ignore[return-value]

        @functools.wraps(function)
        def measured(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                result = function(*args, **kwargs)
            except Exception:
                record(clock() - start)
                errors.inc()
                raise
            record(clock() - start)
            return result

        return measured  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"Probe(count={self.histogram.count}, errors={self.errors.value})"


class Measurement:
    """One timed block; ``elapsed_ns`` holds its duration after the block ends.

    Holds only its probe (one attribute set per block: creation is most of a block's cost).
    """

    __slots__ = ("_probe", "_start", "elapsed_ns")

    def __init__(self, probe: Probe) -> None:
        self._probe = probe
        self.elapsed_ns: int | None = None

    def __enter__(self) -> Measurement:
        self._start = self._probe._clock()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        probe = self._probe
        elapsed = probe._clock() - self._start
        if exc_type is None:
            self.elapsed_ns = elapsed
            probe.histogram.record(elapsed)
        elif issubclass(exc_type, Exception):
            self.elapsed_ns = elapsed
            probe.histogram.record(elapsed)
            probe.errors.inc()
        # returning None re-raises whatever escaped the block

    async def __aenter__(self) -> Measurement:
        self._start = self._probe._clock()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)
