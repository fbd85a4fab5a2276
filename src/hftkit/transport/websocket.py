"""A reconnecting WebSocket client on picows, built for market data and JSON-RPC sessions.

Frames are handed to the caller's ``on_message`` synchronously inside picows's frame callback:
no queue hop and no task switch between the socket and the decoder. Everything around that
(reconnect with backoff and jitter, resubscribe, heartbeat, stall detection, a proactive
reconnect before a venue's connection-age cut) lives in the supervising task.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from hftkit.core.errors import HftkitError

logger = logging.getLogger(__name__)

MessageHandler = Callable[[bytes, int], None]
"""Called with (payload, receive_ns) for each complete TEXT or BINARY message."""


class ConnectionState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    CLOSED = "closed"


class DisconnectReason(enum.Enum):
    PEER_CLOSED = "peer_closed"
    CONNECT_FAILED = "connect_failed"
    STALE = "stale"  # no frame within the stale timeout: a stalled but open socket
    STALLED = "stalled"  # no message within the stream's cadence (pings still answered)
    MAX_AGE = "max_age"  # proactive reconnect before the venue's connection-age cut
    HANDLER_ERROR = "handler_error"
    REQUESTED = "requested"  # reconnect() asked for by the owner, e.g. after a sequence gap
    CLOSED = "closed"


class WebSocketClosedError(HftkitError, ConnectionError):
    """A send on a socket that is not connected; the caller decides whether to wait or drop."""


@dataclass(frozen=True)
class WebSocketConfig:
    """How a feed connects and stays connected."""

    urls: Sequence[str]
    # Reconnect backoff: full jitter over min(max_delay, base * 2**attempt).
    reconnect_base_delay_s: float = 0.1
    reconnect_max_delay_s: float = 10.0
    # No frame at all for this long means the socket stalled: reconnect (0 disables).
    stale_timeout_s: float = 30.0
    # No message (pings and pongs do not count) for this long, once one has arrived on this
    # connection, means the stream stalled behind a live socket: reconnect (0 disables). Set
    # it from the venue's cadence; with ``stall_probe`` given, a silence of ``stall_probe_s``
    # sends a probe whose answer proves a quiet stream alive.
    stall_timeout_s: float = 0.0
    stall_probe_s: float = 0.0
    # Ping when idle, drop the socket when no pong comes back in time.
    ping_idle_s: float = 15.0
    ping_reply_timeout_s: float = 10.0
    # Binance cuts connections at 24 h; reconnect a little before (0 disables).
    max_connection_age_s: float = 23.5 * 3600
    handshake_timeout_s: float = 5.0
    max_frame_size: int = 16 * 1024 * 1024
    extra_headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("WebSocketConfig needs at least one URL")


@dataclass
class WebSocketStats:
    """Counters a dashboard or a test compares with what a simulator injected."""

    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    messages: int = 0
    bytes_received: int = 0
    handler_errors: int = 0
    stale_reconnects: int = 0
    stall_reconnects: int = 0
    stall_probes: int = 0
    age_reconnects: int = 0
    requested_reconnects: int = 0
    messages_sent: int = 0
    last_message_ns: int = 0
    disconnect_reasons: dict[str, int] = field(default_factory=dict)


class FrameReceiver(Protocol):
    """What a connection tells its owner: whole messages, signs of life, and the loss."""

    def receive(self, payload: bytes) -> None:
        """One complete TEXT or BINARY message, called inside the transport's frame callback."""

    def touch(self) -> None:
        """A ping or pong arrived: the peer is alive."""

    def transport_lost(self) -> None:
        """The connection is gone (closed by either side); called once."""


class WebSocketConnection(Protocol):
    """An open WebSocket as ``ReconnectingWebSocket`` drives it (picows's ``WSTransport`` is one)."""

    def send(self, msg_type: WSMsgType, message: bytes, /) -> None:
        """Write one frame now."""

    def send_close(self) -> None:
        """Start the closing handshake."""

    def disconnect(self) -> None:
        """Drop the connection; the receiver hears ``transport_lost`` afterwards."""


class WebSocketConnect(Protocol):
    """Opens one connection to ``url`` that reports to ``receiver``: the seam a test or an
    in-memory venue replaces (as httpx does with transports). Raise on failure: every connect
    failure is retried with backoff."""

    async def __call__(
        self, url: str, receiver: FrameReceiver, config: WebSocketConfig, name: str
    ) -> WebSocketConnection: ...


async def picows_connect(
    url: str, receiver: FrameReceiver, config: WebSocketConfig, name: str
) -> WebSocketConnection:
    """The real connection: picows, frames handed to ``receiver`` inside picows's callback."""
    transport, _listener = await ws_connect(
        lambda: _Listener(receiver),
        url,
        websocket_handshake_timeout=config.handshake_timeout_s,
        enable_auto_ping=config.ping_idle_s > 0,
        auto_ping_idle_timeout=config.ping_idle_s or 10,
        auto_ping_reply_timeout=config.ping_reply_timeout_s,
        enable_auto_pong=True,
        max_frame_size=config.max_frame_size,
        extra_headers=config.extra_headers or None,
        logger_name=name,
    )
    return transport


class _Listener(WSListener):
    """picows callbacks: assemble fragments, hand whole messages to the owner."""

    __slots__ = ("_fragments", "_owner")

    def __init__(self, owner: FrameReceiver) -> None:
        self._owner = owner
        self._fragments: bytearray | None = None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type is WSMsgType.TEXT or msg_type is WSMsgType.BINARY:
            if frame.fin:
                self._owner.receive(frame.get_payload_as_bytes())
            else:
                self._fragments = bytearray(frame.get_payload_as_memoryview())
        elif msg_type is WSMsgType.CONTINUATION:
            if self._fragments is None:
                return  # a continuation without a start: protocol noise, ignore it
            self._fragments += frame.get_payload_as_memoryview()
            if frame.fin:
                payload = bytes(self._fragments)
                self._fragments = None
                self._owner.receive(payload)
        elif msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        else:
            self._owner.touch()  # pings and pongs prove the peer is alive

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._owner.transport_lost()


class ReconnectingWebSocket:
    """A WebSocket that stays connected until closed.

    ``on_connected`` runs after every (re)connect, before any message is delivered to a
    consumer that cares about ordering: it sends subscriptions and may trigger a resync.
    Use as ``async with ReconnectingWebSocket(config, on_message, on_connected=...) as ws``.
    ``connect`` opens each connection (default: picows); it is fixed at construction.
    """

    def __init__(
        self,
        config: WebSocketConfig,
        on_message: MessageHandler,
        *,
        on_connected: Callable[[ReconnectingWebSocket], Awaitable[None] | None] | None = None,
        on_state: Callable[[ConnectionState, DisconnectReason | None], None] | None = None,
        random_source: random.Random | None = None,
        name: str = "websocket",
        stall_probe: Callable[[], bytes | str] | None = None,
        connect: WebSocketConnect = picows_connect,
    ) -> None:
        self.config = config
        self._open_connection = connect
        self.name = name
        self.stats = WebSocketStats()
        self.state = ConnectionState.DISCONNECTED
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_state = on_state
        self._random = random_source or random.Random()
        self._transport: WebSocketConnection | None = None
        self._lost: asyncio.Event | None = None
        self._connected_event = asyncio.Event()
        self._pending_reason: DisconnectReason | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._url_index = 0
        self._connected_at_ns = 0
        self._stall_probe = stall_probe
        self._last_data_ns = 0  # the last message on this connection (the connect time until one)
        self._last_probe_ns = 0

    # -- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> ReconnectingWebSocket:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run(), name=f"{self.name}-runner")

    async def close(self) -> None:
        """Close the socket and stop reconnecting."""
        self._closing = True
        transport = self._transport
        if transport is not None:
            transport.send_close()
            transport.disconnect()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        self._set_state(ConnectionState.CLOSED, DisconnectReason.CLOSED)

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected_event.wait(), timeout)

    @property
    def url(self) -> str:
        return self.config.urls[self._url_index % len(self.config.urls)]

    # -- sending -------------------------------------------------------------------------
    def send(self, payload: bytes | str) -> None:
        """Send one TEXT message now; raises WebSocketClosedError when not connected."""
        transport = self._transport
        if transport is None or self.state is not ConnectionState.CONNECTED:
            raise WebSocketClosedError(f"{self.name}: not connected")
        if isinstance(payload, str):
            payload = payload.encode()
        transport.send(WSMsgType.TEXT, payload)
        self.stats.messages_sent += 1

    def reconnect(self) -> None:
        """Drop the current connection and connect again (e.g. after a sequence gap)."""
        if self._transport is not None:
            self.stats.requested_reconnects += 1
            self._drop(DisconnectReason.REQUESTED)

    # -- the connection's callbacks (FrameReceiver) -------------------------------------
    def receive(self, payload: bytes) -> None:
        receive_ns = time.monotonic_ns()
        stats = self.stats
        stats.messages += 1
        stats.bytes_received += len(payload)
        stats.last_message_ns = receive_ns
        self._last_data_ns = receive_ns
        try:
            self._on_message(payload, receive_ns)
        except Exception:
            stats.handler_errors += 1
            logger.exception("%s: message handler failed; the feed continues", self.name)

    def touch(self) -> None:
        self.stats.last_message_ns = time.monotonic_ns()

    def transport_lost(self) -> None:
        # Report the loss now, even while on_connected is still running (a login or a
        # resubscribe in flight must fail at once, not at its timeout).
        if not self._closing:
            self._set_state(
                ConnectionState.DISCONNECTED, self._pending_reason or DisconnectReason.PEER_CLOSED
            )
        if self._lost is not None:
            self._lost.set()

    # -- supervision ---------------------------------------------------------------------
    def _drop(self, reason: DisconnectReason) -> None:
        transport = self._transport
        if transport is None:
            return
        self._pending_reason = reason
        transport.disconnect()

    def _set_state(self, state: ConnectionState, reason: DisconnectReason | None = None) -> None:
        if state is self.state:
            return
        self.state = state
        if state is ConnectionState.CONNECTED:
            self._connected_event.set()
        else:
            self._connected_event.clear()
        if self._on_state is not None:
            try:
                self._on_state(state, reason)
            except Exception:
                logger.exception("%s: state callback failed", self.name)

    def _backoff_delay(self, attempt: int) -> float:
        bound = min(self.config.reconnect_max_delay_s, self.config.reconnect_base_delay_s * 2**attempt)
        return self._random.uniform(0, bound)

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            self._set_state(ConnectionState.CONNECTING)
            url = self.url
            try:
                await self._connect(url)
            except Exception as error:  # every connect failure is retried, none is fatal
                if self._closing:
                    return
                self.stats.connect_failures += 1
                self._url_index += 1  # fail over to the next URL
                delay = self._backoff_delay(attempt)
                attempt += 1
                logger.warning(
                    "%s: connect to %s failed (%s); retrying in %.3fs", self.name, url, error, delay
                )
                self._set_state(ConnectionState.DISCONNECTED, DisconnectReason.CONNECT_FAILED)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            reason = await self._supervise()
            self.stats.disconnects += 1
            self.stats.disconnect_reasons[reason.value] = (
                self.stats.disconnect_reasons.get(reason.value, 0) + 1
            )
            self._transport = None
            if self._closing:
                return
            self._set_state(ConnectionState.DISCONNECTED, reason)
            if reason is DisconnectReason.PEER_CLOSED:
                delay = self._backoff_delay(0)
                logger.warning("%s: connection lost; reconnecting in %.3fs", self.name, delay)
                await asyncio.sleep(delay)

    async def _connect(self, url: str) -> None:
        config = self.config
        self._lost = asyncio.Event()
        self._pending_reason = None
        transport = await self._open_connection(url, self, config, self.name)
        self._transport = transport
        self._connected_at_ns = time.monotonic_ns()
        # armed from the connect itself: a socket that never delivers a first message is as
        # stalled as one that stops (a quiet but live stream answers the probe)
        self._last_data_ns = self._connected_at_ns
        self._last_probe_ns = 0
        self.stats.last_message_ns = self._connected_at_ns
        self.stats.connects += 1
        self._set_state(ConnectionState.CONNECTED)
        if self._on_connected is not None:
            try:
                result = self._on_connected(self)
                if isinstance(result, Awaitable):
                    await result
            except BaseException:
                transport.disconnect()
                self._transport = None
                raise

    async def _supervise(self) -> DisconnectReason:
        """Wait for loss, a stall or old age; return why the connection ended."""
        config = self.config
        lost = self._lost
        assert lost is not None
        check_every = _check_interval(config)
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(lost.wait(), check_every)
            if lost.is_set():
                return self._pending_reason or (
                    DisconnectReason.CLOSED if self._closing else DisconnectReason.PEER_CLOSED
                )
            now = time.monotonic_ns()
            if config.stale_timeout_s and now - self.stats.last_message_ns > config.stale_timeout_s * 1e9:
                self.stats.stale_reconnects += 1
                logger.warning("%s: no data for %.1fs; reconnecting", self.name, config.stale_timeout_s)
                self._drop(DisconnectReason.STALE)
            elif config.stall_timeout_s and self._last_data_ns and self._stalled(now):
                self.stats.stall_reconnects += 1
                logger.warning("%s: stream silent for %.2fs; reconnecting", self.name, config.stall_timeout_s)
                self._drop(DisconnectReason.STALLED)
            elif (
                config.max_connection_age_s
                and now - self._connected_at_ns > config.max_connection_age_s * 1e9
            ):
                self.stats.age_reconnects += 1
                logger.info("%s: connection reached its maximum age; reconnecting", self.name)
                self._drop(DisconnectReason.MAX_AGE)

    def _stalled(self, now: int) -> bool:
        """True when the stream has been silent past the stall timeout; probes a quiet one first."""
        config = self.config
        silent_ns = now - self._last_data_ns
        if silent_ns > config.stall_timeout_s * 1e9:
            return True
        probe = self._stall_probe
        if (
            probe is not None
            and config.stall_probe_s
            and silent_ns > config.stall_probe_s * 1e9
            and now - self._last_probe_ns > config.stall_probe_s * 1e9
        ):
            self._last_probe_ns = now
            with contextlib.suppress(WebSocketClosedError):
                self.send(probe())
                self.stats.stall_probes += 1
        return False


def _check_interval(config: WebSocketConfig) -> float:
    bounds = [
        bound
        for bound in (config.stale_timeout_s, config.max_connection_age_s, config.stall_timeout_s)
        if bound
    ]
    return max(0.005, min([*bounds, 1.0]) / 4)
