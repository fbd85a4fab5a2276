"""Adapters pointed at a running in-process ``Simulator``: its URLs and generated credentials.

The one place that knows how a simulator's endpoints map onto adapter configs, used by the node
(``environment: sim``), the tests and the benchmarks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hftkit.core.secrets import Secret
from hftkit.venues.binance.adapter import BinanceConfig
from hftkit.venues.binance.auth import BinanceCredentials
from hftkit.venues.binance.endpoints import Market
from hftkit.venues.binance.rest import RestConfig
from hftkit.venues.binance.streams import StreamConfig
from hftkit.venues.binance.user_stream import UserStreamConfig
from hftkit.venues.thalex.adapter import ThalexConfig
from hftkit.venues.thalex.auth import ThalexCredentials

if TYPE_CHECKING:  # the simulator itself loads only where one runs
    from hftkit.sim.runner import Simulator

#: A replay speed so slow that the next recorded message is days away: the market holds still.
PAUSED_SPEED = 1e-9


def _credentials(sim: Simulator) -> Any:
    if sim.credentials is None:
        raise RuntimeError("the simulator is not started")
    return sim.credentials


def binance_credentials(sim: Simulator) -> BinanceCredentials:
    credentials = _credentials(sim)
    return BinanceCredentials(credentials.binance_api_key, credentials.binance_secret_key)


def binance_config(sim: Simulator, market: Market = Market.SPOT, **changes: Any) -> BinanceConfig:
    """A ``BinanceConfig`` pointing every channel (REST, streams, user data) at the simulator.

    USD-M user data uses the ``/private`` listen-key route: with spot and USD-M on one server,
    the bare ``/ws/<key>`` path belongs to the spot market streams.
    """
    rest_url = sim.urls["binance_rest"]
    ws_url = "ws" + rest_url.removeprefix("http")
    api_key = "binance_spot_ws_api" if market is Market.SPOT else "binance_usdm_ws_api"
    settings: dict[str, Any] = {
        "market": market,
        "rest": RestConfig(base_urls=[rest_url]),
        "streams": StreamConfig(base_urls=[ws_url]),
        "user_stream": UserStreamConfig(
            websocket_api_urls=[sim.urls[api_key]],
            stream_base_urls=[ws_url],
            listen_key_path="ws" if market is Market.SPOT else "private",
        ),
    }
    if changes.get("order_transport") == "websocket_api" and "order_api_urls" not in changes:
        settings["order_api_urls"] = (sim.urls[api_key],)
    settings.update(changes)
    return BinanceConfig(**settings)


def thalex_config(sim: Simulator, **changes: Any) -> ThalexConfig:
    """A ``ThalexConfig`` logged in with the simulator's generated key."""
    credentials = _credentials(sim)
    if credentials.thalex_private_key_file is None:
        raise ValueError("the simulator has no Thalex private key file")
    private_key = Path(credentials.thalex_private_key_file).read_bytes()
    settings: dict[str, Any] = {
        "url": sim.urls["thalex_ws"],
        "credentials": ThalexCredentials(credentials.thalex_key_id, Secret(private_key)),
    }
    settings.update(changes)
    return ThalexConfig(**settings)


def sim_account(sim: Simulator) -> str:
    """The simulator account the generated credentials trade on."""
    return str(_credentials(sim).account)


__all__ = ["PAUSED_SPEED", "binance_config", "binance_credentials", "sim_account", "thalex_config"]
