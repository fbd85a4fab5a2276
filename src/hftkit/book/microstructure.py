"""Microstructure analytics from books and trades: spread, mid, microprice, imbalance, VWAP,
realized volatility, trade-flow imbalance and the impact of an order walked through the book.

Inputs are integer ticks and lots; results are floats (analytics, never keys) or exact ints
where the quantity is naturally whole (spreads, volumes, notionals in tick*lot units). A value
that is undefined for the input (the mid of a one-sided book, the VWAP of no trades) is None,
never NaN, so a caller cannot mistake it for a number.

Books are read only through :class:`BookReader` (``best_bid``, ``best_ask``, ``bids(n)``,
``asks(n)``), so any L2 book with that read API works. Trades live in a :class:`TradeTape`, a
ring buffer of (timestamp, price, size, aggressor sign) rows; the windowed analytics there are
vectorized over the ring's columns, and :class:`OnlineVwap` / :class:`RollingTradeStats`
maintain running sums for per-event streaming use.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol

import msgspec
import numpy as np
from numpy.typing import ArrayLike

from hftkit.book.ring import Column, RingBuffer, RingWindow
from hftkit.core.types import Side, Trade

__all__ = [
    "MID_COLUMNS",
    "NANOSECONDS_PER_YEAR",
    "TRADE_COLUMNS",
    "BookReader",
    "ImpactEstimate",
    "MidTape",
    "OnlineVwap",
    "RollingTradeStats",
    "TradeFlow",
    "TradeTape",
    "book_imbalance",
    "estimate_impact",
    "microprice",
    "mid_price",
    "realized_volatility",
    "spread_ticks",
    "trade_flow",
    "vwap",
]

NANOSECONDS_PER_YEAR = 365 * 24 * 3600 * 1_000_000_000
"""Calendar year (crypto trades every day): the default annualization horizon."""

TRADE_COLUMNS: tuple[Column, ...] = (
    Column("timestamp", np.int64),  # ns
    Column("price", np.int64),  # ticks
    Column("size", np.int64),  # lots
    Column("side", np.int8),  # aggressor: +1 buy, -1 sell
)
"""Schema of a trade ring buffer (:class:`TradeTape`)."""

MID_COLUMNS: tuple[Column, ...] = (
    Column("timestamp", np.int64),  # ns
    Column("mid", np.float64),  # ticks (half ticks happen)
)
"""Schema of a mid-price ring buffer, for mid-based realized volatility."""


class BookReader(Protocol):
    """The read API of an L2 book that the analytics need: (price ticks, size lots), best first."""

    def best_bid(self) -> tuple[int, int] | None: ...

    def best_ask(self) -> tuple[int, int] | None: ...

    def bids(self, n: int) -> list[tuple[int, int]]: ...

    def asks(self, n: int) -> list[tuple[int, int]]: ...


# --- top of book ------------------------------------------------------------------------------


def spread_ticks(book: BookReader) -> int | None:
    """Best ask minus best bid in ticks; None when a side is empty."""
    bid = book.best_bid()
    ask = book.best_ask()
    if bid is None or ask is None:
        return None
    return ask[0] - bid[0]


def mid_price(book: BookReader) -> float | None:
    """Mid price in ticks (a float: half ticks happen); None when a side is empty."""
    bid = book.best_bid()
    ask = book.best_ask()
    if bid is None or ask is None:
        return None
    return (bid[0] + ask[0]) / 2


def microprice(book: BookReader) -> float | None:
    """Mid weighted by the opposite side's size: leans toward the side about to be depleted.

    ``(bid * ask_size + ask * bid_size) / (bid_size + ask_size)``: a heavy bid queue pulls the
    fair price toward the ask. Always within [bid, ask]. None when a side is empty.
    """
    bid = book.best_bid()
    ask = book.best_ask()
    if bid is None or ask is None:
        return None
    bid_price, bid_size = bid
    ask_price, ask_size = ask
    total = bid_size + ask_size
    if total <= 0:
        return (bid_price + ask_price) / 2
    return (bid_price * ask_size + ask_price * bid_size) / total


def book_imbalance(book: BookReader, levels: int = 1) -> float | None:
    """``(bid volume - ask volume) / (bid volume + ask volume)`` over the top ``levels`` levels.

    In [-1, 1]: +1 means all the resting size is on the bid. None when the book is empty.
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    bid_volume = sum(size for _, size in book.bids(levels))
    ask_volume = sum(size for _, size in book.asks(levels))
    total = bid_volume + ask_volume
    if total <= 0:
        return None
    return (bid_volume - ask_volume) / total


# --- market impact ----------------------------------------------------------------------------


class ImpactEstimate(msgspec.Struct, frozen=True, kw_only=True):
    """What an aggressive order of ``requested`` lots would do if it hit the book now.

    Slippages are signed costs: positive means paying more than the reference (buying above,
    selling below). ``notional`` is the exact sum of price * size over the fills, in tick*lot.
    """

    side: Side
    requested: int  # lots
    filled: int  # lots
    levels_consumed: int
    notional: int  # ticks * lots, exact
    average_price: float | None  # ticks
    worst_price: int | None  # ticks: the last level touched
    reference_mid: float | None  # ticks
    slippage_ticks: float | None  # vs mid
    slippage_bps: float | None  # vs mid
    touch_slippage_ticks: float | None  # vs the best price on the side being hit

    @property
    def sufficient_depth(self) -> bool:
        """True when the visible book holds the whole order."""
        return self.filled == self.requested

    @property
    def unfilled(self) -> int:
        return self.requested - self.filled


def estimate_impact(
    book: BookReader, side: Side, size: int, *, max_levels: int | None = None
) -> ImpactEstimate:
    """Walk the visible book for an aggressive ``side`` order of ``size`` lots.

    A buy walks the asks, a sell the bids; levels are fetched in growing chunks so a small
    order reads only the top of a deep book. ``max_levels`` caps how deep the walk may go.
    """
    if size <= 0:
        raise ValueError(f"order size must be positive lots, got {size}")
    if max_levels is not None and max_levels < 1:
        raise ValueError(f"max_levels must be >= 1, got {max_levels}")
    read_levels = book.asks if side is Side.BUY else book.bids
    remaining = size
    notional = 0
    levels_consumed = 0
    worst_price: int | None = None
    best_price: int | None = None
    fetch = 8 if max_levels is None else min(8, max_levels)
    seen = 0
    while remaining > 0:
        levels = read_levels(fetch)
        for price, level_size in levels[seen:]:
            if level_size <= 0:
                continue
            if best_price is None:
                best_price = price
            take = level_size if level_size < remaining else remaining
            notional += take * price
            remaining -= take
            levels_consumed += 1
            worst_price = price
            if remaining == 0:
                break
        seen = len(levels)
        if remaining == 0 or len(levels) < fetch or (max_levels is not None and fetch >= max_levels):
            break
        fetch = fetch * 4 if max_levels is None else min(fetch * 4, max_levels)
    filled = size - remaining
    average = notional / filled if filled else None
    mid = mid_price(book)
    sign = side.sign
    slippage = (average - mid) * sign if average is not None and mid is not None else None
    slippage_bps = slippage / mid * 10_000 if slippage is not None and mid else None
    touch = (average - best_price) * sign if average is not None and best_price is not None else None
    return ImpactEstimate(
        side=side,
        requested=size,
        filled=filled,
        levels_consumed=levels_consumed,
        notional=notional,
        average_price=average,
        worst_price=worst_price,
        reference_mid=mid,
        slippage_ticks=slippage,
        slippage_bps=slippage_bps,
        touch_slippage_ticks=touch,
    )


# --- trades: pure functions over columns ------------------------------------------------------


def vwap(prices: ArrayLike, sizes: ArrayLike) -> float | None:
    """Volume-weighted average price in ticks; None when there is no volume.

    Sums run in float64 (no int64 overflow on long windows; relative error ~1e-16).
    """
    price_array = np.asarray(prices, dtype=np.float64)
    size_array = np.asarray(sizes, dtype=np.float64)
    volume = float(size_array.sum())
    if volume <= 0:
        return None
    return float(price_array @ size_array) / volume


class TradeFlow(msgspec.Struct, frozen=True):
    """Aggressor volumes over a window. ``imbalance`` is (buy - sell) / (buy + sell) in [-1, 1]."""

    buy_volume: int  # lots
    sell_volume: int  # lots
    trade_count: int

    @property
    def imbalance(self) -> float | None:
        total = self.buy_volume + self.sell_volume
        return (self.buy_volume - self.sell_volume) / total if total else None

    @property
    def net_volume(self) -> int:
        return self.buy_volume - self.sell_volume


def trade_flow(sizes: ArrayLike, sides: ArrayLike) -> TradeFlow:
    """Split volume by aggressor (``sides``: +1 buy, -1 sell, as in :data:`TRADE_COLUMNS`)."""
    size_array = np.asarray(sizes, dtype=np.int64)
    side_array = np.asarray(sides)
    if size_array.shape != side_array.shape:
        raise ValueError(f"sizes {size_array.shape} and sides {side_array.shape} differ in shape")
    buy_volume = int(size_array[side_array > 0].sum())
    sell_volume = int(size_array[side_array < 0].sum())
    return TradeFlow(buy_volume, sell_volume, int(size_array.size))


def realized_volatility(
    prices: ArrayLike,
    timestamps_ns: ArrayLike | None = None,
    *,
    annualize: bool = False,
    year_ns: int = NANOSECONDS_PER_YEAR,
) -> float | None:
    """Realized volatility: sqrt of the sum of squared log returns over the window.

    Without ``annualize`` the figure is the volatility over the window itself. With it, the
    realized variance is scaled by ``year_ns / elapsed`` where elapsed is the span of
    ``timestamps_ns`` (required then). None with fewer than two prices or a zero span.
    Prices must be positive (ticks or mid ticks; the unit cancels in the returns).
    """
    price_array = np.asarray(prices, dtype=np.float64)
    if price_array.ndim != 1:
        raise ValueError("prices must be one-dimensional")
    if price_array.size < 2:
        return None
    if not bool(np.all(price_array > 0)):
        raise ValueError("realized volatility needs positive prices")
    returns = np.diff(np.log(price_array))
    variance = float(returns @ returns)
    if not annualize:
        return math.sqrt(variance)
    if timestamps_ns is None:
        raise ValueError("annualize=True needs timestamps_ns to know the window's length")
    time_array = np.asarray(timestamps_ns)
    if time_array.shape != price_array.shape:
        raise ValueError("timestamps_ns and prices differ in length")
    elapsed = int(time_array[-1]) - int(time_array[0])
    if elapsed <= 0:
        return None
    return math.sqrt(variance * (year_ns / elapsed))


# --- the trade tape ---------------------------------------------------------------------------


class TradeTape:
    """The recent public trades of one instrument, in a ring buffer, with windowed analytics.

    Every windowed method takes exactly one of ``last`` (the newest N trades) or
    ``since_ns`` (trades with timestamp >= since_ns).
    """

    def __init__(self, capacity: int) -> None:
        self.ring = RingBuffer(capacity, TRADE_COLUMNS, time_column="timestamp")
        self._append = self.ring.append

    def __len__(self) -> int:
        return len(self.ring)

    def add(self, timestamp_ns: int, price: int, size: int, aggressor: Side) -> None:
        """Record one trade (timestamps must not go backwards)."""
        self._append(timestamp_ns, price, size, 1 if aggressor is Side.BUY else -1)

    def add_trade(self, trade: Trade) -> None:
        """Record a normalized :class:`Trade`, timed by its receive time (else its event time)."""
        timestamp = trade.receive_ns or trade.event_time_ms * 1_000_000
        self._append(timestamp, trade.price, trade.size, 1 if trade.aggressor is Side.BUY else -1)

    def window(self, *, last: int | None = None, since_ns: int | None = None) -> RingWindow:
        if (last is None) == (since_ns is None):
            raise ValueError("pass exactly one of last= or since_ns=")
        return self.ring.latest(last) if last is not None else self.ring.since(since_ns)  # type: ignore[arg-type]

    def vwap(self, *, last: int | None = None, since_ns: int | None = None) -> float | None:
        window = self.window(last=last, since_ns=since_ns)
        return vwap(window["price"], window["size"])

    def flow(self, *, last: int | None = None, since_ns: int | None = None) -> TradeFlow:
        window = self.window(last=last, since_ns=since_ns)
        return trade_flow(window["size"], window["side"])

    def realized_volatility(
        self, *, last: int | None = None, since_ns: int | None = None, annualize: bool = False
    ) -> float | None:
        window = self.window(last=last, since_ns=since_ns)
        return realized_volatility(window["price"], window["timestamp"], annualize=annualize)


class MidTape:
    """Mid prices sampled from a book over time, for mid-based realized volatility.

    Mid returns avoid the bid-ask bounce that inflates volatility measured on trade prices.
    """

    def __init__(self, capacity: int) -> None:
        self.ring = RingBuffer(capacity, MID_COLUMNS, time_column="timestamp")
        self._append = self.ring.append

    def __len__(self) -> int:
        return len(self.ring)

    def add(self, timestamp_ns: int, mid: float) -> None:
        self._append(timestamp_ns, mid)

    def sample(self, timestamp_ns: int, book: BookReader) -> float | None:
        """Record the book's current mid (nothing when a side is empty) and return it."""
        mid = mid_price(book)
        if mid is not None:
            self._append(timestamp_ns, mid)
        return mid

    def realized_volatility(
        self, *, last: int | None = None, since_ns: int | None = None, annualize: bool = False
    ) -> float | None:
        if (last is None) == (since_ns is None):
            raise ValueError("pass exactly one of last= or since_ns=")
        window = self.ring.latest(last) if last is not None else self.ring.since(since_ns)  # type: ignore[arg-type]
        return realized_volatility(window["mid"], window["timestamp"], annualize=annualize)


# --- streaming versions -----------------------------------------------------------------------


class OnlineVwap:
    """VWAP of the last ``count`` trades, O(1) per update with exact integer running sums."""

    __slots__ = ("_count", "_notional", "_trades", "_volume")

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self._count = count
        self._trades: deque[tuple[int, int]] = deque()
        self._notional = 0
        self._volume = 0

    def update(self, price: int, size: int) -> None:
        trades = self._trades
        if len(trades) == self._count:
            old_price, old_size = trades.popleft()
            self._notional -= old_price * old_size
            self._volume -= old_size
        trades.append((price, size))
        self._notional += price * size
        self._volume += size

    @property
    def value(self) -> float | None:
        return self._notional / self._volume if self._volume > 0 else None

    @property
    def volume(self) -> int:
        return self._volume

    def __len__(self) -> int:
        return len(self._trades)


class RollingTradeStats:
    """VWAP and aggressor volumes over the last ``window_ns`` nanoseconds, streaming.

    Each trade is added once and evicted once: O(1) amortized per trade, exact integer sums.
    Reads take ``now_ns`` so a quiet market still ages its window out.
    """

    __slots__ = ("_buy", "_notional", "_sell", "_trades", "_window")

    def __init__(self, window_ns: int) -> None:
        if window_ns <= 0:
            raise ValueError(f"window_ns must be positive, got {window_ns}")
        self._window = window_ns
        self._trades: deque[tuple[int, int, int, bool]] = deque()
        self._notional = 0
        self._buy = 0
        self._sell = 0

    def update(self, timestamp_ns: int, price: int, size: int, aggressor: Side) -> None:
        is_buy = aggressor is Side.BUY
        self._trades.append((timestamp_ns, price, size, is_buy))
        self._notional += price * size
        if is_buy:
            self._buy += size
        else:
            self._sell += size
        self._evict(timestamp_ns)

    def _evict(self, now_ns: int) -> None:
        horizon = now_ns - self._window
        trades = self._trades
        while trades and trades[0][0] <= horizon:
            _, price, size, is_buy = trades.popleft()
            self._notional -= price * size
            if is_buy:
                self._buy -= size
            else:
                self._sell -= size

    def vwap(self, now_ns: int) -> float | None:
        self._evict(now_ns)
        volume = self._buy + self._sell
        return self._notional / volume if volume > 0 else None

    def flow(self, now_ns: int) -> TradeFlow:
        self._evict(now_ns)
        return TradeFlow(self._buy, self._sell, len(self._trades))
