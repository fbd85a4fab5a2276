"""Positions from fills: signed lots, exact average-cost entry price, realized/unrealized PnL, fees.

Money is kept exact without Fractions on the hot path. A position stores its signed open cost
as ``cost_numerator / cost_denominator`` in tick*lot units: while a position is only built up,
the denominator is 1 and the cost is the plain integer sum of ``price * lots``; only a partial
reduction under the average-cost method makes it rational (the remaining lots keep the average,
which need not be a whole tick). Realized PnL is kept the same way. ``Fraction`` and ``float``
appear only in the read-only properties at the edge.

Identity that always holds (and is property-tested): for any mark price,
``realized + unrealized(mark) == cash + quantity * mark`` where ``cash = -sum(sign * price * lots)``
over every fill applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from fractions import Fraction
from math import gcd

from hftkit.core.errors import HftkitError
from hftkit.core.types import Fill, Instrument, Side

_BUY = Side.BUY


class InvalidFillError(HftkitError, ValueError):
    """A fill that cannot be applied (non-positive quantity, negative price)."""


class Position:
    """One instrument's position on one venue under the average-cost method."""

    __slots__ = (
        "_cost_denominator",
        "_cost_numerator",
        "_realized_denominator",
        "_realized_numerator",
        "adjusted_lots",
        "bought_lots",
        "cash",
        "fees",
        "fill_count",
        "quantity",
        "sold_lots",
        "symbol",
        "venue",
    )

    def __init__(self, venue: str, symbol: str) -> None:
        self.venue = venue
        self.symbol = symbol
        self.quantity = 0  # signed lots: > 0 long, < 0 short
        self._cost_numerator = 0  # signed open cost (ticks*lots) = numerator / denominator
        self._cost_denominator = 1
        self._realized_numerator = 0
        self._realized_denominator = 1
        self.cash = 0  # -sum(sign * price * lots): exact total cash flow in ticks*lots
        self.bought_lots = 0
        self.sold_lots = 0
        self.adjusted_lots = 0  # net lots moved by reconciliation overwrites, not by fills
        self.fill_count = 0
        self.fees: dict[str, float] = {}

    # updates --------------------------------------------------------------------------------
    def apply(self, side: Side, price: int, lots: int, fee: float = 0.0, fee_asset: str = "") -> None:
        """Apply one execution: add to, reduce, close or flip the position."""
        if lots <= 0 or price < 0:
            raise InvalidFillError(f"fill needs lots > 0 and price >= 0, got lots={lots} price={price}")
        self.fill_count += 1
        quantity = self.quantity
        if side is _BUY:
            sign = 1
            self.bought_lots += lots
            self.cash -= price * lots
            adding = quantity >= 0
        else:
            sign = -1
            self.sold_lots += lots
            self.cash += price * lots
            adding = quantity <= 0
        if fee:
            fees = self.fees
            fees[fee_asset] = fees.get(fee_asset, 0.0) + fee
        if adding:
            # opening or adding: the cost grows by the exact notional, no rounding anywhere
            denominator = self._cost_denominator
            self._cost_numerator += (
                (sign * price * lots) if denominator == 1 else (sign * price * lots * denominator)
            )
            self.quantity = quantity + sign * lots
            return
        held = quantity if quantity > 0 else -quantity
        closing = lots if lots < held else held
        numerator, denominator = self._cost_numerator, self._cost_denominator
        # realized = cash from the closing lots - their share of the open cost
        #          = -sign*price*closing - numerator*closing/(denominator*held)
        realized_numerator = -sign * price * closing * denominator * held - numerator * closing
        self._add_realized(realized_numerator, denominator * held)
        remaining = held - closing
        if remaining:
            numerator *= remaining
            denominator *= held
            divisor = gcd(numerator, denominator)
            self._cost_numerator = numerator // divisor
            self._cost_denominator = denominator // divisor
            self.quantity = quantity + sign * closing
            return
        opening = lots - closing  # a flip opens the rest at this fill's price
        self._cost_numerator = sign * price * opening
        self._cost_denominator = 1
        self.quantity = sign * opening

    def apply_fill(self, fill: Fill) -> None:
        self.apply(fill.side, fill.price, fill.quantity, fill.fee, fill.fee_asset)

    def reprice(self, side: Side, lots: int, from_price: int, to_price: int) -> None:
        """Move ``lots`` already applied at ``from_price`` to ``to_price`` (a synthetic fill from
        reconciliation confirmed by the real one). Quantity is untouched; the price difference
        goes to the open cost while the position still faces that way, else to realized PnL."""
        if lots <= 0 or from_price == to_price:
            return
        sign = 1 if side is Side.BUY else -1
        change = sign * (to_price - from_price) * lots
        self.cash -= change
        if self.quantity != 0 and (self.quantity > 0) == (sign > 0):
            self._cost_numerator += change * self._cost_denominator
        else:
            self._add_realized(-change, 1)

    def add_fee(self, fee: float, fee_asset: str) -> None:
        if fee:
            self.fees[fee_asset] = self.fees.get(fee_asset, 0.0) + fee

    def overwrite(self, quantity: int, average_price: Fraction | int | None = None) -> int:
        """Set the position to the venue's figure (reconciliation); return the lots adjusted.

        The open cost is reset to ``quantity * average_price`` (the venue's entry price) or, when
        the venue gives none, kept at the current average. Realized PnL and cash are untouched: an
        overwrite is a correction of what we hold, not a trade; ``adjusted_lots`` records it.
        """
        delta = quantity - self.quantity
        if average_price is None:
            average_price = self.average_price or Fraction(0)
        cost = Fraction(average_price) * quantity
        self._cost_numerator, self._cost_denominator = cost.numerator, cost.denominator
        self.adjusted_lots += delta
        self.quantity = quantity
        return delta

    def _add_realized(self, numerator: int, denominator: int) -> None:
        current_denominator = self._realized_denominator
        if current_denominator == denominator:
            total_numerator = self._realized_numerator + numerator
        else:
            total_numerator = self._realized_numerator * denominator + numerator * current_denominator
            denominator *= current_denominator
        divisor = gcd(total_numerator, denominator)
        self._realized_numerator = total_numerator // divisor
        self._realized_denominator = denominator // divisor

    # edge views -----------------------------------------------------------------------------
    @property
    def is_flat(self) -> bool:
        return self.quantity == 0

    @property
    def open_cost(self) -> Fraction:
        """Signed cost of the open lots in ticks*lots (positive long, negative short)."""
        return Fraction(self._cost_numerator, self._cost_denominator)

    @property
    def average_price(self) -> Fraction | None:
        """Exact average entry price in ticks, None when flat."""
        if self.quantity == 0:
            return None
        return Fraction(self._cost_numerator, self._cost_denominator * self.quantity)

    @property
    def realized(self) -> Fraction:
        """Realized PnL in ticks*lots (multiply by tick size * lot size * contract size for money)."""
        return Fraction(self._realized_numerator, self._realized_denominator)

    def unrealized(self, mark_price: int | Fraction) -> Fraction:
        """Unrealized PnL in ticks*lots at a mark price in ticks (for example the book mid)."""
        return self.quantity * Fraction(mark_price) - self.open_cost

    def total(self, mark_price: int | Fraction) -> Fraction:
        return self.realized + self.unrealized(mark_price)

    def average_price_float(self) -> float | None:
        average = self.average_price
        return None if average is None else float(average)

    def __repr__(self) -> str:
        return (
            f"Position({self.venue}:{self.symbol} qty={self.quantity} avg={self.average_price} "
            f"realized={self.realized})"
        )


def ticks_lots_to_money(value: Fraction, instrument: Instrument) -> Decimal:
    """Convert a ticks*lots amount to quote currency (exact until the final division)."""
    scale = instrument.tick_size * instrument.lot_size * instrument.contract_size
    return Decimal(value.numerator) * scale / Decimal(value.denominator)


class AggregatePosition:
    """Net exposure of one asset across venues, in base units (lots differ per venue)."""

    __slots__ = ("key", "legs", "quantity", "realized")

    def __init__(self, key: str) -> None:
        self.key = key
        self.quantity = Decimal(0)
        self.realized = Decimal(0)
        self.legs: list[Position] = []

    def __repr__(self) -> str:
        return (
            f"AggregatePosition({self.key} qty={self.quantity} realized={self.realized} "
            f"legs={len(self.legs)})"
        )


class PositionBook:
    """Every position by (venue, symbol), plus aggregation across venues.

    Aggregation needs each leg's Instrument (lot sizes differ between venues), so instruments
    are registered; ``group_of`` maps an instrument to the key it aggregates under (default:
    its base asset, so Binance BTCUSDT and Thalex BTC-PERPETUAL both count towards "BTC").
    """

    __slots__ = ("_group_of", "_instruments", "_positions")

    def __init__(self, group_of: Callable[[Instrument], str] | None = None) -> None:
        self._positions: dict[tuple[str, str], Position] = {}
        self._instruments: dict[tuple[str, str], Instrument] = {}
        self._group_of = group_of or (lambda instrument: instrument.base)

    def register(self, instrument: Instrument) -> None:
        self._instruments[instrument.key] = instrument

    def get(self, venue: str, symbol: str) -> Position:
        """The position (created flat on first use)."""
        key = (venue, symbol)
        position = self._positions.get(key)
        if position is None:
            position = self._positions[key] = Position(venue, symbol)
        return position

    def find(self, venue: str, symbol: str) -> Position | None:
        return self._positions.get((venue, symbol))

    def apply_fill(self, fill: Fill) -> Position:
        key = (fill.venue, fill.symbol)
        position = self._positions.get(key)
        if position is None:
            position = self._positions[key] = Position(fill.venue, fill.symbol)
        position.apply(fill.side, fill.price, fill.quantity, fill.fee, fill.fee_asset)
        return position

    def __iter__(self) -> Iterator[Position]:
        return iter(list(self._positions.values()))

    def __len__(self) -> int:
        return len(self._positions)

    def venue_positions(self, venue: str) -> list[Position]:
        return [position for key, position in self._positions.items() if key[0] == venue]

    def fees(self) -> dict[str, float]:
        """Fees paid per asset over every position."""
        total: dict[str, float] = {}
        for position in self._positions.values():
            for asset, amount in position.fees.items():
                total[asset] = total.get(asset, 0.0) + amount
        return total

    def aggregate(self) -> dict[str, AggregatePosition]:
        """Net base quantity and realized PnL (quote currency) per group across venues.

        Raises KeyError naming the position whose instrument was never registered: guessing a
        lot size would silently misstate exposure.
        """
        groups: dict[str, AggregatePosition] = {}
        for key, position in self._positions.items():
            instrument = self._instruments.get(key)
            if instrument is None:
                raise KeyError(f"no instrument registered for position {key[0]}:{key[1]}")
            group = self._group_of(instrument)
            aggregate = groups.get(group)
            if aggregate is None:
                aggregate = groups[group] = AggregatePosition(group)
            aggregate.quantity += instrument.lots.to_decimal(position.quantity) * instrument.contract_size
            aggregate.realized += ticks_lots_to_money(position.realized, instrument)
            aggregate.legs.append(position)
        return groups
