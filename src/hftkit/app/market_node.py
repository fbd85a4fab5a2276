"""A market-data node over recorded Binance traffic: the real hot path, measured per stage.

Each recorded frame goes the way a live frame goes: typed decode (classified, counted
errors), exact tick/lot conversion, snapshot + diff synchronization with gap detection, the
L2 book, microstructure on the new top. Every stage records into a latency histogram, and
every ``bookTicker`` whose update id matches an applied diff is checked against the rebuilt
top of book, so the node proves its books right while it measures them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from hftkit.book.checks import top_matches
from hftkit.book.microstructure import book_imbalance, microprice
from hftkit.book.order_book import OrderBook
from hftkit.book.sync import BookSynchronizer, SyncAction
from hftkit.codec import CodecError, CodecErrorCounters, TypedDecoder
from hftkit.core.types import ContractKind, Instrument
from hftkit.datasets import hftbacktest_file
from hftkit.metrics import Counter, LatencyHistogram, MetricsRegistry
from hftkit.venues.binance.codec import (
    BookTickerEvent,
    CombinedStreamMessage,
    DepthSnapshot,
    DepthUpdate,
    TradeEvent,
)
from hftkit.venues.binance.parse import BinanceParser
from hftkit.venues.binance.recording import BOOK_TICKER, DEPTH, SNAPSHOT, TRADE, line_kind, sequence_rules


@dataclass(frozen=True)
class RecordedMarket:
    """One recorded instrument: the files (one continuous stream) and the instrument grids."""

    label: str
    instrument: Instrument
    files: tuple[Path, ...]

    @property
    def is_futures(self) -> bool:
        return self.instrument.kind is not ContractKind.SPOT


def default_markets() -> list[RecordedMarket]:
    """The real BTCUSDT/ETHUSDT recordings in shared/data: spot (two days, one stream) and USD-M."""

    def spot(symbol: str, base: str) -> Instrument:
        return Instrument("binance", symbol, base, "USDT", "0.01", "0.00000001", "5")

    def usdm(symbol: str, base: str, tick: str) -> Instrument:
        return Instrument("binance-usdm", symbol, base, "USDT", tick, "0.001", "5", ContractKind.PERPETUAL)

    def two_days(name: str) -> tuple[Path, ...]:
        return (
            hftbacktest_file("spot", f"{name}_20240808.gz"),
            hftbacktest_file("spot", f"{name}_20240809.gz"),
        )

    return [
        RecordedMarket("spot BTCUSDT", spot("BTCUSDT", "BTC"), two_days("btcusdt")),
        RecordedMarket("spot ETHUSDT", spot("ETHUSDT", "ETH"), two_days("ethusdt")),
        RecordedMarket(
            "usdm BTCUSDT", usdm("BTCUSDT", "BTC", "0.10"), (hftbacktest_file("usdm", "btcusdt_20240808.gz"),)
        ),
        RecordedMarket(
            "usdm ETHUSDT", usdm("ETHUSDT", "ETH", "0.01"), (hftbacktest_file("usdm", "ethusdt_20240808.gz"),)
        ),
    ]


@dataclass
class MarketStatistics:
    frames: int = 0
    depth_applied: int = 0
    trades: int = 0
    tickers_checked: int = 0
    ticker_mismatches: int = 0
    conversion_errors: int = 0
    last_trade_price: int = 0
    first_frame_ns: int = 0
    last_frame_ns: int = 0
    pending_tickers: dict[int, BookTickerEvent] = field(default_factory=dict)


class MarketPipeline:
    """Decode -> parse -> sync -> book -> microstructure for one recorded instrument."""

    def __init__(
        self, market: RecordedMarket, registry: MetricsRegistry, codec_errors: CodecErrorCounters
    ) -> None:
        self.market = market
        instrument = market.instrument
        self.parser = BinanceParser(instrument)
        self.book = OrderBook(instrument.symbol)
        self.sync = BookSynchronizer(self.book, sequence_rules(market.is_futures))
        self.statistics = MarketStatistics()
        labels = {"market": market.label}
        self.decode_latency: LatencyHistogram = registry.histogram("node_decode_ns", **labels)
        self.book_latency: LatencyHistogram = registry.histogram("node_book_apply_ns", **labels)
        self.total_latency: LatencyHistogram = registry.histogram("node_frame_to_top_ns", **labels)
        self.frames_counter: Counter = registry.counter("node_frames", **labels)
        self._depth: TypedDecoder[CombinedStreamMessage[DepthUpdate]] = TypedDecoder(
            CombinedStreamMessage[DepthUpdate], counters=codec_errors
        )
        self._trade: TypedDecoder[CombinedStreamMessage[TradeEvent]] = TypedDecoder(
            CombinedStreamMessage[TradeEvent], counters=codec_errors
        )
        self._ticker: TypedDecoder[CombinedStreamMessage[BookTickerEvent]] = TypedDecoder(
            CombinedStreamMessage[BookTickerEvent], counters=codec_errors
        )
        self._snapshot: TypedDecoder[DepthSnapshot] = TypedDecoder(DepthSnapshot, counters=codec_errors)
        self.microprice: float | None = None
        self.imbalance: float | None = None

    def on_frame(self, payload: bytes) -> None:
        """Process one recorded frame as if it had just arrived on the socket."""
        received = time.perf_counter_ns()
        statistics = self.statistics
        statistics.frames += 1
        self.frames_counter.inc()
        if not statistics.first_frame_ns:
            statistics.first_frame_ns = received
        statistics.last_frame_ns = received
        try:
            kind = line_kind(payload)
            if kind is SNAPSHOT:
                snapshot = self._snapshot.decode(payload)
                self.decode_latency.record(time.perf_counter_ns() - received)
                delta = self.parser.depth_snapshot(snapshot)
                self.sync.on_snapshot(delta.last_update_id, delta.bids, delta.asks)
                self._after_book(received)
                return
            if kind is DEPTH:
                update = self._depth.decode(payload).data
                decoded = time.perf_counter_ns()
                self.decode_latency.record(decoded - received)
                action = self.sync.on_depth(
                    update.first_update_id,
                    update.last_update_id,
                    update.previous_update_id,
                    self.parser.levels(update.bids),
                    self.parser.levels(update.asks),
                )
                if action is SyncAction.APPLIED:
                    statistics.depth_applied += 1
                    self.book_latency.record(time.perf_counter_ns() - decoded)
                    self._after_book(received)
                    self._check_pending_ticker(update.last_update_id)
            elif kind is TRADE:
                trade = self._trade.decode(payload).data
                self.decode_latency.record(time.perf_counter_ns() - received)
                statistics.trades += 1
                statistics.last_trade_price = self.parser.price(trade.price)
            elif kind is BOOK_TICKER:
                ticker = self._ticker.decode(payload).data
                self.decode_latency.record(time.perf_counter_ns() - received)
                self._on_ticker(ticker)
        except CodecError:
            return  # counted by kind in the shared counters; the feed goes on
        except ValueError:
            statistics.conversion_errors += 1

    def _after_book(self, received_ns: int) -> None:
        if not self.sync.is_synced:
            return
        book = self.book
        self.microprice = microprice(book)
        self.imbalance = book_imbalance(book, 5)
        self.total_latency.record(time.perf_counter_ns() - received_ns)

    def _on_ticker(self, ticker: BookTickerEvent) -> None:
        # most tickers are never checked (no diff ends at their id): their values are converted
        # only when one is
        update_id = ticker.update_id
        last = self.sync.last_update_id
        if update_id == last and self.sync.is_synced:
            self._compare(ticker)
        elif update_id > last:
            pending = self.statistics.pending_tickers
            if len(pending) > 10_000:
                pending.clear()  # the book stopped advancing; never grow without bound
            pending[update_id] = ticker

    def _check_pending_ticker(self, update_id: int) -> None:
        pending = self.statistics.pending_tickers
        if not pending:
            return
        ticker = pending.pop(update_id, None)
        if ticker is not None:
            self._compare(ticker)
        for stale in [key for key in pending if key < update_id]:
            del pending[stale]

    def _compare(self, ticker: BookTickerEvent) -> None:
        parser = self.parser
        bid_price, bid_size = parser.price(ticker.bid_price), parser.size(ticker.bid_quantity)
        ask_price, ask_size = parser.price(ticker.ask_price), parser.size(ticker.ask_quantity)
        statistics = self.statistics
        statistics.tickers_checked += 1
        if not top_matches(
            self.book.best_bid(), self.book.best_ask(), bid_price, bid_size, ask_price, ask_size
        ):
            statistics.ticker_mismatches += 1

    @property
    def messages_per_second(self) -> float:
        statistics = self.statistics
        elapsed = (statistics.last_frame_ns - statistics.first_frame_ns) / 1e9
        return statistics.frames / elapsed if elapsed > 0 else 0.0
