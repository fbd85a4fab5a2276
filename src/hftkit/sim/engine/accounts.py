"""Simulated accounts: spot balances (free/locked), perpetual positions, fees and a fill ledger.

Every amount is an integer number of *asset units* (``10**-decimals`` of the asset), so matching
moves value between accounts without rounding drift: what one account pays another receives,
and fees go to ``FEE_ACCOUNT``. Liquidity that belongs to no account (the replayed market) trades
through ``MARKET_ACCOUNT``, the only accounts allowed to go negative. ``totals()`` is therefore
constant under matching, which the property tests check.

Perpetuals lock no margin and never run out of balance here: exposure limits belong to the
risk gate; the simulator tracks positions, entry prices and realized PnL exactly.

Units on the way in: a fill of ``quantity`` lots at ``price`` ticks is worth ``price * quantity``
*notional units* (one tick times one lot times the contract size); ``InstrumentTerms`` holds the
integer factors that turn lots and notional units into asset units for one instrument.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from decimal import Decimal
from fractions import Fraction

import msgspec

from hftkit.core.numbers import format_scaled, parse_decimal
from hftkit.core.types import ContractKind, Instrument, Side
from hftkit.sim.engine.errors import SimulatorConfigurationError

MARKET_ACCOUNT = "__market__"
FEE_ACCOUNT = "__fees__"
_PPM = 1_000_000


class FeeSchedule:
    """Maker and taker fee rates in parts per million of the traded amount (negative = rebate).

    Charges round up and rebates round toward zero (in the venue's favour), to whole asset units.
    """

    __slots__ = ("maker_ppm", "taker_ppm")

    def __init__(self, maker_ppm: int = 0, taker_ppm: int = 0) -> None:
        if not -_PPM < maker_ppm < _PPM or not -_PPM < taker_ppm < _PPM:
            raise SimulatorConfigurationError("fee rates must lie strictly between -100% and 100%")
        self.maker_ppm = maker_ppm
        self.taker_ppm = taker_ppm

    @classmethod
    def from_basis_points(cls, maker: str | Decimal | int, taker: str | Decimal | int) -> FeeSchedule:
        """Build from basis points (``"1.5"`` = 0.015 %); finer than 0.01 bp is refused."""
        return cls(_basis_points_to_ppm(maker), _basis_points_to_ppm(taker))

    def fee(self, amount: int, is_maker: bool) -> int:
        rate = self.maker_ppm if is_maker else self.taker_ppm
        return -((-amount * rate) // _PPM)  # ceiling: charges round up, rebates toward zero

    def __repr__(self) -> str:
        return f"FeeSchedule(maker_ppm={self.maker_ppm}, taker_ppm={self.taker_ppm})"


def _basis_points_to_ppm(value: str | Decimal | int) -> int:
    ppm = Decimal(value) * 100
    if ppm != ppm.to_integral_value():
        raise SimulatorConfigurationError(f"fee rate {value} bp is finer than 0.01 bp")
    return int(ppm)


ZERO_FEES = FeeSchedule()


class Balance:
    __slots__ = ("free", "locked")

    def __init__(self, free: int = 0, locked: int = 0) -> None:
        self.free = free
        self.locked = locked

    @property
    def total(self) -> int:
        return self.free + self.locked

    def __repr__(self) -> str:
        return f"Balance(free={self.free}, locked={self.locked})"


class Position:
    """A perpetual position: signed lots, signed cost basis in notional units, realized PnL.

    Reducing a position removes the pro-rata share of the cost basis (floored), so the entry
    price is exact and a position closed to zero has realized exactly its cash flow.
    """

    __slots__ = ("cost", "quantity", "realized")

    def __init__(self) -> None:
        self.quantity = 0
        self.cost = 0
        self.realized = 0

    @property
    def entry_price(self) -> Fraction | None:
        """Average entry price in ticks, exact; None when flat."""
        return Fraction(self.cost, self.quantity) if self.quantity else None

    def apply(self, sign: int, price: int, quantity: int) -> int:
        """Apply a fill (sign +1 buy / -1 sell); return the PnL it realized, in notional units."""
        held = self.quantity
        if held == 0 or (held > 0) == (sign > 0):
            self.quantity = held + sign * quantity
            self.cost += sign * price * quantity
            return 0
        size = held if held > 0 else -held
        closing = quantity if quantity < size else size
        removed = self.cost * closing // size
        realized = -sign * price * closing - removed
        self.cost -= removed
        self.quantity = held + sign * closing
        self.realized += realized
        opening = quantity - closing
        if opening:
            self.quantity += sign * opening
            self.cost += sign * price * opening
        return realized

    def __repr__(self) -> str:
        return f"Position(quantity={self.quantity}, cost={self.cost}, realized={self.realized})"


class Account:
    """One account's balances per asset and positions per perpetual symbol."""

    __slots__ = ("balances", "fees", "name", "positions")

    def __init__(self, name: str, fees: FeeSchedule) -> None:
        self.name = name
        self.fees = fees
        self.balances: dict[str, Balance] = {}
        self.positions: dict[str, Position] = {}

    def balance(self, asset: str) -> Balance:
        found = self.balances.get(asset)
        if found is None:
            found = self.balances[asset] = Balance()
        return found

    def position(self, symbol: str) -> Position:
        found = self.positions.get(symbol)
        if found is None:
            found = self.positions[symbol] = Position()
        return found

    def __repr__(self) -> str:
        return f"Account({self.name!r}, balances={self.balances}, positions={self.positions})"


class InstrumentTerms:
    """Integer factors that turn one instrument's lots and notional units into asset units."""

    __slots__ = (
        "base",
        "base_units_per_lot",
        "instrument",
        "is_spot",
        "min_notional",
        "quote",
        "quote_units_per_notional",
        "symbol",
    )

    def __init__(
        self, instrument: Instrument, base_units_per_lot: int, quote_units_per_notional: int
    ) -> None:
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.base = instrument.base
        self.quote = instrument.quote
        self.is_spot = instrument.kind is ContractKind.SPOT
        self.base_units_per_lot = base_units_per_lot
        self.quote_units_per_notional = quote_units_per_notional
        notional_unit = instrument.tick_size * instrument.lot_size * instrument.contract_size
        threshold = instrument.min_notional / notional_unit
        self.min_notional = int(-((-threshold) // 1))  # ceiling, in notional units


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One side of one trade for one account (the market account's side is not recorded)."""

    trade_id: int
    symbol: str
    account: str
    order_id: int
    side: Side
    price: int  # ticks
    quantity: int  # lots
    quote_amount: int  # quote asset units
    fee: int  # fee asset units
    fee_asset: str
    is_maker: bool
    time_ns: int


class Accounts:
    """All accounts of one simulator, the fee and market accounts, and the fill ledger."""

    def __init__(
        self,
        asset_decimals: Mapping[str, int] | None = None,
        *,
        default_decimals: int = 8,
        fees: FeeSchedule = ZERO_FEES,
        keep_ledger: bool = True,
        ledger_limit: int | None = None,
    ) -> None:
        self._decimals = dict(asset_decimals or {})
        self._default_decimals = default_decimals
        self.default_fees = fees
        self.keep_ledger = keep_ledger
        # A long-running simulator fills forever: ``ledger_limit`` keeps the newest entries only
        # (None: all, as a backtest wants) and ``ledger_evicted`` says how many went, so a
        # reader comparing the ledger with its own fills knows it holds a window.
        self.ledger: deque[LedgerEntry] = deque(maxlen=ledger_limit)
        self.ledger_evicted = 0
        self._accounts: dict[str, Account] = {}
        self.market = self.get(MARKET_ACCOUNT, ZERO_FEES)
        self.fee_account = self.get(FEE_ACCOUNT, ZERO_FEES)
        self._terms: dict[str, InstrumentTerms] = {}

    # set-up -----------------------------------------------------------------------------
    def decimals(self, asset: str) -> int:
        return self._decimals.setdefault(asset, self._default_decimals)

    def get(self, name: str, fees: FeeSchedule | None = None) -> Account:
        """The account called ``name``, opened empty on first use (with ``fees`` or the default)."""
        account = self._accounts.get(name)
        if account is None:
            account = self._accounts[name] = Account(name, fees or self.default_fees)
        elif fees is not None:
            account.fees = fees
        return account

    def __iter__(self) -> Iterator[Account]:
        return iter(self._accounts.values())

    def __contains__(self, name: object) -> bool:
        return name in self._accounts

    def register(self, instrument: Instrument) -> InstrumentTerms:
        """Work out the instrument's unit factors; refuse grids the asset decimals cannot hold."""
        notional_unit = instrument.tick_size * instrument.lot_size * instrument.contract_size
        terms = InstrumentTerms(
            instrument,
            base_units_per_lot=self._whole_units(instrument.base, instrument.lot_size, instrument.symbol),
            quote_units_per_notional=self._whole_units(instrument.quote, notional_unit, instrument.symbol),
        )
        self._terms[instrument.symbol] = terms
        return terms

    def _whole_units(self, asset: str, step: Decimal, symbol: str) -> int:
        scaled = step.scaleb(self.decimals(asset))
        if scaled != scaled.to_integral_value() or scaled <= 0:
            raise SimulatorConfigurationError(
                f"{symbol}: a step of {step} {asset} is finer than the {self.decimals(asset)} "
                f"decimals kept for {asset}; raise asset_decimals[{asset!r}]"
            )
        return int(scaled)

    # amounts at the edge ---------------------------------------------------------------
    def to_units(self, asset: str, text: str) -> int:
        """Exact decimal string -> asset units (refuses finer precision than the asset keeps)."""
        units, scale = parse_decimal(text)
        decimals = self.decimals(asset)
        if scale > decimals:
            whole, rest = divmod(units, 10 ** (scale - decimals))
            if rest:
                raise SimulatorConfigurationError(f"{text} {asset} has more than {decimals} decimals")
            return whole
        return units * 10 ** (decimals - scale)

    def to_text(self, asset: str, units: int) -> str:
        return format_scaled(units, self.decimals(asset))

    # transfers from outside (these change totals on purpose) -----------------------------
    def deposit(self, name: str, asset: str, units: int) -> None:
        if units < 0:
            raise SimulatorConfigurationError("a deposit is positive; use withdraw")
        self.get(name).balance(asset).free += units

    def withdraw(self, name: str, asset: str, units: int) -> bool:
        balance = self.get(name).balance(asset)
        if units < 0 or balance.free < units:
            return False
        balance.free -= units
        return True

    # locks -------------------------------------------------------------------------------
    @staticmethod
    def reserve(account: Account, asset: str, units: int) -> bool:
        """Move ``units`` from free to locked; False (and no change) when free is short."""
        balance = account.balances.get(asset)
        if balance is None:
            if units:
                return False
            balance = account.balance(asset)
        if balance.free < units:
            return False
        balance.free -= units
        balance.locked += units
        return True

    @staticmethod
    def release(account: Account, asset: str, units: int) -> None:
        balance = account.balances[asset]
        balance.locked -= units
        balance.free += units

    # settlement --------------------------------------------------------------------------
    def settle(
        self,
        terms: InstrumentTerms,
        trade_id: int,
        time_ns: int,
        price: int,
        quantity: int,
        buyer: Account,
        seller: Account,
        buyer_is_maker: bool,
        buyer_release: int,
        seller_release: int,
        buy_order_id: int,
        sell_order_id: int,
    ) -> tuple[int, int, str, str]:
        """Move value for one trade; return (buyer fee, seller fee, buyer fee asset, seller fee asset).

        ``buyer_release`` / ``seller_release`` are the amounts this fill takes out of the
        order's locked reserve (quote for the buyer, base for the seller); the market account
        has no reserve and pays from free. Spot fees are taken in the asset received (Binance
        without BNB); perpetual fees and realized PnL go to the quote (settlement) asset.
        """
        notional = price * quantity
        quote_amount = notional * terms.quote_units_per_notional
        quote = terms.quote
        fee_balance = self.fee_account.balance
        if terms.is_spot:
            base = terms.base
            base_amount = quantity * terms.base_units_per_lot
            buyer_fee = buyer.fees.fee(base_amount, buyer_is_maker)
            seller_fee = seller.fees.fee(quote_amount, not buyer_is_maker)
            balance = buyer.balance(quote)
            balance.locked -= buyer_release
            balance.free += buyer_release - quote_amount
            buyer.balance(base).free += base_amount - buyer_fee
            balance = seller.balance(base)
            balance.locked -= seller_release
            balance.free += seller_release - base_amount
            seller.balance(quote).free += quote_amount - seller_fee
            fee_balance(base).free += buyer_fee
            fee_balance(quote).free += seller_fee
            buyer_asset, seller_asset = base, quote
        else:
            symbol = terms.symbol
            factor = terms.quote_units_per_notional
            buyer_fee = buyer.fees.fee(quote_amount, buyer_is_maker)
            seller_fee = seller.fees.fee(quote_amount, not buyer_is_maker)
            realized = buyer.position(symbol).apply(1, price, quantity)
            buyer.balance(quote).free += realized * factor - buyer_fee
            realized = seller.position(symbol).apply(-1, price, quantity)
            seller.balance(quote).free += realized * factor - seller_fee
            fee_balance(quote).free += buyer_fee + seller_fee
            buyer_asset = seller_asset = quote
        if self.keep_ledger:
            ledger = self.ledger
            market = self.market
            limit = ledger.maxlen
            if limit is not None:  # counted before the deque drops the oldest
                added = (buyer is not market) + (seller is not market)
                self.ledger_evicted += max(0, len(ledger) + added - limit)
            if buyer is not market:
                ledger.append(
                    LedgerEntry(
                        trade_id=trade_id,
                        symbol=terms.symbol,
                        account=buyer.name,
                        order_id=buy_order_id,
                        side=Side.BUY,
                        price=price,
                        quantity=quantity,
                        quote_amount=quote_amount,
                        fee=buyer_fee,
                        fee_asset=buyer_asset,
                        is_maker=buyer_is_maker,
                        time_ns=time_ns,
                    )
                )
            if seller is not market:
                ledger.append(
                    LedgerEntry(
                        trade_id=trade_id,
                        symbol=terms.symbol,
                        account=seller.name,
                        order_id=sell_order_id,
                        side=Side.SELL,
                        price=price,
                        quantity=quantity,
                        quote_amount=quote_amount,
                        fee=seller_fee,
                        fee_asset=seller_asset,
                        is_maker=not buyer_is_maker,
                        time_ns=time_ns,
                    )
                )
        return buyer_fee, seller_fee, buyer_asset, seller_asset

    # invariants --------------------------------------------------------------------------
    def totals(self) -> dict[str, int]:
        """Sum per asset over every account (market and fee accounts included).

        Perpetual positions count at cost (balance minus cost basis in the settlement asset):
        trading moves cash between accounts, so this is constant under matching. Assets that
        sum to zero are left out, so two snapshots compare equal whatever assets were touched.
        """
        totals: dict[str, int] = {}
        for account in self._accounts.values():
            for asset, balance in account.balances.items():
                totals[asset] = totals.get(asset, 0) + balance.free + balance.locked
            for symbol, position in account.positions.items():
                terms = self._terms[symbol]
                at_cost = position.cost * terms.quote_units_per_notional
                totals[terms.quote] = totals.get(terms.quote, 0) - at_cost
        return {asset: total for asset, total in totals.items() if total}

    def net_positions(self) -> dict[str, int]:
        """Sum of positions per perpetual symbol over every account: always zero."""
        net: dict[str, int] = {}
        for account in self._accounts.values():
            for symbol, position in account.positions.items():
                net[symbol] = net.get(symbol, 0) + position.quantity
        return net
