"""L2 order books, snapshot+diff synchronization and checks against the venue's top (no I/O in the cores)."""

from hftkit.book.order_book import (
    BookWalk,
    DuplicateOwnOrderError,
    Level,
    OrderBook,
    OwnOrder,
    UnknownOwnOrderError,
)
from hftkit.book.sync import (
    BINANCE_FUTURES_RULES,
    BINANCE_SPOT_RULES,
    THALEX_RULES,
    BookSynchronizer,
    Continuity,
    SequenceRules,
    SyncAction,
    SyncCounters,
    SyncState,
)

__all__ = [
    "BINANCE_FUTURES_RULES",
    "BINANCE_SPOT_RULES",
    "THALEX_RULES",
    "BookSynchronizer",
    "BookWalk",
    "Continuity",
    "DuplicateOwnOrderError",
    "Level",
    "OrderBook",
    "OwnOrder",
    "SequenceRules",
    "SyncAction",
    "SyncCounters",
    "SyncState",
    "UnknownOwnOrderError",
]
