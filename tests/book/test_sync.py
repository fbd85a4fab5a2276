"""BookSynchronizer: Binance spot and futures procedures, gaps, resyncs and their counters."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.book import (
    BINANCE_FUTURES_RULES,
    BINANCE_SPOT_RULES,
    THALEX_RULES,
    BookSynchronizer,
    OrderBook,
    SyncAction,
    SyncState,
)
from hftkit.core import BookDelta, SimulatedClock


class Venue:
    """A model venue: consecutive update ids, every book state remembered by id."""

    def __init__(self, seed: int = 1, futures: bool = False) -> None:
        self.random = random.Random(seed)
        self.futures = futures
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.last_id = 1000
        self.states: dict[int, tuple[dict[int, int], dict[int, int]]] = {}
        self.remember()

    def remember(self) -> None:
        self.states[self.last_id] = (dict(self.bids), dict(self.asks))

    def event(self) -> tuple[int, int, int, list, list]:
        """One diff covering 1..3 update ids; bids stay in 1..50, asks in 51..100 (never crossed)."""
        bids = [(self.random.randint(1, 50), self.random.choice((0, 1, 2, 3))) for _ in range(3)]
        asks = [(self.random.randint(51, 100), self.random.choice((0, 1, 2, 3))) for _ in range(3)]
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, size in levels:
                if size:
                    side[price] = size
                else:
                    side.pop(price, None)
        previous = self.last_id
        first = previous + 1
        self.last_id = previous + self.random.randint(1, 3)
        self.remember()
        return first, self.last_id, previous if self.futures else -1, bids, asks

    def snapshot(self) -> tuple[int, list, list]:
        return self.last_id, sorted(self.bids.items()), sorted(self.asks.items())


def assert_book_matches_venue(sync: BookSynchronizer, venue: Venue) -> None:
    bids, asks = venue.states[sync.last_update_id]
    assert sync.book.bids() == sorted(bids.items(), reverse=True)
    assert sync.book.asks() == sorted(asks.items())


def test_spot_buffers_until_snapshot_drops_stale_and_bridges():
    venue = Venue()
    published = []
    sync = BookSynchronizer(OrderBook("X"), BINANCE_SPOT_RULES, on_book=published.append)
    actions = [sync.on_depth(*venue.event()) for _ in range(3)]
    assert actions[0] is SyncAction.FETCH_SNAPSHOT  # ask once
    assert actions[1:] == [SyncAction.BUFFERED, SyncAction.BUFFERED]
    assert not sync.is_synced and published == []
    snapshot = venue.snapshot()  # covers the three buffered events
    tail = [venue.event() for _ in range(2)]
    sync.on_depth(*tail[0])
    assert sync.on_snapshot(*snapshot) is SyncAction.APPLIED
    assert sync.is_synced
    assert sync.counters.stale_dropped == 3
    assert sync.counters.applied == 1
    assert sync.on_depth(*tail[1]) is SyncAction.APPLIED
    assert_book_matches_venue(sync, venue)
    assert len(published) == 2 and sync.counters.gaps == 0


def test_spot_first_event_must_straddle_snapshot_id_plus_one():
    sync = BookSynchronizer(OrderBook(), BINANCE_SPOT_RULES)
    sync.on_depth(95, 100, -1, [(1, 1)], [])  # u <= L: stale for spot
    sync.on_depth(101, 105, -1, [(2, 1)], [(9, 1)])  # U <= L+1 <= u
    sync.on_snapshot(100, [(1, 1)], [(9, 2)])
    assert sync.is_synced and sync.counters.stale_dropped == 1
    assert sync.book.bids() == [(2, 1), (1, 1)]
    assert sync.book.best_ask() == (9, 1)


def test_futures_rules_keep_event_ending_at_snapshot_id_and_link_by_pu():
    sync = BookSynchronizer(OrderBook(), BINANCE_FUTURES_RULES)
    sync.on_depth(90, 99, 89, [], [])  # u < L: stale
    sync.on_depth(100, 100, 99, [(5, 1)], [])  # U <= L <= u: the bridge, kept on futures
    sync.on_snapshot(100, [(4, 1)], [(9, 1)])
    assert sync.is_synced and sync.book.best_bid() == (5, 1)
    # futures ids jump: only pu matters
    assert sync.on_depth(150, 160, 100, [(6, 1)], []) is SyncAction.APPLIED
    assert sync.on_depth(170, 171, 159, [(7, 1)], []) is SyncAction.FETCH_SNAPSHOT
    assert sync.counters.gaps == 1 and not sync.is_synced


def test_spot_event_ending_at_snapshot_id_is_stale_but_not_on_futures():
    spot = BookSynchronizer(OrderBook(), BINANCE_SPOT_RULES)
    spot.on_depth(100, 100, -1, [(5, 1)], [])
    spot.on_snapshot(100, [(4, 1)], [(9, 1)])
    assert spot.counters.stale_dropped == 1 and not spot.is_synced
    assert spot.state is SyncState.BRIDGING


def test_gap_in_depth_stream_triggers_resync_without_losing_later_diffs():
    venue = Venue(seed=7)
    clock = SimulatedClock()
    published = []
    sync = BookSynchronizer(OrderBook(), BINANCE_SPOT_RULES, clock=clock, on_book=published.append)
    sync.on_snapshot(*venue.snapshot())
    for _ in range(5):
        assert sync.on_depth(*venue.event()) is SyncAction.APPLIED
    venue.event()  # lost on the wire
    clock.advance(1_000)
    assert sync.on_depth(*venue.event()) is SyncAction.FETCH_SNAPSHOT
    assert not sync.is_synced and sync.needs_snapshot
    seen = len(published)
    later = [venue.event() for _ in range(4)]
    for event in later[:2]:
        assert sync.on_depth(*event) is SyncAction.BUFFERED
    for event in later[2:]:
        assert sync.on_depth(*event) is SyncAction.BUFFERED
    assert len(published) == seen  # an unsynced book is never published
    # the shell's REST snapshot reflects the venue as of later[1]: later[2:] must come from the buffer
    mid_id = later[1][1]
    mid_bids, mid_asks = venue.states[mid_id]
    clock.advance(5_000_000)
    assert sync.on_snapshot(mid_id, sorted(mid_bids.items()), sorted(mid_asks.items())) is SyncAction.APPLIED
    assert sync.is_synced and sync.last_update_id == venue.last_id
    assert_book_matches_venue(sync, venue)  # later[2] and later[3] came from the buffer
    counters = sync.counters
    assert (counters.gaps, counters.resyncs) == (1, 1)
    assert counters.last_resync_ns == 5_000_000 and counters.max_resync_ns == 5_000_000
    assert counters.total_resync_ns == 5_000_000
    assert "gap" in sync.last_gap_reason


def test_duplicate_event_is_dropped_not_a_gap():
    venue = Venue(seed=3)
    sync = BookSynchronizer(OrderBook(), BINANCE_SPOT_RULES)
    sync.on_snapshot(*venue.snapshot())
    event = venue.event()
    assert sync.on_depth(*event) is SyncAction.APPLIED
    assert sync.on_depth(*event) is SyncAction.DROPPED
    assert sync.on_depth(*venue.event()) is SyncAction.APPLIED
    assert sync.counters.stale_dropped == 1 and sync.counters.gaps == 0
    assert_book_matches_venue(sync, venue)


def test_reordered_events_cause_a_gap_then_recover_from_snapshot():
    venue = Venue(seed=4, futures=True)
    sync = BookSynchronizer(OrderBook(), BINANCE_FUTURES_RULES)
    sync.on_snapshot(*venue.snapshot())
    assert sync.on_depth(*venue.event()) is SyncAction.APPLIED
    first, second = venue.event(), venue.event()
    assert sync.on_depth(*second) is SyncAction.FETCH_SNAPSHOT
    assert sync.on_depth(*first) is SyncAction.BUFFERED
    sync.on_snapshot(*venue.snapshot())
    assert sync.is_synced
    assert sync.on_depth(*venue.event()) is SyncAction.APPLIED
    assert_book_matches_venue(sync, venue)
    assert sync.counters.gaps == 1 and sync.counters.stale_dropped == 1  # `first` predates the snapshot


def test_snapshot_older_than_buffered_events_asks_for_another():
    venue = Venue(seed=5)
    sync = BookSynchronizer(OrderBook(), BINANCE_SPOT_RULES)
    old_snapshot = venue.snapshot()
    venue.event()  # never delivered: the subscription started later
    sync.on_depth(*venue.event())
    assert sync.on_snapshot(*old_snapshot) is SyncAction.FETCH_SNAPSHOT
    assert sync.counters.snapshots_too_old == 1 and sync.needs_snapshot
    sync.on_snapshot(*venue.snapshot())
    assert sync.on_depth(*venue.event()) is SyncAction.APPLIED
    assert_book_matches_venue(sync, venue)


def test_buffer_overflow_is_counted_and_requests_a_fresh_snapshot():
    venue = Venue(seed=6)
    sync = BookSynchronizer(OrderBook(), BINANCE_SPOT_RULES, max_buffer=3)
    actions = [sync.on_depth(*venue.event()) for _ in range(5)]
    assert actions[0] is SyncAction.FETCH_SNAPSHOT
    assert actions[3] is SyncAction.FETCH_SNAPSHOT  # overflow: the pending snapshot may be too old
    assert sync.counters.buffer_overflows == 2 and sync.buffered == 3
    sync.on_snapshot(*venue.snapshot())
    assert sync.on_depth(*venue.event()) is SyncAction.APPLIED


def test_crossed_book_is_counted_and_unsyncs():
    sync = BookSynchronizer(OrderBook(), BINANCE_SPOT_RULES)
    sync.on_snapshot(10, [(5, 1)], [(6, 1)])
    sync.on_depth(11, 11, -1, [], [])
    assert sync.on_depth(12, 12, -1, [(7, 1)], []) is SyncAction.FETCH_SNAPSHOT
    assert sync.counters.crossed_books == 1 and not sync.is_synced
    tolerant = BookSynchronizer(OrderBook(), BINANCE_SPOT_RULES, resync_on_crossed=False)
    tolerant.on_snapshot(10, [(5, 1)], [(6, 1)])
    tolerant.on_depth(11, 11, -1, [], [])
    assert tolerant.on_depth(12, 12, -1, [(7, 1)], []) is SyncAction.APPLIED
    assert tolerant.counters.crossed_books == 1


def test_explicit_resync_request_and_book_delta_input():
    sync = BookSynchronizer(OrderBook(), BINANCE_FUTURES_RULES)
    snapshot = BookDelta(
        venue="v", symbol="X", bids=[(1, 1)], asks=[(3, 1)], last_update_id=5, is_snapshot=True
    )
    sync.on_delta(snapshot)
    delta = BookDelta(
        venue="v",
        symbol="X",
        bids=[(2, 1)],
        asks=[],
        first_update_id=4,
        last_update_id=6,
        previous_update_id=3,
    )
    assert sync.on_delta(delta) is SyncAction.APPLIED
    assert sync.book.best_bid() == (2, 1)
    assert sync.request_resync("reconnect") is SyncAction.FETCH_SNAPSHOT
    assert sync.counters.resyncs == 1 and sync.counters.gaps == 0
    assert sync.last_gap_reason == "reconnect"


def test_thalex_rules_take_the_snapshot_from_the_stream_without_ids():
    published = []
    sync = BookSynchronizer(OrderBook(), THALEX_RULES, on_book=published.append)
    assert sync.on_depth(-1, -1, -1, [(1, 1)], []) is SyncAction.BUFFERED  # nothing to fetch
    assert sync.on_snapshot(-1, [(10, 1)], [(12, 1)]) is SyncAction.APPLIED
    assert sync.is_synced and sync.book.bids() == [(10, 1)] and len(published) == 1
    assert sync.on_depth(-1, -1, -1, [(11, 2)], [(12, 0)]) is SyncAction.APPLIED
    assert sync.book.best_bid() == (11, 2) and sync.book.best_ask() is None


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    futures=st.booleans(),
    faults=st.lists(st.sampled_from(["ok", "ok", "ok", "drop", "dup", "swap"]), min_size=5, max_size=60),
)
def test_synced_book_always_equals_the_venue_under_faults(seed, futures, faults):
    """Whatever is lost, duplicated or reordered, a synced book is the venue's book."""
    venue = Venue(seed=seed, futures=futures)
    rules = BINANCE_FUTURES_RULES if futures else BINANCE_SPOT_RULES
    sync = BookSynchronizer(OrderBook(), rules, max_buffer=20)
    fetch_pending = False
    held = None
    for fault in faults:
        event = venue.event()
        delivered = []
        if fault == "ok":
            delivered = [event]
        elif fault == "dup":
            delivered = [event, event]
        elif fault == "swap":
            if held is None:
                held = event
                continue
            delivered = [event, held]
            held = None
        for item in delivered:
            if sync.on_depth(*item) is SyncAction.FETCH_SNAPSHOT:
                fetch_pending = True
            if sync.is_synced:
                assert_book_matches_venue(sync, venue)
        if fetch_pending and fault != "drop":
            # the REST answer lands one event later than the request
            fetch_pending = sync.on_snapshot(*venue.snapshot()) is SyncAction.FETCH_SNAPSHOT
            if sync.is_synced:
                assert_book_matches_venue(sync, venue)
    # once the faults stop, at most one snapshot brings the book back
    if held is not None:
        sync.on_depth(*held)
    if sync.on_depth(*venue.event()) is not SyncAction.APPLIED:
        sync.on_snapshot(*venue.snapshot())
        assert sync.on_depth(*venue.event()) is SyncAction.APPLIED
    assert sync.is_synced
    assert_book_matches_venue(sync, venue)
    lost = faults.count("drop") + faults.count("swap")
    assert sync.counters.gaps + sync.counters.snapshots_too_old <= lost


def test_late_snapshot_for_a_synced_book_is_ignored_and_a_newer_one_is_used():
    venue = Venue(seed=8)
    sync = BookSynchronizer(OrderBook(), BINANCE_SPOT_RULES)
    sync.on_snapshot(*venue.snapshot())
    late = venue.snapshot()
    for _ in range(3):
        sync.on_depth(*venue.event())
    assert sync.on_snapshot(*late) is SyncAction.DROPPED
    assert sync.is_synced and sync.counters.snapshots_ignored == 1
    in_flight = venue.event()  # still on the wire when the next snapshot lands
    newer = venue.snapshot()
    after = venue.event()
    assert sync.on_snapshot(*newer) is SyncAction.BUFFERED  # ahead of the stream: reload, bridge
    assert sync.on_depth(*in_flight) is SyncAction.DROPPED  # already inside the snapshot
    assert sync.on_depth(*after) is SyncAction.APPLIED
    assert_book_matches_venue(sync, venue)
    assert sync.counters.gaps == 0 and sync.counters.resyncs == 0 and sync.counters.snapshots == 2


# -- impossible ids, stale runs and bookTicker cross-checks (issue 17, item 7) -------------------


def synced(venue: Venue, rules, **options) -> BookSynchronizer:
    sync = BookSynchronizer(OrderBook(), rules, **options)
    sync.on_snapshot(*venue.snapshot())
    assert sync.on_depth(*venue.event()) is SyncAction.APPLIED
    return sync


def inflate(event: tuple[int, int, int, list, list], by: int) -> tuple[int, int, int, list, list]:
    first, last, previous, bids, asks = event
    return first, last + by, previous, bids, asks


@pytest.mark.parametrize("futures", [False, True])
def test_an_inflated_final_id_is_rejected_and_real_updates_keep_applying(futures):
    venue = Venue(seed=11, futures=futures)
    sync = synced(venue, BINANCE_FUTURES_RULES if futures else BINANCE_SPOT_RULES)
    real = venue.event()
    assert sync.on_depth(*inflate(real, 10**12)) is SyncAction.DROPPED
    assert sync.counters.id_jumps == 1
    assert sync.on_depth(*real) is SyncAction.APPLIED  # the real one still chains
    for _ in range(200):
        assert sync.on_depth(*venue.event()) is SyncAction.APPLIED
    assert sync.is_synced and sync.counters.stale_dropped == 0
    assert_book_matches_venue(sync, venue)


@pytest.mark.parametrize("futures", [False, True])
def test_an_inflated_id_below_the_jump_bound_is_caught_by_the_next_real_update(futures):
    """The issue's repro: once applied, 200 real updates were dropped as stale, 0 resyncs."""
    venue = Venue(seed=12, futures=futures)
    rules = BINANCE_FUTURES_RULES if futures else BINANCE_SPOT_RULES
    sync = synced(venue, rules, max_id_advance=0)  # no bound: the inflated one is applied
    real = venue.event()
    assert sync.on_depth(*inflate(real, 10**9)) is SyncAction.APPLIED
    actions = [sync.on_depth(*venue.event()) for _ in range(200)]
    assert actions[0] is SyncAction.FETCH_SNAPSHOT and not sync.is_synced
    assert sync.counters.id_conflicts == 1 and sync.counters.resyncs == 1
    assert "conflict" in sync.last_gap_reason
    sync.on_snapshot(*venue.snapshot())
    assert sync.on_depth(*venue.event()) is SyncAction.APPLIED
    assert_book_matches_venue(sync, venue)


def test_impossible_ids_are_rejected_and_counted():
    spot = BookSynchronizer(OrderBook(), BINANCE_SPOT_RULES)
    spot.on_snapshot(100, [(1, 1)], [(9, 1)])
    assert spot.on_depth(101, 101, -1, [(2, 1)], []) is SyncAction.APPLIED
    assert spot.on_depth(110, 102, -1, [(3, 1)], []) is SyncAction.DROPPED  # U > u
    futures = BookSynchronizer(OrderBook(), BINANCE_FUTURES_RULES)
    futures.on_snapshot(100, [(1, 1)], [(9, 1)])
    assert futures.on_depth(101, 102, 100, [(2, 1)], []) is SyncAction.APPLIED
    assert futures.on_depth(103, 104, 104, [(3, 1)], []) is SyncAction.DROPPED  # pu >= u
    for sync in (spot, futures):
        assert sync.counters.invalid_ids == 1 and sync.is_synced
        assert sync.book.best_bid() == (2, 1)
    # while buffering too: an impossible event never reaches the book after the snapshot
    fresh = BookSynchronizer(OrderBook(), BINANCE_SPOT_RULES)
    fresh.on_depth(101, 101, -1, [(2, 1)], [])
    assert fresh.on_depth(105, 102, -1, [(3, 1)], []) is SyncAction.DROPPED
    fresh.on_snapshot(100, [(1, 1)], [(9, 1)])
    assert fresh.is_synced and fresh.book.best_bid() == (2, 1) and fresh.counters.invalid_ids == 1


def test_a_run_of_stale_drops_resyncs_after_the_configured_count():
    venue = Venue(seed=13)
    sync = synced(venue, BINANCE_SPOT_RULES, max_stale_drops=5)
    old = [venue.event() for _ in range(6)]
    for event in old:
        sync.on_depth(*event)
    actions = [sync.on_depth(*event) for event in old[:5]]  # replayed: all stale
    assert actions == [SyncAction.DROPPED] * 4 + [SyncAction.FETCH_SNAPSHOT]
    assert sync.counters.stale_runs == 1 and sync.counters.stale_dropped == 5
    assert not sync.is_synced
    # a duplicate now and then is not a run: an applied event resets the count
    venue2 = Venue(seed=14)
    other = synced(venue2, BINANCE_SPOT_RULES, max_stale_drops=2)
    for _ in range(5):
        event = venue2.event()
        assert other.on_depth(*event) is SyncAction.APPLIED
        assert other.on_depth(*event) is SyncAction.DROPPED
    assert other.is_synced and other.counters.stale_runs == 0


def test_a_book_ticker_that_disagrees_with_the_book_at_its_id_resyncs():
    sync = BookSynchronizer(OrderBook(), BINANCE_SPOT_RULES)
    sync.on_snapshot(100, [(5, 1)], [(9, 2)])
    sync.on_depth(101, 101, -1, [(6, 3)], [])
    assert sync.on_ticker(101, 6, 3, 9, 2) is SyncAction.APPLIED  # agrees
    assert sync.on_ticker(90, 1, 1, 2, 2) is SyncAction.DROPPED  # older than the book: says nothing
    # beyond the book: checked when the book reaches its id
    assert sync.on_ticker(103, 7, 1, 9, 2) is SyncAction.BUFFERED
    assert sync.on_depth(102, 103, -1, [(7, 1)], []) is SyncAction.APPLIED
    assert sync.counters.ticker_mismatches == 0 and sync.is_synced
    assert sync.on_ticker(105, 8, 1, 9, 2) is SyncAction.BUFFERED
    assert sync.on_depth(104, 105, -1, [(8, 2)], []) is SyncAction.FETCH_SNAPSHOT  # size disagrees
    assert sync.counters.ticker_mismatches == 1 and not sync.is_synced
    assert "ticker" in sync.last_gap_reason
    at_id = BookSynchronizer(OrderBook(), BINANCE_FUTURES_RULES)
    at_id.on_snapshot(100, [(5, 1)], [(9, 2)])
    assert at_id.on_ticker(100, 5, 1, 8, 2) is SyncAction.FETCH_SNAPSHOT
    assert at_id.counters.ticker_mismatches == 1 and at_id.counters.resyncs == 1
