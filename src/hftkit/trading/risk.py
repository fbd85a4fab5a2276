"""Pre-trade risk gate and kill switch.

Every outgoing order passes ``RiskGate.check`` between the quoting service and the adapter.
The gate is a sans-I/O core: limits are precomputed into integers per instrument when an
instrument is added, so a check is a handful of integer comparisons, one clock read and a
few reads of the exposure source, and the pass path returns the shared ``ACCEPTED`` value
without allocating.

Exposure model (worst case). Resting orders are counted as if they all fill: the long side
of an instrument is ``position + open buys`` and the short side ``position - open sells``.
A buy is accepted only when ``position + open buys + quantity <= max_position``; a sell
only when ``position - open sells - quantity >= -max_position``. A fill moves lots from an
open order into the position, so neither side changes when orders fill: worst-case
exposure only grows through orders this gate accepts. That is what lets the aggregate
notional be cached per instrument (refreshed at each check of the instrument and re-marked
at each mid update) without ever understating it; cancels lower it at the next refresh.

The caller must register each accepted order with the exposure source before it checks
the next order (the state tracker does this when it records the order as pending-new);
the gate reads exposure, it does not keep a second order book of its own.

The kill switch trips manually, when a circuit breaker opens, when a book is unsynced or
stale, and on drawdown. While tripped every new order is rejected (``KILL_SWITCH``) until
``reset()``; cancels are always allowed. A trip records an audit event and a cancel-all
request; ``KillSwitchShell`` runs the registered cancel-all hooks (sync or async) so the
gate itself never performs I/O.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import msgspec

from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.errors import HftkitError
from hftkit.core.numbers import Rounding
from hftkit.core.types import Instrument, Order, OrderType, Side

logger = logging.getLogger(__name__)

__all__ = [
    "ACCEPTED",
    "BookHealthPolicy",
    "HookFailure",
    "InstrumentLimits",
    "KillSwitchAction",
    "KillSwitchEvent",
    "KillSwitchShell",
    "RejectReason",
    "RiskConfigError",
    "RiskDecision",
    "RiskExposure",
    "RiskGate",
    "RiskInputError",
    "RiskLimits",
    "TripSource",
]


# errors ------------------------------------------------------------------------------------
class RiskConfigError(HftkitError, ValueError):
    """A limit that cannot be enforced as written (negative, zero where positive is needed)."""


class RiskInputError(HftkitError, ValueError):
    """A report fed to the gate that it cannot use (NaN PnL, unknown instrument)."""


# decisions ---------------------------------------------------------------------------------
class RejectReason(enum.Enum):
    KILL_SWITCH = "kill_switch"
    UNKNOWN_INSTRUMENT = "unknown_instrument"
    INVALID_ORDER = "invalid_order"  # non-positive quantity or limit price
    ORDER_SIZE = "order_size"
    ORDER_NOTIONAL = "order_notional"
    POSITION_LIMIT = "position_limit"
    TOTAL_NOTIONAL = "total_notional"
    OPEN_ORDERS = "open_orders"  # per instrument
    TOTAL_OPEN_ORDERS = "total_open_orders"
    ORDER_RATE = "order_rate"  # limit "instrument" or "total" in the decision
    PRICE_COLLAR = "price_collar"
    NO_MID = "no_mid"
    STALE_MID = "stale_mid"
    REDUCE_ONLY = "reduce_only"
    BOOK_UNSYNCED = "book_unsynced"
    BOOK_STALE = "book_stale"


class RiskDecision(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one check: ``ACCEPTED`` or a rejection naming the limit it hit.

    ``value`` and ``bound`` are integers in ``unit``: lots, orders, bps, ticks, ms, or
    notional units of ``10**-notional_decimals`` quote currency (see ``RiskGate``).
    """

    accepted: bool
    reason: RejectReason | None = None
    limit: str = ""
    value: int = 0
    bound: int = 0
    unit: str = ""
    venue: str = ""
    symbol: str = ""

    def __bool__(self) -> bool:
        return self.accepted


ACCEPTED = RiskDecision(accepted=True)
"""The single pass-path result: checks return this object itself, so passing allocates nothing."""


# exposure source ---------------------------------------------------------------------------
@runtime_checkable
class RiskExposure(Protocol):
    """What the gate reads about current exposure; the state tracker implements it.

    Quantities are integer lots of the instrument; ``position`` is signed (long > 0).
    ``open_quantity`` is the remaining quantity of open orders on one side, including
    orders accepted by the gate and not yet acknowledged by the venue.
    """

    def position(self, venue: str, symbol: str) -> int: ...

    def open_quantity(self, venue: str, symbol: str, side: Side) -> int: ...

    def open_order_count(self, venue: str, symbol: str) -> int: ...

    def total_open_order_count(self) -> int: ...


# configuration -----------------------------------------------------------------------------
class BookHealthPolicy(enum.Enum):
    TRIP = "trip"  # an unsynced or stale book trips the kill switch
    REJECT = "reject"  # only orders on that instrument are rejected while its book is unhealthy


@dataclass(frozen=True)
class InstrumentLimits:
    """Limits of one instrument in human units; the gate converts them to ticks/lots once.

    Quantities are decimal strings in the instrument's base quantity, notionals decimal
    strings in its quote currency. ``None`` disables a limit.
    """

    max_position: str | None = None  # each way, worst case including open orders
    max_order_quantity: str | None = None
    max_order_notional: str | None = None
    max_open_orders: int | None = None
    max_orders_per_window: int | None = None  # over RiskLimits.rate_window_ms
    collar_bps: int | None = None  # |price - mid| <= collar_bps / 10_000 * mid
    collar_ticks: int | None = None  # |price - mid| <= collar_ticks
    max_mid_age_ms: int = 1_000  # an older mid cannot anchor a collar or mark a position
    max_book_age_ms: int | None = None  # None: book health is not required for this instrument
    book_health: BookHealthPolicy = BookHealthPolicy.TRIP
    reduce_only: bool = False

    def __post_init__(self) -> None:
        for name in ("max_open_orders", "max_orders_per_window", "max_mid_age_ms", "max_book_age_ms"):
            _require_positive(name, getattr(self, name))
        for name in ("collar_bps", "collar_ticks"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise RiskConfigError(f"{name} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True)
class RiskLimits:
    """Limits over all instruments, and the kill switch's drawdown bound."""

    max_total_notional: str | None = None  # quote currency, all instruments summed (one currency)
    max_total_open_orders: int | None = None
    max_orders_per_window: int | None = None
    rate_window_ms: int = 1_000
    max_drawdown: float | None = None  # account currency, peak to trough of reported PnL
    reduce_only: bool = False

    def __post_init__(self) -> None:
        for name in ("max_total_open_orders", "max_orders_per_window", "rate_window_ms"):
            _require_positive(name, getattr(self, name))
        if self.max_drawdown is not None and not (math.isfinite(self.max_drawdown) and self.max_drawdown > 0):
            raise RiskConfigError(f"max_drawdown must be a positive finite number, got {self.max_drawdown!r}")


def _require_positive(name: str, value: object) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        raise RiskConfigError(f"{name} must be a positive integer, got {value!r}")


def _decimal(name: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except Exception:
        raise RiskConfigError(f"{name} is not a decimal number: {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise RiskConfigError(f"{name} must be a positive number, got {text!r}")
    return value


def _decimal_places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


# kill switch records -----------------------------------------------------------------------
class TripSource(enum.Enum):
    MANUAL = "manual"
    BREAKER = "breaker"
    BOOK = "book"
    DRAWDOWN = "drawdown"


class KillSwitchAction(enum.Enum):
    TRIP = "trip"
    RESET = "reset"


class KillSwitchEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One audit entry. ``first`` is False for a trip cause reported while already tripped."""

    action: KillSwitchAction
    source: TripSource | None
    detail: str
    time_ns: int  # wall clock, for humans and logs
    monotonic_ns: int
    first: bool = True


def _ring(size: int | None) -> collections.deque[int] | None:
    """The last ``size`` accept times of a sliding-window rate limit, pre-filled as long ago."""
    return None if size is None else collections.deque([_NEVER] * size, maxlen=size)


# per-instrument state ----------------------------------------------------------------------
# enum members bound once: reading ``Side.BUY`` costs an attribute walk on every check (3.11)
_BUY, _SELL, _MARKET = Side.BUY, Side.SELL, OrderType.MARKET
_UNLIMITED = 1 << 126  # compares greater than any real quantity; keeps disabled limits branch-free
_NEVER = -(1 << 62)  # a timestamp older than any window


class _InstrumentRisk:
    """Precomputed integer limits and live state of one instrument (one dict lookup per check)."""

    __slots__ = (
        "book_health_trips",
        "book_synced",
        "book_update_ns",
        "book_was_synced",
        "collar_bps",
        "collar_ticks2",
        "gross_lots",
        "instrument",
        "limits",
        "mark2",
        "max_book_age_ns",
        "max_long",
        "max_mid_age_ns",
        "max_open_orders",
        "max_order_lots",
        "max_order_notional2",
        "mid2",
        "mid_ns",
        "multiplier",
        "notional2",
        "rate_times",
        "reduce_only",
        "requires_mid",
        "symbol",
        "venue",
    )

    def __init__(self, instrument: Instrument, limits: InstrumentLimits) -> None:
        self.instrument = instrument
        self.limits = limits
        self.venue = instrument.venue
        self.symbol = instrument.symbol
        self.mid2 = 0  # bid + ask in ticks: twice the mid, so a half-tick mid stays an integer
        self.mid_ns = _NEVER
        self.mark2 = 0  # the mid2 the cached notional was marked at
        self.book_synced = False
        self.book_was_synced = False
        self.book_update_ns = _NEVER
        self.gross_lots = 0  # cached worst-case |exposure| in lots
        self.notional2 = 0  # cached gross_lots * mark2 * multiplier
        self.rate_times: collections.deque[int] | None = None
        self.multiplier = 0
        self.max_long = _UNLIMITED
        self.max_order_lots = _UNLIMITED
        self.max_order_notional2: int | None = None
        self.max_open_orders: int | None = None
        self.collar_bps: int | None = None
        self.collar_ticks2: int | None = None
        self.max_mid_age_ns = 0
        self.max_book_age_ns = 0
        self.book_health_trips = True
        self.reduce_only = False
        self.requires_mid = False


# the gate ----------------------------------------------------------------------------------
class RiskGate:
    """Sans-I/O pre-trade checks and kill switch state.

    Notional figures are integers in units of ``10**-notional_decimals`` of the quote
    currency, where ``notional_decimals`` is the smallest exponent that makes
    ``tick_size * lot_size * contract_size`` a whole number for every instrument; each
    instrument's multiplier is that product in those units, so ``ticks * lots *
    multiplier`` is an exact notional with no float and no Decimal on the check path.
    """

    def __init__(
        self,
        exposure: RiskExposure,
        limits: RiskLimits | None = None,
        clock: Clock = REAL_CLOCK,
        audit_capacity: int = 10_000,
    ) -> None:
        self._exposure = exposure
        self._limits = limits or RiskLimits()
        self._clock = clock
        self._instruments: dict[str, dict[str, _InstrumentRisk]] = {}
        self._notional_decimals = 0
        self._total_notional2 = 0
        self._unmarked = 0  # instruments holding exposure but no mid to mark it at
        self._tripped = False
        self._reduce_only = self._limits.reduce_only
        self._audit: collections.deque[KillSwitchEvent] = collections.deque(maxlen=audit_capacity)
        self._cancel_requests: list[KillSwitchEvent] = []
        self._trip_listener: Callable[[KillSwitchEvent], None] | None = None
        self._rejections: dict[RejectReason, int] = dict.fromkeys(RejectReason, 0)
        self._accepted = 0
        self._input_errors = 0
        self._listener_errors = 0
        self._pnl_peak: float | None = None
        self._last_pnl: float | None = None
        window = self._limits.rate_window_ms
        self._rate_window_ns = window * 1_000_000
        per_window = self._limits.max_orders_per_window
        self._rate_times = _ring(per_window)
        self._max_total_open = self._limits.max_total_open_orders
        self._total_decimal = (
            _decimal("max_total_notional", self._limits.max_total_notional)
            if self._limits.max_total_notional is not None
            else None
        )
        self._max_total_notional2 = 0
        self._track_total = self._total_decimal is not None
        self._rescale_totals()

    # configuration -----------------------------------------------------------------------
    def add_instrument(self, instrument: Instrument, limits: InstrumentLimits | None = None) -> None:
        """Register (or re-limit) an instrument; live mid and book state carry over."""
        limits = limits or InstrumentLimits()
        state = _InstrumentRisk(instrument, limits)
        previous = self._instruments.get(instrument.venue, {}).get(instrument.symbol)
        unit = instrument.tick_size * instrument.lot_size * instrument.contract_size
        decimals = max(self._notional_decimals, _decimal_places(unit))
        if decimals != self._notional_decimals:
            self._rescale(decimals)
        state.multiplier = int(unit.scaleb(decimals))
        scale2 = 2 * 10**decimals
        if limits.max_position is not None:
            state.max_long = instrument.quantity_to_lots(
                str(_decimal("max_position", limits.max_position)), Rounding.DOWN
            )
        if limits.max_order_quantity is not None:
            state.max_order_lots = instrument.quantity_to_lots(
                str(_decimal("max_order_quantity", limits.max_order_quantity)), Rounding.DOWN
            )
        if limits.max_order_notional is not None:
            state.max_order_notional2 = int(
                _decimal("max_order_notional", limits.max_order_notional) * scale2
            )
        state.max_open_orders = limits.max_open_orders
        state.collar_bps = limits.collar_bps
        state.collar_ticks2 = None if limits.collar_ticks is None else 2 * limits.collar_ticks
        state.max_mid_age_ns = limits.max_mid_age_ms * 1_000_000
        state.max_book_age_ns = 0 if limits.max_book_age_ms is None else limits.max_book_age_ms * 1_000_000
        state.book_health_trips = limits.book_health is BookHealthPolicy.TRIP
        state.reduce_only = limits.reduce_only
        state.requires_mid = (
            limits.collar_bps is not None
            or limits.collar_ticks is not None
            or self._total_decimal is not None
        )
        state.rate_times = _ring(limits.max_orders_per_window)
        if previous is not None:
            state.mid2, state.mid_ns = previous.mid2, previous.mid_ns
            state.book_synced, state.book_was_synced = previous.book_synced, previous.book_was_synced
            state.book_update_ns = previous.book_update_ns
            self._set_exposure(previous, 0)
        self._instruments.setdefault(instrument.venue, {})[instrument.symbol] = state
        self.refresh_exposure(instrument.venue, instrument.symbol)

    @property
    def notional_decimals(self) -> int:
        return self._notional_decimals

    def notional_to_decimal(self, units: int) -> Decimal:
        """Convert a notional of a decision (``value``/``bound``) to quote currency."""
        return Decimal(units).scaleb(-self._notional_decimals)

    def _rescale(self, decimals: int) -> None:
        factor = 10 ** (decimals - self._notional_decimals)
        for by_symbol in self._instruments.values():
            for state in by_symbol.values():
                state.multiplier *= factor
                state.notional2 *= factor
                if state.limits.max_order_notional is not None:  # from the exact bound, not the rounded one
                    bound = _decimal("max_order_notional", state.limits.max_order_notional)
                    state.max_order_notional2 = int(bound * 2 * 10**decimals)
        self._total_notional2 *= factor
        self._notional_decimals = decimals
        self._rescale_totals()

    def _rescale_totals(self) -> None:
        if self._total_decimal is not None:
            self._max_total_notional2 = int(self._total_decimal * 2 * 10**self._notional_decimals)

    def set_reduce_only(self, enabled: bool, venue: str | None = None, symbol: str | None = None) -> None:
        """Switch reduce-only mode for every instrument, or for one when venue and symbol are given."""
        if venue is None:
            self._reduce_only = enabled
            logger.warning("reduce-only %s for every instrument", "on" if enabled else "off")
            return
        self._state(venue, symbol or "").reduce_only = enabled
        logger.warning("reduce-only %s for %s:%s", "on" if enabled else "off", venue, symbol)

    def _state(self, venue: str, symbol: str) -> _InstrumentRisk:
        state = self._instruments.get(venue, {}).get(symbol)
        if state is None:
            self._input_errors += 1
            raise RiskInputError(f"unknown instrument {venue}:{symbol}")
        return state

    # the check -----------------------------------------------------------------------------
    def check_order(self, order: Order) -> RiskDecision:
        """Check an Order value: its remaining quantity is what it can still add."""
        return self.check(
            order.venue,
            order.symbol,
            order.side,
            order.price,
            order.quantity - order.filled,
            order.order_type,
            order.reduce_only,
        )

    def check(
        self,
        venue: str,
        symbol: str,
        side: Side,
        price: int,
        quantity: int,
        order_type: OrderType = OrderType.LIMIT,
        reduce_only: bool = False,
    ) -> RiskDecision:
        """Check one new order (price in ticks, quantity in lots); an accept counts against the rate."""
        if self._tripped:
            return self._reject(RejectReason.KILL_SWITCH, venue, symbol, "kill_switch", 1, 0, "")
        by_symbol = self._instruments.get(venue)
        st = None if by_symbol is None else by_symbol.get(symbol)
        if st is None:
            return self._reject(RejectReason.UNKNOWN_INSTRUMENT, venue, symbol, "instrument", 0, 0, "")
        is_market = order_type is _MARKET
        if quantity <= 0 or (price <= 0 and not is_market):
            bad_quantity = quantity <= 0
            return self._reject(
                RejectReason.INVALID_ORDER,
                venue,
                symbol,
                "quantity" if bad_quantity else "price",
                quantity if bad_quantity else price,
                1,
                "lots" if bad_quantity else "ticks",
            )
        if quantity > st.max_order_lots:
            return self._reject(
                RejectReason.ORDER_SIZE,
                venue,
                symbol,
                "max_order_quantity",
                quantity,
                st.max_order_lots,
                "lots",
            )
        now = self._clock.monotonic_ns()

        if st.max_book_age_ns and (not st.book_synced or now - st.book_update_ns > st.max_book_age_ns):
            return self._unhealthy_book(st, now)

        # reference price: the mid (twice, in ticks) ------------------------------------------
        mid2 = st.mid2
        if st.requires_mid or is_market:
            if not mid2:
                return self._reject(RejectReason.NO_MID, venue, symbol, "mid", 0, 0, "")
            if now - st.mid_ns > st.max_mid_age_ns:
                return self._reject(
                    RejectReason.STALE_MID,
                    venue,
                    symbol,
                    "max_mid_age_ms",
                    (now - st.mid_ns) // 1_000_000,
                    st.max_mid_age_ns // 1_000_000,
                    "ms",
                )
        price2 = mid2 if is_market else price + price
        if not is_market:
            deviation2 = price2 - mid2 if price2 >= mid2 else mid2 - price2
            if st.collar_bps is not None and deviation2 * 10_000 > st.collar_bps * mid2:
                return self._reject(
                    RejectReason.PRICE_COLLAR,
                    venue,
                    symbol,
                    "collar_bps",
                    deviation2 * 10_000 // mid2,
                    st.collar_bps,
                    "bps",
                )
            if st.collar_ticks2 is not None and deviation2 > st.collar_ticks2:
                return self._reject(
                    RejectReason.PRICE_COLLAR,
                    venue,
                    symbol,
                    "collar_ticks",
                    deviation2 // 2,
                    st.collar_ticks2 // 2,
                    "ticks",
                )
        if st.max_order_notional2 is not None:
            order2 = price2 * quantity * st.multiplier
            if order2 > st.max_order_notional2:
                return self._reject(
                    RejectReason.ORDER_NOTIONAL,
                    venue,
                    symbol,
                    "max_order_notional",
                    order2 // 2,
                    st.max_order_notional2 // 2,
                    "notional",
                )

        # exposure: worst case, resting orders counted as filled -------------------------------
        is_buy = side is _BUY
        exposure = self._exposure
        track_total = self._track_total
        reducing = self._reduce_only or st.reduce_only or reduce_only
        if track_total or reducing or st.max_long is not _UNLIMITED:
            position = exposure.position(venue, symbol)
            if track_total:
                long_side = position + exposure.open_quantity(venue, symbol, _BUY)
                short_side = position - exposure.open_quantity(venue, symbol, _SELL)
            elif is_buy:
                long_side = position + exposure.open_quantity(venue, symbol, _BUY)
                short_side = position
            else:
                long_side = position
                short_side = position - exposure.open_quantity(venue, symbol, _SELL)
            if reducing:
                if is_buy:
                    if position >= 0 or long_side + quantity > 0:
                        return self._reject(
                            RejectReason.REDUCE_ONLY,
                            venue,
                            symbol,
                            "reduce_only",
                            long_side + quantity,
                            0,
                            "lots",
                        )
                elif position <= 0 or short_side - quantity < 0:
                    return self._reject(
                        RejectReason.REDUCE_ONLY,
                        venue,
                        symbol,
                        "reduce_only",
                        short_side - quantity,
                        0,
                        "lots",
                    )
            if is_buy:
                if long_side + quantity > st.max_long:
                    return self._reject(
                        RejectReason.POSITION_LIMIT,
                        venue,
                        symbol,
                        "max_position",
                        long_side + quantity,
                        st.max_long,
                        "lots",
                    )
            elif quantity - short_side > st.max_long:
                return self._reject(
                    RejectReason.POSITION_LIMIT,
                    venue,
                    symbol,
                    "max_position",
                    short_side - quantity,
                    -st.max_long,
                    "lots",
                )
        else:
            long_side = short_side = 0

        if st.max_open_orders is not None:
            count = exposure.open_order_count(venue, symbol)
            if count >= st.max_open_orders:
                return self._reject(
                    RejectReason.OPEN_ORDERS,
                    venue,
                    symbol,
                    "max_open_orders",
                    count + 1,
                    st.max_open_orders,
                    "orders",
                )
        if self._max_total_open is not None:
            count = exposure.total_open_order_count()
            if count >= self._max_total_open:
                return self._reject(
                    RejectReason.TOTAL_OPEN_ORDERS,
                    venue,
                    symbol,
                    "max_total_open_orders",
                    count + 1,
                    self._max_total_open,
                    "orders",
                )

        if track_total:
            # the aggregate without this instrument, plus this instrument before and after the order
            if is_buy:
                gross = long_side + quantity
                if gross < -short_side:
                    gross = -short_side
            else:
                gross = quantity - short_side
                if gross < long_side:
                    gross = long_side
            after2 = gross * mid2 * st.multiplier
            others2 = self._total_notional2 - st.notional2
            if gross > long_side and gross > -short_side:  # the order grows the aggregate (mid2 > 0)
                unmarked = self._unmarked
                if unmarked and st.gross_lots and not st.mark2:
                    unmarked -= 1  # this instrument is marked now
                if unmarked or others2 + after2 > self._max_total_notional2:
                    return self._reject_total(st, long_side, short_side, mid2, others2 + after2, unmarked)

        # rates last: only an order that passes everything else consumes a slot ----------------
        # each ring holds the last N accept times, oldest first: a full window rejects
        window = self._rate_window_ns
        instrument_times = st.rate_times
        if instrument_times is not None and now - instrument_times[0] < window:
            return self._reject(
                RejectReason.ORDER_RATE,
                venue,
                symbol,
                "instrument",
                len(instrument_times) + 1,
                len(instrument_times),
                "orders/window",
            )
        total_times = self._rate_times
        if total_times is not None and now - total_times[0] < window:
            return self._reject(
                RejectReason.ORDER_RATE,
                venue,
                symbol,
                "total",
                len(total_times) + 1,
                len(total_times),
                "orders/window",
            )
        if instrument_times is not None:
            instrument_times.append(now)  # maxlen drops the oldest
        if total_times is not None:
            total_times.append(now)
        if track_total:
            if st.gross_lots and not st.mark2:
                self._unmarked -= 1
            self._total_notional2 = others2 + after2
            st.gross_lots, st.mark2, st.notional2 = gross, mid2, after2
        self._accepted += 1
        return ACCEPTED

    def check_cancel(self, venue: str, symbol: str) -> RiskDecision:
        """Cancels only ever reduce risk: always accepted, tripped or not."""
        return ACCEPTED

    def _reject_total(
        self, st: _InstrumentRisk, long_side: int, short_side: int, mid2: int, total2: int, unmarked: int
    ) -> RiskDecision:
        self._set_exposure(st, max(long_side, -short_side), mid2)  # keep the truth we just read
        if unmarked:
            return self._reject(RejectReason.NO_MID, st.venue, st.symbol, "total_notional", unmarked, 0, "")
        return self._reject(
            RejectReason.TOTAL_NOTIONAL,
            st.venue,
            st.symbol,
            "max_total_notional",
            total2 // 2,
            self._max_total_notional2 // 2,
            "notional",
        )

    def _unhealthy_book(self, st: _InstrumentRisk, now: int) -> RiskDecision:
        if not st.book_synced:
            return self._reject(RejectReason.BOOK_UNSYNCED, st.venue, st.symbol, "book_synced", 0, 1, "")
        age = now - st.book_update_ns
        age_ms, bound_ms = age // 1_000_000, st.max_book_age_ns // 1_000_000
        if st.book_health_trips:
            self.trip(TripSource.BOOK, f"book {st.venue}:{st.symbol} stale: {age_ms} ms > {bound_ms} ms")
        return self._reject(
            RejectReason.BOOK_STALE, st.venue, st.symbol, "max_book_age_ms", age_ms, bound_ms, "ms"
        )

    def _reject(
        self, reason: RejectReason, venue: str, symbol: str, limit: str, value: int, bound: int, unit: str
    ) -> RiskDecision:
        self._rejections[reason] += 1
        return RiskDecision(
            accepted=False,
            reason=reason,
            limit=limit,
            value=value,
            bound=bound,
            unit=unit,
            venue=venue,
            symbol=symbol,
        )

    # cached aggregate exposure ---------------------------------------------------------------
    def _set_exposure(self, st: _InstrumentRisk, gross_lots: int, mark2: int | None = None) -> None:
        if mark2 is None:
            mark2 = st.mark2
        was_unmarked = st.gross_lots > 0 and st.mark2 == 0
        notional2 = gross_lots * mark2 * st.multiplier
        self._total_notional2 += notional2 - st.notional2
        st.gross_lots, st.mark2, st.notional2 = gross_lots, mark2, notional2
        self._unmarked += (gross_lots > 0 and mark2 == 0) - was_unmarked

    def refresh_exposure(self, venue: str | None = None, symbol: str | None = None) -> None:
        """Re-read exposure (after reconciliation, or to release the headroom of cancels)."""
        if venue is None:
            states: Iterable[_InstrumentRisk] = [s for by in self._instruments.values() for s in by.values()]
        else:
            states = [self._state(venue, symbol or "")]
        exposure = self._exposure
        for st in states:
            position = exposure.position(st.venue, st.symbol)
            long_side = position + exposure.open_quantity(st.venue, st.symbol, Side.BUY)
            short_side = position - exposure.open_quantity(st.venue, st.symbol, Side.SELL)
            self._set_exposure(st, max(long_side, -short_side, 0), st.mid2 or st.mark2)

    @property
    def total_notional(self) -> Decimal:
        """Cached worst-case gross notional over all instruments, in quote currency."""
        return Decimal(self._total_notional2).scaleb(-self._notional_decimals) / 2

    # market data and health reports ----------------------------------------------------------
    def update_mid(self, venue: str, symbol: str, bid: int, ask: int, now_ns: int | None = None) -> None:
        """Record the best bid/ask (ticks): it anchors the collar and marks the aggregate notional."""
        by_symbol = self._instruments.get(venue)
        st = None if by_symbol is None else by_symbol.get(symbol)
        if st is None or bid <= 0 or ask <= 0 or bid >= ask:
            self._input_errors += 1
            raise RiskInputError(f"unusable top of book for {venue}:{symbol}: bid={bid} ask={ask}")
        st.mid2 = bid + ask
        st.mid_ns = self._clock.monotonic_ns() if now_ns is None else now_ns
        if st.gross_lots:
            self._set_exposure(st, st.gross_lots, st.mid2)

    def report_book(self, venue: str, symbol: str, synced: bool, last_update_ns: int) -> None:
        """Book health from the synchronizer; ``last_update_ns`` on the gate's monotonic clock.

        A book that was synced and reports unsynced trips the kill switch (policy TRIP) or
        blocks its instrument until it syncs again (policy REJECT); before its first sync a
        book only blocks its own instrument.
        """
        st = self._state(venue, symbol)
        st.book_update_ns = last_update_ns
        if synced:
            st.book_synced = st.book_was_synced = True
            return
        lost = st.book_synced or st.book_was_synced
        st.book_synced = False
        if lost and st.max_book_age_ns and st.book_health_trips:
            self.trip(TripSource.BOOK, f"book {venue}:{symbol} lost sync")

    def check_books(self) -> list[tuple[str, str]]:
        """Sweep every monitored book for staleness (a periodic safety net); returns stale ones."""
        now = self._clock.monotonic_ns()
        stale = []
        for by_symbol in self._instruments.values():
            for st in by_symbol.values():
                if st.max_book_age_ns and st.book_synced and now - st.book_update_ns > st.max_book_age_ns:
                    stale.append((st.venue, st.symbol))
                    if st.book_health_trips:
                        age_ms = (now - st.book_update_ns) // 1_000_000
                        self.trip(TripSource.BOOK, f"book {st.venue}:{st.symbol} stale: {age_ms} ms")
        return stale

    def on_breaker_state_change(self, name: str, state: object) -> None:
        """Circuit breaker callback: an opening breaker trips the kill switch.

        ``state`` may be an enum (its value or name is read) or a string; only "open"
        trips. Closing does not reset: resuming after an outage is an operator's decision.
        """
        text = str(getattr(state, "value", state)).lower()
        if text != "open":
            text = str(getattr(state, "name", state)).lower()
        if text == "open":
            self.trip(TripSource.BREAKER, f"circuit breaker {name!r} opened")

    def breaker_listener(self, breaker: object, old_state: object, new_state: object) -> None:
        """Adapter for listeners called as ``(breaker, old, new)``, e.g.
        ``CircuitBreaker.add_listener(gate.breaker_listener)``; the breaker's ``name`` is used."""
        self.on_breaker_state_change(str(getattr(breaker, "name", breaker)), new_state)

    def update_pnl(self, pnl: float) -> None:
        """Report total PnL (account currency); a peak-to-trough drop beyond the bound trips.

        Floats are fine here: PnL is accounting, compared against one bound, never a key.
        """
        if not isinstance(pnl, int | float) or not math.isfinite(pnl):
            self._input_errors += 1
            raise RiskInputError(f"PnL must be a finite number, got {pnl!r}")
        self._last_pnl = pnl
        if self._pnl_peak is None or pnl > self._pnl_peak:
            self._pnl_peak = pnl
        bound = self._limits.max_drawdown
        drawdown = self._pnl_peak - pnl
        if bound is not None and drawdown > bound and not self._tripped:
            self.trip(
                TripSource.DRAWDOWN, f"drawdown {drawdown:.6g} > {bound:.6g} (peak {self._pnl_peak:.6g})"
            )

    @property
    def drawdown(self) -> float:
        if self._pnl_peak is None or self._last_pnl is None:
            return 0.0
        return self._pnl_peak - self._last_pnl

    # kill switch -----------------------------------------------------------------------------
    def set_trip_listener(self, listener: Callable[[KillSwitchEvent], None] | None) -> None:
        """Called synchronously on each first trip (the shell uses it to run cancel-all hooks)."""
        self._trip_listener = listener

    def trip(self, source: TripSource = TripSource.MANUAL, detail: str = "manual") -> bool:
        """Trip the kill switch; returns True when this call tripped it (False: already tripped)."""
        first = not self._tripped
        event = KillSwitchEvent(
            action=KillSwitchAction.TRIP,
            source=source,
            detail=detail,
            time_ns=self._clock.time_ns(),
            monotonic_ns=self._clock.monotonic_ns(),
            first=first,
        )
        self._audit.append(event)
        if not first:
            logger.warning("kill switch already tripped; further cause (%s): %s", source.value, detail)
            return False
        self._tripped = True
        self._cancel_requests.append(event)
        logger.error("KILL SWITCH TRIPPED (%s): %s", source.value, detail)
        if self._trip_listener is not None:
            try:
                self._trip_listener(event)
            except Exception:  # a broken shell must not turn a trip into a crash of the order path
                self._listener_errors += 1
                logger.exception("kill switch trip listener failed; the cancel-all request stays queued")
                if event not in self._cancel_requests:
                    self._cancel_requests.append(event)
        return True

    def reset(self, reason: str) -> None:
        """Manually re-arm after a trip; the reason goes to the audit and the log.

        The drawdown peak is re-based at the last PnL, so the decision to resume stands until
        a fresh drawdown of the full bound.
        """
        if not reason or not reason.strip():
            raise RiskInputError("a kill switch reset needs a reason")
        self._audit.append(
            KillSwitchEvent(
                action=KillSwitchAction.RESET,
                source=None,
                detail=reason,
                time_ns=self._clock.time_ns(),
                monotonic_ns=self._clock.monotonic_ns(),
                first=self._tripped,
            )
        )
        logger.warning("kill switch reset (was %s): %s", "tripped" if self._tripped else "armed", reason)
        self._tripped = False
        self._pnl_peak = self._last_pnl

    @property
    def tripped(self) -> bool:
        return self._tripped

    @property
    def reduce_only(self) -> bool:
        return self._reduce_only

    @property
    def audit(self) -> list[KillSwitchEvent]:
        return list(self._audit)

    def take_cancel_requests(self) -> list[KillSwitchEvent]:
        """Cancel-all requests raised by trips since the last call (for a polling shell)."""
        requests, self._cancel_requests = self._cancel_requests, []
        return requests

    # counters --------------------------------------------------------------------------------
    @property
    def rejection_counts(self) -> dict[RejectReason, int]:
        return {reason: count for reason, count in self._rejections.items() if count}

    @property
    def accepted_count(self) -> int:
        return self._accepted

    @property
    def input_error_count(self) -> int:
        return self._input_errors

    @property
    def listener_error_count(self) -> int:
        return self._listener_errors


# async shell ---------------------------------------------------------------------------------
CancelAllHook = Callable[[KillSwitchEvent], Any]


class HookFailure(msgspec.Struct, frozen=True):
    hook: str
    event: KillSwitchEvent
    error: str


class KillSwitchShell:
    """Runs cancel-all hooks when the gate trips: sync hooks at once, async ones as tasks.

    A hook failure is logged with its traceback, counted and kept in ``failures``; it never
    stops the other hooks. Trips that happen with no running event loop leave their async
    hooks for ``flush()``.
    """

    def __init__(self, gate: RiskGate) -> None:
        self._gate = gate
        self._hooks: list[CancelAllHook] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._deferred: list[tuple[CancelAllHook, KillSwitchEvent, Awaitable[Any]]] = []
        self.failures: list[HookFailure] = []
        gate.set_trip_listener(self._on_trip)
        gate.take_cancel_requests()  # the shell now handles every trip through the listener

    def add_cancel_all_hook(self, hook: CancelAllHook) -> None:
        self._hooks.append(hook)

    def _on_trip(self, event: KillSwitchEvent) -> None:
        self._gate.take_cancel_requests()
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for hook in self._hooks:
            try:
                result = hook(event)
            except Exception as error:
                self._record_failure(hook, event, error)
                continue
            if not inspect.isawaitable(result):
                continue
            if loop is None:
                self._deferred.append((hook, event, result))  # a coroutine can be awaited later
                continue
            task = loop.create_task(self._await_hook(hook, event, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _await_hook(self, hook: CancelAllHook, event: KillSwitchEvent, result: Awaitable[Any]) -> None:
        try:
            await result
        except Exception as error:
            self._record_failure(hook, event, error)

    def _record_failure(self, hook: CancelAllHook, event: KillSwitchEvent, error: BaseException) -> None:
        name = getattr(hook, "__qualname__", repr(hook))
        logger.error("cancel-all hook %s failed after kill switch trip", name, exc_info=error)
        self.failures.append(HookFailure(name, event, f"{type(error).__name__}: {error}"))

    @property
    def pending(self) -> int:
        """Async hooks not finished yet (running tasks plus those deferred for lack of a loop)."""
        return len(self._tasks) + len(self._deferred)

    async def flush(self) -> None:
        """Await hooks deferred for lack of a loop and every running hook task."""
        deferred, self._deferred = self._deferred, []
        for hook, event, result in deferred:
            await self._await_hook(hook, event, result)
        while self._tasks:
            await asyncio.gather(*list(self._tasks))
