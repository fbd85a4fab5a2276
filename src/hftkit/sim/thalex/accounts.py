"""Thalex account views of a ``SimVenue``, sans-I/O: margin, portfolio and account summary.

Margin is a simple, exact initial-margin model (the venue's scenario margining is out of
scope): per instrument the larger of the long and the short exposure that open orders could
reach, times the mark and ``margin_rate``. Cash counts every balance one to one as USD
collateral. An order that would take the requirement above cash plus unrealised PnL is refused
with error 24, as Thalex does.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from hftkit.core.types import ContractKind, Instrument, Side
from hftkit.sim.engine.venue import SimVenue
from hftkit.sim.thalex import wire as wire
from hftkit.sim.thalex.market import ThalexMarketViews
from hftkit.sim.thalex.wire import RpcError
from hftkit.venues.thalex.errors import ThalexErrorCode


@dataclass(frozen=True)
class MarginState:
    """One account's collateral figures in USD, exact."""

    cash: Decimal
    unrealised: Decimal
    required: Decimal

    @property
    def margin(self) -> Decimal:
        return self.cash + self.unrealised


@dataclass(frozen=True)
class ProposedOrder:
    """An order not yet in the book, counted into the margin requirement."""

    symbol: str
    side: Side
    lots: int
    price: int  # ticks; the mark stand-in when the book is empty


class ThalexAccountViews:
    """Margin checks, ``private/portfolio`` and ``private/account_summary`` of one venue."""

    def __init__(self, venue: SimVenue, market: ThalexMarketViews, margin_rate: Decimal) -> None:
        self.venue = venue
        self.engine = venue.engine
        self.accounts = venue.accounts
        self.market = market
        self.margin_rate = margin_rate

    def margin_state(self, account: str, proposed: ProposedOrder | None = None) -> MarginState:
        holder = self.accounts.get(account)
        to_text = self.accounts.to_text
        cash = sum(
            (Decimal(to_text(asset, balance.total)) for asset, balance in holder.balances.items()), Decimal(0)
        )
        exposure: dict[str, list[int]] = {}  # symbol -> [position, open buy lots, open sell lots]
        for symbol, holding in holder.positions.items():
            exposure[symbol] = [holding.quantity, 0, 0]
        for order in self.engine.open_orders(account):
            item = exposure.setdefault(order.symbol, [0, 0, 0])
            item[1 if order.is_buy else 2] += order.quantity - order.filled
        if proposed is not None:
            item = exposure.setdefault(proposed.symbol, [0, 0, 0])
            item[1 if proposed.side is Side.BUY else 2] += proposed.lots
        instruments = self.venue.instruments
        unrealised = Decimal(0)
        required = Decimal(0)
        for symbol, (position, buys, sells) in exposure.items():
            instrument = instruments.get(symbol)
            if instrument is None or instrument.kind is ContractKind.SPOT:
                continue
            mark = self.market.mark(instrument)
            if mark is None:
                stand_in = proposed.price if proposed is not None and proposed.symbol == symbol else 0
                mark = instrument.tick_size * stand_in
            lot = instrument.lot_size * instrument.contract_size
            held = holder.positions.get(symbol)
            if held is not None and held.quantity:
                unrealised += mark * held.quantity * lot - instrument.tick_size * held.cost * lot
            largest = max(abs(position + buys), abs(position - sells))
            required += largest * lot * mark * self.margin_rate
        return MarginState(cash, unrealised, required)

    def check_margin(self, account: str, instrument: Instrument, side: Side, lots: int, price: int) -> None:
        """Raise InsufficientMargin (24) when the order would need more margin than the account has."""
        if instrument.kind is ContractKind.SPOT or not self.margin_rate or lots <= 0:
            return
        state = self.margin_state(account, ProposedOrder(instrument.symbol, side, lots, price))
        if state.required > state.margin:
            raise RpcError(
                ThalexErrorCode.INSUFFICIENT_MARGIN,
                f"insufficient margin: required {state.required:.2f}, available {state.margin:.2f}",
            )

    def portfolio(self, account: str, symbols: set[str] | None = None) -> list[dict[str, Any]]:
        """PortfolioEntry per position: every open one, or the named ones (flat ones included)."""
        holder = self.accounts.get(account)
        instruments = self.venue.instruments
        entries = []
        for symbol, position in holder.positions.items():
            instrument = instruments.get(symbol)
            if instrument is None or (symbols is not None and symbol not in symbols):
                continue
            if symbols is None and not position.quantity:
                continue
            lot = instrument.lot_size * instrument.contract_size
            mark = self.market.mark(instrument) or Decimal(0)
            entry_ticks = position.entry_price
            average = entry_ticks * Fraction(instrument.tick_size) if entry_ticks is not None else None
            entry_value = instrument.tick_size * position.cost * lot
            unrealised = mark * position.quantity * lot - entry_value if position.quantity else Decimal(0)
            average_number = wire.fraction_number(average) if average is not None else 0
            entries.append(
                {
                    "instrument_name": symbol,
                    "position": wire.amount_number(instrument, position.quantity),
                    "mark_price": wire.decimal_number(mark),
                    "start_price": average_number,
                    "average_price": average_number,
                    "unrealised_pnl": wire.decimal_number(unrealised),
                    "realised_pnl": wire.decimal_number(instrument.tick_size * position.realized * lot),
                    "entry_value": wire.decimal_number(entry_value),
                    "perpetual_funding_entry_value": 0,
                    "unrealised_perpetual_funding": 0,
                }
            )
        return entries

    def summary(self, account: str) -> dict[str, Any]:
        """AccountSummary: cash per asset, unrealised PnL, margin and what it is used for."""
        holder = self.accounts.get(account)
        state = self.margin_state(account)
        cash = [
            {
                "currency": asset,
                "balance": wire.json_number(self.accounts.to_text(asset, balance.total)),
                "collateral_factor": 1,
                "collateral_index_price": None,
                "transactable": True,
            }
            for asset, balance in holder.balances.items()
        ]
        return {
            "cash": cash,
            "unrealised_pnl": wire.decimal_number(state.unrealised),
            "session_realised_pnl": 0,
            "cash_collateral": wire.decimal_number(state.cash),
            "margin": wire.decimal_number(state.margin),
            "required_margin": wire.decimal_number(state.required),
            "remaining_margin": wire.decimal_number(state.margin - state.required),
        }


__all__ = ["MarginState", "ProposedOrder", "ThalexAccountViews"]
