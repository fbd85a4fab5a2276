"""Smart order router: split a parent taker order across venues by marginal cost (pure core).

Every venue's book is cut into units of its own lot: each level of the side the parent takes
offers ``size`` lots at a unit cost of

* buy:  ``price * (1 + fee) + adverse``   (cash paid per base unit, fee included)
* sell: ``-price * (1 - fee) + adverse``  (cash received, as a negative cost)

where ``adverse`` prices the venue's latency: by the time an order lands the market has moved
against it by ``adverse_bps_per_ms`` of the mid (and/or ``adverse_cost_per_ms`` currency) per
millisecond of expected round trip (a percentile of the venue's measured order latency).
Taking the cheapest units first across all books, capped by each venue's available quantity
(balance, position limit), picks the parent's size at the least total cost: the costs are
linear within a level and rise level by level, so the greedy choice is optimal. Children below
a venue's minimums are dropped and the split is redone without that venue.

``RoutingDecision`` carries the per-venue components (notional, fees, latency cost, what the
whole parent would cost there alone) and says in words why it chose what it chose.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

import msgspec

from hftkit.book.microstructure import BookReader
from hftkit.core.types import Instrument, Side
from hftkit.metrics import LatencyHistogram

__all__ = [
    "RouteCandidate",
    "RouterConfig",
    "RoutingDecision",
    "SmartOrderRouter",
    "VenueAllocation",
    "VenueAssessment",
    "latency_ms_from_histogram",
]


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """How latency turns into cost, and how deep books are read."""

    adverse_bps_per_ms: float = 0.0  # expected adverse move per ms of round trip, bps of the mid
    adverse_cost_per_ms: float = 0.0  # ... or in quote currency per base unit per ms
    default_latency_ms: float = 1.0  # for a venue with no latency measured yet
    latency_percentile: float = 50.0
    max_levels: int = 100  # levels read per book

    def __post_init__(self) -> None:
        if self.adverse_bps_per_ms < 0 or self.adverse_cost_per_ms < 0 or self.default_latency_ms < 0:
            raise ValueError("adverse costs and default latency must be >= 0")
        if self.max_levels < 1 or not 0 < self.latency_percentile <= 100:
            raise ValueError("max_levels must be >= 1 and latency_percentile in (0, 100]")


@dataclass(frozen=True, slots=True)
class RouteCandidate:
    """One venue the parent may go to: its instrument, live book, taker fee and limits.

    ``latency_ms`` None means "use the router's default"; ``available`` None means no limit,
    otherwise the most base quantity this venue can take on this side (free balance, room
    under a position limit).
    """

    instrument: Instrument
    book: BookReader
    fee_bps: float = 0.0
    latency_ms: float | None = None
    available: Decimal | None = None


def latency_ms_from_histogram(histogram: LatencyHistogram, percentile: float = 50.0) -> float | None:
    """A percentile of measured order round trips in ms (None before the first sample)."""
    if histogram.count == 0:
        return None
    return histogram.percentile(percentile) / 1e6


class VenueAllocation(msgspec.Struct, frozen=True, kw_only=True):
    """The child order for one venue and what it is expected to cost."""

    venue: str
    symbol: str
    lots: int
    quantity: Decimal  # base units
    limit_price: int  # ticks: the worst level used, the child's protective limit
    average_price: float  # quote currency
    notional: float  # quote currency, sum of price * quantity
    fees: float
    latency_cost: float
    total_cost: float  # signed: buy = notional + fees + latency; sell = -notional + fees + latency


class VenueAssessment(msgspec.Struct, frozen=True, kw_only=True):
    venue: str
    symbol: str
    touch: float | None  # best price on the side taken
    depth: Decimal  # base quantity offered within the levels read (enough for the parent, or max_levels)
    available: Decimal | None
    fee_bps: float
    latency_ms: float
    adverse_per_unit: float  # latency cost per base unit
    cost_alone: float | None  # the whole parent on this venue alone (None: it cannot fill it)
    excluded: str = ""  # why it got nothing, if it got nothing


class RoutingDecision(msgspec.Struct, frozen=True, kw_only=True):
    side: Side
    requested: Decimal
    filled: Decimal
    allocations: list[VenueAllocation]
    assessments: list[VenueAssessment]
    total_cost: float
    best_single_venue: str | None
    best_single_cost: float | None
    reason: str

    @property
    def unfilled(self) -> Decimal:
        return self.requested - self.filled

    @property
    def saving_vs_single(self) -> float | None:
        """How much cheaper the split is than the best single venue (None if none could fill)."""
        return None if self.best_single_cost is None else self.best_single_cost - self.total_cost

    def explain(self) -> str:
        """A human-readable account of the choice, one line per venue."""
        lines = [f"{self.side.value} {self.requested}: {self.reason}"]
        allocated = {allocation.venue: allocation for allocation in self.allocations}
        for assessment in self.assessments:
            allocation = allocated.get(assessment.venue)
            alone = "n/a" if assessment.cost_alone is None else f"{assessment.cost_alone:.6f}"
            touch = "none" if assessment.touch is None else f"{assessment.touch:.10g}"
            head = (
                f"  {assessment.venue}:{assessment.symbol} touch={touch} "
                f"fee={assessment.fee_bps}bps "
                f"latency={assessment.latency_ms:.3f}ms adverse/unit={assessment.adverse_per_unit:.6g} "
                f"alone={alone}"
            )
            if allocation is None:
                lines.append(f"{head} -> nothing ({assessment.excluded or 'more expensive'})")
            else:
                lines.append(
                    f"{head} -> {allocation.quantity} @ avg {allocation.average_price:.6f} limit "
                    f"{allocation.limit_price} ticks (notional {allocation.notional:.6f}, fees "
                    f"{allocation.fees:.6f}, latency {allocation.latency_cost:.6f})"
                )
        return "\n".join(lines)


class _Venue:
    __slots__ = ("adverse", "base_per_lot", "candidate", "cap_lots", "fee", "latency_ms", "levels", "tick")

    def __init__(
        self, candidate: RouteCandidate, side: Side, config: RouterConfig, requested: Decimal
    ) -> None:
        instrument = candidate.instrument
        self.candidate = candidate
        self.tick = float(instrument.tick_size)
        self.base_per_lot = instrument.lot_size * instrument.contract_size
        book = candidate.book
        self.levels = _levels_to_fill(
            book.asks if side is Side.BUY else book.bids,
            int((requested / self.base_per_lot).to_integral_value(ROUND_DOWN)),
            config.max_levels,
        )
        self.fee = candidate.fee_bps / 10_000
        self.latency_ms = (
            candidate.latency_ms if candidate.latency_ms is not None else config.default_latency_ms
        )
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None:
            mid = (bid[0] + ask[0]) / 2 * self.tick
        elif self.levels:
            mid = self.levels[0][0] * self.tick
        else:
            mid = 0.0
        self.adverse = self.latency_ms * (
            config.adverse_bps_per_ms / 10_000 * mid + config.adverse_cost_per_ms
        )
        if candidate.available is None:
            self.cap_lots: int | None = None
        else:
            self.cap_lots = max(
                0, int((candidate.available / self.base_per_lot).to_integral_value(ROUND_DOWN))
            )

    def unit_cost(self, price: int, side: Side) -> float:
        value = price * self.tick
        if side is Side.BUY:
            return value * (1 + self.fee) + self.adverse
        return -value * (1 - self.fee) + self.adverse

    def units(self, side: Side, index: int) -> Iterator[tuple[float, float, int, int, int]]:
        """This book's units cheapest first (its levels are best first, so their costs rise)."""
        latency_ms = self.latency_ms
        for price, size in self.levels:
            if size > 0:
                yield (self.unit_cost(price, side), latency_ms, index, price, size)


# Levels read first: inside the book's sorted window (a slice, where a deeper read sorts the
# side), and more than a hedge usually takes.
FIRST_READ_LEVELS = 16


def _levels_to_fill(
    read: Callable[[int], list[tuple[int, int]]], lots: int, max_levels: int
) -> list[tuple[int, int]]:
    """The best levels holding ``lots`` (or every level up to ``max_levels``): a venue never takes
    more than the parent's lots, so the levels past them cannot change the split. Read in
    doubling depth from ``FIRST_READ_LEVELS``: a deep read sorts the side (a hundred levels of a
    USD-M book cost more than the rest of a route)."""
    depth = min(FIRST_READ_LEVELS, max_levels)
    while True:
        levels = read(depth)
        if len(levels) < depth or depth >= max_levels or sum(size for _, size in levels) >= lots:
            return levels
        depth = min(depth * 2, max_levels)


class SmartOrderRouter:
    """Scores venues from live books, fees, limits and latency; splits a parent order."""

    def __init__(self, config: RouterConfig | None = None) -> None:
        self.config = config or RouterConfig()

    def route(
        self, side: Side, quantity: Decimal | str, candidates: Sequence[RouteCandidate]
    ) -> RoutingDecision:
        """Split ``quantity`` (base units) across ``candidates``, cheapest units first."""
        requested = Decimal(quantity)
        if not requested.is_finite() or requested <= 0:
            raise ValueError(f"quantity must be a positive number, got {quantity!r}")
        venues = [_Venue(candidate, side, self.config, requested) for candidate in candidates]
        names = [venue.candidate.instrument.venue for venue in venues]
        if len(set(names)) != len(names):
            raise ValueError(f"one candidate per venue, got {names}")
        excluded: dict[int, str] = {}
        while True:
            lots, prices = self._greedy(side, requested, venues, excluded)
            failing = [
                index
                for index, taken in enumerate(lots)
                if taken
                and not venues[index].candidate.instrument.meets_minimums(prices[index][-1][0], taken)
            ]
            if not failing:
                break
            for index in failing:
                excluded[index] = "child below the venue's minimum quantity or notional"
        allocations = []
        filled = Decimal(0)
        for index, venue in enumerate(venues):
            if not lots[index]:
                continue
            allocation = self._allocation(side, venue, lots[index], prices[index])
            allocations.append(allocation)
            filled += allocation.quantity
        assessments = [
            self._assess(side, requested, venue, excluded.get(index, ""))
            for index, venue in enumerate(venues)
        ]
        total = sum(allocation.total_cost for allocation in allocations)
        single = [(a.cost_alone, a.venue) for a in assessments if a.cost_alone is not None]
        best_cost, best_venue = min(single) if single else (None, None)
        return RoutingDecision(
            side=side,
            requested=requested,
            filled=filled,
            allocations=allocations,
            assessments=assessments,
            total_cost=total,
            best_single_venue=best_venue,
            best_single_cost=best_cost,
            reason=self._reason(requested, filled, allocations, best_venue, best_cost, total),
        )

    def _greedy(
        self, side: Side, requested: Decimal, venues: list[_Venue], excluded: dict[int, str]
    ) -> tuple[list[int], list[list[tuple[int, int]]]]:
        """Lots per venue and the (price, lots) taken from each level, cheapest units first."""
        # each book's units already rise in cost: merge them lazily, reading only what is taken
        units = heapq.merge(
            *(venue.units(side, index) for index, venue in enumerate(venues) if index not in excluded)
        )
        remaining = requested
        lots = [0] * len(venues)
        prices: list[list[tuple[int, int]]] = [[] for _ in venues]
        for _, _, index, price, size in units:
            if remaining <= 0:
                break
            venue = venues[index]
            can = int((remaining / venue.base_per_lot).to_integral_value(ROUND_DOWN))
            if venue.cap_lots is not None:
                can = min(can, venue.cap_lots - lots[index])
            take = min(size, can)
            if take <= 0:
                continue
            lots[index] += take
            prices[index].append((price, take))
            remaining -= take * venue.base_per_lot
        return lots, prices

    def _allocation(
        self, side: Side, venue: _Venue, lots: int, taken: list[tuple[int, int]]
    ) -> VenueAllocation:
        instrument = venue.candidate.instrument
        quantity = lots * venue.base_per_lot
        base_per_lot = float(venue.base_per_lot)
        notional = sum(price * venue.tick * size * base_per_lot for price, size in taken)
        fees = notional * venue.fee
        latency_cost = venue.adverse * float(quantity)
        total = (notional if side is Side.BUY else -notional) + fees + latency_cost
        return VenueAllocation(
            venue=instrument.venue,
            symbol=instrument.symbol,
            lots=lots,
            quantity=quantity,
            limit_price=taken[-1][0],
            average_price=notional / float(quantity),
            notional=notional,
            fees=fees,
            latency_cost=latency_cost,
            total_cost=total,
        )

    def _assess(self, side: Side, requested: Decimal, venue: _Venue, excluded: str) -> VenueAssessment:
        instrument = venue.candidate.instrument
        depth_lots = sum(size for _, size in venue.levels)
        alone_lots, alone_prices = self._greedy(side, requested, [venue], {})
        cost_alone = None
        if alone_lots[0] and alone_lots[0] * venue.base_per_lot >= requested:
            cost_alone = self._allocation(side, venue, alone_lots[0], alone_prices[0]).total_cost
        if not excluded and not venue.levels:
            excluded = "empty book"
        elif not excluded and venue.cap_lots == 0:
            excluded = "nothing available (balance or position limit)"
        return VenueAssessment(
            venue=instrument.venue,
            symbol=instrument.symbol,
            touch=venue.levels[0][0] * venue.tick if venue.levels else None,
            depth=depth_lots * venue.base_per_lot,
            available=venue.candidate.available,
            fee_bps=venue.candidate.fee_bps,
            latency_ms=venue.latency_ms,
            adverse_per_unit=venue.adverse,
            cost_alone=cost_alone,
            excluded=excluded,
        )

    @staticmethod
    def _reason(
        requested: Decimal,
        filled: Decimal,
        allocations: list[VenueAllocation],
        best_venue: str | None,
        best_cost: float | None,
        total: float,
    ) -> str:
        if not allocations:
            return "no venue can take any of it"
        shortfall = "" if filled >= requested else f"; only {filled} of {requested} available"
        if len(allocations) == 1:
            only = allocations[0].venue
            if best_venue == only or best_venue is None:
                return f"all on {only}: cheapest at every unit taken{shortfall}"
            return f"all on {only}{shortfall}"
        split = ", ".join(f"{allocation.venue} {allocation.quantity}" for allocation in allocations)
        if best_cost is None:
            return f"split {split}: no single venue can fill it{shortfall}"
        return f"split {split}: {best_cost - total:.6g} cheaper than all on {best_venue}{shortfall}"
