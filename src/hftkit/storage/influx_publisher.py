"""What a node writes to InfluxDB, and when: market, orders, fills, positions, PnL, latency.

The measurements (fixed in ``hftkit.storage.influx``; documented in docs/guide.md):

- ``top_of_book`` (venue, symbol): bid, ask, bid_size, ask_size, at most once per
  ``top_of_book_interval_ms`` per instrument, on book changes;
- ``trades`` (venue, symbol, side): price, size, trade_id: every public trade;
- ``orders`` (venue, symbol, side, status): client_order_id, price, quantity, filled: every
  order update of ours;
- ``fills`` (venue, symbol, side, liquidity): client_order_id, price, size, fee;
- ``positions`` and ``pnl`` (venue, symbol): every ``snapshot_interval_s``;
- ``latency`` (stage, labels): p50/p90/p99/p99.9/max in µs and the count, per histogram of the
  node's metrics registry, over each ``snapshot_interval_s``.

Prices and sizes are written as floats in venue units (ticks and lots are converted at this
edge, once). Events reach it from the adapters' listeners and the tracker: each is one encode and
one ``BatchingWriter.put`` of a row tuple, formatted later, per batch, by the sink; a point
InfluxDB could not store is left out and counted (``sink.rejected_points``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hftkit.core.types import BookDelta, BookTicker, Fill, Instrument, OrderUpdate, Trade
from hftkit.metrics import MetricsRegistry
from hftkit.storage.influx import (
    FILLS,
    LATENCY,
    MEASUREMENTS,
    ORDERS,
    PNL,
    POSITIONS,
    TOP_OF_BOOK,
    TRADES,
    InfluxHttpSink,
    InfluxTarget,
    LineSchema,
    PointRow,
)
from hftkit.storage.writer import BatchingWriter


@dataclass(frozen=True)
class InfluxOptions:
    target: InfluxTarget
    measurements: frozenset[str] = frozenset(MEASUREMENTS)
    batch_size: int = 1000
    flush_interval_s: float = 2.0
    capacity: int = 100_000
    top_of_book_interval_ms: int = 100
    snapshot_interval_s: float = 10.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.measurements) - set(MEASUREMENTS))
        if unknown:
            raise ValueError(f"unknown measurement(s) {unknown}; known: {', '.join(MEASUREMENTS)}")


@dataclass
class _Scale:
    """An instrument's ticks and lots as floats (the one conversion at this edge)."""

    tick: float
    lot: float

    @classmethod
    def of(cls, instrument: Instrument) -> _Scale:
        return cls(float(instrument.tick_size), float(instrument.lot_size))


BookTop = Callable[[str, str], tuple[tuple[int, int] | None, tuple[int, int] | None] | None]
"""(venue, symbol) -> (best bid, best ask) as (ticks, lots) levels, or None when unknown."""


@dataclass
class InfluxPublisher:
    options: InfluxOptions
    instrument: Callable[[str, str], Instrument | None]
    book_top: BookTop | None = None
    writer: BatchingWriter[PointRow] = field(init=False)
    sink: InfluxHttpSink = field(init=False)
    _scales: dict[tuple[str, str], _Scale] = field(default_factory=dict)
    _last_top_ns: dict[tuple[str, str], int] = field(default_factory=dict)
    _latency_base: Any = None

    def __post_init__(self) -> None:
        options = self.options
        self.sink = InfluxHttpSink(options.target)
        self.writer = BatchingWriter(
            self.sink,
            name="influx",
            capacity=options.capacity,
            batch_size=options.batch_size,
            flush_interval_s=options.flush_interval_s,
            write_timeout_s=max(1.0, options.target.timeout_s * 2),
        )
        wanted = options.measurements
        self._top = "top_of_book" in wanted
        self._trades = "trades" in wanted
        self._orders = "orders" in wanted
        self._fills = "fills" in wanted
        self._top_interval_ns = options.top_of_book_interval_ms * 1_000_000

    async def start(self) -> None:
        await self.writer.start()

    async def stop(self, timeout_s: float = 5.0) -> None:
        await self.writer.close(timeout_s)

    def _scale(self, venue: str, symbol: str) -> _Scale | None:
        scale = self._scales.get((venue, symbol))
        if scale is None:
            instrument = self.instrument(venue, symbol)
            if instrument is None:
                return None
            scale = self._scales[(venue, symbol)] = _Scale.of(instrument)
        return scale

    def _put(
        self, schema: LineSchema, series: tuple[str, ...], values: tuple[Any, ...], timestamp_ns: int
    ) -> None:
        """No formatting here: the sink encodes each flushed batch column-wise."""
        self.writer.put((schema, series, values, timestamp_ns))

    # events (adapter listeners, the tracker) -------------------------------------------------------
    def on_event(self, event: object) -> None:
        kind = type(event)
        if kind is BookDelta or kind is BookTicker:
            if self._top:
                self._on_book(event.venue, event.symbol)  # type: ignore[attr-defined]
        elif kind is Trade:
            if self._trades:
                self._on_trade(event)  # type: ignore[arg-type]
        elif kind is OrderUpdate and self._orders:
            self._on_order(event)  # type: ignore[arg-type]

    def _on_book(self, venue: str, symbol: str) -> None:
        if self.book_top is None:
            return
        now = time.time_ns()
        key = (venue, symbol)
        if now - self._last_top_ns.get(key, 0) < self._top_interval_ns:
            return
        top = self.book_top(venue, symbol)
        scale = self._scale(venue, symbol)
        if top is None or scale is None:
            return
        best_bid, best_ask = top
        if best_bid is None or best_ask is None:
            return
        self._last_top_ns[key] = now
        (bid, bid_size), (ask, ask_size) = best_bid, best_ask
        tick, lot = scale.tick, scale.lot
        self._put(TOP_OF_BOOK, key, (bid * tick, ask * tick, bid_size * lot, ask_size * lot), now)

    def _on_trade(self, trade: Trade) -> None:
        scale = self._scale(trade.venue, trade.symbol)
        if scale is None:
            return
        self._put(
            TRADES,
            (trade.venue, trade.symbol, trade.aggressor.value),
            (trade.price * scale.tick, trade.size * scale.lot, trade.trade_id),
            time.time_ns(),
        )

    def _on_order(self, update: OrderUpdate) -> None:
        scale = self._scale(update.venue, update.symbol)
        if scale is None:
            return
        self._put(
            ORDERS,
            (update.venue, update.symbol, update.side.value, update.status.value),
            (
                update.client_order_id,
                update.price * scale.tick,
                update.quantity * scale.lot,
                update.filled * scale.lot,
            ),
            time.time_ns(),
        )

    def on_fill(self, fill: Fill, _position: object = None) -> None:
        """A fill-listener of the tracker (``tracker.add_fill_listener``)."""
        if not self._fills:
            return
        scale = self._scale(fill.venue, fill.symbol)
        if scale is None:
            return
        self._put(
            FILLS,
            (fill.venue, fill.symbol, fill.side.value, "maker" if fill.is_maker else "taker"),
            (fill.client_order_id, fill.price * scale.tick, fill.quantity * scale.lot, float(fill.fee)),
            time.time_ns(),
        )

    # periodic snapshots --------------------------------------------------------------------------------
    def publish_positions(self, rows: Iterable[tuple[str, str, float, float, float, float, float]]) -> None:
        """(venue, symbol, position, average price, realized, unrealized, fees) per instrument."""
        now = time.time_ns()
        wanted = self.options.measurements
        for venue, symbol, position, average, realized, unrealized, fees in rows:
            if "positions" in wanted:
                self._put(POSITIONS, (venue, symbol), (position, average), now)
            if "pnl" in wanted:
                self._put(PNL, (venue, symbol), (realized, unrealized, fees), now)

    def publish_latency(self, registry: MetricsRegistry) -> int:
        """Percentiles of every histogram over the interval since the last call; returns points."""
        if "latency" not in self.options.measurements:
            return 0
        snapshot = registry.snapshot()
        interval = snapshot if self._latency_base is None else snapshot.since(self._latency_base)
        self._latency_base = snapshot
        now = time.time_ns()
        written = 0
        for key, histogram in interval.histograms.items():
            if not histogram.count:
                continue
            labels = ",".join(f"{name}={value}" for name, value in key.labels) or "-"
            values = (
                histogram.p50 / 1e3,
                histogram.p90 / 1e3,
                histogram.p99 / 1e3,
                histogram.p999 / 1e3,
                histogram.maximum / 1e3,
                histogram.count,
            )
            self._put(LATENCY, (key.name, labels), values, now)
            written += 1
        return written

    def status(self) -> dict[str, Any]:
        return {**self.writer.status_dict(), "sink": self.sink.status()}


__all__ = ["InfluxOptions", "InfluxPublisher"]
