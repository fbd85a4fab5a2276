"""The bus protocol every implementation keeps, and the status a node exports from it.

``publish`` never awaits: it is called from the hot path (an adapter's listener) and either
hands the message on at once (in-process) or buffers it within a bound for a background
writer (Redis Streams), counting what a full buffer drops. ``subscribe`` registers a plain
callback, called in arrival order on the bus's own task, with the stream's name and the typed
message. ``latest`` reads a stream's newest message (a book consumer's snapshot after a gap).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import msgspec

from hftkit.bus.messages import BusMessage

Handler = Callable[[str, BusMessage], None]


class StreamStatus(msgspec.Struct, kw_only=True):
    """One subscribed stream as seen by this consumer."""

    delivered: int = 0  # messages handed to the handler
    lag_ns: int = 0  # receive wall clock - the publisher's, of the last message
    max_lag_ns: int = 0
    pending: int = 0  # delivered to the group but not acknowledged (Redis: XPENDING), last seen
    claimed: int = 0  # pending entries of dead consumers taken over (XAUTOCLAIM)


class BusStatus(msgspec.Struct, kw_only=True):
    """What the dashboard, ``/metrics`` and ``/health`` show of the bus."""

    kind: str  # in_process / redis
    connected: bool
    published: int  # accepted by publish()
    written: int  # reached the bus (Redis: XADD answered)
    dropped: int  # refused or evicted by a full publish buffer, or lost at close
    buffered: int
    capacity: int
    reconnects: int  # connections re-established after a failure (publisher and consumers)
    decode_errors: int  # messages that were not a bus message: counted, acknowledged, skipped
    handler_errors: int  # a subscriber's callback raised: counted and logged, the bus goes on
    last_error: str | None = None
    streams: dict[str, StreamStatus] = {}


@runtime_checkable
class MessageBus(Protocol):
    """Publish/subscribe over typed messages (see the module docstring)."""

    kind: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def publish(self, stream: str, message: BusMessage) -> bool:
        """Send or buffer ``message``; False when the buffer refused it (counted in ``dropped``)."""
        ...

    def subscribe(self, streams: Sequence[str], handler: Handler, *, group: str, consumer: str) -> None:
        """Deliver every new message of ``streams`` to ``handler``; ``group`` is the consumer
        group (each group receives every message once; a restarted consumer resumes from its
        group's position) and ``consumer`` this member's name within it."""
        ...

    async def latest(self, stream: str) -> BusMessage | None: ...

    def status(self) -> BusStatus: ...


__all__ = ["BusStatus", "Handler", "MessageBus", "StreamStatus"]
