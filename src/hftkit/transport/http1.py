"""HTTP/1.1 keep-alive connections for the order path: the request's bytes written synchronously.

aiohttp is the right client for everything else a venue's REST API is used for; for an order it
costs a task, a request object, header merging and its own writer before the bytes leave. Here a
request is bytes built once by the caller (request line, the few headers a venue needs, no body)
and written with ``transport.write`` inside the caller's callback on an idle, already open
connection; the answer is parsed by a small sans-I/O parser and handed to a callback.

One request at a time per connection (no pipelining: a venue that answers out of order or closes
after an error must not mix answers up); a small pool keeps a few connections warm. A response
that breaks the protocol (a status line that is not one, a header block or a body over its bound,
a bad chunk) closes the connection and fails its request as ``ConnectionLostError``: the request
was written, so its outcome is unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, overload

from hftkit.transport.deadlines import RequestDeadlines
from hftkit.transport.http import (
    ConnectFailedError,
    ConnectionLostError,
    HttpResponse,
    RequestTimeoutError,
    TransportError,
)

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024


class HttpProtocolError(ConnectionLostError):
    """The peer's answer is not HTTP/1.1 as we speak it: the connection is closed."""


class Headers(dict[str, str]):
    """Response headers stored by lower-cased name, looked up in any case (as aiohttp's are)."""

    @overload  # type: ignore[override]  # dict.get's overloads take the key's type, any default
    def get(self, name: str, default: None = None) -> str | None: ...

    @overload
    def get(self, name: str, default: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


@dataclass(frozen=True, slots=True)
class ParsedResponse:
    status: int
    headers: Headers
    body: bytes
    keep_alive: bool


class ResponseParser:
    """Bytes in, complete responses out (sans-I/O). Raises HttpProtocolError on a broken answer."""

    __slots__ = (
        "_body_left",
        "_buffer",
        "_chunks",
        "_headers",
        "_keep_alive",
        "_max_body",
        "_max_header",
        "_state",
        "_status",
    )

    def __init__(
        self, *, max_header_bytes: int = MAX_HEADER_BYTES, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self._max_header = max_header_bytes
        self._max_body = max_body_bytes
        self._buffer = bytearray()
        self._state = "head"  # head | body | chunk_size | chunk_data | trailer
        self._status = 0
        self._headers = Headers()
        self._keep_alive = True
        self._body_left = 0
        self._chunks: list[bytes] = []

    def feed(self, data: bytes) -> list[ParsedResponse]:
        self._buffer += data
        done: list[ParsedResponse] = []
        while True:
            response = self._step()
            if response is None:
                return done
            done.append(response)

    def _step(self) -> ParsedResponse | None:
        buffer = self._buffer
        if self._state == "head":
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > self._max_header:
                    raise HttpProtocolError(f"header block over {self._max_header} bytes")
                return None
            if end > self._max_header:
                raise HttpProtocolError(f"header block over {self._max_header} bytes")
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            self._start(head)
            if self._state == "head":  # no body (Content-Length: 0 or a bodyless status)
                return self._finish(b"")
            return self._step()
        if self._state == "body":
            if len(buffer) < self._body_left:
                return None
            body = bytes(buffer[: self._body_left])
            del buffer[: self._body_left]
            self._state = "head"
            return self._finish(body)
        if self._state == "chunk_size":
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > 1024:
                    raise HttpProtocolError("chunk size line over 1024 bytes")
                return None
            line = bytes(buffer[:end]).split(b";", 1)[0].strip()
            del buffer[: end + 2]
            try:
                size = int(line, 16)
            except ValueError:
                raise HttpProtocolError(f"bad chunk size {line[:20]!r}") from None
            if size < 0 or sum(map(len, self._chunks)) + size > self._max_body:
                raise HttpProtocolError(f"chunked body over {self._max_body} bytes")
            if size == 0:
                self._state = "trailer"
            else:
                self._state, self._body_left = "chunk_data", size
            return self._step()
        if self._state == "chunk_data":
            if len(buffer) < self._body_left + 2:
                return None
            if buffer[self._body_left : self._body_left + 2] != b"\r\n":
                raise HttpProtocolError("chunk not followed by CRLF")
            self._chunks.append(bytes(buffer[: self._body_left]))
            del buffer[: self._body_left + 2]
            self._state = "chunk_size"
            return self._step()
        # trailer: lines until an empty one
        end = buffer.find(b"\r\n")
        if end < 0:
            if len(buffer) > self._max_header:
                raise HttpProtocolError("trailer over its bound")
            return None
        del buffer[: end + 2]
        if end:
            return self._step()  # a trailer field: ignored
        body = b"".join(self._chunks)
        self._chunks = []
        self._state = "head"
        return self._finish(body)

    def _start(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status_line = lines[0]
        if (
            not status_line.startswith(b"HTTP/1.")
            or len(status_line) < 12
            or status_line[12:13] not in (b" ", b"")
        ):
            raise HttpProtocolError(f"not an HTTP/1.x status line: {status_line[:40]!r}")
        try:
            status = int(status_line[9:12])
        except ValueError:
            raise HttpProtocolError(f"bad status code in {status_line[:40]!r}") from None
        if not 100 <= status <= 599:
            raise HttpProtocolError(f"status {status} out of range")
        headers = Headers()
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise HttpProtocolError(f"bad header line {line[:40]!r}")
            headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
        self._status, self._headers = status, headers
        connection = headers.get("connection", "").lower()
        self._keep_alive = status_line.startswith(b"HTTP/1.1") and connection != "close"
        if status in (204, 304) or 100 <= status < 200:
            self._state = "head"
            return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = "chunk_size"
            return
        length_text = headers.get("content-length")
        if length_text is None:
            raise HttpProtocolError("response without Content-Length or chunked encoding")
        try:
            length = int(length_text)
        except ValueError:
            raise HttpProtocolError(f"bad Content-Length {length_text[:20]!r}") from None
        if not 0 <= length <= self._max_body:
            raise HttpProtocolError(f"Content-Length {length} out of bounds")
        if length:
            self._state, self._body_left = "body", length
        else:
            self._state = "head"

    def _finish(self, body: bytes) -> ParsedResponse:
        return ParsedResponse(self._status, self._headers, body, self._keep_alive)


ResponseCallback = Callable[[HttpResponse | TransportError], None]


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, pool: LeanHttpPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.waiting: ResponseCallback | None = None
        self.sent_ns = 0
        self.request_number = 0
        self.closed = False

    @property
    def idle(self) -> bool:
        return self.transport is not None and not self.closed and self.waiting is None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def write(self, request: bytes, on_response: ResponseCallback, request_number: int) -> None:
        assert self.transport is not None
        self.waiting = on_response
        self.request_number = request_number
        self.sent_ns = time.monotonic_ns()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        try:
            responses = self.parser.feed(data)
        except HttpProtocolError as error:
            self.pool.stats_protocol_errors += 1
            self._fail(error)
            return
        for parsed in responses:
            callback, self.waiting = self.waiting, None
            if callback is None:
                self.pool.stats_unsolicited += 1
                self._fail(HttpProtocolError("a response nobody asked for"))
                return
            if not parsed.keep_alive:
                self._close()
            response = HttpResponse(
                parsed.status,
                parsed.headers,
                parsed.body,
                time.monotonic_ns() - self.sent_ns,
                self.pool.origin,
            )
            self.pool._answered(callback, response, self.request_number)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionLostError(f"connection to {self.pool.origin} lost: {exc or 'closed by peer'}"))

    def _fail(self, error: TransportError) -> None:
        self._close()
        callback, self.waiting = self.waiting, None
        if callback is not None:
            self.pool._answered(callback, error, self.request_number)

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class OrderPool(Protocol):
    """Warm connections a new order is written on synchronously (``LeanHttpPool`` is the real
    one; an in-memory venue gives its own)."""

    origin: str

    @property
    def idle_connections(self) -> int: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def request_bytes(self, method: str, target: str, headers: dict[str, str]) -> bytes: ...

    def write_now(self, request: bytes, on_response: ResponseCallback) -> bool: ...


class OrderPoolFactory(Protocol):
    """Builds the order pool for one origin (``LeanHttpPool`` itself is one)."""

    def __call__(
        self, base_url: str, *, size: int, connect_timeout_s: float, request_timeout_s: float
    ) -> OrderPool: ...


class LeanHttpPool:
    """A few warm keep-alive connections to one origin; ``write_now`` uses an idle one."""

    def __init__(
        self,
        base_url: str,
        *,
        size: int = 2,
        connect_timeout_s: float = 3.0,
        request_timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) origin: {base_url!r}")
        if size < 1:
            raise ValueError("a pool needs at least one connection")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.host_header = parts.netloc
        self.tls = parts.scheme == "https"
        self._ssl = (
            ssl_context if ssl_context is not None else (ssl.create_default_context() if self.tls else None)
        )
        self.size = size
        self.connect_timeout_s = connect_timeout_s
        self._connections: list[_Connection] = []
        self._numbers = 0
        self._in_flight: dict[int, _Connection] = {}
        self._deadlines = RequestDeadlines(request_timeout_s, self._expire)
        self._refill: asyncio.Task[None] | None = None
        self._closing = False
        self.stats_requests = 0
        self.stats_timeouts = 0
        self.stats_protocol_errors = 0
        self.stats_unsolicited = 0
        self.stats_connects = 0

    async def open(self) -> None:
        """Open the pool's connections (failures are retried by later refills, not raised)."""
        await self._fill()

    async def _fill(self) -> None:
        self._connections = [connection for connection in self._connections if not connection.closed]
        while len(self._connections) < self.size and not self._closing:
            try:
                connection = await self._connect()
            except ConnectFailedError as error:
                log.warning("%s: %s", self.origin, error)
                return
            self._connections.append(connection)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self.tls else None,
                ),
                self.connect_timeout_s,
            )
        except (OSError, TimeoutError) as error:
            raise ConnectFailedError(f"connect to {self.origin} failed: {error}") from None
        sock = connection.transport.get_extra_info("socket") if connection.transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.stats_connects += 1
        return connection

    def request_bytes(self, method: str, target: str, headers: dict[str, str]) -> bytes:
        """A bodyless request for ``target`` (path and query, already encoded) on this origin."""
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def write_now(self, request: bytes, on_response: ResponseCallback) -> bool:
        """Write ``request`` on an idle connection before returning (True); ``on_response`` hears
        the response or a TransportError once, bounded by the request timeout. False: no idle
        connection now (nothing written; the pool refills in the background)."""
        for connection in self._connections:
            if connection.idle:
                self._numbers += 1
                number = self._numbers
                self._in_flight[number] = connection
                connection.write(request, on_response, number)
                self._deadlines.add(number)
                self.stats_requests += 1
                return True
        self._schedule_refill()
        return False

    def _answered(
        self, callback: ResponseCallback, answer: HttpResponse | TransportError, number: int
    ) -> None:
        self._in_flight.pop(number, None)
        try:
            callback(answer)
        finally:
            if any(connection.closed for connection in self._connections):
                self._schedule_refill()

    def _expire(self, number: int) -> None:
        connection = self._in_flight.pop(number, None)
        if connection is None or connection.request_number != number or connection.waiting is None:
            return
        self.stats_timeouts += 1
        # the answer may still come on this connection: it can carry no other request, close it
        connection._fail(RequestTimeoutError(f"no response from {self.origin} in time"))

    def _schedule_refill(self) -> None:
        if self._closing or (self._refill is not None and not self._refill.done()):
            return
        self._refill = asyncio.get_running_loop().create_task(self._fill(), name=f"{self.origin}:refill")

    async def close(self) -> None:
        self._closing = True
        self._deadlines.clear()
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill
        for connection in self._connections:
            connection._fail(ConnectionLostError("pool closed"))
        self._connections = []

    @property
    def idle_connections(self) -> int:
        return sum(1 for connection in self._connections if connection.idle)


__all__ = [
    "Headers",
    "HttpProtocolError",
    "LeanHttpPool",
    "OrderPool",
    "OrderPoolFactory",
    "ParsedResponse",
    "ResponseCallback",
    "ResponseParser",
]
