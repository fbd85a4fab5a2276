"""``ScriptedThalex``: an in-memory Thalex JSON-RPC venue whose answers a test scripts, reached
through the WebSocket transport an adapter is built on (``Transports.websocket``), with no sockets.

Not a simulator: it matches nothing. A test decides every answer. Each method has a handler
(sensible defaults for login, cancel-on-disconnect, subscriptions and the reconcile queries);
a handler returns a plain result, ``Reply.error(...)``, ``Reply.after(delay, ...)`` or
``Reply.silent()``, and may push notifications. Every request is recorded with its raw bytes so
a test can assert the exact wire format. Answers are written ``id`` first and compact, as the
venue does, and each request is answered in its own task, so answers can overtake each other.
Login tokens are verified against ``public_keys`` (the venue's check, not a stub).

Use::

    async with ScriptedThalex(public_keys={key_id: public_pem}) as venue:
        config = ThalexConfig(url=venue.url, credentials=...)
        async with ThalexAdapter(config, transports=venue.transports) as adapter:
            ...

Any other URL is refused (the connect raises, as a host where nothing listens). For the whole
venue (matching, accounts, the simulator's fault profiles) use ``SimulatorHarness`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from hftkit.testing.sockets import InMemorySocket
from hftkit.transport.transports import Transports
from hftkit.transport.websocket import FrameReceiver, WebSocketConfig
from hftkit.venues.thalex.auth import TokenError, token_key_id, verify_login_token
from hftkit.venues.thalex.errors import ThalexErrorCode

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    """What the venue answers: a result, an error, after a delay, or nothing at all."""

    result: Any = None
    failure: tuple[int, str] | None = None  # (code, message)
    delay_s: float = 0.0
    silent_reply: bool = False

    @classmethod
    def ok(cls, result: Any) -> Reply:
        return cls(result=result)

    @classmethod
    def error(cls, code: int, message: str = "error") -> Reply:
        return cls(failure=(int(code), message))

    @classmethod
    def after(cls, delay_s: float, reply: Any) -> Reply:
        base = reply if isinstance(reply, Reply) else Reply(result=reply)
        return cls(result=base.result, failure=base.failure, delay_s=delay_s, silent_reply=base.silent_reply)

    @classmethod
    def silent(cls) -> Reply:
        return cls(silent_reply=True)


@dataclass
class ServerRequest:
    """One request as the venue saw it."""

    connection: ServerConnection
    method: str
    params: dict[str, Any]
    id: Any
    raw: bytes
    message: dict[str, Any]


Handler = Callable[[ServerRequest], Any | Awaitable[Any]]


@dataclass
class ServerConnection:
    """One client connection: its wire, login state and subscriptions."""

    index: int
    socket: InMemorySocket
    logged_in: bool = False
    account: str | None = None
    cancel_on_disconnect: int | None = None
    subscriptions: list[str] = field(default_factory=list)

    @property
    def closed(self) -> bool:
        return self.socket.closed

    async def send_raw(self, data: bytes | str) -> None:
        self.socket.send_from_venue(data.encode() if isinstance(data, str) else data)

    async def push(self, channel: str, notification: Any) -> None:
        await self.send_raw(orjson.dumps({"channel_name": channel, "notification": notification}))

    async def close(self) -> None:
        self.socket.close()


class ScriptedThalex:
    """``async with ScriptedThalex(public_keys={kid: pem}) as venue``: the URL is ``venue.url``,
    reachable only through ``venue.transports``."""

    def __init__(
        self,
        *,
        public_keys: dict[str, bytes] | None = None,
        message_rate: float = 50,
        instruments: Iterable[dict[str, Any]] = (),
        require_login: bool = True,
        clock: Callable[[], float] = time.time,
        host: str = "thalex.test",
    ) -> None:
        self.public_keys = dict(public_keys or {})
        self.message_rate = message_rate
        self.instruments = list(instruments)
        self.require_login = require_login
        self.clock = clock
        self.url = f"ws://{host}/ws/api/v2"
        self.transports = Transports(websocket=self.connect)
        self.requests: list[ServerRequest] = []
        self.connections: list[ServerConnection] = []
        self.login_failures: list[str] = []
        self.handlers: dict[str, Handler] = {}
        self._request_event = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._install_defaults()

    # -- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> ScriptedThalex:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection and stop the answers still being prepared."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for connection in self.connections:
            await connection.close()

    @property
    def current(self) -> ServerConnection:
        """The newest connection (raises if none)."""
        open_connections = [connection for connection in self.connections if not connection.closed]
        if not open_connections:
            raise LookupError("no open client connection")
        return open_connections[-1]

    # -- the transport -------------------------------------------------------------------
    async def connect(
        self, url: str, receiver: FrameReceiver, config: WebSocketConfig, name: str
    ) -> InMemorySocket:
        """The ``WebSocketConnect``: a new client connection to this venue."""
        await asyncio.sleep(0)  # a handshake is never synchronous
        if url != self.url:
            raise ConnectionRefusedError(f"nothing listens at {url}")
        connection: ServerConnection | None = None

        def on_text(_socket: InMemorySocket, raw: bytes) -> None:
            assert connection is not None
            self._received(connection, raw)

        socket = InMemorySocket(receiver, on_text)
        connection = ServerConnection(index=len(self.connections), socket=socket)
        self.connections.append(connection)
        return socket

    # -- scripting -----------------------------------------------------------------------
    def on(self, method: str, handler: Handler) -> None:
        """Answer ``method`` with ``handler(request)`` (a result, a Reply, or an awaitable of one)."""
        self.handlers[method] = handler

    def respond(self, method: str, result: Any) -> None:
        self.on(method, lambda _request: Reply.ok(result))

    def fail(self, method: str, code: int, message: str = "error") -> None:
        self.on(method, lambda _request: Reply.error(code, message))

    async def push(self, channel: str, notification: Any) -> None:
        """Push to every open connection subscribed to ``channel``."""
        for connection in self.connections:
            if channel in connection.subscriptions and not connection.closed:
                await connection.push(channel, notification)

    async def send_raw(self, data: bytes | str) -> None:
        await self.current.send_raw(data)

    async def drop(self) -> None:
        """Close every client connection (the client sees the peer go away)."""
        for connection in self.connections:
            if not connection.closed:
                await connection.close()

    def requests_for(self, method: str) -> list[ServerRequest]:
        return [request for request in self.requests if request.method == method]

    async def wait_for(self, method: str, count: int = 1, timeout_s: float = 3.0) -> ServerRequest:
        """Wait until ``method`` was requested ``count`` times; return the last of them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            matching = self.requests_for(method)
            if len(matching) >= count:
                return matching[count - 1]
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{method} requested {len(matching)} times, wanted {count}")
            self._request_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._request_event.wait(), remaining)

    # -- defaults ------------------------------------------------------------------------
    def _install_defaults(self) -> None:
        self.on("public/login", self._login)
        self.on("private/set_cancel_on_disconnect", self._set_cancel_on_disconnect)
        self.on("public/subscribe", self._subscribe)
        self.on("private/subscribe", self._subscribe)
        self.on("unsubscribe", self._unsubscribe)
        self.on("public/instruments", lambda _request: list(self.instruments))
        self.on("private/open_orders", lambda _request: [])
        self.on("private/portfolio", lambda _request: [])
        self.on("private/account_summary", lambda _request: {"cash": []})
        self.on("private/cancel_session", lambda _request: None)
        self.on("private/cancel_all", lambda _request: 0)
        self.on("private/set_mm_protection", lambda _request: None)
        self.on("private/cancel_mass_quote", lambda _request: None)

    def _login(self, request: ServerRequest) -> Reply:
        token = request.params.get("token")
        if not isinstance(token, str):
            return Reply.error(ThalexErrorCode.INVALID_REQUEST, "token missing")
        try:
            key_id = token_key_id(token)
            public_key = self.public_keys.get(key_id)
            if public_key is None:
                raise TokenError(f"unknown key id {key_id!r}")
            verify_login_token(token, public_key, now=self.clock())
        except TokenError as error:
            self.login_failures.append(str(error))
            return Reply.error(ThalexErrorCode.AUTHENTICATION_FAILED, "authentication failed")
        request.connection.logged_in = True
        request.connection.account = request.params.get("account")
        return Reply.ok({"account_number": request.connection.account or "A000000001"})

    def _set_cancel_on_disconnect(self, request: ServerRequest) -> Reply:
        timeout = request.params.get("timeout_secs")
        if not isinstance(timeout, int) or timeout <= 0:
            return Reply.error(ThalexErrorCode.INVALID_REQUEST, "timeout_secs must be a positive integer")
        request.connection.cancel_on_disconnect = timeout
        return Reply.ok({"message_rate": self.message_rate})

    def _subscribe(self, request: ServerRequest) -> list[str]:
        channels = request.params.get("channels", [])
        accepted = [channel for channel in channels if isinstance(channel, str)]
        request.connection.subscriptions.extend(accepted)
        return accepted

    def _unsubscribe(self, request: ServerRequest) -> list[str]:
        channels = request.params.get("channels", [])
        removed = [channel for channel in channels if channel in request.connection.subscriptions]
        for channel in removed:
            request.connection.subscriptions.remove(channel)
        return removed

    # -- serving -------------------------------------------------------------------------
    def _received(self, connection: ServerConnection, raw: bytes) -> None:
        try:
            decoded = orjson.loads(raw)
        except orjson.JSONDecodeError:
            decoded = None
        if not isinstance(decoded, dict):
            connection.socket.send_from_venue(
                orjson.dumps(
                    {
                        "id": None,
                        "error": {"code": int(ThalexErrorCode.INVALID_REQUEST), "message": "bad json"},
                    }
                )
            )
            return
        request = ServerRequest(
            connection=connection,
            method=str(decoded.get("method", "")),
            params=decoded.get("params") or {},
            id=decoded.get("id"),
            raw=raw,
            message=decoded,
        )
        self.requests.append(request)
        self._request_event.set()
        self._spawn(self._answer(request))

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: ServerRequest) -> None:
        handler = self.handlers.get(request.method)
        if handler is None:
            reply = Reply.error(ThalexErrorCode.UNKNOWN_METHOD, f"unknown method {request.method}")
        elif (
            self.require_login and request.method.startswith("private/") and not request.connection.logged_in
        ):
            reply = Reply.error(ThalexErrorCode.NOT_LOGGED_IN, "not logged in")
        else:
            try:
                outcome = handler(request)
                if asyncio.iscoroutine(outcome) or isinstance(outcome, asyncio.Future):
                    outcome = await outcome
            except Exception as error:  # a broken script answers loudly instead of hanging the client
                logger.exception("scripted handler for %s failed", request.method)
                outcome = Reply.error(ThalexErrorCode.INVALID_REQUEST, f"scripted handler failed: {error!r}")
            reply = outcome if isinstance(outcome, Reply) else Reply(result=outcome)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.silent_reply:
            return
        if reply.failure is not None:
            code, message = reply.failure
            body: dict[str, Any] = {"id": request.id, "error": {"code": code, "message": message}}
        else:
            body = {"id": request.id, "result": reply.result}
        await request.connection.send_raw(orjson.dumps(body))


__all__ = ["Handler", "InMemorySocket", "Reply", "ScriptedThalex", "ServerConnection", "ServerRequest"]
