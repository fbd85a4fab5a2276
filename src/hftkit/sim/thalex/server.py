"""A Thalex-compatible exchange on 127.0.0.1: JSON-RPC over WebSocket at ``/ws/api/v2``.

It speaks the venue's protocol closely enough that the official ``thalex`` PyPI client trades
against it unmodified: RS512 JWT login, cancel-on-disconnect sessions, the trading methods,
mass quotes with market-maker protection, market-data RPC and the public and private
subscription channels, with the venue's error object and codes and a per-session message
rate. Matching, accounts and the public market come from a shared ``SimVenue``; the server
only turns venue events into Thalex frames and Thalex requests into venue calls.

The server is four parts around one ``session.Session`` per connection: this module (sockets,
sessions, each connection's writer and watchdog, request faults and throttle), ``rpc`` (method
dispatch, login, orders, queries), ``channels`` (subscriptions, venue events, rendering) and
``quotes`` (mass quotes and market-maker protection).

Frames are written ``{"id":`` / ``{"channel_name":`` first and compact, as the venue does.
Each connection has one writer task: responses leave in request order, then the
notifications that became due, so one venue call (an insert that trades, say) reaches a
subscriber as one ``session.orders`` batch right after the insert's own answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from hftkit.core.types import Instrument
from hftkit.sim.engine.faults import FaultInjector
from hftkit.sim.engine.venue import SimVenue
from hftkit.sim.thalex.accounts import ThalexAccountViews
from hftkit.sim.thalex.channels import Channels
from hftkit.sim.thalex.market import ThalexMarketViews
from hftkit.sim.thalex.rpc import ORDER_METHODS, ThalexRpc
from hftkit.sim.thalex.session import Session, ThalexApiKey
from hftkit.sim.thalex.wire import RpcError, default_instruments, thalex_perpetual
from hftkit.sim.websocket import SimWebSocketResponse, abort, open_connections, send_or_abort
from hftkit.venues.thalex.errors import ThalexErrorCode

logger = logging.getLogger(__name__)

PATH = "/ws/api/v2"
_MAX_PENDING_RESPONSES = 10_000  # answers queued for a client that stopped reading: then it is dropped
_STALL_POLL_S = 0.05  # how often a stalled stream checks whether the stall is over


class ThalexSimServer:
    """The Thalex-compatible server of one ``SimVenue`` (instruments, accounts, matching).

    ``keys`` are the API keys that may log in (each with its accounts); ``faults`` is asked
    about every request and stream frame; ``message_rate`` is each session's request budget
    per second (token bucket, error 4 beyond it); ``login_max_age_s`` bounds the token's
    ``iat`` against ``wall_time``; ``margin_rate`` is the initial margin per unit of notional.
    Use ``await start()`` / ``await stop()``, or mount ``handle`` on an app of your own.
    """

    def __init__(
        self,
        venue: SimVenue,
        *,
        keys: Iterable[ThalexApiKey] = (),
        faults: FaultInjector | None = None,
        message_rate: int = 50,
        login_max_age_s: float = 30.0,
        margin_rate: str = "0.01",
        wall_time: Callable[[], float] = time.time,
        create_time: float | None = None,
    ) -> None:
        self.venue = venue
        self.engine = venue.engine
        self.accounts = venue.accounts
        self.faults = faults if faults is not None else FaultInjector()
        self.message_rate = message_rate
        self.market = ThalexMarketViews(venue)
        self.account_views = ThalexAccountViews(venue, self.market, Decimal(margin_rate))
        self.counters: dict[str, int] = {
            "connections": 0,
            "requests": 0,
            "errors": 0,
            "malformed": 0,
            "throttled": 0,
            "logins": 0,
            "login_failures": 0,
            "session_end_cancels": 0,
            "protection_trips": 0,
            "render_errors": 0,
            "slow_client_disconnects": 0,
            "unmasked_frame_disconnects": 0,
        }
        self.error_codes: dict[int, int] = {}
        created = wall_time() if create_time is None else create_time
        self.channels = Channels(venue, self.market, self.account_views, created)
        self.orders = self.channels.orders
        self.rpc = ThalexRpc(
            venue,
            self.channels,
            self.market,
            self.account_views,
            counters=self.counters,
            login_max_age_s=login_max_age_s,
            wall_time=wall_time,
            create_time=created,
        )
        self.quotes = self.rpc.quotes
        self.channels.on_quote_execution = self.quotes.protection_execution
        for key in keys:
            self.add_key(key)
        self._sessions: dict[int, Session] = {}
        self._session_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_get(PATH, self.handle)
        venue.add_listener(self.channels.on_event)

    # set-up ----------------------------------------------------------------------------------
    def add_key(self, key: ThalexApiKey) -> None:
        self.rpc.add_key(key)

    @property
    def login_max_age_s(self) -> float:
        return self.rpc.login_max_age_s

    @login_max_age_s.setter
    def login_max_age_s(self, value: float) -> None:
        self.rpc.login_max_age_s = value

    @property
    def instruments(self) -> dict[str, Instrument]:
        return self.venue.instruments

    def snapshot(self) -> dict[str, Any]:
        """Counters for a control endpoint: requests, errors by code, sessions, injected faults."""
        return {
            **self.counters,
            "sessions": len(self._sessions),
            "error_codes": {str(code): count for code, count in sorted(self.error_codes.items())},
            "faults": self.faults.snapshot(),
        }

    def set_index_price(self, underlying: str, price: str | Decimal) -> None:
        """Set an underlying's index (the replay driver's index feed); pushes price_index."""
        self.market.index_prices[underlying] = Decimal(price)
        self.channels.index_changed(underlying)

    def announce_reconnect(self) -> None:
        """Push ``{"event":"reconnect"}`` on ``system`` (the venue's maintenance warning)."""
        self.channels.announce(list(self._sessions.values()), {"event": "reconnect"})

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> str:
        """Serve on ``host:port`` (0 = any free port); return the WebSocket URL (wss with TLS)."""
        self._runner = web.AppRunner(self.app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        bound = port
        for address in self._runner.addresses:
            bound = address[1]
        scheme = "wss" if ssl_context is not None else "ws"
        return f"{scheme}://{host}:{bound}{PATH}"

    async def drop_connections(self) -> int:
        """Close every session's connection (the clients see the venue go away); how many."""
        sessions = list(self._sessions.values())
        for session in sessions:
            with contextlib.suppress(Exception):
                await session.ws.close(code=WSCloseCode.GOING_AWAY, message=b"dropped")
        return len(sessions)

    def connections(self) -> int:
        """Open client connections (the sessions count too when the handler is mounted elsewhere)."""
        return max(open_connections(self._runner), len(self._sessions))

    async def stop(self) -> None:
        for session in list(self._sessions.values()):
            with contextlib.suppress(Exception):
                await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.venue.remove_listener(self.channels.on_event)

    # connection --------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """The WebSocket handler (mount it on another app with ``router.add_get(PATH, ...)``)."""
        ws = SimWebSocketResponse(autoping=False, max_msg_size=1 << 20, on_unmasked=self._count_unmasked)
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        session = Session(next(self._session_ids), ws, self.message_rate, loop.time())
        self._sessions[session.session_id] = session
        self.counters["connections"] += 1
        session.tasks.append(asyncio.create_task(self._writer(session)))
        session.tasks.append(asyncio.create_task(self._watchdog(session)))
        disconnect_after = self.faults.disconnect_after_s()
        if disconnect_after is not None:
            session.timers.append(loop.call_later(disconnect_after, self._fault_disconnect, session))
        try:
            async for message in ws:
                session.last_frame = loop.time()
                if message.type is WSMsgType.TEXT:
                    await self._on_text(session, message.data)
                elif message.type is WSMsgType.BINARY:
                    await self._on_text(session, message.data.decode("utf-8", "replace"))
                elif message.type is WSMsgType.PING:
                    await ws.pong(message.data)
                elif message.type is WSMsgType.ERROR:
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._close_session(session)
            with contextlib.suppress(Exception):
                await ws.close()
        return ws

    def _count_unmasked(self) -> None:
        self.counters["unmasked_frame_disconnects"] += 1

    def _drop_slow_client(self, session: Session) -> None:
        """A client that stopped reading: drop it now and free what was queued for it."""
        if session.closed:
            return
        self.counters["slow_client_disconnects"] += 1
        logger.warning("thalex sim: session %d stopped reading, disconnecting", session.session_id)
        abort(session.ws)
        session.responses.clear()
        self._close_session(session)

    def _fault_disconnect(self, session: Session) -> None:
        if session.closed:
            return
        self.faults.count_disconnect()
        task = asyncio.get_running_loop().create_task(session.ws.close())
        session.tasks.append(task)

    def _close_session(self, session: Session) -> None:
        if session.closed:
            return
        session.closed = True
        for timer in session.timers:
            timer.cancel()
        for task in session.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        # non-persistent orders: those inserted after set_cancel_on_disconnect, and mass quotes
        self.rpc.cancel_session_orders(session, "session_end")
        self.channels.session_closed(session)
        self._sessions.pop(session.session_id, None)
        session.wake.set()

    async def _watchdog(self, session: Session) -> None:
        """Cancel-on-disconnect also fires when no frame arrives for ``timeout_secs``."""
        loop = asyncio.get_running_loop()
        while not session.closed:
            interval = min(session.timeout_s / 4, 0.25) if session.cancel_on_disconnect else 0.25
            await asyncio.sleep(max(interval, 0.01))
            if (
                session.cancel_on_disconnect
                and session.timeout_s > 0
                and session.orders
                and loop.time() - session.last_frame > session.timeout_s
            ):
                self.rpc.cancel_session_orders(session, "session_end")

    async def _writer(self, session: Session) -> None:
        loop = asyncio.get_running_loop()
        ws = session.ws
        while not session.closed:
            timeout = self._next_due(session, loop.time())
            if timeout is None or timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(session.wake.wait(), timeout)
            session.wake.clear()
            if session.closed or ws.closed:
                return
            faults = self.faults  # replaceable at run time
            try:
                while session.responses:
                    if not await send_or_abort(ws, session.responses.popleft().decode()):
                        self._drop_slow_client(session)
                        return
                now = loop.time()
                if faults.stalled():  # streams send nothing for a while; answers still go out
                    session.hold_until = now + _STALL_POLL_S
                    continue
                due = [
                    subscription
                    for subscription in session.subscriptions.values()
                    if subscription.dirty and now >= subscription.due_at()
                ]
                if not due:
                    continue
                delay = faults.stream_delay()
                if delay:
                    await asyncio.sleep(delay)
                for subscription in due:
                    try:
                        payloads = self.channels.render(subscription, loop.time())
                    except Exception:  # a rendering bug must not end the connection's stream
                        self.counters["render_errors"] += 1
                        logger.exception("thalex sim: rendering %s failed", subscription.name)
                        continue
                    for payload in payloads:
                        frame = orjson.dumps({"channel_name": subscription.name, "notification": payload})
                        if faults.corrupt_frame():
                            await ws.send_str(frame[: len(frame) // 2].decode("utf-8", "replace"))
                        if not await send_or_abort(ws, frame.decode()):
                            self._drop_slow_client(session)
                            return
            except (ConnectionError, RuntimeError):
                return

    @staticmethod
    def _next_due(session: Session, now: float) -> float | None:
        if session.responses:
            return 0.0
        earliest: float | None = None
        for subscription in session.subscriptions.values():
            if subscription.dirty:
                wait = max(subscription.due_at(), session.hold_until) - now
                if wait <= 0:
                    return 0.0
                if earliest is None or wait < earliest:
                    earliest = wait
        return earliest

    def _respond(
        self, session: Session, request_id: Any, result: Any = None, error: RpcError | None = None
    ) -> None:
        if error is None:
            frame = orjson.dumps({"id": request_id, "result": result})
        else:
            self.counters["errors"] += 1
            self.error_codes[error.code] = self.error_codes.get(error.code, 0) + 1
            frame = orjson.dumps({"id": request_id, "error": {"code": error.code, "message": error.message}})
        if session.closed:  # dropped (slow, faulted, gone): nobody will send it
            return
        if len(session.responses) >= _MAX_PENDING_RESPONSES:
            self._drop_slow_client(session)
            return
        session.responses.append(frame)
        session.wake.set()

    # requests --------------------------------------------------------------------------------
    async def _on_text(self, session: Session, text: str) -> None:
        self.counters["requests"] += 1
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.counters["malformed"] += 1
            self._respond(session, None, error=RpcError(ThalexErrorCode.INVALID_REQUEST, "malformed JSON"))
            return
        if not isinstance(message, dict):
            self.counters["malformed"] += 1
            self._respond(
                session, None, error=RpcError(ThalexErrorCode.INVALID_REQUEST, "a request is a JSON object")
            )
            return
        request_id = message.get("id")
        if isinstance(request_id, dict | list):
            request_id = None
        fault = self.faults.request()
        if fault.timeout:
            return
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
            if session.closed:
                return
        if fault.status == 429:
            self._respond(
                session, request_id, error=RpcError(ThalexErrorCode.THROTTLE_EXCEEDED, "throttle exceeded")
            )
            return
        if fault.status:
            self._respond(
                session, request_id, error=RpcError(ThalexErrorCode.TEMPORARY_FAILURE, "temporary failure")
            )
            return
        if not session.take_token(asyncio.get_running_loop().time()):
            self.counters["throttled"] += 1
            self._respond(
                session, request_id, error=RpcError(ThalexErrorCode.THROTTLE_EXCEEDED, "throttle exceeded")
            )
            return
        method = message.get("method")
        try:
            result = await self.rpc.call(session, method, message.get("params", {}))
        except RpcError as error:
            self._respond(session, request_id, error=error)
            return
        if method in ORDER_METHODS:
            delay = self.faults.ack_delay()
            if delay:
                asyncio.get_running_loop().call_later(delay, self._respond, session, request_id, result)
                return
        self._respond(session, request_id, result)
        await asyncio.sleep(0)  # let the writer send this answer and its notifications first


__all__ = ["PATH", "ThalexApiKey", "ThalexSimServer", "default_instruments", "thalex_perpetual"]
