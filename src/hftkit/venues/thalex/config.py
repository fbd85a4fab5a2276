"""How the Thalex adapter connects, authenticates, subscribes and paces itself: its settings.

Plain values only (no I/O): the session, the market data and the order entry all read one
``ThalexConfig``; ``THALEX_CAPABILITIES`` is what the venue supports through this adapter.
"""

from __future__ import annotations

from dataclasses import dataclass

from hftkit.transport.websocket import WebSocketConfig
from hftkit.venues.base import VenueCapabilities
from hftkit.venues.thalex.auth import ThalexCredentials

PRODUCTION_URL = "wss://thalex.com/ws/api/v2"
TESTNET_URL = "wss://testnet.thalex.com/ws/api/v2"
DELAYS = frozenset({"100ms", "200ms", "500ms", "1000ms", "5000ms", "60000ms", "raw"})

THALEX_CAPABILITIES = VenueCapabilities(
    amend=True,
    amend_keeps_priority_on_size_down=True,
    native_mass_quote=True,
    cancel_on_disconnect=True,
    post_only_reprices=True,
    positions=True,
)


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
