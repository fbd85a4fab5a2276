"""Thalex mass quoting and market-maker protection of the simulator.

``private/mass_quote`` replaces a session's two-sided quotes per instrument in one call (up
to 10 levels a side; a level equal to a live quote keeps its queue place), and
``private/set_mm_protection`` bounds what those quotes may trade per product: once the
executed amount reaches ``trade_amount`` the group trips and every quote of the product is
pulled (``delete_reason`` ``mm_protection``) outside the venue call that tripped it. Orders go
through the RPC layer's order desk (``OrderDesk``, implemented by ``rpc.ThalexRpc``), so quotes
and ordinary orders share one path into the venue.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from hftkit.core.types import Instrument, OrderType, Side, TimeInForce
from hftkit.sim.engine.matching import OrderResult, SimOrder
from hftkit.sim.thalex import wire as wire
from hftkit.sim.thalex.channels import Channels
from hftkit.sim.thalex.orders import OrderInfo
from hftkit.sim.thalex.session import Protection, Session
from hftkit.sim.thalex.wire import RpcError
from hftkit.venues.thalex.errors import ThalexErrorCode

_MAX_QUOTES = 100
_MAX_QUOTE_LEVELS = 10


class OrderDesk(Protocol):
    """The order path mass quotes share with ordinary orders (``rpc.ThalexRpc``)."""

    def instrument_or_error(self, name: Any) -> Instrument: ...

    def place(
        self,
        session: Session,
        info: OrderInfo,
        instrument: Instrument,
        side: Side,
        order_type: OrderType,
        lots: int,
        price: int,
        time_in_force: TimeInForce,
        client_order_id: int | None,
        *,
        reprice: bool,
    ) -> OrderResult: ...

    def refused(
        self,
        session: Session,
        info: OrderInfo,
        instrument: Instrument,
        side: Side,
        lots: int,
        price: int,
        result: OrderResult,
    ) -> dict[str, Any]: ...

    def cancel_with_reason(self, order: SimOrder, delete_reason: str) -> bool: ...

    def end_batch(self) -> None: ...


@dataclass(frozen=True)
class _QuoteStyle:
    """The mass quote's call-wide settings."""

    label: str | None
    post_only: bool
    reject_post_only: bool


class MassQuotes:
    """Mass quotes and protection groups of every session of one venue."""

    def __init__(self, desk: OrderDesk, channels: Channels, counters: dict[str, int]) -> None:
        self.desk = desk
        self.channels = channels
        self.counters = counters
        self._pulls: list[tuple[Session, str]] = []

    @property
    def instruments(self) -> dict[str, Instrument]:
        return self.channels.instruments

    def set_mm_protection(self, session: Session, params: wire.Params) -> None:
        product = params.required_string("product")
        if product not in {wire.product_of(item) for item in self.instruments.values()}:
            raise RpcError(ThalexErrorCode.UNKNOWN_PRODUCT, f"unknown product {product}")
        amount = params.raw("amount")
        if amount is not None:
            trade_text = quote_text = wire.number_text(amount, "amount")
        else:
            trade_text = wire.number_text(params.required("trade_amount"), "trade_amount")
            quote_text = wire.number_text(params.required("quote_amount"), "quote_amount")
        trade_amount, quote_amount = Decimal(trade_text), Decimal(quote_text)
        if trade_amount <= 0 or quote_amount <= 0:
            raise RpcError(ThalexErrorCode.INVALID_QUANTITY, "protection amounts must be positive")
        if trade_amount > quote_amount and amount is None:
            raise RpcError(ThalexErrorCode.INVALID_QUANTITY, "trade_amount must not exceed quote_amount")
        session.protection[product] = Protection(trade_amount, quote_amount)
        self._push_protection(session, product, trade_amount, "refill")
        return None

    def _push_protection(self, session: Session, product: str, remaining: Decimal, reason: str) -> None:
        self.channels.push_protection(session, product, wire.decimal_number(remaining), reason)

    def protection_execution(self, session: Session, product: str, instrument: Instrument, lots: int) -> None:
        group = session.protection.get(product)
        if group is None or group.tripped:
            return
        group.executed += Decimal(instrument.lots_to_quantity(lots))
        remaining = group.trade_amount - group.executed
        self._push_protection(session, product, remaining, "executions")
        if remaining <= 0:
            group.tripped = True
            self.counters["protection_trips"] += 1
            self._pulls.append((session, product))
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_soon(self.process_pulls)

    def process_pulls(self) -> None:
        """Pull the quotes of tripped protection groups (outside the venue call that tripped them)."""
        pulls, self._pulls = self._pulls, []
        for session, product in pulls:
            self._pull_quotes(session, product, "mm_protection")

    def _pull_quotes(self, session: Session, product: str | None, delete_reason: str) -> None:
        for key, orders in list(session.quotes.items()):
            instrument = self.instruments[key[0]]
            if product is not None and wire.product_of(instrument) != product:
                continue
            for order in orders:
                if order.is_open:
                    self.desk.cancel_with_reason(order, delete_reason)
            del session.quotes[key]

    def reset_protection(self, session: Session, product: str | None, reason: str) -> None:
        for name in list(session.protection):
            if product is None or name == product:
                del session.protection[name]
                self._push_protection(session, name, Decimal(0), reason)

    def cancel_mass_quote(self, session: Session, params: wire.Params) -> None:
        product = params.string("product")
        for other in list(self.channels.account_sessions.get(session.account or "", ())):
            self._pull_quotes(other, product, "client_bulk_cancel")
            self.reset_protection(other, product, "client_cancel")
        return None

    def mass_quote(self, session: Session, params: wire.Params) -> dict[str, Any]:
        quotes = params.required("quotes")
        if not isinstance(quotes, list) or len(quotes) > _MAX_QUOTES:
            raise RpcError(
                ThalexErrorCode.INVALID_REQUEST, f"quotes must be a list of at most {_MAX_QUOTES} items"
            )
        style = _QuoteStyle(
            params.string("label"), params.boolean("post_only"), params.boolean("reject_post_only")
        )
        successes = 0
        errors: list[dict[str, Any]] = []
        for item in quotes:
            if not isinstance(item, dict):
                raise RpcError(ThalexErrorCode.INVALID_REQUEST, "each quote is an object")
            instrument = self.desk.instrument_or_error(item.get("i"))
            product = wire.product_of(instrument)
            group = session.protection.get(product)
            if group is None:
                raise RpcError(
                    ThalexErrorCode.PROTECTION_NOT_SET, f"market maker protection not set for {product}"
                )
            for side_key, side in (("b", Side.BUY), ("a", Side.SELL)):
                if side_key not in item:
                    continue
                outcomes = self._quote_side(
                    session, instrument, group, side, _quote_levels(item[side_key]), style
                )
                for price_value, error in outcomes:
                    if error is None:
                        successes += 1
                        continue
                    failure: dict[str, Any] = {
                        "code": error.code,
                        "message": error.message,
                        "side": "bid" if side is Side.BUY else "ask",
                    }
                    if isinstance(price_value, int | float) and not isinstance(price_value, bool):
                        failure["price"] = price_value
                    errors.append(failure)
        return {"n_success": successes, "n_fail": len(errors), "errors": errors}

    def _quote_side(
        self,
        session: Session,
        instrument: Instrument,
        group: Protection,
        side: Side,
        levels: list[tuple[Any, Any]] | RpcError,
        style: _QuoteStyle,
    ) -> list[tuple[Any, RpcError | None]]:
        """Replace one side's quotes; one outcome (price as sent, error or None) per level.

        A level identical to a live quote (same price, same remaining amount) keeps that order
        and its queue priority; the side's other quotes are deleted, the new levels inserted.
        """
        if isinstance(levels, RpcError):
            return [(None, levels)]
        key = (instrument.symbol, side is Side.BUY)
        current = [order for order in session.quotes.get(key, []) if order.is_open]
        outcomes: list[tuple[Any, RpcError | None]] = []
        wanted: list[tuple[int, int, Any]] = []
        for price_value, amount_value in levels:
            try:
                if group.tripped:
                    raise RpcError(
                        ThalexErrorCode.PROTECTION_NOT_SET,
                        "protection group exhausted; refill with set_mm_protection",
                    )
                lots = wire.to_lots(instrument, amount_value, allow_zero=True)
                if lots == 0:  # removes the side
                    outcomes.append((price_value, None))
                    continue
                price = wire.to_ticks(instrument, price_value)
                if Decimal(instrument.lots_to_quantity(lots)) > group.quote_amount:
                    raise RpcError(
                        ThalexErrorCode.QUOTE_EXCEEDS_PROTECTION_SIZE, "quote exceeds protection group size"
                    )
                wanted.append((price, lots, price_value))
            except RpcError as error:
                outcomes.append((price_value, error))
        kept: list[SimOrder] = []
        to_place: list[tuple[int, int, Any]] = []
        for price, lots, price_value in wanted:
            same = next(
                (
                    order
                    for order in current
                    if order.price == price and order.quantity - order.filled == lots and order not in kept
                ),
                None,
            )
            if same is None:
                to_place.append((price, lots, price_value))
            else:
                kept.append(same)
                outcomes.append((price_value, None))
        removal = "replaced" if wanted else "client_cancel"
        for order in current:
            if order not in kept and order.is_open:
                self.desk.cancel_with_reason(order, removal)
        if not levels:  # an empty array removes the side
            outcomes.append((None, None))
        live = list(kept)
        for price, lots, price_value in to_place:
            info = OrderInfo(session, None, style.label, False, wire.product_of(instrument), mass_quote=True)
            result = self.desk.place(
                session,
                info,
                instrument,
                side,
                OrderType.LIMIT_MAKER if style.post_only else OrderType.LIMIT,
                lots,
                price,
                TimeInForce.GTC,
                None,
                reprice=style.post_only and not style.reject_post_only,
            )
            self.desk.end_batch()
            if result.accepted and result.order is not None:
                if result.order.is_open:
                    live.append(result.order)
                outcomes.append((price_value, None))
                continue
            try:  # a post-only quote that would cross is deleted (immediate_cancel), not an error
                self.desk.refused(session, info, instrument, side, lots, price, result)
                outcomes.append((price_value, None))
            except RpcError as error:
                outcomes.append((price_value, error))
        session.quotes[key] = live
        return outcomes


def _quote_levels(side: Any) -> list[tuple[Any, Any]] | RpcError:
    """A mass-quote side: ``{"p","a"}`` (single level) or ``[[p, a], ...]`` (up to 10 levels)."""
    if isinstance(side, dict):
        if "a" not in side or ("p" not in side and side.get("a") != 0):
            return RpcError(ThalexErrorCode.INVALID_REQUEST, "a quote side needs p and a")
        return [(side.get("p"), side["a"])]
    if isinstance(side, list):
        if len(side) > _MAX_QUOTE_LEVELS:
            return RpcError(ThalexErrorCode.INVALID_REQUEST, f"at most {_MAX_QUOTE_LEVELS} levels per side")
        levels = []
        for level in side:
            if not isinstance(level, list) or len(level) != 2:
                return RpcError(ThalexErrorCode.INVALID_REQUEST, "a quote level is [price, amount]")
            levels.append((level[0], level[1]))
        return levels
    return RpcError(ThalexErrorCode.INVALID_REQUEST, "a quote side is {p, a} or [[p, a], ...]")


__all__ = ["MassQuotes", "OrderDesk"]
