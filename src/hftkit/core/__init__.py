"""Pure value types, exact decimal grids and clocks. No I/O."""

from hftkit.core.clock import REAL_CLOCK, Clock, RealClock, SimulatedClock
from hftkit.core.errors import HftkitError, InvalidDecimalError, OffGridError, OutOfRangeError
from hftkit.core.numbers import ConversionCache, DecimalGrid, Rounding, format_scaled, parse_decimal
from hftkit.core.types import (
    BookDelta,
    BookLevel,
    BookTicker,
    ContractKind,
    Fill,
    Instrument,
    Order,
    OrderStatus,
    OrderType,
    Quote,
    Side,
    TimeInForce,
    Trade,
)

__all__ = [
    "REAL_CLOCK",
    "BookDelta",
    "BookLevel",
    "BookTicker",
    "Clock",
    "ContractKind",
    "ConversionCache",
    "DecimalGrid",
    "Fill",
    "HftkitError",
    "Instrument",
    "InvalidDecimalError",
    "OffGridError",
    "Order",
    "OrderStatus",
    "OrderType",
    "OutOfRangeError",
    "Quote",
    "RealClock",
    "Rounding",
    "Side",
    "SimulatedClock",
    "TimeInForce",
    "Trade",
    "format_scaled",
    "parse_decimal",
]
