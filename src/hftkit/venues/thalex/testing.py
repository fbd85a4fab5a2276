"""A scripted Thalex JSON-RPC-over-WebSocket server for tests (aiohttp, 127.0.0.1).

Not a simulator: it matches nothing. A test decides every answer. Each method has a handler
(sensible defaults for login, cancel-on-disconnect, subscriptions and the reconcile queries);
a handler returns a plain result, ``Reply.error(...)``, ``Reply.after(delay, ...)`` or
``Reply.silent()``, and may push notifications. Every request is recorded with its raw bytes so
a test can assert the exact wire format. Answers are written ``id`` first and compact, as the
venue does, and each request is handled in its own task, so answers can overtake each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from hftkit.venues.thalex.auth import TokenError, token_key_id, verify_login_token

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    """What the server answers: a result, an error, after a delay, or nothing at all."""

    result: Any = None
    failure: tuple[int, str] | None = None  # (code, message)
    delay_s: float = 0.0
    silent_reply: bool = False

    @classmethod
    def ok(cls, result: Any) -> Reply:
        return cls(result=result)

    @classmethod
    def error(cls, code: int, message: str = "error") -> Reply:
        return cls(failure=(code, message))

    @classmethod
    def after(cls, delay_s: float, reply: Any) -> Reply:
        base = reply if isinstance(reply, Reply) else Reply(result=reply)
        return cls(result=base.result, failure=base.failure, delay_s=delay_s, silent_reply=base.silent_reply)

    @classmethod
    def silent(cls) -> Reply:
        return cls(silent_reply=True)


@dataclass
class ServerRequest:
    """One request as the server saw it."""

    connection: ServerConnection
    method: str
    params: dict[str, Any]
    id: Any
    raw: bytes
    message: dict[str, Any]


Handler = Callable[[ServerRequest], Any | Awaitable[Any]]


@dataclass
class ServerConnection:
    """One client connection: its socket, login state and subscriptions."""

    index: int
    socket: web.WebSocketResponse
    logged_in: bool = False
    account: str | None = None
    cancel_on_disconnect: int | None = None
    subscriptions: list[str] = field(default_factory=list)

    async def send_raw(self, data: bytes | str) -> None:
        if self.socket.closed:
            return
        await self.socket.send_str(data.decode() if isinstance(data, bytes) else data)

    async def push(self, channel: str, notification: Any) -> None:
        await self.send_raw(orjson.dumps({"channel_name": channel, "notification": notification}))

    async def close(self) -> None:
        await self.socket.close()


class ScriptedThalexServer:
    """``async with ScriptedThalexServer(public_keys={kid: pem}) as server: server.url``."""

    def __init__(
        self,
        *,
        public_keys: dict[str, bytes] | None = None,
        message_rate: float = 50,
        instruments: Iterable[dict[str, Any]] = (),
        require_login: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.public_keys = dict(public_keys or {})
        self.message_rate = message_rate
        self.instruments = list(instruments)
        self.require_login = require_login
        self.clock = clock
        self.requests: list[ServerRequest] = []
        self.connections: list[ServerConnection] = []
        self.login_failures: list[str] = []
        self.handlers: dict[str, Handler] = {}
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._request_event = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._install_defaults()

    # -- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> ScriptedThalexServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/ws/api/v2", self._serve)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.url

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for connection in self.connections:
            with contextlib.suppress(Exception):
                await connection.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/ws/api/v2"

    @property
    def current(self) -> ServerConnection:
        """The newest connection (raises if none)."""
        open_connections = [c for c in self.connections if not c.socket.closed]
        if not open_connections:
            raise LookupError("no open client connection")
        return open_connections[-1]

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
            if channel in connection.subscriptions and not connection.socket.closed:
                await connection.push(channel, notification)

    async def send_raw(self, data: bytes | str) -> None:
        await self.current.send_raw(data)

    async def drop(self) -> None:
        """Close every client connection (the client sees the peer go away)."""
        for connection in self.connections:
            if not connection.socket.closed:
                await connection.close()

    def requests_for(self, method: str) -> list[ServerRequest]:
        return [request for request in self.requests if request.method == method]

    async def wait_for(self, method: str, count: int = 1, timeout_s: float = 3.0) -> ServerRequest:
        """Wait until ``method`` was requested ``count`` times; return the last of them."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            matching = self.requests_for(method)
            if len(matching) >= count:
                return matching[count - 1]
            remaining = deadline - asyncio.get_running_loop().time()
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
            return Reply.error(6, "token missing")
        try:
            key_id = token_key_id(token)
            public_key = self.public_keys.get(key_id)
            if public_key is None:
                raise TokenError(f"unknown key id {key_id!r}")
            verify_login_token(token, public_key, now=self.clock())
        except TokenError as error:
            self.login_failures.append(str(error))
            return Reply.error(19, "authentication failed")
        request.connection.logged_in = True
        request.connection.account = request.params.get("account")
        return Reply.ok({"account_number": request.connection.account or "A000000001"})

    def _set_cancel_on_disconnect(self, request: ServerRequest) -> Reply:
        timeout = request.params.get("timeout_secs")
        if not isinstance(timeout, int) or timeout <= 0:
            return Reply.error(6, "timeout_secs must be a positive integer")
        request.connection.cancel_on_disconnect = timeout
        return Reply.ok({"message_rate": self.message_rate})

    def _subscribe(self, request: ServerRequest) -> Any:
        channels = request.params.get("channels", [])
        accepted = [channel for channel in channels if isinstance(channel, str)]
        request.connection.subscriptions.extend(accepted)
        return accepted

    def _unsubscribe(self, request: ServerRequest) -> Any:
        channels = request.params.get("channels", [])
        removed = [channel for channel in channels if channel in request.connection.subscriptions]
        for channel in removed:
            request.connection.subscriptions.remove(channel)
        return removed

    # -- serving -------------------------------------------------------------------------
    async def _serve(self, http_request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(http_request)
        connection = ServerConnection(index=len(self.connections), socket=socket)
        self.connections.append(connection)
        async for message in socket:
            if message.type is not WSMsgType.TEXT:
                continue
            raw = message.data.encode()
            try:
                decoded = orjson.loads(raw)
            except orjson.JSONDecodeError:
                await connection.send_raw(
                    orjson.dumps({"id": None, "error": {"code": 6, "message": "bad json"}})
                )
                continue
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
            task = asyncio.get_running_loop().create_task(self._answer(request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return socket

    async def _answer(self, request: ServerRequest) -> None:
        handler = self.handlers.get(request.method)
        if handler is None:
            reply = Reply.error(31, f"unknown method {request.method}")
        elif (
            self.require_login and request.method.startswith("private/") and not request.connection.logged_in
        ):
            reply = Reply.error(7, "not logged in")
        else:
            try:
                outcome = handler(request)
                if asyncio.iscoroutine(outcome) or isinstance(outcome, asyncio.Future):
                    outcome = await outcome
            except Exception as error:  # a broken script answers loudly instead of hanging the client
                logger.exception("scripted handler for %s failed", request.method)
                outcome = Reply.error(6, f"scripted handler failed: {error!r}")
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
        with contextlib.suppress(ConnectionError, RuntimeError):
            await request.connection.send_raw(orjson.dumps(body))
