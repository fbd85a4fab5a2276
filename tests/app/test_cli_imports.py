"""``hftkit --help`` and the command table load only the command line: no pandas, no backtest,
no simulator, no venue adapters (each command imports what it runs when it runs)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "pandas",
    "pyarrow",
    "plotly",
    "distributed",
    "hftkit.backtest.runner",
    "hftkit.sim.runner",
    "hftkit.sim.config",
    "hftkit.venues.binance.adapter",
    "hftkit.venues.thalex.adapter",
    "hftkit.trading.engine",
    "hftkit.storage.recorder",
)


def test_the_command_line_module_imports_none_of_the_heavy_parts():
    probe = (
        "import json, sys; import hftkit.cli; "
        f"print(json.dumps([name for name in {list(HEAVY)!r} if name in sys.modules]))"
    )
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    )
    assert loaded == []


def test_help_lists_every_command():
    shown = subprocess.run(
        [sys.executable, "-m", "hftkit.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("run", "sim", "backtest", "record", "feed", "risk", "bench", "config", "init", "replay"):
        assert command in shown, command
