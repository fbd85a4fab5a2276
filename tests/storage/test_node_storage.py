"""The recorder and InfluxDB inside the node: its market data recorded, its time series in a real
influxd, their status on /health; verdict still holds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hftkit.app import config as node_config
from hftkit.app.node import TradingNode
from hftkit.recording_files import recorded_symbols

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_node_records_and_writes_influx_points(tmp_path: Path, influxd) -> None:
    influxd.query("CREATE DATABASE hftkit_node")
    text = (ROOT / "src/hftkit/app/templates/default.yaml").read_text(encoding="utf-8")
    text = text.replace("  speed: 1\n", "  speed: 4\n") + (
        "recorder:\n  enabled: true\n  directory: rec\n"
        f"influx:\n  enabled: true\n  url: {influxd.url}\n  database: hftkit_node\n"
        "  flush_interval_s: 0.2\n  snapshot_interval_s: 0.5\n  top_of_book_interval_ms: 50\n"
    )
    (tmp_path / "node.yaml").write_text(text, encoding="utf-8")
    node = TradingNode.from_config(node_config.load(tmp_path / "node.yaml"), seconds=4, metrics_port=0)
    summary = asyncio.run(node.run())
    assert summary.verdict.passed, summary.verdict.as_json()

    held = recorded_symbols(tmp_path / "rec")
    assert held.get("thalex") == ["BTC-PERPETUAL"] and held.get("binance_usdm") == ["BTCUSDT"], held
    assert list((tmp_path / "rec" / "normalized").rglob("*.parquet"))
    storage = node.health().storage
    assert storage["recorder"]["dropped"] == 0 and storage["recorder"]["healthy"]
    assert storage["influx"]["written"] > 0 and storage["influx"]["dropped"] == 0, storage["influx"]

    def count(measurement: str) -> int:
        result = influxd.query(f"SELECT count(*) FROM {measurement}", "hftkit_node")["results"][0]
        return max(result["series"][0]["values"][0][1:]) if "series" in result else 0

    assert count("top_of_book") > 10
    assert count("latency") > 0 and count("positions") > 0 and count("pnl") > 0
    assert count("orders") > 0


def test_an_unreachable_influxdb_is_counted_and_shown_while_the_node_keeps_trading(tmp_path: Path) -> None:
    text = (ROOT / "src/hftkit/app/templates/default.yaml").read_text(encoding="utf-8")
    text += (
        "influx:\n  enabled: true\n  url: http://127.0.0.1:9\n  database: nowhere\n"
        "  flush_interval_s: 0.2\n  snapshot_interval_s: 0.5\n  top_of_book_interval_ms: 50\n"
    )
    (tmp_path / "node.yaml").write_text(text, encoding="utf-8")
    node = TradingNode.from_config(node_config.load(tmp_path / "node.yaml"), seconds=4, metrics_port=0)
    summary = asyncio.run(node.run())
    assert summary.verdict.passed, summary.verdict.as_json()  # it kept trading and shut down safe
    assert sum(item.fills for item in summary.instruments) > 0
    influx = node.health().storage["influx"]
    assert not influx["healthy"] and influx["failed_batches"] + influx["retries"] > 0, influx
    assert influx["written"] == 0
    line = node.storage_line()
    assert line.startswith("influx DEGRADED") and "dropped" in line, line
