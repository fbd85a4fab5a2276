"""A weighted rate limiter with several fixed windows at once, in the venue's own model.

Why fixed windows aligned to the venue's clock rather than sliding windows: Binance counts
``REQUEST_WEIGHT`` per calendar minute, ``ORDERS`` per 10-second slot and per UTC day, and its
``X-MBX-USED-WEIGHT-1M`` / ``X-MBX-ORDER-COUNT-10S`` headers report the count of the *current
fixed window*. Mirroring that model lets a header correct local usage one to one and lets a
caller use the whole budget right after a reset (a sliding window would idle up to one full
interval after a burst). The risk of fixed windows is a clock that resets a window before the
venue does; ``clock_offset_ns`` (venue time minus local time, from a time sync) and
``reset_guard_ns`` (treat each reset as happening that much later) remove it. Within the
limiter's own windows the limit is never exceeded: every admission checks every window it
costs before taking anything.

Priorities: a waiter of higher priority is served before any waiter of lower priority, and a
``reserve_fraction`` of each window is kept for ``priority >= reserve_priority`` (cancels must
get through when new orders have used the budget). Equal priorities are served first come,
first served. ``try_acquire`` never jumps ahead of a waiter of the same or higher priority.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from hftkit.core.clock import LOOP_TICK_S, REAL_CLOCK, Clock
from hftkit.resilience.errors import CapacityExceededError, UnknownWindowError

_NS_PER_SECOND = 1_000_000_000
UNBOUNDED = 1 << 31  # ``affordable`` for costs no window charges
_INTERVAL_UNITS_NS = {
    "S": _NS_PER_SECOND,
    "M": 60 * _NS_PER_SECOND,
    "H": 3600 * _NS_PER_SECOND,
    "D": 86400 * _NS_PER_SECOND,
}


class Priority(IntEnum):
    """Who goes first when the budget is short. Cancels outrank new orders."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3


def parse_interval_code(code: str) -> int:
    """Turn a venue interval code such as ``"1M"``, ``"10S"`` or ``"1D"`` into nanoseconds."""
    text = code.strip().upper()
    if len(text) < 2 or not text[:-1].isdigit() or text[-1] not in _INTERVAL_UNITS_NS:
        raise ValueError(f"not an interval code like '1M', '10S', '1H' or '1D': {code!r}")
    count = int(text[:-1])
    if count < 1:
        raise ValueError(f"interval must be positive: {code!r}")
    return count * _INTERVAL_UNITS_NS[text[-1]]


@dataclass(frozen=True, slots=True)
class RateWindow:
    """One budget: at most ``limit`` units of weight per fixed ``interval_ns`` window."""

    name: str
    limit: int
    interval_ns: int
    reserve_fraction: float = 0.0
    """Share of ``limit`` usable only by priorities at or above the limiter's reserve priority."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a rate window needs a name")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"window {self.name!r}: limit must be a positive integer, got {self.limit!r}")
        if not isinstance(self.interval_ns, int) or self.interval_ns < 1:
            raise ValueError(f"window {self.name!r}: interval_ns must be a positive integer")
        if not 0.0 <= self.reserve_fraction < 1.0:
            raise ValueError(f"window {self.name!r}: reserve_fraction must be within [0, 1)")

    @classmethod
    def of(cls, name: str, limit: int, interval: str | float, reserve_fraction: float = 0.0) -> RateWindow:
        """Build from an interval code (``"1M"``) or a number of seconds."""
        if isinstance(interval, str):
            interval_ns = parse_interval_code(interval)
        else:
            interval_ns = round(interval * _NS_PER_SECOND)
        return cls(name, limit, interval_ns, reserve_fraction)

    @property
    def reserved(self) -> int:
        """Units kept back for high priority."""
        return math.ceil(self.limit * self.reserve_fraction)


WindowCosts = tuple[tuple[int, int], ...]
"""Costs resolved against one limiter: ``((window_index, weight), ...)``. Build with ``costs()``."""


@dataclass(frozen=True, slots=True)
class WindowUsage:
    """A snapshot of one window for dashboards and logs."""

    name: str
    used: int
    limit: int
    reserved: int
    resets_in_ns: int


class WeightedLimiter:
    """Several fixed windows consumed together; one call may cost weight in some of them."""

    def __init__(
        self,
        windows: Iterable[RateWindow],
        clock: Clock = REAL_CLOCK,
        *,
        clock_offset_ns: int = 0,
        reset_guard_ns: int = 0,
        reserve_priority: int = Priority.HIGH,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.windows = tuple(windows)
        if not self.windows:
            raise ValueError("a weighted limiter needs at least one window")
        names = [window.name for window in self.windows]
        if len(set(names)) != len(names):
            raise ValueError(f"window names must be unique: {names}")
        if reset_guard_ns < 0:
            raise ValueError("reset_guard_ns must not be negative")
        self._index = {window.name: index for index, window in enumerate(self.windows)}
        self._time_ns = clock.time_ns
        self._monotonic_ns = clock.monotonic_ns
        self._shift_ns = clock_offset_ns - reset_guard_ns
        self.clock_offset_ns = clock_offset_ns
        self.reset_guard_ns = reset_guard_ns
        self.reserve_priority = int(reserve_priority)
        self._sleep = sleep
        self._intervals = [window.interval_ns for window in self.windows]
        self._limit_full = [window.limit for window in self.windows]
        self._limit_normal = [window.limit - window.reserved for window in self.windows]
        self._used = [0] * len(self.windows)
        self._ends = [0] * len(self.windows)
        self._next_end_ns = 0  # earliest window end: past it, some window must start afresh
        self._blocked_until_ns = 0  # on the shifted venue timeline, like the window ends
        self._waiters: list[_Waiter] = []
        self._sequence = itertools.count()
        self._server: asyncio.Task[None] | None = None
        self.admitted = 0
        self.rejected = 0
        self.corrections = 0
        self.stale_observations = 0
        self.blocks = 0

    def set_limit(self, name: str, limit: int) -> None:
        """Resize one window (e.g. to the limit the venue reports for this account); usage so far
        stays counted, the high-priority reserve keeps its fraction."""
        index = self._index.get(name)
        if index is None:
            raise UnknownWindowError(f"no rate window named {name!r}; windows are {sorted(self._index)}")
        window = dataclasses.replace(self.windows[index], limit=limit)
        windows = list(self.windows)
        windows[index] = window
        self.windows = tuple(windows)
        self._limit_full[index] = window.limit
        self._limit_normal[index] = window.limit - window.reserved

    # -- costs ------------------------------------------------------------------------------

    def costs(self, weights: Mapping[str, int]) -> WindowCosts:
        """Resolve ``{"REQUEST_WEIGHT": 1, "ORDERS_10S": 1}`` once, for cheap repeated use."""
        resolved = []
        for name, weight in weights.items():
            index = self._index.get(name)
            if index is None:
                raise UnknownWindowError(f"no rate window named {name!r}; windows are {sorted(self._index)}")
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
                raise ValueError(f"weight for {name!r} must be a non-negative integer, got {weight!r}")
            if weight > self._limit_full[index]:
                raise CapacityExceededError(
                    f"weight {weight} in window {name!r} exceeds its limit {self._limit_full[index]}"
                )
            if weight:
                resolved.append((index, weight))
        return tuple(resolved)

    def _resolve(self, costs: WindowCosts | Mapping[str, int]) -> WindowCosts:
        return costs if type(costs) is tuple else self.costs(costs)  # type: ignore[arg-type]

    # -- sync core --------------------------------------------------------------------------

    def try_acquire(self, costs: WindowCosts | Mapping[str, int], priority: int = Priority.NORMAL) -> bool:
        """Take the costs from every window now if all can pay, else take nothing."""
        if type(costs) is not tuple:
            costs = self.costs(costs)  # type: ignore[arg-type]
        if self._waiters and not self._may_pass_queue(priority):
            self.rejected += 1
            return False
        # The body of ``_take``, inlined: this is the per-request hot path. Windows are rolled
        # only when the earliest window end has passed; weights are charged optimistically and
        # rolled back in the rare refusal, so the common case walks the costs once.
        now = self._time_ns() + self._shift_ns
        if now >= self._next_end_ns:
            self._roll_expired(now)
        if now >= self._blocked_until_ns:
            used = self._used
            limits = self._limit_full if priority >= self.reserve_priority else self._limit_normal
            for index, weight in costs:
                total = used[index] + weight
                if total > limits[index]:
                    self._roll_back(costs, index)
                    break
                used[index] = total
            else:
                self.admitted += 1
                return True
        self.rejected += 1
        return False

    def _take(self, costs: WindowCosts, priority: int) -> bool:
        now = self._time_ns() + self._shift_ns
        if now >= self._next_end_ns:
            self._roll_expired(now)
        if now < self._blocked_until_ns:
            return False
        used = self._used
        limits = self._limit_full if priority >= self.reserve_priority else self._limit_normal
        for index, weight in costs:
            if used[index] + weight > limits[index]:
                return False
        for index, weight in costs:
            used[index] += weight
        self.admitted += 1
        return True

    def _roll_back(self, costs: WindowCosts, failed_index: int) -> None:
        used = self._used
        for index, weight in costs:
            if index == failed_index:
                return
            used[index] -= weight

    def _roll_expired(self, now: int) -> None:
        """Start a new window for every window whose end has passed."""
        ends = self._ends
        for index, end in enumerate(ends):
            if now >= end:
                interval = self._intervals[index]
                ends[index] = now - now % interval + interval
                self._used[index] = 0
        self._next_end_ns = min(ends)

    def _may_pass_queue(self, priority: int) -> bool:
        waiters = self._waiters
        while waiters and waiters[0].future.done():
            heapq.heappop(waiters)
        return not waiters or waiters[0].priority < priority

    def affordable(self, costs: WindowCosts | Mapping[str, int], priority: int = Priority.NORMAL) -> int:
        """How many calls of ``costs`` every window could pay now, taking nothing: 0 while a
        block holds or waiters queue ahead of ``priority``; ``UNBOUNDED`` for costs of no weight."""
        costs = self._resolve(costs)
        if self._waiters and not self._may_pass_queue(priority):
            return 0
        now = self._time_ns() + self._shift_ns
        if now >= self._next_end_ns:
            self._roll_expired(now)
        if now < self._blocked_until_ns:
            return 0
        used = self._used
        limits = self._limit_full if priority >= self.reserve_priority else self._limit_normal
        count = UNBOUNDED
        for index, weight in costs:
            room = limits[index] - used[index]
            if room < weight:
                return 0  # this window affords none (no min/max calls: read once per plan)
            if room // weight < count:
                count = room // weight
        return count

    def time_until_available_ns(
        self, costs: WindowCosts | Mapping[str, int], priority: int = Priority.NORMAL
    ) -> int:
        """Nanoseconds until the budget could pay ``costs`` (ignoring queued waiters)."""
        costs = self._resolve(costs)
        self._check_satisfiable(costs, priority)
        now = self._time_ns() + self._shift_ns
        wait = max(0, self._blocked_until_ns - now)
        limits = self._limit_full if priority >= self.reserve_priority else self._limit_normal
        if now >= self._next_end_ns:
            self._roll_expired(now)
        for index, weight in costs:
            if self._used[index] + weight > limits[index]:
                wait = max(wait, self._ends[index] - now)
        return wait

    def time_until_available(
        self, costs: WindowCosts | Mapping[str, int], priority: int = Priority.NORMAL
    ) -> float:
        return self.time_until_available_ns(costs, priority) / _NS_PER_SECOND

    def _check_satisfiable(self, costs: WindowCosts, priority: int) -> None:
        limits = self._limit_full if priority >= self.reserve_priority else self._limit_normal
        for index, weight in costs:
            if weight > limits[index]:
                raise CapacityExceededError(
                    f"weight {weight} in window {self.windows[index].name!r} exceeds the "
                    f"{limits[index]} available to priority {priority}: it would wait forever"
                )

    # -- venue feedback ---------------------------------------------------------------------

    def observe_usage(
        self,
        observed: Mapping[str, int],
        *,
        in_flight: Mapping[str, int] | None = None,
        authoritative: bool = False,
        observed_at_ns: int | None = None,
    ) -> None:
        """Correct local usage from the venue's counters (e.g. ``X-MBX-USED-WEIGHT-1M``).

        The venue's count omits requests still in flight (sent after the one that carried the
        header, or not yet processed), so by default local usage becomes
        ``max(local, observed + in_flight)``: a header can raise usage, never lower it below
        what we have already spent. ``authoritative=True`` sets usage to ``observed +
        in_flight`` (use it when local counts are known to be too high, e.g. requests that
        failed before reaching the venue). ``observed_at_ns`` is the venue time the count was
        taken (e.g. the response's ``Date``); a count from an earlier window than the current
        one is stale and ignored.
        """
        now = self._time_ns() + self._shift_ns
        lowered = False
        for name, count in observed.items():
            index = self._index.get(name)
            if index is None:
                raise UnknownWindowError(f"no rate window named {name!r}; windows are {sorted(self._index)}")
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"observed usage for {name!r} must be a non-negative integer, got {count!r}")
            if now >= self._next_end_ns:
                self._roll_expired(now)
            if observed_at_ns is not None:
                window_start = self._ends[index] - self._intervals[index]
                if observed_at_ns - self.reset_guard_ns < window_start:
                    self.stale_observations += 1
                    continue
            value = count + (in_flight.get(name, 0) if in_flight else 0)
            if value > self._used[index]:
                self._used[index] = value
                self.corrections += 1
            elif authoritative and value < self._used[index]:
                self._used[index] = value
                self.corrections += 1
                lowered = True
        if lowered:
            self._wake_server()

    def block_until(self, monotonic_ns: int) -> None:
        """Admit nothing until ``monotonic_ns`` on the limiter's clock (HTTP 429/418 Retry-After)."""
        remaining = monotonic_ns - self._monotonic_ns()
        if remaining <= 0:
            return
        until = self._time_ns() + self._shift_ns + remaining
        if until > self._blocked_until_ns:
            self._blocked_until_ns = until
            self.blocks += 1

    def block_for(self, seconds: float) -> None:
        """Admit nothing for ``seconds`` (a venue's ``Retry-After`` header value)."""
        self.block_until(self._monotonic_ns() + max(0, round(seconds * _NS_PER_SECOND)))

    def usage(self) -> list[WindowUsage]:
        now = self._time_ns() + self._shift_ns
        snapshot = []
        if now >= self._next_end_ns:
            self._roll_expired(now)
        for index, window in enumerate(self.windows):
            snapshot.append(
                WindowUsage(
                    window.name, self._used[index], window.limit, window.reserved, self._ends[index] - now
                )
            )
        return snapshot

    def used(self, name: str) -> int:
        """Units used in the current window named ``name``."""
        index = self._index.get(name)
        if index is None:
            raise UnknownWindowError(f"no rate window named {name!r}; windows are {sorted(self._index)}")
        now = self._time_ns() + self._shift_ns
        if now >= self._next_end_ns:
            self._roll_expired(now)
        return self._used[index]

    @property
    def waiting(self) -> int:
        """Async callers queued for budget."""
        return sum(1 for waiter in self._waiters if not waiter.future.done())

    # -- async shell ------------------------------------------------------------------------

    async def acquire(self, costs: WindowCosts | Mapping[str, int], priority: int = Priority.NORMAL) -> None:
        """Wait until every window can pay ``costs``; higher priority first, FIFO within one."""
        costs = self._resolve(costs)
        self._check_satisfiable(costs, priority)
        if self.try_acquire(costs, priority):
            return
        self.rejected -= 1  # the fast path's refusal is not a refusal for a caller that waits
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(-priority, next(self._sequence), priority, costs, future)
        heapq.heappush(self._waiters, waiter)
        if self._waiters[0] is waiter:
            self._wake_server()
        try:
            await future
        except asyncio.CancelledError:
            # The server may be sleeping for this waiter's budget; let it serve the next one.
            if self._waiters and self._waiters[0] is waiter:
                heapq.heappop(self._waiters)
                self._wake_server()
            raise

    async def aclose(self) -> None:
        """Stop serving: cancel every queued waiter and the task that serves them (shutdown)."""
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.cancel()
        self._waiters.clear()
        server, self._server = self._server, None
        if server is not None and not server.done():
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)

    def _wake_server(self) -> None:
        """(Re)start the task that serves the queue head, so it recomputes its wait."""
        if not self._waiters:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._server is not None and not self._server.done():
            self._server.cancel()
        self._server = loop.create_task(self._serve())

    async def _serve(self) -> None:
        waiters = self._waiters
        while waiters:
            head = waiters[0]
            if head.future.done():
                heapq.heappop(waiters)
                continue
            if self._take(head.costs, head.priority):
                heapq.heappop(waiters)
                head.future.set_result(None)
                continue
            wait_ns = self.time_until_available_ns(head.costs, head.priority)
            # a tick past the window's turn: woken early by the loop's millisecond timers, the
            # waiter would re-check and sleep again until the millisecond turned (a busy loop)
            await self._sleep(max(wait_ns, 1) / _NS_PER_SECOND + LOOP_TICK_S)


class _Waiter:
    __slots__ = ("costs", "future", "priority", "rank", "sequence")

    def __init__(
        self, rank: int, sequence: int, priority: int, costs: WindowCosts, future: asyncio.Future[None]
    ) -> None:
        self.rank = rank
        self.sequence = sequence
        self.priority = priority
        self.costs = costs
        self.future = future

    def __lt__(self, other: _Waiter) -> bool:
        return (self.rank, self.sequence) < (other.rank, other.sequence)
