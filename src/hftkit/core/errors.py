"""Error types shared by every layer.

Each error says what went wrong in terms of the caller's input, so a feed can count it
by class and carry on instead of crashing.
"""

from __future__ import annotations


class HftkitError(Exception):
    """Base class of every error hftkit raises on purpose."""


class InvalidDecimalError(HftkitError, ValueError):
    """A decimal string that is not a plain decimal number (for example ``"1,5"`` or ``""``)."""


class OffGridError(HftkitError, ValueError):
    """A price or quantity that is not a whole multiple of the instrument's tick or lot."""


class OutOfRangeError(HftkitError, ValueError):
    """A value outside the range an instrument or a venue accepts."""
