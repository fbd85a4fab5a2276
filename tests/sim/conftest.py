"""Shared set-up for the simulator tests: a BTCUSDT-like spot instrument and a funded engine."""

from __future__ import annotations

import pytest

from hftkit.core.clock import SimulatedClock
from hftkit.core.types import ContractKind, Instrument
from hftkit.sim.engine.accounts import Accounts, FeeSchedule
from hftkit.sim.engine.matching import MatchingEngine, SelfTradePrevention

SYMBOL = "BTCUSDT"
PERP = "BTC-PERPETUAL"


def spot_instrument() -> Instrument:
    # tick 0.01, lot 0.001 BTC, min notional 5 USDT
    return Instrument("sim", SYMBOL, "BTC", "USDT", "0.01", "0.001", "5", max_quantity="1000")


def perp_instrument() -> Instrument:
    return Instrument("sim", PERP, "BTC", "USD", "1", "0.001", kind=ContractKind.PERPETUAL)


def make_engine(
    fees: FeeSchedule | None = None,
    self_trade_prevention: SelfTradePrevention = SelfTradePrevention.EXPIRE_MAKER,
) -> MatchingEngine:
    accounts = Accounts(fees=fees or FeeSchedule())
    engine = MatchingEngine(accounts, clock=SimulatedClock(), self_trade_prevention=self_trade_prevention)
    engine.add_instrument(spot_instrument())
    engine.add_instrument(perp_instrument())
    for name in ("alice", "bob", "carol"):
        accounts.deposit(name, "USDT", accounts.to_units("USDT", "1000000"))
        accounts.deposit(name, "BTC", accounts.to_units("BTC", "10"))
    return engine


@pytest.fixture
def engine() -> MatchingEngine:
    return make_engine()


@pytest.fixture
def engine_factory():  # type: ignore[no-untyped-def]
    """``make_engine`` itself, for tests that need fees or another self-trade mode."""
    return make_engine


@pytest.fixture
def listed_spot_instrument() -> Instrument:
    return spot_instrument()
