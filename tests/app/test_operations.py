"""/metrics and /health on 127.0.0.1, scraped by a real Prometheus server and queried back."""

from __future__ import annotations

import asyncio
import gc
import socket
import subprocess
import textwrap
import time

import aiohttp
import pytest

from hftkit.app.operations import Health, OperationsServer
from hftkit.app.runtime import GcMonitor, freeze_after_start, freeze_started, rss_bytes
from hftkit.metrics import MetricsRegistry


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_health_is_ready_only_when_every_venue_is_synced_and_the_switch_is_clear():
    state = {"health": Health(True, venues={"thalex": True})}
    async with OperationsServer(MetricsRegistry(), lambda: state["health"], port=0) as server:
        async with aiohttp.ClientSession() as client:
            answer = await client.get(server.url + "/health")
            assert answer.status == 200 and (await answer.json())["ready"] is True
            state["health"] = Health(False, ("thalex: connection lost",), {"thalex": False})
            answer = await client.get(server.url + "/health")
            body = await answer.json()
            assert answer.status == 503 and body["reasons"] == ["thalex: connection lost"]
            live = await client.get(server.url + "/health/live")
            assert live.status == 200


async def test_metrics_carry_latency_rss_and_gc_pauses():
    metrics = MetricsRegistry()
    monitor = GcMonitor(metrics)
    monitor.install()
    try:
        gc.collect()
        metrics.histogram("tick_to_trade_ns", venue="thalex").record(42_000)
        async with OperationsServer(metrics, lambda: Health(True), port=0) as server:
            async with aiohttp.ClientSession() as client:
                answer = await client.get(server.url + "/metrics")
                text = await answer.text()
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert 'tick_to_trade_ns_count{venue="thalex"} 1.0' in text
        assert "process_rss_bytes" in text and 'gc_pause_ns_count{generation="2"}' in text
        assert rss_bytes() > 10_000_000
    finally:
        monitor.uninstall()


def test_the_node_s_own_start_up_collections_are_timed_apart_from_the_pauses_it_suffers() -> None:
    metrics = MetricsRegistry()
    monitor = GcMonitor(metrics)
    monitor.install()
    try:
        gc.collect(1)  # a collection the interpreter would run by itself: a pause
        paused = metrics.get("gc_pause_ns", generation=1)
        assert paused is not None and paused.snapshot().count == 1
        frozen = monitor.freeze(freeze_after_start)  # the node's own full collection and freeze
        assert frozen == gc.get_freeze_count() > 0
        assert metrics.get("gc_pause_ns", generation=2) is None  # not a pause the node suffered
        startup = metrics.get("gc_startup_collect_ns")
        assert startup is not None and startup.snapshot().count == 1
        monitor.freeze(freeze_started)
        assert startup.snapshot().count == 2 and paused.snapshot().count == 1
        gc.collect(1)
        assert paused.snapshot().count == 2  # pauses are recorded again afterwards
    finally:
        monitor.uninstall()
        gc.unfreeze()


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_real_prometheus_scrapes_a_running_node_and_answers_queries(tmp_path, debian_binary):
    """The node trades (the built-in default, faster replay); Prometheus scrapes its /metrics
    and answers queries for the series the alert rules use."""
    from pathlib import Path

    from hftkit.app import config as node_config
    from hftkit.app.node import TradingNode

    prometheus = debian_binary("prometheus", "prometheus")
    root = Path(__file__).resolve().parents[2]
    text = (root / "src/hftkit/app/templates/default.yaml").read_text(encoding="utf-8")
    (tmp_path / "node.yaml").write_text(text.replace("  speed: 1\n", "  speed: 4\n"), encoding="utf-8")
    node = TradingNode.from_config(node_config.load(tmp_path / "node.yaml"), seconds=60, metrics_port=0)
    task = asyncio.create_task(node.run())
    process: subprocess.Popen[bytes] | None = None
    found: dict[str, float] = {}
    try:
        while node.operations is None or node.phase != "running":
            assert not task.done(), "the node stopped before running"
            await asyncio.sleep(0.1)
        web_port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            textwrap.dedent(
                f"""
                global:
                  scrape_interval: 1s
                scrape_configs:
                  - job_name: hftkit
                    scrape_interval: 500ms
                    static_configs:
                      - targets: ["127.0.0.1:{node.operations.port}"]
                """
            ),
            encoding="utf-8",
        )
        process = subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{web_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        queries = {
            "ready": "node_ready",
            "sent": 'sum(orders_sent_total{venue="thalex"})',
            "tick_to_trade": 'tick_to_trade_ns_count{venue="thalex"}',
            "up": 'up{job="hftkit"}',
            # the engine's and the gateway's own counts (orders sent, risk rejects, deferrals)
            "gateway_sent": 'gateway_events_total{event="orders_sent"}',
        }
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as client:
            while time.monotonic() < deadline and not (
                len(found) == len(queries)
                and found["sent"] > 0
                and found["tick_to_trade"] > 0
                and found["gateway_sent"] > 0
            ):
                await asyncio.sleep(0.5)
                for name, query in queries.items():
                    try:
                        answer = await client.get(
                            f"http://127.0.0.1:{web_port}/api/v1/query", params={"query": query}
                        )
                        result = (await answer.json())["data"]["result"]
                    except (aiohttp.ClientError, KeyError, ValueError):
                        continue
                    if result:
                        found[name] = float(result[0]["value"][1])
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
    finally:
        node.request_stop("test over")
        summary = await task
        if process is not None:
            process.terminate()
            process.wait(timeout=20)
    assert found.get("up") == 1.0 and found.get("ready") == 1.0, found
    assert found.get("sent", 0) > 0 and found.get("tick_to_trade", 0) > 0, found
    assert found.get("gateway_sent", 0) > 0, found
    assert summary.verdict.passed, summary.verdict.as_json()
