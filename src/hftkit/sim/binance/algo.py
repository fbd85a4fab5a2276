"""USD-M conditional (algo) orders of the Binance-compatible simulator.

Binance takes STOP, STOP_MARKET, TAKE_PROFIT, TAKE_PROFIT_MARKET and TRAILING_STOP_MARKET on
the algo-order endpoints (``POST /fapi/v1/algoOrder``, WS API ``algoOrder.place``; the plain
order endpoint answers ``-4120``). An algo order waits outside the book with its own
``algoId``; when the last trade price (``workingType=CONTRACT_PRICE``, the default) or the mark
price (``MARK_PRICE``) reaches ``triggerPrice`` it places a LIMIT (STOP / TAKE_PROFIT) or MARKET
order with a new ``orderId``, reported as ``actualOrderId`` and on the user-data stream as
``ALGO_UPDATE`` events (NEW, CANCELED, TRIGGERED with ``ai``, FINISHED, EXPIRED, REJECTED).

Trigger rules (documented): STOP / STOP_MARKET trigger a BUY at price >= trigger and a SELL at
price <= trigger; TAKE_PROFIT / TAKE_PROFIT_MARKET the other way round; an order that would
trigger at once is refused with ``-2021 Order would immediately trigger.``. A trailing stop
activates at ``activatePrice`` (default: the latest price), then follows the lowest (BUY) or
highest (SELL) price and triggers ``callbackRate`` percent away from it.

Not modelled: ``priceProtect`` (accepted), ``priceMatch``, GTD, hedge mode, iceberg, the
triggered order's own ``ORDER_TRADE_UPDATE`` showing the algo type (it shows LIMIT / MARKET).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from hftkit.core.types import OrderType, Side, TimeInForce
from hftkit.sim.binance import orders as orders
from hftkit.sim.binance.params import BinanceApiError, Params, illegal, mandatory
from hftkit.sim.binance.rest import Call, ServerView, mark_price
from hftkit.sim.binance.state import MarketState
from hftkit.sim.binance.wire import SIDES, ms
from hftkit.sim.engine.deferred import DueChecks
from hftkit.sim.engine.matching import BookUpdate, TradePrint
from hftkit.sim.engine.venue import OrderEvent, SimEvent

ALGO_ORDER_TYPES = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
_WITH_PRICE = ("STOP", "TAKE_PROFIT")
_STOPS = ("STOP", "STOP_MARKET")
WORKING_TYPES = ("CONTRACT_PRICE", "MARK_PRICE")
ALGO_TIME_IN_FORCE = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK, "GTX": None}
IMMEDIATE = (-2021, "Order would immediately trigger.")
HISTORY = 2000  # closed algo orders kept for queries


@dataclass
class AlgoOrder:
    """One conditional order, prices in ticks, quantity in lots (0 with closePosition)."""

    algo_id: int
    client_algo_id: str
    account: str
    symbol: str
    side: Side
    order_type: str
    quantity: int
    price: int
    trigger_price: int
    working_type: str
    time_in_force: str
    reduce_only: bool
    close_position: bool
    price_protect: bool
    create_ns: int
    activate_price: int = 0
    callback_rate: Decimal = Decimal(0)  # percent
    activated: bool = False
    extreme: int = 0  # lowest (BUY) / highest (SELL) price since activation
    status: str = "NEW"
    update_ns: int = 0
    trigger_ns: int = 0
    actual_order_id: int | None = None
    fail_reason: str = ""

    @property
    def is_open(self) -> bool:
        return self.status == "NEW"


class AlgoOrders:
    """The open and recent algo orders of one USD-M market; watches prices and triggers them.

    ``publish(account, event)`` sends an ``ALGO_UPDATE`` to the account's user-data sinks.
    """

    def __init__(self, state: MarketState, server: ServerView, publish: Any) -> None:
        self.state = state
        self.server = server
        self.publish = publish
        self.open: dict[int, AlgoOrder] = {}
        self.closed: deque[AlgoOrder] = deque(maxlen=HISTORY)
        self.by_actual: dict[int, AlgoOrder] = {}
        self._ids = itertools.count(1)
        self._due = DueChecks(self._check)
        self.triggered = 0
        state.venue.add_listener(self.on_event)

    # queries --------------------------------------------------------------------------------
    def next_id(self) -> int:
        return next(self._ids)

    def find(self, account: str, algo_id: int | None, client_algo_id: str | None) -> AlgoOrder | None:
        for order in (*self.open.values(), *reversed(self.closed)):
            if order.account != account:
                continue
            if algo_id is not None and order.algo_id != algo_id:
                continue
            if algo_id is None and order.client_algo_id != client_algo_id:
                continue
            return order
        return None

    def of(self, account: str, symbol: str | None, open_only: bool) -> list[AlgoOrder]:
        rows = list(self.open.values()) if open_only else [*self.closed, *self.open.values()]
        found = [
            order for order in rows if order.account == account and (symbol is None or order.symbol == symbol)
        ]
        return sorted(found, key=lambda order: order.algo_id)

    # prices -----------------------------------------------------------------------------------
    def reference(self, symbol: str, working_type: str) -> int:
        """The price an algo order watches: last trade (CONTRACT_PRICE) or mark (MARK_PRICE)."""
        if working_type == "MARK_PRICE":
            return mark_price(self.state, symbol)
        last = self.state.venue.ticker(symbol, self.state.clock.time_ns()).last_price
        return last or mark_price(self.state, symbol)

    # lifecycle ----------------------------------------------------------------------------------
    def add(self, order: AlgoOrder) -> None:
        self.open[order.algo_id] = order
        self._update(order)

    def cancel(self, order: AlgoOrder) -> None:
        self._close(order, "CANCELED")

    def _close(self, order: AlgoOrder, status: str) -> None:
        self.open.pop(order.algo_id, None)
        order.status = status
        order.update_ns = self.state.clock.time_ns()
        self.closed.append(order)
        self._update(order)

    def _update(self, order: AlgoOrder) -> None:
        self.publish(order.account, self.event(order))

    def on_event(self, event: SimEvent) -> None:
        if isinstance(event, TradePrint | BookUpdate):
            if self.open and any(order.symbol == event.symbol for order in self.open.values()):
                self._due.add(event.symbol)  # acted on after the venue's batch
        elif isinstance(event, OrderEvent) and not event.order.is_open:
            algo = self.by_actual.pop(event.order.order_id, None)
            if algo is not None and algo.status == "TRIGGERED":
                algo.status = "FINISHED"
                algo.update_ns = event.time_ns
                self._update(algo)

    def _check(self, symbols: set[str]) -> None:
        """Trigger every open algo order of ``symbols`` whose condition holds now."""
        for order in [order for order in self.open.values() if order.symbol in symbols]:
            if order.is_open and self._condition(order, self.reference(order.symbol, order.working_type)):
                self._trigger(order)

    def _condition(self, order: AlgoOrder, price: int) -> bool:
        if price <= 0:
            return False
        buy = order.side is Side.BUY
        if order.order_type == "TRAILING_STOP_MARKET":
            if not order.activated:
                if (buy and price <= order.activate_price) or (not buy and price >= order.activate_price):
                    order.activated = True
                    order.extreme = price
                return False
            order.extreme = min(order.extreme, price) if buy else max(order.extreme, price)
            rate = order.callback_rate / 100
            if buy:
                return Decimal(price) >= Decimal(order.extreme) * (1 + rate)
            return Decimal(price) <= Decimal(order.extreme) * (1 - rate)
        if order.order_type in _STOPS:
            return price >= order.trigger_price if buy else price <= order.trigger_price
        return price <= order.trigger_price if buy else price >= order.trigger_price

    def _trigger(self, algo: AlgoOrder) -> None:
        state = self.state
        self.open.pop(algo.algo_id, None)
        self.closed.append(algo)  # no longer waiting: queries find it among the recent ones
        algo.trigger_ns = algo.update_ns = state.clock.time_ns()
        self.triggered += 1
        quantity = algo.quantity
        if algo.close_position:
            position = state.accounts.get(algo.account).positions.get(algo.symbol)
            held = position.quantity if position is not None else 0
            quantity = -held if algo.side is Side.BUY else held
            if quantity <= 0:
                algo.fail_reason = "No position to close."
                self._finish(algo, "EXPIRED")
                return
        with_price = algo.order_type in _WITH_PRICE
        tif = ALGO_TIME_IN_FORCE.get(algo.time_in_force) if with_price else TimeInForce.GTC
        request = orders.OrderRequest(
            algo.symbol,
            algo.side,
            (OrderType.LIMIT_MAKER if tif is None else OrderType.LIMIT) if with_price else OrderType.MARKET,
            quantity,
            algo.price if with_price else 0,
            tif or TimeInForce.GTC,
            None,
            "RESULT",
            reduce_only=algo.reduce_only or algo.close_position,
            time_in_force_text=algo.time_in_force if with_price else "GTC",
        )
        call = Call(Params({}), state, algo.account, None, self.server)
        try:
            result = orders.place_order(call, request)
        except BinanceApiError as error:
            algo.fail_reason = error.message
            self._finish(algo, "REJECTED")
            return
        assert result.order is not None
        algo.actual_order_id = result.order.order_id
        algo.status = "TRIGGERED"
        if result.order.is_open:
            self.by_actual[result.order.order_id] = algo
            self._update(algo)
        else:
            self._update(algo)
            self._finish(algo, "FINISHED")

    def _finish(self, algo: AlgoOrder, status: str) -> None:
        algo.status = status
        algo.update_ns = self.state.clock.time_ns()
        self._update(algo)

    # wire ---------------------------------------------------------------------------------------
    def body(self, order: AlgoOrder, *, query: bool = False) -> dict[str, Any]:
        """The REST / WS API algo order object."""
        formats = self.state.formats(order.symbol)
        zero_price = formats.zero_price()
        body: dict[str, Any] = {
            "algoId": order.algo_id,
            "clientAlgoId": order.client_algo_id,
            "algoType": "CONDITIONAL",
            "orderType": order.order_type,
            "symbol": order.symbol,
            "side": SIDES[order.side],
            "positionSide": "BOTH",
            "timeInForce": order.time_in_force,
            "quantity": formats.quantity(order.quantity),
            "algoStatus": order.status,
            "triggerPrice": formats.price(order.trigger_price) if order.trigger_price else zero_price,
            "price": formats.price(order.price) if order.price else zero_price,
            "icebergQuantity": None,
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": order.working_type,
            "priceMatch": "NONE",
            "closePosition": order.close_position,
            "priceProtect": order.price_protect,
            "reduceOnly": order.reduce_only,
            "activatePrice": formats.price(order.activate_price) if order.activate_price else "",
            "callbackRate": f"{order.callback_rate.normalize():f}" if order.callback_rate else "",
            "createTime": ms(order.create_ns),
            "updateTime": ms(order.update_ns or order.create_ns),
            "triggerTime": ms(order.trigger_ns),
            "goodTillDate": 0,
        }
        if query:
            actual = self._actual(order)
            body.update(
                {
                    "actualOrderId": str(order.actual_order_id) if order.actual_order_id else "",
                    "actualPrice": actual[0],
                    "actualType": actual[2],
                    "actualQty": actual[1],
                }
            )
        return body

    def _actual(self, algo: AlgoOrder) -> tuple[str, str, str]:
        """(average price, executed quantity, type) of the order an algo order placed."""
        if algo.actual_order_id is None:
            return "", "", ""
        order = self.state.find_order(algo.account, algo.actual_order_id, None)
        if order is None:
            return "", "", ""
        formats = self.state.formats(algo.symbol)
        kind = "MARKET" if order.order_type is OrderType.MARKET else "LIMIT"
        return formats.average(order.quote_filled, order.filled), formats.quantity(order.filled), kind

    def event(self, order: AlgoOrder) -> dict[str, Any]:
        """The user-data ``ALGO_UPDATE`` of an algo order's current state."""
        formats = self.state.formats(order.symbol)
        now = ms(self.state.clock.time_ns())
        average, executed, kind = self._actual(order)
        return {
            "e": "ALGO_UPDATE",
            "T": ms(order.update_ns or order.create_ns),
            "E": now,
            "o": {
                "caid": order.client_algo_id,
                "aid": order.algo_id,
                "at": "CONDITIONAL",
                "o": order.order_type,
                "s": order.symbol,
                "S": SIDES[order.side],
                "ps": "BOTH",
                "f": order.time_in_force,
                "q": formats.quantity(order.quantity),
                "X": order.status,
                "ai": str(order.actual_order_id) if order.actual_order_id else "",
                "ap": average,
                "aq": executed,
                "act": kind,
                "tp": formats.price(order.trigger_price) if order.trigger_price else formats.zero_price(),
                "p": formats.price(order.price) if order.price else formats.zero_price(),
                "V": "EXPIRE_MAKER",
                "wt": order.working_type,
                "pm": "NONE",
                "cp": order.close_position,
                "pP": order.price_protect,
                "R": order.reduce_only,
                "tt": ms(order.trigger_ns),
                "gtd": 0,
                "rm": order.fail_reason,
            },
        }


# handlers -------------------------------------------------------------------------------------------


def _algo_orders(call: Call) -> AlgoOrders:
    book = call.server.component(call.state, AlgoOrders)
    assert book is not None, "every market has its algo orders"
    return book


def _price(params: Params, name: str, call: Call, symbol: str) -> int:
    state = call.state
    value = orders.futures_decimal(
        params, name, state.instrument(symbol), state.formats(symbol), is_price=True
    )
    if value <= 0:
        raise BinanceApiError(-4001, "Price less than 0.")
    return value


async def new_algo_order(call: Call) -> Any:
    """``POST /fapi/v1/algoOrder`` and WS API ``algoOrder.place``."""
    params = call.params
    state = call.state
    algo_type = params.get("algoType")
    if not algo_type:
        raise mandatory("algoType")
    if algo_type != "CONDITIONAL":
        raise illegal("algoType", "CONDITIONAL")
    symbol = params.symbol()
    instrument = state.instrument(symbol)
    side = params.choice("side", orders.SIDES, -1117, "Invalid side.")
    assert isinstance(side, Side)
    order_type = params.text("type")
    if order_type not in ALGO_ORDER_TYPES:
        raise BinanceApiError(-1116, "Invalid orderType.")
    position_side = params.get("positionSide") or "BOTH"
    if position_side != "BOTH":
        raise BinanceApiError(-4061, "Order's position side does not match user's setting.")
    working_type = params.get("workingType") or "CONTRACT_PRICE"
    if working_type not in WORKING_TYPES:
        raise illegal("workingType", "CONTRACT_PRICE, MARK_PRICE")
    close_position = params.boolean("closePosition")
    reduce_only = params.boolean("reduceOnly")
    if close_position:
        if order_type not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            raise BinanceApiError(
                -4136, "Target strategy invalid for orderType " + order_type + ",closePosition true"
            )
        if "quantity" in params:
            raise BinanceApiError(-1106, "Parameter 'quantity' sent when not required.")
        if "reduceOnly" in params:
            raise BinanceApiError(-1106, "Parameter 'reduceOnly' sent when not required.")
        quantity = 0
    else:
        quantity = orders.futures_quantity(params, instrument, state.formats(symbol))
    price = 0
    time_in_force = "GTC"
    if order_type in _WITH_PRICE:
        price = _price(params, "price", call, symbol)
        time_in_force = params.get("timeInForce") or "GTC"
        if time_in_force not in ALGO_TIME_IN_FORCE:
            raise BinanceApiError(-1115, "Invalid timeInForce.")
    else:
        params.forbid("price")
    book = _algo_orders(call)
    client_algo_id = params.client_order_id("clientAlgoId") or f"sim-algo-{book.next_id()}"
    account = call.require_account()
    if any(order.client_algo_id == client_algo_id for order in book.of(account, None, open_only=True)):
        raise BinanceApiError(-4116, "ClientOrderId is duplicated.")
    if len(book.of(account, symbol, open_only=True)) >= 10:  # MAX_NUM_ALGO_ORDERS
        raise BinanceApiError(-4045, "Reach max stop order limit.")
    now = state.clock.time_ns()
    current = book.reference(symbol, working_type)
    order = AlgoOrder(
        algo_id=book.next_id(),
        client_algo_id=client_algo_id,
        account=account,
        symbol=symbol,
        side=side,
        order_type=order_type,
        quantity=quantity,
        price=price,
        trigger_price=0,
        working_type=working_type,
        time_in_force=time_in_force,
        reduce_only=reduce_only,
        close_position=close_position,
        price_protect=params.boolean("priceProtect"),
        create_ns=now,
    )
    if order_type == "TRAILING_STOP_MARKET":
        try:
            rate = Decimal(params.text("callbackRate"))
        except InvalidOperation:
            raise illegal("callbackRate", "0.1 - 10") from None
        if not Decimal("0.1") <= rate <= Decimal(10):
            raise BinanceApiError(-2007, "Invalid callBackRate.")
        order.callback_rate = rate
        activate = _price(params, "activatePrice", call, symbol) if "activatePrice" in params else current
        if "activatePrice" in params and ((side is Side.BUY) == (activate >= current)):
            raise BinanceApiError(*IMMEDIATE)
        order.activate_price = activate
        if activate == current:
            order.activated, order.extreme = True, current
    else:
        order.trigger_price = _price(params, "triggerPrice", call, symbol)
        if book._condition(order, current):
            raise BinanceApiError(*IMMEDIATE)
    book.add(order)
    return book.body(order)


def _reference(params: Params) -> tuple[int | None, str | None]:
    algo_id = params.optional_integer("algoId")
    client_algo_id = params.get("clientAlgoId") or None
    if algo_id is None and client_algo_id is None:
        raise BinanceApiError(
            -1102, "Param 'clientAlgoId' or 'algoId' must be sent, but both were empty/null!"
        )
    return algo_id, (None if algo_id is not None else client_algo_id)


async def cancel_algo_order(call: Call) -> Any:
    """``DELETE /fapi/v1/algoOrder`` and WS API ``algoOrder.cancel``."""
    book = _algo_orders(call)
    algo_id, client_algo_id = _reference(call.params)
    order = book.find(call.require_account(), algo_id, client_algo_id)
    if order is None or not order.is_open:
        raise BinanceApiError(-2011, "Unknown order sent.")
    book.cancel(order)
    return {"algoId": order.algo_id, "clientAlgoId": order.client_algo_id, "code": "200", "msg": "success"}


async def cancel_all_algo_orders(call: Call) -> Any:
    """``DELETE /fapi/v1/algoOpenOrders``: every open algo order of the symbol."""
    book = _algo_orders(call)
    symbol = call.params.symbol()
    call.state.instrument(symbol)
    for order in book.of(call.require_account(), symbol, open_only=True):
        book.cancel(order)
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


async def query_algo_order(call: Call) -> Any:
    """``GET /fapi/v1/algoOrder``."""
    book = _algo_orders(call)
    algo_id, client_algo_id = _reference(call.params)
    order = book.find(call.require_account(), algo_id, client_algo_id)
    if order is None:
        raise BinanceApiError(-2013, "Order does not exist.")
    return book.body(order, query=True)


async def open_algo_orders(call: Call) -> Any:
    """``GET /fapi/v1/openAlgoOrders`` (one symbol or all)."""
    book = _algo_orders(call)
    symbol = call.params.optional_symbol()
    if symbol is not None:
        call.state.instrument(symbol)
    return [book.body(order, query=True) for order in book.of(call.require_account(), symbol, open_only=True)]


async def all_algo_orders(call: Call) -> Any:
    """``GET /fapi/v1/allAlgoOrders``: open and recent algo orders of a symbol."""
    book = _algo_orders(call)
    params = call.params
    symbol = params.symbol()
    call.state.instrument(symbol)
    limit = params.limit(500, 1000)
    rows = book.of(call.require_account(), symbol, open_only=False)
    return [book.body(order, query=True) for order in rows[-limit:]]


__all__ = [
    "AlgoOrder",
    "AlgoOrders",
    "all_algo_orders",
    "cancel_algo_order",
    "cancel_all_algo_orders",
    "new_algo_order",
    "open_algo_orders",
    "query_algo_order",
]
