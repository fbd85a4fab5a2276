"""Market-maker decision latency on a real Binance BTCUSDT book (rows for ``hftkit bench trading``).

The recorded spot session (``hftbacktest/spot/btcusdt_20240808.gz``: REST snapshot + ~3,400
depth diffs at 100 ms) is decoded once with the Binance parse module onto the real BTCUSDT grid
(tick 0.01; sizes at the wire's 0.00000001). Then every diff is applied to an ``OrderBook`` and
the decision that follows a book event is timed with ``perf_counter_ns``: the ``MarketMaker``'s
``on_book`` (mid sampling, microprice, Avellaneda-Stoikov ladder of 5 levels a side) plus the
``QuotingService`` plan against the instrument's current open orders in an
``OrderStateTracker``. The plan's actions are then applied to the tracker (placed orders
acknowledged, cancels confirmed) outside the timed region, so each decision reconciles against
the orders the previous ones left. Inventory moves by a seeded random walk of one level's size
every 50 events, so the skew and the position caps are exercised; sigma is refreshed from the
sampled mids once per recorded second, as the strategy's timer would (a timer event, not part of
a book event, so not timed).

The baseline is a figure a reference system publishes for one strategy run (4.1 ms); it is
quoted, not measured here. Targets: p50 <= 50 us, p99 <= 150 us.
"""

from __future__ import annotations

import gc
import random
import time
from dataclasses import dataclass
from decimal import Decimal

import msgspec

from hftkit.bench.harness import BenchOptions, BenchResult, compare, percentile
from hftkit.book.order_book import Level, OrderBook
from hftkit.core.errors import HftkitError
from hftkit.core.types import Instrument, Order, OrderIntent, OrderType, TimeInForce
from hftkit.datasets import hftbacktest_file, iter_recording
from hftkit.metrics import LatencyHistogram
from hftkit.strategies.market_maker import MarketMaker, MarketMakerConfig
from hftkit.trading.quoting import CancelOrder, QuotingService
from hftkit.trading.state import OrderStateTracker
from hftkit.venues.binance.codec import CombinedStreamMessage, DepthSnapshot, DepthUpdate
from hftkit.venues.binance.parse import BinanceParser
from hftkit.venues.binance.recording import DEPTH, SNAPSHOT, SNAPSHOT_DECODER, line_kind, sequence_rules

PEERS: tuple[str, ...] = ()

PUBLISHED_STRATEGY_RUN_US = 4_100.0
_PUBLISHED = "published reference figure, not measured here"
TARGET_P50_US = 50.0
TARGET_P99_US = 150.0
QUICK_DIFFS = 300
VENUE = "binance"
SYMBOL = "BTCUSDT"

_FRAME = msgspec.json.Decoder(CombinedStreamMessage[DepthUpdate])


@dataclass
class BookEvents:
    """A recorded session on the instrument's grid: the snapshot and the diffs after it."""

    instrument: Instrument
    snapshot_bids: list[Level]
    snapshot_asks: list[Level]
    diffs: list[tuple[int, list[Level], list[Level]]]  # (receive ns, bids, asks)


def load_book_events(limit: int | None = None) -> BookEvents:
    """Decode the BTCUSDT spot recording once onto the real BTCUSDT grid."""
    # tick 0.01 is the venue's; book sizes come at the wire's 8 decimals (aggregated depth is not
    # on the 0.00001 order-quantity step), so lots are 0.00000001 BTC
    instrument = Instrument(VENUE, SYMBOL, "BTC", "USDT", "0.01", "0.00000001", min_notional="5")
    parser = BinanceParser(instrument)
    snapshot: DepthSnapshot | None = None
    updates: list[tuple[int, DepthUpdate]] = []
    for timestamp, body in iter_recording(hftbacktest_file("spot", "btcusdt_20240808.gz")):
        kind = line_kind(body)
        if kind is SNAPSHOT:
            if snapshot is None:
                snapshot = SNAPSHOT_DECODER.decode(body)
        elif kind is DEPTH:
            updates.append((timestamp, _FRAME.decode(body).data))
    if snapshot is None:
        raise ValueError("the BTCUSDT recording holds no depth snapshot")
    first_kept = snapshot.last_update_id + sequence_rules(futures=False).stale_offset  # spot: u <= L is stale
    kept = [(timestamp, update) for timestamp, update in updates if update.last_update_id >= first_kept]
    if limit is not None:
        kept = kept[:limit]
    try:
        diffs = [(timestamp, parser.levels(u.bids), parser.levels(u.asks)) for timestamp, u in kept]
        return BookEvents(instrument, parser.levels(snapshot.bids), parser.levels(snapshot.asks), diffs)
    except HftkitError as error:  # a value off the real grid would make the figures meaningless
        raise ValueError(f"recording does not fit the BTCUSDT grid: {error}") from error


class _BenchContext:
    """The StrategyContext the market maker reads during the replay."""

    def __init__(self, instrument: Instrument, book: OrderBook, tracker: OrderStateTracker) -> None:
        self._instrument = instrument
        self._book = book
        self._tracker = tracker
        self.now = 0
        self.inventory = 0

    def now_ns(self) -> int:
        return self.now

    def instrument(self, venue: str, symbol: str) -> Instrument:
        return self._instrument

    def book(self, venue: str, symbol: str) -> OrderBook:
        return self._book

    def position(self, venue: str, symbol: str) -> int:
        return self.inventory

    def aggregate_position(self, group: str) -> Decimal:
        return self._instrument.lots.to_decimal(self.inventory)

    def open_orders(self, venue: str, symbol: str) -> list[Order]:
        return self._tracker.open_orders(venue, symbol)

    def order_latency(self, venue: str) -> LatencyHistogram | None:
        return None

    @property
    def trading_halted(self) -> bool:
        return False


def market_maker_config() -> MarketMakerConfig:
    return MarketMakerConfig(
        venue=VENUE,
        symbol=SYMBOL,
        size_per_level=100_000,  # 0.001 BTC
        max_position=5_000_000,  # 0.05 BTC
        gamma=0.05,
        kappa=1.0,
        levels=5,
        level_spacing_ticks=1,
        initial_volatility=3.0,
    )


@dataclass
class ReplayResult:
    timings_ns: list[int]
    acting_ns: list[int]  # the decisions that produced at least one action
    actions: int
    unchanged: int


def replay_decisions(events: BookEvents, seed: int = 1) -> ReplayResult:
    """Time every book event's decision (strategy + reconcile) over the recorded session."""
    instrument = events.instrument
    book = OrderBook(SYMBOL)
    book.apply_snapshot(events.snapshot_bids, events.snapshot_asks)
    tracker = OrderStateTracker()
    context = _BenchContext(instrument, book, tracker)
    maker = MarketMaker(market_maker_config())
    maker.bind(context)
    maker.on_start()
    quoting = QuotingService()
    quoting_view, state_version = tracker.quoting_view, tracker.state_version
    plan = quoting.plan
    on_book = maker.on_book
    key = (VENUE, SYMBOL)
    rng = random.Random(seed)
    step = maker.config.size_per_level
    limit = maker.config.max_position
    perf = time.perf_counter_ns
    timings: list[int] = []
    acting: list[int] = []
    actions = unchanged = sequence = 0
    next_refresh = events.diffs[0][0] + 1_000_000_000 if events.diffs else 0
    for index, (timestamp, bids, asks) in enumerate(events.diffs):
        book.apply_delta(bids, asks)
        context.now = timestamp
        if timestamp >= next_refresh:
            maker.on_timer("volatility")
            next_refresh = timestamp + 1_000_000_000
        if index % 50 == 49:
            context.inventory = max(-limit, min(limit, context.inventory + rng.choice((-step, step))))
        started = perf()
        decision = on_book(VENUE, SYMBOL, book)
        ladder = decision.quotes[key] if decision is not None else ()
        result = plan(instrument, ladder, quoting_view(VENUE, SYMBOL), state_version(VENUE, SYMBOL))
        elapsed = perf() - started
        timings.append(elapsed)
        if result.actions:
            acting.append(elapsed)
        actions += len(result.actions)
        unchanged += result.unchanged
        for action in result.actions:  # the venue's answers, outside the timed region
            if type(action) is OrderIntent:
                sequence += 1
                client_order_id = f"b{sequence}"
                tracker.submit(
                    Order(
                        client_order_id=client_order_id,
                        venue=VENUE,
                        symbol=SYMBOL,
                        side=action.side,
                        order_type=OrderType.LIMIT_MAKER,
                        time_in_force=TimeInForce.GTC,
                        price=action.price,
                        quantity=action.quantity,
                    )
                )
                tracker.acknowledge(client_order_id, client_order_id)
            elif type(action) is CancelOrder:
                tracker.request_cancel(action.client_order_id)
                tracker.cancel_acknowledged(action.client_order_id)
    if not actions:
        raise AssertionError("market-maker benchmark produced no actions: the case is broken")
    return ReplayResult(timings, acting, actions, unchanged)


def market_maker_rows(options: BenchOptions) -> list[BenchResult]:
    """p50 and p99 of the book-event -> actions decision over the recorded BTCUSDT session."""
    events = load_book_events(QUICK_DIFFS if options.quick else None)
    passes = 1 if options.quick else max(3, options.repeat)
    replay_decisions(events)  # warm caches and code paths
    timings: list[int] = []
    acting: list[int] = []
    actions = unchanged = 0
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for seed in range(passes):
            result = replay_decisions(events, seed + 1)
            timings.extend(result.timings_ns)
            acting.extend(result.acting_ns)
            actions += result.actions
            unchanged += result.unchanged
    finally:
        if gc_was_enabled:
            gc.enable()
    p50 = percentile(timings, 0.50) / 1_000
    p99 = percentile(timings, 0.99) / 1_000
    detail = {
        "decisions": len(timings),
        "book_events_per_pass": len(events.diffs),
        "passes": passes,
        "actions_per_decision": round(actions / len(timings), 3),
        "early_exits": unchanged,
        "p50_us_when_acting": round(percentile(acting, 0.50) / 1_000, 2),
        "p99_us_when_acting": round(percentile(acting, 0.99) / 1_000, 2),
        "levels_per_side": market_maker_config().levels,
        "max_us": round(max(timings) / 1_000, 1),
    }
    baseline = f"reference strategy run: 4.1 ms ({_PUBLISHED})"
    return [
        compare(
            "market maker decision, book event -> actions (AS ladder + reconcile), p50",
            p50,
            "us",
            baseline=baseline,
            baseline_value=PUBLISHED_STRATEGY_RUN_US,
            target=f"p50 <= {TARGET_P50_US:g} us",
            met=p50 <= TARGET_P50_US,
            **detail,
        ),
        compare(
            "market maker decision, book event -> actions (AS ladder + reconcile), p99",
            p99,
            "us",
            baseline=baseline,
            baseline_value=PUBLISHED_STRATEGY_RUN_US,
            target=f"p99 <= {TARGET_P99_US:g} us",
            met=p99 <= TARGET_P99_US,
            **detail,
        ),
    ]


def run(options: BenchOptions) -> list[BenchResult]:
    return market_maker_rows(options)
