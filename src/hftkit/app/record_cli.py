"""``hftkit record --config FILE``: record the config's venues and instruments to Parquet.

The same config a node runs with: its venues (sim, testnet or mainnet), its ``recorder:`` section
(where, raw and/or normalized, rotation) and the instruments in ``recorder.instruments`` (or,
when that is empty, the ones its strategies trade). No orders are sent. It records until
``--seconds`` pass or SIGINT/SIGTERM, then completes every file.

Exit codes: 0 recorded (nothing dropped); 1 something was dropped or failed; 2 config refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from hftkit.app import config as node_config
from hftkit.app.config import BinanceVenue, ConfigError, LoadedConfig
from hftkit.app.config_cli import CONFIG_EXIT_CODE
from hftkit.app.runtime import install_stop_signals, remove_stop_signals
from hftkit.app.storage_wiring import recorder_options
from hftkit.app.venues import build_adapter
from hftkit.storage.recorder import MarketRecorder, RecorderOptions
from hftkit.venues.base import VenueAdapter

log = logging.getLogger(__name__)


def record_instruments(loaded: LoadedConfig) -> dict[str, list[str]]:
    """Symbols per venue: ``recorder.instruments``, else what the strategies subscribe to."""
    wanted = {venue: list(symbols) for venue, symbols in loaded.node.recorder.instruments.items() if symbols}
    if not wanted and loaded.node.strategies:
        for strategy in node_config.build_strategies(loaded):
            for subscription in strategy.subscriptions():
                symbols = wanted.setdefault(subscription.venue, [])
                symbols.extend(symbol for symbol in subscription.symbols if symbol not in symbols)
    if not wanted:
        raise ConfigError(
            "nothing to record: list symbols per venue in recorder.instruments (or configure strategies)",
            file=loaded.file,
            path="recorder.instruments",
        )
    for venue in wanted:
        if venue not in loaded.node.venues:
            raise ConfigError(f"no venue named `{venue}`", file=loaded.file, path="recorder.instruments")
    return wanted


@dataclass
class RecordingSummary:
    directory: str
    elapsed_s: float = 0.0
    stopped_by: str = "time"
    instruments: dict[str, list[str]] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        writers = [value for value in self.status.values() if isinstance(value, dict)]
        return all(
            writer.get("dropped", 0) == 0 and writer.get("failed_batches", 0) == 0 for writer in writers
        )

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "clean": self.clean}


class RecordingSession:
    """Connect the venues, attach one recorder to every adapter, subscribe, record, stop clean."""

    def __init__(
        self, loaded: LoadedConfig, *, seconds: float | None = None, directory: str | None = None
    ) -> None:
        self.loaded = loaded
        self.seconds = seconds
        self.instruments = record_instruments(loaded)
        self.options: RecorderOptions = recorder_options(loaded, directory)
        self.recorder: MarketRecorder | None = None
        self.adapters: dict[str, VenueAdapter] = {}
        self.stop_requested = asyncio.Event()
        self._stopped_by = "time"

    def request_stop(self, reason: str) -> None:
        self._stopped_by = reason
        self.stop_requested.set()

    def _simulator_config(self) -> Any:
        from hftkit.app.node import simulator_venue
        from hftkit.sim.config import config_from_mapping

        venues: dict[str, dict[str, Any]] = {}
        for name, venue in self.loaded.node.venues.items():
            if venue.environment == "sim" and name in self.instruments:
                venues[simulator_venue(venue)] = {"symbols": self.instruments[name]}
        if not venues:
            return None
        settings = self.loaded.node.simulator
        return config_from_mapping(
            {"venues": venues, "speed": settings.speed, "seed": settings.seed, "faults": settings.faults},
            self.loaded.file,
        )

    def _adapter(self, name: str, venue: node_config.VenueConfig, sim: Any) -> VenueAdapter:
        if venue.environment != "sim":
            return build_adapter(name, venue, self.loaded)
        from hftkit.app.sim_wiring import binance_config, binance_credentials, thalex_config
        from hftkit.venues.binance.adapter import BinanceAdapter
        from hftkit.venues.binance.endpoints import Market
        from hftkit.venues.thalex.adapter import ThalexAdapter

        if isinstance(venue, BinanceVenue):
            market = Market.SPOT if venue.market == "spot" else Market.USDM
            return BinanceAdapter(binance_credentials(sim), binance_config(sim, market, name=name))
        return ThalexAdapter(
            thalex_config(sim, venue=name, cancel_on_disconnect_s=venue.cancel_on_disconnect_s)
        )

    async def run(self) -> RecordingSummary:
        started = time.monotonic()
        summary = RecordingSummary(str(self.options.directory), instruments=self.instruments)
        loop = asyncio.get_running_loop()
        installed = install_stop_signals(loop, self.request_stop)
        self.recorder = recorder = MarketRecorder(self.options)
        try:
            async with contextlib.AsyncExitStack() as stack:
                sim = None
                sim_config = self._simulator_config()
                if sim_config is not None:
                    from hftkit.sim.runner import Simulator

                    sim = await stack.enter_async_context(Simulator(sim_config))
                    await sim.wait_seeded()
                await recorder.start()
                stack.push_async_callback(recorder.stop)  # after the adapters closed: every frame is in
                for name, symbols in self.instruments.items():
                    adapter = self._adapter(name, self.loaded.node.venues[name], sim)
                    await stack.enter_async_context(adapter)
                    recorder.attach(adapter, name)
                    await adapter.subscribe(symbols, books=True, trades=True)
                    self.adapters[name] = adapter
                timeout = self.seconds
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_requested.wait(), timeout)
        finally:
            remove_stop_signals(loop, installed)
        summary.elapsed_s = round(time.monotonic() - started, 3)
        summary.stopped_by = self._stopped_by
        summary.status = recorder.status()
        return summary


def record_command(config_path: str, *, seconds: float | None, directory: str | None, as_json: bool) -> int:
    from hftkit.app import logs
    from hftkit.app.runtime import install_event_loop

    try:
        loaded = node_config.load(config_path)
        session = RecordingSession(loaded, seconds=seconds, directory=directory)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return CONFIG_EXIT_CODE
    logs.configure(loaded.node.logging.level, loaded.node.logging.format)
    install_event_loop(loaded.node.runtime.uvloop)
    where = ", ".join(f"{venue}: {' '.join(symbols)}" for venue, symbols in session.instruments.items())
    if not as_json:
        print(f"hftkit record: {where} -> {session.options.directory}", file=sys.stderr)
    summary = asyncio.run(session.run())
    if as_json:
        json.dump(summary.as_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        status = summary.status
        print(
            f"recorded {status['rows_written']} rows into {status['files_completed']} files "
            f"({status['bytes_completed'] / 1e6:.1f} MB) in {summary.elapsed_s:.1f}s, "
            f"stopped by {summary.stopped_by}; "
            f"{'nothing dropped' if summary.clean else 'SOME ROWS DROPPED: see --json'}"
        )
    return 0 if summary.clean else 1


__all__ = ["RecordingSession", "RecordingSummary", "record_command", "record_instruments"]
