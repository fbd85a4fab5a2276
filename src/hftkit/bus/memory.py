"""The in-process bus (the default): subscribers get the very objects published, synchronously.

No encoding, no copy, no task hop: ``publish`` calls each subscriber's handler before it
returns, so a strategy fed from the in-process bus sees a delta in the same loop iteration as
the adapter that produced it. Within one process every subscription receives every message
(a consumer group of one member); ``latest`` keeps each stream's last message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from hftkit.bus.base import BusStatus, Handler, StreamStatus
from hftkit.bus.messages import BusMessage

_log = logging.getLogger(__name__)


class InProcessBus:
    """``MessageBus`` within one event loop (see the module docstring)."""

    kind = "in_process"

    def __init__(self, *, track_lag: bool = False) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._latest: dict[str, BusMessage] = {}
        self._streams: dict[str, StreamStatus] = {}
        self._track_lag = track_lag
        self.published = 0
        self.handler_errors = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._handlers.clear()

    async def __aenter__(self) -> InProcessBus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def publish(self, stream: str, message: BusMessage) -> bool:
        self.published += 1
        self._latest[stream] = message
        handlers = self._handlers.get(stream)
        if handlers is None:
            return True
        status = self._streams[stream]
        status.delivered += len(handlers)
        if self._track_lag:
            lag = time.time_ns() - getattr(message, "published_ns", 0)
            status.lag_ns = lag
            if lag > status.max_lag_ns:
                status.max_lag_ns = lag
        for handler in handlers:
            try:
                handler(stream, message)
            except Exception:
                self.handler_errors += 1
                _log.exception("bus subscriber of %s failed", stream)
        return True

    def subscribe(self, streams: Sequence[str], handler: Handler, *, group: str, consumer: str) -> None:
        for stream in streams:
            self._handlers.setdefault(stream, []).append(handler)
            self._streams.setdefault(stream, StreamStatus())

    async def latest(self, stream: str) -> BusMessage | None:
        return self._latest.get(stream)

    def status(self) -> BusStatus:
        return BusStatus(
            kind=self.kind,
            connected=True,
            published=self.published,
            written=self.published,
            dropped=0,
            buffered=0,
            capacity=0,
            reconnects=0,
            decode_errors=0,
            handler_errors=self.handler_errors,
            streams={name: StreamStatus(**_fields(status)) for name, status in self._streams.items()},
        )


def _fields(status: StreamStatus) -> dict[str, int]:
    return {name: getattr(status, name) for name in status.__struct_fields__}


__all__ = ["InProcessBus"]
