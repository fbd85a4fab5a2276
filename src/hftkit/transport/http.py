"""One pooled aiohttp session per venue, with failures classified by what they mean for orders.

The distinction that matters to a trading system is whether a request may have reached the
venue: a refused connection did not (safe to retry anything), a timeout or a connection
dropped after sending did (an order may exist: reconcile it by client order id, never resend
blindly).
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hftkit.core.errors import HftkitError

if TYPE_CHECKING:  # imported by the session that uses it: the shared types here need no aiohttp
    import aiohttp


class TransportError(HftkitError, ConnectionError):
    """Base of HTTP transport failures. ``maybe_sent`` says whether the venue may have acted."""

    maybe_sent = True

    def __init__(self, message: str, *, method: str = "", url: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.url = url


class ConnectFailedError(TransportError):
    """The connection could not be opened: the request never left this host."""

    maybe_sent = False


class RequestTimeoutError(TransportError):
    """No complete response in time: the outcome is unknown."""


class ConnectionLostError(TransportError):
    """The connection broke after the request was written: the outcome is unknown."""


@dataclass(frozen=True)
class HttpConfig:
    connection_limit: int = 64
    connection_limit_per_host: int = 32
    keepalive_timeout_s: float = 30.0
    connect_timeout_s: float = 3.0
    request_timeout_s: float = 10.0
    dns_cache_ttl_s: int = 300


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # case-insensitive (aiohttp CIMultiDictProxy)
    body: bytes
    elapsed_ns: int
    url: str  # scheme, host and path only: never the (possibly signed) query

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class HttpTransport(Protocol):
    """How a REST client sends a request: the seam a test or an in-memory venue replaces
    (as httpx does with transports). ``HttpSession`` is the real one. A client takes its
    transport at construction and calls ``request`` directly: no per-request dispatch.

    ``request`` returns the venue's answer whatever its status, or raises a ``TransportError``
    saying whether the request may have reached the venue (``maybe_sent``)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def request(
        self,
        method: str,
        url: str,
        *,
        query: str = "",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> HttpResponse: ...


class HttpSession:
    """A keep-alive connection pool; use ``async with HttpSession() as http``."""

    def __init__(self, config: HttpConfig | None = None, *, headers: Mapping[str, str] | None = None) -> None:
        self.config = config or HttpConfig()
        self._default_headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.failures = 0

    async def __aenter__(self) -> HttpSession:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._session is not None:
            return
        import aiohttp

        config = self.config
        connector = aiohttp.TCPConnector(
            limit=config.connection_limit,
            limit_per_host=config.connection_limit_per_host,
            keepalive_timeout=config.keepalive_timeout_s,
            ttl_dns_cache=config.dns_cache_ttl_s,
            socket_factory=_no_delay_socket,
        )
        tracing = aiohttp.TraceConfig()
        tracing.on_request_headers_sent.append(_headers_sent)
        tracing.on_request_chunk_sent.append(_chunk_sent)
        self._session = aiohttp.ClientSession(
            connector=connector,
            trace_configs=[tracing],
            headers=self._default_headers,
            timeout=aiohttp.ClientTimeout(
                total=config.request_timeout_s, sock_connect=config.connect_timeout_s
            ),
            skip_auto_headers=("User-Agent",),
            auto_decompress=True,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        query: str = "",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> HttpResponse:
        """Send one request. ``query`` is the exact, already-encoded query string (it is signed).

        ``on_sent`` is called with ``time.monotonic_ns()`` when the request's last byte was written
        (after the headers without a body; after the body's last chunk with one).
        """
        session = self._session
        if session is None:
            raise TransportError(
                "HttpSession is not open; use 'async with HttpSession()'", method=method, url=url
            )
        import aiohttp  # loaded by open(): a dictionary lookup here

        full_url = f"{url}?{query}" if query else url
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s is not None else None
        self.requests += 1
        start = time.monotonic_ns()
        try:
            async with session.request(
                method,
                aiohttp.client.URL(full_url, encoded=True),
                data=body,
                headers=headers,
                timeout=timeout,
                trace_request_ctx=None
                if on_sent is None
                else _SentHook(on_sent, body is not None and len(body) > 0),
            ) as response:
                payload = await response.read()
                # ``url`` without the query: a signed query must not outlive the request
                return HttpResponse(
                    response.status, response.headers, payload, time.monotonic_ns() - start, url
                )
        except aiohttp.ClientConnectorError as error:
            self.failures += 1
            raise ConnectFailedError(
                f"{method} {url}: cannot connect: {_describe(error)}", method=method, url=url
            ) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            self.failures += 1
            raise RequestTimeoutError(f"{method} {url}: timed out", method=method, url=url) from None
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # Anything else once the request may have left: a dropped connection, a malformed status
            # line or header, a broken body. The venue may have acted. ``from None``: aiohttp's
            # errors carry the full URL, whose signed query is replayable within recvWindow.
            self.failures += 1
            raise ConnectionLostError(
                f"{method} {url}: connection lost or malformed response: {_describe(error)}",
                method=method,
                url=url,
            ) from None


class _SentHook:
    """What one request wants to hear from aiohttp's trace: when its bytes went out."""

    __slots__ = ("callback", "has_body")

    def __init__(self, callback: Callable[[int], None], has_body: bool) -> None:
        self.callback = callback
        self.has_body = has_body


async def _headers_sent(session: Any, context: Any, params: Any) -> None:
    hook = context.trace_request_ctx
    if isinstance(hook, _SentHook) and not hook.has_body:
        hook.callback(time.monotonic_ns())


async def _chunk_sent(session: Any, context: Any, params: Any) -> None:
    hook = context.trace_request_ctx
    if isinstance(hook, _SentHook) and hook.has_body:
        hook.callback(time.monotonic_ns())


def _describe(error: BaseException) -> str:
    """An error's kind and message without any URL or query (aiohttp puts the full URL in both)."""
    import aiohttp

    if isinstance(error, aiohttp.ClientResponseError):
        return f"{type(error).__name__}: status {error.status}: {_without_urls(str(error.message))}"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"{type(error).__name__}: {_without_urls(str(error.os_error))}"
    return f"{type(error).__name__}: {_without_urls(str(error))}"


def _without_urls(text: str) -> str:
    """Cut every query string out of ``text``: a signed query is a credential for its recvWindow."""
    return _QUERY.sub("?<redacted>", text)[:300]


_QUERY = re.compile(r"\?[^\s'\"]*")


def _no_delay_socket(address_info: tuple) -> socket.socket:
    """Open the client socket with Nagle off: small order requests must not wait for ACKs."""
    family, socket_type, protocol, _, _ = address_info
    sock = socket.socket(family=family, type=socket_type, proto=protocol)
    sock.setblocking(False)
    if socket_type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
