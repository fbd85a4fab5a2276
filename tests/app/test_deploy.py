"""deploy/: the alert rules are valid Prometheus rules, and every series they and the Grafana
dashboard read is one a running node really exports."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import aiohttp
import pytest
import yaml

from hftkit.app import config as node_config
from hftkit.app.node import TradingNode

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "hftkit-alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "hftkit-node.json"
# PromQL words and Prometheus's own series, not ours
PROMQL = {"sum", "by", "rate", "increase", "clamp_min", "on", "and", "or", "up", "avg", "max", "min"}
IDENTIFIER = re.compile(r"\b([a-z_][a-z0-9_]*)\b(?=\s*(\{|\[|\)|>|<|=|$))")


def expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    found = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found += [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    return found


def series_names() -> set[str]:
    names: set[str] = set()
    for expression in expressions():
        without_labels = re.sub(r"\{[^}]*\}", "{}", expression)
        without_labels = re.sub(r"\bby\s*\([^)]*\)", "", without_labels)  # grouping labels
        for match in IDENTIFIER.finditer(without_labels):
            if match.group(1) not in PROMQL:
                names.add(match.group(1))
    return names


def test_the_alert_rules_pass_promtool(debian_binary):
    promtool = debian_binary("promtool", "prometheus")
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rules_carry_the_operators_thresholds():
    text = RULES.read_text(encoding="utf-8")
    for threshold in ("> 50e6", "> 0.01", "> 0.9", "> 5"):
        assert threshold in text


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_every_series_the_rules_and_dashboard_read_is_exported_by_a_running_node(tmp_path):
    text = (ROOT / "src/hftkit/app/templates/default.yaml").read_text(encoding="utf-8")
    path = tmp_path / "node.yaml"
    path.write_text(text.replace("  speed: 1\n", "  speed: 4\n"), encoding="utf-8")
    node = TradingNode.from_config(node_config.load(path), seconds=10, metrics_port=0)
    task = asyncio.create_task(node.run())
    scraped = ""
    async with aiohttp.ClientSession() as client:
        while not task.done():
            await asyncio.sleep(0.5)
            if node.operations is not None and node.phase == "running":
                answer = await client.get(node.operations.url + "/metrics")
                scraped = await answer.text()
    summary = await task
    assert summary.verdict.passed, summary.verdict.as_json()
    exported = {line.split("{")[0].split(" ")[0] for line in scraped.splitlines() if line and line[0] != "#"}
    families = exported | {name.removesuffix("_count").removesuffix("_sum") for name in exported}
    wanted = series_names()
    assert {"tick_to_trade_ns", "node_ready", "rate_limit_used_ratio", "fills_total"} <= wanted
    assert wanted - families == set()
