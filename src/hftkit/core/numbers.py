"""Exact conversion between wire decimal strings and scaled integers.

Prices and quantities travel as decimal strings (``"61837.63000000"``) and live on the hot
path as integers. Nothing here touches a float, so a round trip string -> int -> string is
exact for every valid input.

Wire text is bounded before any arithmetic: at most ``MAX_DECIMAL_LENGTH`` characters (the C
accelerator applies the same bound, so both paths refuse the same texts) and an exponent of
at most ``MAX_EXPONENT`` in size, so a hostile ``"1e30000000"`` costs microseconds instead of
building a thirty-million-digit integer on the event loop. Steps are capped at the signed
64-bit range: nothing wider can be stored, sent to a venue or held in a native book key.
"""

from __future__ import annotations

import enum
from decimal import Decimal, InvalidOperation

from hftkit.core.errors import InvalidDecimalError, OffGridError, OutOfRangeError

_DIGITS = frozenset("0123456789")
_POWERS_OF_TEN = tuple(10**exponent for exponent in range(40))

MAX_DECIMAL_LENGTH = 64
"""Longest decimal text accepted: a venue's widest value ("12345678901234.12345678") is ~25."""
MAX_EXPONENT = 64
"""Largest exponent size accepted in ``"1e-5"`` notation; no venue writes exponents on the wire."""
STEPS_MIN = -(2**63)
STEPS_MAX = 2**63 - 1
"""Steps (ticks, lots) live in the signed 64-bit range, like every integer a venue sends."""


def _refuse_long(text: str) -> InvalidDecimalError:
    return InvalidDecimalError(
        f"decimal text longer than {MAX_DECIMAL_LENGTH} characters: {text[:24]!r}... ({len(text)})"
    )


def check_steps(steps: int, text: str) -> int:
    """``steps`` when it fits the signed 64-bit range, else OutOfRangeError."""
    if STEPS_MIN <= steps <= STEPS_MAX:
        return steps
    raise OutOfRangeError(f"{text!r} is beyond the 64-bit range of steps")


class Rounding(enum.Enum):
    """How to bring a value that falls between two grid points onto the grid."""

    EXACT = "exact"  # refuse off-grid values (OffGridError)
    DOWN = "down"  # toward minus infinity
    UP = "up"  # toward plus infinity
    NEAREST = "nearest"  # nearest grid point, ties away from zero


def decimal_places(text: str) -> int:
    """Count the significant decimal places of a decimal string (trailing zeros ignored)."""
    units, scale = parse_decimal(text)
    if units == 0:
        return 0
    while scale > 0 and units % 10 == 0:
        units //= 10
        scale -= 1
    return max(scale, 0)


def parse_decimal(text: str) -> tuple[int, int]:
    """Split a decimal string into ``(units, scale)`` with ``value == units / 10**scale``.

    Accepts an optional sign, digits with at most one point, and (off the hot path) an
    exponent such as ``"1e-5"`` (at most ``MAX_EXPONENT`` in size), in at most
    ``MAX_DECIMAL_LENGTH`` characters. Raises InvalidDecimalError for anything else.
    """
    if not isinstance(text, str):
        raise InvalidDecimalError(f"expected a decimal string, got {type(text).__name__}")
    if len(text) > MAX_DECIMAL_LENGTH:
        raise _refuse_long(text)
    body = text
    negative = False
    if body[:1] in ("-", "+"):
        negative = body[0] == "-"
        body = body[1:]
    whole, _point, fraction = body.partition(".")
    if (whole or fraction) and _DIGITS.issuperset(whole) and _DIGITS.issuperset(fraction):
        units = int(whole + fraction) if (whole or fraction) else 0
        return (-units if negative else units), len(fraction)
    return _parse_decimal_slow(text)


_SLOW_CHARACTERS = frozenset("0123456789+-.eE")


def _parse_decimal_slow(text: str) -> tuple[int, int]:
    # Decimal() also accepts whitespace, underscores, "NaN" and "Infinity": none is a wire decimal.
    if not text or not _SLOW_CHARACTERS.issuperset(text):
        raise InvalidDecimalError(f"not a decimal number: {text!r}")
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        raise InvalidDecimalError(f"not a decimal number: {text!r}") from None
    if not value.is_finite():
        raise InvalidDecimalError(f"not a finite decimal number: {text!r}")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if not -MAX_EXPONENT <= exponent <= MAX_EXPONENT:
        # checked before 10**exponent: "1e30000000" would block the event loop for a minute
        raise InvalidDecimalError(f"exponent beyond +-{MAX_EXPONENT}, which no venue sends: {text[:24]!r}")
    units = int("".join(map(str, digits))) if digits else 0
    if exponent >= 0:
        units *= 10**exponent
        scale = 0
    else:
        scale = -exponent
    return (-units if sign else units), scale


def divide_rounded(numerator: int, denominator: int, rounding: Rounding) -> int:
    """Integer division of ``numerator / denominator`` (denominator > 0) with a rounding rule."""
    quotient, remainder = divmod(numerator, denominator)
    if remainder == 0:
        return quotient
    if rounding is Rounding.DOWN:
        return quotient
    if rounding is Rounding.UP:
        return quotient + 1
    if rounding is Rounding.NEAREST:
        twice = 2 * remainder
        if twice > denominator or (twice == denominator and numerator > 0):
            return quotient + 1
        return quotient
    raise OffGridError(f"{numerator}/{denominator} is not a whole number of steps")


def format_scaled(units: int, scale: int) -> str:
    """Render ``units / 10**scale`` as a plain decimal string with exactly ``scale`` places."""
    if scale <= 0:
        return str(units * 10 ** (-scale))
    sign = "-" if units < 0 else ""
    digits = str(abs(units)).rjust(scale + 1, "0")
    return f"{sign}{digits[:-scale]}.{digits[-scale:]}"


class DecimalGrid:
    """A grid of equally spaced decimal values (a tick size or a lot size).

    ``to_steps("61837.63000000")`` returns the number of grid steps as an int; ``to_text``
    goes back to the canonical wire string. Precomputes everything so the hot path is a
    string split, one ``int()`` and one ``divmod``.
    """

    __slots__ = ("_scale", "_step_units", "step", "step_text")

    def __init__(self, step: str) -> None:
        units, scale = parse_decimal(step)
        if units <= 0:
            raise InvalidDecimalError(f"a grid step must be positive, got {step!r}")
        while scale > 0 and units % 10 == 0:
            units //= 10
            scale -= 1
        if scale < 0:
            scale = 0
        self._scale = scale
        self._step_units = units
        self.step_text = format_scaled(units, scale)
        self.step = Decimal(self.step_text)

    @property
    def decimals(self) -> int:
        """Decimal places of the canonical text form."""
        return self._scale

    @property
    def step_units(self) -> int:
        """The step as a whole number of units of the last decimal place (0.05 -> 5)."""
        return self._step_units

    def to_steps(self, text: str, rounding: Rounding = Rounding.EXACT) -> int:
        """Convert a decimal string to a whole number of steps, exactly or by ``rounding``."""
        # Fast path for the usual wire form, unsigned ASCII digits with an optional point
        # ("61837.63000000"): one int() of the digits, then exact integer scaling. Anything
        # else (signs, exponents, off-grid values) takes the general parser below.
        if len(text) > MAX_DECIMAL_LENGTH:
            raise _refuse_long(text)
        whole, _point, fraction = text.partition(".")
        digits = whole + fraction
        if digits.isdigit() and digits.isascii():
            units = int(digits)
            excess = len(fraction) - self._scale
            if excess > 0:
                units, surplus = divmod(units, _POWERS_OF_TEN[excess] if excess < 40 else 10**excess)
            else:
                surplus = 0
                if excess:
                    units *= _POWERS_OF_TEN[-excess] if excess > -40 else 10**-excess
            if not surplus:
                quotient, remainder = divmod(units, self._step_units)
                if not remainder:
                    return quotient if quotient <= STEPS_MAX else check_steps(quotient, text)
        try:
            return check_steps(self._to_steps(text, rounding), text)
        except OffGridError:
            raise OffGridError(f"{text!r} is not a multiple of the step {self.step_text}") from None

    def _to_steps(self, text: str, rounding: Rounding) -> int:
        units, scale = parse_decimal(text)
        target = self._scale
        if scale > target:
            factor = 10 ** (scale - target)
            scaled, remainder = divmod(units, factor)
            if remainder:
                # value lies between two units of our scale: fold into the step rounding
                return divide_rounded(units, self._step_units * factor, rounding)
            units = scaled
        elif scale < target:
            units *= 10 ** (target - scale)
        return divide_rounded(units, self._step_units, rounding)

    def to_text(self, steps: int) -> str:
        """Canonical decimal string of ``steps`` grid steps (as a venue expects on the wire)."""
        return format_scaled(steps * self._step_units, self._scale)

    def to_decimal(self, steps: int) -> Decimal:
        """Exact Decimal of ``steps`` grid steps, for reports and accounting at the edges."""
        return Decimal(self.to_text(steps))

    def to_float(self, steps: int) -> float:
        """Approximate float value, for analytics only (never for keys or comparisons)."""
        divisor: int = 10**self._scale  # int ** int is typed Any (a negative power is a float)
        return steps * self._step_units / divisor


class ConversionCache:
    """Bounded memo of wire string -> steps for one grid.

    Prices repeat heavily in a depth stream, so a dict hit (~30 ns) replaces a parse
    (~400 ns). When the cache is full it is cleared rather than tracked per entry: the
    working set refills in a few messages and the hit path stays a single dict lookup.
    """

    __slots__ = ("_capacity", "_grid", "_values", "hits", "lookup", "misses")

    def __init__(self, grid: DecimalGrid, capacity: int = 65_536) -> None:
        self._grid = grid
        self._capacity = capacity
        self._values: dict[str, int] = {}
        self.hits = 0
        self.misses = 0
        # The hit path as a bare C-level dict.get: ``lookup(text)`` returns the steps or None
        # (then call the cache). Hot loops use it to skip a Python call per value; such hits
        # are not counted in ``hits``. The cache clears this same dict when full.
        self.lookup = self._values.get

    def __call__(self, text: str) -> int:
        value = self._values.get(text)
        if value is not None:
            self.hits += 1
            return value
        return self._convert(text)

    def _convert(self, text: str) -> int:
        self.misses += 1
        value = self._grid.to_steps(text)
        if len(self._values) >= self._capacity:
            self._values.clear()
        self._values[text] = value
        return value

    def __len__(self) -> int:
        return len(self._values)
