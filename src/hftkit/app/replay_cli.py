"""``hftkit replay``: rebuild books from recordings and prove them (``verify``), or run live (``run``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from hftkit.venues.binance.replay import FileReport

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Replay recorded market data.")


@app.command()
def verify(
    files: list[Path] = typer.Argument(
        ..., exists=True, dir_okay=False, help="recordings, in order; later files continue earlier ones"
    ),
    as_json: bool = typer.Option(False, "--json", help="print one JSON document instead of a table"),
) -> None:
    """Rebuild every book in FILES (snapshot + diffs) and check gaps, crossings and bookTickers.

    Exits 1 when any file shows a gap, a resync, a crossed book, a bookTicker mismatch, a
    decode error or a symbol that never synced.
    """
    from hftkit.venues.binance.replay import reports_ok, verify_recordings

    reports = verify_recordings(files)
    passed = reports_ok(reports)
    if as_json:
        json.dump({"ok": passed, "files": [report.as_json() for report in reports]}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        _print_table(reports, passed)
    raise typer.Exit(0 if passed else 1)


def run(
    seconds: float = typer.Option(20.0, "--seconds", min=0.5, help="how long to run"),
    speed: float = typer.Option(20.0, "--speed", min=0.0, help="replay speed (0 = flat out)"),
) -> None:
    """Replay the recorded BTCUSDT/ETHUSDT streams through decode, book sync and metrics, live.

    Exits 0 when every checked bookTicker matched the rebuilt book and no book saw a gap.
    """
    from hftkit.app.run import run_market_data

    raise typer.Exit(run_market_data(seconds, speed or None))


# ``hftkit replay`` is this group (``verify`` and ``run``); ``app`` alone stays the one-command
# verifier it always was, so invoking it directly keeps its arguments at the top level.
group = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Recorded markets: verify rebuilt books, or run the recorded-market pipeline live.",
)
group.command("verify")(verify)
group.command("run")(run)


def _print_table(reports: list[FileReport], passed: bool) -> None:
    # wide enough for full file and symbol names when the output is piped (rich assumes 80)
    console = Console(width=None if sys.stdout.isatty() else 150)
    table = Table(title="hftkit replay verify")
    columns = (
        "file",
        "symbol",
        "rules",
        "snapshot",
        "diffs",
        "gaps",
        "resyncs",
        "crossed",
        "ticker ok/bad",
        "ok",
    )
    for column in columns:
        table.add_column(column)
    for report in reports:
        name = Path(report.file).name
        if not report.symbols:
            table.add_row(name, "-", "-", "-", "0", "-", "-", "-", "-", "NO")
        for symbol in report.symbols:
            table.add_row(
                name,
                symbol.symbol,
                symbol.rules,
                "" if symbol.snapshot_id is None else str(symbol.snapshot_id),
                str(symbol.diffs_applied),
                str(symbol.gaps),
                str(symbol.resyncs),
                str(symbol.crossed_books),
                f"{symbol.ticker_matches}/{symbol.ticker_mismatches}",
                "yes" if symbol.ok else "NO",
            )
    console.print(table)
    for report in reports:
        if report.decode_errors or report.unattributed_snapshots:
            console.print(
                f"{report.file}: {report.decode_errors} undecodable frames, "
                f"{report.unattributed_snapshots} unattributed snapshots; first: {report.first_error}"
            )
        for symbol in report.symbols:
            if not symbol.ok:
                detail = symbol.first_mismatch or symbol.gap_reason or "never synced (no snapshot)"
                console.print(f"{report.file} {symbol.symbol}: {detail}")
    console.print("verdict: " + ("all books rebuilt exactly" if passed else "FAILED"))
