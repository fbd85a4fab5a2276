"""Server-side WebSocket rules aiohttp leaves out, for the simulator's servers.

aiohttp's frame reader unmasks a client frame when it is masked and accepts it as it is when it
is not. RFC 6455 §5.1 says a server MUST close the connection on an unmasked client frame (we
send a Close with 1002, protocol error, as §7.4.1 allows). ``SimWebSocketResponse`` puts a small
frame-header scanner in front of aiohttp's parser: it follows frame boundaries (header and
payload length only, no copying) and fails the socket on the first frame without the mask bit.

``SlowClientGuard`` bounds what a client that does not read can cost the server: every send gets
a deadline, and a send past it aborts the connection (counted), instead of parking the sender on
a full TCP buffer forever while its queue grows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, web
from aiohttp.http_websocket import WebSocketError

UNMASKED_FRAME = "client frames must be masked (RFC 6455 section 5.1)"
SEND_TIMEOUT_S = 5.0  # a send that cannot finish in this long has a client that stopped reading


class FrameMaskScanner:
    """Follows WebSocket frame boundaries in a client byte stream and finds an unmasked frame.

    ``scan(data)`` returns the offset in ``data`` where an unmasked frame starts, or -1. State
    (a partial header, payload bytes still to skip) carries over between calls.
    """

    __slots__ = ("_header", "_skip")

    def __init__(self) -> None:
        self._header = b""
        self._skip = 0

    def scan(self, data: bytes) -> int:
        position = 0
        end = len(data)
        while position < end:
            if self._skip:
                step = min(self._skip, end - position)
                self._skip -= step
                position += step
                continue
            start = position - len(self._header)  # may be negative: the header began earlier
            needed = self._header_size(self._header + data[position : position + 14])
            if needed < 0:
                return max(start, 0)
            have = len(self._header)
            if needed == 0 or have + (end - position) < needed:
                self._header += data[position:end]
                return -1
            header = self._header + data[position : position + needed - have]
            position += needed - have
            self._header = b""
            self._skip = self._payload_length(header)
        return -1

    @staticmethod
    def _header_size(prefix: bytes) -> int:
        """Bytes in the frame header given its first bytes: 0 = not known yet, -1 = unmasked."""
        if len(prefix) < 2:
            return 0
        second = prefix[1]
        if not second & 0x80:
            return -1
        length = second & 0x7F
        return 2 + (2 if length == 126 else 8 if length == 127 else 0) + 4

    @staticmethod
    def _payload_length(header: bytes) -> int:
        length = header[1] & 0x7F
        if length == 126:
            return int.from_bytes(header[2:4], "big")
        if length == 127:
            return int.from_bytes(header[2:10], "big")
        return length


class _MaskCheckingParser:
    """aiohttp's WebSocket parser behind a ``FrameMaskScanner``; everything else passes through."""

    def __init__(self, inner: Any, queue: Any, on_violation: Callable[[], None]) -> None:
        self._inner = inner
        self._queue = queue
        self._on_violation = on_violation
        self._scanner = FrameMaskScanner()
        self._failed = False

    def feed_data(self, data: bytes | bytearray | memoryview) -> tuple[bool, bytes]:
        if self._failed:
            return False, b""
        chunk = bytes(data)
        offset = self._scanner.scan(chunk)
        if offset < 0:
            result: tuple[bool, bytes] = self._inner.feed_data(chunk)
            return result
        if offset:
            self._inner.feed_data(chunk[:offset])  # the masked frames before it are fine
        self._failed = True
        self._on_violation()
        # the receive loop turns a WebSocketError into a Close with its code, then an ERROR message
        self._queue.set_exception(WebSocketError(WSCloseCode.PROTOCOL_ERROR, UNMASKED_FRAME))
        return False, b""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class SimWebSocketResponse(web.WebSocketResponse):
    """A ``WebSocketResponse`` that refuses unmasked client frames (close 1002), counted."""

    def __init__(self, *, on_unmasked: Callable[[], None] | None = None, **options: Any) -> None:
        super().__init__(**options)
        self._on_unmasked = on_unmasked or (lambda: None)

    def _post_start(self, request: Any, protocol: str | None, writer: Any) -> None:
        handler = request.protocol
        # bytes that arrived with the handshake go through the scanner too, not around it
        tail = handler._message_tail
        handler._message_tail = b""
        super()._post_start(request, protocol, writer)
        checking = _MaskCheckingParser(self._parser, self._reader, self._on_unmasked)
        handler._payload_parser = checking
        self._parser = checking  # type: ignore[assignment]
        if tail:
            eof, _ = checking.feed_data(tail)
            if eof:
                handler.close()


async def send_or_abort(socket: web.WebSocketResponse, text: str, timeout_s: float = SEND_TIMEOUT_S) -> bool:
    """Send one text frame within ``timeout_s``; past it, abort the connection and return False.

    aiohttp waits for the TCP buffer to drain when it is full: against a client that stopped
    reading that wait never ends, and everything queued behind it grows. While the socket's
    buffer is empty a send cannot wait, so it goes straight out (no task per frame, same order
    and timing as a plain send); only a socket already behind gets the bounded wait.
    """
    request = socket._req
    transport = request.transport if request is not None else None
    if transport is None or not transport.get_write_buffer_size():
        await socket.send_str(text)
        return True
    try:
        await asyncio.wait_for(socket.send_str(text), timeout_s)
    except TimeoutError:
        abort(socket)
        return False
    return True


def abort(socket: web.WebSocketResponse) -> None:
    """Drop the connection now, without a closing handshake the client would never read."""
    request = socket._req  # the response keeps its request until the handler returns
    transport = request.transport if request is not None else None
    if transport is not None:
        transport.abort()
    with contextlib.suppress(Exception):
        reader = socket._reader
        if reader is not None:
            reader.feed_eof()


__all__ = [
    "SEND_TIMEOUT_S",
    "UNMASKED_FRAME",
    "FrameMaskScanner",
    "SimWebSocketResponse",
    "abort",
    "send_or_abort",
]
