"""Thalex wire shapes for the simulator, sans-I/O: parameter parsing and payload rendering.

Prices and amounts travel as JSON numbers. On the way in a number is turned into its
shortest decimal text (``repr`` of the float, which round-trips) and then into integer
ticks / lots with an EXACT grid check, so an off-grid value is refused (error 15 / 14), never
rounded. On the way out ticks and lots are rendered through the instrument grid and handed
to the JSON encoder as an int when integral, else as the float whose shortest repr is that
decimal text, so ``47000`` stays ``47000`` and ``0.1`` is written ``0.1``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from hftkit.core.errors import HftkitError
from hftkit.core.types import ContractKind, Instrument, OrderStatus, OrderType, Side, TimeInForce
from hftkit.venues.thalex.errors import ThalexErrorCode

UINT64_MAX = 2**64 - 1


class RpcError(HftkitError):
    """A request the venue answers with an error object ``{"code", "message"}``."""

    def __init__(self, code: ThalexErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def number_text(value: Any, name: str) -> str:
    """A JSON number param -> plain decimal text; anything else is an invalid request."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RpcError(ThalexErrorCode.INVALID_REQUEST, f"{name} must be a number")
    if isinstance(value, int):
        return str(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise RpcError(ThalexErrorCode.INVALID_REQUEST, f"{name} must be finite")
    try:
        decimal = Decimal(repr(value))
    except InvalidOperation:
        raise RpcError(ThalexErrorCode.INVALID_REQUEST, f"{name} must be a number") from None
    return format(decimal, "f")


def to_ticks(instrument: Instrument, value: Any, name: str = "price") -> int:
    text = number_text(value, name)
    if Decimal(text) <= 0:
        raise RpcError(ThalexErrorCode.INVALID_PRICE, f"{name} must be positive")
    try:
        return instrument.price_to_ticks(text)
    except HftkitError:
        raise RpcError(
            ThalexErrorCode.PRICE_NOT_ALIGNED_WITH_TICK, f"{name} {text} is not a multiple of tick size"
        ) from None


def to_lots(instrument: Instrument, value: Any, name: str = "amount", *, allow_zero: bool = False) -> int:
    text = number_text(value, name)
    amount = Decimal(text)
    if amount < 0 or (amount == 0 and not allow_zero):
        raise RpcError(ThalexErrorCode.INVALID_QUANTITY, f"{name} must be positive")
    try:
        return instrument.quantity_to_lots(text)
    except HftkitError:
        raise RpcError(
            ThalexErrorCode.INVALID_QUANTITY, f"{name} {text} is not a multiple of volume tick size"
        ) from None


def json_number(text: str) -> int | float:
    """Exact decimal text -> the JSON number that prints as that text (int when integral)."""
    if "." in text:
        stripped = text.rstrip("0").rstrip(".")
        if "." not in stripped:
            return int(stripped)
        return float(stripped)
    return int(text)


def price_number(instrument: Instrument, ticks: int) -> int | float:
    return json_number(instrument.ticks_to_price(ticks))


def amount_number(instrument: Instrument, lots: int) -> int | float:
    return json_number(instrument.lots_to_quantity(lots))


def fraction_number(value: Fraction) -> int | float:
    return value.numerator if value.denominator == 1 else float(value)


def decimal_number(value: Decimal | Fraction) -> int | float:
    """A derived figure (mark, PnL) as a JSON number: int when integral, else the nearest float."""
    if isinstance(value, Fraction):
        return fraction_number(value)
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def seconds(time_ns: int) -> float:
    return time_ns / 1e9


def order_id_text(order_id: int) -> str:
    return f"{order_id:016X}"


def parse_order_id(value: Any) -> int:
    if not isinstance(value, str) or not value or len(value) > 16:
        raise RpcError(ThalexErrorCode.INVALID_ORDER_ID, "order_id must be a hex string")
    try:
        return int(value, 16)
    except ValueError:
        raise RpcError(ThalexErrorCode.INVALID_ORDER_ID, "order_id must be a hex string") from None


def trade_id_text(instrument_index: int, trade_id: int) -> str:
    """32 hex digits: the instrument's index then the book's trade sequence (unique venue-wide)."""
    return f"{instrument_index:08X}{trade_id:024X}"


def parse_client_order_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT64_MAX:
        raise RpcError(
            ThalexErrorCode.INVALID_REQUEST, "client_order_id must be an integer between 0 and 2^64-1"
        )
    return value


# params --------------------------------------------------------------------------------------


class Params:
    """Typed access to a request's ``params`` object; every miss is an InvalidRequest (6)."""

    __slots__ = ("values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def has(self, name: str) -> bool:
        return self.values.get(name) is not None

    def raw(self, name: str) -> Any:
        return self.values.get(name)

    def required(self, name: str) -> Any:
        value = self.values.get(name)
        if value is None:
            raise RpcError(ThalexErrorCode.INVALID_REQUEST, f"missing parameter {name}")
        return value

    def string(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            raise RpcError(ThalexErrorCode.INVALID_REQUEST, f"{name} must be a string")
        return value

    def required_string(self, name: str) -> str:
        value = self.string(name)
        if value is None:
            raise RpcError(ThalexErrorCode.INVALID_REQUEST, f"missing parameter {name}")
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.values.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise RpcError(ThalexErrorCode.INVALID_REQUEST, f"{name} must be a boolean")
        return value

    def choice(self, name: str, allowed: tuple[str, ...], default: str | None = None) -> str | None:
        value = self.string(name, default)
        if value is not None and value not in allowed:
            raise RpcError(ThalexErrorCode.INVALID_REQUEST, f"{name} must be one of {', '.join(allowed)}")
        return value

    def integer(self, name: str, default: int, *, low: int = 0, high: int = UINT64_MAX) -> int:
        value = self.values.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise RpcError(ThalexErrorCode.INVALID_REQUEST, f"{name} must be an integer in [{low}, {high}]")
        return value

    def number(self, name: str, default: float | None = None) -> float | None:
        value = self.values.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RpcError(ThalexErrorCode.INVALID_REQUEST, f"{name} must be a number")
        return float(value)

    def channels(self) -> list[str]:
        value = self.values.get("channels")
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise RpcError(ThalexErrorCode.INVALID_REQUEST, "channels must be a list of channel names")
        return value


# instruments ---------------------------------------------------------------------------------


def thalex_perpetual(base: str, tick_size: str, volume_tick_size: str = "0.001") -> Instrument:
    """A Thalex-style perpetual (``BTC-PERPETUAL``) settled in USD, for the simulator."""
    return Instrument(
        "thalex",
        f"{base}-PERPETUAL",
        base,
        "USD",
        tick_size,
        volume_tick_size,
        kind=ContractKind.PERPETUAL,
    )


def default_instruments() -> list[Instrument]:
    """BTC-PERPETUAL (tick 1 USD) and ETH-PERPETUAL (tick 0.1 USD), both 0.001 volume tick."""
    return [thalex_perpetual("BTC", "1"), thalex_perpetual("ETH", "0.1")]


def underlying_of(instrument: Instrument) -> str:
    return f"{instrument.base}USD"


def product_of(instrument: Instrument) -> str:
    prefix = "O" if instrument.kind is ContractKind.OPTION else "F"
    return prefix + underlying_of(instrument)


def instrument_type(instrument: Instrument) -> str:
    return {
        ContractKind.PERPETUAL: "perpetual",
        ContractKind.FUTURE: "future",
        ContractKind.OPTION: "option",
    }.get(instrument.kind, "perpetual")


def instrument_payload(instrument: Instrument, create_time: float) -> dict[str, Any]:
    return {
        "instrument_name": instrument.symbol,
        "product": product_of(instrument),
        "tick_size": json_number(instrument.ticks.step_text),
        "volume_tick_size": json_number(instrument.lots.step_text),
        "min_order_amount": amount_number(instrument, instrument.min_quantity),
        "underlying": underlying_of(instrument),
        "type": instrument_type(instrument),
        "base_currency": instrument.quote,
        "create_time": create_time,
    }


# orders --------------------------------------------------------------------------------------

DIRECTIONS = {Side.BUY: "buy", Side.SELL: "sell"}
TIME_IN_FORCE_NAMES = {
    TimeInForce.GTC: "good_till_cancelled",
    TimeInForce.IOC: "immediate_or_cancel",
    TimeInForce.FOK: "immediate_or_cancel",
}


def order_status_name(status: OrderStatus, filled: int) -> str:
    if status is OrderStatus.NEW or status is OrderStatus.PARTIALLY_FILLED:
        return "partially_filled" if filled else "open"
    if status is OrderStatus.FILLED:
        return "filled"
    return "cancelled_partially_filled" if filled else "cancelled"


def order_type_name(order_type: OrderType) -> str:
    return "market" if order_type is OrderType.MARKET else "limit"


__all__ = [
    "Params",
    "RpcError",
    "amount_number",
    "decimal_number",
    "default_instruments",
    "instrument_payload",
    "json_number",
    "number_text",
    "order_id_text",
    "parse_client_order_id",
    "parse_order_id",
    "price_number",
    "product_of",
    "seconds",
    "thalex_perpetual",
    "to_lots",
    "to_ticks",
    "trade_id_text",
    "underlying_of",
]
