"""``hftkit sim``: run the exchange simulator until Ctrl-C, SIGTERM or ``--seconds``.

The first line on stdout is one JSON object with every URL and the test credentials, flushed
at once, so a script or a test can start the simulator as a subprocess and read where to
connect. Logs go to stderr. Command-line options override the YAML file field by field and
the result is validated as one configuration (errors name the field and the file).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
import yaml

from hftkit.core.errors import HftkitError

if TYPE_CHECKING:
    from hftkit.sim.config import SimConfig

logger = logging.getLogger("hftkit.sim")


def _split(values: list[str] | None) -> list[str]:
    return [part for value in values or [] for part in value.replace(",", " ").split() if part]


def build_config(
    config_file: Path | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    thalex_port: int | None = None,
    control_port: int | None = None,
    venues: list[str] | None = None,
    symbols: list[str] | None = None,
    source: str | None = None,
    speed: str | None = None,
    seed: int | None = None,
    faults: str | None = None,
) -> SimConfig:
    """The YAML file (if any) with the command-line overrides applied, validated as one."""
    from hftkit.sim.config import SimConfigError, config_from_mapping, venue_symbols  # the sim loads on use

    data: dict[str, Any] = {}
    source_name = "<command line>"
    if config_file is not None:
        source_name = str(config_file)
        try:
            loaded = yaml.safe_load(config_file.read_text())
        except OSError as error:
            raise SimConfigError(f"{config_file}: cannot read: {error.strerror or error}") from None
        except yaml.YAMLError as error:
            raise SimConfigError(f"{config_file}: not valid YAML: {error}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise SimConfigError(f"{config_file}: (top level): expected a mapping")
        data = dict(loaded or {})
    if host is not None:
        data["host"] = host
    ports = dict(data.get("ports") or {})
    for key, value in (("binance", port), ("thalex", thalex_port), ("control", control_port)):
        if value is not None:
            ports[key] = value
    if ports:
        data["ports"] = ports
    if speed is not None:
        data["speed"] = speed
    if seed is not None:
        data["seed"] = seed
    venue_data = _venues_mapping(data.get("venues"))
    if venues:
        listed = _split(venues)
        venue_data = {name: {**venue_data.get(name, {}), "enabled": True} for name in listed}
    for settings in venue_data.values():
        if source is not None:
            settings.pop("source", None)
        if faults is not None:
            settings.pop("faults", None)
    if source is not None:
        data["source"] = source
    if faults is not None:
        data["faults"] = faults
    if symbols:
        wanted = tuple(_split(symbols))
        data["symbols"] = list(wanted)
        for name, settings in venue_data.items():
            chosen = venue_symbols(name, wanted) if isinstance(name, str) else ()
            if chosen:
                settings["symbols"] = list(chosen)
    if venue_data:
        data["venues"] = venue_data
    return config_from_mapping(data, source_name)


def _venues_mapping(value: Any) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if isinstance(value, str):
        value = _split([value])
    if isinstance(value, list):
        return {str(name): {} for name in value}
    if isinstance(value, dict):
        return {
            name: dict(settings or {}) if isinstance(settings, dict) else settings
            for name, settings in value.items()
        }
    return value  # let the validator name the problem


async def serve(config: SimConfig, seconds: float | None, out: Any = None, tls: bool = False) -> int:
    """Run until a signal or ``seconds``; print the connection line first. Returns the exit code.

    ``tls``: the venue servers speak https/wss; the line's ``ca_file`` is the CA to trust."""
    out = out or sys.stdout
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(number, stop.set)
            installed.append(number)
    from hftkit.sim.runner import Simulator

    simulator = Simulator(config, tls=tls)
    try:
        await simulator.start()
        assert simulator.credentials is not None
        line: dict[str, Any] = {"urls": simulator.urls, "credentials": simulator.credentials.as_dict()}
        if simulator.tls_files is not None:
            line["ca_file"] = str(simulator.tls_files.ca_file)
        out.write(json.dumps(line, separators=(",", ":")) + "\n")
        out.flush()
        if seconds is None:
            await stop.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
        logger.info("simulator: shutting down")
    finally:
        await simulator.stop()
        for number in installed:
            loop.remove_signal_handler(number)
    return 0


def sim(
    config_file: Path | None = typer.Option(
        None, "--config", "-c", help="YAML configuration file", exists=False
    ),
    host: str | None = typer.Option(
        None, "--host", help="address the venue servers bind (default 127.0.0.1)"
    ),
    port: int | None = typer.Option(None, "--port", help="Binance server port (0 = any free port)"),
    thalex_port: int | None = typer.Option(None, "--thalex-port", help="Thalex server port (0 = any)"),
    control_port: int | None = typer.Option(None, "--control-port", help="control endpoint port (0 = any)"),
    venues: list[str] | None = typer.Option(
        None, "--venues", help="venues to run: binance-spot, binance-usdm, thalex (comma separated)"
    ),
    symbols: list[str] | None = typer.Option(
        None, "--symbols", help="symbols, e.g. BTCUSDT,BTC-PERPETUAL, or a base asset such as BTC"
    ),
    replay: bool | None = typer.Option(
        None, "--replay/--synthetic", help="drive the books from recordings or a seeded generator"
    ),
    speed: str | None = typer.Option(None, "--speed", help="replay speed factor, or 'max'"),
    seed: int | None = typer.Option(
        None, "--seed", help="seed of the synthetic flow and the fault decisions"
    ),
    faults: str | None = typer.Option(
        None, "--faults", help="fault profile of every venue: none, flaky, hostile"
    ),
    seconds: float | None = typer.Option(None, "--seconds", min=0, help="stop after this many seconds"),
    tls: bool = typer.Option(
        False,
        "--tls",
        help="serve https/wss with a CA made for the run (its file: ca_file in the first line)",
    ),
    log_level: str = typer.Option("INFO", "--log-level", help="stderr log level"),
) -> None:
    """Run the exchange simulator (Binance spot + USD-M, Thalex) with a control endpoint."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = build_config(
            config_file,
            host=host,
            port=port,
            thalex_port=thalex_port,
            control_port=control_port,
            venues=venues,
            symbols=symbols,
            source=None if replay is None else ("replay" if replay else "synthetic"),
            speed=speed,
            seed=seed,
            faults=faults,
        )
    except ValueError as error:  # SimConfigError: the file or an option, named
        typer.echo(f"configuration error: {error}", err=True)
        raise typer.Exit(2) from None
    try:
        code = asyncio.run(serve(config, seconds, tls=tls))
    except (HftkitError, OSError) as error:
        typer.echo(f"simulator failed to start: {error}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


app = typer.Typer(add_completion=False, help="Run the exchange simulator.")
app.callback(invoke_without_command=True)(sim)

__all__ = ["app", "build_config", "serve", "sim"]

if __name__ == "__main__":
    app()
