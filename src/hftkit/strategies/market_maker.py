"""Avellaneda-Stoikov market maker with inventory skew, as a sans-I/O strategy.

Model, with a rolling horizon (the time left to the "end of the session" is a constant tau):

    reservation price  r     = s - q * gamma * sigma^2 * tau
    optimal spread     delta = gamma * sigma^2 * tau + (2 / gamma) * ln(1 + gamma / kappa)

``s`` is the book's microprice, ``sigma`` the realized volatility of sampled mids in price units
per sqrt(second), ``q`` the inventory in lots divided by the maximum position (so in [-1, 1]),
``gamma`` the risk aversion and ``kappa`` the order-arrival intensity (both per price unit).
Internally everything is in ticks: gamma and kappa are scaled by the tick size and sigma divided
by it once, so the per-event work is a few float operations and integer rounding.

The ladder: level 0 at ``r -/+ delta/2`` rounded outward to the tick grid (bids down, asks up),
further levels ``level_spacing_ticks`` apart, never at or through the opposite best (post-only
safe). Sizes lean against the inventory (long: smaller bids, larger asks) and each side is
capped so that every quote filling cannot take the position past ``max_position``: at max long
no bid is quoted at all.

Volatility is sampled on book events at most every ``volatility_sample_interval_ms`` into a
``MidTape`` and recomputed on a timer, off the per-event path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from hftkit.book.microstructure import MidTape, microprice, realized_volatility
from hftkit.book.order_book import OrderBook
from hftkit.core.types import Fill, Instrument, Quote, Side
from hftkit.trading.strategy import Decision, Strategy, Subscription, TimerRequest

__all__ = [
    "VOLATILITY_TIMER",
    "AvellanedaStoikovModel",
    "MarketMaker",
    "MarketMakerConfig",
    "volatility_per_sqrt_second",
]

VOLATILITY_TIMER = "volatility"
_BUY = Side.BUY
_SELL = Side.SELL
_floor = math.floor
_ceil = math.ceil


@dataclass(frozen=True, slots=True)
class MarketMakerConfig:
    """Parameters of one market maker on one instrument (prices in price units, sizes in lots)."""

    venue: str
    symbol: str
    size_per_level: int  # lots
    max_position: int  # lots, each way
    gamma: float = 0.1  # risk aversion, per price unit
    kappa: float = 1.5  # order-arrival intensity, per price unit
    horizon_s: float = 1.0  # tau: the rolling horizon
    levels: int = 3  # per side
    level_spacing_ticks: int = 1
    min_spread_ticks: int = 1
    size_skew: float = 1.0  # 0: flat sizes; 1: a side's sizes scale by (1 -/+ q)
    initial_volatility: float = 0.0  # price units per sqrt(second), until enough mids are sampled
    volatility_window: int = 600  # mids used for sigma
    min_volatility_samples: int = 20
    volatility_sample_interval_ms: int = 100
    volatility_refresh_s: float = 1.0
    inventory_group: str | None = None  # quote on the aggregate position of this group (cross-venue)

    def __post_init__(self) -> None:
        for name in ("size_per_level", "max_position", "levels", "level_spacing_ticks", "min_spread_ticks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MarketMakerConfig.{name} must be an integer >= 1, got {value!r}")
        for name in ("gamma", "kappa", "horizon_s", "volatility_refresh_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"MarketMakerConfig.{name} must be a positive number, got {value!r}")
        if not (math.isfinite(self.initial_volatility) and self.initial_volatility >= 0):
            raise ValueError(
                f"MarketMakerConfig.initial_volatility must be >= 0, got {self.initial_volatility!r}"
            )
        if not 0 <= self.size_skew <= 1:
            raise ValueError(f"MarketMakerConfig.size_skew must be in [0, 1], got {self.size_skew!r}")
        if self.min_volatility_samples < 2 or self.volatility_window < self.min_volatility_samples:
            raise ValueError("need 2 <= min_volatility_samples <= volatility_window")
        if self.volatility_sample_interval_ms < 0:
            raise ValueError("volatility_sample_interval_ms must be >= 0")


class AvellanedaStoikovModel:
    """The pure quote computation for one instrument: book top + inventory -> ladder."""

    __slots__ = (
        "_gamma",
        "_half_spread",
        "_kappa",
        "_risk_term",
        "config",
        "instrument",
        "sigma_ticks",
    )

    def __init__(self, config: MarketMakerConfig, instrument: Instrument) -> None:
        self.config = config
        self.instrument = instrument
        tick = float(instrument.tick_size)
        self._gamma = config.gamma * tick  # per tick
        self._kappa = config.kappa * tick
        self.sigma_ticks = 0.0
        self._risk_term = 0.0
        self._half_spread = 0.0
        self.set_volatility(config.initial_volatility)

    @property
    def volatility(self) -> float:
        """sigma in price units per sqrt(second)."""
        return self.sigma_ticks * float(self.instrument.tick_size)

    def set_volatility(self, sigma: float) -> None:
        """Set sigma (price units per sqrt(second)) and precompute the terms that depend on it."""
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"volatility must be a finite number >= 0, got {sigma!r}")
        self.sigma_ticks = sigma / float(self.instrument.tick_size)
        gamma = self._gamma
        self._risk_term = gamma * self.sigma_ticks**2 * self.config.horizon_s
        self._half_spread = (self._risk_term + (2 / gamma) * math.log1p(gamma / self._kappa)) / 2

    def reservation_price(self, mid: float, inventory: int) -> float:
        """r = s - q * gamma * sigma^2 * tau, in ticks (``inventory`` in lots)."""
        return mid - inventory / self.config.max_position * self._risk_term

    def spread(self) -> float:
        """delta, in ticks."""
        return 2 * self._half_spread

    def quotes(self, best_bid: int, best_ask: int, fair: float, inventory: int) -> tuple[Quote, ...]:
        """The ladder for a book whose best bid/ask are given (ticks) around ``fair`` (ticks)."""
        config = self.config
        max_position = config.max_position
        q = inventory / max_position
        reservation = fair - q * self._risk_term
        half = self._half_spread
        bid = _floor(reservation - half)
        ask = _ceil(reservation + half)
        if ask - bid < config.min_spread_ticks:
            ask = bid + config.min_spread_ticks
        if bid >= best_ask:
            bid = best_ask - 1
        if ask <= best_bid:
            ask = best_bid + 1
        skew = config.size_skew * q
        size = config.size_per_level
        bid_size = int(size * (1 - skew)) if skew < 1 else 0
        ask_size = int(size * (1 + skew)) if skew > -1 else 0
        bid_room = max_position - inventory
        ask_room = max_position + inventory
        spacing = config.level_spacing_ticks
        ladder: list[Quote] = []
        if bid_size > 0 and bid_room > 0:
            price = bid
            for level in range(config.levels):
                lots = bid_size if bid_size < bid_room else bid_room
                if lots <= 0 or price <= 0:
                    break
                ladder.append(Quote(_BUY, price, lots, level))
                bid_room -= lots
                price -= spacing
        if ask_size > 0 and ask_room > 0:
            price = ask
            for level in range(config.levels):
                lots = ask_size if ask_size < ask_room else ask_room
                if lots <= 0:
                    break
                ladder.append(Quote(_SELL, price, lots, level))
                ask_room -= lots
                price += spacing
        return tuple(ladder)

    def quotes_for_book(self, book: OrderBook, inventory: int) -> tuple[Quote, ...]:
        """The ladder from a live book (empty when a side of the book is empty: quote nothing)."""
        best_bid = book.best_bid()
        best_ask = book.best_ask()
        if best_bid is None or best_ask is None or best_bid[0] >= best_ask[0]:
            return ()
        fair = microprice(book)
        return self.quotes(best_bid[0], best_ask[0], fair, inventory)  # type: ignore[arg-type]


def volatility_per_sqrt_second(tape: MidTape, count: int, minimum: int) -> float | None:
    """Realized volatility of the last ``count`` sampled mids, in mid units per sqrt(second).

    Log-return variance per second (the realized variance scaled by 1 s over the window's span)
    times the latest mid: None with fewer than ``minimum`` samples or a zero span.
    """
    window = tape.ring.latest(count)
    if len(window) < minimum:
        return None
    mids = window["mid"]
    per_sqrt_second = realized_volatility(mids, window["timestamp"], annualize=True, year_ns=1_000_000_000)
    if per_sqrt_second is None:
        return None
    return per_sqrt_second * float(mids[-1])


class MarketMaker(Strategy):
    """Quotes an Avellaneda-Stoikov ladder on every book event and after every own fill."""

    #: the params a node config gives this strategy (``strategies[].params``)
    config_type = MarketMakerConfig

    def __init__(self, config: MarketMakerConfig, name: str = "market_maker") -> None:
        super().__init__(name)
        self.config = config
        self.key = (config.venue, config.symbol)
        self.model: AvellanedaStoikovModel | None = None
        self.tape = MidTape(max(config.volatility_window, 2))
        self._sample_interval_ns = config.volatility_sample_interval_ms * 1_000_000
        self._next_sample_ns = -(1 << 62)
        self._base_per_lot = Decimal(1)
        self._last_ladder: tuple[Quote, ...] = ()
        self.decisions = 0

    def subscriptions(self) -> list[Subscription]:
        return [Subscription(self.config.venue, (self.config.symbol,), books=True)]

    def on_start(self) -> Decision | None:
        instrument = self.context.instrument(*self.key)
        self.model = AvellanedaStoikovModel(self.config, instrument)
        self._base_per_lot = instrument.lot_size * instrument.contract_size
        return Decision(timers=[TimerRequest(VOLATILITY_TIMER, self.config.volatility_refresh_s)])

    def inventory(self) -> int:
        """Signed lots the quotes lean against: this venue's position, or the group's aggregate."""
        context = self.context
        group = self.config.inventory_group
        if group is None:
            return context.position(*self.key)
        return int(context.aggregate_position(group) / self._base_per_lot)

    def on_book(self, venue: str, symbol: str, book: OrderBook) -> Decision | None:
        if venue != self.config.venue or symbol != self.config.symbol:
            return None
        now = self.context.now_ns()
        if now >= self._next_sample_ns:
            bid, ask = book.best_bid(), book.best_ask()
            if bid is not None and ask is not None:
                self.tape.add(now, (bid[0] + ask[0]) / 2)
                self._next_sample_ns = now + self._sample_interval_ns
        return self._decide(book)

    def on_fill(self, fill: Fill) -> Decision | None:
        book = self.context.book(*self.key)
        return None if book is None else self._decide(book)

    def on_timer(self, name: str) -> Decision | None:
        if name != VOLATILITY_TIMER:
            return None
        self.refresh_volatility()
        return Decision(timers=[TimerRequest(VOLATILITY_TIMER, self.config.volatility_refresh_s)])

    def refresh_volatility(self) -> float | None:
        """Recompute sigma from the sampled mids (in ticks, converted to price units)."""
        if self.model is None:
            return None
        config = self.config
        sigma_ticks = volatility_per_sqrt_second(
            self.tape, config.volatility_window, config.min_volatility_samples
        )
        if sigma_ticks is None:
            return None
        sigma = sigma_ticks * float(self.model.instrument.tick_size)
        self.model.set_volatility(sigma)
        return sigma

    def _decide(self, book: OrderBook) -> Decision | None:
        model = self.model
        if model is None:
            return None
        ladder = model.quotes_for_book(book, self.inventory())
        if ladder == self._last_ladder:
            ladder = self._last_ladder  # the same object lets quoting's early exit skip by identity
        else:
            self._last_ladder = ladder
        self.decisions += 1
        return Decision(quotes={self.key: ladder})
