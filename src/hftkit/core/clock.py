"""Clocks. Everything that reads time takes a Clock, so tests and the simulator can drive it."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

# uvloop's timers and ``loop.time()`` move in whole milliseconds: a timer or ``asyncio.sleep`` can
# end up to this much before a deadline read from a finer clock. A wait that re-checks such a
# deadline and sleeps again for the remainder spins the loop until the millisecond turns over
# (a hundred wake-ups and more), so waits that re-check add this tick instead.
LOOP_TICK_S = 0.001


@runtime_checkable
class Clock(Protocol):
    def monotonic_ns(self) -> int:
        """Nanoseconds from an arbitrary origin, never going backwards (for durations)."""
        ...

    def time_ns(self) -> int:
        """Wall-clock nanoseconds since the Unix epoch (for venue timestamps)."""
        ...


class RealClock:
    """The machine's clocks."""

    __slots__ = ()

    monotonic_ns = staticmethod(time.monotonic_ns)
    time_ns = staticmethod(time.time_ns)


class SimulatedClock:
    """A clock that moves only when told to; both readings advance together."""

    __slots__ = ("_monotonic", "_offset")

    def __init__(self, start_ns: int = 0, wall_offset_ns: int = 1_700_000_000_000_000_000) -> None:
        self._monotonic = start_ns
        self._offset = wall_offset_ns

    def monotonic_ns(self) -> int:
        return self._monotonic

    def time_ns(self) -> int:
        return self._monotonic + self._offset

    def advance(self, nanoseconds: int) -> None:
        if nanoseconds < 0:
            raise ValueError("a clock never goes backwards")
        self._monotonic += nanoseconds

    def advance_seconds(self, seconds: float) -> None:
        self.advance(round(seconds * 1e9))

    def set(self, monotonic_ns: int) -> None:
        if monotonic_ns < self._monotonic:
            raise ValueError("a clock never goes backwards")
        self._monotonic = monotonic_ns


REAL_CLOCK = RealClock()
