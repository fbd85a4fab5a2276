"""The order state tracker (OMS): order lifecycles, fills, positions and venue reconciliation.

Sans-I/O: every input is a method call with values, every output is state, a return value, a
listener callback or a typed ReconciliationReport. The lifecycle is a transition table held as
data (``TRANSITIONS``); a transition outside it is counted per (from, to) pair, logged once per
pair and never applied.

Venue races this tracker is built for:

* an execution report (or even a fill) may arrive before the REST acknowledgement;
* a fill may arrive while a cancel is pending, then the cancel is rejected (or the order fills);
* the same report or fill may be delivered twice (WS + REST, replays): both are idempotent;
* cumulative filled quantity never decreases, whatever order reports arrive in;
* a request may time out: the order becomes UNKNOWN and stays in flight until a venue event,
  a query result or a reconciliation settles it; UNKNOWN orders with no venue trace older than a
  threshold are reported as lost.

"Settled" statuses are those the venue itself holds (PENDING_NEW before any ack, NEW,
PARTIALLY_FILLED); while a cancel, amend or timed-out request is in flight the order's settled
status is remembered so a reject can restore it exactly.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType

import msgspec

from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.errors import HftkitError
from hftkit.core.types import FeeCharge, Fill, Order, OrderStatus, OrderUpdate
from hftkit.trading.positions import Position, PositionBook
from hftkit.trading.quoting import OpenOrder

_log = logging.getLogger(__name__)

PENDING_NEW = OrderStatus.PENDING_NEW
NEW = OrderStatus.NEW
PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
FILLED = OrderStatus.FILLED
PENDING_CANCEL = OrderStatus.PENDING_CANCEL
PENDING_AMEND = OrderStatus.PENDING_AMEND
CANCELED = OrderStatus.CANCELED
REJECTED = OrderStatus.REJECTED
EXPIRED = OrderStatus.EXPIRED
UNKNOWN = OrderStatus.UNKNOWN

TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = MappingProxyType(
    {
        # before the venue confirmed: an exec report may beat the ack; a cancel may be sent by client id
        PENDING_NEW: frozenset(
            {NEW, PARTIALLY_FILLED, FILLED, REJECTED, CANCELED, EXPIRED, PENDING_CANCEL, UNKNOWN}
        ),
        NEW: frozenset({PARTIALLY_FILLED, FILLED, PENDING_CANCEL, PENDING_AMEND, CANCELED, EXPIRED}),
        PARTIALLY_FILLED: frozenset({FILLED, PENDING_CANCEL, PENDING_AMEND, CANCELED, EXPIRED}),
        # a cancel in flight: fills can still land, a reject restores the settled status
        PENDING_CANCEL: frozenset(
            {PENDING_NEW, NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED, UNKNOWN, REJECTED}
        ),
        # an amend in flight: ack/reject restore a settled status; an amend to <= filled deletes
        PENDING_AMEND: frozenset({NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED, PENDING_CANCEL, UNKNOWN}),
        # outcome unknown: any venue trace settles it
        UNKNOWN: frozenset(
            {PENDING_NEW, NEW, PARTIALLY_FILLED, FILLED, CANCELED, REJECTED, EXPIRED, PENDING_CANCEL}
        ),
        FILLED: frozenset(),
        CANCELED: frozenset(),
        REJECTED: frozenset(),
        EXPIRED: frozenset(),
    }
)
"""Legal status changes. Terminal statuses are absorbing for events (only reconciliation, the
venue's own authoritative view, may reopen an order, and it reports doing so)."""

IN_FLIGHT_STATUSES = frozenset({PENDING_NEW, PENDING_CANCEL, PENDING_AMEND, UNKNOWN})
_SETTLED_LIVE = frozenset({PENDING_NEW, NEW, PARTIALLY_FILLED})

# The hot path looks statuses up by their value string: an Enum's __hash__ is Python code,
# a str's hash is cached, so these compiled forms of the tables above are several times faster.
_LEGAL: dict[str, frozenset[str]] = {
    status._value_: frozenset(target._value_ for target in targets) for status, targets in TRANSITIONS.items()
}
_TERMINAL_CODES = frozenset(status._value_ for status in OrderStatus if status.is_terminal)
_SETTLED_CODES = frozenset(status._value_ for status in _SETTLED_LIVE)


class RequestKind(enum.Enum):
    NEW = "new"
    CANCEL = "cancel"
    AMEND = "amend"


class DuplicateClientOrderIdError(HftkitError, ValueError):
    """An order was submitted with a client order id the tracker already holds."""


@dataclass(frozen=True, slots=True)
class VenuePosition:
    symbol: str
    quantity: int  # signed lots
    average_price: Fraction | int | None = None  # ticks


@dataclass(frozen=True, slots=True)
class VenueSnapshot:
    """Everything the venue says is true right now, for one venue.

    ``symbols`` limits the scope (None = every symbol of the venue); ``taken_ns`` is the
    tracker-clock time the snapshot was requested: orders submitted after it cannot be in it and
    are left alone. ``balances``/``positions`` None means "not part of this snapshot".
    """

    venue: str
    orders: Sequence[OrderUpdate] = ()
    balances: Mapping[str, Decimal] | None = None
    positions: Sequence[VenuePosition] | None = None
    symbols: frozenset[str] | None = None
    taken_ns: int | None = None


class DifferenceKind(enum.Enum):
    ADOPTED = "adopted"  # open at the venue, unknown locally
    CLOSED_MISSING = "closed_missing"  # open locally, absent at the venue: closed as canceled
    LOST = "lost"  # never confirmed and absent at the venue: closed as rejected
    SETTLED_UNKNOWN = "settled_unknown"  # an UNKNOWN order found at the venue
    ACKNOWLEDGED = "acknowledged"  # a pending-new order found open (its ack was missed)
    REOPENED = "reopened"  # closed locally, open at the venue
    ORDER_CORRECTED = "order_corrected"  # price/quantity/status differed
    FILL_ADJUSTED = "fill_adjusted"  # venue filled more than our fills: synthetic fill applied
    FILL_AHEAD = "fill_ahead"  # our fills exceed the venue's figure (snapshot older than a fill)
    POSITION_OVERWRITTEN = "position_overwritten"
    BALANCE_OVERWRITTEN = "balance_overwritten"


@dataclass(frozen=True, slots=True)
class Difference:
    kind: DifferenceKind
    symbol: str = ""
    client_order_id: str | None = None
    venue_order_id: str | None = None
    local: object = None
    venue: object = None
    needs_query: bool = False  # the shell should query the order's history to learn its true end
    detail: str = ""


@dataclass(slots=True)
class ReconciliationReport:
    venue: str
    orders_checked: int = 0
    differences: list[Difference] = field(default_factory=list)
    synthetic_fills: list[Fill] = field(default_factory=list)

    @property
    def is_clean(self) -> bool:
        return not self.differences

    def count(self, kind: DifferenceKind) -> int:
        return sum(1 for difference in self.differences if difference.kind is kind)

    def of_kind(self, kind: DifferenceKind) -> list[Difference]:
        return [difference for difference in self.differences if difference.kind is kind]


class _TradeMemory:
    """Trade ids seen on one venue, bounded by two generations of sets: when the current one is
    full it becomes the previous one and the oldest generation is dropped whole. No per-fill
    eviction bookkeeping; always remembers at least the last ``capacity / 2`` trade ids."""

    __slots__ = ("current", "generation_size", "previous")

    def __init__(self, capacity: int) -> None:
        self.generation_size = max(1, capacity // 2)
        self.current: set[str] = set()
        self.previous: set[str] = set()

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)


class _InstrumentOrders:
    """The live orders of one instrument and its change counter (kept for the tracker's life,
    so a version number is never reused)."""

    __slots__ = ("orders", "position", "symbol", "trades", "venue", "version")

    def __init__(self, venue: str, symbol: str, position: Position, trade_memory: int) -> None:
        self.venue = venue
        self.symbol = symbol
        self.orders: dict[str, TrackedOrder] = {}
        self.position = position  # the PositionBook's own object: fills skip the book lookup
        self.trades = _TradeMemory(trade_memory)
        self.version = 0


class TrackedOrder(msgspec.Struct, kw_only=True):
    """An order plus what the tracker needs to move it safely through venue races.

    A Struct rather than a slotted class: its C constructor fills the defaults of the rarely used
    fields in one call, which matters at one record per order.
    """

    order: Order
    submitted_ns: int
    instrument: _InstrumentOrders | None = None
    settled_status: OrderStatus = OrderStatus.PENDING_NEW  # last status the venue itself holds
    fill_lots: int = 0  # sum of fills applied to this order (reconciliation credits included)
    venue_filled: int = 0  # highest cumulative filled the venue reported
    venue_seen: bool = False  # any venue trace at all (ack, report, fill)
    pending_price: int | None = None  # the amend in flight, if any
    pending_quantity: int | None = None
    unknown_since_ns: int = 0
    suspected_lost: bool = False
    synthetic_lots: int = 0  # lots credited by reconciliation, not yet confirmed by real fills
    synthetic_price: int = 0
    reason: str = ""

    def __repr__(self) -> str:
        return f"TrackedOrder({self.order!r}, settled={self.settled_status.value})"


def _amend_target(record: TrackedOrder) -> OpenOrder:
    order = record.order
    return OpenOrder(
        client_order_id=order.client_order_id,
        side=order.side,
        price=record.pending_price if record.pending_price is not None else order.price,
        quantity=record.pending_quantity if record.pending_quantity is not None else order.quantity,
        filled=order.filled,
        status=order.status,
    )


OrderListener = Callable[[Order, OrderStatus], None]
FillListener = Callable[[Fill, Position], None]


class OrderStateTracker:
    """Orders by client id and by (venue, venue order id); fills, positions, balances.

    Live orders sit in plain dicts; terminal ones move to a bounded LRU (``terminal_capacity``)
    and the trade-id memory used to drop duplicate fills is bounded too, so memory stays flat
    over any run length.
    """

    def __init__(
        self,
        clock: Clock = REAL_CLOCK,
        terminal_capacity: int = 10_000,
        trade_memory: int = 200_000,
        positions: PositionBook | None = None,
    ) -> None:
        if terminal_capacity < 1 or trade_memory < 1:
            raise ValueError("terminal_capacity and trade_memory must be >= 1")
        self._clock = clock
        self._now = clock.monotonic_ns
        self.terminal_capacity = terminal_capacity
        self.trade_memory = trade_memory
        self.positions = positions if positions is not None else PositionBook()
        self.balances: dict[tuple[str, str], Decimal] = {}
        self._active: dict[str, TrackedOrder] = {}
        self._instruments: dict[tuple[str, str], _InstrumentOrders] = {}
        self._last_instrument: _InstrumentOrders | None = None
        self._terminal: OrderedDict[str, TrackedOrder] = OrderedDict()
        self._by_venue_id: dict[tuple[str, str], str] = {}
        self.version = 0
        self.counters: Counter[str] = Counter()
        self.illegal_transitions: Counter[tuple[OrderStatus, OrderStatus]] = Counter()
        self._logged_kinds: set[object] = set()
        self._order_listeners: list[OrderListener] = []
        self._fill_listeners: list[FillListener] = []
        self._synthetic_sequence = 0

    # listeners ------------------------------------------------------------------------------
    def add_order_listener(self, listener: OrderListener) -> None:
        """Call ``listener(order, previous_status)`` after every change to an order."""
        self._order_listeners.append(listener)

    def add_fill_listener(self, listener: FillListener) -> None:
        """Call ``listener(fill, position)`` after every fill applied (synthetic ones included)."""
        self._fill_listeners.append(listener)

    # queries --------------------------------------------------------------------------------
    def get(self, client_order_id: str) -> Order | None:
        record = self._active.get(client_order_id) or self._terminal.get(client_order_id)
        return None if record is None else record.order

    def tracked(self, client_order_id: str) -> TrackedOrder | None:
        return self._active.get(client_order_id) or self._terminal.get(client_order_id)

    def by_venue_order_id(self, venue: str, venue_order_id: str) -> Order | None:
        client_order_id = self._by_venue_id.get((venue, venue_order_id))
        return None if client_order_id is None else self.get(client_order_id)

    def open_orders(self, venue: str | None = None, symbol: str | None = None) -> list[Order]:
        """Non-terminal orders (in-flight ones included), optionally for one instrument."""
        if venue is not None and symbol is not None:
            instrument = self._instruments.get((venue, symbol))
            return [] if instrument is None else [record.order for record in instrument.orders.values()]
        return [
            record.order
            for record in self._active.values()
            if (venue is None or record.order.venue == venue)
            and (symbol is None or record.order.symbol == symbol)
        ]

    def quoting_view(self, venue: str, symbol: str) -> list[Order | OpenOrder]:
        """Open orders of one instrument as quoting should see them: the orders themselves, except
        that an order with an amend in flight shows its amend target (so the level it is moving to
        is never placed a second time)."""
        instrument = self._instruments.get((venue, symbol))
        if instrument is None:
            return []
        return [
            record.order if record.pending_quantity is None else _amend_target(record)
            for record in instrument.orders.values()
        ]

    def in_flight(self) -> list[Order]:
        return [record.order for record in self._active.values() if record.order.status in IN_FLIGHT_STATUSES]

    def state_version(self, venue: str, symbol: str) -> int:
        """Changes whenever any order of this instrument changes (quoting's early-exit key)."""
        instrument = self._instruments.get((venue, symbol))
        return 0 if instrument is None else instrument.version

    def position(self, venue: str, symbol: str) -> Position:
        return self.positions.get(venue, symbol)

    @property
    def active_count(self) -> int:
        return len(self._active)

    @property
    def terminal_count(self) -> int:
        return len(self._terminal)

    def memory_footprint(self) -> dict[str, int]:
        """Sizes of every growing container (flat over a long run by construction)."""
        return {
            "active": len(self._active),
            "terminal": len(self._terminal),
            "venue_index": len(self._by_venue_id),
            "trades": sum(len(instrument.trades) for instrument in self._instruments.values()),
            "instruments": len(self._instruments),
        }

    # events: submission and acknowledgement -------------------------------------------------
    def submit(self, order: Order) -> Order:
        """Track a new order about to be sent; it starts PENDING_NEW and in flight."""
        client_order_id = order.client_order_id
        if client_order_id in self._active or client_order_id in self._terminal:
            self.counters["duplicate_client_order_id"] += 1
            raise DuplicateClientOrderIdError(f"client order id {client_order_id!r} is already tracked")
        if order.quantity <= 0 or order.price < 0 or order.filled != 0:
            self.counters["invalid_order"] += 1
            raise ValueError(
                f"order {client_order_id!r} needs quantity > 0, price >= 0 and nothing filled yet"
            )
        now = self._now()
        order.status = PENDING_NEW
        order.created_ns = order.updated_ns = now
        record = TrackedOrder(order=order, submitted_ns=now)
        self._active[client_order_id] = record
        instrument = self._last_instrument
        if instrument is None or instrument.venue != order.venue or instrument.symbol != order.symbol:
            instrument = self._instrument(order.venue, order.symbol)
        record.instrument = instrument
        instrument.orders[client_order_id] = record
        if order.venue_order_id is not None:
            self._by_venue_id[(order.venue, order.venue_order_id)] = client_order_id
        instrument.version += 1
        self.version += 1
        if self._order_listeners:
            self._notify(self._order_listeners, order, PENDING_NEW)
        return order

    def acknowledge(self, client_order_id: str, venue_order_id: str | None = None) -> bool:
        """The venue accepted the order (REST/WS response). Late acks only record the venue id."""
        record = self._active.get(client_order_id)
        if record is None:
            return self._late_event(client_order_id, "acknowledge", venue_order_id)
        order = record.order
        record.venue_seen = True
        if venue_order_id is not None and order.venue_order_id != venue_order_id:
            self._index_venue_id(record, venue_order_id)
        status = order.status
        if status is PENDING_NEW:
            return self._set_status(record, NEW)
        if status is UNKNOWN and record.settled_status is PENDING_NEW:
            return self._set_status(record, PARTIALLY_FILLED if order.filled else NEW)
        if record.settled_status is PENDING_NEW:
            record.settled_status = PARTIALLY_FILLED if order.filled else NEW  # ack behind a cancel
        self.counters["acknowledgements_after_status"] += 1  # an exec report beat the ack
        return False

    def reject(self, client_order_id: str, reason: str = "") -> bool:
        """The venue refused the new order (definitive: not an ambiguous failure)."""
        record = self._active.get(client_order_id)
        if record is None:
            return self._late_event(client_order_id, "reject")
        record.reason = reason
        record.venue_seen = True
        return self._set_status(record, REJECTED)

    # events: fills and venue reports --------------------------------------------------------
    def apply_fill(self, fill: Fill) -> bool:
        """Apply one execution: deduplicated by (venue, symbol, trade id) — Binance numbers trades
        per symbol, so the venue alone is not enough — and always applied to the position."""
        record = self._active.get(fill.client_order_id)
        if record is None:
            record = self._find_for_fill(fill)
        if record is not None:
            instrument = record.instrument
            if instrument.venue != fill.venue or instrument.symbol != fill.symbol:  # type: ignore[union-attr]
                self.counters["fills_naming_another_instrument"] += 1  # trust the fill, not the order
                instrument = self._instrument(fill.venue, fill.symbol)
        else:
            instrument = self._instrument(fill.venue, fill.symbol)
        memory = instrument.trades  # type: ignore[union-attr]
        trade_id = fill.trade_id
        if trade_id in memory.current or trade_id in memory.previous:
            self.counters["duplicate_fills"] += 1
            return False
        if fill.quantity <= 0 or fill.price < 0:
            self.counters["invalid_fills"] += 1
            self._log_once("invalid_fill", "dropped invalid fill %r", fill)
            return False
        current = memory.current
        current.add(trade_id)
        if len(current) >= memory.generation_size:
            memory.previous = current
            memory.current = set()
        if record is None:
            self.counters["fills_for_unknown_orders"] += 1
            position = instrument.position  # type: ignore[union-attr]
            position.apply(fill.side, fill.price, fill.quantity, fill.fee, fill.fee_asset)
        elif record.synthetic_lots:
            position = self._confirm_synthetic(record, fill)
        else:
            position = instrument.position  # type: ignore[union-attr]
            position.apply(fill.side, fill.price, fill.quantity, fill.fee, fill.fee_asset)
            self._fill_order(record, fill.quantity)
        if self._fill_listeners:
            self._notify(self._fill_listeners, fill, position)
        return True

    def _find_for_fill(self, fill: Fill) -> TrackedOrder | None:
        record = self._terminal.get(fill.client_order_id)
        if record is None and fill.venue_order_id is not None:
            client_order_id = self._by_venue_id.get((fill.venue, fill.venue_order_id))
            if client_order_id is not None:
                record = self._active.get(client_order_id) or self._terminal.get(client_order_id)
        return record

    def _fill_order(self, record: TrackedOrder, lots: int) -> None:
        order = record.order
        previous = order.status
        record.venue_seen = True
        record.fill_lots += lots
        if record.fill_lots > order.filled:
            order.filled = record.fill_lots
            if order.filled > order.quantity:
                self.counters["overfills"] += 1
                self._log_once(
                    "overfill",
                    "order %s filled %d > quantity %d",
                    order.client_order_id,
                    order.filled,
                    order.quantity,
                )
        elif previous._value_ in _TERMINAL_CODES:
            return  # a late fill the venue's cumulative figure already counted
        if order.filled >= order.quantity:
            if previous is not FILLED:
                self._set_status(record, FILLED)
            return
        if previous is PENDING_CANCEL or previous is PENDING_AMEND:
            record.settled_status = PARTIALLY_FILLED
        elif previous is NEW or previous is PENDING_NEW or previous is UNKNOWN:
            record.settled_status = PARTIALLY_FILLED
            self._set_status(record, PARTIALLY_FILLED)
            return
        order.updated_ns = self._now()
        record.instrument.version += 1  # type: ignore[union-attr]
        self.version += 1
        if self._order_listeners:
            self._notify(self._order_listeners, order, previous)

    def apply_report(self, report: OrderUpdate) -> bool:
        """Apply the venue's view of one order (execution report, order update, query result)."""
        record = self._find(report.venue, report.client_order_id, report.venue_order_id)
        if record is None:
            if report.status.is_open and self._adoptable(report):
                self._adopt(report)
                self.counters["adopted_from_reports"] += 1
                return True
            self.counters["reports_for_unknown_orders"] += 1
            self._log_once("unknown_report", "report for an unknown order: %r", report)
            return False
        order = record.order
        record.venue_seen = True
        if report.venue_order_id is not None and order.venue_order_id != report.venue_order_id:
            self._index_venue_id(record, report.venue_order_id)
        if report.filled < record.venue_filled:
            self.counters["stale_reports"] += 1
            return False
        if report.status is UNKNOWN or report.filled > report.quantity:
            self.counters["invalid_reports"] += 1
            self._log_once("invalid_report", "invalid order report: %r", report)
            return False
        changed, amend_settled = self._apply_venue_terms(record, report.price, report.quantity)
        record.venue_filled = report.filled
        previous = order.status
        if report.filled > order.filled:
            order.filled = report.filled
            changed = True
        status = report.status
        if status is NEW and order.filled:
            status = PARTIALLY_FILLED
        if status is NEW or status is PARTIALLY_FILLED:
            if previous is PENDING_CANCEL or (previous is PENDING_AMEND and not amend_settled):
                record.settled_status = status
            elif previous is not status:
                return self._set_status(record, status) or changed
        elif status is PENDING_NEW or status is PENDING_CANCEL:
            pass  # the venue's own transient states add nothing to ours
        elif previous is not status:
            if status is CANCELED and previous is PENDING_AMEND and record.pending_quantity is not None:
                self._clear_amend(record)
            return self._set_status(record, status) or changed
        else:
            if not changed:
                self.counters["duplicate_reports"] += 1
            return changed
        if changed:
            order.updated_ns = self._now()
            self._touch(record)
            self._notify(self._order_listeners, order, previous)
        else:
            self.counters["duplicate_reports"] += 1
        return changed

    def _apply_venue_terms(self, record: TrackedOrder, price: int, quantity: int) -> tuple[bool, bool]:
        """Take the venue's price/quantity; return (changed, settled a pending amend)."""
        order = record.order
        settled = False
        if record.pending_quantity is not None:
            if price == record.pending_price and quantity == record.pending_quantity:
                self._clear_amend(record)
                self.counters["amends_settled_by_report"] += 1
                settled = True
            elif order.status is UNKNOWN:
                self._clear_amend(record)  # a timed-out amend the venue does not show
        if order.price == price and order.quantity == quantity:
            return False, settled
        if not settled:
            self.counters["orders_corrected_by_report"] += 1
        order.price = price
        order.quantity = quantity
        return True, settled

    # events: cancel and amend ---------------------------------------------------------------
    def request_cancel(self, client_order_id: str) -> bool:
        """A cancel is about to be sent. Fills may still land until it is confirmed."""
        record = self._active.get(client_order_id)
        if record is None:
            return self._late_event(client_order_id, "request_cancel")
        status = record.order.status
        if status is PENDING_CANCEL:
            self.counters["duplicate_cancel_requests"] += 1
            return False
        if status._value_ in _SETTLED_CODES:
            record.settled_status = status
        return self._set_status(record, PENDING_CANCEL)

    def cancel_acknowledged(self, client_order_id: str) -> bool:
        record = self._active.get(client_order_id)
        if record is None:
            return self._late_event(client_order_id, "cancel_acknowledged")
        record.venue_seen = True
        if record.pending_quantity is not None:
            self._clear_amend(record)
        return self._set_status(record, CANCELED)

    def cancel_rejected(self, client_order_id: str, reason: str = "") -> bool:
        """The cancel failed: usually the order already filled or the ack is still on its way."""
        record = self._active.get(client_order_id)
        if record is None:
            self.counters["late_cancel_rejects"] += 1  # typical race: the fill closed it first
            return False
        record.reason = reason
        if record.order.status is not PENDING_CANCEL and record.order.status is not UNKNOWN:
            self.counters["unexpected_cancel_rejects"] += 1
            return False
        return self._set_status(record, self._settled(record))

    def request_amend(self, client_order_id: str, price: int, quantity: int) -> bool:
        """An amend to a new price and new TOTAL quantity (volume-safe, as Thalex defines it)."""
        record = self._active.get(client_order_id)
        if record is None:
            return self._late_event(client_order_id, "request_amend")
        if quantity <= 0 or price < 0:
            self.counters["invalid_amends"] += 1
            raise ValueError(f"amend needs quantity > 0 and price >= 0, got {quantity}@{price}")
        status = record.order.status
        if status is not NEW and status is not PARTIALLY_FILLED:
            self.counters["amends_refused"] += 1
            self._log_once(("amend_refused", status), "amend refused while %s", status.value)
            return False
        record.settled_status = status
        record.pending_price = price
        record.pending_quantity = quantity
        return self._set_status(record, PENDING_AMEND)

    def amend_acknowledged(
        self, client_order_id: str, price: int | None = None, quantity: int | None = None
    ) -> bool:
        """The amend took effect (with the venue's final terms when it reports them)."""
        record = self._active.get(client_order_id)
        if record is None:
            return self._late_event(client_order_id, "amend_acknowledged")
        order = record.order
        record.venue_seen = True
        new_price = price if price is not None else record.pending_price
        new_quantity = quantity if quantity is not None else record.pending_quantity
        self._clear_amend(record)
        if new_price is None or new_quantity is None:
            self.counters["unexpected_amend_acks"] += 1
            return False
        previous = order.status
        order.price = new_price
        if new_quantity <= order.filled:
            order.quantity = order.filled  # the venue deletes an order amended to <= filled
            return self._set_status(record, CANCELED)
        order.quantity = new_quantity
        if previous is PENDING_AMEND or previous is UNKNOWN:
            return self._set_status(record, self._settled(record))
        order.updated_ns = self._now()
        self._touch(record)
        self._notify(self._order_listeners, order, previous)
        return True

    def amend_rejected(self, client_order_id: str, reason: str = "") -> bool:
        record = self._active.get(client_order_id)
        if record is None:
            return self._late_event(client_order_id, "amend_rejected")
        record.reason = reason
        self._clear_amend(record)
        if record.order.status is not PENDING_AMEND and record.order.status is not UNKNOWN:
            self.counters["unexpected_amend_rejects"] += 1
            return False
        return self._set_status(record, self._settled(record))

    # events: ambiguity, lost orders, queries --------------------------------------------------
    def request_timed_out(self, client_order_id: str, kind: RequestKind = RequestKind.NEW) -> bool:
        """A request's outcome is unknown: the order stays in flight as UNKNOWN until settled."""
        record = self._active.get(client_order_id)
        if record is None:
            return self._late_event(client_order_id, "request_timed_out")
        status = record.order.status
        if status not in IN_FLIGHT_STATUSES or status is UNKNOWN:
            self.counters["late_timeouts"] += 1  # the answer came by another path already
            return False
        record.unknown_since_ns = self._now()
        self.counters[f"timeouts_{kind.value}"] += 1
        return self._set_status(record, UNKNOWN)

    def find_lost_orders(self, older_than_ns: int) -> list[Order]:
        """UNKNOWN or unconfirmed orders with no venue trace for ``older_than_ns``: query them."""
        now = self._now()
        lost = []
        for record in list(self._active.values()):
            status = record.order.status
            if record.venue_seen or (status is not UNKNOWN and status is not PENDING_NEW):
                continue
            since = record.unknown_since_ns if status is UNKNOWN else record.submitted_ns
            if now - since >= older_than_ns:
                if not record.suspected_lost:
                    record.suspected_lost = True
                    self.counters["suspected_lost"] += 1
                lost.append(record.order)
        return lost

    def apply_query_result(self, client_order_id: str, report: OrderUpdate | None) -> bool:
        """Settle an order from a venue query; ``None`` means the venue has no such order."""
        if report is not None:
            return self.apply_report(report)
        record = self._active.get(client_order_id)
        if record is None:
            return self._late_event(client_order_id, "apply_query_result")
        self.counters["settled_not_found"] += 1
        if record.venue_seen:
            return self._set_status(record, CANCELED)  # it existed and is gone
        record.reason = "lost: not found at venue"
        if record.order.status is PENDING_CANCEL:
            return self._set_status(record, CANCELED)
        return self._set_status(record, REJECTED)

    def apply_fee(self, charge: FeeCharge) -> None:
        """A fee reported after its fill (the adapter sends each trade's fee once)."""
        self.positions.get(charge.venue, charge.symbol).add_fee(charge.fee, charge.fee_asset)

    def update_balance(self, venue: str, asset: str, total: Decimal) -> None:
        self.balances[(venue, asset)] = total

    # reconciliation ---------------------------------------------------------------------------
    def reconcile(self, snapshot: VenueSnapshot) -> ReconciliationReport:
        """Make local state equal the venue's snapshot and report every difference repaired.

        The venue is the authority here, so unlike events a reconciliation may reopen an order;
        in-flight orders submitted after the snapshot was requested are left alone.
        """
        venue = snapshot.venue
        scope = snapshot.symbols
        report = ReconciliationReport(venue)
        seen: set[str] = set()
        for venue_order in snapshot.orders:
            if venue_order.venue != venue or (scope is not None and venue_order.symbol not in scope):
                self.counters["snapshot_rows_out_of_scope"] += 1
                continue
            report.orders_checked += 1
            record = self._find(venue, venue_order.client_order_id, venue_order.venue_order_id)
            if record is None:
                if not self._adoptable(venue_order):
                    self.counters["snapshot_rows_unusable"] += 1
                    continue
                record = self._adopt(venue_order)
                seen.add(record.order.client_order_id)
                report.differences.append(
                    Difference(
                        DifferenceKind.ADOPTED,
                        venue_order.symbol,
                        record.order.client_order_id,
                        venue_order.venue_order_id,
                        None,
                        venue_order.status,
                    )
                )
                continue
            seen.add(record.order.client_order_id)
            self._reconcile_order(record, venue_order, report)
        for record in list(self._active.values()):
            order = record.order
            if order.venue != venue or order.client_order_id in seen:
                continue
            if scope is not None and order.symbol not in scope:
                continue
            if snapshot.taken_ns is not None and record.submitted_ns > snapshot.taken_ns:
                continue  # sent after the snapshot was requested: it could not be in it
            self._close_missing(record, report)
        if snapshot.positions is not None:
            self._reconcile_positions(snapshot, report)
        if snapshot.balances is not None:
            self._reconcile_balances(venue, snapshot.balances, report)
        self.counters["reconciliations"] += 1
        self.counters["reconciliation_differences"] += len(report.differences)
        return report

    def _reconcile_order(
        self, record: TrackedOrder, venue_order: OrderUpdate, report: ReconciliationReport
    ) -> None:
        order = record.order
        local_status = order.status
        record.venue_seen = True
        if venue_order.venue_order_id is not None and order.venue_order_id != venue_order.venue_order_id:
            self._index_venue_id(record, venue_order.venue_order_id)
        if venue_order.filled > record.fill_lots:
            self._synthetic_fill(record, venue_order, report)
        elif venue_order.filled < record.fill_lots:
            report.differences.append(
                Difference(
                    DifferenceKind.FILL_AHEAD,
                    order.symbol,
                    order.client_order_id,
                    order.venue_order_id,
                    record.fill_lots,
                    venue_order.filled,
                )
            )
        record.venue_filled = max(record.venue_filled, venue_order.filled)
        terms_differ = venue_order.price != order.price or venue_order.quantity != order.quantity
        if terms_differ:
            report.differences.append(
                Difference(
                    DifferenceKind.ORDER_CORRECTED,
                    order.symbol,
                    order.client_order_id,
                    order.venue_order_id,
                    (order.price, order.quantity),
                    (venue_order.price, venue_order.quantity),
                )
            )
            order.price = venue_order.price
            order.quantity = venue_order.quantity
            self._clear_amend(record)
        venue_status = venue_order.status
        if venue_status is NEW and order.filled:
            venue_status = PARTIALLY_FILLED
        if venue_status is NEW or venue_status is PARTIALLY_FILLED:
            record.settled_status = venue_status
            if local_status is PENDING_CANCEL or (local_status is PENDING_AMEND and not terms_differ):
                return  # our request is still on its way; the snapshot does not contradict it
            if local_status is not venue_status:
                kind = {
                    UNKNOWN: DifferenceKind.SETTLED_UNKNOWN,
                    PENDING_NEW: DifferenceKind.ACKNOWLEDGED,
                }.get(local_status, DifferenceKind.REOPENED if local_status.is_terminal else None)
                if kind is None:
                    kind = DifferenceKind.ORDER_CORRECTED
                report.differences.append(
                    Difference(
                        kind,
                        order.symbol,
                        order.client_order_id,
                        order.venue_order_id,
                        local_status,
                        venue_status,
                    )
                )
                self._force_status(record, venue_status)
        elif venue_status.is_terminal and local_status is not venue_status:
            kind = (
                DifferenceKind.SETTLED_UNKNOWN if local_status is UNKNOWN else DifferenceKind.ORDER_CORRECTED
            )
            report.differences.append(
                Difference(
                    kind,
                    order.symbol,
                    order.client_order_id,
                    order.venue_order_id,
                    local_status,
                    venue_status,
                )
            )
            self._force_status(record, venue_status)

    def _synthetic_fill(
        self, record: TrackedOrder, venue_order: OrderUpdate, report: ReconciliationReport
    ) -> None:
        order = record.order
        missing = venue_order.filled - record.fill_lots
        price = venue_order.average_fill_price if venue_order.average_fill_price is not None else order.price
        self._synthetic_sequence += 1
        fill = Fill(
            venue=order.venue,
            symbol=order.symbol,
            client_order_id=order.client_order_id,
            venue_order_id=order.venue_order_id,
            trade_id=f"reconcile:{self._synthetic_sequence}",
            side=order.side,
            price=price,
            quantity=missing,
            receive_ns=self._now(),
        )
        position = self.positions.apply_fill(fill)
        record.fill_lots += missing
        record.synthetic_lots += missing
        record.synthetic_price = price
        if record.fill_lots > order.filled:
            order.filled = record.fill_lots
        report.synthetic_fills.append(fill)
        report.differences.append(
            Difference(
                DifferenceKind.FILL_ADJUSTED,
                order.symbol,
                order.client_order_id,
                order.venue_order_id,
                record.fill_lots - missing,
                venue_order.filled,
                detail=f"synthetic fill {missing} lots @ {price} ticks",
            )
        )
        self.counters["synthetic_fills"] += 1
        self._notify(self._fill_listeners, fill, position)

    def _confirm_synthetic(self, record: TrackedOrder, fill: Fill) -> Position:
        """A real fill arrived for lots a reconciliation already credited: the credit is confirmed
        (repriced to the real price, never counted twice) and only the excess is a new fill."""
        covered = fill.quantity if fill.quantity < record.synthetic_lots else record.synthetic_lots
        record.synthetic_lots -= covered
        position = self.positions.get(fill.venue, fill.symbol)
        position.reprice(fill.side, covered, record.synthetic_price, fill.price)
        extra = fill.quantity - covered
        if extra:
            position.apply(fill.side, fill.price, extra, fill.fee, fill.fee_asset)
            self._fill_order(record, extra)
        else:
            position.add_fee(fill.fee, fill.fee_asset)
        self.counters["synthetic_lots_confirmed"] += covered
        return position

    def _close_missing(self, record: TrackedOrder, report: ReconciliationReport) -> None:
        order = record.order
        local_status = order.status
        if not record.venue_seen and local_status in (PENDING_NEW, UNKNOWN):
            kind, final = DifferenceKind.LOST, REJECTED
            record.reason = "lost: not found at venue"
        else:
            kind = (
                DifferenceKind.SETTLED_UNKNOWN if local_status is UNKNOWN else DifferenceKind.CLOSED_MISSING
            )
            final = CANCELED
        report.differences.append(
            Difference(
                kind,
                order.symbol,
                order.client_order_id,
                order.venue_order_id,
                local_status,
                None,
                needs_query=final is CANCELED,
                detail="absent from the venue's open orders",
            )
        )
        self._force_status(record, final)

    def _reconcile_positions(self, snapshot: VenueSnapshot, report: ReconciliationReport) -> None:
        venue = snapshot.venue
        reported: dict[str, VenuePosition] = {}
        for venue_position in snapshot.positions or ():
            if snapshot.symbols is None or venue_position.symbol in snapshot.symbols:
                reported[venue_position.symbol] = venue_position
        for position in self.positions.venue_positions(venue):
            in_scope = snapshot.symbols is None or position.symbol in snapshot.symbols
            if in_scope and position.symbol not in reported and position.quantity != 0:
                reported[position.symbol] = VenuePosition(position.symbol, 0)
        for symbol, venue_position in reported.items():
            position = self.positions.get(venue, symbol)
            differs = position.quantity != venue_position.quantity or (
                venue_position.average_price is not None
                and venue_position.quantity != 0
                and position.average_price != Fraction(venue_position.average_price)
            )
            if not differs:
                continue
            before = (position.quantity, position.average_price)
            position.overwrite(venue_position.quantity, venue_position.average_price)
            report.differences.append(
                Difference(
                    DifferenceKind.POSITION_OVERWRITTEN,
                    symbol,
                    local=before,
                    venue=(venue_position.quantity, venue_position.average_price),
                )
            )

    def _reconcile_balances(
        self, venue: str, balances: Mapping[str, Decimal], report: ReconciliationReport
    ) -> None:
        for asset, total in balances.items():
            local = self.balances.get((venue, asset))
            if local != total:
                self.balances[(venue, asset)] = total
                report.differences.append(
                    Difference(DifferenceKind.BALANCE_OVERWRITTEN, asset, local=local, venue=total)
                )
        for (balance_venue, asset), local in list(self.balances.items()):
            if balance_venue == venue and asset not in balances and local != 0:
                self.balances[(venue, asset)] = Decimal(0)
                report.differences.append(
                    Difference(DifferenceKind.BALANCE_OVERWRITTEN, asset, local=local, venue=Decimal(0))
                )

    # internals ------------------------------------------------------------------------------
    def _settled(self, record: TrackedOrder) -> OrderStatus:
        settled = record.settled_status
        if settled is not PENDING_NEW and record.order.filled:
            return PARTIALLY_FILLED
        return settled

    @staticmethod
    def _clear_amend(record: TrackedOrder) -> None:
        record.pending_price = None
        record.pending_quantity = None

    def _set_status(self, record: TrackedOrder, status: OrderStatus) -> bool:
        order = record.order
        previous = order.status
        if status is previous:
            return False
        code = status._value_
        if code not in _LEGAL[previous._value_]:
            self.illegal_transitions[(previous, status)] += 1
            self._log_once(
                (previous, status),
                "illegal transition %s -> %s for %s ignored",
                previous.value,
                status.value,
                order.client_order_id,
            )
            return False
        # _apply_status inlined: this is the path every event takes
        order.status = status
        order.updated_ns = self._now()
        if code in _SETTLED_CODES:
            record.settled_status = status
        if code in _TERMINAL_CODES:
            self._retire(record)
        record.instrument.version += 1  # type: ignore[union-attr]
        self.version += 1
        if self._order_listeners:
            self._notify(self._order_listeners, order, previous)
        return True

    def _force_status(self, record: TrackedOrder, status: OrderStatus) -> None:
        """Set a status the venue's snapshot proves, bypassing the event table (reconciliation)."""
        previous = record.order.status
        if previous is status:
            return
        self.counters["forced_transitions"] += 1
        if previous.is_terminal:
            self._revive(record)
        self._apply_status(record, previous, status)

    def _apply_status(self, record: TrackedOrder, previous: OrderStatus, status: OrderStatus) -> None:
        order = record.order
        order.status = status
        order.updated_ns = self._now()
        code = status._value_
        if code in _SETTLED_CODES:
            record.settled_status = status
        if code in _TERMINAL_CODES:
            self._retire(record)
        record.instrument.version += 1  # type: ignore[union-attr]
        self.version += 1
        if self._order_listeners:
            self._notify(self._order_listeners, order, previous)

    def _attach(self, record: TrackedOrder) -> None:
        order = record.order
        instrument = self._instrument(order.venue, order.symbol)
        record.instrument = instrument
        instrument.orders[order.client_order_id] = record

    def _instrument(self, venue: str, symbol: str) -> _InstrumentOrders:
        key = (venue, symbol)
        instrument = self._instruments.get(key)
        if instrument is None:
            instrument = self._instruments[key] = _InstrumentOrders(
                venue, symbol, self.positions.get(venue, symbol), self.trade_memory
            )
        self._last_instrument = instrument
        return instrument

    def _retire(self, record: TrackedOrder) -> None:
        client_order_id = record.order.client_order_id
        self._active.pop(client_order_id, None)
        record.instrument.orders.pop(client_order_id, None)  # type: ignore[union-attr]
        terminal = self._terminal
        terminal[client_order_id] = record
        if len(terminal) > self.terminal_capacity:
            _, evicted = terminal.popitem(last=False)
            venue_order_id = evicted.order.venue_order_id
            if venue_order_id is not None:
                key = (evicted.order.venue, venue_order_id)
                if self._by_venue_id.get(key) == evicted.order.client_order_id:
                    del self._by_venue_id[key]

    def _revive(self, record: TrackedOrder) -> None:
        client_order_id = record.order.client_order_id
        self._terminal.pop(client_order_id, None)
        self._active[client_order_id] = record
        record.instrument.orders[client_order_id] = record  # type: ignore[union-attr]

    def _touch(self, record: TrackedOrder) -> None:
        record.instrument.version += 1  # type: ignore[union-attr]
        self.version += 1

    def _notify(self, listeners: list[Callable[..., None]], *arguments: object) -> None:
        """Tell every listener; one that raises is counted and logged once, never propagated.
        The loop is here, not per listener: it runs on every status change and every fill."""
        for listener in listeners:
            try:
                listener(*arguments)
            except Exception:
                self.counters["listener_errors"] += 1
                self._log_once(("listener", listener), "listener %r raised", listener, exc_info=True)

    def _index_venue_id(self, record: TrackedOrder, venue_order_id: str) -> None:
        order = record.order
        if order.venue_order_id is not None:
            self._by_venue_id.pop((order.venue, order.venue_order_id), None)
        order.venue_order_id = venue_order_id
        self._by_venue_id[(order.venue, venue_order_id)] = order.client_order_id

    def _find(
        self, venue: str, client_order_id: str | None, venue_order_id: str | None
    ) -> TrackedOrder | None:
        record = None
        if client_order_id is not None:
            record = self._active.get(client_order_id) or self._terminal.get(client_order_id)
            if record is not None and record.order.venue != venue:
                record = None
        if record is None and venue_order_id is not None:
            found = self._by_venue_id.get((venue, venue_order_id))
            if found is not None:
                record = self._active.get(found) or self._terminal.get(found)
        return record

    @staticmethod
    def _adoptable(report: OrderUpdate) -> bool:
        return report.quantity > 0 and bool(report.client_order_id or report.venue_order_id)

    def _adopt(self, report: OrderUpdate) -> TrackedOrder:
        """Start tracking an order the venue has and we did not (another session, a lost ack)."""
        client_order_id = report.client_order_id or f"venue:{report.venue_order_id}"
        status = report.status
        if status is NEW and report.filled:
            status = PARTIALLY_FILLED
        if status not in _SETTLED_LIVE and not status.is_terminal:
            status = NEW
        order = Order(
            client_order_id=client_order_id,
            venue=report.venue,
            symbol=report.symbol,
            side=report.side,
            order_type=report.order_type,
            time_in_force=report.time_in_force,
            price=report.price,
            quantity=report.quantity,
            filled=report.filled,
            status=status,
            venue_order_id=report.venue_order_id,
        )
        now = self._now()
        order.created_ns = order.updated_ns = now
        record = TrackedOrder(
            order=order, submitted_ns=now, settled_status=status if status in _SETTLED_LIVE else NEW
        )
        record.venue_seen = True
        record.fill_lots = report.filled  # earlier fills are already in the venue's position
        record.venue_filled = report.filled
        self._active[client_order_id] = record
        self._attach(record)
        if report.venue_order_id is not None:
            self._by_venue_id[(report.venue, report.venue_order_id)] = client_order_id
        if status.is_terminal:
            self._retire(record)
        self._touch(record)
        self._notify(self._order_listeners, order, PENDING_NEW)
        return record

    def _late_event(self, client_order_id: str, event: str, venue_order_id: str | None = None) -> bool:
        record = self._terminal.get(client_order_id)
        if record is None:
            self.counters[f"{event}_for_unknown_orders"] += 1
            self._log_once(("unknown", event), "%s for unknown order %s", event, client_order_id)
            return False
        if venue_order_id is not None and record.order.venue_order_id is None:
            self._index_venue_id(record, venue_order_id)
        record.venue_seen = True
        self.counters[f"{event}_after_close"] += 1
        return False

    def _log_once(self, kind: object, message: str, *arguments: object, exc_info: bool = False) -> None:
        if kind in self._logged_kinds:
            return
        self._logged_kinds.add(kind)
        _log.warning(message, *arguments, exc_info=exc_info)

    @property
    def illegal_transition_count(self) -> int:
        return sum(self.illegal_transitions.values())

    def all_orders(self) -> Iterable[Order]:
        for record in self._active.values():
            yield record.order
        for record in self._terminal.values():
            yield record.order
