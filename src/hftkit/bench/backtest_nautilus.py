"""NautilusTrader's BacktestEngine on the recording ``hftkit bench backtest`` replays, timed in the same run.

A peer's figure only means something beside ours when it does comparable work on the same data
on the same machine at the same time. So the recorded USD-M BTCUSDT day is read and sequenced by
hftkit's own reader (``read_recording`` with a ``RecordingDecoder``, then the replay's
``BookSequencer``: both engines see exactly the same snapshot, diffs and trades up to the same
end), converted to Nautilus ``OrderBookDeltas`` (one batch per snapshot or diff) and
``TradeTick`` values, and replayed by a ``BacktestEngine`` into a simulated Binance venue with
an L2 (market-by-price) book, while a minimal market maker decides on every book update: join
the touch on both sides, cancel and replace when the mid moves, within a position limit.

The unit is ours: book-level events, each price level a snapshot or a diff changes plus each
trade. Timed separately: the conversion (reading and decoding included), the engine's setup
(venue, instrument, data, strategy), ``engine.run()`` alone, and their sum (end to end).

Imported only when ``nautilus_trader`` is installed (``make bench-peers``); never an hftkit
dependency, so every Nautilus name is imported inside the functions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from hftkit.bench.harness import optional_import
from hftkit.core.types import ContractKind, Instrument, Side
from hftkit.sim.engine.market import ApplyDiff, BookSequencer, ReplayTrade, SeedBook
from hftkit.venues.binance.recording import RecordingDecoder, read_recording

VENUE = "BINANCE"
QUOTE_LOTS = 2  # as examples/backtest_maker.yaml: 0.002 BTC a side
MAX_POSITION_LOTS = 10
STARTING_USDT = 1_000_000
MAKER_FEE = Decimal("0.0002")  # USD-M's published standard tier, as the example's simulator
TAKER_FEE = Decimal("0.0005")


def available() -> bool:
    """True when NautilusTrader can be imported (the peers environment)."""
    return optional_import("nautilus_trader") is not None


def version() -> str:
    from importlib import metadata

    return metadata.version("nautilus_trader")


def usdm_btcusdt() -> Instrument:
    """The recording's grids: Binance USD-M BTCUSDT perpetual, tick 0.1, lot 0.001."""
    return Instrument("binance_usdm", "BTCUSDT", "BTC", "USDT", "0.1", "0.001", "5", ContractKind.PERPETUAL)


@dataclass(frozen=True)
class NautilusData:
    """The recording as Nautilus data, with the counts the figures divide by."""

    instrument: Any  # nautilus CryptoPerpetual
    deltas: list[Any]  # OrderBookDeltas, one per snapshot or diff
    trades: list[Any]  # TradeTick
    book_level_events: int  # levels set by the snapshot and the diffs, plus trades (our unit)


@dataclass(frozen=True)
class NautilusFigure:
    """One timed Nautilus run; rates are book-level events per second."""

    book_level_events: int
    market_messages: int  # snapshot and diff batches plus trades, as the engine iterates them
    decisions: int
    orders_sent: int
    fills: int
    seconds_convert: float
    seconds_setup: float
    seconds_run: float
    cpu_seconds_run: float
    version: str

    @property
    def seconds_end_to_end(self) -> float:
        return self.seconds_convert + self.seconds_setup + self.seconds_run

    @property
    def events_per_second_run(self) -> float:
        return self.book_level_events / self.seconds_run

    @property
    def events_per_second_end_to_end(self) -> float:
        return self.book_level_events / self.seconds_end_to_end


def _steps_to_raw(step: Decimal, fixed_precision: int) -> int:
    """Nautilus's fixed-point raw value of one grid step (exact, or the grid cannot be carried)."""
    raw = step.scaleb(fixed_precision)
    if raw != raw.to_integral_value():
        raise ValueError(f"grid step {step} is finer than Nautilus's fixed precision")
    return int(raw)


def nautilus_instrument(instrument: Instrument) -> Any:
    """The hftkit instrument as a Nautilus ``CryptoPerpetual`` on the same grids."""
    from nautilus_trader.model.currencies import Currency
    from nautilus_trader.model.identifiers import InstrumentId, Symbol, Venue
    from nautilus_trader.model.instruments import CryptoPerpetual
    from nautilus_trader.model.objects import Price, Quantity

    base = Currency.from_str(instrument.base)
    quote = Currency.from_str(instrument.quote)
    price_precision = instrument.ticks.decimals
    size_precision = instrument.lots.decimals
    return CryptoPerpetual(
        instrument_id=InstrumentId(Symbol(f"{instrument.symbol}-PERP"), Venue(VENUE)),
        raw_symbol=Symbol(instrument.symbol),
        base_currency=base,
        quote_currency=quote,
        settlement_currency=quote,
        is_inverse=False,
        price_precision=price_precision,
        size_precision=size_precision,
        price_increment=Price.from_str(instrument.ticks.step_text),
        size_increment=Quantity.from_str(instrument.lots.step_text),
        ts_event=0,
        ts_init=0,
        margin_init=Decimal("0.05"),
        margin_maint=Decimal("0.025"),
        maker_fee=MAKER_FEE,
        taker_fee=TAKER_FEE,
    )


def convert(paths: Sequence[str | Path], instrument: Instrument, until_ns: int | None = None) -> NautilusData:
    """Read, decode and sequence the recording with hftkit's reader, as Nautilus data.

    Reading stops at the first line after ``until_ns``, as ``hftkit.backtest.data.load_source``
    does, so both engines replay the same slice.
    """
    from nautilus_trader.model.data import BookOrder, OrderBookDelta, OrderBookDeltas, TradeTick
    from nautilus_trader.model.enums import AggressorSide, BookAction, OrderSide, RecordFlag
    from nautilus_trader.model.identifiers import TradeId
    from nautilus_trader.model.objects import FIXED_PRECISION, Price, Quantity

    target = nautilus_instrument(instrument)
    instrument_id = target.id
    price_precision = target.price_precision
    size_precision = target.size_precision
    raw_per_tick = _steps_to_raw(instrument.tick_size, FIXED_PRECISION)
    raw_per_lot = _steps_to_raw(instrument.lot_size, FIXED_PRECISION)
    price_from_raw = Price.from_raw
    quantity_from_raw = Quantity.from_raw
    add, update, delete, clear = BookAction.ADD, BookAction.UPDATE, BookAction.DELETE, BookAction.CLEAR
    buy, sell = OrderSide.BUY, OrderSide.SELL
    last = RecordFlag.F_LAST
    snapshot_flag = RecordFlag.F_SNAPSHOT

    deltas: list[Any] = []
    trades: list[Any] = []
    levels = 0
    sequence = 0

    def level(side: Any, ticks: int, lots: int) -> Any:
        return BookOrder(
            side,
            price_from_raw(ticks * raw_per_tick, price_precision),
            quantity_from_raw(lots * raw_per_lot, size_precision),
            0,
        )

    sequencer = BookSequencer()
    for timestamp, message in read_recording(paths, RecordingDecoder(instrument)):
        if until_ns is not None and timestamp > until_ns:
            break
        for action in sequencer.feed(message):
            kind = type(action)
            if kind is ReplayTrade:
                assert isinstance(action, ReplayTrade)
                levels += 1
                sequence += 1
                trades.append(
                    TradeTick(
                        instrument_id,
                        price_from_raw(action.price * raw_per_tick, price_precision),
                        quantity_from_raw(action.quantity * raw_per_lot, size_precision),
                        AggressorSide.BUYER if action.aggressor is Side.BUY else AggressorSide.SELLER,
                        TradeId(str(sequence)),
                        timestamp,
                        timestamp,
                    )
                )
                continue
            assert isinstance(action, SeedBook | ApplyDiff)
            changed = len(action.bids) + len(action.asks)
            levels += changed
            if changed == 0:
                continue
            seeding = kind is SeedBook
            flags = snapshot_flag if seeding else 0
            changes = [
                (side, ticks, lots)
                for side, side_levels in ((buy, action.bids), (sell, action.asks))
                for ticks, lots in side_levels
                if lots or not seeding
            ]
            batch: list[Any] = []
            if seeding:  # a snapshot replaces the whole book
                sequence += 1
                clear_flags = flags if changes else flags | last
                batch.append(
                    OrderBookDelta(instrument_id, clear, None, clear_flags, sequence, timestamp, timestamp)
                )
            final = len(changes) - 1
            for index, (side, ticks, lots) in enumerate(changes):
                sequence += 1
                verb = add if seeding else update if lots else delete
                # the batch's last delta carries F_LAST: one book update for the strategy, as a diff is
                batch.append(
                    OrderBookDelta(
                        instrument_id,
                        verb,
                        level(side, ticks, lots),
                        flags | last if index == final else flags,
                        sequence,
                        timestamp,
                        timestamp,
                    )
                )
            deltas.append(OrderBookDeltas(instrument_id, batch))
    return NautilusData(target, deltas, trades, levels)


def _maker(instrument: Any, requote_every_update: bool) -> Any:
    """A minimal Nautilus market maker: every book update decides; a new mid cancels and re-quotes
    (``requote_every_update``: every book update does, an order flow the size of hftkit's maker's)."""
    from nautilus_trader.config import StrategyConfig
    from nautilus_trader.model.enums import BookType, OrderSide
    from nautilus_trader.trading.strategy import Strategy

    class TouchMaker(Strategy):
        def __init__(self) -> None:
            super().__init__(StrategyConfig(strategy_id="TouchMaker-001", order_id_tag="001"))
            self.instrument_id = instrument.id
            self.quantity = instrument.make_qty(QUOTE_LOTS * instrument.size_increment.as_decimal())
            self.max_position = MAX_POSITION_LOTS * instrument.size_increment.as_decimal()
            self.last_mid_raw = -1
            self.decisions = 0
            self.orders_sent = 0
            self.fills = 0
            self.last_top: tuple[Any, Any] | None = None

        def on_start(self) -> None:
            self.subscribe_order_book_deltas(self.instrument_id, BookType.L2_MBP)

        def on_order_book_deltas(self, deltas: Any) -> None:
            book = self.cache.order_book(self.instrument_id)
            bid = book.best_bid_price()
            ask = book.best_ask_price()
            if bid is None or ask is None:
                return
            self.decisions += 1
            self.last_top = (bid, ask)
            mid_raw = bid.raw + ask.raw
            if mid_raw == self.last_mid_raw and not requote_every_update:
                return
            self.last_mid_raw = mid_raw
            self.cancel_all_orders(self.instrument_id)
            position = self.portfolio.net_position(self.instrument_id)
            if position < self.max_position:
                self._quote(OrderSide.BUY, bid)
            if position > -self.max_position:
                self._quote(OrderSide.SELL, ask)

        def _quote(self, side: Any, price: Any) -> None:
            order = self.order_factory.limit(self.instrument_id, side, self.quantity, price, post_only=True)
            self.submit_order(order)
            self.orders_sent += 1

        def on_order_filled(self, event: Any) -> None:
            self.fills += 1

    return TouchMaker()


def build_engine(data: NautilusData, requote_every_update: bool = False) -> tuple[Any, Any]:
    """A BacktestEngine with the simulated L2 venue, the instrument, the data and the maker."""
    from nautilus_trader.backtest.engine import BacktestEngine
    from nautilus_trader.config import BacktestEngineConfig, LoggingConfig
    from nautilus_trader.model.enums import AccountType, BookType, OmsType
    from nautilus_trader.model.identifiers import TraderId, Venue
    from nautilus_trader.model.objects import Money

    config = BacktestEngineConfig(
        trader_id=TraderId("BENCH-001"),
        # hftkit's engine logs at ERROR in the bench; the post-run reports are not the replay
        logging=LoggingConfig(log_level="ERROR", bypass_logging=True),
        run_analysis=False,
    )
    engine = BacktestEngine(config=config)
    quote = data.instrument.quote_currency
    engine.add_venue(
        venue=Venue(VENUE),
        oms_type=OmsType.NETTING,
        account_type=AccountType.MARGIN,
        starting_balances=[Money(STARTING_USDT, quote)],
        base_currency=quote,
        default_leverage=Decimal(10),
        book_type=BookType.L2_MBP,
    )
    engine.add_instrument(data.instrument)
    engine.add_data(data.deltas)
    if data.trades:
        engine.add_data(data.trades)
    strategy = _maker(data.instrument, requote_every_update)
    engine.add_strategy(strategy)
    return engine, strategy


def import_modules() -> None:
    """Import the Nautilus modules the run uses, so that no timed stage pays for the imports
    (hftkit's side imports its own before its clock starts too)."""
    import importlib

    for name in (
        "nautilus_trader.backtest.engine",
        "nautilus_trader.config",
        "nautilus_trader.model.data",
        "nautilus_trader.model.instruments",
        "nautilus_trader.trading.strategy",
    ):
        importlib.import_module(name)


def measure(
    paths: Sequence[str | Path],
    instrument: Instrument,
    until_ns: int | None = None,
    requote_every_update: bool = False,
) -> NautilusFigure:
    """Convert, set up and run once; each stage timed on its own."""
    import_modules()
    started = time.perf_counter()
    data = convert(paths, instrument, until_ns)
    converted = time.perf_counter()
    engine, strategy = build_engine(data, requote_every_update)
    built = time.perf_counter()
    cpu_started = time.process_time()
    engine.run()
    cpu_seconds = time.process_time() - cpu_started
    finished = time.perf_counter()
    try:
        return NautilusFigure(
            book_level_events=data.book_level_events,
            market_messages=len(data.deltas) + len(data.trades),
            decisions=strategy.decisions,
            orders_sent=strategy.orders_sent,
            fills=strategy.fills,
            seconds_convert=converted - started,
            seconds_setup=built - converted,
            seconds_run=finished - built,
            cpu_seconds_run=cpu_seconds,
            version=version(),
        )
    finally:
        engine.dispose()


__all__ = [
    "NautilusData",
    "NautilusFigure",
    "available",
    "build_engine",
    "convert",
    "measure",
    "nautilus_instrument",
    "usdm_btcusdt",
]
