"""A node config with ``environment: backtest`` as a runnable ``BacktestPlan``.

Each venue's instruments and capabilities are the simulator's catalogue and the real adapter's
(``hftkit.sim.config.CATALOGUE``, the grids ``hftkit sim`` serves; ``binance_capabilities`` and
``THALEX_CAPABILITIES``), its fees from ``simulator.fees``, the strategies built from their import
paths with their params. Used by ``hftkit backtest``, the sweeps and ``run_backtest``.

The backtest layer below knows plans, not node configs: ``run_backtest`` (a config path, a
``LoadedConfig`` or a plan) and ``run_sweep`` (a grid of node configs) are the research API's
entry points here, where the config format lives.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from hftkit.app import config as node_config
from hftkit.app.config import ConfigError, LoadedConfig, ThalexVenue
from hftkit.backtest.config import TimeRange
from hftkit.backtest.rate import BucketRate, OrderRate, WindowRate
from hftkit.backtest.results import BacktestResult
from hftkit.backtest.runner import BacktestPlan, VenueSetup, run_plan
from hftkit.backtest.sweep import SweepGrid, SweepResult
from hftkit.backtest.sweep import run_sweep as run_sweep_with
from hftkit.core.clock import Clock
from hftkit.core.types import ContractKind, Instrument
from hftkit.sim.config import BINANCE_SPOT, BINANCE_USDM, CATALOGUE, THALEX
from hftkit.sim.engine.accounts import FeeSchedule
from hftkit.venues.base import VenueCapabilities
from hftkit.venues.binance.adapter import binance_capabilities
from hftkit.venues.binance.endpoints import Market
from hftkit.venues.thalex.adapter import THALEX_CAPABILITIES

__all__ = [
    "NODE_CONFIG_LOADER",
    "NodeConfigLoader",
    "capabilities_for",
    "order_rate_for",
    "plan_from_config",
    "run_backtest",
    "run_sweep",
    "venue_instruments",
]


def _catalogue_venue(venue: node_config.VenueConfig) -> str:
    if isinstance(venue, ThalexVenue):
        return THALEX
    return BINANCE_SPOT if venue.market == "spot" else BINANCE_USDM


def capabilities_for(venue: node_config.VenueConfig) -> tuple[VenueCapabilities, str]:
    """What the real adapter of this venue supports, and whose error codes it answers with."""
    if isinstance(venue, ThalexVenue):
        return THALEX_CAPABILITIES, "thalex"
    return binance_capabilities(Market.SPOT if venue.market == "spot" else Market.USDM), "binance"


def order_rate_for(venue: node_config.VenueConfig) -> Callable[[Clock], OrderRate]:
    """The rate budget the real adapter of this venue keeps to, for a simulated venue's clock."""
    if isinstance(venue, ThalexVenue):
        return BucketRate
    return functools.partial(WindowRate, Market.SPOT if venue.market == "spot" else Market.USDM)


def venue_instruments(loaded: LoadedConfig, name: str, symbols: list[str]) -> list[Instrument]:
    """The instruments of venue ``name``: the simulator's catalogue, or a data source's override."""
    node = loaded.node
    venue = node.venues[name]
    listed = CATALOGUE[_catalogue_venue(venue)]
    overrides = {source.symbol: source.instrument for source in node.data if source.venue == name}
    result = []
    for symbol in symbols:
        override = overrides.get(symbol)
        if override is not None:
            result.append(
                Instrument(
                    name,
                    symbol,
                    override.base,
                    override.quote,
                    override.tick_size,
                    override.lot_size,
                    override.min_notional,
                    kind=ContractKind(override.kind),
                    contract_size=override.contract_size,
                )
            )
        elif symbol in listed:
            result.append(listed[symbol].instrument(name))
        else:
            raise ConfigError(
                f"venue `{name}` lists no {symbol}{node_config.suggest(symbol, list(listed))}; "
                "give the data source an `instrument:` (tick_size, lot_size, ...)",
                file=loaded.file,
                path="data",
            )
    return result


def _with_overrides(loaded: LoadedConfig, overrides: Mapping[str, Mapping[str, Any]] | None) -> LoadedConfig:
    if not overrides:
        return loaded
    names = {strategy.name for strategy in loaded.node.strategies}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(
            f"overrides name unknown strategies {unknown}; known: {sorted(names)}", file=loaded.file
        )
    strategies = [
        msgspec.structs.replace(strategy, params={**strategy.params, **overrides.get(strategy.name, {})})
        for strategy in loaded.node.strategies
    ]
    node = msgspec.structs.replace(loaded.node, strategies=strategies)
    return LoadedConfig(node, loaded.file, loaded.lines, loaded.directory)


def plan_from_config(
    config: str | os.PathLike[str] | LoadedConfig,
    *,
    seed: int | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> BacktestPlan:
    """A node config (path or loaded) with ``environment: backtest`` as a runnable plan."""
    loaded = config if isinstance(config, LoadedConfig) else node_config.load(config)
    node = loaded.node
    if node.environment != "backtest":
        raise ConfigError(
            f"`environment: {node.environment}`: hftkit backtest runs configs with `environment: backtest`",
            file=loaded.file,
            line=loaded.lines.get(("environment",)),
            path="environment",
        )
    loaded = _with_overrides(loaded, overrides)
    strategies = node_config.build_strategies(loaded)
    if not strategies:
        raise ConfigError("no strategies: a backtest needs at least one", file=loaded.file, path="strategies")
    wanted: dict[str, list[str]] = {name: [] for name in node.venues}
    for source in node.data:
        if source.symbol not in wanted[source.venue]:
            wanted[source.venue].append(source.symbol)
    for strategy in strategies:
        for subscription in strategy.subscriptions():
            if subscription.venue not in wanted:
                raise ConfigError(
                    f"strategy {strategy.name!r} trades on `{subscription.venue}`, which is not a configured "
                    "venue" + node_config.suggest(subscription.venue, list(wanted)),
                    file=loaded.file,
                    path="strategies",
                )
            for symbol in subscription.symbols:
                if symbol not in wanted[subscription.venue]:
                    raise ConfigError(
                        f"strategy {strategy.name!r} trades {subscription.venue}:{symbol}, which no `data` "
                        "source replays",
                        file=loaded.file,
                        path="data",
                    )
    venues = []
    recorded: dict[tuple[str, str], Instrument] = {}
    for name, symbols in wanted.items():
        if not symbols:
            continue
        capabilities, style = capabilities_for(node.venues[name])
        fees = node.simulator.fees.get(name)
        venues.append(
            VenueSetup(
                name=name,
                instruments=venue_instruments(loaded, name, symbols),
                capabilities=capabilities,
                error_style=style,
                fees=FeeSchedule.from_basis_points(fees.maker_bp, fees.taker_bp) if fees else FeeSchedule(),
                order_rate=order_rate_for(node.venues[name]),
            )
        )
        listed = CATALOGUE[_catalogue_venue(node.venues[name])]
        for symbol in symbols:
            spec = listed.get(symbol)
            overridden = any(
                source.instrument is not None
                for source in node.data
                if (source.venue, source.symbol) == (name, symbol)
            )
            if spec is not None and spec.source_symbol and not overridden:  # Thalex: the USD-M recording
                recorded[(name, symbol)] = CATALOGUE[BINANCE_USDM][spec.source_symbol].instrument(name)
    options = node.backtest if seed is None else msgspec.structs.replace(node.backtest, seed=seed)
    return BacktestPlan(
        strategies=strategies,
        venues=venues,
        sources=list(node.data),
        time_range=node.range or TimeRange(),
        latency=node.latency,
        options=options,
        instrument_limits=node_config.instrument_limits(loaded),
        risk_limits=node_config.risk_limits(loaded),
        directory=loaded.directory,
        recorded=recorded,
        description={
            "config": loaded.file,
            "seed": options.seed,
            "strategies": [strategy.name for strategy in node.strategies],
            "overrides": {name: dict(values) for name, values in (overrides or {}).items()},
            "latency": msgspec.to_builtins(node.latency),
            "range": msgspec.to_builtins(node.range) if node.range is not None else None,
        },
    )


def run_backtest(
    config: str | os.PathLike[str] | LoadedConfig | BacktestPlan,
    *,
    seed: int | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> BacktestResult:
    """Run one backtest (see ``hftkit.backtest`` for the result's columns).

    ``config``: a node config (path or loaded, ``environment: backtest``) or an already built
    ``BacktestPlan`` (for notebooks); ``seed`` overrides ``backtest.seed``; ``overrides`` sets
    strategy params by strategy name (``{"maker": {"gamma": 0.2}}``) before they are built.
    """
    if isinstance(config, BacktestPlan):
        plan = config
        if seed is not None:
            plan.options = msgspec.structs.replace(plan.options, seed=seed)
    else:
        plan = plan_from_config(config, seed=seed, overrides=overrides)
    return run_plan(plan)


class NodeConfigLoader:
    """The sweep's ``PlanLoader`` for node configs (module level: it pickles to a worker by name)."""

    def check(self, text: str, file: str, directory: Path) -> str | None:
        """The ``ConfigError`` of a point's config as one line, or None when it decodes."""
        try:
            node_config.load_text(text, file, directory)
        except ConfigError as error:
            return str(error)
        return None

    def plan(self, text: str, file: str, directory: Path) -> BacktestPlan:
        return plan_from_config(node_config.load_text(text, file, directory))


NODE_CONFIG_LOADER = NodeConfigLoader()


def run_sweep(
    grid: SweepGrid | str | os.PathLike[str],
    *,
    workers: int | None = None,
    scheduler: str | Any | None = None,
    progress: Callable[[dict[str, Any], int, int], None] | None = None,
) -> SweepResult:
    """``hftkit.backtest.sweep.run_sweep`` over a grid of node configs (see there)."""
    return run_sweep_with(
        grid, loader=NODE_CONFIG_LOADER, workers=workers, scheduler=scheduler, progress=progress
    )
