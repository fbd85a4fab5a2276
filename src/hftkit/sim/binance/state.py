"""Per-market state of the Binance-compatible server: venue, faults, limits, history, listen keys.

One ``MarketState`` per market (spot, USD-M). It listens to its ``SimVenue`` and keeps what
the REST endpoints answer from and the engine does not keep itself: every account's orders
(for ``allOrders``) and executions (for ``myTrades``), per-order USD-M flags (reduceOnly,
GTX), and the listen keys with their expiry. Sans-I/O.
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque
from dataclasses import dataclass

from hftkit.core.clock import Clock
from hftkit.core.types import Instrument
from hftkit.sim.binance.limits import OrderRateLimiter, RateLimitSettings, RequestWeightLimiter
from hftkit.sim.binance.params import BinanceApiError
from hftkit.sim.binance.wire import Formats, units_text
from hftkit.sim.engine.accounts import Position
from hftkit.sim.engine.faults import FaultInjector
from hftkit.sim.engine.matching import Execution, SimOrder
from hftkit.sim.engine.venue import OrderEvent, OrderEventKind, SimEvent, SimVenue
from hftkit.venues.binance.endpoints import Market

NANOS = 1_000_000_000


@dataclass
class ListenKey:
    key: str
    account: str
    expires_ns: int


@dataclass(frozen=True)
class FuturesOrderFlags:
    reduce_only: bool
    time_in_force: str  # GTC / IOC / FOK / GTX as sent


@dataclass(frozen=True)
class Amendment:
    """One accepted change of a working order (USD-M modify, spot keepPriority), for the
    ``orderAmendment`` / ``order/amendments`` history. Prices in ticks, quantities in lots."""

    amendment_id: int
    account: str
    symbol: str
    order_id: int
    client_order_id: str
    new_client_order_id: str
    price_before: int
    price_after: int
    quantity_before: int
    quantity_after: int
    count: int  # the order's amendments so far, this one included
    time_ns: int


class MarketState:
    """Everything the server knows about one market beyond the engine itself."""

    def __init__(
        self,
        market: Market,
        venue: SimVenue,
        faults: FaultInjector,
        limits: RateLimitSettings,
        clock: Clock,
        *,
        history_per_symbol: int = 10_000,
        max_num_orders: int = 200,
        listen_key_validity_s: float = 3600.0,
    ) -> None:
        self.market = market
        self.venue = venue
        self.engine = venue.engine
        self.accounts = venue.accounts
        self.faults = faults
        self.limits = limits
        self.clock = clock
        self.weights = RequestWeightLimiter(limits, clock)
        self.order_limits = OrderRateLimiter(limits, clock)
        self.max_num_orders = max_num_orders
        self.listen_key_validity_s = listen_key_validity_s
        self.history_per_symbol = history_per_symbol
        self._formats: dict[str, Formats] = {}
        self._orders: dict[tuple[str, str], deque[SimOrder]] = {}
        self._executions: dict[tuple[str, str], deque[Execution]] = {}
        self.futures_flags: dict[int, FuturesOrderFlags] = {}
        self._flags_limit = 4 * history_per_symbol
        # position mirrors, seeded from the accounts as they are now: every later fill passes here
        self._positions: dict[tuple[str, str], Position] = {}
        for account in self.accounts:
            for symbol, held in account.positions.items():
                mirror = self._positions[(account.name, symbol)] = Position()
                mirror.quantity, mirror.cost, mirror.realized = held.quantity, held.cost, held.realized
        self._realized: dict[tuple[int, int], int] = {}
        self._realized_limit = 4 * history_per_symbol
        self.listen_keys: dict[str, ListenKey] = {}
        # amendments of working orders, newest last; counts per order for the venue's limit
        self.amendments: deque[Amendment] = deque(maxlen=4 * history_per_symbol)
        self.amendment_counts: dict[int, int] = {}
        self._amendment_ids = itertools.count(1)
        # spot conditional orders (binance_stops): order id -> (type as sent, stop price in ticks),
        # kept after the trigger so the order still reads STOP_LOSS_LIMIT etc.; the ids still waiting
        self.stop_orders: dict[int, tuple[str, int]] = {}
        self.pending_stop_ids: set[int] = set()
        self.stops_pruned = 0
        self._stops_limit = 4 * history_per_symbol
        self.pending_cancel_id: str | None = None  # set by a cancel handler around venue.cancel
        self.pending_flags: FuturesOrderFlags | None = None  # set by the order handler around venue.place
        venue.add_listener(self.on_event)

    def remember_stop(self, order_id: int, type_text: str, stop_price: int) -> None:
        """Keep a conditional order's type and stop price, pruning those of orders gone from the
        history (allOrders and the query no longer find them, so nothing reads their entry)."""
        self.stop_orders[order_id] = (type_text, stop_price)
        if len(self.stop_orders) > self._stops_limit:
            known = {order.order_id for orders in self._orders.values() for order in orders}
            known |= self.pending_stop_ids
            for stale in [key for key in self.stop_orders if key not in known]:
                del self.stop_orders[stale]
                self.stops_pruned += 1
            self._stops_limit = max(self._stops_limit, 2 * len(self.stop_orders))

    def record_amendment(
        self,
        account: str,
        order: SimOrder,
        price_before: int,
        quantity_before: int,
        new_client_order_id: str | None = None,
    ) -> Amendment:
        count = self.amendment_counts.get(order.order_id, 0) + 1
        if len(self.amendment_counts) > self._flags_limit:  # keep the counts of recent orders only
            recent = {item.order_id for item in self.amendments}
            self.amendment_counts = {
                key: value for key, value in self.amendment_counts.items() if key in recent
            }
        self.amendment_counts[order.order_id] = count
        amendment = Amendment(
            amendment_id=next(self._amendment_ids),
            account=account,
            symbol=order.symbol,
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            new_client_order_id=new_client_order_id or order.client_order_id,
            price_before=price_before,
            price_after=order.price,
            quantity_before=quantity_before,
            quantity_after=order.quantity,
            count=count,
            time_ns=order.updated_ns,
        )
        self.amendments.append(amendment)
        return amendment

    @property
    def is_spot(self) -> bool:
        return self.market is Market.SPOT

    # instruments --------------------------------------------------------------------------
    def instrument(self, symbol: str) -> Instrument:
        instrument = self.venue.instruments.get(symbol)
        if instrument is None:
            raise BinanceApiError(-1121, "Invalid symbol.")
        return instrument

    def formats(self, symbol: str) -> Formats:
        found = self._formats.get(symbol)
        if found is None:
            found = self._formats[symbol] = Formats(self.instrument(symbol))
        return found

    def asset_text(self, asset: str, units: int) -> str:
        return units_text(units, self.accounts.decimals(asset))

    # history ----------------------------------------------------------------------------
    def on_event(self, event: SimEvent) -> None:
        if isinstance(event, OrderEvent):
            if event.kind is OrderEventKind.ACCEPTED:
                order = event.order
                key = (order.account, order.symbol)
                orders = self._orders.get(key)
                if orders is None:
                    orders = self._orders[key] = deque(maxlen=self.history_per_symbol)
                orders.append(order)
                if self.pending_flags is not None:  # set by the order handler around venue.place
                    self.set_futures_flags(order.order_id, self.pending_flags)
                    self.pending_flags = None
        elif isinstance(event, Execution):
            order = event.order
            key = (order.account, order.symbol)
            executions = self._executions.get(key)
            if executions is None:
                executions = self._executions[key] = deque(maxlen=self.history_per_symbol)
            executions.append(event)
            if not self.is_spot:
                self._realize(event)

    def _realize(self, execution: Execution) -> None:
        """Replay the fill on a mirror of the position to learn the PnL it realized (Binance "rp")."""
        order = execution.order
        key = (order.account, order.symbol)
        position = self._positions.get(key)
        if position is None:
            position = self._positions[key] = Position()
        realized = position.apply(order.side.sign, execution.price, execution.quantity)
        self._realized[(execution.trade_id, order.order_id)] = realized
        if len(self._realized) > self._realized_limit:
            for stale in list(self._realized)[: len(self._realized) // 2]:
                del self._realized[stale]

    def realized(self, execution: Execution) -> int:
        """PnL realized by one USD-M execution, in notional units (0 when unknown)."""
        return self._realized.get((execution.trade_id, execution.order.order_id), 0)

    def set_futures_flags(self, order_id: int, flags: FuturesOrderFlags) -> None:
        """Remember an order's reduceOnly / time-in-force text; forget orders gone from history."""
        self.futures_flags[order_id] = flags
        if len(self.futures_flags) > self._flags_limit:
            known = {order.order_id for orders in self._orders.values() for order in orders}
            for stale in [key for key in self.futures_flags if key not in known]:
                del self.futures_flags[stale]
            self._flags_limit = max(self._flags_limit, 2 * len(self.futures_flags))

    def orders(self, account: str, symbol: str) -> list[SimOrder]:
        return list(self._orders.get((account, symbol), ()))

    def executions(self, account: str, symbol: str) -> list[Execution]:
        return list(self._executions.get((account, symbol), ()))

    def find_order(self, account: str, order_id: int | None, client_order_id: str | None) -> SimOrder | None:
        order = self.engine.get_order(account, order_id=order_id, client_order_id=client_order_id)
        if order is not None:
            return order
        for (owner, _symbol), orders in self._orders.items():
            if owner != account:
                continue
            for candidate in reversed(orders):
                if order_id is not None and candidate.order_id != order_id:
                    continue
                if client_order_id is not None and candidate.client_order_id != client_order_id:
                    continue
                return candidate
        return None

    # listen keys --------------------------------------------------------------------------
    def create_listen_key(self, account: str) -> ListenKey:
        """The account's active key (extended), or a new one — Binance returns the same key."""
        now = self.clock.monotonic_ns()
        for listen_key in self.listen_keys.values():
            if listen_key.account == account and listen_key.expires_ns > now:
                listen_key.expires_ns = now + int(self.listen_key_validity_s * NANOS)
                return listen_key
        key = secrets.token_hex(32)
        listen_key = ListenKey(key, account, now + int(self.listen_key_validity_s * NANOS))
        self.listen_keys[key] = listen_key
        return listen_key

    def keepalive(self, key: str, account: str) -> ListenKey:
        listen_key = self.active_listen_key(key)
        if listen_key is None or listen_key.account != account:
            raise BinanceApiError(-1125, "This listenKey does not exist.")
        listen_key.expires_ns = self.clock.monotonic_ns() + int(self.listen_key_validity_s * NANOS)
        return listen_key

    def close_listen_key(self, key: str, account: str) -> ListenKey:
        listen_key = self.listen_keys.get(key)
        if listen_key is None or listen_key.account != account:
            raise BinanceApiError(-1125, "This listenKey does not exist.")
        del self.listen_keys[key]
        return listen_key

    def active_listen_key(self, key: str) -> ListenKey | None:
        listen_key = self.listen_keys.get(key)
        if listen_key is None or listen_key.expires_ns <= self.clock.monotonic_ns():
            return None
        return listen_key

    def expired_listen_keys(self) -> list[ListenKey]:
        """Remove and return keys past their validity (the streams send listenKeyExpired)."""
        now = self.clock.monotonic_ns()
        expired = [key for key in self.listen_keys.values() if key.expires_ns <= now]
        for listen_key in expired:
            del self.listen_keys[listen_key.key]
        return expired


__all__ = ["FuturesOrderFlags", "ListenKey", "MarketState"]
