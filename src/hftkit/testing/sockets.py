"""An in-memory WebSocket connection for the scripted venues: what an adapter writes and hears.

It satisfies the ``WebSocketConnection`` the adapters' transports return (``send``,
``send_close``, ``disconnect``), so the real adapter runs unchanged with no socket beneath it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from picows import WSMsgType

from hftkit.transport.websocket import FrameReceiver


class InMemorySocket:
    """One client connection's wire between an adapter and a scripted venue.

    Frames go both ways on the next turn of the event loop, in order, as over a socket; a close
    from either side reaches the client after the frames sent before it. ``on_text`` hears the
    client's text frames (None: the venue ignores them); ``on_close`` is told once, at close.
    """

    def __init__(
        self,
        receiver: FrameReceiver,
        on_text: Callable[[InMemorySocket, bytes], None] | None,
        on_close: Callable[[InMemorySocket], None] | None = None,
    ) -> None:
        self._receiver = receiver
        self._on_text = on_text
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self.closed = False
        self._delivering = True

    # the client's side ---------------------------------------------------------------------
    def send(self, msg_type: WSMsgType, message: bytes, /) -> None:
        if not self.closed and self._on_text is not None and msg_type is WSMsgType.TEXT:
            self._loop.call_soon(self._arrived, bytes(message))

    def send_close(self) -> None:
        return None

    def disconnect(self) -> None:
        self.close()

    # the venue's side ----------------------------------------------------------------------
    def send_from_venue(self, payload: bytes) -> None:
        """Send one message to the client."""
        if not self.closed:
            self._loop.call_soon(self._deliver, payload)

    def close(self) -> None:
        """Close the connection (from either side); the client hears it after pending frames."""
        if self.closed:
            return
        self.closed = True
        if self._on_close is not None:
            self._on_close(self)
        self._loop.call_soon(self._lost)

    def _arrived(self, data: bytes) -> None:
        if not self.closed and self._on_text is not None:
            self._on_text(self, data)

    def _deliver(self, payload: bytes) -> None:
        if self._delivering:
            self._receiver.receive(payload)

    def _lost(self) -> None:
        self._delivering = False
        self._receiver.transport_lost()
