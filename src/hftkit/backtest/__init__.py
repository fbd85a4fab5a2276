"""Backtests and paper trading: the node's own engine, quoting, risk, tracker and strategies over
simulated venue adapters; only the adapters differ from a live node.

* ``SimulatedVenue`` (``hftkit.backtest.venue``) implements ``VenueAdapter`` over the simulator's
  in-process ``MatchingEngine`` (queue positions, partial fills, fees, the venue's filters and its
  error codes), with a ``LatencyModel`` between strategy and venue (market data, order entry, ack).
* ``SimulatedLoop`` (``hftkit.backtest.loop``) is an asyncio event loop on a simulated clock:
  the engine's tasks, ``call_later`` timers and ``asyncio.timeout`` run unchanged, in simulated
  time, deterministically; a backtest has no sockets, no sleeps and no wall-clock timers.
* ``Timeline`` (``hftkit.backtest.data``) merges recordings of several instruments and venues by
  timestamp, cut to a time range.
* ``run_plan`` (``hftkit.backtest.runner``) runs a ``BacktestPlan``; reading a node config with
  ``environment: backtest`` into one is the app layer's (``hftkit.app.backtest_plan``), which
  also holds ``run_backtest``: this layer never imports the app's config format.

The API the report and the sweeps code against (stable)::

    from hftkit.app.backtest_plan import run_backtest
    from hftkit.backtest import BacktestResult

    result: BacktestResult = run_backtest(config, seed=None, overrides=None)
        # config: path of a node config (YAML, ``environment: backtest``), a ``LoadedConfig``, or
        #         a ``BacktestPlan`` (already built strategies + settings, for notebooks)
        # seed: overrides ``backtest.seed`` (latency draws); overrides: strategy params by
        #       strategy name, {"maker": {"gamma": 0.2}}, applied before the strategies are built
    result.write(out_dir) -> Path   # orders/fills/positions/equity/market/latency .parquet + summary.json

``BacktestResult`` fields (pandas DataFrames; every ``time_ns`` is int64 simulated epoch ns, prices
and quantities are floats in price and base units; rows in time order):

* ``orders``: one row per order event: time_ns, venue, symbol, client_order_id, event
  (``sent``, ``accepted``, ``rejected``, ``canceled``, ``filled``, ``expired``, ``amended``),
  side (``buy``/``sell``), order_type, price, quantity, filled, reason
* ``fills``: one row per execution of our orders: time_ns (at the venue), receive_ns (when the
  strategy heard), venue, symbol, client_order_id, trade_id, side, price, quantity, notional,
  fee (quote units, negative = rebate), fee_asset, is_maker, mid (venue mid at the fill), and one
  ``markout_<h>ms`` column per adverse-selection horizon (side-signed mid move after the fill, in
  price units: positive = the fill earned, negative = adverse selection; NaN past the data's end)
* ``positions``: one row per fill: time_ns, venue, symbol, position (base units, signed)
* ``equity``: sampled every ``backtest.equity_interval_ms``: time_ns, pnl_gross, fees, equity
  (= pnl_gross - fees, marked to the venue mid, quote currency), position (sum of base units)
* ``market``: sampled with ``equity``: time_ns, venue, symbol, bid, ask, mid, our_bid, our_ask
  (our best resting quotes at the venue; NaN when none)
* ``latency``: one row per simulated latency draw: kind (``market_data``, ``order_entry``,
  ``ack``, ``order_round_trip``), value_ns
* ``latency_histograms``: ``dict[str, LatencyHistogram]`` of the same draws (kind -> histogram)
* ``summary``: ``dict`` (JSON-ready, see ``hftkit.backtest.results.summarize``): pnl_gross,
  fees, pnl_net, volume (quote), volume_base, orders_sent, orders_accepted, orders_rejected,
  fills, fill_ratio (accepted orders with a fill / accepted orders), quantity_fill_ratio,
  inventory {mean, mean_abs, std, min, max, final}, max_drawdown, sharpe (annualized, from
  equity increments), adverse_selection {"<h>ms": mean markout in price units and in bps},
  events, book_events, simulated_seconds, latency {kind: p50/p99 ns}, instruments {per
  (venue:symbol) figures}, seed, counters (engine and venue counters)
* ``wall_seconds`` and ``events_per_second``: how long the run took (not written to files, so
  results stay byte-identical across runs)

Command line: ``hftkit.app.backtest_cli.group`` is the ``hftkit backtest`` Typer group (``hftkit
backtest --config FILE [--out DIR] [--seed N]`` runs one config); a subcommand such as ``sweep``
joins it with ``@group.command("sweep")``. ``hftkit.app.backtest_plan.plan_from_config(config,
seed=, overrides=)`` builds the ``BacktestPlan`` a worker runs with ``runner.run_plan(plan)``;
``plan.sources`` may hold already loaded sources (``data.load_source``), so a worker decodes a
recording once for many points. ``hftkit.backtest.sweep.run_sweep`` takes a ``PlanLoader`` (the
app's ``NODE_CONFIG_LOADER``; ``hftkit.app.backtest_plan.run_sweep`` binds it).

Paper trading: ``environment: paper`` in a node config; ``TradingNode`` wraps each venue's real
adapter in a ``PaperVenue`` (``hftkit.backtest.paper``): live market data, orders matched by a
``SimulatedVenue`` mirroring the live book, never sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hftkit.core.lazy import lazy_exports

__all__ = [
    "BacktestPlan",
    "BacktestResult",
    "LatencyModel",
    "SimulatedLoop",
    "SimulatedVenue",
    "Timeline",
    "run_plan",
]

if TYPE_CHECKING:
    from hftkit.backtest.data import Timeline
    from hftkit.backtest.latency import LatencyModel
    from hftkit.backtest.loop import SimulatedLoop
    from hftkit.backtest.results import BacktestResult
    from hftkit.backtest.runner import BacktestPlan, run_plan
    from hftkit.backtest.venue import SimulatedVenue

_HOMES = {
    "BacktestPlan": "hftkit.backtest.runner",
    "run_plan": "hftkit.backtest.runner",
    "BacktestResult": "hftkit.backtest.results",
    "LatencyModel": "hftkit.backtest.latency",
    "SimulatedLoop": "hftkit.backtest.loop",
    "SimulatedVenue": "hftkit.backtest.venue",
    "Timeline": "hftkit.backtest.data",
}


# lazy exports: importing the package stays cheap (a sweep worker imports only the runner)
__getattr__ = lazy_exports(__name__, _HOMES)
