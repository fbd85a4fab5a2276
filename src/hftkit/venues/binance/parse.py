"""Turn Binance wire schemas into core events on an Instrument's integer grids.

Conversion goes through one ``ConversionCache`` per grid: a depth stream repeats the same
price and size strings constantly (over 85% hits on the recorded BTCUSDT streams), so after
warm-up a level costs two dict lookups, done inline by ``levels`` without a Python call per
value. A miss takes a fast path for the venue's fixed-width decimals (``"0.01230000"`` on
a 0.00000001 grid is ``int("001230000")``) and the exact general parser otherwise. The
grids reject negative sizes and non-positive prices on the miss path, so a malformed value
raises a classified ``InvalidLevelError`` instead of entering a book.

With the C accelerator built (``hftkit.core.native``), plain on-grid decimals convert in C
and only the rest reaches the cache; on the stream hot path (``depth_frame``,
``RawDepthUpdate``) the level arrays are converted straight from the raw JSON bytes, so no
Python string is built per price or size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial

import msgspec

from hftkit.codec.classify import classify_decode_error
from hftkit.codec.errors import DEFAULT_COUNTERS, raise_counted
from hftkit.core.errors import HftkitError
from hftkit.core.native import NATIVE
from hftkit.core.numbers import ConversionCache, DecimalGrid, Rounding, parse_decimal
from hftkit.core.types import BookDelta, BookTicker, ContractKind, Instrument, Side, Trade
from hftkit.venues.binance.codec import (
    AggregateTradeEvent,
    BookTickerEvent,
    CombinedStreamMessage,
    DepthSnapshot,
    DepthUpdate,
    PriceLevel,
    RawDepthUpdate,
    TradeEvent,
)

VENUE = "binance"

_LEVELS = msgspec.json.Decoder(list[PriceLevel])
_DEPTH_FRAME = msgspec.json.Decoder(CombinedStreamMessage[RawDepthUpdate])

Level = tuple[int, int]
_FAST_DIGITS = 18  # 10**18 < 2**63, as in the C fast path


class InvalidLevelError(HftkitError, ValueError):
    """A price <= 0 or a size < 0 on the wire."""


class _BoundedGrid(DecimalGrid):
    """A DecimalGrid that refuses values below a minimum number of steps.

    When the step is a power of ten (always so for grids inferred from the wire) a string
    written with exactly the grid's decimals converts with one ``int()`` of its digits.
    """

    __slots__ = ("_fast_width", "_minimum", "_what")

    def __init__(self, step: str, minimum: int, what: str) -> None:
        super().__init__(step)
        self._minimum = minimum
        self._what = what
        # decimals of a string the fast path accepts; -1 when the step is not a power of ten
        self._fast_width = self.decimals if self.step_text.replace(".", "").lstrip("0") == "1" else -1

    def to_steps(self, text: str, rounding: Rounding = Rounding.EXACT) -> int:
        whole, point, fraction = text.partition(".")
        digits = whole + fraction
        if (
            len(fraction) == self._fast_width
            and (point or not fraction)
            and digits.isascii()
            and digits.isdigit()
            and len(digits) <= _FAST_DIGITS
        ):
            steps = int(digits)  # at most 18 digits: always within the 64-bit range
        else:
            # longer or unusual text: the general parser bounds length, exponent and range
            steps = super().to_steps(text, rounding)
        if steps < self._minimum:
            raise InvalidLevelError(f"{self._what} {text!r} is out of range")
        return steps


class BinanceParser:
    """Per-instrument converter of Binance payloads to ticks/lots and core events."""

    __slots__ = ("_native_raw", "instrument", "levels", "price", "price_steps", "size", "size_steps", "venue")

    def __init__(self, instrument: Instrument, cache_capacity: int = 65_536) -> None:
        self.instrument = instrument
        self.venue = instrument.venue
        price_grid = _BoundedGrid(instrument.ticks.step_text, 1, "price")
        size_grid = _BoundedGrid(instrument.lots.step_text, 0, "size")
        self.price = ConversionCache(price_grid, cache_capacity)
        self.size = ConversionCache(size_grid, cache_capacity)
        if NATIVE is not None:
            # C converts plain on-grid decimals; anything else goes through the cache above,
            # which converts exactly or raises the classified error.
            native_price = NATIVE.Grid(price_grid.decimals, price_grid.step_units, 1, self.price)
            native_size = NATIVE.Grid(size_grid.decimals, size_grid.step_units, 0, self.size)
            # one value (a trade's, a ticker's): the C grid, no Python call on its fast path
            self.price_steps: Callable[[str], int] = native_price
            self.size_steps: Callable[[str], int] = native_size
            self.levels: Callable[[Iterable[PriceLevel]], list[Level]] = partial(
                NATIVE.convert_levels, native_price, native_size
            )
            self._native_raw: Callable[[msgspec.Raw], list[Level] | None] | None = partial(
                NATIVE.convert_raw_levels, native_price, native_size
            )
        else:
            self.price_steps = self.price
            self.size_steps = self.size
            self.levels = self._levels_python
            self._native_raw = None

    def _levels_python(self, raw: Iterable[PriceLevel]) -> list[Level]:
        """``[["61837.63", "1.5"], ...]`` -> ``[(6183763, 150000), ...]``."""
        price_get = self.price.lookup
        size_get = self.size.lookup
        price = self.price
        size = self.size
        return [
            (
                ticks if (ticks := price_get(p)) is not None else price(p),
                lots if (lots := size_get(q)) is not None else size(q),
            )
            for p, q in raw
        ]

    def raw_levels(self, raw: msgspec.Raw) -> list[Level]:
        """Levels straight from a raw JSON ``[["price", "size"], ...]`` array.

        Anything but plain string pairs is decoded by msgspec (whose ValidationError names
        the problem) and converted like ``levels``; the result is the same either way.
        """
        if self._native_raw is not None:
            levels = self._native_raw(raw)
            if levels is not None:
                return levels
        return self.levels(_LEVELS.decode(raw))

    def depth_update(self, update: DepthUpdate | RawDepthUpdate, receive_ns: int = 0) -> BookDelta:
        convert = self.raw_levels if isinstance(update, RawDepthUpdate) else self.levels
        return BookDelta(
            venue=self.venue,
            symbol=update.symbol,
            bids=convert(update.bids),  # type: ignore[arg-type]
            asks=convert(update.asks),  # type: ignore[arg-type]
            first_update_id=update.first_update_id,
            last_update_id=update.last_update_id,
            previous_update_id=update.previous_update_id,
            event_time_ms=update.event_time,
            receive_ns=receive_ns,
        )

    def depth_frame(self, frame: bytes, receive_ns: int = 0) -> BookDelta:
        """A combined-stream ``depthUpdate`` frame -> BookDelta (the stream hot path).

        Bad JSON raises msgspec's error; JSON nested deeper than the stack allows raises a
        counted ``CodecError`` (``nesting_depth``) rather than a bare ``RecursionError``.
        """
        try:
            update = _DEPTH_FRAME.decode(frame).data
        except RecursionError as error:
            return raise_counted(
                classify_decode_error(error, frame, "CombinedStreamMessage[RawDepthUpdate]"),
                DEFAULT_COUNTERS,
                error,
            )
        return self.depth_update(update, receive_ns)

    def depth_snapshot(self, snapshot: DepthSnapshot, receive_ns: int = 0) -> BookDelta:
        return BookDelta(
            venue=self.venue,
            symbol=self.instrument.symbol,
            bids=self.levels(snapshot.bids),
            asks=self.levels(snapshot.asks),
            last_update_id=snapshot.last_update_id,
            is_snapshot=True,
            event_time_ms=snapshot.event_time,
            receive_ns=receive_ns,
        )

    def book_ticker(self, ticker: BookTickerEvent, receive_ns: int = 0) -> BookTicker:
        return BookTicker(
            venue=self.venue,
            symbol=ticker.symbol,
            update_id=ticker.update_id,
            bid_price=self.price_steps(ticker.bid_price),
            bid_size=self.size_steps(ticker.bid_quantity),
            ask_price=self.price_steps(ticker.ask_price),
            ask_size=self.size_steps(ticker.ask_quantity),
            event_time_ms=ticker.event_time,
            receive_ns=receive_ns,
        )

    def trade(self, trade: TradeEvent | AggregateTradeEvent, receive_ns: int = 0) -> Trade:
        trade_id = trade.trade_id if isinstance(trade, TradeEvent) else trade.aggregate_trade_id
        return Trade(
            venue=self.venue,
            symbol=trade.symbol,
            trade_id=trade_id,
            price=self.price_steps(trade.price),
            size=self.size_steps(trade.quantity),
            # the buyer resting as maker means the seller took liquidity
            aggressor=Side.SELL if trade.buyer_is_maker else Side.BUY,
            event_time_ms=trade.event_time,
            receive_ns=receive_ns,
        )


def wire_decimals(values: Iterable[str]) -> int:
    """Largest number of decimal places written in ``values`` (trailing zeros count).

    Binance pads every price and quantity of a symbol to the same number of places, so the
    written width is the finest step the venue can ever send for it.
    """
    widest = 0
    for text in values:
        _, scale = parse_decimal(text)
        widest = max(widest, scale)
    return widest


def instrument_from_snapshot(
    symbol: str,
    snapshot: DepthSnapshot,
    kind: ContractKind = ContractKind.SPOT,
    venue: str = VENUE,
    extra_levels: Iterable[PriceLevel] = (),
) -> Instrument:
    """An Instrument whose grids are the wire precision seen in a depth snapshot.

    For replaying recordings without exchangeInfo: the grid is the wire's written precision
    (for example 0.00000001 for a spot price written ``"61837.63000000"``), which is exact
    for every value the venue sends, if finer than the real tick size.
    """
    levels = [*snapshot.bids, *snapshot.asks, *extra_levels]
    price_decimals = wire_decimals(price for price, _ in levels)
    size_decimals = wire_decimals(size for _, size in levels)
    return Instrument(
        venue=venue,
        symbol=symbol,
        base="",
        quote="",
        tick_size=_step(price_decimals),
        lot_size=_step(size_decimals),
        kind=kind,
    )


def _step(decimals: int) -> str:
    return "1" if decimals == 0 else "0." + "0" * (decimals - 1) + "1"
