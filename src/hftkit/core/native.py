"""The optional C accelerator, or None.

``hftkit._native`` is built by ``pip install`` when a C compiler is present. Callers keep a
pure-Python twin of every native loop and pick one at import time; both are tested against
each other. ``HFTKIT_PURE_PYTHON=1`` forces the pure path (for tests, benchmarks and
debugging with a Python-level profiler).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

if TYPE_CHECKING:
    from hftkit import _native

_Text = TypeVar("_Text", str, float)


class NativeModule(Protocol):
    """What callers use of ``hftkit._native``; the type checker holds the module's stub
    (``_native.pyi``) to it, so a C signature change shows up at every caller."""

    def Grid(  # the C type, called as its constructor
        self, scale: int, step_units: int, minimum: int, slow: Callable[[_Text], int], /
    ) -> _native.Grid[_Text]: ...

    def Credits(  # the C type, called as its constructor
        self,
        credits: int,
        max_credits: int,
        rate: int,
        unit: int,
        capacity: int,
        now: Callable[[], int],
        check: Callable[[int], None],
        /,
    ) -> _native.Credits: ...

    def convert_levels(
        self,
        price_grid: _native.Grid[_Text],
        size_grid: _native.Grid[_Text],
        raw: Iterable[Sequence[_Text]],
        columns: int = 2,
        /,
    ) -> list[tuple[int, int]]: ...

    def convert_raw_levels(
        self,
        price_grid: _native.Grid[str],
        size_grid: _native.Grid[str],
        raw_json: bytes | bytearray | memoryview,
        /,
    ) -> list[tuple[int, int]] | None: ...

    def apply_side(
        self,
        sizes: dict[int, int],
        window: list[int],
        edge: int,
        levels: Iterable[tuple[int, int]],
        negate: bool,
        window_min: int,
        window_max: int,
        /,
    ) -> tuple[int, int] | Literal[False] | None: ...

    def top_keys(self, sizes: dict[int, int], count: int, negate: bool, /) -> list[int] | None: ...

    def set_background(
        self,
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
    ) -> int: ...

    def changed_sizes(
        self, changed: set[int], by_price: dict[int, Any], descending: bool, /
    ) -> list[tuple[int, int]]: ...

    def histogram_record(
        self, counts: list[int], extremes: list[int], slow: Callable[[Any], None], value: Any, /
    ) -> None: ...


def _load() -> NativeModule | None:
    if os.environ.get("HFTKIT_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from hftkit import _native
    except ImportError:
        return None
    return _native


NATIVE: NativeModule | None = _load()
"""``hftkit._native`` when built and not disabled, else None."""
