"""Conditions checked after the venue has published the current batch of events.

A trigger (a stop price reached, an algo order's condition) must not act inside the venue's
event fan-out: acting places an order, which publishes events of its own while listeners are
still being told about the trade that caused it. ``DueChecks`` collects the symbols that saw a
relevant event and runs one check for all of them at the next loop iteration; without a running
loop (a synchronous test driving the venue) it checks at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class DueChecks:
    """``add(symbol)`` now, ``check(symbols)`` once later for every symbol added meanwhile."""

    __slots__ = ("_check", "_pending", "_scheduled")

    def __init__(self, check: Callable[[set[str]], None]) -> None:
        self._check = check
        self._pending: set[str] = set()
        self._scheduled = False

    def add(self, symbol: str) -> None:
        self._pending.add(symbol)
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.run()
            return
        self._scheduled = True
        loop.call_soon(self.run)

    def run(self) -> None:
        self._scheduled = False
        symbols, self._pending = self._pending, set()
        if symbols:
            self._check(symbols)


__all__ = ["DueChecks"]
