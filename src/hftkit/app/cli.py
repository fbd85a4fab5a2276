"""The ``hftkit`` command line."""

from __future__ import annotations

import importlib
import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from hftkit.app import (
    backtest_cli,
    config_cli,
    replay_cli,
    sim_cli,
    sweep_cli,  # noqa: F401  (registers `hftkit backtest sweep` on backtest_cli.group)
)
from hftkit.bench.harness import BenchOptions, BenchResult, format_value, versions

app = typer.Typer(add_completion=False, no_args_is_help=True, help="hftkit: low-latency trading toolkit.")
app.add_typer(replay_cli.group, name="replay")
app.add_typer(sim_cli.app, name="sim", help="Run the exchange simulator (Binance- and Thalex-compatible).")
app.add_typer(config_cli.group, name="config")
app.add_typer(backtest_cli.group, name="backtest")

# Benchmark suites in the order `hftkit bench all` runs them: module hftkit.bench.<name>.
BENCH_SUITES = ("core", "book", "sim", "trading", "venues", "storage", "backtest", "bus")
# Suites run only by name, never by `all`: the soak takes ten minutes (`--quick`: 20 s); the
# node bench starts a simulator and a dozen trading processes (about two minutes).
SEPARATE_SUITES = ("soak", "node")


@app.callback()
def _root() -> None:
    """hftkit: low-latency trading toolkit."""


@app.command()
def run(
    config: str = typer.Option(None, "--config", "-c", help="node config (YAML); default: the built-in demo"),
    seconds: float = typer.Option(
        None, "--seconds", min=0.5, help="stop after this long (default: until ^C)"
    ),
    live: bool = typer.Option(False, "--live", help="confirm trading on mainnet venues"),
    as_json: bool = typer.Option(False, "--json", help="print the end summary as one JSON object on stdout"),
    no_dashboard: bool = typer.Option(False, "--no-dashboard", help="structured JSON logs instead of tables"),
    metrics_port: int = typer.Option(None, "--metrics-port", min=0, max=65535, help="override metrics.port"),
) -> None:
    """Run the trading node from a config: strategies on Binance/Thalex (sim, testnet or mainnet).

    At the end (or on SIGINT/SIGTERM) every order is cancelled and the session verified: books
    equal the venue's, every order accounted for, positions and PnL equal the venue's. Exit 0
    only when all hold; 2 when the config is refused.
    """
    from hftkit.app.run_cli import run_command

    raise typer.Exit(
        run_command(
            config,
            seconds=seconds,
            live=live,
            as_json=as_json,
            dashboard=not no_dashboard,
            metrics_port=metrics_port,
        )
    )


@app.command()
def record(
    config: str = typer.Option(..., "--config", "-c", help="node config (YAML): venues, recorder:"),
    seconds: float = typer.Option(None, "--seconds", min=0.1, help="stop after this long (default: ^C)"),
    directory: str = typer.Option(None, "--directory", "-d", help="override recorder.directory"),
    as_json: bool = typer.Option(False, "--json", help="print the end summary as one JSON object on stdout"),
) -> None:
    """Record the config's venues and instruments to Parquet (raw frames and normalized events)."""
    from hftkit.app.record_cli import record_command

    raise typer.Exit(record_command(config, seconds=seconds, directory=directory, as_json=as_json))


@app.command()
def feed(
    config: str = typer.Option(..., "--config", "-c", help="node config (YAML): venues, bus: with publish:"),
    seconds: float = typer.Option(None, "--seconds", min=0.1, help="stop after this long (default: ^C)"),
    metrics_port: int = typer.Option(None, "--metrics-port", min=0, max=65535, help="override metrics.port"),
    books_out: str = typer.Option(None, "--books-out", help="at the end, write the books as JSON here"),
    as_json: bool = typer.Option(False, "--json", help="print the end summary as one JSON object"),
) -> None:
    """Run a feed node: venue adapters and books, deltas and snapshots published on the bus."""
    from hftkit.app.feed_node import feed_command

    raise typer.Exit(
        feed_command(config, seconds=seconds, metrics_port=metrics_port, books_out=books_out, as_json=as_json)
    )


@app.command()
def risk(
    config: str = typer.Option(..., "--config", "-c", help="risk node config (YAML): bus: with risk:"),
    seconds: float = typer.Option(None, "--seconds", min=0.1, help="stop after this long (default: ^C)"),
    metrics_port: int = typer.Option(None, "--metrics-port", min=0, max=65535, help="override metrics.port"),
    kill: str = typer.Option(None, "--kill", help="publish a firm-wide trip with this reason, exit"),
    reset: str = typer.Option(None, "--reset", help="end a standing trip for nodes started later, exit"),
) -> None:
    """Run the firm-wide risk node: positions and PnL of every node, one kill switch for all."""
    from hftkit.app.risk_node import risk_command

    raise typer.Exit(risk_command(config, seconds=seconds, metrics_port=metrics_port, kill=kill, reset=reset))


@app.command()
def init(directory: str = typer.Argument(..., help="folder for node.yaml and my_strategy.py")) -> None:
    """Write a commented starter config and a strategy template to edit."""
    raise typer.Exit(config_cli.init(directory))


@app.command()
def bench(
    suite: str = typer.Argument(
        ..., help=f"suite to run: {', '.join(BENCH_SUITES + SEPARATE_SUITES)} or all"
    ),
    as_json: bool = typer.Option(False, "--json", help="print one JSON document instead of a table"),
    as_markdown: bool = typer.Option(False, "--markdown", help="print Markdown tables (for BENCHMARKS.md)"),
    quick: bool = typer.Option(False, "--quick", help="short smoke run (figures not for the record)"),
    repeat: int = typer.Option(7, "--repeat", min=1, help="timed repeats per figure (median is reported)"),
) -> None:
    """Run a benchmark suite; figures are medians beside baselines measured in the same run."""
    names = BENCH_SUITES if suite == "all" else (suite,)
    unknown = [name for name in names if name not in BENCH_SUITES + SEPARATE_SUITES]
    if unknown:
        choices = ", ".join(BENCH_SUITES + SEPARATE_SUITES)
        raise typer.BadParameter(f"unknown suite {unknown[0]!r}; choose from {choices}, all")
    options = BenchOptions(repeat=repeat, quick=quick)
    documents = []
    for name in names:
        module = importlib.import_module(f"hftkit.bench.{name}")
        results: list[BenchResult] = module.run(options)
        peers = getattr(module, "PEERS", ())
        found = versions(peers)
        documents.append(
            {
                "suite": name,
                "results": [result.as_json() for result in results],
                "versions": found,
            }
        )
        if as_markdown:
            sys.stdout.write(_markdown(name, results, found, repeat, quick))
        elif not as_json:
            _print_table(name, results)
    if as_markdown:
        return
    if as_json:
        json.dump(documents[0] if len(documents) == 1 else documents, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        Console().print(f"versions: {documents[-1]['versions']}")


def _markdown(suite: str, results: list[BenchResult], found: dict[str, str], repeat: int, quick: bool) -> str:
    command = (
        f"hftkit bench {suite}"
        + (f" --repeat {repeat}" if repeat != 7 else "")
        + (" --quick" if quick else "")
    )
    lines = [
        f"### `{command}`",
        "",
        "versions: " + ", ".join(f"{key} {value}" for key, value in found.items()),
        "",
        "| figure | hftkit | baseline (same run) | baseline value | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        baseline_value = (
            "" if result.baseline_value is None else format_value(result.baseline_value, result.unit)
        )
        lines.append(
            "| "
            + " | ".join(
                [
                    result.name.replace("|", "/"),
                    format_value(result.value, result.unit),
                    (result.baseline or "").replace("|", "/"),
                    baseline_value,
                    "" if result.ratio is None else f"{result.ratio:.2f}x",
                    (result.target or "").replace("|", "/"),
                    {True: "yes", False: "**no**", None: ""}[result.met],
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n\n"


def _print_table(suite: str, results: list[BenchResult]) -> None:
    table = Table(title=f"hftkit bench {suite}", show_lines=False)
    for column in ("figure", "hftkit", "baseline", "baseline value", "ratio", "target", "met"):
        table.add_column(column)
    for result in results:
        table.add_row(
            result.name,
            format_value(result.value, result.unit),
            result.baseline or "",
            "" if result.baseline_value is None else format_value(result.baseline_value, result.unit),
            "" if result.ratio is None else f"{result.ratio:.2f}x",
            result.target or "",
            {True: "yes", False: "NO", None: ""}[result.met],
        )
    Console().print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
