"""``hftkit bench book``: the L2 book on real Binance depth recordings, beside its baselines.

Figures, each a median over repeated runs; a baseline's runs alternate with ours, so a
noisy neighbour's bursts land on both sides of a comparison alike:

* apply + top read: every recorded diff applied to a book built from the recorded snapshot,
  best bid and best ask read after each diff; levels prebuilt as ints (level updates/s).
  Baselines: a dict + ``sortedcontainers.SortedDict`` book fed the same ints; cryptofeed's C
  book (``order_book``) and NautilusTrader's OrderBook when installed.
* decode + apply end to end: raw frame bytes -> msgspec typed decode -> cached string->int
  conversion -> synchronizer (sequence check) -> book -> top read (messages/s). Baseline:
  ``json.loads`` + ``Decimal`` + SortedDict with the same sequence check.
* best bid/ask read latency (ns).
* depth sensitivity: the same level updates with ~10 levels per side and with 5,000 resting
  levels per side behind them (slowdown ratio).
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import msgspec

from hftkit.bench.harness import BenchOptions, BenchResult, compare, optional_import, time_per_call
from hftkit.book.order_book import Level, OrderBook
from hftkit.book.sync import BookSynchronizer
from hftkit.datasets import hftbacktest_file, iter_recording
from hftkit.venues.binance.codec import CombinedStreamMessage, DepthSnapshot, DepthUpdate
from hftkit.venues.binance.parse import BinanceParser
from hftkit.venues.binance.recording import (
    DEPTH,
    SNAPSHOT,
    SNAPSHOT_DECODER,
    is_futures,
    line_kind,
    recorded_instrument,
    sequence_rules,
)

PEERS = ("sortedcontainers", "order-book", "nautilus_trader")

RECORDINGS = (("spot", "btcusdt_20240808.gz"), ("usdm", "btcusdt_20240808.gz"))
QUICK_DIFFS = 400  # diffs replayed per figure in a smoke run
DEEP_LEVELS = 5_000
SHALLOW_LEVELS = 10
DEPTH_REPEATS = 101  # samples per book in the depth figure (each replay is ~1 ms)

StateT = TypeVar("StateT")

_FRAME = msgspec.json.Decoder(CombinedStreamMessage[DepthUpdate])


@dataclass
class Recording:
    """One recording prepared for benchmarking: snapshot, applied diffs as ints and as bytes."""

    market: str
    symbol: str
    snapshot: DepthSnapshot
    parser: BinanceParser
    snapshot_bids: list[Level]
    snapshot_asks: list[Level]
    diffs: list[tuple[list[Level], list[Level]]]
    raw_diffs: list[DepthUpdate]
    frames: list[bytes]
    futures: bool

    @property
    def level_updates(self) -> int:
        return sum(len(bids) + len(asks) for bids, asks in self.diffs)


def load_recording(market: str, name: str, limit: int | None = None) -> Recording:
    """Decode a recording once; keep the diffs a synced book applies (those after the snapshot)."""
    snapshot: DepthSnapshot | None = None
    updates: list[tuple[DepthUpdate, bytes]] = []
    for _, body in iter_recording(hftbacktest_file(market, name)):
        kind = line_kind(body)
        if kind is SNAPSHOT:
            snapshot = SNAPSHOT_DECODER.decode(body)
        elif kind is DEPTH:
            updates.append((_FRAME.decode(body).data, body))
    if snapshot is None:
        raise ValueError(f"{market}/{name} holds no depth snapshot")
    futures = is_futures(updates[0][0])
    first_kept = snapshot.last_update_id + sequence_rules(futures).stale_offset
    kept = [(update, body) for update, body in updates if update.last_update_id >= first_kept]
    if limit is not None:
        kept = kept[:limit]
    instrument = recorded_instrument(updates[0][0].symbol, snapshot, [update for update, _ in kept])
    parser = BinanceParser(instrument)
    return Recording(
        market=market,
        symbol=updates[0][0].symbol,
        snapshot=snapshot,
        parser=parser,
        snapshot_bids=parser.levels(snapshot.bids),
        snapshot_asks=parser.levels(snapshot.asks),
        diffs=[(parser.levels(update.bids), parser.levels(update.asks)) for update, _ in kept],
        raw_diffs=[update for update, _ in kept],
        frames=[body for _, body in kept],
        futures=futures,
    )


def median_ns_per_item(
    prepare: Callable[[], StateT], run: Callable[[StateT], int], options: BenchOptions
) -> float:
    """Median ns per item of ``run(state)``, with ``prepare()`` (untimed) before each repeat.

    The harness's ``time_per_item`` times the whole batch; a book must be rebuilt from the
    snapshot before each replay, and that rebuild is not what is being measured.
    """
    options = options.scaled()
    run(prepare())  # warm code paths and conversion caches
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(options.repeat):
            state = prepare()
            start = time.perf_counter_ns()
            items = run(state)
            samples.append((time.perf_counter_ns() - start) / max(items, 1))
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(samples)


# books under test ------------------------------------------------------------------------


def _hftkit_prepare(bids: list[Level], asks: list[Level]) -> Callable[[], OrderBook]:
    def prepare() -> OrderBook:
        book = OrderBook()
        book.apply_snapshot(bids, asks)
        return book

    return prepare


def _hftkit_run(diffs: list[tuple[list[Level], list[Level]]], levels: int) -> Callable[[OrderBook], int]:
    def run(book: OrderBook) -> int:
        apply = book.apply_delta
        best_bid = book.best_bid
        best_ask = book.best_ask
        for bids, asks in diffs:
            apply(bids, asks)
            best_bid()
            best_ask()
        return levels

    return run


class SortedDictBook:
    """The usual pure-Python baseline: one SortedDict per side (sortedcontainers)."""

    def __init__(self, bids: list[Level], asks: list[Level]) -> None:
        from sortedcontainers import SortedDict

        self.bids = SortedDict({price: size for price, size in bids if size})
        self.asks = SortedDict({price: size for price, size in asks if size})

    def apply(self, bids: list[Level], asks: list[Level]) -> None:
        side = self.bids
        for price, size in bids:
            if size:
                side[price] = size
            else:
                side.pop(price, None)
        side = self.asks
        for price, size in asks:
            if size:
                side[price] = size
            else:
                side.pop(price, None)

    def best_bid(self) -> Level | None:
        return self.bids.peekitem(-1) if self.bids else None

    def best_ask(self) -> Level | None:
        return self.asks.peekitem(0) if self.asks else None


def _sorted_dict_run(diffs: list[tuple[list[Level], list[Level]]], levels: int) -> Callable[[Any], int]:
    def run(book: SortedDictBook) -> int:
        apply = book.apply
        best_bid = book.best_bid
        best_ask = book.best_ask
        for bids, asks in diffs:
            apply(bids, asks)
            best_bid()
            best_ask()
        return levels

    return run


def _cryptofeed_figure(recording: Recording, options: BenchOptions) -> float | None:
    """ns per level update of cryptofeed's C book (``pip install order-book``), or None."""
    module = optional_import("order_book")
    if module is None:
        return None

    def prepare() -> Any:
        book = module.OrderBook()
        for price, size in recording.snapshot_bids:
            book.bids[price] = size
        for price, size in recording.snapshot_asks:
            book.asks[price] = size
        return book

    def run(book: Any) -> int:
        book_bids = book.bids
        book_asks = book.asks
        for bids, asks in recording.diffs:
            for price, size in bids:
                if size:
                    book_bids[price] = size
                elif price in book_bids:
                    del book_bids[price]
            for price, size in asks:
                if size:
                    book_asks[price] = size
                elif price in book_asks:
                    del book_asks[price]
            book_bids.index(0)
            book_asks.index(0)
        return recording.level_updates

    try:
        return median_ns_per_item(prepare, run, options)
    except Exception:  # a peer whose API moved is skipped, never a failed suite
        return None


def _nautilus_figure(recording: Recording, options: BenchOptions) -> float | None:
    """ns per level update of NautilusTrader's L2 OrderBook (orders prebuilt), or None."""
    if optional_import("nautilus_trader") is None:
        return None
    try:
        from nautilus_trader.model.book import OrderBook as NautilusBook
        from nautilus_trader.model.data import BookOrder
        from nautilus_trader.model.enums import BookType, OrderSide
        from nautilus_trader.model.identifiers import InstrumentId
        from nautilus_trader.model.objects import Price, Quantity

        instrument_id = InstrumentId.from_str(f"{recording.symbol}.BINANCE")

        def order(side: Any, price: str, size: str) -> Any:
            return BookOrder(side, Price.from_str(price), Quantity.from_str(size), 0)

        snapshot = [order(OrderSide.BUY, p, q) for p, q in recording.snapshot.bids] + [
            order(OrderSide.SELL, p, q) for p, q in recording.snapshot.asks
        ]
        diffs = [
            [(order(OrderSide.BUY, p, q), float(q) == 0) for p, q in update.bids]
            + [(order(OrderSide.SELL, p, q), float(q) == 0) for p, q in update.asks]
            for update in recording.raw_diffs
        ]

        def prepare() -> Any:
            book = NautilusBook(instrument_id, BookType.L2_MBP)
            for item in snapshot:
                book.add(item, 0, 0)
            return book

        def run(book: Any) -> int:
            update = book.update
            delete = book.delete
            for levels in diffs:
                for item, is_delete in levels:
                    if is_delete:
                        delete(item, 0, 0)
                    else:
                        update(item, 0, 0)
                book.best_bid_price()
                book.best_ask_price()
            return recording.level_updates

        return median_ns_per_item(prepare, run, options)
    except Exception:  # a peer whose API moved is skipped, never a failed suite
        return None


# figures -----------------------------------------------------------------------------------


def _apply_figures(recording: Recording, options: BenchOptions) -> list[BenchResult]:
    levels = recording.level_updates
    name = f"book apply + top read, {recording.market} {recording.symbol.lower()}"
    ours, baseline, _ = paired_medians(
        (
            _hftkit_prepare(recording.snapshot_bids, recording.snapshot_asks),
            _hftkit_run(recording.diffs, levels),
        ),
        (
            lambda: SortedDictBook(recording.snapshot_bids, recording.snapshot_asks),
            _sorted_dict_run(recording.diffs, levels),
        ),
        options.scaled().repeat,
    )
    rate = 1e9 / ours
    detail = {"diffs": len(recording.diffs), "level_updates": levels, "ns_per_level": round(ours, 1)}
    results = [
        compare(
            name,
            rate,
            "level updates/s",
            baseline="dict + SortedDict book",
            baseline_value=1e9 / baseline,
            target=">= 8,000,000 level updates/s",
            met=rate >= 8_000_000,
            **detail,
        )
    ]
    for peer, figure in (
        ("cryptofeed order_book (C)", _cryptofeed_figure(recording, options)),
        ("NautilusTrader OrderBook", _nautilus_figure(recording, options)),
    ):
        if figure is not None:
            results.append(
                compare(
                    f"{name} vs {peer}", rate, "level updates/s", baseline=peer, baseline_value=1e9 / figure
                )
            )
    return results


def _end_to_end_figure(recording: Recording, options: BenchOptions) -> BenchResult:
    frames = recording.frames
    rules = sequence_rules(recording.futures)
    snapshot_id = recording.snapshot.last_update_id
    misses: list[int] = []

    def prepare() -> tuple[BookSynchronizer, BinanceParser]:
        # a cold conversion cache per run (only the snapshot converted, as a live start
        # would): the figure includes every first-time string parse of the session
        parser = BinanceParser(recording.parser.instrument)
        sync = BookSynchronizer(OrderBook(), rules)
        sync.on_snapshot(
            snapshot_id, parser.levels(recording.snapshot.bids), parser.levels(recording.snapshot.asks)
        )
        return sync, parser

    def run(state: tuple[BookSynchronizer, BinanceParser]) -> int:
        sync, parser = state
        decode = _FRAME.decode
        levels = parser.levels
        on_depth = sync.on_depth
        book = sync.book
        for frame in frames:
            update = decode(frame).data
            on_depth(
                update.first_update_id,
                update.last_update_id,
                update.previous_update_id,
                levels(update.bids),
                levels(update.asks),
            )
            book.best_bid()
            book.best_ask()
        if not sync.is_synced or sync.counters.gaps:
            raise RuntimeError("benchmark replay lost sync: the figures would be meaningless")
        misses.append(parser.price.misses + parser.size.misses)
        return len(frames)

    def prepare_baseline() -> list[Any]:
        from sortedcontainers import SortedDict

        bids = SortedDict({Decimal(p): Decimal(q) for p, q in recording.snapshot.bids})
        asks = SortedDict({Decimal(p): Decimal(q) for p, q in recording.snapshot.asks})
        return [bids, asks, snapshot_id]

    def run_baseline(state: list[Any]) -> int:
        bids, asks, last = state
        loads = json.loads
        futures = recording.futures
        for frame in frames:
            data = loads(frame)["data"]
            if last != snapshot_id and (data["pu"] != last if futures else data["U"] != last + 1):
                raise RuntimeError("baseline replay lost sync")
            for price, size in data["b"]:
                quantity = Decimal(size)
                if quantity:
                    bids[Decimal(price)] = quantity
                else:
                    bids.pop(Decimal(price), None)
            for price, size in data["a"]:
                quantity = Decimal(size)
                if quantity:
                    asks[Decimal(price)] = quantity
                else:
                    asks.pop(Decimal(price), None)
            last = data["u"]
            bids.peekitem(-1)
            asks.peekitem(0)
        return len(frames)

    ours, baseline, _ = paired_medians(
        (prepare, run), (prepare_baseline, run_baseline), options.scaled().repeat
    )
    rate = 1e9 / ours
    baseline_rate = 1e9 / baseline
    return compare(
        f"decode + sync + apply + top, {recording.market} {recording.symbol.lower()}",
        rate,
        "msg/s",
        baseline="json.loads + Decimal + SortedDict",
        baseline_value=baseline_rate,
        target=">= 3x baseline",
        met=rate >= 3 * baseline_rate,
        messages=len(frames),
        ns_per_message=round(ours, 1),
        conversion_cache_hit_rate=round(1 - misses[-1] / (2 * recording.level_updates), 3),
    )


def _read_figures(recording: Recording, options: BenchOptions) -> list[BenchResult]:
    book = _hftkit_prepare(recording.snapshot_bids, recording.snapshot_asks)()
    _hftkit_run(recording.diffs, 0)(book)  # read a book in its real end state
    baseline = SortedDictBook(recording.snapshot_bids, recording.snapshot_asks)
    _sorted_dict_run(recording.diffs, 0)(baseline)
    results = []
    for label, ours, theirs in (
        ("best bid", book.best_bid, partial(baseline.bids.peekitem, -1)),
        ("best ask", book.best_ask, partial(baseline.asks.peekitem, 0)),
    ):
        value = time_per_call(ours, options)
        results.append(
            compare(
                f"{label} read, {recording.market} {recording.symbol.lower()}",
                value,
                "ns",
                baseline="SortedDict.peekitem",
                baseline_value=time_per_call(theirs, options),
                target="<= 100 ns",
                met=value <= 100,
                levels=len(book),
            )
        )
    return results


def _depth_figure(recording: Recording, options: BenchOptions) -> BenchResult:
    """Same level updates with ~10 levels per side, then with 5,000 resting levels behind them.

    The updates are the recorded ones restricted to the price band of the snapshot's top 10
    levels per side, so both books see identical operations; the deep book additionally
    holds 5,000 levels per side outside the band (the real snapshot's, padded on the tick
    grid beyond its worst levels).
    """
    bids, asks = recording.snapshot_bids, recording.snapshot_asks
    low = bids[SHALLOW_LEVELS - 1][0]
    high = asks[SHALLOW_LEVELS - 1][0]
    band_diffs = [
        (
            [level for level in diff_bids if low <= level[0] <= high],
            [level for level in diff_asks if low <= level[0] <= high],
        )
        for diff_bids, diff_asks in recording.diffs
    ]
    band_diffs = [diff for diff in band_diffs if diff[0] or diff[1]]
    levels = sum(len(b) + len(a) for b, a in band_diffs)
    shallow_bids, shallow_asks = bids[:SHALLOW_LEVELS], asks[:SHALLOW_LEVELS]
    step = max(1, (bids[0][0] - bids[-1][0]) // max(len(bids), 1))
    deep_bids = list(bids) + [
        (bids[-1][0] - step * (i + 1), 1) for i in range(max(0, DEEP_LEVELS - len(bids)))
    ]
    deep_asks = list(asks) + [
        (asks[-1][0] + step * (i + 1), 1) for i in range(max(0, DEEP_LEVELS - len(asks)))
    ]
    run = _hftkit_run(band_diffs, levels)
    # one replay of the band is about a millisecond: take many samples, shallow and deep
    # interleaved so that machine noise hits both alike
    repeat = 5 if options.quick else max(options.repeat, DEPTH_REPEATS)
    shallow, deep, best_case_slowdown = paired_medians(
        (_hftkit_prepare(shallow_bids, shallow_asks), run),
        (_hftkit_prepare(deep_bids, deep_asks), run),
        repeat,
    )
    sorted_run = _sorted_dict_run(band_diffs, levels)
    sorted_shallow, sorted_deep, _ = paired_medians(
        (lambda: SortedDictBook(shallow_bids, shallow_asks), sorted_run),
        (lambda: SortedDictBook(deep_bids, deep_asks), sorted_run),
        repeat,
    )
    probe = _hftkit_prepare(shallow_bids, shallow_asks)()
    run(probe)
    slowdown = deep / shallow
    return compare(
        f"depth 10 -> 5,000 levels/side slowdown, {recording.market} {recording.symbol.lower()}",
        slowdown,
        "x",
        target="<= 1.5x",
        met=slowdown <= 1.5,
        fastest_run_slowdown=round(best_case_slowdown, 3),
        shallow_ns_per_level=round(shallow, 1),
        deep_ns_per_level=round(deep, 1),
        shallow_levels_at_end=len(probe),
        level_updates=levels,
        sorted_dict_slowdown=round(sorted_deep / sorted_shallow, 3),
    )


def paired_medians(
    first: tuple[Callable[[], Any], Callable[[Any], int]],
    second: tuple[Callable[[], Any], Callable[[Any], int]],
    repeat: int,
) -> tuple[float, float, float]:
    """Median ns per item of two (prepare, run) pairs, sampled alternately.

    Alternating puts a noisy neighbour's bursts on both sides of a comparison alike. Also
    returns the ratio of the fastest samples (second / first): on a shared machine the
    fastest run is the least disturbed one, a cross-check of the median ratio.
    """
    for prepare, run in (first, second):
        run(prepare())  # warm code paths and conversion caches
    samples: tuple[list[float], list[float]] = ([], [])
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            for (prepare, run), collected in zip((first, second), samples, strict=True):
                state = prepare()
                start = time.perf_counter_ns()
                items = run(state)
                collected.append((time.perf_counter_ns() - start) / max(items, 1))
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(samples[0]), statistics.median(samples[1]), min(samples[1]) / min(samples[0])


def run(options: BenchOptions) -> list[BenchResult]:
    limit = QUICK_DIFFS if options.quick else None
    recordings = RECORDINGS[:1] if options.quick else RECORDINGS
    results: list[BenchResult] = []
    for market, name in recordings:
        recording = load_recording(market, name, limit)
        results.extend(_apply_figures(recording, options))
        results.append(_end_to_end_figure(recording, options))
        results.extend(_read_figures(recording, options))
        results.append(_depth_figure(recording, options))
    return results
