"""``hftkit run``: load and check the config, run the node, show it, exit with the verdict.

Exit codes: 0 the verdict holds; 1 it does not (or the node failed while running); 2 the config
was refused (one line on stderr, nothing sent); 130 interrupted before the node could settle.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import traceback
from pathlib import Path

from rich.console import Console

from hftkit.app import config as node_config
from hftkit.app import logs
from hftkit.app.config_cli import CONFIG_EXIT_CODE
from hftkit.app.dashboard import Dashboard, plain_console, summary_view
from hftkit.app.node import NodeSummary, TradingNode, builtin_config
from hftkit.app.runtime import apply_settings, install_event_loop


def load(config_path: str | None) -> node_config.LoadedConfig:
    return builtin_config() if config_path is None else node_config.load(config_path)


def run_command(
    config_path: str | None,
    *,
    seconds: float | None,
    live: bool = False,
    as_json: bool = False,
    dashboard: bool = True,
    metrics_port: int | None = None,
    console: Console | None = None,
) -> int:
    try:
        loaded = load(config_path)
        node = TradingNode.from_config(loaded, live=live, seconds=seconds, metrics_port=metrics_port)
    except node_config.ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return CONFIG_EXIT_CODE
    settings = loaded.node
    show = dashboard and settings.dashboard.enabled and not as_json
    logs.configure(settings.logging.level, "json" if not show else settings.logging.format)
    loop_name = install_event_loop(settings.runtime.uvloop)
    apply_settings(gc_thresholds=settings.runtime.gc_thresholds, cpu_affinity=settings.runtime.cpu_affinity)
    console = plain_console(console)
    if show:
        venues = ", ".join(f"{name} ({venue.environment})" for name, venue in settings.venues.items())
        strategies = ", ".join(strategy.name for strategy in settings.strategies)
        console.print(f"hftkit run: {loaded.file}: {strategies} on {venues}; {loop_name}")
    else:
        logging.getLogger("hftkit.run").info(
            "starting", extra={"config": loaded.file, "loop": loop_name, "seconds": node.seconds}
        )
    try:
        if show:
            with Dashboard(node, console, settings.dashboard.refresh_per_s):
                summary = asyncio.run(node.run())
        else:
            summary = asyncio.run(node.run())
    except KeyboardInterrupt:
        print("hftkit run: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the command's boundary: say what failed and where, exit non-zero
        frames = traceback.extract_tb(error.__traceback__)
        where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
        print(
            f"hftkit run: FAILED during {node.phase}: {type(error).__name__}: {error}{where}", file=sys.stderr
        )
        return 1
    report(node, summary, console, as_json=as_json)
    return 0 if summary.verdict.passed else 1


def report(node: TradingNode, summary: NodeSummary, console: Console, *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(summary.as_json(), default=str) + "\n")
        sys.stdout.flush()
        return
    console.print(summary_view(node, summary))


__all__ = ["run_command"]
