"""The trading node end to end: simulator, real adapters over loopback, books proved, orders accounted.

In-process runs check what the node measured and that its checks can fail; subprocess runs
check the commands a user types (``hftkit run``, and the recorded-market replay that moved to
``hftkit replay run``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from hftkit.app import dashboard
from hftkit.app.node import PAUSED_SPEED, PROBE_PREFIX, NodeConfig, NodeReport, TradingNode
from hftkit.core.types import OrderStatus
from hftkit.datasets import shared_data_dir
from hftkit.sim.runner import Simulator

HFTKIT = Path(sys.executable).with_name("hftkit")


@pytest.fixture(autouse=True)
def _recordings() -> None:
    shared_data_dir()  # the recordings are required: a missing shared/data fails with where it looked


def quick(seconds: float = 2.0, settle_timeout_s: float = 5.0) -> NodeConfig:
    return NodeConfig(
        seconds=seconds,
        speed=2.0,
        order_interval_s=0.15,
        order_rest_s=0.05,
        settle_timeout_s=settle_timeout_s,
    )


def leftover_tasks() -> list[asyncio.Task[object]]:
    current = asyncio.current_task()
    return [task for task in asyncio.all_tasks() if task is not current and not task.done()]


async def test_the_node_keeps_books_in_sync_and_accounts_for_every_order() -> None:
    node = TradingNode(quick())
    report = await node.run()
    assert report.healthy, report.problems
    assert {(check.venue, check.symbol) for check in report.book_checks} == {
        ("binance", "BTCUSDT"),
        ("binance", "ETHUSDT"),
        ("thalex", "BTC-PERPETUAL"),
        ("thalex", "ETH-PERPETUAL"),
    }
    assert all(check.matched and check.levels == node.config.compare_levels for check in report.book_checks)
    for name, monitor in node.monitors.items():
        ledger = node.ledgers[name]
        assert ledger.sent >= 4 and ledger.acknowledged == ledger.sent == ledger.cancelled, ledger
        assert ledger.accounted and ledger.rejected == 0 and not ledger.incidents
        # every round trip was timed, and the venue's own event stream reported each cancel
        assert node.place_latency[name].count == ledger.acknowledged
        assert node.cancel_latency[name].count == ledger.cancelled
        probes = {cid: update for cid, update in monitor.orders.items() if cid.startswith(PROBE_PREFIX)}
        assert len(probes) == ledger.sent
        assert {update.status for update in probes.values()} == {OrderStatus.CANCELED}
        assert monitor.decode.count > 0 and monitor.book_apply.count > 0
        assert monitor.reconnects == 0
        for state in monitor.books.values():
            assert state.synced and state.crossed == 0 and state.ticker_mismatches == 0
            assert state.deltas > 0 and state.average_rate > 0
    binance_books = node.monitors["binance"].books.values()
    assert sum(state.tickers_checked for state in binance_books) > 0  # bookTickers really compared
    await asyncio.sleep(0.01)  # tasks cancelled during the shutdown finish on the next loop turns
    assert not leftover_tasks()  # simulator, adapters and probes all stopped

    text = io.StringIO()
    Console(file=text, width=120).print(dashboard.render(node))
    output = text.getvalue()
    for expected in ("BTC-PERPETUAL", "ETHUSDT", "place round trip", "book apply", "decode", "reconnects"):
        assert expected in output


async def test_after_reconnects_the_books_resync_and_every_order_is_still_accounted_for() -> None:
    node = TradingNode(quick(seconds=3.0))
    dropped: list[str] = []

    def drop_connections_once() -> None:
        if dropped or node.phase != "running":
            return
        thalex, binance = node.adapters["thalex"], node.adapters["binance"]
        thalex.reconnect()  # type: ignore[attr-defined]
        for socket in binance.streams.sockets:  # type: ignore[attr-defined]
            socket.reconnect()
        dropped.append("both")

    report = await node.run(on_tick=drop_connections_once)
    assert dropped
    assert report.healthy, report.problems
    for name, monitor in node.monitors.items():
        assert monitor.reconnects >= 1, name
        for symbol, state in monitor.books.items():
            assert state.resyncs >= 1 and state.snapshots >= 2 and state.synced, (name, symbol)
        assert node.ledgers[name].accounted


class DriftingNode(TradingNode):
    """A node whose Binance BTCUSDT book silently loses one level: its final check must say so."""

    async def _verify_books(self, sim: Simulator, report: NodeReport) -> None:
        for venue in sim.venues:
            sim.set_speed(venue, PAUSED_SPEED)
        await asyncio.sleep(0.5)  # what was in flight arrives; from here the books hold still
        book = self.monitors["binance"].books["BTCUSDT"].book
        price, _ = book.bids(5)[4]
        book.apply_delta([(price, 0)], [])
        await super()._verify_books(sim, report)


async def test_a_book_that_drifts_from_the_venue_fails_the_run() -> None:
    node = DriftingNode(quick(seconds=1.0, settle_timeout_s=1.0))
    report = await node.run()
    assert not report.healthy
    failed = [check for check in report.book_checks if not check.matched]
    assert [(check.venue, check.symbol, check.levels) for check in failed] == [("binance", "BTCUSDT", 4)]
    assert any("binance:BTCUSDT differs" in problem for problem in report.problems)


def test_the_command_exits_non_zero_and_says_why_when_a_check_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    original = TradingNode._final_checks

    def with_a_problem(self: TradingNode, sim: Simulator, report: NodeReport) -> None:
        original(self, sim, report)
        report.problems.append("an injected problem")

    monkeypatch.setattr(TradingNode, "_final_checks", with_a_problem)
    output = io.StringIO()
    try:
        code = dashboard.run_node(1.0, 2.0, console=Console(file=output, force_terminal=False))
    finally:
        asyncio.set_event_loop_policy(None)  # run_node installs uvloop for the process
    text = output.getvalue()
    assert code == 1
    assert "verdict: FAILED" in text and "an injected problem" in text


def test_the_command_names_the_phase_and_the_error_when_the_node_cannot_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def never_synced(self: TradingNode) -> None:
        raise TimeoutError("books not synced within 10s: ['thalex:BTC-PERPETUAL']")

    monkeypatch.setattr(TradingNode, "_wait_synced", never_synced)
    output = io.StringIO()
    try:
        code = dashboard.run_node(1.0, console=Console(file=output, force_terminal=False))
    finally:
        asyncio.set_event_loop_policy(None)
    assert code == 1
    assert "FAILED during starting: TimeoutError: books not synced" in output.getvalue()


def _run(*arguments: str, timeout: float) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [str(HFTKIT), *arguments], capture_output=True, text=True, timeout=timeout, env=environment
    )


@pytest.mark.skipif(not HFTKIT.exists(), reason="the hftkit console script is not installed")
def test_hftkit_run_exits_zero_and_prints_the_table() -> None:
    result = _run("run", "--seconds", "5", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout
    for expected in (
        "BTCUSDT",
        "ETHUSDT",
        "BTC-PERPETUAL",
        "ETH-PERPETUAL",
        "place round trip",
        "books compared level by level",
        "verdict: books stayed in sync with both venues and every order was accounted for",
    ):
        assert expected in output, output
    assert "\x1b[" not in output  # not a terminal: plain tables, no live refresh
    uvloop_installed = importlib.util.find_spec("uvloop") is not None
    assert ("on uvloop" in output) is uvloop_installed


@pytest.mark.skipif(not HFTKIT.exists(), reason="the hftkit console script is not installed")
def test_the_recorded_market_replay_moved_to_hftkit_replay_run() -> None:
    result = _run("replay", "run", "--seconds", "1", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: all books consistent" in result.stdout
