"""The shared venue behaviours, run by the binance-usdm adapter against hftkit.sim."""

from __future__ import annotations

import pytest
from cases import BINANCE_USDM_CASE, VenueCase
from suite import VenueBehaviourSuite


class TestBinanceUsdmBehaviour(VenueBehaviourSuite):
    @pytest.fixture
    def case(self) -> VenueCase:
        return BINANCE_USDM_CASE
