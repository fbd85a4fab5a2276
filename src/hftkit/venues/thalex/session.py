"""The Thalex session: connect, login, cancel-on-disconnect, subscribe, reconcile.

Life of a connection (``on_connected`` runs after every connect, before the venue is ready):
load instruments (once) -> ``public/login`` -> ``private/set_cancel_on_disconnect`` (its
``message_rate`` sizes the local token bucket) -> private and public subscriptions -> mass-quote
protection groups re-applied -> reconcile open orders and positions -> ``ConnectionEvent
(state="synced")``. Until then order methods refuse locally: an order inserted before
cancel-on-disconnect is set would be persistent and outlive a crash.

The session owns the connection's state (readiness, connection epoch, closing) and tells the
market data and the order entry every change (``session_changed``), so their hot paths read
plain attributes of their own. What can be decided without I/O (the login parameters, the
answer of ``set_cancel_on_disconnect``, which subscriptions the venue refused) is a function.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import msgspec

from hftkit.core.clock import Clock
from hftkit.core.errors import HftkitError
from hftkit.core.types import BalanceUpdate, ConnectionEvent, OrderUpdate, PositionUpdate
from hftkit.metrics import Counter, MetricsRegistry
from hftkit.resilience import Priority
from hftkit.transport.websocket import (
    ConnectionState,
    DisconnectReason,
    ReconnectingWebSocket,
    WebSocketConnect,
    picows_connect,
)
from hftkit.venues.base import EventListener, RateLimitedError, VenueEvent
from hftkit.venues.thalex.auth import ThalexCredentials, TokenError, make_login_token
from hftkit.venues.thalex.codec import (
    ThalexAuthenticationError,
    ThalexCodec,
    ThalexError,
    ThalexPortfolioEntry,
    ThalexThrottledError,
    decoder_for,
)
from hftkit.venues.thalex.config import ThalexConfig
from hftkit.venues.thalex.errors import ThalexConnectionError, ThalexQueryError, ThalexTimeoutError
from hftkit.venues.thalex.rpc import (
    NotSentError,
    RpcProtocolError,
    RpcSession,
    RpcTimeoutError,
    SessionLostError,
)

logger = logging.getLogger(__name__)

PRIVATE_CHANNELS = ("session.orders", "account.trade_history", "account.portfolio")
MM_PROTECTION_CHANNEL = "session.mm_protection"

_T = TypeVar("_T")

# What converting one pushed item may raise on hostile input: counted, never allowed to escape
# the frame callback (nor, per item, to drop the rest of a push).
NOTIFICATION_ERRORS = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    RecursionError,  # nesting deeper than any venue push: malformed, not a crash
    HftkitError,
    ValueError,
    KeyError,
    TypeError,
    ArithmeticError,  # an overflowing number (int(inf), a huge exponent)
)


class Readiness(enum.Enum):
    DOWN = "down"
    SYNCING = "syncing"
    READY = "ready"


# -- events and notifications ----------------------------------------------------------------


class Listeners:
    """The adapter's listeners: every normalized event, synchronously, in arrival order."""

    __slots__ = ("_errors", "_listeners", "_name")

    def __init__(self, name: str, metrics: MetricsRegistry) -> None:
        self._name = name
        self._listeners: list[EventListener] = []
        self._errors = metrics.counter("thalex_listener_errors_total", venue=name)

    def add(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def emit(self, event: VenueEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                self._errors.inc()
                failures = int(self._errors.value)
                if failures & (failures - 1) == 0:  # 1st, 2nd, 4th, 8th ...: visible, never a flood
                    logger.exception("%s: event listener failed (%d so far)", self._name, failures)


NotificationHandler = Callable[[str, msgspec.Raw, int], None]


class ChannelRouter:
    """Channel notifications to their handler; a hostile push is counted, never raised."""

    __slots__ = ("_rpc", "handlers", "tap")

    def __init__(self) -> None:
        self.handlers: dict[str, NotificationHandler] = {}
        # set by a market-data recorder: (channel, raw notification, receive_ns) of every push
        self.tap: NotificationHandler | None = None
        self._rpc: RpcSession | None = None

    def bind(self, rpc: RpcSession) -> None:
        """The session whose malformed-input counters count what no handler could read."""
        self._rpc = rpc

    def on_notification(self, channel: str, payload: msgspec.Raw, receive_ns: int) -> None:
        if self.tap is not None:  # a recorder: sees every notification first
            self.tap(channel, payload, receive_ns)
        handler = self.handlers.get(channel)
        if handler is None:
            self._count_malformed("unknown_channel")
            return
        try:
            handler(channel, payload, receive_ns)
        except NOTIFICATION_ERRORS:
            self._count_malformed(channel_kind(channel))

    def _count_malformed(self, kind: str) -> None:
        if self._rpc is not None:
            self._rpc.count_malformed(kind)


def channel_kind(channel: str) -> str:
    """Malformed-input counter kind: the channel family for market data, the name otherwise."""
    family = channel.split(".", 1)[0]
    return family if family in ("book", "ticker", "lwt", "recent_trades") else channel


# -- queries ---------------------------------------------------------------------------------


class Queries:
    """Requests that change no order, their failures as the adapter's ``VenueError``s."""

    __slots__ = ("_metrics", "_name", "_rpc")

    def __init__(self, rpc: RpcSession, name: str, metrics: MetricsRegistry) -> None:
        self._rpc = rpc
        self._name = name
        self._metrics = metrics

    async def call(self, method: str, params: Mapping[str, Any]) -> msgspec.Raw:
        try:
            return await self._rpc.call(method, params, priority=Priority.NORMAL)
        except ThalexThrottledError as error:
            raise RateLimitedError(
                f"{method}: {error.message}", venue=self._name, retry_after_s=self._rpc.throttle_backoff_s
            ) from error
        except ThalexError as error:
            raise ThalexQueryError(f"{method}: {error.message}", venue=self._name, code=error.code) from error
        except (NotSentError, SessionLostError) as error:
            raise ThalexConnectionError(f"{method}: {error}", venue=self._name) from error
        except RpcTimeoutError as error:
            raise ThalexTimeoutError(f"{method}: {error}", venue=self._name) from error
        except RpcProtocolError as error:
            raise ThalexQueryError(f"{method}: {error}", venue=self._name) from error

    def decode(self, raw: msgspec.Raw, kind: type[_T], method: str) -> _T:
        try:
            return decoder_for(kind)(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as error:
            self._rpc.count_malformed(f"result:{method}")
            raise ThalexQueryError(f"{method}: unreadable answer ({error})", venue=self._name) from error

    async def subscribe(self, method: str, channels: list[str]) -> None:
        raw = await self.call(method, {"channels": channels})
        refused = refused_channels(channels, raw)
        if refused is None:
            self._rpc.count_malformed(f"result:{method}")
            return
        if refused:
            self._metrics.counter("thalex_refused_subscriptions_total", venue=self._name).inc(len(refused))
            logger.warning("%s: the venue did not subscribe %s", self._name, refused)


# -- sans-I/O pieces of the handshake --------------------------------------------------------


def login_params(credentials: ThalexCredentials, now_s: float) -> dict[str, Any]:
    """``public/login``'s parameters: a fresh signed token, and the account when one is named."""
    params: dict[str, Any] = {"token": make_login_token(credentials, now_s)}
    if credentials.account:
        params["account"] = credentials.account
    return params


def login_account_number(raw: msgspec.Raw) -> str | None:
    """The account number ``public/login`` answered with, if it did."""
    with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        result = msgspec.json.decode(raw)
        if isinstance(result, dict) and isinstance(result.get("account_number"), str):
            return str(result["account_number"])
    return None


def message_rate(raw: msgspec.Raw) -> float | None:
    """The session's message rate from ``set_cancel_on_disconnect``'s answer (None: unreadable)."""
    try:
        result = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    rate = result.get("message_rate") if isinstance(result, dict) else None
    if isinstance(rate, int | float) and not isinstance(rate, bool) and rate > 0:
        return float(rate)
    return None


def refused_channels(channels: Sequence[str], raw: msgspec.Raw) -> list[str] | None:
    """The channels a subscribe answer did not accept (None: the answer is unreadable)."""
    try:
        accepted = set(msgspec.json.decode(raw, type=list[str]))
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    return [channel for channel in channels if channel not in accepted]


class _Cash(msgspec.Struct, frozen=True):
    currency: str
    balance: float


class _AccountSummary(msgspec.Struct, frozen=True):
    cash: list[_Cash] = []


class _SystemEvent(msgspec.Struct, frozen=True):
    event: str = ""


# -- the parts the session drives ------------------------------------------------------------


class MarketDataPart(Protocol):
    """What the session needs of the market data (``market_data.MarketData``)."""

    def session_changed(self, readiness: Readiness, epoch: int, closing: bool) -> None: ...

    def has_instruments(self) -> bool: ...

    async def load_instruments(self) -> Any: ...

    def symbols(self, *, unsubscribed: bool = False) -> list[str]: ...

    async def subscribe_market(self, symbols: Sequence[str]) -> None: ...

    def on_disconnected(self, reason: str, book_state: str, now_ns: int) -> None: ...

    def start_stall_watch(self) -> None: ...

    def background_tasks(self) -> list[asyncio.Task[None]]: ...


class OrdersPart(Protocol):
    """What the session needs of the order entry (``orders.OrderEntry``)."""

    def session_changed(self, readiness: Readiness, epoch: int, closing: bool) -> None: ...

    def has_protection(self) -> bool: ...

    async def reapply_protection(self) -> None: ...

    async def reconcile_open_orders(self) -> list[OrderUpdate]: ...

    async def cancel_everything_on_exit(self) -> bool: ...

    def report_closed_on_exit(self, reason: str) -> None: ...

    def background_tasks(self) -> list[asyncio.Task[None]]: ...


# -- the session -----------------------------------------------------------------------------


class ThalexSession:
    """One logical session across reconnects: its readiness, handshake, reconciliation and account."""

    def __init__(
        self,
        config: ThalexConfig,
        *,
        rpc: RpcSession,
        queries: Queries,
        codec: ThalexCodec,
        emit: Callable[[VenueEvent], None],
        clock: Clock,
        metrics: MetricsRegistry,
        market: MarketDataPart,
        orders: OrdersPart,
        connect: WebSocketConnect = picows_connect,
    ) -> None:
        """``connect`` opens each connection (default: picows); fixed here, never per request."""
        self.config = config
        self.name = config.venue
        self._rpc = rpc
        self._queries = queries
        self._codec = codec
        self._emit = emit
        self._clock = clock
        self._market = market
        self._orders = orders
        self._connect = connect
        self.websocket: ReconnectingWebSocket | None = None
        self.epoch = 0
        self.readiness = Readiness.DOWN
        self.closing = False
        self.reconciled_open_orders: list[OrderUpdate] = []
        self.reconciled_positions: list[PositionUpdate] = []
        self.account_number: str | None = None
        self.last_system_event: str | None = None
        self._ready = asyncio.Event()
        self._settled = asyncio.Event()
        self._fatal: BaseException | None = None
        self._reconnects: Counter = metrics.counter("thalex_reconnects_total", venue=self.name)
        self._syncs: Counter = metrics.counter("thalex_synced_total", venue=self.name)
        self._publish()

    # -- state -----------------------------------------------------------------------------
    def _publish(self) -> None:
        """Tell the parts the session's state: their hot paths read their own copy, no hop."""
        self._market.session_changed(self.readiness, self.epoch, self.closing)
        self._orders.session_changed(self.readiness, self.epoch, self.closing)

    def set_readiness(self, readiness: Readiness) -> None:
        self.readiness = readiness
        if readiness is Readiness.READY:
            self._ready.set()
        else:
            self._ready.clear()
        self._publish()

    @property
    def is_ready(self) -> bool:
        return self.readiness is Readiness.READY

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout_s)

    def reconnect(self) -> None:
        if self.websocket is not None:
            self.websocket.reconnect()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and wait for the first synced session (or the login's refusal)."""
        self.closing = False
        self._publish()
        self._fatal = None
        self._settled.clear()
        self.websocket = ReconnectingWebSocket(
            self.config.websocket_config(),
            self._rpc.on_message,
            on_connected=self.on_connected,
            on_state=self.on_state,
            name=f"{self.name}-ws",
            connect=self._connect,
        )
        self.websocket.start()
        self._market.start_stall_watch()
        try:
            await asyncio.wait_for(self._settled.wait(), self.config.connect_timeout_s)
        except TimeoutError:
            await self.shutdown()
            raise ThalexConnectionError(
                f"no synced session within {self.config.connect_timeout_s:g}s", venue=self.name
            ) from None
        if self._fatal is not None:
            fatal = self._fatal
            await self.shutdown()
            raise fatal

    async def stop(self) -> None:
        """Shut down safe: pull our orders first (``cancel_on_exit``), then report them closed."""
        config = self.config
        cancelled = False
        if config.cancel_on_exit and self.is_ready and config.credentials is not None:
            cancelled = await self._orders.cancel_everything_on_exit()
        await self.shutdown()
        if cancelled or (config.credentials is not None and config.cancel_on_disconnect_s is not None):
            self._orders.report_closed_on_exit("cancelled on exit" if cancelled else "cancel_on_disconnect")

    async def shutdown(self) -> None:
        self.closing = True
        self._publish()
        tasks = self._market.background_tasks() + self._orders.background_tasks()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.websocket is not None:
            await self.websocket.close()
            self.websocket = None
        self._rpc.detach("adapter closed")
        self.set_readiness(Readiness.DOWN)

    # -- connection hooks ------------------------------------------------------------------
    async def on_connected(self, ws: ReconnectingWebSocket) -> None:
        self.epoch += 1
        if self.epoch > 1:
            self._reconnects.inc()
        self._rpc.attach(ws.send)
        self.set_readiness(Readiness.SYNCING)
        self._emit(ConnectionEvent(venue=self.name, stream="session", state="connected"))
        market = self._market
        try:
            if not market.has_instruments():
                await market.load_instruments()
            credentials = self.config.credentials
            if credentials is not None:
                await self._login(credentials)
                await self._subscribe_private()
                await self._orders.reapply_protection()
            await market.subscribe_market(market.symbols())
            if credentials is not None:
                await self._reconcile()
            # symbols added by subscribe() while this connection was still syncing
            added = market.symbols(unsubscribed=True)
            if added:
                await market.subscribe_market(added)
        except (ThalexAuthenticationError, TokenError) as error:
            logger.error("%s: login refused or impossible: %s", self.name, error)
            self._fatal = error
            self._settled.set()
            raise
        self.set_readiness(Readiness.READY)
        self._syncs.inc()
        self._emit(ConnectionEvent(venue=self.name, stream="session", state="synced"))
        self._settled.set()

    def on_state(self, state: ConnectionState, reason: DisconnectReason | None) -> None:
        if state is not ConnectionState.DISCONNECTED and state is not ConnectionState.CLOSED:
            return
        reason_text = reason.value if reason is not None else state.value
        had_session = self._rpc.attached
        self._rpc.detach(reason_text)
        self.set_readiness(Readiness.DOWN)
        if not had_session:
            return
        now = self._clock.monotonic_ns()
        self._emit(
            ConnectionEvent(
                venue=self.name, stream="session", state="disconnected", reason=reason_text, receive_ns=now
            )
        )
        self._market.on_disconnected(reason_text, "disconnected" if self.closing else "resyncing", now)

    async def _login(self, credentials: ThalexCredentials) -> None:
        raw = await self._rpc.call("public/login", login_params(credentials, self._clock.time_ns() / 1e9))
        number = login_account_number(raw)
        if number is not None:
            self.account_number = number
        if self.config.cancel_on_disconnect_s is not None:
            raw = await self._rpc.call(
                "private/set_cancel_on_disconnect", {"timeout_secs": self.config.cancel_on_disconnect_s}
            )
            rate = message_rate(raw)
            if rate is None:
                self._rpc.count_malformed("result:private/set_cancel_on_disconnect")
            else:
                self._rpc.set_message_rate(rate)

    async def _subscribe_private(self) -> None:
        channels = list(PRIVATE_CHANNELS)
        if self._orders.has_protection():
            channels.append(MM_PROTECTION_CHANNEL)
        await self._queries.subscribe("private/subscribe", channels)

    async def _reconcile(self) -> None:
        """After every (re)connect: the venue's open orders and positions, before quoting again."""
        orders = await self._orders.reconcile_open_orders()
        positions = await self.positions()
        for position in positions:
            self._emit(position)
        self.reconciled_open_orders = orders
        self.reconciled_positions = positions

    # -- account ---------------------------------------------------------------------------
    def on_portfolio(self, _channel: str, payload: msgspec.Raw, _receive_ns: int) -> None:
        for entry in msgspec.json.decode(payload, type=list[ThalexPortfolioEntry]):
            position = self._codec.position(entry)
            if position is not None:
                self._emit(position)

    def on_system(self, _channel: str, payload: msgspec.Raw, _receive_ns: int) -> None:
        event = msgspec.json.decode(payload, type=_SystemEvent)
        self.last_system_event = event.event
        logger.warning("%s: system event %r (the venue will close this connection)", self.name, event.event)

    async def balances(self) -> list[BalanceUpdate]:
        """``private/account_summary`` cash lines."""
        raw = await self._queries.call("private/account_summary", {})
        summary = self._queries.decode(raw, _AccountSummary, "private/account_summary")
        now_ms = self._clock.time_ns() // 1_000_000
        return [
            BalanceUpdate(
                venue=self.name, asset=cash.currency, free=Decimal(repr(cash.balance)), event_time_ms=now_ms
            )
            for cash in summary.cash
        ]

    async def positions(self) -> list[PositionUpdate]:
        """``private/portfolio``: one signed position per instrument."""
        raw = await self._queries.call("private/portfolio", {})
        positions: list[PositionUpdate] = []
        for entry in self._queries.decode(raw, list[ThalexPortfolioEntry], "private/portfolio"):
            position = self._codec.position(entry)
            if position is not None:
                positions.append(position)
        return positions
