"""Paper trading: the node on a live feed (here the simulator's), orders matched in process and
never sent: the simulator, counting every order operation that reaches it, sees none."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from hftkit.app import config as node_config
from hftkit.app.node import TradingNode
from hftkit.backtest.paper import PaperVenue
from hftkit.sim.engine.venue import SimVenue

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

CONFIG = """
environment: {environment}
venues:
  binance_usdm: {{kind: binance, market: usdm, environment: sim}}
strategies:
  - name: maker
    path: hftkit.strategies.market_maker:MarketMaker
    params: {{venue: binance_usdm, symbol: BTCUSDT, size_per_level: 2, max_position: 10, levels: 1,
              initial_volatility: 0.5}}
risk:
  instruments:
    - {{venue: binance_usdm, symbol: BTCUSDT, limits: {{max_position: "0.02"}}}}
simulator:
  speed: 4
  fees: {{binance_usdm: {{maker_bp: "2", taker_bp: "5"}}}}
latency:
  order_entry: {{constant_us: 300}}
  ack: {{constant_us: 300}}
metrics: {{enabled: false}}
"""


@pytest.fixture
def order_operations(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every place/cancel/cancel_all/amend that reaches any simulated venue, whatever protocol."""
    seen: Counter[str] = Counter()
    for name in ("place", "cancel", "cancel_all", "amend"):
        original = getattr(SimVenue, name)

        def counting(
            self: SimVenue, *args: object, __original=original, __name=name, **kwargs: object
        ) -> object:
            seen[__name] += 1
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(SimVenue, name, counting)
    return seen


def load(tmp_path: Path, environment: str) -> node_config.LoadedConfig:
    path = tmp_path / f"{environment}.yaml"
    path.write_text(CONFIG.format(environment=environment), encoding="utf-8")
    return node_config.load(path)


async def test_paper_orders_never_reach_the_venue(tmp_path, order_operations):
    node = TradingNode.from_config(load(tmp_path, "paper"), seconds=4, metrics_port=0)
    summary = await node.run()
    adapter = node.adapters["binance_usdm"]
    assert isinstance(adapter, PaperVenue) and adapter.simulated is not None
    assert adapter.simulated.requests > 10  # the strategy quoted: its requests hit the paper matching
    assert node.engine is not None
    sent = node.engine.gateway.counters
    assert sent["orders_sent"] + sent["amends_sent"] > 10  # new orders, and quotes moved by amends
    assert sum(order_operations.values()) == 0, order_operations  # and nothing hit the simulator
    assert node.sim is not None
    account_fills = [
        entry for entry in node.sim.venues["binance-usdm"].accounts.ledger if entry.account != "__market__"
    ]
    assert account_fills == []
    assert summary.verdict.passed, summary.verdict.as_json()


async def test_the_same_node_without_paper_does_send_orders(tmp_path, order_operations):
    # the control: the counting above sees a live node's orders
    node = TradingNode.from_config(load(tmp_path, "venue"), seconds=3, metrics_port=0)
    await node.run()
    assert order_operations["place"] > 0
