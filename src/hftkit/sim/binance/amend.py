"""Changing working orders on the Binance-compatible simulator: USD-M modify, spot cancel-replace.

Market makers amend all day, so these follow the venue's documentation closely:

* USD-M ``PUT /fapi/v1/order`` / WS API ``order.modify`` (and ``PUT /fapi/v1/batchOrders``):
  LIMIT orders only; ``price`` and ``quantity`` both required; the modified order is
  "reordered in the match queue" (every accepted modify loses priority, even a pure size
  cut); a new price or size that fails a filter rejects the modify and leaves the order as it
  was; the order is canceled instead when it is partially filled and the new quantity is at
  or below the executed quantity, or when it is GTX and the new price would trade at once.
  ``-5027`` when nothing would change. The user-data stream reports ``x: AMENDMENT``.
* Spot ``POST /api/v3/order/cancelReplace`` / WS API ``order.cancelReplace``: filters of the
  new order are checked before anything happens (a filter failure is a plain error, nothing
  canceled); then the cancel, then (per ``cancelReplaceMode``) the new order. Partial
  success answers HTTP 409 ``-2021``; total failure 400 ``-2022``; both carry ``data`` with
  ``cancelResult`` / ``newOrderResult`` and each half's own response or error.
* Spot ``PUT /api/v3/order/amend/keepPriority`` / ``order.amend.keepPriority``: a quantity
  cut that keeps the order's place in the queue (``x: REPLACED`` on the user-data stream).
"""

from __future__ import annotations

from typing import Any

import orjson

from hftkit.core.types import OrderType, Side
from hftkit.sim.binance import orders as orders
from hftkit.sim.binance.params import BinanceApiError, Params, illegal, mandatory
from hftkit.sim.binance.rest import Call
from hftkit.sim.binance.state import FuturesOrderFlags
from hftkit.sim.binance.wire import ORDER_TYPES, SIDES, TIME_IN_FORCE, ms, pad, spot_status
from hftkit.sim.engine.matching import SimOrder

NO_CHANGE = (-5027, "No need to modify the order.")
MAX_MODIFIES = 10_000  # modifies per order (documented)
ORDER_DOES_NOT_EXIST = (-2013, "Order does not exist.")
CANCEL_REPLACE_MODES = ("STOP_ON_FAILURE", "ALLOW_FAILURE")
CANCEL_RESTRICTIONS = {"ONLY_NEW": ("NEW",), "ONLY_PARTIALLY_FILLED": ("PARTIALLY_FILLED",)}
PARTIALLY_FAILED = (-2021, "Order cancel-replace partially failed.")
FAILED = (-2022, "Order cancel-replace failed.")


# USD-M modify -------------------------------------------------------------------------------


def _order_reference(params: Params) -> tuple[int | None, str | None]:
    """``orderId`` or ``origClientOrderId``; with both, the order id wins (as documented)."""
    order_id = params.optional_integer("orderId")
    client_order_id = params.get("origClientOrderId") or None
    if order_id is None and client_order_id is None:
        raise BinanceApiError(
            -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
        )
    return order_id, (None if order_id is not None else client_order_id)


def _open_order(call: Call, symbol: str, order_id: int | None, client_order_id: str | None) -> SimOrder:
    order = call.state.find_order(call.require_account(), order_id, client_order_id)
    if order is None or order.symbol != symbol or not order.is_open:
        raise BinanceApiError(*ORDER_DOES_NOT_EXIST)
    return order


def _crosses(call: Call, order: SimOrder, price: int) -> bool:
    engine = call.state.engine
    best = engine.best_ask(order.symbol) if order.side is Side.BUY else engine.best_bid(order.symbol)
    if best is None:
        return False
    return price >= best[0] if order.side is Side.BUY else price <= best[0]


async def modify_order(call: Call) -> Any:
    """``PUT /fapi/v1/order`` and WS API ``order.modify``: new price and quantity, back of the queue."""
    state = call.state
    params = call.params
    symbol = params.symbol()
    instrument = state.instrument(symbol)
    formats = state.formats(symbol)
    side = params.choice("side", orders.SIDES, -1117, "Invalid side.")
    order_id, client_order_id = _order_reference(params)
    price_match = params.get("priceMatch")
    if price_match not in (None, "", "NONE"):
        # the simulator does not model priceMatch (the venue would price the order from the book)
        raise BinanceApiError(-1116, "Invalid orderType.")
    price = orders.futures_decimal(params, "price", instrument, formats, is_price=True)
    if price <= 0:
        raise BinanceApiError(-4001, "Price less than 0.")
    quantity = orders.futures_quantity(params, instrument, formats)
    order = _open_order(call, symbol, order_id, client_order_id)
    if order.side is not side:
        raise BinanceApiError(-1117, "Invalid side.")
    if order.order_type not in (OrderType.LIMIT, OrderType.LIMIT_MAKER):
        raise BinanceApiError(-5025, "Only limit order is supported.")
    if price == order.price and quantity == order.quantity:
        raise BinanceApiError(*NO_CHANGE)
    if state.amendment_counts.get(order.order_id, 0) >= MAX_MODIFIES:
        raise BinanceApiError(-5026, "Exceed maximum modify order limit.")
    account = call.require_account()
    price_before, quantity_before = order.price, order.quantity
    flags = state.futures_flags.get(order.order_id, FuturesOrderFlags(False, "GTC"))
    if not flags.reduce_only and instrument.notional(price, quantity) < instrument.min_notional:
        raise BinanceApiError(
            -4164,
            f"Order's notional must be no smaller than {instrument.min_notional.normalize():f} "
            "(unless you choose reduce only).",
        )
    if flags.reduce_only and quantity > order.filled:
        request = orders.OrderRequest(
            symbol,
            order.side,
            order.order_type,
            quantity - order.filled,
            price,
            order.time_in_force,
            None,
            "RESULT",
            reduce_only=True,
        )
        orders.check_reduce_only(state, account, request, excluding=order.order_id)
    modified = True
    if quantity > order.filled and order.order_type is OrderType.LIMIT_MAKER and _crosses(call, order, price):
        # documented: a GTX order whose new price would trade at once is canceled, not modified
        result = state.venue.cancel(account, symbol, order_id=order.order_id)
        modified = False
    else:
        result = state.venue.amend(
            account, symbol, price=price, quantity=quantity, order_id=order.order_id, keep_priority=False
        )
    if not result.accepted:
        raise orders.reject_error(state, result)
    assert result.order is not None
    if modified:
        state.record_amendment(account, result.order, price_before, quantity_before)
    return orders.futures_order_body(state, result.order)


async def order_amendments(call: Call) -> Any:
    """``GET /fapi/v1/orderAmendment``: an order's modifications, oldest first (limit 50, max 100)."""
    state = call.state
    params = call.params
    symbol = params.symbol()
    formats = state.formats(symbol)
    order_id, client_order_id = _order_reference(params)
    start = params.optional_integer("startTime")
    end = params.optional_integer("endTime")
    limit = params.limit(50, 100)
    account = call.require_account()
    rows = [
        item
        for item in state.amendments
        if item.account == account
        and item.symbol == symbol
        and (item.order_id == order_id if order_id is not None else item.client_order_id == client_order_id)
        and (start is None or ms(item.time_ns) >= start)
        and (end is None or ms(item.time_ns) <= end)
    ]
    return [
        {
            "amendmentId": item.amendment_id,
            "symbol": symbol,
            "pair": symbol,
            "orderId": item.order_id,
            "clientOrderId": item.client_order_id,
            "time": ms(item.time_ns),
            "amendment": {
                "price": {
                    "before": formats.price(item.price_before),
                    "after": formats.price(item.price_after),
                },
                "origQty": {
                    "before": formats.quantity(item.quantity_before),
                    "after": formats.quantity(item.quantity_after),
                },
                "count": item.count,
            },
        }
        for item in rows[:limit]
    ]


async def spot_order_amendments(call: Call) -> Any:
    """``GET /api/v3/order/amendments`` / WS ``order.amendments``: keepPriority changes of an order."""
    state = call.state
    params = call.params
    symbol = params.symbol()
    formats = state.formats(symbol)
    order_id = params.integer("orderId")
    from_id = params.optional_integer("fromExecutionId")
    limit = params.limit(500, 1000)
    account = call.require_account()
    rows = [
        item
        for item in state.amendments
        if item.account == account
        and item.symbol == symbol
        and item.order_id == order_id
        and (from_id is None or item.amendment_id >= from_id)
    ]
    return [
        {
            "symbol": symbol,
            "orderId": item.order_id,
            "executionId": item.amendment_id,
            "origClientOrderId": item.client_order_id,
            "newClientOrderId": item.new_client_order_id,
            "origQty": formats.quantity(item.quantity_before),
            "newQty": formats.quantity(item.quantity_after),
            "time": ms(item.time_ns),
        }
        for item in rows[:limit]
    ]


MAX_BATCH_MODIFY = 5
_INVALID_BATCH = "Data sent for parameter 'batchOrders' is not valid."


async def batch_modify_orders(call: Call) -> Any:
    """``PUT /fapi/v1/batchOrders``: up to 5 modifies, one answer (order or error) each, in order."""
    raw = call.params.text("batchOrders")
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BinanceApiError(-1130, _INVALID_BATCH) from None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_MODIFY:
        raise BinanceApiError(-1130, _INVALID_BATCH)
    answers: list[Any] = []
    for item in items:
        if not isinstance(item, dict) or not all(isinstance(key, str) for key in item):
            answers.append(BinanceApiError(-1130, _INVALID_BATCH).body())
            continue
        values = {key: str(value) for key, value in item.items() if value is not None}
        single = Call(Params(values), call.state, call.account, call.api_key, call.server, call.headers)
        try:
            answers.append(await modify_order(single))
        except BinanceApiError as error:
            answers.append(error.body())
    return answers


# spot cancel-replace --------------------------------------------------------------------------


def _cancel_params(params: Params) -> Params:
    """The cancel half of a cancelReplace, as the cancel handler reads it."""
    values = {"symbol": params.text("symbol")}
    for source, target in (
        ("cancelOrderId", "orderId"),
        ("cancelOrigClientOrderId", "origClientOrderId"),
        ("cancelNewClientOrderId", "newClientOrderId"),
    ):
        value = params.get(source)
        if value:
            values[target] = value
    return Params(values)


def _check_new_order_filters(call: Call, request: orders.OrderRequest) -> None:
    """Filters are evaluated before the cancel: a failing new order cancels nothing."""
    if request.order_type is OrderType.MARKET:
        return
    instrument = call.state.instrument(request.symbol)
    if instrument.notional(request.price, request.quantity) < instrument.min_notional:
        raise BinanceApiError(-1013, "Filter failure: NOTIONAL")
    maximum = instrument.max_quantity
    if request.quantity < instrument.min_quantity or (maximum is not None and request.quantity > maximum):
        raise BinanceApiError(-1013, "Filter failure: LOT_SIZE")


async def _cancel_half(call: Call, restrictions: tuple[str, ...] | None) -> Any:
    cancel_call = Call(
        _cancel_params(call.params), call.state, call.account, call.api_key, call.server, call.headers
    )
    if restrictions is not None:
        params = cancel_call.params
        order_id = params.optional_integer("orderId")
        client_order_id = None if order_id is not None else params.get("origClientOrderId")
        order = call.state.find_order(call.require_account(), order_id, client_order_id)
        if order is not None and order.is_open and order.status.name not in restrictions:
            raise BinanceApiError(-2011, "Order was not canceled due to cancel restrictions.")
    return await orders.cancel_order(cancel_call)


async def cancel_replace(call: Call) -> Any:
    """``POST /api/v3/order/cancelReplace`` and WS API ``order.cancelReplace``."""
    params = call.params
    mode = params.get("cancelReplaceMode")
    if not mode:
        raise mandatory("cancelReplaceMode")
    if mode not in CANCEL_REPLACE_MODES:
        raise illegal("cancelReplaceMode", "STOP_ON_FAILURE, ALLOW_FAILURE")
    if not params.get("cancelOrderId") and not params.get("cancelOrigClientOrderId"):
        raise BinanceApiError(
            -1102,
            "Param 'cancelOrigClientOrderId' or 'cancelOrderId' must be sent, but both were empty/null!",
        )
    restriction_text = params.get("cancelRestrictions")
    restrictions = None
    if restriction_text:
        restrictions = CANCEL_RESTRICTIONS.get(restriction_text)
        if restrictions is None:
            raise BinanceApiError(-1145, "Invalid cancelRestrictions")
    params.client_order_id("cancelNewClientOrderId")  # checked before anything happens
    request = orders.parse_spot_order(call)
    _check_new_order_filters(call, request)
    cancel_response: Any
    new_response: Any = None
    try:
        cancel_response = await _cancel_half(call, restrictions)
        canceled = True
    except BinanceApiError as error:
        cancel_response = error.body()
        canceled = False
    if not canceled and mode == "STOP_ON_FAILURE":
        raise BinanceApiError(
            *FAILED,
            data={
                "cancelResult": "FAILURE",
                "newOrderResult": "NOT_ATTEMPTED",
                "cancelResponse": cancel_response,
                "newOrderResponse": None,
            },
        )
    try:
        result = orders.place_order(call, request)
        new_response = orders.spot_order_response(call, result, request.response_type)
        placed = True
    except BinanceApiError as error:
        new_response = error.body()
        placed = False
    data = {
        "cancelResult": "SUCCESS" if canceled else "FAILURE",
        "newOrderResult": "SUCCESS" if placed else "FAILURE",
        "cancelResponse": cancel_response,
        "newOrderResponse": new_response,
    }
    if canceled and placed:
        return data
    if canceled or placed:
        raise BinanceApiError(*PARTIALLY_FAILED, status=409, data=data)
    raise BinanceApiError(*FAILED, data=data)


# spot amend, keeping priority -------------------------------------------------------------------


async def amend_keep_priority(call: Call) -> Any:
    """``PUT /api/v3/order/amend/keepPriority``: reduce an order's quantity in place.

    The new quantity must be below the order's current one (``-2038`` otherwise); at or
    below the executed quantity the order closes, as the venue's amend-to-filled does.
    """
    state = call.state
    params = call.params
    symbol = params.symbol()
    instrument = state.instrument(symbol)
    formats = state.formats(symbol)
    order_id, client_order_id = _order_reference(params)
    new_client_order_id = params.client_order_id("newClientOrderId")
    quantity = params.decimal_steps("newQty", instrument.lots, formats.quantity_scale, "LOT_SIZE")
    if quantity <= 0:
        raise BinanceApiError(-1013, "Filter failure: LOT_SIZE")
    order = _open_order(call, symbol, order_id, client_order_id)
    if quantity >= order.quantity:
        raise BinanceApiError(-2038, "Order amend (quantity increase) is not supported.")
    account = call.require_account()
    original_client_id = order.client_order_id
    quantity_before = order.quantity
    result = state.venue.amend(
        account, symbol, price=order.price, quantity=quantity, order_id=order.order_id, keep_priority=True
    )
    if not result.accepted:
        raise orders.reject_error(state, result)
    amended = result.order
    assert amended is not None
    amendment = state.record_amendment(account, amended, amended.price, quantity_before, new_client_order_id)
    body: dict[str, Any] = {
        "symbol": symbol,
        "orderId": amended.order_id,
        "orderListId": -1,
        "origClientOrderId": original_client_id,
        "clientOrderId": new_client_order_id or amended.client_order_id,
    }
    body.update(
        {
            "price": formats.price(amended.price),
            "qty": formats.quantity(amended.quantity),
            "executedQty": formats.quantity(amended.filled),
            "preventedQty": formats.zero_quantity(),
            "quoteOrderQty": pad("0", formats.notional_scale),
            "cumulativeQuoteQty": formats.quote(amended.quote_filled),
            "status": spot_status(amended.status, amended.close_reason),
            "timeInForce": TIME_IN_FORCE[amended.time_in_force],
            "type": ORDER_TYPES[amended.order_type],
            "side": SIDES[amended.side],
            "workingTime": ms(amended.created_ns),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
    )
    return {
        "transactTime": ms(amended.updated_ns),
        "executionId": amendment.amendment_id,
        "amendedOrder": body,
    }


__all__ = [
    "amend_keep_priority",
    "batch_modify_orders",
    "cancel_replace",
    "modify_order",
    "order_amendments",
    "spot_order_amendments",
]
