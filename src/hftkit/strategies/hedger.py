"""Cross-venue hedger: flatten aggregate inventory through the smart order router.

It watches the net position of one asset group across venues (fills of every watched
instrument, plus a timer as a safety net) and, when the exposure beyond ``target`` exceeds
``threshold``, asks the ``SmartOrderRouter`` to split the flattening trade across the hedge
venues from their live books, fees and measured latency, and sends one IOC child per venue
through the execution engine with a protective limit (the worst level the router planned to
reach, widened by ``slippage_bps``). While a hedge is in flight no other hedge starts, and after
one completes a cooldown lets fills and books settle before the position is judged again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from hftkit.core.types import Fill, OrderIntent, OrderType, Side, TimeInForce
from hftkit.trading.execution import ExecutionReport
from hftkit.trading.router import (
    RouteCandidate,
    RouterConfig,
    RoutingDecision,
    SmartOrderRouter,
    latency_ms_from_histogram,
)
from hftkit.trading.strategy import Decision, Strategy, Subscription, TimerRequest

__all__ = ["CHECK_TIMER", "COOLDOWN_TIMER", "CrossVenueHedger", "HedgerConfig"]

CHECK_TIMER = "hedge_check"
COOLDOWN_TIMER = "hedge_cooldown"


@dataclass(frozen=True)
class HedgerConfig:
    """Which exposure to watch, where to hedge it and how eagerly.

    ``watch`` are the instruments whose fills move the exposure (the market maker's);
    ``hedge_on`` the (venue, symbol) pairs the router may trade. Quantities are base units.
    """

    group: str
    hedge_on: tuple[tuple[str, str], ...]
    threshold: Decimal
    watch: tuple[tuple[str, str], ...] = ()
    target: Decimal = Decimal(0)
    max_hedge: Decimal | None = None
    cooldown_s: float = 1.0
    check_interval_s: float = 1.0
    slippage_bps: float = 5.0
    # how often the router's latency per venue is re-read from the measured round trips: a
    # percentile of a histogram costs about as much as the rest of a hedge's decision
    latency_refresh_s: float = 1.0
    fee_bps: Mapping[str, float] = field(default_factory=dict)  # taker fee per venue
    router: RouterConfig = field(default_factory=RouterConfig)

    def __post_init__(self) -> None:
        if not self.hedge_on:
            raise ValueError("HedgerConfig.hedge_on needs at least one (venue, symbol)")
        if not (self.threshold.is_finite() and self.threshold >= 0):
            raise ValueError(f"HedgerConfig.threshold must be >= 0, got {self.threshold!r}")
        if self.max_hedge is not None and not (self.max_hedge.is_finite() and self.max_hedge > 0):
            raise ValueError(f"HedgerConfig.max_hedge must be > 0, got {self.max_hedge!r}")
        for name in ("cooldown_s", "check_interval_s", "slippage_bps", "latency_refresh_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"HedgerConfig.{name} must be >= 0, got {value!r}")
        if self.check_interval_s == 0:
            raise ValueError("HedgerConfig.check_interval_s must be > 0")


class CrossVenueHedger(Strategy):
    """Flattens the group's aggregate position above a threshold (see the module docstring)."""

    #: the params a node config gives this strategy (``strategies[].params``)
    config_type = HedgerConfig

    def __init__(self, config: HedgerConfig, name: str = "hedger") -> None:
        super().__init__(name)
        self.config = config
        self.router = SmartOrderRouter(config.router)
        self.in_flight: set[str] = set()
        self.cooldown_until_ns = -(1 << 62)
        self.last_routing: RoutingDecision | None = None
        self.hedges_started = 0
        self.hedges_skipped_in_flight = 0
        self.hedged_lots_by_venue: dict[str, int] = {}
        self.reports: list[ExecutionReport] = []
        self._sequence = 0
        self._latency_ms: dict[str, tuple[int, float | None]] = {}  # venue -> (read at ns, latency)

    def subscriptions(self) -> list[Subscription]:
        by_venue: dict[str, tuple[set[str], set[str]]] = {}
        for venue, symbol in self.config.hedge_on:
            by_venue.setdefault(venue, (set(), set()))[0].add(symbol)
        for venue, symbol in self.config.watch:
            by_venue.setdefault(venue, (set(), set()))[1].add(symbol)
        subscriptions = []
        for venue, (books, watched) in sorted(by_venue.items()):
            if books:
                subscriptions.append(Subscription(venue, tuple(sorted(books)), books=True, all_fills=True))
            if watched - books:
                subscriptions.append(
                    Subscription(venue, tuple(sorted(watched - books)), books=False, all_fills=True)
                )
        return subscriptions

    def on_start(self) -> Decision | None:
        return Decision(timers=[TimerRequest(CHECK_TIMER, self.config.check_interval_s)])

    def on_fill(self, fill: Fill) -> Decision | None:
        return self.maybe_hedge()

    def on_timer(self, name: str) -> Decision | None:
        if name == CHECK_TIMER:
            decision = self.maybe_hedge() or Decision()
            decision.timers.append(TimerRequest(CHECK_TIMER, self.config.check_interval_s))
            return decision
        if name == COOLDOWN_TIMER:
            return self.maybe_hedge()
        return None

    def exposure(self) -> Decimal:
        """Aggregate position of the group beyond the target (base units)."""
        return self.context.aggregate_position(self.config.group) - self.config.target

    def maybe_hedge(self) -> Decision | None:
        """Route and send a hedge if the exposure is beyond the threshold and nothing blocks it."""
        context = self.context
        if context.trading_halted:
            return None
        exposure = self.exposure()
        if abs(exposure) <= self.config.threshold:
            return None
        if self.in_flight:
            self.hedges_skipped_in_flight += 1
            return None
        now = context.now_ns()
        if now < self.cooldown_until_ns:
            return Decision(timers=[TimerRequest(COOLDOWN_TIMER, (self.cooldown_until_ns - now) / 1e9)])
        side = Side.SELL if exposure > 0 else Side.BUY
        quantity = abs(exposure)
        if self.config.max_hedge is not None and quantity > self.config.max_hedge:
            quantity = self.config.max_hedge
        candidates = []
        for venue, symbol in self.config.hedge_on:
            book = context.book(venue, symbol)
            if book is None:
                continue
            candidates.append(
                RouteCandidate(
                    instrument=context.instrument(venue, symbol),
                    book=book,
                    fee_bps=self.config.fee_bps.get(venue, 0.0),
                    latency_ms=self._latency(venue, now),
                )
            )
        if not candidates:
            return None
        routing = self.router.route(side, quantity, candidates)
        self.last_routing = routing
        if not routing.allocations:
            return None
        self._sequence += 1
        orders = []
        slip = self.config.slippage_bps / 10_000
        for allocation in routing.allocations:
            if side is Side.BUY:
                limit = math.ceil(allocation.limit_price * (1 + slip))
            else:
                limit = max(1, math.floor(allocation.limit_price * (1 - slip)))
            tag = f"{self.name}:{self._sequence}:{allocation.venue}"
            self.in_flight.add(tag)
            orders.append(
                OrderIntent(
                    venue=allocation.venue,
                    symbol=allocation.symbol,
                    side=side,
                    quantity=allocation.lots,
                    price=limit,
                    order_type=OrderType.LIMIT,
                    time_in_force=TimeInForce.IOC,
                    tag=tag,
                )
            )
        self.hedges_started += 1
        return Decision(orders=orders)

    def _latency(self, venue: str, now: int) -> float | None:
        """The venue's measured round trip for the router, re-read every ``latency_refresh_s``."""
        cached = self._latency_ms.get(venue)
        if cached is not None and now - cached[0] < self.config.latency_refresh_s * 1e9:
            return cached[1]
        histogram = self.context.order_latency(venue)
        latency = (
            None
            if histogram is None
            else latency_ms_from_histogram(histogram, self.config.router.latency_percentile)
        )
        self._latency_ms[venue] = (now, latency)
        return latency

    def on_execution(self, report: ExecutionReport) -> Decision | None:
        if report.tag not in self.in_flight:
            return None
        self.in_flight.discard(report.tag)
        self.reports.append(report)
        if report.filled:
            self.hedged_lots_by_venue[report.venue] = (
                self.hedged_lots_by_venue.get(report.venue, 0) + report.filled
            )
        if self.in_flight:
            return None
        self.cooldown_until_ns = self.context.now_ns() + int(self.config.cooldown_s * 1e9)
        return Decision(timers=[TimerRequest(COOLDOWN_TIMER, self.config.cooldown_s)])
