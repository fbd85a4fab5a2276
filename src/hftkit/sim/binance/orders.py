"""Order entry and order queries of the Binance-compatible simulator (spot and USD-M).

The protocol lives here: which params each order type requires or refuses, how a decimal
string is checked against the instrument's grids (illegal text -1100, too many decimals
-1111, off grid -1013 / -4014 / -4023), the gateway checks Binance runs before matching
(MAX_NUM_ORDERS, reduceOnly), and which wire error each engine reject becomes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import orjson

from hftkit.core.types import Instrument, OrderType, Side, TimeInForce
from hftkit.sim.binance.margin import FuturesMargin
from hftkit.sim.binance.params import BinanceApiError, Params, illegal
from hftkit.sim.binance.rest import Call
from hftkit.sim.binance.state import FuturesOrderFlags, MarketState
from hftkit.sim.binance.stops import SPOT_STOP_TYPES, SpotStops, apply_stop_fields
from hftkit.sim.binance.wire import (
    Formats,
    futures_order,
    ms,
    rate_text,
    spot_cancel,
    spot_fill,
    spot_order_ack,
    spot_order_query,
    spot_order_result,
)
from hftkit.sim.engine.errors import RejectReason, binance_error
from hftkit.sim.engine.matching import OrderResult, SimOrder

SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}
SPOT_ORDER_TYPES = {
    "LIMIT": OrderType.LIMIT,
    "MARKET": OrderType.MARKET,
    "LIMIT_MAKER": OrderType.LIMIT_MAKER,
}
FUTURES_ORDER_TYPES = {"LIMIT": OrderType.LIMIT, "MARKET": OrderType.MARKET}
FUTURES_UNSUPPORTED_TYPES = frozenset(
    {"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}
)
TIME_IN_FORCE = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}
RESPONSE_TYPES = ("ACK", "RESULT", "FULL")
FUTURES_PRECISION_MESSAGE = "Precision is over the maximum defined for this asset."
_cancel_ids = itertools.count(1)


# order entry -------------------------------------------------------------------------------


def reject_error(state: MarketState, result: OrderResult, query: bool = False) -> BinanceApiError:
    """The wire error for an engine reject (USD-M codes where they differ from spot)."""
    reason = result.reason
    assert reason is not None
    if not state.is_spot:
        futures = _FUTURES_REJECTS.get(reason)
        if futures is not None:
            return BinanceApiError(*futures)
    code, message = binance_error(reason, query=query)
    return BinanceApiError(code, message)


_FUTURES_REJECTS: dict[RejectReason, tuple[int, str]] = {
    RejectReason.INSUFFICIENT_BALANCE: (-2019, "Margin is insufficient."),
    RejectReason.DUPLICATE_CLIENT_ORDER_ID: (-4116, "ClientOrderId is duplicated."),
    RejectReason.WOULD_TAKE: (
        -5022,
        "Due to the order could not be executed as maker, the Post Only order will be rejected. "
        "The order will not be recorded in the order history",
    ),
    RejectReason.PRICE_OUT_OF_RANGE: (-4001, "Price less than 0."),
}


@dataclass
class OrderRequest:
    """A validated new order, in engine terms."""

    symbol: str
    side: Side
    order_type: OrderType
    quantity: int
    price: int
    time_in_force: TimeInForce
    client_order_id: str | None
    response_type: str
    reduce_only: bool = False
    time_in_force_text: str = "GTC"
    stop_type: str | None = None  # spot conditional order type as sent (binance_stops)
    stop_price: int = 0


def _quote_quantity(state: MarketState, instrument: Instrument, side: Side, quote_text: str) -> int:
    """Lots a MARKET order with ``quoteOrderQty`` buys/sells by walking the book (rounded down)."""
    notional_step = instrument.tick_size * instrument.lot_size * instrument.contract_size
    budget = Fraction(Decimal(quote_text)) / Fraction(notional_step)
    snapshot = state.engine.depth(instrument.symbol)
    levels = snapshot.asks if side is Side.BUY else snapshot.bids
    lots = 0
    for price, size in levels:
        if budget <= 0:
            break
        affordable = int(budget // price)
        take = min(size, affordable)
        lots += take
        budget -= take * price
        if take < size:
            break
    return lots


def parse_spot_order(call: Call) -> OrderRequest:
    params = call.params
    state = call.state
    symbol = params.symbol()
    side = params.choice("side", SIDES, -1117, "Invalid side.")
    type_text = params.text("type")
    stop_type = type_text if type_text in SPOT_STOP_TYPES else None
    order_type = SPOT_STOP_TYPES.get(type_text) or SPOT_ORDER_TYPES.get(type_text)
    if order_type is None:
        raise BinanceApiError(-1116, "Invalid orderType.")
    instrument = state.instrument(symbol)
    formats = state.formats(symbol)
    assert isinstance(side, Side)
    time_in_force = TimeInForce.GTC
    price = 0
    stop_price = 0
    if stop_type is not None:
        params.forbid("trailingDelta", "quoteOrderQty")  # trailing stops are not modelled
        stop_price = params.decimal_steps("stopPrice", instrument.ticks, formats.price_scale, "PRICE_FILTER")
        if stop_price <= 0:
            raise BinanceApiError(-1013, "Filter failure: PRICE_FILTER")
    if order_type is OrderType.LIMIT:
        time_in_force = params.choice("timeInForce", TIME_IN_FORCE, -1115, "Invalid timeInForce.")
    else:
        params.forbid("timeInForce")
    if order_type is OrderType.MARKET:
        params.forbid("price")
        has_quantity = "quantity" in params
        has_quote = "quoteOrderQty" in params
        if has_quantity and has_quote:
            raise BinanceApiError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
        if not has_quantity and not has_quote:
            raise BinanceApiError(
                -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
            )
        if has_quote:
            quote_text = params.plain_decimal("quoteOrderQty")
            quantity = _quote_quantity(state, instrument, side, quote_text)
            if quantity <= 0:
                raise BinanceApiError(-1013, "Filter failure: NOTIONAL")
        else:
            quantity = params.decimal_steps("quantity", instrument.lots, formats.quantity_scale, "LOT_SIZE")
    else:
        quantity = params.decimal_steps("quantity", instrument.lots, formats.quantity_scale, "LOT_SIZE")
        price = params.decimal_steps("price", instrument.ticks, formats.price_scale, "PRICE_FILTER")
    for unsupported in (
        ("trailingDelta", "icebergQty") if stop_type else ("stopPrice", "trailingDelta", "icebergQty")
    ):
        params.forbid(unsupported)
    # documented: FULL by default for MARKET and LIMIT, ACK for the other types
    default_response = "ACK" if order_type is OrderType.LIMIT_MAKER or stop_type else "FULL"
    response_type = params.get("newOrderRespType") or default_response
    if response_type not in RESPONSE_TYPES:
        raise illegal("newOrderRespType", "ACK, RESULT, FULL")
    return OrderRequest(
        symbol,
        side,
        order_type,
        quantity,
        price,
        time_in_force,
        params.client_order_id("newClientOrderId"),
        response_type,
        stop_type=stop_type,
        stop_price=stop_price,
    )


def parse_futures_order(call: Call) -> OrderRequest:
    params = call.params
    state = call.state
    symbol = params.symbol()
    side = params.choice("side", SIDES, -1117, "Invalid side.")
    type_text = params.text("type")
    if type_text in FUTURES_UNSUPPORTED_TYPES:
        raise BinanceApiError(
            -4120,
            "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.",
        )
    order_type = FUTURES_ORDER_TYPES.get(type_text)
    if order_type is None:
        raise BinanceApiError(-1116, "Invalid orderType.")
    instrument = state.instrument(symbol)
    formats = state.formats(symbol)
    assert isinstance(side, Side)
    position_side = params.get("positionSide") or "BOTH"
    if position_side != "BOTH":
        if position_side in ("LONG", "SHORT"):
            raise BinanceApiError(-4061, "Order's position side does not match user's setting.")
        raise illegal("positionSide", "BOTH, LONG, SHORT")
    time_in_force = TimeInForce.GTC
    time_in_force_text = "GTC"
    price = 0
    if order_type is OrderType.LIMIT:
        time_in_force_text = params.text("timeInForce")
        if time_in_force_text == "GTX":
            order_type = OrderType.LIMIT_MAKER
        elif time_in_force_text in TIME_IN_FORCE:
            time_in_force = TIME_IN_FORCE[time_in_force_text]
        else:
            raise BinanceApiError(-1115, "Invalid timeInForce.")
        price = futures_decimal(params, "price", instrument, formats, is_price=True)
        if price <= 0:
            raise BinanceApiError(-4001, "Price less than 0.")
    else:
        params.forbid("price")
    quantity = futures_quantity(params, instrument, formats)
    reduce_only = params.boolean("reduceOnly")
    response_type = params.get("newOrderRespType") or "ACK"
    if response_type not in ("ACK", "RESULT"):
        raise illegal("newOrderRespType", "ACK, RESULT")
    return OrderRequest(
        symbol,
        side,
        order_type,
        quantity,
        price,
        time_in_force,
        params.client_order_id("newClientOrderId"),
        response_type,
        reduce_only=reduce_only,
        time_in_force_text=time_in_force_text,
    )


def futures_quantity(params: Params, instrument: Instrument, formats: Formats) -> int:
    """A USD-M ``quantity`` in lots with the venue's range codes (-4003 / -4004 / -4005)."""
    quantity = futures_decimal(params, "quantity", instrument, formats, is_price=False)
    if quantity <= 0:
        raise BinanceApiError(-4003, "Quantity less than or equal to zero.")
    if quantity < instrument.min_quantity:
        raise BinanceApiError(-4004, "Quantity less than min quantity.")
    if instrument.max_quantity is not None and quantity > instrument.max_quantity:
        raise BinanceApiError(-4005, "Quantity greater than max quantity.")
    return quantity


def futures_decimal(
    params: Params, name: str, instrument: Instrument, formats: Formats, is_price: bool
) -> int:
    precision = formats.price_precision if is_price else formats.quantity_precision
    try:
        return params.decimal_steps(
            name,
            instrument.ticks if is_price else instrument.lots,
            precision,
            "PRICE_FILTER" if is_price else "LOT_SIZE",
            precision_message=FUTURES_PRECISION_MESSAGE,
        )
    except BinanceApiError as error:
        if error.code == -1013:
            if is_price:
                raise BinanceApiError(-4014, "Price not increased by tick size.") from None
            raise BinanceApiError(-4023, "Qty not increased by step size.") from None
        raise


def check_reduce_only(
    state: MarketState, account: str, request: OrderRequest, excluding: int | None = None
) -> None:
    """A reduceOnly order must shrink the one-way position without flipping it (-2022).

    ``excluding``: an order being modified, whose own remaining size does not count."""
    if not request.reduce_only:
        return
    position = state.accounts.get(account).positions.get(request.symbol)
    held = position.quantity if position is not None else 0
    open_reducing = sum(
        order.remaining
        for order in state.engine.open_orders(account, request.symbol)
        if state.futures_flags.get(order.order_id, FuturesOrderFlags(False, "GTC")).reduce_only
        and order.side is request.side
        and order.order_id != excluding
    )
    reducible = -held if request.side is Side.BUY else held
    if reducible <= 0 or request.quantity + open_reducing > reducible:
        raise BinanceApiError(-2022, "ReduceOnly Order is rejected.")


def place_order(call: Call, request: OrderRequest) -> OrderResult:
    """Run the pre-trade checks Binance does at the gateway, then the engine."""
    state = call.state
    account = call.require_account()
    if len(state.engine.open_orders(account, request.symbol)) >= state.max_num_orders:
        if state.is_spot:
            raise BinanceApiError(-1013, "Filter failure: MAX_NUM_ORDERS")
        raise BinanceApiError(-4025, "Exceeded the maximum allowable open orders.")
    if not state.is_spot:
        check_reduce_only(state, account, request)
        margin = call.server.component(state, FuturesMargin)
        if margin is not None:
            margin.check_order(
                account, request.symbol, request.side, request.quantity, request.price, request.reduce_only
            )
    if not state.is_spot:
        # the user-data stream reports reduceOnly / GTX while the order is being placed
        state.pending_flags = FuturesOrderFlags(request.reduce_only, request.time_in_force_text)
    try:
        result = state.venue.place(
            account,
            request.symbol,
            request.side,
            request.order_type,
            request.quantity,
            request.price,
            request.time_in_force,
            request.client_order_id,
        )
    finally:
        state.pending_flags = None
    if not result.accepted:
        if result.reason is RejectReason.MIN_NOTIONAL and not state.is_spot:
            instrument = state.instrument(request.symbol)
            raise BinanceApiError(
                -4164,
                f"Order's notional must be no smaller than {instrument.min_notional.normalize():f} "
                "(unless you choose reduce only).",
            )
        raise reject_error(state, result)
    assert result.order is not None
    return result


def spot_order_response(call: Call, result: OrderResult, response_type: str) -> dict[str, Any]:
    state = call.state
    order = result.order
    assert order is not None
    transact = ms(order.created_ns)
    if response_type == "ACK":
        return spot_order_ack(order, transact)
    formats = state.formats(order.symbol)
    body = spot_order_result(order, formats, transact)
    if response_type == "FULL":
        body["fills"] = [
            spot_fill(execution, formats, state.asset_text(execution.fee_asset, execution.fee))
            for execution in result.executions
            if execution.order is order
        ]
    return body


def _spot_stops(call: Call) -> SpotStops:
    stops = call.server.component(call.state, SpotStops)
    assert stops is not None, "spot routes only"
    return stops


def _new_stop_order(call: Call, request: OrderRequest) -> dict[str, Any]:
    """A spot conditional order: acknowledged now, in the book when its stop price trades."""
    state = call.state
    instrument = state.instrument(request.symbol)
    reference = request.price or request.stop_price
    if request.quantity < instrument.min_quantity or (
        instrument.max_quantity is not None and request.quantity > instrument.max_quantity
    ):
        raise BinanceApiError(-1013, "Filter failure: LOT_SIZE")
    if instrument.notional(reference, request.quantity) < instrument.min_notional:
        raise BinanceApiError(-1013, "Filter failure: NOTIONAL")
    assert request.stop_type is not None
    order = _spot_stops(call).add(
        call.require_account(),
        request.symbol,
        request.side,
        request.stop_type,
        request.quantity,
        request.price,
        request.stop_price,
        request.time_in_force,
        request.client_order_id,
    )
    transact = ms(order.created_ns)
    if request.response_type == "ACK":
        return spot_order_ack(order, transact)
    body = spot_order_result(order, state.formats(order.symbol), transact)
    body["stopPrice"] = state.formats(order.symbol).price(request.stop_price)
    apply_stop_fields(state, order, body, query=False)
    if request.response_type == "FULL":
        body["fills"] = []
    return body


def futures_order_body(
    state: MarketState, order: SimOrder, *, as_new: bool = False, with_time: bool = False
) -> dict[str, Any]:
    flags = state.futures_flags.get(order.order_id, FuturesOrderFlags(False, _tif_text(order)))
    return futures_order(
        order,
        state.formats(order.symbol),
        reduce_only=flags.reduce_only,
        time_in_force=flags.time_in_force,
        as_new=as_new,
        with_time=with_time,
    )


def _tif_text(order: SimOrder) -> str:
    if order.order_type is OrderType.LIMIT_MAKER:
        return "GTX"
    return order.time_in_force.name


async def new_order(call: Call) -> Any:
    if call.state.is_spot:
        request = parse_spot_order(call)
        if request.stop_type is not None:
            return _new_stop_order(call, request)
        result = place_order(call, request)
        return spot_order_response(call, result, request.response_type)
    request = parse_futures_order(call)
    result = place_order(call, request)
    assert result.order is not None
    return futures_order_body(call.state, result.order, as_new=request.response_type == "ACK")


MAX_BATCH_ORDERS = 5  # POST /fapi/v1/batchOrders
_INVALID_BATCH = "Data sent for parameter 'batchOrders' is not valid."


async def batch_orders(call: Call) -> Any:
    """USD-M ``batchOrders``: up to 5 orders as a JSON list of string-valued objects; one answer
    each, in order: the order as a single new order answers it, or that order's own error."""
    raw = call.params.text("batchOrders")
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BinanceApiError(-1130, _INVALID_BATCH) from None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_ORDERS:
        raise BinanceApiError(-1130, _INVALID_BATCH)
    answers: list[Any] = []
    for item in items:
        if not isinstance(item, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in item.items()
        ):
            answers.append(BinanceApiError(-1130, _INVALID_BATCH).body())
            continue
        single = Call(Params(dict(item)), call.state, call.account, call.api_key, call.server, call.headers)
        try:
            answers.append(await new_order(single))
        except BinanceApiError as error:
            answers.append(error.body())
    return answers


async def order_test(call: Call) -> Any:
    """Validate like a new order and stop before the engine (``POST /api/v3/order/test``)."""
    request = parse_spot_order(call)
    state = call.state
    instrument = state.instrument(request.symbol)
    if request.order_type is not OrderType.MARKET and (
        instrument.notional(request.price, request.quantity) < instrument.min_notional
    ):
        raise BinanceApiError(-1013, "Filter failure: NOTIONAL")
    if request.quantity < instrument.min_quantity or (
        instrument.max_quantity is not None and request.quantity > instrument.max_quantity
    ):
        raise BinanceApiError(-1013, "Filter failure: LOT_SIZE")
    if call.params.boolean("computeCommissionRates"):
        fees = state.accounts.get(call.require_account()).fees
        return {
            "standardCommissionForOrder": {
                "maker": rate_text(fees.maker_ppm),
                "taker": rate_text(fees.taker_ppm),
            },
            "taxCommissionForOrder": {"maker": "0.00000000", "taker": "0.00000000"},
            "discount": {
                "enabledForAccount": False,
                "enabledForSymbol": False,
                "discountAsset": "BNB",
                "discount": "0.00000000",
            },
        }
    return {}


def _order_ids(params: Params, client_name: str) -> tuple[int | None, str | None]:
    order_id = params.optional_integer("orderId")
    client_order_id = params.get(client_name)
    if order_id is None and client_order_id is None:
        raise BinanceApiError(
            -1102, f"Param '{client_name}' or 'orderId' must be sent, but both were empty/null!"
        )
    return order_id, client_order_id


async def cancel_order(call: Call) -> Any:
    state = call.state
    params = call.params
    symbol = params.symbol()
    state.instrument(symbol)
    order_id, client_order_id = _order_ids(params, "origClientOrderId")
    account = call.require_account()
    cancel_id = params.client_order_id("newClientOrderId") or f"sim-cancel-{next(_cancel_ids)}"
    if state.is_spot:
        waiting = _spot_stops(call).find(account, order_id, None if order_id is not None else client_order_id)
        if waiting is not None and waiting.symbol == symbol:
            stopped = _spot_stops(call).cancel(waiting, cancel_id)
            body = spot_cancel(stopped, state.formats(symbol), cancel_id, ms(stopped.updated_ns))
            return apply_stop_fields(state, stopped, body, query=False)
    state.pending_cancel_id = cancel_id  # the user-data stream reports it as the cancel's "c"
    try:
        result = state.venue.cancel(account, symbol, order_id=order_id, client_order_id=client_order_id)
    finally:
        state.pending_cancel_id = None
    if not result.accepted:
        raise reject_error(state, result)
    order = result.order
    assert order is not None
    if not state.is_spot:
        return futures_order_body(state, order)
    body = spot_cancel(order, state.formats(symbol), cancel_id, ms(order.updated_ns))
    return apply_stop_fields(state, order, body, query=False)


async def cancel_open_orders(call: Call) -> Any:
    state = call.state
    symbol = call.params.symbol()
    state.instrument(symbol)
    account = call.require_account()
    stopped: list[SimOrder] = []
    if state.is_spot:
        stops = _spot_stops(call)
        stopped = [stops.cancel(order) for order in stops.of(account, symbol)]
    result = state.venue.cancel_all(account, symbol)
    if not state.is_spot:
        return {"code": 200, "msg": "The operation of cancel all open order is done."}
    if not result.orders and not stopped:
        raise BinanceApiError(-2011, "Unknown order sent.")
    formats = state.formats(symbol)
    return [
        apply_stop_fields(
            state,
            order,
            spot_cancel(order, formats, f"sim-cancel-{next(_cancel_ids)}", ms(order.updated_ns)),
            query=False,
        )
        for order in sorted([*result.orders, *stopped], key=lambda item: item.order_id)
    ]


async def query_order(call: Call) -> Any:
    state = call.state
    params = call.params
    symbol = params.symbol()
    state.instrument(symbol)
    order_id, client_order_id = _order_ids(params, "origClientOrderId")
    account = call.require_account()
    order = None
    if state.is_spot:
        order = _spot_stops(call).find(account, order_id, None if order_id is not None else client_order_id)
        order = order or _stopped(call, account, order_id, client_order_id)
    order = order or state.find_order(account, order_id, client_order_id)
    if order is None or order.symbol != symbol:
        raise BinanceApiError(-2013, "Order does not exist.")
    return _order_row(state, order)


def _stopped(call: Call, account: str, order_id: int | None, client_order_id: str | None) -> SimOrder | None:
    """A spot conditional order canceled before it triggered (never in the engine)."""
    for order in reversed(_spot_stops(call).canceled):
        if order.account == account and (
            order.order_id == order_id if order_id is not None else order.client_order_id == client_order_id
        ):
            return order
    return None


def _order_row(state: MarketState, order: SimOrder) -> dict[str, Any]:
    if state.is_spot:
        return apply_stop_fields(
            state, order, spot_order_query(order, state.formats(order.symbol)), query=True
        )
    return futures_order_body(state, order, with_time=True)


async def open_orders(call: Call) -> Any:
    state = call.state
    symbol = call.params.optional_symbol()
    if symbol is not None:
        state.instrument(symbol)
    account = call.require_account()
    waiting = _spot_stops(call).of(account, symbol) if state.is_spot else []
    orders = sorted([*state.engine.open_orders(account, symbol), *waiting], key=lambda order: order.order_id)
    return [_order_row(state, order) for order in orders]


async def all_orders(call: Call) -> Any:
    state = call.state
    params = call.params
    symbol = params.symbol()
    state.instrument(symbol)
    order_id = params.optional_integer("orderId")
    start = params.optional_integer("startTime")
    end = params.optional_integer("endTime")
    limit = params.limit(500, 1000)
    account = call.require_account()
    known = state.orders(account, symbol)
    if state.is_spot:  # conditional orders that never entered the book
        stops = _spot_stops(call)
        known = sorted(
            [
                *known,
                *stops.of(account, symbol),
                *(o for o in stops.canceled if o.account == account and o.symbol == symbol),
            ],
            key=lambda item: item.order_id,
        )
    orders = [
        order
        for order in known
        if (order_id is None or order.order_id >= order_id)
        and (start is None or ms(order.created_ns) >= start)
        and (end is None or ms(order.created_ns) <= end)
    ]
    orders = orders[:limit] if order_id is not None or start is not None else orders[-limit:]
    return [_order_row(state, order) for order in orders]


async def my_trades(call: Call) -> Any:
    state = call.state
    params = call.params
    symbol = params.symbol()
    formats = state.formats(symbol)
    order_id = params.optional_integer("orderId")
    from_id = params.optional_integer("fromId")
    start = params.optional_integer("startTime")
    end = params.optional_integer("endTime")
    limit = params.limit(500, 1000)
    executions = [
        execution
        for execution in state.executions(call.require_account(), symbol)
        if (order_id is None or execution.order.order_id == order_id)
        and (from_id is None or execution.trade_id >= from_id)
        and (start is None or ms(execution.time_ns) >= start)
        and (end is None or ms(execution.time_ns) <= end)
    ]
    executions = executions[:limit] if from_id is not None or start is not None else executions[-limit:]
    rows = []
    for execution in executions:
        order = execution.order
        fee = state.asset_text(execution.fee_asset, execution.fee)
        if state.is_spot:
            rows.append(
                {
                    "symbol": symbol,
                    "id": execution.trade_id,
                    "orderId": order.order_id,
                    "orderListId": -1,
                    "price": formats.price(execution.price),
                    "qty": formats.quantity(execution.quantity),
                    "quoteQty": formats.quote(execution.price * execution.quantity),
                    "commission": fee,
                    "commissionAsset": execution.fee_asset,
                    "time": ms(execution.time_ns),
                    "isBuyer": order.side is Side.BUY,
                    "isMaker": execution.is_maker,
                    "isBestMatch": True,
                }
            )
        else:
            rows.append(
                {
                    "buyer": order.side is Side.BUY,
                    "commission": fee,
                    "commissionAsset": execution.fee_asset,
                    "id": execution.trade_id,
                    "maker": execution.is_maker,
                    "orderId": order.order_id,
                    "price": formats.price(execution.price),
                    "qty": formats.quantity(execution.quantity),
                    "quoteQty": formats.quote(execution.price * execution.quantity),
                    "realizedPnl": formats.quote(state.realized(execution)),
                    "side": order.side.name,
                    "positionSide": "BOTH",
                    "symbol": symbol,
                    "time": ms(execution.time_ns),
                }
            )
    return rows
