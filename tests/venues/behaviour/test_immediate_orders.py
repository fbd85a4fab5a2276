"""The shared venue behaviours with new orders written inside the call (``place_order_now``):
Binance over a warm keep-alive REST connection and over the WebSocket API (spot and USD-M),
Thalex on its session. The same assertions as the awaited path: what the venue and the adapter
end up believing must not depend on how the order's bytes left."""

from __future__ import annotations

import pytest
from cases import (
    BINANCE_SPOT_LEAN_REST_CASE,
    BINANCE_SPOT_WS_API_CASE,
    BINANCE_USDM_WS_API_CASE,
    THALEX_IMMEDIATE_CASE,
    VenueCase,
)
from suite import VenueBehaviourSuite


class TestBinanceSpotLeanRest(VenueBehaviourSuite):
    @pytest.fixture
    def case(self) -> VenueCase:
        return BINANCE_SPOT_LEAN_REST_CASE


class TestBinanceSpotWebSocketApi(VenueBehaviourSuite):
    @pytest.fixture
    def case(self) -> VenueCase:
        return BINANCE_SPOT_WS_API_CASE


class TestBinanceUsdmWebSocketApi(VenueBehaviourSuite):
    @pytest.fixture
    def case(self) -> VenueCase:
        return BINANCE_USDM_WS_API_CASE


class TestThalexImmediate(VenueBehaviourSuite):
    @pytest.fixture
    def case(self) -> VenueCase:
        return THALEX_IMMEDIATE_CASE
