"""``hftkit backtest --config FILE [--out DIR]``: a node config with ``environment: backtest``.

The command only: ``hftkit.app.backtest_plan`` turns the config into a ``BacktestPlan`` and
``hftkit.backtest.runner`` runs it, both imported when a backtest runs, so that ``hftkit --help``
and the other commands never load pandas or the backtest. It writes the results folder and,
when the report module is present, ``report.html``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer

__all__ = ["backtest_command", "group"]

_log = logging.getLogger(__name__)

#: ``hftkit backtest``: runs a config by itself; subcommands (``sweep``) join this group with
#: ``@group.command(...)`` from a module ``hftkit.app.cli`` imports
group = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    help="Backtest a node config (environment: backtest) over recorded data on a simulated clock.",
)


@group.callback()
def _backtest(
    context: typer.Context,
    config: str = typer.Option(None, "--config", "-c", help="node config (YAML) with environment: backtest"),
    out: str = typer.Option("backtest-results", "--out", "-o", help="results folder (created)"),
    seed: int = typer.Option(None, "--seed", help="override backtest.seed"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Run one backtest: orders, fills, positions, equity as Parquet, summary.json, report.html."""
    if context.invoked_subcommand is not None:
        return
    if config is None:
        raise typer.BadParameter("give --config FILE (a node config with environment: backtest)")
    raise typer.Exit(backtest_command(config, out, seed, as_json))


def backtest_command(config: str, out: str | None, seed: int | None = None, as_json: bool = False) -> int:
    """Run, write the results folder (and the report when available), print the summary."""
    # imported here: ``hftkit --help`` and every other command stay free of pandas and the backtest
    from hftkit.app.backtest_plan import plan_from_config
    from hftkit.app.config import ConfigError
    from hftkit.backtest.loop import SimulationStalledError
    from hftkit.backtest.runner import run_plan

    try:
        plan = plan_from_config(config, seed=seed)
        result = run_plan(plan)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:  # data and latency errors are ValueErrors with one-line messages
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SimulationStalledError as error:
        print(f"error: the backtest stopped: {error}", file=sys.stderr)
        return 1
    folder = Path(out) if out else Path("backtest-results")
    result.write(folder)
    try:
        from hftkit.backtest.report import write_report
    except ImportError:
        _log.info("no report module: report.html not written")
    else:
        write_report(result, folder / "report.html")
    if as_json:
        json.dump(result.summary, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
    else:
        summary = result.summary
        print(
            f"backtest: {summary['events']} events in {result.wall_seconds:.2f}s "
            f"({result.events_per_second:,.0f} events/s); fills {summary['fills']}, "
            f"PnL net {summary['pnl_net']} (gross {summary['pnl_gross']}, fees {summary['fees']}), "
            f"max drawdown {summary['max_drawdown']}; results in {folder}/"
        )
    return 0
