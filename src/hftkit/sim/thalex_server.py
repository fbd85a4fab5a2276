"""A Thalex-compatible exchange on 127.0.0.1: JSON-RPC over WebSocket at ``/ws/api/v2``.

It speaks the venue's protocol closely enough that the official ``thalex`` PyPI client trades
against it unmodified: RS512 JWT login, cancel-on-disconnect sessions, the trading methods,
mass quotes with market-maker protection, market-data RPC and the public and private
subscription channels, with the venue's error object and codes and a per-session message
rate. Matching, accounts and the public market come from a shared ``SimVenue``; this module
only turns venue events into Thalex frames and Thalex requests into venue calls.

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
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from hftkit.core.types import Instrument, OrderStatus, OrderType, Side, TimeInForce
from hftkit.sim import thalex_wire as wire
from hftkit.sim.errors import RejectReason, thalex_error
from hftkit.sim.faults import FaultInjector
from hftkit.sim.matching import BookUpdate, Execution, OrderResult, SimOrder, TradePrint
from hftkit.sim.thalex_accounts import ThalexAccountViews
from hftkit.sim.thalex_channels import (
    ORDER_KINDS,
    PRIVATE_KINDS,
    ChannelKind,
    Subscription,
    diff_levels,
    group_levels,
    parse_channel,
)
from hftkit.sim.thalex_market import ThalexMarketViews, book_level
from hftkit.sim.thalex_orders import (
    OrderInfo,
    OrderUpdates,
    fill_payload,
    history_payload,
    immediately_cancelled_payload,
    trade_payload,
)
from hftkit.sim.thalex_wire import RpcError, default_instruments, thalex_perpetual
from hftkit.sim.venue import OrderEvent, OrderEventKind, SimEvent, SimVenue
from hftkit.sim.websocket import SimWebSocketResponse, abort, send_or_abort
from hftkit.venues.thalex.auth import TokenError, token_key_id, verify_login_token

logger = logging.getLogger(__name__)

PATH = "/ws/api/v2"
_REJECTED_ID_BASE = 0xF000_0000_0000_0000  # ids of orders refused as post-only (never in the engine)
_HISTORY_LIMIT = 10_000
_MAX_PENDING_RESPONSES = 10_000  # answers queued for a client that stopped reading: then it is dropped
_STALL_POLL_S = 0.05  # how often a stalled stream checks whether the stall is over
_MAX_QUOTES = 100
_MAX_QUOTE_LEVELS = 10
_NO_SNAPSHOT = frozenset(
    {ChannelKind.TRADE_HISTORY, ChannelKind.ORDER_HISTORY, ChannelKind.SYSTEM, ChannelKind.MM_PROTECTION}
)
_ORDER_METHODS = frozenset(
    {
        "private/insert",
        "private/buy",
        "private/sell",
        "private/amend",
        "private/cancel",
        "private/mass_quote",
    }
)


@dataclass(frozen=True)
class ThalexApiKey:
    """An API key the simulator accepts: its id, public key and accounts (first = default)."""

    key_id: str
    public_key_pem: bytes = field(repr=False)
    accounts: tuple[str, ...]

    @classmethod
    def from_pem_file(cls, key_id: str, path: str | Path, *accounts: str) -> ThalexApiKey:
        return cls(key_id, Path(path).read_bytes(), tuple(accounts))


@dataclass(frozen=True)
class _QuoteStyle:
    """The mass quote's call-wide settings."""

    label: str | None
    post_only: bool
    reject_post_only: bool


@dataclass
class _Protection:
    """One market-maker protection group (session x product), amounts exact."""

    trade_amount: Decimal
    quote_amount: Decimal
    executed: Decimal = Decimal(0)
    tripped: bool = False


class _Session:
    """One WebSocket connection: login state, throttle, subscriptions and the outbound queue."""

    def __init__(self, session_id: int, ws: web.WebSocketResponse, rate: int, now: float) -> None:
        self.session_id = session_id
        self.ws = ws
        self.account: str | None = None
        self.key: ThalexApiKey | None = None
        self.cancel_on_disconnect = False
        self.timeout_s = 0.0
        self.last_frame = now
        self.rate = rate
        self.tokens = float(rate)
        self.refilled = now
        self.subscriptions: dict[str, Subscription] = {}
        self.responses: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.closed = False
        self.orders: dict[int, SimOrder] = {}  # open orders inserted in this session
        self.quotes: dict[tuple[str, bool], list[SimOrder]] = {}  # (instrument, is_bid) -> levels
        self.protection: dict[str, _Protection] = {}
        self.tasks: list[asyncio.Task[Any]] = []
        self.timers: list[asyncio.TimerHandle] = []
        self.hold_until = 0.0  # notifications held back until then (a stall fault)

    def take_token(self, now: float) -> bool:
        """Token bucket at ``rate`` per second, burst ``rate``."""
        self.tokens = min(float(self.rate), self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


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
        self.login_max_age_s = login_max_age_s
        self.market = ThalexMarketViews(venue)
        self.account_views = ThalexAccountViews(venue, self.market, Decimal(margin_rate))
        self._wall_time = wall_time
        self._create_time = wall_time() if create_time is None else create_time
        self._keys: dict[str, ThalexApiKey] = {}
        for key in keys:
            self.add_key(key)
        self._sessions: dict[int, _Session] = {}
        self._session_ids = itertools.count(1)
        self._rejected_ids = itertools.count(_REJECTED_ID_BASE)
        self.orders = OrderUpdates(venue, self._publish_order, self._schedule_end_batch)
        self._batch_scheduled = False
        self._market_subscriptions: dict[str, set[Subscription]] = {}
        self._index_subscriptions: dict[str, set[Subscription]] = {}
        self._trade_subscriptions: dict[str, set[Subscription]] = {}
        self._account_sessions: dict[str, set[_Session]] = {}
        self._trade_history: dict[str, deque[dict[str, Any]]] = {}
        self._order_history: dict[str, deque[dict[str, Any]]] = {}
        self._positions: dict[tuple[str, str], int] = {}
        self._pulls: list[tuple[_Session, str]] = []
        self._instrument_index = {symbol: index for index, symbol in enumerate(venue.instruments)}
        for holder in self.accounts:  # positions from before the server: position_after starts right
            for symbol, position in holder.positions.items():
                self._positions[(holder.name, symbol)] = position.quantity
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
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_get(PATH, self.handle)
        self._methods: dict[str, tuple[Callable[[_Session, wire.Params], Any], bool]] = {
            "public/login": (self._login, False),
            "public/instruments": (self._instruments, False),
            "public/all_instruments": (self._instruments, False),
            "public/instrument": (self._instrument, False),
            "public/ticker": (self._ticker_rpc, False),
            "public/book": (self._book_rpc, False),
            "public/index": (self._index_rpc, False),
            "public/system_info": (self._system_info, False),
            "public/subscribe": (self._subscribe_public, False),
            "unsubscribe": (self._unsubscribe, False),
            "private/subscribe": (self._subscribe_private, True),
            "private/set_cancel_on_disconnect": (self._set_cancel_on_disconnect, True),
            "private/insert": (self._insert, True),
            "private/buy": (self._buy, True),
            "private/sell": (self._sell, True),
            "private/amend": (self._amend, True),
            "private/cancel": (self._cancel, True),
            "private/cancel_all": (self._cancel_all, True),
            "private/cancel_session": (self._cancel_session, True),
            "private/set_mm_protection": (self._set_mm_protection, True),
            "private/mass_quote": (self._mass_quote, True),
            "private/cancel_mass_quote": (self._cancel_mass_quote, True),
            "private/open_orders": (self._open_orders, True),
            "private/portfolio": (self._portfolio_rpc, True),
            "private/account_summary": (self._account_summary_rpc, True),
            "private/trade_history": (self._trade_history_rpc, True),
            "private/order_history": (self._order_history_rpc, True),
        }
        venue.add_listener(self._on_event)

    # set-up ----------------------------------------------------------------------------------
    def add_key(self, key: ThalexApiKey) -> None:
        if not key.accounts:
            raise ValueError(f"API key {key.key_id} needs at least one account")
        self._keys[key.key_id] = key

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
        for subscription in self._index_subscriptions.get(underlying, ()):
            self._mark_dirty(subscription)

    def announce_reconnect(self) -> None:
        """Push ``{"event":"reconnect"}`` on ``system`` (the venue's maintenance warning)."""
        for session in list(self._sessions.values()):
            subscription = session.subscriptions.get("system")
            if subscription is not None:
                subscription.pending.append({"event": "reconnect"})
                self._mark_dirty(subscription)

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

    async def stop(self) -> None:
        for session in list(self._sessions.values()):
            with contextlib.suppress(Exception):
                await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.venue.remove_listener(self._on_event)

    # connection --------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """The WebSocket handler (mount it on another app with ``router.add_get(PATH, ...)``)."""
        ws = SimWebSocketResponse(autoping=False, max_msg_size=1 << 20, on_unmasked=self._count_unmasked)
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        session = _Session(next(self._session_ids), ws, self.message_rate, loop.time())
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

    def _drop_slow_client(self, session: _Session) -> None:
        """A client that stopped reading: drop it now and free what was queued for it."""
        if session.closed:
            return
        self.counters["slow_client_disconnects"] += 1
        logger.warning("thalex sim: session %d stopped reading, disconnecting", session.session_id)
        abort(session.ws)
        session.responses.clear()
        self._close_session(session)

    def _fault_disconnect(self, session: _Session) -> None:
        if session.closed:
            return
        self.faults.count_disconnect()
        task = asyncio.get_running_loop().create_task(session.ws.close())
        session.tasks.append(task)

    def _close_session(self, session: _Session) -> None:
        if session.closed:
            return
        session.closed = True
        for timer in session.timers:
            timer.cancel()
        for task in session.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        # non-persistent orders: those inserted after set_cancel_on_disconnect, and mass quotes
        self._cancel_session_orders(session, "session_end")
        self._drop_subscriptions(session)
        if session.account is not None:
            self._account_sessions.get(session.account, set()).discard(session)
        for info in self.orders.infos.values():
            if info.session is session:
                info.session = None
        self._sessions.pop(session.session_id, None)
        session.wake.set()

    async def _watchdog(self, session: _Session) -> None:
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
                self._cancel_session_orders(session, "session_end")

    async def _writer(self, session: _Session) -> None:
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
                        payloads = self._render(subscription, loop.time())
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
    def _next_due(session: _Session, now: float) -> float | None:
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

    def _mark_dirty(self, subscription: Subscription) -> None:
        subscription.dirty = True
        subscription.session.wake.set()

    def _respond(
        self, session: _Session, request_id: Any, result: Any = None, error: RpcError | None = None
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
    async def _on_text(self, session: _Session, text: str) -> None:
        self.counters["requests"] += 1
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.counters["malformed"] += 1
            self._respond(session, None, error=RpcError(wire.INVALID_REQUEST, "malformed JSON"))
            return
        if not isinstance(message, dict):
            self.counters["malformed"] += 1
            self._respond(session, None, error=RpcError(wire.INVALID_REQUEST, "a request is a JSON object"))
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
            self._respond(session, request_id, error=RpcError(wire.THROTTLE_EXCEEDED, "throttle exceeded"))
            return
        if fault.status:
            self._respond(session, request_id, error=RpcError(wire.TEMPORARY_FAILURE, "temporary failure"))
            return
        if not session.take_token(asyncio.get_running_loop().time()):
            self.counters["throttled"] += 1
            self._respond(session, request_id, error=RpcError(wire.THROTTLE_EXCEEDED, "throttle exceeded"))
            return
        method = message.get("method")
        params = message.get("params", {})
        try:
            if not isinstance(method, str):
                raise RpcError(wire.INVALID_REQUEST, "method must be a string")
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise RpcError(wire.INVALID_REQUEST, "params must be an object")
            entry = self._methods.get(method)
            if entry is None:
                raise RpcError(wire.UNKNOWN_METHOD, f"unknown method {method}")
            handler, private = entry
            if private and session.account is None:
                raise RpcError(wire.NOT_LOGGED_IN, "not logged in")
            result = handler(session, wire.Params(params))
            if isinstance(result, Awaitable):
                result = await result
        except RpcError as error:
            self._end_batch()
            self._respond(session, request_id, error=error)
            return
        except Exception:
            self._end_batch()
            logger.exception("thalex sim: %s failed", method)
            self._respond(session, request_id, error=RpcError(wire.TEMPORARY_FAILURE, "internal error"))
            return
        self._end_batch()
        self._process_pulls()
        if method in _ORDER_METHODS:
            delay = self.faults.ack_delay()
            if delay:
                frame_result = result
                asyncio.get_running_loop().call_later(
                    delay, lambda: session.closed or self._respond(session, request_id, frame_result)
                )
                return
        self._respond(session, request_id, result)
        await asyncio.sleep(0)  # let the writer send this answer and its notifications first

    # login and session -----------------------------------------------------------------------
    def _login(self, session: _Session, params: wire.Params) -> dict[str, Any]:
        token = params.required_string("token")
        try:
            key = self._keys.get(token_key_id(token))
            if key is None:
                raise TokenError("unknown key id")
            verify_login_token(
                token, key.public_key_pem, now=self._wall_time(), max_age_s=self.login_max_age_s
            )
        except TokenError as error:
            self.counters["login_failures"] += 1
            raise RpcError(wire.AUTHENTICATION_FAILED, f"authentication failed: {error}") from None
        account = params.string("account") or key.accounts[0]
        if account not in key.accounts:
            self.counters["login_failures"] += 1
            raise RpcError(wire.AUTHENTICATION_FAILED, f"key {key.key_id} has no access to account {account}")
        if session.account is not None and session.account != account:
            raise RpcError(wire.INVALID_REQUEST, "session is already logged in to another account")
        session.account = account
        session.key = key
        self._account_sessions.setdefault(account, set()).add(session)
        self.counters["logins"] += 1
        return {"account_number": account}

    def _set_cancel_on_disconnect(self, session: _Session, params: wire.Params) -> dict[str, Any]:
        timeout = params.number("timeout_secs")
        if timeout is None or timeout < 0:
            raise RpcError(wire.INVALID_REQUEST, "timeout_secs must be a number >= 0")
        session.cancel_on_disconnect = True
        session.timeout_s = timeout
        return {"message_rate": session.rate}

    def _cancel_session(self, session: _Session, params: wire.Params) -> None:
        if not session.cancel_on_disconnect:
            raise RpcError(wire.PERSISTENT_SESSION, "cancel_session needs a cancel-on-disconnect session")
        self._cancel_session_orders(session, "session_end")
        self._reset_protection(session, None, "session_end")
        return None

    def _cancel_session_orders(self, session: _Session, delete_reason: str) -> int:
        """Delete the session's non-persistent orders (cancel-on-disconnect)."""
        count = 0
        for order in list(session.orders.values()):
            info = self.orders.infos.get(order.order_id)
            if info is None or info.persistent or not order.is_open:
                continue
            if self._cancel_with_reason(order, delete_reason):
                count += 1
        session.quotes.clear()
        self.counters["session_end_cancels"] += count
        return count

    def _cancel_with_reason(self, order: SimOrder, delete_reason: str) -> bool:
        info = self.orders.infos.get(order.order_id)
        if info is not None:
            info.delete_reason = delete_reason
        result = self.venue.cancel(order.account, order.symbol, order_id=order.order_id)
        self._end_batch()
        return result.accepted

    # market data -----------------------------------------------------------------------------
    def _instrument_or_error(self, name: Any) -> Instrument:
        instrument = self.instruments.get(name) if isinstance(name, str) else None
        if instrument is None:
            raise RpcError(wire.UNKNOWN_INSTRUMENT, f"unknown instrument {name}")
        return instrument

    def _instruments(self, session: _Session, params: wire.Params) -> list[dict[str, Any]]:
        return [wire.instrument_payload(item, self._create_time) for item in self.instruments.values()]

    def _instrument(self, session: _Session, params: wire.Params) -> dict[str, Any]:
        instrument = self._instrument_or_error(params.required_string("instrument_name"))
        return wire.instrument_payload(instrument, self._create_time)

    def _ticker_rpc(self, session: _Session, params: wire.Params) -> dict[str, Any]:
        instrument = self._instrument_or_error(params.required_string("instrument_name"))
        return self.market.ticker(instrument)

    def _book_rpc(self, session: _Session, params: wire.Params) -> dict[str, Any]:
        return self.market.book(self._instrument_or_error(params.required_string("instrument_name")))

    def _index_rpc(self, session: _Session, params: wire.Params) -> dict[str, Any]:
        underlying = params.required_string("underlying")
        if underlying not in self.market.underlyings():
            raise RpcError(wire.UNKNOWN_UNDERLYING, f"unknown underlying {underlying}")
        return self.market.index(underlying)

    def _system_info(self, session: _Session, params: wire.Params) -> dict[str, Any]:
        return {"environment": "simulator", "api_version": "2.0.0", "banners": []}

    # subscriptions -----------------------------------------------------------------------------
    def _subscribe_public(self, session: _Session, params: wire.Params) -> list[str]:
        return self._subscribe(session, params.channels(), private=False)

    def _subscribe_private(self, session: _Session, params: wire.Params) -> list[str]:
        return self._subscribe(session, params.channels(), private=True)

    def _subscribe(self, session: _Session, channels: list[str], *, private: bool) -> list[str]:
        accepted: list[str] = []
        underlyings = self.market.underlyings()
        for name in channels:
            if name in session.subscriptions:
                if len(channels) == 1:
                    raise RpcError(wire.ALREADY_SUBSCRIBED, f"already subscribed to {name}")
                continue
            subscription = parse_channel(name, session, self.instruments, underlyings)
            if subscription is None or (subscription.kind in PRIVATE_KINDS) != private:
                continue
            session.subscriptions[name] = subscription
            kind = subscription.kind
            if kind in (ChannelKind.BOOK, ChannelKind.TICKER, ChannelKind.LWT):
                self._market_subscriptions.setdefault(subscription.symbol, set()).add(subscription)
            elif kind is ChannelKind.PRICE_INDEX:
                self._index_subscriptions.setdefault(subscription.target, set()).add(subscription)
                for symbol in underlyings.get(subscription.target, []):
                    self._market_subscriptions.setdefault(symbol, set()).add(subscription)
            elif kind is ChannelKind.RECENT_TRADES:
                for symbol in subscription.symbols:
                    self._trade_subscriptions.setdefault(symbol, set()).add(subscription)
            if kind in _NO_SNAPSHOT:
                subscription.snapshot_due = False
            else:
                self._take_snapshot(subscription)
                self._mark_dirty(subscription)
            accepted.append(name)
        return accepted

    def _take_snapshot(self, subscription: Subscription) -> None:
        """Event channels start with the state at subscribe time: open orders, recent trades."""
        kind = subscription.kind
        if kind in ORDER_KINDS:
            subscription.pending = [
                self.orders.live(order, "existing")
                for order in self.engine.open_orders(subscription.session.account or "")
                if self._order_visible(subscription, order)
            ]
        elif kind is ChannelKind.RECENT_TRADES:
            trades: list[TradePrint] = []
            for symbol in subscription.symbols:
                trades.extend(self.venue.recent_trades(symbol, 20))
            trades.sort(key=lambda trade: trade.time_ns)
            subscription.pending = [self.market.recent_trade(trade) for trade in trades]

    def _unsubscribe(self, session: _Session, params: wire.Params) -> list[str]:
        channels = params.channels()
        removed: list[str] = []
        for name in channels:
            subscription = session.subscriptions.pop(name, None)
            if subscription is None:
                if len(channels) == 1:
                    raise RpcError(wire.NOT_SUBSCRIBED, f"not subscribed to {name}")
                continue
            self._forget(subscription)
            removed.append(name)
        return removed

    def _forget(self, subscription: Subscription) -> None:
        for index in (self._market_subscriptions, self._index_subscriptions, self._trade_subscriptions):
            for members in index.values():
                members.discard(subscription)

    def _drop_subscriptions(self, session: _Session) -> None:
        for subscription in session.subscriptions.values():
            self._forget(subscription)
        session.subscriptions.clear()

    def _private_subscriptions(self, account: str, kind: ChannelKind) -> Iterable[Subscription]:
        for session in self._account_sessions.get(account, ()):
            subscription = session.subscriptions.get(kind.value)
            if subscription is not None:
                yield subscription

    # rendering ------------------------------------------------------------------------------------
    def _render(self, subscription: Subscription, now: float) -> list[Any]:
        """The notification payloads now due on a subscription (may be none); resets its state."""
        subscription.dirty = False
        snapshot = subscription.snapshot_due
        subscription.snapshot_due = False
        kind = subscription.kind
        payloads: list[Any] = []
        if kind is ChannelKind.BOOK:
            payload = self._render_book(subscription, snapshot)
            if payload is not None:
                payloads.append(payload)
        elif kind in (ChannelKind.TICKER, ChannelKind.LWT, ChannelKind.PRICE_INDEX, ChannelKind.SUMMARY):
            payload = self._render_value(subscription)
            if snapshot or payload != subscription.last_payload:
                subscription.last_payload = payload
                payloads.append(self._stamp(subscription, payload))
        elif kind is ChannelKind.RECENT_TRADES:
            if subscription.pending or snapshot:
                payloads.append(subscription.pending)
                subscription.pending = []
        elif kind in ORDER_KINDS:
            if subscription.pending or snapshot:
                payloads.append([dict(item) for item in subscription.pending])
                subscription.pending = []
        elif kind is ChannelKind.PORTFOLIO:
            account = subscription.session.account or ""
            if snapshot:
                payloads.append(self.account_views.portfolio(account, None))
            elif subscription.pending:
                payloads.append(self.account_views.portfolio(account, set(subscription.pending)))
            subscription.pending = []
        elif kind is ChannelKind.INSTRUMENTS:
            if snapshot:
                payloads.append(
                    [
                        {"added": wire.instrument_payload(item, self._create_time)}
                        for item in self.instruments.values()
                    ]
                )
        elif kind is ChannelKind.SYSTEM:
            payloads.extend(subscription.pending)
            subscription.pending = []
        elif subscription.pending:  # trade history, order history, mm protection
            payloads.append(subscription.pending)
            subscription.pending = []
        if payloads:
            subscription.last_sent = now
        return payloads

    def _stamp(self, subscription: Subscription, payload: dict[str, Any]) -> dict[str, Any]:
        if subscription.kind is ChannelKind.TICKER:
            return {**payload, "mark_timestamp": wire.seconds(self.engine.clock.time_ns())}
        if subscription.kind is ChannelKind.PRICE_INDEX:
            return {**payload, "timestamp": wire.seconds(self.engine.clock.time_ns())}
        return payload

    def _render_value(self, subscription: Subscription) -> dict[str, Any]:
        kind = subscription.kind
        if kind is ChannelKind.TICKER:
            ticker = self.market.ticker(self.instruments[subscription.symbol])
            ticker.pop("mark_timestamp")
            return ticker
        if kind is ChannelKind.LWT:
            return self.market.lwt(self.instruments[subscription.symbol])
        if kind is ChannelKind.PRICE_INDEX:
            index = self.market.index(subscription.target)
            index.pop("timestamp")
            return index
        return self.account_views.summary(subscription.session.account or "")

    def _render_book(self, subscription: Subscription, snapshot: bool) -> dict[str, Any] | None:
        instrument = self.instruments[subscription.symbol]
        trades = subscription.pending
        subscription.pending = []
        if snapshot or not subscription.full_depth:
            depth = self.venue.depth(
                subscription.symbol, subscription.levels if not subscription.grouping else None
            )
            bids = group_levels(depth.bids, subscription.grouping, True, subscription.levels)
            asks = group_levels(depth.asks, subscription.grouping, False, subscription.levels)
            if snapshot:
                bid_changes = sorted(bids.items())
                ask_changes = sorted(asks.items())
            else:
                bid_changes = diff_levels(subscription.view_bids, bids)
                ask_changes = diff_levels(subscription.view_asks, asks)
            subscription.view_bids = bids
            subscription.view_asks = asks
        else:
            bid_changes = sorted(subscription.bid_changes.items())
            ask_changes = sorted(subscription.ask_changes.items())
            for price, size in bid_changes:
                _apply_level(subscription.view_bids, price, size)
            for price, size in ask_changes:
                _apply_level(subscription.view_asks, price, size)
        subscription.bid_changes = {}
        subscription.ask_changes = {}
        if not snapshot and not bid_changes and not ask_changes and not trades:
            return None
        return {
            "trades": trades,
            "bid_changes": [book_level(instrument, price, size) for price, size in bid_changes],
            "ask_changes": [book_level(instrument, price, size) for price, size in ask_changes],
            "total_bid_amount": wire.amount_number(instrument, sum(subscription.view_bids.values())),
            "total_ask_amount": wire.amount_number(instrument, sum(subscription.view_asks.values())),
            "time": wire.seconds(self.engine.clock.time_ns()),
        }

    def _order_visible(self, subscription: Subscription, order: SimOrder) -> bool:
        info = self.orders.infos.get(order.order_id)
        if subscription.kind is ChannelKind.SESSION_ORDERS:
            return info is not None and info.session is subscription.session
        if subscription.kind is ChannelKind.PERSISTENT_ORDERS:
            return info is None or info.persistent
        return True

    # venue events ---------------------------------------------------------------------------------
    def _on_event(self, event: SimEvent) -> None:
        if isinstance(event, BookUpdate):
            self._on_book(event)
        elif isinstance(event, TradePrint):
            self._on_trade(event)
        elif isinstance(event, Execution):
            self._on_execution(event)
        elif isinstance(event, OrderEvent):
            self._on_order_event(event)

    def _on_book(self, update: BookUpdate) -> None:
        for subscription in self._market_subscriptions.get(update.symbol, ()):
            if (
                subscription.kind is ChannelKind.BOOK
                and subscription.full_depth
                and not subscription.snapshot_due
            ):
                subscription.bid_changes.update(update.bids)
                subscription.ask_changes.update(update.asks)
            if (
                subscription.kind is not ChannelKind.PRICE_INDEX
                or subscription.target not in self.market.index_prices
            ):
                self._mark_dirty(subscription)

    def _on_trade(self, trade: TradePrint) -> None:
        row: list[Any] | None = None
        for subscription in self._market_subscriptions.get(trade.symbol, ()):
            if subscription.kind is ChannelKind.BOOK:
                if row is None:
                    row = self.market.book_trade(trade)
                subscription.pending.append(row)
            self._mark_dirty(subscription)
        subscriptions = self._trade_subscriptions.get(trade.symbol)
        if subscriptions:
            payload = self.market.recent_trade(trade)
            for subscription in subscriptions:
                subscription.pending.append(payload)
                self._mark_dirty(subscription)

    def _info(self, order: SimOrder) -> OrderInfo:
        info, new = self.orders.info_for(order)
        if new and info.session is not None and order.is_open:
            info.session.orders[order.order_id] = order
        return info

    def _on_order_event(self, event: OrderEvent) -> None:
        order = event.order
        info = self._info(order)
        kind = event.kind
        if kind is OrderEventKind.ACCEPTED:
            self.orders.record(order, info, "insert", OrderStatus.NEW, 0)
        elif kind is OrderEventKind.AMENDED:
            self.orders.record(order, info, "amend", event.status, order.filled)
        else:
            reason = "cancel" if kind is OrderEventKind.CLOSED else "fill"
            entry = self.orders.record(order, info, reason, event.status, order.filled)
            self._closed(order, info, entry)

    def _on_execution(self, execution: Execution) -> None:
        order = execution.order
        info = self._info(order)
        instrument = self.instruments[order.symbol]
        index = self._instrument_index.setdefault(order.symbol, len(self._instrument_index))
        fill = fill_payload(execution, instrument, wire.trade_id_text(index, execution.trade_id))
        self.orders.record(order, info, "fill", execution.status, execution.filled, fill)
        key = (order.account, order.symbol)
        position = self._positions.get(key, 0) + (execution.quantity if order.is_buy else -execution.quantity)
        self._positions[key] = position
        index_price = self.market.index_price(wire.underlying_of(instrument))
        trade = trade_payload(
            execution,
            info,
            instrument,
            fill,
            position_after=position,
            fee=self.accounts.to_text(execution.fee_asset, execution.fee),
            index=wire.decimal_number(index_price) if index_price is not None else None,
        )
        history = self._trade_history.setdefault(order.account, deque(maxlen=_HISTORY_LIMIT))
        history.append(trade)
        for subscription in self._private_subscriptions(order.account, ChannelKind.TRADE_HISTORY):
            subscription.pending.append(trade)
            self._mark_dirty(subscription)
        for subscription in self._private_subscriptions(order.account, ChannelKind.PORTFOLIO):
            if order.symbol not in subscription.pending:
                subscription.pending.append(order.symbol)
            self._mark_dirty(subscription)
        for subscription in self._private_subscriptions(order.account, ChannelKind.SUMMARY):
            self._mark_dirty(subscription)
        if info.mass_quote and info.session is not None:
            self._protection_execution(info.session, info.product, instrument, execution.quantity)

    def _publish_order(self, order: SimOrder, info: OrderInfo, entry: dict[str, Any]) -> None:
        session = info.session
        if session is not None:
            subscription = session.subscriptions.get(ChannelKind.SESSION_ORDERS.value)
            if subscription is not None:
                subscription.pending.append(entry)
                self._mark_dirty(subscription)
        for subscription in self._private_subscriptions(order.account, ChannelKind.ACCOUNT_ORDERS):
            subscription.pending.append(entry)
            self._mark_dirty(subscription)
        if info.persistent:
            for subscription in self._private_subscriptions(order.account, ChannelKind.PERSISTENT_ORDERS):
                subscription.pending.append(entry)
                self._mark_dirty(subscription)

    def _closed(self, order: SimOrder, info: OrderInfo, entry: dict[str, Any]) -> None:
        if info.session is not None:
            info.session.orders.pop(order.order_id, None)
        self.orders.closed(order)
        if info.mass_quote and not order.filled:  # unfilled quotes stay out of order history
            return
        historical = history_payload(entry, info.fills)
        self._order_history.setdefault(order.account, deque(maxlen=_HISTORY_LIMIT)).append(historical)
        for subscription in self._private_subscriptions(order.account, ChannelKind.ORDER_HISTORY):
            subscription.pending.append(historical)
            self._mark_dirty(subscription)

    def _schedule_end_batch(self) -> None:
        """The first update of a venue call: close the batch once the call has returned."""
        if not self._batch_scheduled:
            self._batch_scheduled = True
            with contextlib.suppress(RuntimeError):  # no loop (a sans-I/O test): closed by the next call
                asyncio.get_running_loop().call_soon(self._end_batch)

    def _end_batch(self) -> None:
        """Close the current venue call's updates: later events start new updates."""
        self._batch_scheduled = False
        self.orders.end_batch()

    # trading ----------------------------------------------------------------------------------------
    def _insert(self, session: _Session, params: wire.Params) -> dict[str, Any]:
        direction = params.choice("direction", ("buy", "sell"))
        if direction is None:
            raise RpcError(wire.INVALID_REQUEST, "missing parameter direction")
        return self._place(session, params, Side.BUY if direction == "buy" else Side.SELL)

    def _buy(self, session: _Session, params: wire.Params) -> dict[str, Any]:
        return self._place(session, params, Side.BUY)

    def _sell(self, session: _Session, params: wire.Params) -> dict[str, Any]:
        return self._place(session, params, Side.SELL)

    def _place(self, session: _Session, params: wire.Params, side: Side) -> dict[str, Any]:
        if params.has("legs"):
            raise RpcError(wire.INVALID_REQUEST, "combination orders are not supported by the simulator")
        instrument = self._instrument_or_error(params.required_string("instrument_name"))
        order_type_name = params.choice("order_type", ("limit", "market"), "limit")
        is_market = order_type_name == "market"
        time_in_force = params.choice(
            "time_in_force",
            ("good_till_cancelled", "immediate_or_cancel"),
            "immediate_or_cancel" if is_market else "good_till_cancelled",
        )
        post_only = params.boolean("post_only")
        reject_post_only = params.boolean("reject_post_only")
        if is_market and time_in_force == "good_till_cancelled":
            raise RpcError(wire.INVALID_TIME_IN_FORCE, "a market order cannot be good_till_cancelled")
        if post_only and (is_market or time_in_force == "immediate_or_cancel"):
            raise RpcError(wire.INVALID_TIME_IN_FORCE, "post_only needs a good_till_cancelled limit order")
        params.choice("collar", ("ignore", "reject", "clamp"))
        lots = wire.to_lots(instrument, params.required("amount"))
        if lots < instrument.min_quantity:
            raise RpcError(wire.INVALID_AMOUNT, "amount below min_order_amount")
        price = 0
        if not is_market:
            if not params.has("price"):
                raise RpcError(wire.INVALID_REQUEST, "price is required for limit orders")
            price = wire.to_ticks(instrument, params.raw("price"))
        elif params.has("price"):
            price = wire.to_ticks(instrument, params.raw("price"))
        client_order_id = (
            wire.parse_client_order_id(params.raw("client_order_id"))
            if params.has("client_order_id")
            else None
        )
        label = params.string("label")
        assert session.account is not None
        if params.boolean("reduce_only"):
            position = self.accounts.get(session.account).position(instrument.symbol).quantity
            if position == 0 or (position > 0) == (side is Side.BUY):
                raise RpcError(wire.INVALID_AMOUNT, "reduce_only order would not reduce the position")
            lots = min(lots, abs(position))
        self.account_views.check_margin(session.account, instrument, side, lots, price)
        order_type = (
            OrderType.MARKET if is_market else OrderType.LIMIT_MAKER if post_only else OrderType.LIMIT
        )
        info = OrderInfo(
            session,
            client_order_id,
            label,
            not session.cancel_on_disconnect,
            wire.product_of(instrument),
        )
        result = self._venue_place(
            session,
            info,
            instrument,
            side,
            order_type,
            lots,
            price,
            TimeInForce.IOC if time_in_force == "immediate_or_cancel" else TimeInForce.GTC,
            client_order_id,
            reprice=post_only and not reject_post_only,
        )
        if not result.accepted:
            return self._refused(session, info, instrument, side, lots, price, result)
        return self._result_payload(result)

    def _venue_place(
        self,
        session: _Session,
        info: OrderInfo,
        instrument: Instrument,
        side: Side,
        order_type: OrderType,
        lots: int,
        price: int,
        time_in_force: TimeInForce,
        client_order_id: int | None,
        *,
        reprice: bool,
    ) -> OrderResult:
        self._end_batch()
        self.orders.expect(info)
        return self.venue.place(
            session.account or "",
            instrument.symbol,
            side,
            order_type,
            lots,
            price,
            time_in_force,
            None if client_order_id is None else f"{session.session_id}:{client_order_id}",
            reprice_post_only=reprice,
        )

    def _result_payload(self, result: OrderResult) -> dict[str, Any]:
        assert result.order is not None
        return self.orders.current(result.order, "insert")

    def _refused(
        self,
        session: _Session,
        info: OrderInfo,
        instrument: Instrument,
        side: Side,
        lots: int,
        price: int,
        result: OrderResult,
    ) -> dict[str, Any]:
        """A refused order: the venue's error, or a post-only cancelled with immediate_cancel."""
        reason = result.reason or RejectReason.UNKNOWN_SYMBOL
        error = thalex_error(reason)
        if error is not None:
            raise RpcError(*error)
        now = self.market.now_seconds()
        payload = immediately_cancelled_payload(
            next(self._rejected_ids), info, instrument, side, lots, price, now
        )
        subscription = session.subscriptions.get(ChannelKind.SESSION_ORDERS.value)
        if subscription is not None:
            subscription.pending.append(payload)
            self._mark_dirty(subscription)
        for subscription in self._private_subscriptions(session.account or "", ChannelKind.ACCOUNT_ORDERS):
            subscription.pending.append(payload)
            self._mark_dirty(subscription)
        return dict(payload)

    def _find_order(self, session: _Session, params: wire.Params) -> SimOrder:
        has_id = params.has("order_id")
        has_client_id = params.has("client_order_id")
        if has_id == has_client_id:
            raise RpcError(wire.INVALID_REQUEST, "exactly one of order_id and client_order_id is required")
        account = session.account or ""
        if has_id:
            order = self.engine.get_order(account, order_id=wire.parse_order_id(params.raw("order_id")))
        else:
            client_order_id = wire.parse_client_order_id(params.raw("client_order_id"))
            order = self.engine.get_order(account, client_order_id=f"{session.session_id}:{client_order_id}")
        if order is None or not order.is_open:
            raise RpcError(wire.ORDER_NOT_FOUND, "order not found")
        return order

    def _amend(self, session: _Session, params: wire.Params) -> dict[str, Any]:
        order = self._find_order(session, params)
        instrument = self.instruments[order.symbol]
        price = wire.to_ticks(instrument, params.required("price"))
        lots = wire.to_lots(instrument, params.required("amount"), allow_zero=True)
        params.choice("collar", ("ignore", "reject", "clamp"))
        if lots > order.quantity or price != order.price:
            extra = max(lots - (order.quantity - order.filled), 0)
            self.account_views.check_margin(order.account, instrument, order.side, extra, price)
        info = self.orders.infos.get(order.order_id)
        self._end_batch()
        if info is not None:
            info.change_reason = "amend"
        result = self.venue.amend(
            order.account, order.symbol, price=price, quantity=lots, order_id=order.order_id
        )
        if info is not None:
            info.change_reason = None
        if not result.accepted:
            reason = result.reason or RejectReason.UNKNOWN_ORDER
            error = thalex_error(reason)
            if error is not None:
                raise RpcError(*error)
            # post-only with reject_post_only amended into a cross: the venue deletes it
            if info is not None:
                info.change_reason = "amend"
            self._cancel_keep_batch(order, "immediate_cancel")
            return self.orders.current(order, "amend")
        return self.orders.current(order, "amend")

    def _cancel_keep_batch(self, order: SimOrder, delete_reason: str) -> None:
        info = self.orders.infos.get(order.order_id)
        if info is not None:
            info.delete_reason = delete_reason
        self.venue.cancel(order.account, order.symbol, order_id=order.order_id)

    def _cancel(self, session: _Session, params: wire.Params) -> dict[str, Any]:
        order = self._find_order(session, params)
        self._end_batch()
        result = self.venue.cancel(order.account, order.symbol, order_id=order.order_id)
        if not result.accepted:
            raise RpcError(wire.ORDER_NOT_FOUND, "order not found")
        return self.orders.current(order, "cancel")

    def _cancel_all(self, session: _Session, params: wire.Params) -> int:
        self._end_batch()
        result = self.venue.cancel_all(session.account or "")
        session.quotes.clear()
        return len(result.orders)

    # mass quoting ------------------------------------------------------------------------------------
    def _set_mm_protection(self, session: _Session, params: wire.Params) -> None:
        product = params.required_string("product")
        if product not in {wire.product_of(item) for item in self.instruments.values()}:
            raise RpcError(wire.UNKNOWN_PRODUCT, f"unknown product {product}")
        amount = params.raw("amount")
        if amount is not None:
            trade_text = quote_text = wire.number_text(amount, "amount")
        else:
            trade_text = wire.number_text(params.required("trade_amount"), "trade_amount")
            quote_text = wire.number_text(params.required("quote_amount"), "quote_amount")
        trade_amount, quote_amount = Decimal(trade_text), Decimal(quote_text)
        if trade_amount <= 0 or quote_amount <= 0:
            raise RpcError(wire.INVALID_AMOUNT, "protection amounts must be positive")
        if trade_amount > quote_amount and amount is None:
            raise RpcError(wire.INVALID_AMOUNT, "trade_amount must not exceed quote_amount")
        session.protection[product] = _Protection(trade_amount, quote_amount)
        self._push_protection(session, product, trade_amount, "refill")
        return None

    def _push_protection(self, session: _Session, product: str, remaining: Decimal, reason: str) -> None:
        subscription = session.subscriptions.get(ChannelKind.MM_PROTECTION.value)
        if subscription is not None:
            subscription.pending.append(
                {"product": product, "remaining_amount": wire.decimal_number(remaining), "reason": reason}
            )
            self._mark_dirty(subscription)

    def _protection_execution(
        self, session: _Session, product: str, instrument: Instrument, lots: int
    ) -> None:
        group = session.protection.get(product)
        if group is None or group.tripped:
            return
        group.executed += Decimal(instrument.lots_to_quantity(lots))
        remaining = group.trade_amount - group.executed
        self._push_protection(session, product, remaining, "executions")
        if remaining <= 0:
            group.tripped = True
            self.counters["protection_trips"] += 1
            self._pulls.append((session, product))
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_soon(self._process_pulls)

    def _process_pulls(self) -> None:
        """Pull the quotes of tripped protection groups (outside the venue call that tripped them)."""
        pulls, self._pulls = self._pulls, []
        for session, product in pulls:
            self._pull_quotes(session, product, "mm_protection")

    def _pull_quotes(self, session: _Session, product: str | None, delete_reason: str) -> None:
        for key, orders in list(session.quotes.items()):
            instrument = self.instruments[key[0]]
            if product is not None and wire.product_of(instrument) != product:
                continue
            for order in orders:
                if order.is_open:
                    self._cancel_with_reason(order, delete_reason)
            del session.quotes[key]

    def _reset_protection(self, session: _Session, product: str | None, reason: str) -> None:
        for name in list(session.protection):
            if product is None or name == product:
                del session.protection[name]
                self._push_protection(session, name, Decimal(0), reason)

    def _cancel_mass_quote(self, session: _Session, params: wire.Params) -> None:
        product = params.string("product")
        for other in list(self._account_sessions.get(session.account or "", ())):
            self._pull_quotes(other, product, "client_bulk_cancel")
            self._reset_protection(other, product, "client_cancel")
        return None

    def _mass_quote(self, session: _Session, params: wire.Params) -> dict[str, Any]:
        quotes = params.required("quotes")
        if not isinstance(quotes, list) or len(quotes) > _MAX_QUOTES:
            raise RpcError(wire.INVALID_REQUEST, f"quotes must be a list of at most {_MAX_QUOTES} items")
        style = _QuoteStyle(
            params.string("label"), params.boolean("post_only"), params.boolean("reject_post_only")
        )
        successes = 0
        errors: list[dict[str, Any]] = []
        for item in quotes:
            if not isinstance(item, dict):
                raise RpcError(wire.INVALID_REQUEST, "each quote is an object")
            instrument = self._instrument_or_error(item.get("i"))
            product = wire.product_of(instrument)
            group = session.protection.get(product)
            if group is None:
                raise RpcError(wire.PROTECTION_NOT_SET, f"market maker protection not set for {product}")
            for side_key, side in (("b", Side.BUY), ("a", Side.SELL)):
                if side_key not in item:
                    continue
                outcomes = self._quote_side(
                    session, instrument, group, side, _quote_levels(item[side_key]), style
                )
                for price_value, error in outcomes:
                    if error is None:
                        successes += 1
                        continue
                    failure: dict[str, Any] = {
                        "code": error.code,
                        "message": error.message,
                        "side": "bid" if side is Side.BUY else "ask",
                    }
                    if isinstance(price_value, int | float) and not isinstance(price_value, bool):
                        failure["price"] = price_value
                    errors.append(failure)
        return {"n_success": successes, "n_fail": len(errors), "errors": errors}

    def _quote_side(
        self,
        session: _Session,
        instrument: Instrument,
        group: _Protection,
        side: Side,
        levels: list[tuple[Any, Any]] | RpcError,
        style: _QuoteStyle,
    ) -> list[tuple[Any, RpcError | None]]:
        """Replace one side's quotes; one outcome (price as sent, error or None) per level.

        A level identical to a live quote (same price, same remaining amount) keeps that order
        and its queue priority; the side's other quotes are deleted, the new levels inserted.
        """
        if isinstance(levels, RpcError):
            return [(None, levels)]
        key = (instrument.symbol, side is Side.BUY)
        current = [order for order in session.quotes.get(key, []) if order.is_open]
        outcomes: list[tuple[Any, RpcError | None]] = []
        wanted: list[tuple[int, int, Any]] = []
        for price_value, amount_value in levels:
            try:
                if group.tripped:
                    raise RpcError(
                        wire.PROTECTION_NOT_SET, "protection group exhausted; refill with set_mm_protection"
                    )
                lots = wire.to_lots(instrument, amount_value, allow_zero=True)
                if lots == 0:  # removes the side
                    outcomes.append((price_value, None))
                    continue
                price = wire.to_ticks(instrument, price_value)
                if Decimal(instrument.lots_to_quantity(lots)) > group.quote_amount:
                    raise RpcError(wire.QUOTE_EXCEEDS_PROTECTION, "quote exceeds protection group size")
                wanted.append((price, lots, price_value))
            except RpcError as error:
                outcomes.append((price_value, error))
        kept: list[SimOrder] = []
        to_place: list[tuple[int, int, Any]] = []
        for price, lots, price_value in wanted:
            same = next(
                (
                    order
                    for order in current
                    if order.price == price and order.quantity - order.filled == lots and order not in kept
                ),
                None,
            )
            if same is None:
                to_place.append((price, lots, price_value))
            else:
                kept.append(same)
                outcomes.append((price_value, None))
        removal = "replaced" if wanted else "client_cancel"
        for order in current:
            if order not in kept and order.is_open:
                self._cancel_with_reason(order, removal)
        if not levels:  # an empty array removes the side
            outcomes.append((None, None))
        live = list(kept)
        for price, lots, price_value in to_place:
            info = OrderInfo(session, None, style.label, False, wire.product_of(instrument), mass_quote=True)
            result = self._venue_place(
                session,
                info,
                instrument,
                side,
                OrderType.LIMIT_MAKER if style.post_only else OrderType.LIMIT,
                lots,
                price,
                TimeInForce.GTC,
                None,
                reprice=style.post_only and not style.reject_post_only,
            )
            self._end_batch()
            if result.accepted and result.order is not None:
                if result.order.is_open:
                    live.append(result.order)
                outcomes.append((price_value, None))
                continue
            try:  # a post-only quote that would cross is deleted (immediate_cancel), not an error
                self._refused(session, info, instrument, side, lots, price, result)
                outcomes.append((price_value, None))
            except RpcError as error:
                outcomes.append((price_value, error))
        session.quotes[key] = live
        return outcomes

    # queries -------------------------------------------------------------------------------------------
    def _open_orders(self, session: _Session, params: wire.Params) -> list[dict[str, Any]]:
        name = params.string("instrument_name")
        return [
            self.orders.live(order, "existing")
            for order in self.engine.open_orders(session.account or "")
            if name is None or order.symbol == name
        ]

    def _portfolio_rpc(self, session: _Session, params: wire.Params) -> list[dict[str, Any]]:
        return self.account_views.portfolio(session.account or "", None)

    def _account_summary_rpc(self, session: _Session, params: wire.Params) -> dict[str, Any]:
        return self.account_views.summary(session.account or "")

    def _trade_history_rpc(self, session: _Session, params: wire.Params) -> dict[str, Any]:
        trades, bookmark = self._history(
            self._trade_history.get(session.account or "", deque()), params, "time"
        )
        return {"trades": trades, "bookmark": bookmark}

    def _order_history_rpc(self, session: _Session, params: wire.Params) -> dict[str, Any]:
        orders, bookmark = self._history(
            self._order_history.get(session.account or "", deque()), params, "close_time"
        )
        return {"orders": orders, "bookmark": bookmark}

    @staticmethod
    def _history(
        items: Iterable[dict[str, Any]], params: wire.Params, time_key: str
    ) -> tuple[list[dict[str, Any]], str | None]:
        limit = params.integer("limit", 100, low=1, high=1000)
        low = params.number("time_low")
        high = params.number("time_high")
        sort = params.choice("sort", ("asc", "desc"), "desc")
        names = params.string("instrument_names")
        wanted = set(names.split(",")) if names else None
        bookmark_text = params.string("bookmark")
        try:
            offset = int(bookmark_text) if bookmark_text else 0
        except ValueError:
            raise RpcError(wire.INVALID_REQUEST, "invalid bookmark") from None
        chosen = [
            item
            for item in items
            if (low is None or item.get(time_key, 0) >= low)
            and (high is None or item.get(time_key, 0) <= high)
            and (wanted is None or item["instrument_name"] in wanted)
        ]
        if sort == "desc":
            chosen.reverse()
        page = chosen[offset : offset + limit]
        more = offset + limit < len(chosen)
        return [dict(item) for item in page], str(offset + limit) if more else None


def _apply_level(view: dict[int, int], price: int, size: int) -> None:
    if size:
        view[price] = size
    else:
        view.pop(price, None)


def _quote_levels(side: Any) -> list[tuple[Any, Any]] | RpcError:
    """A mass-quote side: ``{"p","a"}`` (single level) or ``[[p, a], ...]`` (up to 10 levels)."""
    if isinstance(side, dict):
        if "a" not in side or ("p" not in side and side.get("a") != 0):
            return RpcError(wire.INVALID_REQUEST, "a quote side needs p and a")
        return [(side.get("p"), side["a"])]
    if isinstance(side, list):
        if len(side) > _MAX_QUOTE_LEVELS:
            return RpcError(wire.INVALID_REQUEST, f"at most {_MAX_QUOTE_LEVELS} levels per side")
        levels = []
        for level in side:
            if not isinstance(level, list) or len(level) != 2:
                return RpcError(wire.INVALID_REQUEST, "a quote level is [price, amount]")
            levels.append((level[0], level[1]))
        return levels
    return RpcError(wire.INVALID_REQUEST, "a quote side is {p, a} or [[p, a], ...]")


__all__ = ["PATH", "ThalexApiKey", "ThalexSimServer", "default_instruments", "thalex_perpetual"]
