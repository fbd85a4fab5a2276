"""A node's journal, wired: tracker listeners, the kill switch hook, venue balance events.

The listeners run on the hot path (the tracker calls them synchronously), so each builds one
record and appends it: no I/O, no await, well under a microsecond of work plus the record's
construction. Order commands are read from the tracker's own transitions (``submit`` is the new
order, PENDING_CANCEL the cancel, PENDING_AMEND the amend with its pending terms): the journal
learns of each command before its request is sent, without a hook in the gateway.

``start`` is the restart protocol: open the store, fold the journal (``hftkit.storage.recovery``),
commit this session's ``SessionStarted`` (awaited: the session's id prefix is durable before any
order can use it). If the store cannot be read, the node still trades: the session numbers from
a time-based fallback and the status says recovery did not run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import msgspec

from hftkit.core.types import BalanceUpdate, Fill, Order, OrderStatus
from hftkit.storage.journal import (
    BalanceChange,
    EventJournal,
    FillEvent,
    JournalError,
    JournalRecord,
    OrderAction,
    OrderCommand,
    OrderEvent,
    PositionChange,
    RiskEvent,
    SessionStarted,
    session_id_prefix,
)
from hftkit.storage.recovery import RecoveredState, recover
from hftkit.trading.positions import Position
from hftkit.trading.state import OrderStateTracker

__all__ = ["NodeJournal", "position_change"]

_log = logging.getLogger(__name__)

_PENDING_NEW = OrderStatus.PENDING_NEW
_PENDING_CANCEL = OrderStatus.PENDING_CANCEL
_PENDING_AMEND = OrderStatus.PENDING_AMEND


def position_change(position: Position, reason: str = "fill") -> PositionChange:
    average = position.average_price
    return PositionChange(
        venue=position.venue,
        symbol=position.symbol,
        quantity=position.quantity,
        average_price=None if average is None else str(average),
        realized=str(position.realized),
        fees=dict(position.fees),
        reason=reason,
    )


class NodeJournal:
    """The journal of one node and the listeners that feed it."""

    def __init__(self, journal: EventJournal, *, id_prefix_base: str = "hk") -> None:
        self.journal = journal
        self.id_prefix_base = id_prefix_base
        self.recovered: RecoveredState | None = None
        self.recovery_error: str | None = None
        self.session = 0
        self.id_prefix = ""
        self._tracker: OrderStateTracker | None = None
        self._append: Callable[[JournalRecord], int] = journal.append
        self._tripped = False  # the kill switch's state as last journaled

    async def start(self) -> RecoveredState:
        """Open, recover, commit this session's start; returns what the journal held."""
        journal = self.journal
        try:
            entries = await journal.open()
        except Exception as error:
            self.recovery_error = f"{type(error).__name__}: {error}"
            _log.error("journal %s unreadable (%s): trading without recovery", journal.store.name, error)
            entries = []
            # numbers far above anything a working store could hold for this node, never reused
            await journal.start_without_recovery(time.time_ns() // 1000)
        state = recover(entries)
        self.recovered = state
        self._tripped = state.kill_switch_tripped
        # An unreadable journal gives no session count: a time-based session number still
        # differs from every earlier one (sessions from a readable journal are small integers).
        self.session = state.next_session if self.recovery_error is None else int(time.time())
        self.id_prefix = session_id_prefix(journal.node_id, self.session, self.id_prefix_base)
        record = SessionStarted(session=self.session, id_prefix=self.id_prefix, pid=os.getpid())
        if self.recovery_error is None:
            try:
                await journal.commit(record)
            except JournalError as error:
                # Not durable (a full disk, a store gone since the read): a later start could hand
                # out this session number again, so this session numbers itself by time instead.
                self.recovery_error = f"session start not committed: {error}"
                _log.error("journal %s: %s", journal.store.name, self.recovery_error)
                self.session = int(time.time())
                self.id_prefix = session_id_prefix(journal.node_id, self.session, self.id_prefix_base)
                journal.append(
                    SessionStarted(session=self.session, id_prefix=self.id_prefix, pid=os.getpid())
                )
        else:
            journal.append(record)
        if state.entries:
            _log.info(
                "journal %s: %d entries, session %d, %d orders in flight, %d positions, %d gaps",
                journal.store.name,
                state.entries,
                self.session,
                len(state.in_flight),
                len(state.positions),
                state.gaps,
            )
        return state

    # listeners (hot path) --------------------------------------------------------------------------
    def attach(self, tracker: OrderStateTracker) -> None:
        self._tracker = tracker
        tracker.add_order_listener(self.on_order)
        tracker.add_fill_listener(self.on_fill)

    def on_order(self, order: Order, previous: OrderStatus) -> None:
        status = order.status
        if status is _PENDING_NEW and previous is _PENDING_NEW:
            self._append(_command(OrderAction.NEW, order, order.price, order.quantity))
            return
        if status is _PENDING_CANCEL:
            self._append(_command(OrderAction.CANCEL, order, order.price, order.quantity))
            return
        if status is _PENDING_AMEND and self._tracker is not None:
            tracked = self._tracker.tracked(order.client_order_id)
            if (
                tracked is not None
                and tracked.pending_price is not None
                and tracked.pending_quantity is not None
            ):
                self._append(
                    _command(OrderAction.AMEND, order, tracked.pending_price, tracked.pending_quantity)
                )
                return
        self._append(
            OrderEvent(
                client_order_id=order.client_order_id,
                venue=order.venue,
                symbol=order.symbol,
                side=order.side,
                order_type=order.order_type,
                time_in_force=order.time_in_force,
                price=order.price,
                quantity=order.quantity,
                filled=order.filled,
                status=status,
                previous=previous,
                venue_order_id=order.venue_order_id,
                reduce_only=order.reduce_only,
            )
        )

    def on_fill(self, fill: Fill, position: Position) -> None:
        """The fill only: recovery re-applies fills to the last position snapshot (a snapshot per
        fill would cost the hot path exact-fraction formatting, several microseconds)."""
        self._append(
            FillEvent(
                venue=fill.venue,
                symbol=fill.symbol,
                client_order_id=fill.client_order_id,
                venue_order_id=fill.venue_order_id,
                trade_id=fill.trade_id,
                side=fill.side,
                price=fill.price,
                quantity=fill.quantity,
                fee=fill.fee,
                fee_asset=fill.fee_asset,
                is_maker=fill.is_maker,
            )
        )

    def on_kill_switch(self, event: Any) -> None:
        """A ``KillSwitchShell`` cancel-all hook: the trip is journaled before the cancels go out."""
        source = getattr(event.source, "value", event.source)
        self._tripped = event.action.value == "trip"
        self._append(
            RiskEvent(action=event.action.value, source=source, detail=event.detail, first=event.first)
        )

    def venue_listener(self, venue: str) -> Callable[[Any], None]:
        """An adapter listener journaling balance changes (everything else reaches the tracker)."""
        append = self._append

        def listener(event: Any) -> None:
            if type(event) is BalanceUpdate:
                append(
                    BalanceChange(
                        venue=venue, asset=event.asset, free=str(event.free), locked=str(event.locked)
                    )
                )

        return listener

    def record_positions(self, tracker: OrderStateTracker, reason: str) -> int:
        """Journal every known position (after start-up reconciliation, at shutdown)."""
        count = 0
        for position in tracker.positions:
            self._append(position_change(position, reason))
            count += 1
        return count

    def record_kill_switch(self, tripped: bool, detail: str) -> None:
        """Journal the kill switch's state when it differs from the last journaled one (the gate
        has no reset hook: a reset is journaled here, at shutdown; a crash after a reset
        restarts tripped, the safe side)."""
        if tripped != self._tripped:
            self._append(RiskEvent(action="trip" if tripped else "reset", source=None, detail=detail))
            self._tripped = tripped

    async def close(self, timeout_s: float = 5.0) -> None:
        await self.journal.close(timeout_s)

    def status(self) -> dict[str, Any]:
        status = msgspec.to_builtins(self.journal.status())
        status["session"] = self.session
        status["id_prefix"] = self.id_prefix
        status["recovery_error"] = self.recovery_error
        return status


def _command(action: OrderAction, order: Order, price: int, quantity: int) -> OrderCommand:
    return OrderCommand(
        action=action,
        client_order_id=order.client_order_id,
        venue=order.venue,
        symbol=order.symbol,
        side=order.side,
        order_type=order.order_type,
        time_in_force=order.time_in_force,
        price=price,
        quantity=quantity,
        reduce_only=order.reduce_only,
    )
