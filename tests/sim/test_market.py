"""Market drivers: recorded-data replay, Thalex bucket aggregation, synthetic flow, pacing."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import math
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.core.types import ContractKind, Instrument, Side
from hftkit.datasets import DataNotFoundError, hftbacktest_file, iter_recording
from hftkit.sim.engine.accounts import Accounts
from hftkit.sim.engine.market import (
    AS_FAST_AS_POSSIBLE,
    ApplyDiff,
    BookSequencer,
    BucketAggregator,
    BucketSink,
    Pacer,
    ReplayDriver,
    ReplayTrade,
    SeedBook,
    SyntheticMarket,
    SyntheticSettings,
    VenueSink,
    grid_ratio,
    perform,
)
from hftkit.sim.engine.matching import MatchingEngine
from hftkit.sim.engine.venue import SimVenue
from hftkit.venues.binance.recording import (
    DecodeProblem,
    RecordedDiff,
    RecordedSnapshot,
    RecordedTicker,
    RecordedTrade,
    RecordingDecoder,
)

SPOT_BTC = Instrument("binance", "BTCUSDT", "BTC", "USDT", "0.01", "0.000001", "5")
USDM_BTC = Instrument("binance", "BTCUSDT", "BTC", "USDT", "0.1", "0.001", "100", kind=ContractKind.PERPETUAL)
THALEX_BTC = Instrument("thalex", "BTC-PERPETUAL", "BTC", "USD", "1", "0.001", kind=ContractKind.PERPETUAL)
TOP = 20


def recording(market: str, name: str) -> Path:
    path = hftbacktest_file(market, name)
    if not path.exists():
        raise DataNotFoundError(f"recording {path} is missing from shared/data")
    return path


def make_venue(*instruments: Instrument) -> SimVenue:
    venue = SimVenue("test", MatchingEngine(Accounts()))
    for instrument in instruments:
        venue.add_instrument(instrument)
    return venue


def independent_rebuild(lines: list[bytes]) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    """Binance's procedure in plain dicts of Decimals, straight from the JSON (no hftkit code)."""
    bids: dict[Decimal, Decimal] = {}
    asks: dict[Decimal, Decimal] = {}
    buffered: list[dict] = []
    snapshot_id: int | None = None
    for body in lines:
        message = orjson.loads(body)
        if "stream" not in message:
            snapshot_id = message["lastUpdateId"]
            for price, size in message["bids"]:
                bids[Decimal(price)] = Decimal(size)
            for price, size in message["asks"]:
                asks[Decimal(price)] = Decimal(size)
            continue
        if "depth" not in message["stream"]:
            continue
        buffered.append(message["data"])
        if snapshot_id is None:
            continue
        for diff in buffered:
            futures = "pu" in diff
            if diff["u"] < snapshot_id or (not futures and diff["u"] == snapshot_id):
                continue
            for book, levels in ((bids, diff["b"]), (asks, diff["a"])):
                for price, size in levels:
                    if Decimal(size) == 0:
                        book.pop(Decimal(price), None)
                    else:
                        book[Decimal(price)] = Decimal(size)
        buffered.clear()
    return bids, asks


def top(book: dict[Decimal, Decimal], descending: bool) -> list[tuple[Decimal, Decimal]]:
    return sorted(book.items(), reverse=descending)[:TOP]


def engine_top(venue: SimVenue, symbol: str) -> tuple[list[tuple[Decimal, Decimal]], ...]:
    instrument = venue.instruments[symbol]
    depth = venue.depth(symbol, TOP)

    def convert(levels: list[tuple[int, int]]) -> list[tuple[Decimal, Decimal]]:
        return [
            (instrument.ticks.to_decimal(price), instrument.lots.to_decimal(size)) for price, size in levels
        ]

    return convert(depth.bids), convert(depth.asks)


def first_lines(path: Path, count: int, *, skip_trades: bool = False) -> list[bytes]:
    lines = (body for _, body in iter_recording(path))
    if skip_trades:
        lines = (body for body in lines if b"@trade" not in body[:40])
    return list(itertools.islice(lines, count))


# replay against an independent rebuild ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("market", "name", "instrument"),
    [("spot", "btcusdt_20240808.gz", SPOT_BTC), ("usdm", "btcusdt_20240808.gz", USDM_BTC)],
)
def test_replayed_depth_equals_an_independent_rebuild_of_the_top_levels(
    market: str, name: str, instrument: Instrument
) -> None:
    lines = first_lines(recording(market, name), 12_000, skip_trades=True)
    venue = make_venue(instrument)
    decoder = RecordingDecoder(instrument)
    sequencer = BookSequencer()
    sinks = [VenueSink(venue, instrument.symbol)]
    checked = 0
    for count, body in enumerate(lines, 1):
        message = decoder.decode(body)
        if message is not None:
            for action in sequencer.feed(message):
                perform(action, sinks)
        if count % 3_000 == 0 and sequencer.seeded:
            bids, asks = independent_rebuild(lines[:count])
            assert engine_top(venue, instrument.symbol) == (top(bids, True), top(asks, False))
            checked += 1
    assert checked == 4
    assert sequencer.gaps == 0
    assert not any(decoder.problems.values())


def test_recorded_book_tickers_agree_with_the_engine_top_of_book_with_trades_replayed() -> None:
    """Trades consume the queue at their price until the next diff restores it, so a few differ."""
    path = recording("usdm", "btcusdt_20240808.gz")
    venue = make_venue(USDM_BTC)
    decoder = RecordingDecoder(USDM_BTC, keep_tickers=True)
    sequencer = BookSequencer()
    sinks = [VenueSink(venue, "BTCUSDT")]
    engine = venue.engine
    pending: dict[int, RecordedTicker] = {}
    agree = disagree = 0

    def check(ticker: RecordedTicker) -> None:
        nonlocal agree, disagree
        expected = ((ticker.bid_price, ticker.bid_quantity), (ticker.ask_price, ticker.ask_quantity))
        if (engine.best_bid("BTCUSDT"), engine.best_ask("BTCUSDT")) == expected:
            agree += 1
        else:
            disagree += 1

    for body in first_lines(path, 40_000):
        message = decoder.decode(body)
        if isinstance(message, RecordedTicker):
            if message.update_id == sequencer.last_update_id:
                check(message)
            elif sequencer.last_update_id is None or message.update_id > sequencer.last_update_id:
                pending[message.update_id] = message  # the ticker can arrive before its diff
            continue
        if message is None:
            continue
        for action in sequencer.feed(message):
            perform(action, sinks)
        if isinstance(message, RecordedDiff) and sequencer.last_update_id == message.last_update_id:
            early = pending.pop(message.last_update_id, None)
            if early is not None:
                check(early)
            pending = {key: value for key, value in pending.items() if key > message.last_update_id}
    rate = agree / (agree + disagree)
    print(f"bookTicker agreement: {agree}/{agree + disagree} = {rate:.1%}")
    assert agree + disagree > 150
    assert rate > 0.95


async def test_replay_driver_loops_with_increasing_update_ids_and_reseeds_each_pass(tmp_path: Path) -> None:
    lines = first_lines(recording("spot", "btcusdt_20240808.gz"), 3_000, skip_trades=True)
    short = tmp_path / "btcusdt_short.gz"
    with gzip.open(short, "wb") as handle:
        for index, body in enumerate(lines):
            handle.write(b"%d " % (1_000_000 + index) + body + b"\n")
    venue = make_venue(SPOT_BTC)
    batches: list[int] = []
    venue.add_listener(lambda event: batches.append(event.update_id) if hasattr(event, "update_id") else None)
    driver = ReplayDriver(
        "spot", [short], SPOT_BTC, [VenueSink(venue, "BTCUSDT")], speed=AS_FAST_AS_POSSIBLE, max_passes=2
    )
    await driver.run()
    status = driver.snapshot()
    assert status["loops"] == 2 and status["seeds"] == 2 and status["gaps"] == 0
    assert batches == list(range(1, len(batches) + 1))  # consecutive across the loop
    bids, asks = independent_rebuild(lines)
    assert engine_top(venue, "BTCUSDT") == (top(bids, True), top(asks, False))


async def test_a_paused_replay_resumes_at_once_when_its_speed_is_raised(tmp_path: Path) -> None:
    """Found by the chaos test: a driver asleep for a delay computed while paused (years at a
    speed of 1e-9) kept sleeping after the speed went back up, freezing the market for good."""
    lines = first_lines(recording("spot", "btcusdt_20240808.gz"), 400, skip_trades=True)
    short = tmp_path / "btcusdt_short.gz"
    with gzip.open(short, "wb") as handle:
        for index, body in enumerate(lines):  # one message every 10 ms of data time
            handle.write(b"%d " % (1_000_000_000 + index * 10_000_000) + body + b"\n")
    venue = make_venue(SPOT_BTC)
    driver = ReplayDriver("spot", [short], SPOT_BTC, [VenueSink(venue, "BTCUSDT")], speed=1.0, max_passes=1)
    task = asyncio.create_task(driver.run())
    try:
        await asyncio.sleep(0.2)
        driver.set_speed(1e-9)  # paused: the next message is years away
        await asyncio.sleep(0.2)
        paused_at = driver.snapshot()["total_messages"]
        await asyncio.sleep(0.2)
        assert driver.snapshot()["total_messages"] == paused_at
        driver.set_speed(100.0)
        await asyncio.wait_for(task, 5)  # the rest of the pass, at 100x: well under a second
    finally:
        task.cancel()
    assert driver.snapshot()["loops"] == 1 and driver.snapshot()["total_messages"] > paused_at


# decoding and sequencing ------------------------------------------------------------------------------


def test_decoder_counts_malformed_and_off_grid_lines_and_keeps_going() -> None:
    decoder = RecordingDecoder(USDM_BTC)
    assert decoder.decode(b"{not json") is None
    off_grid = (
        b'{"stream":"btcusdt@trade","data":'
        b'{"e":"trade","E":1,"T":1,"s":"BTCUSDT","t":1,"p":"1.05","q":"1","m":true}}'
    )
    assert decoder.decode(off_grid) is None
    trade = decoder.decode(off_grid.replace(b"1.05", b"1.5"))
    assert trade == RecordedTrade(trade_id=1, price=15, quantity=1000, aggressor=Side.SELL)
    assert decoder.problems[DecodeProblem.MALFORMED] == 1
    assert decoder.problems[DecodeProblem.OFF_GRID] == 1


def test_decoder_converts_a_diff_from_its_raw_levels_and_counts_bad_ones() -> None:
    decoder = RecordingDecoder(USDM_BTC)
    line = (
        b'{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT",'
        b'"U":5,"u":7,"pu":4,"b":[["61000.1","0.010"],["61000.0","0"]],"a":[["61000.2","1.5"]]}}'
    )
    assert decoder.decode(line) == RecordedDiff(
        first_update_id=5,
        last_update_id=7,
        previous_update_id=4,
        bids=((610001, 10), (610000, 0)),
        asks=((610002, 1500),),
    )
    assert decoder.decode(line.replace(b'"61000.2"', b'"61000.25"')) is None  # off the tick grid
    assert decoder.decode(line.replace(b'"61000.2"', b'"0.0"')) is None  # no level at price 0
    assert decoder.decode(line.replace(b'"61000.2"', b"61000.2")) is None  # a number, not text
    assert decoder.problems[DecodeProblem.OFF_GRID] == 2
    assert decoder.problems[DecodeProblem.MALFORMED] == 1


def diff(first: int, last: int, previous: int = -1, bids=((100, 1),)) -> RecordedDiff:  # type: ignore[no-untyped-def]
    return RecordedDiff(
        first_update_id=first, last_update_id=last, previous_update_id=previous, bids=bids, asks=()
    )


def test_sequencer_buffers_until_the_snapshot_drops_stale_diffs_and_counts_gaps() -> None:
    sequencer = BookSequencer()
    assert sequencer.feed(diff(1, 5)) == []
    assert sequencer.feed(diff(6, 9)) == []
    assert sequencer.feed(RecordedTrade(trade_id=1, price=1, quantity=1, aggressor=Side.BUY)) == []
    actions = sequencer.feed(RecordedSnapshot(last_update_id=7, bids=((99, 2),), asks=()))
    assert actions == [SeedBook(((99, 2),), ()), ApplyDiff(((100, 1),), ())]  # 1..5 is stale
    assert sequencer.dropped_stale == 1 and sequencer.dropped_trades == 1
    assert sequencer.feed(diff(10, 12)) == [ApplyDiff(((100, 1),), ())]
    assert sequencer.gaps == 0
    sequencer.feed(diff(20, 21))  # 13..19 missing
    assert sequencer.gaps == 1
    assert sequencer.feed(RecordedTrade(trade_id=2, price=5, quantity=3, aggressor=Side.SELL)) == [
        ReplayTrade(5, 3, Side.SELL)
    ]


def test_sequencer_follows_the_futures_rule_with_previous_update_ids() -> None:
    sequencer = BookSequencer()
    sequencer.feed(diff(1, 5, 0))
    sequencer.feed(diff(6, 10, 5))
    actions = sequencer.feed(RecordedSnapshot(last_update_id=10, bids=(), asks=()))
    assert len(actions) == 2  # u == L is kept on futures (u < L is stale)
    sequencer.feed(diff(11, 15, 10))
    assert sequencer.gaps == 0
    sequencer.feed(diff(17, 20, 16))
    assert sequencer.gaps == 1


# Thalex buckets ----------------------------------------------------------------------------------------

fine_levels = st.lists(
    st.tuples(st.integers(min_value=1, max_value=400), st.integers(min_value=0, max_value=50)), max_size=12
)


def from_scratch(fine: dict[int, int], bucket_of, factor: int) -> dict[int, int]:  # type: ignore[no-untyped-def]
    buckets: dict[int, int] = {}
    for price, size in fine.items():
        buckets[bucket_of(price)] = buckets.get(bucket_of(price), 0) + size * factor
    return buckets


@settings(max_examples=150, deadline=None)
@given(
    ratio=st.integers(min_value=1, max_value=12),
    factor=st.integers(min_value=1, max_value=3),
    diffs=st.lists(st.tuples(fine_levels, fine_levels), min_size=1, max_size=15),
)
def test_bucket_sums_always_equal_the_fine_levels_they_fold(
    ratio: int, factor: int, diffs: list[tuple[list[tuple[int, int]], list[tuple[int, int]]]]
) -> None:
    aggregator = BucketAggregator(ratio, factor)
    coarse_bids: dict[int, int] = {}
    coarse_asks: dict[int, int] = {}
    fine_bids: dict[int, int] = {}
    fine_asks: dict[int, int] = {}
    for bids, asks in diffs:
        changed_bids, changed_asks = aggregator.apply(bids, asks)
        for fine, levels in ((fine_bids, bids), (fine_asks, asks)):
            for price, size in levels:
                if size:
                    fine[price] = size
                else:
                    fine.pop(price, None)
        for coarse, changed in ((coarse_bids, changed_bids), (coarse_asks, changed_asks)):
            for price, size in changed:
                if size:
                    coarse[price] = size
                else:
                    coarse.pop(price, None)
        # the published changes rebuild exactly the from-scratch aggregation
        assert coarse_bids == from_scratch(fine_bids, lambda p: p // ratio, factor)
        assert coarse_asks == from_scratch(fine_asks, lambda p: -(-p // ratio), factor)
        assert sum(coarse_bids.values()) == factor * sum(fine_bids.values())
        assert sum(coarse_asks.values()) == factor * sum(fine_asks.values())
        assert [price for price, _ in changed_bids] == sorted({p for p, _ in changed_bids}, reverse=True)


@given(bid=st.integers(min_value=1, max_value=10_000), spread=st.integers(min_value=1, max_value=50))
def test_buckets_never_cross_an_uncrossed_fine_book(bid: int, spread: int) -> None:
    aggregator = BucketAggregator(10)
    assert aggregator.bid_bucket(bid) < aggregator.ask_bucket(bid + spread)


def test_grid_ratio_refuses_grids_that_cannot_fold_exactly() -> None:
    assert grid_ratio(THALEX_BTC, USDM_BTC) == (10, 1)
    with pytest.raises(ValueError, match="finer"):
        grid_ratio(THALEX_BTC, SPOT_BTC)
    coarse_three = Instrument("x", "X", "BTC", "USD", "0.3", "0.001")
    with pytest.raises(ValueError, match="whole multiple"):
        grid_ratio(USDM_BTC, coarse_three)


def test_thalex_book_from_the_usdm_recording_folds_the_rebuilt_book_exactly() -> None:
    lines = first_lines(recording("usdm", "btcusdt_20240808.gz"), 8_000, skip_trades=True)
    venue = make_venue(THALEX_BTC)
    sink = BucketSink(venue, "BTC-PERPETUAL", USDM_BTC)
    decoder = RecordingDecoder(USDM_BTC)
    sequencer = BookSequencer()
    for body in lines:
        message = decoder.decode(body)
        if message is not None:
            for action in sequencer.feed(message):
                perform(action, [sink])
    bids, asks = independent_rebuild(lines)
    expected_bids: dict[int, int] = {}
    expected_asks: dict[int, int] = {}
    for price, size in bids.items():
        bucket = math.floor(price)
        expected_bids[bucket] = expected_bids.get(bucket, 0) + int(size * 1000)
    for price, size in asks.items():
        bucket = math.ceil(price)  # Decimal // truncates toward zero: no ceiling trick here
        expected_asks[bucket] = expected_asks.get(bucket, 0) + int(size * 1000)
    depth = venue.depth("BTC-PERPETUAL")
    assert dict(depth.bids) == expected_bids
    assert dict(depth.asks) == expected_asks
    assert depth.bids[0][0] < depth.asks[0][0]


def test_trades_map_to_the_bucket_of_the_side_they_hit() -> None:
    venue = make_venue(THALEX_BTC)
    sink = BucketSink(venue, "BTC-PERPETUAL", USDM_BTC)
    sink.seed(((618002, 5000),), ((618003, 4000),))  # 61800.2 / 61800.3
    assert venue.depth("BTC-PERPETUAL").bids == [(61800, 5000)]
    assert venue.depth("BTC-PERPETUAL").asks == [(61801, 4000)]
    trades: list[object] = []
    venue.add_listener(trades.append)
    sink.trade(618003, 1000, Side.BUY)
    sink.trade(618002, 500, Side.SELL)
    prints = [event for event in trades if type(event).__name__ == "TradePrint"]
    assert [(t.price, t.quantity, t.aggressor) for t in prints] == [
        (61801, 1000, Side.BUY),
        (61800, 500, Side.SELL),
    ]


# synthetic ------------------------------------------------------------------------------------------------

SYNTHETIC = {
    "AAAUSDT": SyntheticSettings(start_price=10_000, levels=10),
    "BBBUSDT": SyntheticSettings(start_price=500, levels=5, trade_rate=20.0, move_rate=10.0, move_ticks=2),
}


def synthetic_run(seed: int, count: int) -> list[object]:
    market = SyntheticMarket(SYNTHETIC, seed=seed)
    return [*market.initial(), *(market.next() for _ in range(count))]


def test_synthetic_flow_is_identical_for_a_seed_and_differs_across_seeds() -> None:
    first = synthetic_run(7, 3_000)
    assert first == synthetic_run(7, 3_000)
    assert first != synthetic_run(8, 3_000)
    kinds = {type(operation.action).__name__ for operation in first}  # type: ignore[attr-defined]
    assert kinds == {"SeedBook", "ApplyDiff", "ReplayTrade"}
    times = [operation.time_ns for operation in first]  # type: ignore[attr-defined]
    assert times == sorted(times)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_synthetic_books_stay_uncrossed_and_the_engine_follows_the_generator(seed: int) -> None:
    instruments = [Instrument("sim", symbol, symbol[:3], "USDT", "0.01", "0.001") for symbol in SYNTHETIC]
    venue = make_venue(*instruments)
    market = SyntheticMarket(SYNTHETIC, seed=seed)
    sinks = {symbol: [VenueSink(venue, symbol)] for symbol in SYNTHETIC}
    for operation in [*market.initial(), *(market.next() for _ in range(400))]:
        perform(operation.action, sinks[operation.symbol])
    for symbol, settings_ in SYNTHETIC.items():
        bids, asks = market.book(symbol)
        depth = venue.depth(symbol)
        assert (tuple(depth.bids), tuple(depth.asks)) == (bids, asks)
        assert bids and asks and bids[0][0] < asks[0][0]
        assert len(bids) <= settings_.levels and len(asks) <= settings_.levels
        assert all(size > 0 for _, size in bids + asks)


def test_synthetic_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="rates"):
        SyntheticSettings(start_price=1000, limit_rate=0, cancel_rate=0, trade_rate=0, move_rate=0)
    with pytest.raises(ValueError, match="start_price"):
        SyntheticSettings(start_price=5, levels=20)


# pacing -----------------------------------------------------------------------------------------------------


def test_pacer_schedules_from_the_anchor_without_drift_and_reanchors_on_speed_change() -> None:
    pacer = Pacer(2.0)
    second = 1_000_000_000
    assert pacer.delay_ns(100 * second, 0) == 0  # anchors
    # due at 0.5 s for data +1 s at x2, whatever time the previous sleep really took
    assert pacer.delay_ns(101 * second, second // 10) == second // 2 - second // 10
    assert pacer.delay_ns(102 * second, 3 * second) == 0  # late: no catch-up debt carried
    assert pacer.delay_ns(104 * second, 3 * second) == 0  # due at 2 s from the anchor, already past
    pacer.set_speed(1.0, 10 * second)  # re-anchor at data 104 s, now 10 s
    assert pacer.delay_ns(105 * second, 10 * second) == second
    pacer.set_speed(AS_FAST_AS_POSSIBLE, 10 * second)
    assert pacer.delay_ns(200 * second, 10 * second) == 0
    with pytest.raises(ValueError):
        pacer.set_speed(0, 0)
