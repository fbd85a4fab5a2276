"""The ``hftkit`` command line: the node, simulator, backtest, replay and config commands.

``hftkit bench`` is added by the entry point, ``hftkit.cli``, which sits above both ``app`` and
``bench`` in the layers.
"""

from __future__ import annotations

import typer

from hftkit.app import (
    backtest_cli,
    config_cli,
    replay_cli,
    sim_cli,
    sweep_cli,  # noqa: F401  (registers `hftkit backtest sweep` on backtest_cli.group)
)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="hftkit: low-latency trading toolkit.")
app.add_typer(replay_cli.group, name="replay")
app.add_typer(sim_cli.app, name="sim", help="Run the exchange simulator (Binance- and Thalex-compatible).")
app.add_typer(config_cli.group, name="config")
app.add_typer(backtest_cli.group, name="backtest")


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
