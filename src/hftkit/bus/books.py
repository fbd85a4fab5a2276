"""Books over the bus: the feed side numbers deltas per stream, the consumer side rebuilds books.

Feed side (``BookPublisher``): a listener on a venue adapter. Each ``BookDelta`` the adapter
delivers (it delivers one after every apply while its book is synced) goes out on
``hftkit:book:<venue>:<symbol>`` with the next sequence number of that stream; each
``is_snapshot`` delta (the adapter's (re)sync) takes a sequence number of its own and goes to
``hftkit:snapshot:<venue>:<symbol>``, as do periodic snapshots (``publish_snapshots``) at the
current number. Sequences start at the feed's start time in microseconds, so a restarted feed
continues above any number it used before and its consumers see a gap, not stale data.

Consumer side (``BusBooks``): a market-data-only adapter (``book``, ``book_synced``,
``add_listener``, ``subscribe``). Each symbol's book is kept by the same ``BookSynchronizer``
a venue stream uses, with ``BUS_RULES``: a delta numbered ``n`` is the event ``U = u = n``, so
the Binance-spot continuity rule (``U == previous u + 1``) is the bus's gap rule, and a
snapshot at ``n`` bridges to the delta ``n + 1``. On a gap the book is resynced from the latest
snapshot (``latest`` on the snapshot stream, and any snapshot that arrives on it meanwhile).
Listeners get what a venue adapter delivers: ``BookDelta`` after every apply while synced, one
``is_snapshot`` delta after a (re)sync, ``ConnectionEvent`` ``resyncing``/``synced``, trades.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hftkit.book.order_book import OrderBook
from hftkit.book.sync import BookSynchronizer, Continuity, SequenceRules, SyncAction, SyncCounters
from hftkit.bus.base import MessageBus
from hftkit.bus.messages import (
    BusMessage,
    DeltaMessage,
    SnapshotMessage,
    TradeMessage,
    stream_name,
)
from hftkit.core.types import BookDelta, ConnectionEvent, Instrument, Trade

_log = logging.getLogger(__name__)

# A bus book stream: one sequence number per delta (U = u = n); a snapshot at n bridges to n + 1.
BUS_RULES = SequenceRules("hftkit-bus", stale_offset=1, bridge_offset=1, continuity=Continuity.NEXT_FIRST_ID)

Listener = Callable[[Any], None]


class BookPublisher:
    """Feed side: numbers and publishes one adapter's book events (see the module docstring)."""

    def __init__(
        self,
        bus: MessageBus,
        venue: str,
        *,
        trades: bool = True,
        first_sequence: int | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.bus = bus
        self.venue = venue
        self.trades = trades
        self._clock_ns = clock_ns
        self._base = first_sequence if first_sequence is not None else clock_ns() // 1000
        self.sequences: dict[str, int] = {}
        self._names: dict[str, tuple[str, str, str]] = {}
        self.deltas = 0
        self.snapshots = 0

    def _streams(self, symbol: str) -> tuple[str, str, str]:
        names = self._names.get(symbol)
        if names is None:
            names = self._names[symbol] = (
                stream_name("book", self.venue, symbol),
                stream_name("snapshot", self.venue, symbol),
                stream_name("trade", self.venue, symbol),
            )
            self.sequences.setdefault(symbol, self._base)
        return names

    def __call__(self, event: Any) -> None:
        """The adapter listener."""
        kind = type(event)
        if kind is BookDelta:
            book_stream, snapshot_stream, _ = self._streams(event.symbol)
            sequence = self.sequences[event.symbol] + 1
            self.sequences[event.symbol] = sequence
            if event.is_snapshot:
                self.snapshots += 1
                self.bus.publish(snapshot_stream, SnapshotMessage(sequence, self._clock_ns(), event))
            else:
                self.deltas += 1
                self.bus.publish(book_stream, DeltaMessage(sequence, self._clock_ns(), event))
        elif kind is Trade and self.trades:
            self.bus.publish(self._streams(event.symbol)[2], TradeMessage(self._clock_ns(), event))

    def publish_snapshot(self, symbol: str, book: OrderBook) -> None:
        """The book as it stands after the last published delta (call only while it is synced)."""
        _, snapshot_stream, _ = self._streams(symbol)
        sequence = self.sequences[symbol]
        event = BookDelta(
            venue=self.venue,
            symbol=symbol,
            bids=book.bids(),
            asks=book.asks(),
            last_update_id=book.last_update_id,
            is_snapshot=True,
        )
        self.snapshots += 1
        self.bus.publish(snapshot_stream, SnapshotMessage(sequence, self._clock_ns(), event))


class _SymbolState:
    __slots__ = ("fetching", "sync")

    def __init__(self, sync: BookSynchronizer) -> None:
        self.sync = sync
        self.fetching: asyncio.Task[None] | None = None


class BusBooks:
    """Consumer side: books of one venue rebuilt from the bus (see the module docstring)."""

    def __init__(
        self,
        bus: MessageBus,
        venue: str,
        *,
        group: str,
        consumer: str,
        instruments: Mapping[str, Instrument] | None = None,
        max_depth: int | None = None,
        snapshot_retry_s: float = 0.2,
    ) -> None:
        self.bus = bus
        self.name = venue
        self.group = group
        self.consumer = consumer
        self._instruments = dict(instruments or {})
        self._max_depth = max_depth
        self.snapshot_retry_s = snapshot_retry_s
        self._listeners: list[Listener] = []
        self._symbols: dict[str, _SymbolState] = {}
        self._by_stream: dict[str, tuple[str, str]] = {}
        self._closed = False
        self.snapshot_fetches = 0
        self.foreign_messages = 0

    # the book side of VenueAdapter ---------------------------------------------------------------
    @property
    def instruments(self) -> Mapping[str, Instrument]:
        return self._instruments

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def book(self, symbol: str) -> OrderBook | None:
        state = self._symbols.get(symbol)
        return None if state is None else state.sync.book

    def book_synced(self, symbol: str) -> bool:
        state = self._symbols.get(symbol)
        return state is not None and state.sync.is_synced

    def counters(self, symbol: str) -> SyncCounters | None:
        state = self._symbols.get(symbol)
        return None if state is None else state.sync.counters

    async def subscribe(self, symbols: Sequence[str], *, books: bool = True, trades: bool = True) -> None:
        streams = []
        for symbol in symbols:
            if symbol in self._symbols:
                continue
            sync = BookSynchronizer(OrderBook(symbol, max_depth=self._max_depth), BUS_RULES)
            self._symbols[symbol] = _SymbolState(sync)
            book_stream = stream_name("book", self.name, symbol)
            snapshot_stream = stream_name("snapshot", self.name, symbol)
            self._by_stream[book_stream] = ("book", symbol)
            self._by_stream[snapshot_stream] = ("snapshot", symbol)
            streams += [book_stream, snapshot_stream]
            if trades:
                trade_stream = stream_name("trade", self.name, symbol)
                self._by_stream[trade_stream] = ("trade", symbol)
                streams.append(trade_stream)
        if streams:
            self.bus.subscribe(streams, self.on_message, group=self.group, consumer=self.consumer)
        for symbol in symbols:
            self._fetch(symbol)

    async def close(self) -> None:
        self._closed = True
        for state in self._symbols.values():
            if state.fetching is not None:
                state.fetching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await state.fetching

    # intake --------------------------------------------------------------------------------------
    def on_message(self, stream: str, message: BusMessage) -> None:
        """The bus handler: deltas and snapshots drive the synchronizer, trades pass through."""
        route = self._by_stream.get(stream)
        if route is None:
            self.foreign_messages += 1
            return
        state = self._symbols[route[1]]
        kind = type(message)
        if kind is DeltaMessage:
            self._on_delta(state, message)  # type: ignore[arg-type]
        elif kind is SnapshotMessage:
            self._on_snapshot(state, message)  # type: ignore[arg-type]
        elif kind is TradeMessage:
            self._emit(message.event)  # type: ignore[union-attr]
        else:
            self.foreign_messages += 1

    def _on_delta(self, state: _SymbolState, message: DeltaMessage) -> None:
        sync = state.sync
        was_synced = sync.is_synced
        sequence = message.sequence
        event = message.event
        action = sync.on_depth(sequence, sequence, sequence - 1, event.bids, event.asks)
        if action is SyncAction.APPLIED:
            if was_synced:
                self._emit(event)
            else:
                self._synced(state)
        elif action is SyncAction.FETCH_SNAPSHOT:
            if was_synced:
                self._emit(
                    ConnectionEvent(
                        venue=self.name,
                        stream=stream_name("book", self.name, sync.book.symbol),
                        state="resyncing",
                        reason=sync.last_gap_reason,
                    )
                )
            self._fetch(sync.book.symbol)
        elif sync.needs_snapshot and state.fetching is None:
            self._fetch(sync.book.symbol)

    def _on_snapshot(self, state: _SymbolState, message: SnapshotMessage) -> None:
        sync = state.sync
        if sync.is_synced:
            return  # a periodic snapshot: the deltas keep the book, nothing to load
        action = sync.on_snapshot(message.sequence, message.event.bids, message.event.asks)
        if action is SyncAction.APPLIED and sync.is_synced:
            self._synced(state)

    def _synced(self, state: _SymbolState) -> None:
        sync = state.sync
        book = sync.book
        self._emit(
            ConnectionEvent(
                venue=self.name, stream=stream_name("book", self.name, book.symbol), state="synced"
            )
        )
        self._emit(
            BookDelta(
                venue=self.name,
                symbol=book.symbol,
                bids=book.bids(),
                asks=book.asks(),
                last_update_id=sync.last_update_id,
                is_snapshot=True,
            )
        )

    def _emit(self, event: Any) -> None:
        for listener in self._listeners:
            listener(event)

    # resync from the latest snapshot ---------------------------------------------------------------
    def _fetch(self, symbol: str) -> None:
        state = self._symbols[symbol]
        if self._closed or (state.fetching is not None and not state.fetching.done()):
            return
        state.fetching = asyncio.get_running_loop().create_task(
            self._fetch_latest(symbol), name=f"bus:snapshot:{self.name}:{symbol}"
        )

    async def _fetch_latest(self, symbol: str) -> None:
        state = self._symbols[symbol]
        stream = stream_name("snapshot", self.name, symbol)
        try:
            while not self._closed and state.sync.needs_snapshot:
                self.snapshot_fetches += 1
                message = await self.bus.latest(stream)
                if isinstance(message, SnapshotMessage) and state.sync.needs_snapshot:
                    self._on_snapshot(state, message)
                if state.sync.needs_snapshot:  # none yet, or older than the deltas kept: wait a little
                    await asyncio.sleep(self.snapshot_retry_s)
        finally:
            state.fetching = None


__all__ = ["BUS_RULES", "BookPublisher", "BusBooks"]
