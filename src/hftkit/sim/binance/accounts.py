"""Account endpoints of the Binance-compatible simulator: spot balances, USD-M balances and positions.

USD-M figures come from the simulator's accounts: wallet balance in the settlement asset,
positions at an exact entry price, unrealized PnL at the mark (mid of the book), initial and
maintenance margin from the market's ``FuturesMargin`` (cross margin at the leverage set per
symbol; ``binance_margin``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from hftkit.core.types import ContractKind
from hftkit.sim.binance.limits import interval_name
from hftkit.sim.binance.margin import BRACKETS, DEFAULT_LEVERAGE, FuturesMargin
from hftkit.sim.binance.params import BinanceApiError, illegal
from hftkit.sim.binance.rest import Call, Handler, mark_price
from hftkit.sim.binance.state import MarketState
from hftkit.sim.binance.wire import ms, rate_text

# accounts ----------------------------------------------------------------------------------


def _commission_fields(state: MarketState, account: str) -> dict[str, Any]:
    fees = state.accounts.get(account).fees
    return {
        "makerCommission": fees.maker_ppm // 100,
        "takerCommission": fees.taker_ppm // 100,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {
            "maker": rate_text(fees.maker_ppm),
            "taker": rate_text(fees.taker_ppm),
            "buyer": "0.00000000",
            "seller": "0.00000000",
        },
    }


async def spot_account(call: Call) -> Any:
    state = call.state
    account_name = call.require_account()
    account = state.accounts.get(account_name)
    omit_zero = call.params.boolean("omitZeroBalances")
    balances = [
        {
            "asset": asset,
            "free": state.asset_text(asset, balance.free),
            "locked": state.asset_text(asset, balance.locked),
        }
        for asset, balance in sorted(account.balances.items())
        if not omit_zero or balance.total
    ]
    body: dict[str, Any] = _commission_fields(state, account_name)
    body.update(
        {
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": ms(state.clock.time_ns()),
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": abs(hash(account_name)) % 10**9,
        }
    )
    return body


@dataclass
class _PositionFigures:
    symbol: str
    quantity: str
    entry: str
    mark: str
    unrealized: str
    notional: str
    unrealized_units: int


def _positions(state: MarketState, account_name: str) -> list[_PositionFigures]:
    account = state.accounts.get(account_name)
    figures = []
    for symbol, instrument in state.venue.instruments.items():
        if instrument.kind is ContractKind.SPOT:
            continue
        formats = state.formats(symbol)
        position = account.positions.get(symbol)
        quantity = position.quantity if position is not None else 0
        mark = mark_price(state, symbol)
        if quantity and position is not None:
            entry_fraction = Fraction(position.cost, quantity)
            entry = _fraction_text(entry_fraction * Fraction(instrument.tick_size), formats.price_scale + 2)
            unrealized_notional = mark * quantity - position.cost
        else:
            entry = "0.0"
            unrealized_notional = 0
        step = formats.notional_step
        unrealized_units = int(
            Fraction(unrealized_notional) * Fraction(step) * 10 ** state.accounts.decimals(instrument.quote)
        )
        figures.append(
            _PositionFigures(
                symbol,
                formats.quantity(quantity),
                entry,
                formats.price(mark),
                formats.quote(unrealized_notional),
                formats.quote(mark * quantity),
                unrealized_units,
            )
        )
    return figures


def _fraction_text(value: Fraction, scale: int) -> str:
    quantum = Decimal(1).scaleb(-scale)
    text = f"{(Decimal(value.numerator) / Decimal(value.denominator)).quantize(quantum):f}"
    if "." in text:
        text = text.rstrip("0")
        if text.endswith("."):
            text += "0"
    return text


def _futures_assets(state: MarketState, account_name: str) -> list[str]:
    account = state.accounts.get(account_name)
    assets = {instrument.quote for instrument in state.venue.instruments.values()}
    assets.update(account.balances)
    return sorted(assets)


def _futures_balances(call: Call, account_name: str) -> list[dict[str, Any]]:
    state = call.state
    margin = call.server.component(state, FuturesMargin)
    account = state.accounts.get(account_name)
    positions = _positions(state, account_name)
    unrealized_by_asset: dict[str, int] = {}
    for figures in positions:
        quote = state.instrument(figures.symbol).quote
        unrealized_by_asset[quote] = unrealized_by_asset.get(quote, 0) + figures.unrealized_units
    rows = []
    for asset in _futures_assets(state, account_name):
        balance = account.balances.get(asset)
        wallet = balance.total if balance is not None else 0
        unrealized = unrealized_by_asset.get(asset, 0)
        margin_figures = margin.figures(account_name, asset) if margin is not None else None
        position_initial = margin_figures.position_initial if margin_figures is not None else 0
        open_initial = margin_figures.open_order_initial if margin_figures is not None else 0
        maintenance = margin_figures.maintenance if margin_figures is not None else 0
        available = wallet + unrealized - position_initial - open_initial
        rows.append(
            {
                "asset": asset,
                "walletBalance": state.asset_text(asset, wallet),
                "unrealizedProfit": state.asset_text(asset, unrealized),
                "marginBalance": state.asset_text(asset, wallet + unrealized),
                "availableBalance": state.asset_text(asset, max(0, available)),
                "crossWalletBalance": state.asset_text(asset, wallet),
                "crossUnPnl": state.asset_text(asset, unrealized),
                "maxWithdrawAmount": state.asset_text(asset, max(0, min(wallet, available))),
                "balance": state.asset_text(asset, wallet),
                "initialMargin": state.asset_text(asset, position_initial + open_initial),
                "maintMargin": state.asset_text(asset, maintenance),
                "positionInitialMargin": state.asset_text(asset, position_initial),
                "openOrderInitialMargin": state.asset_text(asset, open_initial),
                "marginAvailable": True,
                "updateTime": ms(state.clock.time_ns()),
            }
        )
    return rows


async def futures_balance(call: Call) -> Any:
    account = call.require_account()
    rows = []
    for row in _futures_balances(call, account):
        rows.append(
            {
                "accountAlias": "SimFutures",
                "asset": row["asset"],
                "balance": row["balance"],
                "crossWalletBalance": row["crossWalletBalance"],
                "crossUnPnl": row["crossUnPnl"],
                "availableBalance": row["availableBalance"],
                "maxWithdrawAmount": row["maxWithdrawAmount"],
                "marginAvailable": True,
                "updateTime": row["updateTime"],
            }
        )
    return rows


def _position_rows(call: Call, account: str, version: int, symbol: str | None) -> list[dict[str, Any]]:
    state = call.state
    margin = call.server.component(state, FuturesMargin)
    now = ms(state.clock.time_ns())
    rows = []
    for figures in _positions(state, account):
        if symbol is not None and figures.symbol != symbol:
            continue
        quote = state.instrument(figures.symbol).quote
        leverage = margin.leverage(account, figures.symbol) if margin is not None else DEFAULT_LEVERAGE
        initial = Decimal(figures.notional.lstrip("-")) / leverage
        common = {
            "symbol": figures.symbol,
            "positionAmt": figures.quantity,
            "entryPrice": figures.entry,
            "breakEvenPrice": figures.entry,
            "markPrice": figures.mark,
            "unRealizedProfit": figures.unrealized,
            "liquidationPrice": "0",
            "notional": figures.notional,
            "isolatedMargin": "0",
            "isolatedWallet": "0",
            "positionSide": "BOTH",
            "updateTime": now,
        }
        if version == 2:
            common.update(
                {
                    "leverage": str(leverage),
                    "maxNotionalValue": _max_notional(leverage),
                    "marginType": "cross",
                    "isAutoAddMargin": "false",
                }
            )
        else:
            common.update(
                {
                    "marginAsset": quote,
                    "initialMargin": _plain(initial),
                    "maintMargin": _plain(_maintenance(Decimal(figures.notional.lstrip("-")))),
                    "positionInitialMargin": _plain(initial),
                    "openOrderInitialMargin": "0",
                    "adl": 0,
                    "bidNotional": "0",
                    "askNotional": "0",
                }
            )
        if version == 3 and figures.quantity.strip("0.") == "":
            continue  # v3 lists only symbols with a position
        rows.append(common)
    return rows


def position_risk(version: int) -> Handler:
    async def handler(call: Call) -> Any:
        symbol = call.params.optional_symbol()
        if symbol is not None:
            call.state.instrument(symbol)
        return _position_rows(call, call.require_account(), version, symbol)

    return handler


def futures_account(version: int) -> Handler:
    async def handler(call: Call) -> Any:
        account = call.require_account()
        balances = _futures_balances(call, account)
        totals = {
            name: _sum_texts(row[name] for row in balances)
            for name in ("walletBalance", "unrealizedProfit", "marginBalance", "availableBalance")
        }
        body: dict[str, Any] = {}
        if version == 2:
            body.update(
                {
                    "feeTier": 0,
                    "feeBurn": False,
                    "canTrade": True,
                    "canDeposit": True,
                    "canWithdraw": True,
                    "updateTime": 0,
                    "multiAssetsMargin": False,
                    "tradeGroupId": -1,
                }
            )
        margins = {
            name: _sum_texts(row[name] for row in balances)
            for name in ("initialMargin", "maintMargin", "positionInitialMargin", "openOrderInitialMargin")
        }
        body.update(
            {
                "totalInitialMargin": margins["initialMargin"],
                "totalMaintMargin": margins["maintMargin"],
                "totalWalletBalance": totals["walletBalance"],
                "totalUnrealizedProfit": totals["unrealizedProfit"],
                "totalMarginBalance": totals["marginBalance"],
                "totalPositionInitialMargin": margins["positionInitialMargin"],
                "totalOpenOrderInitialMargin": margins["openOrderInitialMargin"],
                "totalCrossWalletBalance": totals["walletBalance"],
                "totalCrossUnPnl": totals["unrealizedProfit"],
                "availableBalance": totals["availableBalance"],
                "maxWithdrawAmount": totals["availableBalance"],
                "assets": balances,
                "positions": _position_rows(call, account, 2 if version == 2 else 3, None),
            }
        )
        return body

    return handler


def _sum_texts(texts: Any) -> str:
    total = sum((Decimal(text) for text in texts), Decimal(0))
    return f"{total.quantize(Decimal('0.00000001')):f}"


def _max_notional(leverage: int) -> str:
    """The largest position notional the brackets allow at this leverage."""
    caps = [cap for _floor, cap, most, _ratio, _cum in BRACKETS if leverage <= most]
    return str(max(caps)) if caps else "0"


def _maintenance(notional: Decimal) -> Decimal:
    for _floor, cap, _most, ratio, cum in BRACKETS:
        if notional < cap or cap == BRACKETS[-1][1]:
            return max(Decimal(0), notional * ratio - cum)
    return Decimal(0)


def _plain(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.00000001')):f}"


async def leverage(call: Call) -> Any:
    """``POST /fapi/v1/leverage``: the leverage the margin model uses for this symbol from now on."""
    params = call.params
    symbol = params.symbol()
    call.state.instrument(symbol)
    value = params.integer("leverage")
    if not 1 <= value <= BRACKETS[0][2]:
        raise BinanceApiError(-4028, f"Leverage {value} is not valid")
    margin = call.server.component(call.state, FuturesMargin)
    if margin is not None:
        margin.set_leverage(call.require_account(), symbol, value)
    return {"leverage": value, "maxNotionalValue": _max_notional(value), "symbol": symbol}


async def margin_type(call: Call) -> Any:
    params = call.params
    call.state.instrument(params.symbol())
    kind = params.text("marginType")
    if kind not in ("ISOLATED", "CROSSED"):
        raise illegal("marginType", "ISOLATED, CROSSED")
    if kind == "CROSSED":
        raise BinanceApiError(-4046, "No need to change margin type.")
    raise BinanceApiError(-4048, "Margin type cannot be changed if there exists position.")


async def position_mode(call: Call) -> Any:
    return {"dualSidePosition": False}


async def set_position_mode(call: Call) -> Any:
    dual = call.params.text("dualSidePosition")
    if dual.lower() == "true":
        raise BinanceApiError(-4059, "No need to change position side.")
    if dual.lower() != "false":
        raise illegal("dualSidePosition", "true, false")
    raise BinanceApiError(-4059, "No need to change position side.")


async def leverage_bracket(call: Call) -> Any:
    symbol = call.params.optional_symbol()
    instruments = call.state.venue.instruments
    symbols = [symbol] if symbol is not None else list(instruments)
    rows = []
    for name in symbols:
        call.state.instrument(name)
        rows.append(
            {
                "symbol": name,
                "brackets": [
                    {
                        "bracket": number,
                        "initialLeverage": most,
                        "notionalCap": cap,
                        "notionalFloor": floor,
                        "maintMarginRatio": float(ratio),
                        "cum": float(cum),
                    }
                    for number, (floor, cap, most, ratio, cum) in enumerate(BRACKETS, start=1)
                ],
            }
        )
    return rows[0] if symbol is not None else rows


async def commission_rate(call: Call) -> Any:
    symbol = call.params.symbol()
    call.state.instrument(symbol)
    fees = call.state.accounts.get(call.require_account()).fees
    return {
        "symbol": symbol,
        "makerCommissionRate": rate_text(fees.maker_ppm),
        "takerCommissionRate": rate_text(fees.taker_ppm),
    }


async def spot_commission(call: Call) -> Any:
    """``GET /api/v3/account/commission``: the account's rates for a symbol (no tax, no discount)."""
    symbol = call.params.symbol()
    state = call.state
    state.instrument(symbol)
    fees = state.accounts.get(call.require_account()).fees
    return {
        "symbol": symbol,
        "standardCommission": {
            "maker": rate_text(fees.maker_ppm),
            "taker": rate_text(fees.taker_ppm),
            "buyer": "0.00000000",
            "seller": "0.00000000",
        },
        "specialCommission": {
            "maker": "0.00000000",
            "taker": "0.00000000",
            "buyer": "0.00000000",
            "seller": "0.00000000",
        },
        "taxCommission": {
            "maker": "0.00000000",
            "taker": "0.00000000",
            "buyer": "0.00000000",
            "seller": "0.00000000",
        },
        "discount": {
            "enabledForAccount": False,
            "enabledForSymbol": False,
            "discountAsset": "BNB",
            "discount": "0.00000000",
        },
    }


async def spot_order_rate_limits(call: Call) -> Any:
    """``GET /api/v3/rateLimit/order``: the account's unfilled-order counts per window."""
    state = call.state
    counts = state.order_limits.counts(call.require_account())
    rows = []
    for (seconds, limit), count in zip(state.limits.order_windows, counts, strict=True):
        interval, number = interval_name(seconds)
        rows.append(
            {
                "rateLimitType": "ORDERS",
                "interval": interval,
                "intervalNum": number,
                "limit": limit,
                "count": count,
            }
        )
    return rows
