"""Order sending with a known outcome policy, and the execution engine for taker orders.

``OrderGateway`` is the one path every outgoing order takes: risk check, state-tracker
submission (so the gate sees the order before it checks the next one), the venue call, and
the outcome: an ack or a definitive reject settles the order; an ambiguous failure (an
``OrderOutcomeUnknownError``, a timeout, a transport error) leaves it UNKNOWN in the tracker
and queries the venue by client order id, never re-sending blindly.

``ExecutionEngine`` sends IOC/market orders under a latency budget: when the time from the
decision to the send exceeds the budget, the order is dropped (it was priced on a book that is
now old) or sent and flagged, per policy, and the overrun is counted. It records send -> ack
latency per venue and slices parent orders TWAP-style into child IOC orders with a limit price
that protects every child, stopping on the kill switch.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from hftkit.core.types import Order, OrderIntent, OrderStatus, OrderType, OrderUpdate, Side, TimeInForce
from hftkit.metrics import HistogramSnapshot, LatencyHistogram, MetricsRegistry
from hftkit.trading.risk import RejectReason, RiskDecision, RiskGate
from hftkit.trading.state import OrderStateTracker, RequestKind
from hftkit.venues.base import (
    AmendRequest,
    AmendsOrdersNow,
    CancelsOrdersNow,
    OrderAnswer,
    OrderNotFoundError,
    OrderRejectedError,
    OrderRequest,
    RateLimitedError,
    VenueAdapter,
    VenueError,
    WritesOrdersNow,
)

__all__ = [
    "BudgetPolicy",
    "ExecutionConfig",
    "ExecutionEngine",
    "ExecutionReport",
    "OrderGateway",
    "OrderIntent",
    "TrackerExposure",
    "TwapOrder",
    "TwapReport",
    "twap_schedule",
]

_log = logging.getLogger(__name__)
# One clock for every stamp of the order path: the transports stamp a frame's receipt with
# ``time.monotonic_ns()``, so decisions, sends and writes are stamped on it too.
_perf_ns = time.monotonic_ns


class _Settle:
    """An answer whose outcome the venue has not told yet: query it by client order id."""


_SETTLE = _Settle()


class TrackerExposure:
    """``RiskExposure`` read from an ``OrderStateTracker`` (signed position, open lots per side)."""

    __slots__ = ("_tracker",)

    def __init__(self, tracker: OrderStateTracker) -> None:
        self._tracker = tracker

    def position(self, venue: str, symbol: str) -> int:
        return self._tracker.positions.get(venue, symbol).quantity

    def open_quantity(self, venue: str, symbol: str, side: Side) -> int:
        total = 0
        for order in self._tracker.open_orders(venue, symbol):
            if order.side is side:  # pending cancels included: they can still fill (worst case)
                total += order.quantity - order.filled
        return total

    def open_order_count(self, venue: str, symbol: str) -> int:
        return len(self._tracker.open_orders(venue, symbol))

    def total_open_order_count(self) -> int:
        return self._tracker.active_count


def order_request(order: Order) -> OrderRequest:
    """The venue request of a tracked order (what every send of a new order carries)."""
    return OrderRequest(
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        quantity=order.quantity,
        price=order.price,
        order_type=order.order_type,
        time_in_force=order.time_in_force,
        reduce_only=order.reduce_only,
    )


class OrderGateway:
    """Risk check -> tracker submit -> venue call -> outcome, for every order of a process.

    ``prepare`` is synchronous (check and submit happen before the next decision is checked);
    ``send`` is the coroutine that talks to the venue. Client order ids are
    ``<prefix><sequence>``, short enough for every venue (Binance allows 36 characters).
    """

    def __init__(
        self,
        adapters: Mapping[str, VenueAdapter],
        tracker: OrderStateTracker,
        risk: RiskGate,
        *,
        metrics: MetricsRegistry | None = None,
        request_timeout_s: float = 5.0,
        query_delay_s: float = 0.0,
        id_prefix: str | None = None,
    ) -> None:
        self.adapters = dict(adapters)
        self.tracker = tracker
        self.risk = risk
        self.metrics = metrics if metrics is not None else MetricsRegistry()
        self.request_timeout_s = request_timeout_s
        self.query_delay_s = query_delay_s
        self._prefix = id_prefix if id_prefix is not None else f"hk{int(time.time() * 1000) % 36**7:x}-"
        self._sequence = itertools.count(1)
        self.counters: Counter[str] = Counter()
        self.round_trip: dict[str, LatencyHistogram] = {
            venue: self.metrics.histogram("order_round_trip_ns", venue=venue) for venue in self.adapters
        }
        # a cancel's send -> its answer: how long a stale quote can still trade after the decision
        self.cancel_round_trip: dict[str, LatencyHistogram] = {
            venue: self.metrics.histogram("cancel_round_trip_ns", venue=venue) for venue in self.adapters
        }
        self.amend_round_trip: dict[str, LatencyHistogram] = {
            venue: self.metrics.histogram("amend_round_trip_ns", venue=venue) for venue in self.adapters
        }
        self.risk_check: LatencyHistogram = self.metrics.histogram("risk_check_ns")
        # the stages of tick-to-trade per venue: the triggering frame's receipt -> the strategy's
        # decision -> the gateway's send -> the adapter wrote the order's bytes (tick_to_trade)
        registry = self.metrics
        venues = list(self.adapters)
        self.frame_to_decision = {
            venue: registry.histogram("frame_to_decision_ns", venue=venue) for venue in venues
        }
        self.decision_to_send_by_venue = {
            venue: registry.histogram("decision_to_send_ns", venue=venue) for venue in venues
        }
        self.send_to_written = {
            venue: registry.histogram("send_to_written_ns", venue=venue) for venue in venues
        }
        self.tick_to_trade: dict[str, LatencyHistogram] = {
            venue: registry.histogram("tick_to_trade_ns", venue=venue) for venue in venues
        }
        self._triggers: dict[str, tuple[int, int]] = {}  # client order id -> (frame, send) stamps
        self._sent = {venue: registry.counter("orders_sent_total", venue=venue) for venue in venues}
        self._acked = {venue: registry.counter("orders_acked_total", venue=venue) for venue in venues}
        self._rejected = {venue: registry.counter("orders_rejected_total", venue=venue) for venue in venues}
        # venues whose adapter writes an order inside the caller's callback (no task hop)
        self._write_now = {
            venue: adapter.place_order_now
            for venue, adapter in self.adapters.items()
            if isinstance(adapter, WritesOrdersNow)
        }
        self._cancel_now = {
            venue: adapter.cancel_order_now
            for venue, adapter in self.adapters.items()
            if isinstance(adapter, CancelsOrdersNow)
        }
        self._amend_now = {
            venue: adapter.amend_order_now
            for venue, adapter in self.adapters.items()
            if isinstance(adapter, AmendsOrdersNow)
        }
        self._settlers: set[asyncio.Task[OrderUpdate | None]] = set()
        for venue, adapter in self.adapters.items():
            adapter.order_written = self._writer(venue)

    @property
    def decision_to_send(self) -> HistogramSnapshot:
        """Decision -> send over every venue (tests, notebooks; /metrics has it per venue)."""
        merged = HistogramSnapshot.empty()
        for histogram in self.decision_to_send_by_venue.values():
            merged = merged.merged(histogram.snapshot())
        return merged

    def _writer(self, venue: str) -> Callable[[str, int], None]:
        """The adapter's hook: called with (client order id, monotonic ns) once the bytes are out."""
        tick_to_trade = self.tick_to_trade[venue]
        send_to_written = self.send_to_written[venue]
        triggers = self._triggers

        def written(client_order_id: str, written_ns: int) -> None:
            stamps = triggers.pop(client_order_id, None)
            if stamps is None:
                return
            trigger, sent = stamps
            if written_ns >= sent:
                send_to_written.record(written_ns - sent)
            if trigger and written_ns >= trigger:
                tick_to_trade.record(written_ns - trigger)

        return written

    def next_client_order_id(self) -> str:
        return f"{self._prefix}{next(self._sequence)}"

    # new orders ---------------------------------------------------------------------------
    def prepare(self, intent: OrderIntent) -> Order | RiskDecision:
        """Check the intent against the risk gate and, if accepted, track it as PENDING_NEW."""
        if intent.venue not in self.adapters:
            self.counters["unknown_venue"] += 1
            return RiskDecision(
                accepted=False,
                reason=RejectReason.UNKNOWN_INSTRUMENT,
                venue=intent.venue,
                symbol=intent.symbol,
            )
        checked = _perf_ns()
        decision = self.risk.check(
            intent.venue,
            intent.symbol,
            intent.side,
            intent.price,
            intent.quantity,
            intent.order_type,
            intent.reduce_only,
        )
        self.risk_check.record(_perf_ns() - checked)
        if not decision.accepted:
            self.counters["risk_rejects"] += 1
            return decision
        order = Order(
            client_order_id=self.next_client_order_id(),
            venue=intent.venue,
            symbol=intent.symbol,
            side=intent.side,
            order_type=intent.order_type,
            time_in_force=intent.time_in_force,
            price=intent.price,
            quantity=intent.quantity,
            reduce_only=intent.reduce_only,
        )
        self.tracker.submit(order)
        return order

    async def send(
        self, order: Order, decided_ns: int | None = None, trigger_ns: int = 0
    ) -> OrderUpdate | None:
        """Send a prepared order; returns the venue's answer (None: rejected or outcome unknown).

        ``trigger_ns``: the ``time.monotonic_ns()`` receive stamp of the socket frame behind the
        decision; with it, tick-to-trade is recorded when the adapter reports the bytes written.
        """
        adapter = self.adapters[order.venue]
        client_order_id = order.client_order_id
        request = order_request(order)
        sent_ns = self._stamp(order, trigger_ns)
        self._count_sent(order, decided_ns, trigger_ns, sent_ns)
        try:
            async with asyncio.timeout(self.request_timeout_s):
                answer: OrderUpdate | Exception = await adapter.place_order(request)
        except asyncio.CancelledError:
            self.tracker.request_timed_out(client_order_id, RequestKind.NEW)  # may have gone out
            raise
        except Exception as error:  # a refusal, or an outcome the venue has not told yet
            answer = error
        finally:
            self._triggers.pop(client_order_id, None)  # written or not, the stamp is done with
        if not isinstance(answer, Exception):
            self.round_trip[order.venue].record(_perf_ns() - sent_ns)
        return await self._conclude(order, answer)

    def _stamp(self, order: Order, trigger_ns: int) -> int:
        """The send stamp of one new order, kept with its frame's until the adapter writes it."""
        sent_ns = _perf_ns()
        self._triggers[order.client_order_id] = (trigger_ns, sent_ns)
        return sent_ns

    def _count_sent(self, order: Order, decided_ns: int | None, trigger_ns: int, sent_ns: int) -> None:
        venue = order.venue
        if decided_ns is not None:
            self.decision_to_send_by_venue[venue].record(sent_ns - decided_ns)
            if trigger_ns and decided_ns >= trigger_ns:
                self.frame_to_decision[venue].record(decided_ns - trigger_ns)
        self.counters["orders_sent"] += 1
        self._sent[venue].inc()

    def send_now(
        self,
        order: Order,
        decided_ns: int | None = None,
        trigger_ns: int = 0,
        on_outcome: Callable[[OrderUpdate | None], None] | None = None,
    ) -> bool:
        """Write a prepared order before returning, where the venue's adapter can (True): no task
        and no loop iteration between the decision and the socket. Its outcome is handled exactly
        as ``send`` handles it, then ``on_outcome`` hears what ``send`` would have returned.
        False, with nothing sent and nothing counted: the adapter cannot write it now (not
        ready, rate budget), so the caller awaits ``send`` instead."""
        place_now = self._write_now.get(order.venue)
        if place_now is None:
            return False
        client_order_id = order.client_order_id
        sent_ns = self._stamp(order, trigger_ns)

        def answered(answer: OrderUpdate | VenueError) -> None:
            self._triggers.pop(client_order_id, None)
            if not isinstance(answer, Exception):
                self.round_trip[order.venue].record(_perf_ns() - sent_ns)
            self._finish(order, answer, on_outcome)

        try:
            written = place_now(order_request(order), answered)
        except Exception as error:  # refused locally before anything was sent
            self._triggers.pop(client_order_id, None)
            self._count_sent(order, decided_ns, trigger_ns, sent_ns)
            self._finish(order, error, on_outcome)
            return True
        if not written:
            self._triggers.pop(client_order_id, None)
            self.counters["write_now_deferred"] += 1
            return False
        self._count_sent(order, decided_ns, trigger_ns, sent_ns)
        return True

    def _finish(
        self,
        order: Order,
        answer: OrderUpdate | Exception,
        on_outcome: Callable[[OrderUpdate | None], None] | None,
    ) -> None:
        outcome = self._outcome(order, answer)
        if isinstance(outcome, _Settle):
            self._settle_then(order, on_outcome)
        elif on_outcome is not None:
            on_outcome(outcome)

    def _settle_then(self, order: Order, then: Callable[[OrderUpdate | None], None] | None) -> None:
        """``settle`` by a task (an answer arrives inside a callback), then ``then`` with what the
        venue said (None: unknown still, or the task was cancelled)."""
        task = asyncio.get_running_loop().create_task(self.settle(order))
        self._settlers.add(task)

        def settled(done: asyncio.Task[OrderUpdate | None]) -> None:
            self._settlers.discard(done)
            if then is not None:
                then(None if done.cancelled() or done.exception() else done.result())

        task.add_done_callback(settled)

    async def _conclude(self, order: Order, answer: OrderUpdate | Exception) -> OrderUpdate | None:
        outcome = self._outcome(order, answer)
        if isinstance(outcome, _Settle):
            return await self.settle(order)
        return outcome

    def _outcome(self, order: Order, answer: OrderUpdate | Exception) -> OrderUpdate | _Settle | None:
        """What one new order's answer means for the tracker: a definitive refusal (nothing was
        placed), an ambiguous failure (timeout, disconnect, 5xx, anything unforeseen: ``_SETTLE``,
        settled by client order id), or the venue's view of the order."""
        venue, client_order_id = order.venue, order.client_order_id
        if isinstance(answer, OrderRejectedError | RateLimitedError):
            self.counters["venue_rejects"] += 1
            self._rejected[venue].inc()
            self.tracker.reject(client_order_id, f"{type(answer).__name__}: {answer}")
            return None
        if isinstance(answer, Exception):
            self.counters["outcome_unknown"] += 1
            _log.warning("order %s outcome unknown (%r): settling", client_order_id, answer)
            self.tracker.request_timed_out(client_order_id, RequestKind.NEW)
            return _SETTLE
        if answer.status is OrderStatus.REJECTED:
            self._rejected[venue].inc()
        else:
            self._acked[venue].inc()
        self.apply_answer(answer)
        return answer

    async def send_batch(
        self, orders: Sequence[Order], decided_ns: int | None = None, trigger_ns: int = 0
    ) -> list[OrderUpdate | None]:
        """Send prepared orders of one venue in as few requests as it allows (``place_orders``);
        each order's outcome is handled exactly as ``send`` handles a single one."""
        if not orders:
            return []
        venue = orders[0].venue
        if any(order.venue != venue for order in orders):
            raise ValueError("a batch goes to one venue")
        adapter = self.adapters[venue]
        requests = [order_request(order) for order in orders]
        sent_ns = _perf_ns()
        for order in orders:
            self._stamp(order, trigger_ns)
            self._count_sent(order, decided_ns, trigger_ns, sent_ns)
        self.counters["batches_sent"] += 1
        try:
            async with asyncio.timeout(self.request_timeout_s):
                answers: list[OrderUpdate | Exception] = list(await adapter.place_orders(requests))
        except asyncio.CancelledError:
            for order in orders:
                self.tracker.request_timed_out(order.client_order_id, RequestKind.NEW)
            raise
        except Exception as error:  # the whole request: timeout, disconnect, anything unforeseen
            answers = [error] * len(orders)
        finally:
            for order in orders:
                self._triggers.pop(order.client_order_id, None)
        self.round_trip[venue].record(_perf_ns() - sent_ns)
        return [await self._conclude(order, answer) for order, answer in zip(orders, answers, strict=True)]

    def apply_answer(self, update: OrderUpdate) -> None:
        """Feed a request's answer to the tracker (an ack, then the venue's view of the order).
        An answer the tracker already holds (the adapter's event carried it first) is skipped."""
        tracker = self.tracker
        known = tracker.get(update.client_order_id)
        if (
            known is not None
            and known.status is update.status
            and known.filled == update.filled
            and known.venue_order_id == update.venue_order_id
        ):
            self.counters["answers_already_known"] += 1
            return
        if update.status is OrderStatus.REJECTED:
            tracker.reject(update.client_order_id, update.reason)
            return
        tracker.acknowledge(update.client_order_id, update.venue_order_id)
        tracker.apply_report(update)

    async def settle(self, order: Order) -> OrderUpdate | None:
        """Query an order whose outcome is unknown and apply what the venue says (once).

        An adapter that settles unknown outcomes itself (it lists the order in ``unresolved()``)
        owns the venue's truth: it keeps settling by client order id until the end is known and
        emits it as an event, which the tracker consumes. Asking it here as well could only
        conclude "not found" too early (the order may still be on its way) and close an order
        that then rests at the venue, untracked.
        """
        adapter = self.adapters[order.venue]
        if _settled_by_adapter(adapter, order.client_order_id):
            self.counters["settled_by_adapter"] += 1
            return None
        if self.query_delay_s > 0:
            await asyncio.sleep(self.query_delay_s)
        try:
            async with asyncio.timeout(self.request_timeout_s):
                found = await adapter.query_order(order.symbol, order.client_order_id)
        except Exception as error:  # still unknown: reconciliation settles it later
            self.counters["query_failures"] += 1
            _log.warning(
                "query of %s failed (%r): left UNKNOWN for reconciliation", order.client_order_id, error
            )
            return None
        self.counters["queries"] += 1
        self.tracker.apply_query_result(order.client_order_id, found)
        return found

    # cancels and amends -------------------------------------------------------------------
    async def cancel(self, venue: str, symbol: str, client_order_id: str, *, requested: bool = False) -> bool:
        """Cancel one order; True when the venue confirmed it closed. ``requested``: the caller
        already marked the cancel in the tracker (synchronously, so no plan re-cancels it)."""
        tracker = self.tracker
        if not requested:
            tracker.request_cancel(client_order_id)
        self.counters["cancels_sent"] += 1
        sent_ns = _perf_ns()
        return await self._awaited(
            self.adapters[venue].cancel_order(symbol, client_order_id),
            lambda answer: self._cancel_outcome(venue, client_order_id, answer, sent_ns),
        )

    async def _awaited(
        self,
        request: Awaitable[OrderUpdate],
        outcome: Callable[[OrderUpdate | Exception], bool | Order],
    ) -> bool:
        """A cancel's or an amend's request, bounded by the request timeout; its ``outcome``,
        after the venue's truth was queried where that outcome names an order to settle."""
        answer: OrderUpdate | Exception
        try:
            async with asyncio.timeout(self.request_timeout_s):
                answer = await request
        except Exception as error:  # asyncio.CancelledError is not: the caller's cancel goes on up
            answer = error
        result = outcome(answer)
        if isinstance(result, Order):
            await self.settle(result)
            return False
        return result

    def cancel_now(
        self,
        venue: str,
        symbol: str,
        client_order_id: str,
        on_outcome: Callable[[bool], None] | None = None,
    ) -> bool:
        """Write a cancel (already marked in the tracker) before returning, where the venue's
        adapter can (True): its outcome is handled exactly as ``cancel`` handles it, then
        ``on_outcome`` hears what ``cancel`` would have returned. False, with nothing sent and
        nothing counted: the caller awaits ``cancel`` instead."""
        cancel_now = self._cancel_now.get(venue)
        if cancel_now is None:
            return False
        sent_ns = _perf_ns()
        return self._written_now(
            lambda answered: cancel_now(symbol, client_order_id, answered),
            lambda answer: self._cancel_outcome(venue, client_order_id, answer, sent_ns),
            "cancels_sent",
            on_outcome,
        )

    def _written_now(
        self,
        write: Callable[[OrderAnswer], bool],
        outcome: Callable[[OrderUpdate | Exception], bool | Order],
        counter: str,
        on_outcome: Callable[[bool], None] | None,
    ) -> bool:
        """A cancel or an amend written inside the caller's callback (``write``): its answer ends
        as the awaited path's does (``outcome``, then the venue's truth where that names an order
        to settle), then ``on_outcome`` hears the result. False: nothing was written."""

        def answered(answer: OrderUpdate | Exception) -> None:
            result = outcome(answer)
            if isinstance(result, Order):  # the venue's truth first; the request itself did not succeed
                self._settle_then(result, None if on_outcome is None else lambda _found: on_outcome(False))
            elif on_outcome is not None:
                on_outcome(result)

        try:
            written = write(answered)
        except Exception as error:  # refused before anything was sent: ended as the awaited path ends it
            self.counters[counter] += 1
            answered(error)
            return True
        if written:
            self.counters[counter] += 1
        return written

    def _cancel_outcome(
        self, venue: str, client_order_id: str, answer: OrderUpdate | Exception, sent_ns: int
    ) -> bool | Order:
        """What one cancel's answer (sent at ``sent_ns``) means for the tracker: True when the
        venue closed the order; the tracked order when its true end must be queried (the venue
        does not have it while the tracker thinks it open, or the outcome is unknown); False
        otherwise."""
        tracker = self.tracker
        if isinstance(answer, OrderNotFoundError):
            tracker.cancel_rejected(client_order_id, str(answer))
            order = tracker.get(client_order_id)
            # the venue does not have it: learn its true end
            return order if order is not None and not order.status.is_terminal else False
        if isinstance(answer, OrderRejectedError | RateLimitedError):
            self.counters["cancel_rejects"] += 1
            tracker.cancel_rejected(client_order_id, str(answer))
            return False
        if isinstance(answer, Exception):
            self.counters["cancel_outcome_unknown"] += 1
            tracker.request_timed_out(client_order_id, RequestKind.CANCEL)
            order = tracker.get(client_order_id)
            return order if order is not None else False
        self.cancel_round_trip[venue].record(_perf_ns() - sent_ns)
        tracker.apply_report(answer)  # CANCELED, or FILLED when the fill won
        return True

    async def amend(
        self,
        venue: str,
        symbol: str,
        client_order_id: str,
        price: int,
        quantity: int,
        *,
        requested: bool = False,
    ) -> bool:
        """Amend to a new price and TOTAL quantity; True when the venue confirmed it.
        ``requested``: the caller already marked the amend in the tracker."""
        tracker = self.tracker
        if not requested and not tracker.request_amend(client_order_id, price, quantity):
            return False
        self.counters["amends_sent"] += 1
        request = AmendRequest(client_order_id=client_order_id, symbol=symbol, price=price, quantity=quantity)
        sent_ns = _perf_ns()
        return await self._awaited(
            self.adapters[venue].amend_order(request),
            lambda answer: self._amend_outcome(venue, client_order_id, answer, sent_ns),
        )

    def amend_now(
        self,
        venue: str,
        symbol: str,
        client_order_id: str,
        price: int,
        quantity: int,
        on_outcome: Callable[[bool], None] | None = None,
    ) -> bool:
        """Write an amend (already marked in the tracker) before returning, where the venue's
        adapter can (True): its outcome is handled exactly as ``amend`` handles it, then
        ``on_outcome`` hears what ``amend`` would have returned. False, with nothing sent and
        nothing counted: the caller awaits ``amend`` instead."""
        amend_now = self._amend_now.get(venue)
        if amend_now is None:
            return False
        request = AmendRequest(client_order_id=client_order_id, symbol=symbol, price=price, quantity=quantity)
        sent_ns = _perf_ns()
        return self._written_now(
            lambda answered: amend_now(request, answered),
            lambda answer: self._amend_outcome(venue, client_order_id, answer, sent_ns),
            "amends_sent",
            on_outcome,
        )

    def _amend_outcome(
        self, venue: str, client_order_id: str, answer: OrderUpdate | Exception, sent_ns: int
    ) -> bool | Order:
        """What one amend's answer (sent at ``sent_ns``) means for the tracker: True when the
        venue confirmed it; the tracked order when its true state must be queried (the venue does
        not have it while the tracker thinks it open, or the outcome is unknown); False otherwise."""
        tracker = self.tracker
        if isinstance(answer, OrderNotFoundError):
            self.counters["amend_rejects"] += 1
            tracker.amend_rejected(client_order_id, str(answer))
            order = tracker.get(client_order_id)
            # the venue does not have it: learn its true end (a fill or a cancel it has not told)
            return order if order is not None and not order.status.is_terminal else False
        if isinstance(answer, OrderRejectedError | RateLimitedError):
            self.counters["amend_rejects"] += 1
            tracker.amend_rejected(client_order_id, str(answer))
            return False
        if isinstance(answer, Exception):
            self.counters["amend_outcome_unknown"] += 1
            tracker.request_timed_out(client_order_id, RequestKind.AMEND)
            order = tracker.get(client_order_id)
            return False if order is None else order
        self.amend_round_trip[venue].record(_perf_ns() - sent_ns)
        if answer.status.is_terminal:
            tracker.apply_report(answer)
        else:
            tracker.amend_acknowledged(client_order_id, answer.price, answer.quantity)
        return True


def _settled_by_adapter(adapter: VenueAdapter, client_order_id: str) -> bool:
    """True while the adapter itself settles this order's unknown outcome (Binance, Thalex)."""
    unresolved = getattr(adapter, "unresolved", None)
    return callable(unresolved) and client_order_id in unresolved()


# the execution engine --------------------------------------------------------------------------
class BudgetPolicy(enum.Enum):
    DROP = "drop"  # over budget: not sent (the book it was priced on is too old)
    SEND_FLAGGED = "send_flagged"  # over budget: sent anyway, the report says so


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    """Latency budget from decision to send (``None``: no budget) and what an overrun does."""

    latency_budget_us: float | None = 1_000.0
    policy: BudgetPolicy = BudgetPolicy.DROP

    def __post_init__(self) -> None:
        if self.latency_budget_us is not None and not self.latency_budget_us > 0:
            raise ValueError(f"latency_budget_us must be > 0 or None, got {self.latency_budget_us!r}")


class ExecutionReport(msgspec.Struct, frozen=True, kw_only=True):
    """What became of one taker order."""

    venue: str
    symbol: str
    side: Side
    requested: int  # lots
    filled: int  # lots
    status: OrderStatus
    client_order_id: str = ""
    sent: bool = False
    budget_overrun: bool = False
    decision_to_send_ns: int = 0
    execution_ns: int = 0  # send -> answer (ack with its fills, or reject)
    reason: str = ""
    tag: str = ""


class ExecutionEngine:
    """IOC/market orders under a latency budget, with ambiguous outcomes settled by query."""

    def __init__(
        self,
        gateway: OrderGateway,
        config: ExecutionConfig | None = None,
        *,
        is_halted: Callable[[], bool] | None = None,
    ) -> None:
        self.gateway = gateway
        self.config = config or ExecutionConfig()
        self._budget_ns = (
            None if self.config.latency_budget_us is None else int(self.config.latency_budget_us * 1_000)
        )
        self._is_halted = is_halted or (lambda: gateway.risk.tripped)
        self.counters: Counter[str] = Counter()
        self.execution_latency: dict[str, LatencyHistogram] = {
            venue: gateway.metrics.histogram("execution_ns", venue=venue) for venue in gateway.adapters
        }

    @property
    def budget_overruns(self) -> int:
        return self.counters["budget_overruns"]

    async def execute(
        self,
        intent: OrderIntent,
        decided_ns: int | None = None,
        on_submitted: Callable[[Order], None] | None = None,
        trigger_ns: int = 0,
    ) -> ExecutionReport:
        """Send one taker order; ``decided_ns`` is the ``time.perf_counter_ns()`` of the decision,
        ``on_submitted`` sees the tracked order before it is sent (to record who owns it)."""
        started = self._start(intent, decided_ns, on_submitted)
        if isinstance(started, ExecutionReport):
            return started
        prepared, overrun, waited = started
        sent_ns = _perf_ns()
        update = await self.gateway.send(prepared, decided_ns, trigger_ns)
        return self._concluded(intent, prepared, update, overrun, waited, _perf_ns() - sent_ns)

    def execute_now(
        self,
        intent: OrderIntent,
        decided_ns: int | None,
        on_submitted: Callable[[Order], None] | None,
        trigger_ns: int,
        on_report: Callable[[ExecutionReport], None],
    ) -> Coroutine[Any, Any, ExecutionReport] | None:
        """``execute`` with the order written before returning where its adapter can: the report
        goes to ``on_report`` when the answer arrives (a refusal before sending: at the next loop
        iteration, never from inside this call). Returns None when that is arranged, else the
        coroutine that finishes the execution the awaited way (the caller runs it as a task)."""
        started = self._start(intent, decided_ns, on_submitted)
        if isinstance(started, ExecutionReport):
            asyncio.get_running_loop().call_soon(on_report, started)
            return None
        prepared, overrun, waited = started
        sent_ns = _perf_ns()

        def outcome(update: OrderUpdate | None) -> None:
            on_report(self._concluded(intent, prepared, update, overrun, waited, _perf_ns() - sent_ns))

        if self.gateway.send_now(prepared, decided_ns, trigger_ns, outcome):
            return None
        return self._send_prepared(intent, prepared, overrun, waited, decided_ns, trigger_ns)

    async def _send_prepared(
        self,
        intent: OrderIntent,
        prepared: Order,
        overrun: bool,
        waited: int,
        decided_ns: int | None,
        trigger_ns: int,
    ) -> ExecutionReport:
        sent_ns = _perf_ns()
        update = await self.gateway.send(prepared, decided_ns, trigger_ns)
        return self._concluded(intent, prepared, update, overrun, waited, _perf_ns() - sent_ns)

    def _start(
        self,
        intent: OrderIntent,
        decided_ns: int | None,
        on_submitted: Callable[[Order], None] | None,
    ) -> ExecutionReport | tuple[Order, bool, int]:
        """The latency budget and the risk gate: a report when the order goes no further, else
        the tracked order with (overrun, waited)."""
        if intent.time_in_force is TimeInForce.GTC and intent.order_type is not OrderType.MARKET:
            raise ValueError("the execution engine sends taker orders only (IOC, FOK or market)")
        waited = 0 if decided_ns is None else _perf_ns() - decided_ns
        overrun = self._budget_ns is not None and waited > self._budget_ns
        if overrun:
            self.counters["budget_overruns"] += 1
            if self.config.policy is BudgetPolicy.DROP:
                self.counters["dropped_over_budget"] += 1
                return self._report(
                    intent,
                    OrderStatus.REJECTED,
                    reason="latency budget exceeded",
                    overrun=True,
                    waited=waited,
                )
        prepared = self.gateway.prepare(intent)
        if not isinstance(prepared, Order):
            self.counters["risk_rejects"] += 1
            reason = prepared.reason.value if prepared.reason is not None else "rejected"
            return self._report(
                intent, OrderStatus.REJECTED, reason=f"risk: {reason}", overrun=overrun, waited=waited
            )
        if on_submitted is not None:
            on_submitted(prepared)
        return prepared, overrun, waited

    def _concluded(
        self,
        intent: OrderIntent,
        prepared: Order,
        update: OrderUpdate | None,
        overrun: bool,
        waited: int,
        elapsed: int,
    ) -> ExecutionReport:
        order = self.gateway.tracker.get(prepared.client_order_id) or prepared
        if update is not None:
            self.execution_latency[intent.venue].record(elapsed)
        self.counters["executions"] += 1
        if overrun:
            self.counters["sent_over_budget"] += 1
        filled = max(order.filled, update.filled if update is not None else 0)
        self.counters["filled_lots"] += filled
        return ExecutionReport(
            venue=intent.venue,
            symbol=intent.symbol,
            side=intent.side,
            requested=intent.quantity,
            filled=filled,
            status=order.status,
            client_order_id=prepared.client_order_id,
            sent=True,
            budget_overrun=overrun,
            decision_to_send_ns=waited,
            execution_ns=elapsed,
            reason=order.status.value if update is None else update.reason,
            tag=intent.tag,
        )

    def _report(
        self, intent: OrderIntent, status: OrderStatus, *, reason: str, overrun: bool, waited: int
    ) -> ExecutionReport:
        return ExecutionReport(
            venue=intent.venue,
            symbol=intent.symbol,
            side=intent.side,
            requested=intent.quantity,
            filled=0,
            status=status,
            budget_overrun=overrun,
            decision_to_send_ns=waited,
            reason=reason,
            tag=intent.tag,
        )

    async def twap(self, parent: TwapOrder) -> TwapReport:
        """Slice ``parent`` into child IOC orders, one per interval, catching up unfilled lots.

        Child ``i`` asks for the schedule's cumulative target minus what has filled so far, at
        the parent's protective limit price, so a thin book delays lots rather than paying
        through the limit. Stops early on the kill switch (or ``is_halted``).
        """
        schedule = twap_schedule(parent.quantity, parent.slices)
        filled = 0
        target = 0
        children: list[ExecutionReport] = []
        stopped = ""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, planned in enumerate(schedule):
            if index:
                delay = start + index * parent.interval_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            if self._is_halted():
                stopped = "kill switch"
                self.counters["twap_halted"] += 1
                break
            target += planned
            wanted = target - filled
            if wanted <= 0:
                continue
            report = await self.execute(
                OrderIntent(
                    venue=parent.venue,
                    symbol=parent.symbol,
                    side=parent.side,
                    quantity=wanted,
                    price=parent.limit_price,
                    order_type=OrderType.LIMIT,
                    time_in_force=TimeInForce.IOC,
                    tag=f"{parent.tag}#{index}",
                ),
                _perf_ns(),
            )
            children.append(report)
            filled += report.filled
        return TwapReport(
            requested=parent.quantity, filled=filled, children=children, planned=schedule, stopped=stopped
        )


class TwapOrder(msgspec.Struct, frozen=True, kw_only=True):
    """A parent order sliced over time; ``limit_price`` (ticks) bounds every child."""

    venue: str
    symbol: str
    side: Side
    quantity: int
    slices: int
    interval_s: float
    limit_price: int
    tag: str = "twap"

    def __post_init__(self) -> None:
        if self.quantity <= 0 or self.slices <= 0 or self.interval_s < 0 or self.limit_price <= 0:
            raise ValueError(f"invalid TWAP parent order: {self!r}")


class TwapReport(msgspec.Struct, frozen=True, kw_only=True):
    requested: int
    filled: int
    children: list[ExecutionReport]
    planned: list[int]
    stopped: str = ""

    @property
    def complete(self) -> bool:
        return self.filled >= self.requested


def twap_schedule(quantity: int, slices: int) -> list[int]:
    """Split ``quantity`` lots into ``slices`` near-equal integer slices summing to it exactly
    (the remainder goes one lot each to the first slices); zero-lot slices are kept so the
    schedule's timing does not depend on the size."""
    if quantity < 0 or slices <= 0:
        raise ValueError(f"need quantity >= 0 and slices > 0, got {quantity}, {slices}")
    base, extra = divmod(quantity, slices)
    return [base + 1 if index < extra else base for index in range(slices)]
