"""Venue adapters built from the node's config: one function per venue kind, no I/O.

For ``testnet`` and ``mainnet`` the URLs are the venue's published endpoints (the tables in
``venues.binance.endpoints`` and ``venues.thalex.config``), overridable per field; for ``sim``
they come from the running simulator. Building an adapter connects nothing: a config check and a
test can build every adapter and read where it would connect. A venue kind's modules are
imported when a venue of that kind is built: a Thalex node never loads Binance's (nor aiohttp).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hftkit.app.config import BinanceVenue, ConfigError, LoadedConfig, ThalexVenue, VenueConfig
from hftkit.core.secrets import Secret
from hftkit.venues.base import VenueAdapter
from hftkit.venues.thalex.config import PRODUCTION_URL, TESTNET_URL

if TYPE_CHECKING:  # each venue's modules load when a venue of that kind is built, not before
    from hftkit.venues.binance.adapter import BinanceConfig
    from hftkit.venues.binance.auth import BinanceCredentials
    from hftkit.venues.thalex.adapter import ThalexConfig

THALEX_URLS = {"mainnet": PRODUCTION_URL, "testnet": TESTNET_URL}


def binance_settings(name: str, venue: BinanceVenue) -> tuple[BinanceCredentials, BinanceConfig]:
    """Credentials and config of a Binance market on testnet or mainnet."""
    from hftkit.venues.binance.adapter import BinanceConfig
    from hftkit.venues.binance.auth import BinanceCredentials
    from hftkit.venues.binance.endpoints import PUBLISHED_URLS, Market
    from hftkit.venues.binance.rest import RestConfig
    from hftkit.venues.binance.streams import StreamConfig
    from hftkit.venues.binance.user_stream import UserStreamConfig

    if venue.environment == "sim":
        raise ValueError("a sim venue takes its URLs from the running simulator (binance_config)")
    market = Market.SPOT if venue.market == "spot" else Market.USDM
    urls = PUBLISHED_URLS[(market, venue.environment)]
    if venue.api_key is None or venue.api_secret is None:
        raise ConfigError(f"{venue.environment} needs api_key and api_secret", path=f"venues.{name}")
    credentials = BinanceCredentials(venue.api_key.reveal(), venue.api_secret.reveal())
    stream = venue.stream_url or urls.stream
    websocket_api = venue.websocket_api_url or urls.websocket_api
    config = BinanceConfig(
        market=market,
        name=name,
        rest=RestConfig(
            base_urls=[venue.rest_url] if venue.rest_url else list(urls.rest),
            recv_window_ms=venue.recv_window_ms,
        ),
        streams=StreamConfig(base_urls=[stream]),
        user_stream=UserStreamConfig(
            websocket_api_urls=[websocket_api] if market is Market.SPOT else [],
            stream_base_urls=[stream],
            listen_key_path=urls.listen_key_path,
            recv_window_ms=venue.recv_window_ms,
        ),
        order_transport=venue.order_transport,
        order_api_urls=(websocket_api,) if venue.order_transport == "websocket_api" else (),
    )
    return credentials, config


def thalex_settings(name: str, venue: ThalexVenue, directory: Path) -> ThalexConfig:
    """The config of a Thalex account on testnet or mainnet (the key file is read, never written)."""
    from hftkit.venues.thalex.adapter import ThalexConfig
    from hftkit.venues.thalex.auth import ThalexCredentials

    if venue.environment == "sim":
        raise ValueError("a sim venue takes its URL from the running simulator (thalex_config)")
    if venue.key_id is None:
        raise ConfigError(f"{venue.environment} needs key_id", path=f"venues.{name}")
    if venue.private_key is not None:
        pem = venue.private_key.reveal().encode()
    elif venue.private_key_file is not None:
        path = Path(venue.private_key_file).expanduser()
        path = path if path.is_absolute() else directory / path
        try:
            pem = path.read_bytes()
        except OSError as error:
            raise ConfigError(
                f"cannot read private_key_file: {error.strerror or error}",
                path=f"venues.{name}.private_key_file",
            ) from None
    else:
        raise ConfigError(f"{venue.environment} needs private_key or private_key_file", path=f"venues.{name}")
    return ThalexConfig(
        url=venue.url or THALEX_URLS[venue.environment],
        credentials=ThalexCredentials(venue.key_id, Secret(pem), venue.account),
        venue=name,
        cancel_on_disconnect_s=venue.cancel_on_disconnect_s,
        cancel_on_exit=venue.cancel_on_exit,
    )


def build_adapter(name: str, venue: VenueConfig, loaded: LoadedConfig, **options: Any) -> VenueAdapter:
    """The adapter of one configured venue aimed at its testnet or mainnet (nothing connects yet)."""
    if isinstance(venue, BinanceVenue):
        from hftkit.venues.binance.adapter import BinanceAdapter

        credentials, config = binance_settings(name, venue)
        return BinanceAdapter(credentials, config, **options)
    from hftkit.venues.thalex.adapter import ThalexAdapter

    return ThalexAdapter(thalex_settings(name, venue, loaded.directory), **options)


def build_remote_adapters(loaded: LoadedConfig) -> dict[str, VenueAdapter]:
    """Every testnet/mainnet venue's adapter (sim venues are wired to the simulator by the node)."""
    return {
        name: build_adapter(name, venue, loaded)
        for name, venue in loaded.node.venues.items()
        if venue.environment != "sim"
    }


__all__ = ["THALEX_URLS", "binance_settings", "build_adapter", "build_remote_adapters", "thalex_settings"]
