"""run_backtest and ``hftkit backtest``: the node's engine and strategy over recorded data."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hftkit.app import config as node_config
from hftkit.app.backtest_plan import plan_from_config, run_backtest
from hftkit.app.cli import app
from hftkit.app.config import ConfigError
from hftkit.app.node import TradingNode
from hftkit.backtest import BacktestResult
from hftkit.datasets import DataNotFoundError, shared_data_dir

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "backtest_maker.yaml"
FILES = ("orders", "fills", "positions", "equity", "market", "latency")


def short_config(
    tmp_path: Path, *, start: str = "2024-08-08T23:54:20Z", end: str = "2024-08-08T23:54:40Z"
) -> Path:
    """The shipped example over a 20-second slice (the books build from the file's start)."""
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace('  start: "2024-08-08T23:54:30Z"', f'  start: "{start}"\n  end: "{end}"')
    path = tmp_path / "backtest.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def short_result(tmp_path_factory: pytest.TempPathFactory) -> BacktestResult:
    return run_backtest(short_config(tmp_path_factory.mktemp("short")))


def test_the_market_maker_trades_the_recording_and_the_books_balance(short_result: BacktestResult):
    result = short_result
    summary = result.summary
    assert summary["fills"] > 0 and summary["orders_sent"] > summary["fills"]
    fills = result.fills
    signed = (fills["quantity"] * fills["side"].map({"buy": 1, "sell": -1})).sum()
    assert result.positions["position"].iloc[-1] == pytest.approx(signed)
    assert summary["inventory"]["final"] == pytest.approx(result.equity["position"].iloc[-1])
    assert summary["pnl_net"] == pytest.approx(summary["pnl_gross"] - summary["fees"])
    assert summary["fees"] == pytest.approx(fills["fee"].sum())
    assert summary["maker_fills"] == len(fills)  # post-only quotes: every fill is a maker fill
    # each fill happened at the venue before the strategy heard of it (ack latency 250 us)
    assert ((fills["receive_ns"] - fills["time_ns"]) == 250_000).all()
    # the equity curve is sampled each second over the 20 s range, from the range's start
    assert len(result.equity) in (21, 22)
    assert result.equity["time_ns"].iloc[0] == 1723161260_000_000_000
    # adverse selection was measured at every horizon of (nearly) every fill
    for horizon in (100, 1000, 5000):
        assert fills[f"markout_{horizon}ms"].notna().sum() >= len(fills) - 5
    # the stop cancelled everything: every accepted order ended
    events = result.orders.groupby("client_order_id")["event"].apply(list)
    assert all(kinds[-1] in ("canceled", "filled", "rejected", "expired") for kinds in events)
    assert summary["counters"].get("loop_errors", 0) == 0
    assert summary["latency"]["order_round_trip"]["count"] > 0


def test_same_config_and_seed_give_byte_identical_results(tmp_path):
    config = short_config(tmp_path, start="2024-08-08T23:54:20Z", end="2024-08-08T23:54:30Z")
    first = run_backtest(config).write(tmp_path / "first")
    second = run_backtest(config).write(tmp_path / "second")
    for name in (*FILES, "summary"):
        suffix = ".json" if name == "summary" else ".parquet"
        assert (first / f"{name}{suffix}").read_bytes() == (second / f"{name}{suffix}").read_bytes(), name
    other = run_backtest(config, seed=8).write(tmp_path / "other")
    assert (other / "latency.parquet").read_bytes() != (first / "latency.parquet").read_bytes()


def test_overrides_change_a_strategy_parameter(tmp_path):
    config = short_config(tmp_path, start="2024-08-08T23:54:20Z", end="2024-08-08T23:54:25Z")
    plan = plan_from_config(config, overrides={"maker": {"size_per_level": 3}})
    assert plan.strategies[0].config.size_per_level == 3
    with pytest.raises(ConfigError, match="unknown strategies"):
        plan_from_config(config, overrides={"taker": {"gamma": 1}})


def test_the_command_writes_the_results_folder(tmp_path):
    config = short_config(tmp_path, start="2024-08-08T23:54:20Z", end="2024-08-08T23:54:25Z")
    out = tmp_path / "out"
    outcome = CliRunner().invoke(app, ["backtest", "--config", str(config), "--out", str(out)])
    assert outcome.exit_code == 0, outcome.output
    assert "events/s" in outcome.output
    for name in FILES:
        assert (out / f"{name}.parquet").stat().st_size > 0
    assert (out / "summary.json").read_text(encoding="utf-8").startswith("{")
    assert (out / "report.html").stat().st_size > 0


def test_config_problems_are_one_line_errors(tmp_path):
    text = EXAMPLE.read_text(encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        text.replace(
            "  - venue: binance_usdm\n    symbol: BTCUSDT\n    files",
            "  - venue: binance_usd\n    symbol: BTCUSDT\n    files",
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"no venue named `binance_usd`.*did you mean `binance_usdm`"):
        node_config.load(bad)
    missing = tmp_path / "missing.yaml"
    missing.write_text(
        text.replace("files: [usdm/btcusdt_20240808.gz]", "files: [usdm/nothing.gz]"), encoding="utf-8"
    )
    outcome = CliRunner().invoke(app, ["backtest", "--config", str(missing), "--out", str(tmp_path / "o")])
    assert outcome.exit_code == 2 and "nothing.gz" in outcome.output
    # a backtest config is not a node
    with pytest.raises(ConfigError, match="hftkit backtest"):
        TradingNode.from_config(node_config.load(EXAMPLE))
    # and a node config's data section needs environment: backtest
    stray = tmp_path / "stray.yaml"
    stray.write_text(text.replace("environment: backtest\n", ""), encoding="utf-8")
    with pytest.raises(ConfigError, match="environment: backtest"):
        node_config.load(stray)


def test_two_instruments_trade_on_one_timeline(tmp_path):
    try:
        shared_data_dir()
    except DataNotFoundError as error:
        pytest.skip(f"needs the shared ETHUSDT recording: {error}")
    text = short_config(tmp_path, start="2024-08-08T23:54:20Z", end="2024-08-08T23:54:30Z").read_text(
        encoding="utf-8"
    )
    text = text.replace(
        "risk:\n",
        "  - name: ether\n"
        "    path: hftkit.strategies.market_maker:MarketMaker\n"
        "    params: {venue: binance_usdm, symbol: ETHUSDT, size_per_level: 8, max_position: 40, levels: 1,\n"
        "             initial_volatility: 0.05}\n"
        "risk:\n",
    ).replace(
        "range:",
        "  - venue: binance_usdm\n    symbol: ETHUSDT\n    files: [usdm/ethusdt_20240808.gz]\nrange:",
    )
    path = tmp_path / "two.yaml"
    path.write_text(text, encoding="utf-8")
    result = run_backtest(path)
    sent = result.orders[result.orders["event"] == "sent"]
    assert set(sent["symbol"]) == {"BTCUSDT", "ETHUSDT"}
    assert set(result.market["symbol"]) == {"BTCUSDT", "ETHUSDT"}
    assert set(result.summary["instruments"]) == {"binance_usdm:BTCUSDT", "binance_usdm:ETHUSDT"}


@pytest.mark.slow
def test_results_are_byte_identical_across_processes_with_different_hash_seeds(tmp_path):
    import os
    import subprocess
    import sys

    config = short_config(tmp_path, start="2024-08-08T23:54:20Z", end="2024-08-08T23:54:28Z")
    folders = []
    for seed in ("1", "2"):
        out = tmp_path / f"out{seed}"
        environment = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(
            [sys.executable, "-m", "hftkit.app.cli", "backtest", "--config", str(config), "--out", str(out)],
            check=True,
            env=environment,
            capture_output=True,
            timeout=60,
        )
        folders.append(out)
    for name in (*(f"{name}.parquet" for name in FILES), "summary.json", "report.html"):
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name


def test_two_venues_share_one_timeline(tmp_path):
    try:
        shared_data_dir()
    except DataNotFoundError as error:
        pytest.skip(f"needs the shared spot recording: {error}")
    text = short_config(tmp_path, start="2024-08-08T23:54:20Z", end="2024-08-08T23:54:26Z").read_text(
        encoding="utf-8"
    )
    text = text.replace(
        "strategies:\n", "  binance_spot:\n    kind: binance\n    market: spot\nstrategies:\n"
    ).replace(
        "range:",
        "  - venue: binance_spot\n    symbol: BTCUSDT\n    files: [spot/btcusdt_20240808.gz]\nrange:",
    )
    path = tmp_path / "venues.yaml"
    path.write_text(text, encoding="utf-8")
    result = run_backtest(path)
    assert set(result.market["venue"]) == {"binance_usdm", "binance_spot"}
    spot = result.market[result.market["venue"] == "binance_spot"]
    assert spot["mid"].notna().all() and (spot["bid"] < spot["ask"]).all()
    assert set(result.orders["venue"]) == {"binance_usdm"}  # the maker trades USD-M only


def test_the_default_node_backtests_thalex_from_the_usdm_recording(tmp_path):
    # the built-in default (maker on Thalex BTC-PERPETUAL, hedged on USD-M), as hftkit sim serves it:
    # Thalex's book is the USD-M recording folded into its 1-USD grid
    text = (ROOT / "src/hftkit/app/templates/default.yaml").read_text(encoding="utf-8")
    text = (
        "environment: backtest\n"
        + text
        + (
            "data:\n"
            "  - {venue: thalex, symbol: BTC-PERPETUAL, files: [usdm/btcusdt_20240808.gz]}\n"
            "  - {venue: binance_usdm, symbol: BTCUSDT, files: [usdm/btcusdt_20240808.gz]}\n"
            'range: {start: "2024-08-08T23:54:20Z", end: "2024-08-08T23:54:30Z"}\n'
            "latency:\n"
            "  {order_entry: {constant_us: 300}, ack: {constant_us: 300}, market_data: {constant_us: 100}}\n"
        )
    )
    path = tmp_path / "default.yaml"
    path.write_text(text, encoding="utf-8")
    result = run_backtest(path)
    market = result.market.set_index(["time_ns", "venue"])["mid"].unstack()
    assert (market["thalex"] - market["binance_usdm"]).abs().max() <= 1.0  # the same market, coarser
    assert (result.market.loc[result.market["venue"] == "thalex", "bid"] % 1 == 0).all()
    assert "thalex" in set(result.orders["venue"])
    assert result.summary["counters"].get("data_off_grid", 0) == 0


_COLLECTOR_CHECK = """
import gc

from hftkit.backtest.runner import _frozen_before_run

assert gc.get_freeze_count() == 0
kept = [[index] for index in range(1000)]  # built before the run: out of its full passes
with _frozen_before_run():
    assert gc.get_freeze_count() >= len(kept)
assert gc.get_freeze_count() == 0
gc.freeze()  # a process that froze its own objects keeps them frozen, and no more
frozen = gc.get_freeze_count()
with _frozen_before_run():
    extra = [[index] for index in range(1000)]
    assert gc.get_freeze_count() == frozen
assert gc.get_freeze_count() == frozen and extra
"""


def test_a_run_leaves_the_collector_as_it_found_it():
    """In a fresh interpreter: this one may have frozen objects already (a node test's start-up)."""
    import subprocess
    import sys

    finished = subprocess.run(
        [sys.executable, "-c", _COLLECTOR_CHECK], capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 0, finished.stderr


def test_the_account_s_rate_windows_bound_the_order_flow_as_they_do_live(tmp_path):
    """The example maker wants to send more than a USD-M account may (300 new orders a 10 s
    window, 1200 a minute, a tenth of each kept for cancels): with the live adapter's budget
    modelled no window sees more, and the quoting plan defers instead; without it, it would."""
    sent_per_window: dict[bool, tuple[int, int, int]] = {}
    for limits in (True, False):
        path = short_config(tmp_path, end="2024-08-08T23:55:40Z")
        if not limits:
            path.write_text(path.read_text().replace("backtest:\n", "backtest:\n  rate_limits: false\n"))
        result = run_backtest(path)
        sent = result.orders[result.orders["event"] == "sent"]
        per_10s = sent.groupby(sent["time_ns"] // 10_000_000_000).size().max()
        per_minute = sent.groupby(sent["time_ns"] // 60_000_000_000).size().max()
        sent_per_window[limits] = (len(sent), per_10s, per_minute)
        deferred = result.summary["counters"].get("engine_quote_actions_deferred", 0)
        assert (deferred > 0) is limits
    total, per_10s, per_minute = sent_per_window[True]
    assert per_10s <= 270 and per_minute <= 1080
    assert sent_per_window[False][1] > 300  # more than the account could send: what used to pass
    assert total < sent_per_window[False][0]
