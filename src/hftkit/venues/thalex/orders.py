"""Thalex order entry: insert, amend, cancel, mass quotes, protection, and every answer's meaning.

Order outcomes follow ``hftkit.venues.base``: a venue error is a definitive reject (or not
found, or rate limited); a timeout, a dropped session or an unreadable answer is
``OrderOutcomeUnknownError``, and the order is never sent again.

Where an order of unknown outcome is settled: in the adapter, here, and nowhere else. The
adapter is the only party that can ask the venue, so it settles the venue's truth by client
order id and says what it found as ordinary events (``OrderUpdate``, ``Fill``); the order
tracker (the OMS) only consumes those events and never queries, re-sends or guesses. Each
insert of unknown outcome is kept in ``OrderEntry._unresolved`` until one of these tells its
state: a ``session.orders`` push, the late answer to the insert itself, the open-orders
reconciliation after a reconnect, a query (``open_orders``/``query_order``, open orders first,
then the order history), or, when the venue shows nothing, a cancel by client order id (its
answer proves the insert was processed: absent means never created, or cancelled with the
cancel-on-disconnect session that carried it). Every one of these paths ends in ``_track``, the
one writer of the order's state (it removes the order from ``_unresolved``), followed by the
event that carries the found state to the listeners; no path settles an order silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import msgspec

from hftkit.core.bounded import LruMap
from hftkit.core.clock import Clock
from hftkit.core.errors import HftkitError
from hftkit.core.types import (
    FeeCharge,
    Fill,
    Instrument,
    OrderStatus,
    OrderType,
    OrderUpdate,
    TimeInForce,
)
from hftkit.metrics import MetricsRegistry
from hftkit.resilience import Priority
from hftkit.venues.base import (
    AmendRequest,
    MassQuote,
    MassQuoteReport,
    OrderAnswer,
    OrderNotFoundError,
    OrderOutcomeUnknownError,
    OrderRejectedError,
    OrderRequest,
    QuoteLevel,
    RateLimitedError,
    VenueError,
    VenueEvent,
    place_one_by_one,
)
from hftkit.venues.thalex.codec import (
    InsertEncoder,
    MassQuoteResult,
    ThalexCodec,
    ThalexError,
    ThalexOrderNotFoundError,
    ThalexOrderStatus,
    ThalexThrottledError,
    canonical_number_text,
    decode_items,
    decode_order_status,
    decode_trade,
    decoder_for,
    wire_number,
)
from hftkit.venues.thalex.config import ThalexConfig
from hftkit.venues.thalex.errors import ThalexErrorCode, ThalexQueryError, VenueNotReadyError
from hftkit.venues.thalex.ids import ClientOrderIds
from hftkit.venues.thalex.rpc import (
    LateResponse,
    NotSentError,
    RpcProtocolError,
    RpcSession,
    RpcTimeoutError,
    SessionLostError,
)
from hftkit.venues.thalex.session import (
    MM_PROTECTION_CHANNEL,
    NOTIFICATION_ERRORS,
    Queries,
    Readiness,
    channel_kind,
)

logger = logging.getLogger(__name__)

ORDER_METHODS = frozenset(
    {"private/insert", "private/amend", "private/cancel", "private/mass_quote", "private/cancel_all"}
)
MAX_MASS_QUOTE_ITEMS = 100
MAX_MASS_QUOTE_LEVELS = 10
_OUTCOME_UNKNOWN_CODES = frozenset({ThalexErrorCode.TEMPORARY_FAILURE})
_CLOSED_MEMORY = 4096  # last updates of recently closed orders: a late push repeating one is dropped

_T = TypeVar("_T")


class _OrderHistory(msgspec.Struct, frozen=True):
    # historical orders carry no remaining_amount (they are closed): see _decode_history
    orders: list[dict[str, Any]] = []


class _MmProtectionUpdate(msgspec.Struct, frozen=True):
    product: str
    remaining_amount: float
    reason: str = ""


class OrderEntry:
    """Every order of one adapter: requests, answers, pushes, fills and settlement."""

    def __init__(
        self,
        config: ThalexConfig,
        *,
        rpc: RpcSession,
        queries: Queries,
        codec: ThalexCodec,
        ids: ClientOrderIds,
        instruments: dict[str, Instrument],
        products: dict[str, str],
        emit: Callable[[VenueEvent], None],
        clock: Clock,
        metrics: MetricsRegistry,
    ) -> None:
        self.config = config
        self.name = config.venue
        self.order_written: Callable[[str, int], None] | None = None
        self._rpc = rpc
        self._queries = queries
        self._codec = codec
        self._ids = ids
        self._instruments = instruments
        self._products = products
        self._emit = emit
        self._clock = clock
        self._inserts = InsertEncoder(config.label, config.reject_post_only)
        self._live: dict[str, OrderUpdate] = {}
        self._closed: OrderedDict[str, OrderUpdate] = OrderedDict()  # last updates of closed orders
        # the last wire state converted per venue order id (a push repeating an answer is skipped)
        self._order_states: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        self.stats_repeated_updates = 0
        # inserts of unknown outcome: client id -> (request, connection epoch it was sent on)
        self._unresolved: dict[str, tuple[OrderRequest, int]] = {}
        self._settlers: set[asyncio.Task[None]] = set()
        self._seen_fills: OrderedDict[tuple[str, str | None], bool] = OrderedDict()
        self._mm_protection: dict[str, tuple[str, str]] = {}
        # keyed by the product the venue names in a push: bounded (LRU), evictions counted
        self.mm_protection_remaining: LruMap[str, float] = LruMap(256)
        self._duplicate_fills = metrics.counter("thalex_duplicate_fills_total", venue=self.name)
        # the session's state, told by it on every change: the order path reads its own copy
        self._readiness = Readiness.DOWN
        self._epoch = 0
        self._closing = False

    def session_changed(self, readiness: Readiness, epoch: int, closing: bool) -> None:
        self._readiness = readiness
        self._epoch = epoch
        self._closing = closing

    def background_tasks(self) -> list[asyncio.Task[None]]:
        return list(self._settlers)

    # -- pushes and late answers -------------------------------------------------------------
    def on_orders(self, channel: str, payload: msgspec.Raw, receive_ns: int) -> None:
        # each item on its own: one bad order (an overflowing field) is counted and skipped, and
        # every other order of the push is still delivered
        for item in decode_items(payload):
            try:
                order = decode_order_status(item)
                if self._seen_before(order):
                    continue  # the push repeats what the request's answer told: nothing to convert
                self._apply_order_status(order, receive_ns)
            except NOTIFICATION_ERRORS:
                self._rpc.count_malformed(channel_kind(channel))

    def on_trades(self, channel: str, payload: msgspec.Raw, receive_ns: int) -> None:
        for item in decode_items(payload):
            try:
                fill = self._codec.trade_fill(decode_trade(item), self._ids.by_wire)
            except NOTIFICATION_ERRORS:
                self._rpc.count_malformed(channel_kind(channel))
                continue
            if fill is None:
                continue
            if self._first_sight(fill):
                self._seen_fills[(fill.trade_id, fill.venue_order_id)] = True  # its fee came with it
                self._emit(fill)
            elif fill.fee and not self._seen_fills.get((fill.trade_id, fill.venue_order_id)):
                # the order push delivered this fill first, without its fee: the fee follows alone
                self._seen_fills[(fill.trade_id, fill.venue_order_id)] = True
                self._emit(
                    FeeCharge(
                        venue=self.name,
                        symbol=fill.symbol,
                        client_order_id=fill.client_order_id,
                        trade_id=fill.trade_id,
                        fee=fill.fee,
                        fee_asset=fill.fee_asset,
                        receive_ns=receive_ns,
                    )
                )

    def on_mm_protection(self, _channel: str, payload: msgspec.Raw, _receive_ns: int) -> None:
        for update in msgspec.json.decode(payload, type=list[_MmProtectionUpdate]):
            self.mm_protection_remaining[update.product] = update.remaining_amount
            if update.remaining_amount <= 0:
                logger.warning("%s: mass quotes of %s pulled (%s)", self.name, update.product, update.reason)

    def on_late_response(self, late: LateResponse) -> None:
        """An order answer after its request timed out: it settles the unknown outcome."""
        if late.method not in ("private/insert", "private/amend", "private/cancel"):
            return
        if late.result is None:
            request = late.context
            if late.method == "private/insert" and isinstance(request, OrderRequest):
                self._late_insert_refused(request, late)
            return
        try:
            order = decode_order_status(late.result)
            self._apply_order_status(order, late.receive_ns)
        except (
            msgspec.DecodeError,
            msgspec.ValidationError,
            RecursionError,
            HftkitError,
            ValueError,
            KeyError,
        ):
            self._rpc.count_malformed(f"result:{late.method}")

    def _late_insert_refused(self, request: OrderRequest, late: LateResponse) -> None:
        """A timed-out insert the venue refused after all: nothing exists, say so as an event."""
        if late.error_code in _OUTCOME_UNKNOWN_CODES:
            return
        self._ids.release(request.client_order_id)
        self._settle_absent(
            request,
            OrderStatus.REJECTED,
            f"code {late.error_code}: {late.error_message}",
            receive_ns=late.receive_ns,
        )

    # -- order state -------------------------------------------------------------------------
    def _seen_before(self, order: ThalexOrderStatus) -> bool:
        """This order in exactly this state (status, sizes, price, fills) was converted already."""
        state = (
            order.status,
            order.amount,
            order.filled_amount,
            order.price,
            order.delete_reason,
            len(order.fills),
        )
        seen = self._order_states
        if seen.get(order.order_id) == state:
            self.stats_repeated_updates += 1
            return True
        seen[order.order_id] = state
        if len(seen) > _CLOSED_MEMORY:
            seen.popitem(last=False)
        return False

    def _apply_order_status(self, order: ThalexOrderStatus, receive_ns: int) -> OrderUpdate | None:
        """Normalize, remember, emit; return the OrderUpdate (None for an unknown instrument)."""
        self._seen_before(order)  # an answer is always converted; a push of the same state is not
        update: OrderUpdate | None = None
        for event in self._codec.order_events(order, receive_ns, self._ids.by_wire):
            if isinstance(event, Fill):
                if not self._first_sight(event):
                    continue
            else:
                update = event
                if self._repeats(event):
                    continue  # the answer and the push of one change: listeners hear it once
                self._track(event)
            self._emit(event)
        return update

    def _repeats(self, update: OrderUpdate) -> bool:
        """The same state of an order as the last update told (status, fill, size, price)."""
        client_order_id = update.client_order_id
        last = self._live.get(client_order_id) or self._closed.get(client_order_id)
        if (
            last is None
            or last.status is not update.status
            or last.filled != update.filled
            or last.quantity != update.quantity
            or last.price != update.price
        ):
            return False
        self.stats_repeated_updates += 1
        return True

    def _track(self, update: OrderUpdate) -> None:
        """The one writer of an order's state: what is known of it settles an unknown outcome."""
        if update.status is not OrderStatus.UNKNOWN:
            self._unresolved.pop(update.client_order_id, None)
        if update.status.is_terminal:
            self._live.pop(update.client_order_id, None)
            self._ids.retire(update.client_order_id)
            closed = self._closed
            closed[update.client_order_id] = update
            if len(closed) > _CLOSED_MEMORY:
                closed.popitem(last=False)
        else:
            self._live[update.client_order_id] = update

    def _first_sight(self, fill: Fill) -> bool:
        key = (fill.trade_id, fill.venue_order_id)
        seen = self._seen_fills
        if key in seen:
            self._duplicate_fills.inc()
            return False
        seen[key] = False  # True once the trade's fee was delivered (with it or as a FeeCharge)
        if len(seen) > self.config.fill_memory:
            seen.popitem(last=False)
        return True

    def live_orders(self) -> list[OrderUpdate]:
        """Orders this adapter believes open (from answers and pushes)."""
        return list(self._live.values())

    # -- trading -----------------------------------------------------------------------------
    def _require_ready(self) -> None:
        if self._readiness is not Readiness.READY:
            raise VenueNotReadyError(
                f"{self.name}: session is {self._readiness.value}, not ready for orders", venue=self.name
            )

    def _instrument(self, symbol: str) -> Instrument:
        instrument = self._instruments.get(symbol)
        if instrument is None:
            raise OrderRejectedError(f"unknown Thalex instrument {symbol!r}", venue=self.name)
        return instrument

    def _reference(self, client_order_id: str) -> dict[str, Any]:
        """How to name an order to amend/cancel: its session id, or the venue id if older."""
        wire = self._ids.wire(client_order_id)
        if wire is not None and wire[1] == self._epoch:
            return {"client_order_id": wire[0]}
        live = self._live.get(client_order_id)
        if live is not None and live.venue_order_id:
            return {"order_id": live.venue_order_id}
        raise OrderNotFoundError(f"no open order with client id {client_order_id!r}", venue=self.name)

    async def place_orders(self, requests: Sequence[OrderRequest]) -> list[OrderUpdate | VenueError]:
        """Thalex has no batch insert for plain orders (mass quotes are the batch): one by one."""
        return await place_one_by_one(self.place_order, requests)

    def place_order_now(self, request: OrderRequest, on_answer: OrderAnswer) -> bool:
        """``private/insert`` written before returning; the answer goes to ``on_answer`` from the
        frame that carries it. False (nothing sent) when the session is not ready or the message
        rate would make it wait: ``place_order`` queues it by priority."""
        if self._readiness is not Readiness.READY:
            return False
        prefix = self._insert_prefix(request)
        client_order_id = request.client_order_id
        written = self.order_written
        try:
            sent = self._rpc.call_now(
                "private/insert",
                prefix,
                _WrittenAnswer(self, "private/insert", client_order_id, on_answer, request),
                context=request,
                on_sent=None if written is None else lambda sent_ns: written(client_order_id, sent_ns),
            )
        except NotSentError as error:
            raise self._order_failure(error, "private/insert", client_order_id) from error
        if not sent:
            self._ids.release(client_order_id)
        return sent

    def _insert_prefix(self, request: OrderRequest) -> bytes:
        """The checked insert with a fresh wire id, as frame bytes up to the request id."""
        instrument = self._instrument(request.symbol)
        post_only = self._check_insert(request, instrument)
        try:
            wire_id = self._ids.assign(request.client_order_id, self._epoch)
        except ValueError as error:
            raise OrderRejectedError(str(error), venue=self.name) from None
        return self._inserts.prefix(
            instrument,
            request.side,
            request.quantity,
            None if request.order_type is OrderType.MARKET else request.price,  # GTC market is illegal
            request.time_in_force is TimeInForce.IOC,
            post_only,
            request.reduce_only,
            wire_id,
        )

    async def place_order(self, request: OrderRequest) -> OrderUpdate:
        """``private/insert``; FOK is not a Thalex time in force and is refused locally."""
        self._require_ready()
        prefix = self._insert_prefix(request)
        written = self.order_written
        client_order_id = request.client_order_id
        try:
            return await self._order_call(
                "private/insert",
                prefix,
                client_order_id,
                Priority.NORMAL,
                context=request,
                on_sent=None if written is None else lambda sent_ns: written(client_order_id, sent_ns),
            )
        except (OrderOutcomeUnknownError, asyncio.CancelledError):
            # cancelled by the caller (its own timeout) while the insert may be out: unknown too
            self._register_unknown(request)
            raise

    def _check_insert(self, request: OrderRequest, instrument: Instrument) -> bool:
        """Refuse locally what Thalex would refuse; returns whether the order is post-only."""
        if request.quantity <= 0:
            raise OrderRejectedError(f"quantity must be positive, got {request.quantity}", venue=self.name)
        if request.quantity < instrument.min_quantity:
            raise OrderRejectedError(
                f"quantity {request.quantity} lots is below the minimum {instrument.min_quantity}",
                venue=self.name,
            )
        if request.time_in_force is TimeInForce.FOK:
            raise OrderRejectedError("Thalex does not support fill-or-kill orders", venue=self.name)
        if request.order_type is OrderType.MARKET:
            return False
        if request.price <= 0:
            raise OrderRejectedError(f"limit price must be positive: {request.price}", venue=self.name)
        post_only = request.order_type is OrderType.LIMIT_MAKER
        if post_only and request.time_in_force is TimeInForce.IOC:
            raise OrderRejectedError("post-only cannot be immediate-or-cancel", venue=self.name)
        return post_only

    async def amend_order(self, request: AmendRequest) -> OrderUpdate:
        """``private/amend``: new price and new *total* amount (same price, smaller size keeps priority)."""
        self._require_ready()
        params = self._amend_params(request)
        return await self._order_call("private/amend", params, request.client_order_id, Priority.NORMAL)

    def amend_order_now(self, request: AmendRequest, on_answer: OrderAnswer) -> bool:
        """``private/amend`` written before returning, as ``cancel_order_now`` writes a cancel.
        False (nothing sent) when the session is not ready or the message rate would make it
        wait: ``amend_order`` queues it."""
        if self._readiness is not Readiness.READY:
            return False
        params = self._amend_params(request)
        return self._call_now("private/amend", params, request.client_order_id, Priority.NORMAL, on_answer)

    def _call_now(
        self, method: str, params: dict[str, Any], client_order_id: str, priority: int, on_answer: OrderAnswer
    ) -> bool:
        """An order's cancel or amend written on the session now; its answer to ``on_answer``."""
        try:
            return self._rpc.call_now(
                method, params, _WrittenAnswer(self, method, client_order_id, on_answer), priority=priority
            )
        except NotSentError as error:
            raise self._order_failure(error, method, client_order_id) from error

    def _amend_params(self, request: AmendRequest) -> dict[str, Any]:
        instrument = self._instrument(request.symbol)
        if request.quantity <= 0 or request.price <= 0:
            raise OrderRejectedError("amend needs a positive price and quantity", venue=self.name)
        params = self._reference(request.client_order_id)
        params["price"] = _number(instrument.ticks_to_price(request.price))
        params["amount"] = _number(instrument.lots_to_quantity(request.quantity))
        return params

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderUpdate:
        """``private/cancel``; an order the venue no longer has raises OrderNotFoundError."""
        self._require_ready()
        params = self._reference(client_order_id)
        return await self._order_call("private/cancel", params, client_order_id, Priority.HIGH)

    def cancel_order_now(self, symbol: str, client_order_id: str, on_answer: OrderAnswer) -> bool:
        """``private/cancel`` written before returning; the answer goes to ``on_answer`` from the
        frame that carries it. False (nothing sent) when the session is not ready or the message
        rate would make it wait: ``cancel_order`` queues it by priority."""
        if self._readiness is not Readiness.READY:
            return False
        params = self._reference(client_order_id)  # OrderNotFoundError: nothing to name it by
        return self._call_now("private/cancel", params, client_order_id, Priority.HIGH, on_answer)

    async def cancel_all(self, symbol: str | None = None) -> int:
        """Every order (``private/cancel_all``), or this adapter's orders of one symbol: live,
        of unknown outcome, or written and not answered yet."""
        self._require_ready()
        if symbol is None:
            raw = await self._order_request("private/cancel_all", {}, "", Priority.CRITICAL)
            return self._decode_order_result(raw, int, "private/cancel_all", "")
        targets = [cid for cid, update in self._live.items() if update.symbol == symbol]
        # an insert of unknown outcome may rest too, and so may one written and not answered yet
        # (the venue's own cancel_all may miss orders in flight): cancel them by client id, on
        # the connection that carried the insert, so after it (not found is fine)
        in_flight: list[OrderRequest] = self._rpc.pending_contexts("private/insert")
        for request in (*(request for request, _ in self._unresolved.values()), *in_flight):
            if request.symbol == symbol and request.client_order_id not in targets:
                targets.append(request.client_order_id)
        results = await asyncio.gather(
            *(self.cancel_order(symbol, cid) for cid in targets), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, VenueError):
                raise result  # venue errors (already gone, unknown) are per order; anything else is a bug
        return sum(1 for result in results if isinstance(result, OrderUpdate))

    # -- mass quotes and their protection ----------------------------------------------------
    def has_protection(self) -> bool:
        return bool(self._mm_protection)

    async def reapply_protection(self) -> None:
        """After a (re)connect: the protection groups set on earlier connections, again."""
        for product, (trade_amount, quote_amount) in self._mm_protection.items():
            await self._queries.call(
                "private/set_mm_protection",
                {
                    "product": product,
                    "trade_amount": wire_number(trade_amount),
                    "quote_amount": wire_number(quote_amount),
                },
            )

    async def set_mm_protection(
        self, product: str, trade_amount: str | Decimal, quote_amount: str | Decimal
    ) -> None:
        """``private/set_mm_protection``: required before mass quoting; re-applied after reconnects."""
        trade_text, quote_text = _amount_text(trade_amount), _amount_text(quote_amount)
        if Decimal(trade_text) > Decimal(quote_text):
            raise ValueError("trade_amount must not exceed quote_amount")
        self._require_ready()
        first = not self._mm_protection
        await self._queries.call(
            "private/set_mm_protection",
            {
                "product": product,
                "trade_amount": wire_number(trade_text),
                "quote_amount": wire_number(quote_text),
            },
        )
        self._mm_protection[product] = (trade_text, quote_text)
        self.mm_protection_remaining[product] = float(trade_text)
        if first:
            await self._queries.subscribe("private/subscribe", [MM_PROTECTION_CHANNEL])

    async def mass_quote(self, quotes: Sequence[MassQuote]) -> MassQuoteReport:
        """``private/mass_quote``: each given side replaces that side; one level is sent as ``{a, p}``."""
        self._require_ready()
        if len(quotes) > MAX_MASS_QUOTE_ITEMS:
            raise OrderRejectedError(
                f"at most {MAX_MASS_QUOTE_ITEMS} instruments per mass quote, got {len(quotes)}",
                venue=self.name,
            )
        items: list[dict[str, Any]] = []
        for quote in quotes:
            instrument = self._instrument(quote.symbol)
            product = self._products.get(quote.symbol)
            if product is not None and product not in self._mm_protection:
                raise OrderRejectedError(
                    f"call set_mm_protection({product!r}, ...) before mass quoting {quote.symbol}",
                    venue=self.name,
                    code=int(ThalexErrorCode.PROTECTION_NOT_SET),
                )
            for side in (quote.bids, quote.asks):
                if side is not None and len(side) > MAX_MASS_QUOTE_LEVELS:
                    raise OrderRejectedError(
                        f"at most {MAX_MASS_QUOTE_LEVELS} levels per mass-quote side", venue=self.name
                    )
            item: dict[str, Any] = {"i": quote.symbol}
            if quote.bids is not None:
                item["b"] = _quote_side(instrument, quote.bids)
            if quote.asks is not None:
                item["a"] = _quote_side(instrument, quote.asks)
            items.append(item)
        params: dict[str, Any] = {"quotes": items}
        if self.config.mass_quote_label is not None:
            params["label"] = self.config.mass_quote_label
        if self.config.mass_quote_post_only:
            params["post_only"] = True
            if self.config.reject_post_only:
                params["reject_post_only"] = True
        raw = await self._order_request("private/mass_quote", params, "", Priority.NORMAL)
        result = self._decode_order_result(raw, MassQuoteResult, "private/mass_quote", "")
        return MassQuoteReport(
            result.n_success,
            result.n_fail,
            [
                f"code {error.code} {error.side or '?'} @ {error.price}: {error.message}"
                for error in result.errors
            ],
        )

    async def cancel_mass_quote(self, product: str | None = None) -> None:
        """``private/cancel_mass_quote``: pulls mass quotes (all sessions) and resets protection."""
        self._require_ready()
        params = {} if product is None else {"product": product}
        await self._order_request("private/cancel_mass_quote", params, "", Priority.CRITICAL)

    # -- requests and what their failures mean -----------------------------------------------
    async def _order_call(
        self,
        method: str,
        params: dict[str, Any] | bytes,
        client_order_id: str,
        priority: int,
        context: Any = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> OrderUpdate:
        raw = await self._order_request(method, params, client_order_id, priority, context, on_sent)
        return self._answered(raw, method, client_order_id)

    def _answered(self, raw: msgspec.Raw, method: str, client_order_id: str) -> OrderUpdate:
        order = self._decode_order_result(raw, ThalexOrderStatus, method, client_order_id)
        update = self._apply_order_status(order, self._clock.monotonic_ns())
        if update is None:
            raise OrderOutcomeUnknownError(
                f"{method} answered for instrument {order.instrument_name!r} this adapter does not know",
                venue=self.name,
                client_order_id=client_order_id,
            )
        return update

    async def _order_request(
        self,
        method: str,
        params: dict[str, Any] | bytes,
        client_order_id: str,
        priority: int,
        context: Any = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> msgspec.Raw:
        """One order-affecting request, its failures sorted into known and unknown outcomes."""
        try:
            return await self._rpc.call(method, params, priority=priority, context=context, on_sent=on_sent)
        except (ThalexError, NotSentError, RpcTimeoutError, SessionLostError, RpcProtocolError) as error:
            raise self._order_failure(error, method, client_order_id) from error

    def _order_failure(self, error: BaseException, method: str, client_order_id: str) -> VenueError:
        """What an order request's failure means: refused (its wire id is free again), not sent,
        or of unknown outcome (the venue may have acted on it)."""
        is_insert = method == "private/insert"
        if isinstance(error, ThalexError):
            if is_insert and error.code not in _OUTCOME_UNKNOWN_CODES:
                self._ids.release(client_order_id)
            return self._order_error(error, method, client_order_id)
        if isinstance(error, NotSentError):
            if is_insert:
                self._ids.release(client_order_id)
            return VenueNotReadyError(f"{method} not sent: {error}", venue=self.name)
        if isinstance(error, RpcTimeoutError | SessionLostError | RpcProtocolError):
            return OrderOutcomeUnknownError(
                f"{method}: {error}", venue=self.name, client_order_id=client_order_id
            )
        return OrderOutcomeUnknownError(
            f"{method}: unexpected failure {error!r}", venue=self.name, client_order_id=client_order_id
        )

    def _order_error(self, error: ThalexError, method: str, client_order_id: str) -> VenueError:
        detail = f"{method}: {error.message or error}"
        if isinstance(error, ThalexOrderNotFoundError):
            return OrderNotFoundError(detail, venue=self.name, code=error.code)
        if isinstance(error, ThalexThrottledError):
            return RateLimitedError(detail, venue=self.name, retry_after_s=self._rpc.throttle_backoff_s)
        if error.code in _OUTCOME_UNKNOWN_CODES:
            return OrderOutcomeUnknownError(detail, venue=self.name, client_order_id=client_order_id)
        return OrderRejectedError(detail, venue=self.name, code=error.code)

    def _decode_order_result(self, raw: msgspec.Raw, kind: type[_T], method: str, client_order_id: str) -> _T:
        try:
            return decoder_for(kind)(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as error:
            self._rpc.count_malformed(f"result:{method}")
            raise OrderOutcomeUnknownError(
                f"{method}: unreadable answer ({error})", venue=self.name, client_order_id=client_order_id
            ) from error

    # -- settlement of unknown outcomes ------------------------------------------------------
    def _register_unknown(self, request: OrderRequest) -> None:
        client_order_id = request.client_order_id
        if self._closing or client_order_id in self._unresolved or client_order_id in self._live:
            return
        self._unresolved[client_order_id] = (request, self._epoch)
        task = asyncio.get_running_loop().create_task(
            self._settle_loop(client_order_id), name=f"{self.name}:settle:{client_order_id}"
        )
        self._settlers.add(task)
        task.add_done_callback(self._settlers.discard)

    def unresolved(self) -> list[str]:
        """Client ids of inserts whose outcome is still unknown."""
        return list(self._unresolved)

    async def _settle_loop(self, client_order_id: str) -> None:
        """Settle an insert of unknown outcome until known, with bounded backoff; never re-sent."""
        delay = self.config.settle_interval_s
        while not self._closing and client_order_id in self._unresolved:
            await asyncio.sleep(delay)
            delay = min(delay * 2, max(self.config.settle_max_interval_s, self.config.settle_interval_s))
            if client_order_id not in self._unresolved or self._readiness is not Readiness.READY:
                continue  # settled by a push or a late answer, or wait for the session's reconcile
            if await self._settle_quietly(client_order_id):
                return

    async def _settle_quietly(self, client_order_id: str) -> bool:
        try:
            return await self._settle_once(client_order_id)
        except (VenueError, HftkitError, ConnectionError) as error:
            logger.info("%s: settling %s failed (%s); will retry", self.name, client_order_id, error)
            return False

    async def _settle_once(self, client_order_id: str) -> bool:
        """Query by client id; if the venue shows nothing, cancel by client id; then it is known.

        Thalex answers one connection's requests in order, so once our query and cancel (sent after
        the insert) are answered, the insert was processed: absent then means never created, or, on
        a connection since lost under cancel-on-disconnect, cancelled with it.
        """
        entry = self._unresolved.get(client_order_id)
        if entry is None:
            return True
        request, epoch = entry
        if await self.query_order(request.symbol, client_order_id) is not None:
            return True  # the query settled it (and emitted what it found)
        if client_order_id not in self._unresolved:
            return True
        wire = self._ids.wire(client_order_id)
        if wire is not None and wire[1] == self._epoch:
            try:
                await self.cancel_order(request.symbol, client_order_id)  # emits the CANCELED update
                return True
            except OrderNotFoundError:
                pass
        if client_order_id not in self._unresolved:
            return True
        lost_session = epoch != self._epoch and self.config.cancel_on_disconnect_s is not None
        self._settle_absent(
            request,
            OrderStatus.CANCELED if lost_session else OrderStatus.REJECTED,
            "cancel_on_disconnect: its session closed before the outcome was known"
            if lost_session
            else "absent at the venue: not open, not in its history, and a cancel by client id found nothing",
        )
        return True

    def _settle_absent(
        self, request: OrderRequest, status: OrderStatus, reason: str, *, receive_ns: int | None = None
    ) -> None:
        """The order does not exist at the venue (never created, or gone with its session)."""
        update = OrderUpdate(
            venue=self.name,
            symbol=request.symbol,
            client_order_id=request.client_order_id,
            venue_order_id=None,
            status=status,
            side=request.side,
            price=request.price,
            quantity=request.quantity,
            filled=0,
            reason=reason,
            event_time_ms=self._clock.time_ns() // 1_000_000,
            receive_ns=self._clock.monotonic_ns() if receive_ns is None else receive_ns,
        )
        self._track(update)
        self._emit(update)

    def _settle_found(self, update: OrderUpdate, *, open_at_venue: bool) -> None:
        """A query's answer: it settles an unknown outcome (emitted), and an open order is tracked."""
        if update.client_order_id in self._unresolved:
            self._track(update)
            self._emit(update)
        elif open_at_venue:
            self._track(update)

    # -- reconciliation and exit -------------------------------------------------------------
    async def reconcile_open_orders(self) -> list[OrderUpdate]:
        """After a (re)connect: the venue's open orders, emitted; ours it no longer has, closed."""
        orders = await self._fetch_open_orders(None)
        for update in orders:
            self._track(update)
        open_at_venue = {update.client_order_id for update in orders}
        gone = {cid: update for cid, update in self._live.items() if cid not in open_at_venue}
        for client_order_id in gone:
            del self._live[client_order_id]  # closed while we were away (cancel-on-disconnect, fills)
        for update in orders:
            self._emit(update)
        if gone:
            await self._report_closed(gone)
        return orders

    async def _report_closed(self, gone: Mapping[str, OrderUpdate]) -> None:
        """Orders that closed while we were away: report their final state, never leave them open.

        The final state (and any missed fills) comes from ``private/order_history``, through the
        same path as a push, so fills already seen are not emitted twice. An order the history
        does not show belonged to a cancel-on-disconnect session only if the venue deleted it
        when the connection dropped (Thalex keeps no history of unfilled session orders): it is
        reported CANCELED; otherwise its final state stays unknown and is logged.
        """
        now = self._clock.monotonic_ns()
        wanted = {update.venue_order_id: update for update in gone.values() if update.venue_order_id}
        for symbol in sorted({update.symbol for update in gone.values()}):
            try:
                raw = await self._queries.call(
                    "private/order_history", {"instrument_names": symbol, "limit": 100}
                )
                history = self._decode_history(raw)
            except ThalexQueryError as error:
                logger.warning("%s: order history of %s unavailable: %s", self.name, symbol, error)
                continue
            for order in history:
                if order.order_id in wanted:
                    del wanted[order.order_id]
                    self._apply_order_status(order, now)
        if not wanted:
            return
        if self.config.cancel_on_disconnect_s is None:
            logger.warning("%s: final state unknown for closed orders %s", self.name, sorted(wanted))
            return
        for update in wanted.values():
            closed = msgspec.structs.replace(
                update, status=OrderStatus.CANCELED, reason="cancel_on_disconnect", receive_ns=now
            )
            self._track(closed)
            self._emit(closed)

    async def cancel_everything_on_exit(self) -> bool:
        """Shut down safe: pull this session's orders before closing (logged, never raised);
        True when the venue confirmed it."""
        method = "private/cancel_session" if self.config.cancel_on_disconnect_s else "private/cancel_all"
        try:
            await self._rpc.call(method, {}, timeout_s=min(1.0, self.config.request_timeout_s))
            logger.info("%s: %s on exit", self.name, method)
        except (ThalexError, HftkitError, ConnectionError) as error:
            logger.warning("%s: %s on exit failed: %s", self.name, method, error)
            return False
        # nothing of ours rests now; give each insert of unknown outcome its known end (bounded)
        pending = list(self._unresolved)
        if pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.request_timeout_s):
                    await asyncio.gather(*(self._settle_quietly(cid) for cid in pending))
        return True

    def report_closed_on_exit(self, reason: str) -> None:
        """Every order of this session is gone (cancelled on exit, or pulled by the venue when the
        session closed): say so as events, so no tracker keeps an order open after we left."""
        now = self._clock.monotonic_ns()
        for update in list(self._live.values()):
            closed = msgspec.structs.replace(
                update, status=OrderStatus.CANCELED, reason=reason, receive_ns=now
            )
            self._track(closed)
            self._emit(closed)
        for request, _ in list(self._unresolved.values()):
            self._settle_absent(request, OrderStatus.CANCELED, f"{reason}: its outcome was never known")

    # -- queries -----------------------------------------------------------------------------
    def _decode_history(self, raw: msgspec.Raw) -> list[ThalexOrderStatus]:
        """``private/order_history`` orders as OrderStatus; a closed order has nothing remaining."""
        orders: list[ThalexOrderStatus] = []
        for entry in self._queries.decode(raw, _OrderHistory, "private/order_history").orders:
            entry.setdefault("remaining_amount", 0)
            try:
                orders.append(msgspec.convert(entry, ThalexOrderStatus))
            except msgspec.ValidationError:
                self._rpc.count_malformed("result:private/order_history")
        return orders

    async def _fetch_open_orders(self, symbol: str | None) -> list[OrderUpdate]:
        raw = await self._queries.call("private/open_orders", {})
        updates: list[OrderUpdate] = []
        for order in self._queries.decode(raw, list[ThalexOrderStatus], "private/open_orders"):
            if symbol is not None and order.instrument_name != symbol:
                continue
            events = self._codec.order_events(order, 0, self._ids.by_wire)
            if events and isinstance(events[0], OrderUpdate):
                updates.append(events[0])
        return updates

    async def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        """The venue's open orders (tracked; one that settles an unknown outcome is emitted)."""
        updates = await self._fetch_open_orders(symbol)
        for update in updates:
            self._settle_found(update, open_at_venue=True)
        return updates

    async def query_order(self, symbol: str, client_order_id: str) -> OrderUpdate | None:
        """Open orders first, then recent order history of the symbol; None when neither has it."""
        for update in await self.open_orders(symbol):
            if update.client_order_id == client_order_id:
                return update
        try:
            raw = await self._queries.call(
                "private/order_history", {"instrument_names": symbol, "limit": 100}
            )
        except ThalexQueryError:
            return None
        for order in self._decode_history(raw):
            events = self._codec.order_events(order, 0, self._ids.by_wire)
            if events and isinstance(events[0], OrderUpdate) and events[0].client_order_id == client_order_id:
                self._settle_found(events[0], open_at_venue=False)
                return events[0]
        return None


# -- helpers ---------------------------------------------------------------------------------


def _number(text: str) -> Any:
    """A grid's canonical text as a JSON number for the generic encoder ("0.100" -> 0.1)."""
    return wire_number(canonical_number_text(text))


def _amount_text(value: str | Decimal) -> str:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {value!r}") from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"amount must be a positive finite decimal, got {value!r}")
    text = format(amount.normalize(), "f")
    return text


def _quote_side(instrument: Instrument, levels: Sequence[QuoteLevel]) -> Any:
    """One level as ``{"a": amount, "p": price}`` (as the PyPI client sends), several as ``[[p, a], ...]``."""
    if len(levels) == 1:
        level = levels[0]
        return {
            "a": _number(instrument.lots_to_quantity(level.size)),
            "p": _number(instrument.ticks_to_price(level.price)),
        }
    return [
        [_number(instrument.ticks_to_price(level.price)), _number(instrument.lots_to_quantity(level.size))]
        for level in levels
    ]


class _WrittenAnswer:
    """The answer to an order request written inside the caller's callback (``place_order_now``,
    ``cancel_order_now``), converted and handed on inside the frame that carried it, with exactly
    the outcomes the awaited request has."""

    __slots__ = ("_client_order_id", "_done", "_entry", "_method", "_on_answer", "_request")

    def __init__(
        self,
        entry: OrderEntry,
        method: str,
        client_order_id: str,
        on_answer: OrderAnswer,
        request: OrderRequest | None = None,
    ) -> None:
        self._entry = entry
        self._method = method
        self._client_order_id = client_order_id
        self._on_answer = on_answer
        self._request = request  # an insert's: settled by client id when its outcome is unknown
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: msgspec.Raw) -> None:
        self._done = True
        try:
            answer: OrderUpdate | VenueError = self._entry._answered(
                result, self._method, self._client_order_id
            )
        except VenueError as error:
            answer = error
        self._tell(answer)

    def set_exception(self, exception: BaseException) -> None:
        self._done = True
        self._tell(self._entry._order_failure(exception, self._method, self._client_order_id))

    def _tell(self, answer: OrderUpdate | VenueError) -> None:
        if isinstance(answer, OrderOutcomeUnknownError) and self._request is not None:
            self._entry._register_unknown(self._request)  # settled by client id, never re-sent
        try:
            self._on_answer(answer)
        except Exception:
            logger.exception(
                "%s: the owner of order %s failed on its answer", self._entry.name, self._client_order_id
            )
