"""USD-M margin and funding of the Binance-compatible simulator (cross margin, one-way mode).

Margin, in the settlement asset: a position's initial margin is its notional at the mark price
divided by the symbol's leverage (``POST /fapi/v1/leverage``, default 20); open orders add the
initial margin of the exposure they could add, the larger side counting (buys against a short
and sells against a long offset the position first); maintenance margin follows the leverage
brackets (``GET /fapi/v1/leverageBracket``). A new order whose extra initial margin exceeds
the available balance (wallet + unrealized PnL - initial margin) is refused with ``-2019
Margin is insufficient.``; reduce-only orders need none.

Funding: every 8 hours of simulated time (00:00, 08:00, 16:00 UTC) each position pays
``position notional at the mark x funding rate`` (longs pay a positive rate, shorts receive
it), booked against the market's counterparty account so the simulator's totals hold, listed
in ``GET /fapi/v1/income`` (``FUNDING_FEE``) and pushed as ``ACCOUNT_UPDATE`` with ``m:
FUNDING_FEE``. The rate is a setting per symbol (default 0.0001), not a premium index.

Not modelled: liquidation, isolated margin, multi-assets mode, the index price (index = mark =
book mid), interest rates, maximum notional per bracket.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from hftkit.core.types import ContractKind, Side
from hftkit.sim.binance.params import BinanceApiError
from hftkit.sim.binance.rest import Call, mark_price, symbols_or_all
from hftkit.sim.binance.state import FuturesOrderFlags, MarketState
from hftkit.sim.binance.wire import ms

DEFAULT_LEVERAGE = 20
DEFAULT_FUNDING_RATE = Decimal("0.0001")
FUNDING_INTERVAL_MS = 8 * 3_600_000
INSUFFICIENT = (-2019, "Margin is insufficient.")
# (notional floor, notional cap, max initial leverage, maintenance margin ratio, cumulative amount)
BRACKETS: tuple[tuple[int, int, int, Decimal, Decimal], ...] = (
    (0, 50_000, 125, Decimal("0.004"), Decimal(0)),
    (50_000, 10_000_000, 20, Decimal("0.025"), Decimal(1050)),
)


@dataclass(frozen=True)
class MarginFigures:
    """One account's margin in the settlement asset's units."""

    wallet: int
    unrealized: int
    position_initial: int
    open_order_initial: int
    maintenance: int

    @property
    def initial(self) -> int:
        return self.position_initial + self.open_order_initial

    @property
    def available(self) -> int:
        return self.wallet + self.unrealized - self.initial


@dataclass(frozen=True)
class Income:
    """One ``GET /fapi/v1/income`` row: a funding payment (positive: received)."""

    transaction_id: int
    account: str
    symbol: str
    asset: str
    units: int
    time_ms: int


@dataclass(frozen=True)
class FundingEvent:
    symbol: str
    rate: Decimal
    time_ms: int
    mark: int  # ticks


class FuturesMargin:
    """Leverage, margin figures, the -2019 check and funding for one USD-M market."""

    def __init__(self, state: MarketState, *, funding_rate: Decimal = DEFAULT_FUNDING_RATE) -> None:
        self.state = state
        self.leverages: dict[tuple[str, str], int] = {}
        self.funding_rates: dict[str, Decimal] = {symbol: funding_rate for symbol in state.venue.instruments}
        now = ms(state.clock.time_ns())
        self.next_funding_ms = now - now % FUNDING_INTERVAL_MS + FUNDING_INTERVAL_MS
        self.funding_history: deque[FundingEvent] = deque(maxlen=1000)
        self.income: deque[Income] = deque(maxlen=10_000)
        self._transaction_ids = itertools.count(1)
        self.funding_payments = 0

    # leverage ---------------------------------------------------------------------------------
    def leverage(self, account: str, symbol: str) -> int:
        return self.leverages.get((account, symbol), DEFAULT_LEVERAGE)

    def set_leverage(self, account: str, symbol: str, value: int) -> None:
        self.leverages[(account, symbol)] = value

    # units ----------------------------------------------------------------------------------
    def units(self, symbol: str, notional: int | Fraction) -> Fraction:
        """Notional units (ticks x lots) -> settlement asset units, exact."""
        state = self.state
        step = state.formats(symbol).notional_step
        return (
            Fraction(notional)
            * Fraction(step)
            * 10 ** state.accounts.decimals(state.instrument(symbol).quote)
        )

    # figures --------------------------------------------------------------------------------
    def figures(
        self, account_name: str, asset: str, extra: tuple[str, Side, int, int] | None = None
    ) -> MarginFigures:
        """Margin of ``account_name`` in ``asset``; ``extra`` = (symbol, side, lots, price ticks)
        of an order to count as if it were open (the -2019 check)."""
        state = self.state
        account = state.accounts.get(account_name)
        balance = account.balances.get(asset)
        wallet = balance.total if balance is not None else 0
        unrealized = Fraction(0)
        position_initial = Fraction(0)
        open_initial = Fraction(0)
        maintenance = Fraction(0)
        for symbol, instrument in state.venue.instruments.items():
            if instrument.kind is ContractKind.SPOT or instrument.quote != asset:
                continue
            leverage = self.leverage(account_name, symbol)
            mark = mark_price(state, symbol)
            position = account.positions.get(symbol)
            held = position.quantity if position is not None else 0
            if held and position is not None:
                unrealized += self.units(symbol, mark * held - position.cost)
            position_notional = abs(held) * mark
            position_units = self.units(symbol, position_notional)
            position_initial += position_units / leverage
            maintenance += self._maintenance(position_units, symbol)
            buys = sells = 0
            for order in state.engine.open_orders(account_name, symbol):
                flags = state.futures_flags.get(order.order_id, FuturesOrderFlags(False, "GTC"))
                if flags.reduce_only:
                    continue
                if order.side is Side.BUY:
                    buys += order.remaining * order.price
                else:
                    sells += order.remaining * order.price
            if extra is not None and extra[0] == symbol:
                if extra[1] is Side.BUY:
                    buys += extra[2] * extra[3]
                else:
                    sells += extra[2] * extra[3]
            long_exposure = max(held, 0) * mark + buys
            short_exposure = max(-held, 0) * mark + sells
            added = max(long_exposure, short_exposure) - position_notional
            open_initial += self.units(symbol, max(added, 0)) / leverage
        return MarginFigures(
            wallet=wallet,
            unrealized=_floor(unrealized),
            position_initial=_ceil(position_initial),
            open_order_initial=_ceil(open_initial),
            maintenance=_ceil(maintenance),
        )

    def _maintenance(self, position_units: Fraction, symbol: str) -> Fraction:
        """Maintenance margin of a position worth ``position_units``: its bracket's ratio less cum."""
        if not position_units:
            return Fraction(0)
        scale = 10 ** self.state.accounts.decimals(self.state.instrument(symbol).quote)
        notional = position_units / scale
        for _floor_value, cap, _leverage, ratio, cum in BRACKETS:
            if notional < cap or cap == BRACKETS[-1][1]:
                return (notional * Fraction(ratio) - Fraction(cum)) * scale
        return Fraction(0)

    def check_order(
        self, account: str, symbol: str, side: Side, quantity: int, price: int, reduce_only: bool
    ) -> None:
        """Refuse (-2019) a new order whose extra initial margin the available balance cannot carry."""
        if reduce_only:
            return
        state = self.state
        reference = price or mark_price(state, symbol)
        asset = state.instrument(symbol).quote
        before = self.figures(account, asset)
        after = self.figures(account, asset, (symbol, side, quantity, reference))
        if after.open_order_initial - before.open_order_initial > before.available:
            raise BinanceApiError(*INSUFFICIENT)

    # funding ----------------------------------------------------------------------------------
    def settle_funding(self, now_ms: int, on_paid: Callable[[str, list[str], str], None]) -> int:
        """Apply every funding time passed by ``now_ms``; ``on_paid(account, symbols, reason)``
        sends the ACCOUNT_UPDATE. Returns how many payments were made."""
        paid = 0
        while now_ms >= self.next_funding_ms:
            funding_ms = self.next_funding_ms
            self.next_funding_ms += FUNDING_INTERVAL_MS
            paid += self._fund(funding_ms, on_paid)
        return paid

    def _fund(self, funding_ms: int, on_paid: Callable[[str, list[str], str], None]) -> int:
        state = self.state
        accounts = state.accounts
        touched: dict[str, list[str]] = {}
        paid = 0
        for symbol, instrument in state.venue.instruments.items():
            if instrument.kind is ContractKind.SPOT:
                continue
            rate = self.funding_rates.get(symbol, DEFAULT_FUNDING_RATE)
            mark = mark_price(state, symbol)
            self.funding_history.append(FundingEvent(symbol, rate, funding_ms, mark))
            asset = instrument.quote
            for account in list(accounts):
                if account is accounts.market or account is accounts.fee_account:
                    continue
                position = account.positions.get(symbol)
                if position is None or not position.quantity:
                    continue
                amount = _floor(self.units(symbol, position.quantity * mark) * Fraction(rate))
                if not amount:
                    continue
                account.balance(asset).free -= amount  # a long pays a positive rate
                accounts.market.balance(asset).free += amount
                self.income.append(
                    Income(next(self._transaction_ids), account.name, symbol, asset, -amount, funding_ms)
                )
                touched.setdefault(account.name, []).append(symbol)
                paid += 1
        for account_name, symbols in touched.items():
            on_paid(account_name, symbols, "FUNDING_FEE")
        self.funding_payments += paid
        return paid


def _floor(value: Fraction) -> int:
    return value.numerator // value.denominator


def _ceil(value: Fraction) -> int:
    return -((-value.numerator) // value.denominator)


# handlers ---------------------------------------------------------------------------------------------


def margin_of(call: Call) -> FuturesMargin:
    margin = call.server.component(call.state, FuturesMargin)
    assert margin is not None, "USD-M routes only"
    return margin


def funding_terms(margin: FuturesMargin | None, symbol: str, now_ms: int) -> tuple[str, int]:
    """(funding rate text, next funding time) of a symbol: the margin model's, else the defaults."""
    hours8 = 8 * 3_600_000
    if margin is None:
        return "0.00010000", now_ms - now_ms % hours8 + hours8
    return f"{margin.funding_rates.get(symbol, Decimal('0.0001')):.8f}", margin.next_funding_ms


async def premium_index(call: Call) -> Any:
    state = call.state
    symbols, single = symbols_or_all(call)
    now = ms(state.clock.time_ns())
    margin = call.server.component(state, FuturesMargin)
    rows = []
    for symbol in symbols:
        formats = state.formats(symbol)
        mark = formats.price(mark_price(state, symbol))
        rate, next_time = funding_terms(margin, symbol, now)
        rows.append(
            {
                "symbol": symbol,
                "markPrice": mark,
                "indexPrice": mark,
                "estimatedSettlePrice": mark,
                "lastFundingRate": rate,
                "interestRate": "0.00010000",
                "nextFundingTime": next_time,
                "time": now,
            }
        )
    return rows[0] if single else rows


async def funding_rate_history(call: Call) -> Any:
    """``GET /fapi/v1/fundingRate``: funding events of the run (default 100, max 1000)."""
    margin = margin_of(call)
    params = call.params
    symbol = params.optional_symbol()
    start = params.optional_integer("startTime")
    end = params.optional_integer("endTime")
    limit = params.limit(100, 1000)
    rows = [
        event
        for event in margin.funding_history
        if (symbol is None or event.symbol == symbol)
        and (start is None or event.time_ms >= start)
        and (end is None or event.time_ms <= end)
    ]
    rows = rows[:limit] if start is not None else rows[-limit:]
    return [
        {
            "symbol": event.symbol,
            "fundingRate": f"{event.rate:.8f}",
            "fundingTime": event.time_ms,
            "markPrice": call.state.formats(event.symbol).price(event.mark),
        }
        for event in rows
    ]


async def funding_info(call: Call) -> Any:
    """``GET /fapi/v1/fundingInfo``: every symbol funds each 8 hours, rates uncapped (+-3 %)."""
    return [
        {
            "symbol": symbol,
            "adjustedFundingRateCap": "0.03000000",
            "adjustedFundingRateFloor": "-0.03000000",
            "fundingIntervalHours": 8,
            "disclaimer": False,
        }
        for symbol, instrument in call.state.venue.instruments.items()
        if instrument.kind is not ContractKind.SPOT
    ]


async def income_history(call: Call) -> Any:
    """``GET /fapi/v1/income``: the account's funding payments (``incomeType=FUNDING_FEE``)."""
    margin = margin_of(call)
    params = call.params
    symbol = params.optional_symbol()
    income_type = params.get("incomeType")
    start = params.optional_integer("startTime")
    end = params.optional_integer("endTime")
    limit = params.limit(100, 1000)
    account = call.require_account()
    if income_type not in (None, "FUNDING_FEE"):
        return []  # commissions and realized PnL are in userTrades, not listed here
    rows = [
        item
        for item in margin.income
        if item.account == account
        and (symbol is None or item.symbol == symbol)
        and (start is None or item.time_ms >= start)
        and (end is None or item.time_ms <= end)
    ]
    rows = rows[:limit] if start is not None else rows[-limit:]
    return [
        {
            "symbol": item.symbol,
            "incomeType": "FUNDING_FEE",
            "income": call.state.asset_text(item.asset, item.units),
            "asset": item.asset,
            "info": "FUNDING_FEE",
            "time": item.time_ms,
            "tranId": item.transaction_id,
            "tradeId": "",
        }
        for item in rows
    ]


async def open_interest(call: Call) -> Any:
    """``GET /fapi/v1/openInterest``: the long side of the simulator's own positions."""
    state = call.state
    symbol = call.params.symbol()
    state.instrument(symbol)
    accounts = state.accounts
    longs = sum(
        max(account.positions[symbol].quantity, 0)
        for account in accounts
        if symbol in account.positions and account is not accounts.market
    )
    return {
        "openInterest": state.formats(symbol).quantity(longs),
        "symbol": symbol,
        "time": ms(state.clock.time_ns()),
    }


__all__ = [
    "BRACKETS",
    "DEFAULT_LEVERAGE",
    "FuturesMargin",
    "MarginFigures",
    "funding_info",
    "funding_rate_history",
    "income_history",
    "margin_of",
    "open_interest",
]
