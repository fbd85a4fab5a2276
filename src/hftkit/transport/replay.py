"""Replay recorded market data as a live feed: at recorded speed, N times faster, or flat out.

Reads ``<ts_ns> <json>`` recordings (gzip or plain), cryptofeed's ``<unix_ts>: <json>`` and
plain JSON lines through :func:`hftkit.datasets.iter_recording`. Pacing follows the recorded
timestamps relative to the first record: record ``i`` is due at
``start + (ts_i - ts_0) / speed`` on the replay clock. Scheduling against that fixed origin
(instead of sleeping the gap between neighbours) keeps sleep overshoot from accumulating into
drift; when the replay falls behind it emits without sleeping and reports the lag.

Clock and sleep are injectable so tests drive pacing with a simulated clock and record the
requested waits instead of sleeping.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import NamedTuple, TypeVar

from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.datasets import iter_recording
from hftkit.transport.feed import FeedQueue, QueueClosedError

__all__ = ["RecordingReplay", "ReplayRecord"]

T = TypeVar("T")


class ReplayRecord(NamedTuple):
    """One recorded line: its recorded timestamp (ns; 0 for plain JSON lines) and raw JSON."""

    timestamp_ns: int
    payload: bytes


class RecordingReplay:
    """An async source of :class:`ReplayRecord` from one or more recording files, in order.

    ``speed``: 1.0 replays at recorded speed, 10.0 ten times faster, None as fast as possible.
    ``loop``: start over from the first file when the last ends (until ``stop()``), re-anchoring
    the schedule at the restart. In catch-up stretches and in as-fast-as-possible mode the
    source still yields to the event loop every ``yield_every`` records so consumers run.
    """

    def __init__(
        self,
        paths: str | Path | Sequence[str | Path],
        *,
        speed: float | None = 1.0,
        loop: bool = False,
        clock: Clock = REAL_CLOCK,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        yield_every: int = 256,
    ) -> None:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        self.paths = [Path(path) for path in paths]
        if not self.paths:
            raise ValueError("a replay needs at least one recording file")
        missing = [str(path) for path in self.paths if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"recording files not found: {', '.join(missing)}")
        if speed is not None and (not math.isfinite(speed) or speed <= 0):
            raise ValueError(f"speed must be a positive finite factor or None, got {speed!r}")
        if yield_every < 1:
            raise ValueError(f"yield_every must be >= 1, got {yield_every}")
        self.speed = speed
        self.loop = loop
        self.yield_every = yield_every
        self._now = clock.monotonic_ns
        self._sleep = sleep
        self._stopped = False
        self.emitted = 0
        self.loops_completed = 0
        self.max_lag_ns = 0  # how far behind its schedule the replay has been at worst
        self.slept_ns = 0  # total sleep requested, for pacing checks

    def stop(self) -> None:
        """End the replay after the record being emitted (a looping replay ends too)."""
        self._stopped = True

    def __aiter__(self) -> AsyncIterator[ReplayRecord]:
        return self.records()

    async def records(self) -> AsyncGenerator[ReplayRecord, None]:
        """Yield every record, paced by the recorded timestamps."""
        speed = self.speed
        now = self._now
        sleep = self._sleep
        since_yield = 0
        while not self._stopped:
            anchor_record_ns: int | None = None
            anchor_clock_ns = 0
            for path in self.paths:
                for timestamp_ns, payload in iter_recording(path):
                    if self._stopped:
                        return
                    if speed is not None:
                        if anchor_record_ns is None:
                            anchor_record_ns = timestamp_ns
                            anchor_clock_ns = now()
                        due_ns = anchor_clock_ns + round((timestamp_ns - anchor_record_ns) / speed)
                        wait_ns = due_ns - now()
                        if wait_ns > 0:
                            self.slept_ns += wait_ns
                            await sleep(wait_ns / 1e9)
                            since_yield = 0
                        elif -wait_ns > self.max_lag_ns:
                            self.max_lag_ns = -wait_ns
                    since_yield += 1
                    if since_yield >= self.yield_every:
                        since_yield = 0
                        await sleep(0)
                    self.emitted += 1
                    yield ReplayRecord(timestamp_ns, payload)
            self.loops_completed += 1
            if not self.loop:
                return

    async def pump(
        self,
        queue: FeedQueue[T],
        transform: Callable[[ReplayRecord], T] | None = None,
        *,
        close_when_done: bool = True,
    ) -> int:
        """Push every record (through ``transform`` if given) into ``queue``; return the count
        the queue accepted. A ``block`` queue applies back-pressure to the replay; a dropping
        queue drops by its policy. Stops early if the queue is closed under it."""
        accepted = 0
        try:
            async with aclosing(self.records()) as records:
                async for record in records:
                    item = transform(record) if transform is not None else record
                    if await queue.put(item):  # type: ignore[arg-type]
                        accepted += 1
        except QueueClosedError:
            return accepted
        finally:
            if close_when_done:
                queue.close()
        return accepted
