"""The backtest and paper-trading sections of a node config (typed, strict, frozen).

A node config gains ``environment`` (``venue``: orders go to the venues; ``paper``: live market
data, orders matched in process; ``backtest``: recorded data on a simulated clock) and, for a
backtest, ``data`` (recordings per venue and symbol), ``range`` (a time window) and ``backtest``
(seed, sampling); ``latency`` applies to both simulated modes. ``hftkit.app.config`` embeds
these structs in ``NodeConfig``; they live here so that the backtest owns its own settings.

Latency per leg (``market_data``, ``order_entry``, ``ack``), one of::

    {constant_us: 250}
    {distribution: lognormal, mean_us: 300, sigma: 0.4}      # also normal (std_us), exponential,
    {distribution: uniform, low_us: 100, high_us: 500}        #   uniform; seeded by backtest.seed
    {histogram: metrics.json, metric: order_round_trip_ns, labels: {venue: binance_usdm}, scale: 0.5}
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "BacktestOptions",
    "DataSource",
    "InstrumentOverride",
    "LatencyLeg",
    "LatencySettings",
    "Mode",
    "TimeRange",
]

Mode = Literal["venue", "paper", "backtest"]


class _Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Immutable, no unknown keys (like every node config struct)."""


class InstrumentOverride(_Strict, frozen=True):
    """An instrument the simulator's catalogue does not list (e.g. a cryptofeed recording's)."""

    base: str
    quote: str
    tick_size: str
    lot_size: str
    min_notional: str = "0"
    kind: Literal["spot", "perpetual", "future"] = "perpetual"
    contract_size: str = "1"


class DataSource(_Strict, frozen=True):
    """Recordings of one instrument on one configured venue, read as one continuous stream.

    ``files``: absolute, relative to the config's folder, or a path under the shared data's
    ``hftbacktest/`` folder (``usdm/btcusdt_20240808.gz``; the bundled slice when the shared
    data is absent). ``format``: ``hftbacktest`` (``<ts_ns> <json>`` lines, snapshot inline),
    ``cryptofeed`` (``<unix_ts>: <json>`` websocket lines, the REST snapshot in ``snapshot``),
    ``parquet`` (``hftkit record`` files; see ``hftkit.backtest.data``), or ``auto``.
    """

    venue: str
    symbol: str
    files: list[str]
    format: Literal["auto", "hftbacktest", "cryptofeed", "parquet"] = "auto"
    snapshot: str | None = None  # cryptofeed: the ``.http`` file holding the depth snapshot
    instrument: InstrumentOverride | None = None


class TimeRange(_Strict, frozen=True):
    """``start``/``end``: ISO-8601 UTC (``2024-08-08T23:55:00Z``) or epoch nanoseconds; either
    may be omitted. Data before ``start`` only builds the books (strategies start at ``start``)."""

    start: str | int | None = None
    end: str | int | None = None


class LatencyLeg(_Strict, frozen=True):
    """One leg of the latency model (see the module docstring); the default is zero."""

    constant_us: float | None = None
    distribution: Literal["normal", "lognormal", "exponential", "uniform"] | None = None
    mean_us: float | None = None
    std_us: float | None = None
    sigma: float | None = None
    low_us: float | None = None
    high_us: float | None = None
    histogram: str | None = None  # a metrics JSON snapshot with buckets (``--json`` of a run)
    metric: str | None = None
    labels: dict[str, str] = {}
    scale: float = 1.0  # e.g. 0.5: half of a measured round trip for one way


class LatencySettings(_Strict, frozen=True):
    """Strategy <-> venue latency: market data (venue -> strategy), order entry (strategy ->
    venue) and ack (venue -> strategy, also every private event: fills, cancels)."""

    market_data: LatencyLeg = LatencyLeg()
    order_entry: LatencyLeg = LatencyLeg()
    ack: LatencyLeg = LatencyLeg()


class BacktestOptions(_Strict, frozen=True):
    """``seed``: latency draws; ``equity_interval_ms``: equity/market sampling;
    ``depth_interval_ms``: the depth stream's batching (see the field);
    ``markout_horizons_ms``: adverse-selection horizons after each fill; ``balances``: the
    simulated account's starting balances (spot needs them; perpetuals settle in the quote)."""

    seed: int = 7
    equity_interval_ms: int = 1000
    markout_horizons_ms: list[int] = msgspec.field(default_factory=lambda: [100, 1000, 5000])
    balances: dict[str, str] = msgspec.field(
        default_factory=lambda: {"USDT": "1000000", "USD": "1000000", "BTC": "100", "ETH": "1000"}
    )
    request_timeout_s: float = 5.0
    #: the depth stream the strategy's book follows: 0 = every change (USD-M ``@depth@0ms``, the
    #: recordings' own stream); 100 = merged 100 ms diffs, as a node subscribes by default
    depth_interval_ms: int = 0
    #: the live adapters' rate budget on the simulated clock (Binance's order and weight windows,
    #: Thalex's 50 messages a second): a strategy sends no more than a live account could; false:
    #: no limit (what backtests did before 2026-12-07)
    rate_limits: bool = True
