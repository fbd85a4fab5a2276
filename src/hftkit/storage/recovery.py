"""What a restarting node needs from its journal (sans-I/O: entries in, a plain value out).

``recover(entries)`` folds one node's journal into a :class:`RecoveredState`: the next session
number (so this session's client order ids cannot collide with any earlier one, whatever the
journal lost at the crash), the highest id sequence each earlier prefix used, the orders still in
flight, the last positions and balances, and whether the kill switch was left tripped.
``restore_into`` puts orders and positions into a fresh tracker *before* the engine's start-up
reconciliation, which then settles each of them against what the venue says: the journal says
what we believed; the venue has the last word.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction

from hftkit.core.types import Order, OrderStatus
from hftkit.storage.journal import (
    BalanceChange,
    FillEvent,
    JournalEntry,
    OrderAction,
    OrderCommand,
    OrderEvent,
    PositionChange,
    RiskEvent,
    SessionStarted,
    SignalEvent,
)
from hftkit.trading.positions import Position
from hftkit.trading.state import OrderStateTracker

__all__ = ["RecoveredState", "RestoreReport", "recover", "restore_into"]

_log = logging.getLogger(__name__)


@dataclass
class RecoveredState:
    node: str = ""
    last_sequence: int = 0
    entries: int = 0
    sessions: int = 0  # the highest session number found (0: a fresh journal)
    id_prefixes: list[str] = field(default_factory=list)
    highest_id_sequence: dict[str, int] = field(default_factory=dict)  # prefix -> highest number used
    orders: dict[str, OrderEvent] = field(default_factory=dict)  # last known state per client id
    positions: dict[tuple[str, str], PositionChange] = field(default_factory=dict)
    balances: dict[tuple[str, str], BalanceChange] = field(default_factory=dict)
    fills: int = 0
    kill_switch_tripped: bool = False
    kill_switch_detail: str = ""
    signals: dict[tuple[str, str, str], SignalEvent] = field(default_factory=dict)
    gaps: int = 0  # sequence numbers missing between entries (records lost before a commit)

    @property
    def next_session(self) -> int:
        return self.sessions + 1

    @property
    def in_flight(self) -> list[OrderEvent]:
        """Orders whose last known state is not terminal, in journal order."""
        return [order for order in self.orders.values() if not order.status.is_terminal]

    def used_client_order_ids(self) -> set[str]:
        return set(self.orders)


def recover(entries: Iterable[JournalEntry]) -> RecoveredState:
    """Fold entries (one node, ascending sequence) into what a restart needs.

    A position is its last journaled snapshot (after a reconciliation, at shutdown) with every
    fill journaled after it applied again, exactly as the tracker applied them: the hot path
    journals fills only, not a position per fill.
    """
    state = RecoveredState()
    fills_after: dict[tuple[str, str], list[FillEvent]] = {}
    previous = 0
    for entry in entries:
        state.node = entry.node
        state.entries += 1
        if previous and entry.sequence > previous + 1:
            state.gaps += entry.sequence - previous - 1
        previous = entry.sequence
        state.last_sequence = max(state.last_sequence, entry.sequence)
        record = entry.record
        # every record type is a final Struct: isinstance is the type()-is dispatch, typed
        if isinstance(record, OrderEvent):
            state.orders[record.client_order_id] = record
            _note_id(state, record.client_order_id)
        elif isinstance(record, OrderCommand):
            _apply_command(state, record)
        elif isinstance(record, FillEvent):
            state.fills += 1
            fills_after.setdefault((record.venue, record.symbol), []).append(record)
        elif isinstance(record, PositionChange):
            key = (record.venue, record.symbol)
            state.positions[key] = record
            fills_after.pop(key, None)
        elif isinstance(record, BalanceChange):
            state.balances[(record.venue, record.asset)] = record
        elif isinstance(record, RiskEvent):
            state.kill_switch_tripped = record.action == "trip"
            state.kill_switch_detail = record.detail
        elif isinstance(record, SessionStarted):
            state.sessions = max(state.sessions, record.session)
            if record.id_prefix not in state.id_prefixes:
                state.id_prefixes.append(record.id_prefix)
        elif isinstance(record, SignalEvent):
            signal_key = (record.symbol, record.signal_type, record.source)
            if record.deleted:
                state.signals.pop(signal_key, None)
            else:
                state.signals[signal_key] = record
    for key, fills in fills_after.items():
        state.positions[key] = _replay(state.positions.get(key), key, fills)
    return state


def _replay(base: PositionChange | None, key: tuple[str, str], fills: list[FillEvent]) -> PositionChange:
    """A snapshot (or flat) with later fills applied by the tracker's own position arithmetic."""
    position = Position(*key)
    if base is not None:
        position.overwrite(base.quantity, Fraction(base.average_price) if base.average_price else None)
    for fill in fills:
        position.apply(fill.side, fill.price, fill.quantity, fill.fee, fill.fee_asset)
    average = position.average_price
    return PositionChange(
        venue=key[0],
        symbol=key[1],
        quantity=position.quantity,
        average_price=None if average is None else str(average),
        realized=str(position.realized + (Fraction(base.realized) if base is not None else 0)),
        fees=_merged_fees(base.fees if base is not None else {}, position.fees),
        reason="replayed",
    )


def _merged_fees(first: dict[str, float], second: dict[str, float]) -> dict[str, float]:
    merged = dict(first)
    for asset, fee in second.items():
        merged[asset] = merged.get(asset, 0.0) + fee
    return merged


def _apply_command(state: RecoveredState, command: OrderCommand) -> None:
    _note_id(state, command.client_order_id)
    if command.action is not OrderAction.NEW or command.client_order_id in state.orders:
        return  # cancels and amends change state through the order events that follow them
    state.orders[command.client_order_id] = OrderEvent(
        client_order_id=command.client_order_id,
        venue=command.venue,
        symbol=command.symbol,
        side=command.side,
        order_type=command.order_type,
        time_in_force=command.time_in_force,
        price=command.price,
        quantity=command.quantity,
        filled=0,
        status=OrderStatus.PENDING_NEW,
        reduce_only=command.reduce_only,
    )


def _note_id(state: RecoveredState, client_order_id: str) -> None:
    """Track the highest number used after each known prefix (ids are ``<prefix><number>``)."""
    for prefix in state.id_prefixes:
        if client_order_id.startswith(prefix):
            tail = client_order_id[len(prefix) :]
            if tail.isdigit():
                number = int(tail)
                if number > state.highest_id_sequence.get(prefix, 0):
                    state.highest_id_sequence[prefix] = number
            return


@dataclass
class RestoreReport:
    orders_restored: int = 0
    orders_left_to_reconciliation: list[str] = field(default_factory=list)  # partly filled: adopted
    positions_restored: int = 0


def restore_into(state: RecoveredState, tracker: OrderStateTracker) -> RestoreReport:
    """Seed a fresh tracker (before listeners are attached and before reconciliation).

    In-flight orders with nothing filled are tracked again under their client ids (acknowledged
    ones as acknowledged), so start-up reconciliation either matches them with the venue's open
    orders or closes them as missing. Partly filled ones are left for reconciliation to adopt
    from the venue: their fills are already in the restored position, and tracking them here
    with nothing filled would make reconciliation count those fills twice. Positions get their
    journaled quantity and average price; realized PnL and fees are not carried over (the new
    session reports its own).
    """
    report = RestoreReport()
    for event in state.in_flight:
        if event.filled:
            report.orders_left_to_reconciliation.append(event.client_order_id)
            continue
        order = Order(
            client_order_id=event.client_order_id,
            venue=event.venue,
            symbol=event.symbol,
            side=event.side,
            order_type=event.order_type,
            time_in_force=event.time_in_force,
            price=event.price,
            quantity=event.quantity,
            reduce_only=event.reduce_only,
            venue_order_id=event.venue_order_id,
        )
        tracker.submit(order)
        if event.venue_order_id is not None or event.status not in (
            OrderStatus.PENDING_NEW,
            OrderStatus.UNKNOWN,
        ):
            tracker.acknowledge(event.client_order_id, event.venue_order_id)
        report.orders_restored += 1
    for (venue, symbol), change in state.positions.items():
        average = Fraction(change.average_price) if change.average_price else None
        tracker.positions.get(venue, symbol).overwrite(change.quantity, average)
        report.positions_restored += 1
    if report.orders_left_to_reconciliation:
        _log.warning(
            "journal: %d partly filled orders left for the venue's reconciliation: %s",
            len(report.orders_left_to_reconciliation),
            report.orders_left_to_reconciliation[:10],
        )
    return report
