"""Orders over Binance's WebSocket API: one persistent session, answers matched by request id.

The venue's low-latency order path (spot ``/ws-api/v3``, USD-M ``/ws-fapi/v1``): a request is one
frame on a socket that is already open and authenticated, so an order costs a signature and a
synchronous picows write, no HTTP request line, no headers and no connection pool. Each request
is signed with the account's HMAC key (``apiKey``, ``timestamp``, ``recvWindow`` and a signature
over the params sorted by name), which every key type supports; the answer carries the same
order object as the REST endpoint, and an error the same codes, classified by the one rule in
``rest.classify_answer``.

Like the Thalex session, an answer goes to a receiver from inside the frame that carries it: an
``asyncio.Future`` for ``request`` or any object with ``done``/``set_result``/``set_exception``
for ``request_now``. A request still unanswered when the socket drops may have been executed:
its receiver hears ``SessionLostError`` (outcome unknown), never a silent retry.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from hftkit.codec.decode import DECODE_FAILURES
from hftkit.core.errors import HftkitError
from hftkit.transport.deadlines import RequestDeadlines
from hftkit.transport.websocket import (
    ConnectionState,
    DisconnectReason,
    ReconnectingWebSocket,
    WebSocketClosedError,
    WebSocketConfig,
    WebSocketConnect,
    picows_connect,
)
from hftkit.venues.binance import codec
from hftkit.venues.binance.auth import BinanceCredentials, HmacSigner, SignedFrames
from hftkit.venues.binance.build import ClockOffset
from hftkit.venues.binance.endpoints import window_header

log = logging.getLogger(__name__)


class AnswerReceiver(Protocol):
    """Where one request's answer goes (an ``asyncio.Future`` has these three methods)."""

    def done(self) -> bool: ...

    def set_result(self, result: codec.WebSocketApiResponse) -> None: ...

    def set_exception(self, exception: BaseException) -> None: ...


class SessionNotReadyError(HftkitError, ConnectionError):
    """Not connected: nothing was sent (the caller may use REST or wait)."""


class SessionLostError(HftkitError, ConnectionError):
    """The socket dropped or the answer never came: the venue may have executed the request."""


@dataclass(frozen=True)
class WebSocketApiConfig:
    urls: Sequence[str]
    request_timeout_s: float = 5.0
    recv_window_ms: int = 5000
    reconnect_base_delay_s: float = 0.1
    reconnect_max_delay_s: float = 5.0
    ping_idle_s: float = 15.0
    # Binance closes WS API connections after 24 h: reconnect on our schedule before that
    max_connection_age_s: float = 23.5 * 3600

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("WebSocketApiConfig needs at least one URL")
        if self.request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be positive")
        if not 0 < self.recv_window_ms <= 60_000:
            raise ValueError("recv_window_ms must be in (0, 60000]")


@dataclass
class WebSocketApiStats:
    requests: int = 0
    answers: int = 0
    errors: int = 0
    timeouts: int = 0
    lost_in_flight: int = 0
    unmatched: int = 0
    malformed: int = 0
    connects: int = 0
    by_code: dict[int, int] = field(default_factory=dict)


class _Pending:
    __slots__ = ("method", "receiver")

    def __init__(self, method: str, receiver: AnswerReceiver) -> None:
        self.method = method
        self.receiver = receiver


_response_decoder = msgspec.json.Decoder(codec.WebSocketApiResponse)


class WebSocketApiSession:
    """Signed requests over one reconnecting WebSocket API connection."""

    def __init__(
        self,
        credentials: BinanceCredentials,
        config: WebSocketApiConfig,
        *,
        clock_offset: ClockOffset,
        name: str = "binance/ws-api-orders",
        on_ready: Callable[[bool], None] | None = None,
        connect: WebSocketConnect = picows_connect,
    ) -> None:
        self.config = config
        self._connect = connect  # the WebSocket transport, fixed at construction
        self.name = name
        self.stats = WebSocketApiStats()
        self._frames = SignedFrames(
            HmacSigner(credentials.secret), credentials.api_key.reveal(), str(config.recv_window_ms)
        )
        self._clock_offset = clock_offset
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._deadlines = RequestDeadlines(config.request_timeout_s, self._expire)
        self._on_ready = on_ready
        self.socket: ReconnectingWebSocket | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        config = self.config
        self.socket = ReconnectingWebSocket(
            WebSocketConfig(
                urls=tuple(config.urls),
                reconnect_base_delay_s=config.reconnect_base_delay_s,
                reconnect_max_delay_s=config.reconnect_max_delay_s,
                ping_idle_s=config.ping_idle_s,
                max_connection_age_s=config.max_connection_age_s,
            ),
            self.on_message,
            on_state=self._on_state,
            name=self.name,
            connect=self._connect,
        )
        self.socket.start()

    async def wait_connected(self, timeout_s: float) -> None:
        if self.socket is None:
            raise SessionNotReadyError(f"{self.name}: not started")
        await self.socket.wait_connected(timeout_s)

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()
        self._fail_all("session closed")

    @property
    def ready(self) -> bool:
        return self.socket is not None and self.socket.state is ConnectionState.CONNECTED

    def _on_state(self, state: ConnectionState, reason: DisconnectReason | None) -> None:
        if state is ConnectionState.CONNECTED:
            self.stats.connects += 1
        else:
            self._fail_all(f"connection {state.value} ({reason.value if reason else 'no reason'})")
        if self._on_ready is not None:
            self._on_ready(state is ConnectionState.CONNECTED)

    def _fail_all(self, why: str) -> None:
        pending, self._pending = self._pending, {}
        self._deadlines.clear()
        for request_id, entry in pending.items():
            self.stats.lost_in_flight += 1
            if not entry.receiver.done():
                entry.receiver.set_exception(SessionLostError(f"{entry.method} (id {request_id}): {why}"))

    # -- requests ----------------------------------------------------------------------------
    def request_now(
        self,
        method: str,
        params: Mapping[str, str],
        receiver: AnswerReceiver,
        *,
        on_sent: Callable[[int], None] | None = None,
    ) -> int:
        """Sign and write one request before returning; its answer goes to ``receiver``, bounded by
        ``request_timeout_s``. SessionNotReadyError (nothing sent) when not connected."""
        socket = self._connected(method)
        request_id = next(self._ids)
        frame = self._frames.frame(request_id, method, params, str(self._clock_offset.now_ms()))
        return self._write(socket, request_id, method, frame, receiver, on_sent)

    def shaped_request_now(
        self,
        shape: object,
        method: str,
        variables: Mapping[str, str],
        params: Callable[[], Mapping[str, str]],
        receiver: AnswerReceiver,
        *,
        on_sent: Callable[[int], None] | None = None,
    ) -> int:
        """``request_now`` for a request of a known shape (``SignedFrames.shaped_frame``): only its
        ``variables`` are given; ``params`` makes the whole params when the shape is new."""
        socket = self._connected(method)
        request_id = next(self._ids)
        timestamp = str(self._clock_offset.now_ms())
        frame = self._frames.shaped_frame(shape, request_id, method, variables, timestamp, params)
        return self._write(socket, request_id, method, frame, receiver, on_sent)

    def _connected(self, method: str) -> ReconnectingWebSocket:
        socket = self.socket
        if socket is None or socket.state is not ConnectionState.CONNECTED:
            raise SessionNotReadyError(f"{self.name}: not connected; {method} not sent")
        return socket

    def _write(
        self,
        socket: ReconnectingWebSocket,
        request_id: int,
        method: str,
        frame: bytes,
        receiver: AnswerReceiver,
        on_sent: Callable[[int], None] | None,
    ) -> int:
        entry = _Pending(method, receiver)
        self._pending[request_id] = entry
        try:
            socket.send(frame)
        except WebSocketClosedError as error:
            del self._pending[request_id]
            raise SessionNotReadyError(f"{self.name}: {method} not sent: {error}") from error
        if on_sent is not None:
            on_sent(time.monotonic_ns())
        self.stats.requests += 1
        self._deadlines.add(request_id)
        return request_id

    async def request(self, method: str, params: Mapping[str, str]) -> codec.WebSocketApiResponse:
        """``request_now`` and wait for the answer (a status other than 200 is returned, not raised)."""
        future: asyncio.Future[codec.WebSocketApiResponse] = asyncio.get_running_loop().create_future()
        request_id = self.request_now(method, params, future)
        try:
            return await future
        except asyncio.CancelledError:
            self._pending.pop(request_id, None)
            raise

    def _expire(self, request_id: int) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return
        self.stats.timeouts += 1
        if not entry.receiver.done():
            entry.receiver.set_exception(
                SessionLostError(
                    f"{entry.method} (id {request_id}): no answer within {self.config.request_timeout_s:g} s"
                )
            )

    # -- answers -----------------------------------------------------------------------------
    def on_message(self, payload: bytes, receive_ns: int) -> None:
        try:
            answer = _response_decoder.decode(payload)
        except DECODE_FAILURES:
            self.stats.malformed += 1
            return
        request_id = answer.id
        entry = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
        if entry is None:
            self.stats.unmatched += 1
            return
        self.stats.answers += 1
        if answer.error is not None:
            self.stats.errors += 1
            code = answer.error.code
            self.stats.by_code[code] = self.stats.by_code.get(code, 0) + 1
        if not entry.receiver.done():
            entry.receiver.set_result(answer)

    def in_flight(self) -> int:
        return len(self._pending)


def rate_usage(answer: codec.WebSocketApiResponse) -> dict[str, int]:
    """The venue's counts by window, named as the REST headers name them (one limiter for both)."""
    usage: dict[str, int] = {}
    for limit in answer.rate_limits or ():
        header = window_header(limit.rate_limit_type, limit.interval, limit.interval_num)
        if header is not None:
            usage[header] = limit.count
    return usage


__all__ = [
    "AnswerReceiver",
    "SessionLostError",
    "SessionNotReadyError",
    "WebSocketApiConfig",
    "WebSocketApiSession",
    "WebSocketApiStats",
    "rate_usage",
]
