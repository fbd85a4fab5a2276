"""``hftkit backtest sweep --grid FILE``: one backtest per point of a grid (``hftkit.backtest.sweep``).

Registered on the ``hftkit backtest`` group when ``hftkit.app.cli`` imports this module. Heavy
imports (pandas, the backtest, ``distributed``) wait until the command runs, so ``hftkit --help``
stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from hftkit.app.backtest_cli import group

__all__ = ["sweep", "sweep_command"]

RESULTS_FILE = "sweep.parquet"


@group.command("sweep")
def sweep(
    grid: str = typer.Option(..., "--grid", "-g", help="grid file (YAML): base config + parameter lists"),
    scheduler: str = typer.Option(
        None, "--scheduler", help="Dask scheduler address (tcp://host:8786); default: local processes"
    ),
    out: str = typer.Option("sweep-results", "--out", "-o", help="folder for sweep.parquet (created)"),
    workers: int = typer.Option(
        None, "--workers", "-w", min=1, help="local processes (default: one per core)"
    ),
) -> None:
    """Run one backtest per grid point; one results table (Parquet + printed) of parameters and summaries.

    Exit 0 when every point ran, 1 when some failed (their rows say why), 2 for a grid that cannot run.
    """
    raise typer.Exit(sweep_command(grid, scheduler, out, workers))


def sweep_command(grid: str, scheduler: str | None, out: str | None, workers: int | None) -> int:
    """Run the sweep, write ``<out>/sweep.parquet``, print the table; returns the exit code."""
    from hftkit.app.backtest_plan import run_sweep
    from hftkit.backtest.sweep import GridError, headline_columns, load_grid

    errors = Console(stderr=True)
    try:
        loaded = load_grid(grid)
        total = len(loaded.points())
        where = f"the Dask cluster at {scheduler}" if scheduler else "local processes"
        errors.print(f"sweep: {total} point(s) of {loaded.file} on {where}")

        def progress(row: dict[str, Any], done: int, total: int) -> None:
            errors.print(f"  [{done}/{total}] point {row['point']}: {_outcome(row)}", highlight=False)

        result = run_sweep(loaded, workers=workers, scheduler=scheduler, progress=progress)
    except GridError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a scheduler that cannot be reached
        print(f"error: {scheduler}: {error}", file=sys.stderr)
        return 2
    path = result.write_parquet(Path(out or "sweep-results") / RESULTS_FILE)
    columns = headline_columns(result)
    if not result.failures:
        columns.remove("error")
    labels = _labels(columns, result.parameters)
    table = Table(title=f"sweep: {len(result.rows)} points ({path} has every column)")
    for column in columns:
        table.add_column(labels[column], justify="left" if column == "error" else "right", overflow="fold")
    for row in result.rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    Console().print(table)
    failures = result.failures
    print(f"results: {path} ({len(result.rows)} rows, {failures} failed)")
    return 1 if failures else 0


def _labels(columns: list[str], parameters: list[str]) -> dict[str, str]:
    """A parameter's column shows its last path segment (``gamma``) when that is unambiguous."""
    endings = [name.rsplit(".", 1)[-1] for name in parameters]
    labels = {column: column for column in columns}
    for name, ending in zip(parameters, endings, strict=True):
        if endings.count(ending) == 1 and ending not in columns:
            labels[name] = ending
    return labels


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _outcome(row: dict[str, Any]) -> str:
    if row.get("error"):
        return f"failed: {row['error']}"
    return f"pnl_net {row.get('pnl_net')}, fills {row.get('fills')}"
