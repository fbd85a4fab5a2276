"""``SimulatorHarness``: the simulator started in-process for one test, its URLs and credentials."""

from __future__ import annotations

from hftkit.testing import SimulatorHarness, harness_config
from hftkit.venues.binance.endpoints import Market
from hftkit.venues.binance.rest import BinanceRestClient, RestConfig


async def test_a_client_trades_on_the_harness_with_its_urls_and_credentials() -> None:
    async with SimulatorHarness(venues=("binance-spot",)) as sim:
        assert sim.binance_rest_url.startswith("http://127.0.0.1:")
        assert sim.binance_websocket_url == "ws" + sim.binance_rest_url.removeprefix("http")
        assert sim.binance_websocket_api_url(Market.SPOT).startswith("ws://127.0.0.1:")
        config = RestConfig(base_urls=[sim.binance_rest_url])
        async with BinanceRestClient(Market.SPOT, sim.binance_credentials(), config) as rest:
            assert "BTCUSDT" in {symbol.symbol for symbol in (await rest.exchange_info()).symbols}
            assert await rest.open_orders("BTCUSDT") == []  # signed: the credentials are the simulator's
        profile = sim.set_faults("binance-spot", {"http_error_probability": 0.5})
        assert profile.http_error_probability == 0.5
        assert sim.account
    assert sim.simulator.running_tasks == 0


def test_the_default_config_lists_one_symbol_per_venue_on_ephemeral_ports() -> None:
    config = harness_config(("binance-spot", "thalex"))
    enabled = {name: venue.symbols for name, venue in config.venues.items() if venue.enabled}
    assert enabled == {"binance-spot": ("BTCUSDT",), "thalex": ("BTC-PERPETUAL",)}
    assert config.binance_port == 0 and config.thalex_port == 0
