"""Thalex subscription channels of the simulator: names, subscriptions, venue events and rendering.

A channel name is parsed once into a ``Subscription`` (``session``) that keeps what its
subscriber has already seen (the book levels it was sent, the last ticker) and what is waiting
to be sent (order updates, trades). ``Channels`` listens to the venue, files each event with
the subscriptions it concerns and marks them dirty; each connection's writer (``server``)
asks ``Channels.render`` for the due ones: ``raw`` channels on every change, the ``<N>ms`` ones
at most once per N ms with everything in between coalesced. It also keeps what the private
channels and history queries share: each account's sessions, trade and order history, and the
order-update batching of ``orders.OrderUpdates``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from hftkit.core.types import Instrument, OrderStatus
from hftkit.sim.engine.matching import BookUpdate, Execution, SimOrder, TradePrint
from hftkit.sim.engine.venue import OrderEvent, OrderEventKind, SimEvent, SimVenue
from hftkit.sim.thalex import wire as wire
from hftkit.sim.thalex.accounts import ThalexAccountViews
from hftkit.sim.thalex.market import ThalexMarketViews, book_level
from hftkit.sim.thalex.orders import OrderInfo, OrderUpdates, fill_payload, history_payload, trade_payload
from hftkit.sim.thalex.session import ChannelKind, Session, Subscription
from hftkit.sim.thalex.wire import RpcError
from hftkit.venues.thalex.errors import ThalexErrorCode

DELAYS: dict[str, float] = {
    "raw": 0.0,
    "100ms": 0.1,
    "200ms": 0.2,
    "500ms": 0.5,
    "1000ms": 1.0,
    "5000ms": 5.0,
    "60000ms": 60.0,
}
RECENT_TRADE_CATEGORIES = ("all", "single", "perpetual", "futures", "options", "combinations", "future_rolls")


PRIVATE_KINDS = frozenset(
    {
        ChannelKind.SESSION_ORDERS,
        ChannelKind.ACCOUNT_ORDERS,
        ChannelKind.PERSISTENT_ORDERS,
        ChannelKind.ORDER_HISTORY,
        ChannelKind.TRADE_HISTORY,
        ChannelKind.PORTFOLIO,
        ChannelKind.SUMMARY,
        ChannelKind.MM_PROTECTION,
    }
)
ORDER_KINDS = frozenset(
    {ChannelKind.SESSION_ORDERS, ChannelKind.ACCOUNT_ORDERS, ChannelKind.PERSISTENT_ORDERS}
)
_NO_SNAPSHOT = frozenset(
    {ChannelKind.TRADE_HISTORY, ChannelKind.ORDER_HISTORY, ChannelKind.SYSTEM, ChannelKind.MM_PROTECTION}
)
_HISTORY_LIMIT = 10_000
_FIXED = {kind.value: kind for kind in (ChannelKind.INSTRUMENTS, ChannelKind.SYSTEM, *PRIVATE_KINDS)}


def parse_channel(
    name: str,
    session: Session,
    instruments: dict[str, Instrument],
    underlyings: dict[str, list[str]],
) -> Subscription | None:
    """The subscription for a channel name, or None when the name is not a valid channel."""
    fixed = _FIXED.get(name)
    if fixed is not None:
        return Subscription(name, fixed, session)
    parts = name.split(".")
    head = parts[0]
    if head == "book" and len(parts) == 5:
        instrument = instruments.get(parts[1])
        delay = DELAYS.get(parts[4])
        if instrument is None or delay is None:
            return None
        subscription = Subscription(name, ChannelKind.BOOK, session)
        subscription.symbol = instrument.symbol
        subscription.delay_s = delay
        if parts[2] != "none":
            try:
                grouping = instrument.price_to_ticks(parts[2])
            except Exception:
                return None
            if grouping <= 0:
                return None
            subscription.grouping = grouping if grouping > 1 else 0
        if parts[3] != "all":
            if not parts[3].isdigit() or int(parts[3]) <= 0:
                return None
            subscription.levels = int(parts[3])
        return subscription
    if head in ("ticker", "lwt") and len(parts) == 3:
        instrument = instruments.get(parts[1])
        delay = DELAYS.get(parts[2])
        if instrument is None or delay is None:
            return None
        subscription = Subscription(name, ChannelKind(head), session)
        subscription.symbol = instrument.symbol
        subscription.delay_s = delay
        return subscription
    if head == "price_index" and len(parts) == 2:
        if parts[1] not in underlyings:
            return None
        subscription = Subscription(name, ChannelKind.PRICE_INDEX, session)
        subscription.target = parts[1]
        return subscription
    if head == "recent_trades" and len(parts) == 3:
        target, category = parts[1], parts[2]
        if category not in RECENT_TRADE_CATEGORIES:
            return None
        if target in instruments:
            symbols = frozenset({target})
        elif target in underlyings:
            symbols = frozenset(
                symbol
                for symbol in underlyings[target]
                if category in ("all", "single") or _category_of(instruments[symbol]) == category
            )
        else:
            return None
        subscription = Subscription(name, ChannelKind.RECENT_TRADES, session)
        subscription.target = target
        subscription.symbols = symbols
        return subscription
    return None


def _category_of(instrument: Instrument) -> str:
    kind = instrument.kind.value
    return {"perpetual": "perpetual", "future": "futures", "option": "options"}.get(kind, kind)


def group_levels(
    levels: list[tuple[int, int]], grouping: int, is_bid: bool, limit: int | None
) -> dict[int, int]:
    """Aggregate best-first levels into price buckets (bids down, asks up), keep ``limit``."""
    if not grouping:
        chosen = levels if limit is None else levels[:limit]
        return dict(chosen)
    grouped: dict[int, int] = {}
    for price, size in levels:
        bucket = price - price % grouping if is_bid else -((-price) // grouping) * grouping
        if bucket not in grouped:
            if limit is not None and len(grouped) >= limit:
                break
            grouped[bucket] = 0
        grouped[bucket] += size
    return grouped


def diff_levels(old: dict[int, int], new: dict[int, int]) -> list[tuple[int, int]]:
    """Levels whose size changed from ``old`` to ``new`` (0 = gone), in price order."""
    changes = [(price, size) for price, size in new.items() if old.get(price) != size]
    changes.extend((price, 0) for price in old if price not in new)
    changes.sort()
    return changes


def mark_dirty(subscription: Subscription) -> None:
    """Something is waiting on ``subscription``: wake its session's writer."""
    subscription.dirty = True
    subscription.session.wake.set()


def _apply_level(view: dict[int, int], price: int, size: int) -> None:
    if size:
        view[price] = size
    else:
        view.pop(price, None)


QuoteExecution = Callable[[Session, str, Instrument, int], None]


def _no_quotes(session: Session, product: str, instrument: Instrument, lots: int) -> None:
    """The default ``Channels.on_quote_execution``: no mass-quote protection to feed."""


class Channels:
    """The subscriptions of every session of one venue, fed by the venue's events.

    ``on_quote_execution`` is told of every fill of a mass quote (``quotes.MassQuotes`` counts
    them against the quoting session's protection group).
    """

    def __init__(
        self,
        venue: SimVenue,
        market: ThalexMarketViews,
        account_views: ThalexAccountViews,
        create_time: float,
    ) -> None:
        self.venue = venue
        self.engine = venue.engine
        self.accounts = venue.accounts
        self.market = market
        self.account_views = account_views
        self._create_time = create_time
        self.on_quote_execution: QuoteExecution = _no_quotes
        self.orders = OrderUpdates(venue, self._publish_order, self._schedule_end_batch)
        self._batch_scheduled = False
        self._market_subscriptions: dict[str, set[Subscription]] = {}
        self._index_subscriptions: dict[str, set[Subscription]] = {}
        self._trade_subscriptions: dict[str, set[Subscription]] = {}
        self.account_sessions: dict[str, set[Session]] = {}
        self.trade_history: dict[str, deque[dict[str, Any]]] = {}
        self.order_history: dict[str, deque[dict[str, Any]]] = {}
        self._positions: dict[tuple[str, str], int] = {}
        self._instrument_index = {symbol: index for index, symbol in enumerate(venue.instruments)}
        for holder in self.accounts:  # positions from before the server: position_after starts right
            for symbol, position in holder.positions.items():
                self._positions[(holder.name, symbol)] = position.quantity

    @property
    def instruments(self) -> dict[str, Instrument]:
        return self.venue.instruments

    # sessions ------------------------------------------------------------------------------------
    def logged_in(self, session: Session, account: str) -> None:
        """The session now receives ``account``'s private channels."""
        self.account_sessions.setdefault(account, set()).add(session)

    def session_closed(self, session: Session) -> None:
        """Forget a closed session: its subscriptions, its account link, its orders' session."""
        self._drop_subscriptions(session)
        if session.account is not None:
            self.account_sessions.get(session.account, set()).discard(session)
        for info in self.orders.infos.values():
            if info.session is session:
                info.session = None

    def index_changed(self, underlying: str) -> None:
        for subscription in self._index_subscriptions.get(underlying, ()):
            mark_dirty(subscription)

    def announce(self, sessions: Iterable[Session], event: dict[str, Any]) -> None:
        """Push ``event`` on the ``system`` channel of each of ``sessions`` that subscribed it."""
        for session in sessions:
            subscription = session.subscriptions.get(ChannelKind.SYSTEM.value)
            if subscription is not None:
                subscription.pending.append(event)
                mark_dirty(subscription)

    def publish_session_order(self, session: Session, payload: dict[str, Any]) -> None:
        """An order update that never reached the venue (post-only refused): session and account."""
        subscription = session.subscriptions.get(ChannelKind.SESSION_ORDERS.value)
        if subscription is not None:
            subscription.pending.append(payload)
            mark_dirty(subscription)
        for subscription in self.private_subscriptions(session.account or "", ChannelKind.ACCOUNT_ORDERS):
            subscription.pending.append(payload)
            mark_dirty(subscription)

    def push_protection(self, session: Session, product: str, remaining: Any, reason: str) -> None:
        """A ``session.mm_protection`` notification (``remaining`` already a JSON number)."""
        subscription = session.subscriptions.get(ChannelKind.MM_PROTECTION.value)
        if subscription is not None:
            subscription.pending.append({"product": product, "remaining_amount": remaining, "reason": reason})
            mark_dirty(subscription)

    # subscriptions -------------------------------------------------------------------------------
    def unsubscribe(self, session: Session, channels: list[str]) -> list[str]:
        removed: list[str] = []
        for name in channels:
            subscription = session.subscriptions.pop(name, None)
            if subscription is None:
                if len(channels) == 1:
                    raise RpcError(ThalexErrorCode.NOT_SUBSCRIBED, f"not subscribed to {name}")
                continue
            self._forget(subscription)
            removed.append(name)
        return removed

    def subscribe(self, session: Session, channels: list[str], *, private: bool) -> list[str]:
        accepted: list[str] = []
        underlyings = self.market.underlyings()
        for name in channels:
            if name in session.subscriptions:
                if len(channels) == 1:
                    raise RpcError(ThalexErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {name}")
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
                mark_dirty(subscription)
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

    def _forget(self, subscription: Subscription) -> None:
        for index in (self._market_subscriptions, self._index_subscriptions, self._trade_subscriptions):
            for members in index.values():
                members.discard(subscription)

    def _drop_subscriptions(self, session: Session) -> None:
        for subscription in session.subscriptions.values():
            self._forget(subscription)
        session.subscriptions.clear()

    def private_subscriptions(self, account: str, kind: ChannelKind) -> Iterable[Subscription]:
        for session in self.account_sessions.get(account, ()):
            subscription = session.subscriptions.get(kind.value)
            if subscription is not None:
                yield subscription

    def render(self, subscription: Subscription, now: float) -> list[Any]:
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

    def on_event(self, event: SimEvent) -> None:
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
                mark_dirty(subscription)

    def _on_trade(self, trade: TradePrint) -> None:
        row: list[Any] | None = None
        for subscription in self._market_subscriptions.get(trade.symbol, ()):
            if subscription.kind is ChannelKind.BOOK:
                if row is None:
                    row = self.market.book_trade(trade)
                subscription.pending.append(row)
            mark_dirty(subscription)
        subscriptions = self._trade_subscriptions.get(trade.symbol)
        if subscriptions:
            payload = self.market.recent_trade(trade)
            for subscription in subscriptions:
                subscription.pending.append(payload)
                mark_dirty(subscription)

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
        history = self.trade_history.setdefault(order.account, deque(maxlen=_HISTORY_LIMIT))
        history.append(trade)
        for subscription in self.private_subscriptions(order.account, ChannelKind.TRADE_HISTORY):
            subscription.pending.append(trade)
            mark_dirty(subscription)
        for subscription in self.private_subscriptions(order.account, ChannelKind.PORTFOLIO):
            if order.symbol not in subscription.pending:
                subscription.pending.append(order.symbol)
            mark_dirty(subscription)
        for subscription in self.private_subscriptions(order.account, ChannelKind.SUMMARY):
            mark_dirty(subscription)
        if info.mass_quote and info.session is not None:
            self.on_quote_execution(info.session, info.product, instrument, execution.quantity)

    def _publish_order(self, order: SimOrder, info: OrderInfo, entry: dict[str, Any]) -> None:
        session = info.session
        if session is not None:
            subscription = session.subscriptions.get(ChannelKind.SESSION_ORDERS.value)
            if subscription is not None:
                subscription.pending.append(entry)
                mark_dirty(subscription)
        for subscription in self.private_subscriptions(order.account, ChannelKind.ACCOUNT_ORDERS):
            subscription.pending.append(entry)
            mark_dirty(subscription)
        if info.persistent:
            for subscription in self.private_subscriptions(order.account, ChannelKind.PERSISTENT_ORDERS):
                subscription.pending.append(entry)
                mark_dirty(subscription)

    def _closed(self, order: SimOrder, info: OrderInfo, entry: dict[str, Any]) -> None:
        if info.session is not None:
            info.session.orders.pop(order.order_id, None)
        self.orders.closed(order)
        if info.mass_quote and not order.filled:  # unfilled quotes stay out of order history
            return
        historical = history_payload(entry, info.fills)
        self.order_history.setdefault(order.account, deque(maxlen=_HISTORY_LIMIT)).append(historical)
        for subscription in self.private_subscriptions(order.account, ChannelKind.ORDER_HISTORY):
            subscription.pending.append(historical)
            mark_dirty(subscription)

    def _schedule_end_batch(self) -> None:
        """The first update of a venue call: close the batch once the call has returned."""
        if not self._batch_scheduled:
            self._batch_scheduled = True
            with contextlib.suppress(RuntimeError):  # no loop (a sans-I/O test): closed by the next call
                asyncio.get_running_loop().call_soon(self.end_batch)

    def end_batch(self) -> None:
        """Close the current venue call's updates: later events start new updates."""
        self._batch_scheduled = False
        self.orders.end_batch()


__all__ = [
    "DELAYS",
    "ORDER_KINDS",
    "PRIVATE_KINDS",
    "ChannelKind",
    "Channels",
    "Subscription",
    "diff_levels",
    "group_levels",
    "mark_dirty",
    "parse_channel",
]
