"""What each venue brings to the shared behavioural suite: its adapter, its simulator venue and its quirks.

A ``VenueCase`` is the only venue-specific part of the suite: how to build the adapter against
a running ``Simulator``, which simulator venue and symbol it trades, what it supports, and how
to read the adapter's own counters (reconnects, book gaps) so the suite can hold them against
the simulator's fault counters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hftkit.book import OrderBook
from hftkit.sim.config import BINANCE_SPOT, BINANCE_USDM, THALEX
from hftkit.sim.runner import Simulator
from hftkit.transport.websocket import DisconnectReason
from hftkit.venues.binance.adapter import BinanceAdapter, BinanceConfig
from hftkit.venues.binance.auth import BinanceCredentials
from hftkit.venues.binance.endpoints import Market
from hftkit.venues.binance.rest import RestConfig
from hftkit.venues.binance.streams import StreamConfig
from hftkit.venues.binance.user_stream import UserStreamConfig
from hftkit.venues.thalex.adapter import ThalexAdapter, ThalexConfig
from hftkit.venues.thalex.auth import ThalexCredentials

Adapter = Any  # BinanceAdapter | ThalexAdapter: both implement VenueAdapter plus book access


@dataclass(frozen=True)
class VenueCase:
    """One venue under the suite."""

    name: str
    sim_venue: str
    symbol: str
    make_adapter: Callable[[Simulator], Adapter]
    amend: bool  # the adapter amends in place (else amend_order raises UnsupportedOperationError)
    positions: bool  # the venue reports positions (derivatives)
    account_stream: str  # ConnectionEvent.stream of the channel that carries order updates
    connections: int  # sockets the adapter holds open with one subscribed symbol
    order_notional: str  # quote-currency size of test orders (above every venue minimum)
    book_synced: Callable[[Adapter, str], bool]
    book: Callable[[Adapter, str], OrderBook | None]
    reconnects: Callable[[Adapter], int]  # server-side drops the adapter noticed (and recovered from)
    book_resyncs: Callable[[Adapter, str], int]  # gaps/resyncs of the book (0 where no sequence exists)
    malformed: Callable[[Adapter], int]  # malformed frames the adapter counted and skipped
    # the client order id the venue stores -> ours (Thalex numbers them on the wire)
    from_venue_id: Callable[[Adapter, str], str | None] = lambda adapter, venue_id: venue_id
    # new orders written inside the call (place_order_now, a synchronous transport) rather than awaited
    immediate: bool = False
    # requests the immediate path's own transport wrote (proof that it, not a fallback, carried them)
    immediate_writes: Callable[[Adapter], int] = lambda adapter: 0
    # cancels written inside the call too (cancel_order_now); else that call declines (False)
    cancels_now: bool = False
    # amends written inside the call (amend_order_now); else amends are awaited (amend_order)
    amends_now: bool = False


# -- Binance ---------------------------------------------------------------------------------------


def binance_config(sim: Simulator, market: Market, order_transport: str = "rest") -> BinanceConfig:
    """Fast timers: the simulator answers in microseconds, so every wait can be short."""
    rest_url = sim.urls["binance_rest"]
    ws_url = rest_url.replace("http", "ws", 1)
    return BinanceConfig(
        market=market,
        rest=RestConfig(
            base_urls=[rest_url],
            recv_window_ms=1000,
            query_timeout_s=1.0,
            order_timeout_s=1.0,
            retry_base_delay_s=0.01,
            retry_max_delay_s=0.05,
            max_rate_wait_s=0.5,
            breaker_recovery_s=0.2,
        ),
        streams=StreamConfig(
            base_urls=[ws_url],
            resync_base_delay_s=0.01,
            resync_max_delay_s=0.1,
            reconnect_base_delay_s=0.02,
            reconnect_max_delay_s=0.2,
        ),
        user_stream=UserStreamConfig(
            websocket_api_urls=[sim.urls.get("binance_spot_ws_api", ws_url + "/ws-api/v3")],
            stream_base_urls=[ws_url],
            subscribe_timeout_s=1.0,
            recv_window_ms=1000,
            reconnect_base_delay_s=0.02,
            reconnect_max_delay_s=0.2,
        ),
        ready_timeout_s=3.0,
        start_timeout_s=5.0,
        resolve_interval_s=0.05,
        resolve_margin_ms=200,
        reconcile_retry_max_s=0.2,
        order_transport=order_transport,
        order_api_urls=(sim.urls["binance_spot_ws_api" if market is Market.SPOT else "binance_usdm_ws_api"],)
        if order_transport == "websocket_api"
        else (),
    )


def binance_adapter(market: Market, order_transport: str = "rest") -> Callable[[Simulator], BinanceAdapter]:
    def make(sim: Simulator) -> BinanceAdapter:
        assert sim.credentials is not None
        credentials = BinanceCredentials(sim.credentials.binance_api_key, sim.credentials.binance_secret_key)
        return BinanceAdapter(credentials, binance_config(sim, market, order_transport))

    return make


def _binance_sockets(adapter: BinanceAdapter) -> list[Any]:
    sockets = list(adapter.streams.sockets) if adapter.streams is not None else []
    if adapter.user_stream is not None and adapter.user_stream.socket is not None:
        sockets.append(adapter.user_stream.socket)
    if adapter.order_api is not None and adapter.order_api.socket is not None:
        sockets.append(adapter.order_api.socket)
    return sockets


def _peer_closed(socket: Any) -> int:
    """Drops the server made (the simulator's injected disconnects), not our own reconnects."""
    return socket.stats.disconnect_reasons.get(DisconnectReason.PEER_CLOSED.value, 0)


def _binance_reconnects(adapter: BinanceAdapter) -> int:
    return sum(_peer_closed(socket) for socket in _binance_sockets(adapter))


def _binance_api_writes(adapter: BinanceAdapter) -> int:
    return 0 if adapter.order_api is None else adapter.order_api.stats.requests


def _binance_lean_writes(adapter: BinanceAdapter) -> int:
    lean = adapter.rest._lean
    return 0 if lean is None else lean.stats_requests


def _binance_resyncs(adapter: BinanceAdapter, symbol: str) -> int:
    sync = adapter.streams.synchronizer(symbol) if adapter.streams is not None else None
    return 0 if sync is None else sync.counters.gaps + sync.counters.resyncs


def _binance_malformed(adapter: BinanceAdapter) -> int:
    count = sum(adapter.streams.stats.malformed.values()) if adapter.streams is not None else 0
    if adapter.user_stream is not None:
        count += sum(adapter.user_stream.stats.malformed.values())
    return count


def _binance_case(
    name: str,
    sim_venue: str,
    market: Market,
    connections: int,
    order_transport: str = "rest",
    immediate: bool = False,
) -> VenueCase:
    return VenueCase(
        name=name,
        sim_venue=sim_venue,
        symbol="BTCUSDT",
        make_adapter=binance_adapter(market, order_transport),
        immediate=immediate,
        immediate_writes=_binance_api_writes if order_transport == "websocket_api" else _binance_lean_writes,
        cancels_now=immediate and order_transport == "websocket_api",
        amends_now=immediate and order_transport == "websocket_api" and market is Market.USDM,
        amend=market is Market.USDM,  # USD-M modify (WS API order.modify, else PUT /fapi/v1/order)
        positions=market is Market.USDM,
        account_stream="user",
        connections=connections,
        order_notional="200",
        book_synced=lambda adapter, symbol: adapter.streams is not None and adapter.streams.is_synced(symbol),
        book=lambda adapter, symbol: adapter.book(symbol),
        reconnects=_binance_reconnects,
        book_resyncs=_binance_resyncs,
        malformed=_binance_malformed,
    )


# spot: one combined market stream + the WebSocket API user stream;
# USD-M: /public (depth, bookTicker) + /market (trades) + the listen-key user stream
BINANCE_SPOT_CASE = _binance_case("binance-spot", BINANCE_SPOT, Market.SPOT, connections=2)
BINANCE_USDM_CASE = _binance_case("binance-usdm", BINANCE_USDM, Market.USDM, connections=3)
# the low-latency order paths: written inside the call, on a warm keep-alive REST connection
# (bytes built once) or on the WebSocket API session (one more socket)
BINANCE_SPOT_LEAN_REST_CASE = _binance_case(
    "binance-spot lean REST", BINANCE_SPOT, Market.SPOT, connections=2, immediate=True
)
BINANCE_SPOT_WS_API_CASE = _binance_case(
    "binance-spot WS API",
    BINANCE_SPOT,
    Market.SPOT,
    connections=3,
    order_transport="websocket_api",
    immediate=True,
)
BINANCE_USDM_WS_API_CASE = _binance_case(
    "binance-usdm WS API",
    BINANCE_USDM,
    Market.USDM,
    connections=4,
    order_transport="websocket_api",
    immediate=True,
)


# -- Thalex ----------------------------------------------------------------------------------------


def thalex_config(sim: Simulator, *, cancel_on_disconnect_s: int | None = None) -> ThalexConfig:
    """Persistent orders by default, so an order outlives a dropped connection like on Binance."""
    assert sim.credentials is not None and sim.credentials.thalex_private_key_file is not None
    credentials = ThalexCredentials(
        sim.credentials.thalex_key_id, Path(sim.credentials.thalex_private_key_file).read_bytes()
    )
    return ThalexConfig(
        url=sim.urls["thalex_ws"],
        credentials=credentials,
        cancel_on_disconnect_s=cancel_on_disconnect_s,
        request_timeout_s=1.0,
        connect_timeout_s=5.0,
        throttle_backoff_s=0.05,
        reconnect_base_delay_s=0.02,
        reconnect_max_delay_s=0.2,
        ticker_delay=None,
    )


def thalex_adapter(sim: Simulator) -> ThalexAdapter:
    return ThalexAdapter(thalex_config(sim))


def _thalex_reconnects(adapter: ThalexAdapter) -> int:
    socket = adapter.websocket
    return 0 if socket is None else _peer_closed(socket)


def _thalex_malformed(adapter: ThalexAdapter) -> int:
    return sum(adapter.rpc.stats.malformed.values())


def _thalex_from_venue_id(adapter: ThalexAdapter, venue_id: str) -> str | None:
    """The simulator keeps ``<session>:<wire number>``; the adapter's (private) id map knows ours."""
    wire = venue_id.rpartition(":")[2]
    return adapter._ids.ours(int(wire)) if wire.isdigit() else None


THALEX_CASE = VenueCase(
    name="thalex",
    sim_venue=THALEX,
    symbol="BTC-PERPETUAL",
    make_adapter=thalex_adapter,
    amend=True,
    positions=True,
    account_stream="session",
    connections=1,
    order_notional="200",
    book_synced=lambda adapter, symbol: adapter.book_synced(symbol),
    book=lambda adapter, symbol: adapter.book(symbol),
    reconnects=_thalex_reconnects,
    book_resyncs=lambda adapter, symbol: 0,  # Thalex books carry no sequence: a new connection resends all
    malformed=_thalex_malformed,
    from_venue_id=_thalex_from_venue_id,
)

THALEX_IMMEDIATE_CASE = dataclasses.replace(
    THALEX_CASE,
    name="thalex immediate",
    immediate=True,
    immediate_writes=lambda adapter: adapter.rpc.stats.requests_sent,
    cancels_now=True,
    amends_now=True,
)

CASES = (BINANCE_SPOT_CASE, BINANCE_USDM_CASE, THALEX_CASE)
