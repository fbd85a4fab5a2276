"""``hftkit bench venues`` smoke run, and the laws of the recorded-stream producer it measures with.

No speed is asserted here: figures belong to benchmark runs, not to tests.
"""

from __future__ import annotations

import itertools
import math

import orjson
import pytest

from hftkit.bench import venues
from hftkit.bench.harness import BenchOptions
from hftkit.book import BINANCE_FUTURES_RULES, BookSynchronizer, OrderBook, SyncAction
from hftkit.core import Instrument
from hftkit.venues.binance.codec import DepthSnapshot
from hftkit.venues.binance.parse import BinanceParser, instrument_from_snapshot
from hftkit.venues.binance.user_data import UserDataParser

EXPECTED_ROWS = (
    "binance usdm depth diff -> BookDelta",
    "binance usdm depth diff -> BookDelta (vs json.loads + Decimal)",
    "binance usdm trade -> Trade",
    "binance usdm bookTicker -> BookTicker",
    "binance executionReport NEW (recorded) -> OrderUpdate",
    "binance executionReport TRADE -> OrderUpdate + Fill",
    "thalex session.orders -> OrderUpdate + Fill",
    "thalex book. notification -> BookDelta",
    "binance signed new order -> query string",
    "binance signed cancel -> query string",
    "thalex private/insert -> request bytes",
    "feed: recorded stream at TCP speed -> synced book, usdm btcusdt",
)

BTCUSDT = Instrument("binance", "BTCUSDT", "BTC", "USDT", "0.01", "0.00001", "5")


@pytest.fixture(scope="module")
def quick_results():
    return venues.run(BenchOptions(quick=True))


def test_quick_run_yields_every_row_with_positive_figures(quick_results):
    by_name = {result.name: result for result in quick_results}
    assert set(EXPECTED_ROWS) <= set(by_name)
    for result in quick_results:
        assert math.isfinite(result.value) and result.value > 0, result.name
        if result.baseline_value is not None:
            assert result.baseline_value > 0 and result.ratio is not None and result.ratio > 0, result.name


def test_depth_row_carries_its_target_and_the_published_baseline(quick_results):
    (depth,) = [result for result in quick_results if result.name == "binance usdm depth diff -> BookDelta"]
    assert depth.baseline_value == venues.NAUTILUS_DELTA_US
    assert depth.met == (depth.value <= venues.DEPTH_TARGET_US)
    assert depth.detail["levels_per_message"] > 0 and depth.detail["cold_cache_typed_us"] > 0


def test_feed_row_measured_both_consumers(quick_results):
    (feed,) = [result for result in quick_results if result.name.startswith("feed: recorded stream")]
    assert feed.detail["hftkit_cpu_us_per_msg"] > 0
    if venues.optional_import("ccxt") is not None:  # a ccxt failure would show as a skipped baseline
        assert feed.baseline_value > 0 and feed.detail["ccxt_cpu_us_per_msg"] > 0, feed.detail


@pytest.fixture(scope="module")
def stream():
    return venues.RecordedStream(limit=200)


def test_recorded_stream_loops_on_one_unbroken_chain_and_an_exact_book(stream):
    """Two passes and a bit through the synchronizer: no gap, and each pass ends on the same book."""
    snapshot = orjson.loads(stream.snapshot)
    wire = DepthSnapshot(
        last_update_id=snapshot["lastUpdateId"], bids=snapshot["bids"], asks=snapshot["asks"]
    )
    payloads = [orjson.loads(text) for text in itertools.islice(stream.payloads(), 2 * 201 + 5)]
    levels = [level for payload in payloads for level in (*payload["b"], *payload["a"])]
    parser = BinanceParser(instrument_from_snapshot("BTCUSDT", wire, extra_levels=levels))
    sync = BookSynchronizer(OrderBook(), BINANCE_FUTURES_RULES)
    sync.on_snapshot(wire.last_update_id, parser.levels(wire.bids), parser.levels(wire.asks))
    books = []
    for index, payload in enumerate(payloads):
        action = sync.on_depth(
            payload["U"],
            payload["u"],
            payload["pu"],
            parser.levels(payload["b"]),
            parser.levels(payload["a"]),
        )
        assert action is SyncAction.APPLIED, (index, action)
        if index in (199, 400):  # the last diff of pass 0 and of pass 1
            books.append((sync.book.bids(), sync.book.asks()))
    assert sync.is_synced and sync.counters.gaps == 0
    assert books[0] == books[1]


def test_websocket_frame_encodes_the_length_forms():
    for size, header in ((5, 2), (300, 4), (70_000, 10)):
        frame = venues.websocket_frame(b"x" * size)
        assert frame[0] == 0x81 and len(frame) == header + size


def test_baselines_convert_the_same_values_as_hftkit():
    """A baseline that skipped work would flatter our ratios: both sides must yield equal figures."""
    frames = venues.load_market_frames("usdm", "btcusdt_20240808.gz", 50)
    instrument = frames.parser.instrument
    for frame in frames.depth:
        delta = frames.parser.depth_update(venues._depth_frame.decode(frame).data)
        naive = venues.naive_depth(frame)
        assert delta.last_update_id == naive["last_update_id"]
        for ours, theirs in ((delta.bids, naive["bids"]), (delta.asks, naive["asks"])):
            assert ours == [
                (instrument.price_to_ticks(str(price)), instrument.quantity_to_lots(str(size)))
                for price, size in theirs
            ]
    update, fill = UserDataParser("binance", {"BTCUSDT": BTCUSDT}).parse(venues.TRADE_REPORT)
    naive_update, naive_fill = venues.naive_execution_report(venues.TRADE_REPORT)
    assert update.quantity == BTCUSDT.quantity_to_lots(str(naive_update["quantity"]))
    assert fill.price == BTCUSDT.price_to_ticks(str(naive_fill["price"]))


class _RawPathParser(BinanceParser):
    """Stands in for a parser build with a raw-frame depth path (one right, one wrong)."""

    __slots__ = ()

    def depth_frame(self, frame: bytes):
        return self.depth_update(venues._depth_frame.decode(frame).data)

    def decode_depth_frame(self, frame: bytes):
        delta = self.depth_frame(frame)
        return type(delta)(**{**{f: getattr(delta, f) for f in delta.__struct_fields__}, "bids": []})


def test_a_raw_depth_path_is_adopted_only_when_it_agrees_with_the_typed_path():
    frames = venues.load_market_frames("usdm", "btcusdt_20240808.gz", 20)
    parser = _RawPathParser(frames.parser.instrument)
    assert set(venues.raw_depth_paths(parser, frames.depth)) == {"depth_frame"}
