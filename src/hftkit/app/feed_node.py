"""The feed node (``hftkit feed --config FILE``): venue adapters and their books, published on the bus.

A feed node runs close to a venue and decodes its market data once for every strategy node:
for each venue of ``bus.publish`` it runs the venue's adapter (which owns and syncs each book,
as in any node), and publishes through ``hftkit.bus.books.BookPublisher`` every applied delta
with its stream's sequence number, every (re)sync as a snapshot, and a snapshot of each synced
book every ``bus.snapshot_interval_s``. Strategy nodes with ``market_data: bus`` build their
books from these streams. It places no orders; it reports itself on the bus, and its
``/metrics`` and ``/health`` show the venues and the bus like any node's.

``environment: sim`` venues are served by an in-process simulator (the real recordings), as in
``hftkit run``. At the end, ``books_out`` writes the books as JSON (after pausing a simulated
market and publishing a last snapshot), which the multi-host test compares with the strategy
side's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hftkit.app import config as node_config
from hftkit.app.config import BinanceVenue, ConfigError, LoadedConfig
from hftkit.app.node_bus import NodeBusLink, export_bus_metrics
from hftkit.app.operations import Health, OperationsServer
from hftkit.app.runtime import install_stop_signals, remove_stop_signals
from hftkit.bus.books import BookPublisher
from hftkit.core.types import ConnectionEvent
from hftkit.metrics import MetricsRegistry
from hftkit.venues.base import VenueAdapter

_log = logging.getLogger(__name__)


@dataclass
class FeedSummary:
    elapsed_s: float = 0.0
    stopped_by: str = "time"
    published: dict[str, dict[str, int]] = field(default_factory=dict)  # venue -> deltas/snapshots
    bus: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class FeedNode:
    """Runs ``bus.publish``'s venues and publishes their books (see the module docstring)."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        seconds: float | None = None,
        metrics_port: int | None = None,
        simulator: Any = None,
        books_out: str | None = None,
    ) -> None:
        config = loaded.node
        if not config.bus.enabled:
            raise ConfigError(
                "a feed node publishes on the bus: set bus.enabled: true", file=loaded.file, path="bus"
            )
        if not config.bus.publish:
            raise ConfigError(
                "a feed node needs bus.publish: the symbols to publish per venue",
                file=loaded.file,
                path="bus",
            )
        self.loaded = loaded
        self.config = config
        self.seconds = seconds if seconds is not None else config.seconds
        self.metrics_port = config.metrics.port if metrics_port is None else metrics_port
        self.metrics = MetricsRegistry()
        self.books_out = books_out
        self.sim: Any = None
        self._given_sim = simulator
        self.adapters: dict[str, VenueAdapter] = {}
        self.publishers: dict[str, BookPublisher] = {}
        self.link: NodeBusLink | None = None
        self.phase = "starting"
        self.stop_requested: asyncio.Event | None = None
        self._stop_reason = "time"
        self._connected: dict[str, bool] = {}

    @classmethod
    def from_config(cls, loaded: LoadedConfig, **options: Any) -> FeedNode:
        return cls(loaded, **options)

    def request_stop(self, reason: str = "stop") -> None:
        self._stop_reason = reason
        if self.stop_requested is not None:
            self.stop_requested.set()

    def simulator_config(self) -> Any:
        """The in-process simulator for the ``sim`` venues, with the symbols to publish."""
        from hftkit.app.node import simulator_venue
        from hftkit.sim.config import config_from_mapping

        venues: dict[str, dict[str, Any]] = {}
        for name, symbols in self.config.bus.publish.items():
            venue = self.config.venues[name]
            if venue.environment == "sim" and symbols:
                venues[simulator_venue(venue)] = {"symbols": list(symbols)}
        if not venues:
            return None
        settings = self.config.simulator
        return config_from_mapping(
            {"venues": venues, "speed": settings.speed, "seed": settings.seed, "faults": settings.faults},
            self.loaded.file,
        )

    def _adapter(self, name: str) -> VenueAdapter:
        venue = self.config.venues[name]
        if venue.environment != "sim":
            from hftkit.app.venues import build_adapter

            return build_adapter(name, venue, self.loaded, metrics=self.metrics)
        from hftkit.app.sim_wiring import binance_config, binance_credentials, thalex_config
        from hftkit.venues.binance.adapter import BinanceAdapter
        from hftkit.venues.binance.endpoints import Market
        from hftkit.venues.thalex.adapter import ThalexAdapter

        if isinstance(venue, BinanceVenue):
            market = Market.SPOT if venue.market == "spot" else Market.USDM
            return BinanceAdapter(
                binance_credentials(self.sim),
                binance_config(self.sim, market, name=name),
                metrics=self.metrics,
            )
        return ThalexAdapter(thalex_config(self.sim, venue=name), metrics=self.metrics)

    def health(self) -> Health:
        reasons = [f"{name}: not connected or not synced" for name, up in self._connected.items() if not up]
        if self.link is not None and not self.link.bus.status().connected:
            reasons.append("bus unreachable")
        if self.phase != "running":
            reasons.append(f"feed node is {self.phase}")
        return Health(not reasons, tuple(reasons), dict(self._connected), "n/a")

    def _watch(self, name: str) -> Any:
        def listener(event: Any) -> None:
            if type(event) is ConnectionEvent:
                self._connected[name] = event.state in ("connected", "synced")

        return listener

    async def run(self, tick_s: float = 0.05) -> FeedSummary:
        loop = asyncio.get_running_loop()
        self.stop_requested = asyncio.Event()
        started = time.monotonic()
        summary = FeedSummary()
        installed = install_stop_signals(loop, self.request_stop)
        try:
            async with contextlib.AsyncExitStack() as stack:
                sim_config = self.simulator_config()
                if sim_config is not None:
                    from hftkit.sim.runner import Simulator

                    if self._given_sim is not None:  # a simulator that outlives this node (tests)
                        self.sim = self._given_sim
                    else:
                        self.sim = await stack.enter_async_context(Simulator(sim_config))
                    await self.sim.wait_seeded()
                self.link = link = NodeBusLink(self.config.bus, self.metrics, role="feed")
                link.on_kill(lambda reason: _log.warning("feed node: %s (it places no orders)", reason))
                await link.start()
                stack.push_async_callback(link.close)
                for name in self.config.bus.publish:
                    self.adapters[name] = adapter = self._adapter(name)
                    await stack.enter_async_context(adapter)
                    self.publishers[name] = publisher = BookPublisher(link.bus, name)
                    adapter.add_listener(publisher)
                    adapter.add_listener(self._watch(name))
                    self._connected[name] = True
                    await adapter.subscribe(self.config.bus.publish[name], books=True, trades=True)
                if self.config.metrics.enabled:
                    await stack.enter_async_context(
                        OperationsServer(
                            self.metrics, self.health, host=self.config.metrics.host, port=self.metrics_port
                        )
                    )
                self.phase = "running"
                snapshots = loop.create_task(self._snapshots(), name="feed:snapshots")
                try:
                    await self._wait(tick_s)
                finally:
                    snapshots.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await snapshots
                self.phase = "stopping"
                await self._finish()
                summary.published = {
                    name: {"deltas": item.deltas, "snapshots": item.snapshots}
                    for name, item in self.publishers.items()
                }
                status = link.bus.status()
                summary.bus = {
                    "kind": status.kind,
                    "published": status.published,
                    "written": status.written,
                    "dropped": status.dropped,
                    "reconnects": status.reconnects,
                }
        finally:
            remove_stop_signals(loop, installed)
        summary.elapsed_s = time.monotonic() - started
        summary.stopped_by = self._stop_reason
        self.phase = "done"
        return summary

    async def _wait(self, tick_s: float) -> None:
        assert self.stop_requested is not None
        deadline = None if self.seconds is None else time.monotonic() + self.seconds
        while not self.stop_requested.is_set():
            timeout = tick_s if deadline is None else min(tick_s, max(0.0, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), timeout)
            if deadline is not None and time.monotonic() >= deadline:
                return

    async def _snapshots(self) -> None:
        interval = self.config.bus.snapshot_interval_s
        while True:
            await asyncio.sleep(interval)
            self.publish_snapshots()
            for name, publisher in self.publishers.items():
                self.metrics.gauge("feed_deltas_published", "book deltas published", venue=name).set(
                    float(publisher.deltas)
                )
                self.metrics.gauge("feed_snapshots_published", "book snapshots published", venue=name).set(
                    float(publisher.snapshots)
                )

    def publish_snapshots(self) -> None:
        """A snapshot of every synced book, at its stream's current sequence number."""
        for name, publisher in self.publishers.items():
            adapter = self.adapters[name]
            for symbol in self.config.bus.publish[name]:
                book = adapter.book(symbol)
                if book is not None and adapter.book_synced(symbol):
                    publisher.publish_snapshot(symbol, book)

    def books(self, levels: int | None = None) -> dict[str, dict[str, Any]]:
        """Every published book now: ``{"venue:symbol": {"synced", "bids", "asks"}}``."""
        result: dict[str, dict[str, Any]] = {}
        for name, adapter in self.adapters.items():
            for symbol in self.config.bus.publish[name]:
                book = adapter.book(symbol)
                result[f"{name}:{symbol}"] = {
                    "synced": adapter.book_synced(symbol),
                    "bids": [list(level) for level in book.bids(levels)] if book is not None else [],
                    "asks": [list(level) for level in book.asks(levels)] if book is not None else [],
                }
        return result

    async def _finish(self) -> None:
        """With ``books_out``: hold a simulated market still, publish a last snapshot, write the books."""
        if self.books_out is None:
            return
        if self.sim is not None:
            from hftkit.app.sim_wiring import PAUSED_SPEED

            for venue in self.sim.venues:
                self.sim.set_speed(venue, PAUSED_SPEED)
            await asyncio.sleep(0.5)  # the last deltas reach the adapters and the bus
        self.publish_snapshots()
        assert self.link is not None
        export_bus_metrics(self.metrics, self.link.bus)
        Path(self.books_out).write_text(json.dumps(self.books()), encoding="utf-8")


def feed_command(
    config_path: str, *, seconds: float | None, metrics_port: int | None, books_out: str | None, as_json: bool
) -> int:
    """``hftkit feed``: exit 0 after a clean run, 2 when the config is refused."""
    from hftkit.app import logs
    from hftkit.app.runtime import install_event_loop

    try:
        loaded = node_config.load(config_path)
        node = FeedNode.from_config(loaded, seconds=seconds, metrics_port=metrics_port, books_out=books_out)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr, flush=True)
        return 2
    logs.configure(loaded.node.logging.level, loaded.node.logging.format)
    install_event_loop(loaded.node.runtime.uvloop)
    try:
        summary = asyncio.run(node.run())
    except KeyboardInterrupt:
        return 130
    if as_json:
        print(json.dumps(summary.as_json()), flush=True)
    else:
        print(f"hftkit feed: {summary.elapsed_s:.1f}s, stopped by {summary.stopped_by}; {summary.published}")
        print(f"bus: {summary.bus}", flush=True)
    return 0


__all__ = ["FeedNode", "FeedSummary", "feed_command"]
