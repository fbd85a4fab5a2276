"""Thalex order and trade objects of the simulator, sans-I/O.

The venue reports an operation as a sequence of events (accepted, executions, closed); Thalex
reports it as one ``OrderStatus`` per order per update, with ``change_reason`` naming the
cause (``insert``, ``amend``, ``cancel``, ``fill``) and ``fills`` holding only the new fills.
``OrderUpdates`` folds the events of one venue call into those objects: the inserted order's
acceptance, its executions and its closing become a single ``insert`` update with every fill,
while a resting order hit by it gets its own ``fill`` update. The object is created once and
handed to every channel that shows it, so a later event of the same call still lands in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hftkit.core.types import Instrument, OrderStatus, Side
from hftkit.sim.engine.errors import THALEX_DELETE_REASONS
from hftkit.sim.engine.matching import Execution, SimOrder
from hftkit.sim.engine.venue import SimVenue
from hftkit.sim.thalex import wire as wire

# The venue's OrderStatus schema has its own delete reason for self-trade prevention.


@dataclass
class OrderInfo:
    """What Thalex knows about an order beyond the engine's state."""

    session: Any  # the WebSocket session that inserted it; None once it ended, or from elsewhere
    client_order_id: int | None
    label: str | None
    persistent: bool
    product: str
    mass_quote: bool = False
    insert_reason: str = "client_request"
    delete_reason: str | None = None  # overrides the engine's close reason (session_end, ...)
    change_reason: str | None = None  # overrides the change reason of the order's next update
    fills: list[dict[str, Any]] = field(default_factory=list)  # every fill so far (order history)


def order_payload(
    order: SimOrder,
    info: OrderInfo | None,
    instrument: Instrument,
    change_reason: str,
    status: OrderStatus | None = None,
    filled: int | None = None,
) -> dict[str, Any]:
    """An OrderStatus object (``fills`` empty) for the order in the given state (default: live)."""
    status = order.status if status is None else status
    filled = order.filled if filled is None else filled
    is_open = status is OrderStatus.NEW or status is OrderStatus.PARTIALLY_FILLED
    payload: dict[str, Any] = {
        "order_id": wire.order_id_text(order.order_id),
        "instrument_name": order.symbol,
        "direction": wire.DIRECTIONS[order.side],
        "order_type": wire.order_type_name(order.order_type),
        "time_in_force": wire.TIME_IN_FORCE_NAMES[order.time_in_force],
    }
    if order.price:
        payload["price"] = wire.price_number(instrument, order.price)
    payload["amount"] = wire.amount_number(instrument, order.quantity)
    payload["filled_amount"] = wire.amount_number(instrument, filled)
    payload["remaining_amount"] = wire.amount_number(instrument, order.quantity - filled if is_open else 0)
    payload["status"] = wire.order_status_name(status, filled)
    payload["fills"] = []
    payload["change_reason"] = change_reason
    if not is_open:
        reason = info.delete_reason if info is not None else None
        if reason is None and order.close_reason is not None:
            reason = THALEX_DELETE_REASONS[order.close_reason]
        payload["delete_reason"] = reason or "client_cancel"
    payload["insert_reason"] = info.insert_reason if info is not None else "client_request"
    if info is not None and info.client_order_id is not None:
        payload["client_order_id"] = info.client_order_id
    if info is not None and info.label is not None:
        payload["label"] = info.label
    payload["persistent"] = info.persistent if info is not None else True
    payload["create_time"] = wire.seconds(order.created_ns)
    if not is_open:
        payload["close_time"] = wire.seconds(order.updated_ns)
    return payload


_HISTORY_FIELDS = (
    "order_id",
    "order_type",
    "instrument_name",
    "direction",
    "price",
    "amount",
    "filled_amount",
    "status",
    "delete_reason",
    "insert_reason",
    "client_order_id",
    "label",
    "create_time",
    "close_time",
)


def history_payload(final: dict[str, Any], fills: list[dict[str, Any]]) -> dict[str, Any]:
    """An OrderHistory object from a closed order's last update: no remaining amount, all fills."""
    payload = {key: final[key] for key in _HISTORY_FIELDS if key in final}
    payload["fills"] = list(fills)
    return payload


def immediately_cancelled_payload(
    order_id: int, info: OrderInfo, instrument: Instrument, side: Side, lots: int, price: int, now: float
) -> dict[str, Any]:
    """A post-only order that would have crossed: inserted and deleted at once (``immediate_cancel``)."""
    payload: dict[str, Any] = {
        "order_id": wire.order_id_text(order_id),
        "instrument_name": instrument.symbol,
        "direction": wire.DIRECTIONS[side],
        "order_type": "limit",
        "time_in_force": "good_till_cancelled",
        "price": wire.price_number(instrument, price),
        "amount": wire.amount_number(instrument, lots),
        "filled_amount": 0,
        "remaining_amount": 0,
        "status": "cancelled",
        "fills": [],
        "change_reason": "insert",
        "delete_reason": "immediate_cancel",
        "insert_reason": info.insert_reason,
    }
    if info.client_order_id is not None:
        payload["client_order_id"] = info.client_order_id
    if info.label is not None:
        payload["label"] = info.label
    payload["persistent"] = info.persistent
    payload["create_time"] = now
    payload["close_time"] = now
    return payload


def fill_payload(execution: Execution, instrument: Instrument, trade_id: str) -> dict[str, Any]:
    return {
        "trade_id": trade_id,
        "price": wire.price_number(instrument, execution.price),
        "amount": wire.amount_number(instrument, execution.quantity),
        "time": wire.seconds(execution.time_ns),
        "maker_taker": "maker" if execution.is_maker else "taker",
        "leg_index": 0,
    }


def trade_payload(
    execution: Execution,
    info: OrderInfo,
    instrument: Instrument,
    fill: dict[str, Any],
    *,
    position_after: int,
    fee: str,
    index: Any,
) -> dict[str, Any]:
    """A Trade object (``private/trade_history``, ``account.trade_history``)."""
    order = execution.order
    fees = order.holder.fees
    rate = fees.maker_ppm if execution.is_maker else fees.taker_ppm
    trade: dict[str, Any] = {
        "trade_id": fill["trade_id"],
        "order_id": wire.order_id_text(order.order_id),
        "instrument_name": order.symbol,
        "direction": wire.DIRECTIONS[order.side],
        "price": fill["price"],
        "amount": fill["amount"],
        "label": info.label or "",
        "time": fill["time"],
        "position_after": wire.amount_number(instrument, position_after),
        "trade_type": "normal",
        "maker_taker": fill["maker_taker"],
        "fee": wire.json_number(fee),
        "fee_rate": rate / 1_000_000,
        "leg_index": 0,
    }
    if info.client_order_id is not None:
        trade["client_order_id"] = info.client_order_id
    if index is not None:
        trade["index"] = index
    return trade


Publisher = Callable[[SimOrder, OrderInfo, dict[str, Any]], None]


class OrderUpdates:
    """Order infos by engine order id, and the OrderStatus updates of the current venue call.

    ``expect(info)`` before a venue call that creates an order attaches ``info`` to it;
    orders the venue creates otherwise get a persistent info of no session. ``end_batch``
    closes the call: later events start new updates and infos of closed orders are dropped.
    """

    def __init__(self, venue: SimVenue, publish: Publisher, on_batch_start: Callable[[], None]) -> None:
        self._venue = venue
        self._publish = publish
        self._on_batch_start = on_batch_start
        self.infos: dict[int, OrderInfo] = {}
        self._expected: OrderInfo | None = None
        self._batch: dict[int, dict[str, Any]] = {}
        self._closed: list[int] = []

    def expect(self, info: OrderInfo) -> None:
        self._expected = info

    def info_for(self, order: SimOrder) -> tuple[OrderInfo, bool]:
        """The order's info, and whether this event introduced it."""
        info = self.infos.get(order.order_id)
        if info is not None:
            return info, False
        info = self._expected
        self._expected = None
        if info is None:
            info = OrderInfo(None, None, None, True, wire.product_of(self._venue.instruments[order.symbol]))
        self.infos[order.order_id] = info
        return info, True

    def record(
        self,
        order: SimOrder,
        info: OrderInfo,
        change_reason: str,
        status: OrderStatus,
        filled: int,
        fill: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Merge one event into this call's update of the order (publishing it when new)."""
        instrument = self._venue.instruments[order.symbol]
        entry = self._batch.get(order.order_id)
        if entry is None:
            if info.change_reason is not None:
                change_reason = info.change_reason
                info.change_reason = None
            entry = order_payload(order, info, instrument, change_reason, status, filled)
            if not self._batch:
                self._on_batch_start()
            self._batch[order.order_id] = entry
            self._publish(order, info, entry)
        else:
            fills = entry["fills"]
            entry.update(order_payload(order, info, instrument, entry["change_reason"], status, filled))
            entry["fills"] = fills
        if fill is not None:
            entry["fills"].append(fill)
            info.fills.append(fill)
        return entry

    def closed(self, order: SimOrder) -> None:
        self._closed.append(order.order_id)

    def current(self, order: SimOrder, change_reason: str) -> dict[str, Any]:
        """A copy of the order's update in this call, else its live state."""
        entry = self._batch.get(order.order_id)
        if entry is not None:
            return dict(entry)
        instrument = self._venue.instruments[order.symbol]
        return order_payload(order, self.infos.get(order.order_id), instrument, change_reason)

    def live(self, order: SimOrder, change_reason: str) -> dict[str, Any]:
        instrument = self._venue.instruments[order.symbol]
        return order_payload(order, self.infos.get(order.order_id), instrument, change_reason)

    def end_batch(self) -> None:
        self._batch = {}
        for order_id in self._closed:
            self.infos.pop(order_id, None)
        self._closed.clear()
        self._expected = None


__all__ = [
    "OrderInfo",
    "OrderUpdates",
    "fill_payload",
    "history_payload",
    "immediately_cancelled_payload",
    "order_payload",
    "trade_payload",
]
