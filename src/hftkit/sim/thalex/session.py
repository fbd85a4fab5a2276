"""One Thalex WebSocket session's state, shared by the server's parts (server, rpc, channels, quotes).

A ``Session`` is the connection as the venue sees it: who logged in, whether its orders die
with it (cancel-on-disconnect), its request budget, its ``Subscription``s (each channel's
delivery state) and outbound queue, the orders and mass quotes it placed and its market-maker
protection groups. These are plain state with no behaviour beyond the token bucket: each part
of the server changes the fields it owns. They live below all the parts, so none of them needs
a back-reference to another to name a session.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from hftkit.sim.engine.matching import SimOrder


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

    def __init__(self, name: str, kind: ChannelKind, session: Session) -> None:
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


@dataclass(frozen=True)
class ThalexApiKey:
    """An API key the simulator accepts: its id, public key and accounts (first = default)."""

    key_id: str
    public_key_pem: bytes = field(repr=False)
    accounts: tuple[str, ...]

    @classmethod
    def from_pem_file(cls, key_id: str, path: str | Path, *accounts: str) -> ThalexApiKey:
        return cls(key_id, Path(path).read_bytes(), tuple(accounts))


@dataclass
class Protection:
    """One market-maker protection group (session x product), amounts exact."""

    trade_amount: Decimal
    quote_amount: Decimal
    executed: Decimal = Decimal(0)
    tripped: bool = False


class Session:
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
        self.protection: dict[str, Protection] = {}
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


__all__ = ["ChannelKind", "Protection", "Session", "Subscription", "ThalexApiKey"]
