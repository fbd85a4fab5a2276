"""Parity: the same strategy over the same recorded slice (a) in a backtest and (b) in the node
over loopback against ``hftkit sim`` replaying it, with the backtest's latency replayed from the
order round trips the node measured. The decision sequences agree; fills agree within the
tolerance docs/guide.md states (timing decides queue position and which trades reach us)."""

from __future__ import annotations

import dataclasses
import random
import shutil
from difflib import SequenceMatcher
from pathlib import Path

import pytest

from hftkit.app import config as node_config
from hftkit.app.backtest_plan import plan_from_config
from hftkit.app.node import TradingNode
from hftkit.backtest.config import TimeRange
from hftkit.backtest.latency import ConstantDelay, HistogramDelay, LatencyModel
from hftkit.backtest.runner import run_plan

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

HERE = Path(__file__).resolve().parent
CONFIG = """
environment: {environment}
venues:
  binance_usdm: {{kind: binance, market: usdm, environment: sim}}
strategies:
  - name: quoter
    path: parity_quoter:ParityQuoter
    params: {{venue: binance_usdm, symbol: BTCUSDT, size: 2, offset_ticks: 3}}
risk:
  instruments:
    - {{venue: binance_usdm, symbol: BTCUSDT, limits: {{max_position: "0.02"}}}}
simulator: {{speed: 2, fees: {{binance_usdm: {{maker_bp: "2", taker_bp: "5"}}}}}}
metrics: {{enabled: false}}
{extra}
"""
BACKTEST = """
data:
  - {venue: binance_usdm, symbol: BTCUSDT, files: [usdm/btcusdt_20240808.gz]}
"""
#: fills may differ by this much (count): see "Parity" in docs/guide.md
FILL_TOLERANCE = (3, 0.5)  # absolute, or this fraction of the larger count
#: decision agreement over the settled ladders (``_settled``): see "Parity" in docs/guide.md
#: (measured 90-100 % and 80-97 %; over the raw logs the second was 49-89 %, falling with load;
#: the first fell to 80-82 % in four of nine runs inside the suite on 2026-12-07, the tree
#: before that day's changes alike: one excursion of the node's outlasting the settling window)
BACKTEST_DECISIONS_IN_NODE = 0.75
NODE_DECISIONS_IN_BACKTEST = 0.6


#: an excursion of at most this many decisions that comes back to where it left is not compared
EXCURSION = 10


def _settled(log: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ladders that held: repeats merged, and a short excursion that returns to the ladder it
    left (A, B1 .. Bk, A with k <= EXCURSION) dropped.

    In the node such excursions are the race between an order leaving (its fill or cancel known)
    and the depth update removing it, over two sockets: the strategy briefly sees its own order
    as someone else's volume and quotes off it, and each new quote can chain the next. Their
    number grows with scheduling delay, so the raw comparison failed on a busy (or a fast) day.
    The same filter runs on both logs, so an excursion of the real market is dropped from both.
    """
    kept: list[tuple[int, int]] = []
    for ladder in log:
        if kept and kept[-1] == ladder:
            continue
        back = next(
            (depth for depth in range(2, min(EXCURSION + 1, len(kept)) + 1) if kept[-depth] == ladder), 0
        )
        if back:
            del kept[len(kept) - back + 1 :]  # back to A: the excursion goes
            continue
        kept.append(ladder)
    return kept


def _config(tmp_path: Path, environment: str, extra: str = "") -> node_config.LoadedConfig:
    shutil.copy(HERE / "parity_quoter.py", tmp_path / "parity_quoter.py")
    path = tmp_path / f"{environment}.yaml"
    path.write_text(CONFIG.format(environment=environment, extra=extra), encoding="utf-8")
    return node_config.load(path)


@pytest.fixture
def realtime_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    """The node subscribes to USD-M's real-time depth stream (``@depth@0ms``), one diff per book
    change like the recording, instead of its default 100 ms batches (a backtest's strategy sees
    every change: batches would sample the same path at other moments)."""
    from hftkit.app import sim_wiring

    original = sim_wiring.binance_config

    def realtime(*args: object, **kwargs: object) -> object:
        config = original(*args, **kwargs)  # type: ignore[arg-type]
        return dataclasses.replace(config, streams=dataclasses.replace(config.streams, depth_speed="0ms"))

    monkeypatch.setattr(sim_wiring, "binance_config", realtime)


@pytest.mark.usefixtures("realtime_depth")
async def test_backtest_and_node_over_loopback_decide_alike_and_fill_alike(tmp_path):
    node = TradingNode.from_config(_config(tmp_path, "venue"), seconds=10, metrics_port=0)
    summary = await node.run()
    assert summary.verdict.passed, summary.verdict.as_json()
    assert node.sim is not None
    data_end = max(driver.status.data_time_ns for driver in node.sim.drivers.values())
    node_log = _settled(node.strategies[0].log)  # type: ignore[attr-defined]
    node_fills = sum(item.fills for item in summary.instruments)
    round_trip = node.metrics.histogram("order_round_trip_ns", venue="binance_usdm")
    assert round_trip.count > 0

    plan = plan_from_config(_config(tmp_path, "backtest", BACKTEST))
    plan.time_range = TimeRange(end=data_end)
    plan.latency = LatencyModel(  # the node's measured round trip, half each way
        ConstantDelay(200_000),
        HistogramDelay.from_histogram(round_trip, random.Random(1), 0.5),
        HistogramDelay.from_histogram(round_trip, random.Random(2), 0.5),
    )
    result = run_plan(plan)
    backtest_log = _settled(plan.strategies[0].log)  # type: ignore[attr-defined]

    # the node joined the replay a little after its start: align on its first decisions
    assert len(node_log) > 30, len(node_log)
    start = skipped = -1
    for skipped in range(min(10, len(node_log) - 5)):  # its first ladder may be a transient one
        window = node_log[skipped : skipped + 5]
        found = [index for index in range(len(backtest_log)) if backtest_log[index : index + 5] == window]
        if found:
            start = found[0]
            break
    assert start >= 0, "the node's first decisions never occur in the backtest"
    node_log = node_log[skipped:]
    compared = backtest_log[start:]  # both end where the node stopped (the data's end time)
    matcher = SequenceMatcher(None, compared, node_log, autojunk=False)
    agreeing = sum(block.size for block in matcher.get_matching_blocks())
    # every decision of the backtest occurs in the node, in the same order ...
    assert agreeing / len(compared) >= BACKTEST_DECISIONS_IN_NODE, (
        agreeing,
        len(compared),
        matcher.get_opcodes(),
    )
    # ... and the node adds few of its own: transient ladders while an order's ack and the depth
    # stream showing that order race each other over two sockets (a backtest has one ordered channel)
    assert agreeing / len(node_log) >= NODE_DECISIONS_IN_BACKTEST, (
        agreeing,
        len(node_log),
        matcher.get_opcodes(),
    )

    backtest_fills = result.summary["fills"]
    absolute, fraction = FILL_TOLERANCE
    allowed = max(absolute, fraction * max(node_fills, backtest_fills))
    assert abs(node_fills - backtest_fills) <= allowed, (node_fills, backtest_fills)
    print(
        f"decisions: node {len(node_log)}, backtest {len(compared)}, agreeing {agreeing}"
        f" ({agreeing / len(compared):.0%} of the backtest's, {agreeing / len(node_log):.0%} of the node's)"
    )
    print(f"fills: node {node_fills}, backtest {backtest_fills}")
