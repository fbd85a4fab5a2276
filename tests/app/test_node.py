"""The trading node built from a config: it trades, shuts down safe and proves the session."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import pytest

from hftkit.app import config as node_config
from hftkit.app.node import TradingNode, builtin_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


def fast_default(tmp_path: Path, speed: float = 4.0, extra: str = "") -> node_config.LoadedConfig:
    """The built-in default config with a faster replay (more market per test second)."""
    text = (ROOT / "src/hftkit/app/templates/default.yaml").read_text(encoding="utf-8")
    text = text.replace("  speed: 1\n", f"  speed: {speed}\n") + extra
    path = tmp_path / "node.yaml"
    path.write_text(text, encoding="utf-8")
    return node_config.load(path)


async def test_the_default_node_trades_on_both_venues_and_the_verdict_holds(tmp_path):
    node = TradingNode.from_config(fast_default(tmp_path), seconds=12, metrics_port=0)
    summary = await node.run()
    fills = {item.venue: item.fills for item in summary.instruments}
    assert fills["thalex"] > 0 and fills["binance_usdm"] > 0, summary.as_json()
    assert summary.verdict.passed, summary.verdict.as_json()
    assert set(summary.verdict.checks) == {
        "no order resting, every order accounted for",
        "positions equal the venue's",
        "books equal the venue's level by level",
        "PnL and fees from the venue's fill ledger equal the node's",
    }
    # the engine keeps no book of its own: the per-level work happens once, in the adapter
    assert node.engine is not None and not hasattr(node.engine, "books")
    thalex = next(item for item in summary.instruments if item.venue == "thalex")
    assert thalex.tick_to_trade_p50_us is not None and thalex.tick_to_trade_p50_us > 0


async def test_a_book_that_drifts_from_the_venue_fails_the_verdict(tmp_path, monkeypatch):
    node = TradingNode.from_config(fast_default(tmp_path), seconds=3, metrics_port=0)
    original = node._compare_books

    def drifted() -> list[str]:
        book = node.adapters["thalex"].book("BTC-PERPETUAL")
        assert book is not None
        bid = book.best_bid()
        assert bid is not None
        book.apply_delta([(bid[0], bid[1] + 1)], [])  # one lot more than the venue has
        return original()

    monkeypatch.setattr(node, "_compare_books", drifted)
    summary = await node.run()
    assert not summary.verdict.passed
    assert summary.verdict.checks["books equal the venue's level by level"] is False
    assert any("bids differ from level 0" in problem for problem in summary.verdict.problems)


async def test_health_turns_not_ready_when_a_venue_connection_drops(tmp_path):
    # the default's book_health is reject: a lost book blocks its own orders until resynced instead
    # of tripping the kill switch (which stays tripped, and so not ready, until an operator resets it)
    loaded = fast_default(tmp_path, speed=1)
    assert "book_health: reject" in (tmp_path / "node.yaml").read_text(encoding="utf-8")
    node = TradingNode.from_config(loaded, seconds=30, metrics_port=0)
    task = asyncio.create_task(node.run())
    statuses: list[tuple[int, dict]] = []
    try:
        async with aiohttp.ClientSession() as client:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not statuses:
                await asyncio.sleep(0.1)
                if node.operations is None or node.phase != "running":
                    continue
                answer = await client.get(node.operations.url + "/health")
                if answer.status == 200:
                    statuses.append((answer.status, await answer.json()))
            assert statuses, "the node never became ready"
            assert node.sim is not None
            await node.sim.drop_connections("thalex")  # the venue drops every client connection
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                answer = await client.get(node.operations.url + "/health")
                if answer.status == 503:
                    statuses.append((answer.status, await answer.json()))
                    break
                await asyncio.sleep(0.02)
            metrics = await (await client.get(node.operations.url + "/metrics")).text()
            # the adapter reconnects and resyncs on its own: ready again
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                answer = await client.get(node.operations.url + "/health")
                if answer.status == 200:
                    statuses.append((answer.status, await answer.json()))
                    break
                await asyncio.sleep(0.05)
    finally:
        node.request_stop("test over")
        summary = await task
    assert [status for status, _ in statuses] == [200, 503, 200]
    assert any("thalex" in reason for reason in statuses[1][1]["reasons"])
    assert 'connection_failures_total{venue="thalex"}' in metrics
    assert summary.verdict.checks["no order resting, every order accounted for"], summary.verdict.as_json()


STRATEGY = '''
import msgspec
from hftkit.core.types import Quote, Side
from hftkit.trading.strategy import Decision, Strategy, Subscription


class Params(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    venue: str
    symbol: str
    offset_ticks: int = 2
    size: int = 2


class TouchQuoter(Strategy):
    """Quotes one level each side, offset_ticks behind the touch, on every book event."""

    config_type = Params

    def __init__(self, params, name="touch"):
        super().__init__(name)
        self.params = params
        self.books_seen = 0

    def subscriptions(self):
        return [Subscription(self.params.venue, (self.params.symbol,))]

    def on_book(self, venue, symbol, book):
        self.books_seen += 1
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            return None
        quotes = (
            Quote(Side.BUY, bid[0] - self.params.offset_ticks, self.params.size),
            Quote(Side.SELL, ask[0] + self.params.offset_ticks, self.params.size),
        )
        return Decision(quotes={(venue, symbol): quotes})
'''


def test_a_strategy_in_a_file_outside_the_package_runs_on_the_simulator(tmp_path):
    (tmp_path / "touch_strategy.py").write_text(STRATEGY, encoding="utf-8")
    (tmp_path / "node.yaml").write_text(
        textwrap.dedent(
            """
            venues:
              thalex: {kind: thalex, environment: sim}
            strategies:
              - name: touch
                path: touch_strategy:TouchQuoter
                params: {venue: thalex, symbol: BTC-PERPETUAL, offset_ticks: 3}
            simulator: {speed: 4}
            """
        ),
        encoding="utf-8",
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hftkit.app.cli",
            "run",
            "--config",
            str(tmp_path / "node.yaml"),
            "--seconds",
            "5",
            "--json",
            "--metrics-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    (thalex,) = summary["instruments"]
    assert thalex["venue"] == "thalex" and thalex["orders_sent"] > 0 and thalex["orders_acked"] > 0
    assert summary["verdict"]["passed"] is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("venues:\n  thalex: {kind: thalex, enviroment: sim}\n", "did you mean `environment`"),
        ("venues:\n  thalex: {kind: thalex}\nmetrics: {port: nine}\n", "metrics.port: Expected `int`"),
        (
            "venues:\n  u: {kind: binance, market: usdm, environment: testnet,"
            " api_key: '${HK_NOPE}', api_secret: x}\n",
            "environment variable HK_NOPE is not set",
        ),
        (
            "venues:\n  u: {kind: binance, market: usdm, environment: mainnet, api_key: k, api_secret: s}\n"
            "strategies:\n  - {name: m, path: 'hftkit.strategies.market_maker:MarketMaker', "
            "params: {venue: u, symbol: BTCUSDT, size_per_level: 1, max_position: 1}}\n",
            "have no risk limits",
        ),
        (
            "venues:\n  u: {kind: binance, market: usdm, environment: mainnet, api_key: k, api_secret: s}\n"
            "strategies:\n  - {name: m, path: 'hftkit.strategies.market_maker:MarketMaker', "
            "params: {venue: u, symbol: BTCUSDT, size_per_level: 1, max_position: 1}}\n"
            "risk:\n  instruments:\n    - {venue: u, symbol: BTCUSDT, limits: {max_position: '0.01'}}\n",
            "need an explicit confirmation",
        ),
    ],
)
def test_config_failures_are_one_clear_line_exit_2_and_send_nothing(tmp_path, text, message):
    path = tmp_path / "node.yaml"
    path.write_text(text, encoding="utf-8")
    environment = {key: value for key, value in os.environ.items() if key != "HK_NOPE"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "hftkit.app.cli", "run", "--config", str(path), "--seconds", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and str(path) in lines[0]
    assert result.stdout == ""
    assert time.monotonic() - started < 20  # refused before connecting anywhere


def test_sigterm_cancels_every_order_and_the_verdict_still_runs(tmp_path):
    fast_default(tmp_path)  # writes node.yaml
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hftkit.app.cli",
            "run",
            "--config",
            str(tmp_path / "node.yaml"),
            "--json",
            "--metrics-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        time.sleep(12)  # start-up, sync, and quoting under way
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["stopped_by"] == "SIGTERM"
    assert summary["verdict"]["checks"]["no order resting, every order accounted for"] is True, (
        summary["verdict"],
        stderr[-2000:],
    )
    assert sum(item["orders_sent"] for item in summary["instruments"]) > 0
    assert process.returncode == (0 if summary["verdict"]["passed"] else 1)


def test_make_run_works_without_shared_data_beside_the_repository(tmp_path):
    """The bundled slice: HFTKIT_SHARED_DATA points at an empty folder, the default still trades."""
    environment = {**os.environ, "HFTKIT_SHARED_DATA": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "hftkit.app.cli", "run", "--seconds", "6", "--json", "--metrics-port", "0"],
        capture_output=True,
        text=True,
        timeout=90,
        env=environment,
        cwd=tmp_path,
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert any("bundled slice" in source for source in summary["data"]), summary["data"]
    assert result.returncode == 0, summary["verdict"]


def test_builtin_config_is_the_documented_default():
    loaded = builtin_config()
    assert set(loaded.node.venues) == {"binance_usdm", "thalex"}
    assert [strategy.name for strategy in loaded.node.strategies] == ["maker", "hedger"]
