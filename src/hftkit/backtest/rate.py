"""The live adapters' rate budget, modelled in a backtest and in paper trading.

A live node cannot send more than its venue's rate limits let its adapter send: Binance's order
and weight windows (``venues.binance.endpoints.account_limiter``), Thalex's session message bucket
(``venues.thalex.rpc.message_bucket``). A simulated venue without them would let a strategy trade
an order flow no account could send, and report results no live run could reach. ``OrderRate``
is the same budget on the simulated clock: the simulated venue takes from it as the adapter
would (an order written now declines when it is spent, an awaited one waits for it) and tells
the engine what is left (``BudgetsOrders``), so the quoting plan defers as it does live.
"""

from __future__ import annotations

from typing import Protocol

from hftkit.core.clock import Clock
from hftkit.resilience import Priority, TokenBucket, WeightedLimiter
from hftkit.venues.binance.endpoints import ENDPOINTS, Market, account_limiter, request_weights
from hftkit.venues.thalex.config import ThalexConfig
from hftkit.venues.thalex.rpc import message_bucket


class OrderRate(Protocol):
    """One venue account's order budget; ``cancel`` requests draw on what cancels may use."""

    def take_now(self, cancel: bool) -> bool:
        """Take one request's cost now (True), or nothing when it would wait."""
        ...

    async def acquire(self, cancel: bool) -> None:
        """Wait (on the loop's clock) until one request's cost is taken."""
        ...

    def budget(self) -> int:
        """New orders that could go now without waiting."""
        ...

    def wait_s(self) -> float:
        """Seconds until one more new order could go."""
        ...


class WindowRate:
    """Binance: the market's windows, a new order's and a cancel's cost in them."""

    def __init__(self, market: Market, clock: Clock) -> None:
        self.limiter: WeightedLimiter = account_limiter(market, clock)
        endpoints = ENDPOINTS[market]
        new, cancel = endpoints["new_order"], endpoints["cancel_order"]
        self._new = self.limiter.costs(request_weights(market, new, new.weight_for({})))
        self._cancel = self.limiter.costs(request_weights(market, cancel, cancel.weight_for({})))

    def take_now(self, cancel: bool) -> bool:
        if cancel:
            return self.limiter.try_acquire(self._cancel, Priority.HIGH)
        return self.limiter.try_acquire(self._new, Priority.NORMAL)

    async def acquire(self, cancel: bool) -> None:
        if cancel:
            await self.limiter.acquire(self._cancel, Priority.HIGH)
        else:
            await self.limiter.acquire(self._new, Priority.NORMAL)

    def budget(self) -> int:
        return self.limiter.affordable(self._new)

    def wait_s(self) -> float:
        return self.limiter.time_until_available(self._new)


class BucketRate:
    """Thalex: one bucket of messages per session, a second's burst at the session's rate."""

    def __init__(self, clock: Clock, rate: float = ThalexConfig.default_message_rate) -> None:
        self.bucket: TokenBucket = message_bucket(rate, clock, used=0)

    def take_now(self, cancel: bool) -> bool:
        return self.bucket.try_acquire()

    async def acquire(self, cancel: bool) -> None:
        await self.bucket.acquire()

    def budget(self) -> int:
        return max(0, int(self.bucket.tokens))

    def wait_s(self) -> float:
        return self.bucket.time_until_available()
