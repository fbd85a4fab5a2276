"""``hftkit config check FILE`` and ``hftkit init DIR``: a config is validated before it trades.

A failure is one line on stderr (file:line: field path: what is wrong) and exit code 2; nothing
connects and nothing is sent.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import typer

from hftkit.app import config as node_config

#: exit code of every refused config (typer's own usage errors use 2 as well)
CONFIG_EXIT_CODE = 2

group = typer.Typer(no_args_is_help=True, help="Validate node configs without connecting.")


def load_checked(path: str, *, live: bool = False, strategies: bool = True) -> node_config.LoadedConfig:
    """Load, check cross-field rules, mainnet guard, and (optionally) build the strategies."""
    loaded = node_config.load(path)
    node_config.instrument_limits(loaded)
    node_config.risk_limits(loaded)
    node_config.check_live(loaded, live_flag=live)
    if strategies:
        node_config.build_strategies(loaded)
    return loaded


def refuse(error: node_config.ConfigError) -> typer.Exit:
    print(f"config error: {error}", file=sys.stderr)
    return typer.Exit(CONFIG_EXIT_CODE)


@group.command("check")
def check(
    file: str = typer.Argument(..., help="the node config (YAML)"),
    live: bool = typer.Option(False, "--live", help="check as `hftkit run --live` would (mainnet)"),
) -> None:
    """Validate FILE: schema, env vars, venues, risk limits, strategy imports and params."""
    try:
        loaded = load_checked(file, live=live)
    except node_config.ConfigError as error:
        raise refuse(error) from None
    node = loaded.node
    venues = ", ".join(f"{name} ({venue.environment})" for name, venue in node.venues.items())
    print(f"ok: {file}: venues {venues}; {len(node.strategies)} strategies")


def init(directory: str) -> int:
    """Write a commented starter config and a strategy template into ``directory`` (never overwrite)."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    templates = resources.files("hftkit.app") / "templates"
    written = []
    for name in ("node.yaml", "my_strategy.py"):
        path = target / name
        if path.exists():
            print(f"refusing to overwrite {path}", file=sys.stderr)
            return CONFIG_EXIT_CODE
        path.write_text((templates / name).read_text(encoding="utf-8"), encoding="utf-8")
        written.append(str(path))
    print("wrote " + ", ".join(written))
    print(
        f"next: hftkit config check {target / 'node.yaml'}  then  hftkit run --config {target / 'node.yaml'}"
    )
    return 0
