"""Server-side WebSocket rules aiohttp leaves out, for the simulator's servers.

aiohttp's frame reader unmasks a client frame when it is masked and accepts it as it is when it
is not. RFC 6455 §5.1 says a server MUST close the connection on an unmasked client frame (we
send a Close with 1002, protocol error, as §7.4.1 allows). ``SimWebSocketResponse`` puts a small
frame-header scanner in front of aiohttp's parser: it follows frame boundaries (header and
payload length only, no copying) and fails the socket on the first frame without the mask bit.

``send_or_abort`` bounds what a client that does not read can cost the server: every send gets
a deadline, and a send past it aborts the connection (counted), instead of parking the sender on
a full TCP buffer forever while its queue grows.

``DirectText`` is the fan-out path of the stream senders: encoded JSON bytes go out as text
frames written straight to the transport (no decode/encode round trip, no task, no await; many
frames in one write), while the socket is uncompressed and its transport is not paused.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable, Sequence
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


_SHORT = struct.Struct("!BB").pack
_MEDIUM = struct.Struct("!BBH").pack
_LONG = struct.Struct("!BBQ").pack


def text_frame_header(length: int) -> bytes:
    """The header of an unmasked, uncompressed, final text frame (server to client, RFC 6455 5.2)."""
    if length < 126:
        return _SHORT(0x81, length)
    if length < 65536:
        return _MEDIUM(0x81, 126, length)
    return _LONG(0x81, 127, length)


class DirectText:
    """Writes text frames of already-encoded bytes straight to one socket's transport.

    aiohttp's ``send_str`` wants ``str`` (so bytes are decoded, then encoded again) and is a
    coroutine (so each frame costs a task step). For an uncompressed socket the frame is just
    a header and the bytes; writing it synchronously keeps frames in order with aiohttp's own
    writes (pings, close), which are synchronous too. ``ready()`` says whether a write may go
    out now: the socket is open, uncompressed, and its transport is below the high-water mark.
    """

    __slots__ = ("_protocol", "_socket", "_transport")

    def __init__(self, socket: web.WebSocketResponse) -> None:
        self._socket = socket
        self._transport: Any = None
        self._protocol: Any = None

    def ready(self) -> bool:
        transport = self._transport
        if transport is None:
            socket = self._socket
            request = socket._req
            if request is None or socket._writer is None or socket.compress:
                return False
            transport = request.transport
            if transport is None:
                return False
            self._transport, self._protocol = transport, request.protocol
        socket = self._socket
        return not (
            socket._closing or socket.closed or transport.is_closing() or self._protocol.writing_paused
        )

    def write(self, frame: bytes) -> None:
        """One frame; the caller checked ``ready()``."""
        self._transport.write(text_frame_header(len(frame)) + frame)

    def write_many(self, frames: Sequence[bytes]) -> None:
        """Several frames in one transport write (one system call when the buffer is empty)."""
        parts: list[bytes] = []
        append = parts.append
        for frame in frames:
            append(text_frame_header(len(frame)))
            append(frame)
        self._transport.write(b"".join(parts))

    async def drained(self, timeout_s: float) -> bool:
        """Wait until the transport takes writes again; False if it did not within ``timeout_s``."""
        protocol = self._protocol
        if protocol is None or not protocol.writing_paused:
            return True
        try:
            await asyncio.wait_for(protocol._drain_helper(), timeout_s)
        except TimeoutError:
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
    "DirectText",
    "FrameMaskScanner",
    "SimWebSocketResponse",
    "abort",
    "send_or_abort",
    "text_frame_header",
]


def open_connections(*runners: web.AppRunner | None) -> int:
    """Open TCP connections to the servers of these runners (HTTP keep-alive and WebSockets).

    What tells the simulator that a client is attached: its market drivers at speed max run
    only then (``sim.engine.market``).
    """
    total = 0
    for runner in runners:
        server = None if runner is None else runner.server
        if server is not None:
            total += len(server.connections)
    return total
