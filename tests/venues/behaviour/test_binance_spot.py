"""The shared venue behaviours, run by the binance-spot adapter against hftkit.sim."""

from __future__ import annotations

import pytest
from cases import BINANCE_SPOT_CASE, VenueCase
from suite import VenueBehaviourSuite


class TestBinanceSpotBehaviour(VenueBehaviourSuite):
    @pytest.fixture
    def case(self) -> VenueCase:
        return BINANCE_SPOT_CASE
