"""A ready-made Binance simulator for tests and examples: listed instruments, liquidity, funded keys.

``BinanceSimHarness`` builds spot BTCUSDT (tick 0.01, lot 0.00001, min notional 5) and USD-M
BTCUSDT (tick 0.1, lot 0.001, min notional 100) venues, seeds background liquidity around
50 000, funds one account per API key and signs requests the way Binance clients do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.types import ContractKind, Instrument
from hftkit.sim.binance.limits import SPOT_LIMITS, USDM_LIMITS, RateLimitSettings
from hftkit.sim.binance.server import BinanceSimServer
from hftkit.sim.binance.signatures import sign_hmac
from hftkit.sim.engine.accounts import Accounts, FeeSchedule
from hftkit.sim.engine.faults import FaultInjector
from hftkit.sim.engine.matching import MatchingEngine
from hftkit.sim.engine.venue import SimVenue

API_KEY = "simkey0000000000000000000000000000000000000000000000000000000001"
API_SECRET = "simsecret000000000000000000000000000000000000000000000000000001"
OTHER_KEY = "simkey0000000000000000000000000000000000000000000000000000000002"
OTHER_SECRET = "simsecret000000000000000000000000000000000000000000000000000002"
SYMBOL = "BTCUSDT"
# an Ed25519 API key (WebSocket API session.logon); the private key is fixed so tests can sign
ED25519_KEY = "simed25519key00000000000000000000000000000000000000000000000001"
ED25519_PRIVATE_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
ED25519_PUBLIC_PEM = (
    ED25519_PRIVATE_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


# ccxt's binance client keeps one base URL per API family: every family's path on the simulator.
CCXT_API_PATHS: dict[str, str] = {
    "public": "/api/v3",
    "private": "/api/v3",
    "v1": "/api/v1",
    "sapi": "/sapi/v1",
    "sapiV2": "/sapi/v2",
    "sapiV3": "/sapi/v3",
    "sapiV4": "/sapi/v4",
    "fapiPublic": "/fapi/v1",
    "fapiPublicV2": "/fapi/v2",
    "fapiPublicV3": "/fapi/v3",
    "fapiPrivate": "/fapi/v1",
    "fapiPrivateV2": "/fapi/v2",
    "fapiPrivateV3": "/fapi/v3",
    "fapiData": "/futures/data",
    "dapiPublic": "/dapi/v1",
    "dapiPrivate": "/dapi/v1",
    "dapiPrivateV2": "/dapi/v2",
    "dapiData": "/futures/data",
    "eapiPublic": "/eapi/v1",
    "eapiPrivate": "/eapi/v1",
    "papi": "/papi/v1",
    "papiV2": "/papi/v2",
}


def ccxt_urls(base: str) -> dict[str, str]:
    """ccxt's ``urls["api"]`` for a simulator at ``base`` (``ccxt.binance({"urls": {"api": ...}})``)."""
    return {name: base + path for name, path in CCXT_API_PATHS.items()}


def spot_instrument() -> Instrument:
    return Instrument("binance", SYMBOL, "BTC", "USDT", "0.01", "0.00001", "5", max_quantity="9000")


def usdm_instrument() -> Instrument:
    return Instrument(
        "binance-usdm",
        SYMBOL,
        "BTC",
        "USDT",
        "0.1",
        "0.001",
        "100",
        kind=ContractKind.PERPETUAL,
        max_quantity="1000",
    )


def seed_book(venue: SimVenue, symbol: str, mid_ticks: int, levels: int = 10, size_lots: int = 0) -> None:
    """Background bids/asks one tick apart around ``mid_ticks`` (one engine batch)."""
    instrument = venue.instruments[symbol]
    size = size_lots or instrument.quantity_to_lots("0.5")
    bids = [(mid_ticks - 1 - index, size) for index in range(levels)]
    asks = [(mid_ticks + 1 + index, size) for index in range(levels)]
    venue.apply_depth(symbol, bids, asks)


@dataclass
class BinanceSimHarness:
    """Spot + USD-M venues, a server on a free loopback port, and signing helpers."""

    clock: Clock = REAL_CLOCK
    fees: FeeSchedule = field(default_factory=lambda: FeeSchedule(1000, 1000))  # 0.1 %
    spot_limits: RateLimitSettings = SPOT_LIMITS
    usdm_limits: RateLimitSettings = USDM_LIMITS
    faults_spot: FaultInjector | None = None
    faults_usdm: FaultInjector | None = None
    server_options: Mapping[str, Any] = field(default_factory=dict)
    usdm_stream_port: int | None = None  # 0: also serve a futures stream host (urls["usdm_stream"])

    def __post_init__(self) -> None:
        spot_accounts = Accounts(fees=self.fees)
        self.spot = SimVenue("binance", MatchingEngine(spot_accounts, clock=self.clock))
        self.spot.add_instrument(spot_instrument())
        usdm_accounts = Accounts(fees=self.fees)
        self.usdm = SimVenue("binance-usdm", MatchingEngine(usdm_accounts, clock=self.clock))
        self.usdm.add_instrument(usdm_instrument())
        for key in (API_KEY, OTHER_KEY, ED25519_KEY):
            spot_accounts.deposit(key, "USDT", spot_accounts.to_units("USDT", "100000"))
            spot_accounts.deposit(key, "BTC", spot_accounts.to_units("BTC", "2"))
            usdm_accounts.deposit(key, "USDT", usdm_accounts.to_units("USDT", "100000"))
        seed_book(self.spot, SYMBOL, self.spot.instruments[SYMBOL].price_to_ticks("50000"))
        seed_book(self.usdm, SYMBOL, self.usdm.instruments[SYMBOL].price_to_ticks("50000"))
        self.server = BinanceSimServer(
            self.spot,
            self.usdm,
            api_keys={API_KEY: API_SECRET, OTHER_KEY: OTHER_SECRET},
            ed25519_keys={ED25519_KEY: ED25519_PUBLIC_PEM},
            faults_spot=self.faults_spot,
            faults_usdm=self.faults_usdm,
            clock=self.clock,
            spot_limits=self.spot_limits,
            usdm_limits=self.usdm_limits,
            **dict(self.server_options),
        )
        self.urls: dict[str, str] = {}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> BinanceSimHarness:
        self.urls = await self.server.start(usdm_stream_port=self.usdm_stream_port)
        self._session = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self.server.stop()

    @property
    def base(self) -> str:
        return self.urls["rest"]

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "start() the harness first"
        return self._session

    def server_ms(self) -> int:
        return self.clock.time_ns() // 1_000_000

    def signed_query(self, params: Mapping[str, Any], secret: str = API_SECRET) -> str:
        """``timestamp`` added, HMAC appended: the query string a Binance client sends."""
        full = {**params}
        full.setdefault("timestamp", self.server_ms())
        query = urlencode(full)
        return f"{query}&signature={sign_hmac(secret, query)}"

    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        signed: bool = False,
        key: str | None = API_KEY,
        secret: str = API_SECRET,
        in_body: bool = False,
    ) -> tuple[int, Any, Mapping[str, str]]:
        """One REST call; returns (status, decoded JSON or text, headers)."""
        params = params or {}
        query = self.signed_query(params, secret) if signed else urlencode(params)
        headers = {"X-MBX-APIKEY": key} if key else {}
        url = f"{self.base}{path}"
        data = None
        if in_body:
            data = query
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif query:
            url = f"{url}?{query}"
        async with self.session.request(method, url, data=data, headers=headers) as response:
            text = await response.text()
            try:
                body: Any = await response.json(content_type=None) if text else None
            except ValueError:
                body = text
            return response.status, body, response.headers


__all__ = [
    "API_KEY",
    "API_SECRET",
    "ED25519_KEY",
    "ED25519_PRIVATE_KEY",
    "ED25519_PUBLIC_PEM",
    "OTHER_KEY",
    "OTHER_SECRET",
    "SYMBOL",
    "BinanceSimHarness",
    "seed_book",
    "spot_instrument",
    "usdm_instrument",
]
