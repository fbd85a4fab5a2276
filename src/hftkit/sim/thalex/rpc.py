"""The Thalex JSON-RPC methods of the simulator: dispatch, login and session, market data, orders.

``ThalexRpc.call`` runs one request's method for a session and returns its result or raises
``RpcError`` (the venue's error object); the transport around it (framing, faults, throttle,
answer queue) is ``server``'s. Orders go to the shared ``SimVenue``; their updates reach the
subscribers through ``channels``; ``private/mass_quote`` and protection are ``quotes``', which
place through this class's order desk (``quotes.OrderDesk``).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from hftkit.core.types import Instrument, OrderType, Side, TimeInForce
from hftkit.sim.engine.errors import RejectReason, thalex_error
from hftkit.sim.engine.matching import OrderResult, SimOrder
from hftkit.sim.engine.venue import SimVenue
from hftkit.sim.thalex import tokens as tokens
from hftkit.sim.thalex import wire as wire
from hftkit.sim.thalex.accounts import ThalexAccountViews
from hftkit.sim.thalex.channels import Channels
from hftkit.sim.thalex.market import ThalexMarketViews
from hftkit.sim.thalex.orders import OrderInfo, immediately_cancelled_payload
from hftkit.sim.thalex.quotes import MassQuotes
from hftkit.sim.thalex.session import Session, ThalexApiKey
from hftkit.sim.thalex.tokens import LoginTokenError
from hftkit.sim.thalex.wire import RpcError
from hftkit.venues.thalex.errors import ThalexErrorCode

logger = logging.getLogger(__name__)

_REJECTED_ID_BASE = 0xF000_0000_0000_0000  # ids of orders refused as post-only (never in the engine)
ORDER_METHODS = frozenset(
    {
        "private/insert",
        "private/buy",
        "private/sell",
        "private/amend",
        "private/cancel",
        "private/mass_quote",
    }
)

Handler = Callable[[Session, wire.Params], Any]


class ThalexRpc:
    """The methods of one simulated Thalex venue, for all of its sessions.

    ``keys`` are the API keys that may log in; ``login_max_age_s`` bounds a token's ``iat``
    against ``wall_time``; ``counters`` is the server's (logins, failures, cancels, trips).
    """

    def __init__(
        self,
        venue: SimVenue,
        channels: Channels,
        market: ThalexMarketViews,
        account_views: ThalexAccountViews,
        *,
        counters: dict[str, int],
        login_max_age_s: float = 30.0,
        wall_time: Callable[[], float] = time.time,
        create_time: float,
    ) -> None:
        self.venue = venue
        self.engine = venue.engine
        self.accounts = venue.accounts
        self.channels = channels
        self.orders = channels.orders
        self.market = market
        self.account_views = account_views
        self.counters = counters
        self.login_max_age_s = login_max_age_s
        self._wall_time = wall_time
        self._create_time = create_time
        self.keys: dict[str, ThalexApiKey] = {}
        self._rejected_ids = itertools.count(_REJECTED_ID_BASE)
        self.quotes = MassQuotes(self, channels, counters)
        quotes = self.quotes
        self._methods: dict[str, tuple[Handler, bool]] = {
            "public/login": (self._login, False),
            "public/instruments": (self._instruments, False),
            "public/all_instruments": (self._instruments, False),
            "public/instrument": (self._instrument, False),
            "public/ticker": (self._ticker, False),
            "public/book": (self._book, False),
            "public/index": (self._index, False),
            "public/system_info": (self._system_info, False),
            "public/subscribe": (self._subscribe_public, False),
            "unsubscribe": (self._unsubscribe, False),
            "private/subscribe": (self._subscribe_private, True),
            "private/set_cancel_on_disconnect": (self._set_cancel_on_disconnect, True),
            "private/insert": (self._insert, True),
            "private/buy": (self._buy, True),
            "private/sell": (self._sell, True),
            "private/amend": (self._amend, True),
            "private/cancel": (self._cancel, True),
            "private/cancel_all": (self._cancel_all, True),
            "private/cancel_session": (self._cancel_session, True),
            "private/set_mm_protection": (quotes.set_mm_protection, True),
            "private/mass_quote": (quotes.mass_quote, True),
            "private/cancel_mass_quote": (quotes.cancel_mass_quote, True),
            "private/open_orders": (self._open_orders, True),
            "private/portfolio": (self._portfolio, True),
            "private/account_summary": (self._account_summary, True),
            "private/trade_history": (self._trade_history, True),
            "private/order_history": (self._order_history, True),
        }

    @property
    def instruments(self) -> dict[str, Instrument]:
        return self.venue.instruments

    def add_key(self, key: ThalexApiKey) -> None:
        if not key.accounts:
            raise ValueError(f"API key {key.key_id} needs at least one account")
        self.keys[key.key_id] = key

    async def call(self, session: Session, method: Any, params: Any) -> Any:
        """Run one request's method; its result, or ``RpcError`` (an unexpected failure: code 20).

        The venue call's order updates are closed as one batch either way, and protection
        groups tripped by it pull their quotes before the answer goes out.
        """
        try:
            if not isinstance(method, str):
                raise RpcError(ThalexErrorCode.INVALID_REQUEST, "method must be a string")
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise RpcError(ThalexErrorCode.INVALID_REQUEST, "params must be an object")
            entry = self._methods.get(method)
            if entry is None:
                raise RpcError(ThalexErrorCode.UNKNOWN_METHOD, f"unknown method {method}")
            handler, private = entry
            if private and session.account is None:
                raise RpcError(ThalexErrorCode.NOT_LOGGED_IN, "not logged in")
            result = handler(session, wire.Params(params))
            if isinstance(result, Awaitable):
                result = await result
        except RpcError:
            self.end_batch()
            raise
        except Exception:
            self.end_batch()
            logger.exception("thalex sim: %s failed", method)
            raise RpcError(ThalexErrorCode.TEMPORARY_FAILURE, "internal error") from None
        self.end_batch()
        self.quotes.process_pulls()
        return result

    def end_batch(self) -> None:
        """Close the current venue call's order updates (``channels.Channels.end_batch``)."""
        self.channels.end_batch()

    def _login(self, session: Session, params: wire.Params) -> dict[str, Any]:
        token = params.required_string("token")
        try:
            key = self.keys.get(tokens.key_id_of(token))
            if key is None:
                raise LoginTokenError("unknown key id")
            tokens.verify(token, key.public_key_pem, now=self._wall_time(), max_age_s=self.login_max_age_s)
        except LoginTokenError as error:
            self.counters["login_failures"] += 1
            raise RpcError(ThalexErrorCode.AUTHENTICATION_FAILED, f"authentication failed: {error}") from None
        account = params.string("account") or key.accounts[0]
        if account not in key.accounts:
            self.counters["login_failures"] += 1
            raise RpcError(
                ThalexErrorCode.AUTHENTICATION_FAILED, f"key {key.key_id} has no access to account {account}"
            )
        if session.account is not None and session.account != account:
            raise RpcError(ThalexErrorCode.INVALID_REQUEST, "session is already logged in to another account")
        session.account = account
        session.key = key
        self.channels.logged_in(session, account)
        self.counters["logins"] += 1
        return {"account_number": account}

    def _set_cancel_on_disconnect(self, session: Session, params: wire.Params) -> dict[str, Any]:
        timeout = params.number("timeout_secs")
        if timeout is None or timeout < 0:
            raise RpcError(ThalexErrorCode.INVALID_REQUEST, "timeout_secs must be a number >= 0")
        session.cancel_on_disconnect = True
        session.timeout_s = timeout
        return {"message_rate": session.rate}

    def _cancel_session(self, session: Session, params: wire.Params) -> None:
        if not session.cancel_on_disconnect:
            raise RpcError(
                ThalexErrorCode.PERSISTENT_SESSION, "cancel_session needs a cancel-on-disconnect session"
            )
        self.cancel_session_orders(session, "session_end")
        self.quotes.reset_protection(session, None, "session_end")
        return None

    def cancel_session_orders(self, session: Session, delete_reason: str) -> int:
        """Delete the session's non-persistent orders (cancel-on-disconnect)."""
        count = 0
        for order in list(session.orders.values()):
            info = self.orders.infos.get(order.order_id)
            if info is None or info.persistent or not order.is_open:
                continue
            if self.cancel_with_reason(order, delete_reason):
                count += 1
        session.quotes.clear()
        self.counters["session_end_cancels"] += count
        return count

    def cancel_with_reason(self, order: SimOrder, delete_reason: str) -> bool:
        info = self.orders.infos.get(order.order_id)
        if info is not None:
            info.delete_reason = delete_reason
        result = self.venue.cancel(order.account, order.symbol, order_id=order.order_id)
        self.end_batch()
        return result.accepted

    def instrument_or_error(self, name: Any) -> Instrument:
        instrument = self.instruments.get(name) if isinstance(name, str) else None
        if instrument is None:
            raise RpcError(ThalexErrorCode.UNKNOWN_INSTRUMENT, f"unknown instrument {name}")
        return instrument

    def _instruments(self, session: Session, params: wire.Params) -> list[dict[str, Any]]:
        return [wire.instrument_payload(item, self._create_time) for item in self.instruments.values()]

    def _instrument(self, session: Session, params: wire.Params) -> dict[str, Any]:
        instrument = self.instrument_or_error(params.required_string("instrument_name"))
        return wire.instrument_payload(instrument, self._create_time)

    def _ticker(self, session: Session, params: wire.Params) -> dict[str, Any]:
        instrument = self.instrument_or_error(params.required_string("instrument_name"))
        return self.market.ticker(instrument)

    def _book(self, session: Session, params: wire.Params) -> dict[str, Any]:
        return self.market.book(self.instrument_or_error(params.required_string("instrument_name")))

    def _index(self, session: Session, params: wire.Params) -> dict[str, Any]:
        underlying = params.required_string("underlying")
        if underlying not in self.market.underlyings():
            raise RpcError(ThalexErrorCode.UNKNOWN_UNDERLYING, f"unknown underlying {underlying}")
        return self.market.index(underlying)

    def _system_info(self, session: Session, params: wire.Params) -> dict[str, Any]:
        return {"environment": "simulator", "api_version": "2.0.0", "banners": []}

    def _subscribe_public(self, session: Session, params: wire.Params) -> list[str]:
        return self.channels.subscribe(session, params.channels(), private=False)

    def _subscribe_private(self, session: Session, params: wire.Params) -> list[str]:
        return self.channels.subscribe(session, params.channels(), private=True)

    def _unsubscribe(self, session: Session, params: wire.Params) -> list[str]:
        return self.channels.unsubscribe(session, params.channels())

    def _insert(self, session: Session, params: wire.Params) -> dict[str, Any]:
        direction = params.choice("direction", ("buy", "sell"))
        if direction is None:
            raise RpcError(ThalexErrorCode.INVALID_REQUEST, "missing parameter direction")
        return self._place(session, params, Side.BUY if direction == "buy" else Side.SELL)

    def _buy(self, session: Session, params: wire.Params) -> dict[str, Any]:
        return self._place(session, params, Side.BUY)

    def _sell(self, session: Session, params: wire.Params) -> dict[str, Any]:
        return self._place(session, params, Side.SELL)

    def _place(self, session: Session, params: wire.Params, side: Side) -> dict[str, Any]:
        if params.has("legs"):
            raise RpcError(
                ThalexErrorCode.INVALID_REQUEST, "combination orders are not supported by the simulator"
            )
        instrument = self.instrument_or_error(params.required_string("instrument_name"))
        order_type_name = params.choice("order_type", ("limit", "market"), "limit")
        is_market = order_type_name == "market"
        time_in_force = params.choice(
            "time_in_force",
            ("good_till_cancelled", "immediate_or_cancel"),
            "immediate_or_cancel" if is_market else "good_till_cancelled",
        )
        post_only = params.boolean("post_only")
        reject_post_only = params.boolean("reject_post_only")
        if is_market and time_in_force == "good_till_cancelled":
            raise RpcError(
                ThalexErrorCode.INVALID_TIME_IN_FORCE, "a market order cannot be good_till_cancelled"
            )
        if post_only and (is_market or time_in_force == "immediate_or_cancel"):
            raise RpcError(
                ThalexErrorCode.INVALID_TIME_IN_FORCE, "post_only needs a good_till_cancelled limit order"
            )
        params.choice("collar", ("ignore", "reject", "clamp"))
        lots = wire.to_lots(instrument, params.required("amount"))
        if lots < instrument.min_quantity:
            raise RpcError(ThalexErrorCode.INVALID_QUANTITY, "amount below min_order_amount")
        price = 0
        if not is_market:
            if not params.has("price"):
                raise RpcError(ThalexErrorCode.INVALID_REQUEST, "price is required for limit orders")
            price = wire.to_ticks(instrument, params.raw("price"))
        elif params.has("price"):
            price = wire.to_ticks(instrument, params.raw("price"))
        client_order_id = (
            wire.parse_client_order_id(params.raw("client_order_id"))
            if params.has("client_order_id")
            else None
        )
        label = params.string("label")
        assert session.account is not None
        if params.boolean("reduce_only"):
            position = self.accounts.get(session.account).position(instrument.symbol).quantity
            if position == 0 or (position > 0) == (side is Side.BUY):
                raise RpcError(
                    ThalexErrorCode.INVALID_QUANTITY, "reduce_only order would not reduce the position"
                )
            lots = min(lots, abs(position))
        self.account_views.check_margin(session.account, instrument, side, lots, price)
        order_type = (
            OrderType.MARKET if is_market else OrderType.LIMIT_MAKER if post_only else OrderType.LIMIT
        )
        info = OrderInfo(
            session,
            client_order_id,
            label,
            not session.cancel_on_disconnect,
            wire.product_of(instrument),
        )
        result = self.place(
            session,
            info,
            instrument,
            side,
            order_type,
            lots,
            price,
            TimeInForce.IOC if time_in_force == "immediate_or_cancel" else TimeInForce.GTC,
            client_order_id,
            reprice=post_only and not reject_post_only,
        )
        if not result.accepted:
            return self.refused(session, info, instrument, side, lots, price, result)
        return self._result_payload(result)

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
    ) -> OrderResult:
        self.end_batch()
        self.orders.expect(info)
        return self.venue.place(
            session.account or "",
            instrument.symbol,
            side,
            order_type,
            lots,
            price,
            time_in_force,
            None if client_order_id is None else f"{session.session_id}:{client_order_id}",
            reprice_post_only=reprice,
        )

    def _result_payload(self, result: OrderResult) -> dict[str, Any]:
        assert result.order is not None
        return self.orders.current(result.order, "insert")

    def refused(
        self,
        session: Session,
        info: OrderInfo,
        instrument: Instrument,
        side: Side,
        lots: int,
        price: int,
        result: OrderResult,
    ) -> dict[str, Any]:
        """A refused order: the venue's error, or a post-only cancelled with immediate_cancel."""
        reason = result.reason or RejectReason.UNKNOWN_SYMBOL
        error = thalex_error(reason)
        if error is not None:
            raise RpcError(*error)
        now = self.market.now_seconds()
        payload = immediately_cancelled_payload(
            next(self._rejected_ids), info, instrument, side, lots, price, now
        )
        self.channels.publish_session_order(session, payload)
        return dict(payload)

    def _find_order(self, session: Session, params: wire.Params) -> SimOrder:
        has_id = params.has("order_id")
        has_client_id = params.has("client_order_id")
        if has_id == has_client_id:
            raise RpcError(
                ThalexErrorCode.INVALID_REQUEST, "exactly one of order_id and client_order_id is required"
            )
        account = session.account or ""
        if has_id:
            order = self.engine.get_order(account, order_id=wire.parse_order_id(params.raw("order_id")))
        else:
            client_order_id = wire.parse_client_order_id(params.raw("client_order_id"))
            order = self.engine.get_order(account, client_order_id=f"{session.session_id}:{client_order_id}")
        if order is None or not order.is_open:
            raise RpcError(ThalexErrorCode.ORDER_NOT_FOUND, "order not found")
        return order

    def _amend(self, session: Session, params: wire.Params) -> dict[str, Any]:
        order = self._find_order(session, params)
        instrument = self.instruments[order.symbol]
        price = wire.to_ticks(instrument, params.required("price"))
        lots = wire.to_lots(instrument, params.required("amount"), allow_zero=True)
        params.choice("collar", ("ignore", "reject", "clamp"))
        if lots > order.quantity or price != order.price:
            extra = max(lots - (order.quantity - order.filled), 0)
            self.account_views.check_margin(order.account, instrument, order.side, extra, price)
        info = self.orders.infos.get(order.order_id)
        self.end_batch()
        if info is not None:
            info.change_reason = "amend"
        result = self.venue.amend(
            order.account, order.symbol, price=price, quantity=lots, order_id=order.order_id
        )
        if info is not None:
            info.change_reason = None
        if not result.accepted:
            reason = result.reason or RejectReason.UNKNOWN_ORDER
            error = thalex_error(reason)
            if error is not None:
                raise RpcError(*error)
            # post-only with reject_post_only amended into a cross: the venue deletes it
            if info is not None:
                info.change_reason = "amend"
            self._cancel_keep_batch(order, "immediate_cancel")
            return self.orders.current(order, "amend")
        return self.orders.current(order, "amend")

    def _cancel_keep_batch(self, order: SimOrder, delete_reason: str) -> None:
        info = self.orders.infos.get(order.order_id)
        if info is not None:
            info.delete_reason = delete_reason
        self.venue.cancel(order.account, order.symbol, order_id=order.order_id)

    def _cancel(self, session: Session, params: wire.Params) -> dict[str, Any]:
        order = self._find_order(session, params)
        self.end_batch()
        result = self.venue.cancel(order.account, order.symbol, order_id=order.order_id)
        if not result.accepted:
            raise RpcError(ThalexErrorCode.ORDER_NOT_FOUND, "order not found")
        return self.orders.current(order, "cancel")

    def _cancel_all(self, session: Session, params: wire.Params) -> int:
        self.end_batch()
        result = self.venue.cancel_all(session.account or "")
        session.quotes.clear()
        return len(result.orders)

    def _open_orders(self, session: Session, params: wire.Params) -> list[dict[str, Any]]:
        name = params.string("instrument_name")
        return [
            self.orders.live(order, "existing")
            for order in self.engine.open_orders(session.account or "")
            if name is None or order.symbol == name
        ]

    def _portfolio(self, session: Session, params: wire.Params) -> list[dict[str, Any]]:
        return self.account_views.portfolio(session.account or "", None)

    def _account_summary(self, session: Session, params: wire.Params) -> dict[str, Any]:
        return self.account_views.summary(session.account or "")

    def _trade_history(self, session: Session, params: wire.Params) -> dict[str, Any]:
        trades, bookmark = self._history(
            self.channels.trade_history.get(session.account or "", deque()), params, "time"
        )
        return {"trades": trades, "bookmark": bookmark}

    def _order_history(self, session: Session, params: wire.Params) -> dict[str, Any]:
        orders, bookmark = self._history(
            self.channels.order_history.get(session.account or "", deque()), params, "close_time"
        )
        return {"orders": orders, "bookmark": bookmark}

    @staticmethod
    def _history(
        items: Iterable[dict[str, Any]], params: wire.Params, time_key: str
    ) -> tuple[list[dict[str, Any]], str | None]:
        limit = params.integer("limit", 100, low=1, high=1000)
        low = params.number("time_low")
        high = params.number("time_high")
        sort = params.choice("sort", ("asc", "desc"), "desc")
        names = params.string("instrument_names")
        wanted = set(names.split(",")) if names else None
        bookmark_text = params.string("bookmark")
        try:
            offset = int(bookmark_text) if bookmark_text else 0
        except ValueError:
            raise RpcError(ThalexErrorCode.INVALID_REQUEST, "invalid bookmark") from None
        chosen = [
            item
            for item in items
            if (low is None or item.get(time_key, 0) >= low)
            and (high is None or item.get(time_key, 0) <= high)
            and (wanted is None or item["instrument_name"] in wanted)
        ]
        if sort == "desc":
            chosen.reverse()
        page = chosen[offset : offset + limit]
        more = offset + limit < len(chosen)
        return [dict(item) for item in page], str(offset + limit) if more else None


__all__ = ["ORDER_METHODS", "ThalexRpc"]
