"""A node loads what its config uses: a Thalex node on testnet never imports Binance's adapter,
aiohttp, the simulator, the operations server's aiohttp or the console, and a Binance node not Thalex's
adapter (start-up time is part of tick-to-trade's story: ``hftkit bench node`` records it)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

BINANCE_ONLY = ("aiohttp", "hftkit.venues.binance.adapter", "hftkit.venues.binance.rest")
SIMULATOR = ("hftkit.sim.config", "hftkit.sim.runner", "hftkit.app.sim_wiring")
SIDE_PARTS = ("aiohttp.web", "prometheus_client", "rich", "hftkit.metrics.console")

THALEX_NODE = """
venues:
  thalex:
    kind: thalex
    environment: testnet
    key_id: K1
    private_key_file: thalex.pem
strategies:
  - name: maker
    path: hftkit.strategies.market_maker:MarketMaker
    params: {venue: thalex, symbol: BTC-PERPETUAL, size_per_level: 2, max_position: 10}
metrics: {enabled: false}
dashboard: {enabled: false}
"""

BINANCE_NODE = """
venues:
  spot:
    kind: binance
    market: spot
    environment: testnet
    api_key: k
    api_secret: s
strategies:
  - name: maker
    path: hftkit.strategies.market_maker:MarketMaker
    params: {venue: spot, symbol: BTCUSDT, size_per_level: 2, max_position: 10}
metrics: {enabled: false}
dashboard: {enabled: false}
"""


def loaded_after_building(tmp_path: Path, config_text: str, watched: tuple[str, ...]) -> list[str]:
    """Build the node and its adapters (nothing connects) in a fresh interpreter; the watched
    modules it loaded."""
    key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "thalex.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (tmp_path / "node.yaml").write_text(config_text)
    probe = textwrap.dedent(
        f"""
        import json, sys
        from hftkit.app import config
        from hftkit.app.node import TradingNode
        from hftkit.app.venues import build_remote_adapters
        loaded = config.load({str(tmp_path / "node.yaml")!r})
        node = TradingNode.from_config(loaded)
        adapters = build_remote_adapters(loaded)
        assert adapters, "no adapter was built"
        node.health()  # what the node's watchdog reads every 50 ms from its start
        print(json.dumps([name for name in {list(watched)!r} if name in sys.modules]))
        """
    )
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return list(json.loads(completed.stdout.strip().splitlines()[-1]))


def test_a_thalex_node_loads_nothing_of_binance_nor_the_simulator_nor_the_side_parts(tmp_path):
    assert loaded_after_building(tmp_path, THALEX_NODE, BINANCE_ONLY + SIMULATOR + SIDE_PARTS) == []


def test_a_binance_node_loads_no_thalex_adapter_and_no_simulator(tmp_path):
    watched = ("hftkit.venues.thalex.adapter", "hftkit.venues.thalex.orders", *SIMULATOR, *SIDE_PARTS)
    assert loaded_after_building(tmp_path, BINANCE_NODE, watched) == []
