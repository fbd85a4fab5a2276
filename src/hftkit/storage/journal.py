"""The event journal: what a node did, append-only, keyed by (node id, sequence).

Every order command (new / cancel / amend, by client order id), order update, fill, position and
balance change, risk event and signal is one typed record (a msgspec tagged union, so a record is
validated when it is read back) wrapped in a :class:`JournalEntry` that carries the node id, the
node's sequence number and the wall-clock time. The codec (``encode_entry`` / ``decode_entry``)
is sans-I/O; stores (``hftkit.storage.journal_sqlite``, ``hftkit.storage.journal_postgres``)
only move encoded rows.

:class:`EventJournal` is the shell a node uses. ``append`` numbers a record and hands it to a
:class:`~hftkit.storage.writer.BatchingWriter` (no I/O, no await: the hot path never waits for
a disk); the writer's background task commits batches to the store, which raises
``committed_sequence`` only after its transaction has committed. What the journal gives up to
never stall trading (see docs/guide.md, "Where data goes"):

- the last ``flush_interval_s`` of records (50 ms by default) are not yet committed when the
  process dies;
- when the store is down or the disk is full, records wait in a bounded buffer (a million by
  default); past that, the newest are dropped and counted (``drop_newest``: what was accepted
  stays a gap-free prefix), and the journal reports itself unhealthy.

Client order ids stay unique across restarts even so: each start commits a ``SessionStarted``
record (awaited, before any order) and the ids of a session carry its number.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import msgspec

from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.errors import HftkitError
from hftkit.core.types import OrderStatus, OrderType, Side, TimeInForce
from hftkit.storage.writer import BatchingWriter, OverflowPolicy, WriterStatus

__all__ = [
    "BalanceChange",
    "EventJournal",
    "FillEvent",
    "JournalCorruptError",
    "JournalEntry",
    "JournalError",
    "JournalRecord",
    "JournalStatus",
    "JournalStore",
    "OrderAction",
    "OrderCommand",
    "OrderEvent",
    "PositionChange",
    "RiskEvent",
    "SessionStarted",
    "SignalEvent",
    "decode_entry",
    "decode_segment",
    "encode_entry",
    "encode_segment",
    "session_id_prefix",
]


class JournalError(HftkitError):
    """The journal cannot do what was asked (closed, misconfigured, store unusable)."""


class JournalCorruptError(JournalError):
    """A stored row that does not decode as a journal record of this schema."""


# the records ----------------------------------------------------------------------------------------
class SessionStarted(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="session"):
    """A node started: its session number and the client-order-id prefix of that session."""

    session: int
    id_prefix: str
    pid: int = 0


class OrderAction(enum.Enum):
    NEW = "new"
    CANCEL = "cancel"
    AMEND = "amend"


class OrderCommand(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="command"):
    """What the node asked a venue to do (before the request is sent). Amends carry the new terms."""

    action: OrderAction
    client_order_id: str
    venue: str
    symbol: str
    side: Side
    order_type: OrderType = OrderType.LIMIT
    time_in_force: TimeInForce = TimeInForce.GTC
    price: int = 0  # ticks
    quantity: int = 0  # lots (an amend: the new total)
    reduce_only: bool = False


class OrderEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="order"):
    """An order's state after a change: the whole order, so recovery never needs its command."""

    client_order_id: str
    venue: str
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int
    quantity: int
    filled: int
    status: OrderStatus
    previous: OrderStatus | None = None
    venue_order_id: str | None = None
    reduce_only: bool = False


class FillEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="fill"):
    venue: str
    symbol: str
    client_order_id: str
    venue_order_id: str | None
    trade_id: str
    side: Side
    price: int
    quantity: int
    fee: float = 0.0
    fee_asset: str = ""
    is_maker: bool = False


class PositionChange(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="position"):
    """A position after a fill or a reconciliation. Prices are exact fractions of ticks, as text."""

    venue: str
    symbol: str
    quantity: int  # signed lots
    average_price: str | None = None  # "num/den" ticks, None when flat
    realized: str = "0"  # ticks*lots
    fees: dict[str, float] = {}
    reason: str = "fill"


class BalanceChange(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="balance"):
    venue: str
    asset: str
    free: str  # decimal text: balances are not on the hot path and stay exact
    locked: str = "0"


class RiskEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="risk"):
    """A kill-switch trip or reset (the audit entry of ``hftkit.trading.risk``)."""

    action: Literal["trip", "reset"]
    source: str | None
    detail: str
    first: bool = True


class SignalEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="signal"):
    """A signal stored (``deleted=False``) or removed."""

    symbol: str
    signal_type: str
    source: str = ""
    value: float = 0.0
    confidence: float = 0.0
    ttl_ns: int | None = None
    created_ns: int = 0
    updated_ns: int = 0
    deleted: bool = False


JournalRecord = (
    SessionStarted
    | OrderCommand
    | OrderEvent
    | FillEvent
    | PositionChange
    | BalanceChange
    | RiskEvent
    | SignalEvent
)


class JournalEntry(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    node: str
    sequence: int
    time_ns: int
    record: JournalRecord

    @property
    def kind(self) -> str:
        return _KIND[type(self.record)]

    @property
    def client_order_id(self) -> str | None:
        return getattr(self.record, "client_order_id", None)


_KIND: dict[type, str] = {
    kind: kind.__struct_config__.tag  # type: ignore[misc]
    for kind in (
        SessionStarted,
        OrderCommand,
        OrderEvent,
        FillEvent,
        PositionChange,
        BalanceChange,
        RiskEvent,
        SignalEvent,
    )
}

# the codec (sans-I/O) ---------------------------------------------------------------------------------
_encoder = msgspec.msgpack.Encoder()
_record_decoder: msgspec.msgpack.Decoder[JournalRecord] = msgspec.msgpack.Decoder(JournalRecord)

Row = tuple[str, int, int, str, str | None, bytes]
"""(node, sequence, time_ns, kind, client_order_id, body): one stored row."""


def encode_entry(entry: JournalEntry) -> Row:
    """The row a store writes: indexable columns plus the msgpack body of the record."""
    record = entry.record
    return (
        entry.node,
        entry.sequence,
        entry.time_ns,
        _KIND[type(record)],
        getattr(record, "client_order_id", None),
        _encoder.encode(record),
    )


def decode_entry(node: str, sequence: int, time_ns: int, body: bytes) -> JournalEntry:
    """A stored row back into an entry; raises :class:`JournalCorruptError` naming the row."""
    try:
        record = _record_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise JournalCorruptError(f"journal row ({node!r}, {sequence}) does not decode: {error}") from None
    return JournalEntry(node=node, sequence=sequence, time_ns=time_ns, record=record)


_segment_decoder: msgspec.msgpack.Decoder[list[tuple[int, int, JournalRecord]]] = msgspec.msgpack.Decoder(
    list[tuple[int, int, JournalRecord]]
)


def encode_segment(entries: Sequence[JournalEntry]) -> bytes:
    """One batch of one node as one body: ``[[sequence, time_ns, record], ...]`` in msgpack.

    One encoder call and one row per batch instead of per record: SQLite's per-row insert cost,
    not encoding, is what limits a per-record layout (see docs/guide.md, "Where data goes").
    """
    return _encoder.encode([(entry.sequence, entry.time_ns, entry.record) for entry in entries])


def decode_segment(node: str, first_sequence: int, body: bytes) -> list[JournalEntry]:
    try:
        items = _segment_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise JournalCorruptError(
            f"journal segment ({node!r}, {first_sequence}) does not decode: {error}"
        ) from None
    return [
        JournalEntry(node=node, sequence=sequence, time_ns=time_ns, record=record)
        for sequence, time_ns, record in items
    ]


def session_id_prefix(node_id: str, session: int, base: str = "hk") -> str:
    """The client-order-id prefix of one session of one node: ``<base><node hash>s<session>-``.

    The node hash keeps nodes that share a venue account apart; the session number (committed
    before the session sends anything) keeps restarts apart. 4 + 1 + a few hex digits: ids stay
    well under Binance's 36 characters.
    """
    if session < 1:
        raise ValueError("sessions are numbered from 1")
    node_hash = zlib.crc32(node_id.encode()) & 0xFFFF
    return f"{base}{node_hash:04x}s{session:x}-"


# the store protocol --------------------------------------------------------------------------------
@runtime_checkable
class JournalStore(Protocol):
    """Where entries go. ``write`` commits one batch in one transaction (all or nothing) and only
    then raises ``committed_sequence``; a batch already committed may be written again (retry
    after an ambiguous failure) and must not fail for it."""

    name: str
    committed_sequence: int

    async def open(self) -> None: ...

    async def write(self, batch: Sequence[JournalEntry]) -> None: ...

    async def read(self, node: str, after_sequence: int = 0) -> list[JournalEntry]: ...

    async def last_sequence(self, node: str) -> int: ...

    async def close(self) -> None: ...


# the shell ----------------------------------------------------------------------------------------------
class JournalStatus(msgspec.Struct, frozen=True, kw_only=True):
    node: str
    store: str
    healthy: bool
    appended: int
    last_sequence: int
    committed_sequence: int
    writer: WriterStatus


class EventJournal:
    """Numbers records, buffers them without waiting, and reports what is durably committed."""

    def __init__(
        self,
        store: JournalStore,
        node_id: str,
        *,
        capacity: int = 1_000_000,
        batch_size: int = 1000,
        flush_interval_s: float = 0.05,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        if not node_id:
            raise JournalError("a journal needs a node id")
        self.store = store
        self.node_id = node_id
        self._clock = clock
        self.writer: BatchingWriter[JournalEntry] = BatchingWriter(
            store,
            name=f"journal:{node_id}",
            capacity=capacity,
            batch_size=batch_size,
            flush_interval_s=flush_interval_s,
            # drop_newest, never drop_oldest: what was accepted stays a gap-free numbered prefix
            overflow=OverflowPolicy.DROP_NEWEST,
            keep_failed=True,  # a journal keeps retrying what it holds until the buffer's bound
            clock=clock,
        )
        self._next_sequence = 1
        self.appended = 0
        self._opened = False

    async def open(self) -> list[JournalEntry]:
        """Open the store, read this node's entries (for recovery), start the writer.

        Sequence numbers continue after the last stored one. Raises what the store raises when it
        cannot be read (the caller decides whether to run without recovery).
        """
        await self.store.open()
        entries = await self.store.read(self.node_id)
        last = entries[-1].sequence if entries else await self.store.last_sequence(self.node_id)
        self._next_sequence = last + 1
        self.store.committed_sequence = max(self.store.committed_sequence, last)
        await self.writer.start()
        self._opened = True
        return entries

    async def start_without_recovery(self, first_sequence: int) -> None:
        """Start the writer when the store could not be read: number from ``first_sequence``."""
        self._next_sequence = first_sequence
        await self.writer.start()
        self._opened = True

    def append(self, record: JournalRecord) -> int:
        """Number ``record`` and buffer it; returns its sequence, or 0 when the buffer refused it."""
        sequence = self._next_sequence
        entry = JournalEntry(
            node=self.node_id, sequence=sequence, time_ns=self._clock.time_ns(), record=record
        )
        if not self.writer.put(entry):
            return 0
        self._next_sequence = sequence + 1
        self.appended += 1
        return sequence

    async def commit(self, record: JournalRecord, timeout_s: float = 5.0) -> int:
        """Append and wait until it is committed (start-up records only: never on the hot path)."""
        sequence = self.append(record)
        if not sequence:
            raise JournalError("the journal's buffer is full: cannot commit")
        if not await self.writer.flush(timeout_s) or self.committed_sequence < sequence:
            raise JournalError(
                f"record {sequence} not committed within {timeout_s:g} s: "
                f"{self.writer.last_error or 'no error'}"
            )
        return sequence

    @property
    def committed_sequence(self) -> int:
        """The highest sequence durably committed (every lower appended one is committed too)."""
        return self.store.committed_sequence

    @property
    def last_sequence(self) -> int:
        return self._next_sequence - 1

    async def read(self, after_sequence: int = 0) -> list[JournalEntry]:
        return await self.store.read(self.node_id, after_sequence)

    async def flush(self, timeout_s: float = 5.0) -> bool:
        return await self.writer.flush(timeout_s)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Commit what is buffered (bounded by ``timeout_s``), then close the store."""
        await self.writer.close(timeout_s)  # closes the store (the writer's sink) too

    def status(self) -> JournalStatus:
        writer = self.writer.status()
        return JournalStatus(
            node=self.node_id,
            store=self.store.name,
            healthy=writer.healthy and writer.dropped == 0,
            appended=self.appended,
            last_sequence=self.last_sequence,
            committed_sequence=self.committed_sequence,
            writer=writer,
        )
