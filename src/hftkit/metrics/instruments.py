"""Counters and gauges: the two scalar metrics beside the latency histogram."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from hftkit.core.errors import OutOfRangeError
from hftkit.metrics.errors import InvalidMeasurementError

_log = logging.getLogger(__name__)


class Counter:
    """A count that only goes up (events, errors, bytes). Rates come from differences."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value: int | float = 0

    def inc(self, amount: int | float = 1) -> None:
        """Add ``amount`` (>= 0): a counter that went down would fake a reset to Prometheus."""
        if amount < 0:
            raise OutOfRangeError(f"a counter only goes up; got increment {amount!r}")
        if amount != amount or amount == math.inf:
            raise InvalidMeasurementError(f"a counter increment must be finite, got {amount!r}")
        self._value += amount

    @property
    def value(self) -> int | float:
        return self._value

    def __repr__(self) -> str:
        return f"Counter({self._value})"


class Gauge:
    """A value that goes up and down (queue depth, position, open orders).

    Either set it, or give it a function read at export time (``set_function``): a failing
    function reads as NaN and is counted in ``function_errors``, never breaking an export.
    """

    __slots__ = ("_function", "_value", "function_errors")

    def __init__(self) -> None:
        self._value: int | float = 0
        self._function: Callable[[], float] | None = None
        self.function_errors = 0

    def set(self, value: int | float) -> None:
        self._value = value

    def inc(self, amount: int | float = 1) -> None:
        self._value += amount

    def dec(self, amount: int | float = 1) -> None:
        self._value -= amount

    def set_function(self, function: Callable[[], float] | None) -> None:
        """Read the gauge from ``function`` from now on (None: back to the set value)."""
        self._function = function

    @property
    def value(self) -> int | float:
        function = self._function
        if function is None:
            return self._value
        try:
            return function()
        except Exception:
            self.function_errors += 1
            if self.function_errors == 1:  # once: a scrape every few seconds must not flood the log
                _log.exception("gauge function %r failed; reading NaN (logged once)", function)
            return math.nan

    def __repr__(self) -> str:
        return f"Gauge({self.value})"
