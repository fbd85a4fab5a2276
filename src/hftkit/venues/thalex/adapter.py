"""The Thalex venue adapter: one WebSocket, one JSON-RPC session, normalized events.

Life of a connection (``on_connected`` runs after every connect, before the venue is ready):
load instruments (once) -> ``public/login`` -> ``private/set_cancel_on_disconnect`` (its
``message_rate`` sizes the local token bucket) -> private and public subscriptions -> mass-quote
protection groups re-applied -> reconcile open orders and positions -> ``ConnectionEvent
(state="synced")``. Until then order methods refuse locally: an order inserted before
cancel-on-disconnect is set would be persistent and outlive a crash.

Order outcomes follow ``hftkit.venues.base``: a venue error is a definitive reject (or not
found, or rate limited); a timeout, a dropped session or an unreadable answer is
``OrderOutcomeUnknownError`` and the order is settled later by a ``session.orders`` push, a late
answer, or the open-orders reconciliation, never by sending it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, TypeVar

import msgspec

from hftkit.book.order_book import OrderBook
from hftkit.book.sync import THALEX_RULES, BookSynchronizer, SyncAction
from hftkit.core.bounded import LruMap
from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.errors import HftkitError
from hftkit.core.types import (
    BalanceUpdate,
    BookTicker,
    ConnectionEvent,
    FeeCharge,
    Fill,
    Instrument,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionUpdate,
    TimeInForce,
)
from hftkit.metrics import MetricsRegistry
from hftkit.resilience import Priority
from hftkit.transport.websocket import (
    ConnectionState,
    DisconnectReason,
    ReconnectingWebSocket,
    WebSocketConfig,
)
from hftkit.venues.base import (
    AmendRequest,
    EventListener,
    MassQuote,
    MassQuoteReport,
    OrderAnswer,
    OrderNotFoundError,
    OrderOutcomeUnknownError,
    OrderRejectedError,
    OrderRequest,
    QuoteLevel,
    RateLimitedError,
    VenueCapabilities,
    VenueError,
    VenueEvent,
    VenueStatus,
    place_one_by_one,
)
from hftkit.venues.thalex.auth import ThalexCredentials, TokenError, make_login_token
from hftkit.venues.thalex.codec import (
    DIRECTION_NAMES,
    MassQuoteResult,
    ThalexAuthenticationError,
    ThalexBookLevelError,
    ThalexBookNotification,
    ThalexCodec,
    ThalexError,
    ThalexErrorCode,
    ThalexInstrument,
    ThalexOrderNotFoundError,
    ThalexOrderStatus,
    ThalexPortfolioEntry,
    ThalexThrottledError,
    ThalexTicker,
    ThalexTrade,
    insert_prefix,
    instrument_from_wire,
    number_to_steps,
    wire_number,
)
from hftkit.venues.thalex.rpc import (
    LateResponse,
    NotSentError,
    RpcProtocolError,
    RpcSession,
    RpcTimeoutError,
    SessionLostError,
)

logger = logging.getLogger(__name__)

PRODUCTION_URL = "wss://thalex.com/ws/api/v2"
TESTNET_URL = "wss://testnet.thalex.com/ws/api/v2"
DELAYS = frozenset({"100ms", "200ms", "500ms", "1000ms", "5000ms", "60000ms", "raw"})
PRIVATE_CHANNELS = ("session.orders", "account.trade_history", "account.portfolio")
MM_PROTECTION_CHANNEL = "session.mm_protection"
ORDER_METHODS = frozenset(
    {"private/insert", "private/amend", "private/cancel", "private/mass_quote", "private/cancel_all"}
)
MAX_MASS_QUOTE_ITEMS = 100
MAX_MASS_QUOTE_LEVELS = 10
_OUTCOME_UNKNOWN_CODES = frozenset({ThalexErrorCode.TEMPORARY_FAILURE})
_CLOSED_MEMORY = 4096  # last updates of recently closed orders: a late push repeating one is dropped

THALEX_CAPABILITIES = VenueCapabilities(
    amend=True,
    amend_keeps_priority_on_size_down=True,
    native_mass_quote=True,
    cancel_on_disconnect=True,
    post_only_reprices=True,
    positions=True,
)

_T = TypeVar("_T")


# -- errors ----------------------------------------------------------------------------------


class VenueNotReadyError(OrderRejectedError):
    """Refused locally: the session is not logged in, protected and reconciled. Nothing was sent."""


class ThalexConnectionError(VenueError, ConnectionError):
    """A query could not complete because the session is down or dropped while it was in flight."""


class ThalexTimeoutError(VenueError, TimeoutError):
    """A query got no answer in time."""


class ThalexQueryError(VenueError):
    """The venue answered a query with an error; ``code`` is its error code."""


# -- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ThalexConfig:
    """How the adapter connects, authenticates, subscribes and paces itself."""

    url: str = PRODUCTION_URL
    credentials: ThalexCredentials | None = None
    venue: str = "thalex"
    # Orders of this session are deleted by the venue when the connection drops (None: persistent).
    cancel_on_disconnect_s: int | None = 6
    request_timeout_s: float = 5.0
    connect_timeout_s: float = 15.0
    default_message_rate: float = 50.0  # until set_cancel_on_disconnect reports the session's own
    throttle_backoff_s: float = 1.0  # pause after a throttle error (code 4 / 3)
    book_grouping: str = "none"
    book_levels: str = "all"
    book_delay: str = "raw"
    ticker_delay: str | None = "1000ms"  # None: no ticker subscription
    reject_post_only: bool = False  # LIMIT_MAKER: cancel instead of reprice one tick away
    label: str | None = None
    mass_quote_label: str | None = None
    mass_quote_post_only: bool = True
    cancel_on_exit: bool = True
    # An insert of unknown outcome is settled by client order id until known: a query (open
    # orders, then history), then a cancel by client id; waits double from the first to the bound.
    settle_interval_s: float = 0.1
    settle_max_interval_s: float = 2.0
    symbols: tuple[str, ...] = ()  # market data subscribed from the start
    reconnect_base_delay_s: float = 0.1
    reconnect_max_delay_s: float = 5.0
    ping_idle_s: float = 5.0
    ping_reply_timeout_s: float = 5.0
    stale_timeout_s: float = 30.0
    # No book or ticker push for this long while books are synced: the stream stalled behind
    # a live session (pings and RPC answers still flow), so the books are marked unsynced and
    # resubscribed. Checked every quarter of it, so a stall shows within 1.25x (0 disables).
    stall_timeout_s: float = 1.5
    fill_memory: int = 65_536  # (trade id, order id) pairs remembered to drop duplicate fills

    def __post_init__(self) -> None:
        for name in ("book_delay", "ticker_delay"):
            value = getattr(self, name)
            if value is not None and value not in DELAYS:
                raise ValueError(f"ThalexConfig.{name} must be one of {sorted(DELAYS)}, got {value!r}")
        if self.cancel_on_disconnect_s is not None and self.cancel_on_disconnect_s <= 0:
            raise ValueError("ThalexConfig.cancel_on_disconnect_s must be positive or None")
        if self.request_timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("ThalexConfig timeouts must be positive")
        if self.default_message_rate <= 0:
            raise ValueError("ThalexConfig.default_message_rate must be positive")

    def book_channel(self, symbol: str) -> str:
        return f"book.{symbol}.{self.book_grouping}.{self.book_levels}.{self.book_delay}"

    def ticker_channel(self, symbol: str) -> str:
        return f"ticker.{symbol}.{self.ticker_delay}"

    def websocket_config(self) -> WebSocketConfig:
        return WebSocketConfig(
            urls=(self.url,),
            reconnect_base_delay_s=self.reconnect_base_delay_s,
            reconnect_max_delay_s=self.reconnect_max_delay_s,
            stale_timeout_s=self.stale_timeout_s,
            ping_idle_s=self.ping_idle_s,
            ping_reply_timeout_s=self.ping_reply_timeout_s,
            max_connection_age_s=0,
            extra_headers=(("User-Agent", "hftkit"),),
        )


# -- client order ids ------------------------------------------------------------------------


class ClientOrderIds:
    """Our string client order ids <-> Thalex's uint64 ``client_order_id``.

    Numbers only grow, starting from a clock-derived value, so ids of orders left by an earlier
    process never collide with new ones. Retired ids stay resolvable for a while (a trade-history
    push can arrive after the order closed), then the oldest are forgotten.
    """

    _UINT64 = 1 << 64

    def __init__(self, start: int, retired_memory: int = 4096) -> None:  # late pushes come within seconds
        if not 0 < start < self._UINT64:
            raise ValueError("start must be a positive uint64")
        self._next = start
        self.by_wire: dict[int, str] = {}
        self._by_ours: dict[str, tuple[int, int]] = {}  # ours -> (wire id, connection epoch)
        self._retired: OrderedDict[str, None] = OrderedDict()
        self._retired_memory = retired_memory

    def assign(self, ours: str, epoch: int) -> int:
        if ours in self._by_ours and ours not in self._retired:
            raise ValueError(f"client order id {ours!r} is already live")
        self._forget(ours)
        wire = self._next
        self._next = (self._next + 1) % self._UINT64 or 1
        self.by_wire[wire] = ours
        self._by_ours[ours] = (wire, epoch)
        return wire

    def wire(self, ours: str) -> tuple[int, int] | None:
        """(wire id, epoch of the connection that assigned it), or None."""
        return self._by_ours.get(ours)

    def ours(self, wire: int) -> str | None:
        return self.by_wire.get(wire)

    def release(self, ours: str) -> None:
        """The order never existed (definitive reject): forget it at once."""
        self._forget(ours)

    def retire(self, ours: str) -> None:
        """The order is closed: keep the mapping for late pushes, bounded."""
        if ours not in self._by_ours or ours in self._retired:
            return
        self._retired[ours] = None
        while len(self._retired) > self._retired_memory:
            oldest, _ = self._retired.popitem(last=False)
            self._forget(oldest)

    def _forget(self, ours: str) -> None:
        entry = self._by_ours.pop(ours, None)
        if entry is not None:
            self.by_wire.pop(entry[0], None)
        self._retired.pop(ours, None)

    def __len__(self) -> int:
        return len(self._by_ours)


# -- private wire payloads only the adapter reads --------------------------------------------


class _Cash(msgspec.Struct, frozen=True):
    currency: str
    balance: float


class _AccountSummary(msgspec.Struct, frozen=True):
    cash: list[_Cash] = []


class _OrderHistory(msgspec.Struct, frozen=True):
    # historical orders carry no remaining_amount (they are closed): see _decode_history
    orders: list[dict[str, Any]] = []


class _MmProtectionUpdate(msgspec.Struct, frozen=True):
    product: str
    remaining_amount: float
    reason: str = ""


class _SystemEvent(msgspec.Struct, frozen=True):
    event: str = ""


class _BookState:
    __slots__ = (
        "book",
        "books",
        "channel",
        "expect_full",
        "resync_task",
        "subscribed_epoch",
        "sync",
        "trades",
    )

    def __init__(self, symbol: str, channel: str) -> None:
        self.book = OrderBook(symbol)
        self.sync = BookSynchronizer(self.book, THALEX_RULES)  # owns the synced/unsynced state
        self.channel = channel
        self.subscribed_epoch = 0  # the connection on which the channel was last subscribed
        # the next push is the full book (sent after a subscribe); until then pushes are dropped
        self.expect_full = False
        self.resync_task: asyncio.Task[None] | None = None
        self.books = False
        self.trades = False


class _Readiness(enum.Enum):
    DOWN = "down"
    SYNCING = "syncing"
    READY = "ready"


# -- the adapter -----------------------------------------------------------------------------


# What converting one pushed order or trade may raise on hostile input: counted per item, never
# allowed to drop the rest of the push.
_ITEM_ERRORS = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    RecursionError,
    HftkitError,
    ValueError,
    KeyError,
    TypeError,
    ArithmeticError,
)


class ThalexAdapter:
    """``VenueAdapter`` for Thalex. Use as ``async with ThalexAdapter(config) as venue``."""

    capabilities = THALEX_CAPABILITIES

    def __init__(
        self,
        config: ThalexConfig,
        *,
        metrics: MetricsRegistry | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.config = config
        self.name = config.venue
        self.metrics = metrics if metrics is not None else MetricsRegistry()
        # the per-level work of a book change, done once here (the one owner of the book)
        self._book_apply = self.metrics.histogram("book_apply_ns", venue=self.name)
        self._clock = clock
        self.order_written: Callable[[str, int], None] | None = None
        # set by a market-data recorder: (channel, raw notification, receive_ns) of every push
        self.notification_tap: Callable[[str, msgspec.Raw, int], None] | None = None
        self._instruments: dict[str, Instrument] = {}
        self._products: dict[str, str] = {}
        self._codec = ThalexCodec(config.venue, self._instruments)
        self._rpc = RpcSession(
            on_notification=self._on_notification,
            on_late_response=self._on_late_response,
            venue=config.venue,
            metrics=self.metrics,
            clock=clock,
            default_timeout_s=config.request_timeout_s,
            message_rate=config.default_message_rate,
            throttle_backoff_s=config.throttle_backoff_s,
        )
        self._ids = ClientOrderIds(start=max(1, clock.time_ns() // 1000))
        self._live: dict[str, OrderUpdate] = {}
        self._closed: OrderedDict[str, OrderUpdate] = OrderedDict()  # last updates of closed orders
        # the last wire state converted per venue order id (a push repeating an answer is skipped)
        self._order_states: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        self.stats_repeated_updates = 0
        # inserts of unknown outcome: client id -> (request, connection epoch it was sent on)
        self._unresolved: dict[str, tuple[OrderRequest, int]] = {}
        self._settlers: set[asyncio.Task[None]] = set()
        self._seen_fills: OrderedDict[tuple[str, str | None], bool] = OrderedDict()
        self._listeners: list[EventListener] = []
        self._books: dict[str, _BookState] = {}
        self._tickers: dict[str, ThalexTicker] = {}
        self._channel_handlers: dict[str, Callable[[str, msgspec.Raw, int], None]] = {}
        self._mm_protection: dict[str, tuple[str, str]] = {}
        # keyed by the product the venue names in a push: bounded (LRU), evictions counted
        self.mm_protection_remaining: LruMap[str, float] = LruMap(256)
        self.reconciled_open_orders: list[OrderUpdate] = []
        self.reconciled_positions: list[PositionUpdate] = []
        self.account_number: str | None = None
        self.last_system_event: str | None = None
        self._ws: ReconnectingWebSocket | None = None
        self._epoch = 0
        self._readiness = _Readiness.DOWN
        self._ready = asyncio.Event()
        self._settled = asyncio.Event()
        self._fatal: BaseException | None = None
        self._closing = False
        self._reconnects = self.metrics.counter("thalex_reconnects_total", venue=self.name)
        self._syncs = self.metrics.counter("thalex_synced_total", venue=self.name)
        self._listener_errors = self.metrics.counter("thalex_listener_errors_total", venue=self.name)
        self._duplicate_fills = self.metrics.counter("thalex_duplicate_fills_total", venue=self.name)
        self._stall_watch: asyncio.Task[None] | None = None
        self._market_data_ns = clock.monotonic_ns()  # the last book or ticker push
        self._register_private_handlers()
        for symbol in config.symbols:
            self._want_market_data(symbol, books=True, trades=True)

    def __repr__(self) -> str:
        # never the private key: tracebacks and debuggers print objects whole
        return f"ThalexAdapter({self.name}, {self.config.url})"

    # -- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> ThalexAdapter:
        self._closing = False
        self._fatal = None
        self._settled.clear()
        self._ws = ReconnectingWebSocket(
            self.config.websocket_config(),
            self._rpc.on_message,
            on_connected=self._on_connected,
            on_state=self._on_state,
            name=f"{self.name}-ws",
        )
        self._ws.start()
        if self.config.stall_timeout_s > 0 and self._stall_watch is None:
            self._stall_watch = asyncio.get_running_loop().create_task(
                self._watch_stalls(), name=f"{self.name}-stall-watch"
            )
        try:
            await asyncio.wait_for(self._settled.wait(), self.config.connect_timeout_s)
        except TimeoutError:
            await self._shutdown()
            raise ThalexConnectionError(
                f"no synced session within {self.config.connect_timeout_s:g}s", venue=self.name
            ) from None
        if self._fatal is not None:
            fatal = self._fatal
            await self._shutdown()
            raise fatal
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        cancelled = False
        if self.config.cancel_on_exit and self.is_ready and self.config.credentials is not None:
            cancelled = await self._cancel_everything_on_exit()
        await self._shutdown()
        if cancelled or (
            self.config.credentials is not None and self.config.cancel_on_disconnect_s is not None
        ):
            self._report_closed_on_exit("cancelled on exit" if cancelled else "cancel_on_disconnect")

    def _report_closed_on_exit(self, reason: str) -> None:
        """Every order of this session is gone (cancelled on exit, or pulled by the venue when the
        session closed): say so as events, so no tracker keeps an order open after we left."""
        now = self._clock.monotonic_ns()
        for update in list(self._live.values()):
            closed = msgspec.structs.replace(
                update, status=OrderStatus.CANCELED, reason=reason, receive_ns=now
            )
            self._track(closed)
            self._emit(closed)
        for request, _ in list(self._unresolved.values()):
            self._emit_absent(request, OrderStatus.CANCELED, f"{reason}: its outcome was never known")

    async def _cancel_everything_on_exit(self) -> bool:
        """Shut down safe: pull this session's orders before closing (logged, never raised);
        True when the venue confirmed it."""
        method = "private/cancel_session" if self.config.cancel_on_disconnect_s else "private/cancel_all"
        try:
            await self._rpc.call(method, {}, timeout_s=min(1.0, self.config.request_timeout_s))
            logger.info("%s: %s on exit", self.name, method)
        except (ThalexError, HftkitError, ConnectionError) as error:
            logger.warning("%s: %s on exit failed: %s", self.name, method, error)
            return False
        # nothing of ours rests now; give each insert of unknown outcome its known end (bounded)
        pending = list(self._unresolved)
        if pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.request_timeout_s):
                    await asyncio.gather(*(self._settle_quietly(cid) for cid in pending))
        return True

    async def _shutdown(self) -> None:
        self._closing = True
        tasks = [state.resync_task for state in self._books.values() if state.resync_task is not None]
        tasks += self._settlers
        if self._stall_watch is not None:
            tasks.append(self._stall_watch)
            self._stall_watch = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        self._rpc.detach("adapter closed")
        self._set_readiness(_Readiness.DOWN)

    @property
    def is_ready(self) -> bool:
        """Logged in, protected, subscribed and reconciled on the current connection."""
        return self._readiness is _Readiness.READY

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout_s)

    def reconnect(self) -> None:
        """Drop the connection and go through the whole login/resubscribe/reconcile again."""
        if self._ws is not None:
            self._ws.reconnect()

    @property
    def rpc(self) -> RpcSession:
        return self._rpc

    @property
    def websocket(self) -> ReconnectingWebSocket | None:
        return self._ws

    # -- connection hooks ----------------------------------------------------------------
    async def _on_connected(self, ws: ReconnectingWebSocket) -> None:
        self._epoch += 1
        if self._epoch > 1:
            self._reconnects.inc()
        self._rpc.attach(ws.send)
        self._set_readiness(_Readiness.SYNCING)
        self._emit(ConnectionEvent(venue=self.name, stream="session", state="connected"))
        try:
            if not self._instruments:
                await self.load_instruments()
            credentials = self.config.credentials
            if credentials is not None:
                await self._login(credentials)
                await self._subscribe_private()
                for product, (trade_amount, quote_amount) in self._mm_protection.items():
                    await self._call_query(
                        "private/set_mm_protection",
                        {
                            "product": product,
                            "trade_amount": wire_number(trade_amount),
                            "quote_amount": wire_number(quote_amount),
                        },
                    )
            await self._subscribe_market(list(self._books))
            if credentials is not None:
                await self._reconcile()
            # symbols added by subscribe() while this connection was still syncing
            added = [symbol for symbol, book in self._books.items() if book.subscribed_epoch != self._epoch]
            if added:
                await self._subscribe_market(added)
        except (ThalexAuthenticationError, TokenError) as error:
            logger.error("%s: login refused or impossible: %s", self.name, error)
            self._fatal = error
            self._settled.set()
            raise
        self._set_readiness(_Readiness.READY)
        self._syncs.inc()
        self._emit(ConnectionEvent(venue=self.name, stream="session", state="synced"))
        self._settled.set()

    def _on_state(self, state: ConnectionState, reason: DisconnectReason | None) -> None:
        if state is not ConnectionState.DISCONNECTED and state is not ConnectionState.CLOSED:
            return
        reason_text = reason.value if reason is not None else state.value
        had_session = self._rpc.attached
        self._rpc.detach(reason_text)
        self._set_readiness(_Readiness.DOWN)
        if not had_session:
            return
        now = self._clock.monotonic_ns()
        self._emit(
            ConnectionEvent(
                venue=self.name, stream="session", state="disconnected", reason=reason_text, receive_ns=now
            )
        )
        book_state = "disconnected" if self._closing else "resyncing"
        for state_of_book in self._books.values():
            state_of_book.expect_full = False
            if state_of_book.sync.is_synced:
                state_of_book.sync.request_resync(f"disconnected: {reason_text}")
            self._emit(
                ConnectionEvent(
                    venue=self.name,
                    stream=state_of_book.channel,
                    state=book_state,
                    reason=reason_text,
                    receive_ns=now,
                )
            )

    def _set_readiness(self, readiness: _Readiness) -> None:
        self._readiness = readiness
        if readiness is _Readiness.READY:
            self._ready.set()
        else:
            self._ready.clear()

    async def _login(self, credentials: ThalexCredentials) -> None:
        params: dict[str, Any] = {"token": make_login_token(credentials, self._clock.time_ns() / 1e9)}
        if credentials.account:
            params["account"] = credentials.account
        raw = await self._rpc.call("public/login", params)
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            result = msgspec.json.decode(raw)
            if isinstance(result, dict) and isinstance(result.get("account_number"), str):
                self.account_number = result["account_number"]
        if self.config.cancel_on_disconnect_s is not None:
            raw = await self._rpc.call(
                "private/set_cancel_on_disconnect", {"timeout_secs": self.config.cancel_on_disconnect_s}
            )
            rate = _message_rate(raw)
            if rate is None:
                self._rpc.count_malformed("result:private/set_cancel_on_disconnect")
            else:
                self._rpc.set_message_rate(rate)

    async def _subscribe_private(self) -> None:
        channels = list(PRIVATE_CHANNELS)
        if self._mm_protection:
            channels.append(MM_PROTECTION_CHANNEL)
        await self._subscribe("private/subscribe", channels)

    async def _subscribe_market(self, symbols: Sequence[str]) -> None:
        channels: list[str] = []
        for symbol in symbols:
            state = self._books[symbol]
            if state.sync.is_synced:
                state.sync.request_resync("resubscribed")
            state.expect_full = True  # the first push after (re)subscribing is the full book
            state.subscribed_epoch = self._epoch
            channels.append(state.channel)
            if self.config.ticker_delay is not None:
                channels.append(self.config.ticker_channel(symbol))
        if channels:
            self._market_data_ns = self._clock.monotonic_ns()  # the full books are due now
            await self._subscribe("public/subscribe", channels)

    async def _subscribe(self, method: str, channels: list[str]) -> None:
        raw = await self._call_query(method, {"channels": channels})
        try:
            accepted = set(msgspec.json.decode(raw, type=list[str]))
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            self._rpc.count_malformed(f"result:{method}")
            return
        refused = [channel for channel in channels if channel not in accepted]
        if refused:
            self.metrics.counter("thalex_refused_subscriptions_total", venue=self.name).inc(len(refused))
            logger.warning("%s: the venue did not subscribe %s", self.name, refused)

    async def _reconcile(self) -> None:
        """After every (re)connect: the venue's open orders and positions, before quoting again."""
        orders = await self.open_orders()
        open_at_venue = {update.client_order_id for update in orders}
        gone = {cid: update for cid, update in self._live.items() if cid not in open_at_venue}
        for client_order_id in gone:
            del self._live[client_order_id]  # closed while we were away (cancel-on-disconnect, fills)
        for update in orders:
            self._emit(update)
        if gone:
            await self._report_closed(gone)
        positions = await self.positions()
        for position in positions:
            self._emit(position)
        self.reconciled_open_orders = orders
        self.reconciled_positions = positions

    async def _report_closed(self, gone: Mapping[str, OrderUpdate]) -> None:
        """Orders that closed while we were away: report their final state, never leave them open.

        The final state (and any missed fills) comes from ``private/order_history``, through the
        same path as a push, so fills already seen are not emitted twice. An order the history
        does not show belonged to a cancel-on-disconnect session only if the venue deleted it
        when the connection dropped (Thalex keeps no history of unfilled session orders): it is
        reported CANCELED; otherwise its final state stays unknown and is logged.
        """
        now = self._clock.monotonic_ns()
        wanted = {update.venue_order_id: update for update in gone.values() if update.venue_order_id}
        for symbol in sorted({update.symbol for update in gone.values()}):
            try:
                raw = await self._call_query(
                    "private/order_history", {"instrument_names": symbol, "limit": 100}
                )
                history = self._decode_history(raw)
            except ThalexQueryError as error:
                logger.warning("%s: order history of %s unavailable: %s", self.name, symbol, error)
                continue
            for order in history:
                if order.order_id in wanted:
                    del wanted[order.order_id]
                    self._apply_order_status(order, now)
        if not wanted:
            return
        if self.config.cancel_on_disconnect_s is None:
            logger.warning("%s: final state unknown for closed orders %s", self.name, sorted(wanted))
            return
        for update in wanted.values():
            closed = msgspec.structs.replace(
                update, status=OrderStatus.CANCELED, reason="cancel_on_disconnect", receive_ns=now
            )
            self._track(closed)
            self._emit(closed)

    # -- listeners -----------------------------------------------------------------------
    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def _emit(self, event: VenueEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                self._listener_errors.inc()
                failures = int(self._listener_errors.value)
                if failures & (failures - 1) == 0:  # 1st, 2nd, 4th, 8th ...: visible, never a flood
                    logger.exception("%s: event listener failed (%d so far)", self.name, failures)

    # -- instruments and market data -----------------------------------------------------
    @property
    def instruments(self) -> Mapping[str, Instrument]:
        return MappingProxyType(self._instruments)

    def product_of(self, symbol: str) -> str | None:
        return self._products.get(symbol)

    async def load_instruments(self) -> dict[str, Instrument]:
        """``public/instruments``: active outrights (combinations are skipped)."""
        raw = await self._call_query("public/instruments", {})
        items = self._decode_query(raw, list[msgspec.Raw], "public/instruments")
        for item in items:
            try:
                wire = msgspec.json.decode(item, type=ThalexInstrument)
                instrument = instrument_from_wire(self.name, wire)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, HftkitError, ValueError):
                self._rpc.count_malformed("instrument")
                continue
            if instrument is None:
                continue
            self._instruments[instrument.symbol] = instrument
            if wire.product:
                self._products[instrument.symbol] = wire.product
        return dict(self._instruments)

    def book(self, symbol: str) -> OrderBook | None:
        state = self._books.get(symbol)
        return None if state is None else state.book

    def status(self) -> VenueStatus:
        """The session's message-rate bucket used (a one-second burst at the session's rate)."""
        bucket = self._rpc.bucket
        used = 1.0 - max(0.0, bucket.tokens) / bucket.capacity if bucket.capacity else 0.0
        return VenueStatus({"messages_1s": min(1.0, max(0.0, used))}, {})

    def book_synced(self, symbol: str) -> bool:
        state = self._books.get(symbol)
        return state is not None and state.sync.is_synced

    def synchronizer(self, symbol: str) -> BookSynchronizer | None:
        """The book's synchronizer: its counters (gaps, crossed books, stalls) are the book's health."""
        state = self._books.get(symbol)
        return None if state is None else state.sync

    def ticker(self, symbol: str) -> ThalexTicker | None:
        """The latest ``ticker`` push (mark price, index, funding) for a subscribed symbol."""
        return self._tickers.get(symbol)

    async def subscribe(self, symbols: Sequence[str], *, books: bool = True, trades: bool = True) -> None:
        """Book (with its trades) and ticker channels; kept across reconnects."""
        if self._instruments:
            unknown = [symbol for symbol in symbols if symbol not in self._instruments]
            if unknown:
                raise VenueError(f"unknown Thalex instruments: {unknown}", venue=self.name)
        for symbol in symbols:
            self._want_market_data(symbol, books=books, trades=trades)
        if self._readiness is not _Readiness.READY:
            return  # the connection being synced (or the next one) subscribes them
        missing = [symbol for symbol in symbols if self._books[symbol].subscribed_epoch != self._epoch]
        if missing:
            await self._subscribe_market(missing)

    def _want_market_data(self, symbol: str, *, books: bool, trades: bool) -> None:
        state = self._books.get(symbol)
        if state is None:
            state = _BookState(symbol, self.config.book_channel(symbol))
            self._books[symbol] = state
            self._channel_handlers[state.channel] = functools.partial(self._on_book, symbol)
            if self.config.ticker_delay is not None:
                ticker = self.config.ticker_channel(symbol)
                self._channel_handlers[ticker] = functools.partial(self._on_ticker, symbol)
        state.books = state.books or books
        state.trades = state.trades or trades

    # -- notifications -------------------------------------------------------------------
    def _register_private_handlers(self) -> None:
        self._channel_handlers["session.orders"] = self._on_orders
        self._channel_handlers["account.orders"] = self._on_orders
        self._channel_handlers["account.trade_history"] = self._on_trades
        self._channel_handlers["account.portfolio"] = self._on_portfolio
        self._channel_handlers[MM_PROTECTION_CHANNEL] = self._on_mm_protection
        self._channel_handlers["system"] = self._on_system

    def _on_notification(self, channel: str, payload: msgspec.Raw, receive_ns: int) -> None:
        if self.notification_tap is not None:  # a recorder: sees every notification first
            self.notification_tap(channel, payload, receive_ns)
        handler = self._channel_handlers.get(channel)
        if handler is None:
            self._rpc.count_malformed("unknown_channel")
            return
        try:
            handler(channel, payload, receive_ns)
        except (
            msgspec.DecodeError,
            msgspec.ValidationError,
            RecursionError,  # nesting deeper than any venue push: malformed, not a crash
            HftkitError,
            ValueError,
            KeyError,
            TypeError,
            ArithmeticError,  # an overflowing number (int(inf), a huge exponent)
        ):
            self._rpc.count_malformed(_channel_kind(channel))

    def _on_book(self, symbol: str, channel: str, payload: msgspec.Raw, receive_ns: int) -> None:
        self._market_data_ns = self._clock.monotonic_ns()
        state = self._books[symbol]
        sync = state.sync
        is_snapshot = state.expect_full
        if not is_snapshot and not sync.is_synced:
            return  # a push of the subscription being replaced: the full book follows the resubscribe
        wire = msgspec.json.decode(payload, type=ThalexBookNotification)
        try:
            delta = self._codec.book_delta(symbol, wire, is_snapshot=is_snapshot, receive_ns=receive_ns)
        except ThalexBookLevelError as error:
            self._rpc.count_malformed(f"book_level:{error.kind}")
            self._resync_book(state, f"malformed level ({error.kind}): {error}")
            return
        if delta is None:
            return
        trades = [] if is_snapshot or not state.trades else self._codec.book_trades(symbol, wire, receive_ns)
        if is_snapshot:
            state.expect_full = False
            if sync.on_snapshot(-1, delta.bids, delta.asks) is not SyncAction.APPLIED:
                self._resync_book(state, sync.last_gap_reason)
                return
            synced = ConnectionEvent(venue=self.name, stream=channel, state="synced", receive_ns=receive_ns)
            self._emit(synced)
        else:
            started = time.perf_counter_ns()
            applied = sync.on_depth(-1, -1, -1, delta.bids, delta.asks)
            self._book_apply.record(time.perf_counter_ns() - started)
            if applied is not SyncAction.APPLIED:
                self._resync_book(state, sync.last_gap_reason)  # crossed: the book is not the venue's
                return
        if state.books:
            self._emit(delta)
        for trade in trades:  # the first push may repeat old trades: only later pushes are live
            self._emit(trade)

    def _on_ticker(self, symbol: str, _channel: str, payload: msgspec.Raw, receive_ns: int) -> None:
        self._market_data_ns = self._clock.monotonic_ns()
        ticker = msgspec.json.decode(payload, type=ThalexTicker)
        self._tickers[symbol] = ticker
        instrument = self._instruments.get(symbol)
        if (
            instrument is None
            or ticker.best_bid_price is None
            or ticker.best_ask_price is None
            or ticker.best_bid_amount is None
            or ticker.best_ask_amount is None
        ):
            return
        self._emit(
            BookTicker(
                venue=self.name,
                symbol=symbol,
                update_id=-1,  # Thalex tickers carry no sequence number
                bid_price=number_to_steps(instrument, ticker.best_bid_price, price=True),
                bid_size=number_to_steps(instrument, ticker.best_bid_amount, price=False),
                ask_price=number_to_steps(instrument, ticker.best_ask_price, price=True),
                ask_size=number_to_steps(instrument, ticker.best_ask_amount, price=False),
                event_time_ms=int(ticker.mark_timestamp * 1000),
                receive_ns=receive_ns,
            )
        )

    # -- book resync and stall watch ---------------------------------------------------------
    def _resync_book(self, state: _BookState, reason: str, *, stalled: bool = False) -> None:
        """Mark the book unsynced (once) and resubscribe its channel for a fresh full book."""
        sync = state.sync
        if sync.is_synced:
            if stalled:
                sync.report_stall(reason)
            else:
                sync.request_resync(reason)
        elif stalled:
            return
        state.expect_full = False
        now = self._clock.monotonic_ns()
        self._emit(
            ConnectionEvent(
                venue=self.name, stream=state.channel, state="resyncing", reason=reason, receive_ns=now
            )
        )
        self._start_resubscribe(state)

    def _start_resubscribe(self, state: _BookState) -> None:
        if self._closing or not self._rpc.attached or state.subscribed_epoch != self._epoch:
            return  # not subscribed on this connection: the next subscribe brings the full book
        if state.resync_task is None or state.resync_task.done():
            state.resync_task = asyncio.get_running_loop().create_task(
                self._resubscribe(state), name=f"{self.name}:{state.channel}:resubscribe"
            )

    async def _resubscribe(self, state: _BookState) -> None:
        """Unsubscribe, then subscribe: once the unsubscribe is answered no old push can follow."""
        epoch = self._epoch
        try:
            with contextlib.suppress(ThalexQueryError):  # not subscribed any more: fine
                await self._call_query("unsubscribe", {"channels": [state.channel]})
            if epoch != self._epoch or self._closing:
                return
            state.expect_full = True
            self._market_data_ns = self._clock.monotonic_ns()
            await self._subscribe("public/subscribe", [state.channel])
        except (VenueError, HftkitError, ConnectionError) as error:
            state.expect_full = False  # the stall watch tries again
            logger.warning("%s: resubscribing %s failed: %s", self.name, state.channel, error)
        finally:
            if state.resync_task is asyncio.current_task():
                state.resync_task = None

    async def _watch_stalls(self) -> None:
        """Books are only as fresh as their stream: no push within the timeout resyncs them."""
        timeout_ns = int(self.config.stall_timeout_s * 1e9)
        while True:
            await asyncio.sleep(self.config.stall_timeout_s / 4)
            if self._closing or not self._rpc.attached:
                continue
            now = self._clock.monotonic_ns()
            silent_ns = now - self._market_data_ns
            if silent_ns < timeout_ns:
                continue
            current = [state for state in self._books.values() if state.subscribed_epoch == self._epoch]
            if not current:
                continue
            self._market_data_ns = now  # re-armed: the resubscribed books get a full timeout
            reason = f"stalled: no market data for {silent_ns / 1e9:.2f}s"
            for state in current:
                if state.sync.is_synced:
                    self._resync_book(state, reason, stalled=True)
                elif not state.expect_full:
                    self._start_resubscribe(state)  # an earlier resubscribe failed

    def _on_orders(self, channel: str, payload: msgspec.Raw, receive_ns: int) -> None:
        # each item on its own: one bad order (an overflowing field) is counted and skipped, and
        # every other order of the push is still delivered
        for item in msgspec.json.decode(payload, type=list[msgspec.Raw]):
            try:
                order = msgspec.json.decode(item, type=ThalexOrderStatus)
                if self._seen_before(order):
                    continue  # the push repeats what the request's answer told: nothing to convert
                self._apply_order_status(order, receive_ns)
            except _ITEM_ERRORS:
                self._rpc.count_malformed(_channel_kind(channel))

    def _on_trades(self, channel: str, payload: msgspec.Raw, receive_ns: int) -> None:
        for item in msgspec.json.decode(payload, type=list[msgspec.Raw]):
            try:
                fill = self._codec.trade_fill(msgspec.json.decode(item, type=ThalexTrade), self._ids.by_wire)
            except _ITEM_ERRORS:
                self._rpc.count_malformed(_channel_kind(channel))
                continue
            if fill is None:
                continue
            if self._first_sight(fill):
                self._seen_fills[(fill.trade_id, fill.venue_order_id)] = True  # its fee came with it
                self._emit(fill)
            elif fill.fee and not self._seen_fills.get((fill.trade_id, fill.venue_order_id)):
                # the order push delivered this fill first, without its fee: the fee follows alone
                self._seen_fills[(fill.trade_id, fill.venue_order_id)] = True
                self._emit(
                    FeeCharge(
                        venue=self.name,
                        symbol=fill.symbol,
                        client_order_id=fill.client_order_id,
                        trade_id=fill.trade_id,
                        fee=fill.fee,
                        fee_asset=fill.fee_asset,
                        receive_ns=receive_ns,
                    )
                )

    def _on_portfolio(self, _channel: str, payload: msgspec.Raw, _receive_ns: int) -> None:
        for entry in msgspec.json.decode(payload, type=list[ThalexPortfolioEntry]):
            position = self._codec.position(entry)
            if position is not None:
                self._emit(position)

    def _on_mm_protection(self, _channel: str, payload: msgspec.Raw, _receive_ns: int) -> None:
        for update in msgspec.json.decode(payload, type=list[_MmProtectionUpdate]):
            self.mm_protection_remaining[update.product] = update.remaining_amount
            if update.remaining_amount <= 0:
                logger.warning("%s: mass quotes of %s pulled (%s)", self.name, update.product, update.reason)

    def _on_system(self, _channel: str, payload: msgspec.Raw, _receive_ns: int) -> None:
        event = msgspec.json.decode(payload, type=_SystemEvent)
        self.last_system_event = event.event
        logger.warning("%s: system event %r (the venue will close this connection)", self.name, event.event)

    def _on_late_response(self, late: LateResponse) -> None:
        """An order answer after its request timed out: it settles the unknown outcome."""
        if late.method not in ("private/insert", "private/amend", "private/cancel"):
            return
        if late.result is None:
            request = late.context
            if late.method == "private/insert" and isinstance(request, OrderRequest):
                self._late_insert_refused(request, late)
            return
        try:
            order = msgspec.json.decode(late.result, type=ThalexOrderStatus)
            self._apply_order_status(order, late.receive_ns)
        except (
            msgspec.DecodeError,
            msgspec.ValidationError,
            RecursionError,
            HftkitError,
            ValueError,
            KeyError,
        ):
            self._rpc.count_malformed(f"result:{late.method}")

    def _late_insert_refused(self, request: OrderRequest, late: LateResponse) -> None:
        """A timed-out insert the venue refused after all: nothing exists, say so as an event."""
        if late.error_code in _OUTCOME_UNKNOWN_CODES:
            return
        self._unresolved.pop(request.client_order_id, None)
        self._ids.release(request.client_order_id)
        self._emit(
            OrderUpdate(
                venue=self.name,
                symbol=request.symbol,
                client_order_id=request.client_order_id,
                venue_order_id=None,
                status=OrderStatus.REJECTED,
                side=request.side,
                price=request.price,
                quantity=request.quantity,
                filled=0,
                reason=f"code {late.error_code}: {late.error_message}",
                event_time_ms=self._clock.time_ns() // 1_000_000,
                receive_ns=late.receive_ns,
            )
        )

    # -- order state ---------------------------------------------------------------------
    def _seen_before(self, order: ThalexOrderStatus) -> bool:
        """This order in exactly this state (status, sizes, price, fills) was converted already."""
        state = (
            order.status,
            order.amount,
            order.filled_amount,
            order.price,
            order.delete_reason,
            len(order.fills),
        )
        seen = self._order_states
        if seen.get(order.order_id) == state:
            self.stats_repeated_updates += 1
            return True
        seen[order.order_id] = state
        if len(seen) > _CLOSED_MEMORY:
            seen.popitem(last=False)
        return False

    def _apply_order_status(self, order: ThalexOrderStatus, receive_ns: int) -> OrderUpdate | None:
        """Normalize, remember, emit; return the OrderUpdate (None for an unknown instrument)."""
        self._seen_before(order)  # an answer is always converted; a push of the same state is not
        update: OrderUpdate | None = None
        for event in self._codec.order_events(order, receive_ns, self._ids.by_wire):
            if isinstance(event, Fill):
                if not self._first_sight(event):
                    continue
            else:
                update = event
                if self._repeats(event):
                    continue  # the answer and the push of one change: listeners hear it once
                self._track(event)
            self._emit(event)
        return update

    def _repeats(self, update: OrderUpdate) -> bool:
        """The same state of an order as the last update told (status, fill, size, price)."""
        client_order_id = update.client_order_id
        last = self._live.get(client_order_id) or self._closed.get(client_order_id)
        if (
            last is None
            or last.status is not update.status
            or last.filled != update.filled
            or last.quantity != update.quantity
            or last.price != update.price
        ):
            return False
        self.stats_repeated_updates += 1
        return True

    def _track(self, update: OrderUpdate) -> None:
        if update.status is not OrderStatus.UNKNOWN:
            self._unresolved.pop(update.client_order_id, None)
        if update.status.is_terminal:
            self._live.pop(update.client_order_id, None)
            self._ids.retire(update.client_order_id)
            closed = self._closed
            closed[update.client_order_id] = update
            if len(closed) > _CLOSED_MEMORY:
                closed.popitem(last=False)
        else:
            self._live[update.client_order_id] = update

    def _first_sight(self, fill: Fill) -> bool:
        key = (fill.trade_id, fill.venue_order_id)
        seen = self._seen_fills
        if key in seen:
            self._duplicate_fills.inc()
            return False
        seen[key] = False  # True once the trade's fee was delivered (with it or as a FeeCharge)
        if len(seen) > self.config.fill_memory:
            seen.popitem(last=False)
        return True

    def live_orders(self) -> list[OrderUpdate]:
        """Orders this adapter believes open (from answers and pushes)."""
        return list(self._live.values())

    # -- trading -------------------------------------------------------------------------
    def _require_ready(self) -> None:
        if self._readiness is not _Readiness.READY:
            raise VenueNotReadyError(
                f"{self.name}: session is {self._readiness.value}, not ready for orders", venue=self.name
            )

    def _instrument(self, symbol: str) -> Instrument:
        instrument = self._instruments.get(symbol)
        if instrument is None:
            raise OrderRejectedError(f"unknown Thalex instrument {symbol!r}", venue=self.name)
        return instrument

    def _reference(self, client_order_id: str) -> dict[str, Any]:
        """How to name an order to amend/cancel: its session id, or the venue id if older."""
        wire = self._ids.wire(client_order_id)
        if wire is not None and wire[1] == self._epoch:
            return {"client_order_id": wire[0]}
        live = self._live.get(client_order_id)
        if live is not None and live.venue_order_id:
            return {"order_id": live.venue_order_id}
        raise OrderNotFoundError(f"no open order with client id {client_order_id!r}", venue=self.name)

    async def place_orders(self, requests: Sequence[OrderRequest]) -> list[OrderUpdate | VenueError]:
        """Thalex has no batch insert for plain orders (mass quotes are the batch): one by one."""
        return await place_one_by_one(self.place_order, requests)

    def place_order_now(self, request: OrderRequest, on_answer: OrderAnswer) -> bool:
        """``private/insert`` written before returning; the answer goes to ``on_answer`` from the
        frame that carries it. False (nothing sent) when the session is not ready or the message
        rate would make it wait: ``place_order`` queues it by priority."""
        if self._readiness is not _Readiness.READY:
            return False
        prefix = self._insert_prefix(request)
        client_order_id = request.client_order_id
        written = self.order_written
        try:
            sent = self._rpc.call_now(
                "private/insert",
                prefix,
                _InsertAnswer(self, request, on_answer),
                context=request,
                on_sent=None if written is None else lambda sent_ns: written(client_order_id, sent_ns),
            )
        except NotSentError as error:
            raise self._order_failure(error, "private/insert", client_order_id) from error
        if not sent:
            self._ids.release(client_order_id)
        return sent

    def _insert_prefix(self, request: OrderRequest) -> bytes:
        """The checked insert with a fresh wire id, as frame bytes up to the request id."""
        instrument = self._instrument(request.symbol)
        post_only = self._check_insert(request, instrument)
        try:
            wire_id = self._ids.assign(request.client_order_id, self._epoch)
        except ValueError as error:
            raise OrderRejectedError(str(error), venue=self.name) from None
        market = request.order_type is OrderType.MARKET
        return insert_prefix(
            direction=DIRECTION_NAMES[request.side],
            instrument_name=request.symbol,
            amount=_number_text(instrument.lots_to_quantity(request.quantity)),
            price=None if market else _number_text(instrument.ticks_to_price(request.price)),
            order_type="market" if market else "limit",
            time_in_force="immediate_or_cancel"  # GTC market orders are illegal
            if market or request.time_in_force is TimeInForce.IOC
            else "good_till_cancelled",
            post_only=post_only,
            reject_post_only=post_only and self.config.reject_post_only,
            reduce_only=request.reduce_only,
            client_order_id=wire_id,
            label=self.config.label,
        )

    async def place_order(self, request: OrderRequest) -> OrderUpdate:
        """``private/insert``; FOK is not a Thalex time in force and is refused locally."""
        self._require_ready()
        prefix = self._insert_prefix(request)
        written = self.order_written
        client_order_id = request.client_order_id
        try:
            return await self._order_call(
                "private/insert",
                prefix,
                client_order_id,
                Priority.NORMAL,
                context=request,
                on_sent=None if written is None else lambda sent_ns: written(client_order_id, sent_ns),
            )
        except (OrderOutcomeUnknownError, asyncio.CancelledError):
            # cancelled by the caller (its own timeout) while the insert may be out: unknown too
            self._register_unknown(request)
            raise

    # -- settlement of unknown outcomes ------------------------------------------------------
    def _register_unknown(self, request: OrderRequest) -> None:
        client_order_id = request.client_order_id
        if self._closing or client_order_id in self._unresolved or client_order_id in self._live:
            return
        self._unresolved[client_order_id] = (request, self._epoch)
        task = asyncio.get_running_loop().create_task(
            self._settle_loop(client_order_id), name=f"{self.name}:settle:{client_order_id}"
        )
        self._settlers.add(task)
        task.add_done_callback(self._settlers.discard)

    def unresolved(self) -> list[str]:
        """Client ids of inserts whose outcome is still unknown."""
        return list(self._unresolved)

    async def _settle_loop(self, client_order_id: str) -> None:
        """Settle an insert of unknown outcome until known, with bounded backoff; never re-sent."""
        delay = self.config.settle_interval_s
        while not self._closing and client_order_id in self._unresolved:
            await asyncio.sleep(delay)
            delay = min(delay * 2, max(self.config.settle_max_interval_s, self.config.settle_interval_s))
            if client_order_id not in self._unresolved or not self.is_ready:
                continue  # settled by a push or a late answer, or wait for the session's reconcile
            if await self._settle_quietly(client_order_id):
                return

    async def _settle_quietly(self, client_order_id: str) -> bool:
        try:
            return await self._settle_once(client_order_id)
        except (VenueError, HftkitError, ConnectionError) as error:
            logger.info("%s: settling %s failed (%s); will retry", self.name, client_order_id, error)
            return False

    async def _settle_once(self, client_order_id: str) -> bool:
        """Query by client id; if the venue shows nothing, cancel by client id; then it is known.

        Thalex answers one connection's requests in order, so once our query and cancel (sent after
        the insert) are answered, the insert was processed: absent then means never created, or, on
        a connection since lost under cancel-on-disconnect, cancelled with it.
        """
        entry = self._unresolved.get(client_order_id)
        if entry is None:
            return True
        request, epoch = entry
        found = await self.query_order(request.symbol, client_order_id)
        if found is not None:
            self._track(found)
            self._emit(found)
            return True
        if client_order_id not in self._unresolved:
            return True
        wire = self._ids.wire(client_order_id)
        if wire is not None and wire[1] == self._epoch:
            try:
                await self.cancel_order(request.symbol, client_order_id)  # emits the CANCELED update
                return True
            except OrderNotFoundError:
                pass
        if client_order_id not in self._unresolved:
            return True
        lost_session = epoch != self._epoch and self.config.cancel_on_disconnect_s is not None
        self._emit_absent(
            request,
            OrderStatus.CANCELED if lost_session else OrderStatus.REJECTED,
            "cancel_on_disconnect: its session closed before the outcome was known"
            if lost_session
            else "absent at the venue: not open, not in its history, and a cancel by client id found nothing",
        )
        return True

    def _emit_absent(self, request: OrderRequest, status: OrderStatus, reason: str) -> None:
        update = OrderUpdate(
            venue=self.name,
            symbol=request.symbol,
            client_order_id=request.client_order_id,
            venue_order_id=None,
            status=status,
            side=request.side,
            price=request.price,
            quantity=request.quantity,
            filled=0,
            reason=reason,
            event_time_ms=self._clock.time_ns() // 1_000_000,
            receive_ns=self._clock.monotonic_ns(),
        )
        self._track(update)
        self._emit(update)

    def _check_insert(self, request: OrderRequest, instrument: Instrument) -> bool:
        """Refuse locally what Thalex would refuse; returns whether the order is post-only."""
        if request.quantity <= 0:
            raise OrderRejectedError(f"quantity must be positive, got {request.quantity}", venue=self.name)
        if request.quantity < instrument.min_quantity:
            raise OrderRejectedError(
                f"quantity {request.quantity} lots is below the minimum {instrument.min_quantity}",
                venue=self.name,
            )
        if request.time_in_force is TimeInForce.FOK:
            raise OrderRejectedError("Thalex does not support fill-or-kill orders", venue=self.name)
        if request.order_type is OrderType.MARKET:
            return False
        if request.price <= 0:
            raise OrderRejectedError(f"limit price must be positive: {request.price}", venue=self.name)
        post_only = request.order_type is OrderType.LIMIT_MAKER
        if post_only and request.time_in_force is TimeInForce.IOC:
            raise OrderRejectedError("post-only cannot be immediate-or-cancel", venue=self.name)
        return post_only

    async def amend_order(self, request: AmendRequest) -> OrderUpdate:
        """``private/amend``: new price and new *total* amount (same price, smaller size keeps priority)."""
        self._require_ready()
        instrument = self._instrument(request.symbol)
        if request.quantity <= 0 or request.price <= 0:
            raise OrderRejectedError("amend needs a positive price and quantity", venue=self.name)
        params = self._reference(request.client_order_id)
        params["price"] = _number(instrument.ticks_to_price(request.price))
        params["amount"] = _number(instrument.lots_to_quantity(request.quantity))
        return await self._order_call("private/amend", params, request.client_order_id, Priority.NORMAL)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderUpdate:
        """``private/cancel``; an order the venue no longer has raises OrderNotFoundError."""
        self._require_ready()
        params = self._reference(client_order_id)
        return await self._order_call("private/cancel", params, client_order_id, Priority.HIGH)

    async def cancel_all(self, symbol: str | None = None) -> int:
        """Every order (``private/cancel_all``), or this adapter's live orders of one symbol."""
        self._require_ready()
        if symbol is None:
            raw = await self._order_request("private/cancel_all", {}, "", Priority.CRITICAL)
            return self._decode_order_result(raw, int, "private/cancel_all", "")
        targets = [cid for cid, update in self._live.items() if update.symbol == symbol]
        # an insert of unknown outcome may rest too: cancel it by client id (not found is fine)
        targets += [
            cid
            for cid, (request, _) in self._unresolved.items()
            if request.symbol == symbol and cid not in targets
        ]
        results = await asyncio.gather(
            *(self.cancel_order(symbol, cid) for cid in targets), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, VenueError):
                raise result  # venue errors (already gone, unknown) are per order; anything else is a bug
        return sum(1 for result in results if isinstance(result, OrderUpdate))

    async def set_mm_protection(
        self, product: str, trade_amount: str | Decimal, quote_amount: str | Decimal
    ) -> None:
        """``private/set_mm_protection``: required before mass quoting; re-applied after reconnects."""
        trade_text, quote_text = _amount_text(trade_amount), _amount_text(quote_amount)
        if Decimal(trade_text) > Decimal(quote_text):
            raise ValueError("trade_amount must not exceed quote_amount")
        self._require_ready()
        first = not self._mm_protection
        await self._call_query(
            "private/set_mm_protection",
            {
                "product": product,
                "trade_amount": wire_number(trade_text),
                "quote_amount": wire_number(quote_text),
            },
        )
        self._mm_protection[product] = (trade_text, quote_text)
        self.mm_protection_remaining[product] = float(trade_text)
        if first:
            await self._subscribe("private/subscribe", [MM_PROTECTION_CHANNEL])

    async def mass_quote(self, quotes: Sequence[MassQuote]) -> MassQuoteReport:
        """``private/mass_quote``: each given side replaces that side; one level is sent as ``{a, p}``."""
        self._require_ready()
        if len(quotes) > MAX_MASS_QUOTE_ITEMS:
            raise OrderRejectedError(
                f"at most {MAX_MASS_QUOTE_ITEMS} instruments per mass quote, got {len(quotes)}",
                venue=self.name,
            )
        items: list[dict[str, Any]] = []
        for quote in quotes:
            instrument = self._instrument(quote.symbol)
            product = self._products.get(quote.symbol)
            if product is not None and product not in self._mm_protection:
                raise OrderRejectedError(
                    f"call set_mm_protection({product!r}, ...) before mass quoting {quote.symbol}",
                    venue=self.name,
                    code=int(ThalexErrorCode.PROTECTION_NOT_SET),
                )
            for side in (quote.bids, quote.asks):
                if side is not None and len(side) > MAX_MASS_QUOTE_LEVELS:
                    raise OrderRejectedError(
                        f"at most {MAX_MASS_QUOTE_LEVELS} levels per mass-quote side", venue=self.name
                    )
            item: dict[str, Any] = {"i": quote.symbol}
            if quote.bids is not None:
                item["b"] = _quote_side(instrument, quote.bids)
            if quote.asks is not None:
                item["a"] = _quote_side(instrument, quote.asks)
            items.append(item)
        params: dict[str, Any] = {"quotes": items}
        if self.config.mass_quote_label is not None:
            params["label"] = self.config.mass_quote_label
        if self.config.mass_quote_post_only:
            params["post_only"] = True
            if self.config.reject_post_only:
                params["reject_post_only"] = True
        raw = await self._order_request("private/mass_quote", params, "", Priority.NORMAL)
        result = self._decode_order_result(raw, MassQuoteResult, "private/mass_quote", "")
        return MassQuoteReport(
            result.n_success,
            result.n_fail,
            [
                f"code {error.code} {error.side or '?'} @ {error.price}: {error.message}"
                for error in result.errors
            ],
        )

    async def cancel_mass_quote(self, product: str | None = None) -> None:
        """``private/cancel_mass_quote``: pulls mass quotes (all sessions) and resets protection."""
        self._require_ready()
        params = {} if product is None else {"product": product}
        await self._order_request("private/cancel_mass_quote", params, "", Priority.CRITICAL)

    async def _order_call(
        self,
        method: str,
        params: dict[str, Any] | bytes,
        client_order_id: str,
        priority: int,
        context: Any = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> OrderUpdate:
        raw = await self._order_request(method, params, client_order_id, priority, context, on_sent)
        return self._answered(raw, method, client_order_id)

    def _answered(self, raw: msgspec.Raw, method: str, client_order_id: str) -> OrderUpdate:
        order = self._decode_order_result(raw, ThalexOrderStatus, method, client_order_id)
        update = self._apply_order_status(order, self._clock.monotonic_ns())
        if update is None:
            raise OrderOutcomeUnknownError(
                f"{method} answered for instrument {order.instrument_name!r} this adapter does not know",
                venue=self.name,
                client_order_id=client_order_id,
            )
        return update

    async def _order_request(
        self,
        method: str,
        params: dict[str, Any] | bytes,
        client_order_id: str,
        priority: int,
        context: Any = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> msgspec.Raw:
        """One order-affecting request, its failures sorted into known and unknown outcomes."""
        try:
            return await self._rpc.call(method, params, priority=priority, context=context, on_sent=on_sent)
        except (ThalexError, NotSentError, RpcTimeoutError, SessionLostError, RpcProtocolError) as error:
            raise self._order_failure(error, method, client_order_id) from error

    def _order_failure(self, error: BaseException, method: str, client_order_id: str) -> VenueError:
        """What an order request's failure means: refused (its wire id is free again), not sent,
        or of unknown outcome (the venue may have acted on it)."""
        is_insert = method == "private/insert"
        if isinstance(error, ThalexError):
            if is_insert and error.code not in _OUTCOME_UNKNOWN_CODES:
                self._ids.release(client_order_id)
            return self._order_error(error, method, client_order_id)
        if isinstance(error, NotSentError):
            if is_insert:
                self._ids.release(client_order_id)
            return VenueNotReadyError(f"{method} not sent: {error}", venue=self.name)
        if isinstance(error, RpcTimeoutError | SessionLostError | RpcProtocolError):
            return OrderOutcomeUnknownError(
                f"{method}: {error}", venue=self.name, client_order_id=client_order_id
            )
        return OrderOutcomeUnknownError(
            f"{method}: unexpected failure {error!r}", venue=self.name, client_order_id=client_order_id
        )

    def _order_error(self, error: ThalexError, method: str, client_order_id: str) -> VenueError:
        detail = f"{method}: {error.message or error}"
        if isinstance(error, ThalexOrderNotFoundError):
            return OrderNotFoundError(detail, venue=self.name, code=error.code)
        if isinstance(error, ThalexThrottledError):
            return RateLimitedError(detail, venue=self.name, retry_after_s=self._rpc.throttle_backoff_s)
        if error.code in _OUTCOME_UNKNOWN_CODES:
            return OrderOutcomeUnknownError(detail, venue=self.name, client_order_id=client_order_id)
        return OrderRejectedError(detail, venue=self.name, code=error.code)

    def _decode_order_result(self, raw: msgspec.Raw, kind: type[_T], method: str, client_order_id: str) -> _T:
        try:
            return msgspec.json.decode(raw, type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as error:
            self._rpc.count_malformed(f"result:{method}")
            raise OrderOutcomeUnknownError(
                f"{method}: unreadable answer ({error})", venue=self.name, client_order_id=client_order_id
            ) from error

    # -- queries -------------------------------------------------------------------------
    async def _call_query(self, method: str, params: Mapping[str, Any]) -> msgspec.Raw:
        try:
            return await self._rpc.call(method, params, priority=Priority.NORMAL)
        except ThalexThrottledError as error:
            raise RateLimitedError(
                f"{method}: {error.message}", venue=self.name, retry_after_s=self._rpc.throttle_backoff_s
            ) from error
        except ThalexError as error:
            raise ThalexQueryError(f"{method}: {error.message}", venue=self.name, code=error.code) from error
        except (NotSentError, SessionLostError) as error:
            raise ThalexConnectionError(f"{method}: {error}", venue=self.name) from error
        except RpcTimeoutError as error:
            raise ThalexTimeoutError(f"{method}: {error}", venue=self.name) from error
        except RpcProtocolError as error:
            raise ThalexQueryError(f"{method}: {error}", venue=self.name) from error

    def _decode_query(self, raw: msgspec.Raw, kind: type[_T], method: str) -> _T:
        try:
            return msgspec.json.decode(raw, type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as error:
            self._rpc.count_malformed(f"result:{method}")
            raise ThalexQueryError(f"{method}: unreadable answer ({error})", venue=self.name) from error

    def _decode_history(self, raw: msgspec.Raw) -> list[ThalexOrderStatus]:
        """``private/order_history`` orders as OrderStatus; a closed order has nothing remaining."""
        orders: list[ThalexOrderStatus] = []
        for entry in self._decode_query(raw, _OrderHistory, "private/order_history").orders:
            entry.setdefault("remaining_amount", 0)
            try:
                orders.append(msgspec.convert(entry, ThalexOrderStatus))
            except msgspec.ValidationError:
                self._rpc.count_malformed("result:private/order_history")
        return orders

    async def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        raw = await self._call_query("private/open_orders", {})
        updates: list[OrderUpdate] = []
        for order in self._decode_query(raw, list[ThalexOrderStatus], "private/open_orders"):
            if symbol is not None and order.instrument_name != symbol:
                continue
            events = self._codec.order_events(order, 0, self._ids.by_wire)
            if events and isinstance(events[0], OrderUpdate):
                self._track(events[0])
                updates.append(events[0])
        return updates

    async def query_order(self, symbol: str, client_order_id: str) -> OrderUpdate | None:
        """Open orders first, then recent order history of the symbol; None when neither has it."""
        for update in await self.open_orders(symbol):
            if update.client_order_id == client_order_id:
                return update
        try:
            raw = await self._call_query("private/order_history", {"instrument_names": symbol, "limit": 100})
        except ThalexQueryError:
            return None
        for order in self._decode_history(raw):
            events = self._codec.order_events(order, 0, self._ids.by_wire)
            if events and isinstance(events[0], OrderUpdate) and events[0].client_order_id == client_order_id:
                return events[0]
        return None

    async def balances(self) -> list[BalanceUpdate]:
        """``private/account_summary`` cash lines."""
        raw = await self._call_query("private/account_summary", {})
        summary = self._decode_query(raw, _AccountSummary, "private/account_summary")
        now_ms = self._clock.time_ns() // 1_000_000
        return [
            BalanceUpdate(
                venue=self.name, asset=cash.currency, free=Decimal(repr(cash.balance)), event_time_ms=now_ms
            )
            for cash in summary.cash
        ]

    async def positions(self) -> list[PositionUpdate]:
        """``private/portfolio``: one signed position per instrument."""
        raw = await self._call_query("private/portfolio", {})
        positions: list[PositionUpdate] = []
        for entry in self._decode_query(raw, list[ThalexPortfolioEntry], "private/portfolio"):
            position = self._codec.position(entry)
            if position is not None:
                positions.append(position)
        return positions


# -- helpers ---------------------------------------------------------------------------------


def _number_text(text: str) -> str:
    """A grid's canonical text without trailing zeros ("0.100" -> "0.1"): the JSON number."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _number(text: str) -> Any:
    """A grid's canonical text as a JSON number for the generic encoder ("0.100" -> 0.1)."""
    return wire_number(_number_text(text))


def _amount_text(value: str | Decimal) -> str:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {value!r}") from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"amount must be a positive finite decimal, got {value!r}")
    text = format(amount.normalize(), "f")
    return text


def _quote_side(instrument: Instrument, levels: Sequence[QuoteLevel]) -> Any:
    """One level as ``{"a": amount, "p": price}`` (as the PyPI client sends), several as ``[[p, a], ...]``."""
    if len(levels) == 1:
        level = levels[0]
        return {
            "a": _number(instrument.lots_to_quantity(level.size)),
            "p": _number(instrument.ticks_to_price(level.price)),
        }
    return [
        [_number(instrument.ticks_to_price(level.price)), _number(instrument.lots_to_quantity(level.size))]
        for level in levels
    ]


class _InsertAnswer:
    """The answer to a ``private/insert`` written by ``place_order_now``, converted and handed on
    inside the frame that carried it, with exactly the outcomes ``place_order`` has."""

    __slots__ = ("_adapter", "_done", "_on_answer", "_request")

    def __init__(self, adapter: ThalexAdapter, request: OrderRequest, on_answer: OrderAnswer) -> None:
        self._adapter = adapter
        self._request = request
        self._on_answer = on_answer
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: msgspec.Raw) -> None:
        self._done = True
        try:
            answer: OrderUpdate | VenueError = self._adapter._answered(
                result, "private/insert", self._request.client_order_id
            )
        except VenueError as error:
            answer = error
        self._tell(answer)

    def set_exception(self, exception: BaseException) -> None:
        self._done = True
        self._tell(self._adapter._order_failure(exception, "private/insert", self._request.client_order_id))

    def _tell(self, answer: OrderUpdate | VenueError) -> None:
        if isinstance(answer, OrderOutcomeUnknownError):
            self._adapter._register_unknown(self._request)  # settled by client id, never re-sent
        try:
            self._on_answer(answer)
        except Exception:
            logger.exception(
                "%s: the owner of order %s failed on its answer",
                self._adapter.name,
                self._request.client_order_id,
            )


def _channel_kind(channel: str) -> str:
    """Malformed-input counter kind: the channel family for market data, the name otherwise."""
    family = channel.split(".", 1)[0]
    return family if family in ("book", "ticker", "lwt", "recent_trades") else channel


def _message_rate(raw: msgspec.Raw) -> float | None:
    try:
        result = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    rate = result.get("message_rate") if isinstance(result, dict) else None
    if isinstance(rate, int | float) and not isinstance(rate, bool) and rate > 0:
        return float(rate)
    return None
