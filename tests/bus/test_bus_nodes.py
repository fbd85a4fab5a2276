"""Nodes on the bus: a feed node publishes the simulator's books, a strategy node with
``market_data: bus`` trades from them (orders straight to the venue) and its verdict holds (its
books equal the venue's level by level); the risk node trips every node's kill switch."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from hftkit.app import config as node_config
from hftkit.app.feed_node import FeedNode
from hftkit.app.node import TradingNode
from hftkit.app.node_bus import REPORT_STREAM, BusMarketVenue, kill_bound_s
from hftkit.app.risk_node import FirmRisk, RiskNode
from hftkit.bus.messages import NodeReport, PositionFigure
from hftkit.sim.runner import Simulator

ROOT = Path(__file__).resolve().parents[2]


def _configs(tmp_path: Path, url: str) -> tuple[node_config.LoadedConfig, node_config.LoadedConfig]:
    default = (ROOT / "src/hftkit/app/templates/default.yaml").read_text(encoding="utf-8")
    default = default.replace("  speed: 1\n", "  speed: 4\n")
    bus = (
        f"bus:\n  enabled: true\n  backend: redis\n  url: {url}\n  node_id: NODE\n  block_ms: 50\n"
        "  report_interval_s: 0.2\n  snapshot_interval_s: 0.5\n"
    )
    strategy = tmp_path / "strategy.yaml"
    strategy.write_text(
        default + bus.replace("NODE", "strategy-1") + "  publish_account: true\nmarket_data: bus\n",
        encoding="utf-8",
    )
    feed = tmp_path / "feed.yaml"
    feed.write_text(
        default
        + bus.replace("NODE", "feed-1")
        + "  publish:\n    thalex: [BTC-PERPETUAL]\n    binance_usdm: [BTCUSDT]\n",
        encoding="utf-8",
    )
    return node_config.load(strategy), node_config.load(feed)


@pytest.mark.slow
@pytest.mark.service
@pytest.mark.timeout(90)
async def test_strategy_node_trades_on_books_from_the_bus_and_obeys_the_firm_kill_switch(
    tmp_path, redis_server
) -> None:  # type: ignore[no-untyped-def]
    strategy_config, feed_config = _configs(tmp_path, redis_server.url)
    # the simulator config only (the node that runs is built below with the shared simulator)
    planner = TradingNode.from_config(strategy_config, simulator=object())  # type: ignore[arg-type]
    sim_config = planner.simulator_config()
    assert sim_config is not None
    async with Simulator(sim_config) as sim:
        await sim.wait_seeded()
        node = TradingNode.from_config(strategy_config, seconds=6, metrics_port=0, simulator=sim)
        # one simulator: the feed's market is the venue the strategy node sends its orders to
        feed = FeedNode(feed_config, simulator=sim, metrics_port=0)
        feed_task = asyncio.create_task(feed.run())
        tripped_at: list[float] = []

        async def kill_midway() -> float:
            await asyncio.sleep(4.0)
            risk_config = node_config.RiskNodeConfig(
                bus=node_config.BusConfig(
                    enabled=True, backend="redis", url=redis_server.url, node_id="risk", block_ms=50
                )
            )
            sent = time.monotonic()
            await RiskNode(risk_config).run(kill="operator test")
            while node.engine is not None and not node.engine.risk.tripped:
                await asyncio.sleep(0.001)
            tripped_at.append(time.monotonic())
            return sent

        killer = asyncio.create_task(kill_midway())
        summary = await node.run()
        sent = await killer
        feed.request_stop()
        await asyncio.wait_for(feed_task, 20)
    assert all(isinstance(adapter, BusMarketVenue) for adapter in node.adapters.values())
    assert summary.verdict.checks.get("books equal the venue's level by level") is True, (
        summary.verdict.as_json()
    )
    assert summary.verdict.passed, summary.verdict.as_json()
    assert node.engine is not None and node.engine.risk.tripped
    assert "firm-wide kill switch from risk: operator test" in node.engine.risk.audit[0].detail
    # the publish -> trip time includes the risk node's own start; the node's share is bounded
    assert node.bus_link.kills_received == 1
    assert tripped_at[0] - sent < 2.0 + kill_bound_s(strategy_config.node.bus)
    latency = node.metrics.snapshot().gauges
    kill_latency = next(value for key, value in latency.items() if key.name == "bus_kill_latency_seconds")
    assert 0 <= kill_latency < kill_bound_s(strategy_config.node.bus)
    status = node.bus_link.bus.status()
    book_streams = [name for name in status.streams if name.startswith("hftkit:book:")]
    assert book_streams and all(status.streams[name].delivered > 0 for name in book_streams)
    assert "bus redis ok" in node.bus_line()
    gauges = {key.name: key for key in node.metrics.snapshot().gauges}
    for name in ("bus_lag_seconds", "bus_pending", "bus_reconnects", "bus_dropped", "bus_connected"):
        assert name in gauges, name  # what /metrics and the dashboard show of the bus
    fills = {item.venue: item.fills for item in summary.instruments}
    assert sum(fills.values()) > 0, summary.as_json()
    # publish_account: the node's fills and order updates are on the bus, one stream per instrument
    import redis.asyncio as redis_asyncio

    client = redis_asyncio.Redis.from_url(redis_server.url)
    fill_entries = 0
    for item in summary.instruments:
        fill_entries += await client.xlen(f"hftkit:fill:{item.venue}:{item.symbol}")
        if item.orders_sent:
            assert await client.xlen(f"hftkit:order:{item.venue}:{item.symbol}") > 0
    await client.aclose()
    assert fill_entries > 0  # (several fills may share one entry: the writer batches per stream)
    from rich.console import Console

    from hftkit.app.dashboard import render

    console = Console(record=True, width=240)
    console.print(render(node))
    assert "bus redis ok" in console.export_text()


def _report(node: str, published_ns: int, quantity: str, realized: str) -> NodeReport:
    figure = PositionFigure("binance_usdm", "BTCUSDT", "BTC", quantity, realized, "0", "USDT")
    return NodeReport(node, "strategy", published_ns, False, [figure])


def test_firm_risk_adds_every_node_and_names_each_breach() -> None:
    limits = node_config.FirmRiskConfig(
        max_loss={"USDT": "100"}, max_position={"BTC": "1"}, max_report_age_s=1.0, trip_on_stale=True
    )
    risk = FirmRisk(limits)
    now = 10_000_000_000
    risk.on_report(_report("a", now, "0.6", "-60"))
    risk.on_report(_report("b", now, "0.3", "-30"))
    view = risk.view(now)
    assert view.positions == {"BTC": __import__("decimal").Decimal("0.9")}
    assert risk.breaches(view) == []
    risk.on_report(_report("b", now + 1, "0.5", "-50"))
    risk.on_report(_report("b", now - 5, "0", "0"))  # older than what is known: ignored
    breaches = risk.breaches(risk.view(now + 1))
    assert breaches == ["firm PnL -110 USDT below -100", "firm net position 1.1 BTC beyond 1"]
    stale = risk.breaches(risk.view(now + 3_000_000_000))
    assert any("node a silent" in item for item in stale)


@pytest.mark.service
async def test_risk_node_trips_from_reports_and_the_kill_reaches_subscribers(redis_server) -> None:  # type: ignore[no-untyped-def]
    from hftkit.app.node_bus import NodeBusLink
    from hftkit.metrics import MetricsRegistry

    bus_config = node_config.BusConfig(
        enabled=True,
        backend="redis",
        url=redis_server.url,
        node_id="risk",
        block_ms=20,
        risk=node_config.FirmRiskConfig(max_loss={"USDT": "100"}),
    )
    risk_node = RiskNode(node_config.RiskNodeConfig(bus=bus_config), seconds=3)
    strategy = NodeBusLink(
        node_config.BusConfig(enabled=True, backend="redis", url=redis_server.url, node_id="s1", block_ms=20),
        MetricsRegistry(),
        role="strategy",
    )
    kills: list[tuple[float, str]] = []
    strategy.on_kill(lambda reason: kills.append((time.monotonic(), reason)))
    await strategy.start()
    risk_task = asyncio.create_task(risk_node.run())
    await asyncio.sleep(0.5)
    strategy.bus.publish(REPORT_STREAM, _report("s1", time.time_ns(), "0.1", "-150"))
    published = time.monotonic()
    while not kills and time.monotonic() - published < 3:
        await asyncio.sleep(0.005)
    risk_node.request_stop()
    result = await risk_task
    await strategy.close()
    assert kills and "firm PnL -150 USDT below -100" in kills[0][1]
    assert result["tripped"] and result["nodes"] == ["s1"]
    assert kills[0][0] - published < 0.1 + 0.05 + kill_bound_s(bus_config)  # report + check + kill


@pytest.mark.service
async def test_a_standing_trip_holds_for_nodes_started_later_until_reset(redis_server) -> None:  # type: ignore[no-untyped-def]
    from hftkit.app.node_bus import NodeBusLink
    from hftkit.metrics import MetricsRegistry

    def risk_config() -> node_config.RiskNodeConfig:
        return node_config.RiskNodeConfig(
            bus=node_config.BusConfig(
                enabled=True, backend="redis", url=redis_server.url, node_id="risk", block_ms=20
            )
        )

    async def new_node_trips(name: str) -> list[str]:
        link = NodeBusLink(
            node_config.BusConfig(
                enabled=True, backend="redis", url=redis_server.url, node_id=name, block_ms=20
            ),
            MetricsRegistry(),
            role="strategy",
        )
        reasons: list[str] = []
        await link.start()
        link.on_kill(reasons.append)
        await link.close()
        return reasons

    assert await new_node_trips("before") == []
    await RiskNode(risk_config()).run(kill="venue outage")
    assert await new_node_trips("late") == ["firm-wide kill switch from risk (standing): venue outage"]
    await RiskNode(risk_config()).run(reset="outage over")
    assert await new_node_trips("after-reset") == []


def test_market_data_from_the_bus_refuses_a_private_simulator_for_orders(tmp_path) -> None:  # type: ignore[no-untyped-def]
    strategy_config, _ = _configs(tmp_path, "redis://127.0.0.1:1/0")
    with pytest.raises(node_config.ConfigError, match="own simulator would take the orders"):
        TradingNode.from_config(strategy_config)
