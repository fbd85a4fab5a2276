"""Types of the optional C accelerator ``hftkit._native`` (src/hftkit/_native.c).

The module exists only where it was built; callers reach it through ``hftkit.core.native.NATIVE``
and keep a pure-Python twin of every function, whose signature this stub mirrors.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Generic, Literal, TypeVar, final

_Text = TypeVar("_Text", str, float)

MAX_DECIMAL_LENGTH: Final[int]
"""Longer decimal text goes to the slow path (hftkit.core.numbers.MAX_DECIMAL_LENGTH)."""

@final
class Grid(Generic[_Text]):
    """Decimal text (or a float) -> whole grid steps; anything off the fast path goes to ``slow``.

    Generic only for the checker (the C type takes no parameters): a grid of ``str`` (Binance's
    wire decimals) or of ``float`` (Thalex's JSON numbers) hands that same object to ``slow``.
    """

    def __init__(self, scale: int, step_units: int, minimum: int, slow: Callable[[_Text], int]) -> None: ...
    def __call__(self, text: _Text, /) -> int: ...

@final
class Credits:
    """A token bucket's exact balance in credits (the C twin of ``token_bucket._Credits``)."""

    credits: int
    @property
    def last_ns(self) -> int: ...
    @property
    def now(self) -> Callable[[], int]: ...
    @property
    def rejected(self) -> int: ...
    def __init__(
        self,
        credits: int,
        max_credits: int,
        rate: int,
        unit: int,
        capacity: int,
        now: Callable[[], int],
        check: Callable[[int], None],
    ) -> None: ...
    def take(self, n: int = 1, /) -> bool: ...
    def refill(self) -> int: ...

def convert_levels(
    price_grid: Grid[_Text],
    size_grid: Grid[_Text],
    raw: Iterable[Sequence[_Text]],
    columns: int = 2,
    /,
) -> list[tuple[int, int]]:
    """``(price_steps, size_steps)`` from the first two of each level's ``columns`` items."""

def convert_raw_levels(
    price_grid: Grid[str], size_grid: Grid[str], raw_json: bytes | bytearray | memoryview, /
) -> list[tuple[int, int]] | None:
    """Levels of a raw JSON array of ``["price", "size"]`` pairs, or None for any other shape."""

def apply_side(
    sizes: dict[int, int],
    window: list[int],
    edge: int,
    levels: Iterable[tuple[int, int]],
    negate: bool,
    window_min: int,
    window_max: int,
    /,
) -> tuple[int, int] | Literal[False] | None:
    """Apply one side's levels: the best level, None (empty side) or False (refill or trim)."""

def top_keys(sizes: dict[int, int], count: int, negate: bool, /) -> list[int] | None:
    """The ``count`` best window keys ascending; None when a price is not an int64."""

def histogram_record(
    counts: list[int], extremes: list[int], slow: Callable[[Any], None], value: Any, /
) -> None:
    """``LatencyHistogram.record`` over its bucket counts and ``[total, minimum, maximum]``;
    a value it does not take goes to ``slow(value)``."""

def set_background(
    by_price: dict[int, Any],
    keys: list[int],
    changed: set[int],
    levels: Sequence[tuple[int, int]],
    start: int,
    is_bid: bool,
    opposite_keys: list[int],
    level_type: Callable[[int], Any],
    empty_queue: object,
    /,
) -> int:
    """``BackgroundLiquidity._set_side`` over ``levels[start:]``, background-only levels that do
    not cross: the index of the first level it left to the Python loop (``len(levels)``: none)."""

def changed_sizes(changed: set[int], by_price: dict[int, Any], descending: bool, /) -> list[tuple[int, int]]:
    """``(price, background + own)`` of each changed level (0 where it is gone), sorted by price."""
