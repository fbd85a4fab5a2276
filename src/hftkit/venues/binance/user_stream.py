"""Binance user-data streams: spot over the WebSocket API, USD-M over a listenKey.

Spot (the REST listenKey was retired on 2026-02-20): connect to ``/ws-api/v3`` and send
``userDataStream.subscribe.signature`` with ``apiKey``, ``recvWindow``, ``timestamp`` and an
HMAC over the params sorted by name; events then arrive as ``{"subscriptionId", "event"}``.
Every reconnect subscribes again (``on_connected``), and an ``eventStreamTerminated`` push
forces a fresh connection.

USD-M: ``POST /fapi/v1/listenKey``, connect to ``/ws/<key>`` (or ``/private/ws?listenKey=<key>``),
keep the key alive with ``PUT`` every 30 minutes; on ``listenKeyExpired`` or a keepalive
answered ``-1125`` a new key is created and the socket moves to it.

Either way ``on_ready`` fires after every (re)connection that can deliver events and
``on_lost`` when it drops: events may have been missed in between, so the owner reconciles
orders and balances over REST before trading again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec
import orjson

from hftkit.codec.decode import DECODE_FAILURES
from hftkit.codec.errors import CodecError
from hftkit.core.errors import HftkitError
from hftkit.transport.http import TransportError
from hftkit.transport.websocket import (
    ConnectionState,
    DisconnectReason,
    ReconnectingWebSocket,
    WebSocketConfig,
    WebSocketConnect,
    picows_connect,
)
from hftkit.venues.base import VenueError
from hftkit.venues.binance import codec
from hftkit.venues.binance.auth import BinanceCredentials, HmacSigner
from hftkit.venues.binance.endpoints import SPOT_WEBSOCKET_API_URL, USDM_STREAM_URL
from hftkit.venues.binance.rest import BinanceRestClient, ListenKeyInvalidError
from hftkit.venues.binance.user_data import UserDataParser, UserEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserStreamConfig:
    websocket_api_urls: Sequence[str] = ()  # spot: ws(s)://host/ws-api/v3; empty: production
    stream_base_urls: Sequence[str] = ()  # USD-M: ws(s)://host without a path; empty: production
    listen_key_path: str = "ws"  # "ws": /ws/<key>; "private": /private/ws?listenKey=<key>
    keepalive_interval_s: float = 1800.0
    subscribe_timeout_s: float = 5.0
    recv_window_ms: int = 5000
    reconnect_base_delay_s: float = 0.1
    reconnect_max_delay_s: float = 5.0
    ping_idle_s: float = 15.0

    def __post_init__(self) -> None:
        if self.listen_key_path not in ("ws", "private"):
            raise ValueError("listen_key_path must be 'ws' or 'private'")
        if self.keepalive_interval_s <= 0:
            raise ValueError("keepalive_interval_s must be positive")


@dataclass
class UserStreamStats:
    frames: int = 0
    events: int = 0
    malformed: dict[str, int] = dataclasses.field(default_factory=dict)
    subscribes: int = 0
    subscribe_failures: int = 0
    listen_keys_created: int = 0
    keepalives: int = 0
    keepalive_failures: int = 0
    expirations: int = 0


class UserStreamError(VenueError):
    """The user stream could not be (re)established; the transport retries with backoff."""


_ApiResponse = codec.WebSocketApiResponse
_response_decoder = msgspec.json.Decoder(_ApiResponse)


class _Subscribed(msgspec.Struct, frozen=True, rename="camel"):
    subscription_id: int = 0


EventsCallback = Callable[[list[UserEvent]], None]


class _UserStreamBase:
    """Shared parts: parse and count events, report readiness and loss."""

    def __init__(
        self,
        rest: BinanceRestClient,
        parser: UserDataParser,
        on_events: EventsCallback,
        on_ready: Callable[[], None],
        on_lost: Callable[[str], None],
        config: UserStreamConfig,
        random_source: random.Random | None,
        connect: WebSocketConnect,
    ) -> None:
        self.config = config
        self._connect = connect  # the WebSocket transport, fixed at construction
        self.stats = UserStreamStats()
        self._rest = rest
        self._parser = parser
        self._on_events = on_events
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._random = random_source or random.Random()
        self.socket: ReconnectingWebSocket | None = None
        self.ready = False

    def _websocket_config(self, urls: list[str]) -> WebSocketConfig:
        config = self.config
        return WebSocketConfig(
            urls=urls,
            reconnect_base_delay_s=config.reconnect_base_delay_s,
            reconnect_max_delay_s=config.reconnect_max_delay_s,
            stale_timeout_s=0,  # an account can be silent for hours; liveness comes from pings
            ping_idle_s=config.ping_idle_s,
        )

    def _count(self, kind: str) -> None:
        self.stats.malformed[kind] = self.stats.malformed.get(kind, 0) + 1

    def _deliver(self, payload: bytes, receive_ns: int) -> None:
        try:
            events = self._parser.parse(payload, receive_ns)
        except CodecError as error:  # the parser's classified, already counted failure
            self._count(error.kind.value)
            return
        except (HftkitError, ValueError, KeyError):
            self._count("invalid_value")
            return
        if events:
            self.stats.events += len(events)
            self._on_events(events)

    def _set_ready(self) -> None:
        self.ready = True
        self._on_ready()

    def _on_state(self, state: ConnectionState, reason: DisconnectReason | None) -> None:
        if state is ConnectionState.DISCONNECTED and self.ready:
            self.ready = False
            self._on_lost(reason.value if reason is not None else "")

    async def close(self) -> None:
        self.ready = False
        if self.socket is not None:
            await self.socket.close()


class SpotUserStream(_UserStreamBase):
    """Spot account events over the WebSocket API subscription."""

    def __init__(
        self,
        credentials: BinanceCredentials,
        rest: BinanceRestClient,
        parser: UserDataParser,
        on_events: EventsCallback,
        on_ready: Callable[[], None],
        on_lost: Callable[[str], None],
        config: UserStreamConfig | None = None,
        *,
        random_source: random.Random | None = None,
        connect: WebSocketConnect = picows_connect,
    ) -> None:
        super().__init__(
            rest, parser, on_events, on_ready, on_lost, config or UserStreamConfig(), random_source, connect
        )
        self._api_key = credentials.api_key
        self._signer = HmacSigner(credentials.secret)
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[_ApiResponse]] = {}
        self.subscription_id: int | None = None

    async def start(self) -> None:
        urls = list(self.config.websocket_api_urls) or [SPOT_WEBSOCKET_API_URL]
        self.socket = ReconnectingWebSocket(
            self._websocket_config(urls),
            self._on_message,
            on_connected=self._subscribe,
            on_state=self._on_state,
            random_source=self._random,
            name="binance/ws-api",
            connect=self._connect,
        )
        self.socket.start()

    def subscribe_request(self, request_id: str) -> bytes:
        """The signed ``userDataStream.subscribe.signature`` request (params sorted for the HMAC)."""
        params: dict[str, object] = {
            "apiKey": self._api_key.reveal(),
            "recvWindow": self.config.recv_window_ms,
            "timestamp": self._rest.clock_offset.now_ms(),
        }
        params["signature"] = self._signer.sign_websocket_params(params)
        return orjson.dumps(
            {"id": request_id, "method": "userDataStream.subscribe.signature", "params": params}
        )

    async def _subscribe(self, socket: ReconnectingWebSocket) -> None:
        request_id = str(next(self._ids))
        future: asyncio.Future[_ApiResponse] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self.stats.subscribes += 1
        try:
            socket.send(self.subscribe_request(request_id))
            reply = await asyncio.wait_for(future, self.config.subscribe_timeout_s)
        except TimeoutError:
            self.stats.subscribe_failures += 1
            raise UserStreamError("userDataStream.subscribe.signature: no answer") from None
        finally:
            self._pending.pop(request_id, None)
        if reply.status != 200 or not reply.result:
            self.stats.subscribe_failures += 1
            code = reply.error.code if reply.error is not None else None
            message = reply.error.msg if reply.error is not None else f"status {reply.status}"
            if code == -1021:
                with contextlib.suppress(VenueError, TransportError):
                    await self._rest.sync_time()
            raise UserStreamError(f"userDataStream.subscribe.signature refused: {code} {message}", code=code)
        try:
            self.subscription_id = msgspec.json.decode(reply.result, type=_Subscribed).subscription_id
        except DECODE_FAILURES as error:
            self.stats.subscribe_failures += 1
            raise UserStreamError(f"userDataStream.subscribe.signature: unreadable result: {error}") from None
        self._set_ready()

    def _on_message(self, payload: bytes, receive_ns: int) -> None:
        self.stats.frames += 1
        if payload.startswith(b'{"id"') or b'"status":' in payload[:48]:
            try:
                reply = _response_decoder.decode(payload)
            except DECODE_FAILURES:  # RecursionError too: nesting a venue never sends
                self._count("decode")
                return
            future = self._pending.get(str(reply.id))
            if future is not None and not future.done():
                future.set_result(reply)
            else:
                self._count("unexpected_response")
            return
        if b'"eventStreamTerminated"' in payload:
            # the server ended the subscription: a new connection subscribes afresh
            if self.socket is not None:
                self.socket.reconnect()
            return
        self._deliver(payload, receive_ns)


class FuturesUserStream(_UserStreamBase):
    """USD-M account events over a listenKey stream with keepalive and re-creation."""

    def __init__(
        self,
        rest: BinanceRestClient,
        parser: UserDataParser,
        on_events: EventsCallback,
        on_ready: Callable[[], None],
        on_lost: Callable[[str], None],
        config: UserStreamConfig | None = None,
        *,
        random_source: random.Random | None = None,
        connect: WebSocketConnect = picows_connect,
    ) -> None:
        super().__init__(
            rest, parser, on_events, on_ready, on_lost, config or UserStreamConfig(), random_source, connect
        )
        self.listen_key: str | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._renew_task: asyncio.Task[None] | None = None
        self._renew_lock = asyncio.Lock()

    def urls(self, listen_key: str) -> list[str]:
        bases = [base.rstrip("/") for base in self.config.stream_base_urls] or [USDM_STREAM_URL]
        if self.config.listen_key_path == "private":
            return [f"{base}/private/ws?listenKey={listen_key}" for base in bases]
        return [f"{base}/ws/{listen_key}" for base in bases]

    async def start(self) -> None:
        self.listen_key = await self._rest.create_listen_key()
        self.stats.listen_keys_created += 1
        self.socket = ReconnectingWebSocket(
            self._websocket_config(self.urls(self.listen_key)),
            self._on_message,
            on_connected=lambda socket: self._set_ready(),
            on_state=self._on_futures_state,
            random_source=self._random,
            name="binance/listenKey",
            connect=self._connect,
        )
        self.socket.start()
        self._keepalive_task = asyncio.get_running_loop().create_task(
            self._keepalive_loop(), name="binance:listenKey-keepalive"
        )

    async def close(self) -> None:
        for task in (self._keepalive_task, self._renew_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await super().close()

    async def renew(self, *, force: bool) -> None:
        """Create a listenKey (Binance returns the live one if it still exists) and move to it."""
        async with self._renew_lock:
            key = await self._rest.create_listen_key()
            self.stats.listen_keys_created += 1
            if key == self.listen_key and not force:
                return
            self.listen_key = key
            if self.socket is not None:
                self.socket.config = dataclasses.replace(self.socket.config, urls=self.urls(key))
                self.socket.reconnect()

    def _schedule_renew(self, *, force: bool) -> None:
        if self._renew_task is not None and not self._renew_task.done():
            return
        self._renew_task = asyncio.get_running_loop().create_task(
            self._renew_until_done(force), name="binance:listenKey-renew"
        )

    async def _renew_until_done(self, force: bool) -> None:
        attempt = 0
        while True:
            try:
                await self.renew(force=force)
                return
            except (VenueError, TransportError) as error:
                log.warning("listenKey re-creation failed: %s", error)
                delay = min(
                    self.config.reconnect_max_delay_s, self.config.reconnect_base_delay_s * 2**attempt
                )
                attempt += 1
                await asyncio.sleep(self._random.uniform(0, delay))

    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.keepalive_interval_s)
            await self.keepalive()

    async def keepalive(self) -> None:
        """One keepalive; a key the venue no longer knows is replaced."""
        try:
            await self._rest.keepalive_listen_key()
            self.stats.keepalives += 1
        except ListenKeyInvalidError:
            self.stats.keepalive_failures += 1
            self.stats.expirations += 1
            await self._renew_until_done(force=True)
        except (VenueError, TransportError) as error:
            self.stats.keepalive_failures += 1
            log.warning("listenKey keepalive failed: %s", error)

    def _on_futures_state(self, state: ConnectionState, reason: DisconnectReason | None) -> None:
        self._on_state(state, reason)
        # A failed handshake may mean the key is gone: a keepalive tells, and renews it.
        if (
            state is ConnectionState.DISCONNECTED
            and reason is DisconnectReason.CONNECT_FAILED
            and (self._renew_task is None or self._renew_task.done())
        ):
            self._renew_task = asyncio.get_running_loop().create_task(self.keepalive())

    def _on_message(self, payload: bytes, receive_ns: int) -> None:
        self.stats.frames += 1
        if b'"listenKeyExpired"' in payload[:64]:
            self.stats.expirations += 1
            self._schedule_renew(force=True)
            return
        self._deliver(payload, receive_ns)
