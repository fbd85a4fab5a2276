"""Thalex subscription channels of the simulator: names, parsing and per-subscriber state.

A channel name is parsed once into a ``Subscription`` that keeps what its subscriber has
already seen (the book levels it was sent, the last ticker) and what is waiting to be sent
(order updates, trades). The server marks subscriptions dirty as venue events arrive and
each connection's writer renders the due ones: ``raw`` channels on every change, the
``<N>ms`` ones at most once per N ms with everything in between coalesced.
"""

from __future__ import annotations

import enum
from typing import Any

from hftkit.core.types import Instrument

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


class ChannelKind(enum.Enum):
    BOOK = "book"
    TICKER = "ticker"
    LWT = "lwt"
    PRICE_INDEX = "price_index"
    RECENT_TRADES = "recent_trades"
    INSTRUMENTS = "instruments"
    SYSTEM = "system"
    SESSION_ORDERS = "session.orders"
    ACCOUNT_ORDERS = "account.orders"
    PERSISTENT_ORDERS = "account.persistent_orders"
    ORDER_HISTORY = "account.order_history"
    TRADE_HISTORY = "account.trade_history"
    PORTFOLIO = "account.portfolio"
    SUMMARY = "account.summary"
    MM_PROTECTION = "session.mm_protection"


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
_FIXED = {kind.value: kind for kind in (ChannelKind.INSTRUMENTS, ChannelKind.SYSTEM, *PRIVATE_KINDS)}


class Subscription:
    """One subscribed channel of one session, with its delivery state."""

    __slots__ = (
        "ask_changes",
        "bid_changes",
        "delay_s",
        "dirty",
        "grouping",
        "kind",
        "last_payload",
        "last_sent",
        "levels",
        "name",
        "pending",
        "session",
        "snapshot_due",
        "symbol",
        "symbols",
        "target",
        "view_asks",
        "view_bids",
    )

    def __init__(self, name: str, kind: ChannelKind, session: Any) -> None:
        self.name = name
        self.kind = kind
        self.session = session
        self.symbol = ""  # instrument of market channels
        self.target = ""  # underlying (price_index, recent_trades by underlying)
        self.symbols: frozenset[str] = frozenset()  # instruments a recent_trades channel covers
        self.delay_s = 0.0
        self.grouping = 0  # ticks per bucket; 0 = none
        self.levels: int | None = None  # None = all
        self.dirty = False
        self.snapshot_due = True
        self.last_sent = float("-inf")
        self.last_payload: Any = None
        self.pending: list[Any] = []
        self.view_bids: dict[int, int] = {}  # what the subscriber has been told, ticks -> lots
        self.view_asks: dict[int, int] = {}
        self.bid_changes: dict[int, int] = {}  # full-depth books: changes since the last push
        self.ask_changes: dict[int, int] = {}

    @property
    def full_depth(self) -> bool:
        """All levels, no grouping: book changes can be forwarded as they come."""
        return self.levels is None and not self.grouping

    def due_at(self) -> float:
        return self.last_sent + self.delay_s


def parse_channel(
    name: str,
    session: Any,
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


__all__ = [
    "DELAYS",
    "ORDER_KINDS",
    "PRIVATE_KINDS",
    "ChannelKind",
    "Subscription",
    "diff_levels",
    "group_levels",
    "parse_channel",
]
