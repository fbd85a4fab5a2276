"""Request timeouts with one timer per session, not one per request.

Every request of a session waits the same time for its answer, so requests expire in the
order they were sent: a queue of (deadline, request id) read from the oldest is in deadline
order, and one loop timer, set for the oldest deadline, serves them all. Adding a request costs
an append; an answered request simply finds nothing to expire when its deadline comes. A timer
handle per request (``loop.call_later``) costs an allocation and a heap push on the order path
and a cancel on the answer path; this costs neither.

Why the timer runs ``slack_s`` late: uvloop's timers and ``loop.time()`` tick in whole
milliseconds, so a timer set for a deadline inside the current millisecond fires before
``loop.time()`` reaches it; re-armed for the same deadline, it fired again and again, a busy loop
of up to a millisecond for every request (13 sweeps per order in ``hftkit bench node``). Fired
``slack_s`` after the oldest deadline, a sweep always has something due, and one sweep expires every
request sent within the slack. A request's timeout is seconds; ending it a few milliseconds later
changes nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from hftkit.core.clock import LOOP_TICK_S

MINIMUM_SLACK_S = 2 * LOOP_TICK_S
MAXIMUM_SLACK_S = 0.05


class RequestDeadlines:
    """Calls ``on_expired(request_id)`` once ``timeout_s`` has passed since ``add(request_id)``
    (at most ``slack_s`` later); the owner ignores ids it has already answered."""

    __slots__ = ("_on_expired", "_queue", "_timer", "slack_s", "timeout_s")

    def __init__(self, timeout_s: float, on_expired: Callable[[int], None]) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        self.timeout_s = timeout_s
        # past the loop's millisecond tick, at most 50 ms or a twentieth of the timeout
        self.slack_s = max(MINIMUM_SLACK_S, min(MAXIMUM_SLACK_S, timeout_s / 20))
        self._on_expired = on_expired
        self._queue: deque[tuple[float, int]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, request_id: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        self._queue.append((deadline, request_id))
        if self._timer is None:
            self._timer = loop.call_at(deadline + self.slack_s, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        queue = self._queue
        while queue and queue[0][0] <= now:
            _, request_id = queue.popleft()
            self._on_expired(request_id)
        if queue and self._timer is None:
            self._timer = loop.call_at(queue[0][0] + self.slack_s, self._sweep)

    def clear(self) -> None:
        """Forget every deadline (the requests are failed by other means, e.g. a lost session)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()

    def __len__(self) -> int:
        return len(self._queue)


__all__ = ["RequestDeadlines"]
