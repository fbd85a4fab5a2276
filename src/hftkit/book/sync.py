"""Snapshot + diff synchronizer: keeps an OrderBook equal to the venue's, or says it is not.

Sans-I/O: the synchronizer never fetches anything. It answers every input with a
``SyncAction``; ``FETCH_SNAPSHOT`` tells the shell to request a REST snapshot and hand it
to ``on_snapshot``. Diffs keep being buffered meanwhile, so none that follows the new
snapshot is lost.

The sequencing rules are data (``SequenceRules``): Binance spot and Binance futures differ
only in offsets and in which id links an event to the previous one, and a venue whose
stream starts with its own snapshot and carries no ids (Thalex) is a third rule set.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from hftkit.book.checks import top_matches
from hftkit.book.order_book import Level, OrderBook
from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.types import BookDelta


class Continuity(enum.Enum):
    """How an event proves it directly follows the previous one."""

    NEXT_FIRST_ID = "next_first_id"  # first_update_id == previous last_update_id + 1 (Binance spot)
    PREVIOUS_ID = "previous_id"  # previous_update_id == previous last_update_id (Binance futures "pu")
    NONE = "none"  # no sequence ids: every event is accepted in arrival order (Thalex)


@dataclass(frozen=True, slots=True)
class SequenceRules:
    """A venue's snapshot/diff sequencing rules.

    With snapshot id ``L``: an event is stale when ``last_update_id < L + stale_offset``;
    the first applied event must satisfy ``first_update_id <= L + bridge_offset <=
    last_update_id`` (or, with PREVIOUS_ID continuity, link to ``L`` itself); each later
    event must satisfy ``continuity``.
    ``snapshot_in_stream`` means the venue pushes the snapshot on the stream itself (no
    REST fetch to request). ``max_id_advance`` bounds how far one event may move the final
    id past the book's (0: unbounded): an id beyond what the stream's cadence allows is a
    corrupted or forged event, and applying it would make every real event look stale.
    """

    name: str
    stale_offset: int
    bridge_offset: int
    continuity: Continuity
    snapshot_in_stream: bool = False
    max_id_advance: int = 0


# Binance spot: drop u <= L; first applied must have U <= L+1 <= u; then U == prev_u + 1.
# One event advances u by at most ~1,500 in the BTCUSDT/ETHUSDT recordings (../shared/data,
# hftbacktest spot): 1,000,000 leaves a margin of more than 600x.
BINANCE_SPOT_RULES = SequenceRules(
    "binance-spot",
    stale_offset=1,
    bridge_offset=1,
    continuity=Continuity.NEXT_FIRST_ID,
    max_id_advance=1_000_000,
)
# Binance USD-M / COIN-M futures: drop u < L; first applied must have U <= L <= u; then pu == prev_u.
# Futures ids jump (up to ~280,000 per event in the USD-M recordings): the bound is 3,600x that.
BINANCE_FUTURES_RULES = SequenceRules(
    "binance-futures",
    stale_offset=0,
    bridge_offset=0,
    continuity=Continuity.PREVIOUS_ID,
    max_id_advance=1_000_000_000,
)
# Thalex book channel: the first push is the full book, later pushes are changes; no ids.
THALEX_RULES = SequenceRules(
    "thalex", stale_offset=0, bridge_offset=0, continuity=Continuity.NONE, snapshot_in_stream=True
)


_MAX_PENDING_TICKERS = 64  # bookTickers ahead of the book kept for their check


class SyncAction(enum.Enum):
    """What happened to one input, and what the shell must do next."""

    APPLIED = "applied"  # the book changed and is synced
    BUFFERED = "buffered"  # kept until a snapshot arrives
    DROPPED = "dropped"  # stale or duplicate: older than the book
    FETCH_SNAPSHOT = "fetch_snapshot"  # the book is unsynced: fetch a snapshot and call on_snapshot


class SyncState(enum.Enum):
    AWAITING_SNAPSHOT = "awaiting_snapshot"
    BRIDGING = "bridging"  # snapshot loaded, waiting for the event that straddles its id
    SYNCED = "synced"


@dataclass
class SyncCounters:
    """Integrity counters of one synchronizer, for metrics and replay reports."""

    applied: int = 0
    buffered: int = 0
    stale_dropped: int = 0
    gaps: int = 0
    resyncs: int = 0
    snapshots: int = 0
    snapshots_ignored: int = 0
    snapshots_too_old: int = 0
    buffer_overflows: int = 0
    crossed_books: int = 0
    invalid_ids: int = 0  # events with impossible ids (U > u, pu >= u): rejected
    id_jumps: int = 0  # events whose u jumps past what the cadence allows: rejected
    id_conflicts: int = 0  # stale-looking events that overlap the last applied one: resync
    stale_runs: int = 0  # max_stale_drops stale events in a row while synced: resync
    ticker_mismatches: int = 0  # a bookTicker disagreeing with the book at its id: resync
    stalls: int = 0  # the shell saw no data within the stream's cadence: resync
    last_resync_ns: int = 0
    max_resync_ns: int = 0
    total_resync_ns: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Event:
    __slots__ = ("asks", "bids", "first", "last", "previous")

    def __init__(self, first: int, last: int, previous: int, bids: list[Level], asks: list[Level]) -> None:
        self.first = first
        self.last = last
        self.previous = previous
        self.bids = bids
        self.asks = asks


class BookSynchronizer:
    """Drive one OrderBook from a diff stream plus snapshots, detecting every gap.

    ``on_book`` fires after each applied event while the book is synced, never for an
    unsynced book. A crossed book after an update is counted and, unless
    ``resync_on_crossed`` is False, treated like a gap.

    A synced book must never sit still while the venue moves on, so besides gaps it also
    rejects events with impossible ids (``U > u``, ``pu >= u``, ``u`` past ``max_id_advance``),
    resyncs when a stale-looking event overlaps the last applied one (the mark of an inflated
    id that slipped through), after ``max_stale_drops`` stale events in a row (0: never), and
    when a bookTicker disagrees with the book at the same update id (``on_ticker``).
    """

    __slots__ = (
        "_bridge_offset",
        "_buffer",
        "_clock",
        "_continuity",
        "_last_first",
        "_last_id",
        "_last_previous",
        "_snapshot_requested",
        "_stale_offset",
        "_stale_run",
        "_tickers",
        "_unsynced_since_ns",
        "book",
        "counters",
        "is_synced",
        "last_gap_reason",
        "max_buffer",
        "max_id_advance",
        "max_stale_drops",
        "on_book",
        "resync_on_crossed",
        "rules",
        "state",
    )

    def __init__(
        self,
        book: OrderBook,
        rules: SequenceRules,
        clock: Clock = REAL_CLOCK,
        max_buffer: int = 10_000,
        on_book: Callable[[OrderBook], None] | None = None,
        resync_on_crossed: bool = True,
        max_stale_drops: int = 16,
        max_id_advance: int | None = None,
    ) -> None:
        if max_buffer <= 0:
            raise ValueError(f"max_buffer must be positive, got {max_buffer}")
        if max_stale_drops < 0:
            raise ValueError(f"max_stale_drops must be >= 0, got {max_stale_drops}")
        if max_id_advance is not None and max_id_advance < 0:
            raise ValueError(f"max_id_advance must be >= 0, got {max_id_advance}")
        self.book = book
        self.rules = rules
        self._stale_offset = rules.stale_offset
        self._bridge_offset = rules.bridge_offset
        self._continuity = rules.continuity
        self._clock = clock
        self.max_buffer = max_buffer
        self.on_book = on_book
        self.resync_on_crossed = resync_on_crossed
        self.counters = SyncCounters()
        self.state = SyncState.AWAITING_SNAPSHOT
        self.is_synced = False  # state is SYNCED, kept as an attribute: read per book event
        self._buffer: deque[_Event] = deque()
        self._last_id = -1
        # ids of the last applied event: a stale event overlapping them is a contradiction
        self._last_first = 0
        self._last_previous = -1
        self._stale_run = 0
        self.max_stale_drops = max_stale_drops
        self.max_id_advance = rules.max_id_advance if max_id_advance is None else max_id_advance
        # bookTickers newer than the book, checked when the book reaches their id
        self._tickers: deque[tuple[int, int, int, int, int]] = deque(maxlen=_MAX_PENDING_TICKERS)
        self._snapshot_requested = False
        self._unsynced_since_ns: int | None = clock.monotonic_ns()
        self.last_gap_reason = ""

    @property
    def needs_snapshot(self) -> bool:
        """True while the book waits for a snapshot the shell has to provide."""
        return self.state is SyncState.AWAITING_SNAPSHOT

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def last_update_id(self) -> int:
        return self._last_id

    # inputs -------------------------------------------------------------------------------
    def on_delta(self, delta: BookDelta) -> SyncAction:
        if delta.is_snapshot:
            return self.on_snapshot(delta.last_update_id, delta.bids, delta.asks)
        return self.on_depth(
            delta.first_update_id, delta.last_update_id, delta.previous_update_id, delta.bids, delta.asks
        )

    def on_depth(
        self, first_id: int, last_id: int, previous_id: int, bids: list[Level], asks: list[Level]
    ) -> SyncAction:
        """Feed one diff event (its ids and its levels, size 0 = delete)."""
        continuity = self._continuity
        if continuity is not Continuity.NONE and (
            first_id > last_id or (continuity is Continuity.PREVIOUS_ID and previous_id >= last_id)
        ):
            self.counters.invalid_ids += 1
            return SyncAction.DROPPED
        if self.state is SyncState.SYNCED:
            if continuity is Continuity.NONE:
                return self._apply(last_id, bids, asks)
            previous_last = self._last_id
            if last_id <= previous_last:
                return self._stale(_Event(first_id, last_id, previous_id, bids, asks))
            if self._jumps(last_id, previous_last):
                return SyncAction.DROPPED
            if continuity is Continuity.NEXT_FIRST_ID:
                follows = first_id == previous_last + 1
            else:
                follows = previous_id == previous_last
            if follows:
                self._last_first = first_id
                self._last_previous = previous_id
                return self._apply(last_id, bids, asks)
            self._buffer.append(_Event(first_id, last_id, previous_id, bids, asks))
            self.counters.buffered += 1
            return self._lose_sync(
                f"gap: event U={first_id} u={last_id} pu={previous_id} after u={previous_last}"
            )
        event = _Event(first_id, last_id, previous_id, bids, asks)
        if self.state is SyncState.BRIDGING:
            return self._bridge(event)
        return self._buffer_event(event)

    def on_snapshot(self, last_update_id: int, bids: Iterable[Level], asks: Iterable[Level]) -> SyncAction:
        """Load a snapshot, then apply the buffered diffs that follow it.

        A snapshot no newer than a synced book (a late answer to an earlier request) is
        dropped: the book is already past it and reloading would only cost a re-bridge.
        """
        if (
            self.state is SyncState.SYNCED
            and self._continuity is not Continuity.NONE
            and last_update_id <= self._last_id
        ):
            self.counters.snapshots_ignored += 1
            return SyncAction.DROPPED
        self.counters.snapshots += 1
        self._snapshot_requested = False
        self.book.apply_snapshot(bids, asks, last_update_id)
        self._last_id = last_update_id
        self._last_first = last_update_id + 1  # no event applied yet: nothing to overlap
        self._last_previous = last_update_id
        self._stale_run = 0
        if self._continuity is Continuity.NONE:
            # without ids the snapshot alone is the venue's book: publish it at once
            self._buffer.clear()
            self._become_synced()
            if self.book.is_crossed():
                self.counters.crossed_books += 1
                if self.resync_on_crossed:
                    return self._lose_sync(f"crossed snapshot {last_update_id}")
            if self.on_book is not None:
                self.on_book(self.book)
            return SyncAction.APPLIED
        self.state = SyncState.BRIDGING
        self.is_synced = False
        buffer = self._buffer
        self._buffer = deque()
        action = SyncAction.BUFFERED
        while buffer:
            event = buffer.popleft()
            if self.state is SyncState.AWAITING_SNAPSHOT:
                # a gap inside the buffer: keep what follows for the next snapshot
                self._buffer.append(event)
                continue
            action = self._bridge(event) if self.state is SyncState.BRIDGING else self._apply_checked(event)
        if self.state is SyncState.AWAITING_SNAPSHOT:
            return SyncAction.FETCH_SNAPSHOT
        return SyncAction.APPLIED if self.state is SyncState.SYNCED else action

    def on_ticker(
        self, update_id: int, bid_price: int, bid_size: int, ask_price: int, ask_size: int
    ) -> SyncAction:
        """Cross-check the book against a best bid/ask the venue stamped with a book update id.

        At the book's own id the two must agree (price and size; a price of 0 stands for an
        empty side); a ticker beyond the book is kept and checked when the book reaches its
        id; an older one, or one without an id (< 0), says nothing. A disagreement resyncs:
        the book drifted from the venue although every id chained (FETCH_SNAPSHOT).
        Otherwise APPLIED (checked), BUFFERED (kept) or DROPPED (ignored).
        """
        if update_id < 0 or self._continuity is Continuity.NONE or self.state is SyncState.AWAITING_SNAPSHOT:
            return SyncAction.DROPPED
        if update_id > self._last_id:
            self._tickers.append((update_id, bid_price, bid_size, ask_price, ask_size))
            return SyncAction.BUFFERED
        if update_id < self._last_id:
            return SyncAction.DROPPED
        return self._check_ticker(update_id, bid_price, bid_size, ask_price, ask_size)

    def request_resync(self, reason: str = "requested") -> SyncAction:
        """Drop sync on the shell's say-so (reconnect, checksum failure, operator)."""
        return self._lose_sync(reason)

    def report_stall(self, reason: str = "stalled") -> SyncAction:
        """The shell saw no data within the stream's cadence: the book may be frozen, resync."""
        self.counters.stalls += 1
        return self._lose_sync(reason)

    # internals ----------------------------------------------------------------------------
    def _buffer_event(self, event: _Event) -> SyncAction:
        buffer = self._buffer
        if len(buffer) >= self.max_buffer:
            buffer.popleft()
            self.counters.buffer_overflows += 1
            if self._snapshot_requested:
                # the snapshot in flight may predate the oldest event kept: ask for a newer one
                self._snapshot_requested = False
                self.counters.resyncs += 1
        buffer.append(event)
        self.counters.buffered += 1
        if not self._snapshot_requested and not self.rules.snapshot_in_stream:
            self._snapshot_requested = True
            return SyncAction.FETCH_SNAPSHOT
        return SyncAction.BUFFERED

    def _jumps(self, last_id: int, reference_id: int) -> bool:
        """True (counted) when ``last_id`` lies further past the book than the cadence allows."""
        bound = self.max_id_advance
        if bound and last_id - reference_id > bound:
            self.counters.id_jumps += 1
            return True
        return False

    def _stale(self, event: _Event) -> SyncAction:
        """An event no newer than the book: a duplicate, or a sign that the book's id is wrong.

        Events are contiguous, so an older genuine event ends before the last applied one
        starts (spot: u < its U; futures: u <= its pu), or is that very event. Anything else
        overlaps it: the last applied id was inflated, and every real event would now look
        stale, so resync at once. A long run of plain stale events resyncs too.
        """
        last = event.last
        if self._continuity is Continuity.NEXT_FIRST_ID:
            overlaps = last >= self._last_first and not (
                last == self._last_id and event.first == self._last_first
            )
        else:
            overlaps = last > self._last_previous and not (
                last == self._last_id and event.previous == self._last_previous
            )
        if overlaps:
            self.counters.id_conflicts += 1
            self._buffer.append(event)
            self.counters.buffered += 1
            return self._lose_sync(
                f"id conflict: event U={event.first} u={last} pu={event.previous} overlaps the applied "
                f"U={self._last_first} u={self._last_id} pu={self._last_previous}"
            )
        self.counters.stale_dropped += 1
        self._stale_run += 1
        if self.max_stale_drops and self._stale_run >= self.max_stale_drops:
            self.counters.stale_runs += 1
            return self._lose_sync(f"{self._stale_run} stale events in a row at u={self._last_id}")
        return SyncAction.DROPPED

    def _check_ticker(
        self, update_id: int, bid_price: int, bid_size: int, ask_price: int, ask_size: int
    ) -> SyncAction:
        book = self.book
        best_bid = book.best_bid()
        best_ask = book.best_ask()
        if top_matches(best_bid, best_ask, bid_price, bid_size, ask_price, ask_size):
            return SyncAction.APPLIED
        bid = best_bid or (0, 0)
        ask = best_ask or (0, 0)
        self.counters.ticker_mismatches += 1
        return self._lose_sync(
            f"ticker mismatch at u={update_id}: ticker {bid_price}x{bid_size} / {ask_price}x{ask_size}, "
            f"book {bid[0]}x{bid[1]} / {ask[0]}x{ask[1]}"
        )

    def _bridge(self, event: _Event) -> SyncAction:
        snapshot_id = self._last_id
        if event.last < snapshot_id + self._stale_offset:
            self.counters.stale_dropped += 1
            return SyncAction.DROPPED
        if self._jumps(event.last, snapshot_id):
            return SyncAction.DROPPED
        if event.first <= snapshot_id + self._bridge_offset <= event.last or (
            # a snapshot taken exactly between two events: the next one links to it by "pu"
            self._continuity is Continuity.PREVIOUS_ID and event.previous == snapshot_id
        ):
            return self._apply_event(event)
        # every event from here on is newer than the snapshot: it is too old to bridge
        self.counters.snapshots_too_old += 1
        self._buffer.append(event)
        self.counters.buffered += 1
        return self._lose_sync(f"snapshot {snapshot_id} older than first event U={event.first}")

    def _apply_checked(self, event: _Event) -> SyncAction:
        previous_last = self._last_id
        if event.last <= previous_last:
            return self._stale(event)
        if self._jumps(event.last, previous_last):
            return SyncAction.DROPPED
        if self._continuity is Continuity.NEXT_FIRST_ID:
            follows = event.first == previous_last + 1
        else:
            follows = event.previous == previous_last
        if follows:
            return self._apply_event(event)
        self._buffer.append(event)
        self.counters.buffered += 1
        return self._lose_sync(
            f"gap: event U={event.first} u={event.last} pu={event.previous} after u={previous_last}"
        )

    def _apply_event(self, event: _Event) -> SyncAction:
        if self.state is not SyncState.SYNCED:
            self._become_synced()
        self._last_first = event.first
        self._last_previous = event.previous
        return self._apply(event.last, event.bids, event.asks)

    def _apply(self, last_id: int, bids: list[Level], asks: list[Level]) -> SyncAction:
        book = self.book
        book.apply_delta(bids, asks)
        self._last_id = last_id
        book.last_update_id = last_id
        self._stale_run = 0
        self.counters.applied += 1
        if book.is_crossed():
            self.counters.crossed_books += 1
            if self.resync_on_crossed:
                return self._lose_sync(f"crossed book after u={last_id}")
        tickers = self._tickers
        while tickers and tickers[0][0] <= last_id:
            ticker = tickers.popleft()
            if ticker[0] == last_id and self._check_ticker(*ticker) is SyncAction.FETCH_SNAPSHOT:
                return SyncAction.FETCH_SNAPSHOT
        if self.on_book is not None:
            self.on_book(book)
        return SyncAction.APPLIED

    def _become_synced(self) -> SyncAction:
        self.state = SyncState.SYNCED
        self.is_synced = True
        if self._unsynced_since_ns is not None:
            elapsed = self._clock.monotonic_ns() - self._unsynced_since_ns
            self._unsynced_since_ns = None
            if self.counters.resyncs:
                counters = self.counters
                counters.last_resync_ns = elapsed
                counters.total_resync_ns += elapsed
                counters.max_resync_ns = max(counters.max_resync_ns, elapsed)
        return SyncAction.APPLIED

    def _lose_sync(self, reason: str) -> SyncAction:
        if reason.startswith("gap"):
            self.counters.gaps += 1
        self.last_gap_reason = reason
        self.counters.resyncs += 1
        self.state = SyncState.AWAITING_SNAPSHOT
        self.is_synced = False
        self._stale_run = 0
        self._tickers.clear()
        if self._unsynced_since_ns is None:
            self._unsynced_since_ns = self._clock.monotonic_ns()
        if self.rules.snapshot_in_stream:
            return SyncAction.FETCH_SNAPSHOT  # the shell resubscribes to get a fresh first push
        self._snapshot_requested = True
        return SyncAction.FETCH_SNAPSHOT
