"""The node's market-data recorder and InfluxDB publisher (``recorder:`` and ``influx:`` sections).

Both are side paths: they listen to the adapters (and the tracker's fills), buffer in a
``BatchingWriter`` and write from a background task, so a slow disk or a dead InfluxDB costs the
hot path nothing but counted drops. Their status goes to ``/health`` (``storage``) and to gauges.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from hftkit.app.config import LoadedConfig
from hftkit.app.storage_wiring import influx_options, recorder_options
from hftkit.core.types import Instrument
from hftkit.metrics import MetricsRegistry
from hftkit.storage.influx_publisher import InfluxPublisher
from hftkit.storage.recorder import MarketRecorder

PositionRow = tuple[str, str, Instrument, int, Any, Decimal, Decimal]


class NodeMarketStorage:
    """Opened with the node, closed after its adapters (so every frame they got is recorded)."""

    def __init__(self, loaded: LoadedConfig, metrics: MetricsRegistry) -> None:
        node = loaded.node
        self.metrics = metrics
        self.recorder = MarketRecorder(recorder_options(loaded)) if node.recorder.enabled else None
        self.influx: InfluxPublisher | None = None
        self._influx_enabled = node.influx.enabled
        self._influx_options = influx_options(loaded) if node.influx.enabled else None
        self._adapters: dict[str, Any] = {}
        self._engine: Any = None
        self._last_snapshot = 0.0

    @property
    def active(self) -> bool:
        return self.recorder is not None or self._influx_options is not None

    async def open(self, stack: contextlib.AsyncExitStack) -> None:
        if self.recorder is not None:
            await self.recorder.start()
            stack.push_async_callback(self.recorder.stop)
        if self._influx_options is not None:
            self.influx = InfluxPublisher(self._influx_options, self._instrument, self._book_top)
            await self.influx.start()
            stack.push_async_callback(self.influx.stop)

    def attach(self, name: str, adapter: Any) -> None:
        """After the adapter is entered, before anything subscribes."""
        self._adapters[name] = adapter
        if self.recorder is not None:
            self.recorder.attach(adapter, name)
        if self.influx is not None:
            adapter.add_listener(self.influx.on_event)

    def bind(self, engine: Any) -> None:
        self._engine = engine
        if self.influx is not None:
            engine.tracker.add_fill_listener(self.influx.on_fill)

    def _instrument(self, venue: str, symbol: str) -> Instrument | None:
        adapter = self._adapters.get(venue)
        return None if adapter is None else adapter.instruments.get(symbol)

    def _book_top(self, venue: str, symbol: str) -> Any:
        engine = self._engine
        book = None if engine is None else engine.book(venue, symbol)
        return None if book is None else (book.best_bid(), book.best_ask())

    def tick(self, positions: Iterable[PositionRow]) -> None:
        """From the node's watchdog: snapshots every ``snapshot_interval_s``, gauges every call."""
        influx = self.influx
        if influx is not None and self._influx_options is not None:
            now = time.monotonic()
            if now - self._last_snapshot >= self._influx_options.snapshot_interval_s:
                self._last_snapshot = now
                influx.publish_positions(_position_rows(positions))
                influx.publish_latency(self.metrics)
        for name, status in self.status().items():
            self.metrics.gauge(
                "storage_dropped", "rows/points lost: buffer full, failed writes", sink=name
            ).set(float(status.get("dropped", 0)))
            self.metrics.gauge("storage_healthy", "1 while the sink keeps up", sink=name).set(
                1.0 if status.get("healthy", True) else 0.0
            )

    def status(self) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {}
        if self.recorder is not None:
            recorder = self.recorder.status()
            writers = [value for value in recorder.values() if isinstance(value, dict)]
            recorder["dropped"] = sum(writer["dropped"] for writer in writers)
            recorder["healthy"] = self.recorder.healthy
            result["recorder"] = recorder
        if self.influx is not None:
            result["influx"] = self.influx.status()
        return result


def _position_rows(rows: Iterable[PositionRow]) -> list[tuple[str, str, float, float, float, float, float]]:
    result = []
    for venue, symbol, instrument, lots, average, realized, unrealized in rows:
        tick = float(instrument.tick_size)
        result.append(
            (
                venue,
                symbol,
                lots * float(instrument.lot_size),
                0.0 if average is None else float(average) * tick,
                float(realized),
                float(unrealized),
                0.0,
            )
        )
    return result


__all__ = ["NodeMarketStorage"]
