"""Spot conditional orders of the Binance-compatible simulator: STOP_LOSS, STOP_LOSS_LIMIT,
TAKE_PROFIT, TAKE_PROFIT_LIMIT on ``POST /api/v3/order`` (and WS ``order.place``).

As on the venue the order is acknowledged at once with its final ``orderId`` (reserved in the
engine) and status NEW, its funds locked, ``workingTime`` -1 and ``isWorking`` false; it waits
outside the book until the last trade price reaches ``stopPrice`` — STOP_LOSS(_LIMIT): a BUY at
price >= stop, a SELL at price <= stop; TAKE_PROFIT(_LIMIT) the other way round — then enters the
book under the same id as a MARKET (STOP_LOSS, TAKE_PROFIT) or LIMIT (the _LIMIT types) order,
and reads as its conditional type with its ``stopPrice`` for the rest of its life. A stop that
would trigger at once is refused (``-2010 Stop price would trigger immediately.``); at most
``MAX_NUM_ALGO_ORDERS`` (5) wait per symbol.

Not modelled: ``trailingDelta``, the mark of ``icebergQty``, an execution report at the trigger
other than the NEW of the order entering the book (``w`` true, ``W`` the trigger time).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from hftkit.core.types import OrderStatus, OrderType, Side, TimeInForce
from hftkit.sim.binance.params import BinanceApiError
from hftkit.sim.binance.state import MarketState
from hftkit.sim.engine.accounts import Accounts
from hftkit.sim.engine.deferred import DueChecks
from hftkit.sim.engine.errors import CloseReason
from hftkit.sim.engine.matching import SimOrder, TradePrint
from hftkit.sim.engine.venue import OrderEvent, OrderEventKind, SimEvent

SPOT_STOP_TYPES = {
    "STOP_LOSS": OrderType.MARKET,
    "STOP_LOSS_LIMIT": OrderType.LIMIT,
    "TAKE_PROFIT": OrderType.MARKET,
    "TAKE_PROFIT_LIMIT": OrderType.LIMIT,
}
MAX_WAITING = 5  # MAX_NUM_ALGO_ORDERS
WOULD_TRIGGER = (-2010, "Stop price would trigger immediately.")


@dataclass
class _Waiting:
    order: SimOrder  # not in the engine: carries id, side, sizes and the locked funds
    type_text: str
    stop_price: int


class SpotStops:
    """The spot conditional orders waiting for their stop price, per market; triggers them."""

    def __init__(self, state: MarketState, user_events: Any) -> None:
        self.state = state
        self.user_events = user_events  # UserData.on_event: executionReports of waiting orders
        self.waiting: dict[int, _Waiting] = {}
        self.canceled: deque[SimOrder] = deque(maxlen=2000)  # for allOrders
        self._due = DueChecks(self._check)
        self.triggered = 0
        state.venue.add_listener(self.on_event)

    # queries ----------------------------------------------------------------------------------
    def find(self, account: str, order_id: int | None, client_order_id: str | None) -> SimOrder | None:
        for entry in self.waiting.values():
            order = entry.order
            if order.account != account:
                continue
            if order_id is not None and order.order_id != order_id:
                continue
            if order_id is None and order.client_order_id != client_order_id:
                continue
            return order
        return None

    def of(self, account: str, symbol: str | None) -> list[SimOrder]:
        return [
            entry.order
            for entry in self.waiting.values()
            if entry.order.account == account and (symbol is None or entry.order.symbol == symbol)
        ]

    def last_price(self, symbol: str) -> int:
        state = self.state
        last = state.venue.ticker(symbol, state.clock.time_ns()).last_price
        if last:
            return last
        bid, ask = state.engine.best_bid(symbol), state.engine.best_ask(symbol)
        if bid is not None and ask is not None:
            return (bid[0] + ask[0]) // 2
        return 0

    @staticmethod
    def condition(type_text: str, side: Side, stop_price: int, price: int) -> bool:
        if price <= 0:
            return False
        if type_text.startswith("STOP_LOSS"):
            return price >= stop_price if side is Side.BUY else price <= stop_price
        return price <= stop_price if side is Side.BUY else price >= stop_price

    # lifecycle --------------------------------------------------------------------------------
    def add(
        self,
        account: str,
        symbol: str,
        side: Side,
        type_text: str,
        quantity: int,
        price: int,
        stop_price: int,
        time_in_force: TimeInForce,
        client_order_id: str | None,
    ) -> SimOrder:
        """Acknowledge a conditional order: checks, id, funds locked, the NEW report."""
        state = self.state
        if self.condition(type_text, side, stop_price, self.last_price(symbol)):
            raise BinanceApiError(*WOULD_TRIGGER)
        if len([entry for entry in self.waiting.values() if entry.order.symbol == symbol]) >= MAX_WAITING:
            raise BinanceApiError(-1013, "Filter failure: MAX_NUM_ALGO_ORDERS")
        if client_order_id is not None:
            working = state.engine.get_order(account, client_order_id=client_order_id)
            if self.find(account, None, client_order_id) is not None or (
                working is not None and working.is_open
            ):
                raise BinanceApiError(-2010, "Duplicate order sent.")
        instrument = state.instrument(symbol)
        accounts = state.accounts
        holder = accounts.get(account)
        if side is Side.BUY:
            asset = instrument.quote
            notional_units = state.formats(symbol).notional_step * 10 ** accounts.decimals(asset)
            locked = (price or stop_price) * quantity * int(notional_units)
        else:
            asset = instrument.base
            locked = quantity * int(instrument.lot_size * 10 ** accounts.decimals(asset))
        if not Accounts.reserve(holder, asset, locked):
            raise BinanceApiError(-2010, "Account has insufficient balance for requested action.")
        order_id = state.engine.reserve_order_id()
        now = state.clock.time_ns()
        book_type = SPOT_STOP_TYPES[type_text]
        order = SimOrder(
            order_id,
            client_order_id or f"sim-{order_id}",
            holder,
            symbol,
            side,
            book_type,
            time_in_force if book_type is OrderType.LIMIT else TimeInForce.GTC,
            price,
            quantity,
            now,
        )
        order.reserved = locked
        order.reserve_asset = asset
        self.waiting[order_id] = _Waiting(order, type_text, stop_price)
        state.remember_stop(order_id, type_text, stop_price)
        state.pending_stop_ids.add(order_id)
        self.user_events(
            OrderEvent(
                kind=OrderEventKind.ACCEPTED,
                order=order,
                status=OrderStatus.NEW,
                close_reason=None,
                time_ns=now,
            )
        )
        return order

    def cancel(self, order: SimOrder, cancel_client_id: str | None = None) -> SimOrder:
        entry = self.waiting.pop(order.order_id)
        state = self.state
        state.pending_stop_ids.discard(order.order_id)
        Accounts.release(order.holder, order.reserve_asset, order.reserved)
        order.reserved = 0
        order.status = OrderStatus.CANCELED
        order.close_reason = CloseReason.CANCELED
        order.updated_ns = state.clock.time_ns()
        self.canceled.append(entry.order)
        state.pending_cancel_id = cancel_client_id
        try:
            self.user_events(
                OrderEvent(
                    kind=OrderEventKind.CLOSED,
                    order=order,
                    status=OrderStatus.CANCELED,
                    close_reason=CloseReason.CANCELED,
                    time_ns=order.updated_ns,
                )
            )
        finally:
            state.pending_cancel_id = None
        return order

    def on_event(self, event: SimEvent) -> None:
        if isinstance(event, TradePrint) and any(
            entry.order.symbol == event.symbol for entry in self.waiting.values()
        ):
            self._due.add(event.symbol)  # acted on after the venue's batch

    def _check(self, symbols: set[str]) -> None:
        """Send every waiting order of ``symbols`` whose stop price the last trade reached into the book."""
        for entry in [entry for entry in self.waiting.values() if entry.order.symbol in symbols]:
            order = entry.order
            if order.order_id in self.waiting and self.condition(
                entry.type_text, order.side, entry.stop_price, self.last_price(order.symbol)
            ):
                self._trigger(entry)

    def _trigger(self, entry: _Waiting) -> None:
        state = self.state
        order = entry.order
        self.waiting.pop(order.order_id, None)
        state.pending_stop_ids.discard(order.order_id)
        Accounts.release(order.holder, order.reserve_asset, order.reserved)
        order.reserved = 0
        self.triggered += 1
        result = state.venue.place(
            order.account,
            order.symbol,
            order.side,
            order.order_type,
            order.quantity,
            order.price,
            order.time_in_force,
            order.client_order_id,
            order_id=order.order_id,
        )
        if not result.accepted:  # the funds went meanwhile: the order expires where it stood
            order.status = OrderStatus.EXPIRED
            order.close_reason = CloseReason.EXPIRED
            order.updated_ns = state.clock.time_ns()
            self.canceled.append(order)
            self.user_events(
                OrderEvent(
                    kind=OrderEventKind.CLOSED,
                    order=order,
                    status=OrderStatus.EXPIRED,
                    close_reason=CloseReason.EXPIRED,
                    time_ns=order.updated_ns,
                )
            )


def apply_stop_fields(
    state: MarketState, order: SimOrder, body: dict[str, Any], *, query: bool
) -> dict[str, Any]:
    """Make an order row read as the conditional order it is (type, stopPrice, working)."""
    stop = state.stop_orders.get(order.order_id)
    if stop is None:
        return body
    body["type"] = stop[0]
    if query or "stopPrice" in body:
        body["stopPrice"] = state.formats(order.symbol).price(stop[1])
    if order.order_id in state.pending_stop_ids:
        if "isWorking" in body:
            body["isWorking"] = False
        if "workingTime" in body:
            body["workingTime"] = -1
    return body


__all__ = ["SPOT_STOP_TYPES", "SpotStops", "apply_stop_fields"]
