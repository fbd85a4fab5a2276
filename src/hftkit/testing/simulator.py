"""``SimulatorHarness``: the exchange simulator in-process on loopback, for a user's own tests.

The whole venue (matching, accounts, rate limits, the Binance and Thalex wire protocols, fault
profiles) on ephemeral 127.0.0.1 ports, started and stopped with the test. It wraps the
``hftkit.sim`` runner (``Simulator``) and hands out what a client needs: URLs and credentials.
The book is synthetic and seeded, and holds still unless the test (or ``speed``) moves it::

    async with SimulatorHarness(venues=("binance-spot",)) as sim:
        credentials = sim.binance_credentials()
        rest_url = sim.binance_rest_url  # WebSocket base: sim.binance_websocket_url
        sim.set_faults("binance-spot", {"http_error_probability": 0.1})  # hftkit.sim.engine.faults

For adapter configs built from these (``binance_config``, ``thalex_config``) see
``hftkit.app.sim_wiring``. For scripted single answers without a venue, see ``ScriptedBinance``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from hftkit.core.secrets import Secret
from hftkit.sim.config import BINANCE_SPOT, BINANCE_USDM, THALEX, SimConfig, config_from_mapping
from hftkit.sim.engine.faults import FaultProfile
from hftkit.sim.runner import SimCredentials, Simulator
from hftkit.venues.binance.auth import BinanceCredentials
from hftkit.venues.binance.endpoints import Market
from hftkit.venues.thalex.auth import ThalexCredentials

#: The symbol each venue lists when a test names none.
DEFAULT_TEST_SYMBOLS: Mapping[str, str] = {
    BINANCE_SPOT: "BTCUSDT",
    BINANCE_USDM: "BTCUSDT",
    THALEX: "BTC-PERPETUAL",
}


def harness_config(
    venues: Sequence[str] = (BINANCE_SPOT,),
    symbols: Mapping[str, Sequence[str]] | None = None,
    *,
    seed: int = 11,
    levels: int = 25,
) -> SimConfig:
    """A small simulator: the given venues, a seeded synthetic book per symbol, loopback ports."""
    chosen = {venue: list((symbols or {}).get(venue, (DEFAULT_TEST_SYMBOLS[venue],))) for venue in venues}
    every_symbol = {symbol for listed in chosen.values() for symbol in listed}
    return config_from_mapping(
        {
            "source": "synthetic",
            "seed": seed,
            "venues": {venue: {"symbols": listed} for venue, listed in chosen.items()},
            "synthetic": {
                symbol: {"levels": levels, "min_size_lots": 50, "max_size_lots": 400}
                for symbol in every_symbol
            },
        },
        "<SimulatorHarness>",
    )


class SimulatorHarness:
    """Start the simulator for one test, hand out its URLs and credentials, stop it afterwards.

    ``moving``: let the synthetic market drivers run (by default the book holds still, so a test
    decides every change). ``config``: a full ``SimConfig`` instead of the small default.
    """

    def __init__(
        self,
        venues: Sequence[str] = (BINANCE_SPOT,),
        symbols: Mapping[str, Sequence[str]] | None = None,
        *,
        seed: int = 11,
        moving: bool = False,
        config: SimConfig | None = None,
    ) -> None:
        self.simulator = Simulator(
            config if config is not None else harness_config(venues, symbols, seed=seed),
            max_synthetic_operations=None if moving else 0,
        )

    async def __aenter__(self) -> SimulatorHarness:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> dict[str, str]:
        """Start the servers on loopback and wait for every book to be seeded; return the URLs."""
        urls = await self.simulator.start()
        await self.simulator.wait_seeded()
        return urls

    async def stop(self) -> None:
        await self.simulator.stop()

    # what a client needs ------------------------------------------------------------------------
    @property
    def urls(self) -> dict[str, str]:
        """Every URL the simulator serves, by name (``binance_rest``, ``thalex_ws``, ``control``...)."""
        return self.simulator.urls

    @property
    def credentials(self) -> SimCredentials:
        if self.simulator.credentials is None:
            raise RuntimeError("the simulator is not started")
        return self.simulator.credentials

    @property
    def account(self) -> str:
        """The simulator account the generated credentials trade on."""
        return self.credentials.account

    def binance_credentials(self) -> BinanceCredentials:
        credentials = self.credentials
        return BinanceCredentials(credentials.binance_api_key, credentials.binance_secret_key)

    @property
    def binance_rest_url(self) -> str:
        return self.urls["binance_rest"]

    @property
    def binance_websocket_url(self) -> str:
        """The market-stream base (``ws://host:port``), the REST origin's WebSocket twin."""
        return "ws" + self.binance_rest_url.removeprefix("http")

    def binance_websocket_api_url(self, market: Market = Market.SPOT) -> str:
        return self.urls["binance_spot_ws_api" if market is Market.SPOT else "binance_usdm_ws_api"]

    @property
    def thalex_url(self) -> str:
        return self.urls["thalex_ws"]

    def thalex_credentials(self) -> ThalexCredentials:
        credentials = self.credentials
        if credentials.thalex_private_key_file is None:
            raise ValueError("the simulator has no Thalex private key file")
        private_key = Path(credentials.thalex_private_key_file).read_bytes()
        return ThalexCredentials(credentials.thalex_key_id, Secret(private_key))

    # what a test does to the venue ------------------------------------------------------------------
    def set_faults(self, venue: str, value: str | Mapping[str, Any]) -> FaultProfile:
        """A fault profile by name, or settings over the current one (``Simulator.set_faults``)."""
        return self.simulator.set_faults(venue, value)

    async def drop_connections(self, venue: str) -> int:
        """Close every client connection of ``venue``'s server, as a network failure would."""
        return await self.simulator.drop_connections(venue)


__all__ = ["DEFAULT_TEST_SYMBOLS", "SimulatorHarness", "harness_config"]
