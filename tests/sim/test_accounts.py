"""Accounts: units, fees, spot settlement and locks, perpetual positions, error tables."""

from __future__ import annotations

from fractions import Fraction

import pytest

from hftkit.core.types import ContractKind, Instrument, OrderType, Side
from hftkit.sim.engine.accounts import FEE_ACCOUNT, MARKET_ACCOUNT, Accounts, FeeSchedule, Position
from hftkit.sim.engine.errors import (
    BINANCE_ERRORS,
    THALEX_DELETE_REASONS,
    THALEX_ERRORS,
    CloseReason,
    RejectReason,
    SimulatorConfigurationError,
    thalex_error,
)
from hftkit.sim.engine.matching import MatchingEngine

PERP = "BTC-PERPETUAL"


def test_fee_charges_round_up_and_rebates_round_toward_zero() -> None:
    fees = FeeSchedule.from_basis_points("-0.5", "2.5")
    assert (fees.maker_ppm, fees.taker_ppm) == (-50, 250)
    assert fees.fee(1_000_000, is_maker=False) == 250
    assert fees.fee(1_001, is_maker=False) == 1  # 0.25025 -> 1
    assert fees.fee(1_000_000, is_maker=True) == -50
    assert fees.fee(1_001, is_maker=True) == 0  # -0.05005 -> 0


def test_fee_rates_finer_than_a_hundredth_of_a_basis_point_are_refused() -> None:
    with pytest.raises(SimulatorConfigurationError):
        FeeSchedule.from_basis_points("0.001", "1")
    with pytest.raises(SimulatorConfigurationError):
        FeeSchedule(maker_ppm=1_000_000)


def test_amounts_convert_exactly_between_text_and_units() -> None:
    accounts = Accounts({"USDT": 6})
    assert accounts.to_units("USDT", "12.5") == 12_500_000
    assert accounts.to_text("USDT", 12_500_000) == "12.500000"
    assert accounts.to_units("USDT", "1.2300000") == 1_230_000
    with pytest.raises(SimulatorConfigurationError):
        accounts.to_units("USDT", "0.0000001")


def test_an_instrument_finer_than_its_assets_decimals_is_refused() -> None:
    accounts = Accounts({"BTC": 2, "USDT": 8})
    with pytest.raises(SimulatorConfigurationError, match="BTC"):
        accounts.register(Instrument("sim", "BTCUSDT", "BTC", "USDT", "0.01", "0.001"))
    terms = Accounts().register(Instrument("sim", "BTCUSDT", "BTC", "USDT", "0.01", "0.001", "5"))
    assert (terms.base_units_per_lot, terms.quote_units_per_notional, terms.min_notional) == (
        100_000,
        1_000,
        500_000,
    )


def test_deposit_and_withdraw_move_free_balance_only_when_covered() -> None:
    accounts = Accounts()
    accounts.deposit("alice", "USDT", 100)
    assert not accounts.withdraw("alice", "USDT", 101)
    assert accounts.withdraw("alice", "USDT", 60)
    assert accounts.get("alice").balance("USDT").free == 40
    with pytest.raises(SimulatorConfigurationError):
        accounts.deposit("alice", "USDT", -1)


def test_spot_fill_moves_balances_exactly_and_fees_go_to_the_fee_account(engine_factory) -> None:  # type: ignore[no-untyped-def]
    engine: MatchingEngine = engine_factory(fees=FeeSchedule.from_basis_points("1", "2"))
    accounts = engine.accounts
    totals = accounts.totals()
    engine.place("bob", "BTCUSDT", Side.SELL, OrderType.LIMIT, 1_000, 5_000_000)  # 1 BTC at 50,000
    # a limit above the ask fills at the ask, 50,000
    engine.place("alice", "BTCUSDT", Side.BUY, OrderType.LIMIT, 1_000, 5_000_100)
    alice, bob, fee = accounts.get("alice"), accounts.get("bob"), accounts.get(FEE_ACCOUNT)
    unit = 100_000_000
    assert alice.balance("USDT").free == (1_000_000 - 50_000) * unit and alice.balance("USDT").locked == 0
    assert alice.balance("BTC").free == 11 * unit - 20_000  # 2 bp of 1 BTC as taker
    assert bob.balance("USDT").free == (1_050_000 - 5) * unit  # 1 bp of 50,000 USDT as maker
    assert bob.balance("BTC").total == 9 * unit
    assert (fee.balance("BTC").free, fee.balance("USDT").free) == (20_000, 5 * unit)
    assert accounts.totals() == totals
    sides = [(entry.account, entry.side, entry.is_maker) for entry in accounts.ledger]
    assert sides == [("alice", Side.BUY, False), ("bob", Side.SELL, True)]


def test_cancel_releases_the_lock_exactly(engine: MatchingEngine) -> None:
    usdt = engine.accounts.get("alice").balance("USDT")
    before = (usdt.free, usdt.locked)
    order = engine.place("alice", "BTCUSDT", Side.BUY, OrderType.LIMIT, 7, 4_999_999).order
    assert order is not None and usdt.locked == 4_999_999 * 7 * 1_000
    engine.cancel("alice", "BTCUSDT", order_id=order.order_id)
    assert (usdt.free, usdt.locked) == before


def test_position_tracks_exact_average_entry_and_realized_pnl() -> None:
    position = Position()
    assert position.apply(1, 100, 3) == 0
    assert position.apply(1, 101, 1) == 0
    assert position.entry_price == Fraction(401, 4)
    assert position.apply(-1, 110, 2) == 2 * 110 - 401 * 2 // 4
    assert position.quantity == 2
    realized = position.apply(-1, 90, 5)  # closes 2, opens a 3-lot short at 90
    assert position.quantity == -3 and position.entry_price == 90
    assert position.realized == 220 - 200 + realized and realized == 180 - (401 - 200)
    assert position.apply(1, 80, 3) == 30 and position.quantity == 0 and position.cost == 0
    assert position.entry_price is None


def test_perpetual_trades_settle_realized_pnl_and_keep_net_position_zero(engine: MatchingEngine) -> None:
    accounts = engine.accounts
    totals = accounts.totals()
    engine.place("bob", PERP, Side.SELL, OrderType.LIMIT, 2_000, 50_000)
    engine.place("alice", PERP, Side.BUY, OrderType.LIMIT, 2_000, 50_000)  # alice long 2 BTC at 50,000
    engine.set_background(PERP, Side.BUY, 51_000, 5_000)
    engine.place("alice", PERP, Side.SELL, OrderType.MARKET, 2_000)  # sells 2 BTC at 51,000 to the market
    alice = accounts.get("alice")
    assert alice.positions[PERP].quantity == 0
    assert alice.balance("USD").free == 2_000 * 1_000 * 100_000  # +2,000 USD realized (8 decimals)
    assert accounts.get("bob").positions[PERP].entry_price == -50_000 * 2_000 / -2_000
    assert accounts.get(MARKET_ACCOUNT).positions[PERP].quantity == 2_000
    assert accounts.net_positions() == {PERP: 0}
    assert accounts.totals() == totals
    assert engine.audit() == []


def test_perpetual_instruments_lock_nothing_and_need_no_balance() -> None:
    accounts = Accounts()
    engine = MatchingEngine(accounts)
    engine.add_instrument(Instrument("sim", PERP, "BTC", "USD", "1", "0.001", kind=ContractKind.PERPETUAL))
    result = engine.place("zoe", PERP, Side.BUY, OrderType.LIMIT, 10, 50_000)
    assert result.accepted and accounts.get("zoe").balance("USD").locked == 0


def test_every_reject_reason_maps_to_a_binance_code_and_a_thalex_outcome() -> None:
    assert set(BINANCE_ERRORS) == set(RejectReason) == set(THALEX_ERRORS)
    assert set(THALEX_DELETE_REASONS) == set(CloseReason)
    assert all(code < 0 and message for code, message in BINANCE_ERRORS.values())
    assert thalex_error(RejectReason.UNKNOWN_ORDER) == (1, "order not found")
    assert thalex_error(RejectReason.WOULD_TAKE) is None
