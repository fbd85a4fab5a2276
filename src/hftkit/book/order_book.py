"""L2 price-level order book in integer ticks and lots.

Per side the book keeps a dict ``price -> size`` holding every level, and a sorted *window*
of the prices near the top: every live price at or better than the window's edge, ordered
so that the best price is the LAST element on both sides (bid prices ascending, ask prices
negated and ascending). Best bid/ask is ``window[-1]`` plus one dict lookup.

Why a window and not one sorted list of every price: Binance depth streams churn levels far
from the top (on the recorded BTCUSDT streams half of all level inserts/deletes land more
than ~100 levels deep). A level outside the window costs one dict operation; only a level
inside it pays a ``bisect`` plus a small list insert/delete. The window is kept between
``WINDOW_MIN`` and ``WINDOW_MAX`` prices: trimmed by a slice when it grows, refilled from
the dict (``heapq.nlargest``, O(n)) when the market eats through it. Cost per update
therefore does not grow with the depth of the book.

The per-level loop (``_apply_side``) and the refill's top-k scan run in C when
``hftkit._native`` is built, over these same dict and list objects; ``_apply_side_python``
and ``_top_keys_python`` are their pure twins and the reference the tests hold C to.

Our own resting orders live in an overlay beside the public levels, so a quoting strategy
can look at the book without itself (``best_bid_excluding_own``) without copying it.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

import msgspec

from hftkit.core.errors import HftkitError
from hftkit.core.native import NATIVE
from hftkit.core.types import Side

Level = tuple[int, int]

# Window of sorted prices kept per side (see the module docstring).
WINDOW_MIN = 8
WINDOW_TARGET = 64
WINDOW_MAX = 256
# Edge of a window that holds every level of its side.
_EVERYTHING = -(1 << 256)


class UnknownOwnOrderError(HftkitError, KeyError):
    """An own-order operation named a client order id the overlay does not hold."""


class DuplicateOwnOrderError(HftkitError, ValueError):
    """An own order was added twice under the same client order id."""


class BookWalk(msgspec.Struct, frozen=True):
    """What taking ``requested`` lots from one side of the book would cost.

    ``notional`` is the exact sum of ``price_ticks * lots`` over the levels consumed, so the
    average price is ``notional / filled`` ticks; ``worst_price`` is the last level touched.
    """

    requested: int
    filled: int
    notional: int
    worst_price: int | None
    levels_consumed: int

    @property
    def complete(self) -> bool:
        return self.filled >= self.requested

    @property
    def average_price(self) -> float | None:
        """Average fill price in ticks (a float: for analytics, never for keys)."""
        return self.notional / self.filled if self.filled else None


class OwnOrder(msgspec.Struct):
    """One of our resting orders as the overlay knows it."""

    client_order_id: str
    side: Side
    price: int
    size: int


class OrderBook:
    """L2 book of one instrument: best bid/ask in O(1), level updates in O(log n) or better.

    ``max_depth`` (optional) trims each side to that many best levels after every update,
    for consumers that only care about the top and want to bound memory.
    """

    __slots__ = (
        "_ask_edge",
        "_ask_window",
        "_asks",
        "_best_ask",
        "_best_bid",
        "_bid_edge",
        "_bid_window",
        "_bids",
        "_own_ask_sizes",
        "_own_bid_sizes",
        "_own_orders",
        "last_update_id",
        "max_depth",
        "symbol",
        "updates_applied",
        "window_refills",
    )

    def __init__(self, symbol: str = "", max_depth: int | None = None) -> None:
        if max_depth is not None and max_depth <= 0:
            raise ValueError(f"max_depth must be positive, got {max_depth}")
        self.symbol = symbol
        self.max_depth = max_depth
        self._bids: dict[int, int] = {}
        self._asks: dict[int, int] = {}
        # bid window: every live bid price >= _bid_edge, ascending (best last)
        self._bid_window: list[int] = []
        self._bid_edge = _EVERYTHING
        # ask window: every live ask price p with -p >= _ask_edge, as -p ascending (best last)
        self._ask_window: list[int] = []
        self._ask_edge = _EVERYTHING
        # the top of each side as a ready tuple: a read is one attribute load
        self._best_bid: Level | None = None
        self._best_ask: Level | None = None
        self._own_orders: dict[str, OwnOrder] = {}
        self._own_bid_sizes: dict[int, int] = {}
        self._own_ask_sizes: dict[int, int] = {}
        self.last_update_id = -1
        self.updates_applied = 0
        self.window_refills = 0

    # updates ------------------------------------------------------------------------------
    def apply_delta(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Set absolute level sizes; size 0 deletes (deleting an absent level is a no-op)."""
        best = _apply_side(self._bids, self._bid_window, self._bid_edge, bids, False, WINDOW_MIN, WINDOW_MAX)
        self._best_bid = self._maintain_bids() if best is False else best
        best = _apply_side(self._asks, self._ask_window, self._ask_edge, asks, True, WINDOW_MIN, WINDOW_MAX)
        self._best_ask = self._maintain_asks() if best is False else best
        self.updates_applied += 1
        if self.max_depth is not None:
            self._trim(self.max_depth)

    def _maintain_bids(self) -> Level | None:
        window = self._bid_window
        if len(window) < WINDOW_MIN:
            window = self._refill_bids()
        else:
            cut = len(window) - WINDOW_TARGET
            self._bid_edge = window[cut]
            del window[:cut]
        return (window[-1], self._bids[window[-1]]) if window else None

    def _maintain_asks(self) -> Level | None:
        window = self._ask_window
        if len(window) < WINDOW_MIN:
            window = self._refill_asks()
        else:
            cut = len(window) - WINDOW_TARGET
            self._ask_edge = window[cut]
            del window[:cut]
        return (-window[-1], self._asks[-window[-1]]) if window else None

    def _refill_bids(self) -> list[int]:
        sizes = self._bids
        self.window_refills += 1
        if len(sizes) <= WINDOW_TARGET:
            window = sorted(sizes)
            self._bid_edge = _EVERYTHING
        else:
            window = _top_keys(sizes, WINDOW_TARGET, False)
            self._bid_edge = window[0]
        self._bid_window = window
        return window

    def _refill_asks(self) -> list[int]:
        sizes = self._asks
        self.window_refills += 1
        if len(sizes) <= WINDOW_TARGET:
            window = sorted(-price for price in sizes)
            self._ask_edge = _EVERYTHING
        else:
            window = _top_keys(sizes, WINDOW_TARGET, True)
            self._ask_edge = window[0]
        self._ask_window = window
        return window

    def _refresh_top(self) -> None:
        bid_window = self._bid_window
        self._best_bid = (bid_window[-1], self._bids[bid_window[-1]]) if bid_window else None
        ask_window = self._ask_window
        self._best_ask = (-ask_window[-1], self._asks[-ask_window[-1]]) if ask_window else None

    def apply_level(self, side: Side, price: int, size: int) -> None:
        """Set one level (size 0 deletes)."""
        if side is Side.BUY:
            self.apply_delta(((price, size),), ())
        else:
            self.apply_delta((), ((price, size),))

    def apply_snapshot(self, bids: Iterable[Level], asks: Iterable[Level], update_id: int = -1) -> None:
        """Replace the whole public book (own orders are kept: they are ours, not the venue's)."""
        self._bids = {price: size for price, size in bids if size}
        self._asks = {price: size for price, size in asks if size}
        self._refill_bids()
        self._refill_asks()
        self.last_update_id = update_id
        self.updates_applied += 1
        if self.max_depth is not None:
            self._trim(self.max_depth)
        self._refresh_top()

    def clear(self) -> None:
        """Forget every public level (for example when the feed is lost)."""
        self._bids = {}
        self._asks = {}
        self._bid_window = []
        self._ask_window = []
        self._bid_edge = self._ask_edge = _EVERYTHING
        self._best_bid = self._best_ask = None
        self.last_update_id = -1

    def _trim(self, depth: int) -> None:
        if len(self._bids) > depth:
            kept = heapq.nlargest(depth, self._bids)
            self._bids = {price: self._bids[price] for price in kept}
            self._refill_bids()
        if len(self._asks) > depth:
            kept = heapq.nsmallest(depth, self._asks)
            self._asks = {price: self._asks[price] for price in kept}
            self._refill_asks()
        self._refresh_top()

    # ordered iteration --------------------------------------------------------------------
    def _bid_prices_best_first(self) -> Iterator[int]:
        yield from reversed(self._bid_window)
        edge = self._bid_edge
        if edge != _EVERYTHING:
            yield from sorted((price for price in self._bids if price < edge), reverse=True)

    def _ask_prices_best_first(self) -> Iterator[int]:
        for key in reversed(self._ask_window):
            yield -key
        limit = -self._ask_edge
        if self._ask_edge != _EVERYTHING:
            yield from sorted(price for price in self._asks if price > limit)

    # top of book --------------------------------------------------------------------------
    def best_bid(self) -> Level | None:
        """(price ticks, size lots) of the best bid, or None: one attribute read."""
        return self._best_bid

    def best_ask(self) -> Level | None:
        """(price ticks, size lots) of the best ask, or None: one attribute read."""
        return self._best_ask

    def best_bid_price(self) -> int | None:
        return self._bid_window[-1] if self._bid_window else None

    def best_ask_price(self) -> int | None:
        return -self._ask_window[-1] if self._ask_window else None

    def spread_ticks(self) -> int | None:
        if self._bid_window and self._ask_window:
            return -self._ask_window[-1] - self._bid_window[-1]
        return None

    def mid_ticks2(self) -> int | None:
        """Twice the mid price in ticks (bid + ask): exact, no half ticks."""
        if self._bid_window and self._ask_window:
            return self._bid_window[-1] - self._ask_window[-1]
        return None

    def is_crossed(self) -> bool:
        """True when best bid >= best ask: a broken book (missed update or bad data)."""
        return bool(self._bid_window and self._ask_window and self._bid_window[-1] >= -self._ask_window[-1])

    # depth --------------------------------------------------------------------------------
    def bids(self, n: int | None = None) -> list[Level]:
        """Up to ``n`` bid levels, best (highest) first; every level when ``n`` is None."""
        sizes = self._bids
        window = self._bid_window
        if n is None or (n > len(window) and self._bid_edge != _EVERYTHING):
            # beyond the window: sort the rest once (depth reads that deep are rare)
            selected = sorted(sizes, reverse=True) if n is None else heapq.nlargest(n, sizes)
        elif n <= 0:
            return []
        else:
            selected = window[: -n - 1 : -1]
        return [(price, sizes[price]) for price in selected]

    def asks(self, n: int | None = None) -> list[Level]:
        """Up to ``n`` ask levels, best (lowest) first; every level when ``n`` is None."""
        sizes = self._asks
        window = self._ask_window
        if n is None or (n > len(window) and self._ask_edge != _EVERYTHING):
            selected = sorted(sizes) if n is None else heapq.nsmallest(n, sizes)
            return [(price, sizes[price]) for price in selected]
        if n <= 0:
            return []
        return [(-key, sizes[-key]) for key in window[: -n - 1 : -1]]

    def depth(self, side: Side, n: int | None = None) -> list[Level]:
        return self.bids(n) if side is Side.BUY else self.asks(n)

    def cumulative_depth(self, side: Side, n: int | None = None) -> list[Level]:
        """Levels best first with the running total of size up to and including each one."""
        total = 0
        result = []
        for price, size in self.depth(side, n):
            total += size
            result.append((price, total))
        return result

    def size_at(self, side: Side, price: int) -> int:
        """Public size resting at ``price`` on ``side`` (0 when the level is empty)."""
        return (self._bids if side is Side.BUY else self._asks).get(price, 0)

    def level_count(self, side: Side) -> int:
        return len(self._bids if side is Side.BUY else self._asks)

    def total_size(self, side: Side, n: int | None = None) -> int:
        return sum(size for _, size in self.depth(side, n))

    def walk(self, taker_side: Side, quantity: int) -> BookWalk:
        """Walk the opposite side to price a taker order of ``quantity`` lots.

        A BUY consumes asks from the lowest, a SELL consumes bids from the highest.
        """
        if quantity <= 0:
            return BookWalk(quantity, 0, 0, None, 0)
        if taker_side is Side.BUY:
            sizes = self._asks
            prices = self._ask_prices_best_first()
        else:
            sizes = self._bids
            prices = self._bid_prices_best_first()
        remaining = quantity
        notional = 0
        worst = None
        consumed = 0
        for price in prices:
            take = min(remaining, sizes[price])
            notional += take * price
            remaining -= take
            worst = price
            consumed += 1
            if not remaining:
                break
        return BookWalk(quantity, quantity - remaining, notional, worst, consumed)

    # own orders overlay -------------------------------------------------------------------
    def add_own_order(self, client_order_id: str, side: Side, price: int, size: int) -> None:
        """Record one of our resting orders so views excluding ourselves can subtract it."""
        if client_order_id in self._own_orders:
            raise DuplicateOwnOrderError(f"own order {client_order_id!r} is already in the book")
        if size <= 0:
            raise ValueError(f"own order size must be positive, got {size}")
        self._own_orders[client_order_id] = OwnOrder(client_order_id, side, price, size)
        self._add_own_size(side, price, size)

    def remove_own_order(self, client_order_id: str) -> OwnOrder:
        """Forget an own order (cancelled or filled); returns what was held."""
        order = self._own_orders.pop(client_order_id, None)
        if order is None:
            raise UnknownOwnOrderError(client_order_id)
        self._add_own_size(order.side, order.price, -order.size)
        return order

    def amend_own_order(
        self, client_order_id: str, price: int | None = None, size: int | None = None
    ) -> None:
        """Change an own order's price and/or remaining size; size 0 removes it."""
        order = self._own_orders.get(client_order_id)
        if order is None:
            raise UnknownOwnOrderError(client_order_id)
        if size is not None and size <= 0:
            self.remove_own_order(client_order_id)
            return
        self._add_own_size(order.side, order.price, -order.size)
        if price is not None:
            order.price = price
        if size is not None:
            order.size = size
        self._add_own_size(order.side, order.price, order.size)

    def own_orders(self) -> list[OwnOrder]:
        return list(self._own_orders.values())

    def own_size_at(self, side: Side, price: int) -> int:
        return (self._own_bid_sizes if side is Side.BUY else self._own_ask_sizes).get(price, 0)

    def _add_own_size(self, side: Side, price: int, delta: int) -> None:
        sizes = self._own_bid_sizes if side is Side.BUY else self._own_ask_sizes
        total = sizes.get(price, 0) + delta
        if total > 0:
            sizes[price] = total
        else:
            sizes.pop(price, None)

    def best_bid_excluding_own(self) -> Level | None:
        """Best bid of everyone else: skips levels made only of our own size."""
        levels = self.bids_excluding_own(1)
        return levels[0] if levels else None

    def best_ask_excluding_own(self) -> Level | None:
        levels = self.asks_excluding_own(1)
        return levels[0] if levels else None

    def bids_excluding_own(self, n: int | None = None) -> list[Level]:
        return self._excluding_own(self._bid_prices_best_first(), self._bids, self._own_bid_sizes, n)

    def asks_excluding_own(self, n: int | None = None) -> list[Level]:
        return self._excluding_own(self._ask_prices_best_first(), self._asks, self._own_ask_sizes, n)

    def depth_excluding_own(self, side: Side, n: int | None = None) -> list[Level]:
        return self.bids_excluding_own(n) if side is Side.BUY else self.asks_excluding_own(n)

    @staticmethod
    def _excluding_own(
        prices: Iterable[int], sizes: dict[int, int], own: dict[int, int], n: int | None
    ) -> list[Level]:
        # The public size can lag our own view (our order acknowledged before the depth
        # update arrives), so the remainder is clamped at zero and such levels are skipped.
        result: list[Level] = []
        if n is not None and n <= 0:
            return result
        limit = -1 if n is None else n
        for price in prices:
            others = sizes[price] - own.get(price, 0)
            if others > 0:
                result.append((price, others))
                if len(result) == limit:
                    break
        return result

    # misc ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._bids) + len(self._asks)

    def __repr__(self) -> str:
        return f"OrderBook({self.symbol!r} bid={self.best_bid()} ask={self.best_ask()} levels={len(self)})"


def _apply_side_python(
    sizes: dict[int, int],
    window: list[int],
    edge: int,
    levels: Iterable[Level],
    negate: bool,
    window_min: int,
    window_max: int,
) -> Level | Literal[False] | None:
    """Apply one side's levels to its dict and window (the pure twin of ``_native.apply_side``).

    The window holds prices (bids) or negated prices (asks), best last. Returns the best
    level, None for an empty side, or False when the window must be refilled or trimmed.
    """
    pop = sizes.pop
    if negate:
        for price, size in levels:
            key = -price
            # Most levels lie outside the window: test that first, then only dict work.
            if key < edge:
                if size:
                    sizes[price] = size
                else:
                    pop(price, None)
            elif size:
                if price not in sizes:
                    insort(window, key)
                sizes[price] = size
            elif pop(price, None) is not None:
                del window[bisect_left(window, key)]
    else:
        for price, size in levels:
            if price < edge:
                if size:
                    sizes[price] = size
                else:
                    pop(price, None)
            elif size:
                if price not in sizes:
                    insort(window, price)
                sizes[price] = size
            elif pop(price, None) is not None:
                del window[bisect_left(window, price)]
    length = len(window)
    if (length < window_min and len(sizes) > length) or length > window_max:
        return False
    if not length:
        return None
    best = -window[-1] if negate else window[-1]
    return (best, sizes[best])


_apply_side: Callable[
    [dict[int, int], list[int], int, Iterable[Level], bool, int, int], Level | Literal[False] | None
] = NATIVE.apply_side if NATIVE is not None else _apply_side_python


def _top_keys_python(sizes: dict[int, int], count: int, negate: bool) -> list[int]:
    """The ``count`` best window keys of a side, ascending (the pure twin of ``_native.top_keys``)."""
    if negate:
        return sorted(-price for price in heapq.nsmallest(count, sizes))
    return sorted(heapq.nlargest(count, sizes))


def _top_keys(sizes: dict[int, int], count: int, negate: bool) -> list[int]:
    # A window refill scans the whole side: ~100 us in Python for 2,000 levels, ~10 us in C.
    if NATIVE is not None:
        keys: list[int] | None = NATIVE.top_keys(sizes, count, negate)
        if keys is not None:
            return keys
    return _top_keys_python(sizes, count, negate)
